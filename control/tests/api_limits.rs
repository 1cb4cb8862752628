//! An API that holds under abuse, against a real outpostd:
//!
//! - Keystone's lockout: after `lockout_failure_attempts` failed logins a user is locked out
//!   (401, Keystone's message) even with the right password, until `lockout_duration` passes;
//! - an address with too many failed logins gets 429 without a password check, while another
//!   address logs in;
//! - a protected route answers 401 before reading a body it was promised (the body never
//!   comes), and an idle connection is closed by the server;
//! - with 2,000 idle connections open and 1,000 bad logins under way, a token request and a
//!   server list answer within a second on the unix socket and over TCP.

mod common;

use common::{auth_body, parse_response, Daemon, Text, ADMIN_PASSWORD};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

/// One request over TCP through curl from local address `from` (127.0.0.0/8 is all ours):
/// (status, body).
fn curl_from(
    from: &str,
    d: &Daemon,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "-i",
        "--max-time",
        "10",
        "--interface",
        from,
        "-X",
        method,
    ])
    .args(["-H", "Content-Type: application/json"]);
    if let Some(b) = body {
        cmd.args(["-d", &b.to_string()]);
    }
    let out = cmd
        .arg(format!("http://{}{path}", d.addr))
        .output()
        .expect("curl runs");
    parse_response(&String::from_utf8_lossy(&out.stdout))
}

/// A login over a raw TCP connection from 127.0.0.1: its status.
fn raw_login(addr: SocketAddr, user: &str, password: &str) -> u16 {
    let body = auth_body(user, password, None).to_string();
    let request = format!(
        "POST /identity/v3/auth/tokens HTTP/1.1\r\nHost: outpost\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let Ok(mut s) = TcpStream::connect(addr) else {
        return 0;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    if s.write_all(request.as_bytes()).is_err() {
        return 0;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_user_is_locked_out_after_failed_logins_until_the_lockout_passes() {
    let d = Daemon::start_with(
        Some("[identity]\nlockout_failure_attempts = 3\nlockout_duration = 3\n"),
        Some(ADMIN_PASSWORD),
    );
    d.make_member("alice", "alice-secret", "p1");
    let login = |password: &str| {
        d.tcp(None).post(
            "/identity/v3/auth/tokens",
            &auth_body("alice", password, None),
        )
    };
    for _ in 0..3 {
        assert_eq!(login("wrong").status.as_u16(), 401);
    }
    let locked = login("alice-secret");
    assert_eq!(locked.status.as_u16(), 401, "{}", locked.text());
    assert!(
        locked.text().contains("The account is locked for user"),
        "{}",
        locked.text()
    );
    // Another user is not locked; alice is once the duration has passed.
    d.login("admin", ADMIN_PASSWORD, Some("admin"));
    std::thread::sleep(Duration::from_millis(3200));
    assert_eq!(login("alice-secret").status.as_u16(), 201);
    // The success reset her count: two failures do not lock her.
    for _ in 0..2 {
        assert_eq!(login("wrong").status.as_u16(), 401);
    }
    assert_eq!(login("alice-secret").status.as_u16(), 201);
}

#[test]
fn an_address_with_too_many_failed_logins_is_refused_while_another_logs_in() {
    let d = Daemon::start_with(
        Some("[identity]\nfailed_logins_per_address = 5\n"),
        Some(ADMIN_PASSWORD),
    );
    let good = auth_body("admin", ADMIN_PASSWORD, Some("admin"));
    let bad = auth_body("nobody", "guess", None);
    for _ in 0..5 {
        let (code, _) = curl_from(
            "127.0.0.5",
            &d,
            "POST",
            "/identity/v3/auth/tokens",
            Some(&bad),
        );
        assert_eq!(code, 401);
    }
    // The guesser's address is refused even with the right password, before any check.
    let (code, body) = curl_from(
        "127.0.0.5",
        &d,
        "POST",
        "/identity/v3/auth/tokens",
        Some(&good),
    );
    assert_eq!(code, 429, "{body}");
    assert!(body.contains("Too many failed logins"), "{body}");
    let (code, body) = curl_from(
        "127.0.0.6",
        &d,
        "POST",
        "/identity/v3/auth/tokens",
        Some(&good),
    );
    assert_eq!(code, 201, "{body}");
    // The unix socket is the operator's, with no address to count.
    let r = d.unix().post("/identity/v3/auth/tokens", &good);
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
}

#[test]
fn the_token_is_checked_before_the_body_and_idle_connections_are_closed() {
    let d = Daemon::start_with(None, Some(ADMIN_PASSWORD));
    // A create with a megabyte promised and none sent: 401 at once.
    let mut s = TcpStream::connect(d.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(
        b"POST /compute/v2.1/servers HTTP/1.1\r\nHost: outpost\r\n\
          Content-Type: application/json\r\nContent-Length: 1000000\r\n\r\n",
    )
    .unwrap();
    let t0 = Instant::now();
    let mut head = [0u8; 512];
    let n = s.read(&mut head).expect("an answer before the body");
    let (code, _) = parse_response(&String::from_utf8_lossy(&head[..n]));
    assert_eq!(code, 401);
    eprintln!("401 before the body after {:?}", t0.elapsed());

    // A connection that sends nothing is closed by the server (header read timeout, 10 s).
    let mut idle = TcpStream::connect(d.addr).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let t0 = Instant::now();
    let mut byte = [0u8; 1];
    let n = idle.read(&mut byte).unwrap_or(0);
    assert_eq!(n, 0, "the server closed the idle connection");
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_secs(8) && waited < Duration::from_secs(25),
        "closed after {waited:?}"
    );
}

#[test]
fn the_api_answers_with_two_thousand_idle_connections_and_a_thousand_bad_logins() {
    let d = Daemon::start_with(None, Some(ADMIN_PASSWORD));
    let token = d.login("admin", ADMIN_PASSWORD, Some("admin"));
    let idle: Vec<TcpStream> = (0..2000)
        .map(|_| TcpStream::connect(d.addr).expect("an idle connection"))
        .collect();
    let addr = d.addr;
    let attackers: Vec<_> = (0..20)
        .map(|t| {
            std::thread::spawn(move || {
                (0..50)
                    .map(|n| raw_login(addr, &format!("guess{t}-{n}"), "wrong"))
                    .collect::<Vec<u16>>()
            })
        })
        .collect();
    // Let the flood start, then ask as the operator and as a client from another address.
    std::thread::sleep(Duration::from_millis(300));
    let good = auth_body("admin", ADMIN_PASSWORD, Some("admin"));
    let timed = |what: &str, f: &dyn Fn() -> u16, want: u16| {
        let t0 = Instant::now();
        let code = f();
        let took = t0.elapsed();
        eprintln!("{what}: {code} in {took:?}");
        assert_eq!(code, want, "{what}");
        assert!(took < Duration::from_secs(1), "{what} took {took:?}");
    };
    timed(
        "token over the unix socket",
        &|| {
            d.unix()
                .post("/identity/v3/auth/tokens", &good)
                .status
                .as_u16()
        },
        201,
    );
    timed(
        "server list over the unix socket",
        &|| d.unix().get("/compute/v2.1/servers").status.as_u16(),
        200,
    );
    timed(
        "token over TCP from another address",
        &|| {
            curl_from(
                "127.0.0.9",
                &d,
                "POST",
                "/identity/v3/auth/tokens",
                Some(&good),
            )
            .0
        },
        201,
    );
    timed(
        "server list over TCP",
        &|| {
            d.tcp(Some(&token))
                .get("/compute/v2.1/servers")
                .status
                .as_u16()
        },
        200,
    );
    let codes: Vec<u16> = attackers
        .into_iter()
        .flat_map(|t| t.join().expect("an attacker thread"))
        .collect();
    assert_eq!(codes.len(), 1000);
    // Every bad login was refused: 401 while its address had failures left, then 429.
    assert!(codes.iter().all(|c| *c == 401 || *c == 429), "{codes:?}");
    assert!(codes.contains(&429), "the address was throttled");
    drop(idle);
}
