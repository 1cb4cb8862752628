//! What the tests that boot real guests under outpostd share: the project's guest assets,
//! the monitor binary beside outpostd, a daemon whose leftovers (monitors outlive it by
//! design) are killed when the test ends, and the Nova calls and waits they all make.

use super::{Api, Daemon, Text, ADMIN_PASSWORD};
use outpost_control::client::{ApiResponse, Client, Endpoint};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const ASSETS: &str = "/var/cache/outpost/guest/current";
pub const MARKER: &str = "OUTPOST-INIT-OK";
pub const V275: (&str, &str) = ("OpenStack-API-Version", "compute 2.75");
/// Guests boot in 20-40 s on the project's PVM host; leave room for a loaded machine.
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(300);
pub const STATE_TIMEOUT: Duration = Duration::from_secs(60);

/// Tests that boot guests take turns: the machine has two cores shared with others.
pub static GUESTS: Mutex<()> = Mutex::new(());

pub fn one_guest_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    GUESTS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// outpost-vmm as cargo builds it, beside outpostd, or `OUTPOST_TEST_MONITOR` (a copy kept
/// aside where several work trees share one target directory and relink that binary).
pub fn monitor_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("OUTPOST_TEST_MONITOR") {
        return PathBuf::from(path);
    }
    let outpostd = Path::new(env!("CARGO_BIN_EXE_outpostd"));
    let vmm = outpostd.with_file_name("outpost-vmm");
    assert!(
        vmm.is_file(),
        "{vmm:?} is missing: run `cargo build -p outpost-vmm` before these tests"
    );
    vmm
}

pub fn check_assets() {
    for f in ["test-vmlinux", "rootfs.ext4"] {
        let p = Path::new(ASSETS).join(f);
        assert!(p.is_file(), "{p:?} is missing: run guest/build-assets.sh");
    }
}

/// Kills whatever still runs from a test's state directory when the test ends, pass or
/// fail (monitors outlive outpostd by design, so dropping the daemon does not stop them),
/// and removes the cgroups of its servers (which live outside the directory).
pub struct Sweep(pub PathBuf);

impl Drop for Sweep {
    fn drop(&mut self) {
        for pid in processes_naming(&self.0.to_string_lossy()) {
            // SAFETY: kill() on a process whose command line names this test's temporary
            // directory: one of the monitors or shims the test started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        let servers = self.0.join("state").join("servers");
        for entry in std::fs::read_dir(servers).into_iter().flatten().flatten() {
            // One directory a line: in cgroup v2, and in v1 hierarchies on a hybrid host.
            let listed = std::fs::read_to_string(entry.path().join("cgroup")).unwrap_or_default();
            for cgroup in listed.lines().map(Path::new) {
                // The monitors were killed above; cgroup.kill (v2) catches one started since.
                let _ = std::fs::write(cgroup.join("cgroup.kill"), "1");
                for _ in 0..250 {
                    if std::fs::remove_dir(cgroup).is_ok() || !cgroup.exists() {
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                // A v1 group, once empty (outpostd removes those with their last server).
                if let Some(group) = cgroup.parent().filter(|g| !g.join("cgroup.kill").exists()) {
                    let _ = std::fs::remove_dir(group);
                }
            }
        }
    }
}

/// Pids whose command line contains `needle`.
pub fn processes_naming(needle: &str) -> Vec<i32> {
    let own = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != own)
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    String::from_utf8_lossy(&c)
                        .replace('\0', " ")
                        .contains(needle)
                })
                .unwrap_or(false)
        })
        .map(|pid| pid as i32)
        .collect()
}

pub fn start_daemon(extra: &str) -> (Daemon, Sweep) {
    let config = format!(
        "[compute]\nmonitor = {:?}\nstop_timeout_secs = 10\n{extra}",
        monitor_binary()
    );
    let d = Daemon::start_with(Some(&config), Some(ADMIN_PASSWORD));
    let sweep = Sweep(d.dir.path().to_owned());
    (d, sweep)
}

pub fn api(d: &Daemon) -> Api {
    d.unix().with_header(V275.0, V275.1)
}

pub fn create_flavor(d: &Daemon, id: &str, vcpus: u32, ram: u32, disk: u32) {
    let r = api(d).post(
        "/compute/v2.1/flavors",
        &json!({"flavor": {"name": id, "id": id, "vcpus": vcpus, "ram": ram, "disk": disk}}),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
}

pub fn create_server(d: &Daemon, name: &str, flavor: &str) -> String {
    let r = api(d).post(
        "/compute/v2.1/servers",
        &json!({"server": {"name": name, "flavorRef": flavor, "imageRef": "outpost-guest",
                           "networks": "none", "metadata": {"role": "test"}}}),
    );
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let id = r.body_json()["server"]["id"].as_str().unwrap().to_owned();
    let location = r.header("location").unwrap();
    assert!(
        location.ends_with(&format!("/compute/v2.1/servers/{id}")),
        "{location}"
    );
    id
}

pub fn server(d: &Daemon, id: &str) -> Value {
    let r = api(d).get(&format!("/compute/v2.1/servers/{id}"));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.body_json()["server"].clone()
}

/// Waits until the server shows `status` with no task under way.
pub fn wait_status(d: &Daemon, id: &str, status: &str) -> Value {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let s = server(d, id);
        if s["status"] == status && s["OS-EXT-STS:task_state"].is_null() {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "server {id} never became {status}: {s:#}\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn wait_gone(d: &Daemon, id: &str) {
    let deadline = Instant::now() + STATE_TIMEOUT;
    loop {
        let r = api(d).get(&format!("/compute/v2.1/servers/{id}"));
        if r.status.as_u16() == 404 {
            assert_eq!(
                r.body_json()["itemNotFound"]["message"],
                format!("Instance {id} could not be found.")
            );
            return;
        }
        assert!(Instant::now() < deadline, "server {id} was not deleted");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn action(d: &Daemon, id: &str, body: Value) -> ApiResponse {
    api(d).post(&format!("/compute/v2.1/servers/{id}/action"), &body)
}

pub fn console(d: &Daemon, id: &str, length: Option<i64>) -> String {
    let r = action(d, id, json!({"os-getConsoleOutput": {"length": length}}));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    r.body_json()["output"].as_str().unwrap().to_owned()
}

/// Waits until the console shows the init marker `count` times.
pub fn wait_marker(d: &Daemon, id: &str, count: usize) {
    wait_marker_within(d, id, count, BOOT_TIMEOUT)
}

/// [`wait_marker`] with a deadline of its own (a boot that competes with another guest).
pub fn wait_marker_within(d: &Daemon, id: &str, count: usize, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if console(d, id, None).matches(MARKER).count() >= count {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the guest did not print {MARKER} ({count}):\n{}",
            console(d, id, Some(20))
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub fn server_dir(d: &Daemon, id: &str) -> PathBuf {
    d.state_dir().join("servers").join(id)
}

pub fn root_disk(d: &Daemon, id: &str) -> PathBuf {
    d.state_dir().join("instances").join(id).join("disk.raw")
}

/// The monitor's API socket, in the directory that is its root when it is jailed.
pub fn monitor_socket(d: &Daemon, id: &str) -> PathBuf {
    server_dir(d, id).join("jail").join("api.sock")
}

/// The processes of the server's monitor (its shim and outpost-vmm).
pub fn monitor_pids(d: &Daemon, id: &str) -> Vec<i32> {
    processes_naming(&monitor_socket(d, id).to_string_lossy())
}

/// `Name:` from /proc/<pid>/status (or a task's), its value trimmed.
pub fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{name}:")))
        .unwrap_or_else(|| panic!("no {name} in\n{status}"))
        .trim()
        .to_owned()
}

/// The outpost-vmm process among the server's (its shim is the other).
pub fn vmm_pid(d: &Daemon, id: &str) -> i32 {
    let vmm: Vec<i32> = monitor_pids(d, id)
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm"))
                .is_ok_and(|c| c.trim() == "outpost-vmm")
        })
        .collect();
    assert_eq!(vmm.len(), 1, "{vmm:?}");
    vmm[0]
}

/// `GET path` on the monitor's own API socket.
pub fn monitor_get(d: &Daemon, id: &str, path: &str) -> Value {
    let c = Client::new(Endpoint::Unix(monitor_socket(d, id))).unwrap();
    let r = c.request(hyper::Method::GET, path, &[], None).unwrap();
    assert_eq!(r.status.as_u16(), 200, "{path}: {}", r.text());
    r.json().unwrap()
}

pub fn db(d: &Daemon) -> rusqlite::Connection {
    rusqlite::Connection::open(d.state_dir().join("outpost.db")).unwrap()
}

pub fn count(d: &Daemon, sql: &str) -> i64 {
    db(d).query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Deletes the server (Nova's 204), waits until it is gone and checks nothing of it is left.
pub fn delete_leaving_nothing(d: &Daemon, id: &str) {
    let r = api(d).delete(&format!("/compute/v2.1/servers/{id}"));
    assert_eq!(r.status.as_u16(), 204, "{}", r.text());
    wait_gone(d, id);
    assert_nothing_left(d, id);
}

/// Nothing of the server is left: no process, folder, disk, row, task or claim.
pub fn assert_nothing_left(d: &Daemon, id: &str) {
    assert!(monitor_pids(d, id).is_empty(), "monitor processes left");
    assert!(!server_dir(d, id).exists(), "server folder left");
    assert!(
        !root_disk(d, id).parent().unwrap().exists(),
        "root disk left"
    );
    let c = db(d);
    for (table, column) in [("servers", "id"), ("server_tasks", "server_id")] {
        let n: i64 = c
            .query_row(
                &format!("SELECT COUNT(*) FROM {table} WHERE {column} = ?1"),
                [id],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 0, "{table} still has {id}");
    }
    let claims: i64 = c
        .query_row(
            "SELECT COUNT(*) FROM claims WHERE consumer_id LIKE ?1",
            [format!("%{id}")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(claims, 0, "claims left");
}

pub fn vm_config(d: &Daemon, id: &str) -> (u64, u64, String) {
    let c = monitor_get(d, id, "/vm/config");
    (
        c["machine-config"]["vcpu_count"].as_u64().unwrap(),
        c["machine-config"]["mem_size_mib"].as_u64().unwrap(),
        c["drives"][0]["path_on_host"].as_str().unwrap().to_owned(),
    )
}

pub fn size(d: &Daemon, id: &str) -> (u64, u64) {
    let (vcpus, mem, _) = vm_config(d, id);
    (vcpus, mem)
}

pub fn disk_len(d: &Daemon, id: &str) -> u64 {
    std::fs::metadata(root_disk(d, id)).unwrap().len()
}

/// Uploads `file` as a raw, bare Glance image over the socket (as admin); returns its id.
pub fn upload_raw_image(d: &Daemon, name: &str, file: &Path) -> String {
    let r = d.unix().post(
        "/image/v2/images",
        &json!({"name": name, "disk_format": "raw", "container_format": "bare"}),
    );
    assert_eq!(r.status.as_u16(), 201, "{}", r.text());
    let id = r.body_json()["id"].as_str().unwrap().to_owned();
    let f = std::fs::File::open(file).unwrap();
    let len = f.metadata().unwrap().len();
    let r = Client::new(Endpoint::Unix(d.socket()))
        .unwrap()
        .upload(
            hyper::Method::PUT,
            &format!("/image/v2/images/{id}/file"),
            &[],
            Box::new(f),
            len,
            Box::new(|_| {}),
        )
        .unwrap();
    assert_eq!(r.status.as_u16(), 204, "{}", r.text());
    id
}

/// The project's root file system with `script` as /etc/outpost/checks.sh (guest/init
/// runs it after its marker), uploaded as the raw image `name`; returns its id.
pub fn image_with_checks(d: &Daemon, name: &str, script: &str) -> String {
    let work = tempfile::tempdir().unwrap();
    let disk = work.path().join("rootfs.ext4");
    std::fs::copy(Path::new(ASSETS).join("rootfs.ext4"), &disk).unwrap();
    let file = work.path().join("checks.sh");
    std::fs::write(&file, script).unwrap();
    let cmds = work.path().join("debugfs.cmd");
    std::fs::write(
        &cmds,
        format!(
            "cd /etc/outpost\nrm checks.sh\nwrite {} checks.sh\n",
            file.display()
        ),
    )
    .unwrap();
    let out = std::process::Command::new("debugfs")
        .arg("-w")
        .arg("-f")
        .arg(&cmds)
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debugfs: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    upload_raw_image(d, name, &disk)
}

/// POST to Neutron over the socket (as admin), expecting 201; returns the body.
pub fn neutron_post(d: &Daemon, path: &str, body: Value) -> Value {
    let r = d.unix().post(&format!("/network/v2.0/{path}"), &body);
    assert_eq!(r.status.as_u16(), 201, "POST {path}: {}", r.text());
    r.body_json()
}
