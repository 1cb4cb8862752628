//! Requests that need bytes only one box of a site has (a guest's console log is on the box
//! that runs it) are forwarded there over that box's API, as the caller: with the caller's
//! own token, or, for a caller of this box's unix socket (which carries none), a token this
//! box mints for the same user and project, valid for a minute. The owner applies every
//! check again; its answer is passed back as it is (docs/cluster.md, "Routing").

use std::net::SocketAddr;
use std::time::Duration;

use hyper::{Method, StatusCode};
use serde_json::Value;

use super::auth::AUTH_TOKEN_HEADER;
use super::fault::Fault;
use super::request::{Call, Reply};
use crate::client::{Client, Endpoint};
use crate::identity::tokens;

/// How long a token minted for a forwarded request lives.
const MINTED_TTL: Duration = Duration::from_secs(60);
/// Set on a forwarded request, so that it is never forwarded again.
pub const FORWARDED_BY: &str = "Outpost-Forwarded-By";

/// Sends `body` to `path` on box `owner` and answers what it answered.
pub fn to_box(
    call: &Call<'_>,
    owner: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Result<Reply, Fault> {
    if call.headers.contains_key(FORWARDED_BY) {
        return Err(Fault::conflict(format!(
            "This request was forwarded here, but box {owner} runs the server."
        )));
    }
    let boxes = super::compute::site_boxes(call)?;
    let target = boxes.iter().find(|b| b.record.name == owner);
    let Some(target) = target.filter(|b| b.up) else {
        return Err(Fault::conflict(format!(
            "The server's host box {owner} is down; try again when it is back."
        )));
    };
    let addr: SocketAddr = target
        .record
        .api
        .as_deref()
        .and_then(|a| a.parse().ok())
        .ok_or_else(|| {
            Fault::conflict(format!(
                "The server's host box {owner} serves no API to the other boxes ([api] listen)."
            ))
        })?;
    let endpoint = Endpoint::of_box(addr, target.record.api_cert_sha256.as_deref())
        .map_err(|e| Fault::internal(format!("box {owner}'s record in etcd: {e}")))?;
    let token = match call
        .headers
        .get(AUTH_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(t) => t.to_owned(),
        None => {
            let ctx = call.ctx();
            tokens::mint(
                call.state.doors.identity.as_ref(),
                &ctx.user_id,
                ctx.project_id.as_deref(),
                MINTED_TTL,
            )
            .map_err(|e| Fault::internal(format!("cannot mint a token to forward with: {e}")))?
            .value
        }
    };
    let version = call.version.map(|v| v.to_string());
    let me = call.state.site.own_name();
    let path = path.to_owned();
    let body = body.cloned();
    // The client runs its own small runtime: on a thread of its own, not this handler's.
    let reply = std::thread::scope(|scope| {
        scope
            .spawn(move || {
                let client = Client::new(endpoint)?;
                let mut headers = vec![
                    (AUTH_TOKEN_HEADER, token.as_str()),
                    (FORWARDED_BY, me.as_str()),
                ];
                if let Some(v) = &version {
                    headers.push(("X-OpenStack-Nova-API-Version", v.as_str()));
                }
                client.request(method, &path, &headers, body.as_ref())
            })
            .join()
    })
    .map_err(|_| Fault::internal("the forwarding thread panicked"))?
    .map_err(|e| {
        Fault::new(
            StatusCode::BAD_GATEWAY,
            format!("Cannot reach box {owner}, which runs the server: {e}"),
        )
    })?;
    let json = if reply.body.is_empty() {
        Value::Null
    } else {
        reply.json().map_err(Fault::internal)?
    };
    Ok(Reply::json(reply.status, json))
}
