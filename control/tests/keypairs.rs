//! Nova key pairs over the real daemon: generate and import, Nova's views and status codes by
//! microversion (2.1, 2.2, 2.10, 2.35), per-user scoping with an admin's `user_id`, paging,
//! malformed input refused, and a server's `key_name` (with `adminPass` in the create
//! answer). The servers made here are never booted: the daemon's monitor binary does not
//! exist, so each build fails at once (tests/servers.rs boots real ones).

mod common;

use common::{Api, Daemon, Text, ADMIN_PASSWORD};
use serde_json::{json, Value};

const KEYPAIRS: &str = "/compute/v2.1/os-keypairs";
/// Made with ssh-keygen; its fingerprint is what `ssh-keygen -l -E md5` printed.
const ED25519: &str = "ssh-ed25519 \
    AAAAC3NzaC1lZDI1NTE5AAAAIPgAyOn7mqK6t40d1vomWpQFLwog8t6nxabIP6+Mwz9S bob@desk";
const ED25519_MD5: &str = "dd:c7:60:b3:69:06:5c:f3:52:48:e0:d7:98:93:4a:7f";

/// A daemon whose servers' builds fail at once (no monitor binary), so no guest boots.
fn daemon() -> (Daemon, tempfile::TempDir) {
    let assets = tempfile::tempdir().unwrap();
    let rootfs = assets.path().join("rootfs.ext4");
    std::fs::write(&rootfs, [0u8; 4096]).unwrap();
    let config = format!(
        "[compute]\nmonitor = \"/nonexistent/outpost-vmm\"\n[guest]\nrootfs = {rootfs:?}\n"
    );
    (
        Daemon::start_with(Some(&config), Some(ADMIN_PASSWORD)),
        assets,
    )
}

fn as_user(d: &Daemon, user: &str, password: &str, project: &str, version: &str) -> Api {
    let t = d.login(user, password, Some(project));
    d.tcp(Some(&t))
        .with_header("OpenStack-API-Version", &format!("compute {version}"))
}

fn fault(r: &outpost_control::client::ApiResponse, code: u16) -> String {
    assert_eq!(r.status.as_u16(), code, "{}", r.text());
    let b = r.body_json();
    let (_, inner) = b.as_object().unwrap().iter().next().unwrap();
    assert_eq!(inner["code"], code, "{b}");
    inner["message"].as_str().unwrap().to_owned()
}

fn names(v: &Value) -> Vec<String> {
    v["keypairs"]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|k| k["keypair"]["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn generate_import_show_list_delete_by_microversion() {
    let (d, _assets) = daemon();
    let old = as_user(&d, "admin", ADMIN_PASSWORD, "admin", "2.1");
    let new = as_user(&d, "admin", ADMIN_PASSWORD, "admin", "2.75");

    // 2.1: 200, no `type`, and `type` in the body is refused.
    let r = old.post(KEYPAIRS, &json!({"keypair": {"name": "gen"}}));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let gen = r.body_json()["keypair"].clone();
    assert!(gen.get("type").is_none(), "{gen}");
    let private = gen["private_key"].as_str().unwrap();
    assert!(
        private.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"),
        "{private}"
    );
    assert!(gen["public_key"]
        .as_str()
        .unwrap()
        .starts_with("ssh-ed25519 "));
    assert_eq!(gen["fingerprint"].as_str().unwrap().split(':').count(), 16);
    let r = old.post(KEYPAIRS, &json!({"keypair": {"name": "t", "type": "ssh"}}));
    fault(&r, 400);

    // 2.2+: 201 with `type`; an import keeps the key and gets Nova's fingerprint.
    let r = new.post(
        KEYPAIRS,
        &json!({"keypair": {"name": "imported", "public_key": ED25519, "type": "ssh"}}),
    );
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let imported = r.body_json()["keypair"].clone();
    assert_eq!(imported["type"], "ssh");
    assert_eq!(imported["fingerprint"], ED25519_MD5);
    assert!(imported.get("private_key").is_none(), "{imported}");

    let shown = new.get(&format!("{KEYPAIRS}/imported")).body_json()["keypair"].clone();
    assert_eq!(shown["public_key"], ED25519);
    assert_eq!(shown["fingerprint"], ED25519_MD5);
    assert_eq!(shown["type"], "ssh");
    assert_eq!(shown["deleted"], false);
    assert!(
        shown["id"].is_i64() && shown["user_id"] == imported["user_id"],
        "{shown}"
    );
    // The generated pair's private key is nowhere to be read again.
    let again = new.get(&format!("{KEYPAIRS}/gen")).body_json()["keypair"].clone();
    assert!(again.get("private_key").is_none());
    assert_eq!(again["public_key"], gen["public_key"]);

    let list = new.get(KEYPAIRS).body_json();
    assert_eq!(names(&list), ["gen", "imported"]);
    assert_eq!(list["keypairs"][1]["keypair"]["fingerprint"], ED25519_MD5);

    // Duplicates, bad names, bad keys, x509.
    let r = new.post(KEYPAIRS, &json!({"keypair": {"name": "gen"}}));
    assert!(fault(&r, 409).contains("already exists"));
    for body in [
        json!({"keypair": {"name": ""}}),
        json!({"keypair": {"name": "key_/.\\@:"}}),
        json!({"keypair": {"name": "k".repeat(256)}}),
        json!({"keypair": {"name": "bad", "public_key": "ssh-rsa JUNK nova@ubuntu"}}),
        json!({"keypair": {"name": "cert", "type": "x509"}}),
        json!({"keypair": {"name": "odd", "type": "pgp"}}),
    ] {
        fault(&new.post(KEYPAIRS, &body), 400);
    }
    assert_eq!(names(&new.get(KEYPAIRS).body_json()).len(), 2);

    // Delete: 202 before 2.2, 204 from it; then 404.
    assert_eq!(old.delete(&format!("{KEYPAIRS}/gen")).status.as_u16(), 202);
    assert_eq!(
        new.delete(&format!("{KEYPAIRS}/imported")).status.as_u16(),
        204
    );
    let msg = fault(&new.get(&format!("{KEYPAIRS}/imported")), 404);
    assert!(msg.contains("imported"), "{msg}");
    fault(&new.delete(&format!("{KEYPAIRS}/imported")), 404);
}

#[test]
fn users_see_only_their_own_pairs_and_admins_name_others_from_2_10() {
    let (d, _assets) = daemon();
    let (_, alice_id) = d.make_member("alice", "alice-secret", "demo");
    let alice = as_user(&d, "alice", "alice-secret", "demo", "2.10");
    let admin = as_user(&d, "admin", ADMIN_PASSWORD, "admin", "2.10");
    let mine = json!({"keypair": {"name": "mine", "public_key": ED25519}});
    assert_eq!(alice.post(KEYPAIRS, &mine).status.as_u16(), 201);
    // The admin's own list does not show alice's pair; the same name is free for the admin.
    assert!(names(&admin.get(KEYPAIRS).body_json()).is_empty());
    fault(&admin.get(&format!("{KEYPAIRS}/mine")), 404);
    assert_eq!(
        admin
            .post(KEYPAIRS, &json!({"keypair": {"name": "mine"}}))
            .status
            .as_u16(),
        201
    );
    let admin_fp =
        admin.get(&format!("{KEYPAIRS}/mine")).body_json()["keypair"]["fingerprint"].clone();
    assert_ne!(admin_fp, ED25519_MD5);

    // An admin names alice; alice cannot name the admin.
    let hers = format!("{KEYPAIRS}?user_id={alice_id}");
    assert_eq!(names(&admin.get(&hers).body_json()), ["mine"]);
    let shown = admin
        .get(&format!("{KEYPAIRS}/mine?user_id={alice_id}"))
        .body_json();
    assert_eq!(shown["keypair"]["fingerprint"], ED25519_MD5);
    let given = json!({"keypair": {"name": "given", "user_id": alice_id}});
    assert_eq!(admin.post(KEYPAIRS, &given).status.as_u16(), 201);
    assert_eq!(names(&alice.get(KEYPAIRS).body_json()), ["given", "mine"]);
    let admin_id = shown_user(&admin);
    fault(&alice.get(&format!("{KEYPAIRS}?user_id={admin_id}")), 403);
    fault(
        &alice.get(&format!("{KEYPAIRS}/mine?user_id={admin_id}")),
        403,
    );
    fault(
        &alice.delete(&format!("{KEYPAIRS}/mine?user_id={admin_id}")),
        403,
    );
    let theirs = json!({"keypair": {"name": "planted", "user_id": admin_id}});
    fault(&alice.post(KEYPAIRS, &theirs), 403);
    // Before 2.10 the body's user_id is not part of the schema.
    let old_admin = as_user(&d, "admin", ADMIN_PASSWORD, "admin", "2.9");
    fault(&old_admin.post(KEYPAIRS, &given), 400);
    assert_eq!(
        admin
            .delete(&format!("{KEYPAIRS}/given?user_id={alice_id}"))
            .status
            .as_u16(),
        204
    );
    assert_eq!(names(&alice.get(KEYPAIRS).body_json()), ["mine"]);
}

/// The admin's user id, from its own pair.
fn shown_user(admin: &Api) -> String {
    let k = admin.get(&format!("{KEYPAIRS}/mine")).body_json();
    k["keypair"]["user_id"].as_str().unwrap().to_owned()
}

#[test]
fn limit_and_marker_page_from_2_35() {
    let (d, _assets) = daemon();
    let api = as_user(&d, "admin", ADMIN_PASSWORD, "admin", "2.35");
    for name in ["c", "a", "d", "b"] {
        let r = api.post(
            KEYPAIRS,
            &json!({"keypair": {"name": name, "public_key": ED25519}}),
        );
        assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    }
    let first = api.get(&format!("{KEYPAIRS}?limit=2")).body_json();
    assert_eq!(names(&first), ["a", "b"]);
    let next = first["keypairs_links"][0]["href"].as_str().unwrap();
    assert!(next.ends_with("os-keypairs?limit=2&marker=b"), "{next}");
    let second = api.get(&format!("{KEYPAIRS}?limit=2&marker=b")).body_json();
    assert_eq!(names(&second), ["c", "d"]);
    let rest = api.get(&format!("{KEYPAIRS}?marker=d")).body_json();
    assert!(
        names(&rest).is_empty() && rest.get("keypairs_links").is_none(),
        "{rest}"
    );
    fault(&api.get(&format!("{KEYPAIRS}?marker=zz")), 400);
    fault(&api.get(&format!("{KEYPAIRS}?limit=-1")), 400);
    // Before 2.35 the paging parameters are not read.
    let old = as_user(&d, "admin", ADMIN_PASSWORD, "admin", "2.34");
    assert_eq!(
        names(&old.get(&format!("{KEYPAIRS}?limit=1")).body_json()).len(),
        4
    );
}

#[test]
fn a_server_names_one_of_its_creator_s_pairs_and_gets_an_admin_password() {
    let (d, _assets) = daemon();
    d.make_member("alice", "alice-secret", "demo");
    let alice = as_user(&d, "alice", "alice-secret", "demo", "2.37");
    let admin = as_user(&d, "admin", ADMIN_PASSWORD, "admin", "2.37");
    let f = admin.post(
        "/compute/v2.1/flavors",
        &json!({"flavor": {"name": "tiny", "id": "1", "ram": 128, "vcpus": 1, "disk": 1}}),
    );
    assert_eq!(f.status.as_u16(), 200, "{}", f.text());
    let key = json!({"keypair": {"name": "alice-key", "public_key": ED25519}});
    assert_eq!(alice.post(KEYPAIRS, &key).status.as_u16(), 201);
    let admins = json!({"keypair": {"name": "admin-key"}});
    assert_eq!(admin.post(KEYPAIRS, &admins).status.as_u16(), 201);
    let server = |key_name: &str, pass: Option<&str>| {
        let mut s = json!({"name": "vm", "flavorRef": "1", "imageRef": "outpost-guest",
                           "networks": "none",
                           "key_name": key_name});
        if let Some(p) = pass {
            s["adminPass"] = json!(p);
        }
        alice.post("/compute/v2.1/servers", &json!({"server": s}))
    };
    // Unknown, and another user's: 400, and no server is recorded.
    for name in ["nokey", "admin-key"] {
        let msg = fault(&server(name, None), 400);
        assert!(msg.contains(name), "{msg}");
    }
    let listed = alice.get("/compute/v2.1/servers").body_json();
    assert_eq!(listed["servers"].as_array().unwrap().len(), 0, "{listed}");

    let r = server("alice-key", None);
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let created = r.body_json()["server"].clone();
    let generated = created["adminPass"].as_str().unwrap().to_owned();
    assert!(generated.len() >= 12, "{generated}");
    let id = created["id"].as_str().unwrap();
    let shown = alice
        .get(&format!("/compute/v2.1/servers/{id}"))
        .body_json();
    assert_eq!(shown["server"]["key_name"], "alice-key");
    assert!(
        shown["server"].get("adminPass").is_none(),
        "shown once, at create"
    );
    // The server keeps the key it was made with (Nova's key_data), even once the pair is
    // gone: that is the key its guest is to be given.
    let db = rusqlite::Connection::open(d.state_dir().join(outpost_control::config::DATABASE_NAME))
        .unwrap();
    let key_data: String = db
        .query_row("SELECT key_data FROM servers WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(key_data, ED25519);
    // The password asked for is the one answered; another create generates another.
    let r = server("alice-key", Some("s3cret-Pass"));
    assert_eq!(r.body_json()["server"]["adminPass"], "s3cret-Pass");
    let r = server("alice-key", None);
    assert_ne!(r.body_json()["server"]["adminPass"], json!(generated));
    assert_eq!(
        alice
            .delete(&format!("{KEYPAIRS}/alice-key"))
            .status
            .as_u16(),
        204
    );
    let shown = alice
        .get(&format!("/compute/v2.1/servers/{id}"))
        .body_json();
    assert_eq!(shown["server"]["key_name"], "alice-key");
    // The password is kept with the server for its metadata (`admin_pass`, issue 18), but no
    // view of the API shows it again.
    assert!(shown["server"].get("adminPass").is_none(), "{shown}");
    assert!(!shown.to_string().contains(generated.as_str()), "{shown}");
    let listed = alice.get("/compute/v2.1/servers/detail").body_json();
    assert!(!listed.to_string().contains(generated.as_str()), "{listed}");
}
