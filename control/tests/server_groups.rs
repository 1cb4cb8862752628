//! Nova's server groups and multi-create through a real outpostd on one box (SQLite), with
//! no guest booted: the monitor is `/bin/false`, so a build that gets its claim ends in ERROR
//! at its start, and what is checked is what the API answers and records (group members, the
//! servers a multi-create made or refused to make, membership gone with a deleted server).
//! Placement across boxes is proven against etcd in `cluster::store::tests`.

mod common;

use common::{Daemon, Text, ADMIN_PASSWORD};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const V264: (&str, &str) = ("OpenStack-API-Version", "compute 2.64");
const V21: (&str, &str) = ("OpenStack-API-Version", "compute 2.1");

/// A box of 4 vCPUs whose guests never start.
fn daemon() -> Daemon {
    Daemon::start_with(
        Some(
            "[compute]\nmonitor = \"/bin/false\"\nvcpus = 4\nram_mb = 4096\ndisk_gb = 20\n\
             cpu_allocation_ratio = 1.0\nreserved_host_memory_mb = 0\n",
        ),
        Some(ADMIN_PASSWORD),
    )
}

fn admin(d: &Daemon) -> common::Api {
    d.unix().with_header(V264.0, V264.1)
}

fn create_group(api: &common::Api, body: Value) -> Value {
    let r = api.post("/compute/v2.1/os-server-groups", &body);
    assert_eq!(r.status.as_u16(), 200, "{body}: {}", r.text());
    r.body_json()["server_group"].clone()
}

fn group(d: &Daemon, id: &str) -> Value {
    let r = admin(d).get(&format!("/compute/v2.1/os-server-groups/{id}"));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.body_json()["server_group"].clone()
}

fn server_names(d: &Daemon) -> Vec<String> {
    let r = admin(d).get("/compute/v2.1/servers");
    let mut names: Vec<String> = r.body_json()["servers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn create_servers(
    d: &Daemon,
    server: Value,
    hints: Option<Value>,
) -> outpost_control::client::ApiResponse {
    let mut body = json!({"server": server});
    if let Some(h) = hints {
        body["os:scheduler_hints"] = h;
    }
    admin(d).post("/compute/v2.1/servers", &body)
}

fn fault(r: &outpost_control::client::ApiResponse, kind: &str) -> String {
    r.body_json()[kind]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no {kind}: {}", r.text()))
        .to_owned()
}

/// Deletes every server and waits until none is listed.
fn delete_all(d: &Daemon) {
    let r = admin(d).get("/compute/v2.1/servers");
    for s in r.body_json()["servers"].as_array().unwrap() {
        let id = s["id"].as_str().unwrap();
        let r = admin(d).delete(&format!("/compute/v2.1/servers/{id}"));
        assert_eq!(r.status.as_u16(), 204, "{}", r.text());
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while !server_names(d).is_empty() {
        assert!(
            Instant::now() < deadline,
            "servers left: {:?}\n{}",
            server_names(d),
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn server_groups_are_made_shown_listed_per_project_and_deleted_as_nova_does() {
    let d = daemon();
    let api = admin(&d);
    let g = create_group(
        &api,
        json!({"server_group": {"name": "web", "policy": "anti-affinity",
                                "rules": {"max_server_per_host": 2}}}),
    );
    assert_eq!(g["policy"], "anti-affinity");
    assert_eq!(g["rules"], json!({"max_server_per_host": 2}));
    assert_eq!(g["members"], json!([]));
    assert!(g.get("policies").is_none());
    let id = g["id"].as_str().unwrap().to_owned();
    // The same group in 2.1's shape.
    let old = d.unix().with_header(V21.0, V21.1);
    let shown = old.get(&format!("/compute/v2.1/os-server-groups/{id}"));
    assert_eq!(
        shown.body_json()["server_group"],
        json!({"id": id, "name": "web", "policies": ["anti-affinity"], "members": [],
               "metadata": {}})
    );
    let soft = create_group(
        &old,
        json!({"server_group": {"name": "db", "policies": ["affinity"]}}),
    );
    assert_eq!(soft["policies"], json!(["affinity"]));

    // Nova's 400s, and nothing made.
    for (body, message) in [
        (
            json!({"server_group": {"name": "x", "policy": "affinity",
                                    "rules": {"max_server_per_host": 2}}}),
            "Only anti-affinity policy supports rules.",
        ),
        (
            json!({"server_group": {"name": "x", "policy": "best-effort"}}),
            "is not one of ['anti-affinity', 'affinity', 'soft-anti-affinity', 'soft-affinity']",
        ),
        (
            json!({"server_group": {"name": "x", "policies": ["affinity"]}}),
            "('policies' was unexpected)",
        ),
        (
            json!({"server_group": {"name": " x", "policy": "affinity"}}),
            "leading or trailing whitespace",
        ),
    ] {
        let r = api.post("/compute/v2.1/os-server-groups", &body);
        assert_eq!(r.status.as_u16(), 400, "{body}: {}", r.text());
        let got = fault(&r, "badRequest");
        assert!(got.contains(message), "{body}: {got}");
    }
    let r = old.post(
        "/compute/v2.1/os-server-groups",
        &json!({"server_group": {"name": "x", "policies": ["soft-affinity"]}}),
    );
    assert_eq!(
        r.status.as_u16(),
        400,
        "soft policies need 2.15: {}",
        r.text()
    );

    // A member of another project sees only its own groups.
    d.make_member("alice", "alice-pw", "other");
    let token = d.login("alice", "alice-pw", Some("other"));
    let alice = d.tcp(Some(&token)).with_header(V264.0, V264.1);
    let own = create_group(
        &alice,
        json!({"server_group": {"name": "hers", "policy": "soft-anti-affinity"}}),
    );
    assert_eq!(own["project_id"].as_str().unwrap().len(), 32);
    let listed = |api: &common::Api, q: &str| -> Vec<String> {
        let r = api.get(&format!("/compute/v2.1/os-server-groups{q}"));
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        r.body_json()["server_groups"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(listed(&alice, ""), ["hers"]);
    assert_eq!(listed(&api, ""), ["web", "db"]);
    assert_eq!(listed(&api, "?all_projects=True"), ["web", "db", "hers"]);
    assert_eq!(listed(&api, "?all_projects=True&limit=1&offset=1"), ["db"]);
    let r = alice.get("/compute/v2.1/os-server-groups?all_projects=True");
    assert_eq!(r.status.as_u16(), 403, "{}", r.text());
    let r = alice.get(&format!("/compute/v2.1/os-server-groups/{id}"));
    assert_eq!(r.status.as_u16(), 404);
    assert_eq!(
        fault(&r, "itemNotFound"),
        format!("Instance group {id} could not be found.")
    );
    assert_eq!(
        alice
            .delete(&format!("/compute/v2.1/os-server-groups/{id}"))
            .status
            .as_u16(),
        404
    );

    assert_eq!(
        api.delete(&format!("/compute/v2.1/os-server-groups/{id}"))
            .status
            .as_u16(),
        204
    );
    assert_eq!(
        api.get(&format!("/compute/v2.1/os-server-groups/{id}"))
            .status
            .as_u16(),
        404
    );
    assert_eq!(listed(&api, "?all_projects=1"), ["db", "hers"]);
}

#[test]
fn a_group_hint_joins_the_group_and_multi_creates_place_all_they_can_or_none() {
    let d = daemon();
    let api = admin(&d);
    let f = api.post(
        "/compute/v2.1/flavors",
        &json!({"flavor": {"name": "two", "id": "two", "vcpus": 2, "ram": 256, "disk": 1}}),
    );
    assert_eq!(f.status.as_u16(), 200, "{}", f.text());
    let anti = create_group(
        &api,
        json!({"server_group": {"name": "apart", "policy": "anti-affinity"}}),
    );
    let anti_id = anti["id"].as_str().unwrap().to_owned();
    let server = |name: &str, min: u32, max: u32| {
        json!({"name": name, "flavorRef": "two", "imageRef": "outpost-guest",
               "networks": "none", "min_count": min, "max_count": max})
    };

    // Hints naming no group, or not a UUID: 400, nothing made.
    let r = create_servers(
        &d,
        server("x", 1, 1),
        Some(json!({"group": "00000000-0000-4000-8000-000000000000"})),
    );
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    assert_eq!(
        fault(&r, "badRequest"),
        "Instance group 00000000-0000-4000-8000-000000000000 could not be found."
    );
    let r = create_servers(&d, server("x", 1, 1), Some(json!({"group": "apart"})));
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    // Counts Nova refuses.
    let r = create_servers(&d, server("x", 3, 2), None);
    assert_eq!(fault(&r, "badRequest"), "min_count must be <= max_count");
    let r = create_servers(&d, server("x", 0, 2), None);
    assert!(fault(&r, "badRequest").contains("less than the minimum of 1"));

    // One box cannot hold two members of an anti-affinity group: 409, none made.
    let r = create_servers(&d, server("web", 2, 2), Some(json!({"group": anti_id})));
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    let why = fault(&r, "conflictingRequest");
    assert!(
        why.starts_with("No valid host was found for server 2 of 2."),
        "{why}"
    );
    assert!(why.contains("anti-affinity"), "{why}");
    assert!(server_names(&d).is_empty());
    assert_eq!(group(&d, &anti_id)["members"], json!([]));

    // At least one and up to three: the one that fits is made, the others never are.
    let mut body = server("web", 1, 3);
    body["return_reservation_id"] = json!(true);
    let r = create_servers(&d, body, Some(json!({"group": anti_id})));
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let reservation = r.body_json()["reservation_id"].as_str().unwrap().to_owned();
    assert!(reservation.starts_with("r-"), "{reservation}");
    assert_eq!(server_names(&d), ["web-1"]);
    let members = group(&d, &anti_id)["members"].clone();
    let listed = admin(&d).get("/compute/v2.1/servers").body_json();
    assert_eq!(members, json!([listed["servers"][0]["id"]]));
    // 2.71 shows a server's group.
    let web = listed["servers"][0]["id"].as_str().unwrap();
    let shown = d
        .unix()
        .with_header("OpenStack-API-Version", "compute 2.71")
        .get(&format!("/compute/v2.1/servers/{web}"));
    assert_eq!(
        shown.body_json()["server"]["server_groups"],
        json!([anti_id])
    );

    // Without a group, as many as the box holds: two of two vCPUs... after web-1's build
    // gives its claim back (its guest never starts), four vCPUs hold two.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = admin(&d).get("/compute/v2.1/servers/detail").body_json();
        if s["servers"][0]["status"] == "ERROR" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "web-1 never failed: {s}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let r = create_servers(&d, server("db", 2, 5), None);
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let first = r.body_json()["server"]["id"].as_str().unwrap().to_owned();
    let location = r.header("location").unwrap().to_owned();
    assert!(location.ends_with(&first), "{location}");
    assert_eq!(server_names(&d), ["db-1", "db-2", "web-1"]);

    // Deleting a member takes it out of its group.
    delete_all(&d);
    assert_eq!(group(&d, &anti_id)["members"], json!([]));
}
