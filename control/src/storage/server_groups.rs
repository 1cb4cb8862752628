//! Nova's server groups and their members in SQLite, behind [`ServerGroupStore`].

use super::StorageError;
use crate::compute::server_groups::store::{ServerGroup, ServerGroupStore};
use crate::quota::{Limit, QuotaError};
use crate::timestamp::Timestamp;
use rusqlite::{named_params, Connection, OptionalExtension, Row};

const COLUMNS: &str = "seq, id, name, project_id, user_id, policy, max_server_per_host, created_at";

fn row(r: &Row<'_>) -> rusqlite::Result<(ServerGroup, String)> {
    let group = ServerGroup {
        seq: r.get("seq")?,
        id: r.get("id")?,
        name: r.get("name")?,
        project_id: r.get("project_id")?,
        user_id: r.get("user_id")?,
        // Parsed below, where a bad value can be reported as corrupt.
        policy: outpost_resources::GroupPolicy::Affinity,
        max_server_per_host: r.get("max_server_per_host")?,
        members: Vec::new(),
        created_at: Timestamp(r.get("created_at")?),
    };
    Ok((group, r.get("policy")?))
}

/// The group with its policy parsed and its members read.
fn complete(
    conn: &Connection,
    (mut group, policy): (ServerGroup, String),
) -> Result<ServerGroup, StorageError> {
    group.policy = policy
        .parse()
        .map_err(|e| StorageError::Corrupt(format!("server group {}: {e}", group.id)))?;
    let mut stmt = conn.prepare_cached(
        "SELECT server_id FROM server_group_members WHERE group_id = :group ORDER BY seq",
    )?;
    group.members = stmt
        .query_map(named_params! {":group": group.id}, |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(group)
}

fn one(conn: &Connection, id: &str) -> Result<Option<ServerGroup>, StorageError> {
    let found = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM server_groups WHERE id = :id"),
            named_params! {":id": id},
            row,
        )
        .optional()?;
    found.map(|g| complete(conn, g)).transpose()
}

impl ServerGroupStore for super::Db {
    fn create_group(&self, g: &ServerGroup, limit: Limit) -> Result<ServerGroup, QuotaError> {
        // IMMEDIATE: no other group of the project is made between the count and the insert.
        self.write(|tx| {
            let held: i64 = tx.query_row(
                "SELECT COUNT(*) FROM server_groups WHERE project_id = ?1",
                [&g.project_id],
                |r| r.get(0),
            )?;
            crate::quota::check("server_groups", limit, held, 1)?;
            tx.execute(
                "INSERT INTO server_groups (id, name, project_id, user_id, policy,
                                            max_server_per_host, created_at)
                 VALUES (:id, :name, :project, :user, :policy, :max, :created)",
                named_params! {
                    ":id": g.id,
                    ":name": g.name,
                    ":project": g.project_id,
                    ":user": g.user_id,
                    ":policy": g.policy.as_str(),
                    ":max": g.max_server_per_host,
                    ":created": g.created_at.micros(),
                },
            )?;
            Ok(one(tx, &g.id)?.ok_or_else(|| {
                StorageError::Corrupt(format!("server group {} vanished as it was made", g.id))
            })?)
        })
    }

    fn group(&self, id: &str) -> Result<Option<ServerGroup>, StorageError> {
        self.read(|conn| one(conn, id))
    }

    fn groups(&self, project: Option<&str>) -> Result<Vec<ServerGroup>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare(&format!(
                "SELECT {COLUMNS} FROM server_groups
                 WHERE :project IS NULL OR project_id = :project ORDER BY seq"
            ))?;
            let rows = stmt
                .query_map(named_params! {":project": project}, row)?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter().map(|g| complete(conn, g)).collect()
        })
    }

    fn delete_group(&self, id: &str) -> Result<bool, StorageError> {
        self.write(|tx| {
            let n = tx.execute(
                "DELETE FROM server_groups WHERE id = :id",
                named_params! {":id": id},
            )?;
            Ok(n > 0)
        })
    }

    fn add_member(&self, group: &str, server: &str, limit: Limit) -> Result<bool, QuotaError> {
        self.write(|tx| {
            let exists = tx
                .query_row(
                    "SELECT 1 FROM server_groups WHERE id = :id",
                    named_params! {":id": group},
                    |_| Ok(()),
                )
                .optional()?
                .is_some();
            if exists {
                let (held, already): (i64, i64) = tx.query_row(
                    "SELECT COUNT(*), COALESCE(SUM(server_id = :server), 0)
                     FROM server_group_members WHERE group_id = :group",
                    named_params! {":group": group, ":server": server},
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                if already == 0 {
                    crate::quota::check("server_group_members", limit, held, 1)?;
                }
                tx.execute(
                    "INSERT OR IGNORE INTO server_group_members (group_id, server_id)
                     VALUES (:group, :server)",
                    named_params! {":group": group, ":server": server},
                )?;
            }
            Ok(exists)
        })
    }

    fn remove_member(&self, group: &str, server: &str) -> Result<(), StorageError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM server_group_members WHERE group_id = :group AND server_id = :server",
                named_params! {":group": group, ":server": server},
            )?;
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::compute::server_groups::store::conformance;
    use crate::storage::Db;

    #[test]
    fn sqlite_server_groups_conform_to_the_store_contract() {
        conformance::run(|| Db::open_in_memory().unwrap());
        conformance::races(|| {
            let db = Db::open_in_memory().unwrap();
            (db.clone(), db)
        });
    }
}
