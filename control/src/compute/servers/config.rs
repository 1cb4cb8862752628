//! The `[compute]` and `[guest]` sections of outpostd's configuration: the monitor binary,
//! the host's inventory (measured on the machine unless configured), scheduler options,
//! timeouts, and the appliance's default guest.
//!
//! ```toml
//! [compute]
//! monitor = "/usr/local/bin/outpost-vmm"  # default: next to outpostd, else found on PATH
//! host = "box1"                           # default: the machine's host name
//! vcpus = 8                               # default: online CPUs
//! ram_mb = 16384                          # default: MemTotal
//! disk_gb = 200                           # default: size of the state directory's file system
//! reserved_host_memory_mb = 512
//! cpu_allocation_ratio = 4.0
//! shutdown_timeout_secs = 60              # os-stop, delete: the power button, then stop hard
//! stop_timeout_secs = 30                  # the hard stop: SIGTERM, then SIGKILL after this
//! soft_reboot_timeout_secs = 120          # reboot SOFT: the power button, then HARD after this
//! resume_guests_state_on_host_boot = true # after a host reboot, start the servers that ran
//! [compute.jail]                          # monitor::jail (each monitor's uid, root, cgroup)
//! enabled = true
//! [compute.scheduler]                     # outpost_resources::SchedulerConfig
//! enabled_filters = ["ComputeFilter"]
//! [guest]
//! kernel = "/var/cache/outpost/guest/current/test-vmlinux"
//! initrd = "/path/to/initrd"              # default: none
//! boot_args = "console=ttyS0 reboot=k panic=1 outpost.end=wait"
//! rootfs = "/var/cache/outpost/guest/current/rootfs.ext4"
//! image_id = "outpost-guest"              # the imageRef that boots this guest
//! ```

use super::monitor::jail::{JailConfigError, JailSection, JailSettings};
use outpost_resources::{HostConfig, SchedulerConfig};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the project's guest assets are (guest/README.md).
pub const GUEST_ASSETS: &str = "/var/cache/outpost/guest/current";
pub const DEFAULT_BOOT_ARGS: &str = "console=ttyS0 reboot=k panic=1 outpost.end=wait";
pub const DEFAULT_GUEST_IMAGE_ID: &str = "outpost-guest";
pub const MONITOR_BINARY: &str = "outpost-vmm";
const DEFAULT_STOP_TIMEOUT_SECS: u64 = 30;
/// Nova's `shutdown_timeout`.
const DEFAULT_SHUTDOWN_TIMEOUT_SECS: u64 = 60;
/// Nova's `[libvirt] wait_soft_reboot_seconds`.
const DEFAULT_SOFT_REBOOT_TIMEOUT_SECS: u64 = 120;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ComputeConfigError {
    #[error("compute.{0} must be a finite number above 0")]
    Ratio(&'static str),
    #[error("compute.{0} must be at least 1")]
    Zero(&'static str),
    #[error("compute.host must not be empty")]
    Host,
    #[error("compute.scheduler: {0}")]
    Scheduler(String),
    #[error(transparent)]
    Jail(#[from] JailConfigError),
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComputeSection {
    pub monitor: Option<PathBuf>,
    pub host: Option<String>,
    pub vcpus: Option<u64>,
    pub ram_mb: Option<u64>,
    pub disk_gb: Option<u64>,
    pub reserved_host_memory_mb: Option<u64>,
    pub reserved_host_cpus: Option<u64>,
    pub reserved_host_disk_mb: Option<u64>,
    pub cpu_allocation_ratio: Option<f64>,
    pub ram_allocation_ratio: Option<f64>,
    pub disk_allocation_ratio: Option<f64>,
    pub shutdown_timeout_secs: Option<u64>,
    pub stop_timeout_secs: Option<u64>,
    pub soft_reboot_timeout_secs: Option<u64>,
    pub resume_guests_state_on_host_boot: Option<bool>,
    pub scheduler: Option<SchedulerConfig>,
    pub jail: Option<JailSection>,
}

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestSection {
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub boot_args: Option<String>,
    pub rootfs: Option<PathBuf>,
    pub image_id: Option<String>,
}

/// The appliance's default guest: what `image_id` boots, and the kernel every image-backed
/// server gets until images carry their own (`kernel_id`/`ramdisk_id` properties).
#[derive(Debug, Clone, PartialEq)]
pub struct GuestSettings {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub boot_args: String,
    pub rootfs: PathBuf,
    pub image_id: String,
}

impl GuestSettings {
    pub fn resolve(section: &GuestSection) -> GuestSettings {
        let assets = Path::new(GUEST_ASSETS);
        GuestSettings {
            kernel: section
                .kernel
                .clone()
                .unwrap_or_else(|| assets.join("test-vmlinux")),
            initrd: section.initrd.clone(),
            boot_args: section
                .boot_args
                .clone()
                .unwrap_or_else(|| DEFAULT_BOOT_ARGS.to_owned()),
            rootfs: section
                .rootfs
                .clone()
                .unwrap_or_else(|| assets.join("rootfs.ext4")),
            image_id: section
                .image_id
                .clone()
                .unwrap_or_else(|| DEFAULT_GUEST_IMAGE_ID.to_owned()),
        }
    }
}

/// What the machine offers when the configuration does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    pub vcpus: u64,
    pub ram_mb: u64,
    pub disk_gb: u64,
    /// Whether outpostd runs as root, which jailing its monitors needs.
    pub root: bool,
}

impl Machine {
    /// Online CPUs, MemTotal, and the size of the file system holding `state_dir`. A value
    /// that cannot be read is 0, which the operator then has to configure.
    pub fn measure(state_dir: &Path) -> Machine {
        let vcpus = std::thread::available_parallelism().map_or(0, |n| n.get() as u64);
        let ram_mb = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| mem_total_kib(&m))
            .map_or(0, |kib| kib / 1024);
        Machine {
            vcpus,
            ram_mb,
            disk_gb: filesystem_gib(state_dir).unwrap_or(0),
            root: rustix::process::geteuid().is_root(),
        }
    }
}

fn mem_total_kib(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn filesystem_gib(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs is plain data that the call fills in; zeroed is a valid value for it.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a NUL-terminated path and `st` a valid, exclusively borrowed statvfs.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    Some((st.f_blocks as u64).saturating_mul(st.f_frsize as u64) >> 30)
}

/// The resolved compute settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ComputeSettings {
    pub monitor: PathBuf,
    pub host: String,
    pub inventory: HostConfig,
    pub scheduler: SchedulerConfig,
    /// Nova's `shutdown_timeout`: how long os-stop and delete wait for a guest to power
    /// off after its power button is pressed, before stopping it hard. Zero skips the
    /// button. An image's `os_shutdown_timeout` wins.
    pub shutdown_timeout: Duration,
    pub stop_timeout: Duration,
    pub soft_reboot_timeout: Duration,
    /// Nova's option of the same name (its default is off; an appliance nobody tends after
    /// a power cut wants it on): at the first start after the host rebooted, the servers
    /// that were running are started again, the stopped ones stay off.
    pub resume_guests_state_on_host_boot: bool,
    /// None: monitors run unjailed.
    pub jail: Option<JailSettings>,
    /// `[cluster] ha_reserve`: creates keep room for any one box's servers on the others
    /// (a site only; a box alone has nowhere to evacuate to).
    pub failure_reserve: bool,
}

impl ComputeSettings {
    pub fn resolve(
        section: &ComputeSection,
        machine: Machine,
    ) -> Result<ComputeSettings, ComputeConfigError> {
        let mut inventory = HostConfig::new(
            section.vcpus.unwrap_or(machine.vcpus),
            section.ram_mb.unwrap_or(machine.ram_mb),
            section.disk_gb.unwrap_or(machine.disk_gb),
        );
        if let Some(v) = section.reserved_host_memory_mb {
            inventory.reserved_host_memory_mb = v;
        }
        if let Some(v) = section.reserved_host_cpus {
            inventory.reserved_host_cpus = v;
        }
        if let Some(v) = section.reserved_host_disk_mb {
            inventory.reserved_host_disk_mb = v;
        }
        for (name, value, slot) in [
            (
                "cpu_allocation_ratio",
                section.cpu_allocation_ratio,
                &mut inventory.cpu_allocation_ratio,
            ),
            (
                "ram_allocation_ratio",
                section.ram_allocation_ratio,
                &mut inventory.ram_allocation_ratio,
            ),
            (
                "disk_allocation_ratio",
                section.disk_allocation_ratio,
                &mut inventory.disk_allocation_ratio,
            ),
        ] {
            if let Some(v) = value {
                if !(v.is_finite() && v > 0.0) {
                    return Err(ComputeConfigError::Ratio(name));
                }
                *slot = v;
            }
        }
        if inventory.vcpus == 0 {
            return Err(ComputeConfigError::Zero("vcpus"));
        }
        if inventory.ram_mb == 0 {
            return Err(ComputeConfigError::Zero("ram_mb"));
        }
        let host = match &section.host {
            Some(h) if h.trim().is_empty() => return Err(ComputeConfigError::Host),
            Some(h) => h.clone(),
            None => machine_hostname().unwrap_or_else(|| "localhost".to_owned()),
        };
        let scheduler = section.scheduler.clone().unwrap_or_default();
        scheduler
            .validate()
            .map_err(|e| ComputeConfigError::Scheduler(e.to_string()))?;
        let secs = |v: Option<u64>, default: u64, name| match v.unwrap_or(default) {
            0 => Err(ComputeConfigError::Zero(name)),
            n => Ok(Duration::from_secs(n)),
        };
        Ok(ComputeSettings {
            monitor: section.monitor.clone().unwrap_or_else(default_monitor),
            host,
            inventory,
            scheduler,
            shutdown_timeout: Duration::from_secs(
                section
                    .shutdown_timeout_secs
                    .unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT_SECS),
            ),
            stop_timeout: secs(
                section.stop_timeout_secs,
                DEFAULT_STOP_TIMEOUT_SECS,
                "stop_timeout_secs",
            )?,
            soft_reboot_timeout: secs(
                section.soft_reboot_timeout_secs,
                DEFAULT_SOFT_REBOOT_TIMEOUT_SECS,
                "soft_reboot_timeout_secs",
            )?,
            resume_guests_state_on_host_boot: section
                .resume_guests_state_on_host_boot
                .unwrap_or(true),
            jail: JailSettings::resolve(section.jail.as_ref(), machine.root)?,
            failure_reserve: false,
        })
    }
}

fn machine_hostname() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// `outpost-vmm` beside the running executable (how the workspace builds and installs them),
/// else the bare name, which the spawn looks up on PATH.
fn default_monitor() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join(MONITOR_BINARY)))
        .filter(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(MONITOR_BINARY))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MACHINE: Machine = Machine {
        vcpus: 2,
        ram_mb: 4096,
        disk_gb: 100,
        root: true,
    };

    #[test]
    fn the_machine_fills_in_what_is_not_configured() {
        let s = ComputeSettings::resolve(&ComputeSection::default(), MACHINE).unwrap();
        assert_eq!(s.inventory, HostConfig::new(2, 4096, 100));
        assert_eq!(s.stop_timeout, Duration::from_secs(30));
        assert_eq!(
            s.shutdown_timeout,
            Duration::from_secs(60),
            "Nova's default"
        );
        let section: ComputeSection = toml::from_str(
            "vcpus = 4\nram_allocation_ratio = 1.5\nhost = \"box1\"\n[scheduler]\n\
             enabled_filters = []\n",
        )
        .unwrap();
        let s = ComputeSettings::resolve(&section, MACHINE).unwrap();
        // Zero is Nova's "no clean shutdown", not an error.
        let no_button: ComputeSection = toml::from_str("shutdown_timeout_secs = 0").unwrap();
        let no_button = ComputeSettings::resolve(&no_button, MACHINE).unwrap();
        assert_eq!(no_button.shutdown_timeout, Duration::ZERO);
        assert_eq!(s.inventory.vcpus, 4);
        assert_eq!(s.inventory.ram_mb, 4096);
        assert_eq!(s.inventory.ram_allocation_ratio, 1.5);
        assert_eq!(s.host, "box1");
        assert!(s.scheduler.enabled_filters.is_empty());
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = |text: &str| ComputeSettings::resolve(&toml::from_str(text).unwrap(), MACHINE);
        assert_eq!(
            bad("cpu_allocation_ratio = 0.0"),
            Err(ComputeConfigError::Ratio("cpu_allocation_ratio"))
        );
        assert_eq!(bad("vcpus = 0"), Err(ComputeConfigError::Zero("vcpus")));
        assert_eq!(bad("host = \" \""), Err(ComputeConfigError::Host));
        assert!(toml::from_str::<ComputeSection>("vcpu = 1").is_err());
        assert!(toml::from_str::<GuestSection>("kernal = \"/k\"").is_err());
    }

    #[test]
    fn guest_defaults_are_the_project_assets() {
        let g = GuestSettings::resolve(&GuestSection::default());
        assert_eq!(
            g.kernel,
            PathBuf::from("/var/cache/outpost/guest/current/test-vmlinux")
        );
        assert_eq!(g.initrd, None);
        assert!(g.boot_args.contains("outpost.end=wait"));
        assert_eq!(g.image_id, "outpost-guest");
    }

    #[test]
    fn meminfo_and_statvfs() {
        assert_eq!(
            mem_total_kib("MemFree: 1 kB\nMemTotal:  2048 kB\n"),
            Some(2048)
        );
        assert!(filesystem_gib(Path::new("/")).is_some());
        assert_eq!(filesystem_gib(Path::new("/nonexistent/x")), None);
    }
}
