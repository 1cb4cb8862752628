//! Remote control of test guests over their own network, so that one booted guest can carry
//! many checks (boots cost tens of seconds on the project's PVM host). The test serves tiny
//! HTTP on an address the guests reach (their network's gateway on the host bridge); the
//! guest's boot script ([`GuestControl::boot_script`]) takes its DHCP lease, then polls for
//! shell steps, runs each one and posts its output and exit status back.
//!
//! Everything a guest reports travels through the network under test: a guest that lost its
//! network (a forged MAC, say) simply stops answering, which is why such checks come last
//! and report on the console too.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

#[derive(Default)]
struct State {
    /// Steps waiting for each guest (by the address it reports), with their ids.
    queued: HashMap<String, VecDeque<(u64, String)>>,
    /// Finished steps: (guest, id) → (exit status, output).
    results: HashMap<(String, u64), (i32, String)>,
    /// When each guest last asked for work.
    seen: HashMap<String, Instant>,
    next_id: u64,
}

pub struct GuestControl {
    addr: SocketAddr,
    state: Arc<(Mutex<State>, Condvar)>,
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
        let state: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let shared = state.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    // A guest that hangs up mid-request is simply ignored.
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
    /// It asks DHCP for eth0's address and MTU (busybox udhcpc with the image's hook), reports the
    /// lease on the console, then runs steps until the guest dies.
    pub fn boot_script(&self) -> String {
        format!(
            r#"#!/bin/sh
# Test guest driver: DHCP on eth0, then shell steps from the test at {ctl}.
ctl={ctl}
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
while :; do
    if timeout 10 wget -q -O /tmp/step "http://$ctl/next?me=$me" 2>/dev/null && [ -s /tmp/step ]; then
        read -r _ id </tmp/step
        sh /tmp/step >/tmp/out 2>&1
        echo "rc=$?" >>/tmp/out
        timeout 10 wget -q -O /dev/null --post-file /tmp/out "http://$ctl/result?me=$me&id=$id" 2>/dev/null
    else
        sleep 1
    fi
done
"#,
            ctl = self.addr
        )
    }

    /// Waits until the guest at `ip` has polled at least once.
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
        let (lock, _) = &*self.state;
        let mut st = lock.lock().unwrap();
        st.next_id += 1;
        let id = st.next_id;
        st.queued
            .entry(ip.to_owned())
            .or_default()
            .push_back((id, format!("# {id}\n{script}\n")));
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

fn serve(conn: TcpStream, shared: &(Mutex<State>, Condvar)) -> std::io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let target = request_line.split_whitespace().nth(1).unwrap_or("");
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_owned())
            .unwrap_or_default()
    };
    let me = param("me");
    let (lock, cv) = shared;
    let reply = {
        let mut st = lock.lock().unwrap();
        st.seen.insert(me.clone(), Instant::now());
        let reply = match path {
            "/next" => st
                .queued
                .get_mut(&me)
                .and_then(VecDeque::pop_front)
                .map(|(_, script)| script)
                .unwrap_or_default(),
            "/result" => {
                let text = String::from_utf8_lossy(&body).into_owned();
                // The driver appends "rc=N" as the last line.
                let (output, status) = match text.trim_end().rsplit_once('\n') {
                    Some((out, last)) if last.starts_with("rc=") => {
                        (out.to_owned(), last[3..].parse().unwrap_or(-1))
                    }
                    _ => match text.trim_end().strip_prefix("rc=") {
                        Some(rc) => (String::new(), rc.parse().unwrap_or(-1)),
                        None => (text.clone(), -1),
                    },
                };
                let id = param("id").parse().unwrap_or(0);
                st.results.insert((me.clone(), id), (status, output));
                String::new()
            }
            _ => String::new(),
        };
        cv.notify_all();
        reply
    };
    let mut conn = conn;
    write!(
        conn,
        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
        reply.len()
    )?;
    conn.flush()
}
