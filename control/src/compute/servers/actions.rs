//! What the API may ask of an existing server, and in which states: each request checks the
//! server's vm_state and task_state and sets its new task_state in one transaction, then
//! hands the work to the server's runner (Nova's 202); the loser of two conflicting
//! requests gets Nova's 409 naming the state in the way.

use super::store::{ResizeRecord, Server, TaskChange, TaskState, VmState};
use super::{
    check_name, find_flavor, get, invalid, monitor, snapshot, Command, Fleet, ServerError,
    MAX_CONSOLE_BYTES,
};
use crate::context::RequestContext;
use std::sync::Arc;

/// Which states an action accepts.
struct Allowed {
    action: &'static str,
    vm: &'static [VmState],
    /// task_states it may interrupt; `None` (no task) is always accepted.
    tasks: &'static [TaskState],
}

/// Checks `id`'s states for `allowed` and sets `task`, in one transaction; returns the
/// server as it was.
fn begin(
    fleet: &Fleet,
    ctx: &RequestContext,
    id: &str,
    allowed: &Allowed,
    task: TaskState,
    mut change: impl FnMut(&mut Server),
) -> Result<Server, ServerError> {
    let mut outcome = Err(ServerError::NotFound(id.to_owned()));
    fleet
        .servers()
        .update_server(id, TaskChange::Keep, &mut |s| {
            outcome = check(ctx, id, allowed, s);
            if outcome.is_err() {
                return false;
            }
            s.task_state = Some(task);
            change(s);
            true
        })?;
    outcome
}

/// The server as it was, if the caller may see it and its states allow the action.
fn check(
    ctx: &RequestContext,
    id: &str,
    allowed: &Allowed,
    s: &Server,
) -> Result<Server, ServerError> {
    if !ctx.can_see(&s.project_id) {
        return Err(ServerError::NotFound(id.to_owned()));
    }
    if let Some(t) = s.task_state {
        if !allowed.tasks.contains(&t) {
            return Err(ServerError::InvalidState {
                action: allowed.action,
                id: id.to_owned(),
                attribute: "task_state",
                state: t.as_str(),
            });
        }
    }
    if !allowed.vm.contains(&s.vm_state) {
        return Err(ServerError::InvalidState {
            action: allowed.action,
            id: id.to_owned(),
            attribute: "vm_state",
            state: s.vm_state.as_str(),
        });
    }
    Ok(s.clone())
}

pub fn start(fleet: &Arc<Fleet>, ctx: &RequestContext, id: &str) -> Result<(), ServerError> {
    const ALLOWED: Allowed = Allowed {
        action: "start",
        vm: &[VmState::Stopped],
        tasks: &[],
    };
    let was = begin(fleet, ctx, id, &ALLOWED, TaskState::PoweringOn, |_| {})?;
    Ok(fleet.dispatch(id, was.host.as_deref(), Command::Start)?)
}

pub fn stop(fleet: &Arc<Fleet>, ctx: &RequestContext, id: &str) -> Result<(), ServerError> {
    const ALLOWED: Allowed = Allowed {
        action: "stop",
        vm: &[VmState::Active, VmState::Error],
        tasks: &[],
    };
    let was = begin(fleet, ctx, id, &ALLOWED, TaskState::PoweringOff, |_| {})?;
    Ok(fleet.dispatch(id, was.host.as_deref(), Command::Stop)?)
}

pub fn reboot(
    fleet: &Arc<Fleet>,
    ctx: &RequestContext,
    id: &str,
    hard: bool,
) -> Result<(), ServerError> {
    const SOFT: Allowed = Allowed {
        action: "reboot",
        vm: &[VmState::Active],
        tasks: &[],
    };
    // Nova lets a hard reboot interrupt a soft one, and revive a stopped or failed server.
    const HARD: Allowed = Allowed {
        action: "reboot",
        vm: &[VmState::Active, VmState::Stopped, VmState::Error],
        tasks: &[TaskState::Rebooting],
    };
    let (allowed, task) = if hard {
        (&HARD, TaskState::RebootingHard)
    } else {
        (&SOFT, TaskState::Rebooting)
    };
    let was = begin(fleet, ctx, id, allowed, task, |_| {})?;
    Ok(fleet.dispatch(id, was.host.as_deref(), Command::Reboot { hard })?)
}

/// Cold resize to `flavor_ref`: refused for the same flavor or a smaller root disk.
pub fn resize(
    fleet: &Arc<Fleet>,
    ctx: &RequestContext,
    id: &str,
    flavor_ref: &str,
) -> Result<(), ServerError> {
    const ALLOWED: Allowed = Allowed {
        action: "resize",
        vm: &[VmState::Active, VmState::Stopped],
        tasks: &[],
    };
    let current = get(fleet, ctx, id)?;
    let new = find_flavor(fleet, ctx, flavor_ref)?;
    if new.id == current.flavor.id {
        return Err(ServerError::BadRequest(
            "When resizing, instances must change flavor!".into(),
        ));
    }
    if new.disk < current.flavor.disk {
        return Err(ServerError::BadRequest(format!(
            "Resize to a smaller root disk is not allowed: flavor {} has {} GB, the server has \
             {} GB.",
            new.id, new.disk, current.flavor.disk
        )));
    }
    // Nova checks the new flavor against the image's minimums, as on create; an image
    // deleted since the boot has none to check. A volume-backed server's disk is its volume.
    if !current.image_ref.is_empty() {
        if let Ok(source) = fleet.boot_sources().resolve(ctx, &current.image_ref) {
            super::block_devices::check_minimums(
                new.disk,
                new.ram,
                None,
                source.min_disk,
                source.min_ram,
            )?;
        }
    }
    let new_flavor = snapshot(&new);
    let was = begin(fleet, ctx, id, &ALLOWED, TaskState::ResizePrep, |s| {
        s.resize = Some(ResizeRecord {
            old_flavor: s.flavor.clone(),
            new_flavor: new_flavor.clone(),
            was_running: false,
            old_disk_bytes: 0,
            claims: None,
        });
    })?;
    Ok(fleet.dispatch(id, was.host.as_deref(), Command::Resize)?)
}

pub fn confirm_resize(
    fleet: &Arc<Fleet>,
    ctx: &RequestContext,
    id: &str,
) -> Result<(), ServerError> {
    const ALLOWED: Allowed = Allowed {
        action: "confirmResize",
        vm: &[VmState::Resized],
        tasks: &[],
    };
    let was = begin(
        fleet,
        ctx,
        id,
        &ALLOWED,
        TaskState::ResizeConfirming,
        |_| {},
    )?;
    Ok(fleet.dispatch(id, was.host.as_deref(), Command::ConfirmResize)?)
}

pub fn revert_resize(
    fleet: &Arc<Fleet>,
    ctx: &RequestContext,
    id: &str,
) -> Result<(), ServerError> {
    const ALLOWED: Allowed = Allowed {
        action: "revertResize",
        vm: &[VmState::Resized],
        tasks: &[],
    };
    let was = begin(fleet, ctx, id, &ALLOWED, TaskState::ResizeReverting, |_| {})?;
    Ok(fleet.dispatch(id, was.host.as_deref(), Command::RevertResize)?)
}

/// `PUT /servers/{id}`: a new name and/or description (2.19+), in any state.
pub fn update(
    fleet: &Fleet,
    ctx: &RequestContext,
    id: &str,
    name: Option<String>,
    description: Option<Option<String>>,
) -> Result<Server, ServerError> {
    if let Some(n) = &name {
        check_name("name", n)?;
    }
    if let Some(Some(d)) = &description {
        if d.chars().count() > 255 {
            return Err(invalid("description", "It must be at most 255 characters."));
        }
    }
    let mut visible = false;
    let stored = fleet
        .servers()
        .update_server(id, TaskChange::Keep, &mut |s| {
            visible = ctx.can_see(&s.project_id);
            if !visible {
                return false;
            }
            if let Some(n) = &name {
                s.name = n.clone();
            }
            if let Some(d) = &description {
                s.description = d.clone();
            }
            true
        })?;
    stored
        .filter(|_| visible)
        .ok_or_else(|| ServerError::NotFound(id.to_owned()))
}

/// Deletes in any state (as Nova does); a delete already under way is not repeated.
pub fn delete(fleet: &Arc<Fleet>, ctx: &RequestContext, id: &str) -> Result<(), ServerError> {
    let mut visible = false;
    let mut already = false;
    let mut host = None;
    fleet
        .servers()
        .update_server(id, TaskChange::Keep, &mut |s| {
            visible = ctx.can_see(&s.project_id);
            already = s.task_state == Some(TaskState::Deleting);
            host = s.host.clone();
            if !visible || already {
                return false;
            }
            s.task_state = Some(TaskState::Deleting);
            true
        })?;
    if !visible {
        return Err(ServerError::NotFound(id.to_owned()));
    }
    if !already {
        fleet.dispatch(id, host.as_deref(), Command::Delete)?;
    }
    Ok(())
}

/// The last `length` lines of the guest's console (all when None or -1).
pub fn console_output(
    fleet: &Fleet,
    ctx: &RequestContext,
    id: &str,
    length: Option<i64>,
) -> Result<String, ServerError> {
    let s = get(fleet, ctx, id)?;
    let lines = length.and_then(|n| usize::try_from(n).ok());
    monitor::console_output(&fleet.dir(&s.id), lines, MAX_CONSOLE_BYTES).map_err(|source| {
        ServerError::Console {
            id: s.id.clone(),
            source,
        }
    })
}
