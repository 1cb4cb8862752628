//! Three boxes forming one site on the rig (tests/src/rig.rs): the first bootstraps the
//! cluster, a box without a join token is refused, the others join with tokens; every box's
//! Nova os-hypervisors and os-services show all three with their inventory; a service
//! disabled through one box is seen disabled through another and its box takes no new
//! servers; a flavor and a Keystone token made through one box are seen by another (identity
//! and flavors live in etcd); a fourth box joins the running site (its etcd member added the
//! operator's way) and is listed everywhere; `kill -9` of an outpostd restarted at once keeps
//! the box's lease; a box that loses power is shown down within the lease's TTL, then removed
//! while the others go on. A host aggregate made through one box zones its box for all, and
//! placement keeps a server asked for that zone to it.

use std::time::{Duration, Instant};

use outpost_tests::eventually;
use outpost_tests::rig::Rig;
use serde_json::{json, Value};

fn ok(out: std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn hypervisors(rig: &Rig, i: usize) -> Vec<Value> {
    let (code, body) =
        rig.boxes[i - 1].api("GET", "/compute/v2.1/os-hypervisors/detail", None, "2.53");
    assert_eq!(code, 200, "{body}");
    body["hypervisors"].as_array().cloned().unwrap_or_default()
}

fn by_name<'a>(list: &'a [Value], key: &str, name: &str) -> &'a Value {
    list.iter()
        .find(|v| v[key] == name)
        .unwrap_or_else(|| panic!("{name} not in {list:?}"))
}

#[test]
fn three_boxes_form_one_site_with_services_hypervisors_and_leases() {
    let mut rig = Rig::new(3);
    rig.start_etcd();

    // Box 1 bootstraps the site.
    rig.write_outpostd_config(1, None);
    rig.start_outpostd(1);
    rig.boxes[0].wait_api(Duration::from_secs(60));

    // Box 2 without a token is refused, saying how to get one.
    rig.write_outpostd_config(2, None);
    let refused = rig.boxes[1].outpostd(&[]);
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("join token") && said.contains("box2"),
        "{said}"
    );

    // Tokens from box 1; a token for box 3 does not admit box 2, and is spent once used.
    let for2 = ok(rig.boxes[0].outpostd(&["cluster", "token-create", "--box", "box2"]));
    let for3 = ok(rig.boxes[0].outpostd(&["cluster", "token-create", "--box", "box3"]));
    rig.write_outpostd_config(2, Some(&for3));
    assert!(!rig.boxes[1].outpostd(&[]).status.success());
    rig.write_outpostd_config(2, Some(&for2));
    rig.start_outpostd(2);
    rig.write_outpostd_config(3, Some(&for3));
    rig.start_outpostd(3);
    rig.boxes[1].wait_api(Duration::from_secs(60));
    rig.boxes[2].wait_api(Duration::from_secs(60));

    // Every box shows the three hypervisors, up and enabled, with their inventory.
    for i in 1..=3 {
        let list = eventually(10, "three hypervisors with inventory", || {
            let l = hypervisors(&rig, i);
            (l.len() == 3 && l.iter().all(|h| h["vcpus"].as_u64() > Some(0))).then_some(l)
        });
        for b in &rig.boxes {
            let h = by_name(&list, "hypervisor_hostname", &b.name);
            assert_eq!(
                (h["state"].as_str(), h["status"].as_str()),
                (Some("up"), Some("enabled"))
            );
            assert_eq!(h["host_ip"], b.addr.as_str());
            assert!(
                h["memory_mb"].as_u64() > Some(0) && h["local_gb"].as_u64() > Some(0),
                "{h}"
            );
            assert_eq!(h["vcpus_used"], 0);
        }
    }

    // Identity and flavors are shared: a flavor made through box 1 is listed through box 3
    // within a second, and a token box 1 issued (to a client over TCP, with the admin
    // password box 1 generated) is accepted by box 3.
    let (code, body) = rig.boxes[0].api(
        "POST",
        "/compute/v2.1/flavors",
        Some(&json!({"flavor": {"name": "shared", "ram": 128, "vcpus": 1, "disk": 1}})),
        "2.53",
    );
    assert_eq!(code, 200, "{body}");
    let shared = body["flavor"]["id"].as_str().unwrap().to_owned();
    let t0 = Instant::now();
    loop {
        let (code, f) = rig.boxes[2].api(
            "GET",
            &format!("/compute/v2.1/flavors/{shared}"),
            None,
            "2.53",
        );
        if code == 200 {
            assert_eq!(f["flavor"]["name"], "shared");
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "box 3 does not see box 1's flavor: {code} {f}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("a flavor seen on another box after {:?}", t0.elapsed());
    let password = std::fs::read_to_string(rig.boxes[0].state_dir().join("admin-password"))
        .expect("box 1 generated the admin's password");
    for b in &rig.boxes[1..] {
        assert!(
            !b.state_dir().join("admin-password").exists(),
            "{} found the admin and wrote no password of its own",
            b.name
        );
    }
    let default = json!({"name": "Default"});
    let login = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user":
            {"name": "admin", "domain": default, "password": password.trim()}}},
        "scope": {"project": {"name": "admin", "domain": default}}}});
    let issued = rig.boxes[0].http("POST", "/identity/v3/auth/tokens", &[], Some(&login));
    assert_eq!(issued.code, 201, "{issued:?}");
    let token = issued
        .header("x-subject-token")
        .expect("a token")
        .to_owned();
    let listed = rig.boxes[2].http(
        "GET",
        "/compute/v2.1/flavors",
        &[("X-Auth-Token", &token)],
        None,
    );
    assert_eq!(listed.code, 200, "{listed:?}");
    assert!(
        listed.body["flavors"]
            .as_array()
            .is_some_and(|l| l.iter().any(|f| f["id"] == shared.as_str())),
        "{listed:?}"
    );
    let refused = rig.boxes[2].http(
        "GET",
        "/compute/v2.1/flavors",
        &[("X-Auth-Token", "not-a-token")],
        None,
    );
    assert_eq!(refused.code, 401, "{refused:?}");

    // Disable box 2's compute service through box 3 (2.53: by its UUID); box 1 sees it.
    let (code, services) = rig.boxes[2].api("GET", "/compute/v2.1/os-services", None, "2.53");
    assert_eq!(code, 200, "{services}");
    let services = services["services"].as_array().cloned().unwrap();
    assert_eq!(services.len(), 3);
    let id2 = by_name(&services, "host", "box2")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (code, body) = rig.boxes[2].api(
        "PUT",
        &format!("/compute/v2.1/os-services/{id2}"),
        Some(&json!({"status": "disabled", "disabled_reason": "maintenance"})),
        "2.53",
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(body["service"]["status"], "disabled");
    let t0 = Instant::now();
    eventually(5, "box 1 sees box 2 disabled", || {
        let (_, s) = rig.boxes[0].api("GET", "/compute/v2.1/os-services?host=box2", None, "2.53");
        (s["services"][0]["status"] == "disabled").then_some(())
    });
    eprintln!("disable seen on another box after {:?}", t0.elapsed());
    // Bad input changes nothing.
    let (code, _) = rig.boxes[0].api(
        "PUT",
        &format!("/compute/v2.1/os-services/{id2}"),
        Some(&json!({"status": "sleeping"})),
        "2.53",
    );
    assert_eq!(code, 400);
    let (code, _) = rig.boxes[0].api(
        "PUT",
        "/compute/v2.1/os-services/00000000-0000-0000-0000-000000000000",
        Some(&json!({"status": "enabled"})),
        "2.53",
    );
    assert_eq!(code, 404);
    // With every box disabled, no scheduler on any box takes a new server: one asked of box 2
    // ends in ERROR with the reason (each decision reads the boxes' records).
    for name in ["box1", "box3"] {
        let id = by_name(&services, "host", name)["id"].as_str().unwrap();
        let (code, body) = rig.boxes[0].api(
            "PUT",
            &format!("/compute/v2.1/os-services/{id}"),
            Some(&json!({"status": "disabled", "disabled_reason": "maintenance"})),
            "2.53",
        );
        assert_eq!(code, 200, "{body}");
    }
    let (code, body) = rig.boxes[1].api(
        "POST",
        "/compute/v2.1/flavors",
        Some(&json!({"flavor": {"name": "tiny", "ram": 64, "vcpus": 1, "disk": 1}})),
        "2.53",
    );
    assert_eq!(code, 200, "{body}");
    let flavor = body["flavor"]["id"].as_str().unwrap().to_owned();
    let (code, body) = rig.boxes[1].api(
        "POST",
        "/compute/v2.1/servers",
        Some(
            &json!({"server": {"name": "s", "flavorRef": flavor, "imageRef": "outpost-guest",
                                "networks": "none"}}),
        ),
        "2.53",
    );
    assert_eq!(code, 202, "{body}");
    let server = body["server"]["id"].as_str().unwrap().to_owned();
    let fault = eventually(30, "the server ends in ERROR", || {
        let (_, s) = rig.boxes[1].api(
            "GET",
            &format!("/compute/v2.1/servers/{server}"),
            None,
            "2.53",
        );
        (s["server"]["status"] == "ERROR").then(|| s["server"]["fault"]["message"].to_string())
    });
    assert!(
        fault.contains("No valid host") && fault.contains("maintenance"),
        "{fault}"
    );
    let (code, _) = rig.boxes[1].api(
        "DELETE",
        &format!("/compute/v2.1/servers/{server}"),
        None,
        "2.53",
    );
    assert_eq!(code, 204);
    for name in ["box1", "box3"] {
        let id = by_name(&services, "host", name)["id"].as_str().unwrap();
        let (code, body) = rig.boxes[2].api(
            "PUT",
            &format!("/compute/v2.1/os-services/{id}"),
            Some(&json!({"status": "enabled"})),
            "2.53",
        );
        assert_eq!(code, 200, "{body}");
    }
    // The pre-2.53 action form enables box 2 again.
    let (code, body) = rig.boxes[0].api(
        "PUT",
        "/compute/v2.1/os-services/enable",
        Some(&json!({"host": "box2", "binary": "nova-compute"})),
        "2.1",
    );
    assert_eq!(
        (code, body["service"]["status"].as_str()),
        (200, Some("enabled")),
        "{body}"
    );

    // A fourth box joins the running site (its etcd member added, a token from box 2): every
    // box lists it, and it sees what was made before it came.
    let four = rig.grow();
    let for4 = ok(rig.boxes[1].outpostd(&["cluster", "token-create", "--box", "box4"]));
    rig.write_outpostd_config(four, Some(&for4));
    rig.start_outpostd(four);
    rig.boxes[3].wait_api(Duration::from_secs(60));
    for i in 1..=4 {
        eventually(10, &format!("box 4 listed on box {i}"), || {
            let l = hypervisors(&rig, i);
            (l.len() == 4 && by_name(&l, "hypervisor_hostname", "box4")["state"] == "up")
                .then_some(())
        });
    }
    let (code, body) = rig.boxes[3].api("GET", "/compute/v2.1/flavors/detail", None, "2.53");
    assert_eq!(code, 200, "{body}");
    assert!(
        body.to_string().contains("shared"),
        "the flavor made earlier: {body}"
    );

    // kill -9 of box 2's outpostd and a restart at once: the same lease, still up.
    let lease = rig.boxes[0].alive_lease("box2").expect("box 2 is alive");
    rig.boxes[1].kill9("outpostd");
    rig.start_outpostd(2);
    rig.boxes[1].wait_api(Duration::from_secs(60));
    assert_eq!(rig.boxes[0].alive_lease("box2"), Some(lease));

    // Box 3 loses power: the others see it down within the lease's TTL (10 s) and a bit.
    rig.power_off(3);
    let t0 = Instant::now();
    eventually(20, "box 3 down on box 1", || {
        let l = hypervisors(&rig, 1);
        (by_name(&l, "hypervisor_hostname", "box3")["state"] == "down").then_some(())
    });
    eprintln!("power loss seen after {:?}", t0.elapsed());
    let (_, s) = rig.boxes[1].api("GET", "/compute/v2.1/os-services?host=box3", None, "2.53");
    assert_eq!(s["services"][0]["state"], "down");

    // Removing an up box is refused; the dead one goes.
    let refused = rig.boxes[0].outpostd(&["cluster", "remove", "box2"]);
    assert!(!refused.status.success());
    ok(rig.boxes[0].outpostd(&["cluster", "remove", "box3"]));
    let listed = ok(rig.boxes[1].outpostd(&["cluster", "list"]));
    assert_eq!(listed.lines().count(), 3, "{listed}");
    assert_eq!(hypervisors(&rig, 2).len(), 3);
    assert_eq!(hypervisors(&rig, 4).len(), 3);
}

/// Host aggregates on a site, with no guest: an aggregate made through box 1 puts box 3 in
/// zone edge-1 for every box's zone list and services; a server asked for edge-1 through box 2
/// may go only to box 3 (with box 3 disabled it finds no host, though boxes 1 and 2 are
/// free), and an unknown zone is refused at once.
#[test]
fn an_aggregate_s_zone_holds_its_box_alone_on_every_box() {
    let rig = Rig::site(3);
    let (code, body) = rig.boxes[0].api(
        "POST",
        "/compute/v2.1/os-aggregates",
        Some(&json!({"aggregate": {"name": "edge", "availability_zone": "edge-1"}})),
        "2.53",
    );
    assert_eq!(code, 200, "{body}");
    let id = body["aggregate"]["id"].as_i64().unwrap();
    let (code, body) = rig.boxes[0].api(
        "POST",
        &format!("/compute/v2.1/os-aggregates/{id}/action"),
        Some(&json!({"add_host": {"host": "box3"}})),
        "2.53",
    );
    assert_eq!(code, 200, "{body}");
    for b in &rig.boxes {
        let (code, zones) = b.api(
            "GET",
            "/compute/v2.1/os-availability-zone/detail",
            None,
            "2.53",
        );
        assert_eq!(code, 200, "{zones}");
        let info = zones["availabilityZoneInfo"].as_array().unwrap();
        let hosts = |zone: &str| -> Vec<String> {
            let z = by_name(info, "zoneName", zone);
            let mut h: Vec<String> = z["hosts"].as_object().unwrap().keys().cloned().collect();
            h.sort();
            h
        };
        assert_eq!(hosts("edge-1"), ["box3"], "through {}: {zones}", b.name);
        assert_eq!(
            hosts("nova"),
            ["box1", "box2"],
            "through {}: {zones}",
            b.name
        );
        let (_, services) = b.api("GET", "/compute/v2.1/os-services?host=box3", None, "2.53");
        assert_eq!(services["services"][0]["zone"], "edge-1", "{services}");
    }

    let (code, body) = rig.boxes[1].api(
        "POST",
        "/compute/v2.1/flavors",
        Some(&json!({"flavor": {"name": "tiny", "ram": 64, "vcpus": 1, "disk": 1}})),
        "2.53",
    );
    assert_eq!(code, 200, "{body}");
    let flavor = body["flavor"]["id"].as_str().unwrap().to_owned();
    let create = |zone: &str| {
        rig.boxes[1].api(
            "POST",
            "/compute/v2.1/servers",
            Some(&json!({"server": {"name": "s", "flavorRef": flavor,
                                    "imageRef": "outpost-guest", "networks": "none",
                                    "availability_zone": zone}})),
            "2.53",
        )
    };
    let (code, body) = create("nowhere");
    assert_eq!(code, 400, "{body}");

    // Box 3 disabled: edge-1 has no box to take a server, nova has two idle ones.
    let (_, services) =
        rig.boxes[0].api("GET", "/compute/v2.1/os-services?host=box3", None, "2.53");
    let service = services["services"][0]["id"].as_str().unwrap().to_owned();
    let (code, body) = rig.boxes[0].api(
        "PUT",
        &format!("/compute/v2.1/os-services/{service}"),
        Some(&json!({"status": "disabled", "disabled_reason": "edge maintenance"})),
        "2.53",
    );
    assert_eq!(code, 200, "{body}");
    let (code, body) = create("edge-1");
    assert_eq!(code, 202, "{body}");
    let server = body["server"]["id"].as_str().unwrap().to_owned();
    let fault = eventually(30, "the server ends in ERROR", || {
        let (_, s) = rig.boxes[1].api(
            "GET",
            &format!("/compute/v2.1/servers/{server}"),
            None,
            "2.53",
        );
        (s["server"]["status"] == "ERROR").then(|| s["server"]["fault"]["message"].to_string())
    });
    assert!(
        fault.contains("No valid host") && fault.contains("edge-1"),
        "{fault}"
    );
    let (_, zones) = rig.boxes[2].api("GET", "/compute/v2.1/os-availability-zone", None, "2.53");
    let info = zones["availabilityZoneInfo"].as_array().unwrap();
    assert_eq!(
        by_name(info, "zoneName", "edge-1")["zoneState"]["available"],
        false
    );
    assert_eq!(
        by_name(info, "zoneName", "nova")["zoneState"]["available"],
        true
    );
    let (code, _) = rig.boxes[1].api(
        "DELETE",
        &format!("/compute/v2.1/servers/{server}"),
        None,
        "2.53",
    );
    assert_eq!(code, 204);
}
