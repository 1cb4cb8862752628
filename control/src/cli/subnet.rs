//! `outpost subnet create|list|show|delete` (Neutron subnets: a network's address range,
//! gateway, DNS servers and DHCP).

use super::neutron::{joined, NETWORK, SUBNET};
use super::output::{self, cell};
use super::{Api, CliError, Format};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum SubnetCommand {
    /// Create a subnet on a network.
    Create(CreateArgs),
    /// List subnets.
    List {
        /// Only this network's subnets (ID or name).
        #[arg(long)]
        network: Option<String>,
    },
    /// Show one subnet, by ID or name.
    Show { subnet: String },
    /// Delete subnets, by ID or name (refused while servers have addresses in them).
    Delete {
        #[arg(required = true)]
        subnets: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    pub name: String,
    /// The network (ID or name).
    #[arg(long)]
    pub network: String,
    /// The addresses, as a CIDR (10.0.0.0/24, fd00::/64).
    #[arg(long, value_name = "CIDR")]
    pub subnet_range: String,
    /// 4 or 6 (default: the CIDR's).
    #[arg(long, value_parser = ["4", "6"])]
    pub ip_version: Option<String>,
    /// The gateway: an address, `auto` (the first one, the default) or `none`.
    #[arg(long, value_name = "IP|auto|none")]
    pub gateway: Option<String>,
    /// A DNS server DHCP hands out (repeatable).
    #[arg(long = "dns-nameserver", value_name = "IP")]
    pub dns_nameservers: Vec<String>,
    /// Serve no DHCP on this subnet.
    #[arg(long)]
    pub no_dhcp: bool,
    #[arg(long)]
    pub description: Option<String>,
}

pub fn run(api: &Api, cmd: SubnetCommand, format: Format) -> Result<String, CliError> {
    match cmd {
        SubnetCommand::Create(a) => {
            let network = NETWORK.id_of(api, &a.network)?;
            let version: u8 = match a.ip_version.as_deref() {
                Some("6") => 6,
                Some(_) => 4,
                None if a.subnet_range.contains(':') => 6,
                None => 4,
            };
            let mut body = json!({
                "name": a.name,
                "network_id": network,
                "cidr": a.subnet_range,
                "ip_version": version,
                "enable_dhcp": !a.no_dhcp,
            });
            match a.gateway.as_deref() {
                None | Some("auto") => {}
                Some("none") => body["gateway_ip"] = Value::Null,
                Some(ip) => body["gateway_ip"] = json!(ip),
            }
            if !a.dns_nameservers.is_empty() {
                body["dns_nameservers"] = json!(a.dns_nameservers);
            }
            if let Some(d) = a.description {
                body["description"] = json!(d);
            }
            Ok(show_one(&SUBNET.create(api, body)?, format))
        }
        SubnetCommand::List { network } => {
            let network = network.map(|n| NETWORK.id_of(api, &n)).transpose()?;
            let filters: Vec<(&str, &str)> = network
                .as_deref()
                .map(|n| ("network_id", n))
                .into_iter()
                .collect();
            let subnets = SUBNET.list(api, &filters)?;
            Ok(match format {
                Format::Json => output::json(&Value::Array(subnets)),
                Format::Table => {
                    let rows = subnets
                        .iter()
                        .map(|s| {
                            ["id", "name", "network_id", "cidr"]
                                .iter()
                                .map(|k| cell(&s[*k]))
                                .collect()
                        })
                        .collect();
                    output::list(&["ID", "Name", "Network", "Subnet"], rows)
                }
            })
        }
        SubnetCommand::Show { subnet } => Ok(show_one(&SUBNET.find(api, &subnet)?, format)),
        SubnetCommand::Delete { subnets } => {
            for s in subnets {
                let id = SUBNET.id_of(api, &s)?;
                SUBNET.delete(api, &id)?;
            }
            Ok(String::new())
        }
    }
}

/// Allocation pools as openstackclient prints them: `10.0.0.2-10.0.0.254`.
fn pools(s: &Value) -> String {
    s["allocation_pools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| format!("{}-{}", cell(&p["start"]), cell(&p["end"])))
        .collect::<Vec<_>>()
        .join(", ")
}

fn show_one(s: &Value, format: Format) -> String {
    if format == Format::Json {
        return output::json(s);
    }
    output::fields(vec![
        ("id", cell(&s["id"])),
        ("name", cell(&s["name"])),
        ("description", cell(&s["description"])),
        ("network_id", cell(&s["network_id"])),
        ("ip_version", cell(&s["ip_version"])),
        ("cidr", cell(&s["cidr"])),
        ("gateway_ip", cell(&s["gateway_ip"])),
        ("allocation_pools", pools(s)),
        ("dns_nameservers", joined(&s["dns_nameservers"])),
        ("enable_dhcp", cell(&s["enable_dhcp"])),
        ("project_id", cell(&s["project_id"])),
        ("created_at", cell(&s["created_at"])),
        ("updated_at", cell(&s["updated_at"])),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_as_ranges() {
        let s = json!({"allocation_pools": [
            {"start": "10.0.0.2", "end": "10.0.0.100"},
            {"start": "10.0.0.200", "end": "10.0.0.254"},
        ]});
        assert_eq!(pools(&s), "10.0.0.2-10.0.0.100, 10.0.0.200-10.0.0.254");
        assert_eq!(pools(&json!({})), "");
    }
}
