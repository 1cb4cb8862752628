//! Migration records' door: Nova's `migrations` table, one record per evacuation, cold
//! migration and resize of a server. SQLite keeps them on one box (`storage::migrations`),
//! etcd for a site (`cluster::store::migrations`, `/migrations/<uuid>`), where the record of an
//! evacuation is written in the ownership move's own transaction.

use crate::store::StorageError;
use crate::timestamp::Timestamp;

/// Nova's `migration_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationType {
    /// A server of a dead box rebuilt on another.
    Evacuation,
    /// A cold migration to another box, same flavor.
    Migration,
    /// A change of flavor.
    Resize,
}

impl MigrationType {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationType::Evacuation => "evacuation",
            MigrationType::Migration => "migration",
            MigrationType::Resize => "resize",
        }
    }

    pub fn parse(s: &str) -> Option<MigrationType> {
        [
            MigrationType::Evacuation,
            MigrationType::Migration,
            MigrationType::Resize,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// One migration of a server, as Nova's os-migrations shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// Nova's integer id, given by the store (an etcd key's `create_revision`).
    pub id: i64,
    pub uuid: String,
    pub instance_uuid: String,
    pub project_id: String,
    pub user_id: String,
    pub migration_type: MigrationType,
    pub source_compute: String,
    pub dest_compute: Option<String>,
    /// Nova's words: `accepted`, `done`, `failed` for an evacuation; `finished`,
    /// `confirmed`, `reverted`, `error` for a resize or migration.
    pub status: String,
    pub old_flavor: Option<String>,
    pub new_flavor: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

pub trait MigrationStore: Send + Sync {
    /// Every migration, in id order.
    fn migrations(&self) -> Result<Vec<Migration>, StorageError>;

    /// Stores a new migration (its `id` is ignored: the store gives one); returns it stored.
    fn add_migration(&self, m: &Migration) -> Result<Migration, StorageError>;

    /// Sets migration `uuid`'s status (and `updated_at`) if it is one of `from`; whether it
    /// changed.
    fn set_migration_status(
        &self,
        uuid: &str,
        from: &[&str],
        to: &str,
    ) -> Result<bool, StorageError>;
}
