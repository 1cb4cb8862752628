//! `/volumes`: create (blank, from `imageRef`, from `snapshot_id`), list, detail, show,
//! update, delete, and `POST /volumes/{id}/action` with `os-extend`.

use super::{check_project, list_query, next_link, present, views};
use crate::api::{Call, Fault, Reply};
use crate::volume::{self, NewVolume, Volume};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeCreate {
    volume: VolumeCreateBody,
    /// Accepted and ignored: a volume's home is picked by free disk (or its zone).
    #[serde(rename = "OS-SCH-HNT:scheduler_hints", default)]
    _scheduler_hints: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeCreateBody {
    size: Option<Value>,
    name: Option<String>,
    display_name: Option<String>,
    description: Option<String>,
    display_description: Option<String>,
    volume_type: Option<String>,
    availability_zone: Option<String>,
    #[serde(rename = "imageRef")]
    image_ref: Option<String>,
    image_id: Option<String>,
    snapshot_id: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    // Cinder features this appliance does not have: accepted only when absent or null.
    source_volid: Option<Value>,
    source_replica: Option<Value>,
    backup_id: Option<Value>,
    consistencygroup_id: Option<Value>,
    group_id: Option<Value>,
    multiattach: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeUpdate {
    volume: VolumeUpdateBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeUpdateBody {
    #[serde(default, deserialize_with = "present")]
    name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    display_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    description: Option<Option<String>>,
    #[serde(default, deserialize_with = "present")]
    display_description: Option<Option<String>>,
}

fn unsupported(field: &str) -> Fault {
    Fault::bad_request(format!(
        "Invalid input received: {field} is not supported by this appliance"
    ))
}

/// Create and update answer the volume's own fields; show adds what the caller may see of
/// the extensions' (Cinder extends only show and detail).
fn volume_reply(call: &Call<'_>, status: StatusCode, v: &Volume, extended: bool) -> Reply {
    let mut shown = views::volume(v, &call.state.base_url);
    if extended {
        views::add_extended(&mut shown, v, call.ctx().is_admin());
    }
    Reply::json(status, json!({ "volume": shown }))
}

pub fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let b = call.json::<VolumeCreate>()?.volume;
    // Cloning is not served, but a source that is not there is Cinder's 404 all the same.
    if let Some(Value::String(source)) = &b.source_volid {
        volume::get(call.state.volume_records(), call.ctx(), source)?;
    }
    for (field, given) in [
        ("source_volid", &b.source_volid),
        ("source_replica", &b.source_replica),
        ("backup_id", &b.backup_id),
        ("consistencygroup_id", &b.consistencygroup_id),
        ("group_id", &b.group_id),
    ] {
        if given.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(unsupported(field));
        }
    }
    if b.multiattach == Some(true) {
        return Err(unsupported("multiattach"));
    }
    let new = NewVolume {
        size: b.size.filter(|s| !s.is_null()),
        name: b.name.or(b.display_name),
        description: b.description.or(b.display_description),
        volume_type: b.volume_type,
        image_ref: b.image_ref.or(b.image_id),
        snapshot_id: b.snapshot_id,
        metadata: b.metadata.unwrap_or_default(),
        availability_zone: b.availability_zone,
    };
    let v = volume::create(&call.state.volume_stores(), call.ctx(), new)?;
    Ok(volume_reply(call, StatusCode::ACCEPTED, &v, false))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let v = volume::get(
        call.state.volume_records(),
        call.ctx(),
        call.param("volume_id"),
    )?;
    Ok(volume_reply(call, StatusCode::OK, &v, true))
}

pub fn update(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let b = call.json::<VolumeUpdate>()?.volume;
    let v = volume::update(
        call.state.volume_records(),
        call.ctx(),
        call.param("volume_id"),
        b.name.or(b.display_name),
        b.description.or(b.display_description),
    )?;
    Ok(volume_reply(call, StatusCode::OK, &v, false))
}

pub fn delete(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    if call
        .query("cascade")
        .is_some_and(|c| super::flag("cascade", c).unwrap_or(true))
    {
        return Err(unsupported("cascade"));
    }
    volume::delete(
        &call.state.volume_stores(),
        call.ctx(),
        call.param("volume_id"),
    )?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

/// `POST /volumes/{id}/action`: one action per body; only `os-extend` is served.
pub fn action(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    // Cinder finds the volume before it reads the action: a volume that is not there is a
    // 404 whatever was asked of it.
    volume::get(
        call.state.volume_records(),
        call.ctx(),
        call.param("volume_id"),
    )?;
    let body: Map<String, Value> = call.json()?;
    let mut actions = body.iter();
    let (Some((name, args)), None) = (actions.next(), actions.next()) else {
        return Err(Fault::bad_request(
            "Invalid request body: exactly one action is expected",
        ));
    };
    match name.as_str() {
        "os-extend" => {
            let new_size = args
                .as_object()
                .filter(|a| a.keys().all(|k| k == "new_size"))
                .and_then(|a| a.get("new_size"))
                .ok_or_else(|| {
                    Fault::bad_request(
                        "Invalid input received: os-extend takes {\"new_size\": <GiB>}",
                    )
                })?;
            volume::extend(
                &call.state.volume_stores(),
                call.ctx(),
                call.param("volume_id"),
                new_size,
            )?;
            Ok(Reply::empty(StatusCode::ACCEPTED))
        }
        other => Err(Fault::bad_request(format!(
            "There is no such action: {other}"
        ))),
    }
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    list_as(call, "volumes", views::volume_summary)
}

pub fn list_detail(call: &Call<'_>) -> Result<Reply, Fault> {
    list_as(call, "volumes/detail", views::volume)
}

fn list_as(call: &Call<'_>, sub: &str, view: fn(&Volume, &str) -> Value) -> Result<Reply, Fault> {
    check_project(call)?;
    let q = list_query(call)?;
    let page = volume::list(call.state.volume_records(), call.ctx(), &q)?;
    let base = &call.state.base_url;
    let (detail, admin) = (sub.ends_with("detail"), call.ctx().is_admin());
    let shown = page.iter().map(|v| {
        let mut out = view(v, base);
        if detail {
            views::add_extended(&mut out, v, admin);
        }
        out
    });
    let mut body = json!({ "volumes": shown.collect::<Vec<_>>() });
    let path = format!("/volume/v3/{}/{sub}", call.param("project_id"));
    if let Some(links) = next_link(
        call,
        &path,
        &q,
        page.last().map(|v| v.id.as_str()),
        page.len(),
    ) {
        body["volumes_links"] = links;
    }
    Ok(Reply::ok(body))
}
