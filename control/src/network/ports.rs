//! Ports: their addresses (IPAM inside the write transaction, so concurrent creates never
//! share one), MACs, security groups and binding; and the calls the compute side makes when
//! a server comes and goes.

use super::groups::{ensure_default, find_group};
use super::ipam;
use super::networks::find_network;
use super::store::{AddressPair, FixedIp, Network, NetworkTx, Port, Subnet};
use super::{check_text, new_id, owner, NetworkError, NetworkService, DHCP_OWNER};
use crate::context::RequestContext;
use crate::timestamp::Timestamp;
use ipnet::IpNet;
use outpost_netdev::MacAddr;
use serde::Deserialize;
use std::collections::HashSet;
use std::net::IpAddr;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedIpRequest {
    pub subnet_id: Option<String>,
    pub ip_address: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddressPairRequest {
    pub ip_address: String,
    pub mac_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPort {
    pub network_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub mac_address: Option<String>,
    pub fixed_ips: Option<Vec<FixedIpRequest>>,
    pub security_groups: Option<Vec<String>>,
    pub device_id: Option<String>,
    pub device_owner: Option<String>,
    #[serde(rename = "binding:host_id")]
    pub host_id: Option<String>,
    #[serde(rename = "binding:vnic_type")]
    pub vnic_type: Option<String>,
    #[serde(rename = "binding:profile")]
    pub binding_profile: Option<serde_json::Map<String, serde_json::Value>>,
    pub port_security_enabled: Option<bool>,
    pub allowed_address_pairs: Option<Vec<AddressPairRequest>>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub admin_state_up: Option<bool>,
    pub mac_address: Option<String>,
    pub fixed_ips: Option<Vec<FixedIpRequest>>,
    pub security_groups: Option<Vec<String>>,
    pub device_id: Option<String>,
    pub device_owner: Option<String>,
    #[serde(rename = "binding:host_id")]
    pub host_id: Option<String>,
    #[serde(rename = "binding:vnic_type")]
    pub vnic_type: Option<String>,
    #[serde(rename = "binding:profile")]
    pub binding_profile: Option<serde_json::Map<String, serde_json::Value>>,
    pub port_security_enabled: Option<bool>,
    pub allowed_address_pairs: Option<Vec<AddressPairRequest>>,
}

/// Only the plain kind of port exists here (no SR-IOV, no direct).
fn check_binding(
    vnic: Option<&str>,
    profile: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<(), NetworkError> {
    if vnic.is_some_and(|v| v != "normal") {
        return Err(NetworkError::invalid(
            "binding:vnic_type: only 'normal' is supported",
        ));
    }
    if profile.is_some_and(|p| !p.is_empty()) {
        return Err(NetworkError::invalid("binding:profile is not supported"));
    }
    Ok(())
}

/// A new DHCP port for `net`, not yet stored, without addresses.
pub(super) struct DhcpPortPlan;

impl DhcpPortPlan {
    #[allow(clippy::new_ret_no_self)]
    pub(super) fn new(tx: &dyn NetworkTx, net: &Network) -> Result<Port, NetworkError> {
        let id = new_id()?;
        let now = Timestamp::now();
        Ok(Port {
            mac_address: free_mac(tx, &net.id, &id)?,
            device_id: format!("dhcp-{}", net.id),
            device_owner: DHCP_OWNER.to_owned(),
            id,
            network_id: net.id.clone(),
            project_id: net.project_id.clone(),
            name: String::new(),
            description: String::new(),
            admin_state_up: true,
            host_id: String::new(),
            // Neutron gives the DHCP port no security groups.
            port_security_enabled: false,
            allowed_address_pairs: Vec::new(),
            auto_delete: true,
            fixed_ips: Vec::new(),
            security_groups: Vec::new(),
            created_at: now,
            updated_at: now,
            revision_number: 1,
        })
    }
}

/// The MAC derived from the port id, stepped past any already on the network.
fn free_mac(tx: &dyn NetworkTx, network_id: &str, port_id: &str) -> Result<MacAddr, NetworkError> {
    for attempt in 0..64 {
        let mac = ipam::mac_for(port_id, attempt);
        if !tx.mac_in_use(network_id, mac)? {
            return Ok(mac);
        }
    }
    Err(NetworkError::conflict(
        "MacAddressGenerationFailure",
        format!("Unable to generate unique mac on network {network_id}."),
    ))
}

/// The lowest free address of `subnet` for port `port_id`; `pending` are addresses this
/// request already chose. The port's own current addresses count as free (an update may
/// keep them).
pub(super) fn allocate(
    tx: &dyn NetworkTx,
    subnet: &Subnet,
    port_id: &str,
    pending: &[FixedIp],
) -> Result<FixedIp, NetworkError> {
    let mut taken: HashSet<IpAddr> = tx.allocated_ips(&subnet.id)?.into_iter().collect();
    if let Some(own) = tx.get_port(port_id)? {
        for ip in own.fixed_ips {
            taken.remove(&ip.ip_address);
        }
    }
    taken.extend(pending.iter().map(|p| p.ip_address));
    let ip =
        ipam::first_free(&subnet.allocation_pools, subnet.gateway_ip, &taken).ok_or_else(|| {
            NetworkError::conflict(
                "IpAddressGenerationFailure",
                format!(
                    "No more IP addresses available on network {}.",
                    subnet.network_id
                ),
            )
        })?;
    Ok(FixedIp {
        subnet_id: subnet.id.clone(),
        ip_address: ip,
    })
}

/// The addresses a port asks for (`None`: Neutron's default, one address of each IP
/// version the network has), checked and allocated.
fn resolve_fixed_ips(
    tx: &dyn NetworkTx,
    network_id: &str,
    port_id: &str,
    requests: Option<&[FixedIpRequest]>,
) -> Result<Vec<FixedIp>, NetworkError> {
    let subnets = tx.list_subnets(Some(network_id))?;
    let mut out: Vec<FixedIp> = Vec::new();
    let Some(requests) = requests else {
        for version in [4u8, 6] {
            let of_version: Vec<&Subnet> =
                subnets.iter().filter(|s| s.ip_version == version).collect();
            if of_version.is_empty() {
                continue;
            }
            let mut last_err = None;
            let mut got = None;
            for s in of_version {
                match allocate(tx, s, port_id, &out) {
                    Ok(ip) => {
                        got = Some(ip);
                        break;
                    }
                    Err(e) => last_err = Some(e),
                }
            }
            match (got, last_err) {
                (Some(ip), _) => out.push(ip),
                (None, Some(e)) => return Err(e),
                (None, None) => {}
            }
        }
        return Ok(out);
    };
    for r in requests {
        let ip = r
            .ip_address
            .as_deref()
            .map(|s| {
                s.trim()
                    .parse::<IpAddr>()
                    .map_err(|_| NetworkError::invalid(format!("'{s}' is not a valid IP address")))
            })
            .transpose()?;
        let subnet = match (&r.subnet_id, ip) {
            (Some(id), _) => {
                subnets
                    .iter()
                    .find(|s| &s.id == id)
                    .ok_or_else(|| match tx.get_subnet(id) {
                        Ok(Some(_)) => NetworkError::invalid(format!(
                            "Failed to create port on network {network_id}, because fixed_ips \
                         included invalid subnet {id}."
                        )),
                        _ => NetworkError::not_found("Subnet", id),
                    })?
            }
            (None, Some(ip)) => subnets
                .iter()
                .find(|s| s.cidr.contains(&ip))
                .ok_or_else(|| {
                    NetworkError::invalid(format!(
                        "IP address {ip} is not a valid IP for any subnet on network {network_id}."
                    ))
                })?,
            (None, None) => {
                return Err(NetworkError::invalid(
                    "a fixed_ips entry needs subnet_id or ip_address",
                ))
            }
        };
        let fixed = match ip {
            None => allocate(tx, subnet, port_id, &out)?,
            Some(ip) => {
                ipam::check_requested(subnet.cidr, subnet.gateway_ip, ip)?;
                let holder = tx.ip_holder(network_id, ip)?;
                if holder.is_some_and(|h| h != port_id) || out.iter().any(|f| f.ip_address == ip) {
                    return Err(NetworkError::conflict(
                        "IpAddressAlreadyAllocated",
                        format!("IP address {ip} already allocated in subnet {}", subnet.id),
                    ));
                }
                FixedIp {
                    subnet_id: subnet.id.clone(),
                    ip_address: ip,
                }
            }
        };
        out.push(fixed);
    }
    Ok(out)
}

fn parse_pairs(
    list: &[AddressPairRequest],
    port_mac: MacAddr,
) -> Result<Vec<AddressPair>, NetworkError> {
    list.iter()
        .map(|p| {
            let ip: IpNet = p
                .ip_address
                .parse()
                .or_else(|_| p.ip_address.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| {
                    NetworkError::invalid(format!(
                        "'{}' is not a valid IP address or prefix in allowed_address_pairs",
                        p.ip_address
                    ))
                })?;
            let mac = match &p.mac_address {
                None => port_mac,
                Some(m) => m.parse().map_err(|_| {
                    NetworkError::invalid(format!("'{m}' is not a valid MAC address"))
                })?,
            };
            Ok(AddressPair {
                ip_address: ip,
                mac_address: mac,
            })
        })
        .collect()
}

/// The groups a port gets: those named (each must exist and be usable by the port's
/// project), or the project's default group.
fn resolve_groups(
    tx: &dyn NetworkTx,
    ctx: &RequestContext,
    project_id: &str,
    requested: Option<&[String]>,
) -> Result<Vec<String>, NetworkError> {
    match requested {
        None => Ok(vec![ensure_default(tx, project_id)?.id]),
        Some(ids) => {
            let mut out: Vec<String> = Vec::new();
            for id in ids {
                let g = find_group(tx, ctx, id)?;
                if g.project_id != project_id && !ctx.is_admin() {
                    return Err(NetworkError::not_found("SecurityGroup", id));
                }
                if !out.contains(&g.id) {
                    out.push(g.id);
                }
            }
            Ok(out)
        }
    }
}

fn check_port_security(p: &Port) -> Result<(), NetworkError> {
    if !p.port_security_enabled && !p.security_groups.is_empty() {
        return Err(NetworkError::conflict(
            "PortSecurityAndIPRequiredForSecurityGroups",
            "Port security must be enabled and port must have an IP address in order to use \
             security groups.",
        ));
    }
    if !p.port_security_enabled && !p.allowed_address_pairs.is_empty() {
        return Err(NetworkError::conflict(
            "AddressPairAndPortSecurityRequired",
            "Port Security must be enabled in order to have allowed address pairs on a port.",
        ));
    }
    Ok(())
}

/// Who asked for a port: a user through Neutron's API, or the compute side making a server's
/// port (deleted with the server).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PortOrigin {
    User,
    Server,
}

/// The fields of Neutron's per-field port rules (`create_port:<field>`,
/// `update_port:<field>`) that a request sets, by Neutron's names; the API checks them
/// against the policy table (`crate::api::policy::PORT_FIELD_RULES`) before the request
/// gets here.
fn restricted_fields(
    mac_address: Option<&str>,
    fixed_ips: Option<&[FixedIpRequest]>,
    port_security_enabled: Option<bool>,
    allowed_address_pairs: Option<&[AddressPairRequest]>,
    device_owner: Option<&str>,
    host_id: Option<&str>,
) -> Vec<&'static str> {
    let mut names = Vec::new();
    if mac_address.is_some() {
        names.push("mac_address");
    }
    // A subnet alone is anyone's to ask for; the address itself is restricted.
    if fixed_ips.is_some_and(|f| f.iter().any(|r| r.ip_address.is_some())) {
        names.push("fixed_ips:ip_address");
    }
    if port_security_enabled.is_some() {
        names.push("port_security_enabled");
    }
    if allowed_address_pairs.is_some() {
        names.push("allowed_address_pairs");
    }
    if device_owner.is_some_and(|o| !o.is_empty()) {
        names.push("device_owner");
    }
    if host_id.is_some_and(|h| !h.is_empty()) {
        names.push("binding:host_id");
    }
    names
}

impl NewPort {
    /// The restricted fields this create sets ([`restricted_fields`]).
    pub fn restricted_fields(&self) -> Vec<&'static str> {
        restricted_fields(
            self.mac_address.as_deref(),
            self.fixed_ips.as_deref(),
            self.port_security_enabled,
            self.allowed_address_pairs.as_deref(),
            self.device_owner.as_deref(),
            self.host_id.as_deref(),
        )
    }
}

impl PortUpdate {
    /// The restricted fields this update sets ([`restricted_fields`]).
    pub fn restricted_fields(&self) -> Vec<&'static str> {
        restricted_fields(
            self.mac_address.as_deref(),
            self.fixed_ips.as_deref(),
            self.port_security_enabled,
            self.allowed_address_pairs.as_deref(),
            self.device_owner.as_deref(),
            self.host_id.as_deref(),
        )
    }
}

/// Whether the caller may see port `p`: its project's, or on a network the caller owns.
fn port_visible(c: &dyn NetworkTx, ctx: &RequestContext, p: &Port) -> Result<bool, NetworkError> {
    if ctx.can_see(&p.project_id) {
        return Ok(true);
    }
    Ok(c.get_network(&p.network_id)?
        .is_some_and(|n| ctx.can_see(&n.project_id)))
}

pub(super) fn find_port(
    c: &dyn NetworkTx,
    ctx: &RequestContext,
    id: &str,
) -> Result<Port, NetworkError> {
    match c.get_port(id)? {
        Some(p) if port_visible(c, ctx, &p)? => Ok(p),
        _ => Err(NetworkError::not_found("Port", id)),
    }
}

impl NetworkService {
    pub fn create_port(&self, ctx: &RequestContext, req: NewPort) -> Result<Port, NetworkError> {
        self.create_port_as(ctx, req, PortOrigin::User)
    }

    pub(super) fn create_port_as(
        &self,
        ctx: &RequestContext,
        req: NewPort,
        origin: PortOrigin,
    ) -> Result<Port, NetworkError> {
        check_binding(req.vnic_type.as_deref(), req.binding_profile.as_ref())?;
        let project_id = owner(ctx, req.project_id.as_deref(), req.tenant_id.as_deref())?;
        let name = req.name.unwrap_or_default();
        let description = req.description.unwrap_or_default();
        check_text("name", &name)?;
        check_text("description", &description)?;
        let requested_mac = req
            .mac_address
            .as_deref()
            .map(|m| {
                m.parse::<MacAddr>()
                    .map_err(|_| NetworkError::invalid(format!("'{m}' is not a valid MAC address")))
            })
            .transpose()?;
        if let Some(m) = requested_mac {
            ipam::check_mac(m)?;
        }
        let id = new_id()?;
        let limit = self.quota(&project_id, "port")?;
        self.change(|tx| {
            let held = tx.list_ports()?;
            super::within_quota(
                "port",
                limit,
                held.iter().filter(|o| o.project_id == project_id).count(),
            )?;
            let net = find_network(tx, ctx, &req.network_id)?;
            let mac_address = match requested_mac {
                Some(m) => {
                    if tx.mac_in_use(&net.id, m)? {
                        return Err(NetworkError::conflict(
                            "MacAddressInUse",
                            format!(
                                "Unable to complete operation for network {}. The mac address \
                                 {m} is in use.",
                                net.id
                            ),
                        ));
                    }
                    m
                }
                None => free_mac(tx, &net.id, &id)?,
            };
            let device_owner = req.device_owner.clone().unwrap_or_default();
            let port_security_enabled = req
                .port_security_enabled
                .unwrap_or(net.port_security_enabled);
            let security_groups = if device_owner.starts_with("network:")
                || (!port_security_enabled && req.security_groups.is_none())
            {
                req.security_groups.clone().unwrap_or_default()
            } else {
                resolve_groups(tx, ctx, &project_id, req.security_groups.as_deref())?
            };
            let now = Timestamp::now();
            let port = Port {
                fixed_ips: resolve_fixed_ips(tx, &net.id, &id, req.fixed_ips.as_deref())?,
                allowed_address_pairs: parse_pairs(
                    req.allowed_address_pairs.as_deref().unwrap_or(&[]),
                    mac_address,
                )?,
                id: id.clone(),
                network_id: net.id.clone(),
                project_id: project_id.clone(),
                name: name.clone(),
                description: description.clone(),
                mac_address,
                admin_state_up: req.admin_state_up.unwrap_or(true),
                device_id: req.device_id.clone().unwrap_or_default(),
                device_owner,
                host_id: req.host_id.clone().unwrap_or_default(),
                port_security_enabled,
                auto_delete: origin == PortOrigin::Server,
                security_groups,
                created_at: now,
                updated_at: now,
                revision_number: 1,
            };
            check_port_security(&port)?;
            tx.insert_port(&port)?;
            Ok(port)
        })
    }

    pub fn get_port(&self, ctx: &RequestContext, id: &str) -> Result<Port, NetworkError> {
        self.read(|c| find_port(c, ctx, id))
    }

    pub fn list_ports(&self, ctx: &RequestContext) -> Result<Vec<Port>, NetworkError> {
        self.read(|c| {
            let nets = c.list_networks()?;
            Ok(c.list_ports()?
                .into_iter()
                .filter(|p| {
                    ctx.can_see(&p.project_id)
                        || nets
                            .iter()
                            .any(|n| n.id == p.network_id && ctx.can_see(&n.project_id))
                })
                .collect())
        })
    }

    pub fn update_port(
        &self,
        ctx: &RequestContext,
        id: &str,
        req: PortUpdate,
    ) -> Result<Port, NetworkError> {
        check_binding(req.vnic_type.as_deref(), req.binding_profile.as_ref())?;
        self.change(|tx| {
            let mut p = find_port(tx, ctx, id)?;
            if let Some(m) = &req.mac_address {
                let m: MacAddr = m.parse().map_err(|_| {
                    NetworkError::invalid(format!("'{m}' is not a valid MAC address"))
                })?;
                if m != p.mac_address {
                    if !ctx.is_admin() || !p.host_id.is_empty() {
                        return Err(NetworkError::Forbidden(
                            "Only an admin may change the MAC address of an unbound port.".into(),
                        ));
                    }
                    ipam::check_mac(m)?;
                    if tx.mac_in_use(&p.network_id, m)? {
                        return Err(NetworkError::conflict(
                            "MacAddressInUse",
                            format!("The mac address {m} is in use."),
                        ));
                    }
                    p.mac_address = m;
                }
            }
            if let Some(v) = req.name.clone() {
                check_text("name", &v)?;
                p.name = v;
            }
            if let Some(v) = req.description.clone() {
                check_text("description", &v)?;
                p.description = v;
            }
            if let Some(v) = req.admin_state_up {
                p.admin_state_up = v;
            }
            if let Some(v) = req.device_id.clone() {
                p.device_id = v;
            }
            if let Some(v) = req.device_owner.clone() {
                p.device_owner = v;
            }
            if let Some(v) = req.host_id.clone() {
                p.host_id = v;
            }
            if let Some(v) = req.port_security_enabled {
                p.port_security_enabled = v;
            }
            if let Some(g) = req.security_groups.clone() {
                p.security_groups = resolve_groups(tx, ctx, &p.project_id, Some(&g))?;
            }
            if let Some(pairs) = req.allowed_address_pairs.clone() {
                p.allowed_address_pairs = parse_pairs(&pairs, p.mac_address)?;
            }
            if let Some(ips) = req.fixed_ips.clone() {
                p.fixed_ips = resolve_fixed_ips(tx, &p.network_id, &p.id, Some(&ips))?;
            }
            check_port_security(&p)?;
            tx.update_port(&p)?;
            Ok(tx.get_port(id)?.unwrap_or(p))
        })
    }

    /// Deletes the port; its addresses go back to their pools.
    pub fn delete_port(&self, ctx: &RequestContext, id: &str) -> Result<(), NetworkError> {
        self.change(|tx| {
            find_port(tx, ctx, id)?;
            Ok(tx.delete_port(id)?)
        })
    }
}
