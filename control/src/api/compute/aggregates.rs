//! Nova's `os-aggregates` (admin only): create, list, show, update and delete aggregates, and
//! the `add_host`, `remove_host` and `set_metadata` actions, with Nova's bodies and answers
//! (200 for each, as Nova keeps for compatibility). `uuid` is shown from 2.41.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use super::{present, version};
use crate::api::microversion::ApiVersion;
use crate::api::{Call, Fault, Reply};
use crate::compute::aggregates::{self, Aggregate, AggregateChange};
use crate::timestamp::Timestamp;

const UUID_FIELD: ApiVersion = ApiVersion::new(2, 41);

/// Nova's aggregate times are naive (no zone suffix), with microseconds.
fn naive(t: Timestamp) -> String {
    let text = t.to_rfc3339_micros();
    text.strip_suffix('Z').unwrap_or(&text).to_owned()
}

fn view(a: &Aggregate, v: ApiVersion) -> Value {
    let mut out = json!({
        "id": a.id,
        "name": a.name,
        "availability_zone": a.availability_zone(),
        "hosts": a.hosts,
        "metadata": a.metadata,
        "created_at": naive(a.created_at),
        "updated_at": a.updated_at.map(naive),
        "deleted": false,
        "deleted_at": null,
    });
    if v >= UUID_FIELD {
        out["uuid"] = json!(a.uuid);
    }
    out
}

fn reply(call: &Call<'_>, a: &Aggregate) -> Reply {
    Reply::ok(json!({"aggregate": view(a, version(call))}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    aggregate: NewAggregate,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAggregate {
    name: String,
    #[serde(default)]
    availability_zone: Option<String>,
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    let all = aggregates::list(call.state.doors.aggregates.as_ref(), call.ctx())?;
    let v = version(call);
    let list: Vec<Value> = all.iter().map(|a| view(a, v)).collect();
    Ok(Reply::ok(json!({"aggregates": list})))
}

/// `POST /os-aggregates`: the answer has neither hosts nor metadata, as Nova's.
pub fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: CreateBody = call.json()?;
    let a = aggregates::create(
        call.state.doors.aggregates.as_ref(),
        call.ctx(),
        &body.aggregate.name,
        body.aggregate.availability_zone.as_deref(),
    )?;
    let mut out = view(&a, version(call));
    if let Some(fields) = out.as_object_mut() {
        fields.remove("hosts");
        fields.remove("metadata");
    }
    Ok(Reply::ok(json!({"aggregate": out})))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    let a = aggregates::get(
        call.state.doors.aggregates.as_ref(),
        call.ctx(),
        call.param("aggregate_id"),
    )?;
    Ok(reply(call, &a))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    aggregate: Update,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Update {
    #[serde(default)]
    name: Option<String>,
    /// Null takes the zone away.
    #[serde(default, deserialize_with = "present")]
    availability_zone: Option<Option<String>>,
}

/// `PUT /os-aggregates/{id}`: a new name, zone, or both.
pub fn update(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: UpdateBody = call.json()?;
    let change = AggregateChange {
        name: body.aggregate.name,
        availability_zone: body.aggregate.availability_zone,
    };
    if change == AggregateChange::default() {
        return Err(Fault::bad_request(
            "Invalid input for field/attribute aggregate. Value: {}. {} does not have enough \
             properties",
        ));
    }
    let a = aggregates::update(
        call.state.doors.aggregates.as_ref(),
        call.ctx(),
        call.param("aggregate_id"),
        &change,
    )?;
    Ok(reply(call, &a))
}

/// `DELETE /os-aggregates/{id}`: 200 with no body, as Nova.
pub fn delete(call: &Call<'_>) -> Result<Reply, Fault> {
    aggregates::delete(
        call.state.doors.aggregates.as_ref(),
        call.ctx(),
        call.param("aggregate_id"),
    )?;
    Ok(Reply::empty(hyper::StatusCode::OK))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HostAction {
    host: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetMetadata {
    metadata: BTreeMap<String, Option<String>>,
}

/// One action per body, as Nova's action dispatch takes it.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Action {
    AddHost(HostAction),
    RemoveHost(HostAction),
    SetMetadata(SetMetadata),
}

/// `POST /os-aggregates/{id}/action`: `add_host`, `remove_host` or `set_metadata`.
pub fn action(call: &Call<'_>) -> Result<Reply, Fault> {
    let store = call.state.doors.aggregates.as_ref();
    let id = call.param("aggregate_id");
    let a = match call.json::<Action>()? {
        Action::AddHost(HostAction { host }) => {
            let known: Vec<String> = super::site_boxes(call)?
                .into_iter()
                .map(|b| b.record.name)
                .collect();
            aggregates::add_host(store, call.ctx(), id, &host, &known)?
        }
        Action::RemoveHost(HostAction { host }) => {
            aggregates::remove_host(store, call.ctx(), id, &host)?
        }
        Action::SetMetadata(SetMetadata { metadata }) => {
            aggregates::set_metadata(store, call.ctx(), id, &metadata)?
        }
    };
    Ok(reply(call, &a))
}
