//! End to end with the stock OpenStack client's network commands against a real outpostd:
//! network, subnet, port (create/list/show with filters), security group and rule
//! create/list/delete, a server on the network with a group (`server create --network
//! --security-group --wait`, its addresses and port, `server add/remove security group`),
//! and the deletes in order. The daemon keeps to Neutron's state here (`manage_host = false`:
//! the server gets its port, not a tap); tests/networking.rs wires real guests. Needs the
//! venv scripts/openstack-venv.sh builds (scripts/test.sh does).

mod common;

use common::openstack;
use common::{Daemon, ADMIN_PASSWORD};

const ASSETS: &str = "/var/cache/outpost/guest/current";

#[test]
fn openstack_client_drives_networks_ports_and_security_groups() {
    let d = Daemon::start();
    let os = openstack::as_user(&d, "admin", ADMIN_PASSWORD, "admin");

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

    // A server on net1 in group web: Nova makes its port there, in web only.
    let rootfs = format!("{ASSETS}/rootfs.ext4");
    os.json(&[
        "image",
        "create",
        "--file",
        &rootfs,
        "--disk-format",
        "raw",
        "--container-format",
        "bare",
        "netimg",
    ]);
    os.json(&[
        "flavor", "create", "--ram", "128", "--vcpus", "1", "--disk", "1", "net.tiny",
    ]);
    let server = os.json(&[
        "server",
        "create",
        "--flavor",
        "net.tiny",
        "--image",
        "netimg",
        "--network",
        "net1",
        "--security-group",
        "web",
        "--wait",
        "s1",
    ]);
    assert_eq!(server["status"], "ACTIVE", "{server}");
    let shown = os.json(&["server", "show", "s1"]);
    assert!(
        shown["addresses"].to_string().contains("10.5.0."),
        "{shown}"
    );
    let ports = os.json(&["port", "list", "--server", "s1", "--long"]);
    assert_eq!(ports.as_array().unwrap().len(), 1, "{ports}");
    let port_id = ports[0]["ID"].as_str().unwrap().to_owned();
    let groups_of_port = || {
        let p = os.json(&["port", "show", &port_id]);
        let mut ids: Vec<String> = p["security_group_ids"]
            .as_array()
            .unwrap_or_else(|| panic!("{p}"))
            .iter()
            .map(|g| g.as_str().unwrap().to_owned())
            .collect();
        ids.sort();
        ids
    };
    let web = sg["id"].as_str().unwrap().to_owned();
    let default = os.json(&["security", "group", "show", "default"])["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(groups_of_port(), std::slice::from_ref(&web));
    os.run(&["server", "add", "security", "group", "s1", "default"])
        .unwrap();
    let mut both = vec![web.clone(), default.clone()];
    both.sort();
    assert_eq!(groups_of_port(), both);
    os.run(&["server", "remove", "security", "group", "s1", "web"])
        .unwrap();
    assert_eq!(groups_of_port(), std::slice::from_ref(&default));
    let not_there = os
        .run(&["server", "remove", "security", "group", "s1", "web"])
        .unwrap_err();
    assert!(not_there.contains("not associated"), "{not_there}");
    // The network is in use while the server is on it; its port goes with it.
    let busy = os.run(&["network", "delete", "net1"]).unwrap_err();
    assert!(busy.contains("in use") || busy.contains("409"), "{busy}");
    os.run(&["server", "delete", "--wait", "s1"]).unwrap();
    assert!(os.run(&["port", "show", &port_id]).is_err());
    os.run(&["image", "delete", "netimg"]).unwrap();

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
