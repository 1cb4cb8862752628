//! The stock Debian cloud kernel, unmodified, on outpost-vmm: its virtio modules load from
//! the initramfs, it finds its disk and NIC through the ACPI DSDT (the kernel has no
//! `virtio_mmio.device=` parsing), the NIC carries traffic, and SendCtrlAltDel reaches it.
//! About five minutes on a PVM host, so it is ignored unless OUTPOST_SLOW_TESTS=1 (the
//! benchmark boots it too).

use std::time::Duration;

use outpost_tests::guest::{Guest, Mode};
use outpost_tests::net::TapNetns;
use outpost_tests::{asset, sh};
use serde_json::json;

#[test]
#[ignore = "slow (about five minutes on PVM): OUTPOST_SLOW_TESTS=1 scripts/test.sh runs it"]
fn debian_cloud_kernel_finds_disk_and_nic() {
    let work = tempfile::tempdir().expect("tempdir");
    let net = TapNetns::new("deb", 9);
    let disk_dir = work.path().join("disk");
    std::fs::create_dir_all(&disk_dir).unwrap();
    std::fs::write(
        disk_dir.join("outpost-checks.sh"),
        format!(
            r#"echo "DISKS=$(ls /sys/block | tr '\n' ' ')"
echo "MAC=$(cat /sys/class/net/eth0/address)"
ip link set eth0 up && ip addr add {guest}/24 dev eth0
ping -c 3 -W 10 {host} >/dev/null && echo GUEST-PING=ok
echo "CAD-READY"
sleep 1800
"#,
            guest = net.guest_ip,
            host = net.host_ip
        ),
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
            "kernel_image_path": asset("debian-vmlinuz"),
            "initrd_path": asset("debian-initrd.cpio"),
            "boot_args": "console=ttyS0 reboot=k panic=1 outpost.end=poweroff"
        },
        "machine-config": {"vcpu_count": 1, "mem_size_mib": 256},
        "drives": [{"drive_id": "checks", "path_on_host": disk, "is_root_device": false, "is_read_only": true}],
        "network-interfaces": [{"iface_id": "eth0", "host_dev_name": net.tap, "guest_mac": "06:00:ac:1e:09:02"}]
    });
    let mut g = Guest::spawn(work.path(), Mode::ConfigFileAndApi(&cfg), Some(&net));
    // SendCtrlAltDel reaches the guest's i8042/atkbd drivers as key presses; the kernel's
    // default Ctrl-Alt-Del action (kernel.ctrl-alt-del=1) is an immediate restart, which
    // ends the monitor with the reboot status.
    g.wait_for("CAD-READY", Duration::from_secs(1800));
    let (code, body) = g.api(
        "PUT",
        "/actions",
        Some(&json!({"action_type": "SendCtrlAltDel"})),
    );
    assert_eq!(code, 204, "{body}");
    let st = g.wait_exit(Duration::from_secs(600));
    let console = g.console_text();
    assert_eq!(st.code(), Some(3), "{console}\n{}", g.stderr_text());
    assert!(console.contains("OUTPOST-MODULES-OK"), "{console}");
    assert!(console.contains("OUTPOST-INIT-OK"), "{console}");
    assert!(console.contains("DISKS=vda"), "{console}");
    assert!(console.contains("MAC=06:00:ac:1e:09:02"), "{console}");
    assert!(console.contains("GUEST-PING=ok"), "{console}");
    // The checks were still sleeping: only Ctrl-Alt-Del ended the guest.
    assert!(!console.contains("OUTPOST-CHECKS-DONE"), "{console}");
}
