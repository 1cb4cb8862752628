//! The box's desired host network state, read from the database: every network with its
//! subnets, DHCP port and the ports that carry a device (`device_owner` `compute:*`), and
//! every security group those ports use, with its rules and its members' addresses.

use super::rules::to_spec;
use super::store::{NetworkStore, NetworkTx, Port};
use super::{NetworkError, DHCP_OWNER};
use outpost_netdev::{
    DhcpPortSpec, HostNetworkSpec, NetworkSpec, PortSpec, SecurityGroupSpec, SubnetSpec,
};
use std::collections::BTreeSet;

/// Builds the spec in one read (one consistent snapshot). `nat` is `[network] nat`.
pub fn host_spec(store: &dyn NetworkStore, nat: bool) -> Result<HostNetworkSpec, NetworkError> {
    let mut spec = None;
    store.read_networks(&mut |c| {
        spec = Some(build(c, nat)?);
        Ok(())
    })?;
    spec.ok_or_else(|| NetworkError::Internal("the network store ran no read".into()))
}

fn build(c: &dyn NetworkTx, nat: bool) -> Result<HostNetworkSpec, NetworkError> {
    let networks = c.list_networks()?;
    let subnets = c.list_subnets(None)?;
    let ports = c.list_ports()?;
    let groups = c.list_groups()?;
    let rules = c.list_rules(None)?;

    let is_guest = |p: &Port| p.device_owner.starts_with("compute:");
    let mut spec = HostNetworkSpec::default();
    let mut used: BTreeSet<&str> = BTreeSet::new();
    for n in &networks {
        let mine = |p: &&Port| p.network_id == n.id;
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
            mtu: n.mtu,
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
