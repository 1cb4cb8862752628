//! Rate limits on a real guest (seccomp filters on): a drive's bytes/s and ops/s and an
//! interface's transmit bytes/s, set at run time with Firecracker's PATCH requests, hold the
//! guest within ±15% of the limit; without limits (before, and after they are lifted) the
//! guest goes faster. The guest is booted from a Firecracker user's file, with the fields the
//! monitor accepts without acting on them (logger, metrics, mmds-config). Rates are measured
//! on the host over a window of each phase: the monitor's reads for the disk, the tap's
//! counter for the network.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outpost_tests::asset;
use outpost_tests::guest::{Guest, Mode};
use outpost_tests::net::TapNetns;
use outpost_tests::rootfs::build_rootfs;
use serde_json::json;

const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
const PHASE_TIMEOUT: Duration = Duration::from_secs(120);
const MIB: u64 = 1 << 20;
/// The guest reads in O_DIRECT requests of this size.
const REQUEST: u64 = 32 * 1024;
/// The drive's bandwidth limit, bytes/s. A PVM guest on a loaded host spends up to ~150 ms
/// of its own per request (its kernel code is emulated), so the limits sit well below what
/// it manages unlimited.
const DISK_BPS: u64 = 6 * REQUEST;
/// The drive's ops limit, requests/s.
const DISK_OPS: u64 = 4;
/// The interface's transmit limit, bytes/s (about four full frames a second); a PVM
/// guest's TCP send is slow, so the limit is low enough for the guest to outrun it.
const NET_BPS: u64 = 6 * 1024;
/// Before a counter is read for a rate (also spends the full bucket a limit starts with).
const WARMUP: Duration = Duration::from_millis(1500);
/// How long a limited rate is measured: enough requests or frames (24 to 36) that one
/// more or less at either end is a few percent.
const WINDOW: Duration = Duration::from_secs(6);
/// How long an unlimited rate is measured.
const FREE_WINDOW: Duration = Duration::from_secs(3);
/// How far a limited rate may be from its limit.
const TOLERANCE: f64 = 0.15;
/// How much faster than a limit the guest must go without it, for the check to mean
/// anything.
const HEADROOM: f64 = 1.5;

/// Bytes the monitor has read from files and fds (`rchar`): while the guest reads its data
/// disk, that is what the drive serves it, and so what the drive's limiter counts.
fn monitor_read_bytes(pid: u32) -> (u64, Instant) {
    let io = std::fs::read_to_string(format!("/proc/{pid}/io")).expect("the monitor's io");
    let at = Instant::now();
    let rchar = io
        .lines()
        .find_map(|l| l.strip_prefix("rchar:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("rchar");
    (rchar, at)
}

/// Bytes the guest has sent through its tap (the host side's rx counter), and when.
fn tap_rx_bytes(net: &TapNetns) -> (u64, Instant) {
    let out = net.exec(&format!(
        "cat /sys/class/net/{}/statistics/rx_bytes",
        net.tap
    ));
    let at = Instant::now();
    let text = String::from_utf8_lossy(&out.stdout);
    (text.trim().parse().expect("a byte count"), at)
}

/// The rate of a counter over `window`, once it has grown by `burst` (the full bucket a
/// limit starts with, which the guest may only start on a while after its marker) and
/// [`WARMUP`] more has passed.
fn rate(window: Duration, burst: u64, mut sample: impl FnMut() -> (u64, Instant)) -> f64 {
    let (start, t) = sample();
    while sample().0 < start + burst {
        assert!(t.elapsed() < PHASE_TIMEOUT, "the guest does not go on");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(WARMUP);
    let (b0, t0) = sample();
    std::thread::sleep(window);
    let (b1, t1) = sample();
    (b1 - b0) as f64 / t1.duration_since(t0).as_secs_f64()
}

/// `busybox nc -l -p PORT` in the namespace, discarding what the guest sends; killing it
/// ends the guest's send.
fn listen(net: &TapNetns, port: u16) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &net.netns])
        .arg(asset("busybox"))
        .args(["nc", "-l", "-p", &port.to_string()])
        // nc -l also sends its stdin to the peer and hangs up at its end: keep it open.
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("busybox nc listens")
}

/// Lets the guest send to `port` and returns the rate of Ethernet bytes on the tap once the
/// stream runs (past the limit's initial bucket): what the transmit limiter counts,
/// retransmissions included.
fn send_rate(net: &TapNetns, port: u16, window: Duration) -> f64 {
    let mut listener = listen(net, port);
    let (before, _) = tap_rx_bytes(net);
    release(net);
    let t0 = Instant::now();
    // Past the limit's initial bucket (a second's worth) before the warm-up.
    while tap_rx_bytes(net).0 < before + 2 * NET_BPS {
        assert!(t0.elapsed() < PHASE_TIMEOUT, "the guest does not send");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rate = rate(window, 0, || tap_rx_bytes(net));
    let _ = listener.kill();
    let _ = listener.wait();
    rate
}

/// Tells the guest (waiting in `nc -l -p 7000`) to go on; retries until it listens.
fn release(net: &TapNetns) {
    let out = net.exec(&format!(
        "bash -c 'for i in $(seq 60); do echo go 2>/dev/null > /dev/tcp/{}/7000 && exit 0; sleep 0.5; done; exit 1'",
        net.guest_ip
    ));
    assert!(out.status.success(), "the guest never listened: {out:?}");
}

fn patch(g: &Guest, path: &str, body: serde_json::Value) {
    let (code, text) = g.api("PATCH", path, Some(&body));
    assert_eq!(code, 204, "PATCH {path} {body}: {text}");
}

/// Prints a limited rate against its limit; says what is wrong if it is too far from it.
fn within(what: &str, measured: f64, limit: f64) -> Option<String> {
    let error = (measured - limit) / limit;
    eprintln!(
        "{what}: {measured:.1}/s against a limit of {limit:.1}/s ({:+.1}%)",
        error * 100.0
    );
    (error.abs() > TOLERANCE).then(|| {
        format!(
            "{what}: {measured:.1}/s is more than {:.0}% from the limit {limit:.1}/s",
            TOLERANCE * 100.0
        )
    })
}

/// Prints an unlimited rate; says what is wrong if it is not above the limit.
fn above(what: &str, measured: f64, limit: f64) -> Option<String> {
    eprintln!(
        "{what}: {measured:.1}/s unlimited ({:.1}× the limit)",
        measured / limit
    );
    (measured < HEADROOM * limit).then(|| {
        format!("{what}: {measured:.1}/s without limits is not above the limit {limit:.1}/s")
    })
}

#[test]
#[ignore = "slow (about three minutes: each limited window is measured after the guest spends its burst): OUTPOST_SLOW_TESTS=1 scripts/test.sh runs it"]
fn limits_hold_the_guest_to_its_rates_and_change_at_run_time() {
    let work = tempfile::tempdir().expect("tempdir");
    let net = TapNetns::new("rl", 9);
    // Each phase runs until the host has measured it and lets the guest go on: reads are
    // O_DIRECT requests of 32 KiB (no page cache: a PVM guest's kernel copies slowly),
    // sends last until the host closes its listener.
    let checks = format!(
        r#"ip link set eth0 up && ip addr add {guest}/24 dev eth0
wait_host() {{ nc -l -p 7000 >/dev/null; }}
reads() {{
  echo "$1"
  (while :; do dd if=/dev/vdb of=/dev/null bs=32k skip=$2 count=500 iflag=direct 2>/dev/null; done) &
  loop=$!
  wait_host
  kill $loop; killall dd 2>/dev/null; wait $loop 2>/dev/null
}}
sends() {{ echo "$1"; wait_host; dd if=/dev/zero bs=64k count=100000 2>/dev/null | nc {host} $2; }}
reads READ-FREE 0
sends SEND-FREE 5001
reads READ-BYTES 500
sends SEND-BYTES 5002
reads READ-OPS 1000
reads READ-LIFTED 1500
echo RATE-DONE
"#,
        guest = net.guest_ip,
        host = net.host_ip,
    );
    let rootfs = build_rootfs(work.path(), &checks, 48);
    let data = work.path().join("data.img");
    std::fs::File::create(&data)
        .unwrap()
        .set_len(64 * MIB)
        .unwrap();

    // A Firecracker user's file: limits in Firecracker's shape (generous ones on the root
    // drive), and the logger, metrics and mmds-config the monitor accepts but does not use.
    let cfg = json!({
        "boot-source": {
            "kernel_image_path": asset("test-vmlinux"),
            // No GSO: frames of at most one MTU, so a few seconds of a low limit are many
            // frames and the tap's counter measures the rate finely.
            "boot_args": "console=ttyS0 reboot=k panic=1 outpost.end=poweroff virtio_net.gso=0"
        },
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 128, "smt": false, "huge_pages": "None"},
        "drives": [
            {"drive_id": "rootfs", "path_on_host": rootfs, "is_root_device": true,
             "is_read_only": false, "io_engine": "Sync", "partuuid": null,
             "rate_limiter": {"bandwidth": {"size": 1073741824, "one_time_burst": 0, "refill_time": 1000},
                              "ops": {"size": 100000, "refill_time": 1000}}},
            {"drive_id": "data", "path_on_host": data, "is_root_device": false, "is_read_only": true}
        ],
        "network-interfaces": [
            {"iface_id": "eth0", "host_dev_name": net.tap, "guest_mac": "06:00:ac:1e:09:02",
             "rx_rate_limiter": null}
        ],
        "logger": {"log_path": work.path().join("fc.log"), "level": "Info", "show_level": false},
        "metrics": {"metrics_path": work.path().join("fc.metrics")},
        "mmds-config": {"version": "V2", "network_interfaces": ["eth0"]}
    });
    let t0 = Instant::now();
    let mut g = Guest::spawn(work.path(), Mode::ConfigFileAndApi(&cfg), Some(&net));
    let pid = g.pid();
    let disk = || monitor_read_bytes(pid);
    // Firecracker's usual shape: a second's worth per bucket, so a guest late for a refill
    // loses nothing; the warm-up before each window spends the full bucket it starts with.
    let bucket = |per_second: u64| json!({"size": per_second, "refill_time": 1000});
    let off = json!({"size": 0, "refill_time": 0});
    let phase = |g: &mut Guest, marker: &str| {
        g.wait_for(
            marker,
            if marker == "READ-FREE" {
                BOOT_TIMEOUT
            } else {
                PHASE_TIMEOUT
            },
        );
        eprintln!("{:?}: {marker}", t0.elapsed());
    };

    phase(&mut g, "READ-FREE");
    let disk_free = rate(FREE_WINDOW, 0, disk);
    patch(
        &g,
        "/drives/data",
        json!({"drive_id": "data", "rate_limiter": {"bandwidth": bucket(DISK_BPS)}}),
    );
    release(&net);

    phase(&mut g, "SEND-FREE");
    let net_free = send_rate(&net, 5001, FREE_WINDOW);
    patch(
        &g,
        "/network-interfaces/eth0",
        json!({"iface_id": "eth0", "tx_rate_limiter": {"bandwidth": bucket(NET_BPS)}}),
    );

    phase(&mut g, "READ-BYTES");
    let disk_bytes = rate(WINDOW, DISK_BPS, disk);
    // Bytes off, ops on: a PATCH changes only the buckets it names.
    patch(
        &g,
        "/drives/data",
        json!({"drive_id": "data", "rate_limiter": {"bandwidth": off, "ops": bucket(DISK_OPS)}}),
    );
    release(&net);

    phase(&mut g, "SEND-BYTES");
    let net_bytes = send_rate(&net, 5002, WINDOW);
    patch(
        &g,
        "/network-interfaces/eth0",
        json!({"iface_id": "eth0", "tx_rate_limiter": {"bandwidth": off}}),
    );

    phase(&mut g, "READ-OPS");
    let disk_ops = rate(WINDOW, DISK_OPS * REQUEST, disk) / REQUEST as f64;
    let (code, config) = g.api("GET", "/vm/config", None);
    assert_eq!(code, 200, "{config}");
    let config: serde_json::Value = serde_json::from_str(&config).unwrap();
    assert_eq!(
        config["drives"][1]["rate_limiter"]["ops"]["size"], DISK_OPS,
        "{config}"
    );
    assert_eq!(config["logger"]["level"], "Info", "{config}");
    assert_eq!(config["mmds-config"]["version"], "V2", "{config}");
    patch(
        &g,
        "/drives/data",
        json!({"drive_id": "data", "rate_limiter": {"ops": off}}),
    );
    release(&net);

    phase(&mut g, "READ-LIFTED");
    let disk_lifted = rate(FREE_WINDOW, 0, disk);
    release(&net);

    let console = g.wait_for("RATE-DONE", PHASE_TIMEOUT);
    let st = g.wait_exit(PHASE_TIMEOUT);
    assert_eq!(st.code(), Some(0), "{console}\n{}", g.stderr_text());
    eprintln!("total {:?}", t0.elapsed());

    let failures: Vec<String> = [
        above("disk bytes before limits", disk_free, DISK_BPS as f64),
        within("disk bytes", disk_bytes, DISK_BPS as f64),
        within("disk requests", disk_ops, DISK_OPS as f64),
        above("disk bytes after limits", disk_lifted, DISK_BPS as f64),
        above("tap bytes before limits", net_free, NET_BPS as f64),
        within("tap bytes", net_bytes, NET_BPS as f64),
    ]
    .into_iter()
    .flatten()
    .collect();
    assert!(failures.is_empty(), "{failures:#?}\n{console}");
    // The monitor ran under its seccomp filters throughout (a refill timer's syscall
    // outside the devices list would have killed it with SIGSYS).
    assert!(!g.stderr_text().contains("SIGSYS"), "{}", g.stderr_text());
}
