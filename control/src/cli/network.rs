//! `outpost network create|list|show|delete` (Neutron networks).

use super::neutron::{joined, NETWORK};
use super::output::{self, cell};
use super::{Api, CliError, Format};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Create a network (one bridge on the host; give it a subnet to carry addresses).
    Create(CreateArgs),
    /// List networks.
    List,
    /// Show one network, by ID or name.
    Show { network: String },
    /// Delete networks, by ID or name (refused while servers or ports use them).
    Delete {
        #[arg(required = true)]
        networks: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// MTU of the network (default: outpostd's `[network] mtu`).
    #[arg(long)]
    pub mtu: Option<u32>,
    #[arg(long)]
    pub description: Option<String>,
    /// Other projects may use it.
    #[arg(long)]
    pub share: bool,
}

pub fn run(api: &Api, cmd: NetworkCommand, format: Format) -> Result<String, CliError> {
    match cmd {
        NetworkCommand::Create(a) => {
            let mut body = json!({"name": a.name});
            if let Some(m) = a.mtu {
                body["mtu"] = json!(m);
            }
            if let Some(d) = a.description {
                body["description"] = json!(d);
            }
            if a.share {
                body["shared"] = json!(true);
            }
            Ok(show_one(&NETWORK.create(api, body)?, format))
        }
        NetworkCommand::List => {
            let nets = NETWORK.list(api, &[])?;
            Ok(match format {
                Format::Json => output::json(&Value::Array(nets)),
                Format::Table => {
                    let rows = nets
                        .iter()
                        .map(|n| vec![cell(&n["id"]), cell(&n["name"]), joined(&n["subnets"])])
                        .collect();
                    output::list(&["ID", "Name", "Subnets"], rows)
                }
            })
        }
        NetworkCommand::Show { network } => Ok(show_one(&NETWORK.find(api, &network)?, format)),
        NetworkCommand::Delete { networks } => {
            for n in networks {
                let id = NETWORK.id_of(api, &n)?;
                NETWORK.delete(api, &id)?;
            }
            Ok(String::new())
        }
    }
}

fn show_one(n: &Value, format: Format) -> String {
    if format == Format::Json {
        return output::json(n);
    }
    output::fields(vec![
        ("id", cell(&n["id"])),
        ("name", cell(&n["name"])),
        ("description", cell(&n["description"])),
        ("status", cell(&n["status"])),
        ("mtu", cell(&n["mtu"])),
        ("subnets", joined(&n["subnets"])),
        ("shared", cell(&n["shared"])),
        ("admin_state_up", cell(&n["admin_state_up"])),
        ("port_security_enabled", cell(&n["port_security_enabled"])),
        ("project_id", cell(&n["project_id"])),
        ("created_at", cell(&n["created_at"])),
        ("updated_at", cell(&n["updated_at"])),
    ])
}
