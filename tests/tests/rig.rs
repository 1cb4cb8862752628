//! The multi-box rig itself: three boxes on one underlay, an etcd member on each forming one
//! cluster, a write on one box read on another, a box's power loss leaving the other two a
//! quorum, and nothing left behind.

use std::process::Command;

use outpost_tests::rig::Rig;

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "command failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn leftovers(id: &str) -> Vec<String> {
    let mut found = Vec::new();
    let netns = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["netns", "list"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    found.extend(
        netns
            .lines()
            .filter(|l| l.contains(&format!("oprig{id}-")))
            .map(String::from),
    );
    let links = String::from_utf8_lossy(
        &Command::new("ip")
            .args(["-o", "link"])
            .output()
            .unwrap()
            .stdout,
    )
    .into_owned();
    found.extend(
        links
            .lines()
            .filter(|l| l.contains(&format!("oprig{id}")) || l.contains(&format!("ul{id}b")))
            .map(String::from),
    );
    if outpost_tests::rig::cgroup2_root()
        .join(format!("outpost-rig-{id}"))
        .exists()
    {
        found.push(format!("cgroup outpost-rig-{id}"));
    }
    found
}

#[test]
fn three_boxes_form_one_etcd_cluster_that_survives_a_power_loss() {
    let mut rig = Rig::new(3);
    let id = rig.id.clone();
    // The underlay joins the boxes.
    let b3 = rig.boxes[2].addr.clone();
    stdout(&rig.boxes[0].exec(&["ping", "-c1", "-W2", &b3]));

    rig.start_etcd();
    let members = stdout(&rig.boxes[1].etcdctl(&["member", "list"]));
    assert_eq!(members.lines().count(), 3, "{members}");
    for b in &rig.boxes {
        assert!(
            members.contains(&format!("{}, http://{}:2380", b.name, b.addr)),
            "{members}"
        );
    }

    // A write through box 1 is read (linearizably) through box 3.
    stdout(&rig.boxes[0].etcdctl(&["put", "/outpost/rig-check", "from-box1"]));
    let got = stdout(&rig.boxes[2].etcdctl(&["get", "--print-value-only", "/outpost/rig-check"]));
    assert_eq!(got.trim(), "from-box1");

    // Power loss of box 2: its processes are gone at once; boxes 1 and 3 keep a quorum.
    let etcd_pids = rig.boxes[1].pids();
    assert!(!etcd_pids.is_empty(), "box 2's etcd runs in its cgroup");
    rig.power_off(2);
    assert!(rig.boxes[1].pids().is_empty());
    assert!(!rig.boxes[1]
        .etcdctl(&["endpoint", "health"])
        .status
        .success());
    stdout(&rig.boxes[2].etcdctl(&["put", "/outpost/rig-check", "after-loss"]));
    let got = stdout(&rig.boxes[0].etcdctl(&["get", "--print-value-only", "/outpost/rig-check"]));
    assert_eq!(got.trim(), "after-loss");

    let pids: Vec<u32> = rig.boxes.iter().flat_map(|b| b.pids()).collect();
    drop(rig);
    assert!(
        leftovers(&id).is_empty(),
        "left behind: {:?}",
        leftovers(&id)
    );
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}")).exists(),
            "etcd {pid} still runs"
        );
    }
}
