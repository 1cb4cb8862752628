//! `outpost server create|list|show|delete|start|stop|reboot|console|resize`.

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
        "networks": "none",
        "metadata": metadata,
    });
    if let Some(d) = a.description {
        server["description"] = json!(d);
    }
    let created = api.post(SERVERS, &json!({ "server": server }))?;
    Ok(cell(&created["server"]["id"]))
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
fn find(api: &Api, name_or_id: &str) -> Result<Value, CliError> {
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
    let mut matches: Vec<Value> = all["servers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"] == name_or_id)
        .cloned()
        .collect();
    match matches.len() {
        1 => Ok(matches.remove(0)),
        0 => Err(CliError::Api {
            status: 404,
            message: format!("No server with a name or ID of '{name_or_id}' exists."),
        }),
        _ => Err(CliError::Usage(format!(
            "More than one server exists with the name '{name_or_id}'."
        ))),
    }
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
        ("addresses", String::new()),
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
                String::new(),
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
