//! The quota APIs of the three services that keep quotas, as their stock clients call them:
//! Nova's `/os-quota-sets/{project_id}` (with `/detail` and `/defaults`) and `/limits`;
//! Cinder's `/{project_id}/os-quota-sets/{target}` (with `?usage=true` and `/defaults`) and
//! `/{project_id}/limits`; Neutron's `/v2.0/quotas/{project_id}` (with `/details` and
//! `/default`). Each parses, calls [`crate::quota`] and renders its service's shape.

use super::microversion::{ApiVersion, COMPUTE};
use super::{Call, Fault, Reply};
use crate::quota::{self, Limit, Service, UNLIMITED};
use hyper::StatusCode;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

fn quotas<'c>(call: &'c Call<'_>) -> &'c quota::Quotas {
    &call.state.doors.quotas
}

/// The project a quota route names. Ids go into the stores' keys: one with a `/` names no
/// project there could be.
fn target<'c>(call: &'c Call<'_>, param: &str) -> Result<&'c str, Fault> {
    let id = call.param(param);
    if id.is_empty() || id.contains('/') {
        return Err(Fault::not_found(format!(
            "Project {id} could not be found."
        )));
    }
    Ok(id)
}

/// The limits a quota update sets: `{wrapper: {resource: limit, ...}}`, where a limit is a
/// number or a string of one (Nova and Cinder take both); `flags` are the clients' switches
/// that set nothing (`force`, Neutron's `check_limit`).
fn changes(
    call: &Call<'_>,
    wrapper: &str,
    flags: &[&str],
) -> Result<BTreeMap<String, Limit>, Fault> {
    let mut body: Map<String, Value> = call.json()?;
    let inner = match body.remove(wrapper) {
        Some(Value::Object(inner)) if body.is_empty() => inner,
        _ => {
            return Err(Fault::bad_request(format!(
                "The request body must be {{\"{wrapper}\": {{<resource>: <limit>, ...}}}}."
            )))
        }
    };
    let mut out = BTreeMap::new();
    for (name, value) in inner {
        if flags.contains(&name.as_str()) {
            continue;
        }
        let limit = match &value {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
        .ok_or_else(|| {
            Fault::bad_request(format!(
                "Invalid input for field/attribute {name}. Value: {value}. It must be an integer."
            ))
        })?;
        out.insert(name, limit);
    }
    Ok(out)
}

/// `{resource: limit, ...}` (with `id` when given).
fn plain(limits: &[(&'static str, Limit)], id: Option<&str>) -> Value {
    let mut out: Map<String, Value> = limits
        .iter()
        .map(|&(n, l)| (n.to_owned(), json!(l)))
        .collect();
    if let Some(id) = id {
        out.insert("id".into(), json!(id));
    }
    Value::Object(out)
}

/// `{resource: {limit, <used_key>: n, reserved: 0, ...extra}, ...}`, as each service details its
/// quotas (Nova and Cinder `in_use`, Neutron `used`).
fn detailed(
    limits: &[(&'static str, Limit)],
    usage: &BTreeMap<&'static str, i64>,
    used_key: &str,
    extra: &[(&str, i64)],
) -> Map<String, Value> {
    limits
        .iter()
        .map(|&(n, l)| {
            let mut d = json!({"limit": l, "reserved": 0});
            d[used_key] = json!(usage.get(n).copied().unwrap_or(0));
            for &(k, v) in extra {
                d[k] = json!(v);
            }
            (n.to_owned(), d)
        })
        .collect()
}

// Nova.

const NOVA_SHOW: &str = "os_compute_api:os-quota-sets:show";
const NOVA_UPDATE: &str = "os_compute_api:os-quota-sets:update";
const NOVA_DELETE: &str = "os_compute_api:os-quota-sets:delete";
const NOVA_DEFAULTS: &str = "os_compute_api:os-quota-sets:defaults";

/// Before 2.36 Nova's quota sets and limits also show the network quotas it proxied, and
/// before 2.57 the quotas of personality files.
const NETWORK_PROXIES_GONE: ApiVersion = ApiVersion::new(2, 36);
const IMAGE_PROXY_GONE: ApiVersion = ApiVersion::new(2, 39);
const PERSONALITY_GONE: ApiVersion = ApiVersion::new(2, 57);

fn nova_version(call: &Call<'_>) -> ApiVersion {
    call.version.unwrap_or(COMPUTE.min)
}

/// The legacy resources a quota set has at the request's microversion, from the state they
/// describe: security groups and rules are Neutron's limits, floating IPs 0 (none are
/// served), fixed IPs unlimited (ports are Neutron's to count), personality files 0 (not
/// served). `network` is Neutron's limits (or defaults) for the project.
fn nova_legacy(call: &Call<'_>, network: &[(&'static str, Limit)]) -> Vec<(&'static str, Limit)> {
    let v = nova_version(call);
    let mut out = Vec::new();
    if v < NETWORK_PROXIES_GONE {
        let neutron = |n: &str| network.iter().find(|(r, _)| *r == n).map_or(0, |&(_, l)| l);
        out.extend([
            ("floating_ips", 0),
            ("fixed_ips", UNLIMITED),
            ("security_groups", neutron("security_group")),
            ("security_group_rules", neutron("security_group_rule")),
        ]);
    }
    if v < PERSONALITY_GONE {
        out.extend([
            ("injected_files", 0),
            ("injected_file_content_bytes", 0),
            ("injected_file_path_bytes", 0),
        ]);
    }
    out
}

/// The project's Nova limits at the request's microversion (legacy resources included).
fn nova_limits_of(call: &Call<'_>, project: &str) -> Result<Vec<(&'static str, Limit)>, Fault> {
    let q = quotas(call);
    let mut limits = q.limits_for(call.ctx(), project, Service::Compute, NOVA_SHOW)?;
    let network = q.limits_for(call.ctx(), project, Service::Network, NOVA_SHOW)?;
    limits.extend(nova_legacy(call, &network));
    Ok(limits)
}

pub fn nova_show(call: &Call<'_>) -> Result<Reply, Fault> {
    let project = target(call, "project_id")?;
    let limits = nova_limits_of(call, project)?;
    Ok(Reply::ok(
        json!({ "quota_set": plain(&limits, Some(project)) }),
    ))
}

pub fn nova_detail(call: &Call<'_>) -> Result<Reply, Fault> {
    let project = target(call, "project_id")?;
    let limits = nova_limits_of(call, project)?;
    let mut usage = quota::usage::compute(&call.state.doors, project, &call.ctx().user_id)?;
    let network = call.state.network.quota_usage(project)?;
    usage.insert(
        "security_groups",
        network.get("security_group").copied().unwrap_or(0),
    );
    let rules = network.get("security_group_rule").copied().unwrap_or(0);
    usage.insert("security_group_rules", rules);
    let mut body = detailed(&limits, &usage, "in_use", &[]);
    body.insert("id".into(), json!(project));
    Ok(Reply::ok(json!({ "quota_set": body })))
}

pub fn nova_defaults(call: &Call<'_>) -> Result<Reply, Fault> {
    let project = target(call, "project_id")?;
    let q = quotas(call);
    let mut limits = q.defaults_for(call.ctx(), project, Service::Compute, NOVA_DEFAULTS)?;
    let network = q.defaults_for(call.ctx(), project, Service::Network, NOVA_DEFAULTS)?;
    limits.extend(nova_legacy(call, &network));
    Ok(Reply::ok(
        json!({ "quota_set": plain(&limits, Some(project)) }),
    ))
}

pub fn nova_update(call: &Call<'_>) -> Result<Reply, Fault> {
    let project = target(call, "project_id")?;
    let changes = changes(call, "quota_set", &["force"])?;
    let limits = quotas(call).set(call.ctx(), project, Service::Compute, &changes, NOVA_UPDATE)?;
    Ok(Reply::ok(json!({ "quota_set": plain(&limits, None) })))
}

pub fn nova_delete(call: &Call<'_>) -> Result<Reply, Fault> {
    let project = target(call, "project_id")?;
    quotas(call).reset(call.ctx(), project, Service::Compute, NOVA_DELETE)?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

/// `GET /limits`: the caller's project's absolute limits and usage (an admin may name another
/// project with `tenant_id`); Nova has had no rate limits since Liberty.
pub fn nova_limits(call: &Call<'_>) -> Result<Reply, Fault> {
    let ctx = call.ctx();
    let own = ctx.project_id.as_deref().unwrap_or_default();
    let project = match call.query("tenant_id") {
        Some(p) if ctx.is_admin() => p,
        _ => own,
    };
    let limits = nova_limits_of(call, project)?;
    let usage = quota::usage::compute(&call.state.doors, project, &ctx.user_id)?;
    let limit = |n: &str| {
        limits
            .iter()
            .find(|(r, _)| *r == n)
            .map_or(UNLIMITED, |&(_, l)| l)
    };
    let used = |n: &str| usage.get(n).copied().unwrap_or(0);
    let mut absolute = json!({
        "maxTotalInstances": limit("instances"),
        "maxTotalCores": limit("cores"),
        "maxTotalRAMSize": limit("ram"),
        "maxServerMeta": limit("metadata_items"),
        "maxTotalKeypairs": limit("key_pairs"),
        "maxServerGroups": limit("server_groups"),
        "maxServerGroupMembers": limit("server_group_members"),
        "totalInstancesUsed": used("instances"),
        "totalCoresUsed": used("cores"),
        "totalRAMUsed": used("ram"),
        "totalServerGroupsUsed": used("server_groups"),
    });
    let v = nova_version(call);
    if v < NETWORK_PROXIES_GONE {
        let groups = call.state.network.quota_usage(project)?;
        absolute["maxSecurityGroups"] = json!(limit("security_groups"));
        absolute["maxSecurityGroupRules"] = json!(limit("security_group_rules"));
        absolute["maxTotalFloatingIps"] = json!(limit("floating_ips"));
        absolute["totalFloatingIpsUsed"] = json!(0);
        absolute["totalSecurityGroupsUsed"] =
            json!(groups.get("security_group").copied().unwrap_or(0));
    }
    if v < PERSONALITY_GONE {
        absolute["maxPersonality"] = json!(limit("injected_files"));
        absolute["maxPersonalitySize"] = json!(limit("injected_file_content_bytes"));
    }
    // Nova's image metadata limit is its `metadata_items` quota; gone with image proxies in 2.39.
    if v < IMAGE_PROXY_GONE {
        absolute["maxImageMeta"] = json!(limit("metadata_items"));
    }
    Ok(Reply::ok(
        json!({ "limits": { "rate": [], "absolute": absolute }}),
    ))
}

// Cinder.

const CINDER_SHOW: &str = "volume_extension:quotas:show";
const CINDER_UPDATE: &str = "volume_extension:quotas:update";
const CINDER_DELETE: &str = "volume_extension:quotas:delete";

/// Cinder's URL names the caller's project first; only that one is served here.
fn cinder_caller(call: &Call<'_>) -> Result<(), Fault> {
    let in_url = call.param("project_id");
    if call.ctx().project_id.as_deref() != Some(in_url) {
        return Err(Fault::bad_request(format!(
            "Malformed request url: the project_id {in_url:?} in the URL is not the project \
             of the token"
        )));
    }
    Ok(())
}

pub fn cinder_show(call: &Call<'_>) -> Result<Reply, Fault> {
    cinder_caller(call)?;
    let project = target(call, "target_project_id")?;
    let limits = quotas(call).limits_for(call.ctx(), project, Service::Volume, CINDER_SHOW)?;
    let usage = match call.query("usage") {
        None => false,
        Some(v) => super::volume::flag("usage", v)?,
    };
    if !usage {
        return Ok(Reply::ok(
            json!({ "quota_set": plain(&limits, Some(project)) }),
        ));
    }
    let used = quota::usage::volume(&call.state.doors, project)?;
    let mut body = detailed(&limits, &used, "in_use", &[("allocated", 0)]);
    body.insert("id".into(), json!(project));
    Ok(Reply::ok(json!({ "quota_set": body })))
}

pub fn cinder_defaults(call: &Call<'_>) -> Result<Reply, Fault> {
    cinder_caller(call)?;
    let project = target(call, "target_project_id")?;
    let limits = quotas(call).defaults_for(call.ctx(), project, Service::Volume, CINDER_SHOW)?;
    Ok(Reply::ok(
        json!({ "quota_set": plain(&limits, Some(project)) }),
    ))
}

pub fn cinder_update(call: &Call<'_>) -> Result<Reply, Fault> {
    cinder_caller(call)?;
    let project = target(call, "target_project_id")?;
    let changes = changes(call, "quota_set", &[])?;
    let limits = quotas(call).set(
        call.ctx(),
        project,
        Service::Volume,
        &changes,
        CINDER_UPDATE,
    )?;
    Ok(Reply::ok(json!({ "quota_set": plain(&limits, None) })))
}

pub fn cinder_delete(call: &Call<'_>) -> Result<Reply, Fault> {
    cinder_caller(call)?;
    let project = target(call, "target_project_id")?;
    quotas(call).reset(call.ctx(), project, Service::Volume, CINDER_DELETE)?;
    Ok(Reply::empty(StatusCode::OK))
}

/// `GET /{project_id}/limits`: the project's absolute volume limits and usage.
pub fn cinder_limits(call: &Call<'_>) -> Result<Reply, Fault> {
    cinder_caller(call)?;
    let ctx = call.ctx();
    let own = call.param("project_id");
    // Cinder 3.39: an admin may ask for another project's.
    let project = match call.query("project_id") {
        Some(p) if ctx.is_admin() => p,
        _ => own,
    };
    let limits = quotas(call).limits_for(ctx, project, Service::Volume, CINDER_SHOW)?;
    let usage = quota::usage::volume(&call.state.doors, project)?;
    let limit = |n: &str| {
        limits
            .iter()
            .find(|(r, _)| *r == n)
            .map_or(UNLIMITED, |&(_, l)| l)
    };
    let used = |n: &str| usage.get(n).copied().unwrap_or(0);
    Ok(Reply::ok(json!({ "limits": { "rate": [], "absolute": {
        "maxTotalVolumes": limit("volumes"),
        "maxTotalSnapshots": limit("snapshots"),
        "maxTotalVolumeGigabytes": limit("gigabytes"),
        "totalVolumesUsed": used("volumes"),
        "totalSnapshotsUsed": used("snapshots"),
        "totalGigabytesUsed": used("gigabytes"),
    }}})))
}

// Neutron.

const NEUTRON_SHOW: &str = "get_quota";
const NEUTRON_UPDATE: &str = "update_quota";
const NEUTRON_DELETE: &str = "delete_quota";

pub fn neutron_show(call: &Call<'_>) -> Result<Reply, Fault> {
    let project = target(call, "project_id")?;
    let limits = quotas(call).limits_for(call.ctx(), project, Service::Network, NEUTRON_SHOW)?;
    Ok(Reply::ok(json!({ "quota": plain(&limits, None) })))
}

pub fn neutron_details(call: &Call<'_>) -> Result<Reply, Fault> {
    let project = target(call, "project_id")?;
    let limits = quotas(call).limits_for(call.ctx(), project, Service::Network, NEUTRON_SHOW)?;
    let usage = call.state.network.quota_usage(project)?;
    Ok(Reply::ok(
        json!({ "quota": detailed(&limits, &usage, "used", &[]) }),
    ))
}

pub fn neutron_default(call: &Call<'_>) -> Result<Reply, Fault> {
    let project = target(call, "project_id")?;
    let limits = quotas(call).defaults_for(call.ctx(), project, Service::Network, NEUTRON_SHOW)?;
    Ok(Reply::ok(json!({ "quota": plain(&limits, None) })))
}

pub fn neutron_update(call: &Call<'_>) -> Result<Reply, Fault> {
    let project = target(call, "project_id")?;
    let changes = changes(call, "quota", &["force", "check_limit"])?;
    let limits = quotas(call).set(
        call.ctx(),
        project,
        Service::Network,
        &changes,
        NEUTRON_UPDATE,
    )?;
    Ok(Reply::ok(json!({ "quota": plain(&limits, None) })))
}

pub fn neutron_delete(call: &Call<'_>) -> Result<Reply, Fault> {
    let project = target(call, "project_id")?;
    quotas(call).reset(call.ctx(), project, Service::Network, NEUTRON_DELETE)?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}
