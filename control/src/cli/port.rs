//! `outpost port create|list|show|delete` (Neutron ports: a MAC and addresses on a
//! network, which a server's NIC takes with `server create --port`).

use super::neutron::{fixed_ips, joined, NETWORK, PORT, SECURITY_GROUP};
use super::output::{self, cell};
use super::{server, Api, CliError, Format};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// Create a port on a network.
    Create(CreateArgs),
    /// List ports.
    List {
        /// Only ports on this network (ID or name).
        #[arg(long)]
        network: Option<String>,
        /// Only this server's ports (ID or name).
        #[arg(long)]
        server: Option<String>,
    },
    /// Show one port, by ID or name.
    Show { port: String },
    /// Delete ports, by ID or name.
    Delete {
        #[arg(required = true)]
        ports: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// The network (ID or name).
    #[arg(long)]
    pub network: String,
    /// The address to take (default: the next free one of the network's subnets).
    #[arg(long, value_name = "IP")]
    pub fixed_ip: Option<String>,
    /// A security group (ID or name; repeatable; default: the project's `default`).
    #[arg(long = "security-group", value_name = "GROUP")]
    pub security_groups: Vec<String>,
    /// No security group at all.
    #[arg(long, conflicts_with = "security_groups")]
    pub no_security_group: bool,
    #[arg(long)]
    pub description: Option<String>,
}

pub fn run(api: &Api, cmd: PortCommand, format: Format) -> Result<String, CliError> {
    match cmd {
        PortCommand::Create(a) => {
            let network = NETWORK.id_of(api, &a.network)?;
            let mut body = json!({"name": a.name, "network_id": network});
            if let Some(ip) = a.fixed_ip {
                body["fixed_ips"] = json!([{ "ip_address": ip }]);
            }
            if a.no_security_group {
                body["security_groups"] = json!([]);
            } else if !a.security_groups.is_empty() {
                let ids = a
                    .security_groups
                    .iter()
                    .map(|g| SECURITY_GROUP.id_of(api, g))
                    .collect::<Result<Vec<_>, _>>()?;
                body["security_groups"] = json!(ids);
            }
            if let Some(d) = a.description {
                body["description"] = json!(d);
            }
            Ok(show_one(&PORT.create(api, body)?, format))
        }
        PortCommand::List { network, server } => {
            let network = network.map(|n| NETWORK.id_of(api, &n)).transpose()?;
            let server = server
                .map(|s| server::find(api, &s).map(|s| cell(&s["id"])))
                .transpose()?;
            let mut filters = Vec::new();
            if let Some(n) = &network {
                filters.push(("network_id", n.as_str()));
            }
            if let Some(s) = &server {
                filters.push(("device_id", s.as_str()));
            }
            let ports = PORT.list(api, &filters)?;
            Ok(match format {
                Format::Json => output::json(&Value::Array(ports)),
                Format::Table => {
                    let rows = ports
                        .iter()
                        .map(|p| {
                            vec![
                                cell(&p["id"]),
                                cell(&p["name"]),
                                cell(&p["mac_address"]),
                                fixed_ips(p),
                                cell(&p["status"]),
                            ]
                        })
                        .collect();
                    output::list(
                        &["ID", "Name", "MAC Address", "Fixed IP Addresses", "Status"],
                        rows,
                    )
                }
            })
        }
        PortCommand::Show { port } => Ok(show_one(&PORT.find(api, &port)?, format)),
        PortCommand::Delete { ports } => {
            for p in ports {
                let id = PORT.id_of(api, &p)?;
                PORT.delete(api, &id)?;
            }
            Ok(String::new())
        }
    }
}

fn show_one(p: &Value, format: Format) -> String {
    if format == Format::Json {
        return output::json(p);
    }
    output::fields(vec![
        ("id", cell(&p["id"])),
        ("name", cell(&p["name"])),
        ("description", cell(&p["description"])),
        ("network_id", cell(&p["network_id"])),
        ("mac_address", cell(&p["mac_address"])),
        ("fixed_ips", fixed_ips(p)),
        ("security_group_ids", joined(&p["security_groups"])),
        ("status", cell(&p["status"])),
        ("device_id", cell(&p["device_id"])),
        ("device_owner", cell(&p["device_owner"])),
        ("binding_host_id", cell(&p["binding:host_id"])),
        ("port_security_enabled", cell(&p["port_security_enabled"])),
        ("project_id", cell(&p["project_id"])),
        ("created_at", cell(&p["created_at"])),
        ("updated_at", cell(&p["updated_at"])),
    ])
}
