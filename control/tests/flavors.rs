//! Nova flavors over the real daemon: CRUD, filters and paging, extra specs, 404s that make
//! clients fall back to listing, microversion negotiation, and malformed input refused with
//! nothing changed.

mod common;

use common::{raw_http, Api, Daemon, Text, ADMIN_PASSWORD};
use serde_json::{json, Value};

const FLAVORS: &str = "/compute/v2.1/flavors";

fn admin(d: &Daemon, version: &str) -> Api {
    let t = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    d.tcp(Some(&t))
        .with_header("OpenStack-API-Version", &format!("compute {version}"))
}

fn create(api: &Api, name: &str, id: &str, ram: i64, disk: i64, public: bool) -> Value {
    let r = api.post(
        FLAVORS,
        &json!({"flavor": {"name": name, "id": id, "ram": ram, "vcpus": 1, "disk": disk,
                           "os-flavor-access:is_public": public}}),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.body_json()["flavor"].clone()
}

fn seed(api: &Api) {
    create(api, "m1.tiny", "1", 512, 1, true);
    create(api, "m1.small", "2", 2048, 20, true);
    create(api, "m1.medium", "3", 4096, 40, true);
    create(api, "secret", "9", 8192, 80, false);
}

fn ids(v: &Value) -> Vec<String> {
    v["flavors"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect()
}

fn nova_fault(r: &outpost_control::client::ApiResponse, code: u16, name: &str) -> String {
    assert_eq!(r.status.as_u16(), code, "{}", r.text());
    let b = r.body_json();
    assert_eq!(b[name]["code"], code, "{b}");
    b[name]["message"].as_str().unwrap().to_owned()
}

#[test]
fn create_show_list_delete() {
    let d = Daemon::start();
    let api = admin(&d, "2.61");
    let f = api.post(
        FLAVORS,
        &json!({"flavor": {"name": "m1.tiny", "ram": 512, "vcpus": 1, "disk": 1,
                           "description": "smallest", "swap": 0, "rxtx_factor": 2.5}}),
    );
    assert_eq!(f.status.as_u16(), 200, "{}", f.text());
    let f = f.body_json()["flavor"].clone();
    let id = f["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 36);
    assert_eq!(f["description"], "smallest");
    assert_eq!(f["extra_specs"], json!({}));
    assert_eq!(f["swap"], "");
    assert_eq!(f["rxtx_factor"], 2.5);
    assert_eq!(f["OS-FLV-EXT-DATA:ephemeral"], 0);
    assert_eq!(f["os-flavor-access:is_public"], true);
    assert_eq!(f["OS-FLV-DISABLED:disabled"], false);
    let base = format!("http://{}", d.addr);
    assert_eq!(
        f["links"][0]["href"],
        format!("{base}/compute/v2.1/flavors/{id}")
    );
    assert_eq!(f["links"][1]["rel"], "bookmark");

    let shown = api.get(&format!("{FLAVORS}/{id}"));
    assert_eq!(shown.body_json()["flavor"], f);
    let listed = api.get(FLAVORS).body_json();
    assert_eq!(listed["flavors"][0]["name"], "m1.tiny");
    assert_eq!(listed["flavors"][0]["description"], "smallest");
    assert!(listed["flavors"][0].get("ram").is_none());
    assert!(listed.get("flavors_links").is_none());

    // Names and ids are unique.
    let dup = api.post(
        FLAVORS,
        &json!({"flavor": {"name": "m1.tiny", "ram": 1, "vcpus": 1, "disk": 0}}),
    );
    nova_fault(&dup, 409, "conflictingRequest");

    // A name where an id goes is a 404 in Nova's shape (openstackclient then lists).
    let msg = nova_fault(&api.get(&format!("{FLAVORS}/m1.tiny")), 404, "itemNotFound");
    assert_eq!(msg, "Flavor m1.tiny could not be found.");

    let del = api.delete(&format!("{FLAVORS}/{id}"));
    assert_eq!(del.status.as_u16(), 202, "{}", del.text());
    nova_fault(&api.get(&format!("{FLAVORS}/{id}")), 404, "itemNotFound");
    nova_fault(&api.delete(&format!("{FLAVORS}/{id}")), 404, "itemNotFound");
}

#[test]
fn filters_sorting_and_paging() {
    let d = Daemon::start();
    let api = admin(&d, "2.1");
    seed(&api);
    let detail = |q: &str| api.get(&format!("{FLAVORS}/detail{q}"));
    assert_eq!(ids(&detail("").body_json()), ["1", "2", "3"]);
    assert_eq!(
        ids(&detail("?is_public=none").body_json()),
        ["1", "2", "3", "9"]
    );
    assert_eq!(ids(&detail("?is_public=False").body_json()), ["9"]);
    assert_eq!(ids(&detail("?minRam=2048").body_json()), ["2", "3"]);
    assert_eq!(ids(&detail("?minDisk=30&minRam=1").body_json()), ["3"]);
    assert_eq!(
        ids(&detail("?sort_key=memory_mb&sort_dir=desc").body_json()),
        ["3", "2", "1"]
    );
    assert_eq!(ids(&detail("?sort_key=name").body_json()), ["3", "2", "1"]);

    let page = detail("?limit=2&minRam=1").body_json();
    assert_eq!(ids(&page), ["1", "2"]);
    let next = page["flavors_links"][0]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        next.contains("marker=2") && next.contains("minRam=1"),
        "{next}"
    );
    let next_path = next
        .trim_start_matches(&format!("http://{}", d.addr))
        .to_owned();
    let page2 = api.get(&next_path).body_json();
    assert_eq!(ids(&page2), ["3"]);
    assert!(page2.get("flavors_links").is_none());

    for bad in [
        "?minRam=-1",
        "?minRam=abc",
        "?minDisk=1.5",
        "?is_public=maybe",
        "?sort_key=colour",
        "?sort_dir=up",
        "?limit=-1",
        "?limit=x",
        "?marker=nope",
    ] {
        nova_fault(&detail(bad), 400, "badRequest");
    }
    // Unknown parameters are ignored, as Nova does.
    assert_eq!(ids(&detail("?colour=red").body_json()), ["1", "2", "3"]);

    // A member sees public flavors only, whatever it asks for.
    d.make_member("alice", "alice-pw", "demo");
    let alice = d.tcp(Some(&d.login("alice", "alice-pw", Some("demo"))));
    assert_eq!(
        ids(&alice
            .get(&format!("{FLAVORS}/detail?is_public=none"))
            .body_json()),
        ["1", "2", "3"]
    );
    nova_fault(&alice.get(&format!("{FLAVORS}/9")), 404, "itemNotFound");
    let denied = alice.post(
        FLAVORS,
        &json!({"flavor": {"name": "x", "ram": 1, "vcpus": 1, "disk": 0}}),
    );
    nova_fault(&denied, 403, "forbidden");
    nova_fault(&alice.delete(&format!("{FLAVORS}/1")), 403, "forbidden");
}

#[test]
fn extra_specs() {
    let d = Daemon::start();
    let api = admin(&d, "2.61");
    seed(&api);
    let specs = format!("{FLAVORS}/1/os-extra_specs");
    let set = api.post(
        &specs,
        &json!({"extra_specs": {"hw:cpu_policy": "dedicated", "hw:numa_nodes": 1, "x": true}}),
    );
    assert_eq!(set.status.as_u16(), 200, "{}", set.text());
    assert_eq!(set.body_json()["extra_specs"]["hw:numa_nodes"], "1");
    let all = api.get(&specs).body_json();
    assert_eq!(
        all,
        json!({"extra_specs": {"hw:cpu_policy": "dedicated", "hw:numa_nodes": "1", "x": "true"}})
    );
    assert_eq!(
        api.get(&format!("{specs}/hw:cpu_policy")).body_json(),
        json!({"hw:cpu_policy": "dedicated"})
    );
    let put = api.put(
        &format!("{specs}/hw:cpu_policy"),
        Some(&json!({"hw:cpu_policy": "shared"})),
    );
    assert_eq!(put.body_json(), json!({"hw:cpu_policy": "shared"}));
    // The flavor body carries them from 2.61.
    let f = api.get(&format!("{FLAVORS}/1")).body_json();
    assert_eq!(f["flavor"]["extra_specs"]["hw:cpu_policy"], "shared");

    nova_fault(
        &api.put(&format!("{specs}/a"), Some(&json!({"b": "1"}))),
        400,
        "badRequest",
    );
    nova_fault(
        &api.put(&format!("{specs}/a"), Some(&json!({"a": "1", "b": "2"}))),
        400,
        "badRequest",
    );
    nova_fault(
        &api.post(&specs, &json!({"extra_specs": {"bad/key": "v"}})),
        400,
        "badRequest",
    );
    nova_fault(
        &api.post(&specs, &json!({"extra_specs": {"k": ["list"]}})),
        400,
        "badRequest",
    );
    nova_fault(&api.post(&specs, &json!({"specs": {}})), 400, "badRequest");
    // I/O quotas become the monitor's token buckets: a whole number, and never a total with
    // a per-direction limit of the same kind (checked when a server starts with them).
    let said = nova_fault(
        &api.post(
            &specs,
            &json!({"extra_specs": {"quota:disk_read_bytes_sec": "fast"}}),
        ),
        400,
        "badRequest",
    );
    assert!(said.contains("quota:disk_read_bytes_sec"), "{said}");
    let set = api.post(
        &specs,
        &json!({"extra_specs": {"quota:vif_inbound_average": "1024"}}),
    );
    assert_eq!(set.status.as_u16(), 200, "{}", set.text());
    let del = api.delete(&format!("{specs}/quota:vif_inbound_average"));
    assert_eq!(del.status.as_u16(), 200, "{}", del.text());

    let del = api.delete(&format!("{specs}/x"));
    assert_eq!(del.status.as_u16(), 200, "{}", del.text());
    nova_fault(&api.get(&format!("{specs}/x")), 404, "itemNotFound");
    nova_fault(&api.delete(&format!("{specs}/x")), 404, "itemNotFound");
    nova_fault(
        &api.get(&format!("{FLAVORS}/nope/os-extra_specs")),
        404,
        "itemNotFound",
    );
    assert_eq!(
        api.get(&specs).body_json(),
        json!({"extra_specs": {"hw:cpu_policy": "shared", "hw:numa_nodes": "1"}})
    );
}

#[test]
fn microversions_shape_bodies_and_are_negotiated() {
    let d = Daemon::start();
    let token = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    let plain = d.tcp(Some(&token));
    create(&plain, "m1.tiny", "1", 512, 1, true);
    let show = |headers: &[(&str, &str)]| {
        plain.send_raw_headers(hyper::Method::GET, &format!("{FLAVORS}/1"), None, headers)
    };

    // No header: 2.1, echoed in both headers with Vary.
    let r = show(&[]);
    assert_eq!(r.header("openstack-api-version"), Some("compute 2.1"));
    assert_eq!(r.header("x-openstack-nova-api-version"), Some("2.1"));
    assert_eq!(
        r.header("vary"),
        Some("OpenStack-API-Version, X-OpenStack-Nova-API-Version")
    );
    let f = &r.body_json()["flavor"];
    assert_eq!(f["swap"], "");
    assert!(f.get("description").is_none() && f.get("extra_specs").is_none());

    let r = show(&[("X-OpenStack-Nova-API-Version", "2.55")]);
    assert_eq!(r.header("openstack-api-version"), Some("compute 2.55"));
    assert!(r.body_json()["flavor"].get("description").is_some());
    let r = show(&[("OpenStack-API-Version", "compute latest")]);
    assert_eq!(r.header("x-openstack-nova-api-version"), Some("2.75"));
    assert_eq!(r.body_json()["flavor"]["swap"], 0);

    for v in ["2.76", "3.0", "2.0"] {
        let r = show(&[("OpenStack-API-Version", &format!("compute {v}"))]);
        let msg = nova_fault(&r, 406, "computeFault");
        assert!(msg.contains("Minimum is 2.1 and maximum is 2.75"), "{msg}");
    }
    nova_fault(
        &show(&[("OpenStack-API-Version", "compute 2.x")]),
        400,
        "badRequest",
    );

    // Version documents advertise the range honestly.
    let doc = d.tcp(None).get("/compute/").body_json();
    assert_eq!(doc["versions"][0]["version"], "2.75");
    assert_eq!(doc["versions"][0]["min_version"], "2.1");
    let v21 = d.tcp(None).get("/compute/v2.1").body_json();
    assert_eq!(v21["version"]["id"], "v2.1");

    // description is refused before 2.55, and PUT does not exist before it.
    let body =
        json!({"flavor": {"name": "d", "ram": 1, "vcpus": 1, "disk": 0, "description": "x"}});
    nova_fault(&plain.post(FLAVORS, &body), 400, "badRequest");
    let put = plain.put(
        &format!("{FLAVORS}/1"),
        Some(&json!({"flavor": {"description": "y"}})),
    );
    nova_fault(&put, 404, "itemNotFound");
    let v255 = plain.with_header("OpenStack-API-Version", "compute 2.55");
    let put = v255.put(
        &format!("{FLAVORS}/1"),
        Some(&json!({"flavor": {"description": "y"}})),
    );
    assert_eq!(put.status.as_u16(), 200, "{}", put.text());
    assert_eq!(put.body_json()["flavor"]["description"], "y");
    let missing = v255.put(&format!("{FLAVORS}/1"), Some(&json!({"flavor": {}})));
    nova_fault(&missing, 400, "badRequest");
}

#[test]
fn volume_microversions_and_other_services_discovery() {
    let d = Daemon::start();
    let r = d
        .tcp(None)
        .with_header("OpenStack-API-Version", "volume latest")
        .get("/volume/v3/");
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(r.header("openstack-api-version"), Some("volume 3.0"));
    assert_eq!(r.header("vary"), Some("OpenStack-API-Version"));
    // Cinder 3.0 is what the volume API serves, so it is all it claims.
    assert_eq!(r.body_json()["versions"][0]["version"], "3.0");
    let r = d
        .tcp(None)
        .with_header("OpenStack-API-Version", "volume 3.1")
        .get("/volume/v3");
    nova_fault(&r, 406, "computeFault");
    assert_eq!(d.tcp(None).get("/volume/").status.as_u16(), 300);
    assert_eq!(d.tcp(None).get("/image/").status.as_u16(), 300);
    assert_eq!(d.tcp(None).get("/image/versions").status.as_u16(), 200);
    assert_eq!(d.tcp(None).get("/identity/").status.as_u16(), 300);
    let net = d.tcp(None).get("/network/").body_json();
    assert_eq!(net["versions"][0]["id"], "v2.0");
    // Unknown paths get their service's error shape.
    let token = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    let img = d.tcp(Some(&token)).get("/image/v2/nothing-here");
    assert_eq!(img.status.as_u16(), 404);
    assert!(
        img.text().starts_with("404 Not Found\n\n"),
        "{}",
        img.text()
    );
    let net = d
        .tcp(Some(&token))
        .get("/network/v2.0/nothing-here")
        .body_json();
    assert_eq!(net["NeutronError"]["type"], "HTTPNotFound");
    let m = d
        .tcp(Some(&token))
        .send(hyper::Method::PATCH, FLAVORS, None);
    nova_fault(&m, 405, "badMethod");
}

#[test]
fn malformed_input_is_400_and_changes_nothing() {
    let d = Daemon::start();
    let api = admin(&d, "2.61");
    seed(&api);
    let good = json!({"name": "ok", "ram": 512, "vcpus": 1, "disk": 1});
    let with = |k: &str, v: Value| {
        let mut f = good.clone();
        f[k] = v;
        json!({ "flavor": f })
    };
    let without = |k: &str| {
        let mut f = good.clone();
        f.as_object_mut().unwrap().remove(k);
        json!({ "flavor": f })
    };
    let bodies = [
        with("ram", json!(-1)),
        with("ram", json!(0)),
        with("ram", json!(2147483648i64)),
        with("ram", json!(1e30)),
        with("ram", json!(512.5)),
        // Nova takes digit strings and its boolean words (below); not other text.
        with("ram", json!("512MB")),
        with("vcpus", json!(null)),
        with("disk", json!(-1)),
        with("swap", json!(-1)),
        with("OS-FLV-EXT-DATA:ephemeral", json!(9_999_999_999i64)),
        with("rxtx_factor", json!(0)),
        with("rxtx_factor", json!(1e39)),
        with("os-flavor-access:is_public", json!("maybe")),
        with("name", json!("")),
        with("name", json!(" padded")),
        with("id", json!("has/slash")),
        with("colour", json!("red")),
        without("ram"),
        without("name"),
        json!({"flavor": "m1"}),
        json!({"flavors": good.clone()}),
        json!([]),
    ];
    for body in &bodies {
        let r = api.post(FLAVORS, body);
        nova_fault(&r, 400, "badRequest");
    }
    // Not JSON at all, and an empty body.
    let token = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    for payload in ["{\"flavor\": {", "", "null"] {
        let req = format!(
            "POST {FLAVORS} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{payload}",
            payload.len()
        );
        let (status, body) = raw_http(d.addr, req.as_bytes());
        assert_eq!(status, 400, "{payload:?}: {body}");
        assert!(body.contains("badRequest"), "{body}");
    }
    // A body over the limit is refused before it is read, in Nova's shape.
    let req = format!(
        "POST {FLAVORS} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\
         Content-Length: 2000000\r\nConnection: close\r\n\r\n{{}}"
    );
    let (status, body) = raw_http(d.addr, req.as_bytes());
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("overLimit"), "{body}");
    let all = api
        .get(&format!("{FLAVORS}/detail?is_public=none"))
        .body_json();
    assert_eq!(ids(&all), ["1", "2", "3", "9"]);

    // Nova's lenient spellings, as clients send them: a digit string, a boolean word, a
    // numeric id. They make the flavor they say.
    let r = api.post(
        FLAVORS,
        &json!({"flavor": {"name": "lenient", "ram": "768", "vcpus": "2", "disk": 1, "id": 42,
                           "os-flavor-access:is_public": "False"}}),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let f = &r.body_json()["flavor"];
    assert_eq!(
        (f["id"].as_str(), f["ram"].as_i64()),
        (Some("42"), Some(768)),
        "{f}"
    );
    assert_eq!(
        (
            f["vcpus"].as_i64(),
            f["os-flavor-access:is_public"].as_bool()
        ),
        (Some(2), Some(false))
    );
}
