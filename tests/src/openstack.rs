//! The stock `openstack` client (python-openstackclient, from the venv
//! scripts/openstack-venv.sh builds) run as one user against an outpostd's TCP listener, with
//! nothing from the host's environment.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// The venv with the stock OpenStack client and SDK (control/tests/openstack-requirements.txt):
/// `OUTPOST_OPENSTACK_VENV`, which scripts/test.sh sets after building it with
/// scripts/openstack-venv.sh, else that script's `current` entry in the cache. A missing venv
/// fails the test, with the command that makes it: these tests are part of the default suite.
pub fn openstack_venv() -> PathBuf {
    let venv = match std::env::var_os("OUTPOST_OPENSTACK_VENV") {
        Some(v) => PathBuf::from(v),
        None => std::env::var_os("OUTPOST_CACHE_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/outpost"))
            .join("openstack-venv/current"),
    };
    for tool in ["bin/openstack", "bin/python"] {
        assert!(
            venv.join(tool).exists(),
            "{:?} is missing: run scripts/openstack-venv.sh (scripts/test.sh does) to build the \
             OpenStack client venv, or point OUTPOST_OPENSTACK_VENV at one",
            venv.join(tool)
        );
    }
    venv
}

/// `openstack` as one user of one project of the Default domain.
pub struct Openstack {
    bin: PathBuf,
    auth_url: String,
    user: String,
    password: String,
    project: String,
    /// The certificate to trust when the URL is https (a box's own, self-signed).
    cacert: Option<PathBuf>,
    home: tempfile::TempDir,
}

impl Openstack {
    /// `auth_url` is Keystone's, e.g. `http://10.1.2.2:8774/identity/v3`.
    pub fn new(auth_url: &str, user: &str, password: &str, project: &str) -> Openstack {
        Openstack {
            bin: openstack_venv().join("bin/openstack"),
            auth_url: auth_url.to_owned(),
            user: user.to_owned(),
            password: password.to_owned(),
            project: project.to_owned(),
            cacert: None,
            home: tempfile::tempdir().expect("a home for the client"),
        }
    }

    /// Trusts `cert` (PEM) for https, as `--os-cacert` does.
    pub fn with_cacert(mut self, cert: PathBuf) -> Openstack {
        self.cacert = Some(cert);
        self
    }

    /// Runs `openstack ARGS`: Ok(stdout) or Err(stderr).
    pub fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(["--os-auth-url", &self.auth_url])
            .args(["--os-identity-api-version", "3"])
            .args(["--os-username", &self.user, "--os-password", &self.password])
            .args(["--os-project-name", &self.project])
            .args(["--os-user-domain-name", "Default"])
            .args(["--os-project-domain-name", "Default"])
            .args(["--os-region-name", "RegionOne"])
            .args(
                self.cacert
                    .iter()
                    .flat_map(|c| [std::ffi::OsStr::new("--os-cacert"), c.as_os_str()]),
            )
            .args(args)
            // No clouds.yaml or OS_* of the host may leak in.
            .env_clear()
            .env("HOME", self.home.path())
            .env("PATH", "/usr/bin:/bin")
            .output()
            .expect("the openstack client runs");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Runs `openstack ARGS -f json` and parses what it printed; panics if it failed.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        let out = self
            .run(&all)
            .unwrap_or_else(|e| panic!("openstack {args:?}: {e}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("openstack {args:?}: {e}: {out}"))
    }

    /// Runs `openstack ARGS`, panicking with its error output if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        self.run(args)
            .unwrap_or_else(|e| panic!("openstack {args:?}: {e}"))
    }
}
