//! A cgroup of each server's own, which its monitor joins before it drops root: memory (the
//! guest's RAM and the monitor's measured overhead), processes, and CPU from the flavor's
//! extra specs (Nova's `quota:cpu_quota`, `quota:cpu_period`, `quota:cpu_shares`). Killing it
//! (`cgroup.kill`) ends that guest's monitor and nothing else.
//!
//! Hosts differ. On a pure cgroup v2 host (/sys/fs/cgroup) the server's cgroup is one v2
//! directory with every limit. On a hybrid host the v2 hierarchy (/sys/fs/cgroup/unified)
//! has the cgroup and `cgroup.kill` but none of the controllers, which are bound to v1
//! hierarchies: the limits then go in a directory of the server's own in each of those
//! (under outpostd's own cgroup there), and the monitor joins them all. A controller found
//! in neither is logged once as a warning and its limit is not enforced.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

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
/// How long a killed cgroup may take to empty before its removal gives up: the kernel
/// tears a monitor's guest memory down as its last thread exits, which takes a while for a
/// large guest on a busy host.
const EMPTY_TIMEOUT: Duration = Duration::from_secs(10);

/// A controller the servers' cgroups use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Controller {
    Memory,
    Pids,
    Cpu,
}

impl Controller {
    const ALL: [Controller; 3] = [Controller::Memory, Controller::Pids, Controller::Cpu];

    /// The kernel's name for it, in `cgroup.controllers` and in v1 mount options.
    fn name(self) -> &'static str {
        match self {
            Controller::Memory => "memory",
            Controller::Pids => "pids",
            Controller::Cpu => "cpu",
        }
    }
}

/// Which hierarchy a directory of the server's cgroup is in: their interface files differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Version {
    V1,
    V2,
}

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
    /// `quota:cpu_shares` as given: cgroup v1's `cpu.shares` (2-262144).
    pub cpu_shares: Option<u64>,
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
        let cpu_shares = shares.map(|s| s as u64);
        let cpu_weight = cpu_shares.map(|s| 1 + ((s - 2) * 9_999) / 262_142);
        Ok(Limits {
            memory_max_bytes: (mem_mib + MONITOR_OVERHEAD_MIB) << 20,
            pids_max: PIDS_BASE + vcpus,
            cpu_max,
            cpu_shares,
            cpu_weight,
        })
    }

    /// `controller`'s interface files in a `version` hierarchy and what is written to each,
    /// in order (v1's period before its quota, which is checked against it).
    fn files(&self, controller: Controller, version: Version) -> Vec<(&'static str, String)> {
        let mut files = Vec::new();
        match (controller, version) {
            (Controller::Memory, Version::V2) => {
                files.push(("memory.max", self.memory_max_bytes.to_string()))
            }
            (Controller::Memory, Version::V1) => {
                files.push(("memory.limit_in_bytes", self.memory_max_bytes.to_string()))
            }
            (Controller::Pids, _) => files.push(("pids.max", self.pids_max.to_string())),
            (Controller::Cpu, Version::V2) => {
                if let Some((quota, period)) = self.cpu_max {
                    files.push(("cpu.max", format!("{quota} {period}")));
                }
                if let Some(weight) = self.cpu_weight {
                    files.push(("cpu.weight", weight.to_string()));
                }
            }
            (Controller::Cpu, Version::V1) => {
                if let Some((quota, period)) = self.cpu_max {
                    files.push(("cpu.cfs_period_us", period.to_string()));
                    files.push(("cpu.cfs_quota_us", quota.to_string()));
                }
                if let Some(shares) = self.cpu_shares {
                    files.push(("cpu.shares", shares.to_string()));
                }
            }
        }
        files
    }
}

/// Where this host's hierarchies are, as far as the servers' cgroups are concerned.
#[derive(Debug, Default, PartialEq)]
struct Layout {
    /// The cgroup v2 mount and the controllers it offers.
    v2: Option<(PathBuf, Vec<String>)>,
    /// For each controller bound to a v1 hierarchy: that hierarchy's mount joined with
    /// outpostd's own cgroup in it, under which the servers' directories go (so their
    /// memory stays counted where outpostd's is).
    v1: BTreeMap<Controller, PathBuf>,
}

impl Layout {
    fn of_this_host() -> Layout {
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        let mut layout = Layout::parse(&read("/proc/self/mounts"), &read("/proc/self/cgroup"));
        if let Some((mount, offered)) = &mut layout.v2 {
            *offered = read(&mount.join("cgroup.controllers").to_string_lossy())
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        }
        layout
    }

    /// From /proc/self/mounts and /proc/self/cgroup; the v2 controllers are left empty.
    fn parse(mounts: &str, own: &str) -> Layout {
        let mut layout = Layout::default();
        for line in mounts.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, path, kind, options, ..] = fields[..] else {
                continue;
            };
            match kind {
                "cgroup2" if layout.v2.is_none() => {
                    layout.v2 = Some((PathBuf::from(path), Vec::new()));
                }
                "cgroup" => {
                    let options: Vec<&str> = options.split(',').collect();
                    for controller in Controller::ALL {
                        if options.contains(&controller.name()) {
                            let mut base = PathBuf::from(path);
                            // (Pushing "" would add a trailing slash.)
                            base.extend(own_v1_path(own, controller.name()));
                            layout.v1.entry(controller).or_insert(base);
                        }
                    }
                }
                _ => {}
            }
        }
        layout
    }
}

/// outpostd's own cgroup in the v1 hierarchy holding `controller` (a `/proc/self/cgroup`
/// line `N:memory:/path`), relative; None at the hierarchy's top.
fn own_v1_path<'a>(own: &'a str, controller: &str) -> Option<&'a str> {
    own.lines().find_map(|line| {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        (controllers.split(',').any(|c| c == controller) && !path.is_empty()).then_some(path)
    })
}

/// Where cgroup v2 is mounted, from /proc/self/mounts (the first `cgroup2` entry).
pub fn cgroup2_mount() -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    Layout::parse(&mounts, "").v2.map(|(mount, _)| mount)
}

/// Held while the servers' groups (`<hierarchy>/<parent>`) are made or removed, so a group
/// emptied by one server's removal is never taken away under another's creation.
static GROUPS: Mutex<()> = Mutex::new(());

/// Logs `message` as a warning the first time only: a host's hierarchies stay as they are,
/// and every server start would repeat it.
fn warn_once(once: &'static Once, message: String) {
    once.call_once(|| tracing::warn!("{message}"));
}

/// Creates (or reuses) the server's cgroup, `<parent>/<server_id>` in the v2 hierarchy and,
/// on a hybrid host, in each v1 hierarchy that holds a controller v2 lacks, with `limits`;
/// returns the directories the monitor must join, the v2 one first. Empty when there is
/// no hierarchy to use (warned about: the server runs unconfined).
pub fn create(parent: &str, server_id: &str, limits: &Limits) -> Vec<PathBuf> {
    static NO_V2: Once = Once::new();
    static MISSING: Once = Once::new();
    let _groups = GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let layout = Layout::of_this_host();
    let mut dirs = Vec::new();
    let mut missing = Vec::new();
    let mut v1: BTreeMap<PathBuf, Vec<Controller>> = BTreeMap::new();
    let enabled = match &layout.v2 {
        Some((mount, offered)) => {
            let enabled = enable_controllers(mount, &mount.join(parent), offered);
            let path = mount.join(parent).join(server_id);
            match std::fs::create_dir_all(&path) {
                Ok(()) => {
                    for controller in &enabled {
                        write_limits(&path, limits.files(*controller, Version::V2));
                    }
                    dirs.push(path);
                }
                Err(e) => tracing::warn!("cannot create the cgroup {path:?}: {e}"),
            }
            enabled
        }
        None => {
            warn_once(
                &NO_V2,
                "cgroup v2 is not mounted: killing a server's cgroup cannot be done at once \
                 (its processes are killed one by one)"
                    .to_owned(),
            );
            Vec::new()
        }
    };
    for controller in Controller::ALL {
        if enabled.contains(&controller) {
            continue;
        }
        // A v1 hierarchy is joined per controller: without a CPU limit the monitor stays in
        // outpostd's cpu cgroup, where it competes as any process does, rather than share
        // one group's CPU with every other server.
        if limits.files(controller, Version::V1).is_empty() {
            continue;
        }
        match layout.v1.get(&controller) {
            // Controllers mounted together (cpu,cpuacct) share one directory.
            Some(base) => v1
                .entry(base.join(parent).join(server_id))
                .or_default()
                .push(controller),
            None => missing.push(controller.name()),
        }
    }
    for (path, controllers) in v1 {
        if let Err(e) = std::fs::create_dir_all(&path) {
            tracing::warn!("cannot create the cgroup {path:?}: {e}");
            missing.extend(controllers.iter().map(|c| c.name()));
            continue;
        }
        for controller in controllers {
            write_limits(&path, limits.files(controller, Version::V1));
        }
        dirs.push(path);
    }
    if !missing.is_empty() {
        warn_once(
            &MISSING,
            format!(
                "neither cgroup v2 nor a cgroup v1 hierarchy offers {} on this host: servers' \
                 monitors run without those limits",
                missing.join(", ")
            ),
        );
    }
    dirs
}

fn write_limits(dir: &Path, files: Vec<(&'static str, String)>) {
    for (file, value) in files {
        let at = dir.join(file);
        if let Err(e) = std::fs::write(&at, &value) {
            tracing::warn!("cannot set {at:?} to {value}: {e}");
        }
    }
}

/// Enables the servers' controllers that cgroup v2 offers down to `group` (created if
/// needed); returns those that are on for its children.
fn enable_controllers(mount: &Path, group: &Path, offered: &[String]) -> Vec<Controller> {
    let _ = std::fs::create_dir_all(group);
    let mut enabled = Vec::new();
    for controller in Controller::ALL {
        if !offered.iter().any(|o| o == controller.name()) {
            continue;
        }
        // Each level from the top enables it for its children (the group may be several
        // levels deep); a write that fails (a level with processes of its own) shows in the
        // group's subtree_control below.
        let mut levels: Vec<&Path> = group
            .ancestors()
            .take_while(|level| level.starts_with(mount))
            .collect();
        levels.reverse();
        for level in levels {
            let _ = std::fs::write(
                level.join("cgroup.subtree_control"),
                format!("+{}", controller.name()),
            );
        }
        let on = std::fs::read_to_string(group.join("cgroup.subtree_control")).unwrap_or_default();
        if on.split_whitespace().any(|c| c == controller.name()) {
            enabled.push(controller);
        }
    }
    enabled
}

/// Why a server's cgroup could not be removed.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    #[error("the cgroup {path:?} still has processes {timeout:?} after they were killed")]
    StillPopulated { path: PathBuf, timeout: Duration },
    #[error("cannot remove the cgroup {path:?}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Kills every process in the server's cgroup and removes its directories, and its v1
/// groups when it was their last server (they lie in outpostd's own cgroups, which its
/// service manager must be able to remove); missing ones are fine. Processes outside it are
/// untouched.
///
/// A killed cgroup empties asynchronously (each task leaves it as it exits, after its
/// memory is torn down), and `rmdir` answers EBUSY until it has: so this waits for the
/// kernel to say so (`cgroup.events`' `populated 0` in v2, an empty `cgroup.procs` in
/// v1), for at most [`EMPTY_TIMEOUT`], before it removes each directory.
pub fn remove(dirs: &[PathBuf]) -> Result<(), RemoveError> {
    for dir in dirs {
        kill(dir);
    }
    for dir in dirs {
        let deadline = Instant::now() + EMPTY_TIMEOUT;
        loop {
            match std::fs::remove_dir(dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    if Instant::now() >= deadline {
                        return Err(RemoveError::StillPopulated {
                            path: dir.clone(),
                            timeout: EMPTY_TIMEOUT,
                        });
                    }
                    // A v1 cgroup can be joined between the kill and now (a monitor that
                    // was starting): kill again rather than wait for it.
                    if !is_v2(dir) {
                        kill(dir);
                    }
                    wait_empty(dir, deadline);
                    // Empty, but the kernel may not have let go of the directory yet.
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(source) => {
                    return Err(RemoveError::Io {
                        path: dir.clone(),
                        source,
                    })
                }
            }
        }
    }
    let _groups = GROUPS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Only v1 groups, the levels made below outpostd's own cgroup: the v2 group has the
    // controllers enabled for its children, and stays for the next server.
    let layout = Layout::of_this_host();
    let in_v2 = |dir: &Path| {
        layout
            .v2
            .as_ref()
            .is_some_and(|(v2, _)| dir.starts_with(v2))
    };
    for dir in dirs.iter().filter(|dir| !in_v2(dir)) {
        let Some(own) = layout.v1.values().find(|own| dir.starts_with(own)) else {
            continue;
        };
        for group in dir.ancestors().skip(1).take_while(|g| g != own) {
            // EBUSY while another server has its cgroup there.
            if std::fs::remove_dir(group).is_err() {
                break;
            }
        }
    }
    Ok(())
}

fn is_v2(dir: &Path) -> bool {
    dir.join("cgroup.kill").exists()
}

/// `cgroup.kill` (Linux 5.14) in v2; in v1, SIGKILL to each process listed.
fn kill(dir: &Path) {
    if is_v2(dir) {
        let _ = std::fs::write(dir.join("cgroup.kill"), "1");
        return;
    }
    for pid in listed_pids(dir) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

fn listed_pids(dir: &Path) -> Vec<i32> {
    std::fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits until the cgroup at `dir` has no process left, or `deadline`.
fn wait_empty(dir: &Path, deadline: Instant) {
    let populated = || {
        if is_v2(dir) {
            std::fs::read_to_string(dir.join("cgroup.events"))
                .map(|events| events.lines().any(|l| l == "populated 1"))
                .unwrap_or(false)
        } else {
            !listed_pids(dir).is_empty()
        }
    };
    while populated() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
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
        let bytes = (384u64 << 20).to_string();
        assert_eq!(
            l.files(Controller::Memory, Version::V2),
            [("memory.max", bytes.clone())]
        );
        assert_eq!(
            l.files(Controller::Memory, Version::V1),
            [("memory.limit_in_bytes", bytes)]
        );
        for version in [Version::V1, Version::V2] {
            assert_eq!(
                l.files(Controller::Pids, version),
                [("pids.max", "34".to_owned())]
            );
            assert_eq!(l.files(Controller::Cpu, version), []);
        }
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
        assert_eq!(
            l.files(Controller::Cpu, Version::V2),
            [
                ("cpu.max", "50000 200000".to_owned()),
                ("cpu.weight", "39".to_owned())
            ]
        );
        // v1 takes the shares as they are, and the period before the quota.
        assert_eq!(
            l.files(Controller::Cpu, Version::V1),
            [
                ("cpu.cfs_period_us", "200000".to_owned()),
                ("cpu.cfs_quota_us", "50000".to_owned()),
                ("cpu.shares", "1024".to_owned())
            ]
        );
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
    fn a_hybrid_host_has_v2_for_the_cgroup_and_v1_for_the_controllers() {
        let mounts = "\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/cpu,cpuacct cgroup rw,nosuid,nodev,noexec,relatime,cpu,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";
        let own = "9:name=systemd:/\n8:pids:/\n4:memory:/svc/outpostd\n1:cpu,cpuacct:/\n0::/\n";
        let layout = Layout::parse(mounts, own);
        assert_eq!(
            layout.v2,
            Some((PathBuf::from("/sys/fs/cgroup/unified"), Vec::new()))
        );
        let v1: Vec<(Controller, &str)> = layout
            .v1
            .iter()
            .map(|(c, p)| (*c, p.to_str().unwrap()))
            .collect();
        assert_eq!(
            v1,
            [
                // Under outpostd's own memory cgroup, so its monitors count there too.
                (Controller::Memory, "/sys/fs/cgroup/memory/svc/outpostd"),
                (Controller::Pids, "/sys/fs/cgroup/pids"),
                (Controller::Cpu, "/sys/fs/cgroup/cpu,cpuacct"),
            ]
        );
        // cpuacct alone does not pass for cpu.
        let layout = Layout::parse(
            "cgroup /sys/fs/cgroup/cpuacct cgroup rw,cpuacct 0 0\n",
            "1:cpuacct:/\n",
        );
        assert_eq!(layout, Layout::default());
    }

    #[test]
    fn a_pure_v2_host_has_no_v1_hierarchy() {
        let layout = Layout::parse(
            "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n",
            "0::/system.slice/outpostd.service\n",
        );
        assert_eq!(
            layout.v2,
            Some((PathBuf::from("/sys/fs/cgroup"), Vec::new()))
        );
        assert!(layout.v1.is_empty());
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
