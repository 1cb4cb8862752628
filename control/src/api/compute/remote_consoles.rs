//! Nova's remote consoles, serial type only: `POST /servers/{id}/remote-consoles` (2.6+)
//! and the older `os-getSerialConsole` action (2.1-2.5) answer a `ws://` URL with a
//! one-time token, which outpostd's own websocket ([`crate::api::console`]) redeems.
//! A server on another box of the site is asked there, so the URL names that box.

use super::version;
use crate::api::microversion::ApiVersion;
use crate::api::{console, forward, Call, Fault, Reply};
use crate::compute::servers;
use serde::Deserialize;
use serde_json::{json, Value};

/// `remote-consoles` arrived in 2.6 and replaced the per-type actions.
pub const REMOTE_CONSOLES: ApiVersion = ApiVersion::new(2, 6);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    remote_console: RemoteConsole,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RemoteConsole {
    protocol: String,
    #[serde(rename = "type")]
    kind: String,
}

/// `os-getSerialConsole`'s argument.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SerialConsoleAction {
    #[serde(rename = "type")]
    kind: String,
}

/// Nova's protocols and the types each takes; only serial is served here.
const NOVA_PROTOCOLS: &[(&str, &[&str])] = &[
    ("vnc", &["novnc", "xvpvnc"]),
    ("spice", &["spice-html5"]),
    ("rdp", &["rdp-html5"]),
    ("serial", &["serial"]),
    ("mks", &["webmks"]),
];

fn check_kind(protocol: &str, kind: &str) -> Result<(), Fault> {
    let Some((_, kinds)) = NOVA_PROTOCOLS.iter().find(|(p, _)| *p == protocol) else {
        return Err(Fault::bad_request(format!(
            "Invalid input for field/attribute protocol. Value: {protocol}. It must be one of \
             vnc, spice, rdp, serial, mks."
        )));
    };
    if !kinds.contains(&kind) {
        return Err(Fault::bad_request(format!(
            "Invalid input for field/attribute type. Value: {kind}. Protocol {protocol} takes \
             {}.",
            kinds.join(", ")
        )));
    }
    if protocol != "serial" {
        // Nova's ConsoleTypeUnavailable: the hypervisor has no such console.
        return Err(Fault::bad_request(format!(
            "Unavailable console type {kind}: this appliance serves the serial console only."
        )));
    }
    Ok(())
}

/// A token for the server's console, asked of the box that runs it; the URL it is
/// reached at.
fn console_url(call: &Call<'_>, body: &Value, path: &str) -> Result<Result<String, Reply>, Fault> {
    let fleet = &call.state.fleet;
    let id = call.param("server_id");
    let s = servers::get(fleet, call.ctx(), id)?;
    if let Some(owner) = s
        .host
        .as_deref()
        .filter(|h| fleet.is_site() && *h != fleet.host())
    {
        let reply = forward::to_box(call, owner, hyper::Method::POST, path, Some(body))?;
        return Ok(Err(reply));
    }
    let token = servers::console::serial_console(fleet, call.ctx(), id)?;
    Ok(Ok(console::url(&call.state.base_url, &token)))
}

/// `POST /servers/{server_id}/remote-consoles`.
pub fn create(call: &Call<'_>) -> Result<Reply, Fault> {
    if version(call) < REMOTE_CONSOLES {
        return Err(Fault::not_found(format!(
            "The resource could not be found: remote-consoles needs microversion \
             {REMOTE_CONSOLES} or later."
        )));
    }
    let body: CreateBody = call.json()?;
    let rc = body.remote_console;
    check_kind(&rc.protocol, &rc.kind)?;
    let id = call.param("server_id");
    let forwarded = json!({"remote_console": {"protocol": rc.protocol, "type": rc.kind}});
    match console_url(
        call,
        &forwarded,
        &format!("/compute/v2.1/servers/{id}/remote-consoles"),
    )? {
        Ok(url) => Ok(Reply::ok(json!({
            "remote_console": {"protocol": "serial", "type": "serial", "url": url}
        }))),
        Err(reply) => Ok(reply),
    }
}

/// The `os-getSerialConsole` server action (before 2.6).
pub fn serial_action(call: &Call<'_>, args: SerialConsoleAction) -> Result<Reply, Fault> {
    if version(call) >= REMOTE_CONSOLES {
        // Nova removed the per-type actions in 2.6: the action is unknown from there on.
        return Err(Fault::bad_request(format!(
            "There is no such action: os-getSerialConsole (removed in microversion \
             {REMOTE_CONSOLES}; use POST /servers/{{server_id}}/remote-consoles)"
        )));
    }
    check_kind("serial", &args.kind)?;
    let id = call.param("server_id");
    let forwarded = json!({"os-getSerialConsole": {"type": args.kind}});
    match console_url(
        call,
        &forwarded,
        &format!("/compute/v2.1/servers/{id}/action"),
    )? {
        Ok(url) => Ok(Reply::ok(
            json!({"console": {"type": "serial", "url": url}}),
        )),
        Err(reply) => Ok(reply),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_serial_console_is_offered_and_nova_pairs_are_checked() {
        assert!(check_kind("serial", "serial").is_ok());
        let unavailable = check_kind("vnc", "novnc").unwrap_err();
        assert_eq!(unavailable.status, hyper::StatusCode::BAD_REQUEST);
        assert!(unavailable
            .message
            .contains("Unavailable console type novnc"));
        assert!(check_kind("serial", "novnc")
            .unwrap_err()
            .message
            .contains("takes serial"));
        assert!(check_kind("telnet", "serial")
            .unwrap_err()
            .message
            .contains("protocol"));
    }
}
