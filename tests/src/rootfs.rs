//! Root file systems for one test: the project's busybox and init plus the test's own
//! `/etc/outpost/checks.sh`, packed with `mkfs.ext4 -d`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::{asset, sh};

/// Builds an ext4 image of `size_mib` at `image` whose init runs `checks` (a busybox sh
/// script) after printing its marker.
pub fn build_rootfs(work: &Path, checks: &str, size_mib: u32) -> PathBuf {
    let root = work.join("rootfs");
    for d in [
        "bin",
        "sbin",
        "etc/outpost",
        "dev",
        "proc",
        "sys",
        "tmp",
        "run",
        "mnt",
    ] {
        std::fs::create_dir_all(root.join(d)).expect("create rootfs folder");
    }
    std::fs::copy(asset("busybox"), root.join("bin/busybox")).expect("copy busybox");
    std::fs::copy(asset("init"), root.join("sbin/init")).expect("copy init");
    std::fs::copy(asset("init"), root.join("init")).expect("copy init");
    std::fs::write(root.join("etc/outpost/checks.sh"), checks).expect("write checks");
    for f in ["bin/busybox", "sbin/init", "init", "etc/outpost/checks.sh"] {
        std::fs::set_permissions(root.join(f), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
    }
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).expect("link sh");
    let image = work.join("rootfs.ext4");
    sh(&format!(
        "mkfs.ext4 -q -F -d {} {} {size_mib}M",
        root.display(),
        image.display()
    ));
    image
}
