//! Nova's migration records in SQLite, behind [`MigrationStore`].

use super::StorageError;
use crate::compute::migrations::{Migration, MigrationStore, MigrationType};
use crate::timestamp::Timestamp;
use rusqlite::named_params;

impl MigrationStore for super::Db {
    fn migrations(&self) -> Result<Vec<Migration>, StorageError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, uuid, instance_uuid, project_id, user_id, migration_type,
                        source_compute, dest_compute, status, old_flavor, new_flavor,
                        created_at, updated_at
                 FROM server_migrations ORDER BY id",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        Migration {
                            id: r.get("id")?,
                            uuid: r.get("uuid")?,
                            instance_uuid: r.get("instance_uuid")?,
                            project_id: r.get("project_id")?,
                            user_id: r.get("user_id")?,
                            // Replaced below; a row of an unknown type is corrupt.
                            migration_type: MigrationType::Migration,
                            source_compute: r.get("source_compute")?,
                            dest_compute: r.get("dest_compute")?,
                            status: r.get("status")?,
                            old_flavor: r.get("old_flavor")?,
                            new_flavor: r.get("new_flavor")?,
                            created_at: Timestamp(r.get("created_at")?),
                            updated_at: r.get::<_, Option<i64>>("updated_at")?.map(Timestamp),
                        },
                        r.get::<_, String>("migration_type")?,
                    ))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            rows.into_iter()
                .map(|(mut m, kind)| {
                    m.migration_type = MigrationType::parse(&kind).ok_or_else(|| {
                        StorageError::Corrupt(format!(
                            "migration {} has an unknown type {kind:?}",
                            m.uuid
                        ))
                    })?;
                    Ok(m)
                })
                .collect()
        })
    }

    fn add_migration(&self, m: &Migration) -> Result<Migration, StorageError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO server_migrations (uuid, instance_uuid, project_id, user_id,
                    migration_type, source_compute, dest_compute, status, old_flavor,
                    new_flavor, created_at, updated_at)
                 VALUES (:uuid, :instance, :project, :user, :kind, :source, :dest, :status,
                    :old, :new, :created, :updated)",
                named_params! {
                    ":uuid": m.uuid,
                    ":instance": m.instance_uuid,
                    ":project": m.project_id,
                    ":user": m.user_id,
                    ":kind": m.migration_type.as_str(),
                    ":source": m.source_compute,
                    ":dest": m.dest_compute,
                    ":status": m.status,
                    ":old": m.old_flavor,
                    ":new": m.new_flavor,
                    ":created": m.created_at.micros(),
                    ":updated": m.updated_at.map(Timestamp::micros),
                },
            )?;
            Ok(Migration {
                id: tx.last_insert_rowid(),
                ..m.clone()
            })
        })
    }

    fn set_migration_status(
        &self,
        uuid: &str,
        from: &[&str],
        to: &str,
    ) -> Result<bool, StorageError> {
        self.write(|tx| {
            let current: Option<String> = tx
                .query_row(
                    "SELECT status FROM server_migrations WHERE uuid = :uuid",
                    named_params! {":uuid": uuid},
                    |r| r.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })?;
            if !current.is_some_and(|c| from.contains(&c.as_str())) {
                return Ok(false);
            }
            tx.execute(
                "UPDATE server_migrations SET status = :to, updated_at = :now WHERE uuid = :uuid",
                named_params! {":to": to, ":now": Timestamp::now().micros(), ":uuid": uuid},
            )?;
            Ok(true)
        })
    }
}
