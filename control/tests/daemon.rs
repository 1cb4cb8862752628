//! outpostd as a process: start with no configuration, files and modes in the state
//! directory, one daemon per directory, SIGTERM drains and removes the socket, kill -9 and
//! restart keeps state.

mod common;

use common::{mode, parse_response, Daemon, Text, ADMIN_PASSWORD};
use serde_json::json;
use std::io::{Read, Write};
use std::time::Duration;

#[test]
fn starts_without_config_and_generates_an_admin_password() {
    let d = Daemon::start_with(None, None);
    let state = d.state_dir();
    assert_eq!(mode(&state), 0o700);
    assert_eq!(mode(&d.socket()), 0o660);
    let pw_file = state.join("admin-password");
    assert_eq!(mode(&pw_file), 0o600);
    let password = std::fs::read_to_string(&pw_file).unwrap();
    let password = password.trim();
    assert!(password.len() >= 20, "{password:?}");
    // The generated password works; the token is admin in project admin.
    let token = d.login("admin", password, Some("admin"));
    let v = d.tcp(Some(&token)).get("/identity/v3/auth/tokens");
    assert_eq!(v.status.as_u16(), 400, "no X-Subject-Token: {}", v.text());
    let api = d.tcp(Some(&token));
    let v = api.send_raw_headers(
        hyper::Method::GET,
        "/identity/v3/auth/tokens",
        None,
        &[("X-Subject-Token", &token)],
    );
    let roles: Vec<_> = v.body_json()["token"]["roles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(roles, ["admin", "member", "reader"]);
}

#[test]
fn the_environment_password_is_used_and_no_file_written() {
    let d = Daemon::start();
    assert!(!d.state_dir().join("admin-password").exists());
    d.login("admin", ADMIN_PASSWORD, Some("admin"));
}

#[test]
fn a_second_daemon_on_the_same_state_dir_is_refused() {
    let d = Daemon::start();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outpostd"))
        .arg("--state-dir")
        .arg(d.state_dir())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("another outpostd already uses"), "{err}");
    // The first one still serves.
    assert_eq!(d.unix().get("/compute/v2.1/flavors").status.as_u16(), 200);
}

#[test]
fn a_bad_config_file_is_refused_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, "[api]\nlisen = \"127.0.0.1:1\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outpostd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--state-dir")
        .arg(dir.path().join("s"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lisen"), "{err}");
}

#[test]
fn sigterm_finishes_the_request_in_flight_then_removes_the_socket() {
    let mut d = Daemon::start();
    let token = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    let body =
        json!({"flavor": {"name": "inflight", "ram": 64, "vcpus": 1, "disk": 0}}).to_string();
    let head = format!(
        "POST /compute/v2.1/flavors HTTP/1.1\r\nHost: x\r\nX-Auth-Token: {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    // Headers and half the body now, SIGTERM, then the rest: the request must still be served.
    let mut s = std::net::TcpStream::connect(d.addr).unwrap();
    s.write_all(head.as_bytes()).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    s.write_all(first.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    d.signal(libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    // Listeners are closed: new connections are refused.
    assert!(std::net::TcpStream::connect(d.addr).is_err());
    s.write_all(rest.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (status, reply) = parse_response(&out);
    assert_eq!(status, 200, "{reply}");
    assert_eq!(d.wait(Duration::from_secs(20)), Some(0));
    assert!(!d.socket().exists());
    // What it did before stopping was committed.
    d.spawn();
    let f = d.unix().get("/compute/v2.1/flavors/detail");
    assert!(f.text().contains("inflight"));
}

#[test]
fn kill_dash_nine_and_restart_keeps_flavors_and_users() {
    let mut d = Daemon::start();
    let api = d.unix();
    let made = api.post(
        "/compute/v2.1/flavors",
        &json!({"flavor": {"name": "survivor", "id": "s1", "ram": 128, "vcpus": 1, "disk": 1}}),
    );
    assert_eq!(made.status.as_u16(), 200, "{}", made.text());
    let spec = api.post(
        "/compute/v2.1/flavors/s1/os-extra_specs",
        &json!({"extra_specs": {"hw:cpu_policy": "dedicated"}}),
    );
    assert_eq!(spec.status.as_u16(), 200);
    d.make_member("alice", "alice-pw", "demo");
    d.kill9();
    // The socket file is left behind by a killed daemon; the next one replaces it.
    assert!(d.socket().exists());
    d.spawn();
    let f = d
        .unix()
        .with_header("OpenStack-API-Version", "compute 2.61")
        .get("/compute/v2.1/flavors/s1");
    assert_eq!(f.status.as_u16(), 200, "{}", f.text());
    assert_eq!(
        f.body_json()["flavor"]["extra_specs"]["hw:cpu_policy"],
        "dedicated"
    );
    // alice can still log in to her project.
    d.login("alice", "alice-pw", Some("demo"));
    let users = d.unix().get("/identity/v3/users?name=alice").body_json();
    assert_eq!(users["users"].as_array().unwrap().len(), 1);
}

/// A daemon started by hand, killed and reaped when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A listener reachable from off the box speaks TLS with a certificate made at the first
/// start and kept; its fingerprint is in the log; plain HTTP gets no answer there; and plain
/// HTTP off the box cannot be configured.
#[test]
fn an_off_box_listener_speaks_tls_with_a_kept_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("s");
    let port = common::free_port().port();
    let log_path = dir.path().join("outpostd.log");
    // The host's networking is left alone: tests run side by side.
    let quiet = dir.path().join("quiet.toml");
    std::fs::write(&quiet, "[network]\nmanage_host = false\n").unwrap();
    let start = || {
        let log = std::fs::File::create(&log_path).unwrap();
        std::process::Command::new(env!("CARGO_BIN_EXE_outpostd"))
            .arg("--state-dir")
            .arg(&state)
            .arg("--listen")
            .arg(format!("0.0.0.0:{port}"))
            .arg("--config")
            .arg(&quiet)
            .env("OUTPOST_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .stderr(log)
            .spawn()
            .unwrap()
    };
    let cert = state.join("tls/cert.pem");
    let curl = |scheme: &str| {
        std::process::Command::new("curl")
            .args(["-s", "--max-time", "5", "--cacert"])
            .arg(&cert)
            .arg(format!("{scheme}://localhost:{port}/identity/v3"))
            .output()
            .unwrap()
    };
    let fingerprint_logged = || {
        let log = std::fs::read_to_string(&log_path).unwrap_or_default();
        log.split("SHA-256 fingerprint ")
            .nth(1)
            .map(|rest| rest.split_whitespace().next().unwrap_or("").to_owned())
    };
    let serve_once = || {
        // Killed and reaped however this ends, a failed assertion included.
        let child = Reaped(start());
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let answer = loop {
            let out = curl("https");
            if out.status.success() {
                break out;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no TLS answer: {}\n{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let doc: serde_json::Value = serde_json::from_slice(&answer.stdout).unwrap();
        assert_eq!(doc["version"]["id"], "v3.14", "{doc}");
        let link = doc["version"]["links"][0]["href"].as_str().unwrap_or("");
        assert!(link.starts_with("https://"), "{link}");
        let plain = curl("http");
        assert!(
            !plain.status.success() || plain.stdout.is_empty(),
            "plain HTTP was answered on a TLS listener"
        );
        let logged = fingerprint_logged().expect("the log names the certificate's fingerprint");
        drop(child);
        logged
    };
    let first = serve_once();
    assert_eq!(mode(&state.join("tls/key.pem")), 0o600);
    // The fingerprint the log gives is the certificate's, as openssl computes it.
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let openssl = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        openssl.trim().rsplit('=').next(),
        Some(first.as_str()),
        "{openssl}"
    );
    // A restart keeps the certificate.
    assert_eq!(serve_once(), first);

    // Plain HTTP off the box is refused at start, with the reason.
    let cfg = dir.path().join("plain.toml");
    std::fs::write(&cfg, "[api]\ntls = false\n[network]\nmanage_host = false\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outpostd"))
        .arg("--config")
        .arg(&cfg)
        .arg("--state-dir")
        .arg(dir.path().join("s2"))
        .arg("--listen")
        .arg(format!("0.0.0.0:{port}"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("loopback"), "{err}");
}
