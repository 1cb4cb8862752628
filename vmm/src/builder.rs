//! Turns a validated [`VmConfig`] into a running guest: memory, VM, devices, kernel,
//! command line, ACPI tables, boot parameters and vCPU threads, in that order.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use linux_loader::loader::{load_cmdline, Cmdline};
use serde::Serialize;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

use crate::acpi::{self, MmioDeviceInfo};
use crate::arch::layout::*;
use crate::arch::{cpuid, regs};
use crate::boot::{self, params};
use crate::config::{RateLimiterConfig, VmConfig};
use crate::devices::bus::{Bus, BusDevice};
use crate::devices::legacy::acpi_pm::AcpiPm;
use crate::devices::legacy::console_socket::ConsoleSocket;
use crate::devices::legacy::ged::{Ged, GED_EVENT_POWER_BUTTON};
use crate::devices::legacy::i8042::I8042;
use crate::devices::legacy::serial::{ConsoleInput, ConsoleOut, SerialConsole};
use crate::devices::legacy::{IrqLine, PowerEvent, PowerSignal};
use crate::devices::virtio::mmio;
use crate::pvm;
use crate::snapshot;
use crate::snapshot::device_loop::DeviceLoopGate;
use crate::snapshot::guest::{GuestSnapshot, SnapshotCreateParams, SnapshotLoadParams};
use crate::snapshot::vm::VmState;
use crate::vstate::memory::create_guest_memory;
use crate::vstate::vcpu::{ExitCounters, VcpuContext, VcpuControl, VcpuHandle};
use crate::vstate::vm::Vm;

/// Environment variable naming the file for a guest RIP profile of vCPU 0 (off when unset).
pub const PROFILE_ENV: &str = "OUTPOST_GUEST_PROFILE";
/// Sampling period of the guest profile.
const PROFILE_PERIOD: std::time::Duration = std::time::Duration::from_millis(5);

/// On PVM, how often every vCPU is made to exit so that `pvm::PvmVcpu::before_run` runs.
const PVM_KICK_PERIOD: std::time::Duration = std::time::Duration::from_millis(100);

/// Boot arguments when the configuration gives none.
pub const DEFAULT_BOOT_ARGS: &str = "console=ttyS0 reboot=k panic=1";

/// How a guest ended; the monitor's exit status follows from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExitReason {
    Poweroff,
    Reboot,
    Error(String),
}

impl ExitReason {
    pub fn exit_code(&self) -> i32 {
        match self {
            ExitReason::Poweroff => crate::EXIT_POWEROFF,
            ExitReason::Reboot => crate::EXIT_REBOOT,
            ExitReason::Error(_) => crate::EXIT_ERROR,
        }
    }
}

impl From<PowerEvent> for ExitReason {
    fn from(e: PowerEvent) -> Self {
        match e {
            PowerEvent::Poweroff => ExitReason::Poweroff,
            PowerEvent::Reboot => ExitReason::Reboot,
            PowerEvent::Crash(m) => ExitReason::Error(m),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("no boot source: configure boot-source with a kernel_image_path")]
    NoBootSource,
    #[error("vcpu_count must be between 1 and {max}, not {got}")]
    VcpuCount { got: u8, max: u8 },
    #[error("mem_size_mib must be at least 64, not {0}")]
    MemoryTooSmall(usize),
    #[error(transparent)]
    Memory(#[from] crate::vstate::memory::MemoryError),
    #[error(transparent)]
    Vm(#[from] crate::vstate::vm::VmError),
    #[error(transparent)]
    Kernel(#[from] boot::LoadError),
    #[error("cannot open initrd {path}: {source}")]
    Initrd {
        path: String,
        source: std::io::Error,
    },
    #[error("initrd {path} ({size} bytes) does not fit in guest memory below {limit:#x}")]
    InitrdTooLarge { path: String, size: u64, limit: u64 },
    #[error("invalid kernel command line: {0}")]
    Cmdline(String),
    #[error("cannot open serial output {path}: {source}")]
    SerialOut {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Acpi(#[from] acpi::AcpiError),
    #[error(transparent)]
    BootParams(#[from] params::ParamsError),
    #[error(transparent)]
    Regs(#[from] regs::RegsError),
    #[error("device setup failed: {0}")]
    Device(String),
    #[error("cannot start thread {what}: {source}")]
    Thread {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the monitor is stopping: the guest was not started")]
    Stopping,
    #[error("cannot restore the snapshot: {0}")]
    Snapshot(String),
}

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("the guest has already stopped")]
    Stopped,
    #[error("{0}")]
    Failed(String),
}

/// Counters the monitor reports at exit and through the API.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VmStats {
    pub exits: BTreeMap<String, u64>,
    pub pvm: BTreeMap<String, u64>,
}

/// Sources of [`VmStats`], shared by the running VM and its exit waiter.
#[derive(Clone)]
struct StatsSources {
    exits: Arc<ExitCounters>,
    pvm: Option<Arc<pvm::PvmStats>>,
}

impl StatsSources {
    fn snapshot(&self) -> VmStats {
        VmStats {
            exits: self.exits.snapshot(),
            pvm: self.pvm.as_ref().map(|p| p.snapshot()).unwrap_or_default(),
        }
    }
}

/// A started guest. Dropping it does not stop the guest; `wait_exit` blocks until it ends.
pub struct RunningVm {
    vcpus: Vec<VcpuHandle>,
    control: Arc<VcpuControl>,
    power: Arc<PowerSignal>,
    i8042: Arc<Mutex<I8042>>,
    ged: Arc<Mutex<Ged>>,
    stats: StatsSources,
    /// The guest profile being sampled and where it goes at exit.
    profile: Option<(Arc<crate::vstate::vcpu::GuestProfile>, std::path::PathBuf)>,
    /// The drives and interfaces by id, for changes while the guest runs (rate limits).
    devices: VirtioHandles,
    /// What a snapshot saves beside the vCPUs: the configuration the guest was built from,
    /// the VM, its memory, the legacy devices and the transports in attach order.
    config: VmConfig,
    vm: Vm,
    mem: GuestMemoryMmap,
    serial: Arc<Mutex<SerialConsole>>,
    transports: Vec<Arc<Mutex<mmio::MmioTransport>>>,
    device_loop: Arc<DeviceLoopGate>,
    /// The MSRs a vCPU's state holds, read from /dev/kvm at build time (the API thread that
    /// saves a snapshot may not ask KVM for them).
    msr_indices: Vec<u32>,
}

impl RunningVm {
    fn check_running(&self) -> Result<(), VmError> {
        match self.power.get() {
            Some(_) => Err(VmError::Stopped),
            None => Ok(()),
        }
    }

    pub fn pause(&self) -> Result<(), VmError> {
        self.check_running()?;
        self.control.pause(&self.vcpus);
        Ok(())
    }

    pub fn resume(&self) -> Result<(), VmError> {
        self.check_running()?;
        self.control.resume(&self.vcpus);
        Ok(())
    }

    pub fn send_ctrl_alt_del(&self) -> Result<(), VmError> {
        self.check_running()?;
        self.i8042
            .lock()
            .expect("i8042 lock poisoned")
            .send_ctrl_alt_del();
        Ok(())
    }

    /// Presses the ACPI power button: the guest's ACPI driver sees it through the Generic
    /// Event Device and decides what to do (power off, usually). A paused guest sees it once
    /// resumed.
    pub fn press_power_button(&self) -> Result<(), VmError> {
        self.check_running()?;
        self.ged
            .lock()
            .expect("GED lock poisoned")
            .signal(GED_EVENT_POWER_BUTTON)
            .map_err(|e| VmError::Failed(format!("the GED's interrupt: {e}")))
    }

    pub fn stats(&self) -> VmStats {
        self.stats.snapshot()
    }

    /// The configuration the guest was built from (a restored guest's, from its snapshot).
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// Writes the paused guest to a state file and a memory file. The device event loop is
    /// held for the whole save, so no queue moves and no device writes guest memory between
    /// the ring positions and the memory being saved.
    pub fn snapshot(&self, params: &SnapshotCreateParams) -> Result<(), VmError> {
        self.check_running()?;
        let failed = |what: &str, e: &dyn std::fmt::Display| {
            VmError::Failed(format!("snapshot: {what}: {e}"))
        };
        let _quiet = self.device_loop.hold().map_err(|e| failed("devices", &e))?;
        let vcpus = self
            .control
            .save_states(&self.vcpus, &self.msr_indices)
            .map_err(|e| failed("vCPUs", &e))?;
        let vm = VmState::save(&self.vm).map_err(|e| failed("VM", &e))?;
        let serial = self.serial.lock().expect("serial lock poisoned").state();
        let i8042 = self.i8042.lock().expect("i8042 lock poisoned").state();
        let ged = self.ged.lock().expect("GED lock poisoned").state();
        let transports = self
            .transports
            .iter()
            .map(|t| {
                t.lock()
                    .expect("virtio-mmio transport lock poisoned")
                    .state()
            })
            .collect();
        let config_json =
            serde_json::to_string(&self.config).map_err(|e| failed("configuration", &e))?;
        let memory = snapshot::memory::save(&self.mem, &params.mem_file_path)
            .map_err(|e| failed("memory", &e))?;
        let state = GuestSnapshot {
            config_json,
            vm,
            vcpus,
            memory,
            serial,
            i8042,
            ged,
            transports,
        };
        snapshot::file::write(&params.snapshot_path, &state).map_err(|e| failed("state", &e))
    }

    /// Changes drive `drive_id`'s rate limiter while the guest runs.
    pub fn update_drive_rate_limiter(
        &self,
        drive_id: &str,
        update: &RateLimiterConfig,
    ) -> Result<(), VmError> {
        self.check_running()?;
        let drive = self
            .devices
            .drives
            .iter()
            .find(|(id, _)| id == drive_id)
            .ok_or_else(|| {
                VmError::Failed(format!("no drive {drive_id:?} in the running guest"))
            })?;
        drive
            .1
            .lock()
            .expect("block device lock poisoned")
            .update_rate_limiter(update)
            .map_err(|e| VmError::Failed(format!("cannot wake drive {drive_id:?}'s queue: {e}")))
    }

    /// Changes interface `iface_id`'s receive and/or transmit rate limiter while the guest
    /// runs.
    pub fn update_interface_rate_limiters(
        &self,
        iface_id: &str,
        rx: Option<&RateLimiterConfig>,
        tx: Option<&RateLimiterConfig>,
    ) -> Result<(), VmError> {
        self.check_running()?;
        let iface = self
            .devices
            .interfaces
            .iter()
            .find(|(id, _)| id == iface_id)
            .ok_or_else(|| {
                VmError::Failed(format!(
                    "no network interface {iface_id:?} in the running guest"
                ))
            })?;
        iface
            .1
            .lock()
            .expect("net device lock poisoned")
            .update_rate_limiters(rx, tx)
            .map_err(|e| {
                VmError::Failed(format!("cannot wake interface {iface_id:?}'s queues: {e}"))
            })
    }

    /// A handle the process's main thread can block on.
    pub fn exit_waiter(&self) -> ExitWaiter {
        ExitWaiter {
            power: self.power.clone(),
            stats: self.stats.clone(),
            profile: self.profile.clone(),
        }
    }
}

impl Drop for RunningVm {
    fn drop(&mut self) {
        self.control.stop(&self.vcpus);
    }
}

/// Blocks until the guest ends.
#[derive(Clone)]
pub struct ExitWaiter {
    power: Arc<PowerSignal>,
    stats: StatsSources,
    profile: Option<(Arc<crate::vstate::vcpu::GuestProfile>, std::path::PathBuf)>,
}

impl ExitWaiter {
    /// Waits for the guest's end and logs what the monitor handled on the way.
    pub fn wait(&self) -> ExitReason {
        let reason = ExitReason::from(self.power.wait());
        let s = self.stats.snapshot();
        tracing::info!(?reason, exits = ?s.exits, pvm = ?s.pvm, "guest ended");
        if let Some((p, path)) = &self.profile {
            if let Err(e) = p.write_to(path) {
                tracing::warn!("cannot write the guest profile to {}: {e}", path.display());
            }
        }
        reason
    }
}

fn console_out(config: &VmConfig) -> Result<ConsoleOut, StartError> {
    match config
        .serial
        .as_ref()
        .and_then(|s| s.serial_out_path.as_ref())
    {
        Some(path) => {
            let f = crate::jail::files::open(path, OpenOptions::new().create(true).append(true))
                .map_err(|source| StartError::SerialOut {
                    path: path.display().to_string(),
                    source,
                })?;
            Ok(Box::new(f))
        }
        None => Ok(Box::new(std::io::stdout())),
    }
}

fn irq_line(vm: &Vm, gsi: u32) -> Result<IrqLine, StartError> {
    let evt = EventFd::new(libc::EFD_NONBLOCK).map_err(|e| StartError::Device(e.to_string()))?;
    vm.fd
        .register_irqfd(&evt, gsi)
        .map_err(|e| StartError::Device(format!("irqfd for GSI {gsi}: {e}")))?;
    Ok(IrqLine(evt))
}

/// Builds the kernel command line: the user's arguments (or ours), PVM additions, the root
/// device, and the virtio-mmio devices.
fn build_cmdline(
    config: &VmConfig,
    on_pvm: bool,
    mmio: &[MmioDeviceInfo],
) -> Result<Cmdline, StartError> {
    let boot = config
        .boot_source
        .as_ref()
        .ok_or(StartError::NoBootSource)?;
    let mut args = boot
        .boot_args
        .clone()
        .unwrap_or_else(|| DEFAULT_BOOT_ARGS.to_string());
    if on_pvm {
        args = pvm::guest_cmdline(&args);
    }
    if let Some(root) = config.drives.iter().find(|d| d.is_root_device) {
        if !args.split_whitespace().any(|a| a.starts_with("root=")) {
            let mode = if root.is_read_only { "ro" } else { "rw" };
            args.push_str(&format!(" root=/dev/vda {mode}"));
        }
    }
    let cmdline_err = |e: linux_loader::cmdline::Error| StartError::Cmdline(e.to_string());
    let mut cmdline = Cmdline::try_from(&args, CMDLINE_MAX_SIZE).map_err(cmdline_err)?;
    for d in mmio {
        cmdline
            .add_virtio_mmio_device(d.len, GuestAddress(d.base), d.gsi, None)
            .map_err(cmdline_err)?;
    }
    Ok(cmdline)
}

/// Places the initrd page-aligned at the top of low memory.
fn load_initrd(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    kernel_end: u64,
    path: &std::path::Path,
) -> Result<(u64, u64), StartError> {
    let p = path.display().to_string();
    let mut f = crate::jail::files::open_read(path).map_err(|source| StartError::Initrd {
        path: p.clone(),
        source,
    })?;
    let size = f
        .metadata()
        .map_err(|source| StartError::Initrd {
            path: p.clone(),
            source,
        })?
        .len();
    let top = mem_size.min(MMIO_GAP_START);
    let addr = top.checked_sub(size).map(|a| a & !0xfff);
    let addr = match addr {
        Some(a) if a > kernel_end.max(HIGH_MEMORY_START) => a,
        _ => {
            return Err(StartError::InitrdTooLarge {
                path: p,
                size,
                limit: top,
            })
        }
    };
    mem.read_exact_volatile_from(GuestAddress(addr), &mut f, size as usize)
        .map_err(|e| StartError::Initrd {
            path: p,
            source: std::io::Error::other(e.to_string()),
        })?;
    Ok((addr, size))
}

/// What builds a guest: a configuration booted from its kernel, or a snapshot restored.
#[derive(Clone, Debug)]
pub enum Launch {
    Boot(Box<VmConfig>),
    Restore(SnapshotLoadParams),
}

/// Builds and starts the guest `launch` names.
pub fn launch_guest(launch: &Launch) -> Result<RunningVm, StartError> {
    match launch {
        Launch::Boot(config) => start(config),
        Launch::Restore(params) => restore(params),
    }
}

/// Highest vCPU count we accept (the MADT and CPUID topology handle more).
pub const MAX_VCPUS: u8 = 32;

/// Validates the configuration's resources (files, taps, memory) and boots the guest.
pub fn start(config: &VmConfig) -> Result<RunningVm, StartError> {
    let t0 = Instant::now();
    let boot_src = config
        .boot_source
        .as_ref()
        .ok_or(StartError::NoBootSource)?;
    let mc = &config.machine_config;
    if mc.vcpu_count == 0 || mc.vcpu_count > MAX_VCPUS {
        return Err(StartError::VcpuCount {
            got: mc.vcpu_count,
            max: MAX_VCPUS,
        });
    }
    if mc.mem_size_mib < 64 {
        return Err(StartError::MemoryTooSmall(mc.mem_size_mib));
    }
    let on_pvm = pvm::is_pvm_host();
    let mem_size = (mc.mem_size_mib as u64) << 20;
    let mem = create_guest_memory(mc.mem_size_mib as u64)?;
    let vm = Vm::new(&mem, !on_pvm)?;

    let kernel = boot::load_kernel(&mem, &boot_src.kernel_image_path)?;
    tracing::info!(how = %kernel.how, "kernel loaded");

    let power = PowerSignal::new();
    let serial = SerialConsole::new(irq_line(&vm, COM1_IRQ)?, console_out(config)?)
        .map_err(|e| StartError::Device(format!("serial console: {e}")))?;
    let legacy = LegacyDevices {
        serial,
        i8042: I8042::new(irq_line(&vm, I8042_IRQ)?, power.clone()),
        ged: Ged::new(irq_line(&vm, ACPI_GED_IRQ)?),
    };
    let devices = Devices::attach(config, &vm, &mem, power, legacy, None)?;

    let cmdline = build_cmdline(config, on_pvm, &devices.mmio_infos)?;
    load_cmdline(&mem, GuestAddress(CMDLINE_START), &cmdline)
        .map_err(|e| StartError::Cmdline(e.to_string()))?;
    let cmdline_len = cmdline
        .as_cstring()
        .map_err(|e| StartError::Cmdline(e.to_string()))?
        .as_bytes()
        .len();
    tracing::info!(cmdline = ?cmdline.as_cstring().ok(), "kernel command line");

    let initrd = match &boot_src.initrd_path {
        Some(p) => Some(load_initrd(&mem, mem_size, kernel.end, p)?),
        None => None,
    };
    let rsdp = acpi::create_acpi_tables(&mem, mc.vcpu_count, &devices.mmio_infos)?;
    let inputs = params::BootInputs {
        cmdline_addr: CMDLINE_START,
        cmdline_len,
        initrd,
        rsdp,
    };
    match kernel.mode {
        regs::EntryMode::Linux64 => {
            params::write_zero_page(&mem, mem_size, kernel.setup_header, &inputs)?
        }
        regs::EntryMode::Pvh => params::write_pvh_start_info(&mem, mem_size, &inputs)?,
    }

    let supported = vm
        .kvm
        .get_supported_cpuid(kvm_bindings::KVM_MAX_CPUID_ENTRIES)
        .map_err(|e| StartError::Device(format!("KVM_GET_SUPPORTED_CPUID: {e}")))?;
    let vcpu_count = mc.vcpu_count;
    let boot_mem = mem.clone();
    let setup = |index: u8, fd: &kvm_ioctls::VcpuFd| -> Result<(), StartError> {
        let mut cpuid = supported.clone();
        cpuid::set_topology(&mut cpuid, index, vcpu_count);
        if on_pvm {
            pvm::apply_cpu_template(&mut cpuid);
        }
        fd.set_cpuid2(&cpuid)
            .map_err(|e| StartError::Device(format!("KVM_SET_CPUID2: {e}")))?;
        regs::setup_msrs(fd)?;
        regs::setup_fpu(fd)?;
        regs::setup_lint(fd)?;
        if index == 0 {
            regs::setup_sregs(&boot_mem, fd, kernel.mode)?;
            regs::setup_regs(fd, kernel.mode, kernel.entry.0)?;
        }
        Ok(())
    };
    launch(
        config.clone(),
        vm,
        mem,
        devices,
        vcpu_count,
        &setup,
        true,
        t0,
    )
}

/// Builds the guest a snapshot holds, in a fresh process: memory mapped privately from the
/// memory file, the VM's and each vCPU's state, the devices as saved, disks and taps
/// reopened from the configuration stored in the snapshot. The vCPUs wait paused unless
/// `resume_vm`.
pub fn restore(params: &SnapshotLoadParams) -> Result<RunningVm, StartError> {
    let t0 = Instant::now();
    let saved: GuestSnapshot = snapshot::file::read(&params.snapshot_path)
        .map_err(|e| StartError::Snapshot(e.to_string()))?;
    let mut config: VmConfig = serde_json::from_str(&saved.config_json).map_err(|e| {
        StartError::Snapshot(format!("the configuration it holds does not parse: {e}"))
    })?;
    params
        .apply_overrides(&mut config)
        .map_err(|e| StartError::Snapshot(e.to_string()))?;
    let vcpu_count = u8::try_from(saved.vcpus.len())
        .ok()
        .filter(|&n| n != 0 && n <= MAX_VCPUS)
        .ok_or_else(|| StartError::Snapshot(format!("it holds {} vCPUs", saved.vcpus.len())))?;
    let mem = snapshot::memory::restore(&params.mem_backend.backend_path, &saved.memory)
        .map_err(|e| StartError::Snapshot(e.to_string()))?;
    let on_pvm = pvm::is_pvm_host();
    let vm = Vm::new(&mem, !on_pvm)?;
    // Before any vCPU exists, as KVM wants the irqchips and clock of a VM that has not run.
    saved
        .vm
        .restore(&vm)
        .map_err(|e| StartError::Snapshot(e.to_string()))?;
    let power = PowerSignal::new();
    let snapshot_err = |e: &dyn std::fmt::Display| StartError::Snapshot(e.to_string());
    let legacy = LegacyDevices {
        serial: SerialConsole::from_state(
            &saved.serial,
            irq_line(&vm, COM1_IRQ)?,
            console_out(&config)?,
        )
        .map_err(|e| snapshot_err(&e))?,
        i8042: I8042::from_state(&saved.i8042, irq_line(&vm, I8042_IRQ)?, power.clone())
            .map_err(|e| snapshot_err(&e))?,
        ged: Ged::from_state(&saved.ged, irq_line(&vm, ACPI_GED_IRQ)?)
            .map_err(|e| snapshot_err(&e))?,
    };
    let devices = Devices::attach(&config, &vm, &mem, power, legacy, Some(&saved.transports))?;
    let setup = |index: u8, fd: &kvm_ioctls::VcpuFd| -> Result<(), StartError> {
        let state = saved
            .vcpus
            .get(usize::from(index))
            .ok_or_else(|| StartError::Snapshot(format!("no state for vCPU {index}")))?;
        state
            .restore(fd)
            .map_err(|e| StartError::Snapshot(format!("vCPU {index}: {e}")))
    };
    launch(
        config,
        vm,
        mem,
        devices,
        vcpu_count,
        &setup,
        params.resume_vm,
        t0,
    )
}

/// The port-I/O devices of a guest being built, fresh or as a snapshot saved them.
struct LegacyDevices {
    serial: SerialConsole,
    i8042: I8042,
    ged: Ged,
}

/// The devices of a guest being built, on their buses and event loop.
struct Devices {
    power: Arc<PowerSignal>,
    pio: Bus,
    mmio: Bus,
    serial: Arc<Mutex<SerialConsole>>,
    i8042: Arc<Mutex<I8042>>,
    ged: Arc<Mutex<Ged>>,
    event_manager: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>>,
    device_loop: Arc<DeviceLoopGate>,
    mmio_infos: Vec<MmioDeviceInfo>,
    handles: VirtioHandles,
    transports: Vec<Arc<Mutex<mmio::MmioTransport>>>,
}

impl Devices {
    /// Puts the legacy devices on the port bus and the virtio devices on the MMIO bus, with
    /// the transports as `saved` holds them when restoring.
    fn attach(
        config: &VmConfig,
        vm: &Vm,
        mem: &GuestMemoryMmap,
        power: Arc<PowerSignal>,
        legacy: LegacyDevices,
        saved: Option<&[mmio::MmioTransportState]>,
    ) -> Result<Devices, StartError> {
        let mut pio = Bus::new();
        let serial = Arc::new(Mutex::new(legacy.serial));
        let i8042 = Arc::new(Mutex::new(legacy.i8042));
        let ged = Arc::new(Mutex::new(legacy.ged));
        let acpi_pm = Arc::new(Mutex::new(AcpiPm::new(power.clone())));
        let bus_err = |e: crate::devices::bus::BusError| StartError::Device(e.to_string());
        pio.insert(
            serial.clone() as Arc<Mutex<dyn BusDevice>>,
            COM1_PORT.into(),
            8,
        )
        .map_err(bus_err)?;
        pio.insert(
            i8042.clone() as Arc<Mutex<dyn BusDevice>>,
            I8042_PORT.into(),
            5,
        )
        .map_err(bus_err)?;
        pio.insert(
            acpi_pm as Arc<Mutex<dyn BusDevice>>,
            ACPI_PM_PORT.into(),
            ACPI_PM_LEN.into(),
        )
        .map_err(bus_err)?;
        pio.insert(
            ged.clone() as Arc<Mutex<dyn BusDevice>>,
            ACPI_GED_PORT.into(),
            ACPI_GED_LEN.into(),
        )
        .map_err(bus_err)?;

        let mut event_manager: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> =
            EventManager::new().map_err(|e| StartError::Device(format!("event manager: {e}")))?;
        event_manager.add_subscriber(Arc::new(Mutex::new(ConsoleInput::new(serial.clone()))));
        if let Some(path) = config.serial.as_ref().and_then(|s| s.socket_path.as_ref()) {
            let path = crate::jail::own_path(path)
                .map_err(|e| StartError::Device(format!("serial socket: {e}")))?;
            let socket = ConsoleSocket::bind(&path, serial.clone())
                .map_err(|e| StartError::Device(e.to_string()))?;
            event_manager.add_subscriber(Arc::new(Mutex::new(socket)));
        }
        let device_loop = DeviceLoopGate::new()
            .map_err(|e| StartError::Device(format!("device loop gate: {e}")))?;
        event_manager.add_subscriber(Arc::new(Mutex::new(device_loop.subscriber())));
        let mut mmio = Bus::new();
        let (mmio_infos, handles, transports) =
            attach_virtio_devices(config, vm, mem, &mut event_manager, &mut mmio, saved)?;
        Ok(Devices {
            power,
            pio,
            mmio,
            serial,
            i8042,
            ged,
            event_manager,
            device_loop,
            mmio_infos,
            handles,
            transports,
        })
    }
}

/// Starts the device loop and the vCPU threads of a guest whose memory and devices are in
/// place; `setup` readies each new vCPU (boot registers, or its saved state).
#[allow(clippy::too_many_arguments)]
fn launch(
    config: VmConfig,
    vm: Vm,
    mem: GuestMemoryMmap,
    devices: Devices,
    vcpu_count: u8,
    setup: &dyn Fn(u8, &kvm_ioctls::VcpuFd) -> Result<(), StartError>,
    run: bool,
    t0: Instant,
) -> Result<RunningVm, StartError> {
    let on_pvm = pvm::is_pvm_host();
    let Devices {
        power,
        pio,
        mmio,
        serial,
        i8042,
        ged,
        event_manager,
        device_loop: gate,
        mmio_infos: _,
        handles,
        transports,
    } = devices;
    let msr_indices = snapshot::vcpu::saved_msr_indices(&vm.kvm)
        .map_err(|e| StartError::Device(format!("MSRs a snapshot saves: {e}")))?;
    let event_thread = std::thread::Builder::new()
        .name("devices".into())
        .spawn(move || device_loop(event_manager))
        .map_err(|source| StartError::Thread {
            what: "devices",
            source,
        })?;
    drop(event_thread);

    crate::vstate::vcpu::install_kick_handler()
        .map_err(|e| StartError::Device(format!("vCPU kick signal: {e}")))?;
    let control = Arc::new(VcpuControl::default());
    if !run {
        // Before any vCPU thread exists: each one starts out waiting.
        control.pause(&[]);
    }
    let counters = Arc::new(ExitCounters::default());
    let pvm_stats = on_pvm.then(|| Arc::new(pvm::PvmStats::default()));
    let pio = Arc::new(pio);
    let mmio_bus = Arc::new(mmio);
    let profile_path = std::env::var_os(PROFILE_ENV).map(std::path::PathBuf::from);
    let profile = profile_path
        .as_ref()
        .map(|_| Arc::new(crate::vstate::vcpu::GuestProfile::default()));
    let mut vcpus = Vec::new();
    for index in 0..vcpu_count {
        let fd = vm
            .fd
            .create_vcpu(u64::from(index))
            .map_err(|e| StartError::Device(format!("KVM_CREATE_VCPU {index}: {e}")))?;
        setup(index, &fd)?;
        let on_first_run: Option<Box<dyn FnOnce() + Send>> = (index == 0).then(|| {
            Box::new(move || {
                let since_start = crate::PROCESS_START.get().map(|s| s.elapsed());
                tracing::info!(?since_start, build = ?t0.elapsed(), "first KVM_RUN");
            }) as Box<dyn FnOnce() + Send>
        });
        let ctx = VcpuContext {
            index,
            mem: mem.clone(),
            pio: pio.clone(),
            mmio: mmio_bus.clone(),
            power: power.clone(),
            control: control.clone(),
            counters: counters.clone(),
            pvm: pvm_stats
                .as_ref()
                .map(|s| pvm::PvmVcpu::new(index, s.clone())),
            on_first_run,
            profile: (index == 0).then(|| profile.clone()).flatten(),
        };
        vcpus.push(
            VcpuHandle::spawn(fd, ctx).map_err(|source| StartError::Thread {
                what: "vcpu",
                source,
            })?,
        );
    }
    let kicker_err = |source| StartError::Thread {
        what: "kicker",
        source,
    };
    for (i, v) in vcpus.iter().enumerate() {
        if i == 0 && profile.is_some() {
            v.start_kicker("sampler", PROFILE_PERIOD)
                .map_err(kicker_err)?;
        } else if on_pvm {
            // A vCPU whose guest code never exits (an AP running user processes, say) would
            // otherwise never re-arm its SYSCALL repair after the guest set up its IDT.
            v.start_kicker(&format!("pvm-kick{i}"), PVM_KICK_PERIOD)
                .map_err(kicker_err)?;
        }
    }
    Ok(RunningVm {
        profile: profile.zip(profile_path),
        devices: handles,
        vcpus,
        control,
        power,
        i8042,
        ged,
        stats: StatsSources {
            exits: counters,
            pvm: pvm_stats,
        },
        config,
        vm,
        mem,
        serial,
        transports,
        device_loop: gate,
        msr_indices,
    })
}

/// The virtio devices the API may change while the guest runs, by id.
#[derive(Default)]
struct VirtioHandles {
    drives: Vec<(String, Arc<Mutex<crate::devices::virtio::block::Block>>)>,
    interfaces: Vec<(String, Arc<Mutex<crate::devices::virtio::net::Net>>)>,
}

/// One virtio device to attach, in the order the guest enumerates them (root drive first,
/// so it is /dev/vda).
enum VirtioSpec<'a> {
    Block(&'a crate::config::DriveConfig),
    Net(&'a crate::config::NetworkInterfaceConfig),
    Rng,
}

/// The virtio devices' MMIO windows, the handles the API changes, the transports a
/// snapshot saves.
type AttachedVirtio = (
    Vec<MmioDeviceInfo>,
    VirtioHandles,
    Vec<Arc<Mutex<mmio::MmioTransport>>>,
);

/// Creates each virtio device (or, with `saved`, restores each transport as saved: the
/// snapshot's devices must be the configuration's, in the same order), its mmio transport, irqfd and ioeventfds, and puts it on the
/// MMIO bus and the device event loop.
fn attach_virtio_devices(
    config: &VmConfig,
    vm: &Vm,
    mem: &GuestMemoryMmap,
    em: &mut EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>>,
    bus: &mut Bus,
    saved: Option<&[mmio::MmioTransportState]>,
) -> Result<AttachedVirtio, StartError> {
    use crate::devices::virtio::{block, net, rng, IrqTrigger, VirtioDevice};
    let dev_err = |what: String| StartError::Device(what);
    let mut specs: Vec<VirtioSpec> = Vec::new();
    specs.extend(
        config
            .drives
            .iter()
            .filter(|d| d.is_root_device)
            .map(VirtioSpec::Block),
    );
    specs.extend(
        config
            .drives
            .iter()
            .filter(|d| !d.is_root_device)
            .map(VirtioSpec::Block),
    );
    specs.extend(config.network_interfaces.iter().map(VirtioSpec::Net));
    if config.entropy.is_some() {
        specs.push(VirtioSpec::Rng);
    }
    let max = (IOAPIC_PINS - VIRTIO_IRQ_BASE) as usize;
    if specs.len() > max {
        return Err(dev_err(format!(
            "{} virtio devices, at most {max} fit",
            specs.len()
        )));
    }
    if let Some(saved) = saved.filter(|t| t.len() != specs.len()) {
        return Err(StartError::Snapshot(format!(
            "it holds {} virtio devices and its configuration {}",
            saved.len(),
            specs.len()
        )));
    }
    let mut infos = Vec::new();
    let mut handles = VirtioHandles::default();
    let mut transports = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let base = VIRTIO_MMIO_START + i as u64 * VIRTIO_MMIO_SIZE;
        let gsi = VIRTIO_IRQ_BASE + i as u32;
        let device: Arc<Mutex<dyn VirtioDevice>> = match spec {
            VirtioSpec::Block(d) => {
                let dev = block::Block::new(block::BlockConfig {
                    id: d.drive_id.clone(),
                    path: d.path_on_host.clone(),
                    read_only: d.is_read_only,
                    flush: d.cache_type.as_deref() == Some("Writeback"),
                    rate_limiter: d.rate_limiter,
                })
                .map_err(|e| dev_err(format!("drive {}: {e}", d.drive_id)))?;
                let dev = Arc::new(Mutex::new(dev));
                em.add_subscriber(dev.clone());
                handles.drives.push((d.drive_id.clone(), dev.clone()));
                dev
            }
            VirtioSpec::Net(n) => {
                let mac = match &n.guest_mac {
                    Some(m) => Some(crate::config::parse_mac(m).ok_or_else(|| {
                        dev_err(format!(
                            "network interface {}: bad guest_mac {m}",
                            n.iface_id
                        ))
                    })?),
                    None => None,
                };
                let dev = net::Net::new(net::NetConfig {
                    id: n.iface_id.clone(),
                    tap_name: n.host_dev_name.clone(),
                    mac,
                    rx_rate_limiter: n.rx_rate_limiter,
                    tx_rate_limiter: n.tx_rate_limiter,
                })
                .map_err(|e| dev_err(format!("network interface {}: {e}", n.iface_id)))?;
                let dev = Arc::new(Mutex::new(dev));
                em.add_subscriber(dev.clone());
                handles.interfaces.push((n.iface_id.clone(), dev.clone()));
                dev
            }
            VirtioSpec::Rng => {
                let dev = rng::Rng::new().map_err(|e| dev_err(format!("entropy: {e}")))?;
                let dev = Arc::new(Mutex::new(dev));
                em.add_subscriber(dev.clone());
                dev
            }
        };
        let irq = Arc::new(IrqTrigger::new().map_err(|e| dev_err(format!("irq eventfd: {e}")))?);
        vm.fd
            .register_irqfd(irq.irq_evt(), gsi)
            .map_err(|e| dev_err(format!("irqfd for GSI {gsi}: {e}")))?;
        let transport = match saved.and_then(|t| t.get(i)) {
            Some(state) => mmio::MmioTransport::restore(mem.clone(), device, irq, state)
                .map_err(|e| StartError::Snapshot(format!("virtio device {i}: {e}")))?,
            None => mmio::MmioTransport::new(mem.clone(), device, irq)
                .map_err(|e| dev_err(format!("virtio-mmio transport: {e}")))?,
        };
        for (q, evt) in transport.queue_evts().iter().enumerate() {
            let addr = kvm_ioctls::IoEventAddress::Mmio(base + mmio::MMIO_QUEUE_NOTIFY_OFFSET);
            vm.fd
                .register_ioevent(evt, &addr, q as u32)
                .map_err(|e| dev_err(format!("ioeventfd for queue {q}: {e}")))?;
        }
        let transport = Arc::new(Mutex::new(transport));
        transports.push(transport.clone());
        bus.insert(transport, base, mmio::MMIO_WINDOW_SIZE)
            .map_err(|e| dev_err(e.to_string()))?;
        infos.push(MmioDeviceInfo {
            base,
            len: VIRTIO_MMIO_SIZE,
            gsi,
        });
    }
    Ok((infos, handles, transports))
}

/// The `devices` thread: runs virtio queue and backend events until the process exits.
fn device_loop(mut em: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>>) {
    crate::seccomp::install_or_exit(crate::seccomp::ThreadKind::Devices);
    loop {
        if let Err(e) = em.run() {
            // The guest's devices would be dead: stop the whole VM with the error.
            tracing::error!("device event loop failed: {e}");
            eprintln!("outpost-vmm: the device event loop failed: {e}");
            std::process::exit(crate::EXIT_ERROR);
        }
    }
}
