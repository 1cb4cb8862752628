//! `/volumes/{id}/metadata` and `/volumes/{id}/metadata/{key}`, with Cinder's bodies:
//! `{"metadata": {...}}` for the whole, `{"meta": {key: value}}` for one key.

use super::check_project;
use crate::api::{Call, Fault, Reply};
use crate::volume::metadata::{self, Others};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Metadata {
    metadata: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    meta: BTreeMap<String, String>,
}

fn whole(m: BTreeMap<String, String>) -> Reply {
    Reply::ok(json!({ "metadata": m }))
}

/// `GET /metadata`.
pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let m = metadata::get(
        call.state.volume_records(),
        call.ctx(),
        call.param("volume_id"),
    )?;
    Ok(whole(m))
}

/// `POST /metadata` merges the given keys (the answer is the whole metadata after); `PUT
/// /metadata` replaces it.
pub fn merge(call: &Call<'_>) -> Result<Reply, Fault> {
    set(call, Others::Kept)
}

pub fn replace(call: &Call<'_>) -> Result<Reply, Fault> {
    set(call, Others::Removed)
}

fn set(call: &Call<'_>, others: Others) -> Result<Reply, Fault> {
    check_project(call)?;
    let items = call.json::<Metadata>()?.metadata;
    let m = metadata::set(
        call.state.volume_records(),
        call.ctx(),
        call.param("volume_id"),
        items,
        others,
    )?;
    Ok(whole(m))
}

/// `GET /metadata/{key}`.
pub fn show_key(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let key = call.param("key");
    let value = metadata::get_key(
        call.state.volume_records(),
        call.ctx(),
        call.param("volume_id"),
        key,
    )?;
    Ok(Reply::ok(json!({"meta": {key: value}})))
}

/// `PUT /metadata/{key}` with `{"meta": {key: value}}`: exactly that key, as Cinder checks.
pub fn update_key(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let key = call.param("key");
    let meta = call.json::<Meta>()?.meta;
    let mut items = meta.into_iter();
    let (Some((k, value)), None) = (items.next(), items.next()) else {
        return Err(Fault::bad_request("Request body contains too many items."));
    };
    if k != key {
        return Err(Fault::bad_request("Request body and URI mismatch"));
    }
    metadata::set(
        call.state.volume_records(),
        call.ctx(),
        call.param("volume_id"),
        BTreeMap::from([(k.clone(), value.clone())]),
        Others::Kept,
    )?;
    Ok(Reply::ok(json!({"meta": {k: value}})))
}

/// `DELETE /metadata/{key}`: 200 with no body, as Cinder answers.
pub fn delete_key(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    metadata::delete_key(
        call.state.volume_records(),
        call.ctx(),
        call.param("volume_id"),
        call.param("key"),
    )?;
    Ok(Reply::empty(StatusCode::OK))
}
