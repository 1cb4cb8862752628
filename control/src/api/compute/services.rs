//! Nova's `os-services` and `os-hypervisors`: one nova-compute service and one hypervisor per
//! box of the site (crate::cluster::site), up or down, enabled or disabled, with its vCPUs,
//! RAM and disk, total and used. Admin only, as in Nova's default policy. From microversion
//! 2.53 services and hypervisors are named by UUID and a service is updated with
//! `PUT /os-services/{service_id}`; before it, by integer ids and the `enable`, `disable`
//! and `disable-log-reason` actions.

use serde::Deserialize;
use serde_json::{json, Value};

use super::version;
use crate::api::microversion::ApiVersion;
use crate::api::{Call, Fault, Reply};
use crate::cluster::site::{BoxView, SiteError};
use crate::compute::aggregates::Aggregate;

const UUID_IDS: ApiVersion = ApiVersion::new(2, 53);
const FORCED_DOWN: ApiVersion = ApiVersion::new(2, 11);
const BINARY: &str = "nova-compute";

fn admin(call: &Call<'_>, rule: &str) -> Result<(), Fault> {
    if call.ctx().is_admin() {
        Ok(())
    } else {
        Err(Fault::forbidden(format!(
            "Policy doesn't allow os_compute_api:{rule} to be performed."
        )))
    }
}

/// Runs a site call from a handler (on the runtime's blocking pool, or, in tests, on a
/// thread of no runtime).
fn run<T>(f: impl std::future::Future<Output = Result<T, SiteError>>) -> Result<T, Fault> {
    let result = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(f),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Fault::internal)?
            .block_on(f),
    };
    result.map_err(site_fault)
}

pub(crate) fn boxes(call: &Call<'_>) -> Result<Vec<BoxView>, Fault> {
    let site = call.state.site.clone();
    run(async move { site.boxes().await })
}

fn site_fault(e: SiteError) -> Fault {
    match e {
        SiteError::NoSuchBox(name) => {
            Fault::not_found(format!("Compute host {name} could not be found."))
        }
        SiteError::Cluster(crate::cluster::ClusterError::NoSuchBox(name)) => {
            Fault::not_found(format!("Compute host {name} could not be found."))
        }
        SiteError::Cluster(crate::cluster::ClusterError::Conflict(name)) => Fault::conflict(
            format!("The service of {name} changed meanwhile; try again."),
        ),
        other => Fault::internal(other),
    }
}

/// Ids before 2.53: the box's place in name order, from 1.
fn id(call: &Call<'_>, index: usize, uuid: &str) -> Value {
    if version(call) >= UUID_IDS {
        json!(uuid)
    } else {
        json!(index + 1)
    }
}

/// The host aggregates, whose zones are the services' (read once per request).
fn aggregates(call: &Call<'_>) -> Result<Vec<Aggregate>, Fault> {
    Ok(call.state.doors.aggregates.aggregates()?)
}

fn service_view(call: &Call<'_>, index: usize, b: &BoxView, aggregates: &[Aggregate]) -> Value {
    let zone = crate::compute::aggregates::zone_of(
        aggregates,
        &b.record.name,
        &b.record.availability_zone,
    );
    let mut v = json!({
        "id": id(call, index, &b.record.service_id),
        "binary": BINARY,
        "host": b.record.name,
        "zone": zone,
        "status": if b.record.enabled { "enabled" } else { "disabled" },
        "state": if b.up { "up" } else { "down" },
        "updated_at": b.updated_at,
        "disabled_reason": b.record.disabled_reason,
    });
    if version(call) >= FORCED_DOWN {
        v["forced_down"] = json!(false);
    }
    v
}

/// `GET /os-services` (filters `host` and `binary`).
pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    admin(call, "os-services:list")?;
    let host = call.query("host");
    let binary = call.query("binary");
    let aggregates = aggregates(call)?;
    let services: Vec<Value> = boxes(call)?
        .iter()
        .enumerate()
        .filter(|(_, b)| host.is_none_or(|h| h == b.record.name))
        .filter(|_| binary.is_none_or(|b| b == BINARY))
        .map(|(i, b)| service_view(call, i, b, &aggregates))
        .collect();
    Ok(Reply::ok(json!({ "services": services })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LegacyUpdate {
    host: String,
    binary: String,
    #[serde(default)]
    disabled_reason: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    disabled_reason: Option<String>,
    #[serde(default)]
    forced_down: Option<bool>,
}

/// `PUT /os-services/{service_id}`: from 2.53 the service's UUID with a body of `status`,
/// `disabled_reason` and `forced_down`; before, `enable`, `disable` or `disable-log-reason`
/// with a body naming the host and binary.
pub fn update(call: &Call<'_>) -> Result<Reply, Fault> {
    admin(call, "os-services:update")?;
    let target = call.param("service_id");
    if version(call) < UUID_IDS {
        let body: LegacyUpdate = call.json()?;
        if body.binary != BINARY {
            return Err(Fault::not_found(format!(
                "Service {} could not be found on host {}.",
                body.binary, body.host
            )));
        }
        let (enabled, reason) = match target {
            "enable" => (true, None),
            "disable" => (false, None),
            "disable-log-reason" => match body.disabled_reason {
                Some(r) if (1..=255).contains(&r.trim().len()) => (false, Some(r)),
                _ => {
                    return Err(Fault::bad_request(
                        "Missing disabled reason field (1 to 255 characters)",
                    ))
                }
            },
            other => return Err(Fault::not_found(format!("Unknown action {other}"))),
        };
        let record = set_enabled(call, &body.host, enabled, reason)?;
        let mut service = json!({
            "host": record.name,
            "binary": BINARY,
            "status": if record.enabled { "enabled" } else { "disabled" },
        });
        if let Some(r) = record.disabled_reason {
            service["disabled_reason"] = json!(r);
        }
        return Ok(Reply::ok(json!({ "service": service })));
    }
    let body: Update = call.json()?;
    if body.forced_down == Some(true) {
        return Err(Fault::bad_request(
            "forced_down is not supported: a box's state follows its lease in etcd",
        ));
    }
    let all = boxes(call)?;
    let Some(b) = all.iter().find(|b| b.record.service_id == target) else {
        return Err(Fault::not_found(format!(
            "Service {target} could not be found."
        )));
    };
    let enabled = match body.status.as_deref() {
        Some("enabled") => true,
        Some("disabled") => false,
        None if body.disabled_reason.is_none() => b.record.enabled,
        None => return Err(Fault::bad_request(
            "Specifying 'disabled_reason' with status 'enabled' or without a status is invalid.",
        )),
        Some(other) => {
            return Err(Fault::bad_request(format!(
                "Invalid input for field/attribute status. Value: {other}. It must be one of \
                 enabled, disabled."
            )))
        }
    };
    if enabled && body.disabled_reason.is_some() {
        return Err(Fault::bad_request(
            "Specifying 'disabled_reason' with status 'enabled' is invalid.",
        ));
    }
    let name = b.record.name.clone();
    set_enabled(call, &name, enabled, body.disabled_reason)?;
    let all = boxes(call)?;
    let (i, b) = all
        .iter()
        .enumerate()
        .find(|(_, b)| b.record.name == name)
        .ok_or_else(|| Fault::not_found(format!("Service {target} could not be found.")))?;
    Ok(Reply::ok(
        json!({ "service": service_view(call, i, b, &aggregates(call)?) }),
    ))
}

fn set_enabled(
    call: &Call<'_>,
    host: &str,
    enabled: bool,
    reason: Option<String>,
) -> Result<crate::cluster::records::BoxRecord, Fault> {
    let site = call.state.site.clone();
    let host = host.to_owned();
    run(async move { site.set_enabled(&host, enabled, reason).await })
}

fn hypervisor_summary(call: &Call<'_>, index: usize, b: &BoxView) -> Value {
    json!({
        "id": id(call, index, &b.record.hypervisor_id),
        "hypervisor_hostname": b.record.name,
        "state": if b.up { "up" } else { "down" },
        "status": if b.record.enabled { "enabled" } else { "disabled" },
    })
}

fn hypervisor_detail(call: &Call<'_>, index: usize, b: &BoxView) -> Value {
    let mut v = hypervisor_summary(call, index, b);
    let free_ram = b.total.ram_mb.saturating_sub(b.used.ram_mb);
    let free_disk = b.total.disk_gb.saturating_sub(b.used.disk_gb);
    let extra = json!({
        "hypervisor_type": "KVM",
        "hypervisor_version": 1,
        "host_ip": b.record.underlay,
        "vcpus": b.total.vcpus,
        "vcpus_used": b.used.vcpus,
        "memory_mb": b.total.ram_mb,
        "memory_mb_used": b.used.ram_mb,
        "free_ram_mb": free_ram,
        "local_gb": b.total.disk_gb,
        "local_gb_used": b.used.disk_gb,
        "free_disk_gb": free_disk,
        "disk_available_least": free_disk,
        "running_vms": b.running_vms,
        "current_workload": 0,
        "cpu_info": "{}",
        "service": {
            "host": b.record.name,
            "id": id(call, index, &b.record.service_id),
            "disabled_reason": b.record.disabled_reason,
        },
    });
    if let (Some(v), Some(extra)) = (v.as_object_mut(), extra.as_object()) {
        v.extend(extra.clone());
    }
    v
}

/// `GET /os-hypervisors`.
pub fn hypervisors(call: &Call<'_>) -> Result<Reply, Fault> {
    admin(call, "os-hypervisors:list")?;
    let list: Vec<Value> = boxes(call)?
        .iter()
        .enumerate()
        .map(|(i, b)| hypervisor_summary(call, i, b))
        .collect();
    Ok(Reply::ok(json!({ "hypervisors": list })))
}

/// `GET /os-hypervisors/detail`.
pub fn hypervisors_detail(call: &Call<'_>) -> Result<Reply, Fault> {
    admin(call, "os-hypervisors:list-detail")?;
    let list: Vec<Value> = boxes(call)?
        .iter()
        .enumerate()
        .map(|(i, b)| hypervisor_detail(call, i, b))
        .collect();
    Ok(Reply::ok(json!({ "hypervisors": list })))
}

/// `GET /os-hypervisors/{hypervisor_id}`.
pub fn hypervisor(call: &Call<'_>) -> Result<Reply, Fault> {
    admin(call, "os-hypervisors:show")?;
    let wanted = call.param("hypervisor_id");
    let all = boxes(call)?;
    let found = all.iter().enumerate().find(|(i, b)| {
        if version(call) >= UUID_IDS {
            b.record.hypervisor_id == wanted
        } else {
            wanted.parse::<usize>().ok() == Some(i + 1)
        }
    });
    match found {
        Some((i, b)) => Ok(Reply::ok(
            json!({ "hypervisor": hypervisor_detail(call, i, b) }),
        )),
        None => Err(Fault::not_found(format!(
            "Hypervisor with ID {wanted} could not be found."
        ))),
    }
}
