//! Neutron v2.0 handlers under `/network/v2.0`: networks, subnets, ports, security groups
//! and security group rules. Each parses the body, calls one `crate::network` function and
//! renders with [`views`]; lists go through [`query`] for Neutron's filters and `fields=`.

mod query;
mod views;

use crate::api::{Call, Fault, Reply};
use crate::compute::servers::nics::check_port_device;
use crate::network::groups::{GroupUpdate, NewGroup, NewRule};
use crate::network::networks::{NetworkUpdate, NewNetwork};
use crate::network::ports::{NewPort, PortUpdate};
use crate::network::subnets::{NewSubnet, SubnetUpdate};
use hyper::StatusCode;
use serde_json::{json, Value};

/// The resource inside Neutron's wrapper (`{"network": {...}}`); anything else is a 400.
fn body<T: serde::de::DeserializeOwned>(call: &Call<'_>, key: &str) -> Result<T, Fault> {
    let mut v: Value = call.json()?;
    let obj = v
        .as_object_mut()
        .ok_or_else(|| Fault::bad_request("The request body must be a JSON object."))?;
    let inner = obj.remove(key).ok_or_else(|| {
        Fault::bad_request(format!(
            "Resource body required: the body must hold '{key}'."
        ))
    })?;
    if let Some(extra) = obj.keys().next() {
        return Err(Fault::bad_request(format!(
            "Unrecognized attribute(s) '{extra}'"
        )));
    }
    serde_json::from_value(inner).map_err(|e| {
        let mut f = Fault::bad_request(format!("Invalid input for operation: {e}."));
        f.neutron_type = Some("InvalidInput".into());
        f
    })
}

/// A create body: one resource (`{"network": {...}}`) or Neutron's bulk form
/// (`{"networks": [{...}, ...]}`).
enum Create<T> {
    One(T),
    Bulk(Vec<T>),
}

fn create_body<T: serde::de::DeserializeOwned>(
    call: &Call<'_>,
    key: &str,
    plural: &str,
) -> Result<Create<T>, Fault> {
    let v: Value = call.json()?;
    if v.get(plural).is_none() {
        return body(call, key).map(Create::One);
    }
    let mut obj = match v {
        Value::Object(obj) if obj.len() == 1 => obj,
        _ => {
            return Err(Fault::bad_request(format!(
                "Resource body required: a bulk create holds only '{plural}'."
            )))
        }
    };
    let Some(Value::Array(items)) = obj.remove(plural) else {
        return Err(Fault::bad_request(format!(
            "Resources required: '{plural}' must be a list."
        )));
    };
    items
        .into_iter()
        .map(|item| {
            serde_json::from_value(item).map_err(|e| {
                let mut f = Fault::bad_request(format!("Invalid input for operation: {e}."));
                f.neutron_type = Some("InvalidInput".into());
                f
            })
        })
        .collect::<Result<_, _>>()
        .map(Create::Bulk)
}

fn listed(call: &Call<'_>, key: &str, items: Vec<Value>) -> Result<Reply, Fault> {
    let items = query::apply(items, &call.query)?;
    Ok(Reply::ok(json!({ key: items })))
}

fn one(status: StatusCode, key: &str, v: Value) -> Reply {
    Reply::json(status, json!({ key: v }))
}

// ---- networks ----

pub fn list_networks(call: &Call<'_>) -> Result<Reply, Fault> {
    let nets = call.state.network.list_networks(call.ctx())?;
    let items = nets.iter().map(|(n, s)| views::network(n, s)).collect();
    listed(call, "networks", items)
}

pub fn create_network(call: &Call<'_>) -> Result<Reply, Fault> {
    let svc = &call.state.network;
    match create_body::<NewNetwork>(call, "network", "networks")? {
        Create::One(req) => {
            let n = svc.create_network(call.ctx(), req)?;
            Ok(one(StatusCode::CREATED, "network", views::network(&n, &[])))
        }
        Create::Bulk(reqs) => {
            let made = svc.create_networks(call.ctx(), reqs)?;
            let items: Vec<Value> = made.iter().map(|n| views::network(n, &[])).collect();
            Ok(Reply::json(StatusCode::CREATED, json!({"networks": items})))
        }
    }
}

pub fn show_network(call: &Call<'_>) -> Result<Reply, Fault> {
    let svc = &call.state.network;
    let n = svc.get_network(call.ctx(), call.param("network_id"))?;
    let subnets = svc.subnet_ids(&n.id)?;
    let v = query::apply(vec![views::network(&n, &subnets)], &fields_only(call))?;
    Ok(one(
        StatusCode::OK,
        "network",
        v.into_iter().next().unwrap_or_default(),
    ))
}

pub fn update_network(call: &Call<'_>) -> Result<Reply, Fault> {
    let req: NetworkUpdate = body(call, "network")?;
    let svc = &call.state.network;
    let n = svc.update_network(call.ctx(), call.param("network_id"), req)?;
    let subnets = svc.subnet_ids(&n.id)?;
    Ok(one(StatusCode::OK, "network", views::network(&n, &subnets)))
}

pub fn delete_network(call: &Call<'_>) -> Result<Reply, Fault> {
    call.state
        .network
        .delete_network(call.ctx(), call.param("network_id"))?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

/// Only `fields=` of the query, for show (Neutron's show takes `fields` too).
fn fields_only(call: &Call<'_>) -> Vec<(String, String)> {
    call.query
        .iter()
        .filter(|(k, _)| k == "fields")
        .cloned()
        .collect()
}

// ---- subnets ----

pub fn list_subnets(call: &Call<'_>) -> Result<Reply, Fault> {
    let subnets = call.state.network.list_subnets(call.ctx())?;
    listed(call, "subnets", subnets.iter().map(views::subnet).collect())
}

pub fn create_subnet(call: &Call<'_>) -> Result<Reply, Fault> {
    let svc = &call.state.network;
    match create_body::<NewSubnet>(call, "subnet", "subnets")? {
        Create::One(req) => {
            let s = svc.create_subnet(call.ctx(), req)?;
            Ok(one(StatusCode::CREATED, "subnet", views::subnet(&s)))
        }
        Create::Bulk(reqs) => {
            let made = svc.create_subnets(call.ctx(), reqs)?;
            let items: Vec<Value> = made.iter().map(views::subnet).collect();
            Ok(Reply::json(StatusCode::CREATED, json!({"subnets": items})))
        }
    }
}

pub fn show_subnet(call: &Call<'_>) -> Result<Reply, Fault> {
    let s = call
        .state
        .network
        .get_subnet(call.ctx(), call.param("subnet_id"))?;
    let v = query::apply(vec![views::subnet(&s)], &fields_only(call))?;
    Ok(one(
        StatusCode::OK,
        "subnet",
        v.into_iter().next().unwrap_or_default(),
    ))
}

pub fn update_subnet(call: &Call<'_>) -> Result<Reply, Fault> {
    let req: SubnetUpdate = body(call, "subnet")?;
    let s = call
        .state
        .network
        .update_subnet(call.ctx(), call.param("subnet_id"), req)?;
    Ok(one(StatusCode::OK, "subnet", views::subnet(&s)))
}

pub fn delete_subnet(call: &Call<'_>) -> Result<Reply, Fault> {
    call.state
        .network
        .delete_subnet(call.ctx(), call.param("subnet_id"))?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

// ---- ports ----

pub fn list_ports(call: &Call<'_>) -> Result<Reply, Fault> {
    let ports = call.state.network.list_ports(call.ctx())?;
    listed(call, "ports", ports.iter().map(views::port).collect())
}

/// The project a new port will belong to: the one its body names, else the caller's.
fn port_project<'a>(call: &'a Call<'_>, req: &'a NewPort) -> &'a str {
    req.project_id
        .as_deref()
        .or(req.tenant_id.as_deref())
        .or(call.ctx().project_id.as_deref())
        .unwrap_or_default()
}

/// A port's `device_id` must be a server of its project (crate::compute::servers::nics).
fn check_device(call: &Call<'_>, project: &str, device_id: Option<&str>) -> Result<(), Fault> {
    match device_id {
        Some(device) => Ok(check_port_device(
            &call.state.fleet,
            call.ctx(),
            project,
            device,
        )?),
        None => Ok(()),
    }
}

/// Neutron's per-field rules (api::policy::PORT_FIELD_RULES) for `fields` of a port request
/// of `action` on network `network_id` as the caller sees it (one it cannot see is the 404
/// the port's own call would give).
fn check_port_fields(
    call: &Call<'_>,
    action: &str,
    fields: &[&str],
    network_id: &str,
) -> Result<(), Fault> {
    if fields.is_empty() {
        return Ok(());
    }
    let net = call.state.network.get_network(call.ctx(), network_id)?;
    call.state
        .policy
        .enforce_port_fields(call.ctx(), action, fields, &net.project_id)
}

/// Everything a new port is checked for before it is made.
fn check_new_port(call: &Call<'_>, req: &NewPort) -> Result<(), Fault> {
    check_port_fields(
        call,
        "create_port",
        &req.restricted_fields(),
        &req.network_id,
    )?;
    check_device(call, port_project(call, req), req.device_id.as_deref())
}

pub fn create_port(call: &Call<'_>) -> Result<Reply, Fault> {
    let svc = &call.state.network;
    match create_body::<NewPort>(call, "port", "ports")? {
        Create::One(req) => {
            check_new_port(call, &req)?;
            let p = svc.create_port(call.ctx(), req)?;
            Ok(one(StatusCode::CREATED, "port", views::port(&p)))
        }
        Create::Bulk(reqs) => {
            for req in &reqs {
                check_new_port(call, req)?;
            }
            let made = svc.create_ports(call.ctx(), reqs)?;
            let items: Vec<Value> = made.iter().map(views::port).collect();
            Ok(Reply::json(StatusCode::CREATED, json!({"ports": items})))
        }
    }
}

pub fn show_port(call: &Call<'_>) -> Result<Reply, Fault> {
    let p = call
        .state
        .network
        .get_port(call.ctx(), call.param("port_id"))?;
    let v = query::apply(vec![views::port(&p)], &fields_only(call))?;
    Ok(one(
        StatusCode::OK,
        "port",
        v.into_iter().next().unwrap_or_default(),
    ))
}

pub fn update_port(call: &Call<'_>) -> Result<Reply, Fault> {
    let req: PortUpdate = body(call, "port")?;
    let fields = req.restricted_fields();
    if req.device_id.is_some() || !fields.is_empty() {
        // A port's project and network never change, so checking against them before the
        // update holds.
        let port = call
            .state
            .network
            .get_port(call.ctx(), call.param("port_id"))?;
        let network_project = call
            .state
            .network
            .device_network(&port.network_id)?
            .map(|n| n.project_id)
            .unwrap_or_default();
        call.state.policy.enforce_port_fields(
            call.ctx(),
            "update_port",
            &fields,
            &network_project,
        )?;
        check_device(call, &port.project_id, req.device_id.as_deref())?;
    }
    let p = call
        .state
        .network
        .update_port(call.ctx(), call.param("port_id"), req)?;
    Ok(one(StatusCode::OK, "port", views::port(&p)))
}

pub fn delete_port(call: &Call<'_>) -> Result<Reply, Fault> {
    call.state
        .network
        .delete_port(call.ctx(), call.param("port_id"))?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

// ---- security groups ----

pub fn list_groups(call: &Call<'_>) -> Result<Reply, Fault> {
    let groups = call.state.network.list_security_groups(call.ctx())?;
    let items = groups.iter().map(|(g, r)| views::group(g, r)).collect();
    listed(call, "security_groups", items)
}

pub fn create_group(call: &Call<'_>) -> Result<Reply, Fault> {
    let req: NewGroup = body(call, "security_group")?;
    let (g, r) = call.state.network.create_security_group(call.ctx(), req)?;
    Ok(one(
        StatusCode::CREATED,
        "security_group",
        views::group(&g, &r),
    ))
}

pub fn show_group(call: &Call<'_>) -> Result<Reply, Fault> {
    let (g, r) = call
        .state
        .network
        .get_security_group(call.ctx(), call.param("security_group_id"))?;
    let v = query::apply(vec![views::group(&g, &r)], &fields_only(call))?;
    Ok(one(
        StatusCode::OK,
        "security_group",
        v.into_iter().next().unwrap_or_default(),
    ))
}

pub fn update_group(call: &Call<'_>) -> Result<Reply, Fault> {
    let req: GroupUpdate = body(call, "security_group")?;
    let (g, r) = call.state.network.update_security_group(
        call.ctx(),
        call.param("security_group_id"),
        req,
    )?;
    Ok(one(StatusCode::OK, "security_group", views::group(&g, &r)))
}

pub fn delete_group(call: &Call<'_>) -> Result<Reply, Fault> {
    call.state
        .network
        .delete_security_group(call.ctx(), call.param("security_group_id"))?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

// ---- security group rules ----

pub fn list_rules(call: &Call<'_>) -> Result<Reply, Fault> {
    let svc = &call.state.network;
    // Through the groups, which say whether each rule is in a default group.
    let visible: std::collections::HashSet<String> = svc
        .list_security_group_rules(call.ctx())?
        .into_iter()
        .map(|r| r.id)
        .collect();
    let items = svc
        .list_security_groups(call.ctx())?
        .iter()
        .flat_map(|(g, rules)| {
            rules
                .iter()
                .filter(|r| visible.contains(&r.id))
                .map(|r| views::rule(r, g.is_default))
                .collect::<Vec<_>>()
        })
        .collect();
    listed(call, "security_group_rules", items)
}

pub fn create_rule(call: &Call<'_>) -> Result<Reply, Fault> {
    let req: NewRule = body(call, "security_group_rule")?;
    let svc = &call.state.network;
    let r = svc.create_security_group_rule(call.ctx(), req)?;
    let (g, _) = svc.get_security_group(call.ctx(), &r.security_group_id)?;
    Ok(one(
        StatusCode::CREATED,
        "security_group_rule",
        views::rule(&r, g.is_default),
    ))
}

pub fn show_rule(call: &Call<'_>) -> Result<Reply, Fault> {
    let svc = &call.state.network;
    let r = svc.get_security_group_rule(call.ctx(), call.param("rule_id"))?;
    let (g, _) = svc.get_security_group(call.ctx(), &r.security_group_id)?;
    let v = query::apply(vec![views::rule(&r, g.is_default)], &fields_only(call))?;
    Ok(one(
        StatusCode::OK,
        "security_group_rule",
        v.into_iter().next().unwrap_or_default(),
    ))
}

pub fn delete_rule(call: &Call<'_>) -> Result<Reply, Fault> {
    call.state
        .network
        .delete_security_group_rule(call.ctx(), call.param("rule_id"))?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

// ---- extensions ----

/// The Neutron API extensions this service implements (alias, name, description): clients
/// ask before using optional attributes, and an extension not listed here is not used.
const EXTENSIONS: &[(&str, &str, &str)] = &[
    (
        "allowed-address-pairs",
        "Allowed Address Pairs",
        "Extra addresses a port may send from",
    ),
    (
        "binding",
        "Port Binding",
        "binding:host_id, binding:vif_type and binding:vnic_type on ports",
    ),
    (
        "external-net",
        "Neutron external network",
        "router:external (always false here)",
    ),
    ("net-mtu", "Network MTU", "The MTU of each network"),
    (
        "port-security",
        "Port Security",
        "port_security_enabled on networks and ports",
    ),
    (
        "project-id",
        "project_id field enabled",
        "project_id beside tenant_id",
    ),
    (
        "security-group",
        "security-group",
        "Security groups and their rules",
    ),
    (
        "standard-attr-description",
        "standard-attr-description",
        "description on resources",
    ),
    (
        "standard-attr-revisions",
        "Resource revision numbers",
        "revision_number on resources",
    ),
    (
        "standard-attr-timestamp",
        "Resource timestamps",
        "created_at and updated_at on resources",
    ),
    (
        "stateful-security-group",
        "Stateful security group",
        "stateful on security groups",
    ),
];

fn extension((alias, name, description): &(&str, &str, &str)) -> Value {
    json!({
        "alias": alias,
        "name": name,
        "description": description,
        "updated": "2026-01-01T00:00:00-00:00",
        "links": [],
    })
}

pub fn list_extensions(call: &Call<'_>) -> Result<Reply, Fault> {
    listed(
        call,
        "extensions",
        EXTENSIONS.iter().map(extension).collect(),
    )
}

pub fn show_extension(call: &Call<'_>) -> Result<Reply, Fault> {
    let alias = call.param("alias");
    let e = EXTENSIONS.iter().find(|e| e.0 == alias).ok_or_else(|| {
        let mut f = Fault::not_found(format!("Extension with alias {alias} does not exist"));
        f.neutron_type = Some("HTTPNotFound".into());
        f
    })?;
    Ok(one(StatusCode::OK, "extension", extension(e)))
}
