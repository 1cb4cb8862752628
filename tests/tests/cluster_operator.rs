//! An operator's actions on the three-box rig (docs/cluster.md, "Capacity for failure",
//! "Evacuation" and "Draining, removing and replacing a box"; issue 12, points 5 and 6):
//!
//! - with `[cluster] ha_reserve = true`, a multi-create that fits the site's room but would
//!   leave no room for one box's servers is refused (409, the fault naming the reserve), and
//!   a box disabled for maintenance (`compute service set --disable`) is listed disabled and
//!   takes nothing, so the reserve counts on the two others only;
//! - Nova's `evacuate` of a `stay` server: refused while its box is up ("Compute service of
//!   box3 is still in use."), refused to its own box or to a box that does not exist, then,
//!   with its box powered off, moved to the box the admin names and ACTIVE there, its
//!   os-migrations record an evacuation from box3 to box1, done.

use std::time::Instant;

use outpost_tests::eventually;
use outpost_tests::rig::Rig;
use serde_json::{json, Value};

/// A flavor of `vcpus` vCPUs, 128 MiB and 1 GiB made through box 1; its id.
fn flavor(rig: &Rig, name: &str, vcpus: u32) -> String {
    let (code, body) = rig.boxes[0].api(
        "POST",
        "/compute/v2.1/flavors",
        Some(&json!({"flavor": {"name": name, "ram": 128, "vcpus": vcpus, "disk": 1}})),
        "2.53",
    );
    assert_eq!(code, 200, "{body}");
    body["flavor"]["id"]
        .as_str()
        .expect("a flavor id")
        .to_owned()
}

/// The default guest with no network, `count` of them at least (Nova's `min_count`).
fn create(rig: &Rig, via: usize, flavor: &str, name: &str, extra: Value) -> (u16, Value) {
    let mut server = json!({"name": name, "flavorRef": flavor, "imageRef": "outpost-guest",
                            "networks": "none"});
    for (k, v) in extra.as_object().expect("an object") {
        server[k] = v.clone();
    }
    rig.boxes[via - 1].api(
        "POST",
        "/compute/v2.1/servers",
        Some(&json!({ "server": server })),
        "2.53",
    )
}

fn services(rig: &Rig) -> Vec<Value> {
    let (code, body) = rig.boxes[0].api("GET", "/compute/v2.1/os-services", None, "2.53");
    assert_eq!(code, 200, "{body}");
    body["services"].as_array().expect("services").clone()
}

fn server_count(rig: &Rig) -> usize {
    let (code, body) = rig.boxes[1].api("GET", "/compute/v2.1/servers", None, "2.53");
    assert_eq!(code, 200, "{body}");
    body["servers"].as_array().expect("servers").len()
}

fn show(rig: &Rig, via: usize, id: &str) -> Value {
    let (code, body) =
        rig.boxes[via - 1].api("GET", &format!("/compute/v2.1/servers/{id}"), None, "2.53");
    assert_eq!(code, 200, "{body}");
    body["server"].clone()
}

/// Nova's evacuate of server `id` through box `via`, at compute microversion `version`.
fn evacuate(rig: &Rig, via: usize, id: &str, args: Value, version: &str) -> (u16, Value) {
    rig.boxes[via - 1].api(
        "POST",
        &format!("/compute/v2.1/servers/{id}/action"),
        Some(&json!({ "evacuate": args })),
        version,
    )
}

#[test]
fn the_failure_reserve_refuses_what_would_strand_a_box_s_servers_and_maintenance_shrinks_it() {
    // Two vCPUs a box: a flavor of two fills a box, three fill the site.
    let rig = Rig::site_with(
        3,
        "ha_reserve = true\n[compute]\nvcpus = 2\ncpu_allocation_ratio = 1.0\n",
    );
    let big = flavor(&rig, "big", 2);
    let (code, body) = create(&rig, 1, &big, "full", json!({"min_count": 3}));
    assert_eq!(code, 409, "{body}");
    let message = body["conflictingRequest"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.starts_with("No valid host was found for server 3 of 3.")
            && message.contains("(ha_reserve)"),
        "{body}"
    );
    assert_eq!(
        server_count(&rig),
        0,
        "nothing of the refused batch is left"
    );

    // box3 disabled for maintenance: listed so, and never a survivor the reserve counts on.
    let box3 = services(&rig)
        .into_iter()
        .find(|s| s["host"] == "box3")
        .expect("box3's service");
    let id = box3["id"].as_str().expect("a service id");
    let (code, body) = rig.boxes[1].api(
        "PUT",
        &format!("/compute/v2.1/os-services/{id}"),
        Some(&json!({"status": "disabled", "disabled_reason": "new disk"})),
        "2.53",
    );
    assert_eq!(code, 200, "{body}");
    let listed = services(&rig)
        .into_iter()
        .find(|s| s["host"] == "box3")
        .expect("box3's service");
    assert_eq!(
        (&listed["status"], &listed["disabled_reason"]),
        (&json!("disabled"), &json!("new disk"))
    );
    let (code, body) = create(&rig, 2, &big, "two", json!({"min_count": 2}));
    assert_eq!(code, 409, "{body}");
    let message = body["conflictingRequest"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.starts_with("No valid host was found for server 2 of 2."),
        "{body}"
    );
    assert!(
        message.contains("host box3: host is disabled (new disk) (ComputeFilter)")
            && message.contains("(ha_reserve)"),
        "{body}"
    );
    assert_eq!(server_count(&rig), 0);
}

#[test]
fn an_admin_evacuates_a_stay_server_of_a_dead_box_to_the_box_named() {
    let mut rig = Rig::site(3);
    let small = flavor(&rig, "small", 1);
    let (code, body) = create(
        &rig,
        1,
        &small,
        "kept",
        json!({"availability_zone": "nova:box3",
               "metadata": {"outpost:evacuation": "stay"}}),
    );
    assert_eq!(code, 202, "{body}");
    let id = body["server"]["id"].as_str().expect("an id").to_owned();
    eventually(300, "the stay server ACTIVE on box3", || {
        let s = show(&rig, 1, &id);
        assert_ne!(s["status"], "ERROR", "{s}");
        (s["status"] == "ACTIVE").then_some(())
    });
    assert_eq!(show(&rig, 1, &id)["OS-EXT-SRV-ATTR:host"], "box3");
    let (code, body) = evacuate(&rig, 1, &id, json!({}), "2.53");
    assert_eq!(code, 409, "{body}");
    assert_eq!(
        body["conflictingRequest"]["message"],
        "Compute service of box3 is still in use."
    );
    // The body's shape follows the microversion.
    assert_eq!(
        evacuate(&rig, 1, &id, json!({}), "2.1").0,
        400,
        "onSharedStorage required"
    );
    assert_eq!(
        evacuate(&rig, 1, &id, json!({"force": false}), "2.68").0,
        400,
        "force gone in 2.68"
    );

    let cut = Instant::now();
    rig.power_off(3);
    // A stay server waits for its box: the controller leaves it where it is.
    eventually(60, "box3 seen down", || {
        let (code, _) = evacuate(&rig, 2, &id, json!({"host": "box3"}), "2.53");
        (code != 409).then_some(code)
    });
    eprintln!("box3 seen down {:?} after the cut", cut.elapsed());
    let (code, body) = evacuate(&rig, 2, &id, json!({"host": "box3"}), "2.53");
    assert_eq!(code, 400, "{body}");
    assert_eq!(
        body["badRequest"]["message"],
        "The target host can't be the same one."
    );
    let (code, body) = evacuate(&rig, 2, &id, json!({"host": "box9"}), "2.53");
    assert_eq!(code, 404, "{body}");
    assert_eq!(
        show(&rig, 2, &id)["OS-EXT-SRV-ATTR:host"],
        "box3",
        "nothing moved yet"
    );

    let (code, body) = evacuate(&rig, 2, &id, json!({"host": "box1"}), "2.53");
    assert_eq!(code, 200, "{body}");
    eventually(300, "the server ACTIVE on box1", || {
        let s = show(&rig, 2, &id);
        assert_ne!(s["status"], "ERROR", "{s}");
        (s["status"] == "ACTIVE").then_some(())
    });
    eprintln!("ACTIVE on box1 {:?} after the cut", cut.elapsed());
    assert_eq!(show(&rig, 1, &id)["OS-EXT-SRV-ATTR:host"], "box1");
    assert_eq!(rig.boxes[0].monitors().len(), 1, "box1 runs it");
    assert!(rig.boxes[1].monitors().is_empty());
    // Moved once: a second evacuate finds its box (box1) up.
    let (code, body) = evacuate(&rig, 2, &id, json!({}), "2.53");
    assert_eq!(code, 409, "{body}");
    // os-migrations, through any box: the one evacuation, done on box1.
    let (code, body) = rig.boxes[1].api(
        "GET",
        &format!("/compute/v2.1/os-migrations?instance_uuid={id}"),
        None,
        "2.59",
    );
    assert_eq!(code, 200, "{body}");
    let listed = body["migrations"].as_array().expect("migrations").clone();
    assert_eq!(listed.len(), 1, "{body}");
    let m = &listed[0];
    assert_eq!(
        (
            &m["migration_type"],
            &m["source_compute"],
            &m["dest_compute"],
            &m["status"]
        ),
        (
            &json!("evacuation"),
            &json!("box3"),
            &json!("box1"),
            &json!("done")
        ),
        "{m}"
    );
    assert!(m["uuid"].is_string(), "{m}");
}
