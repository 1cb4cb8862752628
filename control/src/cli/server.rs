//! `outpost server create|list|show|delete|start|stop|reboot|console|resize` and
//! `outpost server add|remove security group`.

use super::neutron::{NETWORK, PORT, SECURITY_GROUP};
use super::output::{self, cell};
use super::{flavor, Api, CliError, Format};
use crate::api::request::percent_encode;
use clap::{Args, Subcommand};
use hyper::Method;
use serde_json::{json, Map, Value};
use std::time::{Duration, Instant};

const SERVERS: &str = "/compute/v2.1/servers";
/// How long `--wait` waits (a guest's boot is not waited for, only the server's status).
const WAIT_LIMIT: Duration = Duration::from_secs(600);
const WAIT_POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Subcommand)]
pub enum ServerCommand {
    /// Create a server.
    Create(CreateArgs),
    /// List servers.
    List {
        /// Every project's servers.
        #[arg(long)]
        all_projects: bool,
        /// Only servers whose name matches this regular expression.
        #[arg(long)]
        name: Option<String>,
        /// Only servers with this status (ACTIVE, SHUTOFF, ERROR, ...).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one server, by ID or name.
    Show { server: String },
    /// Delete servers, by ID or name.
    Delete {
        #[arg(required = true)]
        servers: Vec<String>,
        /// Wait until they are gone.
        #[arg(long)]
        wait: bool,
    },
    /// Start a stopped server.
    Start {
        server: String,
        #[arg(long)]
        wait: bool,
    },
    /// Stop a server.
    Stop {
        server: String,
        #[arg(long)]
        wait: bool,
    },
    /// Reboot a server (soft: Ctrl-Alt-Del to the guest; hard: restart its monitor).
    Reboot {
        server: String,
        #[arg(long, conflicts_with = "soft")]
        hard: bool,
        #[arg(long)]
        soft: bool,
        #[arg(long)]
        wait: bool,
    },
    /// Print the guest's console.
    Console {
        server: String,
        /// Only the last N lines.
        #[arg(long)]
        lines: Option<i64>,
    },
    /// Resize a server to another flavor, then confirm or revert.
    Resize(ResizeArgs),
    /// Add a security group to a server: `add security group SERVER GROUP`.
    #[command(subcommand)]
    Add(ServerPart),
    /// Remove a security group from a server: `remove security group SERVER GROUP`.
    #[command(subcommand)]
    Remove(ServerPart),
}

/// What `server add` and `server remove` change.
#[derive(Debug, Subcommand)]
pub enum ServerPart {
    /// Security groups (of every port of the server).
    #[command(subcommand)]
    Security(SecurityPart),
}

#[derive(Debug, Subcommand)]
pub enum SecurityPart {
    /// A security group, by ID or name, on a server, by ID or name.
    Group { server: String, group: String },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// Flavor, by ID or name.
    #[arg(long)]
    pub flavor: String,
    /// Image ID (or the appliance's default guest, `outpost-guest`).
    #[arg(long)]
    pub image: String,
    /// A NIC on this network, by ID or name (repeatable).
    #[arg(long = "network", value_name = "NETWORK", conflicts_with = "nic")]
    pub networks: Vec<String>,
    /// A NIC on this existing port, by ID or name (repeatable).
    #[arg(long = "port", value_name = "PORT", conflicts_with = "nic")]
    pub ports: Vec<String>,
    /// `none`: no NIC; `auto` (the default without --network/--port): the project's one
    /// network, if there is one.
    #[arg(long, value_parser = ["none", "auto"])]
    pub nic: Option<String>,
    /// A security group for the ports the server gets, by ID or name (repeatable;
    /// default: the project's `default`).
    #[arg(long = "security-group", value_name = "GROUP")]
    pub security_groups: Vec<String>,
    /// Metadata KEY=VALUE (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
    #[arg(long)]
    pub description: Option<String>,
    /// Wait until the server is ACTIVE (or ERROR).
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ResizeArgs {
    #[command(subcommand)]
    pub step: Option<ResizeStep>,
    /// The new flavor, by ID or name.
    #[arg(long, required = true)]
    pub flavor: Option<String>,
    #[arg(required = true)]
    pub server: Option<String>,
    /// Wait until the resize waits for confirmation (VERIFY_RESIZE).
    #[arg(long)]
    pub wait: bool,
}

#[derive(Debug, Subcommand)]
pub enum ResizeStep {
    /// Keep the new size (the old one is released).
    Confirm { server: String },
    /// Go back to the old size.
    Revert {
        server: String,
        #[arg(long)]
        wait: bool,
    },
}

pub fn run(api: &Api, cmd: ServerCommand, format: Format) -> Result<String, CliError> {
    match cmd {
        ServerCommand::Create(args) => {
            let wait = args.wait;
            let id = create(api, args)?;
            let s = if wait {
                wait_for(api, &id, &["ACTIVE"])?
            } else {
                get(api, &id)?
            };
            Ok(show_one(&s, format))
        }
        ServerCommand::List {
            all_projects,
            name,
            status,
        } => {
            let mut params = Vec::new();
            if all_projects {
                params.push("all_tenants=1".to_owned());
            }
            if let Some(n) = name {
                params.push(format!("name={}", percent_encode(&n)));
            }
            if let Some(s) = status {
                params.push(format!("status={}", percent_encode(&s)));
            }
            let body = api.get(&format!("{SERVERS}/detail?{}", params.join("&")))?;
            let servers = body["servers"].as_array().cloned().unwrap_or_default();
            Ok(match format {
                Format::Json => output::json(&Value::Array(servers)),
                Format::Table => table(&servers),
            })
        }
        ServerCommand::Show { server } => Ok(show_one(&find(api, &server)?, format)),
        ServerCommand::Delete { servers, wait } => {
            let mut ids = Vec::new();
            for name_or_id in servers {
                let s = find(api, &name_or_id)?;
                api.delete(&server_path(&s))?;
                ids.push(cell(&s["id"]));
            }
            if wait {
                for id in ids {
                    wait_gone(api, &id)?;
                }
            }
            Ok(String::new())
        }
        ServerCommand::Start { server, wait } => {
            action_then(api, &server, json!({"os-start": null}), wait, &["ACTIVE"])
        }
        ServerCommand::Stop { server, wait } => {
            action_then(api, &server, json!({"os-stop": null}), wait, &["SHUTOFF"])
        }
        ServerCommand::Reboot {
            server, hard, wait, ..
        } => {
            let kind = if hard { "HARD" } else { "SOFT" };
            action_then(
                api,
                &server,
                json!({"reboot": {"type": kind}}),
                wait,
                &["ACTIVE"],
            )
        }
        ServerCommand::Console { server, lines } => {
            let s = find(api, &server)?;
            let length = lines.map_or(Value::Null, |n| json!(n));
            let out = api.post(
                &format!("{}/action", server_path(&s)),
                &json!({"os-getConsoleOutput": {"length": length}}),
            )?;
            Ok(cell(&out["output"]))
        }
        ServerCommand::Resize(args) => resize(api, args),
        ServerCommand::Add(ServerPart::Security(SecurityPart::Group { server, group })) => {
            security_group(api, &server, &group, "addSecurityGroup")
        }
        ServerCommand::Remove(ServerPart::Security(SecurityPart::Group { server, group })) => {
            security_group(api, &server, &group, "removeSecurityGroup")
        }
    }
}

/// `addSecurityGroup` / `removeSecurityGroup` with the group's id (unambiguous whichever
/// project's group the name found); the service's messages then name the group as typed.
fn security_group(api: &Api, server: &str, group: &str, action: &str) -> Result<String, CliError> {
    let s = find(api, server)?;
    let id = SECURITY_GROUP.id_of(api, group)?;
    let sent = api.call(
        Method::POST,
        &format!("{}/action", server_path(&s)),
        Some(&json!({ action: {"name": id} })),
    );
    match sent {
        Ok(_) => Ok(String::new()),
        Err(CliError::Api { status, message }) => Err(CliError::Api {
            status,
            message: message.replace(&id, group),
        }),
        Err(e) => Err(e),
    }
}

fn resize(api: &Api, args: ResizeArgs) -> Result<String, CliError> {
    match args.step {
        Some(ResizeStep::Confirm { server }) => {
            action_then(api, &server, json!({"confirmResize": null}), false, &[])
        }
        Some(ResizeStep::Revert { server, wait }) => action_then(
            api,
            &server,
            json!({"revertResize": null}),
            wait,
            &["ACTIVE", "SHUTOFF"],
        ),
        None => {
            let (Some(flavor), Some(server)) = (args.flavor, args.server) else {
                return Err(CliError::Usage("resize needs --flavor and a server".into()));
            };
            let f = flavor::find(api, &flavor)?;
            action_then(
                api,
                &server,
                json!({"resize": {"flavorRef": f["id"]}}),
                args.wait,
                &["VERIFY_RESIZE"],
            )
        }
    }
}

/// Runs an action; with `wait`, polls until the server's status is one of `until` (or
/// ERROR) and its task is done.
fn action_then(
    api: &Api,
    server: &str,
    body: Value,
    wait: bool,
    until: &[&str],
) -> Result<String, CliError> {
    let s = find(api, server)?;
    api.call(
        Method::POST,
        &format!("{}/action", server_path(&s)),
        Some(&body),
    )?;
    if wait {
        wait_for(api, &cell(&s["id"]), until)?;
    }
    Ok(String::new())
}

fn create(api: &Api, a: CreateArgs) -> Result<String, CliError> {
    let mut metadata = Map::new();
    for p in &a.properties {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--property {p:?} is not KEY=VALUE")))?;
        metadata.insert(k.to_owned(), json!(v));
    }
    let flavor = flavor::find(api, &a.flavor)?;
    let mut server = json!({
        "name": a.name,
        "flavorRef": flavor["id"],
        "imageRef": a.image,
        "networks": networks(api, &a)?,
        "metadata": metadata,
    });
    if !a.security_groups.is_empty() {
        let mut groups = Vec::with_capacity(a.security_groups.len());
        for g in &a.security_groups {
            groups.push(json!({"name": SECURITY_GROUP.id_of(api, g)?}));
        }
        server["security_groups"] = json!(groups);
    }
    if let Some(d) = a.description {
        server["description"] = json!(d);
    }
    let created = api.post(SERVERS, &json!({ "server": server }))?;
    Ok(cell(&created["server"]["id"]))
}

/// Nova's `networks`: `"none"`/`"auto"`, or one entry per --network and --port (networks
/// first), names resolved to ids here so that an unknown one is named in the error.
fn networks(api: &Api, a: &CreateArgs) -> Result<Value, CliError> {
    if let Some(nic) = &a.nic {
        return Ok(json!(nic));
    }
    if a.networks.is_empty() && a.ports.is_empty() {
        return Ok(json!("auto"));
    }
    let mut out = Vec::new();
    for n in &a.networks {
        out.push(json!({"uuid": NETWORK.id_of(api, n)?}));
    }
    for p in &a.ports {
        out.push(json!({"port": PORT.id_of(api, p)?}));
    }
    Ok(Value::Array(out))
}

fn get(api: &Api, id: &str) -> Result<Value, CliError> {
    Ok(api.get(&format!("{SERVERS}/{}", percent_encode(id)))?["server"].take())
}

fn wait_for(api: &Api, id: &str, until: &[&str]) -> Result<Value, CliError> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        let s = get(api, id)?;
        let status = cell(&s["status"]);
        let idle = s["OS-EXT-STS:task_state"].is_null();
        if status == "ERROR" {
            let why = cell(&s["fault"]["message"]);
            return Err(CliError::Usage(format!("server {id} is in ERROR: {why}")));
        }
        if idle && (until.is_empty() || until.contains(&status.as_str())) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            return Err(CliError::Usage(format!(
                "server {id} is still {status} after {WAIT_LIMIT:?}"
            )));
        }
        std::thread::sleep(WAIT_POLL);
    }
}

fn wait_gone(api: &Api, id: &str) -> Result<(), CliError> {
    let deadline = Instant::now() + WAIT_LIMIT;
    loop {
        match get(api, id) {
            Err(CliError::Api { status: 404, .. }) => return Ok(()),
            Err(e) => return Err(e),
            Ok(_) if Instant::now() > deadline => {
                return Err(CliError::Usage(format!("server {id} still exists")))
            }
            Ok(_) => std::thread::sleep(WAIT_POLL),
        }
    }
}

fn server_path(s: &Value) -> String {
    format!("{SERVERS}/{}", percent_encode(&cell(&s["id"])))
}

/// By id first; failing that, by exact name, as openstackclient does.
pub(super) fn find(api: &Api, name_or_id: &str) -> Result<Value, CliError> {
    match get(api, name_or_id) {
        Ok(v) => return Ok(v),
        Err(CliError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    let pattern = format!("^{}$", regex::escape(name_or_id));
    let all = api.get(&format!(
        "{SERVERS}/detail?name={}",
        percent_encode(&pattern)
    ))?;
    let matches: Vec<Value> = all["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == name_or_id)
        .cloned()
        .collect();
    super::only_match(
        matches,
        || format!("No server with a name or ID of '{name_or_id}' exists."),
        || format!("More than one server exists with the name '{name_or_id}'."),
    )
}

fn flavor_name(s: &Value) -> String {
    let f = &s["flavor"];
    match f.get("original_name") {
        Some(n) => cell(n),
        None => cell(&f["id"]),
    }
}

fn image_id(s: &Value) -> String {
    match &s["image"] {
        Value::Object(i) => i.get("id").map(cell).unwrap_or_default(),
        _ => "N/A (booted from volume)".to_owned(),
    }
}

/// `addresses` as openstackclient prints them: `net1=10.0.0.3, fd00::3; net2=192.0.2.7`.
fn addresses(s: &Value) -> String {
    s["addresses"]
        .as_object()
        .map(|nets| {
            nets.iter()
                .map(|(net, ips)| {
                    let ips = ips
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|ip| cell(&ip["addr"]))
                        .collect::<Vec<_>>()
                        .join(", ");
                    format!("{net}={ips}")
                })
                .collect::<Vec<_>>()
                .join("; ")
        })
        .unwrap_or_default()
}

fn security_group_names(s: &Value) -> String {
    s["security_groups"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|g| format!("name='{}'", cell(&g["name"])))
        .collect::<Vec<_>>()
        .join("\n")
}

fn show_one(s: &Value, format: Format) -> String {
    if format == Format::Json {
        return output::json(s);
    }
    let mut rows = vec![
        ("id", cell(&s["id"])),
        ("name", cell(&s["name"])),
        ("status", cell(&s["status"])),
        ("flavor", flavor_name(s)),
        ("image", image_id(s)),
        ("OS-EXT-STS:vm_state", cell(&s["OS-EXT-STS:vm_state"])),
        ("OS-EXT-STS:task_state", cell(&s["OS-EXT-STS:task_state"])),
        ("OS-EXT-STS:power_state", cell(&s["OS-EXT-STS:power_state"])),
        ("OS-EXT-SRV-ATTR:host", cell(&s["OS-EXT-SRV-ATTR:host"])),
        ("addresses", addresses(s)),
        ("security_groups", security_group_names(s)),
        ("project_id", cell(&s["tenant_id"])),
        ("user_id", cell(&s["user_id"])),
        ("created", cell(&s["created"])),
        ("updated", cell(&s["updated"])),
        ("properties", output::properties(&s["metadata"])),
    ];
    if let Some(d) = s.get("description") {
        rows.push(("description", cell(d)));
    }
    if let Some(f) = s.get("fault") {
        rows.push(("fault", cell(&f["message"])));
    }
    output::fields(rows)
}

fn table(servers: &[Value]) -> String {
    let rows = servers
        .iter()
        .map(|s| {
            vec![
                cell(&s["id"]),
                cell(&s["name"]),
                cell(&s["status"]),
                addresses(s),
                image_id(s),
                flavor_name(s),
            ]
        })
        .collect();
    output::list(
        &["ID", "Name", "Status", "Networks", "Image", "Flavor"],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_groups_as_openstackclient_prints_them() {
        let s = json!({
            "addresses": {
                "lan": [{"addr": "10.0.0.3", "version": 4}, {"addr": "fd00::3", "version": 6}],
                "wan": [{"addr": "192.0.2.7", "version": 4}],
            },
            "security_groups": [{"name": "default"}, {"name": "web"}],
        });
        assert_eq!(addresses(&s), "lan=10.0.0.3, fd00::3; wan=192.0.2.7");
        assert_eq!(security_group_names(&s), "name='default'\nname='web'");
        assert_eq!(addresses(&json!({"addresses": {}})), "");
        assert_eq!(addresses(&json!({})), "");
    }
}
