//! Volumes, snapshots and server disks on real temp folders; images come from a real
//! ImageStore upload.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{allocated, disk_pattern, names_in};
use outpost_image_store::size::SizeError;
use outpost_image_store::{
    CloneMethod, DiskFormat, DiskKind, ExpectedFormat, ImageStore, Provisioning, VolumeError,
    VolumeStore, VolumeStoreConfig,
};

const MIB: u64 = 1 << 20;

/// An image uploaded through the image store (so it is stored the way production stores it:
/// sparse where the upload had zero blocks).
fn stored_image(root: &Path, data: &[u8]) -> PathBuf {
    let images = ImageStore::open(root.to_owned()).unwrap();
    let mut up = images
        .begin_upload(
            "img",
            ExpectedFormat {
                disk_format: DiskFormat::Raw,
                max_size: None,
            },
        )
        .unwrap();
    up.write_all(data).unwrap();
    up.finish(None).unwrap().path
}

fn assert_prefix_then_zeros(path: &Path, prefix: &[u8], size: u64) {
    let bytes = fs::read(path).unwrap();
    assert_eq!(bytes.len() as u64, size);
    assert!(bytes[..prefix.len()] == *prefix, "content differs");
    assert!(
        bytes[prefix.len()..].iter().all(|&b| b == 0),
        "tail not zero"
    );
}

fn no_partials(root: &Path) {
    for kind in ["volumes", "snapshots", "instances"] {
        let dir = root.join(kind).join(".partial");
        assert!(names_in(&dir).is_empty(), "{} not empty", dir.display());
    }
}

#[test]
fn thin_is_sparse_thick_is_allocated() {
    let root = tempfile::tempdir().unwrap();
    let store = VolumeStore::open(root.path().to_owned()).unwrap();
    let thin = store
        .create_blank("thin", 64 * MIB, Provisioning::Thin)
        .unwrap();
    let thick = store
        .create_blank("thick", 64 * MIB, Provisioning::Thick)
        .unwrap();

    assert_eq!(
        thin.path,
        root.path().canonicalize().unwrap().join("volumes/thin.raw")
    );
    assert_eq!(fs::metadata(&thin.path).unwrap().len(), 64 * MIB);
    assert_eq!(fs::metadata(&thick.path).unwrap().len(), 64 * MIB);
    assert_eq!(fs::metadata(&thin.path).unwrap().blocks(), 0);
    assert_eq!(store.allocated_bytes("thin").unwrap(), 0);
    assert!(store.allocated_bytes("thick").unwrap() >= 64 * MIB);
    assert_eq!(thick.allocated, store.allocated_bytes("thick").unwrap());
    assert!(fs::read(&thick.path).unwrap().iter().all(|&b| b == 0));
    assert_eq!(thin.method, CloneMethod::Blank);
    no_partials(root.path());
}

#[test]
fn volume_from_image_has_its_content_and_stays_sparse() {
    let root = tempfile::tempdir().unwrap();
    let data = disk_pattern(6 * MIB as usize, 21);
    let image = stored_image(root.path(), &data);
    let store = VolumeStore::open(root.path().to_owned()).unwrap();

    let vol = store
        .create_from_image("v1", &image, 256 * MIB, Provisioning::Thin)
        .unwrap();
    assert_eq!(vol.size, 256 * MIB);
    assert_prefix_then_zeros(&vol.path, &data, 256 * MIB);
    // A third of the image is zeros and the growth is a hole: the clone holds at most the
    // image's non-zero data (plus metadata slack), far below its size.
    assert!(
        allocated(&vol.path) <= 5 * MIB,
        "allocated {}",
        allocated(&vol.path)
    );
    assert!(matches!(
        vol.method,
        CloneMethod::SparseCopy | CloneMethod::Reflink
    ));
    // The clone is independent of the image.
    fs::File::options()
        .write(true)
        .open(&vol.path)
        .unwrap()
        .write_all_at(b"guest wrote this", 0)
        .unwrap();
    assert_eq!(fs::read(&image).unwrap(), data);
    no_partials(root.path());
}

#[test]
fn thick_volume_from_image_is_fully_allocated() {
    let root = tempfile::tempdir().unwrap();
    let data = disk_pattern(3 * MIB as usize, 22);
    let image = stored_image(root.path(), &data);
    let store = VolumeStore::open(root.path().to_owned()).unwrap();
    let vol = store
        .create_from_image("v", &image, 32 * MIB, Provisioning::Thick)
        .unwrap();
    assert_eq!(vol.method, CloneMethod::SparseCopy);
    assert_prefix_then_zeros(&vol.path, &data, 32 * MIB);
    assert!(store.allocated_bytes("v").unwrap() >= 32 * MIB);
}

#[test]
fn sizes_are_validated() {
    let root = tempfile::tempdir().unwrap();
    let data = disk_pattern(2 * MIB as usize, 23);
    let image = stored_image(root.path(), &data);
    let store = VolumeStore::open_with(
        root.path().to_owned(),
        VolumeStoreConfig {
            max_volume_size: 1 << 30,
        },
    )
    .unwrap();

    let err = store
        .create_from_image("v", &image, MIB, Provisioning::Thin)
        .unwrap_err();
    assert!(
        matches!(err, VolumeError::SmallerThanSource { source_size, .. } if source_size == 2 * MIB),
        "{err}"
    );
    let err = store.create_blank("v", 0, Provisioning::Thin).unwrap_err();
    assert!(
        matches!(err, VolumeError::Size(SizeError::Zero { .. })),
        "{err}"
    );
    let err = store
        .create_blank("v", (1 << 30) + 512, Provisioning::Thin)
        .unwrap_err();
    assert!(
        matches!(err, VolumeError::Size(SizeError::TooLarge { .. })),
        "{err}"
    );
    let err = store
        .create_blank("v", 1000, Provisioning::Thin)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VolumeError::Size(SizeError::NotSectorMultiple { rounded: 1024, .. })
        ),
        "{err}"
    );
    // Cinder's GiB sizes, including negative ones, go through the same checks.
    assert!(matches!(
        outpost_image_store::size::bytes_from_gib("volume", -1),
        Err(SizeError::Negative { .. })
    ));
    assert!(store.list(DiskKind::Volume).unwrap().is_empty());
    no_partials(root.path());
}

#[test]
fn extend_grows_and_refuses_to_shrink() {
    let root = tempfile::tempdir().unwrap();
    let store = VolumeStore::open(root.path().to_owned()).unwrap();
    let vol = store
        .create_blank("v", 8 * MIB, Provisioning::Thin)
        .unwrap();
    fs::File::options()
        .write(true)
        .open(&vol.path)
        .unwrap()
        .write_all_at(b"data", 8 * MIB - 4)
        .unwrap();

    let grown = store.extend("v", 16 * MIB, Provisioning::Thin).unwrap();
    assert_eq!(grown.size, 16 * MIB);
    assert_eq!(store.size_bytes("v").unwrap(), 16 * MIB);
    assert!(store.allocated_bytes("v").unwrap() < MIB);

    store.extend("v", 48 * MIB, Provisioning::Thick).unwrap();
    assert_eq!(store.size_bytes("v").unwrap(), 48 * MIB);
    // The part added thick is allocated (32 MiB), the thin middle is not.
    let alloc = store.allocated_bytes("v").unwrap();
    assert!((32 * MIB..40 * MIB).contains(&alloc), "allocated {alloc}");

    let mut tail = [0u8; 4];
    fs::File::open(&vol.path)
        .unwrap()
        .read_exact_at(&mut tail, 8 * MIB - 4)
        .unwrap();
    assert_eq!(&tail, b"data");

    let err = store.extend("v", 4 * MIB, Provisioning::Thin).unwrap_err();
    assert!(
        matches!(err, VolumeError::CannotShrink { current, .. } if current == 48 * MIB),
        "{err}"
    );
    assert_eq!(store.size_bytes("v").unwrap(), 48 * MIB);
    // Same size: nothing to do, not an error.
    store.extend("v", 48 * MIB, Provisioning::Thin).unwrap();
    let err = store
        .extend("missing", 48 * MIB, Provisioning::Thin)
        .unwrap_err();
    assert!(matches!(err, VolumeError::NotFound { .. }), "{err}");
}

#[test]
fn snapshot_and_volume_from_snapshot() {
    let root = tempfile::tempdir().unwrap();
    let store = VolumeStore::open(root.path().to_owned()).unwrap();
    let vol = store
        .create_blank("v", 16 * MIB, Provisioning::Thick)
        .unwrap();
    let before = disk_pattern(MIB as usize, 31);
    let f = fs::File::options().write(true).open(&vol.path).unwrap();
    f.write_all_at(&before, 4 * MIB).unwrap();

    let snap = store.snapshot("v", "s1").unwrap();
    assert_eq!(snap.kind, DiskKind::Snapshot);
    assert_eq!(snap.size, 16 * MIB);
    assert_eq!(snap.path, store.snapshot_path("s1").unwrap());
    let snap_bytes = fs::read(&snap.path).unwrap();
    assert_eq!(snap_bytes, fs::read(&vol.path).unwrap());
    // The thick volume's zeros are not copied: the snapshot holds about the 1 MiB written.
    assert!(
        allocated(&snap.path) <= 2 * MIB,
        "{}",
        allocated(&snap.path)
    );

    // Writing the volume afterwards does not change the snapshot.
    f.write_all_at(&disk_pattern(MIB as usize, 32), 4 * MIB)
        .unwrap();
    assert_eq!(fs::read(&snap.path).unwrap(), snap_bytes);

    let restored = store
        .create_from_snapshot("v2", "s1", 32 * MIB, Provisioning::Thin)
        .unwrap();
    assert_prefix_then_zeros(&restored.path, &snap_bytes, 32 * MIB);

    let err = store
        .create_from_snapshot("v3", "s1", 8 * MIB, Provisioning::Thin)
        .unwrap_err();
    assert!(
        matches!(err, VolumeError::SmallerThanSource { .. }),
        "{err}"
    );
    let err = store
        .create_from_snapshot("v3", "nope", 32 * MIB, Provisioning::Thin)
        .unwrap_err();
    assert!(
        matches!(
            err,
            VolumeError::NotFound {
                kind: DiskKind::Snapshot,
                ..
            }
        ),
        "{err}"
    );
    let err = store.snapshot("v", "s1").unwrap_err();
    assert!(matches!(err, VolumeError::AlreadyExists { .. }), "{err}");

    assert_eq!(store.list(DiskKind::Snapshot).unwrap(), vec!["s1"]);
    assert_eq!(store.list(DiskKind::Volume).unwrap(), vec!["v", "v2"]);
    assert!(store.delete_snapshot("s1").unwrap());
    assert!(!store.delete_snapshot("s1").unwrap());
    assert!(store.delete("v").unwrap());
    assert!(!store.delete("v").unwrap());
    // The volume made from the snapshot is independent of both.
    assert_prefix_then_zeros(&restored.path, &snap_bytes, 32 * MIB);
    no_partials(root.path());
}

#[test]
fn server_root_disk_is_a_clone_never_the_image() {
    let root = tempfile::tempdir().unwrap();
    let data = disk_pattern(2 * MIB as usize, 41);
    let image = stored_image(root.path(), &data);
    let store = VolumeStore::open(root.path().to_owned()).unwrap();

    let disk = store
        .clone_for_server("srv-1", &image, 10 * MIB, Provisioning::Thin)
        .unwrap();
    assert_eq!(disk.kind, DiskKind::ServerDisk);
    assert_eq!(disk.path, store.server_disk_path("srv-1").unwrap());
    assert!(disk.path.ends_with("instances/srv-1/disk.raw"));
    assert_ne!(
        fs::metadata(&disk.path).unwrap().ino(),
        fs::metadata(&image).unwrap().ino()
    );
    assert_prefix_then_zeros(&disk.path, &data, 10 * MIB);
    let mode = fs::metadata(disk.path.parent().unwrap()).unwrap().mode() & 0o777;
    assert_eq!(mode, 0o700);
    assert_eq!(store.list(DiskKind::ServerDisk).unwrap(), vec!["srv-1"]);

    let err = store
        .clone_for_server("srv-1", &image, 10 * MIB, Provisioning::Thin)
        .unwrap_err();
    assert!(matches!(err, VolumeError::AlreadyExists { .. }), "{err}");

    assert!(store.remove_server_disks("srv-1").unwrap());
    assert!(!store.remove_server_disks("srv-1").unwrap());
    assert!(!disk.path.exists());
    assert_eq!(fs::read(&image).unwrap(), data);

    let err = store
        .clone_for_server(
            "srv-2",
            &root.path().join("no-such-image"),
            MIB,
            Provisioning::Thin,
        )
        .unwrap_err();
    assert!(matches!(err, VolumeError::Source { .. }), "{err}");
    no_partials(root.path());
}

#[test]
fn ids_that_are_not_safe_file_names_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let store = VolumeStore::open(root.path().join("store")).unwrap();
    let victim = root.path().join("victim");
    fs::create_dir(&victim).unwrap();
    fs::write(victim.join("disk.raw"), b"keep").unwrap();
    let image = root.path().join("image.raw");
    fs::write(&image, [1u8; 4096]).unwrap();

    for bad in ["../victim", "..", "a/b", ".partial", "", "x.raw", "-x"] {
        let refused = |r: Result<_, VolumeError>| matches!(r, Err(VolumeError::Id(_)));
        assert!(
            refused(store.create_blank(bad, MIB, Provisioning::Thin)),
            "{bad:?}"
        );
        assert!(refused(store.create_from_image(
            bad,
            &image,
            MIB,
            Provisioning::Thin
        )));
        assert!(refused(store.create_from_snapshot(
            "ok",
            bad,
            MIB,
            Provisioning::Thin
        )));
        assert!(refused(store.snapshot(bad, "ok")));
        assert!(refused(store.snapshot("ok", bad)));
        assert!(refused(store.extend(bad, MIB, Provisioning::Thin)));
        assert!(refused(store.clone_for_server(
            bad,
            &image,
            MIB,
            Provisioning::Thin
        )));
        assert!(matches!(
            store.remove_server_disks(bad),
            Err(VolumeError::Id(_))
        ));
        assert!(matches!(store.delete(bad), Err(VolumeError::Id(_))));
        assert!(matches!(
            store.delete_snapshot(bad),
            Err(VolumeError::Id(_))
        ));
        assert!(matches!(store.path(bad), Err(VolumeError::Id(_))));
        assert!(matches!(
            store.allocated_bytes(bad),
            Err(VolumeError::Id(_))
        ));
    }
    assert_eq!(fs::read(victim.join("disk.raw")).unwrap(), b"keep");
}

#[test]
fn crash_leftovers_are_removed_on_open() {
    let root = tempfile::tempdir().unwrap();
    let kept = {
        let store = VolumeStore::open(root.path().to_owned()).unwrap();
        store
            .create_blank("kept", MIB, Provisioning::Thin)
            .unwrap()
            .path
    };
    // What a crash in the middle of create, snapshot or clone_for_server leaves.
    let leftovers: Vec<PathBuf> = ["volumes", "snapshots", "instances"]
        .iter()
        .map(|k| root.path().join(k).join(".partial").join("x.1f-2a-0"))
        .collect();
    for path in &leftovers {
        fs::write(path, vec![7u8; 100_000]).unwrap();
    }
    let mut expected: Vec<PathBuf> = leftovers
        .iter()
        .map(|p| p.canonicalize().unwrap())
        .collect();
    expected.sort();

    let store = VolumeStore::open(root.path().to_owned()).unwrap();
    let mut removed = store.removed_at_open().to_vec();
    removed.sort();
    assert_eq!(removed, expected);
    assert!(leftovers.iter().all(|p| !p.exists()));
    assert!(kept.exists());
    assert_eq!(store.list(DiskKind::Volume).unwrap(), vec!["kept"]);
}

#[test]
fn files_are_published_only_when_complete() {
    // Watch the volumes folder from another thread while a large thick volume is created: the
    // final name must never exist with a size other than the final one.
    let root = tempfile::tempdir().unwrap();
    let store = VolumeStore::open(root.path().to_owned()).unwrap();
    let target = store.path("big").unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (target, stop) = (target.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok(m) = fs::metadata(&target) {
                    seen.push(m.len());
                }
            }
            seen
        })
    };
    let data = disk_pattern(32 * MIB as usize, 51);
    let src = root.path().join("src.raw");
    fs::write(&src, &data).unwrap();
    store
        .create_from_image("big", &src, 128 * MIB, Provisioning::Thick)
        .unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    assert!(
        seen.iter().all(|&len| len == 128 * MIB),
        "saw sizes {seen:?}"
    );
}

/// A reflink-capable filesystem: `OUTPOST_REFLINK_DIR` if set, else a loop-mounted XFS made
/// here (needs root and mkfs.xfs). Unmounted and removed on drop.
struct ReflinkFs {
    dir: PathBuf,
    mounted: Option<(PathBuf, tempfile::TempDir)>,
}

impl ReflinkFs {
    fn get() -> Option<Self> {
        if let Some(dir) = std::env::var_os("OUTPOST_REFLINK_DIR") {
            return Some(Self {
                dir: PathBuf::from(dir),
                mounted: None,
            });
        }
        let work = tempfile::tempdir().ok()?;
        let image = work.path().join("xfs.img");
        let mnt = work.path().join("mnt");
        fs::create_dir(&mnt).ok()?;
        fs::File::create(&image).ok()?.set_len(512 * MIB).ok()?;
        let ok = |cmd: &mut Command| cmd.output().is_ok_and(|o| o.status.success());
        if !ok(Command::new("mkfs.xfs")
            .args(["-q", "-m", "reflink=1"])
            .arg(&image))
        {
            return None;
        }
        if !ok(Command::new("mount")
            .args(["-o", "loop"])
            .arg(&image)
            .arg(&mnt))
        {
            return None;
        }
        Some(Self {
            dir: mnt.clone(),
            mounted: Some((mnt, work)),
        })
    }
}

impl Drop for ReflinkFs {
    fn drop(&mut self) {
        if let Some((mnt, _work)) = &self.mounted {
            let _ = Command::new("umount").arg(mnt).status();
        }
    }
}

#[test]
fn reflink_clone_on_a_filesystem_that_supports_it() {
    let Some(rfs) = ReflinkFs::get() else {
        eprintln!(
            "SKIPPED: no reflink filesystem (set OUTPOST_REFLINK_DIR, or run as root with \
             mkfs.xfs installed)"
        );
        return;
    };
    let root = tempfile::tempdir_in(&rfs.dir).unwrap();
    let data = disk_pattern(8 * MIB as usize, 61);
    let image = stored_image(root.path(), &data);
    let store = VolumeStore::open(root.path().to_owned()).unwrap();

    let thin = store
        .create_from_image("thin", &image, 64 * MIB, Provisioning::Thin)
        .unwrap();
    assert_eq!(thin.method, CloneMethod::Reflink);
    assert_prefix_then_zeros(&thin.path, &data, 64 * MIB);
    // Copy on write: the clone's change stays in the clone.
    fs::File::options()
        .write(true)
        .open(&thin.path)
        .unwrap()
        .write_all_at(b"guest", 0)
        .unwrap();
    assert_eq!(fs::read(&image).unwrap(), data);

    // Thick disks own their blocks, so they are copied, not shared.
    let thick = store
        .create_from_image("thick", &image, 64 * MIB, Provisioning::Thick)
        .unwrap();
    assert_eq!(thick.method, CloneMethod::SparseCopy);
    assert_prefix_then_zeros(&thick.path, &data, 64 * MIB);

    let snap = store.snapshot("thin", "s").unwrap();
    assert_eq!(snap.method, CloneMethod::Reflink);
    assert_eq!(fs::read(&snap.path).unwrap(), fs::read(&thin.path).unwrap());
    drop(store);
    drop(root);
}
