//! `POST /compute/v2.1/servers/{server_id}/action`: the body's single key names the action
//! (`os-start`, `os-stop`, `reboot`, `os-getConsoleOutput`, `os-getSerialConsole`, `resize`,
//! `confirmResize`, `revertResize`, `evacuate`), its value the arguments. Status codes are
//! Nova's: 202 for the power actions, resize and revertResize, 204 for confirmResize, 200
//! with the console output and a serial console's URL and for `evacuate` (admin; the
//! server's box must be down, docs/cluster.md "Evacuation").

use crate::api::microversion::ApiVersion;
use crate::api::{Call, Fault, Reply};
use crate::cluster::evacuation::AdminEvacuationError;
use crate::compute::servers;
use hyper::StatusCode;
use serde::Deserialize;
use serde_json::{json, Map, Value};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reboot {
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConsoleOutput {
    #[serde(default)]
    length: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Resize {
    #[serde(rename = "flavorRef")]
    flavor_ref: Value,
    #[serde(rename = "OS-DCF:diskConfig")]
    disk_config: Option<String>,
}

/// `evacuate`'s arguments across microversions: `onSharedStorage` required before 2.14 and
/// gone from it, `force` from 2.29 to 2.67.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Evacuate {
    host: Option<String>,
    #[serde(rename = "onSharedStorage")]
    on_shared_storage: Option<Value>,
    force: Option<bool>,
    #[serde(rename = "adminPass")]
    admin_pass: Option<String>,
}

const EVACUATE_NO_SHARED_STORAGE: ApiVersion = ApiVersion::new(2, 14);
const EVACUATE_FORCE: ApiVersion = ApiVersion::new(2, 29);
const EVACUATE_NO_FORCE: ApiVersion = ApiVersion::new(2, 68);

/// Nova's evacuate: checks the body against the microversion, then moves the server.
fn evacuate(call: &Call<'_>, id: &str, value: Value) -> Result<Reply, Fault> {
    let e: Evacuate = args("evacuate", value)?;
    let version = super::version(call);
    let unexpected = |field: &str| {
        Fault::bad_request(format!(
            "Invalid input for field/attribute evacuate. Additional properties are not allowed \
             ('{field}' was unexpected)"
        ))
    };
    if version < EVACUATE_NO_SHARED_STORAGE {
        match &e.on_shared_storage {
            None => {
                return Err(Fault::bad_request(
                    "Invalid input for field/attribute evacuate. 'onSharedStorage' is a \
                     required property",
                ))
            }
            // The boxes share no storage: a server's disk lives on its box alone.
            Some(shared) if shared.as_bool() == Some(true) || shared == "True" => {
                return Err(Fault::bad_request(
                    "Invalid state of instance files on shared storage: the boxes of a site \
                     share no storage; the server is rebuilt from its image.",
                ))
            }
            Some(_) => {}
        }
    } else if e.on_shared_storage.is_some() {
        return Err(unexpected("onSharedStorage"));
    }
    if e.force.is_some() && !(EVACUATE_FORCE..EVACUATE_NO_FORCE).contains(&version) {
        return Err(unexpected("force"));
    }
    if e.admin_pass.is_some() {
        return Err(Fault::bad_request(
            "adminPass is not supported: outpostd does not set guests' passwords (use a key \
             pair or user data)",
        ));
    }
    let fleet = &call.state.fleet;
    // Visible to the caller, else Nova's 404.
    let s = servers::get(fleet, call.ctx(), id)?;
    let Some(evacuator) = call.state.evacuator.clone() else {
        // A box alone answers for its own one host, which is up while it answers.
        return Err(Fault::conflict(format!(
            "Compute service of {} is still in use.",
            s.host.unwrap_or_else(|| fleet.host().to_owned())
        )));
    };
    let to = evacuator
        .evacuate_by_admin(&s.id, e.host.as_deref())
        .map_err(evacuation_fault)?;
    tracing::info!("server {id}: evacuated by an admin to box {to}");
    Ok(Reply::empty(StatusCode::OK))
}

/// Nova's status for each refusal of an evacuate.
fn evacuation_fault(e: AdminEvacuationError) -> Fault {
    use AdminEvacuationError as E;
    match e {
        E::NotFound(_) | E::UnknownHost(_) => Fault::not_found(e.to_string()),
        E::HostInUse(_) | E::InvalidState { .. } | E::DataOnDeadBox(_) => {
            Fault::conflict(e.to_string())
        }
        // Nova's cold migration answers NoValidHost with a 400 too: nothing changed.
        E::SameHost | E::NoValidHost(_) => Fault::bad_request(e.to_string()),
        E::Evacuation(inner) => Fault::internal(inner),
    }
}

fn args<T: for<'de> Deserialize<'de>>(action: &str, v: Value) -> Result<T, Fault> {
    serde_json::from_value(v)
        .map_err(|e| Fault::bad_request(format!("Invalid input for field/attribute {action}: {e}")))
}

/// Actions that take no arguments accept `null` (or `{}`), as Nova's schemas do.
fn no_args(action: &str, v: &Value) -> Result<(), Fault> {
    match v {
        Value::Null => Ok(()),
        Value::Object(m) if m.is_empty() => Ok(()),
        other => Err(Fault::bad_request(format!(
            "Invalid input for field/attribute {action}. Value: {other}. It takes no arguments."
        ))),
    }
}

/// `length`: an integer (or digits in a string), -1 or null for everything.
fn console_length(v: Option<Value>) -> Result<Option<i64>, Fault> {
    let bad = |v: &Value| {
        Fault::bad_request(format!(
            "Invalid input for field/attribute length. Value: {v}. It must be an integer of \
             -1 or more."
        ))
    };
    let n = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Number(n)) => n.as_i64().ok_or_else(|| bad(&Value::Number(n.clone())))?,
        Some(Value::String(s)) => s
            .parse::<i64>()
            .map_err(|_| bad(&Value::String(s.clone())))?,
        Some(other) => return Err(bad(&other)),
    };
    match n {
        -1 => Ok(None),
        n if n < -1 => Err(bad(&json!(n))),
        n => Ok(Some(n)),
    }
}

pub fn action(call: &Call<'_>) -> Result<Reply, Fault> {
    let body: Map<String, Value> = call.json()?;
    let mut entries = body.into_iter();
    let (name, value) = match (entries.next(), entries.next()) {
        (Some(entry), None) => entry,
        _ => {
            return Err(Fault::bad_request(
                "The action body must name exactly one action.",
            ))
        }
    };
    let fleet = &call.state.fleet;
    let ctx = call.ctx();
    let id = call.param("server_id");
    match name.as_str() {
        "os-start" => {
            no_args(&name, &value)?;
            servers::start(fleet, ctx, id)?;
            Ok(Reply::empty(StatusCode::ACCEPTED))
        }
        "os-stop" => {
            no_args(&name, &value)?;
            servers::stop(fleet, ctx, id)?;
            Ok(Reply::empty(StatusCode::ACCEPTED))
        }
        "reboot" => {
            let r: Reboot = args(&name, value)?;
            let hard = match r.kind.to_ascii_uppercase().as_str() {
                "HARD" => true,
                "SOFT" => false,
                _ => {
                    return Err(Fault::bad_request(format!(
                        "Invalid input for field/attribute type. Value: {}. It must be SOFT \
                         or HARD.",
                        r.kind
                    )))
                }
            };
            servers::reboot(fleet, ctx, id, hard)?;
            Ok(Reply::empty(StatusCode::ACCEPTED))
        }
        "os-getConsoleOutput" => {
            let c: ConsoleOutput = args(&name, value)?;
            let length = console_length(c.length)?;
            // The console log is on the box that runs the server.
            let s = servers::get(fleet, ctx, id)?;
            if let Some(owner) = s
                .host
                .as_deref()
                .filter(|h| fleet.is_site() && *h != fleet.host())
            {
                return super::super::forward::to_box(
                    call,
                    owner,
                    hyper::Method::POST,
                    &format!("/compute/v2.1/servers/{id}/action"),
                    Some(&json!({"os-getConsoleOutput": {"length": length}})),
                );
            }
            let output = servers::console_output(fleet, ctx, id, length)?;
            Ok(Reply::ok(json!({ "output": output })))
        }
        "os-getSerialConsole" => {
            let a = args(&name, value)?;
            super::remote_consoles::serial_action(call, a)
        }
        "resize" => {
            let r: Resize = args(&name, value)?;
            if let Some(d) = r.disk_config.as_deref() {
                if d != "AUTO" && d != "MANUAL" {
                    return Err(Fault::bad_request(format!(
                        "Invalid input for field/attribute OS-DCF:diskConfig. Value: {d}."
                    )));
                }
            }
            let flavor = match &r.flavor_ref {
                Value::String(s) if !s.is_empty() => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(Fault::bad_request(format!(
                        "Invalid input for field/attribute flavorRef. Value: {other}."
                    )))
                }
            };
            servers::resize(fleet, ctx, id, &flavor)?;
            Ok(Reply::empty(StatusCode::ACCEPTED))
        }
        "confirmResize" => {
            no_args(&name, &value)?;
            servers::confirm_resize(fleet, ctx, id)?;
            Ok(Reply::empty(StatusCode::NO_CONTENT))
        }
        "revertResize" => {
            no_args(&name, &value)?;
            servers::revert_resize(fleet, ctx, id)?;
            Ok(Reply::empty(StatusCode::ACCEPTED))
        }
        "evacuate" => evacuate(call, id, value),
        "addSecurityGroup" | "removeSecurityGroup" => {
            let g: SecurityGroupArg = args(&name, value)?;
            let s = servers::get(fleet, ctx, id)?;
            let add = name == "addSecurityGroup";
            servers::nics::change_security_group(fleet, ctx, &s, &g.name, add)?;
            Ok(Reply::empty(StatusCode::ACCEPTED))
        }
        other => {
            // Nova finds the server before the action: a missing one is 404 whatever is asked.
            servers::get(fleet, ctx, id)?;
            Err(Fault::bad_request(format!(
                "There is no such action: {other}"
            )))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SecurityGroupArg {
    name: String,
}

/// `GET /servers/{id}/os-security-groups`: the groups of the server's ports, with rules.
pub fn security_groups(call: &Call<'_>) -> Result<Reply, Fault> {
    let fleet = &call.state.fleet;
    let s = servers::get(fleet, call.ctx(), call.param("server_id"))?;
    let groups = servers::nics::security_groups(fleet, &s).map_err(servers::ServerError::from)?;
    let mut out = Vec::with_capacity(groups.len());
    for g in groups {
        let rules = servers::nics::security_group_rules(fleet, &g.id)
            .map_err(servers::ServerError::from)?;
        let rules: Vec<Value> = rules
            .into_iter()
            .filter(|r| r.direction == "ingress")
            .map(|r| {
                json!({
                    "id": r.id,
                    "parent_group_id": g.id,
                    "ip_protocol": r.protocol,
                    "from_port": r.port_range_min,
                    "to_port": r.port_range_max,
                    "ip_range": r.remote_ip_prefix.map_or_else(|| json!({}), |p| json!({"cidr": p})),
                    "group": {},
                })
            })
            .collect();
        out.push(json!({
            "id": g.id,
            "name": g.name,
            "description": g.description,
            "tenant_id": g.project_id,
            "rules": rules,
        }));
    }
    Ok(Reply::ok(json!({ "security_groups": out })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn console_lengths() {
        assert_eq!(console_length(None).unwrap(), None);
        assert_eq!(console_length(Some(json!(-1))).unwrap(), None);
        assert_eq!(console_length(Some(json!(5))).unwrap(), Some(5));
        assert_eq!(console_length(Some(json!("12"))).unwrap(), Some(12));
        assert!(console_length(Some(json!(-2))).is_err());
        assert!(console_length(Some(json!("x"))).is_err());
        assert!(console_length(Some(json!(1.5))).is_err());
    }
}
