//! What the Neutron subcommands share: the `/network/v2.0` URLs of each resource kind,
//! finding one by id or by name (`?name=`), and how fixed IPs and lists read in a table.

use super::output::cell;
use super::{Api, CliError};
use crate::api::request::percent_encode;
use crate::identity::bootstrap::ADMIN_PROJECT;
use serde_json::{json, Value};

const ROOT: &str = "/network/v2.0";

/// One Neutron resource kind as its URLs, bodies and messages spell it.
#[derive(Debug, Clone, Copy)]
pub struct Kind {
    /// The collection in the URL: `security-groups`.
    pub collection: &'static str,
    /// The wrapper of one resource: `security_group`.
    pub key: &'static str,
    /// The wrapper of a list: `security_groups`.
    pub list_key: &'static str,
    /// For messages: `security group`.
    pub label: &'static str,
}

pub const NETWORK: Kind = Kind {
    collection: "networks",
    key: "network",
    list_key: "networks",
    label: "network",
};
pub const SUBNET: Kind = Kind {
    collection: "subnets",
    key: "subnet",
    list_key: "subnets",
    label: "subnet",
};
pub const PORT: Kind = Kind {
    collection: "ports",
    key: "port",
    list_key: "ports",
    label: "port",
};
pub const SECURITY_GROUP: Kind = Kind {
    collection: "security-groups",
    key: "security_group",
    list_key: "security_groups",
    label: "security group",
};
pub const RULE: Kind = Kind {
    collection: "security-group-rules",
    key: "security_group_rule",
    list_key: "security_group_rules",
    label: "security group rule",
};

impl Kind {
    fn path(&self, id: &str) -> String {
        format!("{ROOT}/{}/{}", self.collection, percent_encode(id))
    }

    /// POST `{key: body}`; the created resource.
    pub fn create(&self, api: &Api, body: Value) -> Result<Value, CliError> {
        let mut created = api.post(
            &format!("{ROOT}/{}", self.collection),
            &json!({ self.key: body }),
        )?;
        Ok(created[self.key].take())
    }

    /// The list, filtered by Neutron's `?attr=value` parameters.
    pub fn list(&self, api: &Api, filters: &[(&str, &str)]) -> Result<Vec<Value>, CliError> {
        let query: Vec<String> = filters
            .iter()
            .map(|(k, v)| format!("{k}={}", percent_encode(v)))
            .collect();
        let mut found = api.get(&format!("{ROOT}/{}?{}", self.collection, query.join("&")))?;
        Ok(found[self.list_key]
            .as_array_mut()
            .map(std::mem::take)
            .unwrap_or_default())
    }

    pub fn delete(&self, api: &Api, id: &str) -> Result<(), CliError> {
        api.delete(&self.path(id))
    }

    /// By id first; failing that, by exact name, as openstackclient does. An admin sees
    /// every project's resources, so when a name is taken in several projects the one in
    /// the socket's own project (`admin`) is meant, if there is exactly one there.
    pub fn find(&self, api: &Api, name_or_id: &str) -> Result<Value, CliError> {
        match api.get(&self.path(name_or_id)) {
            Ok(mut v) => return Ok(v[self.key].take()),
            Err(CliError::Api { status: 404, .. }) => {}
            Err(e) => return Err(e),
        }
        let mut matches: Vec<Value> = self
            .list(api, &[("name", name_or_id)])?
            .into_iter()
            .filter(|v| v["name"] == name_or_id)
            .collect();
        if matches.len() > 1 {
            let own = own_project(api)?;
            matches.retain(|v| v["project_id"] == own.as_str());
            if matches.is_empty() {
                return Err(CliError::Usage(self.ambiguous_message(name_or_id)));
            }
        }
        super::only_match(
            matches,
            || {
                format!(
                    "No {} with a name or ID of '{name_or_id}' exists.",
                    self.label
                )
            },
            || self.ambiguous_message(name_or_id),
        )
    }

    fn ambiguous_message(&self, name: &str) -> String {
        format!(
            "More than one {} exists with the name '{name}'; use its ID.",
            self.label
        )
    }

    /// The id of the resource named or identified by `name_or_id`.
    pub fn id_of(&self, api: &Api, name_or_id: &str) -> Result<String, CliError> {
        Ok(cell(&self.find(api, name_or_id)?["id"]))
    }
}

/// The id of the project the unix socket acts in.
fn own_project(api: &Api) -> Result<String, CliError> {
    let found = api.get(&format!("/identity/v3/projects?name={ADMIN_PROJECT}"))?;
    found["projects"][0]["id"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| CliError::Usage(format!("outpostd has no project {ADMIN_PROJECT}")))
}

/// A port's `fixed_ips` as openstackclient prints them:
/// `ip_address='10.0.0.3', subnet_id='...'`, one address per line.
pub fn fixed_ips(port: &Value) -> String {
    port["fixed_ips"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|f| {
            format!(
                "ip_address='{}', subnet_id='{}'",
                cell(&f["ip_address"]),
                cell(&f["subnet_id"])
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A list of strings (ids, addresses) as one cell, comma separated.
pub fn joined(v: &Value) -> String {
    v.as_array()
        .into_iter()
        .flatten()
        .map(cell)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_ips_and_lists_as_cells() {
        let port = json!({"fixed_ips": [
            {"ip_address": "10.0.0.3", "subnet_id": "s4"},
            {"ip_address": "fd00::3", "subnet_id": "s6"},
        ]});
        assert_eq!(
            fixed_ips(&port),
            "ip_address='10.0.0.3', subnet_id='s4'\nip_address='fd00::3', subnet_id='s6'"
        );
        assert_eq!(fixed_ips(&json!({})), "");
        assert_eq!(joined(&json!(["a", "b"])), "a, b");
        assert_eq!(joined(&Value::Null), "");
    }

    #[test]
    fn paths_encode_what_the_user_typed() {
        assert_eq!(
            SECURITY_GROUP.path("a b/c"),
            "/network/v2.0/security-groups/a%20b%2Fc"
        );
    }
}
