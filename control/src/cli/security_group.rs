//! `outpost security group create|list|show|delete` and `outpost security group rule
//! create|list|delete` (Neutron security groups: stateful allow-lists on ports).

use super::neutron::{RULE, SECURITY_GROUP};
use super::output::{self, cell};
use super::{Api, CliError, Format};
use clap::{Args, Subcommand};
use serde_json::{json, Value};

#[derive(Debug, Subcommand)]
pub enum SecurityCommand {
    /// Security groups and their rules.
    #[command(subcommand)]
    Group(GroupCommand),
}

#[derive(Debug, Subcommand)]
pub enum GroupCommand {
    /// Create a security group (it allows all egress until rules say otherwise).
    Create {
        name: String,
        #[arg(long)]
        description: Option<String>,
    },
    /// List security groups.
    List,
    /// Show one security group with its rules, by ID or name.
    Show { group: String },
    /// Delete security groups, by ID or name (refused while ports use them).
    Delete {
        #[arg(required = true)]
        groups: Vec<String>,
    },
    /// A group's rules.
    #[command(subcommand)]
    Rule(RuleCommand),
}

#[derive(Debug, Subcommand)]
pub enum RuleCommand {
    /// Add a rule to a group.
    Create(RuleArgs),
    /// List rules: every group's, or one group's.
    List {
        /// The group (ID or name).
        group: Option<String>,
    },
    /// Delete rules, by ID.
    Delete {
        #[arg(required = true)]
        rules: Vec<String>,
    },
}

#[derive(Debug, Args)]
pub struct RuleArgs {
    /// The group (ID or name) the rule belongs to.
    pub group: String,
    /// Traffic into the ports (the default).
    #[arg(long, conflicts_with = "egress")]
    pub ingress: bool,
    /// Traffic out of the ports.
    #[arg(long)]
    pub egress: bool,
    /// tcp, udp, icmp, another protocol's name, or an IP protocol number (default: any).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Destination port or range (tcp, udp); ICMP type and code with icmp.
    #[arg(long, value_name = "N[:M]")]
    pub dst_port: Option<String>,
    /// Only from (ingress) or to (egress) these addresses.
    #[arg(long, value_name = "CIDR", conflicts_with = "remote_group")]
    pub remote_ip: Option<String>,
    /// Only from (ingress) or to (egress) the ports of this group (ID or name).
    #[arg(long, value_name = "GROUP")]
    pub remote_group: Option<String>,
    /// IPv4 or IPv6 (default: the remote CIDR's, else IPv4).
    #[arg(long, value_parser = ["IPv4", "IPv6"])]
    pub ethertype: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
}

pub fn run(api: &Api, cmd: SecurityCommand, format: Format) -> Result<String, CliError> {
    let SecurityCommand::Group(cmd) = cmd;
    match cmd {
        GroupCommand::Create { name, description } => {
            let mut body = json!({ "name": name });
            if let Some(d) = description {
                body["description"] = json!(d);
            }
            let g = SECURITY_GROUP.create(api, body)?;
            Ok(show_group(api, &g, format))
        }
        GroupCommand::List => {
            let groups = SECURITY_GROUP.list(api, &[])?;
            Ok(match format {
                Format::Json => output::json(&Value::Array(groups)),
                Format::Table => {
                    let rows = groups
                        .iter()
                        .map(|g| {
                            ["id", "name", "description", "project_id"]
                                .iter()
                                .map(|k| cell(&g[*k]))
                                .collect()
                        })
                        .collect();
                    output::list(&["ID", "Name", "Description", "Project"], rows)
                }
            })
        }
        GroupCommand::Show { group } => {
            let g = SECURITY_GROUP.find(api, &group)?;
            Ok(show_group(api, &g, format))
        }
        GroupCommand::Delete { groups } => {
            for g in groups {
                let id = SECURITY_GROUP.id_of(api, &g)?;
                SECURITY_GROUP.delete(api, &id)?;
            }
            Ok(String::new())
        }
        GroupCommand::Rule(cmd) => rule(api, cmd, format),
    }
}

fn rule(api: &Api, cmd: RuleCommand, format: Format) -> Result<String, CliError> {
    match cmd {
        RuleCommand::Create(a) => {
            let body = rule_body(api, a)?;
            let r = RULE.create(api, body)?;
            Ok(show_rule(api, &r, format))
        }
        RuleCommand::List { group } => {
            let group = group.map(|g| SECURITY_GROUP.id_of(api, &g)).transpose()?;
            let filters: Vec<(&str, &str)> = group
                .as_deref()
                .map(|g| ("security_group_id", g))
                .into_iter()
                .collect();
            let rules = RULE.list(api, &filters)?;
            Ok(match format {
                Format::Json => output::json(&Value::Array(rules)),
                Format::Table => rule_table(api, &rules),
            })
        }
        RuleCommand::Delete { rules } => {
            // Rules have no names: ids only.
            for id in rules {
                RULE.delete(api, &id)?;
            }
            Ok(String::new())
        }
    }
}

fn rule_body(api: &Api, a: RuleArgs) -> Result<Value, CliError> {
    let group = SECURITY_GROUP.id_of(api, &a.group)?;
    let direction = if a.egress { "egress" } else { "ingress" };
    let ethertype = match (&a.ethertype, &a.remote_ip) {
        (Some(e), _) => e.clone(),
        (None, Some(cidr)) if cidr.contains(':') => "IPv6".to_owned(),
        _ => "IPv4".to_owned(),
    };
    let mut body = json!({
        "security_group_id": group,
        "direction": direction,
        "ethertype": ethertype,
    });
    if let Some(p) = a.protocol {
        body["protocol"] = json!(p);
    }
    if let Some(ports) = a.dst_port {
        let (min, max) = port_range(&ports)?;
        body["port_range_min"] = json!(min);
        body["port_range_max"] = json!(max);
    }
    if let Some(cidr) = a.remote_ip {
        body["remote_ip_prefix"] = json!(cidr);
    }
    if let Some(g) = a.remote_group {
        body["remote_group_id"] = json!(SECURITY_GROUP.id_of(api, &g)?);
    }
    if let Some(d) = a.description {
        body["description"] = json!(d);
    }
    Ok(body)
}

/// `22` or `8000:8080` as (min, max); the service checks them against the protocol.
fn port_range(s: &str) -> Result<(u32, u32), CliError> {
    let bad = || CliError::Usage(format!("--dst-port {s:?} is not N or N:M"));
    let number = |p: &str| p.trim().parse::<u32>().map_err(|_| bad());
    match s.split_once(':') {
        Some((min, max)) => Ok((number(min)?, number(max)?)),
        None => {
            let n = number(s)?;
            Ok((n, n))
        }
    }
}

/// A rule's ports as openstackclient prints them: `22:22`, or empty for any.
fn ports(r: &Value) -> String {
    match (&r["port_range_min"], &r["port_range_max"]) {
        (Value::Null, Value::Null) => String::new(),
        (min, max) => format!("{}:{}", cell(min), cell(max)),
    }
}

/// Group ids as their names, looked up once per listing (rules name groups by id).
struct GroupNames(Vec<Value>);

impl GroupNames {
    fn load(api: &Api) -> GroupNames {
        // The names only decorate the output: without them the ids are shown.
        GroupNames(SECURITY_GROUP.list(api, &[]).unwrap_or_default())
    }

    fn name(&self, id: &Value) -> String {
        self.0
            .iter()
            .find(|g| g["id"] == *id)
            .map_or_else(|| cell(id), |g| cell(&g["name"]))
    }
}

/// One rule on one line, as openstackclient prints a group's rules.
fn summary(r: &Value, names: &GroupNames) -> String {
    let mut parts = vec![
        format!("direction='{}'", cell(&r["direction"])),
        format!("ethertype='{}'", cell(&r["ethertype"])),
    ];
    if !r["protocol"].is_null() {
        parts.push(format!("protocol='{}'", cell(&r["protocol"])));
    }
    if !r["port_range_min"].is_null() || !r["port_range_max"].is_null() {
        parts.push(format!("port_range='{}'", ports(r)));
    }
    if !r["remote_ip_prefix"].is_null() {
        parts.push(format!(
            "remote_ip_prefix='{}'",
            cell(&r["remote_ip_prefix"])
        ));
    }
    if !r["remote_group_id"].is_null() {
        parts.push(format!(
            "remote_group='{}'",
            names.name(&r["remote_group_id"])
        ));
    }
    parts.push(format!("id='{}'", cell(&r["id"])));
    parts.join(", ")
}

fn show_group(api: &Api, g: &Value, format: Format) -> String {
    if format == Format::Json {
        return output::json(g);
    }
    let names = GroupNames::load(api);
    let rules = g["security_group_rules"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| summary(r, &names))
        .collect::<Vec<_>>()
        .join("\n");
    output::fields(vec![
        ("id", cell(&g["id"])),
        ("name", cell(&g["name"])),
        ("description", cell(&g["description"])),
        ("stateful", cell(&g["stateful"])),
        ("rules", rules),
        ("project_id", cell(&g["project_id"])),
        ("created_at", cell(&g["created_at"])),
        ("updated_at", cell(&g["updated_at"])),
    ])
}

fn show_rule(api: &Api, r: &Value, format: Format) -> String {
    if format == Format::Json {
        return output::json(r);
    }
    let names = GroupNames::load(api);
    output::fields(vec![
        ("id", cell(&r["id"])),
        ("security_group", names.name(&r["security_group_id"])),
        ("direction", cell(&r["direction"])),
        ("ethertype", cell(&r["ethertype"])),
        ("protocol", cell(&r["protocol"])),
        ("port_range", ports(r)),
        ("remote_ip_prefix", cell(&r["remote_ip_prefix"])),
        ("remote_group", remote_group(r, &names)),
        ("description", cell(&r["description"])),
        ("project_id", cell(&r["project_id"])),
        ("created_at", cell(&r["created_at"])),
    ])
}

fn remote_group(r: &Value, names: &GroupNames) -> String {
    if r["remote_group_id"].is_null() {
        String::new()
    } else {
        names.name(&r["remote_group_id"])
    }
}

fn rule_table(api: &Api, rules: &[Value]) -> String {
    let names = GroupNames::load(api);
    let rows = rules
        .iter()
        .map(|r| {
            vec![
                cell(&r["id"]),
                cell(&r["protocol"]),
                cell(&r["ethertype"]),
                cell(&r["remote_ip_prefix"]),
                ports(r),
                cell(&r["direction"]),
                remote_group(r, &names),
                names.name(&r["security_group_id"]),
            ]
        })
        .collect();
    output::list(
        &[
            "ID",
            "IP Protocol",
            "Ethertype",
            "IP Range",
            "Port Range",
            "Direction",
            "Remote Security Group",
            "Security Group",
        ],
        rows,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_ranges() {
        assert_eq!(port_range("22").unwrap(), (22, 22));
        assert_eq!(port_range("8000:8080").unwrap(), (8000, 8080));
        for bad in ["", "x", "1:", ":2", "1:2:3", "-1"] {
            let e = port_range(bad).unwrap_err().to_string();
            assert!(e.contains("N:M"), "{bad}: {e}");
        }
    }

    #[test]
    fn rules_read_as_one_line_each() {
        let names = GroupNames(vec![json!({"id": "g1", "name": "web"})]);
        let r = json!({"id": "r1", "direction": "ingress", "ethertype": "IPv4",
                       "protocol": "tcp", "port_range_min": 22, "port_range_max": 22,
                       "remote_ip_prefix": null, "remote_group_id": "g1"});
        assert_eq!(
            summary(&r, &names),
            "direction='ingress', ethertype='IPv4', protocol='tcp', port_range='22:22', \
             remote_group='web', id='r1'"
        );
        let any = json!({"id": "r2", "direction": "egress", "ethertype": "IPv6",
                         "protocol": null, "port_range_min": null, "port_range_max": null,
                         "remote_ip_prefix": null, "remote_group_id": "gone"});
        assert_eq!(
            summary(&any, &names),
            "direction='egress', ethertype='IPv6', remote_group='gone', id='r2'"
        );
        assert_eq!(ports(&any), "");
    }
}
