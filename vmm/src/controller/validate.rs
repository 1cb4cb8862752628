//! Pre-boot checks of each configuration item and of the whole configuration, so a bad
//! request or config file is refused with a message before anything is built.
//!
//! Checks that need the host (files, network devices, memory size) look at the real host;
//! the builder repeats what can change in between (it opens the files at start).

use super::VmmActionError;
use crate::config::parse_mac;
use crate::config::{
    BootSourceConfig, DeadlineConfig, DriveConfig, LoggerConfig, MachineConfig, MmdsConfig,
    NetworkInterfaceConfig, SerialConfig, VmConfig,
};
use std::collections::HashSet;
use std::fs::OpenOptions;
use std::path::Path;

/// Largest guest we build; the lead's vCPU layout (MP table / MADT) is sized for it.
pub const MAX_VCPUS: u8 = 32;
/// Smallest guest memory: below this a stock kernel with an initrd does not come up.
pub const MIN_MEM_MIB: usize = 64;
/// Longest id (drive, interface, instance); Firecracker uses the same bound.
pub const MAX_ID_LEN: usize = 64;
/// IFNAMSIZ (16) minus the terminating NUL.
pub const MAX_IFNAME_LEN: usize = 15;
/// Firecracker's `cache_type` values.
const CACHE_TYPES: &[&str] = &["Unsafe", "Writeback"];
/// Firecracker's static CPU template names; accepted and ignored (no template is applied).
const CPU_TEMPLATES: &[&str] = &["None", "C3", "T2", "T2S", "T2CL", "T2A", "V1N1"];
/// Firecracker's `huge_pages` values; accepted, guest memory uses ordinary pages.
const HUGE_PAGES: &[&str] = &["None", "2M"];
/// Firecracker's `io_engine` values; both are served with synchronous I/O.
const IO_ENGINES: &[&str] = &["Sync", "Async"];
/// Firecracker's logger levels (matched without regard to case).
const LOG_LEVELS: &[&str] = &["Error", "Warning", "Info", "Debug", "Trace", "Off"];
/// Firecracker's MMDS versions.
const MMDS_VERSIONS: &[&str] = &["V1", "V2"];

/// `value` is one of `allowed`, or the error names the field and the choices.
fn one_of(
    field: &'static str,
    value: &str,
    allowed: &'static [&'static str],
    ignore_case: bool,
) -> Result<(), VmmActionError> {
    let found = allowed.iter().any(|a| {
        if ignore_case {
            a.eq_ignore_ascii_case(value)
        } else {
            *a == value
        }
    });
    if found {
        Ok(())
    } else {
        Err(VmmActionError::InvalidChoice {
            field,
            value: value.to_owned(),
            allowed: allowed.join(", "),
        })
    }
}

/// What the host can give a guest, read once when the controller is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostLimits {
    /// `MemTotal` from /proc/meminfo in MiB; `None` when it could not be read (then unchecked).
    pub mem_total_mib: Option<usize>,
}

impl HostLimits {
    /// Reads the host's limits; a missing or odd /proc/meminfo leaves memory unchecked. Read
    /// once, at the first call, which the monitor makes before it enters its jail (where
    /// /proc is not mounted).
    pub fn probe() -> Self {
        static LIMITS: std::sync::OnceLock<HostLimits> = std::sync::OnceLock::new();
        *LIMITS.get_or_init(|| {
            let mem_total_mib = std::fs::read_to_string("/proc/meminfo")
                .ok()
                .and_then(|text| parse_mem_total_mib(&text));
            HostLimits { mem_total_mib }
        })
    }
}

/// `MemTotal:       24684084 kB` → MiB.
fn parse_mem_total_mib(meminfo: &str) -> Option<usize> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut fields = line.split_whitespace().skip(1);
    let value: usize = fields.next()?.parse().ok()?;
    match fields.next() {
        Some("kB") => Some(value / 1024),
        _ => None,
    }
}

/// Ids (drive, interface, instance) are what Firecracker accepts: 1..=64 of `[A-Za-z0-9_-]`.
pub fn validate_id(kind: &'static str, id: &str) -> Result<(), VmmActionError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(VmmActionError::InvalidId {
            kind,
            id: id.to_owned(),
        })
    }
}

pub fn validate_machine_config(
    mc: &MachineConfig,
    host: &HostLimits,
) -> Result<(), VmmActionError> {
    if mc.vcpu_count == 0 || mc.vcpu_count > MAX_VCPUS {
        return Err(VmmActionError::VcpuCountOutOfRange {
            count: mc.vcpu_count,
            max: MAX_VCPUS,
        });
    }
    if mc.mem_size_mib < MIN_MEM_MIB {
        return Err(VmmActionError::MemoryTooSmall {
            mib: mc.mem_size_mib,
            min: MIN_MEM_MIB,
        });
    }
    if let Some(host_mib) = host.mem_total_mib {
        if mc.mem_size_mib > host_mib {
            return Err(VmmActionError::MemoryExceedsHost {
                mib: mc.mem_size_mib,
                host_mib,
            });
        }
    }
    if let Some(template) = &mc.cpu_template {
        if !CPU_TEMPLATES.contains(&template.as_str()) {
            return Err(VmmActionError::InvalidCpuTemplate {
                template: template.clone(),
            });
        }
    }
    if let Some(huge_pages) = &mc.huge_pages {
        one_of("huge_pages", huge_pages, HUGE_PAGES, false)?;
    }
    Ok(())
}

/// Longest deadline accepted: a renewal that far off is no longer a fence.
pub const MAX_DEADLINE_MS: u64 = 10 * 60 * 1000;

/// `vm/deadline`: a positive delay of at most [`MAX_DEADLINE_MS`] (a pause now is a
/// `PATCH /vm`).
pub fn validate_deadline(deadline: &DeadlineConfig) -> Result<(), VmmActionError> {
    if (1..=MAX_DEADLINE_MS).contains(&deadline.pause_in_ms) {
        Ok(())
    } else {
        Err(VmmActionError::DeadlineOutOfRange {
            ms: deadline.pause_in_ms,
            max: MAX_DEADLINE_MS,
        })
    }
}

/// `logger`: only the level is checked (nothing else is acted on).
pub fn validate_logger(logger: &LoggerConfig) -> Result<(), VmmActionError> {
    if let Some(level) = &logger.level {
        one_of("logger level", level, LOG_LEVELS, true)?;
    }
    Ok(())
}

/// `mmds-config`: a known version, a link-local address, and interfaces that exist.
pub fn validate_mmds_config(
    mmds: &MmdsConfig,
    ifaces: &[NetworkInterfaceConfig],
) -> Result<(), VmmActionError> {
    if let Some(version) = &mmds.version {
        one_of("mmds-config version", version, MMDS_VERSIONS, false)?;
    }
    if let Some(addr) = &mmds.ipv4_address {
        let link_local = addr
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_link_local());
        if !link_local {
            return Err(VmmActionError::InvalidMmdsAddress {
                address: addr.clone(),
            });
        }
    }
    for id in &mmds.network_interfaces {
        if !ifaces.iter().any(|i| &i.iface_id == id) {
            return Err(VmmActionError::UnknownNetworkInterface {
                iface_id: id.clone(),
            });
        }
    }
    Ok(())
}

/// A readable regular file, or why not (for the error message).
fn readable_file(path: &Path) -> Result<(), String> {
    let file = crate::jail::files::open_read(path).map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if meta.is_file() {
        Ok(())
    } else {
        Err("not a regular file".to_owned())
    }
}

pub fn validate_boot_source(bs: &BootSourceConfig) -> Result<(), VmmActionError> {
    readable_file(&bs.kernel_image_path).map_err(|reason| VmmActionError::KernelNotUsable {
        path: bs.kernel_image_path.clone(),
        reason,
    })?;
    if let Some(initrd) = &bs.initrd_path {
        readable_file(initrd).map_err(|reason| VmmActionError::InitrdNotUsable {
            path: initrd.clone(),
            reason,
        })?;
    }
    Ok(())
}

/// One drive on its own: id, cache type, and a backing file (or block device) that can be
/// opened the way the guest will use it.
pub fn validate_drive(drive: &DriveConfig) -> Result<(), VmmActionError> {
    validate_id("drive", &drive.drive_id)?;
    if let Some(cache) = &drive.cache_type {
        if !CACHE_TYPES.contains(&cache.as_str()) {
            return Err(VmmActionError::InvalidCacheType {
                drive_id: drive.drive_id.clone(),
                cache_type: cache.clone(),
            });
        }
    }
    if let Some(engine) = &drive.io_engine {
        one_of("io_engine", engine, IO_ENGINES, false)?;
    }
    let not_usable = |reason: String| VmmActionError::DriveNotUsable {
        drive_id: drive.drive_id.clone(),
        path: drive.path_on_host.clone(),
        reason,
    };
    let file = crate::jail::files::open(
        &drive.path_on_host,
        OpenOptions::new().read(true).write(!drive.is_read_only),
    )
    .map_err(|e| not_usable(e.to_string()))?;
    let meta = file.metadata().map_err(|e| not_usable(e.to_string()))?;
    use std::os::unix::fs::FileTypeExt;
    if !(meta.is_file() || meta.file_type().is_block_device()) {
        return Err(not_usable(
            "neither a regular file nor a block device".to_owned(),
        ));
    }
    Ok(())
}

/// One interface on its own: id, MAC, and a host network device that exists.
pub fn validate_network_interface(iface: &NetworkInterfaceConfig) -> Result<(), VmmActionError> {
    validate_id("network interface", &iface.iface_id)?;
    if let Some(mac) = &iface.guest_mac {
        if parse_mac(mac).is_none() {
            return Err(VmmActionError::InvalidMac {
                iface_id: iface.iface_id.clone(),
                mac: mac.clone(),
            });
        }
    }
    let name = &iface.host_dev_name;
    let name_ok = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b':' || b.is_ascii_whitespace() || b == 0);
    if !name_ok {
        return Err(VmmActionError::InvalidHostDevName { name: name.clone() });
    }
    // A tap handed over by the parent is attached already (and /sys is not in a jail).
    if crate::jail::files::tap(name).is_none() && !Path::new("/sys/class/net").join(name).exists() {
        return Err(VmmActionError::HostDevNotFound { name: name.clone() });
    }
    Ok(())
}

pub fn validate_serial(serial: &SerialConfig) -> Result<(), VmmActionError> {
    if let Some(path) = &serial.serial_out_path {
        // The builder creates or appends to the file; its directory must already exist, unless
        // the parent handed the file over.
        if crate::jail::files::is_handed_over(path) {
            return Ok(());
        }
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !dir.is_dir() {
            return Err(VmmActionError::SerialOutNotUsable { path: path.clone() });
        }
    }
    if let Some(path) = &serial.socket_path {
        let unusable = |why: String| VmmActionError::SerialSocketNotUsable {
            path: path.clone(),
            why,
        };
        let own = crate::jail::own_path(path).map_err(|e| unusable(e.to_string()))?;
        // sun_path holds 108 bytes with the NUL.
        if own.as_os_str().len() > 107 {
            return Err(unusable(
                "longer than a unix socket path may be (107 bytes)".into(),
            ));
        }
        if !own.parent().is_some_and(Path::is_dir) {
            return Err(unusable("its directory does not exist".into()));
        }
    }
    Ok(())
}

/// Would adding `new` (or replacing the drive with its id) give two root devices?
pub fn check_root_conflict(
    drives: &[DriveConfig],
    new: &DriveConfig,
) -> Result<(), VmmActionError> {
    if !new.is_root_device {
        return Ok(());
    }
    match drives
        .iter()
        .find(|d| d.is_root_device && d.drive_id != new.drive_id)
    {
        Some(existing) => Err(VmmActionError::SecondRootDevice {
            existing: existing.drive_id.clone(),
            new: new.drive_id.clone(),
        }),
        None => Ok(()),
    }
}

/// Would adding `new` (or replacing the interface with its id) share a tap or a MAC?
pub fn check_interface_conflict(
    ifaces: &[NetworkInterfaceConfig],
    new: &NetworkInterfaceConfig,
) -> Result<(), VmmActionError> {
    for other in ifaces.iter().filter(|i| i.iface_id != new.iface_id) {
        if other.host_dev_name == new.host_dev_name {
            return Err(VmmActionError::HostDevInUse {
                name: new.host_dev_name.clone(),
                iface_id: other.iface_id.clone(),
            });
        }
        if let (Some(a), Some(b)) = (&other.guest_mac, &new.guest_mac) {
            if parse_mac(a).is_some() && parse_mac(a) == parse_mac(b) {
                return Err(VmmActionError::MacInUse {
                    mac: b.clone(),
                    iface_id: other.iface_id.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Every check at once, for a whole configuration (a `--config-file`, or before InstanceStart).
pub fn validate_config(config: &VmConfig, host: &HostLimits) -> Result<(), VmmActionError> {
    validate_machine_config(&config.machine_config, host)?;
    let boot = config
        .boot_source
        .as_ref()
        .ok_or(VmmActionError::MissingBootSource)?;
    validate_boot_source(boot)?;
    let mut ids = HashSet::new();
    for (i, drive) in config.drives.iter().enumerate() {
        validate_drive(drive)?;
        if !ids.insert(drive.drive_id.as_str()) {
            return Err(VmmActionError::DuplicateId {
                kind: "drive",
                id: drive.drive_id.clone(),
            });
        }
        check_root_conflict(&config.drives[..i], drive)?;
    }
    let mut ids = HashSet::new();
    for (i, iface) in config.network_interfaces.iter().enumerate() {
        validate_network_interface(iface)?;
        if !ids.insert(iface.iface_id.as_str()) {
            return Err(VmmActionError::DuplicateId {
                kind: "network interface",
                id: iface.iface_id.clone(),
            });
        }
        check_interface_conflict(&config.network_interfaces[..i], iface)?;
    }
    if let Some(serial) = &config.serial {
        validate_serial(serial)?;
    }
    if let Some(logger) = &config.logger {
        validate_logger(logger)?;
    }
    if let Some(mmds) = &config.mmds_config {
        validate_mmds_config(mmds, &config.network_interfaces)?;
    }
    Ok(())
}

/// Validates a whole configuration against this host (the `--config-file` path).
pub fn validate_full(config: &VmConfig) -> Result<(), VmmActionError> {
    validate_config(config, &HostLimits::probe())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_parsing() {
        assert_eq!(
            parse_mem_total_mib("MemTotal:       2097152 kB\nMemFree: 1 kB\n"),
            Some(2048)
        );
        assert_eq!(parse_mem_total_mib("MemFree: 1 kB\n"), None);
        assert_eq!(parse_mem_total_mib("MemTotal: lots kB\n"), None);
        assert_eq!(parse_mem_total_mib("MemTotal: 2097152 MB\n"), None);
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("06:00:ac:10:00:02"),
            Some([6, 0, 0xac, 0x10, 0, 2])
        );
        assert_eq!(
            parse_mac("06:00:AC:10:00:02"),
            Some([6, 0, 0xac, 0x10, 0, 2])
        );
        for bad in [
            "",
            "06:00:ac:10:00",
            "06:00:ac:10:00:02:03",
            "6:00:ac:10:00:02",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
            "06-00-ac-10-00-02",
            "06:00:ac:10:00:+2",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }
}
