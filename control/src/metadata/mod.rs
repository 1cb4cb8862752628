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
