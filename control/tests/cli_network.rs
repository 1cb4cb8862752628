//! `outpost network|subnet|port|security group ...` and the networking side of `outpost
//! server` against a real outpostd over its unix socket: tables and JSON, names or ids
//! everywhere, a server on a network showing its address, security groups added and removed,
//! and one-line errors carrying the service's message. The daemons leave the host's
//! networking alone (`manage_host = false`): ports and addresses are made, no bridge or tap.

mod common;

use common::cli::{failed, json, ok, outpost, row};
use common::guests::{check_assets, one_guest_at_a_time, start_daemon};
use common::Daemon;
use serde_json::Value;

fn run(d: &Daemon, args: &[&str]) -> String {
    ok(&outpost(d, args))
}

/// The one line on stderr of a command that failed.
fn error(d: &Daemon, args: &[&str]) -> String {
    failed(&outpost(d, args))
}

/// The table's data rows whose cells include `value`.
fn rows_with<'a>(table: &'a str, value: &str) -> Vec<&'a str> {
    table
        .lines()
        .filter(|l| l.split('|').any(|c| c.trim() == value))
        .collect()
}

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_owned()
}

#[test]
fn networks_subnets_ports_and_groups_as_tables_and_json() {
    let d = Daemon::start();
    let shown = run(&d, &["network", "create", "lan", "--mtu", "1400"]);
    assert!(shown.starts_with('+'), "{shown}");
    assert_eq!(row(&shown, "name"), "lan");
    assert_eq!(row(&shown, "mtu"), "1400");
    let lan = row(&shown, "id");

    // By the network's name: the CLI resolves it.
    let v4 = run(
        &d,
        &[
            "subnet",
            "create",
            "lan-v4",
            "--network",
            "lan",
            "--subnet-range",
            "10.98.0.0/24",
            "--gateway",
            "10.98.0.254",
            "--dns-nameserver",
            "192.0.2.53",
            "--dns-nameserver",
            "192.0.2.54",
        ],
    );
    assert_eq!(row(&v4, "network_id"), lan);
    assert_eq!(row(&v4, "cidr"), "10.98.0.0/24");
    assert_eq!(row(&v4, "ip_version"), "4");
    assert_eq!(row(&v4, "gateway_ip"), "10.98.0.254");
    assert_eq!(row(&v4, "dns_nameservers"), "192.0.2.53, 192.0.2.54");
    assert_eq!(row(&v4, "allocation_pools"), "10.98.0.1-10.98.0.253");
    assert_eq!(row(&v4, "enable_dhcp"), "true");
    // By id, no gateway, no DHCP, IPv6 from the CIDR.
    let v6 = json(
        &d,
        &[
            "subnet",
            "create",
            "lan-v6",
            "--network",
            &lan,
            "--subnet-range",
            "fd00:98::/64",
            "--gateway",
            "none",
            "--no-dhcp",
        ],
    );
    assert_eq!(v6["ip_version"], 6);
    assert_eq!(v6["gateway_ip"], Value::Null);
    assert_eq!(v6["enable_dhcp"], false);

    let list = run(&d, &["network", "list"]);
    let header = list.lines().nth(1).unwrap();
    for col in ["ID", "Name", "Subnets"] {
        assert!(header.contains(col), "{header}");
    }
    let lan_row = rows_with(&list, "lan");
    assert_eq!(lan_row.len(), 1, "{list}");
    assert!(lan_row[0].contains(&row(&v4, "id")), "{list}");
    assert!(lan_row[0].contains(&id(&v6)), "{list}");
    let n = json(&d, &["network", "show", "lan"]);
    assert_eq!(n["id"], lan);
    assert_eq!(n["mtu"], 1400);
    assert_eq!(n["subnets"].as_array().unwrap().len(), 2);
    let subnets = json(&d, &["subnet", "list", "--network", "lan"]);
    assert_eq!(subnets.as_array().unwrap().len(), 2, "{subnets}");
    let table = run(&d, &["subnet", "list"]);
    assert_eq!(rows_with(&table, "fd00:98::/64").len(), 1, "{table}");
    assert_eq!(json(&d, &["subnet", "show", "lan-v6"]), v6);

    // Groups and rules, groups by name.
    let web = json(
        &d,
        &["security", "group", "create", "web", "--description", "www"],
    );
    assert_eq!(web["name"], "web");
    assert_eq!(web["description"], "www");
    // Neutron's defaults: everything out, IPv4 and IPv6.
    assert_eq!(web["security_group_rules"].as_array().unwrap().len(), 2);
    let ssh = json(
        &d,
        &[
            "security",
            "group",
            "rule",
            "create",
            "web",
            "--protocol",
            "tcp",
            "--dst-port",
            "22",
            "--remote-group",
            "web",
        ],
    );
    assert_eq!(ssh["security_group_id"], web["id"]);
    assert_eq!(ssh["direction"], "ingress");
    assert_eq!(ssh["ethertype"], "IPv4");
    assert_eq!(ssh["protocol"], "tcp");
    assert_eq!(ssh["port_range_min"], 22);
    assert_eq!(ssh["port_range_max"], 22);
    assert_eq!(ssh["remote_group_id"], web["id"]);
    let dns = run(
        &d,
        &[
            "security",
            "group",
            "rule",
            "create",
            "web",
            "--egress",
            "--protocol",
            "udp",
            "--dst-port",
            "53:54",
            "--remote-ip",
            "fd00::/64",
        ],
    );
    assert_eq!(row(&dns, "direction"), "egress");
    assert_eq!(row(&dns, "ethertype"), "IPv6");
    assert_eq!(row(&dns, "port_range"), "53:54");
    assert_eq!(row(&dns, "remote_ip_prefix"), "fd00::/64");
    assert_eq!(row(&dns, "security_group"), "web");
    let icmp = json(
        &d,
        &[
            "security",
            "group",
            "rule",
            "create",
            "web",
            "--ingress",
            "--protocol",
            "icmp",
            "--ethertype",
            "IPv4",
        ],
    );
    assert_eq!(icmp["protocol"], "icmp");
    assert_eq!(icmp["port_range_min"], Value::Null);

    let rules = run(&d, &["security", "group", "rule", "list", "web"]);
    assert!(
        rules.lines().nth(1).unwrap().contains("Port Range"),
        "{rules}"
    );
    let ssh_row = rows_with(&rules, ssh["id"].as_str().unwrap());
    assert_eq!(ssh_row.len(), 1, "{rules}");
    assert!(
        ssh_row[0].contains("22:22") && ssh_row[0].contains("tcp"),
        "{rules}"
    );
    assert_eq!(rows_with(&rules, "53:54").len(), 1, "{rules}");
    let all = json(&d, &["security", "group", "rule", "list", "web"]);
    assert_eq!(all.as_array().unwrap().len(), 5, "{all}");
    // Without a group: every group's rules, the default group's included.
    let every = json(&d, &["security", "group", "rule", "list"]);
    assert!(every.as_array().unwrap().len() > 5, "{every}");
    let shown = run(&d, &["security", "group", "show", "web"]);
    let described = row(&shown, "rules");
    assert_eq!(described.lines().count(), 5, "{shown}");
    assert!(
        described.contains("protocol='tcp', port_range='22:22', remote_group='web'"),
        "{shown}"
    );
    let groups = run(&d, &["security", "group", "list"]);
    assert_eq!(rows_with(&groups, "web").len(), 1, "{groups}");
    assert_eq!(rows_with(&groups, "default").len(), 1, "{groups}");

    // A port with a chosen address and group.
    let p1 = json(
        &d,
        &[
            "port",
            "create",
            "p1",
            "--network",
            "lan",
            "--fixed-ip",
            "10.98.0.50",
            "--security-group",
            "web",
        ],
    );
    assert_eq!(p1["network_id"], lan);
    assert_eq!(p1["fixed_ips"][0]["ip_address"], "10.98.0.50");
    assert_eq!(p1["security_groups"], serde_json::json!([web["id"]]));
    let bare = json(
        &d,
        &[
            "port",
            "create",
            "p2",
            "--network",
            &lan,
            "--no-security-group",
        ],
    );
    assert_eq!(bare["security_groups"], serde_json::json!([]));
    let ports = run(&d, &["port", "list", "--network", "lan"]);
    let p1_row = rows_with(&ports, "p1");
    assert_eq!(p1_row.len(), 1, "{ports}");
    assert!(p1_row[0].contains("ip_address='10.98.0.50'"), "{ports}");
    assert!(p1_row[0].contains(p1["mac_address"].as_str().unwrap()));
    let shown = run(&d, &["port", "show", "p1"]);
    assert_eq!(row(&shown, "id"), id(&p1));
    assert_eq!(row(&shown, "security_group_ids"), id(&web));

    // Deletes, by name and by id.
    run(&d, &["security", "group", "rule", "delete", &id(&icmp)]);
    let left = json(&d, &["security", "group", "rule", "list", "web"]);
    assert_eq!(left.as_array().unwrap().len(), 4, "{left}");
    assert_eq!(run(&d, &["port", "delete", "p1", &id(&bare)]), "");
    run(&d, &["security", "group", "delete", "web"]);
    let groups = run(&d, &["security", "group", "list"]);
    assert!(rows_with(&groups, "web").is_empty(), "{groups}");
    run(&d, &["subnet", "delete", "lan-v6"]);
    assert_eq!(
        json(&d, &["subnet", "list", "--network", "lan"])
            .as_array()
            .unwrap()
            .len(),
        1
    );
    run(&d, &["network", "delete", "lan"]);
    assert_eq!(json(&d, &["network", "list"]), serde_json::json!([]));
    assert_eq!(json(&d, &["subnet", "list"]), serde_json::json!([]));
}

#[test]
fn errors_are_one_line_with_the_service_message() {
    let d = Daemon::start();
    assert_eq!(
        error(&d, &["network", "show", "nope"]),
        "outpost: No network with a name or ID of 'nope' exists. (HTTP 404)\n"
    );
    run(&d, &["network", "create", "lan"]);
    let bad = |args: &[&str]| error(&d, args);
    let e = bad(&[
        "subnet",
        "create",
        "s",
        "--network",
        "nope",
        "--subnet-range",
        "10.0.0.0/24",
    ]);
    assert_eq!(
        e,
        "outpost: No network with a name or ID of 'nope' exists. (HTTP 404)\n"
    );
    for cidr in ["10.0.0.0/33", "garbage"] {
        let e = bad(&[
            "subnet",
            "create",
            "s",
            "--network",
            "lan",
            "--subnet-range",
            cidr,
        ]);
        assert!(
            e.contains(&format!("'{cidr}' is not a valid IP subnet"))
                && e.ends_with("(HTTP 400)\n"),
            "{e}"
        );
    }
    run(
        &d,
        &[
            "subnet",
            "create",
            "s",
            "--network",
            "lan",
            "--subnet-range",
            "10.98.0.0/24",
        ],
    );
    run(
        &d,
        &[
            "port",
            "create",
            "a",
            "--network",
            "lan",
            "--fixed-ip",
            "10.98.0.9",
        ],
    );
    let e = bad(&[
        "port",
        "create",
        "b",
        "--network",
        "lan",
        "--fixed-ip",
        "10.98.0.9",
    ]);
    assert!(
        e.contains("10.98.0.9 already allocated") && e.ends_with("(HTTP 409)\n"),
        "{e}"
    );
    let e = bad(&[
        "port",
        "create",
        "b",
        "--network",
        "lan",
        "--security-group",
        "nope",
    ]);
    assert_eq!(
        e,
        "outpost: No security group with a name or ID of 'nope' exists. (HTTP 404)\n"
    );
    run(&d, &["security", "group", "create", "web"]);
    let rule = |extra: &[&str]| {
        let mut args = vec!["security", "group", "rule", "create", "web"];
        args.extend_from_slice(extra);
        error(&d, &args)
    };
    assert_eq!(
        rule(&["--dst-port", "22"]),
        "outpost: Must also specify protocol if port range is given. (HTTP 400)\n"
    );
    assert!(rule(&["--protocol", "tcp", "--dst-port", "2x"])
        .contains("--dst-port \"2x\" is not N or N:M"));
    let e = rule(&["--protocol", "bogus"]);
    assert!(e.contains("protocol bogus not supported"), "{e}");
    let e = rule(&["--remote-group", "nope"]);
    assert_eq!(
        e,
        "outpost: No security group with a name or ID of 'nope' exists. (HTTP 404)\n"
    );
    let e = error(&d, &["security", "group", "rule", "delete", "nope"]);
    assert!(
        e.contains("nope could not be found") && e.contains("(HTTP 404)"),
        "{e}"
    );
    // A group a port uses stays.
    run(
        &d,
        &[
            "port",
            "create",
            "c",
            "--network",
            "lan",
            "--security-group",
            "web",
        ],
    );
    let e = error(&d, &["security", "group", "delete", "web"]);
    assert!(e.contains("in use") && e.ends_with("(HTTP 409)\n"), "{e}");
    // A name in use twice needs an id.
    run(&d, &["network", "create", "twin"]);
    run(&d, &["network", "create", "twin"]);
    assert_eq!(
        error(&d, &["network", "show", "twin"]),
        "outpost: More than one network exists with the name 'twin'; use its ID.\n"
    );
    let e = error(&d, &["port", "list", "--server", "nope"]);
    assert_eq!(
        e,
        "outpost: No server with a name or ID of 'nope' exists. (HTTP 404)\n"
    );
}

/// Boots real guests (outpost-vmm under outpostd), though with no NIC: the daemon leaves
/// the host's networking alone, so the ports exist in Neutron only.
#[test]
fn servers_on_networks_with_security_groups() {
    check_assets();
    let _turn = one_guest_at_a_time();
    let (d, _sweep) = start_daemon("");
    run(
        &d,
        &[
            "flavor", "create", "f1", "--vcpus", "1", "--ram", "128", "--disk", "1",
        ],
    );
    run(&d, &["network", "create", "lan"]);
    run(
        &d,
        &[
            "subnet",
            "create",
            "lan-v4",
            "--network",
            "lan",
            "--subnet-range",
            "10.98.0.0/24",
        ],
    );
    run(&d, &["security", "group", "create", "web"]);

    let shown = run(
        &d,
        &[
            "server",
            "create",
            "vm1",
            "--flavor",
            "f1",
            "--image",
            "outpost-guest",
            "--network",
            "lan",
            "--security-group",
            "web",
            "--wait",
        ],
    );
    assert_eq!(row(&shown, "status"), "ACTIVE", "{shown}");
    let addresses = row(&shown, "addresses");
    let ip = addresses
        .strip_prefix("lan=10.98.0.")
        .unwrap_or_else(|| panic!("{shown}"));
    let ip = format!("10.98.0.{ip}");
    assert_eq!(row(&shown, "security_groups"), "name='web'");
    let vm1 = row(&shown, "id");

    let list = run(&d, &["server", "list"]);
    assert!(list.lines().nth(1).unwrap().contains("Networks"), "{list}");
    let vm_row = rows_with(&list, "vm1");
    assert_eq!(vm_row.len(), 1, "{list}");
    assert!(vm_row[0].contains(&format!("lan={ip}")), "{list}");
    let s = json(&d, &["server", "show", "vm1"]);
    assert_eq!(s["addresses"]["lan"][0]["addr"], ip.as_str());
    let ports = json(&d, &["port", "list", "--server", "vm1"]);
    let ports = ports.as_array().unwrap();
    assert_eq!(ports.len(), 1, "{ports:?}");
    assert_eq!(ports[0]["device_id"], vm1.as_str());
    assert_eq!(ports[0]["fixed_ips"][0]["ip_address"], ip.as_str());
    let web = json(&d, &["security", "group", "show", "web"]);
    assert_eq!(ports[0]["security_groups"], serde_json::json!([web["id"]]));

    // The network and the group are in use.
    let e = error(&d, &["network", "delete", "lan"]);
    assert!(
        e.contains("ports still in use on the network") && e.ends_with("(HTTP 409)\n"),
        "{e}"
    );
    let e = error(&d, &["security", "group", "delete", "web"]);
    assert!(e.contains("in use") && e.ends_with("(HTTP 409)\n"), "{e}");

    // Groups by name, added to and removed from every port of the server.
    assert_eq!(
        run(
            &d,
            &["server", "add", "security", "group", "vm1", "default"]
        ),
        ""
    );
    let shown = run(&d, &["server", "show", "vm1"]);
    assert_eq!(row(&shown, "security_groups"), "name='web'\nname='default'");
    let e = error(
        &d,
        &["server", "add", "security", "group", "vm1", "default"],
    );
    assert!(
        e.starts_with("outpost: Security group default is already associated"),
        "{e}"
    );
    run(&d, &["server", "remove", "security", "group", &vm1, "web"]);
    let shown = run(&d, &["server", "show", "vm1"]);
    assert_eq!(row(&shown, "security_groups"), "name='default'");
    let e = error(&d, &["server", "remove", "security", "group", "vm1", "web"]);
    assert!(
        e.starts_with("outpost: Security group web not associated with the instance")
            && e.ends_with("(HTTP 400)\n"),
        "{e}"
    );
    let e = error(&d, &["server", "add", "security", "group", "vm1", "nope"]);
    assert_eq!(
        e,
        "outpost: No security group with a name or ID of 'nope' exists. (HTTP 404)\n"
    );
    run(&d, &["security", "group", "delete", "web"]);

    // A server on a port made beforehand takes its address; one with --nic none has none.
    run(
        &d,
        &[
            "port",
            "create",
            "fixed",
            "--network",
            "lan",
            "--fixed-ip",
            "10.98.0.77",
        ],
    );
    let vm2 = json(
        &d,
        &[
            "server",
            "create",
            "vm2",
            "--flavor",
            "f1",
            "--image",
            "outpost-guest",
            "--port",
            "fixed",
            "--wait",
        ],
    );
    assert_eq!(vm2["addresses"]["lan"][0]["addr"], "10.98.0.77", "{vm2}");
    let vm3 = json(
        &d,
        &[
            "server",
            "create",
            "vm3",
            "--flavor",
            "f1",
            "--image",
            "outpost-guest",
            "--nic",
            "none",
        ],
    );
    assert_eq!(vm3["addresses"], serde_json::json!({}), "{vm3}");
    // Without --network, --port or --nic: "auto", which two networks make ambiguous.
    run(&d, &["network", "create", "other"]);
    let e = error(
        &d,
        &[
            "server",
            "create",
            "vm4",
            "--flavor",
            "f1",
            "--image",
            "outpost-guest",
        ],
    );
    assert!(
        e.contains("Multiple possible networks found") && e.ends_with("(HTTP 409)\n"),
        "{e}"
    );
    let e = error(
        &d,
        &[
            "server",
            "create",
            "vm4",
            "--flavor",
            "f1",
            "--image",
            "outpost-guest",
            "--network",
            "nope",
        ],
    );
    assert_eq!(
        e,
        "outpost: No network with a name or ID of 'nope' exists. (HTTP 404)\n"
    );

    run(&d, &["server", "delete", "vm1", "vm2", "vm3", "--wait"]);
    // The server's own port went with it; the one made beforehand stays, unbound.
    let left = json(&d, &["port", "list", "--network", "lan"]);
    let names: Vec<&str> = left
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["device_owner"] != "network:dhcp")
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["fixed"], "{left}");
    run(&d, &["port", "delete", "fixed"]);
    run(&d, &["network", "delete", "lan", "other"]);
    assert_eq!(json(&d, &["network", "list"]), serde_json::json!([]));
}
