//! What a server's runner does first after outpostd starts: adopt the monitor if it still
//! runs (recognised by pid, start time and boot id), or learn from the shim's exit status
//! how it ended meanwhile; then finish or undo the operation a crash interrupted — a delete
//! is finished, a create is finished only if its guest was already started (else undone),
//! a resize is rolled back — and re-run a command whose task_state was recorded but whose
//! runner died with the daemon.

use super::evacuation::{EVACUATE, EVACUATE_SCHEDULED};
use super::monitor::{self, process};
use super::runner::{Command, Flow, RunError, Runner};
use super::saga::{CREATE, CREATE_SCHEDULED, CREATE_START_MONITOR, DELETE, RESIZE};
use super::store::{PowerState, Server, TaskChange, TaskState, VmState};

impl Runner {
    /// The host rebooted since this server's monitor started (a power cut, a host crash): the
    /// guest died with the host and nothing recorded how. With
    /// `resume_guests_state_on_host_boot` a server that was running (and not in the middle of
    /// an operation, which the caller settles) starts again; otherwise it is shown stopped, as
    /// Nova's power-state sync shows a guest that stopped by itself.
    fn after_host_reboot(&mut self, s: &Server) -> Result<(), RunError> {
        let resume = self.fleet.settings.resume_guests_state_on_host_boot
            && s.vm_state == VmState::Active
            && s.task_state.is_none();
        self.update(|s| {
            s.monitor = None;
            s.power_state = PowerState::Shutdown;
            if !resume && s.vm_state == VmState::Active {
                s.vm_state = VmState::Stopped;
            }
        })?;
        if !resume {
            tracing::info!(
                "server {}: the host rebooted while it ran; left stopped",
                self.id
            );
            return Ok(());
        }
        tracing::info!(
            "server {}: the host rebooted while it ran; starting it again",
            self.id
        );
        if let Err(e) = self.start_monitor(s) {
            self.fail(&format!(
                "The host rebooted and the server could not start again: {e}"
            ))?;
        }
        Ok(())
    }

    pub(super) fn recover(&mut self) -> Result<Flow, RunError> {
        let Some(s) = self.load()? else {
            return Ok(Flow::End);
        };
        let recorded = s.monitor.clone();
        if let Some(record) = &recorded {
            if process::is_alive(record) {
                tracing::info!(
                    "server {}: adopted its running monitor (pid {})",
                    self.id,
                    record.pid
                );
                self.monitor = Some(record.clone());
            }
        }
        let saga = self.fleet.servers().server_task(&self.id)?;
        if let Some(task) = saga {
            // A move's first step is where every evacuation starts, not a crash.
            if (task.kind.as_str(), task.step.as_str()) != (EVACUATE, EVACUATE_SCHEDULED) {
                tracing::info!(
                    "server {}: outpostd stopped during {} at step {}",
                    self.id,
                    task.kind,
                    task.step
                );
            }
            match task.kind.as_str() {
                DELETE => return self.delete(),
                EVACUATE => {
                    // Moved here from a dead box: built again here, whatever step it reached.
                    if s.host.as_deref() == Some(self.fleet.host()) {
                        self.rebuild_evacuated(&s)?;
                    }
                    return Ok(Flow::Continue);
                }
                CREATE if task.step == CREATE_SCHEDULED => {
                    // Placed here by another box: nothing is built yet.
                    if s.host.as_deref() == Some(self.fleet.host()) {
                        self.build_claimed(&s)?;
                    }
                    return Ok(Flow::Continue);
                }
                CREATE => {
                    let started = task.step == CREATE_START_MONITOR
                        && self.monitor.is_some()
                        && monitor::guest_started(&self.dir);
                    if started {
                        self.finish_create()?;
                    } else {
                        self.undo_create()?;
                        self.fail(
                            "outpostd stopped while the server was being built; the build was \
                             undone. Delete the server and create it again.",
                        )?;
                    }
                    return Ok(Flow::Continue);
                }
                RESIZE => {
                    let claimed = s.resize.as_ref().is_some_and(|r| r.claims.is_some());
                    if !claimed {
                        // The claims may be saved without the server's record of them (the
                        // two are separate writes): give the old size back to the server.
                        // Changes nothing when no resize was claimed.
                        self.fleet.placement.revert_resize(&self.id)?;
                    }
                    if claimed {
                        if let Err(e) = self.undo_resize() {
                            self.fail(&format!(
                                "outpostd stopped during a resize, and rolling it back failed: {e}"
                            ))?;
                            return Ok(Flow::Continue);
                        }
                    }
                    self.end_resize_task()?;
                    return Ok(Flow::Continue);
                }
                other => {
                    tracing::warn!("server {}: unknown task {other}; dropped", self.id);
                    self.fleet
                        .servers()
                        .set_server_task(&self.id, TaskChange::Clear)?;
                }
            }
        }
        match (&recorded, &self.monitor) {
            (Some(record), None) if record.boot_id != process::boot_id() => {
                self.after_host_reboot(&s)?;
            }
            (Some(_), None) if self.lost_with_its_box(&s) => {
                // The box lost power (or its cgroup was killed): the guest did not end, it
                // was cut off, and on a site its owner still wants it running (a `stay`
                // server waited for this box; a moved one is no longer recovered here).
                tracing::warn!(
                    "server {}: its monitor died with the box; starting it again",
                    self.id
                );
                self.update(|s| s.monitor = None)?;
                let current = self.load()?.unwrap_or_else(|| s.clone());
                if let Err(e) = self.start_monitor(&current) {
                    self.fail(&format!(
                        "The server's box lost power and the server could not start again: {e}"
                    ))?;
                }
            }
            (Some(record), None) => {
                // It ended while outpostd was away; the shim recorded how.
                let exit = process::poll(record, &self.dir).unwrap_or_else(|| {
                    monitor::MonitorExit::Failed {
                        reason: "the monitor ended while outpostd was not running".into(),
                    }
                });
                tracing::info!("server {}: its monitor ended meanwhile: {exit:?}", self.id);
                self.on_exit(exit)?;
            }
            (None, None) => {
                // Nothing recorded: nothing may run for this server.
                let stray = process::kill_all_using(&self.dir.api_sock());
                if stray > 0 {
                    tracing::warn!(
                        "server {}: killed {stray} unrecorded monitor process(es)",
                        self.id
                    );
                }
                if s.power_state == PowerState::Running && s.task_state.is_none() {
                    self.update(|s| {
                        s.power_state = PowerState::Shutdown;
                        if s.vm_state == VmState::Active {
                            s.vm_state = VmState::Stopped;
                        }
                    })?;
                }
            }
            _ => {}
        }
        // A command accepted before the crash, whose runner died with outpostd.
        let lost = match s.task_state {
            Some(TaskState::PoweringOff) => Some(Command::Stop),
            Some(TaskState::PoweringOn) => Some(Command::Start),
            Some(TaskState::Rebooting) => Some(Command::Reboot { hard: false }),
            Some(TaskState::RebootingHard) => Some(Command::Reboot { hard: true }),
            Some(TaskState::ResizePrep) => Some(Command::Resize),
            Some(TaskState::ResizeConfirming) => Some(Command::ConfirmResize),
            Some(TaskState::ResizeReverting) => Some(Command::RevertResize),
            Some(TaskState::Deleting) => Some(Command::Delete),
            _ => None,
        };
        match lost {
            Some(Command::Stop) => self.stop(),
            Some(Command::Start) => self.start(),
            Some(Command::Reboot { hard }) => self.reboot(hard),
            Some(Command::Resize) => self.resize(),
            Some(Command::ConfirmResize) => self.confirm_resize(),
            Some(Command::RevertResize) => self.revert_resize(),
            Some(Command::Delete) => self.delete(),
            _ => {
                if s.vm_state == VmState::Building {
                    // Recorded but its create never began (no task row): nothing to undo.
                    self.fail("outpostd stopped before the server's build began.")?;
                }
                Ok(Flow::Continue)
            }
        }
    }
}

impl Runner {
    /// Whether `s`'s monitor was cut off with its box rather than ending: on a site, an ACTIVE
    /// server with nothing under way whose monitor is gone without the exit status its shim
    /// writes whenever the monitor ends (the shim died with it, as a power loss kills both).
    fn lost_with_its_box(&self, s: &super::store::Server) -> bool {
        self.fleet.is_site()
            && s.vm_state == VmState::Active
            && s.task_state.is_none()
            && !self.dir.exit_status().exists()
    }
}
