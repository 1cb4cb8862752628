//! End to end with the stock OpenStack client's network commands against a real outpostd:
//! network, subnet, port (create/list/show with filters), security group and rule
//! create/list/delete, and the deletes in order. Needs python-openstackclient in a venv: run
//! control/tests/setup-openstack-venv.sh, then
//! `cargo test -p outpost-control --test openstack_network -- --ignored`.

mod common;

use common::{Daemon, ADMIN_PASSWORD};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

fn venv() -> PathBuf {
    if let Some(v) = std::env::var_os("OUTPOST_OPENSTACK_VENV") {
        return v.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cache"));
    cache.join("outpost/openstack-venv")
}

struct Openstack {
    bin: PathBuf,
    auth_url: String,
    home: tempfile::TempDir,
}

impl Openstack {
    fn new(d: &Daemon) -> Openstack {
        let bin = venv().join("bin/openstack");
        assert!(
            bin.exists(),
            "{bin:?} missing: run control/tests/setup-openstack-venv.sh first"
        );
        Openstack {
            bin,
            auth_url: format!("http://{}/identity/v3", d.addr),
            home: tempfile::tempdir().unwrap(),
        }
    }

    /// Runs `openstack ARGS` as admin; Ok(stdout) or Err(stderr).
    fn run(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new(&self.bin)
            .args(["--os-auth-url", &self.auth_url])
            .args(["--os-identity-api-version", "3"])
            .args(["--os-username", "admin", "--os-password", ADMIN_PASSWORD])
            .args(["--os-project-name", "admin"])
            .args([
                "--os-user-domain-name",
                "Default",
                "--os-project-domain-name",
                "Default",
            ])
            .args(["--os-region-name", "RegionOne"])
            .args(args)
            // No clouds.yaml or OS_* from the host may leak in.
            .env_clear()
            .env("HOME", self.home.path())
            .env("PATH", "/usr/bin:/bin")
            .output()
            .unwrap();
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.extend(["-f", "json"]);
        let out = self
            .run(&all)
            .unwrap_or_else(|e| panic!("openstack {args:?}: {e}"));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }
}

#[test]
#[ignore = "needs python-openstackclient: run control/tests/setup-openstack-venv.sh, then --ignored"]
fn openstack_client_drives_networks_ports_and_security_groups() {
    let d = Daemon::start();
    let os = Openstack::new(&d);

    let net = os.json(&["network", "create", "net1"]);
    assert_eq!(net["name"], "net1");
    assert_eq!(net["mtu"], 1500);
    assert_eq!(net["status"], "ACTIVE");
    let sub = os.json(&[
        "subnet",
        "create",
        "--network",
        "net1",
        "--subnet-range",
        "10.5.0.0/24",
        "--dns-nameserver",
        "192.0.2.53",
        "sub1",
    ]);
    assert_eq!(sub["gateway_ip"], "10.5.0.1");
    assert_eq!(sub["allocation_pools"][0]["start"], "10.5.0.2");
    assert_eq!(sub["dns_nameservers"][0], "192.0.2.53");
    // By name: the client's show asks by id first (404), then lists with ?name=.
    let shown = os.json(&["network", "show", "net1"]);
    assert_eq!(shown["subnets"][0], sub["id"]);

    let port = os.json(&[
        "port",
        "create",
        "--network",
        "net1",
        "--fixed-ip",
        "subnet=sub1,ip-address=10.5.0.20",
        "p1",
    ]);
    assert_eq!(port["fixed_ips"][0]["ip_address"], "10.5.0.20");
    assert!(port["mac_address"]
        .as_str()
        .unwrap()
        .starts_with("fa:16:3e"));
    let taken = os
        .run(&[
            "port",
            "create",
            "--network",
            "net1",
            "--fixed-ip",
            "subnet=sub1,ip-address=10.5.0.20",
            "p2",
        ])
        .unwrap_err();
    assert!(taken.contains("10.5.0.20"), "{taken}");
    // The DHCP port and p1.
    let all = os.json(&["port", "list", "--network", "net1"]);
    assert_eq!(all.as_array().unwrap().len(), 2, "{all}");
    let by_ip = os.json(&["port", "list", "--fixed-ip", "ip-address=10.5.0.20"]);
    assert_eq!(by_ip.as_array().unwrap().len(), 1, "{by_ip}");
    assert_eq!(by_ip[0]["ID"], port["id"]);
    let dhcp = os.json(&["port", "list", "--device-owner", "network:dhcp"]);
    assert_eq!(dhcp[0]["Fixed IP Addresses"][0]["ip_address"], "10.5.0.2");
    assert_eq!(os.json(&["port", "show", "p1"])["id"], port["id"]);

    let sg = os.json(&["security", "group", "create", "web"]);
    assert_eq!(sg["name"], "web");
    let rule = os.json(&[
        "security",
        "group",
        "rule",
        "create",
        "--protocol",
        "tcp",
        "--dst-port",
        "22",
        "--remote-ip",
        "192.0.2.0/24",
        "web",
    ]);
    assert_eq!(rule["port_range_min"], 22);
    assert_eq!(rule["protocol"], "tcp");
    let dup = os
        .run(&[
            "security",
            "group",
            "rule",
            "create",
            "--protocol",
            "tcp",
            "--dst-port",
            "22",
            "--remote-ip",
            "192.0.2.0/24",
            "web",
        ])
        .unwrap_err();
    assert!(dup.contains("already exists"), "{dup}");
    let rules = os.json(&["security", "group", "rule", "list", "web"]);
    // Neutron's two egress rules and ours.
    assert_eq!(rules.as_array().unwrap().len(), 3, "{rules}");
    let rule_id = rule["id"].as_str().unwrap();
    os.run(&["security", "group", "rule", "delete", rule_id])
        .unwrap();
    let rules = os.json(&["security", "group", "rule", "list", "web"]);
    assert_eq!(rules.as_array().unwrap().len(), 2, "{rules}");
    let groups = os.json(&["security", "group", "list"]);
    let names: Vec<&str> = groups
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|g| g["Name"].as_str())
        .collect();
    assert!(
        names.contains(&"default") && names.contains(&"web"),
        "{groups}"
    );

    // In use, then gone in order.
    let busy = os.run(&["subnet", "delete", "sub1"]).unwrap_err();
    assert!(
        busy.contains("409") || busy.contains("in use") || busy.contains("allocation"),
        "{busy}"
    );
    os.run(&["port", "delete", "p1"]).unwrap();
    os.run(&["security", "group", "delete", "web"]).unwrap();
    os.run(&["subnet", "delete", "sub1"]).unwrap();
    os.run(&["network", "delete", "net1"]).unwrap();
    assert!(os.json(&["port", "list"]).as_array().unwrap().is_empty());
    assert!(os.json(&["network", "list"]).as_array().unwrap().is_empty());
}
