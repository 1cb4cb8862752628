//! IP address management, pure: a subnet's default gateway and allocation pools, checks on
//! pools, gateways and requested addresses, the next free address, and port MACs. The
//! database (one IMMEDIATE transaction and a UNIQUE constraint) makes each hand-out unique;
//! this module only decides which address.

use super::store::Pool;
use ipnet::IpNet;
use outpost_netdev::MacAddr;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Neutron's base MAC prefix (OpenStack's registered `fa:16:3e`).
pub const MAC_PREFIX: [u8; 3] = [0xfa, 0x16, 0x3e];

pub fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v) => u128::from(u32::from(v)),
        IpAddr::V6(v) => u128::from(v),
    }
}

fn from_u128(v6: bool, n: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from(n))
    } else {
        // Callers only step within an IPv4 subnet, so `n` fits.
        IpAddr::V4(Ipv4Addr::from(u32::try_from(n).unwrap_or(u32::MAX)))
    }
}

/// The first and last address a pool may hold in `cidr`: IPv4 leaves out the network and
/// broadcast addresses, IPv6 the subnet-router anycast address (the first), as Neutron does.
pub fn usable_range(cidr: IpNet) -> Option<(u128, u128)> {
    let first = to_u128(cidr.network()) + 1;
    let last = match cidr {
        IpNet::V4(_) => to_u128(cidr.broadcast()).checked_sub(1)?,
        IpNet::V6(_) => to_u128(cidr.broadcast()),
    };
    (first <= last).then_some((first, last))
}

/// Neutron's default gateway: the first host address.
pub fn default_gateway(cidr: IpNet) -> Option<IpAddr> {
    usable_range(cidr).map(|(first, _)| from_u128(cidr.addr().is_ipv6(), first))
}

/// The default pools: every usable address but the gateway.
pub fn default_pools(cidr: IpNet, gateway: Option<IpAddr>) -> Vec<Pool> {
    let v6 = cidr.addr().is_ipv6();
    let Some((first, last)) = usable_range(cidr) else {
        return Vec::new();
    };
    let mk = |a, b| Pool {
        start: from_u128(v6, a),
        end: from_u128(v6, b),
    };
    match gateway.map(to_u128).filter(|g| (first..=last).contains(g)) {
        None => vec![mk(first, last)],
        Some(g) => {
            let mut out = Vec::new();
            if g > first {
                out.push(mk(first, g - 1));
            }
            if g < last {
                out.push(mk(g + 1, last));
            }
            out
        }
    }
}

/// Why a subnet's addresses are refused; the `&'static str` is Neutron's error type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamError {
    #[error("{0}")]
    Invalid(String),
    /// Neutron answers these with 409.
    #[error("{message}")]
    Conflict { kind: &'static str, message: String },
}

/// A gateway must be a host address of the subnet.
pub fn check_gateway(cidr: IpNet, gateway: IpAddr) -> Result<(), IpamError> {
    let in_range =
        usable_range(cidr).is_some_and(|(first, last)| (first..=last).contains(&to_u128(gateway)));
    if !in_range || !cidr.contains(&gateway) {
        return Err(IpamError::Invalid(format!(
            "Gateway IP {gateway} is not a host address of subnet {cidr}"
        )));
    }
    Ok(())
}

/// Checks requested pools against the subnet, each other and the gateway.
pub fn check_pools(cidr: IpNet, gateway: Option<IpAddr>, pools: &[Pool]) -> Result<(), IpamError> {
    let (first, last) = usable_range(cidr)
        .ok_or_else(|| IpamError::Invalid(format!("Subnet {cidr} has no host addresses")))?;
    let mut ranges = Vec::new();
    for p in pools {
        let (s, e) = (to_u128(p.start), to_u128(p.end));
        if p.start.is_ipv6() != cidr.addr().is_ipv6() || p.end.is_ipv6() != p.start.is_ipv6() {
            return Err(IpamError::Invalid(format!(
                "The allocation pool {}-{} is not of the subnet's IP version",
                p.start, p.end
            )));
        }
        if s > e {
            return Err(IpamError::Invalid(format!(
                "The allocation pool {}-{} ends before it starts",
                p.start, p.end
            )));
        }
        if s < first || e > last {
            return Err(IpamError::Invalid(format!(
                "The allocation pool {}-{} spans beyond the subnet cidr {cidr}.",
                p.start, p.end
            )));
        }
        ranges.push((s, e, p));
    }
    ranges.sort_by_key(|r| r.0);
    for w in ranges.windows(2) {
        if w[1].0 <= w[0].1 {
            return Err(IpamError::Conflict {
                kind: "OverlappingAllocationPools",
                message: format!(
                    "Found overlapping allocation pools: {}-{} and {}-{} for subnet {cidr}.",
                    w[0].2.start, w[0].2.end, w[1].2.start, w[1].2.end
                ),
            });
        }
    }
    if let Some(g) = gateway {
        let gv = to_u128(g);
        if let Some(p) = ranges.iter().find(|r| (r.0..=r.1).contains(&gv)) {
            return Err(IpamError::Conflict {
                kind: "GatewayConflictWithAllocationPools",
                message: format!(
                    "Gateway ip {g} conflicts with allocation pool {}-{}",
                    p.2.start, p.2.end
                ),
            });
        }
    }
    Ok(())
}

/// A requested fixed IP must be a host address of the subnet and not its gateway (Neutron
/// lets it lie outside the pools).
pub fn check_requested(cidr: IpNet, gateway: Option<IpAddr>, ip: IpAddr) -> Result<(), IpamError> {
    let host = cidr.contains(&ip)
        && usable_range(cidr).is_some_and(|(a, b)| (a..=b).contains(&to_u128(ip)));
    if !host {
        return Err(IpamError::Invalid(format!(
            "IP address {ip} is not a valid IP for the specified subnet."
        )));
    }
    if gateway == Some(ip) {
        return Err(IpamError::Conflict {
            kind: "IpAddressAlreadyAllocated",
            message: format!("IP address {ip} is the gateway of subnet {cidr}."),
        });
    }
    Ok(())
}

/// The lowest address of the pools that is not in `taken` (and not the gateway). Bounded
/// by the number taken, so a /64 costs no more than a /29.
pub fn first_free(
    pools: &[Pool],
    gateway: Option<IpAddr>,
    taken: &HashSet<IpAddr>,
) -> Option<IpAddr> {
    let mut sorted: Vec<&Pool> = pools.iter().collect();
    sorted.sort_by_key(|p| to_u128(p.start));
    for p in sorted {
        let v6 = p.start.is_ipv6();
        let mut n = to_u128(p.start);
        let end = to_u128(p.end);
        while n <= end {
            let ip = from_u128(v6, n);
            if !taken.contains(&ip) && Some(ip) != gateway {
                return Some(ip);
            }
            n = n.checked_add(1)?;
        }
    }
    None
}

/// A port's MAC: Neutron's prefix and three bytes of SHA-256 of the port id (and of
/// `attempt`, to step past a MAC already on the network), so the same port always gets the
/// same address.
pub fn mac_for(port_id: &str, attempt: u32) -> MacAddr {
    let mut h = Sha256::new();
    h.update(port_id.as_bytes());
    if attempt > 0 {
        h.update(attempt.to_be_bytes());
    }
    let d = h.finalize();
    MacAddr([
        MAC_PREFIX[0],
        MAC_PREFIX[1],
        MAC_PREFIX[2],
        d[0],
        d[1],
        d[2],
    ])
}

/// A MAC a port may be given: unicast and not all zeros.
pub fn check_mac(mac: MacAddr) -> Result<(), IpamError> {
    if mac.0[0] & 1 == 1 || mac.0 == [0; 6] {
        return Err(IpamError::Invalid(format!(
            "'{mac}' is not a valid unicast MAC address"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn defaults_are_neutrons() {
        let c = net("10.0.0.0/24");
        let g = default_gateway(c);
        assert_eq!(g, Some(ip("10.0.0.1")));
        assert_eq!(
            default_pools(c, g),
            vec![Pool {
                start: ip("10.0.0.2"),
                end: ip("10.0.0.254")
            }]
        );
        // A gateway in the middle splits the pool; none leaves it whole.
        let mid = default_pools(c, Some(ip("10.0.0.100")));
        assert_eq!(mid.len(), 2);
        assert_eq!(mid[0].end, ip("10.0.0.99"));
        assert_eq!(mid[1].start, ip("10.0.0.101"));
        assert_eq!(default_pools(c, None)[0].start, ip("10.0.0.1"));
        let v6 = net("fd00::/64");
        assert_eq!(default_gateway(v6), Some(ip("fd00::1")));
        assert_eq!(
            default_pools(v6, default_gateway(v6))[0].end,
            ip("fd00::ffff:ffff:ffff:ffff")
        );
    }

    #[test]
    fn pools_are_checked() {
        let c = net("10.0.0.0/24");
        let p = |a: &str, b: &str| Pool {
            start: ip(a),
            end: ip(b),
        };
        assert!(check_pools(c, Some(ip("10.0.0.1")), &[p("10.0.0.10", "10.0.0.20")]).is_ok());
        assert!(matches!(
            check_pools(c, None, &[p("10.0.0.20", "10.0.0.10")]),
            Err(IpamError::Invalid(_))
        ));
        assert!(matches!(
            check_pools(c, None, &[p("10.0.0.0", "10.0.0.10")]),
            Err(IpamError::Invalid(_))
        ));
        assert!(matches!(
            check_pools(c, None, &[p("10.0.0.250", "10.0.0.255")]),
            Err(IpamError::Invalid(_))
        ));
        assert!(matches!(
            check_pools(
                c,
                None,
                &[p("10.0.0.10", "10.0.0.20"), p("10.0.0.20", "10.0.0.30")]
            ),
            Err(IpamError::Conflict {
                kind: "OverlappingAllocationPools",
                ..
            })
        ));
        assert!(matches!(
            check_pools(c, Some(ip("10.0.0.15")), &[p("10.0.0.10", "10.0.0.20")]),
            Err(IpamError::Conflict {
                kind: "GatewayConflictWithAllocationPools",
                ..
            })
        ));
        assert!(check_gateway(c, ip("10.0.0.255")).is_err());
        assert!(check_gateway(c, ip("10.0.1.1")).is_err());
        assert!(check_gateway(c, ip("10.0.0.254")).is_ok());
    }

    #[test]
    fn requested_addresses_are_checked() {
        let c = net("10.0.0.0/29");
        let g = Some(ip("10.0.0.1"));
        assert!(check_requested(c, g, ip("10.0.0.6")).is_ok());
        for bad in ["10.0.0.0", "10.0.0.7", "10.0.1.2"] {
            assert!(
                matches!(check_requested(c, g, ip(bad)), Err(IpamError::Invalid(_))),
                "{bad}"
            );
        }
        assert!(matches!(
            check_requested(c, g, ip("10.0.0.1")),
            Err(IpamError::Conflict { .. })
        ));
    }

    #[test]
    fn allocation_takes_the_lowest_free_and_ends() {
        let c = net("10.0.0.0/29");
        let g = default_gateway(c);
        let pools = default_pools(c, g);
        let mut taken = HashSet::new();
        let mut got = Vec::new();
        while let Some(a) = first_free(&pools, g, &taken) {
            taken.insert(a);
            got.push(a);
        }
        assert_eq!(
            got,
            (2..=6)
                .map(|i| ip(&format!("10.0.0.{i}")))
                .collect::<Vec<_>>()
        );
        taken.remove(&ip("10.0.0.4"));
        assert_eq!(first_free(&pools, g, &taken), Some(ip("10.0.0.4")));
    }

    #[test]
    fn macs_are_stable_local_and_stepped() {
        let a = mac_for("3f2a9c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b", 0);
        assert_eq!(a, mac_for("3f2a9c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b", 0));
        assert_eq!(&a.0[..3], &MAC_PREFIX);
        assert_ne!(a, mac_for("3f2a9c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b", 1));
        assert!(check_mac(a).is_ok());
        assert!(check_mac("01:00:5e:00:00:01".parse().unwrap()).is_err());
    }
}
