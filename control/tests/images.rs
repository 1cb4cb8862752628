//! Glance v2 over the real daemon: uploads checked against md5sum/sha512sum, downloads,
//! qcow2 stored as raw (converted by the real qemu-img), failed and interrupted uploads that
//! leave nothing, filters and paging, JSON patch, delete refused while a volume uses the
//! image, malformed input refused with nothing changed, and a kill -9 mid-upload.

mod common;

use common::{Api, Daemon, Text, ADMIN_PASSWORD};
use hyper::Method;
use outpost_control::client::{ApiResponse, Client, Endpoint};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const IMAGES: &str = "/image/v2/images";
const PATCH: &str = "application/openstack-images-v2.1-json-patch";

fn admin(d: &Daemon) -> (Api, String) {
    let t = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    (d.tcp(Some(&t)), t)
}

fn create(api: &Api, body: Value) -> Value {
    let r = api.post(IMAGES, &body);
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    r.body_json()
}

fn raw_image(api: &Api, name: &str) -> String {
    let i = create(
        api,
        json!({"name": name, "disk_format": "raw", "container_format": "bare"}),
    );
    i["id"].as_str().unwrap().to_owned()
}

/// Uploads `file` over TCP with `token`, streamed from disk.
fn upload(d: &Daemon, token: &str, id: &str, file: &Path, extra: &[(&str, &str)]) -> ApiResponse {
    let client = Client::new(Endpoint::Tcp(d.addr)).unwrap();
    let f = std::fs::File::open(file).unwrap();
    let len = f.metadata().unwrap().len();
    let mut headers = vec![("X-Auth-Token", token)];
    headers.extend_from_slice(extra);
    client
        .upload(
            Method::PUT,
            &format!("{IMAGES}/{id}/file"),
            &headers,
            Box::new(f),
            len,
            Box::new(|_| {}),
        )
        .unwrap()
}

fn download(d: &Daemon, token: &str, id: &str, to: &Path) -> ApiResponse {
    let client = Client::new(Endpoint::Tcp(d.addr)).unwrap();
    let mut out = std::fs::File::create(to).unwrap();
    client
        .download(
            &format!("{IMAGES}/{id}/file"),
            &[("X-Auth-Token", token)],
            &mut out,
        )
        .unwrap()
}

/// `md5sum`/`sha512sum` of a file: the first word of their output.
fn coreutils(tool: &str, file: &Path) -> String {
    let out = Command::new(tool).arg(file).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

fn random_file(dir: &Path, name: &str, len: usize) -> PathBuf {
    let p = dir.join(name);
    let mut f = std::fs::File::create(&p).unwrap();
    // A cheap deterministic pseudo-random stream (xorshift), with a zero run in the middle so
    // the sparse write path is exercised too.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        buf.extend_from_slice(&x.to_le_bytes());
    }
    buf.truncate(len);
    let mid = len / 2;
    for b in &mut buf[mid..(mid + 65536).min(len)] {
        *b = 0;
    }
    f.write_all(&buf).unwrap();
    p
}

fn show(api: &Api, id: &str) -> Value {
    let r = api.get(&format!("{IMAGES}/{id}"));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.body_json()
}

/// Everything under the image store: published files and partial ones.
fn image_files(d: &Daemon) -> (Vec<String>, Vec<String>) {
    let names = |p: PathBuf| -> Vec<String> {
        std::fs::read_dir(p)
            .map(|r| {
                r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n != ".partial")
                    .collect()
            })
            .unwrap_or_default()
    };
    let dir = d.state_dir().join("images");
    (names(dir.clone()), names(dir.join(".partial")))
}

fn glance_error(r: &ApiResponse, code: u16) -> String {
    assert_eq!(r.status.as_u16(), code, "{}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; charset=UTF-8"),
        "{}",
        r.text()
    );
    let text = r.text();
    assert!(text.starts_with(&format!("{code} ")), "{text}");
    text
}

#[test]
fn raw_upload_matches_coreutils_and_downloads_the_same_bytes() {
    let d = Daemon::start();
    let (api, token) = admin(&d);
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "disk.raw", 5 * 1024 * 1024 + 123);
    let id = raw_image(&api, "disk");
    assert_eq!(show(&api, &id)["status"], "queued");
    let r = upload(&d, &token, &id, &file, &[]);
    assert_eq!(
        r.status.as_u16(),
        204,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let i = show(&api, &id);
    assert_eq!(i["status"], "active");
    assert_eq!(i["size"], 5 * 1024 * 1024 + 123);
    assert_eq!(i["virtual_size"], 5 * 1024 * 1024 + 123);
    assert_eq!(i["checksum"], coreutils("md5sum", &file));
    assert_eq!(i["os_hash_algo"], "sha512");
    assert_eq!(i["os_hash_value"], coreutils("sha512sum", &file));
    assert_eq!(i["file"], format!("/v2/images/{id}/file"));
    assert!(i.get("outpost_uploaded_disk_format").is_none());

    let back = tmp.path().join("back");
    let r = download(&d, &token, &id, &back);
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(r.header("content-md5"), i["checksum"].as_str());
    assert_eq!(r.header("content-type"), Some("application/octet-stream"));
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&file).unwrap());
    // Data is uploaded once; a second upload is a conflict and changes nothing.
    let again = upload(&d, &token, &id, &file, &[]);
    assert_eq!(again.status.as_u16(), 409);
    // A queued image has no data to give.
    let empty = raw_image(&api, "empty");
    assert_eq!(download(&d, &token, &empty, &back).status.as_u16(), 204);
    // The unix socket serves the same bytes.
    let unix = Client::new(Endpoint::Unix(d.socket())).unwrap();
    let mut via_socket = Vec::new();
    unix.download(&format!("{IMAGES}/{id}/file"), &[], &mut via_socket)
        .unwrap();
    assert_eq!(via_socket, std::fs::read(&file).unwrap());
}

#[test]
fn qcow2_uploads_are_stored_as_raw_and_say_so() {
    let d = Daemon::start();
    let (api, token) = admin(&d);
    let tmp = tempfile::tempdir().unwrap();
    let raw = random_file(tmp.path(), "src.raw", 3 * 1024 * 1024);
    let qcow = tmp.path().join("src.qcow2");
    let st = Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow)
        .status()
        .unwrap();
    assert!(st.success());
    let i = create(
        &api,
        json!({"name": "q", "disk_format": "qcow2", "container_format": "bare"}),
    );
    let id = i["id"].as_str().unwrap();
    let r = upload(&d, &token, id, &qcow, &[]);
    assert_eq!(
        r.status.as_u16(),
        204,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let i = show(&api, id);
    assert_eq!(i["status"], "active");
    assert_eq!(i["disk_format"], "raw");
    assert_eq!(i["outpost_uploaded_disk_format"], "qcow2");
    assert_eq!(i["outpost_uploaded_checksum"], coreutils("md5sum", &qcow));
    assert_eq!(
        i["outpost_uploaded_os_hash_value"],
        coreutils("sha512sum", &qcow)
    );
    assert_eq!(i["checksum"], coreutils("md5sum", &raw));
    assert_eq!(i["os_hash_value"], coreutils("sha512sum", &raw));
    assert_eq!(i["virtual_size"], 3 * 1024 * 1024);
    assert_eq!(i["size"], 3 * 1024 * 1024);
    let back = tmp.path().join("back");
    assert_eq!(download(&d, &token, id, &back).status.as_u16(), 200);
    assert_eq!(std::fs::read(&back).unwrap(), std::fs::read(&raw).unwrap());

    // A qcow2 declared raw is refused: nothing stored, the image stays queued.
    let lie = raw_image(&api, "lie");
    let r = upload(&d, &token, &lie, &qcow, &[]);
    assert_eq!(
        r.status.as_u16(),
        400,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(show(&api, &lie)["status"], "queued");
    let (files, partial) = image_files(&d);
    assert_eq!(files, vec![id.to_owned()]);
    assert!(partial.is_empty());
}

#[test]
fn a_checksum_mismatch_or_an_interrupted_body_leaves_nothing() {
    let d = Daemon::start();
    let (api, token) = admin(&d);
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "disk.raw", 2 * 1024 * 1024);
    let id = raw_image(&api, "disk");

    // Content-MD5 of other bytes (RFC 1864 base64 form).
    let r = upload(
        &d,
        &token,
        &id,
        &file,
        &[("Content-MD5", "kAFQmDzST7DWlj99KOF/cg==")],
    );
    let text = glance_error(&r, 400);
    assert!(text.contains("checksum mismatch"), "{text}");
    let i = show(&api, &id);
    assert_eq!(i["status"], "queued");
    assert_eq!(i["checksum"], Value::Null);
    assert_eq!(image_files(&d), (vec![], vec![]));

    // The client declares 8 MiB, sends 1 MiB and closes the connection.
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    let head = format!(
        "PUT {IMAGES}/{id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        8 << 20
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&vec![0x5a; 1 << 20]).unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let i = show(&api, &id);
        if i["status"] == "queued" && image_files(&d) == (vec![], vec![]) {
            break;
        }
        assert!(Instant::now() < deadline, "{i}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(d.log().contains("interrupted"), "{}", d.log());

    // The image takes its data afterwards.
    let r = upload(&d, &token, &id, &file, &[]);
    assert_eq!(r.status.as_u16(), 204);
    assert_eq!(show(&api, &id)["checksum"], coreutils("md5sum", &file));
}

#[test]
fn list_filters_sorting_and_paging() {
    let d = Daemon::start();
    let (api, token) = admin(&d);
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "small", 4096);
    let mut ids = Vec::new();
    for (name, vis, fmt, tags) in [
        ("a", "public", "raw", json!(["x", "y"])),
        ("b", "private", "raw", json!(["x"])),
        ("c", "shared", "iso", json!([])),
        ("d", "community", "raw", json!([])),
    ] {
        let i = create(
            &api,
            json!({"name": name, "visibility": vis, "disk_format": fmt,
                   "container_format": "bare", "tags": tags, "os_distro": format!("d-{name}")}),
        );
        ids.push(i["id"].as_str().unwrap().to_owned());
    }
    let up = upload(&d, &token, &ids[0], &file, &[]);
    assert_eq!(up.status.as_u16(), 204);
    let names = |q: &str| -> Vec<String> {
        let r = api.get(&format!("{IMAGES}{q}"));
        assert_eq!(r.status.as_u16(), 200, "{q}: {}", r.text());
        r.body_json()["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Newest first by default.
    assert_eq!(names(""), ["d", "c", "b", "a"]);
    assert_eq!(names("?name=b"), ["b"]);
    assert_eq!(names("?name=in:a,c"), ["c", "a"]);
    assert_eq!(names("?status=active"), ["a"]);
    assert_eq!(
        names("?status=queued&sort_key=name&sort_dir=asc"),
        ["b", "c", "d"]
    );
    assert_eq!(names("?visibility=community"), ["d"]);
    assert_eq!(names("?disk_format=iso"), ["c"]);
    assert_eq!(names("?tag=x&sort=name:asc"), ["a", "b"]);
    assert_eq!(names("?tag=x&tag=y"), ["a"]);
    assert_eq!(names("?os_distro=d-c"), ["c"]);
    // Paging: the full first page links the next one.
    let page = api
        .get(&format!("{IMAGES}?limit=3&sort=name:asc"))
        .body_json();
    assert_eq!(page["images"].as_array().unwrap().len(), 3);
    assert_eq!(page["schema"], "/v2/schemas/images");
    let next = page["next"].as_str().unwrap();
    assert!(next.starts_with("/v2/images?") && next.contains(&format!("marker={}", ids[2])));
    let rest = api.get(&format!("/image{next}")).body_json();
    assert_eq!(rest["images"][0]["name"], "d");
    assert!(rest.get("next").is_none());
    for bad in [
        "?limit=-1",
        "?limit=x",
        "?sort_key=bogus",
        "?sort_dir=sideways",
        "?status=bogus",
        "?visibility=everyone",
        "?marker=6ce3b7a4-46f1-4f0a-9d7e-1b1a2c3d4e5f",
        "?sort=name:asc&sort_key=name",
    ] {
        glance_error(&api.get(&format!("{IMAGES}{bad}")), 400);
    }

    // A member of another project sees public images only, and community ones when asked.
    d.make_member("alice", "alice-pw", "demo");
    let alice = d.tcp(Some(&d.login("alice", "alice-pw", Some("demo"))));
    let seen: Vec<String> = alice.get(IMAGES).body_json()["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(seen, ["a"]);
    let all = alice.get(&format!("{IMAGES}?visibility=all")).body_json();
    assert_eq!(all["images"].as_array().unwrap().len(), 2);
    glance_error(&alice.get(&format!("{IMAGES}/{}", ids[1])), 404);
    assert_eq!(
        alice.get(&format!("{IMAGES}/{}", ids[3])).status.as_u16(),
        200
    );
    // Only admins publish.
    let r = alice.post(IMAGES, &json!({"name": "mine", "visibility": "public"}));
    glance_error(&r, 403);
}

#[test]
fn patch_changes_all_or_nothing() {
    let d = Daemon::start();
    let (api, _) = admin(&d);
    let id = raw_image(&api, "disk");
    let path = format!("{IMAGES}/{id}");
    let patch = |body: Value, ct: &str| {
        api.send_raw_headers(Method::PATCH, &path, Some(&body), &[("Content-Type", ct)])
    };
    let kernel = "0b6d4a3e-6c1f-4f43-9a77-1f0d4b1e2f3a";
    let r = patch(
        json!([
            {"op": "replace", "path": "/name", "value": "renamed"},
            {"op": "add", "path": "/kernel_id", "value": kernel},
            {"op": "add", "path": "/os_command_line", "value": "console=ttyS0"},
            {"op": "replace", "path": "/min_ram", "value": 256},
            {"op": "add", "path": "/tags", "value": ["boot"]},
        ]),
        PATCH,
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let i = r.body_json();
    assert_eq!(i["name"], "renamed");
    assert_eq!(i["kernel_id"], kernel);
    assert_eq!(i["os_command_line"], "console=ttyS0");
    assert_eq!(i["min_ram"], 256);
    assert_eq!(i["tags"], json!(["boot"]));
    let r = patch(json!([{"op": "remove", "path": "/os_command_line"}]), PATCH);
    assert_eq!(r.status.as_u16(), 200);
    assert!(r.body_json().get("os_command_line").is_none());

    let before = show(&api, &id);
    for (body, ct, code) in [
        (
            json!([{"op": "replace", "path": "/status", "value": "active"}]),
            PATCH,
            403,
        ),
        (
            json!([{"op": "replace", "path": "/checksum", "value": "0"}]),
            PATCH,
            403,
        ),
        (
            json!([{"op": "add", "path": "/outpost_uploaded_checksum", "value": "0"}]),
            PATCH,
            403,
        ),
        (json!([{"op": "remove", "path": "/name"}]), PATCH, 403),
        (
            json!([{"op": "replace", "path": "/missing", "value": "1"}]),
            PATCH,
            409,
        ),
        (
            json!([{"op": "add", "path": "/kernel_id", "value": "vmlinuz"}]),
            PATCH,
            400,
        ),
        (
            json!([{"op": "move", "path": "/name", "from": "/x"}]),
            PATCH,
            400,
        ),
        (json!({"op": "add"}), PATCH, 400),
        (
            json!([
                {"op": "replace", "path": "/name", "value": "half"},
                {"op": "replace", "path": "/min_disk", "value": -1}
            ]),
            PATCH,
            400,
        ),
        (
            json!([{"op": "replace", "path": "/name", "value": "x"}]),
            "application/json",
            415,
        ),
    ] {
        glance_error(&patch(body.clone(), ct), code);
        assert_eq!(show(&api, &id), before, "{body} changed the image");
    }
    let empty = patch(json!([]), PATCH);
    assert_eq!(empty.status.as_u16(), 200);
    assert_eq!(empty.body_json()["name"], "renamed");

    // Glance's older dialect: the operation's name holds the path, and add does not
    // overwrite.
    const PATCH_V20: &str = "application/openstack-images-v2.0-json-patch";
    let r = patch(
        json!([{"replace": "/name", "value": "old-style"}, {"add": "/os_distro", "value": "x"}]),
        PATCH_V20,
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.body_json()["name"], "old-style");
    assert_eq!(r.body_json()["os_distro"], "x");
    let before = show(&api, &id);
    for (body, code) in [
        (json!([{"add": "/os_distro", "value": "y"}]), 409),
        (json!([{"add": "/name", "value": "y"}]), 409),
        (
            json!([{"op": "replace", "path": "/name", "value": "y"}]),
            400,
        ),
    ] {
        glance_error(&patch(body.clone(), PATCH_V20), code);
        assert_eq!(show(&api, &id), before, "{body} changed the image");
    }
}

#[test]
fn delete_is_refused_while_a_volume_uses_the_image() {
    let d = Daemon::start();
    let (api, token) = admin(&d);
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "disk", 1 << 20);
    let id = raw_image(&api, "disk");
    assert_eq!(upload(&d, &token, &id, &file, &[]).status.as_u16(), 204);
    let project = d
        .tcp(Some(&token))
        .get("/identity/v3/projects?name=admin")
        .body_json()["projects"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let vols = format!("/volume/v3/{project}/volumes");
    let v = api.post(&vols, &json!({"volume": {"size": 1, "imageRef": id}}));
    assert_eq!(v.status.as_u16(), 202, "{}", v.text());
    let vid = v.body_json()["volume"]["id"].as_str().unwrap().to_owned();
    let text = glance_error(&api.delete(&format!("{IMAGES}/{id}")), 409);
    // Its users are counted, not named: they may be other projects' volumes and servers.
    assert!(text.contains("1 volume(s)"), "{text}");
    assert!(!text.contains(&vid), "{text}");
    assert_eq!(show(&api, &id)["status"], "active");
    // Once the volume is gone the image can go.
    let deadline = Instant::now() + Duration::from_secs(30);
    while api.get(&format!("{vols}/{vid}")).body_json()["volume"]["status"] == "creating" {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(api.delete(&format!("{vols}/{vid}")).status.as_u16(), 202);
    assert_eq!(api.delete(&format!("{IMAGES}/{id}")).status.as_u16(), 204);
    glance_error(&api.get(&format!("{IMAGES}/{id}")), 404);
    assert_eq!(image_files(&d), (vec![], vec![]));
    // Protected images stay.
    let p = create(&api, json!({"name": "keep", "protected": true}));
    let pid = p["id"].as_str().unwrap();
    glance_error(&api.delete(&format!("{IMAGES}/{pid}")), 403);
}

#[test]
fn malformed_input_is_refused_with_nothing_changed() {
    let d = Daemon::start();
    let (api, token) = admin(&d);
    for body in [
        json!([]),
        json!({"name": 5}),
        json!({"disk_format": "vmdk"}),
        json!({"container_format": "ovf"}),
        json!({"min_ram": -1}),
        json!({"min_disk": 1u64 << 40}),
        json!({"tags": "x"}),
        json!({"visibility": "everyone"}),
        json!({"id": "../../etc"}),
        json!({"kernel_id": "vmlinuz"}),
        json!({"my_prop": 5}),
        json!({"disk_format": "aki", "container_format": "bare"}),
    ] {
        glance_error(&api.post(IMAGES, &body), 400);
    }
    for body in [
        json!({"size": 5}),
        json!({"status": "active"}),
        json!({"os_glance_x": "1"}),
    ] {
        glance_error(&api.post(IMAGES, &body), 403);
    }
    let (code, body) = common::raw_http(
        d.addr,
        format!(
            "POST {IMAGES} HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\nContent-Type: \
             application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{{nop}}"
        )
        .as_bytes(),
    );
    assert_eq!(code, 400, "{body}");
    assert!(api.get(IMAGES).body_json()["images"]
        .as_array()
        .unwrap()
        .is_empty());
    // Uploads with the wrong media type, or to an image without formats, store nothing.
    let bare = create(&api, json!({"name": "bare"}));
    let bid = bare["id"].as_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "f", 1000);
    glance_error(&upload(&d, &token, bid, &file, &[]), 400);
    let id = raw_image(&api, "r");
    let (code, _) = common::raw_http(
        d.addr,
        format!(
            "PUT {IMAGES}/{id}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\
             Content-Type: text/plain\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
        )
        .as_bytes(),
    );
    assert_eq!(code, 415);
    glance_error(
        &upload(&d, &token, &id, &file, &[("Content-MD5", "not-a-digest")]),
        400,
    );
    assert_eq!(show(&api, &id)["status"], "queued");
    assert_eq!(image_files(&d), (vec![], vec![]));
    // Without a token nothing is read.
    let anon = d.tcp(None).get(IMAGES);
    assert_eq!(anon.status.as_u16(), 401);
}

#[test]
fn kill_9_mid_upload_keeps_records_and_cleans_the_half_upload() {
    let mut d = Daemon::start();
    let (api, token) = admin(&d);
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "disk", 1 << 20);
    let done = raw_image(&api, "done");
    assert_eq!(upload(&d, &token, &done, &file, &[]).status.as_u16(), 204);
    let half = raw_image(&api, "half");
    // An upload in progress: headers and 2 MiB of a declared 64 MiB, connection kept open.
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    let head = format!(
        "PUT {IMAGES}/{half}/file HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\
         Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        64 << 20
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&vec![7u8; 2 << 20]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while show(&api, &half)["status"] != "saving" || image_files(&d).1.is_empty() {
        assert!(Instant::now() < deadline, "{}", d.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    d.kill9();
    drop(s);
    assert!(
        !image_files(&d).1.is_empty(),
        "the half upload should be on disk"
    );
    d.spawn();
    let (api, token) = admin(&d);
    let i = show(&api, &half);
    assert_eq!(i["status"], "queued");
    assert_eq!(image_files(&d), (vec![done.clone()], vec![]));
    let kept = show(&api, &done);
    assert_eq!(kept["status"], "active");
    assert_eq!(kept["checksum"], coreutils("md5sum", &file));
    assert!(d.log().contains("queued again"), "{}", d.log());
    assert_eq!(upload(&d, &token, &half, &file, &[]).status.as_u16(), 204);
}

#[test]
fn schemas_and_error_shape() {
    let d = Daemon::start();
    let (api, _) = admin(&d);
    let s = api.get("/image/v2/schemas/image").body_json();
    assert_eq!(s["name"], "image");
    assert_eq!(s["properties"]["kernel_id"]["is_base"], false);
    let list = api.get("/image/v2/schemas/images").body_json();
    assert_eq!(list["name"], "images");
    let text = glance_error(
        &api.get(&format!("{IMAGES}/6ce3b7a4-46f1-4f0a-9d7e-1b1a2c3d4e5f")),
        404,
    );
    assert_eq!(
        text,
        "404 Not Found\n\nNo image found with ID 6ce3b7a4-46f1-4f0a-9d7e-1b1a2c3d4e5f\n\n   "
    );
}

#[test]
fn members_share_an_image_with_a_project_that_accepts_it() {
    let d = Daemon::start();
    let (admin_api, _) = admin(&d);
    let (owner_project, _) = d.make_member("olga", "olga-pw", "owners");
    let (guest_project, _) = d.make_member("gus", "gus-pw", "guests");
    let olga = d.tcp(Some(&d.login("olga", "olga-pw", Some("owners"))));
    let gus = d.tcp(Some(&d.login("gus", "gus-pw", Some("guests"))));
    let id = raw_image(&olga, "shared-disk");
    let members = format!("{IMAGES}/{id}/members");
    let listed = |api: &Api, query: &str| -> Vec<String> {
        let r = api.get(&format!("{IMAGES}{query}")).body_json();
        r["images"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap().to_owned())
            .collect()
    };

    let r = olga.post(&members, &json!({"member": guest_project}));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let m = r.body_json();
    assert_eq!(
        (m["image_id"].as_str(), m["status"].as_str()),
        (Some(id.as_str()), Some("pending"))
    );
    assert_eq!(m["member_id"], guest_project.as_str());
    glance_error(&olga.post(&members, &json!({"member": guest_project})), 409);
    // Pending: seen by id, not listed until asked for or accepted.
    assert_eq!(show(&gus, &id)["owner"], owner_project.as_str());
    assert!(!listed(&gus, "").contains(&id));
    assert!(listed(&gus, "?member_status=pending").contains(&id));
    let mine = format!("{members}/{guest_project}");
    glance_error(&olga.put(&mine, Some(&json!({"status": "accepted"}))), 403);
    glance_error(&gus.put(&mine, Some(&json!({"status": "sure"}))), 400);
    let r = gus.put(&mine, Some(&json!({"status": "accepted"})));
    assert_eq!(r.body_json()["status"], "accepted", "{}", r.text());
    assert!(listed(&gus, "").contains(&id));
    let all = olga.get(&members).body_json();
    assert_eq!(all["members"][0]["status"], "accepted", "{all}");
    assert_eq!(all["schema"], "/v2/schemas/members");
    assert_eq!(
        gus.get(&mine).body_json()["member_id"],
        guest_project.as_str()
    );

    // The member cannot remove itself; the owner can, and the image is the owner's again.
    glance_error(&gus.delete(&mine), 403);
    assert_eq!(olga.delete(&mine).status.as_u16(), 204);
    glance_error(&gus.get(&format!("{IMAGES}/{id}")), 404);
    assert_eq!(olga.get(&members).body_json()["members"], json!([]));

    // Only shared images have members; the schemas describe them.
    let private = create(&olga, json!({"name": "mine", "visibility": "private"}));
    let private_members = format!("{IMAGES}/{}/members", private["id"].as_str().unwrap());
    glance_error(
        &olga.post(&private_members, &json!({"member": guest_project})),
        403,
    );
    assert_eq!(
        admin_api.get("/image/v2/schemas/member").body_json()["name"],
        "member"
    );
    assert_eq!(
        admin_api.get("/image/v2/schemas/members").body_json()["name"],
        "members"
    );
}

#[test]
fn null_ids_import_info_and_metadefs_schemas_answer_as_glance() {
    let d = Daemon::start();
    let (api, _) = admin(&d);
    raw_image(&api, "present");
    // `/v2/images/` names no image (Glance's router matches exactly): not the list.
    glance_error(&api.get(&format!("{IMAGES}/")), 404);
    glance_error(&api.delete(&format!("{IMAGES}/")), 404);
    let info = api.get("/image/v2/info/import").body_json();
    assert_eq!(info["import-methods"]["value"], json!([]), "{info}");
    let ns = api.get("/image/v2/schemas/metadefs/namespace").body_json();
    assert_eq!(ns["name"], "namespace");
    assert!(ns["properties"]["namespace"].is_object(), "{ns}");
    glance_error(&api.get("/image/v2/schemas/metadefs/nonsense"), 404);
}

/// The daemon's peak resident memory (VmHWM), in bytes.
fn peak_rss(d: &Daemon) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap()
        .trim()
        .trim_end_matches(" kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

#[test]
fn uploads_and_downloads_stream_without_holding_the_image() {
    let d = Daemon::start();
    let (api, token) = admin(&d);
    let tmp = tempfile::tempdir().unwrap();
    let len = 96 << 20;
    let file = random_file(tmp.path(), "big", len);
    let id = raw_image(&api, "big");
    let before = peak_rss(&d);
    assert_eq!(upload(&d, &token, &id, &file, &[]).status.as_u16(), 204);
    let back = tmp.path().join("back");
    assert_eq!(download(&d, &token, &id, &back).status.as_u16(), 200);
    let grew = peak_rss(&d).saturating_sub(before);
    // Holding the image would take its 96 MiB at least; streaming takes a few chunks.
    assert!(grew < 32 << 20, "peak memory grew by {grew} bytes");
    assert_eq!(show(&api, &id)["checksum"], coreutils("md5sum", &file));
    assert_eq!(coreutils("md5sum", &back), coreutils("md5sum", &file));
}

#[test]
fn deactivated_images_are_downloaded_by_admins_only_until_reactivated() {
    let d = Daemon::start();
    let (api, token) = admin(&d);
    let tmp = tempfile::tempdir().unwrap();
    let file = random_file(tmp.path(), "disk", 64 * 1024);
    let public = create(
        &api,
        json!({"name": "pub", "disk_format": "raw", "container_format": "bare",
               "visibility": "public"}),
    );
    let id = public["id"].as_str().unwrap().to_owned();
    let action =
        |api: &Api, what: &str| api.post(&format!("{IMAGES}/{id}/actions/{what}"), &json!({}));
    // Only an active image can be deactivated.
    glance_error(&action(&api, "deactivate"), 403);
    assert_eq!(upload(&d, &token, &id, &file, &[]).status.as_u16(), 204);

    d.make_member("alice", "alice-pw", "demo");
    let alice_token = d.login("alice", "alice-pw", Some("demo"));
    let alice = d.tcp(Some(&alice_token));
    // Glance's default policy: the owner's members and admins; alice's project is not the owner.
    glance_error(&action(&alice, "deactivate"), 403);
    assert_eq!(show(&api, &id)["status"], "active");

    for _ in 0..2 {
        let r = action(&api, "deactivate");
        assert_eq!(r.status.as_u16(), 204, "{}", r.text());
    }
    assert_eq!(show(&api, &id)["status"], "deactivated");
    let listed = api.get(&format!("{IMAGES}?status=deactivated")).body_json();
    assert_eq!(listed["images"][0]["id"], id.as_str(), "{listed}");
    let out = tmp.path().join("out");
    let r = download(&d, &alice_token, &id, &out);
    assert_eq!(r.status.as_u16(), 403);
    let r = download(&d, &token, &id, &out);
    assert_eq!(r.status.as_u16(), 200);
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&file).unwrap());
    glance_error(&action(&alice, "reactivate"), 403);

    for _ in 0..2 {
        assert_eq!(action(&api, "reactivate").status.as_u16(), 204);
    }
    assert_eq!(show(&api, &id)["status"], "active");
    let r = download(&d, &alice_token, &id, &out);
    assert_eq!(r.status.as_u16(), 200);
    glance_error(&action(&api, "nonsense"), 404);
    let missing = format!("{IMAGES}/6ce3b7a4-46f1-4f0a-9d7e-1b1a2c3d4e5f/actions/deactivate");
    glance_error(&api.post(&missing, &json!({})), 404);
}
