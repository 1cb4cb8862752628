//! The `outpost` binary against a real outpostd over its unix socket: tables, JSON, and
//! one-line errors carrying the service's message.

mod common;

use common::cli::{failed, ok, outpost};
use common::Daemon;
use serde_json::Value;

#[test]
fn flavor_create_list_show_delete_as_tables() {
    let d = Daemon::start();
    let out = ok(&outpost(
        &d,
        &[
            "flavor",
            "create",
            "m1.small",
            "--ram",
            "2048",
            "--vcpus",
            "2",
            "--disk",
            "20",
            "--id",
            "42",
            "--description",
            "two cpus",
            "--property",
            "hw:cpu_policy=dedicated",
        ],
    ));
    assert!(out.starts_with("+"), "{out}");
    let row = |field: &str| {
        out.lines()
            .find(|l| l.split('|').nth(1).map(str::trim) == Some(field))
            .unwrap_or_else(|| panic!("no {field} in\n{out}"))
            .split('|')
            .nth(2)
            .unwrap()
            .trim()
            .to_owned()
    };
    assert_eq!(row("id"), "42");
    assert_eq!(row("ram"), "2048");
    assert_eq!(row("description"), "two cpus");
    assert_eq!(row("properties"), "hw:cpu_policy='dedicated'");
    ok(&outpost(
        &d,
        &[
            "flavor", "create", "m1.tiny", "--ram", "512", "--vcpus", "1", "--id", "1",
        ],
    ));
    ok(&outpost(
        &d,
        &[
            "flavor",
            "create",
            "hidden",
            "--ram",
            "64",
            "--vcpus",
            "1",
            "--private",
        ],
    ));

    let list = ok(&outpost(&d, &["flavor", "list"]));
    let header = list.lines().nth(1).unwrap();
    for col in [
        "ID",
        "Name",
        "RAM",
        "Disk",
        "Ephemeral",
        "VCPUs",
        "Is Public",
    ] {
        assert!(header.contains(col), "{header}");
    }
    assert!(list.contains("m1.small") && list.contains("m1.tiny"));
    assert!(!list.contains("hidden"));
    let all = ok(&outpost(&d, &["flavor", "list", "--all", "--long"]));
    assert!(
        all.contains("hidden") && all.contains("RXTX Factor"),
        "{all}"
    );

    // By name, as well as by id.
    let shown = ok(&outpost(&d, &["flavor", "show", "m1.tiny"]));
    assert!(shown.contains("| 512"), "{shown}");
    assert_eq!(ok(&outpost(&d, &["flavor", "delete", "m1.tiny", "42"])), "");
    let list = ok(&outpost(&d, &["flavor", "list"]));
    assert!(
        !list.contains("m1.small") && !list.contains("m1.tiny"),
        "{list}"
    );
}

#[test]
fn json_output() {
    let d = Daemon::start();
    let created = ok(&outpost(
        &d,
        &[
            "-f", "json", "flavor", "create", "j1", "--ram", "256", "--vcpus", "1", "--id", "j1",
        ],
    ));
    let f: Value = serde_json::from_str(&created).unwrap();
    assert_eq!(f["name"], "j1");
    assert_eq!(f["ram"], 256);
    assert_eq!(f["extra_specs"], serde_json::json!({}));
    let listed: Value =
        serde_json::from_str(&ok(&outpost(&d, &["flavor", "list", "-f", "json"]))).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["id"], "j1");
    let shown: Value = serde_json::from_str(&ok(&outpost(
        &d,
        &["flavor", "show", "j1", "--format", "json"],
    )))
    .unwrap();
    assert_eq!(shown, f);
}

#[test]
fn errors_are_one_line_with_the_service_message() {
    let d = Daemon::start();
    let err = failed(&outpost(&d, &["flavor", "show", "nope"]));
    assert_eq!(
        err,
        "outpost: No flavor with a name or ID of 'nope' exists. (HTTP 404)\n"
    );
    let err = failed(&outpost(
        &d,
        &["flavor", "create", "bad", "--ram=-5", "--vcpus", "1"],
    ));
    assert!(err.contains("ram") && err.contains("(HTTP 400)"), "{err}");
    ok(&outpost(
        &d,
        &["flavor", "create", "dup", "--ram", "1", "--vcpus", "1"],
    ));
    let err = failed(&outpost(
        &d,
        &["flavor", "create", "dup", "--ram", "1", "--vcpus", "1"],
    ));
    assert_eq!(
        err,
        "outpost: Flavor with name dup already exists. (HTTP 409)\n"
    );
    let err = failed(&outpost(
        &d,
        &[
            "flavor",
            "create",
            "p",
            "--ram",
            "1",
            "--vcpus",
            "1",
            "--property",
            "novalue",
        ],
    ));
    assert!(err.contains("KEY=VALUE"), "{err}");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
        .args(["--socket", "/nonexistent/outpostd.sock", "flavor", "list"])
        .output()
        .unwrap();
    let err = failed(&o);
    assert!(
        err.contains("cannot connect to outpostd") && err.contains("/nonexistent"),
        "{err}"
    );
}
