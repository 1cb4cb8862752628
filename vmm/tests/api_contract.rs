//! Holds the server to `vmm/api/openapi.yaml` and the document to the server: every documented
//! operation is routed and answers with a documented status, every served route is documented,
//! the documented examples are accepted before boot, and bodies that break the schemas are
//! refused with a `fault_message`. The server is the real one, on a temporary unix socket.

mod common;

use common::openapi::{assert_matches_doc, doc, operations, schema_errors, METHODS};
use common::{http, HostFiles, HttpResponse, Tap};
use outpost_vmm::api::{self, routes::ROUTES, ApiError, ApiServerHandle};
use outpost_vmm::controller::Controller;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use vmm_sys_util::tempdir::TempDir;

/// Points the example's host resources at real ones (the document's paths are illustrative).
fn localize(mut v: Value, files: &HostFiles, tap: &Tap) -> Value {
    if let Some(obj) = v.as_object_mut() {
        for (key, value) in obj.iter_mut() {
            let local = match key.as_str() {
                "kernel_image_path" => json!(files.kernel),
                "initrd_path" => json!(files.initrd),
                "path_on_host" => json!(files.rootfs),
                "serial_out_path" => json!(files.path("console.log")),
                "host_dev_name" => json!(tap.name),
                _ => continue,
            };
            *value = local;
        }
    }
    v
}

struct Server {
    handle: Option<ApiServerHandle>,
    socket: PathBuf,
    _dir: TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = TempDir::new_with_prefix("/tmp/outpost-vmm-api-").expect("temp dir");
        let socket = dir.as_path().join("api.sock");
        let controller = Arc::new(Mutex::new(Controller::new("contract-test")));
        let handle = api::serve(socket.clone(), controller).expect("server starts");
        Server {
            handle: Some(handle),
            socket,
            _dir: dir,
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>) -> HttpResponse {
        let text = body.map(Value::to_string);
        http(&self.socket, method, path, text.as_deref())
    }
}

#[test]
fn every_documented_operation_is_routed_and_answers_as_documented() {
    let doc = doc();
    let (files, tap, server) = (HostFiles::new(), Tap::new(), Server::start());
    for op in operations(&doc) {
        let example = op.example().map(|e| localize(e, &files, &tap));
        let resp = server.send(
            &op.method,
            &op.concrete_path(example.as_ref()),
            example.as_ref(),
        );
        assert!(
            ![404, 405].contains(&resp.status),
            "{} {} not routed: {resp:?}",
            op.method,
            op.path
        );
        assert!(
            op.documented_statuses().contains(&resp.status.to_string()),
            "{} {} answered {} (documented: {:?}): {}",
            op.method,
            op.path,
            resp.status,
            op.documented_statuses(),
            resp.body
        );
        assert_matches_doc(&doc, &op, &resp);
    }
}

#[test]
fn every_served_route_is_documented_and_nothing_else_is_served() {
    let doc = doc();
    let paths = doc["paths"].as_object().expect("paths");
    for route in ROUTES {
        let item = paths
            .get(route.path)
            .unwrap_or_else(|| panic!("{} is served but not documented", route.path));
        let mut documented: Vec<String> = METHODS
            .iter()
            .filter(|m| item.get(**m).is_some())
            .map(|m| m.to_uppercase())
            .collect();
        let mut served: Vec<String> = route.methods.iter().map(|m| m.to_string()).collect();
        documented.sort();
        served.sort();
        assert_eq!(served, documented, "methods of {}", route.path);
    }
    assert_eq!(
        ROUTES.len(),
        paths.len(),
        "documented paths that are not served"
    );

    let server = Server::start();
    for op_path in paths.keys() {
        let concrete = op_path
            .replace("{drive_id}", "d1")
            .replace("{iface_id}", "i1");
        let item = &paths[op_path];
        for method in METHODS.iter().filter(|m| item.get(**m).is_none()) {
            let resp = server.send(&method.to_uppercase(), &concrete, None);
            assert_eq!(resp.status, 405, "{method} {concrete}: {resp:?}");
            assert!(resp.fault().contains("not allowed"));
            let allow = resp.header("allow").expect("405 carries Allow");
            for documented in METHODS.iter().filter(|m| item.get(**m).is_some()) {
                assert!(
                    allow.contains(&documented.to_uppercase()),
                    "Allow {allow:?} on {concrete}"
                );
            }
        }
    }
    for unknown in [
        "/no-such-thing",
        "/drives",
        "/drives/a/b",
        "/vm/config/x",
        "/machine-config/",
    ] {
        let resp = server.send("GET", unknown, None);
        assert_eq!(resp.status, 404, "{unknown}: {resp:?}");
        assert!(resp.fault().contains(unknown));
    }
}

#[test]
fn documented_examples_are_accepted_before_boot() {
    let doc = doc();
    let (files, tap, server) = (HostFiles::new(), Tap::new(), Server::start());
    let mut sent = Vec::new();
    for op in operations(&doc) {
        let Some(example) = op.example().map(|e| localize(e, &files, &tap)) else {
            continue;
        };
        if op.path == "/actions" || op.path == "/vm" {
            continue; // actions, not configuration: below
        }
        if op.path.starts_with("/snapshot/") {
            continue; // a snapshot needs a paused guest, a load real files: vmm_snapshot.rs
        }
        let resp = server.send(
            &op.method,
            &op.concrete_path(Some(&example)),
            Some(&example),
        );
        assert_eq!(
            resp.status, 204,
            "{} {} refused its example {example}: {}",
            op.method, op.path, resp.body
        );
        sent.push((op.path.clone(), example));
    }
    assert!(
        sent.len() >= 7,
        "examples for every configuration route: {sent:?}"
    );

    let config = server.send("GET", "/vm/config", None);
    assert_eq!(config.status, 200);
    let config = config.json();
    let full = &doc["components"]["schemas"]["FullVmConfiguration"];
    assert_eq!(
        schema_errors(&doc, full, &config, "config"),
        Vec::<String>::new()
    );
    let example_of = |path: &str| {
        sent.iter()
            .find(|(p, _)| p == path)
            .map(|(_, e)| e.clone())
            .expect(path)
    };
    assert_eq!(config["boot-source"], example_of("/boot-source"));
    assert_eq!(config["drives"][0]["path_on_host"], json!(files.rootfs));
    assert_eq!(config["drives"][0]["is_root_device"], true);
    assert_eq!(
        config["network-interfaces"][0]["host_dev_name"],
        json!(tap.name)
    );
    assert_eq!(config["serial"], example_of("/serial"));
    assert_eq!(config["entropy"], json!({}));
    // PATCH's example (vcpu_count 4) applied over PUT's (2 vCPUs, 256 MiB).
    assert_eq!(config["machine-config"]["vcpu_count"], 4);
    assert_eq!(config["machine-config"]["mem_size_mib"], 256);

    // Pausing needs a started guest.
    let resp = server.send("PATCH", "/vm", Some(&json!({"state": "Paused"})));
    assert_eq!(resp.status, 400);
    assert!(
        resp.fault().contains("InstanceStart first"),
        "{}",
        resp.body
    );
    // The "kernel" is a text file: the builder refuses it and the guest stays unstarted.
    let resp = server.send(
        "PUT",
        "/actions",
        Some(&json!({"action_type": "InstanceStart"})),
    );
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(
        resp.fault().starts_with("could not start the guest"),
        "{}",
        resp.body
    );
    assert_eq!(server.send("GET", "/", None).json()["state"], "Not started");
}

#[test]
fn bodies_that_break_the_schemas_are_refused() {
    let doc = doc();
    let (files, tap, server) = (HostFiles::new(), Tap::new(), Server::start());
    for op in operations(&doc) {
        let Some(schema) = op.request_schema(&doc) else {
            continue;
        };
        let example = localize(
            op.example().expect("every request body has an example"),
            &files,
            &tap,
        );
        let path = op.concrete_path(Some(&example));
        let refused = |body: Value, phrase: &str| {
            let resp = server.send(&op.method, &path, Some(&body));
            assert_eq!(resp.status, 400, "{} {path} accepted {body}", op.method);
            let fault = resp.fault();
            assert!(
                fault.contains(phrase),
                "{} {path} {body}: {fault:?} lacks {phrase:?}",
                op.method
            );
        };
        let mut with_extra = example.clone();
        with_extra["bogus_field"] = json!(1);
        assert_eq!(
            schema["additionalProperties"], false,
            "{} {}",
            op.method, op.path
        );
        refused(with_extra, "bogus_field");
        let resp = server.send(&op.method, &path, None);
        assert_eq!(resp.status, 400);
        assert!(resp.fault().contains("needs a JSON body"));

        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let req = req.as_str().expect("required names are strings");
            let mut missing = example.clone();
            missing.as_object_mut().expect("object example").remove(req);
            refused(missing, req);
        }
        for (name, prop) in schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let mut bad = example.clone();
            if prop.get("enum").is_some() {
                bad[name] = json!("NotAValue");
                refused(bad, "NotAValue");
                continue;
            }
            let wrong = match prop["type"].as_str() {
                Some("string") => json!(12),
                Some("integer") | Some("boolean") => json!("text"),
                _ => continue,
            };
            bad[name] = wrong;
            refused(bad, "invalid type");
        }
    }
}

#[test]
fn limits_ids_and_malformed_bodies() {
    let (files, server) = (HostFiles::new(), Server::start());
    let big = format!(
        "{{\"kernel_image_path\":\"{}\"}}",
        "a".repeat(api::MAX_BODY_BYTES)
    );
    let resp = http(&server.socket, "PUT", "/boot-source", Some(&big));
    assert_eq!(resp.status, 413);
    assert!(resp.fault().contains("larger than"));

    let drive = json!({"drive_id": "rootfs", "path_on_host": files.rootfs, "is_root_device": true});
    let resp = server.send("PUT", "/drives/other", Some(&drive));
    assert_eq!(resp.status, 400);
    assert!(resp.fault().contains("does not match"), "{}", resp.body);
    assert_eq!(
        server.send("PUT", "/drives/rootfs", Some(&drive)).status,
        204
    );
    let second = json!({"drive_id": "second", "path_on_host": files.data, "is_root_device": true});
    let resp = server.send("PUT", "/drives/second", Some(&second));
    assert_eq!(resp.status, 400);
    assert!(resp.fault().contains("second root device"), "{}", resp.body);

    let resp = http(
        &server.socket,
        "PUT",
        "/machine-config",
        Some("{\"vcpu_count\": 2,"),
    );
    assert_eq!(resp.status, 400);
    assert!(
        resp.fault()
            .starts_with("invalid body for PUT /machine-config"),
        "{}",
        resp.body
    );
    let resp = server.send(
        "PUT",
        "/machine-config",
        Some(&json!({"vcpu_count": 64, "mem_size_mib": 128})),
    );
    assert_eq!(resp.status, 400);
    assert!(
        resp.fault().contains("vcpu_count 64 is out of range"),
        "{}",
        resp.body
    );
    let resp = server.send("GET", "/stats", None);
    assert_eq!(resp.status, 400);
    assert!(resp.fault().contains("InstanceStart first"));
}

#[test]
fn socket_is_private_exclusive_and_removed_on_stop() {
    let mut server = Server::start();
    let mode = std::fs::metadata(&server.socket)
        .expect("socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = api::serve(
        server.socket.clone(),
        Arc::new(Mutex::new(Controller::new("x"))),
    );
    assert!(matches!(again, Err(ApiError::SocketExists { .. })));
    // The refused second server left the first one's socket alone.
    assert_eq!(server.send("GET", "/", None).json()["id"], "contract-test");
    server.handle.take().expect("running").stop();
    assert!(!server.socket.exists(), "socket removed on stop");
}
