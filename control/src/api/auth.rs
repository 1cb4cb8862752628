//! Who is calling. The unix socket's peer is the bootstrap admin (the socket's mode 0660 is
//! the access control); on TCP the `X-Auth-Token` header must hold a valid token, checked
//! here for every protected route as keystonemiddleware does in front of each service.

use super::{ApiState, Fault, Transport};
use crate::context::RequestContext;
use crate::identity::tokens;
use hyper::HeaderMap;

pub const AUTH_TOKEN_HEADER: &str = "X-Auth-Token";

pub fn authenticate(
    state: &ApiState,
    transport: Transport,
    headers: &HeaderMap,
) -> Result<RequestContext, Fault> {
    match transport {
        Transport::Unix => Ok(state.socket_context.clone()),
        Transport::Tcp => {
            let token = headers
                .get(AUTH_TOKEN_HEADER)
                .and_then(|v| v.to_str().ok())
                .filter(|t| !t.is_empty())
                .ok_or_else(|| {
                    Fault::unauthorized("The request you have made requires authentication.")
                })?;
            let info = tokens::validate(state.identity(), token)?;
            Ok(RequestContext::from_token(&info))
        }
    }
}

/// Services other than Keystone act within a project; an unscoped token is not enough.
pub fn require_project(ctx: &RequestContext) -> Result<(), Fault> {
    match ctx.project_id {
        Some(_) => Ok(()),
        None => Err(Fault::unauthorized(
            "The request you have made requires authentication: this service needs a \
             project-scoped token.",
        )),
    }
}
