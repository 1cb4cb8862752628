//! One `outpost-vmm` per server: where its files live ([`ServerDir`]), jailing it
//! ([`jail`], [`cgroup`]), starting it under its shim ([`process`]), configuring it over its
//! API ([`api`]) and stopping it.
//!
//! `<state>/servers/<id>/` holds `console.log` (the guest's serial console, appended across
//! restarts), `vmm.log` (the monitor's stderr), `exit-status` (written by the shim when the
//! monitor ends), `cgroup` (the path of the server's cgroup, if it has one) and `jail/`, the
//! monitor's own root, where it binds `api.sock` and the console's `console.sock`.

pub mod api;
pub mod cgroup;
pub mod jail;
pub mod limits;
pub mod process;

pub use process::MonitorExit;

use crate::compute::servers::config::ComputeSettings;
use crate::compute::servers::store::MonitorRecord;
use api::MonitorApi;
use serde_json::json;
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a new monitor has to bind its socket.
const SOCKET_WAIT: Duration = Duration::from_secs(10);
/// How long one API request may take (InstanceStart loads the kernel).
const API_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest path a unix socket can have (sun_path, with its NUL).
const MAX_SOCKET_PATH: usize = 107;

#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    #[error("cannot {what} {path:?}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot start the monitor {binary:?}: {source}")]
    Spawn {
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot identify the monitor process {0} in /proc")]
    Identity(u32),
    #[error("the API socket path {0:?} is too long for a unix socket; use a shorter state_dir")]
    SocketPathTooLong(PathBuf),
    #[error("the monitor ended before it was started: {0}")]
    EndedEarly(String),
    #[error("the monitor did not open its API socket within {0:?}")]
    NoSocket(Duration),
    #[error("the monitor's API failed on {path}: {source}")]
    Api {
        path: String,
        source: std::io::Error,
    },
    #[error("the monitor's API answered {path} with something unreadable: {message}")]
    Reply { path: String, message: String },
    #[error("the monitor refused {path} ({status}): {message}")]
    Refused {
        path: String,
        status: u16,
        message: String,
    },
    #[error(transparent)]
    Limits(#[from] cgroup::LimitsError),
    #[error(transparent)]
    Cgroup(#[from] cgroup::RemoveError),
    #[error(
        "no free uid for the server's monitor: all {count} from {first} are taken (widen \
         compute.jail.uid_count)"
    )]
    NoFreeUid { first: u32, count: u32 },
    #[error("cannot attach to the tap {name} for the monitor: {source}")]
    Tap {
        name: String,
        source: std::io::Error,
    },
}

/// A server's runtime folder.
#[derive(Debug, Clone)]
pub struct ServerDir {
    path: PathBuf,
}

impl ServerDir {
    pub fn new(path: PathBuf) -> ServerDir {
        ServerDir { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The monitor's own directory: its `/` when it is jailed.
    pub fn jail_root(&self) -> PathBuf {
        self.path.join("jail")
    }

    pub fn api_sock(&self) -> PathBuf {
        self.jail_root().join("api.sock")
    }

    /// The guest's serial console, served by the monitor (vmm's `serial.socket_path`).
    pub fn console_sock(&self) -> PathBuf {
        self.jail_root().join("console.sock")
    }

    /// Where the directories of the server's cgroup are kept (one a line), for its
    /// removal.
    fn cgroup_file(&self) -> PathBuf {
        self.path.join("cgroup")
    }

    fn record_cgroup(&self, cgroup: &[PathBuf]) -> Result<(), MonitorError> {
        let file = self.cgroup_file();
        let done = if cgroup.is_empty() {
            process::remove_if_present(&file)
        } else {
            let mut text = Vec::new();
            for dir in cgroup {
                text.extend_from_slice(dir.as_os_str().as_encoded_bytes());
                text.push(b'\n');
            }
            std::fs::write(&file, text)
        };
        done.map_err(|source| MonitorError::Io {
            what: "record the server's cgroup",
            path: file,
            source,
        })
    }

    /// The directories of the server's cgroup, if its last monitor had one.
    pub fn cgroup(&self) -> Vec<PathBuf> {
        let text = std::fs::read_to_string(self.cgroup_file()).unwrap_or_default();
        text.lines()
            .filter(|l| !l.is_empty())
            .map(PathBuf::from)
            .collect()
    }

    pub fn console_log(&self) -> PathBuf {
        self.path.join("console.log")
    }

    pub fn vmm_log(&self) -> PathBuf {
        self.path.join("vmm.log")
    }

    pub fn exit_status(&self) -> PathBuf {
        self.path.join("exit-status")
    }

    /// The ids of the volumes the current monitor was given, one a line.
    fn volumes_file(&self) -> PathBuf {
        self.path.join("volumes")
    }

    /// The volumes the current (or last) monitor was started with; none if it never was.
    pub fn started_volumes(&self) -> Vec<String> {
        std::fs::read_to_string(self.volumes_file())
            .map(|s| s.lines().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    fn record_volumes(&self, spec: &MonitorSpec) -> Result<(), MonitorError> {
        let text: String = spec
            .volumes
            .iter()
            .map(|(id, _)| format!("{id}\n"))
            .collect();
        std::fs::write(self.volumes_file(), text).map_err(|source| MonitorError::Io {
            what: "record the server's volumes",
            path: self.volumes_file(),
            source,
        })
    }

    pub fn create(&self) -> Result<(), MonitorError> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.path)
            .map_err(|source| MonitorError::Io {
                what: "create the server folder",
                path: self.path.clone(),
                source,
            })
    }

    /// Removes the server's cgroup (killing what is left in it), then the folder and
    /// everything in it; a missing folder is fine. A cgroup that cannot be removed keeps the
    /// folder, whose record of it lets a retry find it.
    pub fn remove(&self) -> Result<(), MonitorError> {
        cgroup::remove(&self.cgroup())?;
        match std::fs::remove_dir_all(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(MonitorError::Io {
                what: "remove the server folder",
                path: self.path.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// What the monitor is configured with.
#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSpec {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub boot_args: String,
    pub vcpus: u64,
    pub mem_mib: u64,
    /// The server's own root disk (never an image).
    pub root_disk: Option<PathBuf>,
    /// Attached Cinder volumes (id, file), in attachment order: `/dev/vdb` onwards.
    pub volumes: Vec<(String, PathBuf)>,
    /// Network interfaces (host tap, guest MAC), in order: eth0 onwards.
    pub nics: Vec<(String, String)>,
    /// The config drive (label `config-2`), attached read-only after the volumes.
    pub config_drive: Option<PathBuf>,
    /// The flavor's I/O quotas: every drive's and every interface's token buckets.
    pub limits: limits::IoLimits,
    /// The flavor's extra specs (the cgroup's CPU limits come from them).
    pub extra_specs: BTreeMap<String, String>,
}

/// Starts the monitor process (not yet the guest), jailed unless the settings say not to:
/// the record is returned at once so the caller can persist it before anything else can
/// fail.
pub fn spawn(
    settings: &ComputeSettings,
    dir: &ServerDir,
    server_id: &str,
    spec: &MonitorSpec,
) -> Result<MonitorRecord, MonitorError> {
    for socket in [dir.api_sock(), dir.console_sock()] {
        if socket.as_os_str().len() > MAX_SOCKET_PATH {
            return Err(MonitorError::SocketPathTooLong(socket));
        }
    }
    dir.create()?;
    // Before the console is opened for the monitor: trimming replaces the file.
    process::trim_log(&dir.console_log());
    let prepared = match &settings.jail {
        Some(jail) => Some(jail::prepare(jail, dir, server_id, spec)?),
        None => {
            dir.record_cgroup(&[])?;
            None
        }
    };
    process::spawn(&settings.monitor, dir, server_id, prepared)
}

/// Configures the spawned monitor through its API and starts the guest.
pub fn configure_and_start(
    record: &MonitorRecord,
    dir: &ServerDir,
    spec: &MonitorSpec,
) -> Result<(), MonitorError> {
    let api = MonitorApi::new(&dir.api_sock(), API_TIMEOUT);
    let deadline = Instant::now() + SOCKET_WAIT;
    // The monitor binds its socket within milliseconds of starting: poll often at first,
    // then back off, so a slow start costs little CPU and a fast one little latency.
    let mut pause = Duration::from_millis(1);
    while !api.answers() {
        if !process::is_alive(record) {
            let said = process::last_words(&dir.vmm_log())
                .unwrap_or_else(|| "it wrote nothing on stderr".to_owned());
            return Err(MonitorError::EndedEarly(said));
        }
        if Instant::now() > deadline {
            return Err(MonitorError::NoSocket(SOCKET_WAIT));
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    let mut boot = json!({
        "kernel_image_path": spec.kernel,
        "boot_args": spec.boot_args,
    });
    if let Some(initrd) = &spec.initrd {
        boot["initrd_path"] = json!(initrd);
    }
    api.put("/boot-source", &boot)?;
    api.put(
        "/machine-config",
        &json!({"vcpu_count": spec.vcpus, "mem_size_mib": spec.mem_mib}),
    )?;
    if let Some(disk) = &spec.root_disk {
        api.put(
            "/drives/rootfs",
            &with_limiter(
                json!({
                    "drive_id": "rootfs",
                    "path_on_host": disk,
                    "is_root_device": true,
                    "is_read_only": false,
                }),
                "rate_limiter",
                spec.limits.drive,
            ),
        )?;
    }
    dir.record_volumes(spec)?;
    for (n, (_, path)) in spec.volumes.iter().enumerate() {
        let drive_id = format!("volume{}", n + 1);
        api.put(
            &format!("/drives/{drive_id}"),
            &with_limiter(
                json!({
                    "drive_id": drive_id,
                    "path_on_host": path,
                    "is_root_device": false,
                    "is_read_only": false,
                }),
                "rate_limiter",
                spec.limits.drive,
            ),
        )?;
    }
    if let Some(path) = &spec.config_drive {
        api.put(
            "/drives/config2",
            &json!({
                "drive_id": "config2",
                "path_on_host": path,
                "is_root_device": false,
                "is_read_only": true,
            }),
        )?;
    }
    for (n, (tap, mac)) in spec.nics.iter().enumerate() {
        let iface_id = format!("eth{n}");
        api.put(
            &format!("/network-interfaces/{iface_id}"),
            &with_limiter(
                with_limiter(
                    json!({"iface_id": iface_id, "host_dev_name": tap, "guest_mac": mac}),
                    "rx_rate_limiter",
                    spec.limits.rx,
                ),
                "tx_rate_limiter",
                spec.limits.tx,
            ),
        )?;
    }
    api.put(
        "/serial",
        &json!({"serial_out_path": dir.console_log(), "socket_path": dir.console_sock()}),
    )?;
    api.put("/actions", &json!({"action_type": "InstanceStart"}))
}

/// `body` with `limiter` as its field `field`, when there is one.
fn with_limiter(
    mut body: serde_json::Value,
    field: &str,
    limiter: Option<limits::RateLimiter>,
) -> serde_json::Value {
    if let Some(l) = limiter {
        body[field] = json!(l);
    }
    body
}

/// Presses the guest's ACPI power button: a guest whose OS handles it shuts down cleanly
/// and powers off (its monitor exits 0).
pub fn send_power_button(dir: &ServerDir) -> Result<(), MonitorError> {
    MonitorApi::new(&dir.api_sock(), API_TIMEOUT)
        .put("/actions", &json!({"action_type": "SendPowerButton"}))
}

/// How long a fencing request may take: the fence walks every monitor each second, and a
/// wedged one must not hold up the others for long.
const FENCE_TIMEOUT: Duration = Duration::from_millis(500);

/// Pauses the guest (the box's fence, docs/cluster.md).
pub fn pause(dir: &ServerDir) -> Result<(), MonitorError> {
    MonitorApi::new(&dir.api_sock(), FENCE_TIMEOUT).patch("/vm", &json!({"state": "Paused"}))
}

/// Resumes a guest the fence or its own deadline paused.
pub fn resume(dir: &ServerDir) -> Result<(), MonitorError> {
    MonitorApi::new(&dir.api_sock(), FENCE_TIMEOUT).patch("/vm", &json!({"state": "Resumed"}))
}

/// Has the monitor pause its guest itself unless renewed within `left` (`PUT /vm/deadline`).
pub fn set_deadline(dir: &ServerDir, left: Duration) -> Result<(), MonitorError> {
    let ms = u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1);
    MonitorApi::new(&dir.api_sock(), FENCE_TIMEOUT).put("/vm/deadline", &json!({"pause_in_ms": ms}))
}

/// SIGKILLs the server's monitor and its shim, whoever started them; returns how many
/// processes were killed.
pub fn kill(dir: &ServerDir) -> usize {
    process::kill_all_using(&dir.api_sock())
}

/// Whether the monitor answers its API with a started guest (`GET /` state `Running` or
/// `Paused`), as opposed to one still waiting for its configuration.
pub fn guest_started(dir: &ServerDir) -> bool {
    MonitorApi::new(&dir.api_sock(), Duration::from_secs(5))
        .get("/")
        .map(|info| matches!(info["state"].as_str(), Some("Running" | "Paused")))
        .unwrap_or(false)
}

/// The last `max` bytes of a file, as text (invalid UTF-8 replaced).
pub fn read_tail(path: &Path, max: u64) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut bytes = Vec::new();
    f.take(max).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// The guest's console: its last `lines` lines (all when None), read from at most the last
/// `max_bytes` of the log. A server that never started has an empty console.
pub fn console_output(
    dir: &ServerDir,
    lines: Option<usize>,
    max_bytes: u64,
) -> std::io::Result<String> {
    let text = match read_tail(&dir.console_log(), max_bytes) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(String::new()),
        Err(e) => return Err(e),
    };
    Ok(match lines {
        None => text,
        Some(n) => last_lines(&text, n),
    })
}

fn last_lines(text: &str, n: usize) -> String {
    if n == 0 {
        return String::new();
    }
    // Position after the newline that starts the n-th line from the end (a trailing newline
    // ends the last line rather than starting an empty one).
    let body = text.strip_suffix('\n').unwrap_or(text);
    match body.rmatch_indices('\n').nth(n - 1) {
        Some((i, _)) => text[i + 1..].to_owned(),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server's cgroup goes with its folder, and with it what still runs in it (where
    /// this host has a cgroup hierarchy and root).
    #[test]
    fn removing_a_server_folder_kills_and_removes_its_cgroup() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ServerDir::new(tmp.path().join("s1"));
        dir.create().unwrap();
        let id = format!("unit-{}", std::process::id());
        let limits = cgroup::Limits::for_flavor(1, 64, &BTreeMap::new()).unwrap();
        let paths = cgroup::create("outpost-unit", &id, &limits);
        if paths.is_empty() {
            eprintln!("skipped: no cgroup hierarchy here");
            return;
        }
        // Its limits are in one of its directories, in cgroup v2's form or v1's.
        let memory = ((64 + cgroup::MONITOR_OVERHEAD_MIB) << 20).to_string();
        for (files, want) in [
            (["memory.max", "memory.limit_in_bytes"], memory.as_str()),
            (["pids.max", "pids.max"], "33"),
        ] {
            let found: Vec<String> = paths
                .iter()
                .flat_map(|p| files.iter().map(move |f| p.join(f)))
                .filter_map(|f| std::fs::read_to_string(f).ok())
                .collect();
            for value in &found {
                assert_eq!(value.trim(), want, "{files:?}");
            }
            if found.is_empty() {
                eprintln!("this host offers none of {files:?}");
            }
        }
        let mut sleeper = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap();
        for path in &paths {
            std::fs::write(path.join("cgroup.procs"), sleeper.id().to_string()).unwrap();
        }
        dir.record_cgroup(&paths).unwrap();
        assert_eq!(dir.cgroup(), paths);
        dir.remove().unwrap();
        for path in &paths {
            assert!(!path.exists(), "{path:?} left");
            let _ = std::fs::remove_dir(path.parent().unwrap());
        }
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(sleeper.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert!(!dir.path().exists());
    }

    #[test]
    fn last_lines_counts_from_the_end() {
        assert_eq!(last_lines("a\nb\nc\n", 2), "b\nc\n");
        assert_eq!(last_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(last_lines("a\nb\n", 5), "a\nb\n");
        assert_eq!(last_lines("a\n", 0), "");
    }

    #[test]
    fn console_of_a_server_that_never_ran_is_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ServerDir::new(tmp.path().join("s"));
        assert_eq!(console_output(&dir, None, 1024).unwrap(), "");
        dir.create().unwrap();
        std::fs::write(dir.console_log(), "one\ntwo\nthree\n").unwrap();
        assert_eq!(console_output(&dir, Some(1), 1024).unwrap(), "three\n");
        assert_eq!(console_output(&dir, None, 6).unwrap(), "three\n");
        dir.remove().unwrap();
        dir.remove().unwrap();
    }
}
