//! `/compute/v2.1/servers`: create, list, detail, show, delete. The create body follows
//! Nova's schema per microversion (`networks` required from 2.37, `description` from 2.19,
//! `tags` from 2.52, `personality` gone from 2.57, `host` from 2.74); list queries are
//! parsed by [`super::server_query`].

use super::{present, server_query, server_views as views, version};
use crate::api::microversion::ApiVersion;
use crate::api::{Call, Fault, Reply};
use crate::compute::servers::block_devices::{BlockDeviceRequest, RequestedSource};
use crate::compute::servers::{self, NetworkRequest, Networks, NewServer, Server};
use crate::random;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

const DESCRIPTION: ApiVersion = ApiVersion::new(2, 19);
const NETWORKS_REQUIRED: ApiVersion = ApiVersion::new(2, 37);
const TAGS: ApiVersion = ApiVersion::new(2, 52);
const NO_PERSONALITY: ApiVersion = ApiVersion::new(2, 57);
const TRUSTED_CERTS: ApiVersion = ApiVersion::new(2, 63);
const REQUESTED_HOST: ApiVersion = ApiVersion::new(2, 74);
/// From 2.75 an update answers with everything a show does; before, with the base view.
const FULL_UPDATE_VIEW: ApiVersion = ApiVersion::new(2, 75);

/// Whether `key` of a server's show view is also in Nova's update answer before 2.75: the
/// extended attributes (`OS-EXT-*`, usage times, attached volumes), key name, config drive,
/// security groups and host status are only shown.
fn in_base_update_view(key: &str) -> bool {
    !(key.starts_with("OS-EXT-")
        || key.starts_with("OS-SRV-USG:")
        || key.starts_with("os-extended-volumes:")
        || matches!(
            key,
            "config_drive"
                | "key_name"
                | "security_groups"
                | "host_status"
                | "trusted_image_certificates"
        ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    server: ServerCreate,
    #[serde(rename = "os:scheduler_hints", default)]
    hints: Option<Map<String, Value>>,
    #[serde(rename = "OS-SCH-HNT:scheduler_hints", default)]
    legacy_hints: Option<Map<String, Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerCreate {
    name: String,
    #[serde(rename = "imageRef")]
    image_ref: Option<String>,
    #[serde(rename = "flavorRef")]
    flavor_ref: Value,
    networks: Option<Value>,
    block_device_mapping_v2: Option<Vec<BlockDeviceMapping>>,
    block_device_mapping: Option<Vec<Value>>,
    metadata: Option<BTreeMap<String, String>>,
    user_data: Option<String>,
    key_name: Option<String>,
    #[serde(rename = "adminPass")]
    admin_pass: Option<String>,
    availability_zone: Option<String>,
    config_drive: Option<Value>,
    #[serde(rename = "OS-DCF:diskConfig")]
    disk_config: Option<String>,
    security_groups: Option<Vec<SecurityGroupRef>>,
    min_count: Option<Value>,
    max_count: Option<Value>,
    return_reservation_id: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    tags: Option<Vec<String>>,
    trusted_image_certificates: Option<Value>,
    host: Option<String>,
    hypervisor_hostname: Option<String>,
    personality: Option<Value>,
    #[serde(rename = "accessIPv4")]
    access_ipv4: Option<String>,
    #[serde(rename = "accessIPv6")]
    access_ipv6: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityGroupRef {
    name: String,
}

/// One entry of `block_device_mapping_v2`, as Nova's schema has it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BlockDeviceMapping {
    boot_index: Option<Value>,
    uuid: Option<String>,
    source_type: Option<String>,
    destination_type: Option<String>,
    volume_size: Option<Value>,
    delete_on_termination: Option<Value>,
    device_name: Option<String>,
    volume_type: Option<String>,
    tag: Option<String>,
    disk_bus: Option<String>,
    device_type: Option<String>,
    guest_format: Option<String>,
    no_device: Option<Value>,
    volume_id: Option<String>,
    snapshot_id: Option<String>,
    image_id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkEntry {
    uuid: Option<String>,
    port: Option<String>,
    fixed_ip: Option<String>,
    tag: Option<String>,
}

fn unexpected(field: &str, since: &str) -> Fault {
    Fault::bad_request(format!(
        "Invalid input for field/attribute server. Additional properties are not allowed \
         ('{field}' was unexpected{since})"
    ))
}

fn networks(v: Option<Value>, version: ApiVersion) -> Result<Networks, Fault> {
    let Some(v) = v else {
        if version >= NETWORKS_REQUIRED {
            return Err(Fault::bad_request(
                "Invalid input for field/attribute server. 'networks' is a required property",
            ));
        }
        return Ok(Networks::Auto);
    };
    match v {
        Value::String(s) if version >= NETWORKS_REQUIRED && s == "auto" => Ok(Networks::Auto),
        Value::String(s) if version >= NETWORKS_REQUIRED && s == "none" => Ok(Networks::None),
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                let e: NetworkEntry = serde_json::from_value(item).map_err(|e| {
                    Fault::bad_request(format!("Invalid input for field/attribute networks: {e}"))
                })?;
                let _ = e.tag;
                out.push(NetworkRequest {
                    uuid: e.uuid,
                    port: e.port,
                    fixed_ip: e.fixed_ip,
                });
            }
            Ok(Networks::List(out))
        }
        other => Err(Fault::bad_request(format!(
            "Invalid input for field/attribute networks. Value: {other}. It must be a list{}",
            if version >= NETWORKS_REQUIRED {
                ", \"auto\" or \"none\""
            } else {
                ""
            }
        ))),
    }
}

/// Nova's boolean parameter: JSON booleans and the usual spellings of them.
fn flag(field: &str, v: &Value) -> Result<bool, Fault> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" | "t" | "y" => Ok(true),
            "false" | "0" | "no" | "off" | "f" | "n" => Ok(false),
            _ => Err(bad_mapping(field, v)),
        },
        Value::Number(n) if n.as_i64() == Some(1) => Ok(true),
        Value::Number(n) if n.as_i64() == Some(0) => Ok(false),
        _ => Err(bad_mapping(field, v)),
    }
}

/// An integer given as a JSON number or a string of digits (Nova's schema takes both).
fn integer(field: &str, v: &Value) -> Result<i64, Fault> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| bad_mapping(field, v))
}

fn bad_mapping(field: &str, v: &Value) -> Fault {
    Fault::bad_request(format!(
        "Invalid input for field/attribute {field}. Value: {v}."
    ))
}

/// `block_device_mapping_v2`, checked against Nova's schema: the image a mapping boots
/// as a local disk (what imageRef does), and the volumes asked for. Whether they exist and
/// fit is the create's business ([`servers::block_devices::plan`]).
fn block_devices(
    mappings: Vec<BlockDeviceMapping>,
) -> Result<(Option<String>, Vec<BlockDeviceRequest>), Fault> {
    let mut image = None;
    let mut out = Vec::with_capacity(mappings.len());
    for m in mappings {
        // Accepted and meaningless here: one bus (virtio), the guest names its disks.
        let _ = (
            &m.device_name,
            &m.volume_type,
            &m.tag,
            &m.disk_bus,
            &m.device_type,
        );
        if m.no_device
            .as_ref()
            .is_some_and(|v| flag("no_device", v).unwrap_or(false))
        {
            continue;
        }
        if m.guest_format.is_some() {
            return Err(Fault::bad_request(
                "Block Device Mapping is Invalid: guest_format is only for local disks, which \
                 this appliance does not make.",
            ));
        }
        let source = m.source_type.as_deref().unwrap_or("blank");
        let destination = m.destination_type.as_deref().unwrap_or("volume");
        let boot = match &m.boot_index {
            None | Some(Value::Null) => false,
            Some(v) => integer("boot_index", v)? == 0,
        };
        let size = m
            .volume_size
            .as_ref()
            .map(|v| integer("volume_size", v))
            .transpose()?;
        let delete_on_termination = m
            .delete_on_termination
            .as_ref()
            .map(|v| flag("delete_on_termination", v))
            .transpose()?
            .unwrap_or(false);
        let uuid = |legacy: Option<String>| {
            m.uuid
                .clone()
                .or(legacy)
                .filter(|u| !u.is_empty())
                .ok_or_else(|| {
                    Fault::bad_request(format!(
                    "Block Device Mapping is Invalid: a mapping with source_type {source} needs \
                     a uuid."
                ))
                })
        };
        let requested = match (source, destination) {
            ("image", "local") if boot => {
                image = Some(uuid(m.image_id.clone())?);
                continue;
            }
            (_, "local") => {
                return Err(Fault::bad_request(
                    "Block Device Mapping is Invalid: local disks other than the boot image \
                     (ephemeral, swap) are not supported by this appliance; use \
                     destination_type volume.",
                ))
            }
            ("volume", "volume") => RequestedSource::Volume(uuid(m.volume_id.clone())?),
            ("image", "volume") => RequestedSource::Image(uuid(m.image_id.clone())?),
            ("snapshot", "volume") => RequestedSource::Snapshot(uuid(m.snapshot_id.clone())?),
            ("blank", "volume") => RequestedSource::Blank,
            ("volume" | "image" | "snapshot" | "blank", other) => {
                return Err(Fault::bad_request(format!(
                    "Invalid input for field/attribute destination_type. Value: {other}. \
                     '{other}' is not one of ['local', 'volume']"
                )))
            }
            (other, _) => {
                return Err(Fault::bad_request(format!(
                    "Invalid input for field/attribute source_type. Value: {other}. '{other}' \
                     is not one of ['volume', 'image', 'snapshot', 'blank']"
                )))
            }
        };
        out.push(BlockDeviceRequest {
            source: requested,
            volume_size: size,
            boot,
            delete_on_termination,
        });
    }
    Ok((image, out))
}

fn reference(v: &Value, field: &str) -> Result<String, Fault> {
    match v {
        Value::String(s) if !s.is_empty() => Ok(s.clone()),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(Fault::bad_request(format!(
            "Invalid input for field/attribute {field}. Value: {other}."
        ))),
    }
}

/// The create body as a [`NewServer`] and the `adminPass` it asked for, if any.
fn parse_create(call: &Call<'_>) -> Result<(NewServer, Option<String>), Fault> {
    let body: CreateBody = call.json()?;
    let v = version(call);
    let mut same_host = Vec::new();
    let mut different_host = Vec::new();
    let mut group = None;
    for hints in [&body.hints, &body.legacy_hints].into_iter().flatten() {
        for (name, value) in hints {
            match name.as_str() {
                "same_host" => same_host.extend(server_ids(name, value)?),
                "different_host" => different_host.extend(server_ids(name, value)?),
                "group" => group = Some(group_id(value)?),
                // Nova passes hints no filter reads to the filters, which ignore them.
                _ => {}
            }
        }
    }
    let b = body.server;
    if b.description.is_some() && v < DESCRIPTION {
        return Err(unexpected("description", " before microversion 2.19"));
    }
    if b.tags.is_some() && v < TAGS {
        return Err(unexpected("tags", " before microversion 2.52"));
    }
    if b.trusted_image_certificates.is_some() && v < TRUSTED_CERTS {
        return Err(unexpected(
            "trusted_image_certificates",
            " before microversion 2.63",
        ));
    }
    if (b.host.is_some() || b.hypervisor_hostname.is_some()) && v < REQUESTED_HOST {
        return Err(unexpected("host", " before microversion 2.74"));
    }
    if b.personality.is_some() {
        return Err(if v >= NO_PERSONALITY {
            unexpected("personality", "")
        } else {
            Fault::bad_request("File injection (personality) is not supported.")
        });
    }
    if b.tags.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(Fault::bad_request(
            "Server tags are not supported by this appliance yet.",
        ));
    }
    if b.trusted_image_certificates
        .as_ref()
        .is_some_and(|c| !c.is_null())
    {
        return Err(Fault::bad_request(
            "Image signature certificate validation is not supported by this appliance.",
        ));
    }
    let count = |name: &str, value: &Option<Value>| -> Result<Option<usize>, Fault> {
        let Some(v) = value else {
            return Ok(None);
        };
        let n = integer(name, v)?;
        usize::try_from(n)
            .ok()
            .filter(|n| *n >= 1)
            .map(Some)
            .ok_or_else(|| {
                Fault::bad_request(format!(
                    "Invalid input for field/attribute {name}. Value: {v}. {v} is less than \
                     the minimum of 1"
                ))
            })
    };
    // Nova: min_count defaults to 1, max_count to min_count.
    let min_count = count("min_count", &b.min_count)?.unwrap_or(1);
    let max_count = count("max_count", &b.max_count)?.unwrap_or(min_count);
    // return_reservation_id shapes the answer: `create` reads it.
    let _ = (&b.return_reservation_id, &b.access_ipv4, &b.access_ipv6);
    if b.block_device_mapping.is_some() {
        return Err(servers::ServerError::VolumesUnavailable("block_device_mapping").into());
    }
    let (bdm_image, block_devices) = match b.block_device_mapping_v2 {
        Some(m) => block_devices(m)?,
        None => (None, Vec::new()),
    };
    let disk_config = match b.disk_config.as_deref() {
        None => "MANUAL".to_owned(),
        Some(d @ ("AUTO" | "MANUAL")) => d.to_owned(),
        Some(other) => {
            return Err(Fault::bad_request(format!(
                "Invalid input for field/attribute OS-DCF:diskConfig. Value: {other}. It must \
                 be AUTO or MANUAL."
            )))
        }
    };
    let config_drive = match b.config_drive {
        None | Some(Value::Null) => String::new(),
        Some(Value::Bool(true)) => "True".into(),
        Some(Value::Bool(false)) => String::new(),
        Some(Value::String(s)) => s,
        Some(other) => {
            return Err(Fault::bad_request(format!(
                "Invalid input for field/attribute config_drive. Value: {other}."
            )))
        }
    };
    let new = NewServer {
        name: b.name,
        description: b.description.flatten(),
        flavor_ref: reference(&b.flavor_ref, "flavorRef")?,
        image_ref: b.image_ref.filter(|i| !i.is_empty()).or(bdm_image),
        block_devices,
        networks: networks(b.networks, v)?,
        security_groups: b
            .security_groups
            .unwrap_or_default()
            .into_iter()
            .map(|g| g.name)
            .collect(),
        metadata: b.metadata.unwrap_or_default(),
        user_data: b.user_data,
        key_name: b.key_name,
        // Filled in by `create`: the one asked for or a generated one.
        admin_pass: None,
        config_drive,
        disk_config,
        availability_zone: b.availability_zone,
        host: b.host.or(b.hypervisor_hostname),
        same_host,
        different_host,
        group,
        min_count,
        max_count,
    };
    Ok((new, b.admin_pass))
}

/// The `group` hint: one server group's UUID (Nova's schema: a string in UUID format).
fn group_id(value: &Value) -> Result<String, Fault> {
    value
        .as_str()
        .and_then(uuid_like)
        .map(str::to_owned)
        .ok_or_else(|| {
            Fault::bad_request(format!(
                "Invalid input for field/attribute group. Value: {value}. {value} is not a \
                 'uuid'"
            ))
        })
}

/// A `same_host` / `different_host` hint: one server UUID or a list of them.
fn server_ids(hint: &str, value: &Value) -> Result<Vec<String>, Fault> {
    let bad = || {
        Fault::bad_request(format!(
            "Invalid input for field/attribute {hint}. Value: {value}. It must be a server \
             UUID or a list of them."
        ))
    };
    let ids: Vec<String> = match value {
        Value::String(s) => vec![s.clone()],
        Value::Array(list) => list
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(bad))
            .collect::<Result<_, _>>()?,
        _ => return Err(bad()),
    };
    if ids.iter().any(|id| uuid_like(id).is_none()) {
        return Err(bad());
    }
    Ok(ids)
}

/// `id` if it is a UUID in its usual spelling.
fn uuid_like(id: &str) -> Option<&str> {
    let groups: Vec<&str> = id.split('-').collect();
    let shape = [8, 4, 4, 4, 12];
    (groups.len() == 5
        && groups
            .iter()
            .zip(shape)
            .all(|(g, n)| g.len() == n && g.chars().all(|c| c.is_ascii_hexdigit())))
    .then_some(id)
}

/// Answers the first server made (Nova's shape for one and for many), or with
/// `return_reservation_id` the id the servers of the request share.
pub fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    let reservation = return_reservation_id(call)?;
    let (mut new, asked_pass) = parse_create(call)?;
    // Nova's default (`enable_instance_password`): the answer carries the server's admin
    // password, the one asked for or a generated one (one for all the servers of a
    // multi-create, as Nova's). The server keeps it for its guest (the metadata service's
    // and the config drive's `admin_pass`); no view shows it again.
    let admin_pass = match asked_pass {
        Some(p) => p,
        None => random::password().map_err(Fault::internal)?,
    };
    let asked_groups = new.security_groups.clone();
    new.admin_pass = Some(admin_pass.clone());
    let created = servers::create(&call.state.fleet, call.ctx(), new)?;
    if reservation {
        return Ok(Reply::json(
            StatusCode::ACCEPTED,
            json!({"reservation_id": created.reservation_id}),
        ));
    }
    let Some(s) = created.servers.first() else {
        return Err(Fault::internal("a create answered no server"));
    };
    let base = &call.state.base_url;
    let mut view = views::created(s, base, &asked_groups);
    view["adminPass"] = json!(admin_pass);
    Ok(Reply::json(StatusCode::ACCEPTED, json!({"server": view}))
        .header("Location", format!("{base}/compute/v2.1/servers/{}", s.id)))
}

/// The body's `return_reservation_id`, read apart from the rest of the create.
fn return_reservation_id(call: &Call<'_>) -> Result<bool, Fault> {
    let body: Value = call.json()?;
    match body.pointer("/server/return_reservation_id") {
        None | Some(Value::Null) => Ok(false),
        Some(v) => flag("return_reservation_id", v),
    }
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    let s = servers::get(&call.state.fleet, call.ctx(), call.param("server_id"))?;
    Ok(Reply::ok(
        json!({"server": detail(call, &s, &host_zones(call))}),
    ))
}

/// Each host's zone now (its aggregate's, else its box's), for the servers' `OS-EXT-AZ`; empty
/// (the views fall back to Nova's default) when placement cannot be read.
fn host_zones(call: &Call<'_>) -> BTreeMap<String, String> {
    call.state.fleet.host_zones().unwrap_or_else(|e| {
        tracing::warn!("cannot read the hosts' availability zones: {e}");
        BTreeMap::new()
    })
}

fn detail(call: &Call<'_>, s: &Server, zones: &BTreeMap<String, String>) -> Value {
    let mut out = views::detail(s, call.ctx(), &call.state.base_url, version(call));
    // A server placed without asking for a zone is in its host's (Nova records it there at
    // scheduling).
    out["OS-EXT-AZ:availability_zone"] = json!(servers::availability_zone(s, zones));
    // Nova's os-extended-volumes:volumes_attached (delete_on_termination from 2.3).
    match servers::volumes::attached(&call.state.fleet, s) {
        Ok(volumes) => {
            out["os-extended-volumes:volumes_attached"] = volumes
                .into_iter()
                .map(|(id, dot)| json!({"id": id, "delete_on_termination": dot}))
                .collect();
        }
        Err(e) => tracing::warn!("server {}: cannot list its volumes: {e}", s.id),
    }
    let fleet = &call.state.fleet;
    match servers::nics::addresses(fleet, s) {
        Ok(a) => out["addresses"] = a,
        Err(e) => tracing::warn!("server {}: cannot list its addresses: {e}", s.id),
    }
    // 2.71: the server group it is in (none once the group is deleted).
    if out.get("server_groups").is_some() {
        if let Some(group) = &s.placement.group {
            match fleet.server_groups().group(group) {
                Ok(g) if g.as_ref().is_some_and(|g| g.members.contains(&s.id)) => {
                    out["server_groups"] = json!([group]);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!("server {}: cannot read its server group: {e}", s.id),
            }
        }
    }
    // Nova from 2.16: the server of a box whose service is down shows host_status UNKNOWN,
    // and so does its status (it may run, or not; nobody can tell).
    if let Some(host) = s
        .host
        .as_deref()
        .filter(|_| out.get("host_status").is_some())
    {
        match fleet.placement().is_down(host) {
            Ok(true) => {
                out["host_status"] = json!("UNKNOWN");
                out["status"] = json!("UNKNOWN");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!("server {}: cannot tell whether its box is up: {e}", s.id),
        }
    }
    match servers::nics::security_groups(fleet, s) {
        Ok(groups) if !groups.is_empty() => {
            out["security_groups"] = groups.iter().map(|g| json!({"name": g.name})).collect();
        }
        Ok(_) => {}
        Err(e) => tracing::warn!("server {}: cannot list its security groups: {e}", s.id),
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    server: ServerUpdate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerUpdate {
    name: Option<String>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(rename = "accessIPv4")]
    access_ipv4: Option<String>,
    #[serde(rename = "accessIPv6")]
    access_ipv6: Option<String>,
    #[serde(rename = "OS-DCF:diskConfig")]
    disk_config: Option<String>,
}

/// `PUT /servers/{id}`: rename, or describe from 2.19. Answers the server as GET does.
pub fn update(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: UpdateBody = call.json()?;
    let b = body.server;
    if b.description.is_some() && version(call) < DESCRIPTION {
        return Err(unexpected("description", " before microversion 2.19"));
    }
    if b.access_ipv4.is_some() || b.access_ipv6.is_some() {
        return Err(Fault::bad_request(
            "accessIPv4 and accessIPv6 cannot be set: servers have no addresses yet.",
        ));
    }
    let _ = b.disk_config;
    let s = servers::update(
        &call.state.fleet,
        call.ctx(),
        call.param("server_id"),
        b.name,
        b.description,
    )?;
    let mut view = detail(call, &s, &host_zones(call));
    if version(call) < FULL_UPDATE_VIEW {
        if let Value::Object(fields) = &mut view {
            fields.retain(|k, _| in_base_update_view(k));
        }
    }
    Ok(Reply::ok(json!({ "server": view })))
}

pub fn delete(call: &Call<'_>) -> Result<Reply, Fault> {
    servers::delete(&call.state.fleet, call.ctx(), call.param("server_id"))?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    list_as(call, "/compute/v2.1/servers", false)
}

pub fn list_detail(call: &Call<'_>) -> Result<Reply, Fault> {
    list_as(call, "/compute/v2.1/servers/detail", true)
}

fn list_as(call: &Call<'_>, path: &str, full: bool) -> Result<Reply, Fault> {
    let q = match server_query::parse(call)? {
        Some(q) => q,
        // A filter that can match nothing (Nova's empty answer).
        None => return Ok(Reply::ok(json!({"servers": []}))),
    };
    let page = servers::list(&call.state.fleet, call.ctx(), &q)?;
    let base = &call.state.base_url;
    let zones = if full {
        host_zones(call)
    } else {
        BTreeMap::new()
    };
    let items: Vec<Value> = page
        .iter()
        .map(|s| {
            if full {
                detail(call, s, &zones)
            } else {
                views::summary(s, base)
            }
        })
        .collect();
    let mut body = json!({ "servers": items });
    let limit = q.limit.unwrap_or(crate::compute::MAX_PAGE);
    if let (Some(last), true) = (page.last(), page.len() >= limit) {
        let next = call.next_page_query(&last.id);
        body["servers_links"] = json!([{"rel": "next", "href": format!("{base}{path}?{next}")}]);
    }
    Ok(Reply::ok(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_follow_the_microversion() {
        let old = ApiVersion::new(2, 1);
        let new = ApiVersion::new(2, 37);
        assert_eq!(networks(None, old).unwrap(), Networks::Auto);
        assert!(networks(None, new).is_err());
        assert_eq!(networks(Some(json!("none")), new).unwrap(), Networks::None);
        assert!(networks(Some(json!("none")), old).is_err());
        let list = networks(Some(json!([{"uuid": "n1"}])), new).unwrap();
        assert_eq!(
            list,
            Networks::List(vec![NetworkRequest {
                uuid: Some("n1".into()),
                ..NetworkRequest::default()
            }])
        );
        assert!(networks(Some(json!([{"bogus": 1}])), new).is_err());
        assert!(networks(Some(json!(5)), new).is_err());
    }

    #[test]
    fn mappings_are_parsed_as_nova_reads_them() {
        let parse = |v: Value| -> Vec<BlockDeviceMapping> { serde_json::from_value(v).unwrap() };
        let image = parse(
            json!([{"boot_index": 0, "uuid": "img", "source_type": "image",
                                  "destination_type": "local"}]),
        );
        assert_eq!(block_devices(image).unwrap(), (Some("img".into()), vec![]));
        let all = parse(json!([
            {"boot_index": "0", "uuid": "img", "source_type": "image",
             "destination_type": "volume", "volume_size": "2", "delete_on_termination": true},
            {"boot_index": -1, "uuid": "v1", "source_type": "volume",
             "destination_type": "volume"},
            {"source_type": "blank", "destination_type": "volume", "volume_size": 1,
             "delete_on_termination": "True"},
            {"source_type": "blank", "no_device": true},
        ]));
        let (image, devices) = block_devices(all).unwrap();
        assert_eq!(image, None);
        assert_eq!(
            devices,
            vec![
                BlockDeviceRequest {
                    source: RequestedSource::Image("img".into()),
                    volume_size: Some(2),
                    boot: true,
                    delete_on_termination: true,
                },
                BlockDeviceRequest {
                    source: RequestedSource::Volume("v1".into()),
                    volume_size: None,
                    boot: false,
                    delete_on_termination: false,
                },
                BlockDeviceRequest {
                    source: RequestedSource::Blank,
                    volume_size: Some(1),
                    boot: false,
                    delete_on_termination: true,
                },
            ]
        );
        for bad in [
            json!([{"source_type": "volume", "destination_type": "volume"}]),
            json!([{"source_type": "disk", "uuid": "x"}]),
            json!([{"source_type": "volume", "uuid": "x", "destination_type": "cloud"}]),
            json!([{"source_type": "blank", "destination_type": "local", "volume_size": 1}]),
            json!([{"source_type": "volume", "uuid": "x", "boot_index": "first"}]),
            json!([{"source_type": "blank", "volume_size": 1, "delete_on_termination": "maybe"}]),
        ] {
            let r = block_devices(parse(bad.clone()));
            assert!(r.is_err(), "{bad}");
        }
        assert!(serde_json::from_value::<Vec<BlockDeviceMapping>>(json!([{"nope": 1}])).is_err());
    }
}
