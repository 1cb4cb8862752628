//! What the API may ask of an existing server, and in which states: each request checks the
//! server's vm_state and task_state and sets its new task_state in one transaction, then
//! hands the work to the server's runner (Nova's 202); the loser of two conflicting
//! requests gets Nova's 409 naming the state in the way.

use super::{
    check_name, find_flavor, get, invalid, monitor, snapshot, Command, Fleet, ServerError,
    MAX_CONSOLE_BYTES,
};
use crate::context::RequestContext;
use crate::storage::servers::{self as store, ResizeRecord, Server, TaskState, VmState};
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
    change: impl FnOnce(&mut Server),
) -> Result<Server, ServerError> {
    fleet.db().write(|tx| {
        let mut s = store::by_id(tx, id)?
            .filter(|s| ctx.can_see(&s.project_id))
            .ok_or_else(|| ServerError::NotFound(id.to_owned()))?;
        let before = s.clone();
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
        s.task_state = Some(task);
        change(&mut s);
        store::save(tx, &s)?;
        Ok(before)
    })
}

pub fn start(fleet: &Arc<Fleet>, ctx: &RequestContext, id: &str) -> Result<(), ServerError> {
    const ALLOWED: Allowed = Allowed {
        action: "start",
        vm: &[VmState::Stopped],
        tasks: &[],
    };
    begin(fleet, ctx, id, &ALLOWED, TaskState::PoweringOn, |_| {})?;
    Ok(fleet.send(id, Command::Start)?)
}

pub fn stop(fleet: &Arc<Fleet>, ctx: &RequestContext, id: &str) -> Result<(), ServerError> {
    const ALLOWED: Allowed = Allowed {
        action: "stop",
        vm: &[VmState::Active, VmState::Error],
        tasks: &[],
    };
    begin(fleet, ctx, id, &ALLOWED, TaskState::PoweringOff, |_| {})?;
    Ok(fleet.send(id, Command::Stop)?)
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
    begin(fleet, ctx, id, allowed, task, |_| {})?;
    Ok(fleet.send(id, Command::Reboot { hard })?)
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
    let new = fleet.db().read(|c| find_flavor(c, ctx, flavor_ref))?;
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
    begin(fleet, ctx, id, &ALLOWED, TaskState::ResizePrep, |s| {
        s.resize = Some(ResizeRecord {
            old_flavor: s.flavor.clone(),
            new_flavor,
            was_running: false,
            old_disk_bytes: 0,
            claims: None,
        });
    })?;
    Ok(fleet.send(id, Command::Resize)?)
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
    begin(
        fleet,
        ctx,
        id,
        &ALLOWED,
        TaskState::ResizeConfirming,
        |_| {},
    )?;
    Ok(fleet.send(id, Command::ConfirmResize)?)
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
    begin(fleet, ctx, id, &ALLOWED, TaskState::ResizeReverting, |_| {})?;
    Ok(fleet.send(id, Command::RevertResize)?)
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
    fleet.db().write(|tx| {
        let mut s = store::by_id(tx, id)?
            .filter(|s| ctx.can_see(&s.project_id))
            .ok_or_else(|| ServerError::NotFound(id.to_owned()))?;
        if let Some(n) = name {
            s.name = n;
        }
        if let Some(d) = description {
            s.description = d;
        }
        store::save(tx, &s)?;
        Ok::<_, ServerError>(store::by_id(tx, id)?.unwrap_or(s))
    })
}

/// Deletes in any state (as Nova does); a delete already under way is not repeated.
pub fn delete(fleet: &Arc<Fleet>, ctx: &RequestContext, id: &str) -> Result<(), ServerError> {
    let already = fleet.db().write(|tx| {
        let mut s = store::by_id(tx, id)?
            .filter(|s| ctx.can_see(&s.project_id))
            .ok_or_else(|| ServerError::NotFound(id.to_owned()))?;
        if s.task_state == Some(TaskState::Deleting) {
            return Ok(true);
        }
        s.task_state = Some(TaskState::Deleting);
        store::save(tx, &s)?;
        Ok::<_, ServerError>(false)
    })?;
    if !already {
        fleet.send(id, Command::Delete)?;
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
