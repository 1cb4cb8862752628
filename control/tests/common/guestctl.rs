//! Remote control of test guests over their own network, so that one booted guest can carry
//! many checks (boots cost tens of seconds on the project's PVM host). The test listens on an
//! address the guests reach (their network's gateway on the host bridge); the guest's boot
//! script ([`GuestControl::boot_script`]) takes its DHCP lease, then keeps ONE connection
//! open to it with a shell at the guest's end: the test writes each step down that
//! connection, the shell runs it and writes back its output and exit status.
//!
//! One long connection rather than a poll per step because every fork and exec in the guest
//! is kernel work, which PVM emulates at about a second per fork+exec: a poll cost five of
//! them (`timeout`, `wget`, `sh` and the same again to post the result), and idle guests
//! polling every second took the CPU the busy one needed. A step now costs one fork (the
//! subshell that runs it) on top of its own commands, and an idle guest costs nothing.
//!
//! Everything a guest reports travels through the network under test: a guest that lost its
//! network (a forged MAC, say) simply stops answering, which is why such checks come last
//! and report on the console too.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// The line the guest's shell prints after a step: `<marker> <id> <exit status>`.
const STEP_END: &str = "OUTPOST-STEP-END";
/// The first line of a connection: `<marker> <the guest's address>`.
const HELLO: &str = "OUTPOST-CTL";

#[derive(Default)]
struct State {
    /// Steps waiting for each guest (by the address it reports), with their ids.
    queued: HashMap<String, VecDeque<(u64, String)>>,
    /// Finished steps: (guest, id) → (exit status, output).
    results: HashMap<(String, u64), (i32, String)>,
    /// When each guest last connected.
    seen: HashMap<String, Instant>,
    /// Each guest's connections so far: only the newest one takes its steps (an older one,
    /// broken, would swallow them).
    connections: HashMap<String, u64>,
    next_id: u64,
}

type Shared = Arc<(Mutex<State>, Condvar)>;

pub struct GuestControl {
    addr: SocketAddr,
    state: Shared,
}

/// What a step printed (stdout and stderr together) and its exit status.
#[derive(Debug, Clone)]
pub struct StepResult {
    pub status: i32,
    pub output: String,
}

impl StepResult {
    pub fn ok(&self) -> bool {
        self.status == 0
    }
}

impl GuestControl {
    /// Serves on `ip` (an address on this host, e.g. a bridge's gateway) at a free port.
    pub fn bind(ip: IpAddr) -> GuestControl {
        let listener = TcpListener::bind((ip, 0)).expect("bind the guest control server");
        let addr = listener.local_addr().unwrap();
        let state: Shared = Arc::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    // A guest that hangs up mid-step is simply ignored: it connects again,
                    // and the step's waiter times out with the step named.
                    let _ = serve(conn, &shared);
                });
            }
        });
        GuestControl { addr, state }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The guest side: /etc/outpost/checks.sh for an image whose guests this server drives.
    /// It asks DHCP for eth0's address and MTU (busybox udhcpc with the image's hook), reports
    /// the lease on the console, then serves steps until the guest dies, connecting again
    /// whenever the connection ends.
    pub fn boot_script(&self) -> String {
        format!(
            r#"#!/bin/sh
# Test guest driver: DHCP on eth0, then a shell for the test at {ip}:{port}.
echo OUTPOST-NET-START
if udhcpc -i eth0 -n -q -O mtu -t 30 -T 2 -A 2 -s /usr/share/udhcpc/default.script >/tmp/dhcp 2>&1; then
    echo OUTPOST-DHCP-OK
else
    echo OUTPOST-DHCP-FAILED
    cat /tmp/dhcp
fi
me=
for word in $(ip -4 -o addr show dev eth0); do
    case $word in */*) me=${{word%/*}}; break ;; esac
done
echo "OUTPOST-NET-ADDR $me"
# nc carries the test's steps into the shell and the shell's output back through the fifo.
mkfifo /tmp/ctl
while :; do
    nc {ip} {port} </tmp/ctl | {{ echo "{HELLO} $me"; exec sh; }} >/tmp/ctl 2>&1
    sleep 1
done
"#,
            ip = self.addr.ip(),
            port = self.addr.port(),
        )
    }

    /// Waits until the guest at `ip` has connected at least once.
    pub fn wait_seen(&self, ip: &str, timeout: Duration) -> bool {
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + timeout;
        let mut st = lock.lock().unwrap();
        while !st.seen.contains_key(ip) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            st = cv.wait_timeout(st, left).unwrap().0;
        }
        true
    }

    /// Queues `script` for the guest at `ip` and returns at once with the step's id.
    pub fn submit(&self, ip: &str, script: &str) -> u64 {
        let (lock, cv) = &*self.state;
        let mut st = lock.lock().unwrap();
        st.next_id += 1;
        let id = st.next_id;
        st.queued
            .entry(ip.to_owned())
            .or_default()
            .push_back((id, script.to_owned()));
        cv.notify_all();
        id
    }

    /// Waits for step `id` of the guest at `ip`.
    pub fn wait(&self, ip: &str, id: u64, timeout: Duration) -> Option<StepResult> {
        let (lock, cv) = &*self.state;
        let deadline = Instant::now() + timeout;
        let key = (ip.to_owned(), id);
        let mut st = lock.lock().unwrap();
        loop {
            if let Some((status, output)) = st.results.remove(&key) {
                return Some(StepResult { status, output });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = cv.wait_timeout(st, left).unwrap().0;
        }
    }

    /// Runs `script` in the guest at `ip` and waits for it; panics on timeout.
    pub fn run(&self, ip: &str, script: &str, timeout: Duration) -> StepResult {
        let started = std::time::Instant::now();
        let id = self.submit(ip, script);
        let r = self.wait(ip, id, timeout).unwrap_or_else(|| {
            panic!("guest {ip} did not finish step {id} in {timeout:?}: {script}")
        });
        // Shown with a failure (and with --no-capture): where a guest test's time goes.
        eprintln!("guestctl: {ip} step {id} took {:.1?}", started.elapsed());
        r
    }
}

/// The shell text that runs one step: the script, quoted whole so that nothing in it (a
/// syntax error, an `exit`, a stray quote) can reach the shell that reads the connection,
/// evaluated in a subshell with no stdin (the connection is that shell's stdin), then the
/// end line with the step's exit status.
fn step_text(id: u64, script: &str) -> String {
    let quoted = script.replace('\'', r"'\''");
    format!("( eval '{quoted}' ) </dev/null 2>&1; printf '\\n{STEP_END} {id} %s\\n' $?\n")
}

/// Splits what the guest printed for a step from the end line `<marker> <id> <status>`.
/// The newline the end line starts with is not the step's.
fn parse_end(line: &str) -> Option<(u64, i32)> {
    let mut words = line.strip_prefix(STEP_END)?.split_whitespace();
    let id = words.next()?.parse().ok()?;
    let status = words.next()?.parse().ok()?;
    Some((id, status))
}

/// One guest's connection: its hello names it, then its queued steps go down one at a time.
fn serve(conn: TcpStream, shared: &(Mutex<State>, Condvar)) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    let mut hello = String::new();
    reader.read_line(&mut hello)?;
    let Some(me) = hello
        .trim()
        .strip_prefix(HELLO)
        .map(|s| s.trim().to_owned())
    else {
        return Ok(());
    };
    let (lock, cv) = shared;
    let generation = {
        let mut st = lock.lock().unwrap();
        st.seen.insert(me.clone(), Instant::now());
        let n = st.connections.entry(me.clone()).or_default();
        *n += 1;
        let generation = *n;
        cv.notify_all();
        generation
    };
    loop {
        let (id, script) = {
            let mut st = lock.lock().unwrap();
            loop {
                if st.connections.get(&me) != Some(&generation) {
                    return Ok(());
                }
                if let Some(step) = st.queued.get_mut(&me).and_then(VecDeque::pop_front) {
                    break step;
                }
                st = cv.wait(st).unwrap();
            }
        };
        conn.write_all(step_text(id, &script).as_bytes())?;
        conn.flush()?;
        let mut output = String::new();
        let status = loop {
            let mut line = String::new();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            match parse_end(line.trim_end()) {
                Some((done, status)) if done == id => break status,
                _ => output.push_str(&line),
            }
        };
        // Drop the newline the end line started with.
        if output.ends_with('\n') {
            output.pop();
        }
        let mut st = lock.lock().unwrap();
        st.results.insert((me.clone(), id), (status, output));
        cv.notify_all();
    }
}
