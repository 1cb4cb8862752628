//! The box's desired host network state, read from the database: every network with its
//! subnets, DHCP port and the ports that carry a device (`device_owner` `compute:*`), and
//! every security group those ports use, with its rules and its members' addresses.
//!
//! On a member of a site ([`SiteView`]) the ports are this box's only (those whose server
//! it runs), and each network with one of them gets its VXLAN to the boxes that run the
//! network's other ports (docs/cluster.md, "Networks across boxes"). Security groups'
//! members stay every box's ports: a remote group holds wherever its members run.

use super::rules::to_spec;
use super::store::{NetworkStore, NetworkTx, Port};
use super::{NetworkError, DHCP_OWNER};
use outpost_netdev::{
    DhcpPortSpec, HostNetworkSpec, NetworkSpec, OverlaySpec, PortSpec, SecurityGroupSpec,
    SubnetSpec,
};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

/// What a member of a site knows beyond Neutron's records: which box runs each server, and
/// where the boxes are on the underlay.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteView {
    /// This box's name in the site.
    pub me: String,
    /// This box's underlay address: its tunnels' source.
    pub local: IpAddr,
    /// Every member's underlay address, by box name.
    pub underlays: BTreeMap<String, IpAddr>,
    /// The box that runs each server (its `host`), by server id.
    pub owners: HashMap<String, String>,
    /// The largest MTU a guest frame may have inside VXLAN: the underlay's less 50 bytes
    /// (RFC 7348 §4: outer Ethernet 14, IPv4 20, UDP 8, VXLAN 8). Networks asking for more
    /// get this.
    pub mtu: u32,
}

/// Builds the spec in one read (one consistent snapshot). `nat` is `[network] nat`.
pub fn host_spec(store: &dyn NetworkStore, nat: bool) -> Result<HostNetworkSpec, NetworkError> {
    site_host_spec(store, nat, None)
}

/// [`host_spec`] for a box that is a member of a site when `site` is given.
pub fn site_host_spec(
    store: &dyn NetworkStore,
    nat: bool,
    site: Option<&SiteView>,
) -> Result<HostNetworkSpec, NetworkError> {
    let mut spec = None;
    store.read_networks(&mut |c| {
        spec = Some(build(c, nat, site)?);
        Ok(())
    })?;
    spec.ok_or_else(|| NetworkError::Internal("the network store ran no read".into()))
}

/// Where a port's device runs: here, on another box (at its underlay address), or nowhere
/// known yet (a server not recorded, or a box not in the site).
enum Runs {
    Here,
    There(IpAddr),
    Unknown,
}

fn runs(p: &Port, site: Option<&SiteView>) -> Runs {
    let Some(site) = site else {
        return Runs::Here;
    };
    match site.owners.get(&p.device_id) {
        Some(owner) if *owner == site.me => Runs::Here,
        Some(owner) => match site.underlays.get(owner) {
            Some(addr) => Runs::There(*addr),
            None => Runs::Unknown,
        },
        None => Runs::Unknown,
    }
}

fn build(
    c: &dyn NetworkTx,
    nat: bool,
    site: Option<&SiteView>,
) -> Result<HostNetworkSpec, NetworkError> {
    let networks = c.list_networks()?;
    let subnets = c.list_subnets(None)?;
    let ports = c.list_ports()?;
    let groups = c.list_groups()?;
    let rules = c.list_rules(None)?;
    let vnis: HashMap<String, u32> = c.network_vnis()?.into_iter().collect();

    let is_guest = |p: &Port| p.device_owner.starts_with("compute:");
    let mut spec = HostNetworkSpec::default();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for n in &networks {
        let on_net = |p: &&Port| p.network_id == n.id;
        let mine = |p: &&Port| on_net(p) && (!is_guest(p) || matches!(runs(p, site), Runs::Here));
        let dhcp = ports
            .iter()
            .filter(mine)
            .find(|p| p.device_owner == DHCP_OWNER)
            .map(|p| DhcpPortSpec {
                port_id: p.id.clone(),
                mac: p.mac_address,
                ips: p.fixed_ips.iter().map(|f| f.ip_address).collect(),
            });
        let guest_ports: Vec<PortSpec> = ports
            .iter()
            .filter(mine)
            .filter(|p| is_guest(p))
            .map(|p| {
                if p.port_security_enabled {
                    used.extend(p.security_groups.iter().map(String::as_str));
                }
                PortSpec {
                    id: p.id.clone(),
                    mac: p.mac_address,
                    ips: p.fixed_ips.iter().map(|f| f.ip_address).collect(),
                    allowed_address_pairs: p
                        .allowed_address_pairs
                        .iter()
                        .map(|a| a.ip_address)
                        .collect(),
                    security_groups: if p.port_security_enabled {
                        p.security_groups.clone()
                    } else {
                        Vec::new()
                    },
                    port_security: p.port_security_enabled,
                }
            })
            .collect();
        spec.networks.push(NetworkSpec {
            id: n.id.clone(),
            mtu: site.map_or(n.mtu, |s| n.mtu.min(s.mtu)),
            subnets: subnets
                .iter()
                .filter(|s| s.network_id == n.id)
                .map(|s| SubnetSpec {
                    id: s.id.clone(),
                    cidr: s.cidr,
                    gateway: s.gateway_ip,
                    dns_nameservers: s.dns_nameservers.clone(),
                    enable_dhcp: s.enable_dhcp,
                })
                .collect(),
            dhcp,
            overlay: site.and_then(|site| {
                overlay(site, n.id.as_str(), &ports, &vnis, !guest_ports.is_empty())
            }),
            ports: guest_ports,
            nat,
        });
    }
    // Groups named as remote_group_id by a used group's rules matter too: their members
    // are the rule's sources.
    let remote: Vec<&str> = rules
        .iter()
        .filter(|r| used.contains(r.security_group_id.as_str()))
        .filter_map(|r| r.remote_group_id.as_deref())
        .collect();
    used.extend(remote);
    for g in groups.iter().filter(|g| used.contains(g.id.as_str())) {
        let members = ports
            .iter()
            .filter(|p| p.port_security_enabled && p.security_groups.contains(&g.id))
            .flat_map(|p| p.fixed_ips.iter().map(|f| f.ip_address))
            .collect();
        spec.security_groups.push(SecurityGroupSpec {
            id: g.id.clone(),
            rules: rules
                .iter()
                .filter(|r| r.security_group_id == g.id)
                .map(to_spec)
                .collect(),
            members,
        });
    }
    Ok(spec)
}

/// The VXLAN of network `id` on this box: only when the box has a port on it (`local_ports`),
/// to the boxes that run its other ports.
fn overlay(
    site: &SiteView,
    id: &str,
    ports: &[Port],
    vnis: &HashMap<String, u32>,
    local_ports: bool,
) -> Option<OverlaySpec> {
    let vni = *vnis.get(id)?;
    if !local_ports {
        return None;
    }
    let mut peers = BTreeSet::new();
    let mut remote_ports = Vec::new();
    for p in ports
        .iter()
        .filter(|p| p.network_id == id && p.device_owner.starts_with("compute:"))
    {
        if let Runs::There(addr) = runs(p, Some(site)) {
            peers.insert(addr);
            remote_ports.push((p.mac_address, addr));
        }
    }
    Some(OverlaySpec {
        vni,
        local: site.local,
        peers: peers.into_iter().collect(),
        remote_ports,
    })
}
