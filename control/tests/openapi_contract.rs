//! control/api/openapi.yaml and the router agree: every documented (method, path) is routed,
//! every routed one is documented, and each documented operation, run in-process against a
//! real (in-memory) SQLite database, answers with a documented status and a body that
//! matches the documented schema.

mod common;

use common::in_process::InProcess;
use common::openapi_doc::{doc, operations, request_body, resolve, Op, METHODS};
use hyper::{HeaderMap, Method};
use outpost_control::api::routes::ROUTES;
use outpost_control::api::{ReplyBody, Router, Transport};
use serde_json::Value;
use std::collections::BTreeSet;

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

#[test]
fn every_documented_operation_answers_as_documented() {
    let doc = doc();
    // The password of the document's login example. Servers get a real fleet whose monitor
    // binary does not exist: the documented create is accepted (202) and its build then
    // fails, so no guest boots here (tests/servers.rs boots real ones).
    let api = InProcess::start("admin-secret");
    let admin_project = api.admin.project_id.clone().unwrap();
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
        let reply = api.request(
            Transport::Unix,
            Method::from_bytes(op.method.as_bytes()).unwrap(),
            &path,
            headers,
            body,
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
