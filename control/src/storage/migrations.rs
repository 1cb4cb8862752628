//! Schema migrations: a versioned list of SQL steps. Each pending step runs in its own
//! transaction together with its row in `schema_migrations`, so a step is either wholly
//! applied and recorded or not at all. Steps are append-only: never edit a released one.

use super::StorageError;
use crate::timestamp::Timestamp;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every schema step, in order. Images, volumes and servers append theirs here.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "identity",
        sql: include_str!("migrations/0001_identity.sql"),
    },
    Migration {
        version: 2,
        name: "flavors",
        sql: include_str!("migrations/0002_flavors.sql"),
    },
    // Glance images and Cinder volumes.
    Migration {
        version: 3,
        name: "images",
        sql: include_str!("migrations/0003_images.sql"),
    },
    Migration {
        version: 4,
        name: "volumes",
        sql: include_str!("migrations/0004_volumes.sql"),
    },
    // Nova servers.
    Migration {
        version: 5,
        name: "servers",
        sql: include_str!("migrations/0005_servers.sql"),
    },
    // Neutron networks, subnets, ports and security groups.
    Migration {
        version: 6,
        name: "networks",
        sql: include_str!("migrations/0006_networks.sql"),
    },
    Migration {
        version: 7,
        name: "server placement request",
        sql: include_str!("migrations/0007_server_placement.sql"),
    },
    // Where each image's verified copies are.
    Migration {
        version: 8,
        name: "image_copies",
        sql: include_str!("migrations/0008_image_copies.sql"),
    },
    // Nova's server groups and their members.
    Migration {
        version: 9,
        name: "server_groups",
        sql: include_str!("migrations/0009_server_groups.sql"),
    },
    // The box that holds each volume's file.
    Migration {
        version: 10,
        name: "volume homes",
        sql: include_str!("migrations/0010_volume_homes.sql"),
    },
    // Nova key pairs (a user's named ssh public keys), and the key each server was made with.
    Migration {
        version: 11,
        name: "key_pairs",
        sql: include_str!("migrations/0011_keypairs.sql"),
    },
    // Nova's host aggregates: hosts and metadata (the availability zone among them).
    Migration {
        version: 12,
        name: "aggregates",
        sql: include_str!("migrations/0012_aggregates.sql"),
    },
    // The quota limits set per project (the defaults are configuration).
    Migration {
        version: 13,
        name: "quota_limits",
        sql: include_str!("migrations/0013_quotas.sql"),
    },
    // Nova's migration records (os-migrations).
    Migration {
        version: 14,
        name: "server_migrations",
        sql: include_str!("migrations/0014_server_migrations.sql"),
    },
    // Glance's image members (the projects a shared image is shared with).
    Migration {
        version: 15,
        name: "image_members",
        sql: include_str!("migrations/0015_image_members.sql"),
    },
    // The admin password a create answered with, for the guest's metadata.
    Migration {
        version: 16,
        name: "server_admin_pass",
        sql: include_str!("migrations/0016_server_admin_pass.sql"),
    },
];

pub(super) fn apply(conn: &mut Connection, steps: &[Migration]) -> Result<(), StorageError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version INTEGER PRIMARY KEY,
             name TEXT NOT NULL,
             applied_at INTEGER NOT NULL
         )",
    )?;
    let known = steps.last().map_or(0, |m| m.version);
    let found = current_version(conn)?;
    if found > known {
        return Err(StorageError::SchemaTooNew { found, known });
    }
    for step in steps.iter().filter(|m| m.version > found) {
        let failed = |source| StorageError::Migration {
            version: step.version,
            name: step.name,
            source: Box::new(source),
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        tx.execute_batch(step.sql).map_err(failed)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            (step.version, step.name, Timestamp::now().micros()),
        )
        .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(
            "database schema migrated to version {} ({})",
            step.version,
            step.name
        );
    }
    Ok(())
}

fn current_version(conn: &Connection) -> Result<i64, StorageError> {
    let v: Option<i64> = conn
        .query_row("SELECT MAX(version) FROM schema_migrations", [], |r| {
            r.get(0)
        })
        .optional()?
        .flatten();
    Ok(v.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn versions(conn: &Connection) -> Vec<(i64, String)> {
        let mut st = conn
            .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
            .unwrap();
        st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn applies_every_step_once_and_records_it() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn, MIGRATIONS).unwrap();
        apply(&mut conn, MIGRATIONS).unwrap();
        let recorded = versions(&conn);
        assert_eq!(recorded.len(), MIGRATIONS.len());
        assert_eq!(recorded[0], (1, "identity".to_owned()));
        // The tables of the last step exist.
        conn.execute_batch("SELECT * FROM flavor_extra_specs")
            .unwrap();
    }

    #[test]
    fn a_failing_step_leaves_nothing_behind() {
        let steps = [
            Migration {
                version: 1,
                name: "good",
                sql: "CREATE TABLE a (x INTEGER);",
            },
            Migration {
                version: 2,
                name: "bad",
                sql: "CREATE TABLE b (y INTEGER); INSERT INTO nowhere VALUES (1);",
            },
        ];
        let mut conn = Connection::open_in_memory().unwrap();
        let err = apply(&mut conn, &steps).unwrap_err();
        assert!(matches!(err, StorageError::Migration { version: 2, .. }));
        assert_eq!(versions(&conn), vec![(1, "good".to_owned())]);
        // Step 2's table was rolled back with it.
        assert!(conn.execute_batch("SELECT * FROM b").is_err());
    }

    #[test]
    fn refuses_a_schema_from_a_newer_release() {
        let mut conn = Connection::open_in_memory().unwrap();
        apply(&mut conn, MIGRATIONS).unwrap();
        conn.execute(
            "INSERT INTO schema_migrations VALUES (999, 'future', 0)",
            [],
        )
        .unwrap();
        let err = apply(&mut conn, MIGRATIONS).unwrap_err();
        assert!(matches!(err, StorageError::SchemaTooNew { found: 999, .. }));
    }
}
