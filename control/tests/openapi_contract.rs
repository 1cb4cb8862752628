//! control/api/openapi.yaml and the router agree: every documented (method, path) is routed,
//! every routed one is documented, and each documented operation, run in-process against a
//! real (in-memory) SQLite database, answers with a documented status and a body that
//! matches the documented schema.

use hyper::{HeaderMap, Method};
use outpost_control::api::routes::ROUTES;
use outpost_control::api::{handle, ApiState, RawRequest, ReplyBody, Router, Transport};
use outpost_control::config::{ConfigFile, Overrides, Settings};
use outpost_control::identity::bootstrap;
use outpost_control::storage::Db;
use outpost_image_store::{ImageStore, VolumeStore};
use serde_json::Value;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

const METHODS: [&str; 5] = ["get", "put", "post", "patch", "delete"];

fn doc() -> Value {
    serde_norway::from_str(include_str!("../api/openapi.yaml")).expect("openapi.yaml parses")
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling {r}")),
            )
        }
        None => v,
    }
}

fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for m in METHODS {
            if item.get(m).is_some() {
                ops.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn every_documented_operation_is_routed_and_every_route_documented() {
    let doc = doc();
    let routed: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|r| (r.method.to_string(), r.path.to_owned()))
        .collect();
    let documented = documented(&doc);
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(
        undocumented.is_empty(),
        "routed but not documented: {undocumented:?}"
    );
    assert!(
        unrouted.is_empty(),
        "documented but not routed: {unrouted:?}"
    );
    // And the compiled router finds each one.
    let router = Router::new();
    for r in ROUTES {
        let hit = router.resolve(&r.method, r.path).ok().map(|h| h.route.path);
        assert_eq!(hit, Some(r.path));
    }
}

/// Checks `v` against the subset of JSON Schema / OpenAPI the document uses.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str) -> Result<(), String> {
    let s = resolve(doc, schema);
    if v.is_null() && s["nullable"] == true {
        return Ok(());
    }
    if let Some(options) = s.get("oneOf").and_then(Value::as_array) {
        return match options.iter().any(|o| check(doc, o, v, at).is_ok()) {
            true => Ok(()),
            false => Err(format!("{at}: {v} matches none of oneOf")),
        };
    }
    let ok = match s.get("type").and_then(Value::as_str) {
        None => true,
        Some("object") => v.is_object(),
        Some("array") => v.is_array(),
        Some("string") => v.is_string(),
        Some("integer") => v.is_i64() || v.is_u64(),
        Some("number") => v.is_number(),
        Some("boolean") => v.is_boolean(),
        Some(t) => return Err(format!("{at}: schema type {t} unknown to this checker")),
    };
    if !ok {
        return Err(format!("{at}: {v} is not a {}", s["type"]));
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            return Err(format!("{at}: {v} not in {values:?}"));
        }
    }
    if let Some(obj) = v.as_object() {
        for key in s
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let key = key.as_str().unwrap();
            if !obj.contains_key(key) {
                return Err(format!("{at}: missing required {key}"));
            }
        }
        let props = s.get("properties").and_then(Value::as_object);
        for (k, val) in obj {
            let here = format!("{at}.{k}");
            match (props.and_then(|p| p.get(k)), s.get("additionalProperties")) {
                (Some(p), _) => check(doc, p, val, &here)?,
                (None, Some(Value::Bool(false))) => return Err(format!("{here}: not allowed")),
                (None, Some(extra)) if extra.is_object() => check(doc, extra, val, &here)?,
                _ => {}
            }
        }
        let count = obj.len() as u64;
        if s.get("minProperties")
            .and_then(Value::as_u64)
            .is_some_and(|m| count < m)
            || s.get("maxProperties")
                .and_then(Value::as_u64)
                .is_some_and(|m| count > m)
        {
            return Err(format!("{at}: {count} properties out of bounds"));
        }
    }
    if let (Some(items), Some(arr)) = (s.get("items"), v.as_array()) {
        for (i, item) in arr.iter().enumerate() {
            check(doc, items, item, &format!("{at}[{i}]"))?;
        }
    }
    Ok(())
}

struct Op {
    method: String,
    path: String,
    op: Value,
    params: Vec<Value>,
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let shared: Vec<Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for m in METHODS {
            if let Some(op) = item.get(m) {
                let mut params = shared.clone();
                params.extend(
                    op.get("parameters")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
                let params = params.iter().map(|p| resolve(doc, p).clone()).collect();
                ops.push(Op {
                    method: m.to_uppercase(),
                    path: path.clone(),
                    op: op.clone(),
                    params,
                });
            }
        }
    }
    // Creates first (parents before children) so later reads find something; deletes last,
    // children before parents.
    let rank = |m: &str| {
        ["POST", "PUT", "GET", "PATCH", "DELETE"]
            .iter()
            .position(|x| *x == m)
    };
    ops.sort_by_key(|o| {
        let depth = o.path.len() as i64;
        (
            rank(&o.method),
            if o.method == "DELETE" { -depth } else { depth },
        )
    });
    ops
}

/// The path with each parameter's example; `x-example: caller-project` stands for the
/// caller's project id (Cinder URLs carry it), which no static example can know.
fn concrete(op: &Op, caller_project: &str) -> String {
    let mut path = op.path.clone();
    for p in &op.params {
        if p["in"] == "path" {
            let name = p["name"].as_str().unwrap();
            let example = if p["x-example"] == "caller-project" {
                caller_project
            } else {
                p["example"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{}: {name} has no example", op.path))
            };
            path = path.replace(&format!("{{{name}}}"), example);
        }
    }
    path
}

/// The first documented request body with an example, as (media type, bytes): JSON examples
/// serialized, other media types' examples sent as their text.
fn request_body(op: &Value) -> Option<(String, Vec<u8>)> {
    let content = op.pointer("/requestBody/content")?.as_object()?;
    content.iter().find_map(|(media, c)| {
        let example = c.get("example")?;
        let bytes = match (media.ends_with("json"), example) {
            (false, Value::String(s)) => s.clone().into_bytes(),
            _ => example.to_string().into_bytes(),
        };
        Some((media.clone(), bytes))
    })
}

#[test]
fn every_documented_operation_answers_as_documented() {
    let doc = doc();
    let db = Db::open_in_memory().unwrap();
    // The password of the document's login example.
    let admin = bootstrap::ensure(
        &db,
        Some("admin-secret"),
        std::path::Path::new("/nonexistent"),
    )
    .unwrap();
    // Servers get a real fleet on a temporary state directory whose monitor binary does
    // not exist: the documented create is accepted (202) and its build then fails, so no
    // guest boots here (tests/servers.rs boots real ones).
    let dir = tempfile::tempdir().unwrap();
    let rootfs = dir.path().join("rootfs.ext4");
    std::fs::write(&rootfs, [0u8; 4096]).unwrap();
    let file: ConfigFile = toml::from_str(&format!(
        "[compute]\nmonitor = \"/nonexistent/outpost-vmm\"\n[guest]\nrootfs = {:?}\n",
        rootfs
    ))
    .unwrap();
    let settings = Settings::resolve(
        file,
        Overrides {
            state_dir: Some(dir.path().join("state")),
            ..Overrides::default()
        },
    )
    .unwrap();
    let admin_project = admin.project_id.clone().unwrap();
    let images = Arc::new(ImageStore::open(settings.state_dir.clone()).unwrap());
    let volumes = Arc::new(VolumeStore::open(settings.state_dir.clone()).unwrap());
    let doors = outpost_control::store::Doors::sqlite(&db);
    let fleet = outpost_control::daemon::open_fleet(
        doors.clone(),
        &settings,
        images.clone(),
        volumes.clone(),
        None,
    )
    .unwrap();
    let network = Arc::new(outpost_control::network::NetworkService::with_store(
        doors.networks.clone(),
        settings.network.clone(),
    ));
    let site = Arc::new(
        outpost_control::cluster::site::Site::alone(&settings.state_dir, fleet.clone()).unwrap(),
    );
    let state = ApiState {
        site,
        doors,
        base_url: "http://127.0.0.1:8080".into(),
        region: "RegionOne".into(),
        token_ttl: Duration::from_secs(60),
        socket_context: admin,
        router: Router::new(),
        policy: settings.policy.clone(),
        fleet,
        images,
        volumes,
        network,
        copy_rule: Arc::new(outpost_control::image::CopyRule::alone("box")),
        puller: None,
        logins: outpost_control::identity::logins::LoginGuard::new(Default::default()),
    };
    let mut succeeded = 0;
    for op in operations(&doc) {
        let path = concrete(&op, &admin_project);
        let mut headers = HeaderMap::new();
        for p in &op.params {
            if p["in"] == "header" && p["required"] == true {
                headers.insert(
                    hyper::header::HeaderName::from_bytes(p["name"].as_str().unwrap().as_bytes())
                        .unwrap(),
                    "x".parse().unwrap(),
                );
            }
        }
        let body = match request_body(&op.op) {
            Some((media, bytes)) => {
                headers.insert(hyper::header::CONTENT_TYPE, media.parse().unwrap());
                bytes
            }
            None => Vec::new(),
        };
        let reply = handle(
            &state,
            Transport::Unix,
            RawRequest {
                method: Method::from_bytes(op.method.as_bytes()).unwrap(),
                target: path.clone(),
                headers,
                body,
                peer: None,
                caller: None,
            },
        );
        let status = reply.status.as_u16().to_string();
        let what = format!("{} {path}", op.method);
        let response = op.op["responses"].get(&status).unwrap_or_else(|| {
            panic!(
                "{what}: status {status} is not documented: {:?}",
                reply.body
            )
        });
        let response = resolve(&doc, response);
        // 300 is how Keystone, Glance and Cinder answer their unversioned roots.
        if reply.status.is_success() || reply.status.is_redirection() {
            succeeded += 1;
        }
        if let (Some(schema), ReplyBody::Json(v)) = (
            response.pointer("/content/application~1json/schema"),
            &reply.body,
        ) {
            if let Err(e) = check(&doc, schema, v, "body") {
                panic!("{what} -> {status}: {e}\n{v:#}");
            }
        }
    }
    // The examples are meant to work: most operations succeed, the rest name ids that do
    // not exist (and answer their documented 404).
    assert!(succeeded >= 29, "only {succeeded} operations succeeded");
}
