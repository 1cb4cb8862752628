//! Security groups and their rules, and each project's `default` group, made on first use
//! with Neutron's default rules.

use super::rules::{self, RuleRequest};
use super::store::{NetworkTx, SecurityGroup, SecurityGroupRule};
use super::{check_text, new_id, owner, NetworkError, NetworkService};
use crate::context::RequestContext;
use crate::timestamp::Timestamp;
use serde::Deserialize;

pub const DEFAULT_NAME: &str = "default";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGroup {
    pub name: Option<String>,
    pub description: Option<String>,
    /// Only stateful groups exist here.
    pub stateful: Option<bool>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupUpdate {
    pub name: Option<String>,
    pub description: Option<String>,
    pub stateful: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    pub security_group_id: String,
    pub direction: Option<String>,
    pub ethertype: Option<String>,
    /// A name, a number, or a number as a string.
    pub protocol: Option<serde_json::Value>,
    pub port_range_min: Option<serde_json::Value>,
    pub port_range_max: Option<serde_json::Value>,
    pub remote_ip_prefix: Option<String>,
    pub remote_group_id: Option<String>,
    pub remote_address_group_id: Option<serde_json::Value>,
    pub description: Option<String>,
    pub project_id: Option<String>,
    pub tenant_id: Option<String>,
}

fn number(field: &str, v: Option<&serde_json::Value>) -> Result<Option<i64>, NetworkError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| NetworkError::invalid(format!("'{n}' is not an integer for {field}"))),
        Some(serde_json::Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| NetworkError::invalid(format!("'{s}' is not an integer for {field}"))),
        Some(other) => Err(NetworkError::invalid(format!(
            "'{other}' is not an integer for {field}"
        ))),
    }
}

fn not_stateless(v: Option<bool>) -> Result<(), NetworkError> {
    if v == Some(false) {
        return Err(NetworkError::invalid(
            "stateless security groups are not supported by this appliance",
        ));
    }
    Ok(())
}

fn new_rule(
    group: &SecurityGroup,
    direction: &str,
    ethertype: &str,
    remote_group_id: Option<String>,
    now: Timestamp,
) -> Result<SecurityGroupRule, NetworkError> {
    Ok(SecurityGroupRule {
        id: new_id()?,
        security_group_id: group.id.clone(),
        project_id: group.project_id.clone(),
        direction: direction.to_owned(),
        ethertype: ethertype.to_owned(),
        protocol: None,
        port_range_min: None,
        port_range_max: None,
        remote_ip_prefix: None,
        remote_group_id,
        description: String::new(),
        created_at: now,
        updated_at: now,
        revision_number: 0,
    })
}

/// Neutron's rules for a new group: everything out, IPv4 and IPv6.
fn add_egress_rules(
    tx: &dyn NetworkTx,
    g: &SecurityGroup,
    now: Timestamp,
) -> Result<(), NetworkError> {
    for ethertype in ["IPv4", "IPv6"] {
        tx.insert_rule(&new_rule(g, "egress", ethertype, None, now)?)?;
    }
    Ok(())
}

/// The project's `default` group, made now if it does not exist yet: egress anywhere, and
/// ingress from the group's own members, for IPv4 and IPv6 (Neutron's defaults).
pub fn ensure_default(tx: &dyn NetworkTx, project_id: &str) -> Result<SecurityGroup, NetworkError> {
    if let Some(g) = tx.default_group(project_id)? {
        return Ok(g);
    }
    let now = Timestamp::now();
    let g = SecurityGroup {
        id: new_id()?,
        project_id: project_id.to_owned(),
        name: DEFAULT_NAME.to_owned(),
        description: "Default security group".to_owned(),
        is_default: true,
        created_at: now,
        updated_at: now,
        revision_number: 1,
    };
    tx.insert_group(&g)?;
    add_egress_rules(tx, &g, now)?;
    for ethertype in ["IPv4", "IPv6"] {
        tx.insert_rule(&new_rule(
            &g,
            "ingress",
            ethertype,
            Some(g.id.clone()),
            now,
        )?)?;
    }
    Ok(tx.get_group(&g.id)?.unwrap_or(g))
}

/// The group if the caller may see it; 404 otherwise.
pub(super) fn find_group(
    c: &dyn NetworkTx,
    ctx: &RequestContext,
    id: &str,
) -> Result<SecurityGroup, NetworkError> {
    c.get_group(id)?
        .filter(|g| ctx.can_see(&g.project_id))
        .ok_or_else(|| NetworkError::not_found("SecurityGroup", id))
}

impl NetworkService {
    /// The caller's project's default group exists from here on.
    fn ensure_own_default(&self, ctx: &RequestContext) -> Result<(), NetworkError> {
        let Some(project) = ctx.project_id.as_deref() else {
            return Ok(());
        };
        let exists = self.read(|c| Ok(c.default_group(project)?))?.is_some();
        if !exists {
            self.change(|tx| ensure_default(tx, project).map(|_| ()))?;
        }
        Ok(())
    }

    pub fn create_security_group(
        &self,
        ctx: &RequestContext,
        req: NewGroup,
    ) -> Result<(SecurityGroup, Vec<SecurityGroupRule>), NetworkError> {
        not_stateless(req.stateful)?;
        let project_id = owner(ctx, req.project_id.as_deref(), req.tenant_id.as_deref())?;
        let name = req.name.unwrap_or_default();
        let description = req.description.unwrap_or_default();
        check_text("name", &name)?;
        check_text("description", &description)?;
        let id = new_id()?;
        let limit = self.quota(&project_id, "security_group")?;
        self.change(|tx| {
            ensure_default(tx, &project_id)?;
            // The default group counts, as in Neutron.
            let held = tx.list_groups()?;
            super::within_quota(
                "security_group",
                limit,
                held.iter().filter(|o| o.project_id == project_id).count(),
            )?;
            if name == DEFAULT_NAME {
                return Err(NetworkError::conflict(
                    "SecurityGroupDefaultAlreadyExists",
                    "Default security group already exists.",
                ));
            }
            let now = Timestamp::now();
            let g = SecurityGroup {
                id: id.clone(),
                project_id: project_id.clone(),
                name: name.clone(),
                description: description.clone(),
                is_default: false,
                created_at: now,
                updated_at: now,
                revision_number: 1,
            };
            tx.insert_group(&g)?;
            add_egress_rules(tx, &g, now)?;
            let g = tx.get_group(&id)?.unwrap_or(g);
            Ok((g, tx.list_rules(Some(&id))?))
        })
    }

    pub fn get_security_group(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<(SecurityGroup, Vec<SecurityGroupRule>), NetworkError> {
        self.read(|c| {
            let g = find_group(c, ctx, id)?;
            Ok((g, c.list_rules(Some(id))?))
        })
    }

    /// Finds a group the caller may use by id, or else by unique name in its project (for
    /// Nova's security group names).
    pub fn find_security_group(
        &self,
        ctx: &RequestContext,
        name_or_id: &str,
    ) -> Result<SecurityGroup, NetworkError> {
        self.ensure_own_default(ctx)?;
        self.read(|c| {
            if let Ok(g) = find_group(c, ctx, name_or_id) {
                return Ok(g);
            }
            let project = ctx.project_id.as_deref().unwrap_or_default();
            let mut hits: Vec<SecurityGroup> = c
                .list_groups()?
                .into_iter()
                .filter(|g| g.name == name_or_id && g.project_id == project)
                .collect();
            match hits.len() {
                1 => Ok(hits.remove(0)),
                0 => Err(NetworkError::not_found("SecurityGroup", name_or_id)),
                _ => Err(NetworkError::conflict(
                    "DuplicateSecurityGroup",
                    format!("More than one security group is named {name_or_id}; use its id."),
                )),
            }
        })
    }

    /// The groups the caller may see, each with its rules. Makes the caller's default group
    /// first, as Neutron does.
    pub fn list_security_groups(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<(SecurityGroup, Vec<SecurityGroupRule>)>, NetworkError> {
        self.ensure_own_default(ctx)?;
        self.read(|c| {
            let rules = c.list_rules(None)?;
            Ok(c.list_groups()?
                .into_iter()
                .filter(|g| ctx.can_see(&g.project_id))
                .map(|g| {
                    let mine = rules
                        .iter()
                        .filter(|r| r.security_group_id == g.id)
                        .cloned()
                        .collect();
                    (g, mine)
                })
                .collect())
        })
    }

    pub fn update_security_group(
        &self,
        ctx: &RequestContext,
        id: &str,
        req: GroupUpdate,
    ) -> Result<(SecurityGroup, Vec<SecurityGroupRule>), NetworkError> {
        not_stateless(req.stateful)?;
        self.change(|tx| {
            let mut g = find_group(tx, ctx, id)?;
            if let Some(name) = req.name.clone() {
                check_text("name", &name)?;
                if g.is_default && name != DEFAULT_NAME {
                    return Err(NetworkError::conflict(
                        "SecurityGroupCannotUpdateDefault",
                        "Updating default security group not allowed.",
                    ));
                }
                if !g.is_default && name == DEFAULT_NAME {
                    return Err(NetworkError::conflict(
                        "SecurityGroupDefaultAlreadyExists",
                        "Default security group already exists.",
                    ));
                }
                g.name = name;
            }
            if let Some(d) = req.description.clone() {
                check_text("description", &d)?;
                g.description = d;
            }
            tx.update_group(&g)?;
            let g = tx.get_group(id)?.unwrap_or(g);
            Ok((g, tx.list_rules(Some(id))?))
        })
    }

    /// Neutron's rules: a group used by a port stays (409 SecurityGroupInUse); a member may
    /// not remove its project's default group (409), an admin may.
    pub fn delete_security_group(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<(), NetworkError> {
        self.change(|tx| {
            let g = find_group(tx, ctx, id)?;
            if g.is_default && !ctx.is_admin() {
                return Err(NetworkError::conflict(
                    "SecurityGroupCannotRemoveDefault",
                    "Insufficient rights for removing default security group.",
                ));
            }
            if tx.ports_in_group(id)? > 0 {
                return Err(NetworkError::conflict(
                    "SecurityGroupInUse",
                    format!("Security Group {id} in use."),
                ));
            }
            Ok(tx.delete_group(id)?)
        })
    }

    pub fn create_security_group_rule(
        &self,
        ctx: &RequestContext,
        req: NewRule,
    ) -> Result<SecurityGroupRule, NetworkError> {
        if req
            .remote_address_group_id
            .as_ref()
            .is_some_and(|v| !v.is_null())
        {
            return Err(NetworkError::invalid("address groups are not supported"));
        }
        let protocol = match &req.protocol {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                return Err(NetworkError::invalid(format!(
                    "'{other}' is not a valid protocol"
                )))
            }
        };
        let valid = rules::validate(&RuleRequest {
            direction: req.direction.clone(),
            ethertype: req.ethertype.clone(),
            protocol,
            port_range_min: number("port_range_min", req.port_range_min.as_ref())?,
            port_range_max: number("port_range_max", req.port_range_max.as_ref())?,
            remote_ip_prefix: req.remote_ip_prefix.clone(),
            remote_group_id: req.remote_group_id.clone(),
        })?;
        let description = req.description.unwrap_or_default();
        check_text("description", &description)?;
        owner(ctx, req.project_id.as_deref(), req.tenant_id.as_deref())?;
        let id = new_id()?;
        // A rule is its group's project's (a group's project never changes).
        let project_id =
            self.read(|c| Ok(find_group(c, ctx, &req.security_group_id)?.project_id))?;
        let limit = self.quota(&project_id, "security_group_rule")?;
        self.change(|tx| {
            let g = find_group(tx, ctx, &req.security_group_id)?;
            let held = tx.list_rules(None)?;
            super::within_quota(
                "security_group_rule",
                limit,
                held.iter().filter(|o| o.project_id == g.project_id).count(),
            )?;
            if let Some(remote) = &valid.remote_group_id {
                find_group(tx, ctx, remote)?;
            }
            if let Some(dup) = tx
                .list_rules(Some(&g.id))?
                .iter()
                .find(|old| rules::same_rule(&valid, old))
            {
                return Err(NetworkError::conflict(
                    "SecurityGroupRuleExists",
                    format!("Security group rule already exists. Rule id is {}.", dup.id),
                ));
            }
            let now = Timestamp::now();
            let r = SecurityGroupRule {
                id: id.clone(),
                security_group_id: g.id.clone(),
                project_id: g.project_id.clone(),
                direction: valid.direction.clone(),
                ethertype: valid.ethertype.clone(),
                protocol: valid.protocol.clone(),
                port_range_min: valid.port_range_min,
                port_range_max: valid.port_range_max,
                remote_ip_prefix: valid.remote_ip_prefix,
                remote_group_id: valid.remote_group_id.clone(),
                description: description.clone(),
                created_at: now,
                updated_at: now,
                revision_number: 0,
            };
            tx.insert_rule(&r)?;
            Ok(r)
        })
    }

    pub fn get_security_group_rule(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<SecurityGroupRule, NetworkError> {
        self.read(|c| {
            c.get_rule(id)?
                .filter(|r| ctx.can_see(&r.project_id))
                .ok_or_else(|| NetworkError::not_found("SecurityGroupRule", id))
        })
    }

    pub fn list_security_group_rules(
        &self,
        ctx: &RequestContext,
    ) -> Result<Vec<SecurityGroupRule>, NetworkError> {
        self.ensure_own_default(ctx)?;
        self.read(|c| {
            Ok(c.list_rules(None)?
                .into_iter()
                .filter(|r| ctx.can_see(&r.project_id))
                .collect())
        })
    }

    pub fn delete_security_group_rule(
        &self,
        ctx: &RequestContext,
        id: &str,
    ) -> Result<(), NetworkError> {
        self.change(|tx| {
            let r = tx
                .get_rule(id)?
                .filter(|r| ctx.can_see(&r.project_id))
                .ok_or_else(|| NetworkError::not_found("SecurityGroupRule", id))?;
            Ok(tx.delete_rule(&r)?)
        })
    }
}
