//! `/snapshots`: create (from a volume; `force` for an attached one), list, detail, show,
//! delete.

use super::{check_project, flag, list_query, next_link, present, views};
use crate::api::{Call, Fault, Reply};
use crate::volume::snapshots::{self, NewSnapshot};
use crate::volume::VolumeError;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotCreate {
    snapshot: SnapshotCreateBody,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotCreateBody {
    /// Required, but Cinder's schema lets it be null, and then no volume is found.
    #[serde(default, deserialize_with = "present")]
    volume_id: Option<Option<String>>,
    /// Cinder takes a boolean or a boolean-like string.
    force: Option<Value>,
    name: Option<String>,
    display_name: Option<String>,
    description: Option<String>,
    display_description: Option<String>,
    /// Accepted when empty or null: snapshot metadata is not kept.
    metadata: Option<BTreeMap<String, String>>,
}

pub fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let b = call.json::<SnapshotCreate>()?.snapshot;
    if b.metadata.as_ref().is_some_and(|m| !m.is_empty()) {
        return Err(Fault::bad_request(
            "Invalid input received: snapshot metadata is not supported by this appliance",
        ));
    }
    let force = match &b.force {
        None | Some(Value::Null) => false,
        Some(Value::Bool(f)) => *f,
        Some(Value::String(s)) => flag("force", s)?,
        Some(other) => {
            return Err(Fault::bad_request(format!(
                "Invalid value {other} for force: a boolean is required"
            )))
        }
    };
    let volume_id = match b.volume_id {
        None => {
            return Err(Fault::bad_request(
                "Invalid input received: volume_id is required",
            ))
        }
        Some(None) => return Err(VolumeError::NotFound("None".into()).into()),
        Some(Some(id)) => id,
    };
    let new = NewSnapshot {
        volume_id,
        force,
        name: b.name.or(b.display_name),
        description: b.description.or(b.display_description),
    };
    let s = snapshots::create(&call.state.volume_stores(), call.ctx(), new)?;
    // Cinder's extended snapshot attributes extend show and detail, not create.
    Ok(Reply::json(
        StatusCode::ACCEPTED,
        json!({"snapshot": views::snapshot(&s, false)}),
    ))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let s = snapshots::get(
        call.state.volume_records(),
        call.ctx(),
        call.param("snapshot_id"),
    )?;
    Ok(Reply::ok(json!({"snapshot": views::snapshot(&s, true)})))
}

pub fn delete(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    snapshots::delete(
        &call.state.volume_stores(),
        call.ctx(),
        call.param("snapshot_id"),
    )?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    list_as(call, "snapshots", false)
}

pub fn list_detail(call: &Call<'_>) -> Result<Reply, Fault> {
    list_as(call, "snapshots/detail", true)
}

fn list_as(call: &Call<'_>, sub: &str, detail: bool) -> Result<Reply, Fault> {
    check_project(call)?;
    let q = list_query(call)?;
    let page = snapshots::list(call.state.volume_records(), call.ctx(), &q)?;
    let mut body =
        json!({"snapshots": page.iter().map(|s| views::snapshot(s, detail)).collect::<Vec<_>>()});
    let path = format!("/volume/v3/{}/{sub}", call.param("project_id"));
    if let Some(links) = next_link(
        call,
        &path,
        &q,
        page.last().map(|s| s.id.as_str()),
        page.len(),
    ) {
        body["snapshots_links"] = links;
    }
    Ok(Reply::ok(body))
}
