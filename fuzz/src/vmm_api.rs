//! The monitor's API: a sequence of requests (method, path, body) parsed as the API server
//! parses them and handed to a controller that has no guest, as before `InstanceStart`;
//! and a whole `--config-file`.
//!
//! Host paths in a request are the one thing the harness overrides: validation opens them,
//! and a fuzzer must not open whatever file its bytes name on the machine it runs on.

use arbitrary::{Result, Unstructured};
use hyper::Method;
use outpost_vmm::builder::StartError;
use outpost_vmm::config::VmConfig;
use outpost_vmm::controller::{Controller, HostLimits, VmmAction};

/// Requests per input.
const MAX_REQUESTS: usize = 16;
/// The paths the API serves (with an id where it takes one), so most requests reach a
/// body parser; the input may still send any path.
const PATHS: &[&str] = &[
    "/",
    "/version",
    "/vm/config",
    "/stats",
    "/machine-config",
    "/boot-source",
    "/drives/rootfs",
    "/network-interfaces/eth0",
    "/logger",
    "/metrics",
    "/entropy",
    "/serial",
    "/actions",
    "/mmds/config",
    "/vm",
];
const METHODS: &[Method] = &[Method::GET, Method::PUT, Method::PATCH, Method::POST];

pub fn requests(data: &[u8]) {
    let mut controller = Controller::with_host_limits(
        "fuzz",
        HostLimits {
            mem_total_mib: Some(4096),
        },
    );
    // InstanceStart must not build a VM: it fails the way a failed build does.
    controller.set_starter(Box::new(|_| {
        Err(StartError::Device(
            "the fuzz harness starts no guest".into(),
        ))
    }));
    let mut u = Unstructured::new(data);
    let _ = script(&mut u, &mut controller);
}

fn script(u: &mut Unstructured<'_>, controller: &mut Controller) -> Result<()> {
    if u.arbitrary::<u8>()? == 0 {
        // The whole configuration as one file (`--config-file`).
        if let Ok(mut config) = serde_json::from_slice::<VmConfig>(crate::rest(u)) {
            confine_paths_in_config(&mut config);
            let _ = controller.load_config(config);
        }
        return Ok(());
    }
    for _ in 0..MAX_REQUESTS {
        if u.is_empty() {
            break;
        }
        let method = u.choose(METHODS)?.clone();
        let path: String = if u.ratio(7, 8)? {
            (*u.choose(PATHS)?).to_owned()
        } else {
            u.arbitrary()?
        };
        let body = crate::bytes_up_to(u, 512)?;
        if let Ok(mut action) = outpost_vmm::api::routes::parse(&method, &path, body) {
            confine_paths(&mut action);
            let _ = controller.handle(action);
        }
    }
    Ok(())
}

/// A file that every path in a request is replaced with: it exists, is a regular file and
/// is writable, so validation gets past opening it.
fn scratch_file() -> std::path::PathBuf {
    use std::sync::OnceLock;
    static FILE: OnceLock<Option<tempfile::NamedTempFile>> = OnceLock::new();
    FILE.get_or_init(|| tempfile::NamedTempFile::new().ok())
        .as_ref()
        .map_or_else(|| "/nonexistent".into(), |f| f.path().to_owned())
}

fn confine_paths(action: &mut VmmAction) {
    let scratch = scratch_file();
    match action {
        VmmAction::PutBootSource(bs) => {
            bs.kernel_image_path = scratch.clone();
            if let Some(initrd) = &mut bs.initrd_path {
                *initrd = scratch;
            }
        }
        VmmAction::PutDrive(d) => d.path_on_host = scratch,
        VmmAction::PatchDrive(d) => {
            if let Some(p) = &mut d.path_on_host {
                *p = scratch;
            }
        }
        VmmAction::PutLogger(l) => {
            if let Some(p) = &mut l.log_path {
                *p = scratch;
            }
        }
        VmmAction::PutMetrics(m) => m.metrics_path = scratch,
        VmmAction::PutSerial(s) => {
            // The console socket would be bound (and a file there replaced) at the start.
            if let Some(p) = &mut s.socket_path {
                *p = scratch.clone();
            }
            if let Some(p) = &mut s.serial_out_path {
                *p = scratch;
            }
        }
        _ => {}
    }
}

fn confine_paths_in_config(config: &mut VmConfig) {
    let scratch = scratch_file();
    if let Some(bs) = &mut config.boot_source {
        bs.kernel_image_path = scratch.clone();
        if let Some(initrd) = &mut bs.initrd_path {
            *initrd = scratch.clone();
        }
    }
    for d in &mut config.drives {
        d.path_on_host = scratch.clone();
    }
    if let Some(l) = &mut config.logger {
        if let Some(p) = &mut l.log_path {
            *p = scratch.clone();
        }
    }
    if let Some(m) = &mut config.metrics {
        m.metrics_path = scratch.clone();
    }
    if let Some(s) = &mut config.serial {
        if let Some(p) = &mut s.socket_path {
            *p = scratch.clone();
        }
        if let Some(p) = &mut s.serial_out_path {
            *p = scratch;
        }
    }
}
