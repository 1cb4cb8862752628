//! Volumes across the boxes of a site (tests/src/rig.rs, three boxes): Cinder's records are the
//! site's, each volume's file is on one box, its home. A volume asked of one box goes to the
//! box with the most free disk, every box shows it, and only its home holds the file; an
//! extend, a snapshot or a delete asked of another box is done by the home; attaching it to a
//! server on another box is refused with a 409 saying why; a server booted from it is placed
//! on its home.

use std::path::PathBuf;

use outpost_tests::eventually;
use outpost_tests::rig::{BoxNode, Rig};
use serde_json::{json, Value};

/// The admin's project, in which the unix socket acts.
fn admin_project(b: &BoxNode) -> String {
    let (code, body) = b.api("GET", "/identity/v3/projects?name=admin", None, "2.53");
    assert_eq!(code, 200, "{body}");
    body["projects"][0]["id"].as_str().unwrap().to_owned()
}

fn volume(b: &BoxNode, project: &str, id: &str) -> (u16, Value) {
    let (code, body) = b.api(
        "GET",
        &format!("/volume/v3/{project}/volumes/{id}"),
        None,
        "2.53",
    );
    (code, body["volume"].clone())
}

/// Waits until volume `id`, read through `b`, shows `status`.
fn wait_volume(b: &BoxNode, project: &str, id: &str, status: &str) -> Value {
    eventually(
        60,
        &format!("volume {id} {status} through {}", b.name),
        || {
            let (code, v) = volume(b, project, id);
            assert_eq!(code, 200, "{v}");
            (v["status"] == status).then_some(v)
        },
    )
}

fn server(b: &BoxNode, id: &str) -> Value {
    let (code, body) = b.api("GET", &format!("/compute/v2.1/servers/{id}"), None, "2.74");
    assert_eq!(code, 200, "{body}");
    body["server"].clone()
}

fn volume_file(b: &BoxNode, id: &str) -> PathBuf {
    b.state_dir().join("volumes").join(format!("{id}.raw"))
}

/// The boxes whose volume store holds volume `id`'s file.
fn holders(rig: &Rig, id: &str) -> Vec<String> {
    rig.boxes
        .iter()
        .filter(|b| volume_file(b, id).exists())
        .map(|b| b.name.clone())
        .collect()
}

#[test]
fn a_volume_lives_on_its_home_box_and_any_box_asks_it_for_work() {
    let rig = Rig::site(3);
    let [b1, b2, b3] = [&rig.boxes[0], &rig.boxes[1], &rig.boxes[2]];
    let project = admin_project(b1);
    let vols = format!("/volume/v3/{project}/volumes");
    let (code, body) = b1.api(
        "POST",
        "/compute/v2.1/flavors",
        Some(&json!({"flavor": {"name": "small", "ram": 128, "vcpus": 1, "disk": 1}})),
        "2.53",
    );
    assert_eq!(code, 200, "{body}");
    let flavor = body["flavor"]["id"].as_str().unwrap().to_owned();

    // A server on box 1 (an admin's 2.74 host) takes a GiB of its disk.
    let (code, body) = b1.api(
        "POST",
        "/compute/v2.1/servers",
        Some(
            &json!({"server": {"name": "on1", "flavorRef": flavor, "host": "box1",
                                "imageRef": "outpost-guest", "networks": "none"}}),
        ),
        "2.74",
    );
    assert_eq!(code, 202, "{body}");
    let on1 = body["server"]["id"].as_str().unwrap().to_owned();
    eventually(300, "server on1 ACTIVE", || {
        let s = server(b1, &on1);
        assert_ne!(s["status"], "ERROR", "{s}");
        (s["status"] == "ACTIVE" && s["OS-EXT-STS:task_state"].is_null()).then_some(())
    });
    assert_eq!(server(b3, &on1)["OS-EXT-SRV-ATTR:host"], "box1");

    // A volume asked of box 1 goes to the box with the most free disk: box 2 and box 3 tie,
    // the lower name wins. Every box shows it (the admin sees its home), only box 2 has it.
    let (code, body) = b1.api(
        "POST",
        &vols,
        Some(&json!({"volume": {"size": 1, "name": "data"}})),
        "2.53",
    );
    assert_eq!(code, 202, "{body}");
    let vol = body["volume"]["id"].as_str().unwrap().to_owned();
    let seen = wait_volume(b3, &project, &vol, "available");
    assert_eq!(
        seen["os-vol-host-attr:host"], "box2@outpost#local",
        "{seen}"
    );
    for b in [b1, b2] {
        let (code, list) = b.api("GET", &format!("{vols}/detail"), None, "2.53");
        assert_eq!(code, 200, "{list}");
        let ids: Vec<&Value> = list["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| &v["id"])
            .collect();
        assert_eq!(ids, [&json!(vol)], "through {}", b.name);
    }
    assert_eq!(holders(&rig, &vol), ["box2"]);

    // Extended through box 3: box 2 grows its file.
    let (code, body) = b3.api(
        "POST",
        &format!("{vols}/{vol}/action"),
        Some(&json!({"os-extend": {"new_size": 2}})),
        "2.53",
    );
    assert_eq!(code, 202, "{body}");
    let grown = wait_volume(b1, &project, &vol, "available");
    assert_eq!(grown["size"], 2, "{grown}");
    let file = std::fs::metadata(volume_file(b2, &vol)).unwrap();
    assert_eq!(file.len(), 2 << 30);

    // A snapshot asked of box 3 is taken beside the volume on box 2; deleted through box 1.
    let (code, body) = b3.api(
        "POST",
        &format!("/volume/v3/{project}/snapshots"),
        Some(&json!({"snapshot": {"volume_id": vol, "name": "snap"}})),
        "2.53",
    );
    assert_eq!(code, 202, "{body}");
    let snap = body["snapshot"]["id"].as_str().unwrap().to_owned();
    let snap_url = format!("/volume/v3/{project}/snapshots/{snap}");
    eventually(60, "the snapshot available", || {
        let (_, s) = b1.api("GET", &snap_url, None, "2.53");
        (s["snapshot"]["status"] == "available").then_some(())
    });
    let snap_file = |b: &BoxNode| b.state_dir().join("snapshots").join(format!("{snap}.raw"));
    assert!(snap_file(b2).exists());
    assert!(!snap_file(b1).exists() && !snap_file(b3).exists());
    let (code, body) = b1.api("DELETE", &snap_url, None, "2.53");
    assert_eq!(code, 202, "{body}");
    eventually(60, "the snapshot gone", || {
        (b3.api("GET", &snap_url, None, "2.53").0 == 404).then_some(())
    });
    assert!(!snap_file(b2).exists());

    // Attaching it to the server on box 1 is refused, saying why; nothing changes.
    let (code, body) = b3.api(
        "POST",
        &format!("/compute/v2.1/servers/{on1}/os-volume_attachments"),
        Some(&json!({"volumeAttachment": {"volumeId": vol}})),
        "2.53",
    );
    assert_eq!(code, 409, "{body}");
    let said = body.to_string();
    assert!(
        said.contains("box2") && said.contains("box1") && said.contains("its own box"),
        "{said}"
    );
    assert_eq!(
        wait_volume(b2, &project, &vol, "available")["attachments"],
        json!([])
    );

    // A volume asked of box 3 stays there (box 2 and box 3 tie; the asking box wins), and a
    // server given volumes on two boxes is refused: it would run on one.
    let (code, body) = b3.api(
        "POST",
        &vols,
        Some(&json!({"volume": {"size": 1, "name": "elsewhere"}})),
        "2.53",
    );
    assert_eq!(code, 202, "{body}");
    let other = body["volume"]["id"].as_str().unwrap().to_owned();
    let seen = wait_volume(b1, &project, &other, "available");
    assert_eq!(
        seen["os-vol-host-attr:host"], "box3@outpost#local",
        "{seen}"
    );
    let mapping = |id: &str, boot_index: i64| {
        json!({"boot_index": boot_index, "uuid": id, "source_type": "volume",
               "destination_type": "volume", "delete_on_termination": false})
    };
    let (code, body) = b1.api(
        "POST",
        "/compute/v2.1/servers",
        Some(
            &json!({"server": {"name": "split", "flavorRef": flavor, "networks": "none",
                                "block_device_mapping_v2": [mapping(&vol, 0),
                                                            mapping(&other, 1)]}}),
        ),
        "2.74",
    );
    assert_eq!(code, 409, "{body}");
    assert!(body.to_string().contains("on box box3"), "{body}");
    let (code, body) = b2.api("DELETE", &format!("{vols}/{other}"), None, "2.53");
    assert_eq!(code, 202, "{body}");

    // A server booted from it, asked of box 3, is placed on box 2, and the volume is its
    // root disk there.
    let (code, body) = b3.api(
        "POST",
        "/compute/v2.1/servers",
        Some(
            &json!({"server": {"name": "from-volume", "flavorRef": flavor,
                                "networks": "none",
                                "block_device_mapping_v2": [mapping(&vol, 0)]}}),
        ),
        "2.74",
    );
    assert_eq!(code, 202, "{body}");
    let booted = body["server"]["id"].as_str().unwrap().to_owned();
    // The volume is blank, so its guest finds no root file system: the server's placement
    // and its disk are what is checked, not its guest.
    let placed = eventually(120, "the volume-backed server built", || {
        let s = server(b1, &booted);
        assert_ne!(s["status"], "ERROR", "{s}");
        let built = s["status"] == "ACTIVE" || s["status"] == "SHUTOFF";
        Some(s).filter(|s| built && s["OS-EXT-STS:task_state"].is_null())
    });
    assert_eq!(placed["OS-EXT-SRV-ATTR:host"], "box2", "{placed}");
    let attached = wait_volume(b1, &project, &vol, "in-use");
    assert_eq!(attached["attachments"][0]["server_id"], json!(booted));
    assert_eq!(attached["attachments"][0]["device"], "/dev/vda");

    // Deleted through box 1 once the server is gone: box 2 removes the file and the record.
    for id in [&booted, &on1] {
        let (code, body) = b1.api(
            "DELETE",
            &format!("/compute/v2.1/servers/{id}"),
            None,
            "2.53",
        );
        assert_eq!(code, 204, "{body}");
    }
    wait_volume(b1, &project, &vol, "available");
    let (code, body) = b1.api("DELETE", &format!("{vols}/{vol}"), None, "2.53");
    assert_eq!(code, 202, "{body}");
    eventually(60, "the volume gone", || {
        (volume(b3, &project, &vol).0 == 404).then_some(())
    });
    eventually(60, "the other volume gone", || {
        (volume(b1, &project, &other).0 == 404).then_some(())
    });
    assert!(holders(&rig, &vol).is_empty() && holders(&rig, &other).is_empty());
    let out = b1.etcdctl(&["get", "--prefix", "--keys-only", "/outpost/v1/volumes/"]);
    assert!(out.stdout.iter().all(u8::is_ascii_whitespace), "{out:?}");
}
