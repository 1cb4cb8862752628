//! The OpenStack metadata service and the config drive: what a guest is told about itself
//! (its identity, key, user data, admin password, network), served by the host at
//! 169.254.169.254:80 on each network's bridge ([`listener`]) and written, the same bytes,
//! on a `config-2` disk ([`config_drive`]). The guest asking is identified by what the host
//! saw ([`requester`]); the documents are built from plain values ([`documents`]).
//! docs/networking.md, "Metadata service", says why it is built this way.

pub mod config_drive;
pub mod documents;
pub mod listener;
mod neighbours;
pub mod requester;

use crate::compute::servers::{self, Fleet, Server};
use crate::network::NetworkService;
use base64::Engine as _;
use documents::{Instance, Link, LinkAddress};
use requester::{Refused, Seen};
use std::net::IpAddr;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("metadata request refused: {0}")]
    Refused(#[from] Refused),
    #[error("metadata: reading the network records: {0}")]
    Network(#[from] crate::network::NetworkError),
    #[error("metadata: reading the server records: {0}")]
    Storage(#[from] crate::store::StorageError),
    #[error("metadata: reading the availability zones: {0}")]
    Zones(String),
    #[error(transparent)]
    ConfigDrive(#[from] config_drive::ConfigDriveError),
}

/// Writes `server`'s config drive at `path` (see [`config_drive`]).
pub fn write_config_drive(
    fleet: &Fleet,
    server: &Server,
    path: &std::path::Path,
) -> Result<(), MetadataError> {
    let links = match fleet.network() {
        Some(agent) => agent
            .service()
            .device_links(&server.id, &server.project_id)?,
        None => Vec::new(),
    };
    let zones = fleet
        .host_zones()
        .map_err(|e| MetadataError::Zones(e.to_string()))?;
    let instance = instance(server, servers::availability_zone(server, &zones), links);
    config_drive::write(&instance, path)?;
    Ok(())
}

/// Answers for the guests of this box: reads the records through the compute and network
/// doors.
pub struct MetadataService {
    fleet: Arc<Fleet>,
    network: Arc<NetworkService>,
}

impl MetadataService {
    pub fn new(fleet: Arc<Fleet>, network: Arc<NetworkService>) -> MetadataService {
        MetadataService { fleet, network }
    }

    /// The documents of the guest behind a connection from `ip` on `network`'s bridge.
    /// Blocking (it reads the stores and the neighbour table).
    pub fn instance_for(&self, network: &str, ip: IpAddr) -> Result<Instance, MetadataError> {
        let bridge = outpost_netdev::bridge_name(network);
        let mac = match ip {
            IpAddr::V4(v4) => neighbours::lookup(&bridge, v4),
            // The bridges hold no IPv6 metadata address: no v6 request reaches us.
            IpAddr::V6(_) => None,
        };
        let seen = Seen {
            network: network.to_owned(),
            ip,
            mac,
        };
        let host = self.fleet.host();
        let holder = self.network.port_holding(network, ip)?;
        let port = requester::port(&seen, holder.as_ref(), host)?;
        let record = self.fleet.servers().server(&port.device_id)?;
        let server = requester::server(port, record.as_ref(), host)?;
        let zones = self
            .fleet
            .host_zones()
            .map_err(|e| MetadataError::Zones(e.to_string()))?;
        let links = self.network.device_links(&server.id, &server.project_id)?;
        Ok(instance(
            server,
            servers::availability_zone(server, &zones),
            links,
        ))
    }
}

/// What `server` with its ports (`links`: port, its network's MTU, the network's subnets)
/// is told about itself.
pub fn instance(
    server: &Server,
    zone: &str,
    links: Vec<(
        crate::network::store::Port,
        u32,
        Vec<crate::network::store::Subnet>,
    )>,
) -> Instance {
    let links = links
        .into_iter()
        .map(|(port, mtu, subnets)| Link {
            addresses: port
                .fixed_ips
                .iter()
                .filter_map(|f| {
                    let s = subnets.iter().find(|s| s.id == f.subnet_id)?;
                    Some(LinkAddress {
                        ip: f.ip_address,
                        prefix_len: s.cidr.prefix_len(),
                        gateway: s.gateway_ip,
                        dhcp: s.enable_dhcp,
                        dns: s.dns_nameservers.clone(),
                    })
                })
                .collect(),
            port_id: port.id,
            network_id: port.network_id,
            mac: port.mac_address.to_string(),
            mtu,
        })
        .collect();
    Instance {
        uuid: server.id.clone(),
        seq: server.seq,
        name: server.name.clone(),
        hostname: servers::hostname(&server.name),
        project_id: server.project_id.clone(),
        availability_zone: zone.to_owned(),
        flavor_name: server.flavor.name.clone(),
        key: server.key_name.clone().zip(server.key_data.clone()),
        meta: server.metadata.clone(),
        admin_pass: server.admin_pass.clone(),
        // Checked as base64 at create; Nova hands the guest the decoded bytes.
        user_data: server.user_data.as_deref().and_then(|u| {
            base64::engine::general_purpose::STANDARD
                .decode(u.trim())
                .ok()
        }),
        links,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::store::{FixedIp, Port, Subnet};
    use crate::timestamp::Timestamp;

    fn subnet(id: &str, cidr: &str, gateway: Option<&str>) -> Subnet {
        Subnet {
            id: id.into(),
            network_id: "n1".into(),
            project_id: "p1".into(),
            name: String::new(),
            description: String::new(),
            ip_version: 4,
            cidr: cidr.parse().unwrap(),
            gateway_ip: gateway.map(|g| g.parse().unwrap()),
            enable_dhcp: true,
            dns_nameservers: vec!["192.0.2.53".parse().unwrap()],
            allocation_pools: Vec::new(),
            host_routes: Vec::new(),
            ipv6_address_mode: None,
            ipv6_ra_mode: None,
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            revision_number: 1,
        }
    }

    #[test]
    fn the_guest_is_told_what_its_records_hold() {
        let mut s = crate::compute::servers::store::conformance::server("s1", "p1", 0);
        s.name = "Web 1".into();
        s.seq = 7;
        s.user_data = Some("aGVsbG8K".into());
        s.admin_pass = Some("pw".into());
        let port = Port {
            id: "port1".into(),
            network_id: "n1".into(),
            project_id: "p1".into(),
            name: String::new(),
            description: String::new(),
            mac_address: "fa:16:3e:00:00:01".parse().unwrap(),
            admin_state_up: true,
            device_id: "s1".into(),
            device_owner: "compute:nova".into(),
            host_id: "box1".into(),
            port_security_enabled: true,
            allowed_address_pairs: Vec::new(),
            auto_delete: true,
            fixed_ips: vec![FixedIp {
                subnet_id: "sub1".into(),
                ip_address: "10.0.0.5".parse().unwrap(),
            }],
            security_groups: Vec::new(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
            revision_number: 1,
        };
        let subnets = vec![
            subnet("other", "10.9.0.0/16", None),
            subnet("sub1", "10.0.0.0/24", Some("10.0.0.1")),
        ];
        let i = instance(&s, "edge-1", vec![(port, 1450, subnets)]);
        assert_eq!(i.uuid, "s1");
        assert_eq!(i.seq, 7);
        assert_eq!(i.hostname, "web-1");
        assert_eq!(i.availability_zone, "edge-1");
        assert_eq!(
            i.key,
            Some((s.key_name.clone().unwrap(), s.key_data.clone().unwrap()))
        );
        assert_eq!(i.user_data.as_deref(), Some(&b"hello\n"[..]));
        assert_eq!(i.admin_pass.as_deref(), Some("pw"));
        assert_eq!(i.meta, s.metadata);
        let link = &i.links[0];
        assert_eq!((link.mac.as_str(), link.mtu), ("fa:16:3e:00:00:01", 1450));
        let a = &link.addresses[0];
        assert_eq!(a.ip.to_string(), "10.0.0.5");
        assert_eq!(a.prefix_len, 24);
        assert_eq!(
            a.gateway.map(|g| g.to_string()).as_deref(),
            Some("10.0.0.1")
        );
        assert_eq!(a.dns.len(), 1);
    }
}
