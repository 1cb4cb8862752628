//! One thread per server, the only code that touches its monitor: it runs the commands the
//! API accepted (in order, one at a time) and watches the monitor between them.
//!
//! The thread owns the server's [`MonitorRecord`] in memory; it polls the monitor every
//! [`POLL`] while one runs and otherwise sleeps on its command channel. It ends when its
//! server is deleted. The API never waits for it: a handler checks the request against the
//! server's states and sets its task_state in one transaction, sends the command and
//! answers 202; the runner clears the task_state when done.
//!
//! When a monitor ends with no task under way, the runner applies what the monitor's exit
//! status means: 0 (guest powered off) → SHUTOFF; 3 (guest rebooted) → start it again;
//! anything else → ERROR with the monitor's last line on stderr as the fault. With a task
//! under way (a stop, a reboot), the exit is that task's business.
//!
//! A stop, a soft reboot and a delete first ask the guest to shut down (the ACPI power
//! button) and give it its shutdown timeout, as Nova's clean shutdown does; only a guest
//! still running then is stopped hard. The runner waits in its own thread: the API has
//! answered already, and the server shows its task (`powering-off`...) meanwhile.

use super::fleet::Fleet;
use super::monitor::{self, process, MonitorError, MonitorExit, MonitorSpec, ServerDir};
use super::placement::PlacementError;
use super::store::{
    MonitorRecord, PowerState, Server, ServerFault, TaskChange, TaskState, VmState,
};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use outpost_image_store::VolumeError;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often a running monitor is checked.
const POLL: Duration = Duration::from_millis(250);
/// How long a SIGKILLed monitor may take to be gone.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// How often a clean shutdown presses the power button again (Nova's
/// `SHUTDOWN_RETRY_INTERVAL`).
const SHUTDOWN_RETRY: Duration = Duration::from_secs(10);
/// Nova cuts fault messages to its column's 255 characters; the rest goes to details.
const FAULT_MESSAGE_CHARS: usize = 255;

/// What a server's runner is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Build the server the API just recorded (claim, disk, monitor).
    Create,
    /// After outpostd started: adopt the monitor, or learn how it ended; finish or undo what
    /// was under way.
    Recover,
    Start,
    Stop,
    Reboot {
        hard: bool,
    },
    /// Resize to the flavor recorded in the server's `resize`.
    Resize,
    ConfirmResize,
    RevertResize,
    Delete,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Monitor(#[from] MonitorError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Placement(#[from] PlacementError),
    #[error(transparent)]
    Disk(#[from] VolumeError),
    #[error(transparent)]
    Volume(#[from] crate::volume::VolumeError),
    /// The server's image cannot be held (deleted or deactivated since the request).
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Network(#[from] crate::network::NetworkError),
    /// This box lacks the image's data and could not fetch it from another box.
    #[error(transparent)]
    ImageCopy(#[from] crate::image::pull::PullError),
    /// An image's file on this box cannot be named (its id is not a safe file name).
    #[error("image file: {0}")]
    ImageFile(#[from] outpost_image_store::ImageError),
    /// The flavor's I/O quotas cannot be applied (set before they were checked).
    #[error(transparent)]
    Limits(#[from] monitor::limits::LimitError),
    #[error(transparent)]
    Metadata(#[from] crate::metadata::MetadataError),
    #[error("cannot resize the root disk {path:?}: {source}")]
    DiskResize {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// Whether the runner goes on after a command.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    Continue,
    /// The server is gone.
    End,
}

pub struct Runner {
    pub(super) fleet: Arc<Fleet>,
    pub(super) id: String,
    pub(super) dir: ServerDir,
    /// The monitor, while one runs.
    pub(super) monitor: Option<MonitorRecord>,
}

impl Runner {
    /// A runner for server `id`. A monitor recorded for it that still runs is adopted, so a
    /// runner started again (after its thread ended abnormally) keeps supervising it.
    pub fn new(fleet: Arc<Fleet>, id: String) -> Runner {
        let recorded = fleet
            .servers()
            .server(&id)
            .ok()
            .flatten()
            .and_then(|s| s.monitor);
        Runner {
            dir: fleet.dir(&id),
            monitor: recorded.filter(process::is_alive),
            fleet,
            id,
        }
    }

    /// The thread's body: commands in order, the monitor watched in between.
    pub fn run(mut self, rx: Receiver<Command>) {
        loop {
            let next = if self.monitor.is_some() {
                match rx.recv_timeout(POLL) {
                    Ok(c) => Some(c),
                    Err(RecvTimeoutError::Timeout) => None,
                    Err(RecvTimeoutError::Disconnected) => return,
                }
            } else {
                match rx.recv() {
                    Ok(c) => Some(c),
                    Err(_) => return,
                }
            };
            let mut command = next;
            while let Some(c) = command.take() {
                if self.handle(c) == Flow::End {
                    // Ends only if nothing is queued; a late command is handled first.
                    command = self.fleet.retire(&self.id, &rx);
                    if command.is_none() {
                        return;
                    }
                }
            }
            self.watch();
        }
    }

    fn handle(&mut self, command: Command) -> Flow {
        tracing::debug!("server {}: {command:?}", self.id);
        let flow = match command {
            Command::Create => self.create(),
            Command::Recover => self.recover(),
            Command::Start => self.start(),
            Command::Stop => self.stop(),
            Command::Reboot { hard } => self.reboot(hard),
            Command::Resize => self.resize(),
            Command::ConfirmResize => self.confirm_resize(),
            Command::RevertResize => self.revert_resize(),
            Command::Delete => self.delete(),
        };
        match flow {
            Ok(f) => f,
            Err(e) => {
                // Storage failed while recording an outcome: the row may be stale; report
                // it and go on (the next command or restart re-reads it).
                tracing::error!("server {}: {command:?} failed: {e}", self.id);
                Flow::Continue
            }
        }
    }

    /// Checks the monitor; applies its exit if it ended.
    fn watch(&mut self) {
        let Some(record) = self.monitor.clone() else {
            return;
        };
        if let Some(exit) = process::poll(&record, &self.dir) {
            self.monitor = None;
            if let Err(e) = self.on_exit(exit) {
                tracing::error!("server {}: cannot record its monitor's end: {e}", self.id);
            }
        }
    }

    /// A monitor ended on its own.
    pub(super) fn on_exit(&mut self, exit: MonitorExit) -> Result<(), RunError> {
        let Some(server) = self.update(|s| s.monitor = None)? else {
            return Ok(());
        };
        if server.task_state.is_some() {
            tracing::info!(
                "server {}: monitor ended ({exit:?}) during {:?}",
                self.id,
                server.task_state
            );
            return Ok(());
        }
        match exit {
            MonitorExit::Poweroff => {
                tracing::info!("server {}: the guest powered off", self.id);
                self.update(|s| {
                    if s.vm_state == VmState::Active {
                        s.vm_state = VmState::Stopped;
                    }
                    s.power_state = PowerState::Shutdown;
                })?;
            }
            MonitorExit::Reboot => {
                tracing::info!("server {}: the guest rebooted; starting it again", self.id);
                if let Err(e) = self.start_monitor(&server) {
                    self.fail(&format!(
                        "The guest rebooted and could not start again: {e}"
                    ))?;
                }
            }
            MonitorExit::Failed { reason } => {
                tracing::warn!("server {}: the monitor failed: {reason}", self.id);
                self.fail_as(
                    &format!("The server's monitor stopped: {reason}"),
                    PowerState::Crashed,
                )?;
            }
        }
        Ok(())
    }

    // ---- the row ----

    pub(super) fn load(&self) -> Result<Option<Server>, StorageError> {
        self.fleet.servers().server(&self.id)
    }

    /// Reads, changes and writes the row as one atomic step (so a handler's concurrent
    /// change of the task_state is never overwritten with a stale copy).
    pub(super) fn update(
        &self,
        change: impl FnMut(&mut Server),
    ) -> Result<Option<Server>, StorageError> {
        self.update_with(TaskChange::Keep, change)
    }

    /// [`Self::update`] that also records the operation's progress, in the same write.
    ///
    /// On a site, a record that names another box as the owner is left as it is: the server
    /// was moved away (evacuated while this box was cut off), and what this runner knew of
    /// it is stale (docs/cluster.md, "Contested writes": Owner write).
    pub(super) fn update_with(
        &self,
        task: TaskChange<'_>,
        mut change: impl FnMut(&mut Server),
    ) -> Result<Option<Server>, StorageError> {
        let me = self.fleet.host();
        let site = self.fleet.is_site();
        self.fleet
            .servers()
            .update_server(&self.id, task, &mut |s| {
                if site && s.host.as_deref().is_some_and(|owner| owner != me) {
                    tracing::warn!(
                        "server {}: box {} owns it now; this box writes nothing of it",
                        s.id,
                        s.host.as_deref().unwrap_or_default()
                    );
                    return false;
                }
                change(s);
                true
            })
    }

    pub(super) fn set_step(&self, kind: &str, step: &str) -> Result<(), StorageError> {
        self.fleet
            .servers()
            .set_server_task(&self.id, TaskChange::Step { kind, step })
    }

    /// ERROR with `message` as the fault; the task ends.
    pub(super) fn fail(&self, message: &str) -> Result<(), StorageError> {
        self.fail_as(message, PowerState::NoState)
    }

    pub(super) fn fail_as(&self, message: &str, power: PowerState) -> Result<(), StorageError> {
        let fault = fault(message);
        let running = self.monitor.is_some();
        self.update_with(TaskChange::Clear, |s| {
            s.vm_state = VmState::Error;
            retask(s, None);
            s.power_state = if running { PowerState::Running } else { power };
            s.fault = Some(fault.clone());
        })?;
        Ok(())
    }

    // ---- the monitor ----

    pub(super) fn spec(&self, s: &Server) -> Result<MonitorSpec, RunError> {
        let root_disk = match (&s.boot.root_volume, &s.boot.root_source) {
            (Some(v), _) => Some(crate::volume::path(&self.fleet.volumes, v)?),
            (None, Some(_)) => Some(self.fleet.volumes.server_disk_path(&self.id)?),
            (None, None) => None,
        };
        let boot = self.fleet.local_boot(&s.image_ref, &s.boot)?;
        // Written at every start, from the records as they are then (Nova writes it at
        // spawn): a restart after a port change shows the guest its network as it is.
        let config_drive =
            if crate::metadata::config_drive::wanted(&s.config_drive, &s.flavor.extra_specs) {
                let path = self.dir.path().join("config-drive.img");
                // Before the monitor's spawn makes it: the drive is written first.
                self.dir.create()?;
                crate::metadata::write_config_drive(&self.fleet, s, &path)?;
                Some(path)
            } else {
                None
            };
        Ok(MonitorSpec {
            kernel: boot.kernel,
            initrd: boot.initrd,
            boot_args: s.boot.boot_args.clone(),
            vcpus: u64::try_from(s.flavor.vcpus).unwrap_or(1),
            mem_mib: u64::try_from(s.flavor.ram).unwrap_or(0),
            root_disk,
            volumes: super::volumes::drives(&self.fleet, s)?,
            nics: super::nics::monitor_nics(&self.fleet, s)?,
            config_drive,
            limits: monitor::limits::from_extra_specs(&s.flavor.extra_specs)?,
            extra_specs: s.flavor.extra_specs.clone(),
        })
    }

    /// Starts a monitor for `s` and the guest in it; on success the server is running
    /// (ACTIVE unless it is being resized). Its process is recorded before it is configured,
    /// so a crash of outpostd in between leaves a process the next start can find.
    pub(super) fn start_monitor(&mut self, s: &Server) -> Result<(), RunError> {
        let spec = self.spec(s)?;
        let record = monitor::spawn(&self.fleet.settings, &self.dir, &self.id, &spec)?;
        self.monitor = Some(record.clone());
        // Before the guest's first instruction: this box's fence must know whether the site
        // would run it elsewhere.
        if let Err(e) = super::evacuation::EvacuationPolicy::of(s).record(&self.dir) {
            tracing::warn!(
                "server {}: cannot record its evacuation policy: {e}",
                self.id
            );
        }
        self.update(|s| s.monitor = Some(record.clone()))?;
        if let Err(e) = monitor::configure_and_start(&record, &self.dir, &spec) {
            self.stop_monitor(None)?;
            return Err(e.into());
        }
        self.update(|s| {
            s.power_state = PowerState::Running;
            if matches!(s.vm_state, VmState::Stopped | VmState::Error) {
                s.vm_state = VmState::Active;
            }
            s.launched_at.get_or_insert_with(Timestamp::now);
        })?;
        Ok(())
    }

    /// Stops the monitor: SIGTERM to its process group and up to `graceful` for it to end
    /// (the monitor powers the guest off), then SIGKILL. Also kills any process that still
    /// names this server's socket (one started by an outpostd that crashed before recording
    /// it). Returns how the monitor ended, if one ran.
    pub(super) fn stop_monitor(
        &mut self,
        graceful: Option<Duration>,
    ) -> Result<Option<MonitorExit>, StorageError> {
        let mut exit = None;
        if let Some(record) = self.monitor.clone() {
            if let Some(wait) = graceful {
                process::signal_group(&record, libc::SIGTERM);
                exit = self.wait_exit(wait);
            }
            if exit.is_none() && self.monitor.is_some() {
                process::signal_group(&record, libc::SIGKILL);
                exit = self.wait_exit(KILL_WAIT);
                if exit.is_none() {
                    tracing::error!(
                        "server {}: monitor process {} survived SIGKILL",
                        self.id,
                        record.pid
                    );
                }
            }
        }
        let stray = process::kill_all_using(&self.dir.api_sock());
        if stray > 0 {
            tracing::warn!(
                "server {}: killed {stray} unrecorded monitor process(es)",
                self.id
            );
        }
        self.monitor = None;
        self.update(|s| s.monitor = None)?;
        Ok(exit)
    }

    /// How long the guest may take to power off after its power button: the image's
    /// `os_shutdown_timeout`, else `[compute] shutdown_timeout_secs`.
    pub(super) fn shutdown_timeout(&self, s: &Server) -> Duration {
        s.boot
            .shutdown_timeout_secs
            .map(Duration::from_secs)
            .unwrap_or(self.fleet.settings.shutdown_timeout)
    }

    /// Presses the guest's power button and waits up to `timeout` for its monitor to end
    /// (the guest powered off, or rebooted), pressing again every [`SHUTDOWN_RETRY`] as
    /// Nova does: a guest still booting has no driver or handler yet and loses a press.
    /// None: no monitor runs, the timeout is zero, the button cannot be pressed, or the
    /// guest did not end in time; the caller then stops it hard.
    pub(super) fn clean_shutdown(&mut self, timeout: Duration) -> Option<MonitorExit> {
        if self.monitor.is_none() || timeout.is_zero() {
            return None;
        }
        let started = Instant::now();
        let deadline = started + timeout;
        loop {
            if let Err(e) = monitor::send_power_button(&self.dir) {
                tracing::info!("server {}: cannot press its power button: {e}", self.id);
                return None;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if let Some(exit) = self.wait_exit(SHUTDOWN_RETRY.min(left)) {
                tracing::info!(
                    "server {}: the guest shut down in {:?} ({exit:?})",
                    self.id,
                    started.elapsed()
                );
                return Some(exit);
            }
            if Instant::now() >= deadline {
                tracing::info!(
                    "server {}: the guest ignored its power button for {timeout:?}",
                    self.id
                );
                return None;
            }
        }
    }

    /// Waits up to `timeout` for the monitor to end.
    pub(super) fn wait_exit(&mut self, timeout: Duration) -> Option<MonitorExit> {
        let record = self.monitor.clone()?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exit) = process::poll(&record, &self.dir) {
                self.monitor = None;
                return Some(exit);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    // ---- power ----

    pub(super) fn start(&mut self) -> Result<Flow, RunError> {
        let Some(s) = self.load()? else {
            return Ok(Flow::End);
        };
        if s.task_state != Some(TaskState::PoweringOn) {
            return Ok(Flow::Continue);
        }
        if self.monitor.is_some() {
            self.stop_monitor(None)?;
        }
        match self.start_monitor(&s) {
            Ok(()) => {
                self.update(|s| retask_from(s, TaskState::PoweringOn, None))?;
            }
            Err(e) => self.fail(&format!("Could not start the server: {e}"))?,
        }
        Ok(Flow::Continue)
    }

    pub(super) fn stop(&mut self) -> Result<Flow, RunError> {
        let Some(s) = self.load()? else {
            return Ok(Flow::End);
        };
        if s.task_state != Some(TaskState::PoweringOff) {
            return Ok(Flow::Continue);
        }
        let exit = match self.clean_shutdown(self.shutdown_timeout(&s)) {
            // Gone by itself; stop_monitor still clears the record and any stray process.
            Some(exit) => self.stop_monitor(None).map(|_| Some(exit))?,
            None => self.stop_monitor(Some(self.fleet.settings.stop_timeout))?,
        };
        tracing::info!("server {}: stopped ({exit:?})", self.id);
        self.update(|s| {
            s.vm_state = VmState::Stopped;
            s.power_state = PowerState::Shutdown;
            retask_from(s, TaskState::PoweringOff, None);
        })?;
        Ok(Flow::Continue)
    }

    /// SOFT: the power button, and the guest's own shutdown (its monitor's end) is awaited
    /// up to the soft-reboot timeout, after which it becomes HARD; then the server starts
    /// again, as Nova's libvirt driver does. HARD: the monitor is killed and started again.
    pub(super) fn reboot(&mut self, hard: bool) -> Result<Flow, RunError> {
        let Some(s) = self.load()? else {
            return Ok(Flow::End);
        };
        let task = if hard {
            TaskState::RebootingHard
        } else {
            TaskState::Rebooting
        };
        if s.task_state != Some(task) {
            return Ok(Flow::Continue);
        }
        if !hard
            && self
                .clean_shutdown(self.fleet.settings.soft_reboot_timeout)
                .is_none()
        {
            tracing::info!("server {}: no clean shutdown; rebooting hard", self.id);
        }
        self.stop_monitor(None)?;
        match self.start_monitor(&s) {
            Ok(()) => {
                self.update(|s| {
                    s.vm_state = VmState::Active;
                    s.fault = None;
                    retask_from(s, task, None);
                })?;
            }
            Err(e) => self.fail(&format!("Could not reboot the server: {e}"))?,
        }
        Ok(Flow::Continue)
    }
}

/// Sets the task_state unless a delete has been asked for meanwhile (the delete runs next
/// and must stay visible).
pub(super) fn retask(s: &mut Server, task: Option<TaskState>) {
    if s.task_state != Some(TaskState::Deleting) {
        s.task_state = task;
    }
}

/// Ends task `from` (or moves it on), if it is still the server's task.
pub(super) fn retask_from(s: &mut Server, from: TaskState, to: Option<TaskState>) {
    if s.task_state == Some(from) {
        s.task_state = to;
    }
}

/// Nova's instance fault for a failure: code 500, the message cut to 255 characters, the
/// whole text as details.
pub(crate) fn fault(message: &str) -> ServerFault {
    let short: String = message.chars().take(FAULT_MESSAGE_CHARS).collect();
    ServerFault {
        code: 500,
        details: (short.len() < message.len()).then(|| message.to_owned()),
        message: short,
        created: Timestamp::now().micros(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_are_cut_to_nova_length_with_the_rest_in_details() {
        let f = fault("short");
        assert_eq!(f.message, "short");
        assert_eq!(f.details, None);
        let long = "x".repeat(300);
        let f = fault(&long);
        assert_eq!(f.message.len(), 255);
        assert_eq!(f.details.as_deref(), Some(long.as_str()));
    }
}
