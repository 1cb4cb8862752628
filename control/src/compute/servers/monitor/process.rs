//! The monitor's process, which must outlive outpostd: it is started under a tiny `sh`
//! supervisor (the shim) in a process group of its own, so a `kill -9` of the daemon, or a
//! Ctrl-C at its terminal, leaves every guest running. The shim waits for `outpost-vmm` and
//! writes its exit status to `exit-status` (write-then-rename), which is how outpostd learns
//! why a monitor ended even when it was not its parent (after a restart of outpostd).
//!
//! A running monitor is recognised by the shim's pid, its start time (field 22 of
//! `/proc/<pid>/stat`) and the host's boot id, so a reused pid is never mistaken for it.

use super::jail::Prepared;
use super::{MonitorError, ServerDir};
use crate::compute::servers::store::MonitorRecord;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The shim: `$1` is the status file, the rest the monitor's command line. A trapped (not
/// ignored) TERM keeps the shell alive when its process group is sent SIGTERM, while the
/// monitor, whose handlers are reset by exec, stops; the shell runs the trap only after its
/// foreground child has ended, then records the status.
const SHIM: &str = r#"status=$1; shift
trap : TERM INT HUP
"$@"
rc=$?
echo "$rc" > "$status.tmp" && mv -f "$status.tmp" "$status"
exit "$rc"
"#;

/// The shim's `$0`, which names it in `ps`.
const SHIM_NAME: &str = "outpost-monitor-shim";

/// A line written to `vmm.log` before each start, so a failure's reason is taken from this
/// run's output only. Its timestamp has microseconds: bench/control_plane.py measures the
/// control service's cost up to the monitor's start from it.
pub const RUN_MARKER: &str = "--- outpostd: monitor started";

/// How a monitor ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MonitorExit {
    /// Status 0: the guest powered off, or the monitor was asked to stop.
    Poweroff,
    /// Status 3: the guest asked for a reboot; the supervisor restarts it.
    Reboot,
    /// Anything else, with the monitor's last word on stderr (or what is known).
    Failed { reason: String },
}

/// Starts the shim and the monitor under it, jailed when `jail` is given (its arguments and
/// the descriptors they hand over); returns the record that recognises them.
pub fn spawn(
    binary: &Path,
    dir: &ServerDir,
    server_id: &str,
    jail: Option<Prepared>,
) -> Result<MonitorRecord, MonitorError> {
    let io =
        |what: &'static str, path: PathBuf| move |source| MonitorError::Io { what, path, source };
    // (A jail's preparation made its root afresh; an unjailed monitor binds there too.)
    std::fs::create_dir_all(dir.jail_root())
        .map_err(io("create the monitor's folder", dir.jail_root()))?;
    // A socket left by a monitor that died would make the new one refuse to start.
    remove_if_present(&dir.api_sock()).map_err(io("remove the old API socket", dir.api_sock()))?;
    remove_if_present(&dir.exit_status())
        .map_err(io("remove the old exit status", dir.exit_status()))?;
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.vmm_log())
        .map_err(io("open the monitor log", dir.vmm_log()))?;
    writeln!(
        log,
        "{RUN_MARKER} {}",
        crate::timestamp::Timestamp::now().to_rfc3339_micros()
    )
    .map_err(io("write the monitor log", dir.vmm_log()))?;
    let stderr = log
        .try_clone()
        .map_err(io("open the monitor log", dir.vmm_log()))?;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(SHIM)
        .arg(SHIM_NAME)
        .arg(dir.exit_status())
        .arg(binary)
        .arg("--api-sock")
        .arg(dir.api_sock())
        .arg("--id")
        .arg(server_id)
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        // Its own group: outpostd's signals (a terminal's Ctrl-C, a service manager's stop
        // of the daemon's group) do not reach guests, and stop/kill address the whole group.
        .process_group(0);
    if let Some(jail) = &jail {
        command.args(&jail.args);
        let fds: Vec<RawFd> = jail.fds.iter().map(AsRawFd::as_raw_fd).collect();
        // Opened close-on-exec, so no other monitor started meanwhile inherits them; this
        // child alone keeps them across exec (and the shim across its own exec of the
        // monitor).
        let keep_open = move || {
            for fd in &fds {
                // SAFETY: `jail` keeps the descriptor open until spawn() has returned.
                let fd = unsafe { BorrowedFd::borrow_raw(*fd) };
                rustix::io::fcntl_setfd(fd, rustix::io::FdFlags::empty())?;
            }
            Ok(())
        };
        // SAFETY: the closure runs in the forked child before exec and only makes fcntl
        // calls (async-signal-safe, no allocation).
        unsafe { command.pre_exec(keep_open) };
    }
    let child = command.spawn().map_err(|source| MonitorError::Spawn {
        binary: binary.to_owned(),
        source,
    })?;
    // outpostd's copies of the handed-over files close here; the monitor has its own.
    drop(jail);
    let pid = i32::try_from(child.id()).map_err(|_| MonitorError::Identity(child.id()))?;
    // The Child handle is dropped without waiting: poll() reaps the shim with waitpid.
    drop(child);
    let (start_time, _) = stat(pid).ok_or(MonitorError::Identity(pid.unsigned_abs()))?;
    Ok(MonitorRecord {
        pid,
        start_time,
        boot_id: boot_id(),
    })
}

/// Logs kept across restarts are cut back to their last [`LOG_KEEP`] bytes once they pass
/// [`LOG_LIMIT`], at each start, so a chatty guest cannot fill the disk over its restarts.
/// (Within one run the monitor writes the console; bounding that is the monitor's job.)
const LOG_LIMIT: u64 = 4 << 20;
const LOG_KEEP: u64 = 1 << 20;

pub(super) fn trim_log(path: &Path) {
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.len() <= LOG_LIMIT {
        return;
    }
    let kept = match super::read_tail(path, LOG_KEEP) {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!("cannot trim {path:?}: {e}");
            return;
        }
    };
    let tmp = path.with_extension("log.tmp");
    let written = std::fs::write(&tmp, kept).and_then(|()| std::fs::rename(&tmp, path));
    if let Err(e) = written {
        tracing::warn!("cannot trim {path:?}: {e}");
    }
}

pub(super) fn remove_if_present(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The host's boot id; pids and start times only mean something within one boot.
pub fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// `(start time, state)` of `pid` from `/proc/<pid>/stat`, or None when there is no such
/// process. The command name (field 2) may hold spaces and parentheses, so fields are
/// counted after its last `)`.
fn stat(pid: i32) -> Option<(u64, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<(u64, char)> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field 22 (starttime) is fields[19].
    let state = fields.first()?.chars().next()?;
    let start = fields.get(19)?.parse().ok()?;
    Some((start, state))
}

/// Whether the process `record` names is still there (a zombie counts as gone).
pub fn is_alive(record: &MonitorRecord) -> bool {
    if record.boot_id != boot_id() {
        return false;
    }
    matches!(stat(record.pid), Some((start, state)) if start == record.start_time && state != 'Z')
}

/// None while the monitor runs; how it ended once it has. Reaps the shim when outpostd is
/// its parent; after a restart of outpostd it is not, and `/proc` tells instead.
pub fn poll(record: &MonitorRecord, dir: &ServerDir) -> Option<MonitorExit> {
    let mut status: libc::c_int = 0;
    // SAFETY: waitpid only writes the status int we pass; WNOHANG never blocks. A pid that
    // is not our child answers ECHILD and is left alone.
    let rc = unsafe { libc::waitpid(record.pid, &mut status, libc::WNOHANG) };
    let signalled = match rc {
        0 => return None,
        r if r == record.pid => libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        _ => {
            if is_alive(record) {
                return None;
            }
            None
        }
    };
    Some(read_exit(dir, signalled))
}

/// What the shim recorded, with the monitor's last line of stderr for a failure.
fn read_exit(dir: &ServerDir, shim_signal: Option<i32>) -> MonitorExit {
    let recorded = std::fs::read_to_string(dir.exit_status()).ok();
    match recorded.as_deref().map(str::trim) {
        Some("0") => MonitorExit::Poweroff,
        Some("3") => MonitorExit::Reboot,
        Some(code) => {
            let said = last_words(&dir.vmm_log());
            let reason = match (code.parse::<i32>(), said) {
                // Its last words predate the kill; the signal is the news.
                (Ok(c), _) if c == 128 + libc::SIGSYS => "the monitor was killed by its \
                    seccomp filter (SIGSYS): one of its threads made a system call outside \
                    its filter (the host's kernel log names the thread and the call)"
                    .to_owned(),
                (_, Some(line)) => line,
                (Ok(c), None) if c > 128 => {
                    format!("the monitor was killed by signal {}", c - 128)
                }
                (_, None) => format!("the monitor exited with status {code}"),
            };
            MonitorExit::Failed { reason }
        }
        None => MonitorExit::Failed {
            reason: match shim_signal {
                Some(sig) => {
                    format!("the monitor's supervising process was killed by signal {sig}")
                }
                None => "the monitor's supervising process ended without recording an exit \
                         status"
                    .to_owned(),
            },
        },
    }
}

/// The last non-empty line the monitor wrote to stderr in its latest run.
pub fn last_words(log: &Path) -> Option<String> {
    let text = super::read_tail(log, 64 * 1024).ok()?;
    let run = text.rsplit(RUN_MARKER).next().unwrap_or(&text);
    // The marker line's own remainder (its time stamp) is the first line of `run`.
    run.lines()
        .skip(1)
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .last()
        .map(str::to_owned)
}

/// Sends `signal` to the monitor's whole process group, if the recorded process is still
/// the one we started. Returns whether it was.
pub fn signal_group(record: &MonitorRecord, signal: libc::c_int) -> bool {
    if !is_alive(record) {
        // A zombie child: reap it so it does not linger.
        // SAFETY: as in poll(); WNOHANG, our own status int.
        unsafe { libc::waitpid(record.pid, std::ptr::null_mut(), libc::WNOHANG) };
        return false;
    }
    // SAFETY: kill() with a negative pid signals the process group the shim leads (it was
    // started with process_group(0), so its pgid is its pid); identity was checked above.
    unsafe { libc::kill(-record.pid, signal) == 0 }
}

/// Pids of processes whose command line names `api_sock`: a monitor (or its shim) for that
/// server, whatever outpostd recorded. Used to leave no orphan after a crash mid-start.
pub fn processes_using(api_sock: &Path) -> Vec<i32> {
    let wanted = api_sock.as_os_str().as_encoded_bytes();
    let own = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| c.split(|b| *b == 0).any(|arg| arg == wanted))
                .unwrap_or(false)
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

/// SIGKILLs every process that names `api_sock` and reaps those that are our children.
pub fn kill_all_using(api_sock: &Path) -> usize {
    let pids = processes_using(api_sock);
    for pid in &pids {
        // SAFETY: kill() on a pid read from /proc whose command line names this server's
        // socket: a process of this server's monitor, which is what is to be removed.
        unsafe { libc::kill(*pid, libc::SIGKILL) };
        // SAFETY: as in poll(); reaps it if it is our child, ECHILD otherwise.
        unsafe { libc::waitpid(*pid, std::ptr::null_mut(), 0) };
    }
    pids.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_logs_keep_their_end() {
        let tmp = tempfile::tempdir().unwrap();
        let log = tmp.path().join("console.log");
        let mut text = "x".repeat(LOG_LIMIT as usize);
        text.push_str("\nTHE END\n");
        std::fs::write(&log, &text).unwrap();
        trim_log(&log);
        let kept = std::fs::read_to_string(&log).unwrap();
        assert_eq!(kept.len() as u64, LOG_KEEP);
        assert!(kept.ends_with("THE END\n"));
        trim_log(&log);
        assert_eq!(std::fs::metadata(&log).unwrap().len(), LOG_KEEP);
    }

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "1234 (sh (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 \
                    98765 1000 100";
        assert_eq!(parse_stat(line), Some((98765, 'S')));
        assert_eq!(parse_stat("garbage"), None);
        let me = i32::try_from(std::process::id()).unwrap();
        let (start, state) = stat(me).unwrap();
        assert!(start > 0);
        assert_ne!(state, 'Z');
    }

    #[test]
    fn the_shim_records_the_exit_status_and_survives_term() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ServerDir::new(tmp.path().to_owned());
        // A stand-in for the monitor that fails with a message.
        let script = tmp.path().join("fake-vmm");
        std::fs::write(
            &script,
            "#!/bin/sh\necho 'outpost-vmm: bad kernel' >&2\nexit 7\n",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let rec = spawn(&script, &dir, "s1", None).unwrap();
        let exit = wait_exit(&rec, &dir);
        assert_eq!(
            exit,
            MonitorExit::Failed {
                reason: "outpost-vmm: bad kernel".into()
            }
        );
        assert!(!is_alive(&rec));

        // A long runner stopped with SIGTERM to its group: the shim survives and records
        // 143 (killed by TERM); the shell reports the death on stderr.
        std::fs::write(&script, "#!/bin/sh\nsleep 30\n").unwrap();
        let rec = spawn(&script, &dir, "s1", None).unwrap();
        assert!(is_alive(&rec));
        assert_eq!(poll(&rec, &dir), None);
        std::thread::sleep(std::time::Duration::from_millis(200));
        assert_eq!(processes_using(&dir.api_sock()).len(), 2);
        assert!(signal_group(&rec, libc::SIGTERM));
        match wait_exit(&rec, &dir) {
            MonitorExit::Failed { reason } => {
                assert!(
                    reason.contains("Terminated") || reason.contains("signal 15"),
                    "{reason}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert!(!signal_group(&rec, libc::SIGTERM));
        assert!(processes_using(&dir.api_sock()).is_empty());
    }

    #[test]
    fn a_monitor_killed_by_its_seccomp_filter_says_so() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ServerDir::new(tmp.path().to_owned());
        // SIGSYS as the kernel sends it for a filtered syscall; the earlier log line is not
        // the reason.
        let script = tmp.path().join("fake-vmm");
        std::fs::write(
            &script,
            "#!/bin/sh
echo 'INFO guest running' >&2
kill -SYS $$
",
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let rec = spawn(&script, &dir, "s1", None).unwrap();
        match wait_exit(&rec, &dir) {
            MonitorExit::Failed { reason } => {
                assert!(reason.contains("seccomp filter (SIGSYS)"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }

    fn wait_exit(rec: &MonitorRecord, dir: &ServerDir) -> MonitorExit {
        for _ in 0..200 {
            if let Some(e) = poll(rec, dir) {
                return e;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        panic!("the shim did not end");
    }
}
