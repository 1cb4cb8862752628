//! Image uploads on real temp folders with the real qemu-img, md5sum and sha512sum.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{allocated, disk_pattern, md5sum, names_in, qcow2_from_bytes, run, sha512sum};
use outpost_image_store::format::ContentFormat;
use outpost_image_store::{
    DiskFormat, ExpectedFormat, ImageError, ImageStore, ImageStoreConfig, StoredImage,
};

fn raw() -> ExpectedFormat {
    ExpectedFormat {
        disk_format: DiskFormat::Raw,
        max_size: None,
    }
}

fn qcow2() -> ExpectedFormat {
    ExpectedFormat {
        disk_format: DiskFormat::Qcow2,
        max_size: None,
    }
}

/// Uploads `data` in uneven pieces, as an HTTP body arrives.
fn upload(
    store: &ImageStore,
    id: &str,
    expected: ExpectedFormat,
    data: &[u8],
    checksum: Option<&str>,
) -> Result<StoredImage, ImageError> {
    let mut up = store.begin_upload(id, expected)?;
    for piece in data.chunks(77_777) {
        // A refused write is reported again, as a typed error, by `finish`.
        if up.write_all(piece).is_err() {
            break;
        }
    }
    up.finish(checksum)
}

fn partial_dir(store: &ImageStore) -> std::path::PathBuf {
    store.images_dir().join(".partial")
}

#[test]
fn raw_upload_checksums_match_md5sum_and_sha512sum() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().to_owned()).unwrap();
    let data = disk_pattern(3 * 1024 * 1024 + 1234, 7);
    let reference = root.path().join("reference");
    fs::write(&reference, &data).unwrap();

    let img = upload(&store, "cirros-1", raw(), &data, None).unwrap();

    assert_eq!(img.checksum_md5, md5sum(&reference));
    assert_eq!(img.os_hash_sha512, sha512sum(&reference));
    assert_eq!(img.uploaded.md5_hex, img.checksum_md5);
    assert_eq!(img.size, data.len() as u64);
    assert_eq!(img.virtual_size, data.len() as u64);
    assert_eq!(
        (img.disk_format, img.stored_format),
        (DiskFormat::Raw, DiskFormat::Raw)
    );
    assert_eq!(img.path, store.image_path("cirros-1").unwrap());
    assert_eq!(fs::read(&img.path).unwrap(), data);
    assert_eq!(md5sum(&img.path), img.checksum_md5);
    // A third of the pattern is zeros, which the upload leaves as holes.
    assert!(
        allocated(&img.path) < data.len() as u64 * 3 / 4,
        "allocated {} of {}",
        allocated(&img.path),
        data.len()
    );
    assert!(names_in(&partial_dir(&store)).is_empty());

    // GET /file streams the same bytes.
    let mut served = Vec::new();
    store
        .open_image("cirros-1")
        .unwrap()
        .read_to_end(&mut served)
        .unwrap();
    assert_eq!(served, data);
    assert_eq!(store.list_ids().unwrap(), vec!["cirros-1".to_owned()]);
}

#[test]
fn folders_are_private() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().join("store")).unwrap();
    for dir in [store.images_dir().to_owned(), partial_dir(&store)] {
        let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700, "{}", dir.display());
    }
}

#[test]
fn aborted_or_dropped_upload_leaves_no_file() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().to_owned()).unwrap();
    let data = disk_pattern(2 * 1024 * 1024, 3);

    let mut up = store.begin_upload("img-a", raw()).unwrap();
    up.write_all(&data[..1024 * 1024 + 5]).unwrap();
    assert_eq!(names_in(&partial_dir(&store)).len(), 1);
    up.abort();

    let mut up = store.begin_upload("img-b", raw()).unwrap();
    up.write_all(&data).unwrap();
    drop(up);

    assert!(names_in(&partial_dir(&store)).is_empty());
    assert!(store.list_ids().unwrap().is_empty());
    assert!(matches!(
        store.open_image("img-a"),
        Err(ImageError::NotFound { .. })
    ));
    // The id is free again.
    upload(&store, "img-a", raw(), &data, None).unwrap();
}

#[test]
fn checksum_mismatch_publishes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().to_owned()).unwrap();
    let data = disk_pattern(300_000, 11);
    let wrong = "0123456789abcdef0123456789abcdef";

    let err = upload(&store, "img", raw(), &data, Some(wrong)).unwrap_err();
    assert!(matches!(err, ImageError::ChecksumMismatch { .. }), "{err}");
    assert!(err.to_string().contains(wrong), "{err}");
    assert!(!store.contains("img").unwrap());
    assert!(names_in(&partial_dir(&store)).is_empty());

    let reference = root.path().join("reference");
    fs::write(&reference, &data).unwrap();
    let right = md5sum(&reference).to_uppercase();
    let img = upload(&store, "img", raw(), &data, Some(&right)).unwrap();
    assert_eq!(img.checksum_md5, right.to_lowercase());
}

#[test]
fn qcow2_upload_is_stored_as_raw_with_the_same_content() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().join("store")).unwrap();
    let disk = disk_pattern(4 * 1024 * 1024, 5);
    let qcow2_path = qcow2_from_bytes(root.path(), "src", &disk);
    let qcow2_bytes = fs::read(&qcow2_path).unwrap();
    assert!(qcow2_bytes.starts_with(b"QFI\xfb"));

    let img = upload(&store, "from-qcow2", qcow2(), &qcow2_bytes, None).unwrap();

    assert_eq!(img.disk_format, DiskFormat::Qcow2);
    assert_eq!(img.stored_format, DiskFormat::Raw);
    assert_eq!(img.virtual_size, disk.len() as u64);
    assert_eq!(img.size, disk.len() as u64);
    assert_eq!(fs::read(&img.path).unwrap(), disk);
    // What was received and what is served are hashed separately.
    assert_eq!(img.uploaded.md5_hex, md5sum(&qcow2_path));
    assert_eq!(img.uploaded.size, qcow2_bytes.len() as u64);
    assert_eq!(img.checksum_md5, md5sum(&img.path));
    assert_eq!(img.os_hash_sha512, sha512sum(&img.path));
    // Both partial files (the qcow2 and the conversion) are gone.
    assert!(names_in(&partial_dir(&store)).is_empty());
    let info = run(
        "qemu-img",
        &["info", "--output=json", img.path.to_str().unwrap()],
    );
    assert!(info.contains("\"format\": \"raw\""), "{info}");
    // qemu-img rewrote our 0600 partial file in place; the mode must survive.
    let mode = fs::metadata(&img.path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
}

#[test]
fn qcow2_kept_as_qcow2_when_conversion_is_off() {
    let root = tempfile::tempdir().unwrap();
    let config = ImageStoreConfig {
        convert_qcow2_to_raw: false,
        ..ImageStoreConfig::default()
    };
    let store = ImageStore::open_with(root.path().join("store"), config).unwrap();
    let disk = disk_pattern(1024 * 1024, 9);
    let qcow2_path = qcow2_from_bytes(root.path(), "src", &disk);
    let bytes = fs::read(&qcow2_path).unwrap();

    let img = upload(&store, "q", qcow2(), &bytes, None).unwrap();
    assert_eq!(img.stored_format, DiskFormat::Qcow2);
    assert_eq!(img.virtual_size, disk.len() as u64);
    assert_eq!(img.size, bytes.len() as u64);
    assert_eq!(img.checksum_md5, md5sum(&qcow2_path));
    assert_eq!(fs::read(&img.path).unwrap(), bytes);
}

fn assert_refused_and_clean(store: &ImageStore, id: &str, err: &ImageError) {
    assert!(
        !store.contains(id).unwrap(),
        "{id} was published despite {err}"
    );
    assert!(names_in(&partial_dir(store)).is_empty());
}

#[test]
fn qcow2_with_backing_file_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().join("store")).unwrap();
    // The backing file is a host file the image would make qemu-img read.
    let secret = root.path().join("host-secret.raw");
    fs::write(&secret, disk_pattern(1024 * 1024, 1)).unwrap();
    let overlay = root.path().join("overlay.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "-b",
            secret.to_str().unwrap(),
            overlay.to_str().unwrap(),
        ],
    );

    let err = upload(&store, "evil", qcow2(), &fs::read(&overlay).unwrap(), None).unwrap_err();
    assert!(matches!(err, ImageError::Qcow2 { .. }), "{err}");
    assert!(err.to_string().contains("backing file"), "{err}");
    assert_refused_and_clean(&store, "evil", &err);
}

#[test]
fn qcow2_with_external_data_file_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().join("store")).unwrap();
    let data_file = root.path().join("data.raw");
    let image = root.path().join("ext.qcow2");
    run(
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-o",
            &format!("data_file={}", data_file.display()),
            image.to_str().unwrap(),
            "1M",
        ],
    );

    let err = upload(&store, "evil", qcow2(), &fs::read(&image).unwrap(), None).unwrap_err();
    assert!(matches!(err, ImageError::Qcow2 { .. }), "{err}");
    assert!(err.to_string().contains("external data file"), "{err}");
    assert_refused_and_clean(&store, "evil", &err);
}

#[test]
fn declared_format_must_match_the_bytes() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().join("store")).unwrap();
    let disk = disk_pattern(1024 * 1024, 2);
    let qcow2_bytes = fs::read(qcow2_from_bytes(root.path(), "src", &disk)).unwrap();

    let err = upload(&store, "a", raw(), &qcow2_bytes, None).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::FormatMismatch {
                declared: DiskFormat::Raw,
                found: ContentFormat::Qcow2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("disk_format"), "{err}");
    assert_refused_and_clean(&store, "a", &err);

    let err = upload(&store, "b", qcow2(), &disk, None).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::FormatMismatch {
                found: ContentFormat::Raw,
                ..
            }
        ),
        "{err}"
    );
    assert_refused_and_clean(&store, "b", &err);

    // A VMDK declared raw is recognised too.
    let vmdk = root.path().join("x.vmdk");
    run(
        "qemu-img",
        &["create", "-f", "vmdk", vmdk.to_str().unwrap(), "1M"],
    );
    let err = upload(&store, "c", raw(), &fs::read(&vmdk).unwrap(), None).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::FormatMismatch {
                found: ContentFormat::Vmdk,
                ..
            }
        ),
        "{err}"
    );
    assert_refused_and_clean(&store, "c", &err);
}

#[test]
fn lenient_store_records_what_the_bytes_are() {
    let root = tempfile::tempdir().unwrap();
    let config = ImageStoreConfig {
        require_format_match: false,
        ..ImageStoreConfig::default()
    };
    let store = ImageStore::open_with(root.path().join("store"), config).unwrap();
    let disk = disk_pattern(1024 * 1024, 4);
    let qcow2_bytes = fs::read(qcow2_from_bytes(root.path(), "src", &disk)).unwrap();

    let img = upload(&store, "declared-raw", raw(), &qcow2_bytes, None).unwrap();
    assert_eq!(img.disk_format, DiskFormat::Raw);
    assert_eq!(img.stored_format, DiskFormat::Raw);
    assert_eq!(fs::read(&img.path).unwrap(), disk);

    let img = upload(&store, "declared-qcow2", qcow2(), &disk, None).unwrap();
    assert_eq!(img.disk_format, DiskFormat::Qcow2);
    assert_eq!(img.stored_format, DiskFormat::Raw);
    assert_eq!(fs::read(&img.path).unwrap(), disk);
}

#[test]
fn unaccepted_formats_are_refused_up_front() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().to_owned()).unwrap();
    for format in [DiskFormat::Vmdk, DiskFormat::Vhd, DiskFormat::Vdi] {
        let err = store
            .begin_upload(
                "x",
                ExpectedFormat {
                    disk_format: format,
                    max_size: None,
                },
            )
            .unwrap_err();
        assert!(matches!(err, ImageError::UnsupportedFormat { .. }), "{err}");
    }
    // Kernels and ramdisks are plain bytes.
    let kernel = disk_pattern(100_000, 8);
    let img = upload(
        &store,
        "vmlinuz",
        ExpectedFormat {
            disk_format: DiskFormat::Aki,
            max_size: None,
        },
        &kernel,
        None,
    )
    .unwrap();
    assert_eq!(img.stored_format, DiskFormat::Raw);
    assert_eq!(fs::read(&img.path).unwrap(), kernel);
}

#[test]
fn uploads_past_the_size_limit_are_stopped() {
    let root = tempfile::tempdir().unwrap();
    let config = ImageStoreConfig {
        max_image_size: 1_000_000,
        ..ImageStoreConfig::default()
    };
    let store = ImageStore::open_with(root.path().to_owned(), config).unwrap();
    let data = disk_pattern(1_500_000, 6);

    // The per-upload limit, lower than the store's.
    let mut up = store
        .begin_upload(
            "small",
            ExpectedFormat {
                disk_format: DiskFormat::Raw,
                max_size: Some(4096),
            },
        )
        .unwrap();
    up.write_all(&data[..4096]).unwrap();
    let err = up.write_all(&data[4096..4097]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::FileTooLarge);
    let err = up.finish(None).unwrap_err();
    assert!(
        matches!(err, ImageError::TooLarge { limit: 4096, .. }),
        "{err}"
    );

    // The store's limit.
    let err = upload(&store, "big", raw(), &data, None).unwrap_err();
    assert!(
        matches!(
            err,
            ImageError::TooLarge {
                limit: 1_000_000,
                ..
            }
        ),
        "{err}"
    );
    assert_refused_and_clean(&store, "big", &err);
    assert!(!store.contains("small").unwrap());
}

#[test]
fn qcow2_virtual_size_above_the_limit_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let config = ImageStoreConfig {
        max_virtual_size: 1 << 30,
        ..ImageStoreConfig::default()
    };
    let store = ImageStore::open_with(root.path().join("store"), config).unwrap();
    let huge = root.path().join("huge.qcow2");
    run(
        "qemu-img",
        &["create", "-f", "qcow2", huge.to_str().unwrap(), "100T"],
    );
    let err = upload(&store, "huge", qcow2(), &fs::read(&huge).unwrap(), None).unwrap_err();
    assert!(
        matches!(err, ImageError::VirtualSizeTooLarge { size, .. } if size == 100 << 40),
        "{err}"
    );
    assert_refused_and_clean(&store, "huge", &err);
}

/// A qcow2 whose raw form would not fit the store's disk is refused before qemu-img converts
/// it (which would fill the disk first and fail after).
#[test]
fn qcow2_larger_than_the_free_space_is_refused_before_conversion() {
    let root = tempfile::tempdir().unwrap();
    let config = ImageStoreConfig {
        max_virtual_size: u64::MAX,
        convert_qcow2_to_raw: true,
        ..ImageStoreConfig::default()
    };
    let store = ImageStore::open_with(root.path().join("store"), config).unwrap();
    let huge = root.path().join("huge.qcow2");
    run(
        "qemu-img",
        &["create", "-f", "qcow2", huge.to_str().unwrap(), "1P"],
    );
    let err = upload(&store, "huge", qcow2(), &fs::read(&huge).unwrap(), None).unwrap_err();
    assert!(
        matches!(err, ImageError::NoSpace { needed, free, .. } if needed == 1 << 50 && free < needed),
        "{err}"
    );
    assert_refused_and_clean(&store, "huge", &err);
}

#[test]
fn empty_upload_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().to_owned()).unwrap();
    let err = store
        .begin_upload("e", raw())
        .unwrap()
        .finish(None)
        .unwrap_err();
    assert!(matches!(err, ImageError::Empty { .. }), "{err}");
    assert_refused_and_clean(&store, "e", &err);
}

#[test]
fn ids_that_are_not_safe_file_names_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().join("store")).unwrap();
    fs::write(root.path().join("outside"), b"keep me").unwrap();
    for bad in [
        "../outside",
        "..",
        "a/b",
        ".partial",
        "/etc/passwd",
        "",
        "x.raw",
    ] {
        assert!(
            matches!(store.begin_upload(bad, raw()), Err(ImageError::Id(_))),
            "{bad:?}"
        );
        assert!(matches!(store.open_image(bad), Err(ImageError::Id(_))));
        assert!(matches!(store.delete_image(bad), Err(ImageError::Id(_))));
        assert!(matches!(store.image_path(bad), Err(ImageError::Id(_))));
    }
    assert_eq!(fs::read(root.path().join("outside")).unwrap(), b"keep me");
}

#[test]
fn one_id_is_published_once() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().to_owned()).unwrap();
    let first = disk_pattern(200_000, 1);
    let second = disk_pattern(200_000, 2);

    // Two uploads race for one id: the first to finish wins, the other publishes nothing.
    let mut a = store.begin_upload("same", raw()).unwrap();
    let mut b = store.begin_upload("same", raw()).unwrap();
    a.write_all(&first).unwrap();
    b.write_all(&second).unwrap();
    a.finish(None).unwrap();
    let err = b.finish(None).unwrap_err();
    assert!(matches!(err, ImageError::AlreadyExists { .. }), "{err}");
    assert_eq!(fs::read(store.image_path("same").unwrap()).unwrap(), first);
    assert!(names_in(&partial_dir(&store)).is_empty());

    // Once published, a new upload is refused up front.
    assert!(matches!(
        store.begin_upload("same", raw()),
        Err(ImageError::AlreadyExists { .. })
    ));
}

#[test]
fn delete_is_idempotent_and_list_skips_other_files() {
    let root = tempfile::tempdir().unwrap();
    let store = ImageStore::open(root.path().to_owned()).unwrap();
    let data = disk_pattern(10_000, 1);
    upload(&store, "b", raw(), &data, None).unwrap();
    upload(&store, "a", raw(), &data, None).unwrap();
    fs::write(store.images_dir().join("not.an-id"), b"x").unwrap();
    assert_eq!(store.list_ids().unwrap(), vec!["a", "b"]);

    assert!(store.delete_image("a").unwrap());
    assert!(!store.delete_image("a").unwrap());
    assert_eq!(store.list_ids().unwrap(), vec!["b"]);
}

#[test]
fn crash_leftovers_are_removed_on_open() {
    let root = tempfile::tempdir().unwrap();
    let data = disk_pattern(2 * 1024 * 1024, 3);
    let leftover = {
        let store = ImageStore::open(root.path().to_owned()).unwrap();
        upload(&store, "kept", raw(), &data, None).unwrap();
        let mut up = store.begin_upload("interrupted", raw()).unwrap();
        up.write_all(&data).unwrap();
        // A crash: the destructor never runs.
        std::mem::forget(up);
        let names = names_in(&partial_dir(&store));
        assert_eq!(names.len(), 1);
        partial_dir(&store).join(&names[0])
    };
    assert!(leftover.exists());

    let store = ImageStore::open(root.path().to_owned()).unwrap();
    assert_eq!(store.removed_at_open(), std::slice::from_ref(&leftover));
    assert!(!leftover.exists());
    assert_eq!(store.list_ids().unwrap(), vec!["kept"]);
    assert_eq!(fs::read(store.image_path("kept").unwrap()).unwrap(), data);
    assert!(!store.contains("interrupted").unwrap());
}

#[test]
fn store_root_may_be_relative() {
    // qemu-img needs absolute paths; the store makes its own.
    let root = tempfile::tempdir_in(".").unwrap();
    let name = root.path().file_name().unwrap().to_owned();
    let store = ImageStore::open(Path::new(&name).join("store")).unwrap();
    assert!(store.images_dir().is_absolute());
    let disk = disk_pattern(512 * 1024, 12);
    let qcow2_bytes = fs::read(qcow2_from_bytes(root.path(), "src", &disk)).unwrap();
    let img = upload(&store, "rel", qcow2(), &qcow2_bytes, None).unwrap();
    assert_eq!(fs::read(img.path).unwrap(), disk);
}
