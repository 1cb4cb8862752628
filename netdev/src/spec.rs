//! The desired state of one box's guest networking, as the control service computes it from
//! its database. Plain data: building it does no I/O, and the same spec applied twice changes
//! nothing the second time.

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Everything on this box: its networks (with their ports) and the security groups those
/// ports use.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostNetworkSpec {
    pub networks: Vec<NetworkSpec>,
    pub security_groups: Vec<SecurityGroupSpec>,
}

/// One Neutron network: a bridge on this box.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkSpec {
    /// Neutron network id (a UUID); the bridge name is derived from it.
    pub id: String,
    pub mtu: u32,
    pub subnets: Vec<SubnetSpec>,
    /// The network's DHCP port (Neutron's `device_owner: network:dhcp`): its MAC and
    /// addresses go on the bridge and dnsmasq answers from them. None: no DHCP here.
    pub dhcp: Option<DhcpPortSpec>,
    /// Guest ports on this box.
    pub ports: Vec<PortSpec>,
    /// Route for the network: subnets' gateway addresses go on the bridge, and IPv4 traffic
    /// from its subnets that leaves the box through another interface is masqueraded.
    pub nat: bool,
    /// The network's VXLAN to the other boxes of a site; None on a box alone, or when no box
    /// has a port on the network.
    #[serde(default)]
    pub overlay: Option<OverlaySpec>,
}

impl NetworkSpec {
    /// Whether the network's bridge holds an IPv4 address of its own (the DHCP port's, or a
    /// gateway the box routes), and so [`METADATA_ADDR`] too: the host can answer its guests.
    pub fn serves_metadata(&self) -> bool {
        let dhcp = self.dhcp.iter().flat_map(|d| &d.ips).any(|a| a.is_ipv4());
        let gateway = self.nat
            && self
                .subnets
                .iter()
                .any(|s| s.gateway.is_some_and(|g| g.is_ipv4()));
        dhcp || gateway
    }
}

/// A network's VXLAN across the boxes of a site (docs/cluster.md, "Networks across boxes"):
/// one device on the network's bridge, without multicast and without learning. Broadcast and
/// unknown traffic is copied to every peer; a remote port's MAC goes to its box only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OverlaySpec {
    /// The VXLAN network identifier (24 bits), the same on every box.
    pub vni: u32,
    /// This box's underlay address: the tunnels' source.
    pub local: IpAddr,
    /// The underlay addresses of the other boxes with a port on the network.
    pub peers: Vec<IpAddr>,
    /// Ports on other boxes: MAC → the underlay address of the box that runs them.
    pub remote_ports: Vec<(MacAddr, IpAddr)>,
}

/// The metadata service's address (Nova's and EC2's link-local one). Every bridge with an
/// IPv4 address holds it too, so a guest reaches it through its gateway on the bridge, or,
/// where the gateway is elsewhere, through the route DHCP gives it to the DHCP port
/// (docs/networking.md, "Metadata service").
pub const METADATA_ADDR: std::net::Ipv4Addr = std::net::Ipv4Addr::new(169, 254, 169, 254);

/// VXLAN's IANA port (RFC 7348 §5).
pub const VXLAN_PORT: u16 = 4789;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubnetSpec {
    pub id: String,
    pub cidr: IpNet,
    pub gateway: Option<IpAddr>,
    pub dns_nameservers: Vec<IpAddr>,
    pub enable_dhcp: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DhcpPortSpec {
    pub port_id: String,
    pub mac: MacAddr,
    pub ips: Vec<IpAddr>,
}

/// A guest's port: a tap the monitor opens by name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortSpec {
    /// Neutron port id; the tap name is derived from it ([`tap_name`]).
    pub id: String,
    pub mac: MacAddr,
    /// Fixed IPs: the only source addresses the port may send from (with port security).
    pub ips: Vec<IpAddr>,
    /// Extra (ip or prefix) a port may also send from: Neutron's allowed_address_pairs.
    #[serde(default)]
    pub allowed_address_pairs: Vec<IpNet>,
    /// Ids of the security groups whose rules apply to the port.
    pub security_groups: Vec<String>,
    /// False: no filtering and no anti-spoofing for this port (Neutron's
    /// `port_security_enabled`).
    pub port_security: bool,
}

/// A security group: its rules and the addresses of its members (for `remote_group_id` in
/// other groups' rules). Members are given, not derived from this box's ports, so that in a
/// cluster they include ports on other boxes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecurityGroupSpec {
    pub id: String,
    pub rules: Vec<RuleSpec>,
    pub members: Vec<IpAddr>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Traffic to the port.
    Ingress,
    /// Traffic from the port.
    Egress,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EtherType {
    IPv4,
    IPv6,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    /// Any other IP protocol by number (Neutron accepts 0-255).
    Number(u8),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Remote {
    Any,
    Prefix(IpNet),
    /// Members of this security group (by id).
    Group(String),
}

/// One Neutron security group rule. `port_range_min`/`max` are ports for tcp/udp and ICMP
/// type/code for icmp/icmpv6, as in Neutron.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleSpec {
    pub id: String,
    pub direction: Direction,
    pub ethertype: EtherType,
    /// None: any protocol.
    pub protocol: Option<Protocol>,
    pub port_range_min: Option<u16>,
    pub port_range_max: Option<u16>,
    pub remote: Remote,
}

/// A MAC address, written `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MacAddr(pub [u8; 6]);

impl std::fmt::Display for MacAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address (aa:bb:cc:dd:ee:ff)")]
pub struct BadMac(pub String);

impl std::str::FromStr for MacAddr {
    type Err = BadMac;
    fn from_str(s: &str) -> Result<MacAddr, BadMac> {
        let bad = || BadMac(s.to_owned());
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(MacAddr(out))
    }
}

impl TryFrom<String> for MacAddr {
    type Error = BadMac;
    fn try_from(s: String) -> Result<MacAddr, BadMac> {
        s.parse()
    }
}

impl From<MacAddr> for String {
    fn from(m: MacAddr) -> String {
        m.to_string()
    }
}

/// Interface names: Linux allows 15 bytes. Prefix + kind letter + the first 12 hex digits of
/// the id (dashes dropped), the same at every start, so a restart finds what it made.
fn interface_name(kind: char, id: &str) -> String {
    let hex: String = id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(15 - crate::NAME_PREFIX.len() - 1)
        .collect();
    format!("{}{kind}{hex}", crate::NAME_PREFIX)
}

/// The bridge of a network.
pub fn bridge_name(network_id: &str) -> String {
    interface_name('b', network_id)
}

/// The VXLAN device of a network (on its bridge).
pub fn vxlan_name(network_id: &str) -> String {
    interface_name('x', network_id)
}

/// The tap of a port: what the control service puts in the monitor's `host_dev_name`.
pub fn tap_name(port_id: &str) -> String {
    interface_name('t', port_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_linux_and_are_stable() {
        let id = "3f2a9c1e-8b7d-4e6f-9a0b-1c2d3e4f5a6b";
        assert_eq!(bridge_name(id), "opb3f2a9c1e8b7d");
        assert_eq!(tap_name(id), "opt3f2a9c1e8b7d");
        assert!(tap_name(id).len() <= 15);
    }

    #[test]
    fn mac_round_trips_and_rejects_junk() {
        let m: MacAddr = "fa:16:3e:00:0a:ff".parse().unwrap();
        assert_eq!(m.to_string(), "fa:16:3e:00:0a:ff");
        for bad in [
            "",
            "fa:16:3e:00:0a",
            "fa:16:3e:00:0a:ff:00",
            "zz:16:3e:00:0a:ff",
            "f:16:3e:00:0a:ff",
        ] {
            assert!(bad.parse::<MacAddr>().is_err(), "{bad}");
        }
    }
}
