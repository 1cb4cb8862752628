//! `outpost flavor create|list|show|delete`.

use super::output::{self, cell};
use super::{Api, CliError, Format};
use crate::api::request::percent_encode;
use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

const FLAVORS: &str = "/compute/v2.1/flavors";

#[derive(Debug, Subcommand)]
pub enum FlavorCommand {
    /// Create a flavor.
    Create(CreateArgs),
    /// List flavors.
    List {
        /// Include private flavors.
        #[arg(long)]
        all: bool,
        /// More columns: swap, RX/TX factor, properties.
        #[arg(long)]
        long: bool,
    },
    /// Show one flavor, by ID or name.
    Show { flavor: String },
    /// Delete flavors, by ID or name.
    Delete {
        #[arg(required = true)]
        flavors: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// Memory in MiB.
    #[arg(long)]
    pub ram: i64,
    /// Virtual CPUs.
    #[arg(long)]
    pub vcpus: i64,
    /// Root disk in GiB.
    #[arg(long, default_value_t = 0)]
    pub disk: i64,
    /// Flavor ID (default: a generated UUID).
    #[arg(long)]
    pub id: Option<String>,
    /// Ephemeral disk in GiB.
    #[arg(long, default_value_t = 0)]
    pub ephemeral: i64,
    /// Swap in MiB.
    #[arg(long, default_value_t = 0)]
    pub swap: i64,
    #[arg(long, default_value_t = 1.0)]
    pub rxtx_factor: f64,
    /// Only admins see and use it.
    #[arg(long)]
    pub private: bool,
    #[arg(long)]
    pub description: Option<String>,
    /// Extra spec KEY=VALUE (repeatable).
    #[arg(long = "property", value_name = "KEY=VALUE")]
    pub properties: Vec<String>,
}

pub fn run(api: &Api, cmd: FlavorCommand, format: Format) -> Result<String, CliError> {
    match cmd {
        FlavorCommand::Create(args) => {
            let f = create(api, args)?;
            Ok(show_one(&f, format))
        }
        FlavorCommand::List { all, long } => {
            let public = if all { "none" } else { "true" };
            let body = api.get(&format!("{FLAVORS}/detail?is_public={public}"))?;
            let flavors = body["flavors"].as_array().cloned().unwrap_or_default();
            Ok(match format {
                Format::Json => output::json(&Value::Array(flavors)),
                Format::Table => table(&flavors, long),
            })
        }
        FlavorCommand::Show { flavor } => Ok(show_one(&find(api, &flavor)?, format)),
        FlavorCommand::Delete { flavors } => {
            for name_or_id in flavors {
                let f = find(api, &name_or_id)?;
                api.delete(&flavor_path(&f))?;
            }
            Ok(String::new())
        }
    }
}

fn create(api: &Api, a: CreateArgs) -> Result<Value, CliError> {
    let mut specs = Map::new();
    for p in &a.properties {
        let (k, v) = p
            .split_once('=')
            .ok_or_else(|| CliError::Usage(format!("--property {p:?} is not KEY=VALUE")))?;
        specs.insert(k.to_owned(), json!(v));
    }
    let mut body = json!({
        "name": a.name,
        "ram": a.ram,
        "vcpus": a.vcpus,
        "disk": a.disk,
        "OS-FLV-EXT-DATA:ephemeral": a.ephemeral,
        "swap": a.swap,
        "rxtx_factor": a.rxtx_factor,
        "os-flavor-access:is_public": !a.private,
    });
    if let Some(id) = a.id {
        body["id"] = json!(id);
    }
    if let Some(d) = a.description {
        body["description"] = json!(d);
    }
    let created = api.post(FLAVORS, &json!({ "flavor": body }))?["flavor"].take();
    if specs.is_empty() {
        return Ok(created);
    }
    api.post(
        &format!("{}/os-extra_specs", flavor_path(&created)),
        &json!({ "extra_specs": specs }),
    )?;
    Ok(api.get(&flavor_path(&created))?["flavor"].take())
}

fn flavor_path(f: &Value) -> String {
    format!("{FLAVORS}/{}", percent_encode(&cell(&f["id"])))
}

/// By id first; failing that, by exact name among all flavors, as openstackclient does.
pub(super) fn find(api: &Api, name_or_id: &str) -> Result<Value, CliError> {
    match api.get(&format!("{FLAVORS}/{}", percent_encode(name_or_id))) {
        Ok(mut v) => return Ok(v["flavor"].take()),
        Err(CliError::Api { status: 404, .. }) => {}
        Err(e) => return Err(e),
    }
    let all = api.get(&format!("{FLAVORS}/detail?is_public=none"))?;
    let matches: Vec<Value> = all["flavors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] == name_or_id)
        .cloned()
        .collect();
    super::only_match(
        matches,
        || format!("No flavor with a name or ID of '{name_or_id}' exists."),
        || format!("More than one flavor exists with the name '{name_or_id}'."),
    )
}

fn show_one(f: &Value, format: Format) -> String {
    if format == Format::Json {
        return output::json(f);
    }
    output::fields(vec![
        ("id", cell(&f["id"])),
        ("name", cell(&f["name"])),
        ("ram", cell(&f["ram"])),
        ("vcpus", cell(&f["vcpus"])),
        ("disk", cell(&f["disk"])),
        ("swap", cell(&f["swap"])),
        (
            "OS-FLV-EXT-DATA:ephemeral",
            cell(&f["OS-FLV-EXT-DATA:ephemeral"]),
        ),
        (
            "os-flavor-access:is_public",
            cell(&f["os-flavor-access:is_public"]),
        ),
        ("rxtx_factor", cell(&f["rxtx_factor"])),
        ("description", cell(&f["description"])),
        ("properties", output::properties(&f["extra_specs"])),
    ])
}

fn table(flavors: &[Value], long: bool) -> String {
    let mut headers = vec![
        "ID",
        "Name",
        "RAM",
        "Disk",
        "Ephemeral",
        "VCPUs",
        "Is Public",
    ];
    if long {
        headers.extend(["Swap", "RXTX Factor", "Properties"]);
    }
    let rows = flavors
        .iter()
        .map(|f| {
            let mut row: Vec<String> = [
                "id",
                "name",
                "ram",
                "disk",
                "OS-FLV-EXT-DATA:ephemeral",
                "vcpus",
                "os-flavor-access:is_public",
            ]
            .iter()
            .map(|k| cell(&f[*k]))
            .collect();
            if long {
                row.push(cell(&f["swap"]));
                row.push(cell(&f["rxtx_factor"]));
                row.push(output::properties(&f["extra_specs"]));
            }
            row
        })
        .collect();
    output::list(&headers, rows)
}
