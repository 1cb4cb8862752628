//! Controller and validation tests on real (temporary) files; the network checks use the
//! host's `lo`, which every Linux host has, as the "existing device".

use super::*;
use crate::config::{DriveConfig, NetworkInterfaceConfig};
use std::path::Path;
use vmm_sys_util::tempdir::TempDir;

const HOST: HostLimits = HostLimits {
    mem_total_mib: Some(4096),
};

fn controller() -> Controller {
    Controller::with_host_limits("test-vm", HOST)
}

fn file_in(dir: &TempDir, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.as_path().join(name);
    std::fs::write(&path, contents).expect("temp dir is writable");
    path
}

fn drive(id: &str, path: &Path, root: bool) -> DriveConfig {
    DriveConfig {
        drive_id: id.to_owned(),
        path_on_host: path.to_owned(),
        is_root_device: root,
        is_read_only: false,
        partuuid: None,
        cache_type: None,
        rate_limiter: None,
        io_engine: None,
    }
}

fn iface(id: &str, dev: &str, mac: Option<&str>) -> NetworkInterfaceConfig {
    NetworkInterfaceConfig {
        iface_id: id.to_owned(),
        host_dev_name: dev.to_owned(),
        guest_mac: mac.map(str::to_owned),
        rx_rate_limiter: None,
        tx_rate_limiter: None,
    }
}

fn machine(vcpus: u8, mib: usize) -> MachineConfig {
    MachineConfig {
        vcpu_count: vcpus,
        mem_size_mib: mib,
        ..MachineConfig::default()
    }
}

#[test]
fn instance_info_before_start() {
    let mut c = controller();
    let VmmData::InstanceInfo(info) = c.handle(VmmAction::GetInstanceInfo).unwrap() else {
        panic!("GetInstanceInfo returns InstanceInfo");
    };
    assert_eq!(info.id, "test-vm");
    assert_eq!(info.app_name, "outpost-vmm");
    assert_eq!(info.state, InstanceState::NotStarted);
    let json = serde_json::to_value(&info).unwrap();
    assert_eq!(json["state"], "Not started");
}

#[test]
fn machine_config_bounds() {
    let mut c = controller();
    for (vcpus, mib) in [(1, 64), (8, 512), (32, 4096)] {
        c.handle(VmmAction::PutMachineConfig(machine(vcpus, mib)))
            .unwrap();
        assert_eq!(c.config().machine_config, machine(vcpus, mib));
    }
    let err = c
        .handle(VmmAction::PutMachineConfig(machine(0, 128)))
        .unwrap_err();
    assert!(
        matches!(err, VmmActionError::VcpuCountOutOfRange { count: 0, .. }),
        "{err}"
    );
    let err = c
        .handle(VmmAction::PutMachineConfig(machine(33, 128)))
        .unwrap_err();
    assert!(
        matches!(err, VmmActionError::VcpuCountOutOfRange { count: 33, .. }),
        "{err}"
    );
    let err = c
        .handle(VmmAction::PutMachineConfig(machine(1, 63)))
        .unwrap_err();
    assert!(
        matches!(err, VmmActionError::MemoryTooSmall { mib: 63, .. }),
        "{err}"
    );
    let err = c
        .handle(VmmAction::PutMachineConfig(machine(1, 4097)))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("larger than the host's memory (4096 MiB)"),
        "{err}"
    );
    // Refused changes leave the last good configuration.
    assert_eq!(c.config().machine_config, machine(32, 4096));
}

#[test]
fn unknown_host_memory_is_not_checked() {
    let mut c = Controller::with_host_limits(
        "x",
        HostLimits {
            mem_total_mib: None,
        },
    );
    c.handle(VmmAction::PutMachineConfig(machine(1, 1 << 20)))
        .unwrap();
}

#[test]
fn cpu_template_names() {
    let mut c = controller();
    let mut mc = machine(2, 128);
    mc.cpu_template = Some("T2".into());
    c.handle(VmmAction::PutMachineConfig(mc.clone())).unwrap();
    mc.cpu_template = Some("Fancy".into());
    let err = c.handle(VmmAction::PutMachineConfig(mc)).unwrap_err();
    assert!(
        matches!(err, VmmActionError::InvalidCpuTemplate { .. }),
        "{err}"
    );
}

#[test]
fn patch_machine_config_changes_only_given_fields() {
    let mut c = controller();
    c.handle(VmmAction::PutMachineConfig(machine(2, 256)))
        .unwrap();
    let update = MachineConfigUpdate {
        vcpu_count: Some(4),
        ..Default::default()
    };
    c.handle(VmmAction::PatchMachineConfig(update)).unwrap();
    assert_eq!(c.config().machine_config, machine(4, 256));
    let bad = MachineConfigUpdate {
        mem_size_mib: Some(1),
        ..Default::default()
    };
    assert!(c.handle(VmmAction::PatchMachineConfig(bad)).is_err());
    assert_eq!(c.config().machine_config, machine(4, 256));
}

#[test]
fn boot_source_files_must_exist() {
    let dir = TempDir::new().unwrap();
    let kernel = file_in(&dir, "vmlinux", b"kernel bytes");
    let mut c = controller();
    let mut bs = BootSourceConfig {
        kernel_image_path: dir.as_path().join("missing"),
        boot_args: None,
        initrd_path: None,
    };
    let err = c.handle(VmmAction::PutBootSource(bs.clone())).unwrap_err();
    assert!(
        matches!(err, VmmActionError::KernelNotUsable { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("No such file"), "{err}");
    bs.kernel_image_path = dir.as_path().to_owned();
    let err = c.handle(VmmAction::PutBootSource(bs.clone())).unwrap_err();
    assert!(err.to_string().contains("not a regular file"), "{err}");
    bs.kernel_image_path = kernel;
    bs.initrd_path = Some(dir.as_path().join("no-initrd"));
    let err = c.handle(VmmAction::PutBootSource(bs.clone())).unwrap_err();
    assert!(
        matches!(err, VmmActionError::InitrdNotUsable { .. }),
        "{err}"
    );
    bs.initrd_path = None;
    c.handle(VmmAction::PutBootSource(bs.clone())).unwrap();
    assert_eq!(c.config().boot_source, Some(bs));
}

#[test]
fn drives_replace_by_id_and_allow_one_root() {
    let dir = TempDir::new().unwrap();
    let a = file_in(&dir, "a.img", &[0; 512]);
    let b = file_in(&dir, "b.img", &[0; 512]);
    let mut c = controller();
    c.handle(VmmAction::PutDrive(drive("data", &b, false)))
        .unwrap();
    c.handle(VmmAction::PutDrive(drive("rootfs", &a, true)))
        .unwrap();
    // The root device is kept first so it becomes the guest's first disk.
    let ids: Vec<_> = c
        .config()
        .drives
        .iter()
        .map(|d| d.drive_id.as_str())
        .collect();
    assert_eq!(ids, ["rootfs", "data"]);
    let err = c
        .handle(VmmAction::PutDrive(drive("data", &b, true)))
        .unwrap_err();
    assert!(
        matches!(&err, VmmActionError::SecondRootDevice { existing, .. } if existing == "rootfs"),
        "{err}"
    );
    // Re-PUT of the same id replaces it (here: the root moves to another file).
    c.handle(VmmAction::PutDrive(drive("rootfs", &b, true)))
        .unwrap();
    assert_eq!(c.config().drives.len(), 2);
    assert_eq!(c.config().drives[0].path_on_host, b);
}

#[test]
fn drive_checks() {
    let dir = TempDir::new().unwrap();
    let img = file_in(&dir, "a.img", &[0; 512]);
    let mut c = controller();
    let err = c
        .handle(VmmAction::PutDrive(drive(
            "d",
            &dir.as_path().join("nope"),
            false,
        )))
        .unwrap_err();
    assert!(
        matches!(err, VmmActionError::DriveNotUsable { .. }),
        "{err}"
    );
    for bad_id in ["", "a b", "é", "x/y", &"a".repeat(65)] {
        let err = c
            .handle(VmmAction::PutDrive(drive(bad_id, &img, false)))
            .unwrap_err();
        assert!(
            matches!(err, VmmActionError::InvalidId { .. }),
            "{bad_id:?}: {err}"
        );
    }
    let mut d = drive("d_1-A", &img, false);
    d.cache_type = Some("Sometimes".into());
    let err = c.handle(VmmAction::PutDrive(d.clone())).unwrap_err();
    assert!(
        matches!(err, VmmActionError::InvalidCacheType { .. }),
        "{err}"
    );
    d.cache_type = Some("Writeback".into());
    c.handle(VmmAction::PutDrive(d)).unwrap();
}

#[test]
fn network_interface_checks() {
    let mut c = controller();
    c.handle(VmmAction::PutNetworkInterface(iface(
        "eth0",
        "lo",
        Some("06:00:AC:10:00:02"),
    )))
    .unwrap();
    let cases = [
        (
            iface("eth1", "no-such-tap9", None),
            "no such network device",
        ),
        (
            iface("eth1", "a-name-way-too-long", None),
            "not a valid interface name",
        ),
        (iface("eth1", "", None), "not a valid interface name"),
        (
            iface("eth1", "lo", None),
            "already used by network interface \"eth0\"",
        ),
        (
            iface("eth1", "lo", Some("01:00:5e:00:00:01")),
            "not a unicast MAC",
        ),
        (
            iface("eth1", "lo", Some("06:00:ac:10:00")),
            "not a unicast MAC",
        ),
        (
            iface("eth1", "lo", Some("g6:00:ac:10:00:02")),
            "not a unicast MAC",
        ),
        (iface("bad id", "lo", None), "invalid network interface id"),
    ];
    for (cfg, phrase) in cases {
        let err = c
            .handle(VmmAction::PutNetworkInterface(cfg.clone()))
            .unwrap_err();
        assert!(err.to_string().contains(phrase), "{cfg:?}: {err}");
    }
    // Same id: replaced, not duplicated.
    c.handle(VmmAction::PutNetworkInterface(iface("eth0", "lo", None)))
        .unwrap();
    assert_eq!(
        c.config().network_interfaces,
        vec![iface("eth0", "lo", None)]
    );
}

#[test]
fn duplicate_mac_is_refused() {
    let ifaces = [iface("a", "tap0", Some("06:00:00:00:00:01"))];
    let err =
        validate::check_interface_conflict(&ifaces, &iface("b", "tap1", Some("06:00:00:00:00:01")))
            .unwrap_err();
    assert!(matches!(err, VmmActionError::MacInUse { .. }), "{err}");
}

#[test]
fn actions_that_need_a_guest_are_refused_before_start() {
    let mut c = controller();
    for action in [
        VmmAction::Pause,
        VmmAction::Resume,
        VmmAction::SendCtrlAltDel,
        VmmAction::SendPowerButton,
        VmmAction::GetStats,
    ] {
        let err = c.handle(action.clone()).unwrap_err();
        assert!(
            matches!(err, VmmActionError::NotStarted { .. }),
            "{action:?}: {err}"
        );
    }
    let err = c.handle(VmmAction::InstanceStart).unwrap_err();
    assert!(matches!(err, VmmActionError::MissingBootSource), "{err}");
}

/// A deadline is bounded, each one replaces the last, and one that lapses before the start
/// disarms without pausing anything (nor keeping the guest from starting later).
#[test]
fn deadlines_are_bounded_replaced_and_disarmed_when_they_lapse() {
    let mut c = controller();
    for ms in [0, MAX_DEADLINE_MS + 1] {
        let err = c
            .handle(VmmAction::PutDeadline(DeadlineConfig { pause_in_ms: ms }))
            .unwrap_err();
        assert!(
            matches!(err, VmmActionError::DeadlineOutOfRange { .. }),
            "{err}"
        );
    }
    assert_eq!(c.deadline(), None);
    let before = Instant::now();
    c.handle(VmmAction::PutDeadline(DeadlineConfig {
        pause_in_ms: 60_000,
    }))
    .unwrap();
    let first = c.deadline().expect("armed");
    assert!(first >= before + Duration::from_secs(60));
    c.handle(VmmAction::PutDeadline(DeadlineConfig { pause_in_ms: 1 }))
        .unwrap();
    let second = c.deadline().expect("still armed");
    assert!(second < first, "a new deadline replaces the old one");
    // Not yet due: nothing happens and it stays armed.
    assert!(!c.enforce_deadline(second - Duration::from_millis(1)));
    assert_eq!(c.deadline(), Some(second));
    // Due before the start: nothing to pause, and it is spent.
    assert!(!c.enforce_deadline(second));
    assert_eq!(c.deadline(), None);
    let VmmData::InstanceInfo(info) = c.handle(VmmAction::GetInstanceInfo).unwrap() else {
        panic!("GetInstanceInfo returns InstanceInfo");
    };
    assert_eq!(info.state, InstanceState::NotStarted);
}

/// A text file is no kernel: the builder refuses it, the error carries its reason, and the
/// controller stays configurable (nothing half-started).
#[test]
fn failed_start_leaves_the_controller_configurable() {
    let dir = TempDir::new().unwrap();
    let kernel = file_in(&dir, "vmlinux", b"this is not a kernel\n");
    let mut c = controller();
    let bs = BootSourceConfig {
        kernel_image_path: kernel,
        boot_args: None,
        initrd_path: None,
    };
    c.handle(VmmAction::PutBootSource(bs)).unwrap();
    let err = c.handle(VmmAction::InstanceStart).unwrap_err();
    assert!(matches!(err, VmmActionError::StartFailed(_)), "{err}");
    let VmmData::InstanceInfo(info) = c.handle(VmmAction::GetInstanceInfo).unwrap() else {
        panic!("GetInstanceInfo returns InstanceInfo");
    };
    assert_eq!(info.state, InstanceState::NotStarted);
    c.handle(VmmAction::PutMachineConfig(machine(2, 128)))
        .unwrap();
}

#[test]
fn whole_config_validation() {
    let dir = TempDir::new().unwrap();
    let kernel = file_in(&dir, "vmlinux", b"k");
    let img = file_in(&dir, "a.img", &[0; 512]);
    let good = VmConfig {
        boot_source: Some(BootSourceConfig {
            kernel_image_path: kernel,
            boot_args: None,
            initrd_path: None,
        }),
        machine_config: machine(8, 256),
        drives: vec![drive("data", &img, false), drive("root", &img, true)],
        network_interfaces: vec![iface("eth0", "lo", None)],
        ..VmConfig::default()
    };
    validate::validate_config(&good, &HOST).unwrap();

    let mut c = controller();
    c.load_config(good.clone()).unwrap();
    assert_eq!(c.config().drives[0].drive_id, "root");

    let mut bad = good.clone();
    bad.drives.push(drive("data", &img, false));
    assert!(validate::validate_config(&bad, &HOST)
        .unwrap_err()
        .to_string()
        .contains("duplicate drive id"));
    let mut bad = good.clone();
    bad.drives.push(drive("root2", &img, true));
    assert!(matches!(
        validate::validate_config(&bad, &HOST),
        Err(VmmActionError::SecondRootDevice { .. })
    ));
    let mut bad = good.clone();
    bad.network_interfaces.push(iface("eth0", "lo", None));
    assert!(validate::validate_config(&bad, &HOST)
        .unwrap_err()
        .to_string()
        .contains("duplicate network interface id"));
    let mut bad = good.clone();
    bad.boot_source = None;
    assert!(matches!(
        validate::validate_config(&bad, &HOST),
        Err(VmmActionError::MissingBootSource)
    ));
    let mut bad = good;
    bad.machine_config.mem_size_mib = 8192;
    assert!(matches!(
        validate::validate_config(&bad, &HOST),
        Err(VmmActionError::MemoryExceedsHost { .. })
    ));
}

/// Firecracker's rate limiter shape; `bucket(size, ms)` with no one-time burst.
fn bucket(size: u64, refill_time: u64) -> crate::config::TokenBucketConfig {
    crate::config::TokenBucketConfig {
        size,
        one_time_burst: None,
        refill_time,
    }
}

#[test]
fn patch_before_start_changes_only_the_given_buckets() {
    use crate::config::{DriveUpdate, NetworkInterfaceUpdate, RateLimiterConfig};
    let dir = TempDir::new().unwrap();
    let img = file_in(&dir, "a.img", &[0; 512]);
    let mut c = controller();
    c.handle(VmmAction::PutDrive(drive("root", &img, true)))
        .unwrap();
    c.handle(VmmAction::PutNetworkInterface(iface("eth0", "lo", None)))
        .unwrap();
    let limits = |bw, ops| RateLimiterConfig { bandwidth: bw, ops };
    let patch = |limiter| DriveUpdate {
        drive_id: "root".into(),
        path_on_host: None,
        rate_limiter: Some(limiter),
    };
    c.handle(VmmAction::PatchDrive(patch(limits(
        Some(bucket(1000, 100)),
        None,
    ))))
    .unwrap();
    c.handle(VmmAction::PatchDrive(patch(limits(
        None,
        Some(bucket(10, 1000)),
    ))))
    .unwrap();
    assert_eq!(
        c.config().drives[0].rate_limiter,
        Some(limits(Some(bucket(1000, 100)), Some(bucket(10, 1000))))
    );
    // Size 0 turns a bucket off (Firecracker's way); the other stays.
    c.handle(VmmAction::PatchDrive(patch(limits(
        Some(bucket(0, 0)),
        None,
    ))))
    .unwrap();
    assert!(c.config().drives[0].rate_limiter.unwrap().is_limit());
    assert!(!c.config().drives[0]
        .rate_limiter
        .unwrap()
        .bandwidth
        .unwrap()
        .is_limit());

    let err = c
        .handle(VmmAction::PatchDrive(DriveUpdate {
            drive_id: "nope".into(),
            path_on_host: None,
            rate_limiter: None,
        }))
        .unwrap_err();
    assert!(matches!(err, VmmActionError::UnknownDrive { .. }), "{err}");
    let err = c
        .handle(VmmAction::PatchDrive(DriveUpdate {
            drive_id: "root".into(),
            path_on_host: Some("/elsewhere.img".into()),
            rate_limiter: None,
        }))
        .unwrap_err();
    assert!(err.to_string().contains("path_on_host"), "{err}");
    // The same path is fine (Firecracker clients send it back).
    c.handle(VmmAction::PatchDrive(DriveUpdate {
        drive_id: "root".into(),
        path_on_host: Some(img.clone()),
        rate_limiter: None,
    }))
    .unwrap();

    c.handle(VmmAction::PatchNetworkInterface(NetworkInterfaceUpdate {
        iface_id: "eth0".into(),
        rx_rate_limiter: None,
        tx_rate_limiter: Some(limits(Some(bucket(5000, 1000)), None)),
    }))
    .unwrap();
    let eth0 = &c.config().network_interfaces[0];
    assert_eq!(eth0.rx_rate_limiter, None);
    assert_eq!(
        eth0.tx_rate_limiter,
        Some(limits(Some(bucket(5000, 1000)), None))
    );
    let err = c
        .handle(VmmAction::PatchNetworkInterface(NetworkInterfaceUpdate {
            iface_id: "eth9".into(),
            rx_rate_limiter: None,
            tx_rate_limiter: None,
        }))
        .unwrap_err();
    assert!(matches!(
        err,
        VmmActionError::UnknownNetworkInterface { .. }
    ));
}

/// A configuration file as a Firecracker user writes one, with the fields we accept and do
/// not act on (logger, metrics, mmds-config, io_engine, huge_pages, entropy's limiter).
#[test]
fn a_firecracker_users_file_is_accepted() {
    let dir = TempDir::new().unwrap();
    let kernel = file_in(&dir, "vmlinux", b"k");
    let img = file_in(&dir, "rootfs.ext4", &[0; 512]);
    let text = serde_json::json!({
        "boot-source": {"kernel_image_path": kernel, "boot_args": "console=ttyS0 reboot=k panic=1", "initrd_path": null},
        "drives": [{
            "drive_id": "rootfs", "partuuid": null, "is_root_device": true, "cache_type": "Unsafe",
            "is_read_only": false, "path_on_host": img, "io_engine": "Sync",
            "rate_limiter": {"bandwidth": {"size": 52428800, "one_time_burst": 0, "refill_time": 1000},
                             "ops": {"size": 1000, "refill_time": 1000}}
        }],
        "machine-config": {"vcpu_count": 2, "mem_size_mib": 1024, "smt": false, "track_dirty_pages": false, "huge_pages": "None"},
        "network-interfaces": [{
            "iface_id": "eth0", "guest_mac": "06:00:AC:10:00:02", "host_dev_name": "lo",
            "rx_rate_limiter": {"bandwidth": {"size": 1000000, "refill_time": 100}},
            "tx_rate_limiter": null
        }],
        "logger": {"log_path": "/tmp/fc.log", "level": "debug", "show_level": true, "show_log_origin": false},
        "metrics": {"metrics_path": "/tmp/fc-metrics.fifo"},
        "mmds-config": {"version": "V2", "network_interfaces": ["eth0"], "ipv4_address": "169.254.170.2"},
        "entropy": {"rate_limiter": {"bandwidth": {"size": 1000, "refill_time": 100}}}
    });
    let config: VmConfig = serde_json::from_value(text).expect("a Firecracker file parses");
    validate::validate_config(&config, &HOST).unwrap();
    assert!(config.drives[0].rate_limiter.unwrap().is_limit());

    let mut bad = config.clone();
    bad.mmds_config.as_mut().unwrap().network_interfaces = vec!["eth1".into()];
    assert!(matches!(
        validate::validate_config(&bad, &HOST),
        Err(VmmActionError::UnknownNetworkInterface { .. })
    ));
    let mut bad = config.clone();
    bad.mmds_config.as_mut().unwrap().ipv4_address = Some("10.0.0.1".into());
    assert!(matches!(
        validate::validate_config(&bad, &HOST),
        Err(VmmActionError::InvalidMmdsAddress { .. })
    ));
    let mut bad = config.clone();
    bad.logger.as_mut().unwrap().level = Some("Loud".into());
    let err = validate::validate_config(&bad, &HOST).unwrap_err();
    assert!(err.to_string().contains("Loud"), "{err}");
    let mut bad = config.clone();
    bad.drives[0].io_engine = Some("Uring".into());
    assert!(validate::validate_config(&bad, &HOST).is_err());
    let mut bad = config;
    bad.machine_config.huge_pages = Some("1G".into());
    assert!(validate::validate_config(&bad, &HOST).is_err());
}

#[test]
fn host_memory_probe_reads_meminfo() {
    // This host has /proc/meminfo; the value must be what the file says, in MiB.
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let kib: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    assert_eq!(HostLimits::probe().mem_total_mib, Some(kib / 1024));
}

/// A snapshot is taken of a started guest only, and a state file that is not one leaves the
/// monitor as it was: nothing started, still configurable.
#[test]
fn snapshot_actions_before_start() {
    use crate::snapshot::guest::{
        MemBackend, MemBackendType, SnapshotCreateParams, SnapshotLoadParams, SnapshotType,
    };
    let dir = TempDir::new().unwrap();
    let mut c = controller();
    let err = c
        .handle(VmmAction::CreateSnapshot(SnapshotCreateParams {
            snapshot_type: SnapshotType::Full,
            snapshot_path: dir.as_path().join("state"),
            mem_file_path: dir.as_path().join("mem"),
        }))
        .unwrap_err();
    assert!(matches!(err, VmmActionError::NotStarted { .. }), "{err}");
    assert!(!dir.as_path().join("state").exists());

    let state = file_in(&dir, "not-a-snapshot", b"OUTPOSTS but nothing after\n");
    let mem = file_in(&dir, "mem", &[0; 4096]);
    let err = c
        .handle(VmmAction::LoadSnapshot(SnapshotLoadParams {
            snapshot_path: state,
            mem_backend: MemBackend {
                backend_type: MemBackendType::File,
                backend_path: mem,
            },
            resume_vm: true,
            network_overrides: Vec::new(),
            drive_overrides: Vec::new(),
        }))
        .unwrap_err();
    assert!(matches!(err, VmmActionError::StartFailed(_)), "{err}");
    assert!(err.to_string().contains("not-a-snapshot"), "{err}");
    assert!(!c.is_started());
    c.handle(VmmAction::PutMachineConfig(machine(2, 128)))
        .unwrap();
}
