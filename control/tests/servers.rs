//! Nova servers against the real outpostd, real `outpost-vmm` monitors and real guests (the
//! project's test kernel and rootfs from /var/cache/outpost/guest/current; build the monitor
//! first with `cargo build -p outpost-vmm`). Guests are shared between checks because each
//! boot costs tens of seconds, and the tests that boot run one at a time.
//!
//! - one server's life: BUILD → ACTIVE → console marker → stop → start → hard reboot →
//!   soft reboot → rename → resize (revert, then confirm) → delete, leaving no process,
//!   file, row or claim;
//! - clean shutdown: os-stop and a soft reboot press the guest's power button and it powers
//!   off by itself; a guest that ignores the button is stopped hard after the shutdown
//!   timeout;
//! - the supervisor: a guest that reboots itself is started again, one that powers off is
//!   SHUTOFF;
//! - restart safety: kill -9 of outpostd with a guest running (the guest stays, is adopted,
//!   stops and deletes), a monitor that died while outpostd was down (ERROR with the
//!   reason), a create interrupted by the crash (undone, nothing left) and a delete
//!   interrupted by it (finished);
//! - a server booted from an uploaded raw Glance image (the default guest kernel, a clone
//!   of the image as its disk) holds the image: deleting it answers 409 until the server
//!   is gone; a volume attached while it runs is pending until a hard reboot, then the
//!   guest sees vdb, it cannot be detached while open, and deleting the server frees it;
//! - boot from volume (`block_device_mapping_v2`): a server booted from a new volume copied
//!   from an image (its root drive is the volume's file, no local disk claimed) whose guest
//!   writes its boot id to a data volume; the volume detached, then given to a second server
//!   booted from an existing volume, whose guest reads the same record; delete_on_termination
//!   deletes the first root volume and keeps the others; bad mappings and image minimums
//!   refused with nothing made; a boot from volume interrupted by kill -9 undone;
//! - the serial console: a remote-console URL (Nova's API, the stock client), a websocket
//!   client and `outpost console attach` typing into the guest's shell and reading its
//!   answer;
//! - a request that does not fit (ERROR "No valid host was found. ..."), bad input refused
//!   in Nova's shape with nothing created, visibility between projects, and the CLI.

mod common;

use common::cli::outpost;
use common::guests::*;
use common::{Daemon, Text, ADMIN_PASSWORD};
use futures_util::{SinkExt, StreamExt};
use outpost_control::client::ApiResponse;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

#[test]
fn a_server_lives_through_its_life() {
    check_assets();
    let _turn = one_guest_at_a_time();
    let (d, _sweep) = start_daemon("soft_reboot_timeout_secs = 60\n");
    create_flavor(&d, "small", 1, 256, 1);
    create_flavor(&d, "bigger", 2, 512, 2);
    let id = create_server(&d, "life", "small");

    // BUILD, then ACTIVE with the states, flavor and host Nova shows.
    let s = wait_status(&d, &id, "ACTIVE");
    assert_eq!(s["OS-EXT-STS:vm_state"], "active");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    assert_eq!(s["flavor"]["original_name"], "small");
    assert_eq!(s["flavor"]["vcpus"], 1);
    assert_eq!(s["image"]["id"], "outpost-guest");
    assert_eq!(s["metadata"]["role"], "test");
    assert_eq!(s["addresses"], json!({}));
    assert!(s["OS-EXT-SRV-ATTR:host"]
        .as_str()
        .is_some_and(|h| !h.is_empty()));
    assert!(s.get("fault").is_none());

    // One monitor, configured with the flavor and the server's own 1 GiB root disk (a clone,
    // never the image).
    assert_eq!(monitor_pids(&d, &id).len(), 2, "shim and monitor");
    assert_eq!(monitor_get(&d, &id, "/")["state"], "Running");
    let (vcpus, mem, disk) = vm_config(&d, &id);
    assert_eq!((vcpus, mem), (1, 256));
    assert_eq!(
        PathBuf::from(&disk),
        root_disk(&d, &id).canonicalize().unwrap()
    );
    assert_eq!(disk_len(&d, &id), 1 << 30);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM claims"), 1);

    // The guest boots to its init marker; `length` limits the lines.
    wait_marker(&d, &id, 1);
    let tail = console(&d, &id, Some(3));
    assert!(tail.lines().count() <= 3, "{tail:?}");

    // Wrong state, unknown action, bad arguments: refused in Nova's shape, nothing changes.
    let r = action(&d, &id, json!({"os-start": null}));
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    assert_eq!(
        r.body_json()["conflictingRequest"]["message"],
        format!("Cannot 'start' instance {id} while it is in vm_state active")
    );
    let r = action(&d, &id, json!({"explode": null}));
    assert_eq!(r.status.as_u16(), 400);
    assert_eq!(
        r.body_json()["badRequest"]["message"],
        "There is no such action: explode"
    );
    assert_eq!(
        action(&d, &id, json!({"reboot": {"type": "NOW"}}))
            .status
            .as_u16(),
        400
    );
    assert_eq!(
        action(&d, &id, json!({"os-getConsoleOutput": {"length": -5}}))
            .status
            .as_u16(),
        400
    );
    assert_eq!(
        action(&d, &id, json!({"resize": {"flavorRef": "small"}}))
            .status
            .as_u16(),
        400
    );
    assert_eq!(
        action(&d, &id, json!({"resize": {"flavorRef": "nope"}}))
            .status
            .as_u16(),
        400
    );
    assert_eq!(wait_status(&d, &id, "ACTIVE")["OS-EXT-STS:power_state"], 1);

    // Stop: the power button, and the guest powers itself off (well before the 60 s
    // shutdown timeout); SHUTOFF, no monitor left.
    assert_eq!(
        action(&d, &id, json!({"os-stop": null})).status.as_u16(),
        202
    );
    let s = wait_status(&d, &id, "SHUTOFF");
    assert_eq!(console(&d, &id, None).matches(POWER_BUTTON).count(), 1);
    assert_eq!(
        d.log().matches(SHUT_DOWN_BY_ITSELF).count(),
        1,
        "{}",
        d.log()
    );
    assert_eq!(s["OS-EXT-STS:vm_state"], "stopped");
    assert_eq!(s["OS-EXT-STS:power_state"], 4);
    assert!(monitor_pids(&d, &id).is_empty());
    let r = action(&d, &id, json!({"os-stop": null}));
    assert_eq!(r.status.as_u16(), 409);

    // Start: ACTIVE with a new monitor.
    assert_eq!(
        action(&d, &id, json!({"os-start": null})).status.as_u16(),
        202
    );
    wait_status(&d, &id, "ACTIVE");
    let before = monitor_pids(&d, &id);
    assert_eq!(before.len(), 2);

    // Hard reboot: the monitor is replaced and the guest boots again.
    let markers = console(&d, &id, None).matches(MARKER).count();
    assert_eq!(
        action(&d, &id, json!({"reboot": {"type": "HARD"}}))
            .status
            .as_u16(),
        202
    );
    wait_status(&d, &id, "ACTIVE");
    let after = monitor_pids(&d, &id);
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} {after:?}"
    );
    wait_marker(&d, &id, markers + 1);

    // Soft reboot: the power button; the guest powers off by itself and is started again
    // (after the soft-reboot timeout it would have become a hard one, as in Nova).
    assert_eq!(
        action(&d, &id, json!({"reboot": {"type": "SOFT"}}))
            .status
            .as_u16(),
        202
    );
    assert_eq!(server(&d, &id)["status"], "REBOOT");
    let r = action(&d, &id, json!({"os-stop": null}));
    assert_eq!(r.status.as_u16(), 409);
    assert!(r.text().contains("task_state rebooting"), "{}", r.text());
    wait_status(&d, &id, "ACTIVE");
    let soft = monitor_pids(&d, &id);
    assert_eq!(soft.len(), 2);
    assert!(
        soft.iter().all(|p| !after.contains(p)),
        "{after:?} {soft:?}"
    );
    assert_eq!(console(&d, &id, None).matches(POWER_BUTTON).count(), 2);
    assert_eq!(
        d.log().matches(SHUT_DOWN_BY_ITSELF).count(),
        2,
        "{}",
        d.log()
    );

    // Rename and describe (2.19+); the answer is the server as GET shows it.
    let r = api(&d).put(
        &format!("/compute/v2.1/servers/{id}"),
        Some(&json!({"server": {"name": "renamed", "description": "a test server"}})),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(r.body_json()["server"]["name"], "renamed");
    assert_eq!(server(&d, &id)["description"], "a test server");

    // Resize, then revert: the new size runs beside the old claim, then all goes back.
    assert_eq!(
        action(&d, &id, json!({"resize": {"flavorRef": "bigger"}}))
            .status
            .as_u16(),
        202
    );
    let s = wait_status(&d, &id, "VERIFY_RESIZE");
    assert_eq!(s["flavor"]["original_name"], "bigger");
    assert_eq!(size(&d, &id), (2, 512));
    assert_eq!(disk_len(&d, &id), 2 << 30);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM claims"), 2);
    assert_eq!(
        action(&d, &id, json!({"revertResize": null}))
            .status
            .as_u16(),
        202
    );
    let s = wait_status(&d, &id, "ACTIVE");
    assert_eq!(s["flavor"]["original_name"], "small");
    assert_eq!(size(&d, &id), (1, 256));
    assert_eq!(disk_len(&d, &id), 1 << 30);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM claims"), 1);

    // Resize, then confirm: the old size is released, and the new flavor's I/O quotas are
    // the root drive's token buckets (the old flavor had none).
    let drive = |d: &Daemon| monitor_get(d, &id, "/vm/config")["drives"][0].clone();
    assert!(drive(&d)["rate_limiter"].is_null(), "{}", drive(&d));
    let r = api(&d).post(
        "/compute/v2.1/flavors/bigger/os-extra_specs",
        &json!({"extra_specs": {"quota:disk_total_bytes_sec": "10485760",
                                "quota:disk_total_iops_sec": "200"}}),
    );
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        action(&d, &id, json!({"resize": {"flavorRef": "bigger"}}))
            .status
            .as_u16(),
        202
    );
    wait_status(&d, &id, "VERIFY_RESIZE");
    assert_eq!(
        action(&d, &id, json!({"confirmResize": null}))
            .status
            .as_u16(),
        204
    );
    let s = wait_status(&d, &id, "ACTIVE");
    assert_eq!(s["flavor"]["vcpus"], 2);
    assert_eq!(size(&d, &id), (2, 512));
    let claim: String = db(&d)
        .query_row("SELECT claim FROM claims", [], |r| r.get(0))
        .unwrap();
    assert!(claim.contains("\"MEMORY_MB\":512"), "{claim}");
    let limiter = drive(&d)["rate_limiter"].clone();
    assert_eq!(limiter["bandwidth"]["size"], 10_485_760, "{limiter}");
    assert_eq!(limiter["ops"]["size"], 200, "{limiter}");
    assert_eq!(limiter["ops"]["refill_time"], 1000, "{limiter}");

    // os-migrations: the two resizes, newest first, each ended as it was.
    let r = api(&d).get(&format!("/compute/v2.1/os-migrations?instance_uuid={id}"));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let listed = r.json().unwrap()["migrations"].clone();
    let ended: Vec<(&str, &str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["migration_type"].as_str().unwrap_or_default(),
                m["status"].as_str().unwrap_or_default(),
                m["new_instance_type_id"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        ended,
        [
            ("resize", "confirmed", "bigger"),
            ("resize", "reverted", "bigger")
        ],
        "{listed}"
    );
    assert_eq!(listed[0]["source_compute"], listed[0]["dest_compute"]);

    // Delete: nothing is left.
    delete_leaving_nothing(&d, &id);
}

#[test]
fn a_server_boots_from_an_uploaded_image_holds_it_and_gets_volumes() {
    check_assets();
    let _turn = one_guest_at_a_time();
    let (d, _sweep) = start_daemon("");
    create_flavor(&d, "small", 1, 256, 1);
    let rootfs = Path::new(ASSETS).join("rootfs.ext4");
    let image = upload_raw_image(&d, "rootfs", &rootfs);

    // imageRef as the client sends it: a link to the image.
    let r = api(&d).post(
        "/compute/v2.1/servers",
        &json!({"server": {"name": "glance", "flavorRef": "small", "networks": "none",
                           "imageRef": format!("http://x/image/v2/images/{image}")}}),
    );
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let id = r.body_json()["server"]["id"].as_str().unwrap().to_owned();
    let s = wait_status(&d, &id, "ACTIVE");
    assert_eq!(s["image"]["id"], image.as_str());
    wait_marker(&d, &id, 1);

    // A plain image boots the default guest kernel, from a 1 GiB clone of the image.
    let boot = monitor_get(&d, &id, "/vm/config")["boot-source"].clone();
    assert_eq!(
        boot["kernel_image_path"],
        Path::new(ASSETS).join("test-vmlinux").to_str().unwrap()
    );
    let (_, _, disk) = vm_config(&d, &id);
    assert_eq!(Path::new(&disk), root_disk(&d, &id));
    assert_eq!(disk_len(&d, &id), 1 << 30);

    // A volume attached to the running server waits for its next start: then the monitor
    // has it as a second drive, and it cannot be detached while the guest has it open.
    let project = s["tenant_id"].as_str().unwrap().to_owned();
    let vols = format!("/volume/v3/{project}/volumes");
    let r = d
        .unix()
        .post(&vols, &json!({"volume": {"size": 1, "name": "data"}}));
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let vol = r.body_json()["volume"]["id"].as_str().unwrap().to_owned();
    let volume_status = |want: &str| {
        let deadline = Instant::now() + STATE_TIMEOUT;
        loop {
            let v = d.unix().get(&format!("{vols}/{vol}")).body_json()["volume"].clone();
            if v["status"] == want {
                return v;
            }
            assert!(Instant::now() < deadline, "volume never {want}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    volume_status("available");
    let va = format!("/compute/v2.1/servers/{id}/os-volume_attachments");
    let r = api(&d).post(&va, &json!({"volumeAttachment": {"volumeId": vol}}));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let a = r.body_json()["volumeAttachment"].clone();
    assert_eq!(a["device"], "/dev/vdb");
    assert_eq!(a["serverId"], id.as_str());
    assert_eq!(a["outpost:pending_restart"], true);
    let v = volume_status("in-use");
    assert_eq!(v["attachments"][0]["server_id"], id.as_str(), "{v}");
    // Attached once only.
    let r = api(&d).post(&va, &json!({"volumeAttachment": {"volumeId": vol}}));
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    let r = action(&d, &id, json!({"reboot": {"type": "HARD"}}));
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    wait_status(&d, &id, "ACTIVE");
    let shown = api(&d).get(&format!("{va}/{vol}")).body_json();
    assert_eq!(shown["volumeAttachment"]["outpost:pending_restart"], false);
    let drives = monitor_get(&d, &id, "/vm/config")["drives"].clone();
    assert_eq!(drives.as_array().unwrap().len(), 2, "{drives}");
    assert!(
        drives[1]["path_on_host"].as_str().unwrap().contains(&vol),
        "{drives}"
    );
    let r = api(&d).delete(&format!("{va}/{vol}"));
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    // The guest's kernel found it: virtio-blk names the second disk vdb.
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while !console(&d, &id, None).contains("[vdb]") {
        assert!(
            Instant::now() < deadline,
            "the guest never saw vdb:\n{}",
            console(&d, &id, Some(30))
        );
        std::thread::sleep(Duration::from_secs(1));
    }

    // Held: Glance refuses to delete it while the server exists.
    let users = format!(
        "SELECT COUNT(*) FROM image_usage WHERE image_id = '{image}' \
         AND consumer_kind = 'server' AND consumer_id = '{id}'"
    );
    assert_eq!(count(&d, &users), 1);
    let r = d.unix().delete(&format!("/image/v2/images/{image}"));
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    assert!(r.text().contains("in use by 1 server(s)"), "{}", r.text());

    delete_leaving_nothing(&d, &id);
    assert_eq!(count(&d, &users), 0);
    // Deleting the server detached its volume.
    assert!(volume_status("available")["attachments"]
        .as_array()
        .unwrap()
        .is_empty());
    let r = d.unix().delete(&format!("/image/v2/images/{image}"));
    assert_eq!(r.status.as_u16(), 204, "{}", r.text());

    // An image that cannot boot (a kernel image, its data not even uploaded) is refused
    // with nothing created.
    let r = d.unix().post(
        "/image/v2/images",
        &json!({"name": "k", "disk_format": "aki", "container_format": "aki"}),
    );
    let kernel = r.body_json()["id"].as_str().unwrap().to_owned();
    let r = api(&d).post(
        "/compute/v2.1/servers",
        &json!({"server": {"name": "k", "flavorRef": "small", "networks": "none",
                           "imageRef": kernel}}),
    );
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    assert_eq!(count(&d, "SELECT COUNT(*) FROM servers"), 0);
}

/// What the guest does decides what the supervisor does: a guest that reboots itself
/// (monitor exit 3) is started again and stays ACTIVE; one that powers off (exit 0) is
/// SHUTOFF, with no fault.
#[test]
fn the_supervisor_follows_what_the_guest_does() {
    check_assets();
    let _turn = one_guest_at_a_time();
    let guest = |end: &str| {
        format!("[guest]\nboot_args = \"console=ttyS0 reboot=k panic=1 outpost.end={end}\"\n")
    };
    let (d, _sweep) = start_daemon(&guest("reboot"));
    create_flavor(&d, "small", 1, 256, 1);
    let id = create_server(&d, "rebooter", "small");
    wait_status(&d, &id, "ACTIVE");
    let first = monitor_pids(&d, &id);
    wait_marker(&d, &id, 2);
    let s = wait_status(&d, &id, "ACTIVE");
    assert!(s.get("fault").is_none());
    // The guest reboots again and again: wait for a moment its shim and monitor both run.
    let deadline = Instant::now() + STATE_TIMEOUT;
    let again = loop {
        let pids = monitor_pids(&d, &id);
        if pids.len() == 2 {
            break pids;
        }
        assert!(Instant::now() < deadline, "monitor processes: {pids:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(
        again.iter().all(|p| !first.contains(p)),
        "{first:?} {again:?}"
    );
    assert!(
        d.log().contains("the guest rebooted; starting it again"),
        "{}",
        d.log()
    );
    delete_leaving_nothing(&d, &id);
    drop(d);

    let (d, _sweep) = start_daemon(&guest("poweroff"));
    create_flavor(&d, "small", 1, 256, 1);
    let id = create_server(&d, "poweroff", "small");
    wait_marker(&d, &id, 1);
    let deadline = Instant::now() + BOOT_TIMEOUT;
    while server(&d, &id)["status"] != "SHUTOFF" {
        assert!(Instant::now() < deadline, "the guest did not power off");
        std::thread::sleep(Duration::from_millis(500));
    }
    let s = server(&d, &id);
    assert_eq!(s["OS-EXT-STS:power_state"], 4);
    assert!(s.get("fault").is_none());
    assert!(monitor_pids(&d, &id).is_empty());
    delete_leaving_nothing(&d, &id);
    drop(d);

    // A guest that ignores its power button is stopped hard once the shutdown timeout is
    // over, and only then SHUTOFF.
    let (d, _sweep) = start_daemon(&format!(
        "shutdown_timeout_secs = 4\n{}",
        guest("wait outpost.button=ignore")
    ));
    create_flavor(&d, "small", 1, 256, 1);
    let id = create_server(&d, "stubborn", "small");
    wait_marker(&d, &id, 1);
    let asked = Instant::now();
    assert_eq!(
        action(&d, &id, json!({"os-stop": null})).status.as_u16(),
        202
    );
    assert_eq!(server(&d, &id)["OS-EXT-STS:task_state"], "powering-off");
    let s = wait_status(&d, &id, "SHUTOFF");
    assert!(
        asked.elapsed() >= Duration::from_secs(4),
        "{:?}",
        asked.elapsed()
    );
    assert_eq!(s["OS-EXT-STS:power_state"], 4);
    assert!(monitor_pids(&d, &id).is_empty());
    assert!(!console(&d, &id, None).contains(POWER_BUTTON));
    assert!(
        d.log()
            .contains("the guest ignored its power button for 4s"),
        "{}",
        d.log()
    );
    assert!(!d.log().contains(SHUT_DOWN_BY_ITSELF), "{}", d.log());
    delete_leaving_nothing(&d, &id);
}

/// What the guest's init prints when its power button is pressed (guest/init).
const POWER_BUTTON: &str = "OUTPOST-POWER-BUTTON";
/// What outpostd logs when a guest powered off after its button (runner.rs).
const SHUT_DOWN_BY_ITSELF: &str = "the guest shut down in";

/// Nova's serial console end to end: a remote-console URL (Nova's API and the stock
/// `openstack console url show --serial`), and a websocket client that types a command into
/// the guest's shell (`outpost.end=shell`) and reads what it printed, through outpostd and
/// the monitor's console socket. Another project's member gets 404, a bad or spent token
/// 401.
#[test]
fn a_websocket_client_types_into_the_guests_shell() {
    check_assets();
    let _turn = one_guest_at_a_time();
    let (d, _sweep) =
        start_daemon("[guest]\nboot_args = \"console=ttyS0 reboot=k panic=1 outpost.end=shell\"\n");
    create_flavor(&d, "small", 1, 256, 1);
    let id = create_server(&d, "console", "small");
    wait_status(&d, &id, "ACTIVE");
    wait_marker(&d, &id, 1);
    let path = format!("/compute/v2.1/servers/{id}/remote-consoles");
    let serial = json!({"remote_console": {"protocol": "serial", "type": "serial"}});

    // Only the server's project (and admins) may have its console.
    d.make_member("mallory", "mallory-pw", "other");
    let other = d.login("mallory", "mallory-pw", Some("other"));
    let r = d
        .tcp(Some(&other))
        .with_header(V275.0, V275.1)
        .post(&path, &serial);
    assert_eq!(r.status.as_u16(), 404, "{}", r.text());
    // Nova's other protocols are not served; remote-consoles is 2.6+, the action before.
    let vnc = json!({"remote_console": {"protocol": "vnc", "type": "novnc"}});
    assert_eq!(api(&d).post(&path, &vnc).status.as_u16(), 400);
    assert_eq!(d.unix().post(&path, &serial).status.as_u16(), 404);
    let old = d.unix().post(
        &format!("/compute/v2.1/servers/{id}/action"),
        &json!({"os-getSerialConsole": {"type": "serial"}}),
    );
    assert_eq!(old.status.as_u16(), 200, "{}", old.text());
    assert_eq!(old.body_json()["console"]["type"], "serial");
    let r = action(&d, &id, json!({"os-getSerialConsole": {"type": "serial"}}));
    assert_eq!(r.status.as_u16(), 400, "removed in 2.6: {}", r.text());

    // The stock client prints the URL.
    let admin = common::openstack::as_user(&d, "admin", ADMIN_PASSWORD, "admin");
    let shown = admin.json(&["console", "url", "show", "--serial", &id]);
    assert_eq!(shown["type"], "serial", "{shown}");
    let prefix = format!("ws://{}/serial-console?token=", d.addr);
    assert!(
        shown["url"]
            .as_str()
            .is_some_and(|u| u.starts_with(&prefix)),
        "{shown}"
    );

    let r = api(&d).post(&path, &serial);
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    let remote = r.body_json()["remote_console"].clone();
    assert_eq!(
        (&remote["protocol"], &remote["type"]),
        (&json!("serial"), &json!("serial"))
    );
    let url = remote["url"].as_str().unwrap().to_owned();

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let refused = websocket(&d, &format!("{prefix}not-a-token"))
            .await
            .unwrap_err();
        assert_eq!(refused, 401);
        let mut ws = websocket(&d, &url).await.unwrap();
        // The arithmetic makes the shell's answer differ from the echo of what was typed.
        // Typed again now and then: keys sent before the shell opened the tty are lost.
        let command = "echo OUTPOST-CONSOLE-$((6*7))\n";
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut seen = String::new();
        'typing: while !seen.contains("OUTPOST-CONSOLE-42") {
            assert!(
                Instant::now() < deadline,
                "no answer from the shell:\n{seen}"
            );
            ws.send(Message::Binary(command.as_bytes().to_vec().into()))
                .await
                .unwrap();
            let round = Instant::now() + Duration::from_secs(15);
            while Instant::now() < round {
                let left = round - Instant::now();
                match tokio::time::timeout(left, ws.next()).await {
                    Ok(Some(Ok(Message::Binary(b)))) => {
                        seen.push_str(&String::from_utf8_lossy(&b));
                        if seen.contains("OUTPOST-CONSOLE-42") {
                            break 'typing;
                        }
                    }
                    Ok(Some(Ok(_))) => {}
                    Ok(other) => panic!("the console closed: {other:?}\n{seen}"),
                    Err(_) => break,
                }
            }
        }
        let _ = ws.close(None).await;
        // The token was spent by its use.
        assert_eq!(websocket(&d, &url).await.unwrap_err(), 401);
    });
    // What went over the websocket is in the console log too.
    assert!(console(&d, &id, None).contains("OUTPOST-CONSOLE-42"));

    // `outpost console attach` (over the unix socket): keys in, the answer out, Ctrl-] ends
    // it.
    let mut attach = std::process::Command::new(env!("CARGO_BIN_EXE_outpost"))
        .env("OUTPOST_SOCKET", d.socket())
        .args(["console", "attach", "console"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut keys = attach.stdin.take().unwrap();
    let mut screen = attach.stdout.take().unwrap();
    let (shown_tx, shown) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = std::io::Read::read(&mut screen, &mut buf) {
            if shown_tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = String::new();
    'cli: loop {
        assert!(
            Instant::now() < deadline,
            "no answer through the CLI:\n{seen}"
        );
        std::io::Write::write_all(&mut keys, b"echo OUTPOST-CLI-$((6*7))\n").unwrap();
        let round = Instant::now() + Duration::from_secs(15);
        while let Ok(b) = shown.recv_timeout(round.saturating_duration_since(Instant::now())) {
            seen.push_str(&String::from_utf8_lossy(&b));
            if seen.contains("OUTPOST-CLI-42") {
                break 'cli;
            }
        }
    }
    std::io::Write::write_all(&mut keys, &[0x1d]).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = attach.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "Ctrl-] did not detach");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "{status:?}");
    delete_leaving_nothing(&d, &id);
}

type ConsoleSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A websocket to `url` on `d`'s TCP listener; the HTTP status when it is refused.
async fn websocket(d: &Daemon, url: &str) -> Result<ConsoleSocket, u16> {
    let tcp = tokio::net::TcpStream::connect(d.addr).await.unwrap();
    match tokio_tungstenite::client_async(url, tcp).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("websocket to {url}: {e}"),
    }
}

#[test]
fn guests_outlive_a_killed_daemon() {
    check_assets();
    let _turn = one_guest_at_a_time();
    let (mut d, _sweep) = start_daemon("");
    create_flavor(&d, "small", 1, 256, 1);
    let id = create_server(&d, "survivor", "small");
    wait_status(&d, &id, "ACTIVE");
    let pids = monitor_pids(&d, &id);
    assert_eq!(pids.len(), 2);

    // kill -9 outpostd: the guest keeps running; a new outpostd adopts it.
    d.kill9();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(
        monitor_pids(&d, &id),
        pids,
        "the monitor died with outpostd"
    );
    assert_eq!(monitor_get(&d, &id, "/")["state"], "Running");
    d.spawn();
    let s = wait_status(&d, &id, "ACTIVE");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    assert_eq!(monitor_pids(&d, &id), pids);
    assert!(
        d.log().contains("adopted its running monitor"),
        "{}",
        d.log()
    );
    wait_marker(&d, &id, 1);
    // What was adopted is a jailed monitor (the default as root): not root, no privileges.
    let status = std::fs::read_to_string(format!("/proc/{}/status", vmm_pid(&d, &id))).unwrap();
    assert_ne!(
        status_field(&status, "Uid").split_whitespace().next(),
        Some("0")
    );
    assert_eq!(status_field(&status, "CapEff"), "0000000000000000");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");

    // The adopted monitor (not outpostd's child any more) stops and starts.
    assert_eq!(
        action(&d, &id, json!({"os-stop": null})).status.as_u16(),
        202
    );
    wait_status(&d, &id, "SHUTOFF");
    assert!(monitor_pids(&d, &id).is_empty());
    assert_eq!(
        action(&d, &id, json!({"os-start": null})).status.as_u16(),
        202
    );
    wait_status(&d, &id, "ACTIVE");

    // A power cut: outpostd and every monitor die at once, and the host boots again. The
    // reboot is simulated where outpostd reads it: the boot id recorded with each monitor
    // becomes another boot's. The running server starts again by itself
    // (resume_guests_state_on_host_boot) and its guest boots; a stopped one stays off.
    let off = create_server(&d, "stopped-before-the-cut", "small");
    wait_status(&d, &off, "ACTIVE");
    let r = action(&d, &off, json!({"os-stop": null}));
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    wait_status(&d, &off, "SHUTOFF");
    let before = monitor_pids(&d, &id);
    let markers = console(&d, &id, None).matches(MARKER).count();
    d.kill9();
    for pid in &before {
        // SAFETY: the processes of this test's server (its shim and its monitor).
        unsafe { libc::kill(*pid, libc::SIGKILL) };
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while !monitor_pids(&d, &id).is_empty() {
        assert!(Instant::now() < deadline, "the monitor did not die");
        std::thread::sleep(Duration::from_millis(100));
    }
    let db = rusqlite::Connection::open(d.state_dir().join("outpost.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE servers SET monitor_boot_id = 'a-boot-before-the-power-cut' \
             WHERE monitor_boot_id IS NOT NULL",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1, "only the running server has a monitor recorded");
    drop(db);
    d.spawn();
    wait_marker(&d, &id, markers + 1);
    let s = wait_status(&d, &id, "ACTIVE");
    assert_eq!(s["OS-EXT-STS:power_state"], 1);
    let after = monitor_pids(&d, &id);
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|p| !before.contains(p)),
        "{before:?} {after:?}"
    );
    assert!(
        d.log()
            .contains("the host rebooted while it ran; starting it again"),
        "{}",
        d.log()
    );
    let s = wait_status(&d, &off, "SHUTOFF");
    assert_eq!(s["OS-EXT-STS:power_state"], 4);
    assert!(monitor_pids(&d, &off).is_empty());
    delete_leaving_nothing(&d, &off);

    // The monitor dies while outpostd is down: the next outpostd says so (ERROR + fault).
    d.kill9();
    let vmm = vmm_pid(&d, &id);
    // SAFETY: the outpost-vmm process of this test's server.
    unsafe { libc::kill(vmm, libc::SIGKILL) };
    let deadline = Instant::now() + Duration::from_secs(10);
    while !monitor_pids(&d, &id).is_empty() {
        assert!(Instant::now() < deadline, "the shim did not end");
        std::thread::sleep(Duration::from_millis(100));
    }
    d.spawn();
    let s = wait_status(&d, &id, "ERROR");
    let fault = s["fault"]["message"].as_str().unwrap();
    assert!(
        fault.starts_with("The server's monitor stopped:"),
        "{fault}"
    );
    assert_eq!(s["fault"]["code"], 500);

    // A server in ERROR deletes cleanly, after a restart too.
    delete_leaving_nothing(&d, &id);
}

#[test]
fn operations_interrupted_by_a_crash_are_finished_or_undone() {
    check_assets();
    let _turn = one_guest_at_a_time();
    // A monitor that takes its time to come up, so outpostd can be killed mid-create.
    let dir = tempfile::tempdir().unwrap();
    let slow = dir.path().join("slow-vmm");
    std::fs::write(
        &slow,
        format!("#!/bin/sh\nsleep 4\nexec {:?} \"$@\"\n", monitor_binary()),
    )
    .unwrap();
    std::fs::set_permissions(&slow, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = format!("[compute]\nmonitor = {slow:?}\n");
    let mut d = Daemon::start_with(Some(&config), Some(ADMIN_PASSWORD));
    let _sweep = Sweep(d.dir.path().to_owned());
    create_flavor(&d, "small", 1, 256, 1);
    let id = create_server(&d, "interrupted", "small");
    let deadline = Instant::now() + Duration::from_secs(10);
    while monitor_pids(&d, &id).is_empty() {
        assert!(Instant::now() < deadline, "the monitor never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(server(&d, &id)["status"], "BUILD");
    d.kill9();
    d.spawn();
    let s = wait_status(&d, &id, "ERROR");
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("the build was undone"),
        "{s:#}"
    );
    // The undo left nothing but the row (its folder keeps the logs until delete).
    assert!(monitor_pids(&d, &id).is_empty());
    assert!(!root_disk(&d, &id).exists());
    assert_eq!(count(&d, "SELECT COUNT(*) FROM claims"), 0);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM server_tasks"), 0);

    // A delete interrupted after its first steps is finished at the next start. The crash
    // point is placed in the database while outpostd is down: a running server whose delete
    // had recorded the step "remove_disk" (its monitor may or may not be gone yet).
    let other = create_server(&d, "half-deleted", "small");
    wait_status(&d, &other, "ACTIVE");
    assert_eq!(monitor_pids(&d, &other).len(), 2);
    d.kill9();
    {
        let c = db(&d);
        c.execute(
            "UPDATE servers SET task_state = 'deleting' WHERE id = ?1",
            [&other],
        )
        .unwrap();
        c.execute(
            "INSERT INTO server_tasks (server_id, kind, step, started_at, updated_at)
             VALUES (?1, 'delete', 'remove_disk', 0, 0)",
            [&other],
        )
        .unwrap();
    }
    d.spawn();
    wait_gone(&d, &other);
    assert_nothing_left(&d, &other);

    // A boot from volume interrupted the same way: the volume its build made is deleted
    // (even without delete_on_termination), the one it was given is detached, available.
    let image = upload_raw_image(&d, "rootfs", &Path::new(ASSETS).join("rootfs.ext4"));
    let project: String = db(&d)
        .query_row("SELECT id FROM projects WHERE name = 'admin'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let vols = format!("/volume/v3/{project}/volumes");
    let r = d
        .unix()
        .post(&vols, &json!({"volume": {"size": 1, "name": "given"}}));
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let given = r.body_json()["volume"]["id"].as_str().unwrap().to_owned();
    let given_status =
        |d: &Daemon| d.unix().get(&format!("{vols}/{given}")).body_json()["volume"].clone();
    let deadline = Instant::now() + STATE_TIMEOUT;
    while given_status(&d)["status"] != "available" {
        assert!(Instant::now() < deadline, "{}", given_status(&d));
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = api(&d).post(
        "/compute/v2.1/servers",
        &json!({"server": {"name": "bfv", "flavorRef": "small", "networks": "none",
            "block_device_mapping_v2": [
                {"boot_index": 0, "uuid": image, "source_type": "image",
                 "destination_type": "volume", "volume_size": 1},
                {"uuid": given, "source_type": "volume", "destination_type": "volume"}]}}),
    );
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let bfv = r.body_json()["server"]["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + STATE_TIMEOUT;
    while monitor_pids(&d, &bfv).is_empty() {
        assert!(Instant::now() < deadline, "the monitor never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(&d, "SELECT COUNT(*) FROM volumes"), 2);
    d.kill9();
    d.spawn();
    let s = wait_status(&d, &bfv, "ERROR");
    assert!(
        s["fault"]["message"]
            .as_str()
            .unwrap()
            .contains("the build was undone"),
        "{s:#}"
    );
    assert_eq!(count(&d, "SELECT COUNT(*) FROM volumes"), 1);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM volume_attachments"), 0);
    let v = given_status(&d);
    assert_eq!(v["status"], "available", "{v}");
    let r = api(&d).delete(&format!("/compute/v2.1/servers/{bfv}"));
    assert_eq!(r.status.as_u16(), 204, "{}", r.text());
    wait_gone(&d, &bfv);
    assert_nothing_left(&d, &bfv);
    assert_eq!(given_status(&d)["status"], "available");

    delete_leaving_nothing(&d, &id);
}

#[test]
fn a_server_that_does_not_fit_ends_in_error_and_bad_input_changes_nothing() {
    // A small host: nothing boots in this test.
    let (d, _sweep) = start_daemon("vcpus = 2\nram_mb = 2048\ndisk_gb = 10\n");
    create_flavor(&d, "small", 1, 256, 1);
    create_flavor(&d, "huge", 1, 4096, 1);
    let id = create_server(&d, "too-big", "huge");
    let s = wait_status(&d, &id, "ERROR");
    let fault = s["fault"]["message"].as_str().unwrap();
    assert!(fault.starts_with("No valid host was found."), "{fault}");
    assert!(fault.contains("MEMORY_MB"), "{fault}");
    assert_eq!(s["fault"]["code"], 500);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM claims"), 0);
    assert!(!root_disk(&d, &id).exists());
    assert!(monitor_pids(&d, &id).is_empty());

    // Bad input: Nova's 400s and 404s, and no new server.
    let bad = [
        (
            json!({"server": {"name": "x", "flavorRef": "small", "imageRef": "nope",
                           "networks": "none"}}),
            "Image nope could not be found.",
        ),
        (
            json!({"server": {"name": "x", "flavorRef": "nope", "imageRef": "outpost-guest",
                           "networks": "none"}}),
            "Flavor nope could not be found.",
        ),
        (
            json!({"server": {"name": "x", "flavorRef": "small", "imageRef": "outpost-guest"}}),
            "'networks' is a required property",
        ),
        (
            json!({"server": {"name": "x", "flavorRef": "small", "imageRef": "outpost-guest",
                           "networks": [{"uuid": "a1b2"}]}}),
            "Network a1b2 could not be found.",
        ),
        (
            json!({"server": {"name": "x", "flavorRef": "small", "networks": "none",
                           "block_device_mapping_v2": [{"boot_index": 0, "uuid": "v1",
                               "source_type": "volume", "destination_type": "volume"}]}}),
            "Block Device Mapping is Invalid: failed to get volume v1.",
        ),
        (
            json!({"server": {"name": " x", "flavorRef": "small", "imageRef": "outpost-guest",
                           "networks": "none"}}),
            "leading or trailing whitespace",
        ),
        (
            json!({"server": {"name": "x", "flavorRef": "small", "imageRef": "outpost-guest",
                           "networks": "none", "colour": "red"}}),
            "unknown field",
        ),
        (
            json!({"server": {"name": "x", "flavorRef": "small", "imageRef": "outpost-guest",
                           "networks": "none", "user_data": "%%%"}}),
            "User data needs to be valid base 64.",
        ),
    ];
    for (body, message) in bad {
        let r = api(&d).post("/compute/v2.1/servers", &body);
        assert_eq!(r.status.as_u16(), 400, "{body}: {}", r.text());
        let got = r.body_json()["badRequest"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(got.contains(message), "{body}: {got}");
    }
    let r = api(&d).get("/compute/v2.1/servers/0000-nope");
    assert_eq!(r.status.as_u16(), 404);
    assert_eq!(
        r.body_json()["itemNotFound"]["message"],
        "Instance 0000-nope could not be found."
    );
    assert_eq!(count(&d, "SELECT COUNT(*) FROM servers"), 1);

    // Lists: filters, paging, 2.75's strict query, and projects kept apart.
    let list = |q: &str| api(&d).get(&format!("/compute/v2.1/servers/detail{q}"));
    assert_eq!(list("?status=ERROR").body_json()["servers"][0]["id"], id);
    assert_eq!(list("?status=active").body_json()["servers"], json!([]));
    assert_eq!(
        list("?name=^too").body_json()["servers"][0]["name"],
        "too-big"
    );
    assert_eq!(list("?name=^big").body_json()["servers"], json!([]));
    assert_eq!(list("?status=BOGUS").status.as_u16(), 400);
    assert_eq!(list("?colour=red").status.as_u16(), 400);
    assert_eq!(list("?marker=nope").status.as_u16(), 400);
    let page = list("?limit=1").body_json();
    assert!(page["servers_links"][0]["href"]
        .as_str()
        .unwrap()
        .contains(&format!("marker={id}")));
    let (_pid, _uid) = d.make_member("alice", "alice-pw", "alpha");
    let token = d.login("alice", "alice-pw", Some("alpha"));
    let alice = d.tcp(Some(&token));
    assert_eq!(
        alice.get("/compute/v2.1/servers").body_json()["servers"],
        json!([])
    );
    assert_eq!(
        alice
            .get(&format!("/compute/v2.1/servers/{id}"))
            .status
            .as_u16(),
        404
    );
    assert_eq!(
        alice
            .get("/compute/v2.1/servers?all_tenants=1")
            .status
            .as_u16(),
        403
    );
    let r = alice.post(
        &format!("/compute/v2.1/servers/{id}/action"),
        &json!({"os-stop": null}),
    );
    assert_eq!(r.status.as_u16(), 404);
    // Her own request that does not fit is hers alone.
    let r = alice.with_header(V275.0, V275.1).post(
        "/compute/v2.1/servers",
        &json!({"server": {"name": "hers", "flavorRef": "huge", "imageRef": "outpost-guest",
                           "networks": "auto"}}),
    );
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let hers = r.body_json()["server"]["id"].as_str().unwrap().to_owned();
    let all = list("?all_tenants=1").body_json();
    assert_eq!(all["servers"].as_array().unwrap().len(), 2);
    assert_eq!(list("").body_json()["servers"].as_array().unwrap().len(), 1);
    wait_status(&d, &hers, "ERROR");

    // A server in ERROR has no volumes and gets none.
    let va = format!("/compute/v2.1/servers/{id}/os-volume_attachments");
    assert_eq!(
        api(&d).get(&va).body_json(),
        json!({"volumeAttachments": []})
    );
    let r = api(&d).post(&va, &json!({"volumeAttachment": {"volumeId": "v1"}}));
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    assert!(r.text().contains("vm_state error"), "{}", r.text());

    // Deleting servers in ERROR leaves nothing.
    for s in [&id, &hers] {
        assert_eq!(
            api(&d)
                .delete(&format!("/compute/v2.1/servers/{s}"))
                .status
                .as_u16(),
            204
        );
        wait_gone(&d, s);
        assert_nothing_left(&d, s);
    }
}

#[test]
fn the_cli_creates_waits_lists_and_deletes() {
    let (d, _sweep) = start_daemon("vcpus = 2\nram_mb = 2048\ndisk_gb = 10\n");
    create_flavor(&d, "huge", 1, 4096, 1);
    // --wait reports the ERROR with the fault, on one line.
    let o = outpost(
        &d,
        &[
            "server",
            "create",
            "--flavor",
            "huge",
            "--image",
            "outpost-guest",
            "--wait",
            "cli-vm",
        ],
    );
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("is in ERROR: No valid host was found."),
        "{err}"
    );
    let o = outpost(&d, &["server", "list"]);
    assert!(o.status.success());
    let table = String::from_utf8_lossy(&o.stdout);
    assert!(
        table.contains("| cli-vm") && table.contains("ERROR"),
        "{table}"
    );
    let o = outpost(&d, &["-f", "json", "server", "show", "cli-vm"]);
    let shown: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(shown["status"], "ERROR");
    let o = outpost(&d, &["server", "start", "cli-vm"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("(HTTP 409)"));
    let o = outpost(&d, &["server", "delete", "--wait", "cli-vm"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = outpost(&d, &["server", "show", "cli-vm"]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("No server with a name or ID"));
}

/// Uploads `data` as a raw, bare Glance image with extra attributes (as admin).
fn upload_image_with(d: &Daemon, name: &str, data: &[u8], extra: Value) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(name);
    std::fs::write(&file, data).unwrap();
    let id = upload_raw_image(d, name, &file);
    if let Some(attrs) = extra.as_object().filter(|a| !a.is_empty()) {
        let patch: Vec<Value> = attrs
            .iter()
            .map(|(k, v)| json!({"op": "replace", "path": format!("/{k}"), "value": v}))
            .collect();
        let r = d.unix().send_raw_headers(
            hyper::Method::PATCH,
            &format!("/image/v2/images/{id}"),
            Some(&json!(patch)),
            &[(
                "Content-Type",
                "application/openstack-images-v2.1-json-patch",
            )],
        );
        assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    }
    id
}

/// The guest's script on a data volume (run by guest/init from the volume, mounted
/// read-only): at 8 MiB into the raw device, past the little file system, it finds a record
/// left by an earlier guest and prints it, or else writes one made of this guest's random
/// boot id and prints that.
const VOLUME_RECORD_SCRIPT: &str = r#"dd if="$OUTPOST_DISK" bs=512 skip=16384 count=1 2>/dev/null | {
    read -r rec
    case $rec in
        OUTPOST-VOLDATA:*) echo "OUTPOST-VOLUME-READ ${rec#OUTPOST-VOLDATA:}" ;;
        *)
            read -r id </proc/sys/kernel/random/boot_id
            echo "OUTPOST-VOLDATA:$id" >/tmp/rec
            if dd if=/tmp/rec of="$OUTPOST_DISK" bs=512 seek=16384 conv=notrunc,fsync 2>/dev/null
            then
                sync
                echo "OUTPOST-VOLUME-WROTE $id"
            else
                echo "OUTPOST-VOLUME-WRITE-FAILED"
            fi
            ;;
    esac
}
"#;

/// Waits for a console line starting with `prefix` and returns the rest of it.
fn wait_console_line(d: &Daemon, id: &str, prefix: &str) -> String {
    let deadline = Instant::now() + BOOT_TIMEOUT;
    loop {
        let out = console(d, id, None);
        // Only whole lines: the guest's UART writes a line a character at a time, and a slow
        // guest may be caught half-way through one.
        let whole = out.rsplit_once('\n').map_or("", |(lines, _)| lines);
        if let Some(line) = whole.lines().find_map(|l| l.trim().strip_prefix(prefix)) {
            return line.trim().to_owned();
        }
        assert!(
            !out.contains("OUTPOST-VOLUME-WRITE-FAILED"),
            "the guest could not write its volume:\n{out}"
        );
        assert!(
            Instant::now() < deadline,
            "the guest never printed {prefix}:\n{}",
            console(d, id, Some(40))
        );
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[test]
fn servers_boot_from_volumes_and_a_volume_moves_between_servers_with_its_data() {
    check_assets();
    let _turn = one_guest_at_a_time();
    let (d, _sweep) = start_daemon("");
    create_flavor(&d, "small", 1, 256, 1);
    let rootfs = Path::new(ASSETS).join("rootfs.ext4");
    let image = upload_raw_image(&d, "rootfs", &rootfs);
    // The data volume's image: a small file system carrying the guest's script.
    let tmp = tempfile::tempdir().unwrap();
    let content = tmp.path().join("content");
    std::fs::create_dir(&content).unwrap();
    std::fs::write(content.join("outpost-checks.sh"), VOLUME_RECORD_SCRIPT).unwrap();
    let fs = tmp.path().join("data.ext4");
    let made = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(&content)
        .arg(&fs)
        .arg("4M")
        .status()
        .unwrap();
    assert!(made.success());
    let data_image = upload_raw_image(&d, "data", &fs);

    let admin_project: String = db(&d)
        .query_row("SELECT id FROM projects WHERE name = 'admin'", [], |r| {
            r.get(0)
        })
        .unwrap();
    let vols = format!("/volume/v3/{admin_project}/volumes");
    let volume = |id: &str| d.unix().get(&format!("{vols}/{id}"));
    let volume_status = |id: &str, want: &str| {
        let deadline = Instant::now() + STATE_TIMEOUT;
        loop {
            let v = volume(id).body_json()["volume"].clone();
            if v["status"] == want {
                return v;
            }
            assert!(Instant::now() < deadline, "volume {id} never {want}: {v}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    let new_volume = |name: &str, image: &str| {
        let r = d.unix().post(
            &vols,
            &json!({"volume": {"size": 1, "name": name, "imageRef": image}}),
        );
        assert_eq!(r.status.as_u16(), 202, "{}", r.text());
        let id = r.body_json()["volume"]["id"].as_str().unwrap().to_owned();
        volume_status(&id, "available");
        id
    };
    let data = new_volume("data", &data_image);
    let create = |name: &str, image_ref: Option<&str>, bdm: Value| {
        let mut body = json!({"server": {"name": name, "flavorRef": "small",
                                         "networks": "none", "block_device_mapping_v2": bdm}});
        if let Some(i) = image_ref {
            body["server"]["imageRef"] = json!(i);
        }
        api(&d).post("/compute/v2.1/servers", &body)
    };
    let bad = |r: ApiResponse, want: &str| {
        assert_eq!(r.status.as_u16(), 400, "{}", r.text());
        let msg = r.body_json()["badRequest"]["message"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(msg.contains(want), "{msg:?} lacks {want:?}");
    };
    let from_image = |size: Value| {
        json!({"boot_index": 0, "uuid": image, "source_type": "image",
               "destination_type": "volume", "volume_size": size,
               "delete_on_termination": true})
    };

    // Bad mappings and image minimums: 400 in Nova's words, nothing made.
    bad(
        create(
            "x",
            Some(""),
            json!([{"boot_index": 0, "uuid": image,
            "source_type": "image", "destination_type": "volume"}]),
        ),
        "need to have a non-zero size specified",
    );
    bad(
        create("x", Some(&image), json!([from_image(json!(1))])),
        "Boot sequence for the instance and image/block device mapping combination is not valid",
    );
    bad(
        create(
            "x",
            None,
            json!([{"boot_index": 0, "uuid": "no-such-volume",
            "source_type": "volume", "destination_type": "volume"}]),
        ),
        "Block Device Mapping is Invalid: failed to get volume no-such-volume.",
    );
    bad(
        create("x", None, json!([{"source_type": "cloud", "uuid": "x"}])),
        "source_type",
    );
    let hungry = upload_image_with(&d, "hungry", &[0; 4096], json!({"min_ram": 512}));
    bad(
        create("x", Some(&hungry), json!([])),
        "Flavor's memory is too small for requested image.",
    );
    let big = upload_image_with(&d, "big", &[0; 4096], json!({"min_disk": 2}));
    bad(
        create("x", Some(&big), json!([])),
        "Flavor's disk is too small for requested image.",
    );
    bad(
        create(
            "x",
            None,
            json!([{"boot_index": 0, "uuid": big, "source_type": "image",
            "destination_type": "volume", "volume_size": 1}]),
        ),
        "Volume is smaller than the minimum size specified in image metadata",
    );
    assert_eq!(count(&d, "SELECT COUNT(*) FROM servers"), 0);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM volumes"), 1);

    // Server A boots from a new volume copied from the image (imageRef ""), with the data
    // volume attached at create; its guest writes a record to the data volume.
    let r = create(
        "a",
        Some(""),
        json!([from_image(json!(1)),
               {"boot_index": -1, "uuid": data, "source_type": "volume",
                "destination_type": "volume"}]),
    );
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let a = r.body_json()["server"]["id"].as_str().unwrap().to_owned();
    let s = wait_status(&d, &a, "ACTIVE");
    assert_eq!(s["image"], "", "{s:#}");
    let attached = s["os-extended-volumes:volumes_attached"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(attached.len(), 2, "{s:#}");
    let root = attached.iter().find(|v| v["id"] != data.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for v in &attached {
        assert_eq!(v["delete_on_termination"], v["id"] == root.as_str(), "{v}");
    }
    // The root is a real Cinder volume, in use by A and listed.
    let rv = volume_status(&root, "in-use");
    assert_eq!(rv["attachments"][0]["server_id"], a.as_str(), "{rv}");
    assert_eq!(rv["attachments"][0]["device"], "/dev/vda", "{rv}");
    assert_eq!(
        rv["volume_image_metadata"]["image_id"],
        image.as_str(),
        "{rv}"
    );
    let listed = d.unix().get(&format!("{vols}/detail")).body_json();
    assert_eq!(listed["volumes"].as_array().unwrap().len(), 2, "{listed}");
    // The monitor's root drive is the volume's own file (no clone, no local disk), and the
    // claim holds no local disk.
    let drives = monitor_get(&d, &a, "/vm/config")["drives"].clone();
    assert_eq!(drives.as_array().unwrap().len(), 2, "{drives}");
    assert!(
        drives[0]["path_on_host"].as_str().unwrap().contains(&root),
        "{drives}"
    );
    assert!(
        drives[1]["path_on_host"].as_str().unwrap().contains(&data),
        "{drives}"
    );
    assert!(!root_disk(&d, &a).exists());
    let claim: String = db(&d)
        .query_row(
            "SELECT claim FROM claims WHERE consumer_id = ?1",
            [&a],
            |r| r.get(0),
        )
        .unwrap();
    assert!(
        !claim.contains("DISK_GB") && claim.contains("MEMORY_MB"),
        "{claim}"
    );
    wait_marker(&d, &a, 1);
    let written = wait_console_line(&d, &a, "OUTPOST-VOLUME-WROTE ");
    assert_eq!(written.len(), 36, "a boot id: {written:?}");

    // The root volume cannot be detached; the data volume not while A's guest has it open.
    let va = |server: &str, vol: &str| {
        format!("/compute/v2.1/servers/{server}/os-volume_attachments/{vol}")
    };
    let r = api(&d).delete(&va(&a, &root));
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());
    assert_eq!(
        r.body_json()["badRequest"]["message"],
        "Cannot detach a root device volume"
    );
    let r = api(&d).delete(&va(&a, &data));
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    let r = action(&d, &a, json!({"os-stop": null}));
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    wait_status(&d, &a, "SHUTOFF");
    let r = api(&d).delete(&va(&a, &data));
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    volume_status(&data, "available");

    // Server B boots from an existing volume (a copy of the same image made through
    // Cinder) with the data volume: its guest finds A's record.
    let own_root = new_volume("own-root", &image);
    let r = create(
        "b",
        None,
        json!([{"boot_index": 0, "uuid": own_root, "source_type": "volume",
                "destination_type": "volume"},
               {"uuid": data, "source_type": "volume", "destination_type": "volume"}]),
    );
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let b = r.body_json()["server"]["id"].as_str().unwrap().to_owned();
    let s = wait_status(&d, &b, "ACTIVE");
    assert_eq!(s["image"], "", "{s:#}");
    // A volume in use cannot boot another server.
    bad(
        create(
            "c",
            None,
            json!([{"boot_index": 0, "uuid": own_root,
            "source_type": "volume", "destination_type": "volume"}]),
        ),
        "status must be 'available'",
    );
    wait_marker(&d, &b, 1);
    let read = wait_console_line(&d, &b, "OUTPOST-VOLUME-READ ");
    assert_eq!(read, written, "B read what A's guest wrote");
    assert!(!console(&d, &b, None).contains("OUTPOST-VOLUME-WROTE"));

    // Deleting A deletes its root volume (delete_on_termination); deleting B keeps its
    // volumes, available again.
    for server in [&a, &b] {
        let r = api(&d).delete(&format!("/compute/v2.1/servers/{server}"));
        assert_eq!(r.status.as_u16(), 204, "{}", r.text());
        wait_gone(&d, server);
        assert_nothing_left(&d, server);
    }
    assert_eq!(volume(&root).status.as_u16(), 404);
    volume_status(&own_root, "available");
    volume_status(&data, "available");
    for v in [&own_root, &data] {
        let r = d.unix().delete(&format!("{vols}/{v}"));
        assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    }
    assert_eq!(count(&d, "SELECT COUNT(*) FROM volumes"), 0);
    assert_eq!(count(&d, "SELECT COUNT(*) FROM volume_attachments"), 0);
}
