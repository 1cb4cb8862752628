//! A box that cannot renew its lease fences its guests before the site can see the lease
//! expire (docs/cluster.md, "Leases" and "Fencing"), on the three-box rig with real guests:
//!
//! - `kill -9` of a box's outpostd and a restart within 3 s: the same lease, the box's alive
//!   key never deleted (watched from another box's etcd member), the guest's monitor the same
//!   process and never paused;
//! - the box's underlay cable out for 4 s (the blip): at most a pause, never a kill;
//! - out for 6 s: its guest paused, then resumed, never killed (the last renewal comes up
//!   to a second before a cut, or a moment after it while etcd notices, and the first one a
//!   moment after the cable is back, so a 6 s cut crosses the pause point at 5 s and stays
//!   before the kill at 8 s; cluster::fence's unit tests hold the exact timelines). The
//!   box's etcd member is made a follower before each cut: an isolated leader renews leases
//!   until it steps down;
//! - another box's outpostd stopped (SIGSTOP): its monitor pauses itself when the deadline
//!   outpostd pushed lapses, and outpostd, continued past the kill point, kills it;
//! - the cable out for 10 s: the guest paused about 5 s and killed about 8 s after the last
//!   acknowledged keep-alive, while the box's alive key is still there for the others.
//!
//! And a box with `[cluster] watchdog` (a FIFO read by a stand-in for the reset): a restart
//! of outpostd within the watchdog's timeout and a clean stop (the magic close) leave the
//! box alone; a hung outpostd (SIGSTOP) gets it reset.
//!
//! Times "after the last ack" are the fence's own (its log line); times "after the cut" are
//! the test's, from the moment it unplugged the box.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use outpost_tests::eventually;
use outpost_tests::rig::{monitor_state, BoxNode, Rig};
use serde_json::{json, Value};

/// Samples monitor `pid`'s state every 100 ms until finished.
struct StateWatch {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(Duration, Option<String>)>>,
}

impl StateWatch {
    fn start(pid: u32, t0: Instant) -> StateWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                seen.push((t0.elapsed(), monitor_state(pid)));
                std::thread::sleep(Duration::from_millis(100));
            }
            seen
        });
        StateWatch { stop, thread }
    }

    fn finish(self) -> Vec<(Duration, Option<String>)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the sampler does not panic")
    }
}

/// When `state` was first seen in `samples`, after `from`.
fn first(samples: &[(Duration, Option<String>)], state: &str, from: Duration) -> Option<Duration> {
    samples
        .iter()
        .find(|(t, s)| *t >= from && s.as_deref() == Some(state))
        .map(|(t, _)| *t)
}

/// The fence's actions in the box's outpostd log: (verb, guests, seconds after the last
/// acknowledged keep-alive).
fn fence_log(b: &BoxNode) -> Vec<(String, usize, f64)> {
    b.log("outpostd")
        .lines()
        .filter_map(|l| {
            let mut w = l.split("fence: ").nth(1)?.split_whitespace();
            let verb = w.next()?.to_owned();
            let guests = w.next()?.parse().ok()?;
            let secs = w.nth(1)?.parse().ok()?;
            Some((verb, guests, secs))
        })
        .collect()
}

fn server(rig: &Rig, id: &str) -> Value {
    let (code, body) =
        rig.boxes[0].api("GET", &format!("/compute/v2.1/servers/{id}"), None, "2.53");
    assert_eq!(code, 200, "{body}");
    body["server"].clone()
}

/// The one monitor running on box `i`, once its guest runs.
fn running_monitor(rig: &Rig, i: usize) -> u32 {
    eventually(60, "a running monitor", || {
        let pids = rig.boxes[i - 1].monitors();
        match pids[..] {
            [pid] => (monitor_state(pid).as_deref() == Some("Running")).then_some(pid),
            _ => None,
        }
    })
}

fn signal(pid: u32, sig: &str) {
    let ok = std::process::Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "kill -{sig} {pid}");
}

#[test]
fn a_box_that_cannot_renew_its_lease_fences_its_guests_before_the_site_sees_it_expire() {
    let mut rig = Rig::site(3);
    let flavor = rig.boxes[0].create_flavor("small", 128);
    // Two servers: the scheduler spreads them (most free RAM first) onto two boxes.
    let ids: Vec<String> = ["a", "b"]
        .iter()
        .map(|name| {
            let (code, body) = rig.boxes[0].api(
                "POST",
                "/compute/v2.1/servers",
                Some(&json!({"server": {"name": name, "flavorRef": flavor,
                                        "imageRef": "outpost-guest", "networks": "none"}})),
                "2.53",
            );
            assert_eq!(code, 202, "{body}");
            body["server"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let hosts: Vec<usize> = ids
        .iter()
        .map(|id| {
            let s = eventually(300, "the server ACTIVE", || {
                let s = server(&rig, id);
                (s["status"] == "ACTIVE").then_some(s)
            });
            let host = s["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_owned();
            rig.boxes.iter().position(|b| b.name == host).unwrap() + 1
        })
        .collect();
    let (x, y) = (hosts[0], hosts[1]);
    assert_ne!(x, y, "one server per box");
    let other = (1..=3).find(|i| *i != x && *i != y).unwrap();
    let name_x = rig.boxes[x - 1].name.clone();
    let pid = running_monitor(&rig, x);

    // 1. kill -9 of box x's outpostd, restarted 2 s later. Another box watches its alive key.
    let lease = rig.boxes[other - 1].alive_lease(&name_x).expect("alive");
    let watch_argv: Vec<String> = [
        "env",
        "ETCDCTL_API=3",
        "etcdctl",
        &format!("--endpoints={}", rig.boxes[other - 1].etcd_url()),
        "watch",
        &format!("/outpost/v1/alive/{name_x}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    rig.boxes[other - 1].spawn("alive-watch", &watch_argv);
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    let states = StateWatch::start(pid, t0);
    rig.boxes[x - 1].kill9("outpostd");
    std::thread::sleep(Duration::from_secs(2));
    rig.start_outpostd(x);
    rig.boxes[x - 1].wait_api(Duration::from_secs(60));
    let back = t0.elapsed();
    // Past the deadline the killed outpostd had given the monitor (at most 8 s after its
    // last ack): had the new one not renewed it, the guest would have paused by now.
    std::thread::sleep(Duration::from_secs(9).saturating_sub(back) + Duration::from_secs(2));
    let samples = states.finish();
    rig.boxes[other - 1].kill9("alive-watch");
    eprintln!("outpostd back after {back:?}");
    assert!(samples.len() > 50, "{samples:?}");
    assert!(
        samples.iter().all(|(_, s)| s.as_deref() == Some("Running")),
        "the guest ran throughout the restart: {samples:?}"
    );
    assert_eq!(rig.boxes[x - 1].monitors(), vec![pid], "the same monitor");
    assert_eq!(rig.boxes[other - 1].alive_lease(&name_x), Some(lease));
    let watched = rig.boxes[other - 1].log("alive-watch");
    assert!(
        watched.contains("PUT") && !watched.contains("DELETE"),
        "the alive key was rewritten, never deleted: {watched}"
    );
    assert!(fence_log(&rig.boxes[x - 1]).is_empty());

    // 2a. A 4 s cut (the blip): at most a pause, never a kill; the guest runs after.
    rig.move_etcd_leader_off(x);
    let t0 = Instant::now();
    let states = StateWatch::start(pid, t0);
    rig.unplug(x);
    std::thread::sleep(Duration::from_secs(4));
    rig.plug(x);
    std::thread::sleep(Duration::from_secs(8));
    let samples = states.finish();
    let fenced = fence_log(&rig.boxes[x - 1]);
    eprintln!("4 s cut: fence {fenced:?}");
    let verbs: Vec<&str> = fenced.iter().map(|(v, _, _)| v.as_str()).collect();
    assert!(
        verbs.is_empty() || verbs == ["paused", "resumed"],
        "{fenced:?}"
    );
    assert_eq!(
        samples.last().and_then(|(_, s)| s.as_deref()),
        Some("Running")
    );
    assert_eq!(rig.boxes[x - 1].monitors(), vec![pid], "never killed");
    let before = fenced.len();

    // 2b. Box x's cable out for 6 s: the guest pauses and resumes, the same monitor.
    rig.move_etcd_leader_off(x);
    let t0 = Instant::now();
    let states = StateWatch::start(pid, t0);
    rig.unplug(x);
    std::thread::sleep(Duration::from_secs(6));
    rig.plug(x);
    std::thread::sleep(Duration::from_secs(12));
    let samples = states.finish();
    let fenced = fence_log(&rig.boxes[x - 1]).split_off(before);
    let paused = first(&samples, "Paused", Duration::ZERO).unwrap_or_else(|| {
        panic!(
            "the guest paused: {fenced:?}\n{}",
            rig.boxes[x - 1].log("outpostd")
        )
    });
    let resumed = first(&samples, "Running", paused).expect("the guest resumed");
    eprintln!(
        "6 s cut: paused {paused:?} and resumed {resumed:?} after the cut; fence: {fenced:?}"
    );
    assert_eq!(
        fenced
            .iter()
            .map(|(v, n, _)| (v.as_str(), *n))
            .collect::<Vec<_>>(),
        vec![("paused", 1), ("resumed", 1)]
    );
    let pause_after_ack = fenced[0].2;
    assert!((5.0..5.5).contains(&pause_after_ack), "{fenced:?}");
    assert!(paused >= Duration::from_millis(3500) && paused < Duration::from_millis(5600));
    assert_eq!(rig.boxes[x - 1].monitors(), vec![pid], "never killed");
    assert_eq!(monitor_state(pid).as_deref(), Some("Running"));
    assert_eq!(server(&rig, &ids[0])["status"], "ACTIVE");

    // 3. Box y's outpostd stopped: its monitor pauses itself when the deadline lapses
    //    (8 s after the last ack outpostd saw), though nothing asked it to.
    let pid_y = running_monitor(&rig, y);
    let daemon_y = rig.boxes[y - 1].pids_named("outpostd");
    assert_eq!(daemon_y.len(), 1, "{daemon_y:?}");
    let t0 = Instant::now();
    signal(daemon_y[0], "STOP");
    let paused = eventually(12, "the monitor pauses itself", || {
        (monitor_state(pid_y).as_deref() == Some("Paused")).then(|| t0.elapsed())
    });
    eprintln!("outpostd stopped: the monitor paused itself {paused:?} later");
    assert!(
        paused >= Duration::from_millis(5500) && paused < Duration::from_secs(9),
        "{paused:?}"
    );
    assert!(fence_log(&rig.boxes[y - 1]).is_empty());
    // Continued well past the kill point (8 s after its last ack, which came up to a second
    // before the stop), outpostd's fence kills the guest before anything else. Continued
    // right at the kill point, a renewal answered at once may count first: that is a resume,
    // also correct, but not what this step is about.
    std::thread::sleep(Duration::from_secs(9).saturating_sub(t0.elapsed()));
    signal(daemon_y[0], "CONT");
    eventually(5, "the stopped box's monitor killed", || {
        rig.boxes[y - 1].monitors().is_empty().then_some(())
    });
    let fenced = fence_log(&rig.boxes[y - 1]);
    eprintln!("outpostd continued: fence {fenced:?}");
    assert_eq!(fenced.first().map(|f| f.0.as_str()), Some("killed"));

    // 4. Box x's cable out for 10 s: paused at 5 s, killed at 8 s after the last ack, while
    //    the others still see its alive key (the lease has not expired).
    rig.move_etcd_leader_off(x);
    let t0 = Instant::now();
    let states = StateWatch::start(pid, t0);
    rig.unplug(x);
    let gone = eventually(12, "the monitor killed", || {
        rig.boxes[x - 1].monitors().is_empty().then(|| t0.elapsed())
    });
    let still_alive = rig.boxes[other - 1].alive_lease(&name_x);
    let samples = states.finish();
    std::thread::sleep(Duration::from_secs(10).saturating_sub(t0.elapsed()));
    rig.plug(x);
    let paused = first(&samples, "Paused", Duration::ZERO).expect("paused first");
    // After the 4 s cut's actions (if any) and the 6 s cut's pause and resume.
    let fenced = fence_log(&rig.boxes[x - 1]).split_off(before + 2);
    eprintln!(
        "10 s outage: paused {paused:?}, monitor gone {gone:?} after the cut; fence: {fenced:?}"
    );
    let outage: Vec<_> = fenced.iter().map(|(v, n, _)| (v.as_str(), *n)).collect();
    assert_eq!(outage, vec![("paused", 1), ("killed", 1)]);
    let (pause_at, kill_at) = (fenced[0].2, fenced[1].2);
    assert!((5.0..5.5).contains(&pause_at), "{fenced:?}");
    assert!((8.0..8.5).contains(&kill_at), "{fenced:?}");
    assert!(paused < gone && gone < Duration::from_secs(9), "{gone:?}");
    assert_eq!(
        still_alive,
        Some(lease),
        "killed before the lease could expire"
    );
}

/// The watchdog's timeout in the test (softdog's would be ~8 s, under the lease's TTL).
const WATCHDOG_TIMEOUT: Duration = Duration::from_secs(3);

#[test]
fn a_hung_outpostd_stops_feeding_the_watchdog_and_its_box_is_reset() {
    // Three etcd members (the fence runs from three voters on); outpostd on box 1 only.
    let mut rig = Rig::new(3);
    rig.start_etcd();
    let watchdog = rig.boxes[0].watchdog_stand_in(WATCHDOG_TIMEOUT);
    rig.extra_config = format!("watchdog = \"{}\"\n", watchdog.path.display());
    rig.write_outpostd_config(1, None);
    rig.start_outpostd(1);
    rig.boxes[0].wait_api(Duration::from_secs(60));

    // kill -9 and a restart within the timeout: fed again in time, no reset.
    rig.boxes[0].kill9("outpostd");
    std::thread::sleep(Duration::from_secs(1));
    rig.start_outpostd(1);
    rig.boxes[0].wait_api(Duration::from_secs(60));
    std::thread::sleep(WATCHDOG_TIMEOUT + Duration::from_secs(1));
    assert_eq!(watchdog.fired(), None, "restarted in time");

    // A clean stop disarms it (magic close): no reset however long it stays stopped.
    let daemon = rig.boxes[0].pids_named("outpostd");
    assert_eq!(daemon.len(), 1, "{daemon:?}");
    signal(daemon[0], "TERM");
    eventually(10, "outpostd stopped", || {
        rig.boxes[0].pids_named("outpostd").is_empty().then_some(())
    });
    std::thread::sleep(WATCHDOG_TIMEOUT + Duration::from_secs(1));
    assert_eq!(watchdog.fired(), None, "disarmed by the clean stop");
    assert!(
        !rig.boxes[0].pids_named("etcd").is_empty(),
        "the box was not reset"
    );

    // Started again (armed at its first feed), then hung: reset within the timeout.
    rig.start_outpostd(1);
    rig.boxes[0].wait_api(Duration::from_secs(60));
    let daemon = rig.boxes[0].pids_named("outpostd");
    let hung = Instant::now();
    signal(daemon[0], "STOP");
    let reset = eventually(10, "the box reset", || watchdog.fired());
    let after = reset.duration_since(hung);
    eprintln!("outpostd hung: the box reset {after:?} later");
    assert!(
        after >= WATCHDOG_TIMEOUT - Duration::from_millis(300)
            && after < WATCHDOG_TIMEOUT + Duration::from_secs(1),
        "{after:?}"
    );
    eventually(5, "every process of the box gone", || {
        rig.boxes[0].pids().is_empty().then_some(())
    });
}
