//! `outpost image ...` and `outpost volume ...` against a real outpostd over its unix socket:
//! upload with the checksum equal to md5sum's, tables and JSON, save, volumes from images and
//! snapshots, extend, and one-line errors carrying the service's message.

mod common;

use common::cli::{failed, json, ok, outpost, row};
use common::Daemon;
use std::path::Path;
use std::process::Command;

fn md5sum(p: &Path) -> String {
    let out = Command::new("md5sum").arg(p).output().unwrap();
    String::from_utf8(out.stdout).unwrap()[..32].to_owned()
}

#[test]
fn image_create_list_show_save_delete() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("disk.raw");
    let data: Vec<u8> = (0..(2 << 20) + 7)
        .map(|n: u32| (n * 7 % 256) as u8)
        .collect();
    std::fs::write(&file, &data).unwrap();
    let f = file.to_str().unwrap();

    let out = ok(&outpost(
        &d,
        &[
            "image",
            "create",
            "--file",
            f,
            "--disk-format",
            "raw",
            "--property",
            "os_distro=test",
            "--tag",
            "boot",
            "--command-line",
            "console=ttyS0",
            "cirros",
        ],
    ));
    assert!(out.starts_with('+'), "{out}");
    assert_eq!(row(&out, "status"), "active");
    assert_eq!(row(&out, "checksum"), md5sum(&file));
    assert_eq!(row(&out, "size"), data.len().to_string());
    assert_eq!(row(&out, "tags"), "boot");
    let props = row(&out, "properties");
    assert!(
        props.contains("os_distro='test'") && props.contains("os_command_line='console=ttyS0'"),
        "{props}"
    );

    let shown = json(&d, &["image", "show", "cirros"]);
    assert_eq!(shown["checksum"], md5sum(&file));
    let id = shown["id"].as_str().unwrap().to_owned();
    let list = ok(&outpost(&d, &["image", "list"]));
    assert!(
        list.contains(&id) && list.contains("cirros") && list.contains("active"),
        "{list}"
    );
    let long = json(&d, &["image", "list", "--long"]);
    assert_eq!(long.as_array().unwrap().len(), 1);

    let back = tmp.path().join("back");
    ok(&outpost(
        &d,
        &["image", "save", "cirros", "--file", back.to_str().unwrap()],
    ));
    assert_eq!(std::fs::read(&back).unwrap(), data);

    // A kernel and ramdisk for direct kernel boot.
    let kernel = json(
        &d,
        &[
            "image",
            "create",
            "--file",
            f,
            "--disk-format",
            "aki",
            "vmlinuz",
        ],
    );
    assert_eq!(kernel["container_format"], "aki");
    let kid = kernel["id"].as_str().unwrap();
    let root = json(
        &d,
        &[
            "image",
            "create",
            "--disk-format",
            "raw",
            "--kernel-id",
            kid,
            "root",
        ],
    );
    assert_eq!(root["kernel_id"], kid);
    assert_eq!(root["status"], "queued");

    // Errors are one line with the service's message.
    let err = failed(&outpost(&d, &["image", "show", "nope"]));
    assert!(
        err.starts_with("outpost: ") && err.contains("nope"),
        "{err}"
    );
    let err = failed(&outpost(
        &d,
        &[
            "image",
            "create",
            "--file",
            "/nonexistent",
            "--disk-format",
            "raw",
            "x",
        ],
    ));
    assert!(err.contains("/nonexistent"), "{err}");
    let err = failed(&outpost(
        &d,
        &[
            "image",
            "create",
            "--file",
            f,
            "--disk-format",
            "qcow2",
            "liar",
        ],
    ));
    assert!(err.contains("HTTP 400"), "{err}");
    // The failed upload's record was removed.
    assert!(failed(&outpost(&d, &["image", "show", "liar"])).contains("404"));

    ok(&outpost(
        &d,
        &["image", "delete", "cirros", "vmlinuz", "root"],
    ));
    assert_eq!(json(&d, &["image", "list"]), serde_json::json!([]));
    assert!(std::fs::read_dir(d.state_dir().join("images"))
        .unwrap()
        .all(|e| e.unwrap().file_name() == ".partial"));
}

#[test]
fn volume_create_list_show_extend_snapshot_delete() {
    let d = Daemon::start();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("disk.raw");
    std::fs::write(&file, vec![0xabu8; 1 << 20]).unwrap();
    ok(&outpost(
        &d,
        &[
            "image",
            "create",
            "--file",
            file.to_str().unwrap(),
            "--disk-format",
            "raw",
            "base",
        ],
    ));

    let v = json(
        &d,
        &[
            "volume", "create", "--size", "1", "--image", "base", "--type", "thick", "--wait",
            "data",
        ],
    );
    assert_eq!(v["status"], "available");
    assert_eq!(v["volume_type"], "thick");
    let vid = v["id"].as_str().unwrap().to_owned();
    let bytes = std::fs::read(d.state_dir().join("volumes").join(format!("{vid}.raw"))).unwrap();
    assert!(bytes[..1 << 20].iter().all(|b| *b == 0xab));

    let table = ok(&outpost(&d, &["volume", "list"]));
    assert!(
        table.contains(&vid) && table.contains("available"),
        "{table}"
    );
    let shown = ok(&outpost(&d, &["volume", "show", "data"]));
    assert_eq!(row(&shown, "size"), "1");
    assert_eq!(row(&shown, "bootable"), "true");

    ok(&outpost(&d, &["volume", "extend", "data", "--size", "2"]));
    assert_eq!(json(&d, &["volume", "show", &vid])["size"], 2);
    let err = failed(&outpost(&d, &["volume", "extend", "data", "--size", "1"]));
    assert!(
        err.contains("greater than current size") && err.contains("HTTP 400"),
        "{err}"
    );

    let s = json(
        &d,
        &[
            "volume", "snapshot", "create", "--volume", "data", "--wait", "before",
        ],
    );
    assert_eq!(s["status"], "available");
    assert_eq!(s["size"], 2);
    let copy = json(
        &d,
        &["volume", "create", "--snapshot", "before", "--wait", "copy"],
    );
    assert_eq!(copy["size"], 2);
    assert_eq!(copy["status"], "available");
    let snaps = ok(&outpost(&d, &["volume", "snapshot", "list"]));
    assert!(snaps.contains("before"), "{snaps}");
    let types = ok(&outpost(&d, &["volume", "type", "list"]));
    assert!(types.contains("thick") && types.contains("thin"), "{types}");

    let err = failed(&outpost(&d, &["volume", "delete", "data"]));
    assert!(err.contains("snapshot"), "{err}");
    let err = failed(&outpost(&d, &["image", "delete", "base"]));
    assert!(err.contains("in use") && err.contains("HTTP 409"), "{err}");
    let err = failed(&outpost(&d, &["volume", "create", "--size", "0", "zero"]));
    assert!(err.contains("HTTP 400"), "{err}");

    ok(&outpost(&d, &["volume", "snapshot", "delete", "before"]));
    ok(&outpost(&d, &["volume", "delete", "data", "copy"]));
    assert_eq!(json(&d, &["volume", "list"]), serde_json::json!([]));
    ok(&outpost(&d, &["image", "delete", "base"]));
}
