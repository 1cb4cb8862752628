//! End-to-end tests of `outpost-vmm` with real guests on /dev/kvm (the project's small test
//! kernel). Guest boots are slow on a PVM host, so each guest carries many checks.

use std::io::{Read, Seek, SeekFrom, Write};
use std::time::Duration;

use outpost_tests::guest::{Guest, Mode};
use outpost_tests::net::TapNetns;
use outpost_tests::rootfs::build_rootfs;
use outpost_tests::{asset, sh};
use serde_json::json;

const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// Finds `KEY=value` printed by a guest check.
fn value<'a>(console: &'a str, key: &str) -> Option<&'a str> {
    console
        .lines()
        .filter_map(|l| l.trim().strip_prefix(&format!("{key}=")))
        .next_back()
}

/// One guest through the whole API flow: configured over the socket, started, paused and
/// resumed, refusing configuration after start, with a root disk, a data disk, a read-only
/// disk, a NIC on a tap in a network namespace and an entropy device; the guest checks its
/// devices, both sides ping, and data crosses the disk both ways. It then waits
/// (`outpost.end=wait`) until its ACPI power button is pressed, and powers itself off: the
/// monitor exits 0.
#[test]
fn api_guest_with_disks_network_and_rng() {
    let work = tempfile::tempdir().expect("tempdir");
    let net = TapNetns::new("api", 7);
    let stamp = format!("written-by-guest-{}", std::process::id());
    let checks = format!(
        r#"echo "CPUS=$(grep -c ^processor /proc/cpuinfo)"
while read -r dev mnt rest; do [ "$mnt" = / ] && echo "ROOTDEV=$dev"; done </proc/mounts
echo "DATA-MD5=$(head -c 65536 /dev/vdb | md5sum | cut -d' ' -f1)"
echo "DATA-ID=$(cat /sys/block/vdb/serial)"
echo "{stamp}" | dd of=/dev/vdb bs=512 seek=2048 conv=notrunc,fsync 2>/dev/null && echo GUEST-WROTE
echo "RO-FLAG=$(cat /sys/block/vdc/ro)"
if echo x | dd of=/dev/vdc conv=fsync 2>/dev/null; then echo RO-WRITE=accepted; else echo RO-WRITE=refused; fi
echo "RNG=$(cat /sys/class/misc/hw_random/rng_current)"
echo "RNG-BYTES=$(head -c 32 /dev/hwrng | wc -c)"
echo "MAC=$(cat /sys/class/net/eth0/address)"
echo "NETFEAT=$(cat /sys/class/net/eth0/device/features)"
ip link set eth0 up && ip addr add {guest}/24 dev eth0
ping -c 3 -W 5 {host} >/dev/null && echo GUEST-PING=ok
echo NET-READY
echo "HOST-SAID=$(nc -l -p 7777)"
"#,
        guest = net.guest_ip,
        host = net.host_ip,
    );
    let rootfs = build_rootfs(work.path(), &checks, 48);
    // The data disk: a host pattern the guest hashes, and room for the guest's write.
    let data = work.path().join("data.img");
    let pattern: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
    {
        let mut f = std::fs::File::create(&data).unwrap();
        f.write_all(&pattern).unwrap();
        f.set_len(4 << 20).unwrap();
    }
    let ro = work.path().join("ro.img");
    std::fs::File::create(&ro)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();

    let mut g = Guest::spawn(work.path(), Mode::Api, Some(&net));
    let sock = g.api_sock.clone().unwrap();
    for _ in 0..100 {
        if sock.exists() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ok = |(code, body): (u16, String), what: &str| {
        assert!((200..300).contains(&code), "{what}: HTTP {code} {body}");
        body
    };
    let info: serde_json::Value =
        serde_json::from_str(&ok(g.api("GET", "/", None), "GET /")).unwrap();
    assert_eq!(info["state"], "Not started");
    ok(
        g.api(
            "PUT",
            "/boot-source",
            Some(&json!({
                "kernel_image_path": asset("test-vmlinux"),
                "boot_args": "console=ttyS0 reboot=k panic=1 outpost.end=wait"
            })),
        ),
        "boot-source",
    );
    ok(
        g.api(
            "PUT",
            "/machine-config",
            Some(&json!({"vcpu_count": 1, "mem_size_mib": 128})),
        ),
        "machine-config",
    );
    for (id, path, root, ro) in [
        ("rootfs", &rootfs, true, false),
        ("data", &data, false, false),
        ("ro", &ro, false, true),
    ] {
        ok(
            g.api(
                "PUT",
                &format!("/drives/{id}"),
                Some(&json!({
                    "drive_id": id, "path_on_host": path, "is_root_device": root, "is_read_only": ro
                })),
            ),
            id,
        );
    }
    ok(
        g.api(
            "PUT",
            "/network-interfaces/eth0",
            Some(&json!({
                "iface_id": "eth0", "host_dev_name": net.tap, "guest_mac": "06:00:ac:1e:07:02"
            })),
        ),
        "network-interfaces",
    );
    ok(g.api("PUT", "/entropy", Some(&json!({}))), "entropy");
    let button = json!({"action_type": "SendPowerButton"});
    let (code, body) = g.api("PUT", "/actions", Some(&button));
    assert_eq!(code, 400, "no guest to press the button of yet: {body}");
    assert!(body.contains("InstanceStart first"), "{body}");
    let cfg: serde_json::Value =
        serde_json::from_str(&ok(g.api("GET", "/vm/config", None), "vm/config")).unwrap();
    assert_eq!(cfg["drives"].as_array().map(|a| a.len()), Some(3), "{cfg}");
    assert_eq!(cfg["machine-config"]["mem_size_mib"], 128);

    ok(
        g.api(
            "PUT",
            "/actions",
            Some(&json!({"action_type": "InstanceStart"})),
        ),
        "InstanceStart",
    );
    let info: serde_json::Value =
        serde_json::from_str(&ok(g.api("GET", "/", None), "GET /")).unwrap();
    assert_eq!(info["state"], "Running");
    // Configuration after start is refused, with Firecracker's error shape.
    let (code, body) = g.api(
        "PUT",
        "/machine-config",
        Some(&json!({"vcpu_count": 2, "mem_size_mib": 128})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("fault_message"), "{body}");
    ok(
        g.api("PATCH", "/vm", Some(&json!({"state": "Paused"}))),
        "pause",
    );
    let info: serde_json::Value =
        serde_json::from_str(&ok(g.api("GET", "/", None), "GET /")).unwrap();
    assert_eq!(info["state"], "Paused");
    let before = g.console_text().len();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(g.console_text().len(), before, "a paused guest printed");
    ok(
        g.api("PATCH", "/vm", Some(&json!({"state": "Resumed"}))),
        "resume",
    );

    let console = g.wait_for("NET-READY", BOOT_TIMEOUT);
    // Every thread of the monitor runs under a seccomp filter once the guest does (on a
    // PVM host, all but the vCPU threads: vmm/src/seccomp/mod.rs says why). KVM's own
    // worker (`kvm-nx-lpage-recovery`, a kernel task listed among the process's threads)
    // inherits from whichever thread first ran the guest.
    let threads = seccomp_modes(g.pid());
    assert!(threads.len() >= 5, "{threads:?}");
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let exempt = |name: &str| name.starts_with("kvm-") || (pvm && name.starts_with("vcpu"));
    assert!(
        threads
            .iter()
            .all(|(name, mode)| mode == "2" || exempt(name)),
        "a thread without a filter: {threads:?}"
    );
    for kind in ["vcpu0", "devices", "api_server"] {
        assert!(threads.iter().any(|(n, _)| n == kind), "{threads:?}");
    }
    // Host → guest: ping, then a TCP message the guest is waiting for.
    let ping = net.exec(&format!("ping -c 3 -W 5 {}", net.guest_ip));
    assert!(
        ping.status.success(),
        "host cannot ping guest: {ping:?}\n{console}"
    );
    let stats = ok(g.api("GET", "/stats", None), "stats");
    assert!(stats.contains("io_out"), "{stats}");
    // The guest starts `nc -l` after printing NET-READY: retry until it listens.
    let nc = net.exec(&format!(
        "bash -c 'for i in $(seq 60); do echo hello-guest 2>/dev/null > /dev/tcp/{}/7777 && exit 0; sleep 1; done; exit 1'",
        net.guest_ip
    ));
    assert!(nc.status.success(), "{nc:?}");

    // The guest would wait for ever: its power button ends it, through the GED, the
    // kernel's button driver and init's handler, which syncs and powers off.
    g.wait_for("OUTPOST-CHECKS-DONE", BOOT_TIMEOUT);
    ok(g.api("PUT", "/actions", Some(&button)), "SendPowerButton");
    let st = g.wait_exit(BOOT_TIMEOUT);
    let console = g.console_text();
    assert!(console.contains("OUTPOST-POWER-BUTTON"), "{console}");
    assert_eq!(st.code(), Some(0), "poweroff must exit 0\n{console}");
    assert!(console.contains("OUTPOST-INIT-OK"), "{console}");
    assert_eq!(value(&console, "CPUS"), Some("1"), "{console}");
    assert!(
        matches!(
            value(&console, "ROOTDEV"),
            Some("/dev/root") | Some("/dev/vda")
        ),
        "{console}"
    );
    let pattern_file = work.path().join("pattern.bin");
    std::fs::write(&pattern_file, &pattern).unwrap();
    let want = sh(&format!("md5sum {}", pattern_file.display()));
    let want = want.split_whitespace().next().unwrap();
    assert_eq!(value(&console, "DATA-MD5"), Some(want), "{console}");
    assert_eq!(value(&console, "DATA-ID"), Some("data"), "{console}");
    assert!(console.contains("GUEST-WROTE"), "{console}");
    assert_eq!(value(&console, "RO-FLAG"), Some("1"), "{console}");
    assert_eq!(value(&console, "RO-WRITE"), Some("refused"), "{console}");
    assert!(
        value(&console, "RNG").is_some_and(|v| v.contains("virtio")),
        "{console}"
    );
    assert_eq!(value(&console, "RNG-BYTES"), Some("32"), "{console}");
    assert_eq!(
        value(&console, "MAC"),
        Some("06:00:ac:1e:07:02"),
        "{console}"
    );
    assert_eq!(value(&console, "GUEST-PING"), Some("ok"), "{console}");
    assert_eq!(
        value(&console, "HOST-SAID"),
        Some("hello-guest"),
        "{console}"
    );
    // What the guest wrote is in the host file after poweroff.
    let mut f = std::fs::File::open(&data).unwrap();
    f.seek(SeekFrom::Start(2048 * 512)).unwrap();
    let mut buf = vec![0u8; stamp.len()];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(String::from_utf8_lossy(&buf), stamp);
    // The monitor reports what it handled at exit.
    assert!(
        g.stderr_text().contains("guest ended"),
        "{}",
        g.stderr_text()
    );
}

/// The bzImage path (payload unpacked in the monitor) entered through the 64-bit boot
/// protocol rather than PVH, an initramfs, the smallest memory size (64 MiB), two vCPUs
/// that the guest sees, the console to a file, and a guest reboot (`reboot=k`: the i8042
/// reset line) ending the monitor with its own status.
#[test]
fn config_file_bzimage_smp_reboot() {
    let work = tempfile::tempdir().expect("tempdir");
    let disk_dir = work.path().join("disk");
    std::fs::create_dir_all(&disk_dir).unwrap();
    std::fs::write(
        disk_dir.join("outpost-checks.sh"),
        "echo \"CPUS=$(grep -c ^processor /proc/cpuinfo)\"\n",
    )
    .unwrap();
    let disk = work.path().join("checks.ext4");
    sh(&format!(
        "mkfs.ext4 -q -F -d {} {} 8M",
        disk_dir.display(),
        disk.display()
    ));
    let cfg = json!({
        "boot-source": {
            "kernel_image_path": asset("test-bzImage"),
            "initrd_path": asset("test-initrd.cpio"),
            "boot_args": "console=ttyS0 reboot=k panic=1 outpost.end=reboot"
        },
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 64},
        "drives": [{"drive_id": "checks", "path_on_host": disk, "is_root_device": false, "is_read_only": true}],
        "serial": {"serial_out_path": work.path().join("serial.log")}
    });
    let mut g = Guest::spawn_with_env(
        work.path(),
        Mode::ConfigFile(&cfg),
        None,
        &[("OUTPOST_BOOT_ENTRY", "linux64")],
    );
    let st = g.wait_exit(BOOT_TIMEOUT);
    assert!(
        !g.console_text().contains("OUTPOST-INIT-OK"),
        "console went to stdout"
    );
    let console = std::fs::read_to_string(work.path().join("serial.log")).unwrap_or_default();
    assert_eq!(
        st.code(),
        Some(outpost_vmm_exit_reboot()),
        "reboot status\n{console}\n{}",
        g.stderr_text()
    );
    assert!(console.contains("OUTPOST-INIT-OK"), "{console}");
    assert_eq!(value(&console, "CPUS"), Some("2"), "{console}");
    let log = g.stderr_text();
    assert!(log.contains("payload unpacked by the monitor"), "{log}");
    assert!(log.contains("Linux64 entry"), "{log}");
}

/// (thread name, `Seccomp:` mode) for every thread of `pid`.
fn seccomp_modes(pid: u32) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("monitor's tasks") {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .map(|v| v.trim().to_owned())
                .unwrap_or_default()
        };
        out.push((field("Name:"), field("Seccomp:")));
    }
    out
}

/// A thread that makes a syscall outside its filter takes the monitor down with SIGSYS, for
/// each kind of thread (the hidden test flag makes it do so right after its filter is on).
#[test]
fn a_forbidden_syscall_kills_the_monitor_with_sigsys() {
    use std::os::unix::process::ExitStatusExt;
    let work = tempfile::tempdir().expect("tempdir");
    let cfg = json!({
        "boot-source": {
            "kernel_image_path": asset("test-vmlinux"),
            "initrd_path": asset("test-initrd.cpio"),
            "boot_args": "console=ttyS0 panic=1"
        },
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 64}
    });
    // On a PVM host the vCPU threads carry no filter (vmm/src/seccomp/mod.rs).
    let pvm = std::path::Path::new("/sys/module/kvm_pvm").exists();
    let kinds: &[&str] = if pvm {
        &["api", "main", "devices"]
    } else {
        &["api", "main", "devices", "vcpu"]
    };
    for &kind in kinds {
        let dir = work.path().join(kind);
        std::fs::create_dir_all(&dir).unwrap();
        let mut g = Guest::spawn_with(
            &dir,
            Mode::ConfigFileAndApi(&cfg),
            None,
            &[],
            &["--seccomp-test-violation", kind],
        );
        let st = g.wait_exit(Duration::from_secs(60));
        assert_eq!(
            st.signal(),
            Some(libc::SIGSYS),
            "{kind}: {st}
{}",
            g.stderr_text()
        );
    }
}

/// The monitor's documented exit status for a guest reboot.
fn outpost_vmm_exit_reboot() -> i32 {
    3
}
