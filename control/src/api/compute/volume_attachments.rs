//! `/compute/v2.1/servers/{server_id}/os-volume_attachments`: Cinder volumes attached to a
//! server (see `compute::servers::volumes`). Nova's view, plus `outpost:pending_restart`:
//! true while the server's running guest does not have the volume yet (it gets it at the
//! next stop/start or hard reboot).

use crate::api::{Call, Fault, Reply};
use crate::compute::servers::volumes::{self, VolumeAttachment};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachBody {
    #[serde(rename = "volumeAttachment")]
    attachment: AttachRequest,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttachRequest {
    #[serde(rename = "volumeId")]
    volume_id: String,
    device: Option<String>,
}

fn view(v: &VolumeAttachment) -> Value {
    let a = &v.attachment;
    json!({
        "id": a.volume_id,
        "volumeId": a.volume_id,
        "serverId": a.server_id,
        "device": a.device,
        "outpost:pending_restart": v.pending_restart,
    })
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    let all = volumes::list(&call.state.fleet, call.ctx(), call.param("server_id"))?;
    let items: Vec<Value> = all.iter().map(view).collect();
    Ok(Reply::ok(json!({ "volumeAttachments": items })))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    let v = volumes::show(
        &call.state.fleet,
        call.ctx(),
        call.param("server_id"),
        call.param("volume_id"),
    )?;
    Ok(Reply::ok(json!({ "volumeAttachment": view(&v) })))
}

pub fn attach(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: AttachBody = call.json()?;
    let v = volumes::attach(
        &call.state.fleet,
        call.ctx(),
        call.param("server_id"),
        &body.attachment.volume_id,
        body.attachment.device.as_deref(),
    )?;
    Ok(Reply::ok(json!({ "volumeAttachment": view(&v) })))
}

pub fn detach(call: &Call<'_>) -> Result<Reply, Fault> {
    volumes::detach(
        &call.state.fleet,
        call.ctx(),
        call.param("server_id"),
        call.param("volume_id"),
    )?;
    Ok(Reply::empty(StatusCode::ACCEPTED))
}
