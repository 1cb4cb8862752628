//! How long a security-group change takes to reach the kernel as the box grows: the whole
//! ruleset rendered, then applied with one `nft -f` transaction (what
//! `HostNetwork::reconcile` does on every change). Prints min / median / max; asserts
//! nothing. Runs as root, into a table of its own whose chains dispatch only on port names
//! that do not exist, so the host's traffic is untouched.
//!
//!     cargo bench -p outpost-netdev --bench ruleset
//!
//! Sizes: ports on one network, 2 groups per port, groups of 10 rules half of which name a
//! remote group (nft sets of member addresses).

use outpost_netdev::*;
use std::net::IpAddr;
use std::time::{Duration, Instant};

const RUNS: usize = 10;

fn spec(ports: u32) -> HostNetworkSpec {
    let ngroups = (ports / 10).max(2);
    let ip = |s: String| -> IpAddr { s.parse().expect("address") };
    let security_groups = (0..ngroups)
        .map(|g| SecurityGroupSpec {
            id: format!("g{g}"),
            rules: (0..10u16)
                .map(|r| RuleSpec {
                    id: format!("g{g}r{r}"),
                    direction: if r % 3 == 0 {
                        Direction::Egress
                    } else {
                        Direction::Ingress
                    },
                    ethertype: EtherType::IPv4,
                    protocol: Some(Protocol::Tcp),
                    port_range_min: Some(1000 + r),
                    port_range_max: Some(1000 + r),
                    remote: if r % 2 == 0 {
                        Remote::Group(format!("g{}", (g + 1) % ngroups))
                    } else {
                        Remote::Prefix(format!("10.{r}.0.0/16").parse().expect("prefix"))
                    },
                })
                .collect(),
            members: (0..10)
                .map(|m| ip(format!("10.200.{}.{m}", g % 250)))
                .collect(),
        })
        .collect();
    let ports = (0..ports)
        .map(|i| PortSpec {
            id: format!("bench{i:07}"),
            mac: MacAddr([0x02, 0, 0, 0, (i >> 8) as u8, i as u8]),
            ips: vec![ip(format!("10.100.{}.{}", i / 250, i % 250 + 1))],
            allowed_address_pairs: vec![],
            security_groups: vec![
                format!("g{}", i % ngroups),
                format!("g{}", (i + 7) % ngroups),
            ],
            port_security: true,
        })
        .collect();
    HostNetworkSpec {
        networks: vec![NetworkSpec {
            id: "benchnet".into(),
            mtu: 1500,
            subnets: vec![],
            dhcp: None,
            ports,
            nat: false,
            overlay: None,
        }],
        security_groups,
    }
}

fn summary(mut times: Vec<Duration>) -> String {
    times.sort();
    format!(
        "min {:>9.3?}  median {:>9.3?}  max {:>9.3?}",
        times[0],
        times[times.len() / 2],
        times[times.len() - 1]
    )
}

fn main() {
    let table = format!("opbench{}", std::process::id());
    println!("nftables ruleset, {RUNS} runs each (table {table})");
    for ports in [10u32, 50, 200, 500] {
        let s = spec(ports);
        let mut render = Vec::with_capacity(RUNS);
        let mut apply = Vec::with_capacity(RUNS);
        let mut bytes = 0;
        for _ in 0..RUNS {
            let start = Instant::now();
            let text = firewall::render(&s, &table);
            render.push(start.elapsed());
            bytes = text.len();
            let start = Instant::now();
            if let Err(e) = firewall::apply(&text) {
                let _ = firewall::remove(&table);
                eprintln!("nft -f failed (run as root): {e}");
                std::process::exit(1);
            }
            apply.push(start.elapsed());
        }
        println!(
            "{ports:>4} ports, {:>3} groups, {:>4} KiB: render {}\n{:>33} nft -f {}",
            s.security_groups.len(),
            bytes / 1024,
            summary(render),
            "",
            summary(apply)
        );
    }
    if let Err(e) = firewall::remove(&table) {
        eprintln!("removing {table}: {e}");
    }
}
