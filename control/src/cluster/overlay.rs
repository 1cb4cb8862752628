//! Guest networks across the boxes of a site (docs/cluster.md, "Networks across boxes"): what
//! this box's host agent reads beyond Neutron's records (which box runs each server, where
//! each box is on the underlay), and the watches that bring the records' changes made
//! through other boxes to the agent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::etcd::Etcd;
use super::keys::{self, Keyspace};
use super::store::EtcdDoors;
use super::watch;
use crate::compute::servers::store::ServerStore;
use crate::network::agent::{AgentError, SiteSource};
use crate::network::{NetworkService, SiteView};

/// VXLAN's overhead on an IPv4 underlay (RFC 7348 §4: outer Ethernet 14, IPv4 20, UDP 8,
/// VXLAN 8): a guest frame fits a underlay packet only this much smaller.
pub const VXLAN_OVERHEAD: u32 = 50;

/// The largest guest MTU on an underlay of `underlay_mtu`.
pub fn overlay_mtu(underlay_mtu: u32) -> u32 {
    underlay_mtu.saturating_sub(VXLAN_OVERHEAD)
}

/// This box's [`SiteSource`]: servers through the servers door, boxes from `/boxes/`.
pub struct SiteNetworks {
    pub doors: EtcdDoors,
    pub servers: Arc<dyn ServerStore>,
    /// This box's name and underlay address.
    pub me: String,
    pub local: IpAddr,
    pub mtu: u32,
}

impl SiteSource for SiteNetworks {
    fn view(&self) -> Result<SiteView, AgentError> {
        let failed = |e: crate::store::StorageError| AgentError::Site(e.to_string());
        let underlays = self.doors.underlays().map_err(failed)?;
        let owners: HashMap<String, String> = self
            .servers
            .servers(None)
            .map_err(failed)?
            .into_iter()
            .filter_map(|s| Some((s.id, s.host?)))
            .collect();
        Ok(SiteView {
            me: self.me.clone(),
            local: self.local,
            underlays,
            owners,
            mtu: self.mtu,
        })
    }
}

/// Wakes `network`'s watchers (the host agent) whenever another box changes what this box's
/// host networking is built from: Neutron's records, the servers (whose `host` says which
/// ports are this box's) and the boxes (their underlay addresses). Runs for the life of the
/// runtime.
pub fn follow_site(etcd: Etcd, network: Arc<NetworkService>) {
    let k = Keyspace::default();
    let prefixes = [
        k.networks(),
        k.subnets(),
        k.ports(),
        k.security_groups(),
        k.security_group_rules(),
        k.servers(),
        keys::boxes(),
    ];
    for prefix in prefixes {
        let mut changes = watch::changes(etcd.clone(), prefix);
        let network = network.clone();
        tokio::spawn(async move {
            while changes.changed().await.is_ok() {
                changes.borrow_and_update();
                network.changed_elsewhere();
            }
        });
    }
}
