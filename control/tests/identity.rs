//! Keystone over TCP: token issue, validate, revoke and expiry; the catalog; 401 shapes;
//! what a member sees of projects and users compared with an admin.

mod common;

use common::{auth_body, Daemon, Text, ADMIN_PASSWORD};
use hyper::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn validate(d: &Daemon, caller: &str, subject: &str) -> outpost_control::client::ApiResponse {
    d.tcp(Some(caller)).send_raw_headers(
        Method::GET,
        "/identity/v3/auth/tokens",
        None,
        &[("X-Subject-Token", subject)],
    )
}

fn assert_keystone_error(r: &outpost_control::client::ApiResponse, code: u16) {
    assert_eq!(r.status.as_u16(), code, "{}", r.text());
    let e = &r.body_json()["error"];
    assert_eq!(e["code"], code);
    assert!(e["title"].is_string() && e["message"].is_string(), "{e}");
}

#[test]
fn issued_token_has_keystones_shape_and_catalog() {
    let d = Daemon::start();
    let r = d.tcp(None).post(
        "/identity/v3/auth/tokens",
        &auth_body("admin", ADMIN_PASSWORD, Some("admin")),
    );
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let value = r.header("x-subject-token").unwrap();
    assert_eq!(value.len(), 43);
    let t = &r.body_json()["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["user"]["name"], "admin");
    assert_eq!(
        t["user"]["domain"],
        json!({"id": "default", "name": "Default"})
    );
    assert_eq!(t["project"]["name"], "admin");
    assert_eq!(t["project"]["domain"]["id"], "default");
    assert!(t["expires_at"].as_str().unwrap().ends_with('Z'));
    assert!(t["issued_at"].as_str().unwrap() < t["expires_at"].as_str().unwrap());
    assert_eq!(t["audit_ids"].as_array().unwrap().len(), 1);
    let pid = t["project"]["id"].as_str().unwrap();
    let base = format!("http://{}", d.addr);
    let catalog = t["catalog"].as_array().unwrap();
    let url_of = |ty: &str| -> Vec<(String, String)> {
        let svc = catalog
            .iter()
            .find(|s| s["type"] == ty)
            .unwrap_or_else(|| panic!("{ty}"));
        svc["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                assert_eq!(e["region"], "RegionOne");
                (
                    e["interface"].as_str().unwrap().to_owned(),
                    e["url"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    for (ty, path) in [
        ("identity", "/identity".to_owned()),
        ("compute", "/compute/v2.1".to_owned()),
        ("image", "/image".to_owned()),
        ("block-storage", format!("/volume/v3/{pid}")),
        ("volumev3", format!("/volume/v3/{pid}")),
        ("network", "/network".to_owned()),
    ] {
        let eps = url_of(ty);
        let interfaces: Vec<_> = eps.iter().map(|(i, _)| i.as_str()).collect();
        assert_eq!(interfaces, ["public", "internal", "admin"], "{ty}");
        assert!(
            eps.iter().all(|(_, u)| *u == format!("{base}{path}")),
            "{ty}: {eps:?}"
        );
    }
    // Every catalog URL answers discovery (or, for Cinder's project URL, its service's 404).
    let compute = d.tcp(None).get("/compute/v2.1/");
    assert_eq!(compute.status.as_u16(), 200);
    // ?nocatalog leaves it out.
    let r = d.tcp(None).post(
        "/identity/v3/auth/tokens?nocatalog",
        &auth_body("admin", ADMIN_PASSWORD, Some("admin")),
    );
    assert!(r.body_json()["token"].get("catalog").is_none());
}

#[test]
fn validate_revoke_and_unauthorized_shapes() {
    let d = Daemon::start();
    let admin = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    let other = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    let v = validate(&d, &admin, &other);
    assert_eq!(v.status.as_u16(), 200, "{}", v.text());
    assert_eq!(v.header("x-subject-token"), Some(other.as_str()));
    assert_eq!(v.body_json()["token"]["user"]["name"], "admin");

    let revoke = d.tcp(Some(&admin)).send_raw_headers(
        Method::DELETE,
        "/identity/v3/auth/tokens",
        None,
        &[("X-Subject-Token", &other)],
    );
    assert_eq!(revoke.status.as_u16(), 204, "{}", revoke.text());
    // The revoked token no longer authenticates, and validating it is Keystone's 404.
    assert_keystone_error(&d.tcp(Some(&other)).get("/compute/v2.1/flavors"), 401);
    assert_keystone_error(&validate(&d, &admin, &other), 404);

    // No token, a made-up token, a wrong password: 401 in Keystone's shape everywhere.
    let none = d.tcp(None).get("/compute/v2.1/flavors");
    assert_keystone_error(&none, 401);
    assert!(none
        .header("www-authenticate")
        .unwrap()
        .starts_with("Keystone uri="));
    assert_keystone_error(&d.tcp(Some("bogus")).get("/identity/v3/projects"), 401);
    let wrong = d.tcp(None).post(
        "/identity/v3/auth/tokens",
        &auth_body("admin", "nope", Some("admin")),
    );
    assert_keystone_error(&wrong, 401);
    let nobody = d
        .tcp(None)
        .post("/identity/v3/auth/tokens", &auth_body("nobody", "x", None));
    assert_keystone_error(&nobody, 401);
    // Version documents and login need no token.
    assert_eq!(d.tcp(None).get("/identity/v3").status.as_u16(), 200);
}

#[test]
fn tokens_expire_after_the_configured_ttl() {
    let d = Daemon::start_with(
        Some("[identity]\ntoken_ttl_secs = 1\n"),
        Some(ADMIN_PASSWORD),
    );
    let token = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    let api = d.tcp(Some(&token));
    assert_eq!(api.get("/compute/v2.1/flavors").status.as_u16(), 200);
    std::thread::sleep(Duration::from_millis(1300));
    assert_keystone_error(&api.get("/compute/v2.1/flavors"), 401);
}

#[test]
fn unscoped_tokens_carry_no_roles_and_cannot_use_project_services() {
    let d = Daemon::start();
    let r = d.tcp(None).post(
        "/identity/v3/auth/tokens",
        &auth_body("admin", ADMIN_PASSWORD, None),
    );
    assert_eq!(r.status.as_u16(), 201);
    let t = &r.body_json()["token"];
    assert!(t.get("project").is_none() && t.get("catalog").is_none() && t.get("roles").is_none());
    let token = r.header("x-subject-token").unwrap();
    assert_keystone_error(&d.tcp(Some(token)).get("/compute/v2.1/flavors"), 401);
    assert_keystone_error(&d.tcp(Some(token)).get("/identity/v3/users"), 403);
    // Its bearer may still validate it.
    assert_eq!(validate(&d, token, token).status.as_u16(), 200);
}

fn names(v: &Value, key: &str) -> Vec<String> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("{v}"))
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn members_see_their_own_project_admins_see_all() {
    let d = Daemon::start();
    let (demo_id, alice_id) = d.make_member("alice", "alice-pw", "demo");
    d.make_member("bob", "bob-pw", "other");
    let alice = d.tcp(Some(&d.login("alice", "alice-pw", Some("demo"))));
    let admin = d.tcp(Some(&d.login("admin", ADMIN_PASSWORD, Some("admin"))));

    assert_eq!(
        names(&alice.get("/identity/v3/projects").body_json(), "projects"),
        ["demo"]
    );
    assert_eq!(
        names(&admin.get("/identity/v3/projects").body_json(), "projects"),
        ["admin", "demo", "other"]
    );
    assert_eq!(
        names(&alice.get("/identity/v3/users").body_json(), "users"),
        ["alice"]
    );
    assert_eq!(
        names(&admin.get("/identity/v3/users").body_json(), "users"),
        ["admin", "alice", "bob"]
    );
    // Filters by name, as openstackclient uses to find by name.
    assert_eq!(
        names(
            &admin.get("/identity/v3/users?name=bob").body_json(),
            "users"
        ),
        ["bob"]
    );
    let own = alice.get(&format!("/identity/v3/projects/{demo_id}"));
    assert_eq!(own.status.as_u16(), 200);
    let admin_pid = admin.get("/identity/v3/projects?name=admin").body_json()["projects"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_keystone_error(
        &alice.get(&format!("/identity/v3/projects/{admin_pid}")),
        403,
    );
    assert_eq!(
        alice
            .get(&format!("/identity/v3/users/{alice_id}"))
            .status
            .as_u16(),
        200
    );
    // Members change nothing.
    let p = alice.post(
        "/identity/v3/projects",
        &json!({"project": {"name": "mine"}}),
    );
    assert_keystone_error(&p, 403);
    assert_keystone_error(&alice.get("/identity/v3/roles"), 403);
    let u = alice.post("/identity/v3/users", &json!({"user": {"name": "eve"}}));
    assert_keystone_error(&u, 403);
    // A member's token is refused by a project it holds no role on.
    let r = d.tcp(None).post(
        "/identity/v3/auth/tokens",
        &auth_body("alice", "alice-pw", Some("other")),
    );
    assert_keystone_error(&r, 401);
}

#[test]
fn directory_bodies_are_checked() {
    let d = Daemon::start();
    let api = d.unix();
    let cases = [
        json!({"project": {"name": "x", "colour": "red"}}),
        json!({"project": {"name": 5}}),
        json!({"project": {}}),
        json!({"project": {"name": "x", "domain_id": "elsewhere"}}),
        json!({"project": {"name": ""}}),
    ];
    for body in &cases {
        assert_keystone_error(&api.post("/identity/v3/projects", body), 400);
    }
    let listed = api.get("/identity/v3/projects").body_json();
    assert_eq!(names(&listed, "projects"), ["admin"]);
    let dup = api.post(
        "/identity/v3/projects",
        &json!({"project": {"name": "admin"}}),
    );
    assert_keystone_error(&dup, 409);
    let role = api.post("/identity/v3/roles", &json!({"role": {"name": "auditor"}}));
    assert_eq!(role.status.as_u16(), 201);
    let rid = role.body_json()["role"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        api.get(&format!("/identity/v3/roles/{rid}"))
            .status
            .as_u16(),
        200
    );
    let grant = api.put(
        &format!("/identity/v3/projects/nope/users/nope/roles/{rid}"),
        None,
    );
    assert_keystone_error(&grant, 404);
}

#[test]
fn the_default_domain_s_name_is_matched_in_any_case_as_scripts_spell_it() {
    let d = Daemon::start();
    for domain in ["default", "DEFAULT", "Default"] {
        // openstacksdk's `user_domain_name` and `project_domain_name`, as seed scripts set them.
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"name": domain}, "password": ADMIN_PASSWORD}}},
            "scope": {"project": {"name": "admin", "domain": {"name": domain}}},
        }});
        let r = d.tcp(None).post("/identity/v3/auth/tokens", &body);
        assert_eq!(r.status.as_u16(), 201, "{domain}: {}", r.text());
        assert_eq!(r.body_json()["token"]["project"]["name"], "admin");
    }
    let body = json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"name": "elsewhere"}, "password": ADMIN_PASSWORD}}}}});
    assert_keystone_error(&d.tcp(None).post("/identity/v3/auth/tokens", &body), 401);
}

#[test]
fn catalog_token_check_domain_and_a_user_s_projects() {
    let d = Daemon::start();
    let (project, user) = d.make_member("mia", "mia-pw", "mias");
    let token = d.login("mia", "mia-pw", Some("mias"));
    let mia = d.tcp(Some(&token));

    // The catalog of the caller's token, as the token itself carries it.
    let catalog = mia.get("/identity/v3/auth/catalog").body_json();
    let types: Vec<&str> = catalog["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["type"].as_str().unwrap())
        .collect();
    for t in ["identity", "compute", "image", "network", "block-storage"] {
        assert!(types.contains(&t), "{t} missing from {catalog}");
    }
    let volume = catalog["catalog"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "block-storage")
        .unwrap();
    assert!(volume["endpoints"][0]["url"]
        .as_str()
        .unwrap()
        .ends_with(&format!("/volume/v3/{project}")));

    // HEAD checks a token without its body; a revoked one is 404.
    let check = |subject: &str| {
        mia.send_raw_headers(
            Method::HEAD,
            "/identity/v3/auth/tokens",
            None,
            &[("X-Subject-Token", subject)],
        )
    };
    let second = d.login("mia", "mia-pw", Some("mias"));
    let r = check(&second);
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert!(r.body.is_empty());
    let r = mia.send_raw_headers(
        Method::DELETE,
        "/identity/v3/auth/tokens",
        None,
        &[("X-Subject-Token", second.as_str())],
    );
    assert_eq!(r.status.as_u16(), 204);
    assert_eq!(check(&second).status.as_u16(), 404);

    // The one domain; another is not found.
    let dom = mia.get("/identity/v3/domains/default").body_json();
    assert_eq!(
        (
            dom["domain"]["name"].as_str(),
            dom["domain"]["enabled"].as_bool()
        ),
        (Some("Default"), Some(true))
    );
    assert_keystone_error(&mia.get("/identity/v3/domains/other"), 404);

    // A user's projects: the ones it has a role on; only itself or an admin may ask (to
    // others the user is not found, as GET /users/{id} answers).
    let mine = mia
        .get(&format!("/identity/v3/users/{user}/projects"))
        .body_json();
    assert_eq!(names(&mine, "projects"), ["mias"]);
    let admin = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    let theirs = d
        .tcp(Some(&admin))
        .get(&format!("/identity/v3/users/{user}/projects"))
        .body_json();
    assert_eq!(names(&theirs, "projects"), ["mias"]);
    let others = d.unix().get("/identity/v3/users?name=admin").body_json();
    let admin_user = others["users"][0]["id"].as_str().unwrap().to_owned();
    assert_keystone_error(
        &mia.get(&format!("/identity/v3/users/{admin_user}/projects")),
        404,
    );
}
