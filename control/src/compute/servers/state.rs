//! A server's API `status`, derived from its vm_state and task_state as Nova derives it, and
//! the reverse for the `status` list filter.

use crate::compute::servers::store::{TaskState, VmState};

/// The status Nova shows for these states.
pub fn status(vm: VmState, task: Option<TaskState>) -> &'static str {
    use TaskState as T;
    match (vm, task) {
        (VmState::Building, _) => "BUILD",
        (VmState::Error, _) => "ERROR",
        (VmState::Resized, Some(T::ResizeReverting)) => "REVERT_RESIZE",
        (VmState::Resized, _) => "VERIFY_RESIZE",
        (
            VmState::Active | VmState::Stopped,
            Some(T::ResizePrep | T::ResizeMigrating | T::ResizeMigrated | T::ResizeFinish),
        ) => "RESIZE",
        (VmState::Active | VmState::Stopped, Some(T::Rebuilding)) => "REBUILD",
        (VmState::Active, Some(T::Rebooting)) => "REBOOT",
        (VmState::Active, Some(T::RebootingHard)) => "HARD_REBOOT",
        (VmState::Stopped, Some(T::RebootingHard)) => "HARD_REBOOT",
        (VmState::Active, _) => "ACTIVE",
        (VmState::Stopped, _) => "SHUTOFF",
    }
}

/// Every status a server can show; the `status` filter accepts these (any case).
pub const STATUSES: [&str; 10] = [
    "BUILD",
    "REBUILD",
    "ACTIVE",
    "SHUTOFF",
    "ERROR",
    "REBOOT",
    "HARD_REBOOT",
    "RESIZE",
    "VERIFY_RESIZE",
    "REVERT_RESIZE",
];

/// Nova's names for statuses it knows but no Outpost server can have (they match nothing).
pub const OTHER_NOVA_STATUSES: [&str; 10] = [
    "DELETED",
    "SOFT_DELETED",
    "PAUSED",
    "SUSPENDED",
    "SHELVED",
    "SHELVED_OFFLOADED",
    "RESCUE",
    "MIGRATING",
    "PASSWORD",
    "UNKNOWN",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_nova() {
        assert_eq!(
            status(VmState::Building, Some(TaskState::Spawning)),
            "BUILD"
        );
        assert_eq!(status(VmState::Active, None), "ACTIVE");
        assert_eq!(
            status(VmState::Active, Some(TaskState::PoweringOff)),
            "ACTIVE"
        );
        assert_eq!(status(VmState::Stopped, None), "SHUTOFF");
        assert_eq!(
            status(VmState::Active, Some(TaskState::RebootingHard)),
            "HARD_REBOOT"
        );
        assert_eq!(
            status(VmState::Active, Some(TaskState::ResizePrep)),
            "RESIZE"
        );
        assert_eq!(status(VmState::Resized, None), "VERIFY_RESIZE");
        assert_eq!(
            status(VmState::Resized, Some(TaskState::ResizeReverting)),
            "REVERT_RESIZE"
        );
        assert_eq!(status(VmState::Error, Some(TaskState::Deleting)), "ERROR");
        assert_eq!(
            status(VmState::Active, Some(TaskState::Rebuilding)),
            "REBUILD"
        );
        for s in STATUSES {
            assert!(!OTHER_NOVA_STATUSES.contains(&s));
        }
    }
}
