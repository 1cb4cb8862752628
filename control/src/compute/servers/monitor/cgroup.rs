//! A cgroup v2 of each server's own, which its monitor joins before it drops root: memory
//! (the guest's RAM and the monitor's measured overhead), processes, and CPU from the
//! flavor's extra specs (Nova's `quota:cpu_quota`, `quota:cpu_period`, `quota:cpu_shares`).
//! Killing it (`cgroup.kill`) ends that guest's monitor and nothing else.
//!
//! Hosts differ: the cgroup v2 hierarchy is at /sys/fs/cgroup, or at
//! /sys/fs/cgroup/unified on hybrid hosts, or absent; a controller bound to a v1 hierarchy
//! cannot be enabled in v2. What cannot be had is logged once as a warning and the server
//! starts without it: its limits are then not enforced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// What the monitor costs beyond its guest's RAM: measured on a booted 1-vCPU guest with a
/// disk and a NIC (control/tests/jail.rs), its own RSS besides guest memory was 32 MiB
/// (23 MiB anonymous: heap, 8 threads' stacks, device buffers; 9 MiB of mapped binary).
/// The rest is room for the page cache its disk I/O is charged for, which the kernel
/// reclaims before it would kill the monitor.
pub const MONITOR_OVERHEAD_MIB: u64 = 128;
/// Processes and threads: the monitor's own (8 with one vCPU: main, API, devices, signals,
/// guest waiter, kicker...) plus one per vCPU, with room; a monitor that tries to fork more
/// is stopped here.
pub const PIDS_BASE: u64 = 32;
/// cgroup v2's default `cpu.max` period, and Nova's when `quota:cpu_period` is not set.
const DEFAULT_PERIOD_US: u64 = 100_000;
/// The controllers the servers' cgroups use.
const CONTROLLERS: [&str; 3] = ["memory", "pids", "cpu"];

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum LimitsError {
    #[error(
        "flavor extra spec {key}={value:?} is not usable: {why} (fix the flavor's extra specs)"
    )]
    ExtraSpec {
        key: &'static str,
        value: String,
        why: &'static str,
    },
}

/// The limits a server's cgroup gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub memory_max_bytes: u64,
    pub pids_max: u64,
    /// `cpu.max`: quota and period in microseconds; None leaves the CPU time unlimited.
    pub cpu_max: Option<(u64, u64)>,
    /// `cpu.weight` (1-10000), from `quota:cpu_shares`.
    pub cpu_weight: Option<u64>,
}

impl Limits {
    /// The limits for a guest of `vcpus` and `mem_mib`, with the flavor's CPU extra specs.
    pub fn for_flavor(
        vcpus: u64,
        mem_mib: u64,
        extra_specs: &BTreeMap<String, String>,
    ) -> Result<Limits, LimitsError> {
        let number = |key: &'static str, min: i64, max: i64| -> Result<Option<i64>, LimitsError> {
            let Some(value) = extra_specs.get(key) else {
                return Ok(None);
            };
            let bad = |why| LimitsError::ExtraSpec {
                key,
                value: value.clone(),
                why,
            };
            let n: i64 = value.trim().parse().map_err(|_| bad("not an integer"))?;
            if n < min || n > max {
                return Err(bad("out of range"));
            }
            Ok(Some(n))
        };
        // The ranges are the kernel's (cgroup v2 cpu.max: a period of 1 ms to 1 s, a quota
        // of at least 1 ms) and Nova's (a negative quota means no limit).
        let quota = number("quota:cpu_quota", -1, i64::MAX / 1000)?;
        let period = number("quota:cpu_period", 1_000, 1_000_000)?;
        let shares = number("quota:cpu_shares", 2, 262_144)?;
        let cpu_max = match quota {
            Some(q) if q > 0 => {
                if q < 1_000 {
                    return Err(LimitsError::ExtraSpec {
                        key: "quota:cpu_quota",
                        value: q.to_string(),
                        why: "below the kernel's minimum of 1000 microseconds",
                    });
                }
                Some((q as u64, period.map_or(DEFAULT_PERIOD_US, |p| p as u64)))
            }
            _ => None,
        };
        // cgroup v1 shares (2-262144, default 1024) onto v2's weight (1-10000, default 100),
        // the linear map container runtimes use, so 1024 shares lands near the default.
        let cpu_weight = shares.map(|s| 1 + ((s as u64 - 2) * 9_999) / 262_142);
        Ok(Limits {
            memory_max_bytes: (mem_mib + MONITOR_OVERHEAD_MIB) << 20,
            pids_max: PIDS_BASE + vcpus,
            cpu_max,
            cpu_weight,
        })
    }

    /// The interface files and what is written to each.
    fn files(&self) -> Vec<(&'static str, String)> {
        let mut files = vec![
            ("memory.max", self.memory_max_bytes.to_string()),
            ("pids.max", self.pids_max.to_string()),
        ];
        if let Some((quota, period)) = self.cpu_max {
            files.push(("cpu.max", format!("{quota} {period}")));
        }
        if let Some(weight) = self.cpu_weight {
            files.push(("cpu.weight", weight.to_string()));
        }
        files
    }
}

/// Where cgroup v2 is mounted, from /proc/self/mounts (the first `cgroup2` entry).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (_, path, kind) = (fields.next()?, fields.next()?, fields.next()?);
        (kind == "cgroup2").then(|| PathBuf::from(path))
    })
}

/// Logs `message` as a warning the first time only: a host without cgroup v2 controllers
/// stays so, and every server start would repeat it.
fn warn_once(once: &'static Once, message: String) {
    once.call_once(|| tracing::warn!("{message}"));
}

/// Creates (or reuses) `<cgroup v2>/<parent>/<server_id>` with `limits`; None when cgroup v2
/// is not there or the directory cannot be made (warned about: the server runs unconfined).
pub fn create(parent: &str, server_id: &str, limits: &Limits) -> Option<PathBuf> {
    static NO_V2: Once = Once::new();
    static NO_CONTROLLERS: Once = Once::new();
    let Some(mount) = cgroup2_mount() else {
        warn_once(
            &NO_V2,
            "cgroup v2 is not mounted: servers' monitors run without a cgroup of their own \
             (no memory, pids or CPU limits)"
                .to_owned(),
        );
        return None;
    };
    let group = mount.join(parent);
    let missing = enable_controllers(&mount, &group);
    if !missing.is_empty() {
        warn_once(
            &NO_CONTROLLERS,
            format!(
                "cgroup v2 at {mount:?} cannot enable {} (bound to a cgroup v1 hierarchy on \
                 this host?): servers get their own cgroup, but without those limits",
                missing.join(", ")
            ),
        );
    }
    let path = group.join(server_id);
    if let Err(e) = std::fs::create_dir_all(&path) {
        tracing::warn!("cannot create the cgroup {path:?}: {e}; the server runs without one");
        return None;
    }
    for (file, value) in limits.files() {
        let at = path.join(file);
        // A controller that is not enabled has no files: warned about above.
        if !at.exists() {
            continue;
        }
        if let Err(e) = std::fs::write(&at, &value) {
            tracing::warn!("cannot set {at:?} to {value}: {e}");
        }
    }
    Some(path)
}

/// Enables the servers' controllers down to `group` (created if needed); returns those the
/// host does not offer in cgroup v2.
fn enable_controllers(mount: &Path, group: &Path) -> Vec<&'static str> {
    let _ = std::fs::create_dir_all(group);
    let offered = std::fs::read_to_string(mount.join("cgroup.controllers")).unwrap_or_default();
    let offered: Vec<&str> = offered.split_whitespace().collect();
    let mut missing = Vec::new();
    for controller in CONTROLLERS {
        if !offered.contains(&controller) {
            missing.push(controller);
            continue;
        }
        // Each level enables it for its children; a write that fails (already on, or the
        // level has processes of its own) leaves it to the check of the group's files.
        for level in [mount, group] {
            let _ = std::fs::write(
                level.join("cgroup.subtree_control"),
                format!("+{controller}"),
            );
        }
    }
    missing
}

/// Kills every process in the cgroup (`cgroup.kill`, Linux 5.14) and removes it; a missing
/// cgroup is fine. Processes outside it are untouched.
pub fn remove(path: &Path) {
    if !path.exists() {
        return;
    }
    let _ = std::fs::write(path.join("cgroup.kill"), "1");
    // The kernel empties the cgroup asynchronously; rmdir answers EBUSY until it has.
    for _ in 0..50 {
        match std::fs::remove_dir(path) {
            Ok(()) => return,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
    tracing::warn!("cannot remove the cgroup {path:?}: it still has processes");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn specs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_flavor_without_cpu_specs_limits_memory_and_processes_only() {
        let l = Limits::for_flavor(2, 256, &BTreeMap::new()).unwrap();
        assert_eq!(l.memory_max_bytes, (256 + MONITOR_OVERHEAD_MIB) << 20);
        assert_eq!(l.pids_max, PIDS_BASE + 2);
        assert_eq!(l.cpu_max, None);
        assert_eq!(l.cpu_weight, None);
        let files = l.files();
        assert_eq!(files.len(), 2);
        assert_eq!(files[0], ("memory.max", ((384u64) << 20).to_string()));
    }

    #[test]
    fn nova_cpu_specs_become_cpu_max_and_weight() {
        let l = Limits::for_flavor(
            1,
            128,
            &specs(&[
                ("quota:cpu_quota", "50000"),
                ("quota:cpu_period", "200000"),
                ("quota:cpu_shares", "1024"),
            ]),
        )
        .unwrap();
        assert_eq!(l.cpu_max, Some((50_000, 200_000)));
        // 1024 shares, v1's default, is close to v2's default weight of 100.
        assert_eq!(l.cpu_weight, Some(39));
        assert!(l.files().contains(&("cpu.max", "50000 200000".to_owned())));
        let extremes = |s: &str| {
            Limits::for_flavor(1, 128, &specs(&[("quota:cpu_shares", s)]))
                .unwrap()
                .cpu_weight
        };
        assert_eq!(extremes("2"), Some(1));
        assert_eq!(extremes("262144"), Some(10_000));
        // No period: the default one. A negative quota: no limit (Nova's meaning).
        let l = Limits::for_flavor(1, 128, &specs(&[("quota:cpu_quota", "25000")])).unwrap();
        assert_eq!(l.cpu_max, Some((25_000, DEFAULT_PERIOD_US)));
        let l = Limits::for_flavor(1, 128, &specs(&[("quota:cpu_quota", "-1")])).unwrap();
        assert_eq!(l.cpu_max, None);
    }

    #[test]
    fn unusable_cpu_specs_are_refused_with_the_key() {
        for (key, value) in [
            ("quota:cpu_quota", "lots"),
            ("quota:cpu_quota", "500"),
            ("quota:cpu_period", "999"),
            ("quota:cpu_period", "2000000"),
            ("quota:cpu_shares", "1"),
        ] {
            let e = Limits::for_flavor(1, 128, &specs(&[(key, value)])).unwrap_err();
            assert!(e.to_string().contains(key), "{e}");
        }
    }

    #[test]
    fn the_cgroup2_mount_is_found_in_this_hosts_mounts() {
        let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
        match cgroup2_mount() {
            Some(path) => assert!(mounts.contains(&format!(" {} cgroup2 ", path.display()))),
            None => assert!(!mounts.contains(" cgroup2 ")),
        }
    }
}
