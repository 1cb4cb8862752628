//! `/compute/v2.1/servers/{server_id}/os-volume_attachments`: the routes exist so clients
//! get a clear answer. No server has volumes until Cinder volumes arrive: the list is empty,
//! a given attachment is not found, and attaching or detaching is a 400 saying why.

use crate::api::{Call, Fault, Reply};
use crate::compute::servers::{self, ServerError};
use serde_json::json;

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    servers::get(&call.state.fleet, call.ctx(), call.param("server_id"))?;
    Ok(Reply::ok(json!({"volumeAttachments": []})))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    let s = servers::get(&call.state.fleet, call.ctx(), call.param("server_id"))?;
    Err(Fault::not_found(format!(
        "Instance {} is not attached to volume {}.",
        s.id,
        call.param("volume_id")
    )))
}

pub fn attach(call: &Call<'_>) -> Result<Reply, Fault> {
    servers::get(&call.state.fleet, call.ctx(), call.param("server_id"))?;
    Err(ServerError::VolumesUnavailable("os-volume_attachments").into())
}

pub fn detach(call: &Call<'_>) -> Result<Reply, Fault> {
    servers::get(&call.state.fleet, call.ctx(), call.param("server_id"))?;
    Err(ServerError::VolumesUnavailable("os-volume_attachments").into())
}
