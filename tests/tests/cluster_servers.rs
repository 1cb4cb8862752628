//! Servers across the boxes of a site (tests/src/rig.rs, three boxes): servers asked of one box
//! are placed by the site's scheduler on every box and run there; any box lists them and
//! changes them, whichever box runs them (the owner's reconciler acts on what another box
//! recorded); deleting them through yet another box leaves no server record, claim or monitor
//! behind on any box.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use outpost_tests::eventually;
use outpost_tests::rig::Rig;
use serde_json::{json, Value};

fn server(rig: &Rig, via: usize, id: &str) -> Value {
    let (code, body) =
        rig.boxes[via - 1].api("GET", &format!("/compute/v2.1/servers/{id}"), None, "2.53");
    if code != 200 {
        for b in &rig.boxes {
            eprintln!("---- {} ----\n{}", b.name, b.log("outpostd"));
        }
    }
    assert_eq!(code, 200, "{body}");
    body["server"].clone()
}

/// Waits until server `id`, read through box `via`, shows `status` with no task under way.
fn wait_status(rig: &Rig, via: usize, id: &str, status: &str, secs: u64) -> Value {
    eventually(secs, &format!("server {id} {status}"), || {
        let s = server(rig, via, id);
        (s["status"] == status && s["OS-EXT-STS:task_state"].is_null()).then_some(s)
    })
}

fn action(rig: &Rig, via: usize, id: &str, body: Value) {
    let (code, reply) = rig.boxes[via - 1].api(
        "POST",
        &format!("/compute/v2.1/servers/{id}/action"),
        Some(&body),
        "2.53",
    );
    assert_eq!(code, 202, "{reply}");
}

/// A create request for the default guest with no network, with `extra`'s fields added to
/// the server (scheduler hints beside it, where Nova takes them).
fn create_body(flavor: &str, name: &str, extra: &Value) -> Value {
    let mut body = json!({"server": {"name": name, "flavorRef": flavor,
                                     "imageRef": "outpost-guest", "networks": "none"}});
    for (k, v) in extra.as_object().expect("extra fields are an object") {
        if k == "os:scheduler_hints" {
            body[k] = v.clone();
        } else {
            body["server"][k] = v.clone();
        }
    }
    body
}

/// The keys etcd holds under `prefix`.
fn etcd_keys(rig: &Rig, prefix: &str) -> Vec<String> {
    let out = rig.boxes[0].etcdctl(&["get", "--prefix", "--keys-only", prefix]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
}

#[test]
fn servers_asked_of_one_box_run_on_every_box_and_any_box_changes_them() {
    let mut rig = Rig::site(3);
    let flavor = rig.boxes[0].create_flavor("small", 128);

    // Three creates through box 2 at once: the scheduler spreads them (most free RAM first),
    // each claim a transaction that lost races are retried from.
    let ids: Vec<String> = (1..=3)
        .map(|n| {
            let (code, body) = rig.boxes[1].api(
                "POST",
                "/compute/v2.1/servers",
                Some(
                    &json!({"server": {"name": format!("vm{n}"), "flavorRef": flavor,
                                        "imageRef": "outpost-guest", "networks": "none"}}),
                ),
                "2.53",
            );
            assert_eq!(code, 202, "{body}");
            body["server"]["id"].as_str().unwrap().to_owned()
        })
        .collect();
    let t0 = Instant::now();
    let mut hosts = BTreeSet::new();
    for id in &ids {
        let s = wait_status(&rig, 3, id, "ACTIVE", 300);
        hosts.insert(s["OS-EXT-SRV-ATTR:host"].as_str().unwrap().to_owned());
    }
    eprintln!("three servers ACTIVE after {:?}", t0.elapsed());
    assert_eq!(hosts.len(), 3, "one server per box: {hosts:?}");
    for b in &rig.boxes {
        assert_eq!(
            b.monitors().len(),
            1,
            "{} runs its server's monitor",
            b.name
        );
    }

    // Every box lists all three; each box's hypervisor counts its own one.
    for (i, b) in rig.boxes.iter().enumerate() {
        let (code, list) = b.api("GET", "/compute/v2.1/servers/detail", None, "2.53");
        assert_eq!(code, 200, "{list}");
        assert_eq!(list["servers"].as_array().unwrap().len(), 3, "box{}", i + 1);
        let (_, hv) = b.api("GET", "/compute/v2.1/os-hypervisors/detail", None, "2.53");
        for h in hv["hypervisors"].as_array().unwrap() {
            assert_eq!(h["running_vms"], 1, "{h}");
            assert_eq!(h["vcpus_used"], 1, "{h}");
        }
    }

    // The server box 3 runs, stopped through box 1 and started through box 2: box 3's
    // reconciler does each, and its guest comes back.
    let on3 = ids
        .iter()
        .find(|id| server(&rig, 1, id)["OS-EXT-SRV-ATTR:host"] == "box3")
        .unwrap()
        .clone();
    action(&rig, 1, &on3, json!({"os-stop": null}));
    let t0 = Instant::now();
    wait_status(&rig, 2, &on3, "SHUTOFF", 60);
    eprintln!("stop through another box done after {:?}", t0.elapsed());
    // What is asked of a box while its outpostd is down is done when it returns: the start
    // is recorded through box 2 while box 3's outpostd is killed, nothing runs meanwhile, and
    // box 3's reconciler starts the server once it is back.
    rig.boxes[2].kill9("outpostd");
    action(&rig, 2, &on3, json!({"os-start": null}));
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        rig.boxes[2].monitors().is_empty(),
        "box 3 is down: nothing started"
    );
    rig.start_outpostd(3);
    rig.boxes[2].wait_api(Duration::from_secs(60));
    let t0 = Instant::now();
    wait_status(&rig, 1, &on3, "ACTIVE", 120);
    eprintln!(
        "a start asked while box 3 was down done {:?} after its return",
        t0.elapsed()
    );
    // The guest's console is on its box, and every box shows it (forwarded to box 3): over
    // the unix socket (a token minted for the caller) and over TCP with the client's token.
    let console = |via: usize| {
        let (code, console) = rig.boxes[via - 1].api(
            "POST",
            &format!("/compute/v2.1/servers/{on3}/action"),
            Some(&json!({"os-getConsoleOutput": {}})),
            "2.53",
        );
        assert_eq!(code, 200, "box{via}: {console}");
        console["output"].as_str().unwrap().to_owned()
    };
    let own = eventually(120, "the guest writes to its console", || {
        Some(console(3)).filter(|c| !c.is_empty())
    });
    // Read later, the forwarded log holds everything the owner's earlier read did (which may
    // have ended in the middle of a line).
    let forwarded = console(1);
    assert!(forwarded.starts_with(&own), "{own}\n----\n{forwarded}");

    // Where a request asks a server to go: Nova's same_host / different_host hints, an
    // admin's host (2.74) and the zone, each through a different box.
    let host_of = |id: &str| {
        server(&rig, 1, id)["OS-EXT-SRV-ATTR:host"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let on1 = ids.iter().find(|id| host_of(id) == "box1").unwrap().clone();
    let on2 = ids.iter().find(|id| host_of(id) == "box2").unwrap().clone();
    let create = |via: usize, name: &str, version: &str, extra: Value| -> String {
        let body = create_body(&flavor, name, &extra);
        let (code, reply) =
            rig.boxes[via - 1].api("POST", "/compute/v2.1/servers", Some(&body), version);
        assert_eq!(code, 202, "{reply}");
        reply["server"]["id"].as_str().unwrap().to_owned()
    };
    let mut more = Vec::new();
    let away = create(
        3,
        "away",
        "2.53",
        json!({"os:scheduler_hints": {"different_host": [on1, on2]}}),
    );
    more.push(away.clone());
    let near = create(
        1,
        "near",
        "2.53",
        json!({"os:scheduler_hints": {"same_host": on2}}),
    );
    more.push(near.clone());
    let named = create(
        2,
        "named",
        "2.74",
        json!({"host": "box1", "availability_zone": "nova"}),
    );
    more.push(named.clone());
    for id in &more {
        wait_status(&rig, 2, id, "ACTIVE", 300);
    }
    assert_eq!(host_of(&away), "box3");
    assert_eq!(host_of(&near), "box2");
    assert_eq!(host_of(&named), "box1");
    assert_eq!(
        server(&rig, 3, &named)["OS-EXT-AZ:availability_zone"],
        "nova"
    );
    // Refused before anything is recorded: a zone no box is in, a host no site has, a hint
    // naming no server.
    for (version, extra, says) in [
        (
            "2.53",
            json!({"availability_zone": "edge-9"}),
            "availability zone",
        ),
        ("2.74", json!({"host": "box9"}), "box9"),
        (
            "2.53",
            json!({"os:scheduler_hints": {"same_host": "00000000-0000-0000-0000-000000000000"}}),
            "does not exist",
        ),
        (
            "2.53",
            json!({"os:scheduler_hints": {"different_host": 7}}),
            "different_host",
        ),
    ] {
        let body = create_body(&flavor, "no", &extra);
        let (code, reply) = rig.boxes[0].api("POST", "/compute/v2.1/servers", Some(&body), version);
        assert_eq!(code, 400, "{extra}: {reply}");
        assert!(reply.to_string().contains(says), "{reply}");
    }
    // An image uploaded through box 1 (the test guest's root file system) boots on box 3,
    // which pulls its copy for the build if its background pull has not yet.
    let (code, body) = rig.boxes[0].api(
        "POST",
        "/image/v2/images",
        Some(&json!({"name": "guest-root", "disk_format": "raw", "container_format": "bare"})),
        "2.1",
    );
    assert_eq!(code, 201, "{body}");
    let image = body["id"].as_str().unwrap().to_owned();
    let rootfs = outpost_tests::asset("rootfs.ext4");
    rig.boxes[0].upload_image_data(&image, &rootfs);
    rig.eventually(180, "the image active (two verified copies)", || {
        let (_, i) = rig.boxes[2].api("GET", &format!("/image/v2/images/{image}"), None, "2.1");
        (i["status"] == "active").then_some(())
    });
    let booted = create(
        1,
        "from-image",
        "2.74",
        json!({"host": "box3", "imageRef": image}),
    );
    more.push(booted.clone());
    wait_status(&rig, 1, &booted, "ACTIVE", 300);
    assert_eq!(host_of(&booted), "box3");
    assert!(rig.boxes[2]
        .state_dir()
        .join("images")
        .join(&image)
        .exists());

    let (_, list) = rig.boxes[0].api("GET", "/compute/v2.1/servers", None, "2.53");
    assert_eq!(list["servers"].as_array().unwrap().len(), 7, "{list}");

    // Deleted through box 1, each by its own box: nothing of them stays anywhere.
    for id in ids.iter().chain(&more) {
        let (code, body) = rig.boxes[0].api(
            "DELETE",
            &format!("/compute/v2.1/servers/{id}"),
            None,
            "2.53",
        );
        assert_eq!(code, 204, "{body}");
    }
    eventually(60, "every server gone", || {
        let (_, list) = rig.boxes[2].api("GET", "/compute/v2.1/servers", None, "2.53");
        list["servers"].as_array().unwrap().is_empty().then_some(())
    });
    assert_eq!(
        etcd_keys(&rig, "/outpost/v1/servers/"),
        Vec::<String>::new()
    );
    assert_eq!(
        etcd_keys(&rig, "/outpost/v1/placement/claims/"),
        Vec::<String>::new()
    );
    for b in &rig.boxes {
        let (_, hv) = b.api("GET", "/compute/v2.1/os-hypervisors/detail", None, "2.53");
        for h in hv["hypervisors"].as_array().unwrap() {
            assert_eq!(
                (h["running_vms"].as_u64(), h["vcpus_used"].as_u64()),
                (Some(0), Some(0)),
                "{h}"
            );
        }
        // The box's cgroup holds what runs on it: etcd and outpostd, no monitor.
        let monitors = b.monitors();
        assert!(
            monitors.is_empty(),
            "monitors still run on {}: {monitors:?}",
            b.name
        );
    }
}
