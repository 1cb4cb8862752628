//! Nova's host aggregates and availability zones through a real outpostd on one box (SQLite),
//! with no guest booted (the monitor is `/bin/false`): the API's answers, the zones it lists,
//! and where placement lets a server go. Multi-creates are placed before they are answered,
//! so a server that finds no host is a 409 at once. The same rules across boxes, on etcd,
//! are proven in `cluster::store::tests`.

mod common;

use common::{Daemon, Text, ADMIN_PASSWORD};
use serde_json::{json, Value};

const V241: (&str, &str) = ("OpenStack-API-Version", "compute 2.41");
const BOX: &str = "box1";

/// A box named box1 of 4 vCPUs whose guests never start, whose scheduler also matches
/// flavors' aggregate extra specs.
fn daemon() -> Daemon {
    Daemon::start_with(
        Some(&format!(
            "[compute]\nhost = \"{BOX}\"\nmonitor = \"/bin/false\"\nvcpus = 4\nram_mb = 4096\n\
             disk_gb = 20\ncpu_allocation_ratio = 1.0\nreserved_host_memory_mb = 0\n\
             [compute.scheduler]\nenabled_filters = [\"ComputeFilter\", \
             \"AggregateInstanceExtraSpecsFilter\"]\n"
        )),
        Some(ADMIN_PASSWORD),
    )
}

fn admin(d: &Daemon) -> common::Api {
    d.unix().with_header(V241.0, V241.1)
}

fn fault(r: &outpost_control::client::ApiResponse, kind: &str) -> String {
    r.body_json()[kind]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no {kind}: {}", r.text()))
        .to_owned()
}

fn action(d: &Daemon, id: i64, body: Value) -> outpost_control::client::ApiResponse {
    admin(d).post(&format!("/compute/v2.1/os-aggregates/{id}/action"), &body)
}

fn create(d: &Daemon, name: &str, zone: Option<&str>) -> Value {
    let r = admin(d).post(
        "/compute/v2.1/os-aggregates",
        &json!({"aggregate": {"name": name, "availability_zone": zone}}),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.body_json()["aggregate"].clone()
}

fn zones(d: &Daemon) -> Value {
    let r = admin(d).get("/compute/v2.1/os-availability-zone");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.body_json()["availabilityZoneInfo"].clone()
}

#[test]
fn aggregates_are_made_changed_and_deleted_with_nova_s_answers() {
    let d = daemon();
    let api = admin(&d);
    let edge = create(&d, "edge", Some("edge-1"));
    assert_eq!(edge["name"], "edge");
    assert_eq!(edge["availability_zone"], "edge-1");
    assert_eq!(edge["deleted"], false);
    assert_eq!(edge["uuid"].as_str().unwrap().len(), 36);
    assert!(edge.get("hosts").is_none() && edge.get("metadata").is_none());
    let id = edge["id"].as_i64().unwrap();
    let plain = create(&d, "plain", None)["id"].as_i64().unwrap();

    let r = api.post(
        "/compute/v2.1/os-aggregates",
        &json!({"aggregate": {"name": "edge"}}),
    );
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    assert_eq!(
        fault(&r, "conflictingRequest"),
        "Aggregate edge already exists."
    );

    // A member may not even look.
    d.make_member("alice", "alice-pw", "other");
    let token = d.login("alice", "alice-pw", Some("other"));
    let r = d.tcp(Some(&token)).get("/compute/v2.1/os-aggregates");
    assert_eq!(r.status.as_u16(), 403, "{}", r.text());

    // Hosts: only boxes, once, and in one zone.
    let r = action(&d, id, json!({"add_host": {"host": "nowhere"}}));
    assert_eq!(r.status.as_u16(), 404, "{}", r.text());
    assert_eq!(
        fault(&r, "itemNotFound"),
        "Compute host nowhere could not be found."
    );
    let r = action(&d, id, json!({"add_host": {"host": BOX}}));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.body_json()["aggregate"]["hosts"], json!([BOX]));
    assert_eq!(
        r.body_json()["aggregate"]["metadata"],
        json!({"availability_zone": "edge-1"})
    );
    let r = action(&d, id, json!({"add_host": {"host": BOX}}));
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    assert_eq!(
        fault(&r, "conflictingRequest"),
        format!("Aggregate {id} already has host {BOX}.")
    );
    let other_zone = create(&d, "far", Some("edge-2"))["id"].as_i64().unwrap();
    let r = action(&d, other_zone, json!({"add_host": {"host": BOX}}));
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    assert!(
        fault(&r, "conflictingRequest").contains("already in availability zone(s) [\"edge-1\"]"),
        "{}",
        r.text()
    );
    // An aggregate without a zone takes it, but may not then be given another zone.
    assert_eq!(
        action(&d, plain, json!({"add_host": {"host": BOX}}))
            .status
            .as_u16(),
        200
    );
    let r = api.put(
        &format!("/compute/v2.1/os-aggregates/{plain}"),
        Some(&json!({"aggregate": {"availability_zone": "edge-2"}})),
    );
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());

    // Metadata: set, replaced per key, removed with null.
    let r = action(
        &d,
        id,
        json!({"set_metadata": {"metadata": {"ssd": "true", "tier": "gold"}}}),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let r = action(
        &d,
        id,
        json!({"set_metadata": {"metadata": {"tier": null}}}),
    );
    assert_eq!(
        r.body_json()["aggregate"]["metadata"],
        json!({"availability_zone": "edge-1", "ssd": "true"})
    );

    // Rename; show by id; a name is no id.
    let r = api.put(
        &format!("/compute/v2.1/os-aggregates/{id}"),
        Some(&json!({"aggregate": {"name": "edge-a"}})),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let shown = api.get(&format!("/compute/v2.1/os-aggregates/{id}"));
    assert_eq!(shown.body_json()["aggregate"]["name"], "edge-a");
    assert!(shown.body_json()["aggregate"]["updated_at"].is_string());
    assert_eq!(
        api.get("/compute/v2.1/os-aggregates/edge-a")
            .status
            .as_u16(),
        400
    );
    assert_eq!(
        api.get("/compute/v2.1/os-aggregates/999").status.as_u16(),
        404
    );
    let listed = api.get("/compute/v2.1/os-aggregates").body_json();
    let names: Vec<&str> = listed["aggregates"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["edge-a", "plain", "far"]);

    // Not while it has hosts (400, Nova's InvalidAggregateAction); then gone.
    let r = api.delete(&format!("/compute/v2.1/os-aggregates/{id}"));
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    assert_eq!(
        fault(&r, "badRequest"),
        format!("Cannot delete aggregate {id}. Reason: Host aggregate is not empty.")
    );
    let r = action(&d, id, json!({"remove_host": {"host": BOX}}));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.body_json()["aggregate"]["hosts"], json!([]));
    let r = action(&d, id, json!({"remove_host": {"host": BOX}}));
    assert_eq!(r.status.as_u16(), 404, "{}", r.text());
    assert_eq!(
        api.delete(&format!("/compute/v2.1/os-aggregates/{id}"))
            .status
            .as_u16(),
        200
    );
    assert_eq!(
        api.get(&format!("/compute/v2.1/os-aggregates/{id}"))
            .status
            .as_u16(),
        404
    );
}

#[test]
fn zones_come_from_aggregates_and_place_servers_there() {
    let d = daemon();
    let api = admin(&d);
    // Alone, the box is in Nova's default zone.
    assert_eq!(
        zones(&d),
        json!([{"zoneName": "nova", "zoneState": {"available": true}, "hosts": null}])
    );
    for (id, specs) in [
        ("plain", json!({})),
        (
            "fast",
            json!({"aggregate_instance_extra_specs:ssd": "true"}),
        ),
    ] {
        let r = api.post(
            "/compute/v2.1/flavors",
            &json!({"flavor": {"name": id, "id": id, "vcpus": 1, "ram": 256, "disk": 1}}),
        );
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        if specs != json!({}) {
            let r = api.post(
                &format!("/compute/v2.1/flavors/{id}/os-extra_specs"),
                &json!({"extra_specs": specs}),
            );
            assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        }
    }
    // Two at once, so that placement answers before the create does.
    let create = |name: &str, flavor: &str, zone: Option<&str>| {
        let mut server = json!({"name": name, "flavorRef": flavor,
                                "imageRef": "outpost-guest", "networks": "none",
                                "min_count": 2, "max_count": 2});
        if let Some(zone) = zone {
            server["availability_zone"] = json!(zone);
        }
        api.post("/compute/v2.1/servers", &json!({"server": server}))
    };
    // No aggregate sets ssd yet: the fast flavor finds no host.
    let r = create("f", "fast", None);
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    assert!(
        fault(&r, "conflictingRequest").contains("no aggregate of the host sets ssd"),
        "{}",
        r.text()
    );

    let id = create_aggregate_with_box(&d, "edge", "edge-1");
    let r = action(
        &d,
        id,
        json!({"set_metadata": {"metadata": {"ssd": "true"}}}),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        zones(&d),
        json!([{"zoneName": "edge-1", "zoneState": {"available": true}, "hosts": null}])
    );
    let detail = api
        .get("/compute/v2.1/os-availability-zone/detail")
        .body_json();
    let service = &detail["availabilityZoneInfo"][0]["hosts"][BOX]["nova-compute"];
    assert_eq!(service["available"], true, "{detail}");
    assert_eq!(service["active"], true, "{detail}");
    let services = api.get("/compute/v2.1/os-services").body_json();
    assert_eq!(services["services"][0]["zone"], "edge-1", "{services}");

    // The box left nova: a server asked for there is refused, one of edge-1 is placed.
    let r = create("n", "plain", Some("nova"));
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    assert_eq!(
        fault(&r, "badRequest"),
        "The requested availability zone is not available: nova"
    );
    let r = create("e", "plain", Some("edge-1"));
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let r = create("f", "fast", None);
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    // Those that asked for edge-1 show it; the others their box's once it is recorded
    // (their builds then fail and give the box back: the monitor never starts).
    let servers = api.get("/compute/v2.1/servers/detail").body_json();
    let listed = servers["servers"].as_array().unwrap();
    assert_eq!(listed.len(), 4, "{servers}");
    for s in listed {
        let zone = &s["OS-EXT-AZ:availability_zone"];
        if s["name"].as_str().unwrap().starts_with("e-") || s["OS-EXT-SRV-ATTR:host"] == BOX {
            assert_eq!(zone, "edge-1", "{s}");
        } else {
            assert_eq!(zone, "", "{s}");
        }
    }

    // A member lists the zones too, but not their hosts.
    d.make_member("bob", "bob-pw", "other");
    let token = d.login("bob", "bob-pw", Some("other"));
    let bob = d.tcp(Some(&token));
    let r = bob.get("/compute/v2.1/os-availability-zone");
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        r.body_json()["availabilityZoneInfo"][0]["zoneName"],
        "edge-1"
    );
    assert_eq!(
        bob.get("/compute/v2.1/os-availability-zone/detail")
            .status
            .as_u16(),
        403
    );
}

fn create_aggregate_with_box(d: &Daemon, name: &str, zone: &str) -> i64 {
    let id = create(d, name, Some(zone))["id"].as_i64().unwrap();
    let r = action(d, id, json!({"add_host": {"host": BOX}}));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    id
}
