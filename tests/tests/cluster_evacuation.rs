//! A box's power loss on the three-box rig with real guests (docs/cluster.md, "Evacuation";
//! issue 12, points 3, 4 and 7), one rig for every check:
//!
//! - box 3 runs `g1` (policy `rebuild`, the default for an image-booted server, in an
//!   anti-affinity group with `g3`, pinned to box 3 by its admin at create) and `g2` (policy
//!   `stay`, its server metadata); `g3` runs on box 1 or 2 and pings the others;
//! - box 3 loses power (every process killed at once, its cable out): the survivors see its
//!   lease expire, the controller moves `g1` to the one box the group still allows, which
//!   builds it again from its image with the same port (MAC and address); `g3` pings it
//!   there; `g2` stays on box 3, its status UNKNOWN as Nova shows a server of a down host;
//! - box 3 comes back: no monitor of `g1` runs there (exactly one monitor per server across
//!   the site), `g2` runs again on box 3, and on every box the usage placement keeps equals
//!   the sum of the claims on it.
//!
//! The timeline (power loss → lease gone for the survivors → evacuated monitor running →
//! its server ACTIVE) is printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use outpost_tests::eventually;
use outpost_tests::rig::{monitor_state, BoxNode};
use outpost_tests::site::{guest_ip, pings, Site};
use serde_json::Value;

/// Box `b`'s monitors whose guest runs.
fn running(b: &BoxNode) -> Vec<u32> {
    b.monitors()
        .into_iter()
        .filter(|pid| monitor_state(*pid).as_deref() == Some("Running"))
        .collect()
}

/// Every key under `prefix` with its JSON value, as box `b`'s etcd member has them (etcdctl
/// prints each key, then its value, on lines of their own; our values are one-line JSON).
fn etcd_prefix(b: &BoxNode, prefix: &str) -> BTreeMap<String, Value> {
    let out = b.etcdctl(&["get", "--prefix", prefix]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    lines
        .chunks(2)
        .filter_map(|kv| match kv {
            [key, value] => Some((key.to_string(), serde_json::from_str(value).ok()?)),
            _ => None,
        })
        .collect()
}

/// Per box: (vCPUs, MiB, GiB) the usage key says, and the sum of the claims on the box.
fn usage_and_claims(b: &BoxNode) -> BTreeMap<String, ([u64; 3], [u64; 3])> {
    let mut out: BTreeMap<String, ([u64; 3], [u64; 3])> = BTreeMap::new();
    for (key, usage) in etcd_prefix(b, "/outpost/v1/placement/usage/") {
        let name = key.rsplit('/').next().unwrap_or_default().to_owned();
        let u = &usage["used"];
        let n = |k: &str| u[k].as_u64().unwrap_or(0);
        out.entry(name).or_default().0 = [n("vcpus"), n("ram_mb"), n("disk_gb")];
    }
    for claim in etcd_prefix(b, "/outpost/v1/placement/claims/").values() {
        let host = claim["host_id"].as_str().unwrap_or_default().to_owned();
        let a = &claim["amounts"];
        let n = |k: &str| a[k].as_u64().unwrap_or(0);
        let sum = &mut out.entry(host).or_default().1;
        sum[0] += n("VCPU");
        sum[1] += n("MEMORY_MB");
        sum[2] += n("DISK_GB");
    }
    out
}

#[test]
fn a_dead_box_s_rebuild_server_runs_elsewhere_with_its_address_and_comes_back_once() {
    let mut site = Site::form(3, 3);
    site.upload_image(1, "guest");
    site.network(1);
    let cli = site.cli(1);
    cli.json(&["security", "group", "create", "web"]);
    cli.json(&[
        "security",
        "group",
        "rule",
        "create",
        "--ingress",
        "--protocol",
        "icmp",
        "--remote-group",
        "web",
        "web",
    ]);
    site.flavor(1);
    let (_, hint) = site.anti_affinity_group(1, "spread");
    let box3 = site.box_node(3).name.clone();
    let on_box3 = format!("nova:{box3}");
    let (port1, g1) = site.guest_with(
        1,
        1,
        "web",
        "guest",
        &[&hint],
        &["--availability-zone", &on_box3],
    );
    let (_, g2) = site.guest_with(
        1,
        2,
        "web",
        "guest",
        &[],
        &[
            "--availability-zone",
            &on_box3,
            "--property",
            "outpost:evacuation=stay",
        ],
    );
    let (_, g3) = site.guest(1, 3, "web", "guest", &[&hint]);
    assert_eq!(site.wait_active(&g1, 300), box3);
    assert_eq!(site.wait_active(&g2, 300), box3);
    let y = site.wait_active(&g3, 300);
    assert_ne!(y, box3, "anti-affinity");
    let z = site
        .rig
        .boxes
        .iter()
        .map(|b| b.name.clone())
        .find(|n| *n != y && *n != box3)
        .expect("a third box");
    let z_index = site.rig.boxes.iter().position(|b| b.name == z).unwrap() + 1;
    let ip1 = guest_ip(1);
    let mac1 = port1["mac_address"].as_str().expect("a MAC").to_owned();
    assert!(
        running(site.box_node(z_index)).is_empty(),
        "box {z} runs nothing yet"
    );

    // Box 3 loses power.
    let t0 = Instant::now();
    site.rig.power_off(3);
    site.rig.unplug(3);
    let lease_gone = eventually(30, "box 3's lease expired for the survivors", || {
        site.box_node(1)
            .alive_lease(&box3)
            .is_none()
            .then(|| t0.elapsed())
    });
    let monitor_running = site
        .rig
        .eventually(120, "an evacuated monitor running", || {
            (!running(site.box_node(z_index)).is_empty()).then(|| t0.elapsed())
        });
    let host1 = site.wait_active(&g1, 120);
    let active = t0.elapsed();
    eprintln!(
        "power off box 3 → its lease gone for the survivors {:.1} s → g1's monitor running \
         on {z} {:.1} s → g1 ACTIVE {:.1} s",
        lease_gone.as_secs_f64(),
        monitor_running.as_secs_f64(),
        active.as_secs_f64()
    );
    assert_eq!(
        host1, z,
        "the only box the anti-affinity group leaves for g1"
    );
    assert!(lease_gone >= Duration::from_secs(8), "{lease_gone:?}");
    assert!(
        monitor_running < Duration::from_secs(60),
        "{monitor_running:?}"
    );
    // The same port: its MAC, and the address the guest's DHCP lease on its new box gives.
    let port = site.cli(1).json(&["port", "show", "p1"]);
    assert_eq!(port["mac_address"], mac1.as_str(), "{port}");
    // g3 (on another box) reaches it there: only the new g1 can answer pings numbered after
    // it became ACTIVE (the old one died with box 3). Guests boot in minutes on a loaded
    // 2-core host, hence the long waits.
    let seen = pings(&site.console(&g3), &ip1)
        .last()
        .map_or(0, |(n, _)| *n);
    let lease = site.wait_lease(&g1, 420);
    assert!(lease.starts_with(&format!("ip={ip1} ")), "{lease}");
    site.wait_pings(&g3, &ip1, seen, true, 3, 420);
    // g2 waits for its box, shown as Nova shows a server of a compute host that is down.
    let g2_now = site.server(&g2);
    assert_eq!(g2_now["OS-EXT-SRV-ATTR:host"], box3.as_str(), "{g2_now}");
    assert_eq!(g2_now["host_status"], "UNKNOWN", "{g2_now}");
    assert_eq!(g2_now["status"], "UNKNOWN", "{g2_now}");
    assert_eq!(g2_now["OS-EXT-STS:vm_state"], "active", "{g2_now}");

    // Box 3 comes back: g2 runs again there, g1 only on its new box.
    let back = Instant::now();
    site.rig.power_on(3);
    let g2_running = site.rig.eventually(120, "g2 running again on box 3", || {
        (running(site.box_node(3)).len() == 1).then(|| back.elapsed())
    });
    eprintln!(
        "box 3 back: g2's monitor running {:.1} s after power on",
        g2_running.as_secs_f64()
    );
    assert_eq!(site.wait_active(&g2, 120), box3);
    // Settled: one monitor per server across the site, on the boxes the records name.
    std::thread::sleep(Duration::from_secs(5));
    let monitors: Vec<usize> = site.rig.boxes.iter().map(|b| b.monitors().len()).collect();
    assert_eq!(monitors.iter().sum::<usize>(), 3, "{monitors:?}");
    assert_eq!(site.box_node(3).monitors().len(), 1, "only g2 on box 3");
    let old_folder = site.box_node(3).state_dir().join("servers").join(&g1);
    assert!(!old_folder.exists(), "box 3 let go of g1: {old_folder:?}");
    assert_eq!(site.box_node(z_index).monitors().len(), 1, "g1 on {z}");
    assert_eq!(site.server(&g1)["OS-EXT-SRV-ATTR:host"], z.as_str());
    assert_eq!(site.server(&g1)["status"], "ACTIVE");
    let books = usage_and_claims(site.box_node(1));
    for (name, (usage, claims)) in &books {
        assert_eq!(
            usage, claims,
            "box {name}: usage vs the claims on it: {books:?}"
        );
    }
    assert_eq!(
        books.get(&box3).map(|b| b.0),
        Some([1, 128, 1]),
        "{books:?}"
    );
    assert_eq!(books.get(&z).map(|b| b.0), Some([1, 128, 1]), "{books:?}");
}
