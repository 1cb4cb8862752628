//! Harness for Outpost's end-to-end tests: the guest assets, the monitor binary, guests run
//! as real `outpost-vmm` processes with their console captured, network namespaces with
//! taps, and root file systems built for one test. Everything a test creates is removed by
//! a guard's `Drop`, so a failing test cleans up too.
#![forbid(unsafe_code)]

pub mod guest;
pub mod net;
pub mod openstack;
pub mod rig;
pub mod rootfs;
pub mod site;

use std::path::{Path, PathBuf};

/// Where `guest/build-assets.sh` leaves the guest kernels and images.
pub fn assets_dir() -> PathBuf {
    let dir = std::env::var_os("OUTPOST_ASSETS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/outpost/guest/current"));
    assert!(
        dir.join("test-vmlinux").exists(),
        "guest assets missing in {}: run guest/build-assets.sh (or scripts/test.sh)",
        dir.display()
    );
    dir
}

pub fn asset(name: &str) -> PathBuf {
    assets_dir().join(name)
}

/// The workspace's root, from this crate's manifest directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits inside the workspace")
        .to_path_buf()
}

/// Where a binary of the workspace is when the tests run: beside the tests' own build
/// (`<target>/<profile>/`, whatever `CARGO_TARGET_DIR` is), then the workspace's `target/`.
fn beside_tests(name: &str) -> Vec<PathBuf> {
    let mut places = Vec::new();
    // A test binary is `<target>/<profile>/deps/<test>-<hash>`, a binary of this crate (the
    // site demo) `<target>/<profile>/<bin>`.
    if let Ok(exe) = std::env::current_exe() {
        places.extend(exe.ancestors().skip(1).take(2).map(|dir| dir.join(name)));
    }
    let root = workspace_root();
    for profile in ["debug", "release"] {
        places.push(root.join("target").join(profile).join(name));
    }
    places
}

/// The `outpost-vmm` binary under test: `OUTPOST_VMM_BIN`, else the workspace's build.
pub fn vmm_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTPOST_VMM_BIN") {
        return PathBuf::from(p);
    }
    for p in beside_tests("outpost-vmm") {
        if p.exists() {
            return p;
        }
    }
    panic!("outpost-vmm is not built: run `cargo build -p outpost-vmm` (scripts/test.sh does)");
}

/// The `outpostd` binary under test: `OUTPOST_OUTPOSTD_BIN`, else the workspace's build.
pub fn outpostd_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("OUTPOST_OUTPOSTD_BIN") {
        return PathBuf::from(p);
    }
    for p in beside_tests("outpostd") {
        if p.exists() {
            return p;
        }
    }
    panic!("outpostd is not built: run `cargo build -p outpost-control` (scripts/test.sh does)");
}

/// Polls `f` every 250 ms until it returns Some, for up to `secs`; panics saying `what`
/// did not happen in time.
pub fn eventually<T>(secs: u64, what: &str, f: impl FnMut() -> Option<T>) -> T {
    eventually_or(secs, what, f, String::new)
}

/// [`eventually`], with what `explain` says (logs, a console) added to the panic's message.
pub fn eventually_or<T>(
    secs: u64,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
    explain: impl FnOnce() -> String,
) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() >= deadline {
            panic!("not within {secs} s: {what}{}", explain());
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

/// Runs a host command, panicking with its output when it fails.
pub fn sh(cmd: &str) -> String {
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "`{cmd}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
