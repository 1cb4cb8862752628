//! The query of `GET /servers` and `/servers/detail`: Nova's filters (`name` as a regular
//! expression, `status`, `all_tenants`, `project_id`, `flavor`, `image`, `host`, `ip`),
//! paging, and from 2.75 a 400 for a parameter Nova does not know.

use super::version;
use crate::api::microversion::ApiVersion;
use crate::api::{Call, Fault};
use crate::compute::servers::{state, ServerQuery};

const STRICT_STATUS: ApiVersion = ApiVersion::new(2, 38);
const STRICT_QUERY: ApiVersion = ApiVersion::new(2, 75);

/// Nova's list parameters (its 2.75 schema). Those marked here as filtering are applied;
/// the others are accepted and, like Nova does for filters a caller may not use, ignored.
const KNOWN_PARAMETERS: &[&str] = &[
    "user_id",
    "project_id",
    "tenant_id",
    "launch_index",
    "image_ref",
    "image",
    "kernel_id",
    "ramdisk_id",
    "hostname",
    "key_name",
    "power_state",
    "vm_state",
    "task_state",
    "host",
    "node",
    "flavor",
    "reservation_id",
    "launched_at",
    "terminated_at",
    "availability_zone",
    "name",
    "display_name",
    "description",
    "display_description",
    "locked_by",
    "uuid",
    "root_device_name",
    "config_drive",
    "access_ip_v4",
    "access_ip_v6",
    "auto_disk_config",
    "progress",
    "sort_key",
    "sort_dir",
    "all_tenants",
    "soft_deleted",
    "deleted",
    "status",
    "changes-since",
    "changes-before",
    "ip",
    "ip6",
    "created_at",
    "block_device_mapping",
    "services",
    "metadata",
    "system_metadata",
    "info_cache",
    "security_groups",
    "pci_devices",
    "limit",
    "marker",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
    "locked",
];

/// oslo's strict bool_from_string.
fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

/// The list query; None when it can match nothing.
pub fn parse(call: &Call<'_>) -> Result<Option<ServerQuery>, Fault> {
    let v = version(call);
    if v >= STRICT_QUERY {
        if let Some((k, _)) = call
            .query
            .iter()
            .find(|(k, _)| !KNOWN_PARAMETERS.contains(&k.as_str()))
        {
            return Err(Fault::bad_request(format!(
                "Invalid input for query parameters {k}. Additional properties are not allowed"
            )));
        }
    }
    let mut q = ServerQuery::default();
    if let Some(a) = call.query("all_tenants") {
        q.all_projects = a.is_empty()
            || parse_bool(a).ok_or_else(|| {
                Fault::bad_request(format!("Invalid value '{a}' for all_tenants"))
            })?;
    }
    let admin = call.ctx().is_admin();
    if admin {
        q.project_id = call
            .query("project_id")
            .or_else(|| call.query("tenant_id"))
            .map(str::to_owned);
        // Nova: naming a project implies all_tenants for admins.
        if q.project_id.is_some() && call.query("all_tenants").is_none() {
            q.all_projects = true;
        }
        q.host = call.query("host").map(str::to_owned);
        if call.query("deleted").and_then(parse_bool) == Some(true) {
            // Outpost keeps no deleted servers.
            return Ok(None);
        }
    }
    if let Some(name) = call.query("name") {
        q.name = Some(regex::Regex::new(name).map_err(|e| {
            Fault::bad_request(format!(
                "Invalid regular expression in the name filter: {e}"
            ))
        })?);
    }
    for (k, value) in &call.query {
        if k != "status" {
            continue;
        }
        let upper = value.to_ascii_uppercase();
        if state::STATUSES.contains(&upper.as_str()) {
            q.statuses.push(upper);
        } else if state::OTHER_NOVA_STATUSES.contains(&upper.as_str()) {
            // A status no Outpost server can have: it matches nothing.
            q.statuses.push(upper);
        } else if v >= STRICT_STATUS {
            return Err(Fault::bad_request("Invalid status value"));
        } else {
            return Ok(None);
        }
    }
    q.flavor = call.query("flavor").map(str::to_owned);
    q.image = call.query("image").map(str::to_owned);
    // Nova matches `ip` and `ip6` as regular expressions against the servers' addresses.
    for (param, version) in [("ip", 4), ("ip6", 6)] {
        if let Some(pattern) = call.query(param) {
            let re = regex::Regex::new(pattern).map_err(|e| {
                Fault::bad_request(format!(
                    "Invalid regular expression in the {param} filter: {e}"
                ))
            })?;
            q.addresses.push((version, re));
        }
    }
    if call.query("changes-since").is_some() || call.query("changes-before").is_some() {
        return Err(Fault::bad_request(
            "changes-since and changes-before are not supported by this appliance yet.",
        ));
    }
    q.limit = match call.query("limit") {
        None => None,
        Some(l) => match l.parse::<i64>() {
            Ok(n) if n < 0 => return Err(Fault::bad_request("limit param must be positive")),
            Ok(0) => Some(0),
            Ok(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Err(_) => return Err(Fault::bad_request("limit param must be an integer")),
        },
    };
    if q.limit == Some(0) {
        return Ok(None);
    }
    q.marker = call.query("marker").map(str::to_owned);
    Ok(Some(q))
}
