//! A server's network interfaces: Nova's `networks` request resolved against Neutron when
//! the API accepts the create ([`plan`]), ports made or bound by the create saga
//! ([`allocate`]) and released by delete or undo ([`release`]), the taps the monitor gets
//! ([`monitor_nics`]), and what the API shows (`addresses`, `security_groups`).
//!
//! The plan is kept in the server's `networks` column, so a restart of outpostd needs
//! nothing else: `{"requested": [...], "security_groups": [...]|null}`. Rows from before
//! networking hold "auto"/"none" and plan no NIC.
//!
//! With `[network] manage_host = false` the ports are made all the same (Neutron's state is
//! the same), but nothing is wired and the monitor gets no NIC.
//!
//! The saga makes the ports, then has the host agent wire them (bridge, tap, DHCP
//! reservation, nftables) before the monitor opens the taps, so a guest never runs a
//! moment on an unfiltered port.

use super::fleet::Fleet;
use super::{NetworkRequest, Networks, Server, ServerError};
use crate::context::RequestContext;
use crate::network::{NetworkError, Port, SecurityGroup, SecurityGroupRule};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// One NIC asked for, resolved to ids.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NicRequest {
    /// A new port on this network (with this address, if given).
    Network {
        id: String,
        fixed_ip: Option<IpAddr>,
    },
    /// The user's own port.
    Port { id: String },
}

/// What the create request asked for, in order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NicPlan {
    pub requested: Vec<NicRequest>,
    /// Group ids for the ports the server gets made; None: the project's default group.
    pub security_groups: Option<Vec<String>>,
}

impl NicPlan {
    /// The plan in a server's `networks` column (none for rows from before networking).
    pub fn of(s: &Server) -> NicPlan {
        serde_json::from_value(s.networks.clone()).unwrap_or_default()
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Nova's own words for the networking failures a create can meet.
fn bad(message: impl Into<String>) -> ServerError {
    ServerError::BadRequest(message.into())
}

/// Resolves a create's `networks` and `security_groups` for `ctx`. Nothing is allocated
/// here; an unknown network, port or group, a port already in use or an address outside
/// the network is refused now, with nothing created.
pub fn plan(
    fleet: &Fleet,
    ctx: &RequestContext,
    networks: &Networks,
    groups: &[String],
) -> Result<NicPlan, ServerError> {
    let Some(agent) = fleet.network() else {
        return match networks {
            Networks::List(list) if !list.is_empty() => {
                Err(bad("This appliance has no networking service."))
            }
            _ => Ok(NicPlan::default()),
        };
    };
    let service = agent.service();
    let requested = match networks {
        Networks::None => Vec::new(),
        Networks::Auto => {
            // Nova's "auto": the one network the project can use (its own or a shared one;
            // an admin's view of other projects' networks does not count); none, no NIC.
            let project = ctx.project_id.as_deref().unwrap_or_default();
            let nets: Vec<_> = service
                .list_networks(ctx)
                .map_err(network_error)?
                .into_iter()
                .filter(|(n, _)| n.shared || n.project_id == project)
                .collect();
            match nets.as_slice() {
                [] => Vec::new(),
                [(n, _)] => vec![NicRequest::Network {
                    id: n.id.clone(),
                    fixed_ip: None,
                }],
                _ => {
                    return Err(ServerError::Conflict(
                        "Multiple possible networks found, use a Network ID to be more \
                         specific."
                            .into(),
                    ))
                }
            }
        }
        Networks::List(list) => {
            let mut out = Vec::with_capacity(list.len());
            for r in list {
                out.push(resolve(service, ctx, r)?);
            }
            out
        }
    };
    let security_groups = if groups.is_empty() {
        None
    } else {
        let mut ids = Vec::with_capacity(groups.len());
        for name in groups {
            let g = service.find_security_group(ctx, name).map_err(|_| {
                bad(format!(
                    "Security group {name} not found for project {}.",
                    ctx.project_id.as_deref().unwrap_or_default()
                ))
            })?;
            if !ids.contains(&g.id) {
                ids.push(g.id);
            }
        }
        Some(ids)
    };
    Ok(NicPlan {
        requested,
        security_groups,
    })
}

fn resolve(
    service: &crate::network::NetworkService,
    ctx: &RequestContext,
    r: &NetworkRequest,
) -> Result<NicRequest, ServerError> {
    if let Some(port_id) = &r.port {
        let port = service
            .get_port(ctx, port_id)
            .map_err(|_| bad(format!("Port id {port_id} could not be found.")))?;
        // An admin, or a network's owner, sees ports of other projects; a server takes only
        // its own project's (Nova's PortNotUsable).
        if ctx.project_id.as_deref() != Some(port.project_id.as_str()) {
            return Err(ServerError::Conflict(format!(
                "Port {port_id} not usable for the instance: it belongs to another project."
            )));
        }
        if !port.device_id.is_empty() {
            return Err(ServerError::Conflict(format!(
                "Port {port_id} is still in use."
            )));
        }
        return Ok(NicRequest::Port { id: port.id });
    }
    let Some(net_id) = &r.uuid else {
        return Err(bad("Each network needs a uuid or a port."));
    };
    let net = service
        .get_network(ctx, net_id)
        .map_err(|_| bad(format!("Network {net_id} could not be found.")))?;
    let fixed_ip = match &r.fixed_ip {
        None => None,
        Some(ip) => Some(ip.parse::<IpAddr>().map_err(|_| {
            bad(format!(
                "Invalid input for field/attribute fixed_ip. Value: {ip}. '{ip}' is not a \
                 'ip-address'"
            ))
        })?),
    };
    Ok(NicRequest::Network {
        id: net.id,
        fixed_ip,
    })
}

/// Neutron's refusals in Nova's answer: what the caller got wrong is a 400, a conflict a
/// 409; a failure of our own (storage, the host) stays a 500.
fn network_error(e: NetworkError) -> ServerError {
    match e {
        NetworkError::NotFound { .. }
        | NetworkError::InvalidInput(_)
        | NetworkError::BadRequest { .. }
        | NetworkError::Forbidden(_) => ServerError::BadRequest(e.to_string()),
        NetworkError::Conflict { .. } => ServerError::Conflict(e.to_string()),
        e => ServerError::Network(e),
    }
}

/// The create saga's network step: the planned ports made or bound, in request order, and
/// the host wired for them. Ports made by an interrupted attempt go first; the user's own
/// ports stay bound (they were taken when the request was accepted).
pub fn allocate(fleet: &Fleet, s: &Server) -> Result<(), NetworkError> {
    let Some(agent) = fleet.network() else {
        return Ok(());
    };
    let plan = NicPlan::of(s);
    if plan.requested.is_empty() {
        return Ok(());
    }
    let service = agent.service();
    let ctx = super::owner(s);
    for p in service.device_ports(&s.id, &s.project_id)? {
        if p.auto_delete {
            service.delete_port(&ctx, &p.id)?;
        }
    }
    let host = s.host.clone().unwrap_or_else(|| fleet.host().to_owned());
    for r in &plan.requested {
        match r {
            NicRequest::Network { id, fixed_ip } => {
                service.create_device_port_with_ip(
                    &ctx,
                    id,
                    &s.id,
                    &host,
                    plan.security_groups.clone(),
                    *fixed_ip,
                )?;
            }
            NicRequest::Port { id } => {
                service.bind_port(&ctx, id, &s.id, &host)?;
            }
        }
    }
    sync(fleet)
}

/// Binds the user's own ports the plan names to the new server, at request time. A port
/// another server holds (or took since the plan was made) is Nova's 409 PortInUse.
pub fn reserve_ports(fleet: &Fleet, s: &Server) -> Result<(), ServerError> {
    let Some(agent) = fleet.network() else {
        return Ok(());
    };
    let ctx = super::owner(s);
    let host = fleet.host().to_owned();
    for r in &NicPlan::of(s).requested {
        if let NicRequest::Port { id } = r {
            agent
                .service()
                .bind_port(&ctx, id, &s.id, &host)
                .map_err(|e| match e {
                    NetworkError::Conflict {
                        kind: "PortInUse", ..
                    } => ServerError::Conflict(format!("Port {id} is still in use.")),
                    NetworkError::Conflict { message, .. } => ServerError::Conflict(message),
                    e => ServerError::Network(e),
                })?;
        }
    }
    Ok(())
}

/// Releases the server's ports (made ones deleted, given ones unbound) and unwires them.
pub fn release(fleet: &Fleet, server_id: &str) -> Result<(), NetworkError> {
    let Some(agent) = fleet.network() else {
        return Ok(());
    };
    agent.service().release_device(server_id)?;
    sync(fleet)
}

/// Whether a port of project `port_project` may name `device_id` as its device when `ctx`
/// sets it through Neutron's API. A member names only its project's servers (or nothing); an
/// admin may also write a label that is no server, but never another project's server. A
/// server of another project is refused (403) as a label that names nothing is, so the answer
/// tells a tenant nothing about other projects; [`ports`] would not give such a port to the
/// server anyway.
pub fn check_port_device(
    fleet: &Fleet,
    ctx: &RequestContext,
    port_project: &str,
    device_id: &str,
) -> Result<(), NetworkError> {
    if device_id.is_empty() {
        return Ok(());
    }
    match fleet.servers().server(device_id)? {
        Some(s) if s.project_id == port_project => Ok(()),
        None if ctx.is_admin() => Ok(()),
        _ => Err(NetworkError::Forbidden(format!(
            "device_id {device_id} is not a server of the port's project."
        ))),
    }
}

/// Has the host match the database now (a failure is the caller's: the port is not wired).
pub fn sync(fleet: &Fleet) -> Result<(), NetworkError> {
    if let Some(agent) = fleet.network() {
        agent
            .sync()
            .map_err(|e| NetworkError::Internal(e.to_string()))?;
    }
    Ok(())
}

/// The server's ports in the order its plan asked for them (ports bound later, e.g. by
/// Neutron calls, after those).
pub fn ports(fleet: &Fleet, s: &Server) -> Result<Vec<Port>, NetworkError> {
    let Some(agent) = fleet.network() else {
        return Ok(Vec::new());
    };
    let mut ports = agent.service().device_ports(&s.id, &s.project_id)?;
    let plan = NicPlan::of(s);
    let rank = |p: &Port| {
        plan.requested
            .iter()
            .position(|r| match r {
                NicRequest::Port { id } => *id == p.id,
                NicRequest::Network { id, .. } => *id == p.network_id,
            })
            .unwrap_or(usize::MAX)
    };
    ports.sort_by_key(|p| (rank(p), p.created_at));
    Ok(ports)
}

/// (tap, MAC) for each of the server's ports, as the monitor's network interfaces; none
/// when this daemon leaves the host's networking alone (`manage_host = false`: the ports
/// exist in Neutron's state, their taps do not).
pub fn monitor_nics(fleet: &Fleet, s: &Server) -> Result<Vec<(String, String)>, NetworkError> {
    if !fleet.network().is_some_and(|a| a.enabled()) {
        return Ok(Vec::new());
    }
    Ok(ports(fleet, s)?
        .iter()
        .map(|p| (outpost_netdev::tap_name(&p.id), p.mac_address.to_string()))
        .collect())
}

/// Nova's `addresses`: per network name, each fixed IP with its version and MAC.
pub fn addresses(fleet: &Fleet, s: &Server) -> Result<Value, NetworkError> {
    let mut out: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    let ports = ports(fleet, s)?;
    if ports.is_empty() {
        return Ok(json!({}));
    }
    let Some(agent) = fleet.network() else {
        return Ok(json!({}));
    };
    for p in &ports {
        let name = agent
            .service()
            .device_network(&p.network_id)?
            .map_or_else(|| p.network_id.clone(), |n| n.name);
        let list = out.entry(name).or_default();
        for ip in &p.fixed_ips {
            list.push(json!({
                "addr": ip.ip_address.to_string(),
                "version": if ip.ip_address.is_ipv4() { 4 } else { 6 },
                "OS-EXT-IPS:type": "fixed",
                "OS-EXT-IPS-MAC:mac_addr": p.mac_address.to_string(),
            }));
        }
    }
    Ok(json!(out))
}

/// Nova's `security_groups` of a server: its ports' groups, each once.
pub fn security_groups(fleet: &Fleet, s: &Server) -> Result<Vec<SecurityGroup>, NetworkError> {
    let mut ids: Vec<String> = Vec::new();
    for p in ports(fleet, s)? {
        for g in p.security_groups {
            if !ids.contains(&g) {
                ids.push(g);
            }
        }
    }
    let Some(agent) = fleet.network() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(g) = agent.service().device_security_group(&id)? {
            out.push(g);
        }
    }
    Ok(out)
}

/// The rules of group `group_id`, one of a server's [`security_groups`].
pub fn security_group_rules(
    fleet: &Fleet,
    group_id: &str,
) -> Result<Vec<SecurityGroupRule>, NetworkError> {
    match fleet.network() {
        Some(agent) => agent.service().device_security_group_rules(group_id),
        None => Ok(Vec::new()),
    }
}

/// Nova's addSecurityGroup (`add = true`) and removeSecurityGroup on every port of the
/// server; the agent's next reconcile (within the change notification) applies it.
pub fn change_security_group(
    fleet: &Fleet,
    ctx: &RequestContext,
    s: &Server,
    name: &str,
    add: bool,
) -> Result<(), ServerError> {
    let Some(agent) = fleet.network() else {
        return Err(bad("This appliance has no networking service."));
    };
    let service = agent.service();
    let group = service.find_security_group(ctx, name).map_err(|_| {
        ServerError::NotFound(format!("Security group {name} not found for project."))
    })?;
    let ports = ports(fleet, s).map_err(network_error)?;
    if ports.is_empty() {
        return Err(bad(format!(
            "Instance {} has no network interface to apply security group {name} to.",
            s.id
        )));
    }
    if !add && !ports.iter().any(|p| p.security_groups.contains(&group.id)) {
        return Err(bad(format!(
            "Security group {name} not associated with the instance {}",
            s.id
        )));
    }
    if add && ports.iter().all(|p| p.security_groups.contains(&group.id)) {
        return Err(bad(format!(
            "Security group {name} is already associated with the instance {}",
            s.id
        )));
    }
    for p in ports {
        let mut groups = p.security_groups.clone();
        if add {
            if !groups.contains(&group.id) {
                groups.push(group.id.clone());
            }
        } else {
            groups.retain(|g| *g != group.id);
        }
        if groups != p.security_groups {
            service
                .set_port_security_groups(&super::owner(s), &p.id, groups)
                .map_err(network_error)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_round_trip_and_old_rows_plan_nothing() {
        let plan = NicPlan {
            requested: vec![
                NicRequest::Network {
                    id: "net-1".into(),
                    fixed_ip: Some("10.0.0.5".parse().unwrap()),
                },
                NicRequest::Port {
                    id: "port-1".into(),
                },
            ],
            security_groups: Some(vec!["g1".into()]),
        };
        let back: NicPlan = serde_json::from_value(plan.to_value()).unwrap();
        assert_eq!(back, plan);
        // Rows written before networking hold Nova's words, not a plan.
        for old in [json!("auto"), json!("none"), json!([])] {
            let parsed: NicPlan = serde_json::from_value(old).unwrap_or_default();
            assert_eq!(parsed, NicPlan::default());
        }
    }
}
