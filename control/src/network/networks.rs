//! Networks: create, show, list, update, and delete with their subnets and DHCP port.

use super::store::{Network, NetworkTx};
use super::{check_text, new_id, owner, NetworkError, NetworkService, DHCP_OWNER};
use crate::context::RequestContext;
use crate::timestamp::Timestamp;
use serde::{Deserialize, Deserializer};
use std::net::IpAddr;

/// `Some(None)` for an explicit JSON null, `None` when absent.
pub(super) fn double<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewNetwork {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub shared: Option<bool>,
    pub mtu: Option<u32>,
    pub port_security_enabled: Option<bool>,
    #[serde(rename = "router:external")]
    pub router_external: Option<bool>,
    pub availability_zone_hints: Option<Vec<String>>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub shared: Option<bool>,
    pub mtu: Option<u32>,
    pub port_security_enabled: Option<bool>,
    #[serde(rename = "router:external")]
    pub router_external: Option<bool>,
}

/// Whether the caller may see network `n` (its project's, shared, or admin).
pub(super) fn visible(ctx: &RequestContext, n: &Network) -> bool {
    n.shared || ctx.can_see(&n.project_id)
}

/// The network if the caller may see it; 404 otherwise (so clients fall back to names).
pub(super) fn find_network(
    c: &dyn NetworkTx,
    ctx: &RequestContext,
    id: &str,
) -> Result<Network, NetworkError> {
    c.get_network(id)?
        .filter(|n| visible(ctx, n))
        .ok_or_else(|| NetworkError::not_found("Network", id))
}

/// The network if the caller owns it (or is admin): 404 when invisible, 403 when only shared.
pub(super) fn owned_network(
    c: &dyn NetworkTx,
    ctx: &RequestContext,
    id: &str,
) -> Result<Network, NetworkError> {
    let n = find_network(c, ctx, id)?;
    if !ctx.can_see(&n.project_id) {
        return Err(NetworkError::Forbidden(format!(
            "Only the owner of network {id} may change it."
        )));
    }
    Ok(n)
}

fn check_mtu(mtu: u32) -> Result<(), NetworkError> {
    // 68: the IPv4 minimum (RFC 791); 9000: jumbo frames, the most a bridge here carries.
    if !(68..=9000).contains(&mtu) {
        return Err(NetworkError::invalid(format!(
            "Requested MTU {mtu} is not between 68 and 9000"
        )));
    }
    Ok(())
}

fn check_shared(ctx: &RequestContext, shared: Option<bool>) -> Result<(), NetworkError> {
    if shared == Some(true) && !ctx.is_admin() {
        return Err(NetworkError::Forbidden(
            "(rule:create_network and rule:create_network:shared) is disallowed by policy".into(),
        ));
    }
    Ok(())
}

fn check_external(v: Option<bool>) -> Result<(), NetworkError> {
    if v == Some(true) {
        return Err(NetworkError::invalid(
            "external networks (router:external true) are not supported by this appliance",
        ));
    }
    Ok(())
}

pub(super) fn parse_ip(field: &str, s: &str) -> Result<IpAddr, NetworkError> {
    s.trim()
        .parse()
        .map_err(|_| NetworkError::invalid(format!("'{s}' is not a valid IP address for {field}")))
}

impl NetworkService {
    pub fn create_network(
        &self,
        ctx: &RequestContext,
        req: NewNetwork,
    ) -> Result<Network, NetworkError> {
        let project_id = owner(ctx, req.project_id.as_deref(), req.tenant_id.as_deref())?;
        check_shared(ctx, req.shared)?;
        check_external(req.router_external)?;
        let mtu = req.mtu.unwrap_or(self.settings.mtu);
        check_mtu(mtu)?;
        let name = req.name.unwrap_or_default();
        let description = req.description.unwrap_or_default();
        check_text("name", &name)?;
        check_text("description", &description)?;
        let now = Timestamp::now();
        let n = Network {
            id: new_id()?,
            project_id,
            name,
            description,
            admin_state_up: req.admin_state_up.unwrap_or(true),
            shared: req.shared.unwrap_or(false),
            mtu,
            port_security_enabled: req.port_security_enabled.unwrap_or(true),
            created_at: now,
            updated_at: now,
            revision_number: 1,
        };
        let limit = self.quota(&n.project_id, "network")?;
        self.change(|tx| {
            let held = tx.list_networks()?;
            super::within_quota(
                "network",
                limit,
                held.iter().filter(|o| o.project_id == n.project_id).count(),
            )?;
            tx.insert_network(&n)?;
            super::groups::ensure_default(tx, &n.project_id)?;
            Ok(())
        })?;
        Ok(n)
    }

    pub fn get_network(&self, ctx: &RequestContext, id: &str) -> Result<Network, NetworkError> {
        self.read(|c| find_network(c, ctx, id))
    }

    /// The networks the caller may see, with their subnets' ids.
    pub fn list_networks(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<(Network, Vec<String>)>, NetworkError> {
        self.read(|c| {
            let subnets = c.list_subnets(None)?;
            Ok(c.list_networks()?
                .into_iter()
                .filter(|n| visible(ctx, n))
                .map(|n| {
                    let ids = subnets
                        .iter()
                        .filter(|s| s.network_id == n.id)
                        .map(|s| s.id.clone())
                        .collect();
                    (n, ids)
                })
                .collect())
        })
    }

    /// The ids of a network's subnets.
    pub fn subnet_ids(&self, network_id: &str) -> Result<Vec<String>, NetworkError> {
        self.read(|c| {
            Ok(c.list_subnets(Some(network_id))?
                .into_iter()
                .map(|s| s.id)
                .collect())
        })
    }

    pub fn update_network(
        &self,
        ctx: &RequestContext,
        id: &str,
        req: NetworkUpdate,
    ) -> Result<Network, NetworkError> {
        check_shared(ctx, req.shared)?;
        check_external(req.router_external)?;
        self.change(|tx| {
            let mut n = owned_network(tx, ctx, id)?;
            if let Some(v) = req.name.clone() {
                check_text("name", &v)?;
                n.name = v;
            }
            if let Some(v) = req.description.clone() {
                check_text("description", &v)?;
                n.description = v;
            }
            if let Some(v) = req.admin_state_up {
                n.admin_state_up = v;
            }
            if let Some(v) = req.shared {
                n.shared = v;
            }
            if let Some(v) = req.mtu {
                check_mtu(v)?;
                n.mtu = v;
            }
            if let Some(v) = req.port_security_enabled {
                n.port_security_enabled = v;
            }
            tx.update_network(&n)?;
            Ok(tx.get_network(id)?.unwrap_or(n))
        })
    }

    /// Neutron's rule: a network goes (with its subnets and DHCP port) unless a port other
    /// than its DHCP port is on it.
    pub fn delete_network(&self, ctx: &RequestContext, id: &str) -> Result<(), NetworkError> {
        self.change(|tx| {
            owned_network(tx, ctx, id)?;
            let ports: Vec<_> = tx
                .list_ports()?
                .into_iter()
                .filter(|p| p.network_id == id)
                .collect();
            if ports.iter().any(|p| p.device_owner != DHCP_OWNER) {
                return Err(NetworkError::conflict(
                    "NetworkInUse",
                    format!(
                        "Unable to complete operation on network {id}. There are one or more \
                         ports still in use on the network."
                    ),
                ));
            }
            for p in ports {
                tx.delete_port(&p.id)?;
            }
            for s in tx.list_subnets(Some(id))? {
                tx.delete_subnet(&s.id)?;
            }
            tx.delete_network(id)?;
            Ok(())
        })
    }
}
