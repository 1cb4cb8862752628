//! A guest run as a real `outpost-vmm` process, its serial console captured to a file.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::net::TapNetns;
use crate::vmm_bin;

pub struct Guest {
    child: Child,
    pub console: PathBuf,
    pub stderr: PathBuf,
    pub api_sock: Option<PathBuf>,
    status: Option<ExitStatus>,
}

/// How the monitor is started.
pub enum Mode<'a> {
    /// `--no-api --config-file`: the whole configuration up front.
    ConfigFile(&'a serde_json::Value),
    /// `--api-sock`: configured afterwards over the socket.
    Api,
    /// Both: boots from the file and keeps the API for actions (Firecracker allows this).
    ConfigFileAndApi(&'a serde_json::Value),
}

impl Guest {
    /// Starts the monitor in `work` (inside `netns` when given).
    pub fn spawn(work: &Path, mode: Mode, netns: Option<&TapNetns>) -> Guest {
        Self::spawn_with_env(work, mode, netns, &[])
    }

    /// As [`Guest::spawn`], with extra environment variables for the monitor.
    pub fn spawn_with_env(
        work: &Path,
        mode: Mode,
        netns: Option<&TapNetns>,
        env: &[(&str, &str)],
    ) -> Guest {
        Self::spawn_with(work, mode, netns, env, &[])
    }

    /// As [`Guest::spawn_with_env`], with extra arguments for the monitor.
    pub fn spawn_with(
        work: &Path,
        mode: Mode,
        netns: Option<&TapNetns>,
        env: &[(&str, &str)],
        args: &[&str],
    ) -> Guest {
        let console = work.join("console.log");
        let stderr = work.join("vmm.stderr");
        let mut cmd = match netns {
            Some(n) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &n.netns]).arg(vmm_bin());
                c
            }
            None => Command::new(vmm_bin()),
        };
        let mut api_sock = None;
        match mode {
            Mode::ConfigFile(cfg) => {
                let path = work.join("vm.json");
                std::fs::write(&path, serde_json::to_vec_pretty(cfg).expect("json"))
                    .expect("write config");
                cmd.arg("--no-api").arg("--config-file").arg(path);
            }
            Mode::Api => {
                let sock = work.join("api.sock");
                cmd.arg("--api-sock").arg(&sock);
                api_sock = Some(sock);
            }
            Mode::ConfigFileAndApi(cfg) => {
                let path = work.join("vm.json");
                std::fs::write(&path, serde_json::to_vec_pretty(cfg).expect("json"))
                    .expect("write config");
                let sock = work.join("api.sock");
                cmd.arg("--config-file")
                    .arg(path)
                    .arg("--api-sock")
                    .arg(&sock);
                api_sock = Some(sock);
            }
        }
        cmd.envs(env.iter().copied())
            .args(args)
            .args(["--log-level", "Info"])
            .stdin(Stdio::null())
            .stdout(File::create(&console).expect("console file"))
            .stderr(File::create(&stderr).expect("stderr file"));
        let child = cmd.spawn().expect("spawn outpost-vmm");
        Guest {
            child,
            console,
            stderr,
            api_sock,
            status: None,
        }
    }

    /// The monitor's pid (the process `ip netns exec` became, when in a namespace).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn console_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.console).unwrap_or_default()).into_owned()
    }

    fn diagnostics(&self) -> String {
        let c = self.console_text();
        let tail: String = c
            .chars()
            .rev()
            .take(3000)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let e = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("--- console (tail) ---\n{tail}\n--- monitor stderr ---\n{e}")
    }

    /// Waits until the console contains `needle`; panics with the console on timeout or if
    /// the monitor exits first.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let t0 = Instant::now();
        loop {
            let c = self.console_text();
            if c.contains(needle) {
                return c;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                self.status = Some(st);
                // One last read: the line may have landed just before the exit.
                let c = self.console_text();
                if c.contains(needle) {
                    return c;
                }
                panic!(
                    "monitor exited ({st}) before `{needle}`\n{}",
                    self.diagnostics()
                );
            }
            if t0.elapsed() > timeout {
                panic!("no `{needle}` after {timeout:?}\n{}", self.diagnostics());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Waits for the monitor process to end.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        if let Some(st) = self.status {
            return st;
        }
        let t0 = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                self.status = Some(st);
                return st;
            }
            if t0.elapsed() > timeout {
                panic!(
                    "monitor still running after {timeout:?}\n{}",
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    /// Sends an HTTP request to the monitor's API socket with curl; returns (status, body).
    pub fn api(&self, method: &str, path: &str, body: Option<&serde_json::Value>) -> (u16, String) {
        let sock = self.api_sock.as_ref().expect("guest started in API mode");
        api_request(sock, method, path, body)
    }
}

/// One HTTP request over a unix socket (curl), returning (status, body).
pub fn api_request(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "-S", "--max-time", "60", "--unix-socket"])
        .arg(sock)
        .args(["-X", method, "-w", "\n%{http_code}"])
        .arg(format!("http://localhost{path}"));
    if let Some(b) = body {
        cmd.args(["-H", "Content-Type: application/json", "-d"])
            .arg(b.to_string());
    }
    let out = cmd.output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_string())
}

impl Drop for Guest {
    fn drop(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(s) = &self.api_sock {
            let _ = std::fs::remove_file(s);
        }
    }
}
