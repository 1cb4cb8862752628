//! Subnets: CIDR, gateway and pools (Neutron's defaults), name servers, host routes, and
//! the DHCP port Neutron keeps on a network while it has a DHCP-enabled subnet.

use super::ipam;
use super::networks::{double, owned_network, parse_ip, visible};
use super::ports::{allocate, DhcpPortPlan};
use super::store::{HostRoute, Network, NetworkTx, Pool, Subnet};
use super::{check_text, new_id, owner, NetworkError, NetworkService, DHCP_OWNER};
use crate::context::RequestContext;
use crate::timestamp::Timestamp;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::IpAddr;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolRequest {
    pub start: String,
    pub end: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRouteRequest {
    pub destination: String,
    pub nexthop: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubnet {
    pub network_id: String,
    pub ip_version: Option<serde_json::Value>,
    pub cidr: Option<String>,
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "double")]
    pub gateway_ip: Option<Option<String>>,
    pub allocation_pools: Option<Vec<PoolRequest>>,
    pub dns_nameservers: Option<Vec<String>>,
    pub host_routes: Option<Vec<HostRouteRequest>>,
    pub enable_dhcp: Option<bool>,
    #[serde(default, deserialize_with = "double")]
    pub ipv6_address_mode: Option<Option<String>>,
    #[serde(default, deserialize_with = "double")]
    pub ipv6_ra_mode: Option<Option<String>>,
    /// Subnet pools are not kept: only null is accepted.
    #[serde(default, deserialize_with = "double")]
    pub subnetpool_id: Option<Option<String>>,
    pub service_types: Option<Vec<String>>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    #[serde(default, deserialize_with = "double")]
    pub gateway_ip: Option<Option<String>>,
    pub allocation_pools: Option<Vec<PoolRequest>>,
    pub dns_nameservers: Option<Vec<String>>,
    pub host_routes: Option<Vec<HostRouteRequest>>,
    pub enable_dhcp: Option<bool>,
}

fn find_subnet(c: &dyn NetworkTx, ctx: &RequestContext, id: &str) -> Result<Subnet, NetworkError> {
    let s = c
        .get_subnet(id)?
        .ok_or_else(|| NetworkError::not_found("Subnet", id))?;
    let net = c.get_network(&s.network_id)?;
    if ctx.can_see(&s.project_id) || net.is_some_and(|n| visible(ctx, &n)) {
        Ok(s)
    } else {
        Err(NetworkError::not_found("Subnet", id))
    }
}

impl NetworkService {
    pub fn create_subnet(
        &self,
        ctx: &RequestContext,
        req: NewSubnet,
    ) -> Result<Subnet, NetworkError> {
        let version = match &req.ip_version {
            Some(v) if v.as_i64() == Some(4) || v.as_str() == Some("4") => 4u8,
            Some(v) if v.as_i64() == Some(6) || v.as_str() == Some("6") => 6u8,
            Some(v) => {
                return Err(NetworkError::invalid(format!(
                    "Invalid input for ip_version. Reason: {v} is not in [4, 6]."
                )))
            }
            None => return Err(NetworkError::invalid("ip_version is required")),
        };
        if req.subnetpool_id.flatten().is_some() {
            return Err(NetworkError::invalid("subnet pools are not supported"));
        }
        if req.service_types.as_ref().is_some_and(|t| !t.is_empty()) {
            return Err(NetworkError::invalid("service_types are not supported"));
        }
        let cidr_text = req
            .cidr
            .as_deref()
            .ok_or_else(|| NetworkError::invalid("cidr is required (subnet pools are not kept)"))?;
        let cidr: IpNet = cidr_text.trim().parse().map_err(|_| {
            NetworkError::invalid(format!("'{cidr_text}' is not a valid IP subnet"))
        })?;
        if cidr.trunc() != cidr {
            return Err(NetworkError::invalid(format!(
                "'{cidr_text}' isn't a recommended CIDR, '{}' is recommended",
                cidr.trunc()
            )));
        }
        if (version == 6) != cidr.addr().is_ipv6() {
            return Err(NetworkError::invalid(format!(
                "Cidr {cidr} does not match the IP version {version}"
            )));
        }
        let max_prefix = if version == 4 { 30 } else { 126 };
        if cidr.prefix_len() > max_prefix {
            return Err(NetworkError::invalid(format!(
                "Subnet {cidr} is too small: the longest prefix accepted is /{max_prefix}"
            )));
        }
        let gateway_ip = match req.gateway_ip {
            None => ipam::default_gateway(cidr),
            Some(None) => None,
            Some(Some(g)) => {
                let g = parse_ip("gateway_ip", &g)?;
                ipam::check_gateway(cidr, g)?;
                Some(g)
            }
        };
        let allocation_pools = match req.allocation_pools {
            None => ipam::default_pools(cidr, gateway_ip),
            Some(pools) => parse_pools(&pools)?,
        };
        ipam::check_pools(cidr, gateway_ip, &allocation_pools)?;
        let dns_nameservers = parse_dns(req.dns_nameservers.as_deref().unwrap_or(&[]))?;
        let host_routes = parse_routes(req.host_routes.as_deref().unwrap_or(&[]))?;
        let mode = |m: Option<Option<String>>,
                    field: &str|
         -> Result<Option<String>, NetworkError> {
            match m.flatten().as_deref() {
                None => Ok(None),
                Some(_) if version == 4 => Err(NetworkError::invalid(format!(
                    "{field} is not valid for IPv4 subnets"
                ))),
                Some(v @ ("dhcpv6-stateful" | "dhcpv6-stateless" | "slaac")) => Ok(Some(v.into())),
                Some(v) => Err(NetworkError::invalid(format!(
                    "Invalid input for {field}. Reason: '{v}' is not in ['dhcpv6-stateful', \
                     'dhcpv6-stateless', 'slaac']."
                ))),
            }
        };
        let ipv6_address_mode = mode(req.ipv6_address_mode, "ipv6_address_mode")?;
        let ipv6_ra_mode = mode(req.ipv6_ra_mode, "ipv6_ra_mode")?;
        let name = req.name.unwrap_or_default();
        let description = req.description.unwrap_or_default();
        check_text("name", &name)?;
        check_text("description", &description)?;
        let requested_owner = owner(ctx, req.project_id.as_deref(), req.tenant_id.as_deref())?;
        let id = new_id()?;
        // A subnet belongs to its network's project unless an admin says otherwise (a
        // network's project never changes, so it is read once, for its quota).
        let project_id = if ctx.is_admin() {
            requested_owner
        } else {
            self.read(|c| Ok(owned_network(c, ctx, &req.network_id)?.project_id))?
        };
        let limit = self.quota(&project_id, "subnet")?;
        self.change(|tx| {
            let net = owned_network(tx, ctx, &req.network_id)?;
            let held = tx.list_subnets(None)?;
            super::within_quota(
                "subnet",
                limit,
                held.iter().filter(|o| o.project_id == project_id).count(),
            )?;
            for other in tx.list_subnets(Some(&net.id))? {
                if other.cidr.contains(&cidr.network()) || cidr.contains(&other.cidr.network()) {
                    return Err(NetworkError::invalid(format!(
                        "Requested subnet with cidr: {cidr} for network: {} overlaps with \
                         another subnet",
                        net.id
                    )));
                }
            }
            let now = Timestamp::now();
            let s = Subnet {
                id: id.clone(),
                network_id: net.id.clone(),
                project_id: project_id.clone(),
                name: name.clone(),
                description: description.clone(),
                ip_version: version,
                cidr,
                gateway_ip,
                enable_dhcp: req.enable_dhcp.unwrap_or(true),
                dns_nameservers: dns_nameservers.clone(),
                allocation_pools: allocation_pools.clone(),
                host_routes: host_routes.clone(),
                ipv6_address_mode: ipv6_address_mode.clone(),
                ipv6_ra_mode: ipv6_ra_mode.clone(),
                created_at: now,
                updated_at: now,
                revision_number: 1,
            };
            tx.insert_subnet(&s)?;
            sync_dhcp_port(tx, &net)?;
            Ok(s)
        })
    }

    pub fn get_subnet(&self, ctx: &RequestContext, id: &str) -> Result<Subnet, NetworkError> {
        self.read(|c| find_subnet(c, ctx, id))
    }

    pub fn list_subnets(&self, ctx: &RequestContext) -> Result<Vec<Subnet>, NetworkError> {
        self.read(|c| {
            let nets = c.list_networks()?;
            Ok(c.list_subnets(None)?
                .into_iter()
                .filter(|s| {
                    ctx.can_see(&s.project_id)
                        || nets.iter().any(|n| n.id == s.network_id && visible(ctx, n))
                })
                .collect())
        })
    }

    pub fn update_subnet(
        &self,
        ctx: &RequestContext,
        id: &str,
        req: SubnetUpdate,
    ) -> Result<Subnet, NetworkError> {
        self.change(|tx| {
            let mut s = find_subnet(tx, ctx, id)?;
            let net = owned_network(tx, ctx, &s.network_id)?;
            if let Some(v) = req.name.clone() {
                check_text("name", &v)?;
                s.name = v;
            }
            if let Some(v) = req.description.clone() {
                check_text("description", &v)?;
                s.description = v;
            }
            if let Some(g) = req.gateway_ip.clone() {
                s.gateway_ip = g.map(|g| parse_ip("gateway_ip", &g)).transpose()?;
                if let Some(g) = s.gateway_ip {
                    ipam::check_gateway(s.cidr, g)?;
                    if tx.ip_holder(&s.network_id, g)?.is_some() {
                        return Err(NetworkError::conflict(
                            "IpAddressInUse",
                            format!("Unable to complete operation for network {}. The IP address {g} is in use.", s.network_id),
                        ));
                    }
                }
            }
            if let Some(p) = req.allocation_pools.clone() {
                s.allocation_pools = parse_pools(&p)?;
            }
            ipam::check_pools(s.cidr, s.gateway_ip, &s.allocation_pools)?;
            if let Some(d) = req.dns_nameservers.clone() {
                s.dns_nameservers = parse_dns(&d)?;
            }
            if let Some(r) = req.host_routes.clone() {
                s.host_routes = parse_routes(&r)?;
            }
            if let Some(v) = req.enable_dhcp {
                s.enable_dhcp = v;
            }
            tx.update_subnet(&s)?;
            sync_dhcp_port(tx, &net)?;
            Ok(tx.get_subnet(id)?.unwrap_or(s))
        })
    }

    /// A subnet goes unless a port other than the DHCP port has an address on it.
    pub fn delete_subnet(&self, ctx: &RequestContext, id: &str) -> Result<(), NetworkError> {
        self.change(|tx| {
            let s = find_subnet(tx, ctx, id)?;
            let net = owned_network(tx, ctx, &s.network_id)?;
            let ports = tx.list_ports()?;
            let users: Vec<_> = ports
                .iter()
                .filter(|p| p.fixed_ips.iter().any(|ip| ip.subnet_id == id))
                .collect();
            if users.iter().any(|p| p.device_owner != DHCP_OWNER) {
                return Err(NetworkError::conflict(
                    "SubnetInUse",
                    format!(
                        "Unable to complete operation on subnet {id}: One or more ports have \
                         an IP allocation from this subnet."
                    ),
                ));
            }
            for p in users {
                let mut p = p.clone();
                p.fixed_ips.retain(|ip| ip.subnet_id != id);
                tx.update_port(&p)?;
            }
            tx.delete_subnet(id)?;
            sync_dhcp_port(tx, &net)
        })
    }
}

fn parse_pools(pools: &[PoolRequest]) -> Result<Vec<Pool>, NetworkError> {
    pools
        .iter()
        .map(|p| {
            Ok(Pool {
                start: parse_ip("allocation_pools", &p.start)?,
                end: parse_ip("allocation_pools", &p.end)?,
            })
        })
        .collect()
}

/// Neutron's limit on name servers per subnet.
const MAX_DNS_NAMESERVERS: usize = 5;

fn parse_dns(list: &[String]) -> Result<Vec<IpAddr>, NetworkError> {
    if list.len() > MAX_DNS_NAMESERVERS {
        return Err(NetworkError::BadRequest {
            kind: "DNSNameServersExhausted",
            message: format!(
                "Unable to complete operation for the subnet. The number of DNS nameservers \
                 exceeds the limit {MAX_DNS_NAMESERVERS}."
            ),
        });
    }
    let mut out: Vec<IpAddr> = Vec::new();
    for s in list {
        let ip = parse_ip("dns_nameservers", s)?;
        if out.contains(&ip) {
            return Err(NetworkError::invalid(format!("Duplicate nameserver '{s}'")));
        }
        out.push(ip);
    }
    Ok(out)
}

fn parse_routes(list: &[HostRouteRequest]) -> Result<Vec<HostRoute>, NetworkError> {
    list.iter()
        .map(|r| {
            let destination: IpNet = r.destination.parse().map_err(|_| {
                NetworkError::invalid(format!(
                    "'{}' is not a valid IP subnet for host_routes",
                    r.destination
                ))
            })?;
            Ok(HostRoute {
                destination,
                nexthop: parse_ip("host_routes", &r.nexthop)?,
            })
        })
        .collect()
}

/// Makes the network's DHCP port match its subnets: absent when no subnet has DHCP, else
/// one port with an address on every DHCP-enabled subnet (kept across changes).
pub(super) fn sync_dhcp_port(tx: &dyn NetworkTx, net: &Network) -> Result<(), NetworkError> {
    let dhcp_subnets: Vec<Subnet> = tx
        .list_subnets(Some(&net.id))?
        .into_iter()
        .filter(|s| s.enable_dhcp)
        .collect();
    let existing = tx
        .list_ports()?
        .into_iter()
        .find(|p| p.network_id == net.id && p.device_owner == DHCP_OWNER);
    match (existing, dhcp_subnets.is_empty()) {
        (None, true) => Ok(()),
        (Some(p), true) => Ok(tx.delete_port(&p.id)?),
        (existing, false) => {
            let mut port = match existing {
                Some(p) => p,
                None => DhcpPortPlan::new(tx, net)?,
            };
            port.fixed_ips
                .retain(|ip| dhcp_subnets.iter().any(|s| s.id == ip.subnet_id));
            for s in &dhcp_subnets {
                if !port.fixed_ips.iter().any(|ip| ip.subnet_id == s.id) {
                    let ip = allocate(tx, s, &port.id, &port.fixed_ips)?;
                    port.fixed_ips.push(ip);
                }
            }
            if tx.get_port(&port.id)?.is_some() {
                tx.update_port(&port)?;
            } else {
                tx.insert_port(&port)?;
            }
            Ok(())
        }
    }
}
