//! A site of three boxes (tests/src/rig.rs) driven with the stock `openstack` client alone, as
//! an operator would (docs/cluster.md; issue 11's end-to-end scenario):
//!
//! - the guests' root disk uploaded through box 1 (`image create --file`), active once two
//!   boxes hold verified copies;
//! - through box 2: a network (MTU of the underlay less VXLAN's 50) and a subnet, two
//!   security groups (`web` lets its own members ping, `closed` lets nothing in), a port per
//!   guest with a fixed address, an anti-affinity server group and three servers in it, which
//!   land on three different boxes (so the image uploaded at box 1 boots on box 3 too);
//!   `hypervisor list` shows the three boxes up;
//! - each guest takes its DHCP lease from its own box (same gateway, the overlay's MTU); the
//!   two `web` guests ping each other across boxes, the `closed` one neither reaches nor is
//!   reached until its port joins `web`; each box's VXLAN floods to the other boxes and
//!   forwards the other guests' MACs to their boxes; each box's dnsmasq holds its own guest;
//! - everything deleted through the client: no monitor, dnsmasq, tap, bridge, VXLAN device,
//!   nftables table or etcd key of any of it is left on any box.

use std::collections::BTreeSet;

use outpost_tests::eventually;
use outpost_tests::rig::BoxNode;
use outpost_tests::site::{guest_ip, interfaces, Site, SUBNET};
use serde_json::Value;

/// Processes of the box other than its outpostd and etcd (monitors, dnsmasq), by name.
fn workers(b: &BoxNode) -> Vec<String> {
    b.pids()
        .into_iter()
        .filter_map(|pid| {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let comm = comm.trim().to_owned();
            (comm != "outpostd" && comm != "etcd").then(|| format!("{comm} ({pid})"))
        })
        .collect()
}

/// nftables tables of outpostd's host agent in the box's namespace.
fn op_tables(b: &BoxNode) -> Vec<String> {
    let out = b.exec(&["nft", "list", "tables"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.ends_with(" op"))
        .map(str::to_owned)
        .collect()
}

fn id(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

#[test]
fn the_stock_client_runs_a_site_of_three_boxes_through_box_two() {
    let site = Site::form(3, 3);
    let image = site.upload_image(1, "guest");
    let cli = site.cli(2);

    let (net, subnet) = site.network(2);
    assert_eq!(
        net["mtu"], 1450,
        "the underlay's 1500 less VXLAN's 50: {net}"
    );
    let web = cli.json(&["security", "group", "create", "web"]);
    cli.json(&[
        "security",
        "group",
        "rule",
        "create",
        "--ingress",
        "--protocol",
        "icmp",
        "--remote-group",
        "web",
        "web",
    ]);
    let closed = cli.json(&["security", "group", "create", "closed"]);
    let flavor = site.flavor(2);
    let (group, hint) = site.anti_affinity_group(2, "spread");

    // Guests 1 and 2 in `web`, guest 3 in `closed`.
    let (ports, servers): (Vec<Value>, Vec<String>) = (1..=3)
        .map(|k| {
            site.guest(
                2,
                k,
                if k < 3 { "web" } else { "closed" },
                "guest",
                &[&hint],
            )
        })
        .unzip();
    let hosts: Vec<String> = servers.iter().map(|s| site.wait_active(s, 300)).collect();
    let distinct: BTreeSet<&String> = hosts.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "anti-affinity: one server per box: {hosts:?}"
    );
    let members = cli.json(&["server", "group", "show", "spread"]);
    for s in &servers {
        assert!(
            members["members"].to_string().contains(s.as_str()),
            "{members}"
        );
    }

    let hypervisors = cli.json(&["hypervisor", "list"]);
    let up: BTreeSet<String> = hypervisors
        .as_array()
        .expect("a list")
        .iter()
        .filter(|h| h["State"] == "up")
        .filter_map(|h| h["Hypervisor Hostname"].as_str().map(str::to_owned))
        .collect();
    let names: BTreeSet<String> = site.rig.boxes.iter().map(|b| b.name.clone()).collect();
    assert_eq!(up, names, "{hypervisors}");
    // Nova's services: one nova-compute per box, up and enabled; box 3 disabled through the
    // client is shown disabled with its reason, then enabled again.
    let services = |cli: &outpost_tests::openstack::Openstack| -> Vec<(String, String, String)> {
        cli.json(&["compute", "service", "list", "--service", "nova-compute"])
            .as_array()
            .expect("a list")
            .iter()
            .map(|s| {
                let field = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
                (field("Host"), field("Status"), field("State"))
            })
            .collect()
    };
    let listed = services(cli);
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|(_, status, state)| status == "enabled" && state == "up"),
        "{listed:?}"
    );
    let box3 = &site.box_node(3).name;
    cli.ok(&[
        "compute",
        "service",
        "set",
        "--disable",
        "--disable-reason",
        "maintenance",
        box3,
        "nova-compute",
    ]);
    let shown = services(site.cli(1));
    assert!(
        shown
            .iter()
            .any(|(host, status, _)| host == box3 && status == "disabled"),
        "{shown:?}"
    );
    cli.ok(&[
        "compute",
        "service",
        "set",
        "--enable",
        box3,
        "nova-compute",
    ]);

    // Each guest's lease from its own box, with the one gateway and the overlay's MTU.
    for (k, s) in servers.iter().enumerate() {
        let lease = site.wait_lease(s, 420);
        assert_eq!(
            lease,
            format!("ip={} router={SUBNET}.1 mtu=1450", guest_ip(k + 1)),
            "{s}"
        );
    }
    let (g1, g2, g3) = (&servers[0], &servers[1], &servers[2]);
    let (ip1, ip2, ip3) = (guest_ip(1), guest_ip(2), guest_ip(3));
    site.wait_pings(g1, &ip2, 0, true, 3, 240);
    site.wait_pings(g2, &ip1, 0, true, 3, 240);
    let r13 = site.wait_pings(g1, &ip3, 0, false, 3, 120);
    let r31 = site.wait_pings(g3, &ip1, 0, false, 3, 120);
    eprintln!(
        "web guests on {} and {} ping each other; closed guest on {} isolated",
        hosts[0], hosts[1], hosts[2]
    );

    // The closed guest's port joins `web`: it reaches and is reached.
    cli.ok(&[
        "port",
        "set",
        "--no-security-group",
        "--security-group",
        "web",
        "p3",
    ]);
    site.wait_pings(g1, &ip3, r13, true, 3, 120);
    site.wait_pings(g3, &ip1, r31, true, 3, 120);

    // Each box's VXLAN floods to the other boxes and forwards the other guests' MACs to the
    // boxes that run them; its dnsmasq holds its own guest only.
    let net_id = id(&net);
    let vxlan = format!("opx{}", &net_id.replace('-', "")[..12]);
    let bridge = outpost_netdev::bridge_name(&net_id);
    for (i, me) in site.rig.boxes.iter().enumerate() {
        let fdb = me.exec(&["bridge", "fdb", "show", "dev", &vxlan]);
        let fdb = String::from_utf8_lossy(&fdb.stdout).into_owned();
        let hosts_file =
            std::fs::read_to_string(site.rig.net_run_dir(i + 1).join(format!("{bridge}.hosts")))
                .unwrap_or_default();
        for (k, port) in ports.iter().enumerate() {
            let mac = port["mac_address"].as_str().expect("a MAC");
            let runs_on = &hosts[k];
            if *runs_on == me.name {
                assert!(hosts_file.contains(mac), "{}: {hosts_file}", me.name);
                continue;
            }
            assert!(!hosts_file.contains(mac), "{}: {hosts_file}", me.name);
            let there = site
                .rig
                .boxes
                .iter()
                .find(|b| b.name == *runs_on)
                .expect("a box");
            let dst = format!("dst {}", there.addr);
            for entry in [mac, "00:00:00:00:00:00"] {
                assert!(
                    fdb.lines()
                        .any(|l| l.starts_with(entry) && l.contains(&dst)),
                    "{}: no entry {entry} {dst}:\n{fdb}",
                    me.name
                );
            }
        }
    }

    // Everything deleted through the client: nothing of it is left on any box.
    let mut args = vec!["server", "delete", "--wait"];
    args.extend(servers.iter().map(String::as_str));
    cli.ok(&args);
    cli.ok(&["port", "delete", "p1", "p2", "p3"]);
    cli.ok(&["server", "group", "delete", "spread"]);
    cli.ok(&["security", "group", "delete", "web", "closed"]);
    cli.ok(&["subnet", "delete", "xsub"]);
    cli.ok(&["network", "delete", "xnet"]);
    cli.ok(&["flavor", "delete", "xb"]);
    site.cli(3).ok(&["image", "delete", &image]);
    let gone: Vec<String> = [&net, &subnet, &web, &closed, &flavor, &group]
        .into_iter()
        .map(id)
        .chain(ports.iter().map(id))
        .chain(servers.iter().cloned())
        .chain([image.clone()])
        .collect();
    for b in &site.rig.boxes {
        eventually(60, &format!("nothing left on {}", b.name), || {
            let left: Vec<String> = workers(b)
                .into_iter()
                .chain(interfaces(b))
                .chain(op_tables(b))
                .collect();
            left.is_empty().then_some(()).or_else(|| {
                eprintln!("{}: {left:?}", b.name);
                None
            })
        });
    }
    let keys = site.rig.boxes[0].etcdctl(&["get", "--prefix", "--keys-only", "/outpost/"]);
    let keys = String::from_utf8_lossy(&keys.stdout).into_owned();
    for id in &gone {
        assert!(
            !keys.lines().any(|k| k.contains(id.as_str())),
            "an etcd key of {id} is left:\n{keys}"
        );
    }
}
