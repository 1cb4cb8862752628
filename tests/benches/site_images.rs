//! Image copies between the boxes of a site on the rig (tests/src/rig.rs): prints
//! min/median/max, asserts nothing. `cargo bench -p outpost-tests --bench site_images` (root;
//! it builds network namespaces).
//!
//! - the underlay's own rate: the same number of bytes over one TCP connection from box 1's
//!   namespace to box 2's (Python's socket.sendfile on one side, reads into nothing on the
//!   other), the ceiling any copy can reach;
//! - an image's copy: uploaded through box 1, the time from the end of the upload until box 2
//!   has recorded its verified copy (its pull from box 1 over HTTP, the checksums checked on
//!   arrival, the etcd transaction), as a rate, with the background pull's limit lifted;
//! - the same bytes fetched from box 1's Glance API by curl in box 2's namespace (the HTTP
//!   path alone, no verification).

use std::path::Path;
use std::time::{Duration, Instant};

use outpost_tests::eventually;
use outpost_tests::rig::{BoxNode, Rig, API_PORT};
use serde_json::json;

const RUNS: usize = 5;
const MIB: usize = 128;

fn report(what: &str, mut mbps: Vec<f64>) {
    mbps.sort_by(f64::total_cmp);
    let n = mbps.len();
    println!(
        "{what}: min {:.0} / median {:.0} / max {:.0} MiB/s ({n} runs of {MIB} MiB)",
        mbps[0],
        mbps[n / 2],
        mbps[n - 1]
    );
}

fn rate(elapsed: Duration) -> f64 {
    MIB as f64 / elapsed.as_secs_f64()
}

/// One TCP transfer of `file` from `from`'s namespace to `to`'s, timed on the receiver.
fn underlay_once(from: &BoxNode, to: &BoxNode, file: &Path, port: u16) -> Duration {
    let sender = format!(
        "import socket\n\
         s = socket.create_server(('{addr}', {port}))\n\
         c, _ = s.accept()\n\
         with open('{file}', 'rb') as f:\n    c.sendfile(f)\n\
         c.close()\n",
        addr = from.addr,
        file = file.display()
    );
    let mut server = std::process::Command::new("ip")
        .args(["netns", "exec", &from.netns, "python3", "-c", &sender])
        .spawn()
        .expect("the sender starts");
    let receiver = format!(
        "import socket, time\n\
         for _ in range(100):\n\
         \x20   try:\n\
         \x20       c = socket.create_connection(('{addr}', {port})); break\n\
         \x20   except OSError: time.sleep(0.05)\n\
         t = time.monotonic(); n = 0\n\
         while True:\n\
         \x20   b = c.recv(1 << 20)\n\
         \x20   if not b: break\n\
         \x20   n += len(b)\n\
         print(time.monotonic() - t, n)\n",
        addr = from.addr
    );
    let out = to.exec(&["python3", "-c", &receiver]);
    let _ = server.wait();
    let text = String::from_utf8_lossy(&out.stdout);
    let secs: f64 = text
        .split_whitespace()
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "the receiver's report: {text} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    Duration::from_secs_f64(secs)
}

fn main() {
    // Background pulls unthrottled: the figure is the copy path's, not the limit's.
    let rig = Rig::site_with(3, "image_pull_mbps = 100000\n");
    let data: Vec<u8> = (0..MIB * 1024 * 1024).map(|n| (n % 251) as u8).collect();
    let file = rig.boxes[0].dir.join("bench.raw");
    std::fs::write(&file, &data).expect("write the image's data");
    let (b1, b2) = (&rig.boxes[0], &rig.boxes[1]);

    let underlay: Vec<f64> = (0..RUNS)
        .map(|i| rate(underlay_once(b1, b2, &file, 9000 + i as u16)))
        .collect();

    let token = admin_token(b1);
    let mut copies = Vec::new();
    let mut http = Vec::new();
    for run in 0..RUNS {
        let (code, body) = b1.api(
            "POST",
            "/image/v2/images",
            Some(&json!({"name": format!("bench{run}"), "disk_format": "raw",
                         "container_format": "bare"})),
            "2.1",
        );
        assert_eq!(code, 201, "{body}");
        let id = body["id"].as_str().expect("an image id").to_owned();
        b1.upload_image_data(&id, &file);
        let t0 = Instant::now();
        let key = format!("/outpost/v1/image-copies/{id}/{}", b2.name);
        eventually(300, "box 2's verified copy", || {
            let out = b1.etcdctl(&["get", "--keys-only", &key]);
            (!out.stdout.is_empty()).then_some(())
        });
        copies.push(rate(t0.elapsed()));

        let t0 = Instant::now();
        let url = format!("http://{}:{API_PORT}/image/v2/images/{id}/file", b1.addr);
        let out = b2.exec(&[
            "curl",
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "-H",
            &format!("X-Auth-Token: {token}"),
            &url,
        ]);
        http.push(rate(t0.elapsed()));
        let said = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(said, "200", "the download");
    }
    report("underlay, one TCP connection box1 -> box2", underlay);
    report("image copy box1 -> box2 (pull, verify, record)", copies);
    report("image download from box1's Glance API in box2", http);
}

/// A token for the site's admin (the password box 1 made), through box `b`'s Keystone.
fn admin_token(b: &BoxNode) -> String {
    let password = std::fs::read_to_string(b.state_dir().join("admin-password"))
        .expect("box 1 wrote the admin's password");
    let reply = b.http(
        "POST",
        "/identity/v3/auth/tokens",
        &[],
        Some(
            &json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": password.trim()}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}),
        ),
    );
    reply
        .header("x-subject-token")
        .unwrap_or_else(|| panic!("a token: {}", reply.code))
        .to_owned()
}
