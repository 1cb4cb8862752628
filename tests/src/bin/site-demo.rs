//! The site demo (scripts/cluster-demo.sh): three boxes formed on this machine (each a network
//! namespace on one underlay bridge, with its own etcd member and outpostd), driven with the
//! stock `openstack` client: an image uploaded through box 1, a network and three guests made
//! through box 2 in an anti-affinity group (one guest per box), `hypervisor list`, each guest's
//! DHCP lease and its pings to the guests on the other boxes over VXLAN. Everything is deleted
//! and the rig torn down at the end (also when a step fails).

use std::time::Instant;

use outpost_tests::site::{guest_ip, Site};

fn step(started: Instant, what: &str) {
    println!("\n[{:>6.1} s] {what}", started.elapsed().as_secs_f64());
}

fn main() {
    let started = Instant::now();
    step(
        started,
        "forming a site of three boxes (etcd and outpostd on each)",
    );
    let site = Site::form(3, 3);
    for b in &site.rig.boxes {
        println!("  {} in netns {} at {}", b.name, b.netns, b.addr);
    }

    step(
        started,
        "box 1: openstack image create --file <guest root disk> guest",
    );
    let image = site.upload_image(1, "guest");
    println!("  image {image} active (verified copies on two boxes)");

    step(
        started,
        "box 2: network, subnet, flavor, anti-affinity group, three servers",
    );
    let cli = site.cli(2);
    site.network(2);
    site.flavor(2);
    let (_, hint) = site.anti_affinity_group(2, "demo");
    let servers: Vec<String> = (1..=3)
        .map(|k| site.guest(2, k, "default", "guest", &[&hint]).1)
        .collect();
    for s in &servers {
        let host = site.wait_active(s, 300);
        println!("  server {s} ACTIVE on {host}");
    }

    step(started, "box 2: openstack hypervisor list");
    print!("{}", cli.ok(&["hypervisor", "list"]));
    print!(
        "{}",
        cli.ok(&[
            "server", "list", "--long", "-c", "Name", "-c", "Status", "-c", "Networks", "-c",
            "Host"
        ])
    );

    step(started, "each guest's DHCP lease from its own box");
    for s in &servers {
        println!("  {s}: {}", site.wait_lease(s, 300));
    }

    step(started, "pings across boxes over VXLAN");
    for (a, b) in [(0, 1), (1, 2), (2, 0)] {
        let peer = guest_ip(b + 1);
        site.wait_pings(&servers[a], &peer, 0, true, 3, 240);
        println!("  g{} -> g{} ({peer}): answered", a + 1, b + 1);
    }

    step(started, "deleting everything");
    let mut args = vec!["server", "delete", "--wait"];
    args.extend(servers.iter().map(String::as_str));
    cli.ok(&args);
    cli.ok(&["port", "delete", "p1", "p2", "p3"]);
    cli.ok(&["server", "group", "delete", "demo"]);
    cli.ok(&["subnet", "delete", "xsub"]);
    cli.ok(&["network", "delete", "xnet"]);
    cli.ok(&["flavor", "delete", "xb"]);
    cli.ok(&["image", "delete", &image]);
    drop(site);
    step(
        started,
        "rig torn down: namespaces, bridge, etcd members and outpostd gone",
    );
}
