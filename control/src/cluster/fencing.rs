//! This box's fencing (docs/cluster.md, "Fencing"): a thread, `fence`, that feeds the
//! [`Fence`] with the lease's acknowledged keep-alives and the clock every [`TICK`], and acts
//! on the guests this box runs: pauses, resumes or kills their monitors, hands each monitor
//! its own deadline every second (so a hung or dead outpostd cannot leave a guest running
//! past the fence), and feeds the watchdog when one is configured.
//!
//! Only guests the site would restart elsewhere are fenced: a `stay` guest (its evacuation
//! policy, recorded in its folder) waits for this box, so nothing else may run it, and it is
//! left running and given no deadline.
//!
//! The thread owns the watchdog's file and nothing else; it reads the guests from the
//! servers' runtime folders on disk, never from etcd, which is what it may have lost. It
//! stops when [`Fencing::stop`] is called (outpostd's clean stop), which disarms the
//! watchdog; a crash leaves the watchdog armed, and a box whose outpostd does not come back
//! within its timeout is reset.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::fence::{Fence, FenceAction};
use super::membership::KEEPALIVE_EVERY;
use super::{ClusterError, Membership};
use crate::compute::servers::evacuation::EvacuationPolicy;
use crate::compute::servers::monitor::{self, ServerDir};
use crate::compute::servers::Fleet;

/// How often the fence looks at the clock: its pause and kill land within this of their
/// time.
pub const TICK: Duration = Duration::from_millis(250);

/// Fewer etcd members than this and nothing fences (docs/cluster.md, "Topology"): on two
/// voters a box cannot tell the other's death from its own isolation, both lose the quorum
/// together, and fencing would stop every guest of the site for one box's death.
pub const MIN_VOTERS: usize = 3;

/// The running fence. Dropping it without [`Fencing::stop`] leaves the thread running.
pub struct Fencing {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Fencing {
    /// Opens the watchdog (if any) and starts the `fence` thread for `membership`'s lease
    /// over `fleet`'s guests.
    pub fn start(
        membership: Membership,
        fleet: Arc<Fleet>,
        watchdog: Option<&Path>,
    ) -> Result<Fencing, ClusterError> {
        let watchdog = watchdog.map(Watchdog::open).transpose()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::Builder::new()
            .name("fence".into())
            .spawn(move || run(&membership, &fleet, watchdog, &stopped))
            .map_err(ClusterError::FenceThread)?;
        Ok(Fencing {
            stop,
            thread: Some(thread),
        })
    }

    /// Ends the thread and disarms the watchdog: outpostd stops on purpose. The monitors'
    /// deadlines are left to lapse (a box without its outpostd must not run guests the site
    /// may restart elsewhere).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("the fence thread panicked");
            }
        }
    }
}

fn run(membership: &Membership, fleet: &Fleet, mut watchdog: Option<Watchdog>, stop: &AtomicBool) {
    let mut fence = Fence::new(membership.last_ack());
    let mut next_deadline = Instant::now();
    let mut pushed_for = None;
    while !stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        fence.ack(membership.last_ack());
        // Every renewal moves the monitors' deadline at once, before this tick may resume
        // them: a deadline pushed up to a second later could lapse just after the resume
        // (renewals back 7 s into a cut, the old deadline at 8 s after the last ack before
        // it), and a guest that paused itself then would stay paused.
        let renewed = pushed_for != Some(fence.last_ack());
        if now >= next_deadline || renewed {
            next_deadline = now + KEEPALIVE_EVERY;
            pushed_for = Some(fence.last_ack());
            if let Some(left) = fence.monitor_deadline(now) {
                for dir in fenced(fleet.local_server_dirs()) {
                    // A server that is not running has no monitor to tell.
                    if let Err(e) = monitor::set_deadline(&dir, left) {
                        tracing::trace!("fence: deadline of {:?}: {e}", dir.path());
                    }
                }
            }
        }
        if let Some(action) = fence.tick(now) {
            let silent = now.saturating_duration_since(fence.last_ack());
            act(action, &fenced(fleet.local_server_dirs()), silent);
        }
        if let Some(w) = &mut watchdog {
            w.feed();
        }
        std::thread::sleep(TICK);
    }
    if let Some(w) = watchdog {
        w.disarm();
    }
}

/// The guests the fence acts on: all but those recorded as `stay`. A folder with no policy
/// recorded (a monitor started by an older outpostd) is fenced, the safe side against a
/// guest running twice.
fn fenced(dirs: Vec<ServerDir>) -> Vec<ServerDir> {
    dirs.into_iter()
        .filter(|d| EvacuationPolicy::recorded(d) != Some(EvacuationPolicy::Stay))
        .collect()
}

/// Applies `action` to every guest in `dirs`.
fn act(action: FenceAction, dirs: &[ServerDir], silent: Duration) {
    let mut done = 0;
    for dir in dirs {
        let result = match action {
            FenceAction::Pause => monitor::pause(dir).map(|()| 1),
            FenceAction::Resume => monitor::resume(dir).map(|()| 1),
            FenceAction::Kill => Ok(usize::from(monitor::kill(dir) > 0)),
        };
        match result {
            Ok(n) => done += n,
            // No monitor (a stopped server) or none started yet: nothing to fence.
            Err(e) => tracing::debug!("fence: {action:?} {:?}: {e}", dir.path()),
        }
    }
    let verb = match action {
        FenceAction::Pause => "paused",
        FenceAction::Resume => "resumed",
        FenceAction::Kill => "killed",
    };
    tracing::warn!(
        "fence: {verb} {done} guest(s) {:.2} s after the last acknowledged keep-alive",
        silent.as_secs_f64()
    );
}

/// A watchdog device (`/dev/watchdog`, softdog where the box has no hardware one): every
/// write feeds it; a `V` before closing is the kernel's "magic close", which disarms it
/// (Documentation/watchdog/watchdog-api.rst). In the test rig a FIFO read by a process
/// that kills the box's cgroup stands in for it.
struct Watchdog {
    path: PathBuf,
    file: File,
    /// Whether a failed feed was already logged (one line, not one per tick).
    failing: bool,
}

impl Watchdog {
    fn open(path: &Path) -> Result<Watchdog, ClusterError> {
        use std::os::unix::fs::OpenOptionsExt;
        // Non-blocking: a FIFO with no reader fails at once instead of hanging the start.
        let file = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|source| ClusterError::Watchdog {
                path: path.to_owned(),
                source,
            })?;
        Ok(Watchdog {
            path: path.to_owned(),
            file,
            failing: false,
        })
    }

    fn feed(&mut self) {
        match self.file.write_all(b"\n") {
            Ok(()) => self.failing = false,
            Err(e) if !self.failing => {
                self.failing = true;
                tracing::error!("fence: cannot feed the watchdog {:?}: {e}", self.path);
            }
            Err(_) => {}
        }
    }

    fn disarm(mut self) {
        if let Err(e) = self.file.write_all(b"V") {
            tracing::error!("fence: cannot disarm the watchdog {:?}: {e}", self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stay_guests_are_left_alone_and_unknown_ones_are_fenced() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = |name: &str, policy: Option<EvacuationPolicy>| {
            let d = ServerDir::new(tmp.path().join(name));
            d.create().unwrap();
            if let Some(p) = policy {
                p.record(&d).unwrap();
            }
            d
        };
        let dirs = vec![
            dir("moves", Some(EvacuationPolicy::Rebuild)),
            dir("waits", Some(EvacuationPolicy::Stay)),
            dir("older", None),
        ];
        let names: Vec<_> = fenced(dirs)
            .iter()
            .map(|d| d.path().file_name().unwrap().to_owned())
            .collect();
        assert_eq!(names, ["moves", "older"]);
    }

    #[test]
    fn the_watchdog_is_fed_then_disarmed_with_the_magic_close() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("watchdog");
        assert!(matches!(
            Watchdog::open(&path),
            Err(ClusterError::Watchdog { .. })
        ));
        std::fs::write(&path, "").unwrap();
        let mut w = Watchdog::open(&path).unwrap();
        w.feed();
        w.feed();
        w.disarm();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "\n\nV");
    }
}
