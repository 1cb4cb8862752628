//! outpostd's half of a monitor's jail (docs/security.md, "The jail"): a uid of the server's
//! own from the configured range, the directory that becomes the monitor's `/`, its cgroup,
//! and every file the monitor needs, opened here and handed over as inherited descriptors.
//! The monitor enters the jail itself (`outpost-vmm --jail-root ...`) before its first
//! thread.
//!
//! ```toml
//! [compute.jail]
//! enabled = true        # default; false runs monitors as outpostd's user, unconfined
//! first_uid = 900000    # each server's monitor gets a uid (and a gid of the same number)
//! uid_count = 100000    #   from first_uid .. first_uid + uid_count
//! cgroup = "outpost"    # servers' cgroups: <cgroup v2 mount>/<cgroup>/<server id>
//!                       #   (and in v1 hierarchies on a hybrid host: cgroup.rs)
//! ```

use super::cgroup::{self, Limits};
use super::{MonitorError, MonitorSpec, ServerDir};
use serde::Deserialize;
use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

const DEFAULT_FIRST_UID: u32 = 900_000;
const DEFAULT_UID_COUNT: u32 = 100_000;
const DEFAULT_CGROUP: &str = "outpost";

#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailSection {
    pub enabled: Option<bool>,
    pub first_uid: Option<u32>,
    pub uid_count: Option<u32>,
    pub cgroup: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum JailConfigError {
    #[error("compute.jail.first_uid must be at least 1: the jail's point is to leave root")]
    RootUid,
    #[error("compute.jail.uid_count must be at least 1 and first_uid + uid_count at most {max}")]
    Range { max: u32 },
    #[error("compute.jail.cgroup must be a relative path without '..' (got {0:?})")]
    Cgroup(String),
}

/// The resolved jail settings; `None` as a whole when monitors run unjailed.
#[derive(Debug, Clone, PartialEq)]
pub struct JailSettings {
    pub first_uid: u32,
    pub uid_count: u32,
    pub cgroup: String,
}

impl JailSettings {
    /// `is_root`: whether outpostd runs as root, without which no jail can be entered (the
    /// monitor could not change its uid): then monitors run unjailed, with a warning.
    pub fn resolve(
        section: Option<&JailSection>,
        is_root: bool,
    ) -> Result<Option<JailSettings>, JailConfigError> {
        let default = JailSection::default();
        let section = section.unwrap_or(&default);
        let first_uid = section.first_uid.unwrap_or(DEFAULT_FIRST_UID);
        let uid_count = section.uid_count.unwrap_or(DEFAULT_UID_COUNT);
        if first_uid == 0 {
            return Err(JailConfigError::RootUid);
        }
        // (uid_t)-1 means "unchanged" to setresuid: never hand it out.
        let max = u32::MAX - 1;
        if uid_count == 0 || first_uid.checked_add(uid_count).is_none_or(|end| end > max) {
            return Err(JailConfigError::Range { max });
        }
        let cgroup = section
            .cgroup
            .clone()
            .unwrap_or_else(|| DEFAULT_CGROUP.to_owned());
        let cgroup_ok = !cgroup.is_empty()
            && Path::new(&cgroup)
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !cgroup_ok {
            return Err(JailConfigError::Cgroup(cgroup));
        }
        match section.enabled {
            Some(false) => Ok(None),
            _ if !is_root => {
                tracing::warn!(
                    "outpostd does not run as root: servers' monitors run unjailed, as \
                     outpostd's own user (set compute.jail.enabled = false to say so)"
                );
                Ok(None)
            }
            _ => Ok(Some(JailSettings {
                first_uid,
                uid_count,
                cgroup,
            })),
        }
    }
}

/// What a jailed start hands the monitor: its extra arguments and the descriptors they name
/// (which must stay open until the monitor has been spawned).
#[derive(Debug)]
pub struct Prepared {
    pub args: Vec<OsString>,
    pub fds: Vec<OwnedFd>,
}

/// Uids are picked one server at a time, so two starts never take the same one.
static PICKING: Mutex<()> = Mutex::new(());

/// Prepares the jail of the server in `dir`: its uid, its root (`dir/jail`, owned by that
/// uid, emptied of what a previous run left), its cgroup, and its files.
pub fn prepare(
    settings: &JailSettings,
    dir: &ServerDir,
    server_id: &str,
    spec: &MonitorSpec,
) -> Result<Prepared, MonitorError> {
    let root = dir.jail_root();
    let uid = {
        let _turn = PICKING
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let uid = pick_uid(settings, dir)?;
        make_root(&root, uid)?;
        uid
    };
    let limits = Limits::for_flavor(spec.vcpus, spec.mem_mib, &spec.extra_specs)
        .map_err(MonitorError::Limits)?;
    let cgroup = cgroup::create(&settings.cgroup, server_id, &limits);
    dir.record_cgroup(&cgroup)?;

    let mut prepared = Prepared {
        args: Vec::new(),
        fds: Vec::new(),
    };
    let uid_arg = uid.to_string();
    for (flag, value) in [
        ("--jail-root", root.as_os_str()),
        ("--jail-uid", uid_arg.as_ref()),
        ("--jail-gid", uid_arg.as_ref()),
    ] {
        prepared.args.push(flag.into());
        prepared.args.push(value.into());
    }
    for dir in &cgroup {
        prepared.args.push("--jail-cgroup".into());
        prepared.args.push(dir.into());
    }
    let read = || {
        let mut o = OpenOptions::new();
        o.read(true);
        o
    };
    let read_write = || {
        let mut o = OpenOptions::new();
        o.read(true).write(true);
        o
    };
    let mut files: Vec<(PathBuf, OpenOptions)> = vec![
        (PathBuf::from("/dev/kvm"), read_write()),
        // The network device's random MAC and the entropy device read it.
        (PathBuf::from("/dev/urandom"), read()),
        (spec.kernel.clone(), read()),
    ];
    files.extend(spec.initrd.iter().map(|p| (p.clone(), read())));
    files.extend(spec.root_disk.iter().map(|p| (p.clone(), read_write())));
    files.extend(spec.volumes.iter().map(|(_, p)| (p.clone(), read_write())));
    files.extend(spec.config_drive.iter().map(|p| (p.clone(), read())));
    let mut console = OpenOptions::new();
    console.create(true).append(true).mode(0o600);
    files.push((dir.console_log(), console));
    for (path, options) in files {
        let file = options.open(&path).map_err(|source| MonitorError::Io {
            what: "open for the monitor",
            path: path.clone(),
            source,
        })?;
        prepared.hand_over("--fd", path.as_os_str(), file.into());
    }
    for (tap, _) in &spec.nics {
        let file = attach_tap(tap)?;
        prepared.hand_over("--tap-fd", tap.as_ref(), file.into());
    }
    Ok(prepared)
}

impl Prepared {
    fn hand_over(&mut self, flag: &str, name: &std::ffi::OsStr, fd: OwnedFd) {
        let mut value = name.to_owned();
        value.push(format!("={}", fd.as_raw_fd()));
        self.args.push(flag.into());
        self.args.push(value);
        self.fds.push(fd);
    }
}

/// The server's uid: the one its jail root already has (a restart keeps it), else the
/// lowest in the range that no other server's jail root has.
fn pick_uid(settings: &JailSettings, dir: &ServerDir) -> Result<u32, MonitorError> {
    let in_range =
        |uid: u32| uid >= settings.first_uid && uid - settings.first_uid < settings.uid_count;
    if let Ok(meta) = std::fs::metadata(dir.jail_root()) {
        if in_range(meta.uid()) {
            return Ok(meta.uid());
        }
    }
    let servers = dir.path().parent().unwrap_or(Path::new("/"));
    let taken: std::collections::BTreeSet<u32> = std::fs::read_dir(servers)
        .map(|entries| {
            entries
                .filter_map(|e| Some(e.ok()?.path().join("jail").metadata().ok()?.uid()))
                .collect()
        })
        .unwrap_or_default();
    (settings.first_uid..settings.first_uid + settings.uid_count)
        .find(|uid| !taken.contains(uid))
        .ok_or(MonitorError::NoFreeUid {
            first: settings.first_uid,
            count: settings.uid_count,
        })
}

/// `root` as an empty directory owned by `uid` (group the same number), mode 0700.
fn make_root(root: &Path, uid: u32) -> Result<(), MonitorError> {
    let io = |what: &'static str| {
        move |source| MonitorError::Io {
            what,
            path: root.to_owned(),
            source,
        }
    };
    // What a previous run left (its socket) goes; nothing else is ever put there.
    match std::fs::remove_dir_all(root) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io("empty the jail root")(e))
        }
        _ => {}
    }
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(root)
        .map_err(io("create the jail root"))?;
    std::os::unix::fs::chown(root, Some(uid), Some(uid)).map_err(io("give the jail root to"))
}

/// Attaches to the persistent tap `name` (which netdev made) as the monitor would, with
/// IFF_VNET_HDR; the monitor, without CAP_NET_ADMIN, cannot.
fn attach_tap(name: &str) -> Result<File, MonitorError> {
    let err = |source| MonitorError::Tap {
        name: name.to_owned(),
        source,
    };
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a valid interface name",
        )));
    }
    let tun = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/net/tun")
        .map_err(err)?;
    // SAFETY: ifreq is plain data (a name and a union of integers); all zeroes is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, b) in req.ifr_name.iter_mut().zip(bytes) {
        *slot = *b as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR) as i16;
    // SAFETY: TUNSETIFF reads and writes one `struct ifreq`, which `req` is.
    let attach = unsafe {
        rustix::ioctl::Updater::<{ libc::TUNSETIFF as rustix::ioctl::Opcode }, libc::ifreq>::new(
            &mut req,
        )
    };
    // SAFETY: `tun` is an open /dev/net/tun; the Updater is TUNSETIFF's argument.
    unsafe { rustix::ioctl::ioctl(&tun, attach) }.map_err(|e| err(e.into()))?;
    Ok(tun)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_jail_as_root_and_the_switch_turns_it_off() {
        let s = JailSettings::resolve(None, true).unwrap().unwrap();
        assert_eq!(s.first_uid, DEFAULT_FIRST_UID);
        assert_eq!(s.uid_count, DEFAULT_UID_COUNT);
        assert_eq!(s.cgroup, "outpost");
        let off = JailSection {
            enabled: Some(false),
            ..JailSection::default()
        };
        assert_eq!(JailSettings::resolve(Some(&off), true), Ok(None));
        // Not root: nothing to drop, so no jail (warned about).
        assert_eq!(JailSettings::resolve(None, false), Ok(None));
    }

    #[test]
    fn bad_ranges_and_cgroup_names_are_refused() {
        let with = |first: Option<u32>, count: Option<u32>, cgroup: Option<&str>| {
            JailSettings::resolve(
                Some(&JailSection {
                    enabled: None,
                    first_uid: first,
                    uid_count: count,
                    cgroup: cgroup.map(str::to_owned),
                }),
                true,
            )
        };
        assert_eq!(with(Some(0), None, None), Err(JailConfigError::RootUid));
        assert!(matches!(
            with(None, Some(0), None),
            Err(JailConfigError::Range { .. })
        ));
        assert!(matches!(
            with(Some(u32::MAX - 10), Some(100), None),
            Err(JailConfigError::Range { .. })
        ));
        for bad in ["", "../escape", "/abs"] {
            assert!(matches!(
                with(None, None, Some(bad)),
                Err(JailConfigError::Cgroup(_))
            ));
        }
        assert!(with(Some(5000), Some(10), Some("a/b")).unwrap().is_some());
    }

    #[test]
    fn each_server_gets_a_uid_of_its_own_and_keeps_it() {
        let tmp = tempfile::tempdir().unwrap();
        let settings = JailSettings {
            first_uid: 700_000,
            uid_count: 2,
            cgroup: "outpost".into(),
        };
        let dir = |id: &str| ServerDir::new(tmp.path().join(id));
        let mut uids = Vec::new();
        for id in ["a", "b"] {
            dir(id).create().unwrap();
            let uid = pick_uid(&settings, &dir(id)).unwrap();
            make_root(&dir(id).jail_root(), uid).unwrap();
            uids.push(uid);
        }
        assert_eq!(uids, [700_000, 700_001]);
        // A restart keeps the uid; a third server finds the range full.
        assert_eq!(pick_uid(&settings, &dir("a")).unwrap(), 700_000);
        dir("c").create().unwrap();
        assert!(matches!(
            pick_uid(&settings, &dir("c")),
            Err(MonitorError::NoFreeUid { .. })
        ));
        // A deleted server's uid is free again.
        dir("b").remove().unwrap();
        assert_eq!(pick_uid(&settings, &dir("c")).unwrap(), 700_001);
        let meta = std::fs::metadata(dir("a").jail_root()).unwrap();
        assert_eq!(
            (meta.uid(), meta.gid(), meta.mode() & 0o777),
            (700_000, 700_000, 0o700)
        );
    }
}
