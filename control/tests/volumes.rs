//! Cinder v3 over the real daemon: thin vs thick allocation (st_blocks of the real files),
//! volumes from images and snapshots with equal content, extend, delete refusals (snapshots,
//! attachments made through the library on the same database, as Nova's code will), project
//! scoping, malformed input refused with nothing made, and recovery after kill -9.

mod common;

use common::{Api, Daemon, Text, ADMIN_PASSWORD};
use hyper::Method;
use outpost_control::client::{ApiResponse, Client, Endpoint};
use serde_json::{json, Value};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

const GIB: u64 = 1 << 30;

struct Cinder {
    api: Api,
    token: String,
    root: String,
}

fn cinder(d: &Daemon, user: &str, password: &str, project: &str) -> Cinder {
    let token = d.login(user, password, Some(project));
    let api = d.tcp(Some(&token));
    // Cinder's URLs carry the project id, which the token names.
    let auth = d.tcp(Some(&token)).send_raw_headers(
        Method::GET,
        "/identity/v3/auth/tokens",
        None,
        &[("X-Subject-Token", &token)],
    );
    let project_id = auth.body_json()["token"]["project"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    Cinder {
        api,
        token,
        root: format!("/volume/v3/{project_id}"),
    }
}

fn admin(d: &Daemon) -> Cinder {
    cinder(d, "admin", ADMIN_PASSWORD, "admin")
}

fn fault(r: &ApiResponse, code: u16) -> String {
    assert_eq!(r.status.as_u16(), code, "{}", r.text());
    let b = r.body_json();
    let (_, inner) = b.as_object().unwrap().iter().next().unwrap();
    assert_eq!(inner["code"], code, "{b}");
    inner["message"].as_str().unwrap().to_owned()
}

impl Cinder {
    fn create(&self, body: Value) -> Value {
        let r = self.api.post(
            &format!("{}/volumes", self.root),
            &json!({ "volume": body }),
        );
        assert_eq!(r.status.as_u16(), 202, "{}", r.text());
        let v = r.body_json()["volume"].clone();
        assert_eq!(v["status"], "creating");
        v
    }

    fn show(&self, kind: &str, id: &str) -> Value {
        let r = self.api.get(&format!("{}/{kind}s/{id}", self.root));
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        r.body_json()[kind].clone()
    }

    /// Waits until the volume or snapshot is no longer creating.
    fn settled(&self, kind: &str, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.show(kind, id);
            if v["status"] != "creating" {
                return v;
            }
            assert!(Instant::now() < deadline, "{v}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn available(&self, body: Value) -> Value {
        let v = self.create(body);
        let v = self.settled("volume", v["id"].as_str().unwrap());
        assert_eq!(v["status"], "available", "{v}");
        v
    }

    fn snapshot(&self, volume_id: &str, force: bool) -> Value {
        let r = self.api.post(
            &format!("{}/snapshots", self.root),
            &json!({"snapshot": {"volume_id": volume_id, "name": "snap", "force": force}}),
        );
        assert_eq!(r.status.as_u16(), 202, "{}", r.text());
        let s = r.body_json()["snapshot"].clone();
        let s = self.settled("snapshot", s["id"].as_str().unwrap());
        assert_eq!(s["status"], "available", "{s}");
        s
    }

    fn delete(&self, kind: &str, id: &str) -> ApiResponse {
        self.api.delete(&format!("{}/{kind}s/{id}", self.root))
    }

    fn ids(&self, path: &str, key: &str) -> Vec<String> {
        let r = self.api.get(&format!("{}/{path}", self.root));
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        r.body_json()[key]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["id"].as_str().unwrap().to_owned())
            .collect()
    }
}

fn volume_file(d: &Daemon, id: &str) -> PathBuf {
    d.state_dir().join("volumes").join(format!("{id}.raw"))
}

fn allocated(path: &PathBuf) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn files(d: &Daemon, kind: &str) -> Vec<String> {
    std::fs::read_dir(d.state_dir().join(kind))
        .map(|r| {
            r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n != ".partial")
                .collect()
        })
        .unwrap_or_default()
}

/// An active raw image holding `data`.
fn image(d: &Daemon, c: &Cinder, data: &[u8]) -> String {
    let r = c.api.post(
        "/image/v2/images",
        &json!({"name": "img", "disk_format": "raw", "container_format": "bare"}),
    );
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let id = r.body_json()["id"].as_str().unwrap().to_owned();
    let client = Client::new(Endpoint::Tcp(d.addr)).unwrap();
    let up = client
        .upload(
            Method::PUT,
            &format!("/image/v2/images/{id}/file"),
            &[("X-Auth-Token", &c.token)],
            Box::new(std::io::Cursor::new(data.to_vec())),
            data.len() as u64,
            Box::new(|_| {}),
        )
        .unwrap();
    assert_eq!(up.status.as_u16(), 204);
    id
}

#[test]
fn thin_volumes_are_sparse_and_thick_ones_fully_allocated() {
    let d = Daemon::start();
    let c = admin(&d);
    let thin = c.available(json!({"size": 1, "name": "thin"}));
    let thick = c.available(json!({"size": 1, "name": "thick", "volume_type": "thick"}));
    assert_eq!(thin["volume_type"], "thin");
    assert_eq!(thick["volume_type"], "thick");
    assert_eq!(thin["size"], 1);
    let thin_file = volume_file(&d, thin["id"].as_str().unwrap());
    let thick_file = volume_file(&d, thick["id"].as_str().unwrap());
    assert_eq!(std::fs::metadata(&thin_file).unwrap().len(), GIB);
    assert_eq!(std::fs::metadata(&thick_file).unwrap().len(), GIB);
    assert!(allocated(&thin_file) < 1 << 20, "{}", allocated(&thin_file));
    assert!(allocated(&thick_file) >= GIB, "{}", allocated(&thick_file));
    // Types are listed, by id too; the default is thin.
    let types = c.api.get(&format!("{}/types", c.root)).body_json();
    let names: Vec<_> = types["volume_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].clone())
        .collect();
    assert_eq!(names, ["thin", "thick"]);
    let thick_type = &types["volume_types"][1];
    assert_eq!(thick_type["extra_specs"]["provisioning:type"], "thick");
    let by_id = c.api.get(&format!(
        "{}/types/{}",
        c.root,
        thick_type["id"].as_str().unwrap()
    ));
    assert_eq!(by_id.body_json()["volume_type"]["name"], "thick");
    let default = c.api.get(&format!("{}/types/default", c.root)).body_json();
    assert_eq!(default["volume_type"]["name"], "thin");
    // The same volume type given by id.
    let by_type_id = c.available(json!({"size": 1, "volume_type": thick_type["id"]}));
    assert_eq!(by_type_id["volume_type"], "thick");

    // Lists, filters, paging.
    assert_eq!(c.ids("volumes", "volumes").len(), 3);
    assert_eq!(
        c.ids("volumes/detail?name=thin", "volumes"),
        [thin["id"].as_str().unwrap()]
    );
    assert_eq!(c.ids("volumes/detail?status=error", "volumes").len(), 0);
    let page = c
        .api
        .get(&format!("{}/volumes?limit=2&sort=name:asc", c.root))
        .body_json();
    assert_eq!(page["volumes"].as_array().unwrap().len(), 2);
    let next = page["volumes_links"][0]["href"].as_str().unwrap();
    let next = next.strip_prefix(&format!("http://{}", d.addr)).unwrap();
    let rest = c.api.get(next).body_json();
    assert_eq!(rest["volumes"].as_array().unwrap().len(), 1);
    // Cinder's offset skips that many, after the marker when there is one.
    let all = c.ids("volumes?sort_key=name&sort_dir=asc", "volumes");
    assert_eq!(
        c.ids(
            "volumes?sort_key=name&sort_dir=asc&offset=1&limit=1",
            "volumes"
        ),
        all[1..2]
    );
    let after = format!(
        "volumes?sort_key=name&sort_dir=asc&marker={}&offset=1",
        all[0]
    );
    assert_eq!(c.ids(&after, "volumes"), all[2..]);
    fault(&c.api.get(&format!("{}/volumes?offset=-1", c.root)), 400);
    let summary = &page["volumes"][0];
    assert!(summary.get("status").is_none() && summary["links"].is_array());
}

#[test]
fn volumes_copy_images_and_snapshots() {
    let d = Daemon::start();
    let c = admin(&d);
    let data: Vec<u8> = (0..(3 << 20) + 512)
        .map(|n: u32| (n % 251) as u8 + 1)
        .collect();
    let img = image(&d, &c, &data);
    for ty in ["thin", "thick"] {
        let v = c.available(json!({"size": 1, "imageRef": img, "volume_type": ty}));
        assert_eq!(v["bootable"], "true");
        assert_eq!(v["volume_image_metadata"]["image_id"], img);
        let bytes = std::fs::read(volume_file(&d, v["id"].as_str().unwrap())).unwrap();
        assert_eq!(bytes.len() as u64, GIB);
        assert_eq!(&bytes[..data.len()], &data[..], "{ty}");
        assert!(bytes[data.len()..].iter().all(|b| *b == 0));
    }
    // Write into a volume as a guest would, snapshot it, make a volume of the snapshot.
    let v = c.available(json!({"size": 1, "imageRef": img}));
    let vid = v["id"].as_str().unwrap();
    std::fs::write(volume_file(&d, vid), {
        let mut b = std::fs::read(volume_file(&d, vid)).unwrap();
        b[..5].copy_from_slice(b"guest");
        b
    })
    .unwrap();
    let s = c.snapshot(vid, false);
    assert_eq!(s["size"], 1);
    assert_eq!(s["volume_id"], vid);
    assert_eq!(s["os-extended-snapshot-attributes:progress"], "100%");
    let sid = s["id"].as_str().unwrap();
    assert!(d
        .state_dir()
        .join("snapshots")
        .join(format!("{sid}.raw"))
        .is_file());
    let copy = c.available(json!({"snapshot_id": sid, "size": 2}));
    assert_eq!(copy["snapshot_id"], sid);
    let bytes = std::fs::read(volume_file(&d, copy["id"].as_str().unwrap())).unwrap();
    assert_eq!(bytes.len() as u64, 2 * GIB);
    assert_eq!(&bytes[..5], b"guest");
    assert_eq!(&bytes[5..data.len()], &data[5..]);
    assert_eq!(
        c.ids(&format!("snapshots?volume_id={vid}"), "snapshots"),
        [sid]
    );
    // A volume with a snapshot cannot be deleted; the snapshot can, then the volume.
    let msg = fault(&c.delete("volume", vid), 400);
    assert!(msg.contains("snapshot"), "{msg}");
    assert_eq!(c.delete("snapshot", sid).status.as_u16(), 202);
    assert_eq!(c.delete("volume", vid).status.as_u16(), 202);
    assert!(!volume_file(&d, vid).exists());
    assert!(files(&d, "snapshots").is_empty());
    // Too small for the image, or the snapshot: refused.
    let r = c.api.post(
        &format!("{}/volumes", c.root),
        &json!({"volume": {"size": 1, "imageRef": "6ce3b7a4-46f1-4f0a-9d7e-1b1a2c3d4e5f"}}),
    );
    fault(&r, 400);
}

#[test]
fn extend_and_delete_refusals() {
    let d = Daemon::start();
    let c = admin(&d);
    let v = c.available(json!({"size": 1, "volume_type": "thick"}));
    let vid = v["id"].as_str().unwrap();
    let action = format!("{}/volumes/{vid}/action", c.root);
    let r = c.api.post(&action, &json!({"os-extend": {"new_size": 3}}));
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    assert_eq!(c.show("volume", vid)["size"], 3);
    let f = volume_file(&d, vid);
    assert_eq!(std::fs::metadata(&f).unwrap().len(), 3 * GIB);
    assert!(allocated(&f) >= 3 * GIB);
    for (body, code) in [
        (json!({"os-extend": {"new_size": 3}}), 400),
        (json!({"os-extend": {"new_size": 2}}), 400),
        (json!({"os-extend": {"new_size": -1}}), 400),
        (json!({"os-extend": {"new_size": 99999999}}), 400),
        (json!({"os-extend": {"size": 4}}), 400),
        (json!({"os-reset_status": {"status": "error"}}), 400),
        (json!({}), 400),
    ] {
        fault(&c.api.post(&action, &body), code);
    }
    assert_eq!(c.show("volume", vid)["size"], 3);

    // Attached by Nova's code (here: the library on the same database file).
    let db = outpost_control::storage::Db::open(&d.state_dir().join("outpost.db")).unwrap();
    outpost_control::volume::attach(&db, vid, "server-1", Some("/dev/vdb")).unwrap();
    let shown = c.show("volume", vid);
    assert_eq!(shown["status"], "in-use");
    assert_eq!(shown["attachments"][0]["server_id"], "server-1");
    assert_eq!(shown["attachments"][0]["device"], "/dev/vdb");
    let msg = fault(&c.delete("volume", vid), 400);
    assert!(msg.contains("attached"), "{msg}");
    fault(
        &c.api.post(&action, &json!({"os-extend": {"new_size": 4}})),
        400,
    );
    // A snapshot of an attached volume needs force.
    let r = c.api.post(
        &format!("{}/snapshots", c.root),
        &json!({"snapshot": {"volume_id": vid}}),
    );
    fault(&r, 400);
    let s = c.snapshot(vid, true);
    outpost_control::volume::detach(&db, vid, "server-1").unwrap();
    assert_eq!(c.show("volume", vid)["status"], "available");
    assert_eq!(
        c.delete("snapshot", s["id"].as_str().unwrap())
            .status
            .as_u16(),
        202
    );
    assert_eq!(c.delete("volume", vid).status.as_u16(), 202);
    fault(&c.api.get(&format!("{}/volumes/{vid}", c.root)), 404);
    fault(&c.delete("volume", vid), 404);
}

#[test]
fn malformed_input_is_refused_with_nothing_made() {
    let d = Daemon::start();
    let c = admin(&d);
    let vols = format!("{}/volumes", c.root);
    for body in [
        json!({"volume": {"size": 0}}),
        json!({"volume": {"size": -1}}),
        json!({"volume": {"size": 4097}}),
        json!({"volume": {"size": 9_223_372_036_854_775_807i64}}),
        json!({"volume": {"size": "abc"}}),
        json!({"volume": {"size": 1.5}}),
        json!({"volume": {}}),
        json!({"volume": {"size": 1, "bogus": 1}}),
        json!({"volume": {"size": 1, "multiattach": true}}),
        json!({"volume": {"size": 1, "availability_zone": "moon"}}),
        json!({"volume": {"size": 1, "name": "x".repeat(256)}}),
        json!({"volume": {"size": 1, "metadata": {"k": 5}}}),
        json!({"volume": {"size": 1, "imageRef": "x", "snapshot_id": "y"}}),
        json!({"size": 1}),
        json!([]),
    ] {
        fault(&c.api.post(&vols, &body), 400);
    }
    fault(
        &c.api.post(
            &vols,
            &json!({"volume": {"size": 1, "volume_type": "gold"}}),
        ),
        404,
    );
    fault(
        &c.api.post(
            &vols,
            &json!({"volume": {"size": 1, "snapshot_id": "nope"}}),
        ),
        404,
    );
    let snaps = format!("{}/snapshots", c.root);
    fault(&c.api.post(&snaps, &json!({"snapshot": {}})), 400);
    fault(
        &c.api
            .post(&snaps, &json!({"snapshot": {"volume_id": "nope"}})),
        404,
    );
    assert!(c.ids("volumes/detail", "volumes").is_empty());
    assert!(c.ids("snapshots", "snapshots").is_empty());
    assert!(files(&d, "volumes").is_empty());
    for q in ["?limit=-1", "?limit=x", "?sort_key=bogus", "?sort_dir=up"] {
        fault(&c.api.get(&format!("{vols}{q}")), 400);
    }
    // What names a volume that is not there is a 404 before anything else is looked at: a
    // clone's source (cloning is not served), any action, served or not.
    fault(
        &c.api
            .post(&vols, &json!({"volume": {"size": 1, "source_volid": "x"}})),
        404,
    );
    for action in [
        json!({"os-reserve": {}}),
        json!({"os-extend": {"new_size": 2}}),
    ] {
        fault(&c.api.post(&format!("{vols}/nope/action"), &action), 404);
    }
    // A marker naming nothing is Cinder's MarkerNotFound, a 404.
    for list in [&vols, &snaps] {
        let m = fault(&c.api.get(&format!("{list}?marker=nope")), 404);
        assert_eq!(m, "Marker nope could not be found.");
    }
    // A snapshot of no volume (null volume_id) names a volume that is not there, as Cinder
    // answers it.
    fault(
        &c.api
            .post(&snaps, &json!({"snapshot": {"volume_id": null}})),
        404,
    );
    // Another project's id in the URL is refused, as Cinder does.
    let other = c.api.get("/volume/v3/not-my-project/volumes");
    fault(&other, 400);
    // Microversions: 3.0 only.
    let r = c.api.send_raw_headers(
        Method::GET,
        &vols,
        None,
        &[("OpenStack-API-Version", "volume 3.27")],
    );
    fault(&r, 406);
}

#[test]
fn projects_see_their_own_volumes() {
    let d = Daemon::start();
    let admin = admin(&d);
    d.make_member("alice", "alice-pw", "demo");
    d.make_member("bob", "bob-pw", "other");
    let alice = cinder(&d, "alice", "alice-pw", "demo");
    let bob = cinder(&d, "bob", "bob-pw", "other");
    let v = alice.available(json!({"size": 1, "name": "mine"}));
    let vid = v["id"].as_str().unwrap();
    assert!(bob.ids("volumes", "volumes").is_empty());
    fault(&bob.api.get(&format!("{}/volumes/{vid}", bob.root)), 404);
    fault(&bob.delete("volume", vid), 404);
    // Admins see it with all_tenants.
    assert!(admin.ids("volumes", "volumes").is_empty());
    assert_eq!(admin.ids("volumes?all_tenants=1", "volumes"), [vid]);
    assert_eq!(alice.ids("volumes", "volumes"), [vid]);
    // Renaming.
    let r = alice.api.put(
        &format!("{}/volumes/{vid}", alice.root),
        Some(&json!({"volume": {"name": "renamed", "description": "d"}})),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.body_json()["volume"]["name"], "renamed");
}

/// Cinder's volume metadata: merged by POST, replaced by PUT, one key at a time under
/// `/metadata/{key}`; shown on the volume; a reader reads but does not write; another
/// project's volume is not there.
#[test]
fn volume_metadata_is_merged_replaced_and_changed_by_key() {
    let d = Daemon::start();
    let (project, _) = d.make_member("alice", "alice-pw", "demo");
    let alice = cinder(&d, "alice", "alice-pw", "demo");
    let v = alice.available(json!({"size": 1, "metadata": {"a": "1"}}));
    let meta = format!(
        "{}/volumes/{}/metadata",
        alice.root,
        v["id"].as_str().unwrap()
    );
    let body = |r: ApiResponse| {
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
        r.body_json()
    };
    let merged = body(
        alice
            .api
            .post(&meta, &json!({"metadata": {"b": "2", "a": "one"}})),
    );
    assert_eq!(merged["metadata"], json!({"a": "one", "b": "2"}));
    assert_eq!(body(alice.api.get(&meta))["metadata"], merged["metadata"]);
    let replaced = body(alice.api.put(&meta, Some(&json!({"metadata": {"c": "3"}}))));
    assert_eq!(replaced["metadata"], json!({"c": "3"}));
    let one = body(
        alice
            .api
            .put(&format!("{meta}/d"), Some(&json!({"meta": {"d": "4"}}))),
    );
    assert_eq!(one["meta"], json!({"d": "4"}));
    assert_eq!(
        body(alice.api.get(&format!("{meta}/d")))["meta"],
        json!({"d": "4"})
    );
    let shown = alice.show("volume", v["id"].as_str().unwrap());
    assert_eq!(shown["metadata"], json!({"c": "3", "d": "4"}), "{shown}");
    // The body must name exactly the URL's key.
    fault(
        &alice
            .api
            .put(&format!("{meta}/d"), Some(&json!({"meta": {"e": "5"}}))),
        400,
    );
    fault(
        &alice.api.put(
            &format!("{meta}/d"),
            Some(&json!({"meta": {"d": "5", "e": "5"}})),
        ),
        400,
    );
    fault(&alice.api.post(&meta, &json!({"metadata": {"": "x"}})), 400);
    let r = alice.api.delete(&format!("{meta}/c"));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    fault(&alice.api.delete(&format!("{meta}/c")), 404);
    fault(&alice.api.get(&format!("{meta}/c")), 404);
    assert_eq!(body(alice.api.get(&meta))["metadata"], json!({"d": "4"}));
    // A reader of the project reads and may not write.
    let (_, reader) = d.make_member("rita", "rita-pw", "rita-home");
    let api = d.unix();
    let roles = api.get("/identity/v3/roles?name=reader").body_json();
    let rid = roles["roles"][0]["id"].as_str().unwrap();
    let g = api.put(
        &format!("/identity/v3/projects/{project}/users/{reader}/roles/{rid}"),
        None,
    );
    assert_eq!(g.status.as_u16(), 204, "{}", g.text());
    let rita = cinder(&d, "rita", "rita-pw", "demo");
    assert_eq!(body(rita.api.get(&meta))["metadata"], json!({"d": "4"}));
    fault(&rita.api.post(&meta, &json!({"metadata": {"x": "y"}})), 403);
    // Another project sees no such volume.
    d.make_member("bob", "bob-pw", "other");
    let bob = cinder(&d, "bob", "bob-pw", "other");
    let theirs = meta.replace(&alice.root, &bob.root);
    fault(&bob.api.get(&theirs), 404);
    fault(
        &bob.api.post(&theirs, &json!({"metadata": {"x": "y"}})),
        404,
    );
}

/// What a Cinder client asks first: the extensions served, and the zones a volume can be made
/// in (a box alone has one, which volumes are created in and show).
#[test]
fn extensions_and_zones_say_what_is_served() {
    let d = Daemon::start();
    d.make_member("alice", "alice-pw", "demo");
    let alice = cinder(&d, "alice", "alice-pw", "demo");
    let r = alice.api.get(&format!("{}/extensions", alice.root));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let aliases: Vec<String> = r.body_json()["extensions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["alias"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        aliases.contains(&"os-vol-tenant-attr".to_owned()),
        "{aliases:?}"
    );
    // Volume image metadata's set/unset actions are not served, so it is not claimed.
    assert!(
        !aliases.contains(&"os-vol-image-meta".to_owned()),
        "{aliases:?}"
    );
    let r = alice
        .api
        .get(&format!("{}/os-availability-zone", alice.root));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let zones = r.body_json()["availabilityZoneInfo"].clone();
    assert_eq!(zones.as_array().unwrap().len(), 1, "{zones}");
    let zone = zones[0]["zoneName"].as_str().unwrap();
    assert_eq!(zones[0]["zoneState"]["available"], true);
    let v = alice.available(json!({"size": 1, "availability_zone": zone}));
    assert_eq!(v["availability_zone"], zone);
    // Another project's URL is refused here too.
    fault(&alice.api.get("/volume/v3/elsewhere/extensions"), 400);
}

/// Cinder's views per role: the owning project and the home host only for admins (its
/// `volume_tenant_attribute` and `volume_host_attribute` policies), `volume_image_metadata`
/// for any reader of the project, and all three only where Cinder's extensions add them, in
/// show and detail (create and update answer the volume's own fields).
#[test]
fn volume_views_follow_cinders_policy_per_role() {
    let d = Daemon::start();
    let admin = admin(&d);
    let (project, _) = d.make_member("alice", "alice-pw", "demo");
    let alice = cinder(&d, "alice", "alice-pw", "demo");
    let img = image(&d, &alice, &[7u8; 4096]);
    let created = alice.create(json!({"size": 1, "imageRef": img, "name": "boot"}));
    for hidden in [
        "os-vol-tenant-attr:tenant_id",
        "os-vol-host-attr:host",
        "volume_image_metadata",
    ] {
        assert!(
            created.get(hidden).is_none(),
            "create shows {hidden}: {created}"
        );
    }
    let vid = created["id"].as_str().unwrap();
    let mine = alice.settled("volume", vid);
    assert_eq!(mine["volume_image_metadata"]["image_id"], img, "{mine}");
    assert!(mine.get("os-vol-tenant-attr:tenant_id").is_none(), "{mine}");
    assert!(mine.get("os-vol-host-attr:host").is_none(), "{mine}");
    let r = alice.api.get(&format!("{}/volumes/detail", alice.root));
    let listed = &r.body_json()["volumes"][0];
    assert_eq!(listed["volume_image_metadata"]["image_id"], img, "{listed}");
    assert!(
        listed.get("os-vol-tenant-attr:tenant_id").is_none(),
        "{listed}"
    );
    // The admin sees whose it is, in the detail list and (scoped to it) in show.
    let r = admin
        .api
        .get(&format!("{}/volumes/detail?all_tenants=1", admin.root));
    let seen = &r.body_json()["volumes"][0];
    assert_eq!(
        seen["os-vol-tenant-attr:tenant_id"],
        project.as_str(),
        "{seen}"
    );
    assert!(seen["os-vol-host-attr:host"].is_string(), "{seen}");
    assert_eq!(seen["volume_image_metadata"]["image_id"], img, "{seen}");
    // A volume of no image has no image metadata to show, even to an admin.
    let blank = admin.available(json!({"size": 1}));
    assert!(blank.get("volume_image_metadata").is_none(), "{blank}");
    assert_eq!(
        blank["os-vol-tenant-attr:tenant_id"],
        admin.root.rsplit('/').next().unwrap()
    );
    // Update answers like create.
    let r = alice.api.put(
        &format!("{}/volumes/{vid}", alice.root),
        Some(&json!({"volume": {"name": "renamed"}})),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert!(r.body_json()["volume"]
        .get("volume_image_metadata")
        .is_none());
}

#[test]
fn kill_9_keeps_volumes_and_settles_interrupted_work() {
    let mut d = Daemon::start();
    let c = admin(&d);
    let keep = c.available(json!({"size": 1, "name": "keep"}));
    let done = c.available(json!({"size": 1, "name": "done"}));
    let lost = c.available(json!({"size": 1, "name": "lost"}));
    let ids: Vec<String> = [&keep, &done, &lost]
        .iter()
        .map(|v| v["id"].as_str().unwrap().to_owned())
        .collect();
    d.kill9();
    // What a crash mid-copy leaves: records still `creating`, one copy finished (its file
    // published), one not (no file, a half-written partial file instead).
    let db = outpost_control::storage::Db::open(&d.state_dir().join("outpost.db")).unwrap();
    for id in &ids[1..] {
        use outpost_control::volume::{VolumeRecordStore, VolumeStatus};
        db.set_volume_status_if(id, &[VolumeStatus::Available], VolumeStatus::Creating, None)
            .unwrap();
    }
    drop(db);
    std::fs::remove_file(volume_file(&d, &ids[2])).unwrap();
    let partial = d.state_dir().join("volumes/.partial");
    std::fs::write(partial.join(format!("{}.1234", ids[2])), b"half a copy").unwrap();

    d.spawn();
    let c = admin(&d);
    assert_eq!(c.show("volume", &ids[0])["status"], "available");
    assert_eq!(c.show("volume", &ids[1])["status"], "available");
    let failed = c.show("volume", &ids[2]);
    assert_eq!(failed["status"], "error");
    assert!(
        failed["outpost_fault"]
            .as_str()
            .unwrap()
            .contains("restart"),
        "{failed}"
    );
    assert_eq!(std::fs::read_dir(&partial).unwrap().count(), 0);
    assert_eq!(c.delete("volume", &ids[2]).status.as_u16(), 202);
    assert_eq!(c.ids("volumes", "volumes").len(), 2);
}
