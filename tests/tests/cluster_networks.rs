//! A Neutron network across the boxes of a site (tests/src/rig.rs, two boxes; docs/cluster.md,
//! "Networks across boxes"): made through one box, its two guests placed on different boxes
//! through the other, each guest gets its own box's DHCP lease (address, gateway, MTU of the
//! underlay less VXLAN's 50 bytes) and pings the other over VXLAN, allowed by the default
//! group's remote-group rule whose other member runs on the other box; a group without that
//! rule on the receiver stops the pings, the default group back lets them through again.
//! Deleting everything leaves no VXLAN device, tap or bridge in either box.

use outpost_tests::eventually;
use outpost_tests::rig::{BoxNode, Rig};
use outpost_tests::rootfs::build_rootfs;
use serde_json::{json, Value};

const SUBNET: &str = "172.31.9";

/// The guests' checks: a DHCP lease through busybox udhcpc (printed with what it carried),
/// then a ping to the other guest every second, each result a numbered console line.
fn checks() -> String {
    format!(
        r#"cat >/tmp/lease.sh <<'LEASE'
#!/bin/sh
case $1 in
    bound|renew)
        ip -4 addr add "$ip/${{mask:-24}}" dev "$interface"
        [ -n "$mtu" ] && ip link set dev "$interface" mtu "$mtu"
        echo "XB-LEASE ip=$ip router=$router mtu=$mtu"
        ;;
esac
exit 0
LEASE
chmod +x /tmp/lease.sh
ip link set eth0 up
udhcpc -i eth0 -n -q -O mtu -t 30 -T 3 -s /tmp/lease.sh
case "$(ip -4 -o addr show dev eth0)" in
    *{SUBNET}.10/*) peer={SUBNET}.20 ;;
    *) peer={SUBNET}.10 ;;
esac
n=0
while [ $n -lt 900 ]; do
    if ping -c 1 -W 1 $peer >/dev/null 2>&1; then
        echo "XB-PING $n ok"
        sleep 1
    else
        echo "XB-PING $n lost"
    fi
    n=$((n + 1))
done
"#
    )
}

fn neutron(b: &BoxNode, method: &str, path: &str, body: Option<Value>, want: u16) -> Value {
    let (code, reply) = b.api(
        method,
        &format!("/network/v2.0/{path}"),
        body.as_ref(),
        "2.53",
    );
    assert_eq!(code, want, "{method} {path} through {}: {reply}", b.name);
    reply
}

fn server(b: &BoxNode, id: &str) -> Value {
    let (code, body) = b.api("GET", &format!("/compute/v2.1/servers/{id}"), None, "2.53");
    assert_eq!(code, 200, "{body}");
    body["server"].clone()
}

/// The guest's console, read from the box that runs it.
fn console(rig: &Rig, id: &str) -> String {
    let host = server(&rig.boxes[0], id)["OS-EXT-SRV-ATTR:host"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let Some(b) = rig.boxes.iter().find(|b| b.name == host) else {
        return String::new();
    };
    let (_, body) = b.api(
        "POST",
        &format!("/compute/v2.1/servers/{id}/action"),
        Some(&json!({"os-getConsoleOutput": {"length": null}})),
        "2.53",
    );
    body["output"].as_str().unwrap_or_default().to_owned()
}

/// The numbered ping results on a console: (n, answered).
fn pings(console: &str) -> Vec<(u64, bool)> {
    console
        .lines()
        .filter_map(|l| {
            let rest = l.trim().strip_prefix("XB-PING ")?;
            let (n, result) = rest.split_once(' ')?;
            Some((n.parse().ok()?, result == "ok"))
        })
        .collect()
}

/// Waits until the guest's console shows `k` pings in a row numbered after `after`, all
/// answered (`ok`) or all lost; returns the last one's number.
fn wait_pings(rig: &Rig, id: &str, after: u64, ok: bool, k: usize, secs: u64) -> u64 {
    let what = format!(
        "{k} pings in a row from {id} {}",
        if ok { "answered" } else { "lost" }
    );
    eventually(secs, &what, || {
        let seen: Vec<(u64, bool)> = pings(&console(rig, id))
            .into_iter()
            .filter(|(n, _)| *n > after)
            .collect();
        let run = seen.iter().rev().take_while(|(_, r)| *r == ok).count();
        (run >= k).then(|| seen.last().map_or(after, |(n, _)| *n))
    })
}

/// Our interfaces in box `b`'s namespace (bridges, taps, VXLAN devices).
fn interfaces(b: &BoxNode) -> Vec<String> {
    let out = b.exec(&["ip", "-o", "link", "show"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        .filter(|n| n.starts_with("opb") || n.starts_with("opt") || n.starts_with("opx"))
        .collect()
}

#[test]
fn a_network_spans_the_boxes_over_vxlan() {
    let work = tempfile::tempdir().unwrap();
    let rootfs = build_rootfs(work.path(), &checks(), 16);
    let rig = Rig::site_with(2, &format!("[guest]\nrootfs = \"{}\"\n", rootfs.display()));
    let b1 = &rig.boxes[0];
    let b2 = &rig.boxes[1];

    // Through box 1: the network (its MTU the underlay's 1500 less 50) and its subnet.
    let net = neutron(
        b1,
        "POST",
        "networks",
        Some(json!({"network": {"name": "xb"}})),
        201,
    )["network"]
        .clone();
    assert_eq!(net["mtu"], 1450, "{net}");
    let net_id = net["id"].as_str().unwrap().to_owned();
    neutron(
        b1,
        "POST",
        "subnets",
        Some(json!({"subnet": {"network_id": net_id, "ip_version": 4,
                               "cidr": format!("{SUBNET}.0/24")}})),
        201,
    );
    let port = |ip: &str| {
        neutron(
            b1,
            "POST",
            "ports",
            Some(json!({"port": {"network_id": net_id,
                                 "fixed_ips": [{"ip_address": format!("{SUBNET}.{ip}")}]}})),
            201,
        )["port"]
            .clone()
    };
    let port_a = port("10");
    let port_b = port("20");

    // Through box 2: two servers, one after the other, so the scheduler (most free RAM
    // first) puts the second on the box the first left alone.
    let (code, body) = b2.api(
        "POST",
        "/compute/v2.1/flavors",
        Some(&json!({"flavor": {"name": "xb", "ram": 128, "vcpus": 1, "disk": 1}})),
        "2.53",
    );
    assert_eq!(code, 200, "{body}");
    let flavor = body["flavor"]["id"].as_str().unwrap().to_owned();
    let boot = |name: &str, port: &Value| {
        let (code, body) = b2.api(
            "POST",
            "/compute/v2.1/servers",
            Some(&json!({"server": {"name": name, "flavorRef": flavor,
                                    "imageRef": "outpost-guest",
                                    "networks": [{"port": port["id"]}]}})),
            "2.53",
        );
        assert_eq!(code, 202, "{body}");
        let id = body["server"]["id"].as_str().unwrap().to_owned();
        let host = eventually(120, &format!("{name} placed"), || {
            server(b2, &id)["OS-EXT-SRV-ATTR:host"]
                .as_str()
                .map(str::to_owned)
        });
        (id, host)
    };
    let (a, host_a) = boot("xa", &port_a);
    let (b, host_b) = boot("xb", &port_b);
    assert_ne!(host_a, host_b, "the two servers run on different boxes");
    for id in [&a, &b] {
        eventually(300, &format!("{id} ACTIVE"), || {
            let s = server(b1, id);
            if s["status"] == "ERROR" {
                for b in &rig.boxes {
                    eprintln!("---- {} ----\n{}", b.name, b.log("outpostd"));
                }
                panic!("{s:#}");
            }
            (s["status"] == "ACTIVE").then_some(())
        });
    }

    // Each box wired its own guest's tap and the network's VXLAN to the other box: flooding
    // to it, and the other guest's MAC forwarded to its underlay address. Its dnsmasq holds
    // its own guest's reservation only.
    let vxlan = format!("opx{}", &net_id.replace('-', "")[..12]);
    let bridge = outpost_netdev::bridge_name(&net_id);
    for (i, me) in rig.boxes.iter().enumerate() {
        let them = &rig.boxes[1 - i];
        let (mine, theirs) = if me.name == host_a {
            (&port_a, &port_b)
        } else {
            (&port_b, &port_a)
        };
        let links = interfaces(me);
        let tap = outpost_netdev::tap_name(mine["id"].as_str().unwrap());
        assert!(links.contains(&vxlan), "{}: {links:?}", me.name);
        assert!(links.contains(&tap), "{}: {links:?}", me.name);
        let fdb = me.exec(&["bridge", "fdb", "show", "dev", &vxlan]);
        let fdb = String::from_utf8_lossy(&fdb.stdout).into_owned();
        let dst = format!("dst {}", them.addr);
        let their_mac = theirs["mac_address"].as_str().unwrap();
        for mac in [their_mac, "00:00:00:00:00:00"] {
            assert!(
                fdb.lines().any(|l| l.starts_with(mac) && l.contains(&dst)),
                "{}: no entry {mac} {dst}:\n{fdb}",
                me.name
            );
        }
        let hosts = std::fs::read_to_string(rig.net_run_dir(i + 1).join(format!("{bridge}.hosts")))
            .unwrap_or_default();
        assert!(
            hosts.contains(mine["mac_address"].as_str().unwrap()),
            "{}: {hosts}",
            me.name
        );
        assert!(!hosts.contains(their_mac), "{}: {hosts}", me.name);
    }

    // Each guest got its lease from its own box (DHCP does not cross the VXLAN), with the
    // gateway and the overlay's MTU, and reaches the other guest across the boxes.
    for (id, ip) in [(&a, "10"), (&b, "20")] {
        let want = format!("XB-LEASE ip={SUBNET}.{ip} router={SUBNET}.1 mtu=1450");
        eventually(300, &format!("{id} leased {SUBNET}.{ip}"), || {
            console(&rig, id).contains(&want).then_some(())
        });
    }
    let last = wait_pings(&rig, &a, 0, true, 3, 240);
    wait_pings(&rig, &b, 0, true, 3, 240);
    eprintln!("guests on {host_a} and {host_b} ping each other over VXLAN");

    // A group with no ingress rule on B's port (changed through box 1; box 2 or box 1 runs
    // B): A's pings stop. The default group back: they pass again.
    let closed = neutron(
        b1,
        "POST",
        "security-groups",
        Some(json!({"security_group": {"name": "closed"}})),
        201,
    )["security_group"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let default_groups = port_b["security_groups"].clone();
    let b_port = port_b["id"].as_str().unwrap();
    neutron(
        b1,
        "PUT",
        &format!("ports/{b_port}"),
        Some(json!({"port": {"security_groups": [closed]}})),
        200,
    );
    let last = wait_pings(&rig, &a, last, false, 3, 120);
    neutron(
        b1,
        "PUT",
        &format!("ports/{b_port}"),
        Some(json!({"port": {"security_groups": default_groups}})),
        200,
    );
    wait_pings(&rig, &a, last, true, 3, 120);

    // Everything deleted through box 1: nothing of the network stays in either box.
    for id in [&a, &b] {
        let (code, body) = b1.api(
            "DELETE",
            &format!("/compute/v2.1/servers/{id}"),
            None,
            "2.53",
        );
        assert_eq!(code, 204, "{body}");
    }
    eventually(120, "both servers gone", || {
        let (_, list) = b1.api("GET", "/compute/v2.1/servers", None, "2.53");
        list["servers"].as_array()?.is_empty().then_some(())
    });
    for p in [&port_a, &port_b] {
        // Ports made before the servers outlive them (Nova deletes only its own).
        let id = p["id"].as_str().unwrap();
        neutron(b1, "DELETE", &format!("ports/{id}"), None, 204);
    }
    neutron(
        b1,
        "DELETE",
        &format!("security-groups/{closed}"),
        None,
        204,
    );
    neutron(b1, "DELETE", &format!("networks/{net_id}"), None, 204);
    for b in &rig.boxes {
        eventually(60, &format!("{}'s interfaces gone", b.name), || {
            interfaces(b).is_empty().then_some(())
        });
    }
}
