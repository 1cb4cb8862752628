//! A real guest through a snapshot and a restore into another monitor process (issue 16):
//! it goes on counting, keeps the file it wrote, its disk still takes writes and its network
//! takes new connections; restored twice in a row, and from one snapshot into two monitors at
//! once, each with a disk and a tap of its own. Prints how long each restore took (load
//! request sent → the guest runs again); asserts no timing.

use std::io::Read;
use std::time::{Duration, Instant};

use outpost_tests::asset;
use outpost_tests::guest::{Guest, Mode};
use outpost_tests::net::TapNetns;
use outpost_tests::rootfs::build_rootfs;
use outpost_tests::sh;
use serde_json::json;

const BOOT_TIMEOUT: Duration = Duration::from_secs(600);

/// The ticks `TICK=<n>` the guest printed, in order.
fn ticks(console: &str) -> Vec<u64> {
    console
        .lines()
        .filter_map(|l| l.trim().strip_prefix("TICK="))
        .filter_map(|rest| rest.split_whitespace().next()?.parse().ok())
        .collect()
}

/// The tick the guest last wrote at the start of a data disk image.
fn tick_on_disk(image: &std::path::Path) -> u64 {
    let mut sector = [0u8; 16];
    std::fs::File::open(image)
        .unwrap()
        .read_exact(&mut sector)
        .unwrap();
    let on_disk = String::from_utf8_lossy(&sector);
    on_disk
        .trim_start_matches("tick-")
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{} holds {on_disk:?}", image.display()))
}

fn ok((code, body): (u16, String), what: &str) -> String {
    assert!((200..300).contains(&code), "{what}: HTTP {code} {body}");
    body
}

/// Where a data disk carries the name of its copy, written by the host before a restore and
/// served by the guest to each new connection (read past the guest's page cache, which the
/// restored memory brings back holding what the disk said before the snapshot).
const NAME_SECTOR: u64 = 2048;

/// Writes `name` into `image` at [`NAME_SECTOR`].
fn name_disk(image: &std::path::Path, name: &str) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(image).unwrap();
    f.seek(SeekFrom::Start(NAME_SECTOR * 512)).unwrap();
    f.write_all(format!("{name}\n").as_bytes()).unwrap();
}

/// Connects from the tap's side to the guest's port 7777 (a connection the guest never saw
/// before the snapshot) and returns what the guest answered: its disk's name.
fn ask_guest(net: &TapNetns) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let out = net.exec(&format!("nc -w 10 {} 7777 </dev/null", net.guest_ip));
        let said = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        if !said.is_empty() {
            return said;
        }
        assert!(
            Instant::now() < deadline,
            "the guest never answered on 7777"
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

/// A namespace with a tap for a restored guest: the same subnet as the snapshotted guest's
/// (its addresses are in the memory restored), under another tap name, which the load's
/// network override names.
fn restore_net(tag: &str, tap: &str) -> TapNetns {
    let mut net = TapNetns::new(tag, SUBNET);
    sh(&format!(
        "ip -n {ns} link set {old} down && ip -n {ns} link set {old} name {tap} && \
         ip -n {ns} link set {tap} up",
        ns = net.netns,
        old = net.tap,
    ));
    net.tap = tap.to_owned();
    net
}

/// 172.30.<SUBNET>.0/24 for every namespace of this test: host .1, guest .2.
const SUBNET: u8 = 23;

/// Restores the snapshot into a new monitor in `dir` (inside `net`), with `data` as its data
/// disk, resumed.
fn restore(
    dir: &std::path::Path,
    net: &TapNetns,
    state: &std::path::Path,
    mem: &std::path::Path,
    data: &std::path::Path,
) -> Guest {
    std::fs::create_dir(dir).unwrap();
    let g = Guest::spawn(dir, Mode::Api, Some(net));
    wait_socket(&g);
    let sent = Instant::now();
    ok(
        g.api(
            "PUT",
            "/snapshot/load",
            Some(&json!({
                "snapshot_path": state,
                "mem_backend": {"backend_type": "File", "backend_path": mem},
                "resume_vm": true,
                "drive_overrides": [{"drive_id": "data", "path_on_host": data}],
                "network_overrides": [{"iface_id": "eth0", "host_dev_name": net.tap}]
            })),
        ),
        "load",
    );
    println!(
        "restore into {}: load request → guest resumed in {:?}",
        dir.display(),
        sent.elapsed()
    );
    g
}

fn wait_socket(g: &Guest) {
    let sock = g.api_sock.clone().expect("API mode");
    for _ in 0..200 {
        if sock.exists() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("no API socket at {}", sock.display());
}

#[test]
fn a_guest_goes_on_in_a_new_monitor_from_its_snapshot() {
    let work = tempfile::tempdir().expect("tempdir");
    let stamp = format!("before-snapshot-{}", std::process::id());
    let net = TapNetns::new("snap", SUBNET);
    // A file on the root disk, an address on eth0 and a server that answers each connection
    // with the name on its data disk, then a counter that writes each tick to that disk too.
    let checks = format!(
        r#"echo "{stamp}" > /snapfile && sync && echo FILE-WRITTEN
ip link set eth0 up && ip addr add {guest}/24 dev eth0 && echo NET-UP
printf '#!/bin/sh\necho 1 >/proc/sys/vm/drop_caches\ndd if=/dev/vdb bs=512 skip={NAME_SECTOR} count=1 2>/dev/null | head -n 1\n' >/tmp/who
chmod +x /tmp/who
nc -ll -p 7777 -e /tmp/who </dev/null >/dev/null 2>&1 &
n=0
while [ $n -lt 100000 ]; do
  n=$((n+1))
  if echo "tick-$n" | dd of=/dev/vdb bs=512 count=1 conv=sync,notrunc,fsync 2>/dev/null; then w=ok; else w=failed; fi
  echo "TICK=$n W=$w FILE=$(cat /snapfile)"
  sleep 1
done
"#,
        guest = net.guest_ip,
    );
    let rootfs = build_rootfs(work.path(), &checks, 48);
    let data = work.path().join("data.img");
    std::fs::File::create(&data)
        .unwrap()
        .set_len(2 << 20)
        .unwrap();

    let first_dir = work.path().join("first");
    std::fs::create_dir(&first_dir).unwrap();
    let mut first = Guest::spawn(&first_dir, Mode::Api, Some(&net));
    wait_socket(&first);
    ok(
        first.api(
            "PUT",
            "/boot-source",
            Some(&json!({
                "kernel_image_path": asset("test-vmlinux"),
                "boot_args": "console=ttyS0 reboot=k panic=1 outpost.end=poweroff"
            })),
        ),
        "boot-source",
    );
    ok(
        first.api(
            "PUT",
            "/machine-config",
            Some(&json!({"vcpu_count": 1, "mem_size_mib": 128})),
        ),
        "machine-config",
    );
    for (id, path, root) in [("rootfs", &rootfs, true), ("data", &data, false)] {
        ok(
            first.api(
                "PUT",
                &format!("/drives/{id}"),
                Some(&json!({
                    "drive_id": id, "path_on_host": path, "is_root_device": root,
                    "is_read_only": false
                })),
            ),
            id,
        );
    }
    ok(
        first.api(
            "PUT",
            "/network-interfaces/eth0",
            Some(&json!({
                "iface_id": "eth0", "host_dev_name": net.tap, "guest_mac": "06:00:ac:1e:17:02"
            })),
        ),
        "network-interfaces",
    );
    ok(
        first.api(
            "PUT",
            "/actions",
            Some(&json!({"action_type": "InstanceStart"})),
        ),
        "InstanceStart",
    );
    first.wait_for("TICK=3 ", BOOT_TIMEOUT);
    name_disk(&data, "disk-first");
    assert_eq!(ask_guest(&net), "disk-first");

    let snapshot_path = work.path().join("guest.state");
    let mem_file_path = work.path().join("guest.mem");
    let create = json!({
        "snapshot_type": "Full",
        "snapshot_path": snapshot_path,
        "mem_file_path": mem_file_path,
    });
    // A running guest is not snapshotted.
    let (code, body) = first.api("PUT", "/snapshot/create", Some(&create));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("pause it first"), "{body}");
    ok(
        first.api("PATCH", "/vm", Some(&json!({"state": "Paused"}))),
        "pause",
    );
    let saved_at = Instant::now();
    ok(
        first.api("PUT", "/snapshot/create", Some(&create)),
        "snapshot",
    );
    println!("snapshot written in {:?}", saved_at.elapsed());
    let last_before = *ticks(&first.console_text()).last().expect("ticks before");
    drop(first); // kills the first monitor
    for f in [&snapshot_path, &mem_file_path] {
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(f).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "{}", f.display());
    }

    // The restored guest's data disk is a copy, named by a drive override: its writes go
    // there and the original stays as the first guest left it.
    let data_copy = work.path().join("data-copy.img");
    std::fs::copy(&data, &data_copy).unwrap();

    name_disk(&data_copy, "disk-second");
    drop(net);
    let net2 = restore_net("snap2", "snaptap2");
    let mut second = restore(
        &work.path().join("second"),
        &net2,
        &snapshot_path,
        &mem_file_path,
        &data_copy,
    );
    let info: serde_json::Value =
        serde_json::from_str(&ok(second.api("GET", "/", None), "GET /")).unwrap();
    assert_eq!(info["state"], "Running");
    // The configuration came with the snapshot.
    let cfg: serde_json::Value =
        serde_json::from_str(&ok(second.api("GET", "/vm/config", None), "config")).unwrap();
    assert_eq!(cfg["drives"].as_array().map(|d| d.len()), Some(2), "{cfg}");
    assert_eq!(cfg["drives"][1]["path_on_host"], json!(data_copy), "{cfg}");
    assert_eq!(
        cfg["network-interfaces"][0]["host_dev_name"], "snaptap2",
        "{cfg}"
    );

    let next = last_before + 3;
    let console = second.wait_for(&format!("TICK={next} "), Duration::from_secs(120));
    let after = ticks(&console);
    // The counter goes on from where it was: no restart from 1, no tick lost.
    assert_eq!(after.first().copied(), Some(last_before + 1), "{console}");
    let after_lines: Vec<&str> = console.lines().filter(|l| l.contains("TICK=")).collect();
    for line in &after_lines {
        assert!(
            line.contains("W=ok"),
            "a disk write failed after the restore: {line}"
        );
        assert!(line.contains(&format!("FILE={stamp}")), "{line}");
    }
    assert!(
        !console.contains("FILE-WRITTEN"),
        "the restored guest booted again: {console}"
    );
    // The restored guest's writes reached the override's file, not the original.
    let written = tick_on_disk(&data_copy);
    assert!(
        written > last_before,
        "disk holds tick {written}, snapshot at {last_before}"
    );
    assert!(tick_on_disk(&data) <= last_before);
    // A new connection reaches the restored guest through its new tap, and what it reads
    // comes from its own disk.
    assert_eq!(ask_guest(&net2), "disk-second");

    // The restored guest snapshots again and still pauses/resumes as any guest.
    ok(
        second.api("PATCH", "/vm", Some(&json!({"state": "Paused"}))),
        "pause",
    );
    ok(
        second.api(
            "PUT",
            "/snapshot/create",
            Some(&json!({
                "snapshot_path": work.path().join("again.state"),
                "mem_file_path": work.path().join("again.mem"),
            })),
        ),
        "second snapshot",
    );
    ok(
        second.api("PATCH", "/vm", Some(&json!({"state": "Resumed"}))),
        "resume",
    );
    let resumed_at = second.wait_for(&format!("TICK={} ", next + 2), Duration::from_secs(120));
    let last_second = *ticks(&resumed_at).last().unwrap();
    drop(second);

    // Restored a second time in a row: from the restored guest's own snapshot. Its
    // counter goes on from the second snapshot's tick (a pause stops the guest: its last
    // tick before the pause, at most the one the resume added before the kill).
    let third_data = work.path().join("data-third.img");
    std::fs::copy(&data_copy, &third_data).unwrap();
    name_disk(&third_data, "disk-third");
    let mut third = restore(
        &work.path().join("third"),
        &net2,
        &work.path().join("again.state"),
        &work.path().join("again.mem"),
        &third_data,
    );
    let console = third.wait_for("W=ok", Duration::from_secs(120));
    let first_third = ticks(&console).first().copied().unwrap_or(0);
    assert!(
        first_third > next && first_third <= last_second + 1,
        "the twice-restored guest counted {first_third}, snapshot near {next}..{last_second}: \
         {console}"
    );
    assert_eq!(ask_guest(&net2), "disk-third");
    drop(third);
    drop(net2);

    // One snapshot into two monitors at once, each with its own disk and tap: both go on,
    // each answers new connections in its own namespace with its own disk's name, and each
    // writes its own disk.
    let nets = [
        restore_net("snapa", "snaptapa"),
        restore_net("snapb", "snaptapb"),
    ];
    let disks = ["a", "b"].map(|n| {
        let path = work.path().join(format!("data-{n}.img"));
        std::fs::copy(&data, &path).unwrap();
        name_disk(&path, &format!("disk-{n}"));
        path
    });
    let mut twins: Vec<Guest> = ["a", "b"]
        .iter()
        .zip(nets.iter().zip(&disks))
        .map(|(n, (net, disk))| {
            restore(
                &work.path().join(format!("twin-{n}")),
                net,
                &snapshot_path,
                &mem_file_path,
                disk,
            )
        })
        .collect();
    for (twin, (net, n)) in twins.iter_mut().zip(nets.iter().zip(["a", "b"])) {
        twin.wait_for(&format!("TICK={next} "), Duration::from_secs(180));
        assert_eq!(ask_guest(net), format!("disk-{n}"));
    }
    for disk in &disks {
        assert!(tick_on_disk(disk) > last_before, "{}", disk.display());
    }
}
