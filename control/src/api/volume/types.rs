//! `/types`: the two volume types, thin (default) and thick.

use super::{check_project, views};
use crate::api::{Call, Fault, Reply};
use crate::volume::types;
use serde_json::json;

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let all: Vec<_> = types::ALL.iter().map(views::volume_type).collect();
    Ok(Reply::ok(json!({ "volume_types": all })))
}

pub fn default(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    Ok(Reply::ok(
        json!({ "volume_type": views::volume_type(&types::DEFAULT) }),
    ))
}

/// By id, as Cinder shows types (a name is a 404; clients then list).
pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    check_project(call)?;
    let id = call.param("type_id");
    let t = types::ALL
        .iter()
        .find(|t| t.id == id)
        .ok_or_else(|| Fault::not_found(format!("Volume type {id} could not be found.")))?;
    Ok(Reply::ok(json!({ "volume_type": views::volume_type(t) })))
}
