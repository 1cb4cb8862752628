//! Guest networking end to end: a real outpostd that manages this host's networking (Linux
//! bridge and taps, dnsmasq, nftables), real guests on real taps, driven through the Neutron
//! and Nova APIs. Each guest boots once and carries every check through the remote control
//! in [`common::guestctl`] (it polls the test over its own network, after its own DHCP).
//!
//! - two servers on one network get their reserved addresses (and gateway and MTU) from
//!   dnsmasq with busybox udhcpc, show them in `addresses`, and ping each other;
//! - a group that allows tcp/22 only from members of group X: the guest in X connects, the
//!   one outside X does not; removing the rule stops new connections within a second while
//!   an established one keeps flowing; putting it back, or taking the client out of X with
//!   removeSecurityGroup and back with addSecurityGroup, is seen by the next connection;
//! - a forged source address and a forged MAC get nothing to the other guest (its kernel's
//!   ICMP counters stay put, while honest pings move them);
//! - egress through the NAT uplink reaches an address in a namespace behind the host that
//!   has no route back to the guests' subnet;
//! - `"networks": "auto"` with one network gives the server a port on it;
//! - kill -9 of outpostd while the host drifts (a stray tap, a deleted nftables table): the
//!   next start reconciles both, adopts the running dnsmasq, and the guests keep their
//!   network and their filtering;
//! - deleting the servers, the port and the network leaves no bridge, tap, nftables table or
//!   dnsmasq behind.
//!
//! Runs as root (it changes the host's networking); one test, so nothing else in this
//! binary touches the bridges at the same time.

mod common;

use common::guestctl::GuestControl;
use common::guests::*;
use common::{Daemon, Text};
use serde_json::{json, Value};
use std::net::IpAddr;
use std::process::Command;
use std::time::{Duration, Instant};

const STEP: Duration = Duration::from_secs(120);

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").arg("-c").arg(cmd).output().unwrap();
    assert!(
        out.status.success(),
        "{cmd}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A namespace behind the host, reached through a veth: the outside world for NAT.
struct Outside {
    netns: String,
    veth: String,
}

impl Outside {
    fn new(tag: u32, net: u8) -> Outside {
        let o = Outside {
            netns: format!("ost-out-{tag}"),
            veth: format!("ovx{tag}"),
        };
        let _ = Command::new("ip").args(["netns", "del", &o.netns]).status();
        let _ = Command::new("ip").args(["link", "del", &o.veth]).status();
        sh(&format!(
            "ip netns add {ns} && ip link add {v} type veth peer name eth0 netns {ns} && \
             ip addr add 198.18.{net}.1/24 dev {v} && ip link set {v} up && \
             ip -n {ns} addr add 198.18.{net}.2/24 dev eth0 && ip -n {ns} link set eth0 up && \
             ip -n {ns} link set lo up",
            ns = o.netns,
            v = o.veth
        ));
        o
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.netns])
            .status();
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
    }
}

fn neutron_delete(d: &Daemon, path: &str) {
    let r = d.unix().delete(&format!("/network/v2.0/{path}"));
    assert_eq!(r.status.as_u16(), 204, "DELETE {path}: {}", r.text());
}

/// Interfaces, nftables tables and dnsmasq processes that outpostd's host agent owns.
fn host_leftovers() -> Vec<String> {
    let mut left: Vec<String> = sh("ip -o link show")
        .lines()
        .filter_map(|l| l.split(':').nth(1))
        .map(|n| n.trim().split('@').next().unwrap_or("").to_owned())
        .filter(|n| n.starts_with("opb") || n.starts_with("opt"))
        .collect();
    for t in sh("nft list tables").lines() {
        if t.ends_with(" op") {
            left.push(t.to_owned());
        }
    }
    for pid in common::guests::processes_naming("/run/outpost/net/") {
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if cmd.starts_with("/usr/sbin/dnsmasq") {
            left.push(format!("dnsmasq {pid}"));
        }
    }
    left
}

/// Ping counters of a guest's kernel: echo requests received.
fn in_echos(ctl: &GuestControl, ip: &str) -> u64 {
    let r = ctl.run(
        ip,
        "awk '/^Icmp:/ { if (!c) { for (i = 1; i <= NF; i++) if ($i == \"InEchos\") c = i } \
         else print $c }' /proc/net/snmp",
        STEP,
    );
    assert!(r.ok(), "{r:?}");
    r.output.trim().parse().unwrap_or_else(|_| panic!("{r:?}"))
}

/// Connects from the guest at `from` to `to`:22 and reports whether the banner came back.
fn connects(ctl: &GuestControl, from: &str, to: &str) -> bool {
    let r = ctl.run(
        from,
        &format!("sleep 2 | nc -w 3 {to} 22 2>&1 | grep -q OUTPOST-BANNER"),
        STEP,
    );
    r.ok()
}

#[test]
fn guests_get_dhcp_addresses_and_security_groups_filter_them() {
    check_assets();
    let _turn = one_guest_at_a_time();
    let pid = std::process::id();
    // A subnet of our own: 10.<200+>.<x>.0/24, and the outside world 198.18.<x>.0/24.
    let x = (pid % 200) as u8;
    let (mut d, _sweep) = start_daemon("[network]\nnat = true\n");
    let net = neutron_post(
        &d,
        "networks",
        json!({"network": {"name": format!("lan{pid}"), "mtu": 1450}}),
    )["network"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let prefix = format!("10.201.{x}");
    let gateway = format!("{prefix}.1");
    let subnet = neutron_post(
        &d,
        "subnets",
        json!({"subnet": {"network_id": net, "ip_version": 4, "cidr": format!("{prefix}.0/24"),
                          "dns_nameservers": ["192.0.2.53"]}}),
    );
    assert_eq!(subnet["subnet"]["gateway_ip"], gateway.as_str());

    // Groups: X holds clients; S lets tcp/22 in from X only, and ICMP from anywhere.
    let group = |name: &str| {
        neutron_post(
            &d,
            "security-groups",
            json!({"security_group": {"name": name}}),
        )["security_group"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let gx = group("clients");
    let gs = group("ssh-from-clients");
    let rule = |body: Value| {
        neutron_post(
            &d,
            "security-group-rules",
            json!({ "security_group_rule": body }),
        )["security_group_rule"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let ssh_rule_body = json!({"security_group_id": gs, "direction": "ingress",
        "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
        "remote_group_id": gx});
    let ssh_rule = rule(ssh_rule_body.clone());
    rule(
        json!({"security_group_id": gs, "direction": "ingress", "ethertype": "IPv4",
                "protocol": "icmp", "remote_ip_prefix": "0.0.0.0/0"}),
    );

    // The host side exists as soon as the network does: the bridge holds the gateway, where
    // the guests' remote control listens.
    let deadline = Instant::now() + Duration::from_secs(10);
    let gw_ip: IpAddr = gateway.parse().unwrap();
    let ctl = loop {
        if let Ok(l) = std::net::TcpListener::bind((gw_ip, 0)) {
            drop(l);
            break GuestControl::bind(gw_ip);
        }
        assert!(
            Instant::now() < deadline,
            "the gateway {gateway} never came up on the bridge:\n{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let image = image_with_checks(&d, "net-guest", &ctl.boot_script());
    create_flavor(&d, "net.small", 1, 192, 1);

    // A: a port made beforehand (group S). B: a port made by Nova on the network with the
    // address asked for, in groups X and S by name.
    let a_ip = format!("{prefix}.10");
    let b_ip = format!("{prefix}.20");
    let port_a = neutron_post(
        &d,
        "ports",
        json!({"port": {"network_id": net, "name": "a",
                        "fixed_ips": [{"ip_address": a_ip}], "security_groups": [gs]}}),
    )["port"]
        .clone();
    // A has a key pair, user data and asks for its admin password: what the metadata
    // service must give A and never B.
    let r = api(&d).post(
        "/compute/v2.1/os-keypairs",
        &json!({"keypair": {"name": "meta-key"}}),
    );
    assert!(r.status.is_success(), "{}", r.text());
    let public_key = r.body_json()["keypair"]["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let boot_with = |name: &str, networks: Value, groups: Value, extra: Value| {
        let mut server = json!({"name": name, "flavorRef": "net.small", "imageRef": image,
                                "networks": networks, "security_groups": groups});
        for (k, v) in extra.as_object().unwrap() {
            server[k] = v.clone();
        }
        let r = api(&d).post("/compute/v2.1/servers", &json!({ "server": server }));
        assert_eq!(r.status.as_u16(), 202, "{}", r.text());
        let body = r.body_json();
        assert!(body["server"]["adminPass"].is_string(), "{body}");
        body["server"]["id"].as_str().unwrap().to_owned()
    };
    let boot =
        |name: &str, networks: Value, groups: Value| boot_with(name, networks, groups, json!({}));
    let a = boot_with(
        "a",
        json!([{"port": port_a["id"]}]),
        json!(null),
        // base64 of "OUTPOST-USER-DATA-A\n"
        json!({"key_name": "meta-key", "user_data": "T1VUUE9TVC1VU0VSLURBVEEtQQo=",
               "adminPass": "meta-Pass-1", "config_drive": true}),
    );
    let b = boot(
        "b",
        json!([{"uuid": net, "fixed_ip": b_ip}]),
        json!([{"name": "clients"}, {"name": "ssh-from-clients"}]),
    );
    // Nova's refusals change nothing: a port in use, an unknown network.
    let r = api(&d).post(
        "/compute/v2.1/servers",
        &json!({"server": {"name": "c", "flavorRef": "net.small", "imageRef": image,
                           "networks": [{"port": port_a["id"]}]}}),
    );
    assert_eq!(r.status.as_u16(), 409, "{}", r.text());
    let r = api(&d).post(
        "/compute/v2.1/servers",
        &json!({"server": {"name": "c", "flavorRef": "net.small", "imageRef": image,
                           "networks": [{"uuid": "no-such-net"}]}}),
    );
    assert_eq!(r.status.as_u16(), 400, "{}", r.text());

    let sa = wait_status(&d, &a, "ACTIVE");
    let sb = wait_status(&d, &b, "ACTIVE");
    let lan = format!("lan{pid}");
    assert_eq!(sa["addresses"][&lan][0]["addr"], a_ip.as_str(), "{sa:#}");
    assert_eq!(sa["addresses"][&lan][0]["version"], 4);
    assert_eq!(
        sa["addresses"][&lan][0]["OS-EXT-IPS-MAC:mac_addr"],
        port_a["mac_address"]
    );
    assert_eq!(sb["addresses"][&lan][0]["addr"], b_ip.as_str(), "{sb:#}");
    let names: Vec<&str> = sb["security_groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["clients", "ssh-from-clients"]);
    // The monitor got the port's tap and MAC.
    let nic = monitor_get(&d, &a, "/vm/config")["network-interfaces"][0].clone();
    assert_eq!(
        nic["host_dev_name"],
        outpost_netdev::tap_name(port_a["id"].as_str().unwrap()).as_str()
    );
    assert_eq!(nic["guest_mac"], port_a["mac_address"]);

    // Both guests took their reservations with udhcpc and now poll the test from them.
    for (id, ip) in [(&a, &a_ip), (&b, &b_ip)] {
        assert!(
            ctl.wait_seen(ip, BOOT_TIMEOUT),
            "guest {ip} never called home:\n{}",
            console(&d, id, Some(40))
        );
        assert!(console(&d, id, None).contains("OUTPOST-DHCP-OK"));
    }

    // What dnsmasq handed out: the address, the gateway, the DNS server and the MTU.
    let r = ctl.run(
        &a_ip,
        "printf '#!/bin/sh\\n[ \"$1\" = bound ] && echo \"lease ip=$ip router=$router \
         dns=$dns mtu=$mtu\"\\nexit 0\\n' >/tmp/show && chmod +x /tmp/show && \
         udhcpc -i eth0 -n -q -O mtu -t 5 -T 2 -s /tmp/show 2>/dev/null | grep lease",
        STEP,
    );
    assert!(r.ok(), "{r:?}");
    assert_eq!(
        r.output.trim(),
        format!("lease ip={a_ip} router={gateway} dns=192.0.2.53 mtu=1450")
    );
    // ... and the image's hook applied all of it at boot.
    let r = ctl.run(
        &a_ip,
        "cat /sys/class/net/eth0/mtu; ip -4 route show default",
        STEP,
    );
    assert!(r.ok(), "{r:?}");
    assert_eq!(
        r.output.lines().collect::<Vec<_>>(),
        [
            "1450".to_owned(),
            format!("default via {gateway} dev eth0 ")
        ],
        "{r:?}"
    );

    // The metadata service (169.254.169.254 on the host's side of the network) tells A about
    // A: its uuid, its key, its admin password, its user data, the EC2 tree; and its config
    // drive holds the same. One step.
    let md_url = "http://169.254.169.254";
    let r = ctl.run(
        &a_ip,
        &format!(
            "wget -q -O - {md_url}/openstack/latest/meta_data.json && echo && \
             wget -q -O - {md_url}/openstack/latest/user_data && \
             wget -q -O - {md_url}/latest/meta-data/public-keys/0/openssh-key && echo && \
             wget -q -O - {md_url}/latest/meta-data/local-ipv4 && echo && \
             {{ grep -a -q config-2 /dev/vdb && echo DRIVE-LABEL; \
                grep -a -q '\"uuid\":\"{a}\"' /dev/vdb && echo DRIVE-UUID; true; }}"
        ),
        STEP,
    );
    assert!(r.ok(), "{r:?}");
    let lines: Vec<&str> = r.output.lines().filter(|l| !l.is_empty()).collect();
    let md: Value = serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(md["uuid"], a.as_str(), "{md:#}");
    assert_eq!(md["name"], "a");
    assert_eq!(md["public_keys"]["meta-key"], public_key.as_str(), "{md:#}");
    assert_eq!(md["admin_pass"], "meta-Pass-1");
    assert_eq!(lines[1], "OUTPOST-USER-DATA-A", "{r:?}");
    assert_eq!(lines[2], public_key.trim(), "{r:?}");
    assert_eq!(lines[3], a_ip, "{r:?}");
    // A asked for a config drive: its second disk (the test kernel has no vfat to mount
    // it) carries the label cloud-init looks for and A's own meta_data.json.
    assert_eq!(lines[4..], ["DRIVE-LABEL", "DRIVE-UUID"], "{r:?}");
    // B, on the same network, is told about B, and gets nothing of A's whatever it claims
    // in its headers: it has no user data of its own, so that is a 404.
    let r = ctl.run(
        &b_ip,
        &format!(
            "wget -q -O - {md_url}/openstack/latest/meta_data.json && echo && \
             if wget -q -O - --header 'X-Instance-ID: {a}' \
                  --header 'X-Forwarded-For: {a_ip}' --header 'X-Instance-ID-Signature: x' \
                  {md_url}/openstack/latest/user_data; then echo GOT; else echo REFUSED; fi"
        ),
        STEP,
    );
    assert!(r.ok(), "{r:?}");
    let md: Value = serde_json::from_str(r.output.lines().next().unwrap_or(""))
        .unwrap_or_else(|e| panic!("{e}: {r:?}"));
    assert_eq!(md["uuid"], b.as_str(), "{md:#}");
    assert!(
        md.get("public_keys").is_some_and(|k| k == &json!({})),
        "{md:#}"
    );
    assert_ne!(md["admin_pass"], "meta-Pass-1");
    assert!(!r.output.contains("OUTPOST-USER-DATA-A"), "{r:?}");
    assert_eq!(r.output.lines().last(), Some("REFUSED"), "{r:?}");

    // They reach each other; both listen on 22 with an echoing banner.
    for (from, to) in [(&a_ip, &b_ip), (&b_ip, &a_ip)] {
        let r = ctl.run(from, &format!("ping -c 2 -W 3 {to}"), STEP);
        assert!(r.ok(), "{from} -> {to}: {r:?}");
    }
    for ip in [&a_ip, &b_ip] {
        let r = ctl.run(
            ip,
            "printf '#!/bin/sh\\necho OUTPOST-BANNER\\nexec cat\\n' >/tmp/banner && \
             chmod +x /tmp/banner && (nc -ll -p 22 -e /tmp/banner </dev/null >/dev/null 2>&1 &)",
            STEP,
        );
        assert!(r.ok(), "{r:?}");
    }
    // B is in X: in. A is not: out.
    assert!(connects(&ctl, &b_ip, &a_ip), "a member of X was refused");
    assert!(!connects(&ctl, &a_ip, &b_ip), "a non-member of X got in");

    // An established flow from B to A, echoing a line a second into a log.
    let r = ctl.run(
        &b_ip,
        &format!(
            "(i=0; while [ $i -lt 600 ]; do echo tick$i; i=$((i+1)); sleep 1; done | \
             nc {a_ip} 22 >/tmp/flow 2>&1 &)"
        ),
        STEP,
    );
    assert!(r.ok(), "{r:?}");
    let flow_lines = || {
        let r = ctl.run(&b_ip, "grep -c tick /tmp/flow", STEP);
        r.output.trim().parse::<u64>().unwrap_or(0)
    };
    std::thread::sleep(Duration::from_secs(3));
    let before = flow_lines();
    assert!(before > 0, "the flow never started");

    // The rule goes: within a second new connections are refused, the flow goes on.
    let removed = Instant::now();
    neutron_delete(&d, &format!("security-group-rules/{ssh_rule}"));
    std::thread::sleep(Duration::from_secs(1).saturating_sub(removed.elapsed()));
    assert!(
        !connects(&ctl, &b_ip, &a_ip),
        "the removed rule still let B in"
    );
    std::thread::sleep(Duration::from_secs(2));
    let after = flow_lines();
    assert!(
        after > before,
        "the established flow stopped ({before} -> {after})"
    );
    // Back again: new connections pass.
    let ssh_rule = rule(ssh_rule_body);
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        connects(&ctl, &b_ip, &a_ip),
        "the restored rule did not let B in"
    );

    // Membership is what counts: B out of X (Nova's removeSecurityGroup), refused; back in,
    // admitted. Removing a group B does not have is Nova's 400.
    let act = |id: &str, body: Value| {
        let r = api(&d).post(&format!("/compute/v2.1/servers/{id}/action"), &body);
        (r.status.as_u16(), r.text())
    };
    let (code, text) = act(&b, json!({"removeSecurityGroup": {"name": "clients"}}));
    assert_eq!(code, 202, "{text}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(!connects(&ctl, &b_ip, &a_ip), "B left X but still got in");
    let (code, text) = act(&b, json!({"removeSecurityGroup": {"name": "clients"}}));
    assert_eq!(code, 400, "{text}");
    let (code, text) = act(&b, json!({"addSecurityGroup": {"name": "clients"}}));
    assert_eq!(code, 202, "{text}");
    std::thread::sleep(Duration::from_secs(1));
    assert!(connects(&ctl, &b_ip, &a_ip), "B rejoined X but was refused");
    let (code, text) = act(&b, json!({"addSecurityGroup": {"name": "no-such-group"}}));
    assert_eq!(code, 404, "{text}");
    let r = api(&d).get(&format!("/compute/v2.1/servers/{b}/os-security-groups"));
    assert_eq!(r.status.as_u16(), 200, "{}", r.text());
    assert_eq!(
        r.body_json()["security_groups"].as_array().unwrap().len(),
        2
    );
    let _ = ssh_rule;

    // NAT: A reaches a namespace that has no route back to the guests' subnet.
    let outside = Outside::new(pid, x);
    let r = ctl.run(&a_ip, &format!("ping -c 2 -W 3 198.18.{x}.2"), STEP);
    assert!(r.ok(), "NAT egress failed: {r:?}");

    // Anti-spoofing. Honest pings move B's echo counter; pings from a forged address, and
    // then from a forged MAC, do not. The MAC is forged last: it cuts A off until the step
    // puts it back.
    let n0 = in_echos(&ctl, &b_ip);
    let r = ctl.run(&a_ip, &format!("ping -c 2 -W 3 {b_ip}"), STEP);
    assert!(r.ok(), "{r:?}");
    let n1 = in_echos(&ctl, &b_ip);
    assert!(n1 >= n0 + 2, "B counted {n0} -> {n1} echoes");
    let r = ctl.run(
        &a_ip,
        &format!(
            "ip addr add {prefix}.99/32 dev eth0; ping -c 3 -W 1 -I {prefix}.99 {b_ip}; \
             rc=$?; ip addr del {prefix}.99/32 dev eth0; exit $rc"
        ),
        STEP,
    );
    assert!(!r.ok(), "a ping from a forged address was answered: {r:?}");
    let mac = port_a["mac_address"].as_str().unwrap();
    let r = ctl.run(
        &a_ip,
        &format!(
            "ip link set eth0 down; ip link set eth0 address fa:16:3e:66:66:66; \
             ip link set eth0 up; ping -c 3 -W 1 {b_ip}; rc=$?; \
             ip link set eth0 down; ip link set eth0 address {mac}; ip link set eth0 up; \
             exit $rc"
        ),
        STEP,
    );
    assert!(!r.ok(), "a ping from a forged MAC was answered: {r:?}");
    let n2 = in_echos(&ctl, &b_ip);
    assert_eq!(n2, n1, "B received forged packets");
    drop(outside);

    // "auto" with one network: a port on it (the server need not boot for that).
    let r = api(&d).post(
        "/compute/v2.1/servers",
        &json!({"server": {"name": "c", "flavorRef": "net.small", "imageRef": image,
                           "networks": "auto"}}),
    );
    assert_eq!(r.status.as_u16(), 202, "{}", r.text());
    let c = r.body_json()["server"]["id"].as_str().unwrap().to_owned();
    let sc = wait_status(&d, &c, "ACTIVE");
    let c_addr = sc["addresses"][&lan][0]["addr"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    assert!(c_addr.starts_with(&format!("{prefix}.")), "{sc:#}");
    let r = api(&d).delete(&format!("/compute/v2.1/servers/{c}"));
    assert_eq!(r.status.as_u16(), 204, "{}", r.text());
    wait_gone(&d, &c);

    // kill -9 of outpostd, and the host drifts while it is down: a stray tap of ours, our
    // inet table gone. The next start removes the one, rebuilds the other, keeps the same
    // dnsmasq, and the guests keep their network and their filtering.
    let dnsmasq_pids = || {
        let mut pids: Vec<i32> = common::guests::processes_naming("/run/outpost/net/")
            .into_iter()
            .filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .unwrap_or_default()
                    .starts_with("/usr/sbin/dnsmasq")
            })
            .collect();
        pids.sort_unstable();
        pids
    };
    let dnsmasq_before = dnsmasq_pids();
    assert_eq!(dnsmasq_before.len(), 1, "{dnsmasq_before:?}");
    d.kill9();
    sh("ip tuntap add dev optdeadbeef0000 mode tap && nft delete table inet op");
    d.spawn();
    let deadline = Instant::now() + Duration::from_secs(10);
    while sh("ip -o link show").contains("optdeadbeef0000")
        || !sh("nft list tables").contains("table inet op")
    {
        assert!(
            Instant::now() < deadline,
            "the restart did not reconcile the host:
{}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(dnsmasq_pids(), dnsmasq_before);
    wait_status(&d, &a, "ACTIVE");
    wait_status(&d, &b, "ACTIVE");
    assert!(connects(&ctl, &b_ip, &a_ip), "B lost A over the restart");
    assert!(
        !connects(&ctl, &a_ip, &b_ip),
        "A got into B after the restart"
    );

    // Deleting everything leaves nothing on the host.
    for id in [&a, &b] {
        let r = api(&d).delete(&format!("/compute/v2.1/servers/{id}"));
        assert_eq!(r.status.as_u16(), 204, "{}", r.text());
    }
    for id in [&a, &b] {
        wait_gone(&d, id);
    }
    // A's own port survives its server, unbound; B's was Nova's and went with it.
    let r = d
        .unix()
        .get("/network/v2.0/ports?device_owner=compute:nova");
    assert_eq!(r.body_json()["ports"].as_array().unwrap().len(), 0);
    let p = d
        .unix()
        .get(&format!(
            "/network/v2.0/ports/{}",
            port_a["id"].as_str().unwrap()
        ))
        .body_json();
    assert_eq!(p["port"]["device_id"], "");
    neutron_delete(&d, &format!("ports/{}", port_a["id"].as_str().unwrap()));
    neutron_delete(&d, &format!("networks/{net}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = host_leftovers();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "left on the host: {left:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}
