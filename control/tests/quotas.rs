//! Quotas over the real daemon (one box, SQLite): Nova's, Cinder's and Neutron's quota APIs
//! as their clients call them (read, set by an admin only, a member reading its own project
//! only, reverted to the defaults), the `[quota]` section's defaults, usage in `/limits` and
//! the detailed views, creates refused at the limit in each service's words, and racing
//! creates that stop exactly at the limit. The stock client's `quota show`, `quota set` and
//! `limits show --absolute`. Nothing boots: servers' builds fail at once (no monitor).

mod common;

use common::openstack;
use common::{Api, Daemon, Text, ADMIN_PASSWORD};
use outpost_control::client::ApiResponse;
use serde_json::{json, Value};

fn status(r: &ApiResponse) -> u16 {
    r.status.as_u16()
}

fn ok(r: ApiResponse) -> Value {
    assert_eq!(status(&r), 200, "{}", r.text());
    r.body_json()
}

/// A member of a new project `name`: its API over TCP and its project id.
fn member(d: &Daemon, name: &str) -> (Api, String) {
    let (pid, _) = d.make_member(name, "pw-123456", &format!("{name}-project"));
    let token = d.login(name, "pw-123456", Some(&format!("{name}-project")));
    (d.tcp(Some(&token)), pid)
}

/// The admin over TCP and the admin project's id.
fn admin(d: &Daemon) -> (Api, String) {
    let token = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    let api = d.tcp(Some(&token));
    let me = ok(api.get("/identity/v3/projects?name=admin"));
    let pid = me["projects"][0]["id"].as_str().unwrap().to_owned();
    (api, pid)
}

/// outpostd whose servers' builds fail at once (no monitor binary): a create is recorded and
/// counted, and nothing boots.
fn daemon_without_guests(quota: &str) -> (Daemon, tempfile::TempDir) {
    let assets = tempfile::tempdir().unwrap();
    let rootfs = assets.path().join("rootfs.ext4");
    std::fs::write(&rootfs, [0u8; 4096]).unwrap();
    let d = Daemon::start_with(
        Some(&format!(
            "[compute]\nmonitor = \"/nonexistent/outpost-vmm\"\n[guest]\nrootfs = {rootfs:?}\n\
             [quota]\n{quota}\n"
        )),
        Some(ADMIN_PASSWORD),
    );
    (d, assets)
}

#[test]
fn twenty_racing_network_creates_with_room_for_ten_make_exactly_ten() {
    let d = Daemon::start();
    let (alice, pid) = member(&d, "alice");
    let (root, _) = admin(&d);
    let set = root.put(
        &format!("/network/v2.0/quotas/{pid}"),
        Some(&json!({"quota": {"network": 10}})),
    );
    assert_eq!(ok(set)["quota"]["network"], 10);

    let answers: Vec<ApiResponse> = std::thread::scope(|s| {
        let racers: Vec<_> = (0..20)
            .map(|i| {
                let alice = &alice;
                s.spawn(move || {
                    alice.post(
                        "/network/v2.0/networks",
                        &json!({"network": {"name": format!("n{i}")}}),
                    )
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let made = answers.iter().filter(|r| status(r) == 201).count();
    assert_eq!(
        made,
        10,
        "{:?}",
        answers.iter().map(status).collect::<Vec<_>>()
    );
    for r in answers.iter().filter(|r| status(r) != 201) {
        assert_eq!(status(r), 409, "{}", r.text());
        let e = r.body_json();
        assert_eq!(e["NeutronError"]["type"], "OverQuota", "{e}");
        assert_eq!(
            e["NeutronError"]["message"], "Quota exceeded for resources: ['network'].",
            "{e}"
        );
    }
    let listed = ok(alice.get("/network/v2.0/networks"));
    assert_eq!(listed["networks"].as_array().unwrap().len(), 10);
    let details = ok(alice.get(&format!("/network/v2.0/quotas/{pid}/details.json")));
    assert_eq!(
        details["quota"]["network"],
        json!({"limit": 10, "used": 10, "reserved": 0})
    );
    // Reverted to the default, there is room again.
    let reverted = root.delete(&format!("/network/v2.0/quotas/{pid}"));
    assert_eq!(status(&reverted), 204, "{}", reverted.text());
    let again = alice.post("/network/v2.0/networks", &json!({"network": {"name": "n"}}));
    assert_eq!(status(&again), 201, "{}", again.text());
}

#[test]
fn admins_set_quotas_members_read_their_own_and_defaults_come_from_the_config() {
    let (d, _assets) = daemon_without_guests("cores = 8\nnetwork = 3\nvolumes_thick = 2");
    let (alice, pid) = member(&d, "alice");
    let (_bob, other) = member(&d, "bob");
    let (root, admin_pid) = admin(&d);

    // Nova: the configured default over OpenStack's.
    let nova = ok(alice.get(&format!("/compute/v2.1/os-quota-sets/{pid}")));
    let q = &nova["quota_set"];
    assert_eq!(
        (
            q["id"].as_str(),
            &q["instances"],
            &q["cores"],
            &q["ram"],
            &q["key_pairs"]
        ),
        (
            Some(pid.as_str()),
            &json!(10),
            &json!(8),
            &json!(51200),
            &json!(100)
        ),
        "{nova}"
    );
    assert_eq!(q["server_groups"], 10);
    assert_eq!(q["server_group_members"], 10);
    assert_eq!(q["metadata_items"], 128);
    let defaults = ok(alice.get(&format!("/compute/v2.1/os-quota-sets/{pid}/defaults")));
    assert_eq!(defaults["quota_set"]["cores"], 8);

    // A member neither sets nor reads another project's.
    let denied = [
        alice.put(
            &format!("/compute/v2.1/os-quota-sets/{pid}"),
            Some(&json!({"quota_set": {"instances": 100}})),
        ),
        alice.get(&format!("/compute/v2.1/os-quota-sets/{other}")),
        alice.put(
            &format!("/network/v2.0/quotas/{pid}"),
            Some(&json!({"quota": {"network": 100}})),
        ),
        alice.delete(&format!("/network/v2.0/quotas/{pid}")),
        alice.get(&format!("/network/v2.0/quotas/{other}")),
        alice.get(&format!("/volume/v3/{pid}/os-quota-sets/{other}")),
    ];
    for r in &denied {
        assert_eq!(status(r), 403, "{}", r.text());
        assert!(!r.text().contains(&other), "{}", r.text());
    }
    assert_eq!(
        ok(alice.get(&format!("/compute/v2.1/os-quota-sets/{pid}")))["quota_set"]["instances"],
        10
    );

    // The admin sets; numbers may come as strings; `force` changes nothing.
    let set = ok(root.put(
        &format!("/compute/v2.1/os-quota-sets/{pid}"),
        Some(&json!({"quota_set": {"instances": "5", "ram": 4096, "force": true}})),
    ));
    assert_eq!(set["quota_set"]["instances"], 5);
    assert_eq!(set["quota_set"]["ram"], 4096);
    // A bad name or value is a 400 and writes nothing.
    for bad in [
        json!({"quota_set": {"instances": 6, "network": 1}}),
        json!({"quota_set": {"instances": 6, "floating_ips": 1}}),
        json!({"quota_set": {"instances": -2}}),
        json!({"quota_set": {"instances": "many"}}),
    ] {
        let r = root.put(&format!("/compute/v2.1/os-quota-sets/{pid}"), Some(&bad));
        assert_eq!(status(&r), 400, "{bad}: {}", r.text());
    }
    let detail = ok(alice.get(&format!("/compute/v2.1/os-quota-sets/{pid}/detail")));
    assert_eq!(
        detail["quota_set"]["instances"],
        json!({"limit": 5, "in_use": 0, "reserved": 0})
    );
    let limits = ok(alice.get("/compute/v2.1/limits"));
    let abs = &limits["limits"]["absolute"];
    assert_eq!(
        (
            &abs["maxTotalInstances"],
            &abs["totalInstancesUsed"],
            &abs["maxTotalRAMSize"]
        ),
        (&json!(5), &json!(0), &json!(4096)),
        "{limits}"
    );
    // Another project keeps the defaults.
    let others = ok(root.get(&format!("/compute/v2.1/os-quota-sets/{other}")));
    assert_eq!(others["quota_set"]["instances"], 10);
    let reverted = root.delete(&format!("/compute/v2.1/os-quota-sets/{pid}"));
    assert_eq!(status(&reverted), 202, "{}", reverted.text());
    assert_eq!(
        ok(alice.get(&format!("/compute/v2.1/os-quota-sets/{pid}")))["quota_set"]["instances"],
        10
    );

    // Cinder: the caller's project in the URL, the target after it; per volume type too.
    let cinder = ok(alice.get(&format!("/volume/v3/{pid}/os-quota-sets/{pid}")));
    let q = &cinder["quota_set"];
    assert_eq!(
        (
            &q["volumes"],
            &q["gigabytes"],
            &q["snapshots"],
            &q["volumes_thick"],
            &q["volumes_thin"]
        ),
        (&json!(10), &json!(1000), &json!(10), &json!(2), &json!(-1)),
        "{cinder}"
    );
    let set = ok(root.put(
        &format!("/volume/v3/{admin_pid}/os-quota-sets/{pid}"),
        Some(&json!({"quota_set": {"gigabytes_thin": 50}})),
    ));
    assert_eq!(set["quota_set"]["gigabytes_thin"], 50);
    let usage = ok(alice.get(&format!("/volume/v3/{pid}/os-quota-sets/{pid}?usage=True")));
    assert_eq!(
        usage["quota_set"]["gigabytes_thin"],
        json!({"limit": 50, "in_use": 0, "reserved": 0, "allocated": 0})
    );
    let limits = ok(alice.get(&format!("/volume/v3/{pid}/limits")));
    assert_eq!(limits["limits"]["absolute"]["maxTotalVolumes"], 10);
    assert_eq!(limits["limits"]["absolute"]["totalGigabytesUsed"], 0);

    // Neutron: defaults from the config, details with usage, DELETE back to the defaults.
    let neutron = ok(alice.get(&format!("/network/v2.0/quotas/{pid}")));
    assert_eq!(
        neutron["quota"],
        json!({"network": 3, "subnet": 100, "port": 500, "security_group": 10,
               "security_group_rule": 100})
    );
    let set = ok(root.put(
        &format!("/network/v2.0/quotas/{pid}"),
        Some(&json!({"quota": {"port": 7, "check_limit": true}})),
    ));
    assert_eq!(set["quota"]["port"], 7);
    let default = ok(alice.get(&format!("/network/v2.0/quotas/{pid}/default")));
    assert_eq!(default["quota"]["port"], 500);
}

#[test]
fn a_server_over_the_instances_quota_gets_novas_403_and_nothing_is_recorded() {
    let (d, _assets) = daemon_without_guests("instances = 2");
    let (_, pid) = member(&d, "alice");
    // `"networks": "none"` from 2.37.
    let token = d.login("alice", "pw-123456", Some("alice-project"));
    let alice = d
        .tcp(Some(&token))
        .with_header("OpenStack-API-Version", "compute 2.37");
    let flavor = d.unix().post(
        "/compute/v2.1/flavors",
        &json!({"flavor": {"name": "tiny", "ram": 128, "vcpus": 1, "disk": 1, "id": "tiny"}}),
    );
    assert_eq!(status(&flavor), 200, "{}", flavor.text());
    let create = |name: &str| {
        alice.post(
            "/compute/v2.1/servers",
            &json!({"server": {"name": name, "flavorRef": "tiny",
                               "imageRef": "outpost-guest", "networks": "none"}}),
        )
    };
    for name in ["a", "b"] {
        let r = create(name);
        assert_eq!(status(&r), 202, "{}", r.text());
    }
    // Their builds fail (no monitor); failed servers still count, as in Nova.
    let r = create("c");
    assert_eq!(status(&r), 403, "{}", r.text());
    assert_eq!(
        r.body_json(),
        json!({"forbidden": {"code": 403, "message":
            "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances"}})
    );
    let listed = ok(alice.get("/compute/v2.1/servers"));
    assert_eq!(listed["servers"].as_array().unwrap().len(), 2, "{listed}");
    let limits = ok(alice.get("/compute/v2.1/limits"));
    let abs = &limits["limits"]["absolute"];
    assert_eq!(
        (
            &abs["maxTotalInstances"],
            &abs["totalInstancesUsed"],
            &abs["totalCoresUsed"]
        ),
        (&json!(2), &json!(2), &json!(2)),
        "{limits}"
    );
    let detail = ok(alice.get(&format!("/compute/v2.1/os-quota-sets/{pid}/detail")));
    assert_eq!(detail["quota_set"]["ram"]["in_use"], 256);
}

#[test]
fn the_openstack_client_shows_and_sets_quotas_and_shows_limits() {
    let (d, _assets) = daemon_without_guests("");
    let (_alice, pid) = member(&d, "alice");
    let admin = openstack::as_user(&d, "admin", ADMIN_PASSWORD, "admin");
    let alice = openstack::as_user(&d, "alice", "pw-123456", "alice-project");

    admin.ok(&[
        "quota",
        "set",
        "--instances",
        "5",
        "--volumes",
        "7",
        "--networks",
        "9",
        &pid,
    ]);
    let shown = alice.json(&["quota", "show", &pid]);
    let value = |name: &str| -> Value {
        shown
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["Resource"] == name)
            .map(|row| row["Limit"].clone())
            .unwrap_or_else(|| panic!("{name} in {shown}"))
    };
    assert_eq!(value("instances"), 5, "{shown}");
    assert_eq!(value("volumes"), 7, "{shown}");
    assert_eq!(value("networks"), 9, "{shown}");
    assert_eq!(value("cores"), 20, "{shown}");
    assert_eq!(value("ports"), 500, "{shown}");

    let usage = alice.json(&["quota", "show", "--usage", &pid]);
    assert!(usage.to_string().contains("In Use"), "{usage}");

    let limits = alice.json(&["limits", "show", "--absolute"]);
    let limit = |name: &str| -> Value {
        limits
            .as_array()
            .unwrap()
            .iter()
            .find(|row| row["Name"] == name)
            .map(|row| row["Value"].clone())
            .unwrap_or_else(|| panic!("{name} in {limits}"))
    };
    assert_eq!(limit("max_total_instances"), 5, "{limits}");
    assert_eq!(limit("total_instances_used"), 0, "{limits}");
    assert_eq!(limit("max_total_cores"), 20, "{limits}");
    assert_eq!(limit("max_total_volumes"), 7, "{limits}");
    assert_eq!(limit("total_volumes_used"), 0, "{limits}");

    // A member may not set.
    let denied = alice
        .run(&["quota", "set", "--instances", "50", &pid])
        .unwrap_err();
    assert!(
        denied.contains("403") || denied.contains("Policy"),
        "{denied}"
    );
}

#[test]
fn a_volume_over_cinders_quotas_gets_its_413_and_nothing_is_recorded() {
    let d = Daemon::start();
    let (alice, pid) = member(&d, "alice");
    let (root, admin_pid) = admin(&d);
    let set = root.put(
        &format!("/volume/v3/{admin_pid}/os-quota-sets/{pid}"),
        Some(&json!({"quota_set": {"volumes": 2, "gigabytes": 3}})),
    );
    assert_eq!(status(&set), 200, "{}", set.text());
    let create = |size: i64| {
        alice.post(
            &format!("/volume/v3/{pid}/volumes"),
            &json!({"volume": {"size": size}}),
        )
    };
    let first = create(2);
    assert_eq!(status(&first), 202, "{}", first.text());
    let too_big = create(2);
    assert_eq!(status(&too_big), 413, "{}", too_big.text());
    assert_eq!(
        too_big.body_json()["overLimit"]["message"],
        "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed \
         gigabytes quota. Requested 2G, quota is 3G and 2G has been consumed."
    );
    let second = create(1);
    assert_eq!(status(&second), 202, "{}", second.text());
    let third = create(1);
    assert_eq!(status(&third), 413, "{}", third.text());
    assert_eq!(
        third.body_json()["overLimit"]["message"],
        "VolumeLimitExceeded: Maximum number of volumes allowed (2) exceeded for quota \
         'volumes'."
    );
    let listed = ok(alice.get(&format!("/volume/v3/{pid}/volumes")));
    assert_eq!(listed["volumes"].as_array().unwrap().len(), 2, "{listed}");
    let usage = ok(alice.get(&format!("/volume/v3/{pid}/os-quota-sets/{pid}?usage=true")));
    assert_eq!(usage["quota_set"]["gigabytes"]["in_use"], 3);
    assert_eq!(usage["quota_set"]["volumes_thin"]["in_use"], 2);
}

#[test]
fn key_pairs_server_groups_and_metadata_stop_at_novas_quotas() {
    let (d, _assets) =
        daemon_without_guests("key_pairs = 1\nserver_groups = 1\nmetadata_items = 2");
    let (_, _pid) = member(&d, "alice");
    let token = d.login("alice", "pw-123456", Some("alice-project"));
    let alice = d
        .tcp(Some(&token))
        .with_header("OpenStack-API-Version", "compute 2.37");
    let forbidden = |r: ApiResponse, message: &str| {
        assert_eq!(status(&r), 403, "{}", r.text());
        assert_eq!(r.body_json()["forbidden"]["message"], message);
    };
    let pair = |name: &str| {
        alice.post(
            "/compute/v2.1/os-keypairs",
            &json!({"keypair": {"name": name}}),
        )
    };
    assert_eq!(status(&pair("one")), 201);
    forbidden(pair("two"), "Quota exceeded, too many key pairs.");

    let group = |name: &str| {
        alice.post(
            "/compute/v2.1/os-server-groups",
            &json!({"server_group": {"name": name, "policies": ["anti-affinity"]}}),
        )
    };
    let made = group("one");
    assert_eq!(status(&made), 200, "{}", made.text());
    forbidden(group("two"), "Quota exceeded, too many server groups.");

    let flavor = d.unix().post(
        "/compute/v2.1/flavors",
        &json!({"flavor": {"name": "tiny", "ram": 128, "vcpus": 1, "disk": 1, "id": "tiny"}}),
    );
    assert_eq!(status(&flavor), 200, "{}", flavor.text());
    let server = alice.post(
        "/compute/v2.1/servers",
        &json!({"server": {"name": "m", "flavorRef": "tiny", "imageRef": "outpost-guest",
                           "networks": "none", "metadata": {"a": "1", "b": "2", "c": "3"}}}),
    );
    forbidden(
        server,
        "Quota exceeded for metadata_items: Requested 3, but already used 0 of 2 metadata_items",
    );
    assert_eq!(
        ok(alice.get("/compute/v2.1/servers"))["servers"],
        json!([]),
        "nothing was recorded"
    );
}
