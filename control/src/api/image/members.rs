//! `/v2/images/{image_id}/members`: sharing a shared image with other projects.

use crate::api::{Call, Fault, Reply};
use crate::image::members::{self, Membership};
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

fn view(m: &Membership) -> Value {
    json!({
        "image_id": m.image_id,
        "member_id": m.member_id,
        "status": m.member.status.as_str(),
        "created_at": m.member.created_at.to_rfc3339(),
        "updated_at": m.member.updated_at.to_rfc3339(),
        "schema": "/v2/schemas/member",
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewMember {
    member: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MemberStatusChange {
    status: String,
}

pub fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: NewMember = call.json()?;
    let m = members::add(
        call.state.image_records(),
        call.ctx(),
        call.param("image_id"),
        &body.member,
    )?;
    Ok(Reply::ok(view(&m)))
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    let all = members::list(
        call.state.image_records(),
        call.ctx(),
        call.param("image_id"),
    )?;
    Ok(Reply::ok(json!({
        "members": all.iter().map(view).collect::<Vec<_>>(),
        "schema": "/v2/schemas/members",
    })))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    let m = members::get(
        call.state.image_records(),
        call.ctx(),
        call.param("image_id"),
        call.param("member_id"),
    )?;
    Ok(Reply::ok(view(&m)))
}

pub fn update(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: MemberStatusChange = call.json()?;
    let m = members::set_status(
        call.state.image_records(),
        call.ctx(),
        call.param("image_id"),
        call.param("member_id"),
        &body.status,
    )?;
    Ok(Reply::ok(view(&m)))
}

pub fn delete(call: &Call<'_>) -> Result<Reply, Fault> {
    members::remove(
        call.state.image_records(),
        call.ctx(),
        call.param("image_id"),
        call.param("member_id"),
    )?;
    Ok(Reply::empty(StatusCode::NO_CONTENT))
}
