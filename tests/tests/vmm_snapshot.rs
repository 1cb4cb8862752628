//! A real guest through a snapshot and a restore into another monitor process (issue 16):
//! it goes on counting, keeps the file it wrote, and its disk still takes writes. Prints how
//! long the restore took (load request sent → the guest runs again); asserts no timing.

use std::io::Read;
use std::time::{Duration, Instant};

use outpost_tests::asset;
use outpost_tests::guest::{Guest, Mode};
use outpost_tests::rootfs::build_rootfs;
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
    // A file on the root disk, then a counter that writes each tick to the data disk too.
    let checks = format!(
        r#"echo "{stamp}" > /snapfile && sync && echo FILE-WRITTEN
n=0
while [ $n -lt 100000 ]; do
  n=$((n+1))
  if echo "tick-$n" | dd of=/dev/vdb bs=512 count=1 conv=sync,notrunc,fsync 2>/dev/null; then w=ok; else w=failed; fi
  echo "TICK=$n W=$w FILE=$(cat /snapfile)"
  sleep 1
done
"#
    );
    let rootfs = build_rootfs(work.path(), &checks, 48);
    let data = work.path().join("data.img");
    std::fs::File::create(&data)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();

    let first_dir = work.path().join("first");
    std::fs::create_dir(&first_dir).unwrap();
    let mut first = Guest::spawn(&first_dir, Mode::Api, None);
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
            "/actions",
            Some(&json!({"action_type": "InstanceStart"})),
        ),
        "InstanceStart",
    );
    first.wait_for("TICK=3 ", BOOT_TIMEOUT);

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

    let second_dir = work.path().join("second");
    std::fs::create_dir(&second_dir).unwrap();
    let mut second = Guest::spawn(&second_dir, Mode::Api, None);
    wait_socket(&second);
    let sent = Instant::now();
    ok(
        second.api(
            "PUT",
            "/snapshot/load",
            Some(&json!({
                "snapshot_path": snapshot_path,
                "mem_backend": {"backend_type": "File", "backend_path": mem_file_path},
                "resume_vm": true,
                "drive_overrides": [{"drive_id": "data", "path_on_host": data_copy}]
            })),
        ),
        "load",
    );
    println!(
        "restore: load request → guest resumed in {:?}",
        sent.elapsed()
    );
    let info: serde_json::Value =
        serde_json::from_str(&ok(second.api("GET", "/", None), "GET /")).unwrap();
    assert_eq!(info["state"], "Running");
    // The configuration came with the snapshot.
    let cfg: serde_json::Value =
        serde_json::from_str(&ok(second.api("GET", "/vm/config", None), "config")).unwrap();
    assert_eq!(cfg["drives"].as_array().map(|d| d.len()), Some(2), "{cfg}");
    assert_eq!(cfg["drives"][1]["path_on_host"], json!(data_copy), "{cfg}");

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
    second.wait_for(&format!("TICK={} ", next + 2), Duration::from_secs(60));
}
