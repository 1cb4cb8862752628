//! `/compute/v2.1/flavors/{flavor_id}/os-extra_specs[/{key}]`.
//!
//! Values may be sent as strings, numbers or booleans (Nova's schema allows all three) and
//! are stored as strings.

use crate::api::{Call, Fault, Reply};
use crate::compute::extra_specs;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExtraSpecsBody {
    extra_specs: Map<String, Value>,
}

fn as_strings(specs: Map<String, Value>) -> Result<BTreeMap<String, String>, Fault> {
    specs
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Value::String(s) => s,
                Value::Number(n) => n.to_string(),
                Value::Bool(b) => b.to_string(),
                other => {
                    return Err(Fault::bad_request(format!(
                        "Invalid input for field/attribute {k}. Value: {other}. \
                         Extra spec values must be strings, numbers or booleans"
                    )))
                }
            };
            Ok((k, v))
        })
        .collect()
}

pub fn list(call: &Call<'_>) -> Result<Reply, Fault> {
    let specs = extra_specs::list(call.state.flavors(), call.ctx(), call.param("flavor_id"))?;
    Ok(Reply::ok(json!({"extra_specs": specs})))
}

pub fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: ExtraSpecsBody = call.json()?;
    let specs = as_strings(body.extra_specs)?;
    let set = extra_specs::set(
        call.state.flavors(),
        call.ctx(),
        call.param("flavor_id"),
        specs,
    )?;
    Ok(Reply::ok(json!({"extra_specs": set})))
}

pub fn show(call: &Call<'_>) -> Result<Reply, Fault> {
    let key = call.param("key");
    let value = extra_specs::get(
        call.state.flavors(),
        call.ctx(),
        call.param("flavor_id"),
        key,
    )?;
    Ok(Reply::ok(json!({ key: value })))
}

/// The body is `{"<key>": "<value>"}` for exactly the key in the URL.
pub fn update(call: &Call<'_>) -> Result<Reply, Fault> {
    let key = call.param("key");
    let body: Map<String, Value> = call.json()?;
    if body.len() > 1 {
        return Err(Fault::bad_request("Request body contains too many items"));
    }
    if !body.contains_key(key) {
        return Err(Fault::bad_request("Request body and URI mismatch"));
    }
    let specs = as_strings(body)?;
    let set = extra_specs::set(
        call.state.flavors(),
        call.ctx(),
        call.param("flavor_id"),
        specs,
    )?;
    Ok(Reply::ok(json!(set)))
}

pub fn delete(call: &Call<'_>) -> Result<Reply, Fault> {
    let (flavor, key) = (call.param("flavor_id"), call.param("key"));
    extra_specs::delete(call.state.flavors(), call.ctx(), flavor, key)?;
    // Nova answers 200 with no body here (but 202 for deleting the flavor itself).
    Ok(Reply::empty(StatusCode::OK))
}
