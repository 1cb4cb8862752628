use super::*;
use crate::spec::*;

fn rule(
    dir: Direction,
    eth: EtherType,
    proto: Option<Protocol>,
    lo: Option<u16>,
    hi: Option<u16>,
    remote: Remote,
) -> RuleSpec {
    RuleSpec {
        id: "r".into(),
        direction: dir,
        ethertype: eth,
        protocol: proto,
        port_range_min: lo,
        port_range_max: hi,
        remote,
    }
}

fn spec() -> HostNetworkSpec {
    HostNetworkSpec {
        networks: vec![NetworkSpec {
            id: "net1".into(),
            mtu: 1500,
            subnets: vec![SubnetSpec {
                id: "s".into(),
                cidr: "10.0.0.0/24".parse().unwrap(),
                gateway: Some("10.0.0.1".parse().unwrap()),
                dns_nameservers: vec![],
                enable_dhcp: true,
            }],
            dhcp: None,
            ports: vec![
                PortSpec {
                    id: "porta".into(),
                    mac: MacAddr([2, 0, 0, 0, 0, 0xa]),
                    ips: vec!["10.0.0.10".parse().unwrap()],
                    allowed_address_pairs: vec!["10.9.0.0/16".parse().unwrap()],
                    security_groups: vec!["web".into()],
                    port_security: true,
                },
                PortSpec {
                    id: "portb".into(),
                    mac: MacAddr([2, 0, 0, 0, 0, 0xb]),
                    ips: vec!["10.0.0.11".parse().unwrap()],
                    allowed_address_pairs: vec![],
                    security_groups: vec![],
                    port_security: false,
                },
            ],
            nat: true,
            overlay: None,
        }],
        security_groups: vec![
            SecurityGroupSpec {
                id: "web".into(),
                rules: vec![
                    rule(
                        Direction::Ingress,
                        EtherType::IPv4,
                        Some(Protocol::Tcp),
                        Some(22),
                        Some(22),
                        Remote::Group("admins".into()),
                    ),
                    rule(
                        Direction::Ingress,
                        EtherType::IPv4,
                        Some(Protocol::Udp),
                        Some(1000),
                        Some(2000),
                        Remote::Prefix("192.168.1.7/24".parse().unwrap()),
                    ),
                    rule(
                        Direction::Ingress,
                        EtherType::IPv4,
                        Some(Protocol::Icmp),
                        Some(8),
                        Some(0),
                        Remote::Any,
                    ),
                    rule(
                        Direction::Ingress,
                        EtherType::IPv6,
                        Some(Protocol::Icmp),
                        Some(128),
                        None,
                        Remote::Any,
                    ),
                    rule(
                        Direction::Egress,
                        EtherType::IPv4,
                        None,
                        None,
                        None,
                        Remote::Any,
                    ),
                    rule(
                        Direction::Egress,
                        EtherType::IPv6,
                        Some(Protocol::Number(132)),
                        None,
                        None,
                        Remote::Any,
                    ),
                    // Never matches: v6 prefix on a v4 rule, unknown group, group without v6 members.
                    rule(
                        Direction::Ingress,
                        EtherType::IPv4,
                        None,
                        None,
                        None,
                        Remote::Prefix("fd00::/8".parse().unwrap()),
                    ),
                    rule(
                        Direction::Ingress,
                        EtherType::IPv4,
                        None,
                        None,
                        None,
                        Remote::Group("nosuch".into()),
                    ),
                    rule(
                        Direction::Ingress,
                        EtherType::IPv6,
                        None,
                        None,
                        None,
                        Remote::Group("admins".into()),
                    ),
                ],
                members: vec!["10.0.0.10".parse().unwrap()],
            },
            SecurityGroupSpec {
                id: "admins".into(),
                rules: vec![],
                members: vec!["10.0.0.20".parse().unwrap()],
            },
        ],
    }
}

fn chain<'a>(text: &'a str, name: &str) -> &'a str {
    let start = text
        .find(&format!("  chain {name} {{"))
        .unwrap_or_else(|| panic!("chain {name} in\n{text}"));
    let rest = &text[start..];
    &rest[..rest.find("\n  }").unwrap()]
}

#[test]
fn replaces_both_tables_in_one_transaction() {
    let t = render(&spec(), "opx");
    let head: Vec<&str> = t.lines().skip(1).take(4).collect();
    assert_eq!(
        head,
        [
            "table bridge opx {}",
            "delete table bridge opx",
            "table inet opx {}",
            "delete table inet opx"
        ]
    );
    assert!(t.contains("table bridge opx {\n"));
    assert!(t.contains("table inet opx {\n"));
}

#[test]
fn anti_spoofing_only_for_ports_with_port_security() {
    let t = render(&spec(), "op");
    let tap = tap_name("porta");
    for line in [
        format!("set ports {{ type ifname; elements = {{ \"{tap}\" }} }}"),
        format!("map port_mark {{ type ifname : mark; elements = {{ \"{tap}\" : 0x1 }} }}"),
        format!("set port_mac {{ type ifname . ether_addr; elements = {{ \"{tap}\" . 02:00:00:00:00:0a }} }}"),
        format!("set port_v4 {{ type ifname . ipv4_addr; flags interval; elements = {{ \"{tap}\" . 10.0.0.10/32, \"{tap}\" . 10.9.0.0/16 }} }}"),
        format!("set port_v6 {{ type ifname . ipv6_addr; flags interval; elements = {{ \"{tap}\" . fe80::ff:fe00:a/128 }} }}"),
        format!("map port_out {{ type ifname : verdict; elements = {{ \"{tap}\" : jump o1 }} }}"),
    ] {
        assert!(t.lines().any(|l| l.trim() == line), "{line}\nin\n{t}");
    }
    let pre = chain(&t, "prerouting");
    let order = [
        "iifname != @ports accept",
        "meta mark set iifname map @port_mark",
        "iifname . ether saddr != @port_mac drop",
        "arp saddr ether != @port_mac drop",
        "arp saddr ip != @port_v4 drop",
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
        "iifname . ip saddr != @port_v4 drop",
        "iifname . ip6 saddr != @port_v6 drop",
        "udp sport 67 drop",
        "icmpv6 type nd-router-advert drop",
    ];
    let pos: Vec<usize> = order
        .iter()
        .map(|l| pre.find(l).unwrap_or_else(|| panic!("{l} in\n{pre}")))
        .collect();
    assert!(
        pos.windows(2).all(|w| w[0] < w[1]),
        "order {pos:?} in\n{pre}"
    );
    assert!(chain(&t, "o1").contains("meta mark set meta mark | 0x10000"));
    assert!(
        !t.contains(&tap_name("portb")),
        "port without security is unfiltered"
    );
    assert!(!t.contains("chain o2"));
}

#[test]
fn security_group_rules_render_per_direction() {
    let t = render(&spec(), "op");
    let i = chain(&t, "i1");
    let e = chain(&t, "e1");
    let gi = chain(&t, "gi0");
    let ge = chain(&t, "ge0");
    for (c, line) in [
        (i, "jump i_common"),
        (e, "jump e_common"),
        (i, "jump gi0"),
        (e, "jump ge0"),
        (
            gi,
            "meta nfproto ipv4 ip saddr @g1_v4 meta l4proto tcp th dport 22 accept",
        ),
        (
            gi,
            "meta nfproto ipv4 ip saddr 192.168.1.0/24 meta l4proto udp th dport 1000-2000 accept",
        ),
        (
            gi,
            "meta nfproto ipv4 meta l4proto icmp icmp type 8 icmp code 0 accept",
        ),
        (
            gi,
            "meta nfproto ipv6 meta l4proto icmpv6 icmpv6 type 128 accept",
        ),
        (ge, "meta nfproto ipv4 accept"),
        (ge, "meta nfproto ipv6 meta l4proto 132 accept"),
        (chain(&t, "e_common"), "udp sport 68 udp dport 67 accept"),
        (chain(&t, "i_common"), "ct state established,related accept"),
        (chain(&t, "i_common"), "ct state invalid drop"),
    ] {
        assert!(
            c.lines().any(|l| l.trim().starts_with(line)),
            "{line:?} in\n{c}"
        );
    }
    // Rules that can never match are left out; both chains end in a drop.
    assert_eq!(gi.matches(" accept # rule").count(), 4, "{gi}");
    assert!(!chain(&t, "gi1").contains("accept"), "admins has no rules");
    assert!(i.trim_end().ends_with("counter drop"));
    assert!(e.trim_end().ends_with("counter drop"));
    assert!(t.contains("set g1_v4 { type ipv4_addr; elements = { 10.0.0.20 } }"));
    assert!(t.contains("set g1_v6 { type ipv6_addr; }"));
}

#[test]
fn dispatch_and_nat() {
    let t = render(&spec(), "op");
    let br = bridge_name("net1");
    assert!(t.contains("meta mark & 0xffff vmap { 0x1 : jump e1 }"));
    assert!(t.contains("meta mark & 0xffff0000 vmap { 0x10000 : jump i1 }"));
    assert!(t.contains(&format!(
        "oifname . ip daddr vmap {{ \"{br}\" . 10.0.0.10 : jump i1 }}"
    )));
    assert!(t.contains(&format!(
        "ip saddr 10.0.0.0/24 oifname != \"{br}\" masquerade"
    )));
    let mut no_nat = spec();
    no_nat.networks[0].nat = false;
    assert!(!render(&no_nat, "op").contains("masquerade"));
}

#[test]
fn empty_spec_renders_empty_tables() {
    let t = render(&HostNetworkSpec::default(), "op");
    assert!(!t.contains("elements"));
    assert!(!t.contains("chain o1"));
    assert!(t.contains("hook prerouting"));
}

#[test]
fn ids_cannot_inject_into_the_ruleset() {
    let mut s = spec();
    s.security_groups[0].rules[0].id = "x\"; flush ruleset; #\n".into();
    let t = render(&s, "op");
    assert!(!t.contains("flush ruleset;"));
    assert!(t.contains("# rule xflushruleset"));
}

#[test]
fn link_local_is_modified_eui64() {
    assert_eq!(
        link_local(MacAddr([0xfa, 0x16, 0x3e, 0x12, 0x34, 0x56])).to_string(),
        "fe80::f816:3eff:fe12:3456"
    );
}

#[test]
// nft -c: the kernel checks the ruleset without committing it (runs as root here).
fn nft_accepts_the_example_ruleset() {
    nft_accepts(&render(&spec(), "opcheck"));
}

fn nft_accepts(t: &str) {
    let mut child = std::process::Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), t.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{t}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example network plus a second one with the same IPv4 subnet (overlapping tenants),
/// a DHCP port and an IPv6 subnet, no NAT.
fn two_networks() -> HostNetworkSpec {
    let mut s = spec();
    let mut other = s.networks[0].clone();
    other.id = "net2".into();
    other.nat = false;
    other.ports.clear();
    other.dhcp = Some(DhcpPortSpec {
        port_id: "d".into(),
        mac: MacAddr([2, 0, 0, 0, 0, 2]),
        ips: vec!["10.0.0.2".parse().unwrap()],
    });
    other.subnets.push(SubnetSpec {
        id: "s6".into(),
        cidr: "fd00:1::/64".parse().unwrap(),
        gateway: None,
        dns_nameservers: vec![],
        enable_dhcp: false,
    });
    s.networks.push(other);
    s
}

#[test]
fn each_network_is_tracked_in_its_own_zone_before_conntrack() {
    let s = two_networks();
    let zones: Zones = [("net1".to_owned(), 7u16), ("net2".to_owned(), 9)].into();
    let t = render_with_zones(&s, "op", &zones);
    let (b1, b2) = (bridge_name("net1"), bridge_name("net2"));
    let zin = chain(&t, "zone_in");
    assert!(
        zin.contains("type filter hook prerouting priority raw; policy accept;"),
        "{zin}"
    );
    assert!(
        zin.contains(&format!(
            "iifname vmap {{ \"{b1}\" : jump zi1, \"{b2}\" : jump zi2 }}"
        )),
        "{zin}"
    );
    let zout = chain(&t, "zone_out");
    assert!(zout.contains("type filter hook output priority raw; policy accept;"));
    assert!(zout.contains(&format!(
        "oifname vmap {{ \"{b1}\" : jump zo1, \"{b2}\" : jump zo2 }}"
    )));
    // Inside a network and DHCP: both directions in the zone; everything else (the
    // host's addresses: net1's NAT gateway, net2's DHCP port; routed): original only.
    let lines = |c: &str| -> Vec<String> {
        c.lines()
            .skip(1)
            .map(|l| l.trim().to_owned())
            .filter(|l| !l.is_empty())
            .collect()
    };
    assert_eq!(
        lines(chain(&t, "zi1")),
        [
            "udp dport { 67, 547 } ct zone set 7 accept",
            "ip saddr { 10.0.0.0/24 } ip daddr { 10.0.0.0/24 } ip daddr != { 10.0.0.1 } ct zone set 7 accept",
            "ct original zone set 7",
        ]
    );
    assert_eq!(
        lines(chain(&t, "zo1")),
        [
            "udp sport { 67, 547 } ct zone set 7 accept",
            "ip saddr { 10.0.0.0/24 } ip daddr { 10.0.0.0/24 } ip saddr != { 10.0.0.1 } ct zone set 7 accept",
            "ct original zone set 7",
        ]
    );
    assert_eq!(
        lines(chain(&t, "zi2")),
        [
            "udp dport { 67, 547 } ct zone set 9 accept",
            "ip saddr { 10.0.0.0/24 } ip daddr { 10.0.0.0/24 } ip daddr != { 10.0.0.2 } ct zone set 9 accept",
            "ip6 saddr { fd00:1::/64 } ip6 daddr { fd00:1::/64 } ct zone set 9 accept",
            "ct original zone set 9",
        ]
    );
    // One transaction still: the zone chains are inside the inet table that is replaced.
    let inet = t.find("table inet op {\n").unwrap();
    assert!(t.find("chain zone_in").unwrap() > inet);
}

#[test]
fn zones_come_from_the_network_ids() {
    let s = two_networks();
    let t = render(&s, "op");
    let z = zones::assign(&s, &Zones::new());
    assert_ne!(z["net1"], z["net2"]);
    assert!(t.contains(&format!("ct original zone set {}\n", z["net1"])));
    assert!(t.contains(&format!("ct original zone set {}\n", z["net2"])));
    // A network without a zone (0: the default) gets no zone chain at all.
    let only2: Zones = [("net2".to_owned(), 9u16)].into();
    let t = render_with_zones(&s, "op", &only2);
    assert!(!t.contains("chain zi1"));
    assert!(!t.contains(&format!("\"{}\" : jump zi", bridge_name("net1"))));
    assert!(t.contains("chain zi2"));
    assert!(!render(&HostNetworkSpec::default(), "op").contains("zone_in"));
}

#[test]
fn nft_accepts_the_zoned_ruleset() {
    let t = render(&two_networks(), "opcheckz");
    let mut child = std::process::Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), t.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{t}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network across boxes: its VXLAN port carries no DHCP either way and nothing from or to
/// the bridge's (DHCP port's) MAC, which every box has; a box alone renders none of it.
#[test]
fn vxlan_ports_carry_no_dhcp_and_nothing_of_the_bridge_mac() {
    let mut s = spec();
    let mac = MacAddr([0xfa, 0x16, 0x3e, 0, 0, 1]);
    s.networks[0].dhcp = Some(crate::DhcpPortSpec {
        port_id: "dhcp".into(),
        mac,
        ips: vec!["10.0.0.2".parse().unwrap()],
    });
    assert!(!render(&s, "opcheck").contains("opx"));
    s.networks[0].overlay = Some(crate::OverlaySpec {
        vni: 1000,
        local: "192.0.2.1".parse().unwrap(),
        peers: vec!["192.0.2.2".parse().unwrap()],
        remote_ports: Vec::new(),
    });
    let t = render(&s, "opcheck");
    let vx = crate::vxlan_name(&s.networks[0].id);
    for want in [
        format!("iifname \"{vx}\" ether type ip udp dport {{ 67, 68 }} drop"),
        format!("oifname \"{vx}\" ether type ip udp dport {{ 67, 68 }} drop"),
        format!("iifname \"{vx}\" ether type ip6 udp dport {{ 546, 547 }} drop"),
        format!("iifname \"{vx}\" ether saddr {mac} drop"),
        format!("oifname \"{vx}\" ether saddr {mac} drop"),
        "type filter hook output priority -200".to_owned(),
    ] {
        assert!(t.contains(&want), "{want} missing:\n{t}");
    }
    // Before the ports' own checks, which accept whatever is not from a port.
    let drop_at = t.find(&format!("iifname \"{vx}\"")).unwrap();
    assert!(drop_at < t.find("iifname != @ports accept").unwrap());
    nft_accepts(&t);
}
