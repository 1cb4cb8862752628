//! A seed-style openstacksdk script (control/tests/openstack_sdk_seed.py), run with the
//! python of the venv scripts/openstack-venv.sh builds, boots, checks and deletes one real
//! guest against a real outpostd: password auth, `find_flavor`, `find_image`,
//! `create_server(networks="none")`, `wait_for_server`, the console marker through
//! `get_server_console_output`, `delete_server` + `wait_for_delete`. Needs
//! `cargo build -p outpost-vmm` and the guest assets; scripts/test.sh provides all of it.

mod common;

use common::{Daemon, Text, ADMIN_PASSWORD};
use outpost_control::client::{Client, Endpoint};
use outpost_tests::openstack::openstack_venv;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Command;

const ASSETS: &str = "/var/cache/outpost/guest/current";
const MARKER: &str = "OUTPOST-INIT-OK";

/// Kills whatever still runs from the test's state directory when it ends, pass or fail
/// (monitors outlive outpostd by design).
struct MonitorSweep(PathBuf);

impl Drop for MonitorSweep {
    fn drop(&mut self) {
        let needle = self.0.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                // SAFETY: kill() on a process whose command line names this test's
                // temporary state directory: a monitor or shim the test's daemon started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

#[test]
fn an_openstacksdk_seed_script_boots_checks_and_deletes_a_server() {
    let rootfs = Path::new(ASSETS).join("rootfs.ext4");
    assert!(
        rootfs.is_file(),
        "{rootfs:?} is missing: run guest/build-assets.sh"
    );
    let vmm = Path::new(env!("CARGO_BIN_EXE_outpostd")).with_file_name("outpost-vmm");
    assert!(
        vmm.is_file(),
        "{vmm:?} is missing: run `cargo build -p outpost-vmm` before this test"
    );
    let python = openstack_venv().join("bin/python");
    let d = Daemon::start_with(
        Some(&format!(
            "[compute]\nmonitor = {vmm:?}\nstop_timeout_secs = 10\n"
        )),
        Some(ADMIN_PASSWORD),
    );
    let _sweep = MonitorSweep(d.dir.path().to_owned());

    // What a seed script expects to find: a flavor and the guest's root disk in Glance.
    let r = d.unix().post(
        "/compute/v2.1/flavors",
        &json!({"flavor": {"name": "seed.small", "vcpus": 1, "ram": 256, "disk": 1}}),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let r = d.unix().post(
        "/image/v2/images",
        &json!({"name": "seed-guest", "disk_format": "raw", "container_format": "bare"}),
    );
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let image = r.body_json()["id"].as_str().unwrap().to_owned();
    let file = std::fs::File::open(&rootfs).unwrap();
    let len = file.metadata().unwrap().len();
    let r = Client::new(Endpoint::Unix(d.socket()))
        .unwrap()
        .upload(
            hyper::Method::PUT,
            &format!("/image/v2/images/{image}/file"),
            &[],
            Box::new(file),
            len,
            Box::new(|_| {}),
        )
        .unwrap();
    assert_eq!(r.status.as_u16(), 204, "{}", r.text());

    let home = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openstack_sdk_seed.py"))
        .arg(format!("http://{}/identity/v3", d.addr))
        .args([ADMIN_PASSWORD, "seed.small", "seed-guest", MARKER])
        // No clouds.yaml or OS_* from the host may leak in.
        .env_clear()
        .env("HOME", home.path())
        .env("PATH", "/usr/bin:/bin")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("the seed script took {:?}", started.elapsed());
    assert!(
        out.status.success(),
        "the seed script failed ({}):\n{stdout}\n{stderr}\n{}",
        out.status,
        d.log()
    );

    let steps: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("step: "))
        .collect();
    assert_eq!(steps.len(), 6, "{stdout}");
    assert_eq!(steps[0], "authorized");
    assert!(
        steps[1].ends_with(&format!("and image {image}")),
        "{stdout}"
    );
    let server = steps[2]
        .strip_prefix("created server ")
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(steps[3], format!("server {server} is ACTIVE"));
    assert_eq!(steps[4], format!("console shows {MARKER}"));
    assert_eq!(steps[5], format!("server {server} is gone"));

    // What the script did is what the service holds: the server is gone, the image free.
    let r = d.unix().get(&format!("/compute/v2.1/servers/{server}"));
    assert_eq!(r.status.as_u16(), 404, "{}", r.text());
    assert!(!d.state_dir().join("servers").join(server).exists());
    let r = d.unix().delete(&format!("/image/v2/images/{image}"));
    assert_eq!(r.status.as_u16(), 204, "{}", r.text());
}
