//! End to end with the stock OpenStack client (python-openstackclient and openstacksdk, pinned
//! in control/tests/openstack-requirements.txt, in the venv scripts/openstack-venv.sh builds)
//! against a real outpostd:
//!
//! - `token issue`, project/user/role setup, and `flavor create/list/show/set/delete`, as
//!   admin and as a member;
//! - `server group create --policy` / list / show / delete, in the microversion the client
//!   picks (2.64 and later give `policy` and `rules`);
//! - `aggregate create --zone` / add host / set --property / show / list / remove host /
//!   delete, and `availability zone list` following the box into the aggregate's zone;
//! - `keypair create` (generated, and `--public-key` from ssh-keygen) / list / show / delete,
//!   and `server create --key-name` (without booting);
//! - `image create --file` / list / show / save / set, `volume create/list/set`, snapshots;
//! - one real guest through the client alone: the test guest's root disk uploaded with
//!   `image create --file`, a flavor, a volume, `server create --wait` (the client asks for
//!   `"networks": "auto"`), list, show, `console log show` (the guest's init marker), stop,
//!   `server delete --wait`, and nothing left.
//!
//! The guest test needs `cargo build -p outpost-vmm` and the guest assets
//! (guest/build-assets.sh); scripts/test.sh provides all of it.

mod common;

use common::openstack;
use common::{Daemon, ADMIN_PASSWORD};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const ASSETS: &str = "/var/cache/outpost/guest/current";
const MARKER: &str = "OUTPOST-INIT-OK";
/// Guests boot in 20-40 s on the project's PVM host; leave room for a loaded machine.
const BOOT_TIMEOUT: Duration = Duration::from_secs(300);

#[test]
fn openstack_client_drives_tokens_and_flavors() {
    let d = Daemon::start();
    let admin = openstack::as_user(&d, "admin", ADMIN_PASSWORD, "admin");

    let token = admin.json(&["token", "issue"]);
    assert_eq!(token["id"].as_str().unwrap().len(), 43);
    assert!(token["project_id"].is_string() && token["user_id"].is_string());

    let made = admin.json(&[
        "flavor",
        "create",
        "--ram",
        "512",
        "--vcpus",
        "1",
        "--disk",
        "1",
        "--id",
        "t1",
        "--description",
        "tiny",
        "--property",
        "hw:cpu_policy=dedicated",
        "m1.tiny",
    ]);
    assert_eq!(made["id"], "t1");
    assert_eq!(made["ram"], 512);
    assert_eq!(made["description"], "tiny");
    admin.json(&[
        "flavor", "create", "--ram", "2048", "--vcpus", "2", "--disk", "20", "m1.small",
    ]);

    let list = admin.json(&["flavor", "list"]);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["Name"].clone())
        .collect();
    assert!(
        names.contains(&"m1.tiny".into()) && names.contains(&"m1.small".into()),
        "{list}"
    );

    // By name: Nova answers 404 for the name, and the client falls back to listing.
    let shown = admin.json(&["flavor", "show", "m1.tiny"]);
    assert_eq!(shown["id"], "t1");
    assert_eq!(shown["properties"]["hw:cpu_policy"], "dedicated");
    admin
        .run(&[
            "flavor",
            "set",
            "--property",
            "hw:mem_page_size=large",
            "m1.tiny",
        ])
        .unwrap();
    let shown = admin.json(&["flavor", "show", "t1"]);
    assert_eq!(shown["properties"]["hw:mem_page_size"], "large");
    let missing = admin.run(&["flavor", "show", "nope"]).unwrap_err();
    assert!(missing.contains("nope"), "{missing}");

    // A member made with the identity commands sees flavors but may not create them.
    admin.run(&["project", "create", "demo"]).unwrap();
    admin
        .run(&[
            "user",
            "create",
            "--project",
            "demo",
            "--password",
            "alice-pw",
            "alice",
        ])
        .unwrap();
    admin
        .run(&[
            "role",
            "add",
            "--project",
            "demo",
            "--user",
            "alice",
            "member",
        ])
        .unwrap();
    let alice = openstack::as_user(&d, "alice", "alice-pw", "demo");
    assert_eq!(alice.json(&["flavor", "list"]).as_array().unwrap().len(), 2);
    let projects = alice.json(&["project", "list"]);
    assert_eq!(projects.as_array().unwrap().len(), 1, "{projects}");
    let denied = alice
        .run(&["flavor", "create", "--ram", "1", "--vcpus", "1", "x"])
        .unwrap_err();
    assert!(
        denied.contains("403") || denied.contains("Policy"),
        "{denied}"
    );

    admin
        .run(&["flavor", "delete", "m1.tiny", "m1.small"])
        .unwrap();
    assert!(admin
        .json(&["flavor", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}

#[test]
fn openstack_client_drives_aggregates_and_availability_zones() {
    let d = Daemon::start();
    let admin = openstack::as_user(&d, "admin", ADMIN_PASSWORD, "admin");
    let zone_names = || -> Vec<String> {
        admin
            .json(&["availability", "zone", "list", "--compute"])
            .as_array()
            .unwrap()
            .iter()
            .map(|z| z["Zone Name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(zone_names(), ["nova"]);
    // The box, as the client names hosts.
    let services = admin.json(&["compute", "service", "list"]);
    let host = services[0]["Host"].as_str().unwrap().to_owned();

    let made = admin.json(&["aggregate", "create", "--zone", "edge-1", "edge"]);
    assert_eq!(made["name"], "edge", "{made}");
    assert_eq!(made["availability_zone"], "edge-1", "{made}");
    let added = admin.json(&["aggregate", "add", "host", "edge", &host]);
    assert_eq!(added["hosts"], serde_json::json!([host]), "{added}");
    admin.ok(&["aggregate", "set", "--property", "ssd=true", "edge"]);
    let shown = admin.json(&["aggregate", "show", "edge"]);
    assert_eq!(shown["availability_zone"], "edge-1", "{shown}");
    assert_eq!(shown["hosts"], serde_json::json!([host]), "{shown}");
    assert_eq!(shown["properties"]["ssd"], "true", "{shown}");
    let listed = admin.json(&["aggregate", "list"]);
    assert_eq!(listed[0]["Name"], "edge", "{listed}");
    assert_eq!(listed[0]["Availability Zone"], "edge-1", "{listed}");
    // The box is in the aggregate's zone now.
    assert_eq!(zone_names(), ["edge-1"]);

    // Nova's refusals, as the client reports them.
    let twice = admin.run(&["aggregate", "create", "edge"]).unwrap_err();
    assert!(twice.contains("Aggregate edge already exists."), "{twice}");
    let not_empty = admin.run(&["aggregate", "delete", "edge"]).unwrap_err();
    assert!(
        not_empty.contains("Host aggregate is not empty"),
        "{not_empty}"
    );

    admin.ok(&["aggregate", "remove", "host", "edge", &host]);
    admin.ok(&["aggregate", "delete", "edge"]);
    assert!(admin
        .json(&["aggregate", "list"])
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(zone_names(), ["nova"]);
}

#[test]
fn openstack_client_drives_server_groups() {
    let d = Daemon::start();
    let admin = openstack::as_user(&d, "admin", ADMIN_PASSWORD, "admin");
    let made = admin.json(&[
        "--os-compute-api-version",
        "2.64",
        "server",
        "group",
        "create",
        "--policy",
        "anti-affinity",
        "--rule",
        "max_server_per_host=2",
        "apart",
    ]);
    assert_eq!(made["name"], "apart");
    assert_eq!(made["policy"], "anti-affinity", "{made}");
    assert_eq!(made["rules"]["max_server_per_host"], 2, "{made}");
    let id = made["id"].as_str().unwrap().to_owned();
    // The client's default microversion (2.1): `policies`.
    let old = admin.json(&[
        "server", "group", "create", "--policy", "affinity", "together",
    ]);
    assert_eq!(old["name"], "together", "{old}");
    let shown = admin.json(&["server", "group", "show", &id]);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["name"], "apart");
    let listed = admin.json(&["server", "group", "list"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["Name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 2, "{listed}");
    assert!(
        names.contains(&"apart") && names.contains(&"together"),
        "{listed}"
    );
    // The client refuses a soft policy before 2.15 itself; ours refuses rules on affinity.
    let refused = admin
        .run(&[
            "--os-compute-api-version",
            "2.64",
            "server",
            "group",
            "create",
            "--policy",
            "affinity",
            "--rule",
            "max_server_per_host=2",
            "bad",
        ])
        .unwrap_err();
    assert!(
        refused.contains("Only anti-affinity policy supports rules."),
        "{refused}"
    );
    admin
        .run(&["server", "group", "delete", &id, "together"])
        .unwrap();
    assert!(admin
        .json(&["server", "group", "list"])
        .as_array()
        .unwrap()
        .is_empty());
    let gone = admin.run(&["server", "group", "show", &id]).unwrap_err();
    // The client looks a 404's id up by name too, then says so.
    assert!(
        gone.contains(&format!("No ServerGroup found for {id}")),
        "{gone}"
    );
}

#[test]
fn openstack_client_drives_key_pairs_and_a_server_s_key_name() {
    // No monitor binary: a server's build fails at once, so nothing boots here (the guest
    // test below boots one with --key-name).
    let assets = tempfile::tempdir().unwrap();
    let rootfs = assets.path().join("rootfs.ext4");
    std::fs::write(&rootfs, [0u8; 4096]).unwrap();
    let d = Daemon::start_with(
        Some(&format!(
            "[compute]\nmonitor = \"/nonexistent/outpost-vmm\"\n[guest]\nrootfs = {rootfs:?}\n"
        )),
        Some(ADMIN_PASSWORD),
    );
    let admin = openstack::as_user(&d, "admin", ADMIN_PASSWORD, "admin");

    // Without a public key the client gets a pair and prints its private key.
    let private = admin.run(&["keypair", "create", "generated"]).unwrap();
    assert!(private.contains("PRIVATE KEY-----"), "{private}");
    // An OpenSSH public key from ssh-keygen, imported; Nova's fingerprint is the MD5 one
    // ssh-keygen prints.
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("id_ed25519");
    let made = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@outpost", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(made.success());
    let public = key.with_extension("pub");
    let imported = admin.json(&[
        "keypair",
        "create",
        "--public-key",
        public.to_str().unwrap(),
        "imported",
    ]);
    let md5 = Command::new("ssh-keygen")
        .args(["-l", "-E", "md5", "-f"])
        .arg(&public)
        .output()
        .unwrap();
    let md5 = String::from_utf8_lossy(&md5.stdout).into_owned();
    let fingerprint = imported["fingerprint"].as_str().unwrap();
    assert!(
        md5.contains(&format!("MD5:{fingerprint} ")),
        "{md5} vs {imported}"
    );

    let list = admin.json(&["keypair", "list"]);
    let names: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["Name"].clone())
        .collect();
    assert_eq!(names, ["generated", "imported"], "{list}");
    let shown = admin.json(&["keypair", "show", "imported"]);
    assert_eq!(shown["fingerprint"], fingerprint);
    let shown_key = admin
        .run(&["keypair", "show", "--public-key", "imported"])
        .unwrap();
    let on_disk = std::fs::read_to_string(&public).unwrap();
    assert_eq!(shown_key.trim(), on_disk.trim());
    let dup = admin.run(&["keypair", "create", "imported"]).unwrap_err();
    assert!(
        dup.contains("409") || dup.contains("already exists"),
        "{dup}"
    );

    // A server names the key; the client shows it back.
    admin
        .run(&[
            "flavor", "create", "--ram", "128", "--vcpus", "1", "--disk", "1", "s1",
        ])
        .unwrap();
    upload_guest(&admin, &rootfs);
    let server = admin.json(&[
        "server",
        "create",
        "--flavor",
        "s1",
        "--image",
        "guest",
        "--nic",
        "none",
        "--key-name",
        "imported",
        "vm1",
    ]);
    assert_eq!(server["key_name"], "imported", "{server}");
    assert!(server["adminPass"].is_string(), "{server}");
    let shown = admin.json(&["server", "show", "vm1"]);
    assert_eq!(shown["key_name"], "imported", "{shown}");
    let bad = admin
        .run(&[
            "server",
            "create",
            "--flavor",
            "s1",
            "--image",
            "guest",
            "--nic",
            "none",
            "--key-name",
            "nope",
            "vm2",
        ])
        .unwrap_err();
    assert!(bad.contains("nope"), "{bad}");

    admin
        .run(&["keypair", "delete", "generated", "imported"])
        .unwrap();
    assert_eq!(admin.json(&["keypair", "list"]), serde_json::json!([]));
    let gone = admin.run(&["keypair", "show", "imported"]).unwrap_err();
    assert!(gone.contains("imported"), "{gone}");
}

/// Kills the monitors a test's daemon started, when the test ends, pass or fail (they
/// outlive outpostd by design).
struct MonitorSweep(PathBuf);

impl Drop for MonitorSweep {
    fn drop(&mut self) {
        let needle = self.0.to_string_lossy().into_owned();
        for entry in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                // SAFETY: kill() on a process whose command line names this test's
                // temporary state directory: a monitor or shim the test's daemon started.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// Polls `check` every 250 ms until it gives a value, or fails after `timeout`.
fn wait_until<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
#[ignore = "slow (a guest's whole boot, 3-5 minutes on PVM; the stock client's server create, show and delete also run in site_cli and openstack_sdk): OUTPOST_SLOW_TESTS=1 scripts/test.sh runs it"]
fn openstack_client_boots_a_server_from_an_uploaded_image() {
    let rootfs = Path::new(ASSETS).join("rootfs.ext4");
    assert!(
        rootfs.is_file(),
        "{rootfs:?} is missing: run guest/build-assets.sh"
    );
    let vmm = Path::new(env!("CARGO_BIN_EXE_outpostd")).with_file_name("outpost-vmm");
    assert!(
        vmm.is_file(),
        "{vmm:?} is missing: run `cargo build -p outpost-vmm` before this test"
    );
    let d = Daemon::start_with(
        Some(&format!(
            "[compute]\nmonitor = {vmm:?}\nstop_timeout_secs = 10\n"
        )),
        Some(ADMIN_PASSWORD),
    );
    let _sweep = MonitorSweep(d.dir.path().to_owned());
    let admin = openstack::as_user(&d, "admin", ADMIN_PASSWORD, "admin");

    let token = admin.json(&["token", "issue"]);
    assert!(token["expires"].is_string(), "{token}");

    let flavor = admin.json(&[
        "flavor", "create", "--ram", "256", "--vcpus", "1", "--disk", "1", "s1",
    ]);
    let flavors = admin.json(&["flavor", "list"]);
    assert_eq!(flavors[0]["ID"], flavor["id"], "{flavors}");
    assert_eq!(flavors[0]["RAM"], 256);

    // The test guest's root disk as a Glance image, through the client's upload.
    let image = upload_guest(&admin, &rootfs);
    assert_eq!(image["size"], std::fs::metadata(&rootfs).unwrap().len());

    let volume = admin.json(&["volume", "create", "--size", "1", "data"]);
    assert_eq!(volume["size"], 1);
    wait_until("the volume", Duration::from_secs(60), || {
        let v = admin.json(&["volume", "show", "data"]);
        (v["status"] == "available").then_some(())
    });
    let volumes = admin.json(&["volume", "list"]);
    assert_eq!(volumes[0]["Name"], "data", "{volumes}");
    assert_eq!(volumes[0]["Status"], "available");

    // A generated key pair for the server (its key is not delivered to this guest yet).
    let private = admin.run(&["keypair", "create", "mykey"]).unwrap();
    assert!(private.contains("PRIVATE KEY-----"), "{private}");

    // `--wait` polls until ACTIVE: the monitor is up and the guest's kernel was started.
    let started = Instant::now();
    let made = admin.json(&[
        "server",
        "create",
        "--flavor",
        "s1",
        "--image",
        "guest",
        "--key-name",
        "mykey",
        "--wait",
        "vm1",
    ]);
    eprintln!("server create --wait took {:?}", started.elapsed());
    assert_eq!(made["status"], "ACTIVE", "{made}");
    let id = made["id"].as_str().unwrap().to_owned();

    let list = admin.json(&["server", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["ID"], id.as_str());
    assert_eq!(list[0]["Name"], "vm1");
    assert_eq!(list[0]["Status"], "ACTIVE");
    assert_eq!(list[0]["Image"], "guest");
    assert_eq!(list[0]["Flavor"], "s1");

    let shown = admin.json(&["server", "show", "vm1"]);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["OS-EXT-STS:vm_state"], "active");
    assert_eq!(shown["key_name"], "mykey", "{shown}");
    // Nova's power state 1: RUNNING (the client shows the number in JSON output).
    assert_eq!(shown["OS-EXT-STS:power_state"], 1, "{shown}");
    assert_eq!(shown["flavor"]["original_name"], "s1");
    // The client shows the image as "NAME (ID)", after looking the id up in Glance.
    let image_id = image["id"].as_str().unwrap();
    assert_eq!(shown["image"], format!("guest ({image_id})"), "{shown}");
    assert!(shown["OS-SRV-USG:launched_at"].is_string(), "{shown}");

    // The guest's init prints its marker on the serial console once userspace runs.
    let log = wait_until("the guest's init marker", BOOT_TIMEOUT, || {
        let log = admin.run(&["console", "log", "show", "vm1"]).unwrap();
        log.contains(MARKER).then_some(log)
    });
    assert!(log.contains("Linux version"), "{log}");
    let tail = admin
        .run(&["console", "log", "show", "--lines", "3", "vm1"])
        .unwrap();
    assert!(tail.lines().count() <= 3, "{tail}");

    admin.run(&["server", "stop", "vm1"]).unwrap();
    wait_until("SHUTOFF", Duration::from_secs(120), || {
        let s = admin.json(&["server", "show", "vm1"]);
        (s["status"] == "SHUTOFF" && s["OS-EXT-STS:task_state"].is_null()).then_some(())
    });
    let err = admin.run(&["server", "stop", "vm1"]).unwrap_err();
    assert!(err.contains("409"), "{err}");

    // `delete --wait` returns once the server is gone from the API.
    admin.run(&["server", "delete", "--wait", "vm1"]).unwrap();
    assert_eq!(admin.json(&["server", "list"]), serde_json::json!([]));
    let gone = admin.run(&["server", "show", id.as_str()]).unwrap_err();
    assert!(gone.contains("No Server found"), "{gone}");
    assert!(
        !d.state_dir().join("servers").join(&id).exists(),
        "the server's directory outlived it"
    );

    // Nothing holds the image or the volume any more.
    admin.run(&["volume", "delete", "data"]).unwrap();
    wait_until("the volume's deletion", Duration::from_secs(60), || {
        let v = admin.json(&["volume", "list"]);
        v.as_array().unwrap().is_empty().then_some(())
    });
    admin.run(&["image", "delete", "guest"]).unwrap();
    admin.run(&["flavor", "delete", "s1"]).unwrap();
}

#[test]
fn openstack_client_drives_images_and_volumes() {
    let d = Daemon::start();
    let admin = openstack::as_user(&d, "admin", ADMIN_PASSWORD, "admin");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cirros.raw");
    let data: Vec<u8> = (0..(3 << 20) + 5).map(|n: u32| (n % 241) as u8).collect();
    std::fs::write(&file, &data).unwrap();
    let md5 = {
        let out = Command::new("md5sum").arg(&file).output().unwrap();
        String::from_utf8(out.stdout).unwrap()[..32].to_owned()
    };

    // openstacksdk creates the record (with its owner_specified.* properties), then PUTs the
    // file; the client refreshes and shows the result.
    let image = admin.json(&[
        "image",
        "create",
        "--file",
        file.to_str().unwrap(),
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "--property",
        "os_command_line=console=ttyS0",
        "cirros",
    ]);
    assert_eq!(image["status"], "active", "{image}");
    assert_eq!(image["checksum"], md5);
    assert_eq!(image["size"], data.len());
    let id = image["id"].as_str().unwrap().to_owned();

    let list = admin.json(&["image", "list"]);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["ID"] == id)
        .unwrap_or_else(|| panic!("{list}"));
    assert_eq!(row["Name"], "cirros");
    assert_eq!(row["Status"], "active");
    let shown = admin.json(&["image", "show", "cirros"]);
    assert_eq!(shown["id"], id.as_str());
    assert_eq!(shown["properties"]["os_command_line"], "console=ttyS0");
    let saved = tmp.path().join("saved");
    admin
        .run(&["image", "save", "--file", saved.to_str().unwrap(), "cirros"])
        .unwrap();
    assert_eq!(std::fs::read(&saved).unwrap(), data);
    admin
        .run(&["image", "set", "--property", "os_distro=cirros", "cirros"])
        .unwrap();
    assert_eq!(
        admin.json(&["image", "show", &id])["properties"]["os_distro"],
        "cirros"
    );

    // Volumes: blank and from the image, thin and thick.
    let blank = admin.json(&["volume", "create", "--size", "1", "blank"]);
    assert_eq!(blank["size"], 1);
    let from_image = admin.json(&[
        "volume", "create", "--size", "1", "--image", "cirros", "--type", "thick", "boot",
    ]);
    assert_eq!(from_image["type"], "thick");
    let boot_id = from_image["id"].as_str().unwrap().to_owned();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let shown = loop {
        let v = admin.json(&["volume", "show", "boot"]);
        if v["status"] != "creating" {
            break v;
        }
        assert!(std::time::Instant::now() < deadline, "{v}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    assert_eq!(shown["status"], "available", "{shown}");
    // openstacksdk turns Cinder's "true" into a boolean.
    assert_eq!(shown["bootable"], true);
    let bytes =
        std::fs::read(d.state_dir().join("volumes").join(format!("{boot_id}.raw"))).unwrap();
    assert_eq!(&bytes[..data.len()], &data[..]);

    let vols = admin.json(&["volume", "list"]);
    let names: Vec<_> = vols
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["Name"].clone())
        .collect();
    assert!(
        names.contains(&"blank".into()) && names.contains(&"boot".into()),
        "{vols}"
    );
    let types = admin.json(&["volume", "type", "list"]);
    assert_eq!(types.as_array().unwrap().len(), 2, "{types}");

    // Extend, snapshot, and a volume from the snapshot.
    admin
        .run(&["volume", "set", "--size", "2", "blank"])
        .unwrap();
    assert_eq!(admin.json(&["volume", "show", "blank"])["size"], 2);
    let snap = admin.json(&["volume", "snapshot", "create", "--volume", "blank", "snap1"]);
    assert_eq!(snap["volume_id"], blank["id"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while admin.json(&["volume", "snapshot", "show", "snap1"])["status"] != "available" {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let snaps = admin.json(&["volume", "snapshot", "list"]);
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");
    let copy = admin.json(&["volume", "create", "--snapshot", "snap1", "copy"]);
    assert_eq!(copy["size"], 2);
    let refused = admin.run(&["volume", "delete", "blank"]).unwrap_err();
    assert!(refused.contains("snapshot"), "{refused}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while admin.json(&["volume", "show", "copy"])["status"] == "creating" {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    admin
        .run(&["volume", "snapshot", "delete", "snap1"])
        .unwrap();

    // The image is in use by the volume: Glance's 409 reaches the client.
    let refused = admin.run(&["image", "delete", "cirros"]).unwrap_err();
    assert!(
        refused.contains("in use") || refused.contains("409"),
        "{refused}"
    );

    admin
        .run(&["volume", "delete", "boot", "blank", "copy"])
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !admin
        .json(&["volume", "list"])
        .as_array()
        .unwrap()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    admin.run(&["image", "delete", "cirros"]).unwrap();
    assert!(admin
        .json(&["image", "list"])
        .as_array()
        .unwrap()
        .is_empty());
}

/// The test guest's root disk uploaded as raw Glance image `guest` through the client;
/// active at once (one box).
fn upload_guest(admin: &openstack::Openstack, rootfs: &Path) -> serde_json::Value {
    let image = admin.json(&[
        "image",
        "create",
        "--file",
        rootfs.to_str().unwrap(),
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "guest",
    ]);
    assert_eq!(image["status"], "active", "{image}");
    image
}
