//! `GET /servers/{id}/ips` and `/ips/{network_label}`: the server's addresses by network, as
//! its show view has them (Nova's `os-server-ips`).

use crate::api::{Call, Fault, Reply};
use crate::compute::servers::{self, ServerError};
use hyper::StatusCode;
use serde_json::{json, Value};

fn addresses(call: &Call<'_>) -> Result<Value, Fault> {
    let fleet = &call.state.fleet;
    let s = servers::get(fleet, call.ctx(), call.param("server_id"))?;
    Ok(servers::nics::addresses(fleet, &s).map_err(ServerError::from)?)
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    Ok(Reply::ok(json!({ "addresses": addresses(call)? })))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    let label = call.param("network_label");
    let all = addresses(call)?;
    let Some(on) = all.get(label) else {
        return Err(Fault::new(
            StatusCode::NOT_FOUND,
            format!("The server has no address on network {label:?}."),
        ));
    };
    Ok(Reply::ok(json!({ label: on })))
}
