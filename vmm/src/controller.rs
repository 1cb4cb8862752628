//! Pre-boot configuration store and the actions the API and the config file drive.
//!
//! The [`Controller`] owns the guest's configuration until `InstanceStart`, then the
//! [`RunningVm`]. Both the REST API and `--config-file` mode go through [`Controller::handle`],
//! so the two ways of driving the monitor cannot drift apart.

mod validate;

pub use validate::{
    validate_full, validate_id, HostLimits, MAX_DEADLINE_MS, MAX_VCPUS, MIN_MEM_MIB,
};

use crate::builder::{self, Launch, RunningVm, StartError, VmError, VmStats};
use crate::config::{
    BootSourceConfig, DeadlineConfig, DriveConfig, DriveUpdate, EntropyConfig, LoggerConfig,
    MachineConfig, MachineConfigUpdate, MetricsConfig, NetworkInterfaceConfig,
    NetworkInterfaceUpdate, SerialConfig, VmConfig,
};
use crate::snapshot::guest::{SnapshotCreateParams, SnapshotLoadParams};
use serde::Serialize;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Name reported as `app_name` in `GET /`.
pub const APP_NAME: &str = "outpost-vmm";
/// Firecracker's default instance id, used when `--id` is not given.
pub const DEFAULT_INSTANCE_ID: &str = "anonymous-instance";

/// One request to the monitor, whichever way it came in.
#[derive(Clone, Debug, PartialEq)]
pub enum VmmAction {
    GetInstanceInfo,
    GetVersion,
    GetVmConfig,
    GetMachineConfig,
    PutMachineConfig(MachineConfig),
    PatchMachineConfig(MachineConfigUpdate),
    PutBootSource(BootSourceConfig),
    PutDrive(DriveConfig),
    /// Firecracker's `PATCH /drives/{id}`: the rate limiter, before or after start.
    PatchDrive(DriveUpdate),
    PutNetworkInterface(NetworkInterfaceConfig),
    /// Firecracker's `PATCH /network-interfaces/{id}`: the rate limiters, before or after
    /// start.
    PatchNetworkInterface(NetworkInterfaceUpdate),
    /// Accepted and kept for `GET /vm/config`; not acted on (see [`LoggerConfig`]).
    PutLogger(LoggerConfig),
    /// Accepted and kept; not acted on (see [`MetricsConfig`]).
    PutMetrics(MetricsConfig),
    PutEntropy(EntropyConfig),
    PutSerial(SerialConfig),
    InstanceStart,
    SendCtrlAltDel,
    /// Our extension (Firecracker has none): presses the ACPI power button, which asks the
    /// guest's OS to shut down cleanly.
    SendPowerButton,
    /// Accepted for Firecracker compatibility; counters are read live through `GetStats`,
    /// so there is nothing buffered to flush.
    FlushMetrics,
    Pause,
    Resume,
    /// Our extension: pause the guest unless renewed in time (see [`DeadlineConfig`]).
    PutDeadline(DeadlineConfig),
    /// Our extension: the guest's exit and PVM counters.
    GetStats,
    /// Firecracker's `PUT /snapshot/create`: the guest must be paused.
    CreateSnapshot(SnapshotCreateParams),
    /// Firecracker's `PUT /snapshot/load`: only before anything is started.
    LoadSnapshot(SnapshotLoadParams),
}

/// What a successful action returns.
#[derive(Clone, Debug)]
pub enum VmmData {
    Empty,
    InstanceInfo(InstanceInfo),
    Version(VersionInfo),
    VmConfig(Box<VmConfig>),
    MachineConfig(MachineConfig),
    Stats(VmStats),
}

/// Firecracker's `InstanceInfo` (`GET /`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InstanceInfo {
    pub app_name: String,
    pub id: String,
    pub state: InstanceState,
    pub vmm_version: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum InstanceState {
    #[serde(rename = "Not started")]
    NotStarted,
    Running,
    Paused,
}

/// `GET /version`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VersionInfo {
    pub app_name: String,
    pub vmm_version: String,
}

/// Why an action was refused; `Display` is the `fault_message` the API returns.
#[derive(Debug, thiserror::Error)]
pub enum VmmActionError {
    #[error("vcpu_count {count} is out of range: a guest has 1 to {max} vCPUs")]
    VcpuCountOutOfRange { count: u8, max: u8 },
    #[error("mem_size_mib {mib} is too small: a guest needs at least {min} MiB")]
    MemoryTooSmall { mib: usize, min: usize },
    #[error("mem_size_mib {mib} is larger than the host's memory ({host_mib} MiB)")]
    MemoryExceedsHost { mib: usize, host_mib: usize },
    #[error("unknown cpu_template {template:?}: use None, C3, T2, T2S, T2CL, T2A or V1N1")]
    InvalidCpuTemplate { template: String },
    #[error("unknown {field} {value:?}: use one of {allowed}")]
    InvalidChoice {
        field: &'static str,
        value: String,
        allowed: String,
    },
    #[error(
        "mmds-config ipv4_address {address:?} is not a link-local IPv4 address (169.254.0.0/16)"
    )]
    InvalidMmdsAddress { address: String },
    #[error("no drive {drive_id:?}: add it with PUT /drives/{drive_id} first")]
    UnknownDrive { drive_id: String },
    #[error(
        "no network interface {iface_id:?}: add it with PUT /network-interfaces/{iface_id} first"
    )]
    UnknownNetworkInterface { iface_id: String },
    #[error("drive {drive_id:?}: changing path_on_host is not supported (only the rate limiter can change with PATCH)")]
    DrivePathChange { drive_id: String },
    #[error("kernel image {path:?} cannot be used: {reason}")]
    KernelNotUsable { path: PathBuf, reason: String },
    #[error("initrd {path:?} cannot be used: {reason}")]
    InitrdNotUsable { path: PathBuf, reason: String },
    #[error("no boot source: configure the kernel (PUT /boot-source or \"boot-source\") first")]
    MissingBootSource,
    #[error("invalid {kind} id {id:?}: ids are 1 to 64 characters of A-Z, a-z, 0-9, '_' and '-'")]
    InvalidId { kind: &'static str, id: String },
    #[error("duplicate {kind} id {id:?}: each id may appear only once")]
    DuplicateId { kind: &'static str, id: String },
    #[error("drive {drive_id:?}: backing file {path:?} cannot be used: {reason}")]
    DriveNotUsable {
        drive_id: String,
        path: PathBuf,
        reason: String,
    },
    #[error("drive {drive_id:?}: unknown cache_type {cache_type:?}: use Unsafe or Writeback")]
    InvalidCacheType {
        drive_id: String,
        cache_type: String,
    },
    #[error("drive {new:?} cannot be a second root device: drive {existing:?} already is one")]
    SecondRootDevice { existing: String, new: String },
    #[error("network interface {iface_id:?}: guest_mac {mac:?} is not a unicast MAC like 06:00:ac:10:00:02")]
    InvalidMac { iface_id: String, mac: String },
    #[error("host_dev_name {name:?} is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)")]
    InvalidHostDevName { name: String },
    #[error("host_dev_name {name:?}: no such network device (tap) on the host")]
    HostDevNotFound { name: String },
    #[error("host_dev_name {name:?} is already used by network interface {iface_id:?}")]
    HostDevInUse { name: String, iface_id: String },
    #[error("guest_mac {mac} is already used by network interface {iface_id:?}")]
    MacInUse { mac: String, iface_id: String },
    #[error("serial_out_path {path:?}: its directory does not exist")]
    SerialOutNotUsable { path: PathBuf },
    #[error("serial socket_path {path:?}: {why}")]
    SerialSocketNotUsable { path: PathBuf, why: String },
    #[error("the guest is already started: its configuration can no longer be changed and it cannot be started again")]
    AlreadyStarted,
    #[error("pause_in_ms {ms} is out of range: use 1 to {max} (PATCH /vm pauses at once)")]
    DeadlineOutOfRange { ms: u64, max: u64 },
    #[error("a snapshot is taken of a paused guest: pause it first (PATCH /vm {{\"state\": \"Paused\"}})")]
    SnapshotOfRunningGuest,
    #[error("a snapshot is loaded into a fresh monitor: this one has already started a guest")]
    LoadAfterStart,
    #[error("{operation} needs a started guest: send InstanceStart first")]
    NotStarted { operation: &'static str },
    #[error("could not start the guest: {0}")]
    StartFailed(#[from] StartError),
    #[error("{operation} failed: {source}")]
    VmOperation {
        operation: &'static str,
        source: VmError,
    },
}

/// Builds and starts the guest for `InstanceStart` once the configuration is checked, or
/// from a snapshot for `PUT /snapshot/load`. The process runs it on its main thread
/// whatever thread the request arrived on, so the vCPU and device threads are born of a
/// thread without a seccomp filter and carry only their own (seccomp.rs), and a snapshot's
/// files, disks and taps are opened by a thread that may. Without one, the controller builds
/// on the calling thread.
pub type Starter = Box<dyn FnMut(&Launch) -> Result<RunningVm, StartError> + Send>;

enum Lifecycle {
    NotStarted,
    /// Boxed: a running guest's handles are large beside `NotStarted`.
    Started {
        vm: Box<RunningVm>,
        paused: bool,
    },
}

/// The monitor's state: pre-boot configuration, then the running guest.
pub struct Controller {
    instance_id: String,
    host: HostLimits,
    config: VmConfig,
    lifecycle: Lifecycle,
    starter: Option<Starter>,
    /// When the guest pauses itself unless a new deadline arrives first.
    deadline: Option<Instant>,
}

impl Controller {
    /// A controller for this host; `instance_id` is reported by `GET /`.
    pub fn new(instance_id: impl Into<String>) -> Self {
        Self::with_host_limits(instance_id, HostLimits::probe())
    }

    pub fn with_host_limits(instance_id: impl Into<String>, host: HostLimits) -> Self {
        Controller {
            instance_id: instance_id.into(),
            host,
            config: VmConfig::default(),
            lifecycle: Lifecycle::NotStarted,
            starter: None,
            deadline: None,
        }
    }

    /// Registers who builds and starts the guest (the process's main thread).
    pub fn set_starter(&mut self, starter: Starter) {
        self.starter = Some(starter);
    }

    /// Whether `InstanceStart` has succeeded.
    pub fn is_started(&self) -> bool {
        matches!(self.lifecycle, Lifecycle::Started { .. })
    }

    /// Replaces the whole pre-boot configuration after checking all of it (`--config-file`).
    pub fn load_config(&mut self, config: VmConfig) -> Result<(), VmmActionError> {
        self.ensure_not_started()?;
        validate::validate_config(&config, &self.host)?;
        self.config = config;
        // Keep the root device first, so the builder attaches it as the guest's vda.
        self.config.drives.sort_by_key(|d| !d.is_root_device);
        Ok(())
    }

    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    pub fn handle(&mut self, action: VmmAction) -> Result<VmmData, VmmActionError> {
        use VmmAction::*;
        match action {
            GetInstanceInfo => Ok(VmmData::InstanceInfo(self.instance_info())),
            GetVersion => Ok(VmmData::Version(VersionInfo {
                app_name: APP_NAME.to_owned(),
                vmm_version: env!("CARGO_PKG_VERSION").to_owned(),
            })),
            GetVmConfig => Ok(VmmData::VmConfig(Box::new(self.config.clone()))),
            GetMachineConfig => Ok(VmmData::MachineConfig(self.config.machine_config.clone())),
            PutMachineConfig(mc) => self.set_machine_config(mc),
            PatchMachineConfig(update) => {
                let merged = update.apply_to(&self.config.machine_config);
                self.set_machine_config(merged)
            }
            PutBootSource(bs) => {
                self.ensure_not_started()?;
                validate::validate_boot_source(&bs)?;
                self.config.boot_source = Some(bs);
                Ok(VmmData::Empty)
            }
            PutDrive(drive) => self.put_drive(drive),
            PatchDrive(update) => self.patch_drive(update),
            PutNetworkInterface(iface) => self.put_network_interface(iface),
            PatchNetworkInterface(update) => self.patch_network_interface(update),
            PutLogger(logger) => {
                self.ensure_not_started()?;
                validate::validate_logger(&logger)?;
                self.config.logger = Some(logger);
                Ok(VmmData::Empty)
            }
            PutMetrics(metrics) => {
                self.ensure_not_started()?;
                self.config.metrics = Some(metrics);
                Ok(VmmData::Empty)
            }
            PutEntropy(entropy) => {
                self.ensure_not_started()?;
                self.config.entropy = Some(entropy);
                Ok(VmmData::Empty)
            }
            PutSerial(serial) => {
                self.ensure_not_started()?;
                validate::validate_serial(&serial)?;
                self.config.serial = Some(serial);
                Ok(VmmData::Empty)
            }
            InstanceStart => self.start(),
            SendCtrlAltDel => {
                let vm = self.running_vm("SendCtrlAltDel")?;
                vm.send_ctrl_alt_del()
                    .map_err(|source| VmmActionError::VmOperation {
                        operation: "SendCtrlAltDel",
                        source,
                    })?;
                Ok(VmmData::Empty)
            }
            SendPowerButton => {
                let vm = self.running_vm("SendPowerButton")?;
                vm.press_power_button()
                    .map_err(|source| VmmActionError::VmOperation {
                        operation: "SendPowerButton",
                        source,
                    })?;
                Ok(VmmData::Empty)
            }
            FlushMetrics => Ok(VmmData::Empty),
            Pause => self.set_paused(true),
            Resume => self.set_paused(false),
            PutDeadline(deadline) => {
                validate::validate_deadline(&deadline)?;
                self.deadline = Some(Instant::now() + Duration::from_millis(deadline.pause_in_ms));
                Ok(VmmData::Empty)
            }
            GetStats => Ok(VmmData::Stats(self.running_vm("reading stats")?.stats())),
            CreateSnapshot(params) => self.create_snapshot(&params),
            LoadSnapshot(params) => self.load_snapshot(params),
        }
    }

    /// When the guest pauses itself, if a deadline is armed.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// Pauses a running guest whose deadline is past at `now`, and disarms the deadline
    /// (a guest resumed afterwards runs until the next deadline lapses). Returns whether
    /// it paused the guest. A deadline lapsing before the start has nothing to pause.
    pub fn enforce_deadline(&mut self, now: Instant) -> bool {
        if self.deadline.is_none_or(|at| at > now) {
            return false;
        }
        self.deadline = None;
        match self.lifecycle {
            Lifecycle::Started { paused: false, .. } => match self.set_paused(true) {
                Ok(_) => {
                    tracing::warn!("the deadline lapsed without renewal: guest paused");
                    true
                }
                Err(e) => {
                    tracing::error!("the deadline lapsed but the guest cannot pause: {e}");
                    false
                }
            },
            _ => false,
        }
    }

    fn instance_info(&self) -> InstanceInfo {
        let state = match self.lifecycle {
            Lifecycle::NotStarted => InstanceState::NotStarted,
            Lifecycle::Started { paused: false, .. } => InstanceState::Running,
            Lifecycle::Started { paused: true, .. } => InstanceState::Paused,
        };
        InstanceInfo {
            app_name: APP_NAME.to_owned(),
            id: self.instance_id.clone(),
            state,
            vmm_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }

    fn ensure_not_started(&self) -> Result<(), VmmActionError> {
        match self.lifecycle {
            Lifecycle::NotStarted => Ok(()),
            Lifecycle::Started { .. } => Err(VmmActionError::AlreadyStarted),
        }
    }

    fn running_vm(&self, operation: &'static str) -> Result<&RunningVm, VmmActionError> {
        match &self.lifecycle {
            Lifecycle::Started { vm, .. } => Ok(vm),
            Lifecycle::NotStarted => Err(VmmActionError::NotStarted { operation }),
        }
    }

    fn set_machine_config(&mut self, mc: MachineConfig) -> Result<VmmData, VmmActionError> {
        self.ensure_not_started()?;
        validate::validate_machine_config(&mc, &self.host)?;
        self.config.machine_config = mc;
        Ok(VmmData::Empty)
    }

    /// Firecracker semantics: a PUT with a known id replaces that drive in place.
    fn put_drive(&mut self, drive: DriveConfig) -> Result<VmmData, VmmActionError> {
        self.ensure_not_started()?;
        validate::validate_drive(&drive)?;
        validate::check_root_conflict(&self.config.drives, &drive)?;
        let drives = &mut self.config.drives;
        match drives.iter_mut().find(|d| d.drive_id == drive.drive_id) {
            Some(slot) => *slot = drive,
            None => drives.push(drive),
        }
        // Keep the root device first, so the builder attaches it as the guest's vda.
        drives.sort_by_key(|d| !d.is_root_device);
        Ok(VmmData::Empty)
    }

    /// Changes a drive's rate limiter: in the running device when the guest runs, and in
    /// the configuration `GET /vm/config` reports either way.
    fn patch_drive(&mut self, update: DriveUpdate) -> Result<VmmData, VmmActionError> {
        let drive = self
            .config
            .drives
            .iter()
            .find(|d| d.drive_id == update.drive_id)
            .ok_or_else(|| VmmActionError::UnknownDrive {
                drive_id: update.drive_id.clone(),
            })?;
        if update
            .path_on_host
            .as_ref()
            .is_some_and(|p| *p != drive.path_on_host)
        {
            return Err(VmmActionError::DrivePathChange {
                drive_id: update.drive_id,
            });
        }
        let Some(limits) = &update.rate_limiter else {
            return Ok(VmmData::Empty);
        };
        if let Lifecycle::Started { vm, .. } = &self.lifecycle {
            vm.update_drive_rate_limiter(&update.drive_id, limits)
                .map_err(|source| VmmActionError::VmOperation {
                    operation: "PATCH /drives",
                    source,
                })?;
        }
        if let Some(drive) = self
            .config
            .drives
            .iter_mut()
            .find(|d| d.drive_id == update.drive_id)
        {
            drive.rate_limiter = Some(drive.rate_limiter.unwrap_or_default().updated(limits));
        }
        Ok(VmmData::Empty)
    }

    /// Changes an interface's rate limiters, like [`Controller::patch_drive`].
    fn patch_network_interface(
        &mut self,
        update: NetworkInterfaceUpdate,
    ) -> Result<VmmData, VmmActionError> {
        let Some(iface) = self
            .config
            .network_interfaces
            .iter_mut()
            .find(|i| i.iface_id == update.iface_id)
        else {
            return Err(VmmActionError::UnknownNetworkInterface {
                iface_id: update.iface_id,
            });
        };
        let (rx, tx) = (
            update.rx_rate_limiter.as_ref(),
            update.tx_rate_limiter.as_ref(),
        );
        if rx.is_none() && tx.is_none() {
            return Ok(VmmData::Empty);
        }
        if let Lifecycle::Started { vm, .. } = &self.lifecycle {
            vm.update_interface_rate_limiters(&update.iface_id, rx, tx)
                .map_err(|source| VmmActionError::VmOperation {
                    operation: "PATCH /network-interfaces",
                    source,
                })?;
        }
        let merge = |current: &mut Option<crate::config::RateLimiterConfig>, update| {
            if let Some(update) = update {
                *current = Some(current.unwrap_or_default().updated(update));
            }
        };
        merge(&mut iface.rx_rate_limiter, rx);
        merge(&mut iface.tx_rate_limiter, tx);
        Ok(VmmData::Empty)
    }

    fn put_network_interface(
        &mut self,
        iface: NetworkInterfaceConfig,
    ) -> Result<VmmData, VmmActionError> {
        self.ensure_not_started()?;
        validate::validate_network_interface(&iface)?;
        validate::check_interface_conflict(&self.config.network_interfaces, &iface)?;
        let ifaces = &mut self.config.network_interfaces;
        match ifaces.iter_mut().find(|i| i.iface_id == iface.iface_id) {
            Some(slot) => *slot = iface,
            None => ifaces.push(iface),
        }
        Ok(VmmData::Empty)
    }

    fn start(&mut self) -> Result<VmmData, VmmActionError> {
        self.ensure_not_started()?;
        // Files may have changed since their PUT; check everything again before building.
        validate::validate_config(&self.config, &self.host)?;
        let vm = self.launch(&Launch::Boot(Box::new(self.config.clone())))?;
        self.lifecycle = Lifecycle::Started {
            vm: Box::new(vm),
            paused: false,
        };
        Ok(VmmData::Empty)
    }

    fn launch(&mut self, launch: &Launch) -> Result<RunningVm, StartError> {
        match self.starter.as_mut() {
            Some(start) => start(launch),
            None => builder::launch_guest(launch),
        }
    }

    fn create_snapshot(&self, params: &SnapshotCreateParams) -> Result<VmmData, VmmActionError> {
        let operation = "PUT /snapshot/create";
        let vm = match &self.lifecycle {
            Lifecycle::Started { vm, paused: true } => vm,
            Lifecycle::Started { paused: false, .. } => {
                return Err(VmmActionError::SnapshotOfRunningGuest)
            }
            Lifecycle::NotStarted => return Err(VmmActionError::NotStarted { operation }),
        };
        vm.snapshot(params)
            .map_err(|source| VmmActionError::VmOperation { operation, source })?;
        Ok(VmmData::Empty)
    }

    /// Builds the guest a snapshot holds; its configuration (from the snapshot) replaces
    /// whatever was configured, so `GET /vm/config` and the PATCH requests see the guest
    /// that runs.
    fn load_snapshot(&mut self, params: SnapshotLoadParams) -> Result<VmmData, VmmActionError> {
        if self.is_started() {
            return Err(VmmActionError::LoadAfterStart);
        }
        let paused = !params.resume_vm;
        let vm = self.launch(&Launch::Restore(params))?;
        self.config = vm.config().clone();
        self.lifecycle = Lifecycle::Started {
            vm: Box::new(vm),
            paused,
        };
        Ok(VmmData::Empty)
    }

    fn set_paused(&mut self, pause: bool) -> Result<VmmData, VmmActionError> {
        let operation = if pause { "Pause" } else { "Resume" };
        let Lifecycle::Started { vm, paused } = &mut self.lifecycle else {
            return Err(VmmActionError::NotStarted { operation });
        };
        let result = if pause { vm.pause() } else { vm.resume() };
        result.map_err(|source| VmmActionError::VmOperation { operation, source })?;
        *paused = pause;
        Ok(VmmData::Empty)
    }
}

#[cfg(test)]
mod tests;
