//! Neutron security groups and their rules. Which ports use a group is kept with the ports
//! ([`super::networks`]).

use super::networks::parsed;
use super::{flag, StorageError};
use crate::network::store::{SecurityGroup, SecurityGroupRule};
use crate::timestamp::Timestamp;
use rusqlite::{params, Connection, OptionalExtension, Row};

const GROUP_COLUMNS: &str =
    "id, project_id, name, description, is_default, created_at, updated_at, revision_number";

fn group_row(r: &Row<'_>) -> rusqlite::Result<SecurityGroup> {
    Ok(SecurityGroup {
        id: r.get(0)?,
        project_id: r.get(1)?,
        name: r.get(2)?,
        description: r.get(3)?,
        is_default: flag(r.get(4)?),
        created_at: Timestamp(r.get(5)?),
        updated_at: Timestamp(r.get(6)?),
        revision_number: r.get(7)?,
    })
}

pub(super) fn insert_group(c: &Connection, g: &SecurityGroup) -> Result<(), StorageError> {
    c.execute(
        &format!("INSERT INTO security_groups ({GROUP_COLUMNS}) VALUES (?1,?2,?3,?4,?5,?6,?7,?8)"),
        params![
            g.id,
            g.project_id,
            g.name,
            g.description,
            g.is_default,
            g.created_at.micros(),
            g.updated_at.micros(),
            g.revision_number
        ],
    )?;
    Ok(())
}

pub(super) fn update_group(c: &Connection, g: &SecurityGroup) -> Result<(), StorageError> {
    c.execute(
        "UPDATE security_groups SET name = ?2, description = ?3, updated_at = ?4, \
         revision_number = revision_number + 1 WHERE id = ?1",
        params![g.id, g.name, g.description, Timestamp::now().micros()],
    )?;
    Ok(())
}

pub(super) fn get_group(c: &Connection, id: &str) -> Result<Option<SecurityGroup>, StorageError> {
    Ok(c.query_row(
        &format!("SELECT {GROUP_COLUMNS} FROM security_groups WHERE id = ?1"),
        [id],
        group_row,
    )
    .optional()?)
}

pub(super) fn default_group(
    c: &Connection,
    project_id: &str,
) -> Result<Option<SecurityGroup>, StorageError> {
    Ok(c.query_row(
        &format!(
            "SELECT {GROUP_COLUMNS} FROM security_groups WHERE project_id = ?1 AND is_default = 1"
        ),
        [project_id],
        group_row,
    )
    .optional()?)
}

pub(super) fn list_groups(c: &Connection) -> Result<Vec<SecurityGroup>, StorageError> {
    let mut st = c.prepare(&format!(
        "SELECT {GROUP_COLUMNS} FROM security_groups ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([], group_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn delete_group(c: &Connection, id: &str) -> Result<(), StorageError> {
    c.execute("DELETE FROM security_groups WHERE id = ?1", [id])?;
    Ok(())
}

const RULE_COLUMNS: &str = "id, security_group_id, project_id, direction, ethertype, protocol, \
     port_range_min, port_range_max, remote_ip_prefix, remote_group_id, description, created_at, \
     updated_at, revision_number";

fn rule_row(r: &Row<'_>) -> rusqlite::Result<SecurityGroupRule> {
    Ok(SecurityGroupRule {
        id: r.get(0)?,
        security_group_id: r.get(1)?,
        project_id: r.get(2)?,
        direction: r.get(3)?,
        ethertype: r.get(4)?,
        protocol: r.get(5)?,
        port_range_min: r.get(6)?,
        port_range_max: r.get(7)?,
        remote_ip_prefix: r
            .get::<_, Option<String>>(8)?
            .map(|p| parsed("remote_ip_prefix", p))
            .transpose()?,
        remote_group_id: r.get(9)?,
        description: r.get(10)?,
        created_at: Timestamp(r.get(11)?),
        updated_at: Timestamp(r.get(12)?),
        revision_number: r.get(13)?,
    })
}

pub(super) fn insert_rule(c: &Connection, r: &SecurityGroupRule) -> Result<(), StorageError> {
    c.execute(
        &format!(
            "INSERT INTO security_group_rules ({RULE_COLUMNS}) \
             VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,?11,?12,?13,?14)"
        ),
        params![
            r.id,
            r.security_group_id,
            r.project_id,
            r.direction,
            r.ethertype,
            r.protocol,
            r.port_range_min,
            r.port_range_max,
            r.remote_ip_prefix.map(|p| p.to_string()),
            r.remote_group_id,
            r.description,
            r.created_at.micros(),
            r.updated_at.micros(),
            r.revision_number
        ],
    )?;
    // A rule change is a change of its group, as Neutron counts revisions.
    c.execute(
        "UPDATE security_groups SET revision_number = revision_number + 1 WHERE id = ?1",
        [&r.security_group_id],
    )?;
    Ok(())
}

pub(super) fn get_rule(
    c: &Connection,
    id: &str,
) -> Result<Option<SecurityGroupRule>, StorageError> {
    Ok(c.query_row(
        &format!("SELECT {RULE_COLUMNS} FROM security_group_rules WHERE id = ?1"),
        [id],
        rule_row,
    )
    .optional()?)
}

/// All rules, or those of one group, oldest first.
pub(super) fn list_rules(
    c: &Connection,
    group_id: Option<&str>,
) -> Result<Vec<SecurityGroupRule>, StorageError> {
    let mut st = c.prepare(&format!(
        "SELECT {RULE_COLUMNS} FROM security_group_rules \
         WHERE ?1 IS NULL OR security_group_id = ?1 ORDER BY created_at, id"
    ))?;
    let rows = st.query_map([group_id], rule_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn delete_rule(c: &Connection, r: &SecurityGroupRule) -> Result<(), StorageError> {
    c.execute("DELETE FROM security_group_rules WHERE id = ?1", [&r.id])?;
    c.execute(
        "UPDATE security_groups SET revision_number = revision_number + 1 WHERE id = ?1",
        [&r.security_group_id],
    )?;
    Ok(())
}
