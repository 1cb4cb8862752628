//! The monitor's jail, entered by the process itself before it creates any thread or reads
//! any configuration it did not get from its parent (docs/security.md, "The jail"): into its
//! cgroup, into a mount namespace whose root is one directory of its own, down to an
//! unprivileged uid and gid with no capabilities and `no_new_privs`. The per-thread seccomp
//! filters come after, as they do without a jail.
//!
//! What the jail needs from outside — the guest's disks and kernel, its taps, /dev/kvm,
//! /dev/urandom, the console log — its parent opens and hands over ([`files`]).

pub mod files;

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The jail this process entered, for naming host paths the API gives as it sees them.
static ENTERED: OnceLock<PathBuf> = OnceLock::new();

/// `path`, named as the host sees it, as this process reaches it: relative to the jail
/// root once it is jailed, unchanged otherwise.
pub fn own_path(path: &Path) -> Result<PathBuf, JailError> {
    match ENTERED.get() {
        Some(root) => inside(root, path),
        None => Ok(path.to_owned()),
    }
}

fn inside(root: &Path, path: &Path) -> Result<PathBuf, JailError> {
    let rest = path
        .strip_prefix(root)
        .map_err(|_| JailError::OutsideRoot {
            path: path.to_owned(),
            root: root.to_owned(),
        })?;
    Ok(Path::new("/").join(rest))
}

/// Where and as whom the monitor runs (`--jail-root`, `--jail-uid`, `--jail-gid`,
/// `--jail-cgroup`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jail {
    /// The directory that becomes `/`; the monitor's uid must own it (it binds its API
    /// socket there).
    pub root: PathBuf,
    pub uid: u32,
    pub gid: u32,
    /// The directories of its cgroup to move into first: one in cgroup v2 and, on a host
    /// whose controllers are bound to v1 hierarchies, one in each of those.
    pub cgroup: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum JailError {
    #[error("the jail needs root to enter (it drops to uid {uid} itself); run unjailed with no --jail-root")]
    NotRoot { uid: u32 },
    #[error("--jail-uid and --jail-gid must not be 0: the jail's point is to leave root")]
    RootIds,
    #[error("the jail root {0:?} must be an absolute path")]
    RelativeRoot(PathBuf),
    #[error(
        "{path:?} is not inside the jail root {root:?}: the jailed monitor could not reach it"
    )]
    OutsideRoot { path: PathBuf, root: PathBuf },
    #[error("cannot join the cgroup {path:?}: {source}")]
    Cgroup { path: PathBuf, source: io::Error },
    #[error("cannot {step}: {source}")]
    Step {
        step: &'static str,
        source: io::Error,
    },
}

fn step(step: &'static str) -> impl FnOnce(io::Error) -> JailError {
    move |source| JailError::Step { step, source }
}

/// `rc` of a libc call as a Result, with errno.
fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))
}

impl Jail {
    /// Checks what can be checked before anything changes.
    pub fn validate(&self) -> Result<(), JailError> {
        if self.uid == 0 || self.gid == 0 {
            return Err(JailError::RootIds);
        }
        if !self.root.is_absolute() {
            return Err(JailError::RelativeRoot(self.root.clone()));
        }
        Ok(())
    }

    /// `path` (as the host names it) as the jailed monitor sees it: relative to the root.
    pub fn inside(&self, path: &Path) -> Result<PathBuf, JailError> {
        inside(&self.root, path)
    }

    /// Enters the jail. Must run before the process has a second thread: unshare(CLONE_NEWNS)
    /// refuses a process whose threads share its file-system context, and the uid change
    /// must reach every thread.
    pub fn enter(&self) -> Result<(), JailError> {
        self.validate()?;
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if euid != 0 {
            return Err(JailError::NotRoot { uid: euid });
        }
        for cgroup in &self.cgroup {
            // "0" moves the writing process (v1 and v2 alike); its threads-to-be are created
            // inside.
            std::fs::write(cgroup.join("cgroup.procs"), "0").map_err(|source| {
                JailError::Cgroup {
                    path: cgroup.clone(),
                    source,
                }
            })?;
        }
        self.pivot()?;
        drop_privileges(self.uid, self.gid)?;
        // A process enters one jail, once (process::run).
        let _ = ENTERED.set(self.root.clone());
        Ok(())
    }

    /// A mount namespace of its own whose `/` is the jail root, the host's tree detached.
    fn pivot(&self) -> Result<(), JailError> {
        let root = c_path(&self.root).map_err(step("name the jail root"))?;
        let none = std::ptr::null::<libc::c_char>();
        // SAFETY: unshare takes only flags.
        check(unsafe { libc::unshare(libc::CLONE_NEWNS) })
            .map_err(step("create a mount namespace"))?;
        // Nothing mounted from here on propagates to the host (and pivot_root refuses a
        // shared mount).
        // SAFETY: "/" is a NUL-terminated literal; the other pointers may be null for a
        // propagation change.
        check(unsafe {
            libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            )
        })
        .map_err(step("make the mounts private"))?;
        // pivot_root needs the new root to be a mount point: bind it onto itself, then make
        // that mount unable to hold device nodes or set-id programs.
        // SAFETY: `root` is a NUL-terminated path that outlives both calls.
        check(unsafe {
            libc::mount(
                root.as_ptr(),
                root.as_ptr(),
                none,
                libc::MS_BIND,
                std::ptr::null(),
            )
        })
        .map_err(step("bind the jail root"))?;
        // SAFETY: as above.
        check(unsafe {
            libc::mount(
                none,
                root.as_ptr(),
                none,
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                std::ptr::null(),
            )
        })
        .map_err(step("restrict the jail root's mount"))?;
        std::env::set_current_dir(&self.root).map_err(step("enter the jail root"))?;
        // pivot_root(".", "."): the old root is stacked under the new one at "/", from where
        // it is detached; no directory for it is needed inside the jail.
        // SAFETY: "." is a NUL-terminated literal, for both arguments.
        let rc = unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) };
        check(if rc == 0 { 0 } else { -1 }).map_err(step("pivot into the jail root"))?;
        // SAFETY: "." is a NUL-terminated literal.
        check(unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) })
            .map_err(step("detach the host's file system"))?;
        std::env::set_current_dir("/").map_err(step("enter the new root"))
    }
}

/// Leaves root for good: no supplementary groups, `gid` and `uid` for real, effective and
/// saved ids, no capability in any set (the bounding set too, so nothing executed could
/// regain one), and `no_new_privs`.
fn drop_privileges(uid: u32, gid: u32) -> Result<(), JailError> {
    // The bounding set first: dropping from it needs CAP_SETPCAP, which setresuid takes away.
    // Capabilities the kernel does not know answer EINVAL, which ends the walk.
    for cap in 0..64 {
        // SAFETY: PR_CAPBSET_DROP takes a capability number and no pointers.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        if rc != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINVAL) {
                break;
            }
            return Err(JailError::Step {
                step: "drop the capability bounding set",
                source: e,
            });
        }
    }
    // SAFETY: PR_CAP_AMBIENT_CLEAR_ALL takes no pointers.
    check(unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    })
    .map_err(step("clear the ambient capabilities"))?;
    // SAFETY: a zero-length list; the pointer is not read.
    check(unsafe { libc::setgroups(0, std::ptr::null()) })
        .map_err(step("drop the supplementary groups"))?;
    // SAFETY: setresgid/setresuid take plain ids. Without SECBIT_KEEP_CAPS, leaving uid 0
    // for all three ids clears the permitted and effective capabilities.
    check(unsafe { libc::setresgid(gid, gid, gid) }).map_err(step("change to the jail's gid"))?;
    // SAFETY: as above.
    check(unsafe { libc::setresuid(uid, uid, uid) }).map_err(step("change to the jail's uid"))?;
    clear_capabilities()?;
    // SAFETY: PR_SET_NO_NEW_PRIVS takes an integer flag and no pointers.
    check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })
        .map_err(step("set no_new_privs"))
}

/// Empties the inheritable set too (setresuid leaves it) and proves the other sets empty.
fn clear_capabilities() -> Result<(), JailError> {
    // linux/capability.h: version 3 takes two data structs (capabilities 0-31, 32-63).
    const VERSION_3: u32 = 0x2008_0522;
    #[repr(C)]
    struct Header {
        version: u32,
        pid: libc::c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let mut header = Header {
        version: VERSION_3,
        pid: 0,
    };
    let data = [Data::default(); 2];
    // SAFETY: capset reads one header and two data structs, which these are (repr(C), the
    // kernel's layout), for the calling thread (pid 0).
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) };
    check(if rc == 0 { 0 } else { -1 }).map_err(step("clear the capability sets"))?;
    let mut now = [Data::default(); 2];
    // SAFETY: capget writes two data structs into `now`, which has room for exactly two.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut header, now.as_mut_ptr()) };
    check(if rc == 0 { 0 } else { -1 }).map_err(step("read the capability sets"))?;
    if now
        .iter()
        .any(|d| d.effective | d.permitted | d.inheritable != 0)
    {
        return Err(JailError::Step {
            step: "clear the capability sets",
            source: io::Error::other("capabilities remain after the change of uid"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jail() -> Jail {
        Jail {
            root: PathBuf::from("/state/servers/s1/jail"),
            uid: 900_001,
            gid: 900_001,
            cgroup: Vec::new(),
        }
    }

    #[test]
    fn paths_are_seen_from_the_jail_root() {
        let j = jail();
        assert_eq!(
            j.inside(Path::new("/state/servers/s1/jail/api.sock"))
                .unwrap(),
            PathBuf::from("/api.sock")
        );
        let e = j.inside(Path::new("/state/servers/s2/jail/api.sock"));
        assert!(matches!(e, Err(JailError::OutsideRoot { .. })));
    }

    #[test]
    fn root_ids_and_relative_roots_are_refused() {
        let mut j = jail();
        j.uid = 0;
        assert!(matches!(j.validate(), Err(JailError::RootIds)));
        let mut j = jail();
        j.root = PathBuf::from("jail");
        assert!(matches!(j.validate(), Err(JailError::RelativeRoot(_))));
        assert!(jail().validate().is_ok());
    }

    /// The whole sequence, in a child process (it changes the process for good): its uid,
    /// capabilities, no_new_privs and `/` afterwards. Needs root, as the jail does.
    #[test]
    fn a_jailed_process_has_no_privileges_and_only_its_root() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: entering a jail needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("jail");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("mine"), "x").unwrap();
        std::os::unix::fs::chown(&root, Some(900_123), Some(900_123)).unwrap();
        let j = Jail {
            root: root.clone(),
            uid: 900_123,
            gid: 900_123,
            cgroup: Vec::new(),
        };
        // SAFETY: the child only runs the jail's steps and std::fs calls, then _exit()s; the
        // test harness's other threads are not used in it (their locks are not taken).
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = match j.enter() {
                Err(e) => {
                    eprintln!("{e}");
                    10
                }
                Ok(()) => {
                    let status = std::fs::read_to_string("/proc/self/status");
                    let listing: Vec<_> = std::fs::read_dir("/")
                        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()))
                        .map(Iterator::collect)
                        .unwrap_or_default();
                    // No /proc in the jail: the listing is the jail's own files only.
                    if status.is_ok() {
                        11
                    } else if listing != ["mine"] {
                        12
                    } else if std::fs::write("/new", "y").is_err() {
                        13 // the uid owns its root
                    } else if privileges_dropped() {
                        0
                    } else {
                        14
                    }
                }
            };
            // SAFETY: _exit ends the forked child without running the parent's destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waits for the child forked above; `status` is ours to write.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(libc::WIFEXITED(status), "{status}");
        assert_eq!(libc::WEXITSTATUS(status), 0);
        assert_eq!(std::fs::read_to_string(root.join("new")).unwrap(), "y");
    }

    /// Uid, gid, no capability and no_new_privs, asked of the kernel directly (the jail has
    /// no /proc).
    fn privileges_dropped() -> bool {
        // SAFETY: these getters and PR_GET_NO_NEW_PRIVS take no pointers.
        let (uid, gid, nnp) = unsafe {
            (
                libc::getuid(),
                libc::getgid(),
                libc::prctl(libc::PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
            )
        };
        // SAFETY: PR_CAPBSET_READ takes a capability number; 21 is CAP_SYS_ADMIN.
        let bounding_admin = unsafe { libc::prctl(libc::PR_CAPBSET_READ, 21, 0, 0, 0) };
        uid == 900_123 && gid == 900_123 && nnp == 1 && bounding_admin == 0
    }
}
