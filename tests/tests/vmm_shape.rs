//! The largest guest shape the monitor promises: 8 vCPUs and 16 GiB, all seen by the guest.
//! SMP bring-up runs each AP's real-mode trampoline under a PVM host's emulator (about four
//! minutes here), so it is ignored unless OUTPOST_SLOW_TESTS=1.

use std::time::Duration;

use outpost_tests::guest::{Guest, Mode};
use outpost_tests::{asset, sh};
use serde_json::json;

#[test]
#[ignore = "slow (about four minutes on PVM): OUTPOST_SLOW_TESTS=1 scripts/test.sh runs it"]
fn eight_vcpus_and_16_gib_are_all_seen() {
    let work = tempfile::tempdir().expect("tempdir");
    let disk_dir = work.path().join("disk");
    std::fs::create_dir_all(&disk_dir).unwrap();
    std::fs::write(
        disk_dir.join("outpost-checks.sh"),
        "echo \"CPUS=$(grep -c ^processor /proc/cpuinfo)\"\n\
         while read -r k v u; do [ \"$k\" = MemTotal: ] && echo \"MEMKB=$v\"; done </proc/meminfo\n",
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
            "kernel_image_path": asset("test-vmlinux"),
            "initrd_path": asset("test-initrd.cpio"),
            "boot_args": "console=ttyS0 reboot=k panic=1 outpost.end=poweroff"
        },
        "machine-config": {"vcpu_count": 8, "mem_size_mib": 16384},
        "drives": [{"drive_id": "checks", "path_on_host": disk, "is_root_device": false, "is_read_only": true}]
    });
    let mut g = Guest::spawn(work.path(), Mode::ConfigFile(&cfg), None);
    let st = g.wait_exit(Duration::from_secs(1200));
    let console = g.console_text();
    assert_eq!(st.code(), Some(0), "{console}\n{}", g.stderr_text());
    assert!(console.contains("CPUS=8"), "{console}");
    let mem_kb: u64 = console
        .lines()
        .find_map(|l| l.trim().strip_prefix("MEMKB="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no MemTotal in\n{console}"));
    // The kernel keeps some memory for itself; 15 GiB visible means the 16 GiB above and
    // below the MMIO gap both arrived.
    assert!(mem_kb > 15 * 1024 * 1024, "MemTotal {mem_kb} kB\n{console}");
}
