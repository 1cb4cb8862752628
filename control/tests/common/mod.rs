//! A real outpostd process on a temporary state directory, with clients for its unix socket
//! and TCP listener. Dropping a [`Daemon`] kills the process; the directory goes with it.

#![allow(dead_code)]

pub mod cli;
pub mod guestctl;
pub mod guests;
pub mod in_process;
pub mod openapi_doc;
pub mod openstack;

use hyper::Method;
use outpost_control::client::{ApiResponse, Client, Endpoint};
use serde_json::{json, Value};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ADMIN_PASSWORD: &str = "admin-test-password";

pub struct Daemon {
    pub dir: tempfile::TempDir,
    pub addr: SocketAddr,
    child: Option<Child>,
    config: Option<PathBuf>,
    env_password: Option<String>,
}

/// A port that was free a moment ago (the kernel does not hand it out again right away).
pub fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

impl Daemon {
    /// outpostd with the embedded defaults (but leaving the host's networking alone, see
    /// [`Daemon::start_with`]), admin password from the environment.
    pub fn start() -> Daemon {
        Daemon::start_with(Some(""), Some(ADMIN_PASSWORD))
    }

    /// `config`: TOML written to a file and passed with --config; None: no file at all.
    /// Unless the TOML has a `[network]` section, the daemon is told not to manage the
    /// host's networking (`manage_host = false`): the suite's many daemons run side by side,
    /// and only the networking tests, one at a time, may own bridges, taps and nftables.
    pub fn start_with(config: Option<&str>, password: Option<&str>) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let config = config.map(|text| {
            let p = dir.path().join("outpostd.toml");
            let mut text = text.to_owned();
            if !text.contains("[network]") {
                text.push_str("\n[network]\nmanage_host = false\n");
            }
            std::fs::write(&p, text).unwrap();
            p
        });
        let mut d = Daemon {
            dir,
            addr: free_port(),
            child: None,
            config,
            env_password: password.map(str::to_owned),
        };
        d.spawn();
        d
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn socket(&self) -> PathBuf {
        self.state_dir().join("outpostd.sock")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("outpostd.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().expect("running").id() as i32
    }

    /// Starts the process (again) on the same state directory and waits until it serves.
    pub fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("outpostd.log"))
            .unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_outpostd"));
        cmd.arg("--state-dir")
            .arg(self.state_dir())
            .arg("--listen")
            .arg(self.addr.to_string())
            .env_remove("OUTPOST_ADMIN_PASSWORD")
            .env("OUTPOST_LOG", "debug")
            .stdout(Stdio::null())
            .stderr(log);
        if let Some(c) = &self.config {
            cmd.arg("--config").arg(c);
        }
        if let Some(p) = &self.env_password {
            cmd.env("OUTPOST_ADMIN_PASSWORD", p);
        }
        self.child = Some(cmd.spawn().unwrap());
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("outpostd exited early ({status}):\n{}", self.log());
            }
            let unix_up = std::os::unix::net::UnixStream::connect(self.socket()).is_ok();
            if unix_up && std::net::TcpStream::connect(self.addr).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "outpostd did not come up:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill() only sends a signal to our own child's pid.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    /// Waits for the process to exit; returns its exit code (None if killed by a signal).
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "outpostd did not exit:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        self.wait(Duration::from_secs(10));
    }

    pub fn unix(&self) -> Api {
        Api::new(Endpoint::Unix(self.socket()), None)
    }

    pub fn tcp(&self, token: Option<&str>) -> Api {
        Api::new(Endpoint::Tcp(self.addr), token.map(str::to_owned))
    }

    /// A project-scoped token for `user` in `project` (by names, domain Default).
    pub fn login(&self, user: &str, password: &str, project: Option<&str>) -> String {
        let r = self.tcp(None).post(
            "/identity/v3/auth/tokens",
            &auth_body(user, password, project),
        );
        assert_eq!(r.status.as_u16(), 201, "login as {user}: {}", r.text());
        r.header("x-subject-token").unwrap().to_owned()
    }

    /// Makes project `project` and a user in it with role `member` (over the socket).
    pub fn make_member(&self, user: &str, password: &str, project: &str) -> (String, String) {
        let api = self.unix();
        let p = api.post(
            "/identity/v3/projects",
            &json!({"project": {"name": project}}),
        );
        assert_eq!(p.status.as_u16(), 201, "{}", p.text());
        let pid = p.body_json()["project"]["id"].as_str().unwrap().to_owned();
        let u = api.post(
            "/identity/v3/users",
            &json!({"user": {"name": user, "password": password, "default_project_id": pid}}),
        );
        assert_eq!(u.status.as_u16(), 201, "{}", u.text());
        let uid = u.body_json()["user"]["id"].as_str().unwrap().to_owned();
        let roles = api.get("/identity/v3/roles?name=member").body_json();
        let rid = roles["roles"][0]["id"].as_str().unwrap().to_owned();
        let g = api.put(
            &format!("/identity/v3/projects/{pid}/users/{uid}/roles/{rid}"),
            None,
        );
        assert_eq!(g.status.as_u16(), 204, "{}", g.text());
        (pid, uid)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // A failed test shows what the daemon said: on CI the state directory is gone after.
        if std::thread::panicking() {
            let log = self.log();
            let tail = log.len().saturating_sub(64 * 1024);
            let tail = log.get(tail..).unwrap_or(&log);
            eprintln!("--- outpostd log (last 64 KiB) ---\n{tail}\n--- end of outpostd log ---");
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub fn auth_body(user: &str, password: &str, project: Option<&str>) -> Value {
    let mut auth = json!({
        "identity": {
            "methods": ["password"],
            "password": {"user": {"name": user, "domain": {"name": "Default"}, "password": password}}
        }
    });
    if let Some(p) = project {
        auth["scope"] = json!({"project": {"name": p, "domain": {"id": "default"}}});
    }
    json!({ "auth": auth })
}

/// A client with optional token and extra headers; panics on transport errors only.
pub struct Api {
    client: Client,
    token: Option<String>,
    pub headers: Vec<(String, String)>,
}

pub trait Text {
    fn text(&self) -> String;
    fn body_json(&self) -> Value;
}

impl Text for ApiResponse {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    fn body_json(&self) -> Value {
        ApiResponse::json(self).unwrap_or_else(|e| panic!("{e}: {}", self.text()))
    }
}

impl Api {
    fn new(endpoint: Endpoint, token: Option<String>) -> Api {
        Api {
            client: Client::new(endpoint).unwrap(),
            token,
            headers: Vec::new(),
        }
    }

    pub fn with_header(mut self, k: &str, v: &str) -> Api {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    pub fn send(&self, method: Method, path: &str, body: Option<&Value>) -> ApiResponse {
        self.send_raw_headers(method, path, body, &[])
    }

    pub fn send_raw_headers(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        extra: &[(&str, &str)],
    ) -> ApiResponse {
        let mut h: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if let Some(t) = &self.token {
            h.push(("X-Auth-Token", t));
        }
        h.extend_from_slice(extra);
        self.client.request(method, path, &h, body).unwrap()
    }

    pub fn get(&self, path: &str) -> ApiResponse {
        self.send(Method::GET, path, None)
    }
    pub fn post(&self, path: &str, body: &Value) -> ApiResponse {
        self.send(Method::POST, path, Some(body))
    }
    pub fn put(&self, path: &str, body: Option<&Value>) -> ApiResponse {
        self.send(Method::PUT, path, body)
    }
    pub fn delete(&self, path: &str) -> ApiResponse {
        self.send(Method::DELETE, path, None)
    }
}

/// Sends raw bytes (a body that is not JSON, or a request split in time) over TCP and returns
/// the status code and body.
pub fn raw_http(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.write_all(request).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    parse_response(&out)
}

pub fn parse_response(out: &str) -> (u16, String) {
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {out:?}"));
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

pub fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}
