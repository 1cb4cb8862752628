//! The stock `openstack` client (from the venv [`super::openstack_venv`] names) run against
//! a real outpostd's TCP listener as one user, with nothing from the host's environment.

use super::{openstack_venv, Daemon};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// Runs `openstack` as one user of one project.
pub struct Openstack {
    bin: PathBuf,
    auth_url: String,
    user: String,
    password: String,
    project: String,
    home: tempfile::TempDir,
}

impl Openstack {
    pub fn new(d: &Daemon, user: &str, password: &str, project: &str) -> Openstack {
        let bin = openstack_venv().join("bin/openstack");
        Openstack {
            bin,
            auth_url: format!("http://{}/identity/v3", d.addr),
            user: user.into(),
            password: password.into(),
            project: project.into(),
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `openstack ARGS`; Ok(stdout) or Err(stderr).
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(["--os-auth-url", &self.auth_url])
            .args(["--os-identity-api-version", "3"])
            .args(["--os-username", &self.user, "--os-password", &self.password])
            .args(["--os-project-name", &self.project])
            .args([
                "--os-user-domain-name",
                "Default",
                "--os-project-domain-name",
                "Default",
            ])
            .args(["--os-region-name", "RegionOne"])
            .args(args)
            // No clouds.yaml or OS_* from the host may leak in.
            .env_clear()
            .env("HOME", self.home.path())
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        let out = self
            .run(&all)
            .unwrap_or_else(|e| panic!("openstack {args:?}: {e}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}
