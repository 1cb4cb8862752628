//! Migration records' door in etcd: `/migrations/<uuid>` holds one record of an evacuation,
//! cold migration or resize (docs/cluster.md, "The keyspace"); Nova's integer id is the key's
//! `create_revision`. An evacuation's record is put in the ownership move's own transaction
//! ([`put_op`]), so a move is never without its record. A status change compares the record's
//! revision.

use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::{from_json, to_json, EtcdDoors};
use crate::cluster::keys::Keyspace;
use crate::compute::migrations::{Migration, MigrationStore, MigrationType};
use crate::store::StorageError;
use crate::timestamp::Timestamp;

const MIGRATION_SCHEMA: u32 = 1;
/// How often a status change that lost a race is tried again.
const TRIES: u32 = 8;

#[derive(Serialize, Deserialize)]
struct MigrationRecord {
    schema: u32,
    uuid: String,
    instance_uuid: String,
    project_id: String,
    user_id: String,
    migration_type: String,
    source_compute: String,
    #[serde(default)]
    dest_compute: Option<String>,
    status: String,
    #[serde(default)]
    old_flavor: Option<String>,
    #[serde(default)]
    new_flavor: Option<String>,
    /// Microseconds since the epoch, as [`Timestamp`].
    created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<i64>,
}

impl MigrationRecord {
    fn new(m: &Migration) -> MigrationRecord {
        MigrationRecord {
            schema: MIGRATION_SCHEMA,
            uuid: m.uuid.clone(),
            instance_uuid: m.instance_uuid.clone(),
            project_id: m.project_id.clone(),
            user_id: m.user_id.clone(),
            migration_type: m.migration_type.as_str().to_owned(),
            source_compute: m.source_compute.clone(),
            dest_compute: m.dest_compute.clone(),
            status: m.status.clone(),
            old_flavor: m.old_flavor.clone(),
            new_flavor: m.new_flavor.clone(),
            created_at: m.created_at.micros(),
            updated_at: m.updated_at.map(Timestamp::micros),
        }
    }
}

fn decode(kv: &KeyValue) -> Result<Migration, StorageError> {
    let r: MigrationRecord = from_json(kv)?;
    let migration_type = MigrationType::parse(&r.migration_type).ok_or_else(|| {
        StorageError::Corrupt(format!(
            "migration {} has an unknown type {:?}",
            r.uuid, r.migration_type
        ))
    })?;
    Ok(Migration {
        id: kv.create_revision(),
        uuid: r.uuid,
        instance_uuid: r.instance_uuid,
        project_id: r.project_id,
        user_id: r.user_id,
        migration_type,
        source_compute: r.source_compute,
        dest_compute: r.dest_compute,
        status: r.status,
        old_flavor: r.old_flavor,
        new_flavor: r.new_flavor,
        created_at: Timestamp(r.created_at),
        updated_at: r.updated_at.map(Timestamp),
    })
}

/// The put of a new record `m`, for a transaction that makes the migration happen.
pub(super) fn put_op(keys: &Keyspace, m: &Migration) -> TxnOp {
    TxnOp::put(
        keys.migration(&m.uuid),
        to_json(&MigrationRecord::new(m)),
        None,
    )
}

/// [`MigrationStore`] on etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdMigrations {
    doors: EtcdDoors,
}

impl EtcdMigrations {
    pub(super) fn new(doors: EtcdDoors) -> EtcdMigrations {
        EtcdMigrations { doors }
    }
}

impl MigrationStore for EtcdMigrations {
    fn migrations(&self) -> Result<Vec<Migration>, StorageError> {
        let prefix = self.doors.kv.keys.migrations();
        self.doors.call(|kv| async move {
            let mut out = kv
                .range(prefix, false)
                .await?
                .iter()
                .map(decode)
                .collect::<Result<Vec<_>, StorageError>>()?;
            out.sort_by_key(|m| m.id);
            Ok(out)
        })
    }

    fn add_migration(&self, m: &Migration) -> Result<Migration, StorageError> {
        let key = self.doors.kv.keys.migration(&m.uuid);
        let op = put_op(&self.doors.kv.keys, m);
        let txn = Txn::new()
            .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
            .and_then([op]);
        let made = self.doors.call(|kv| async move {
            if !kv.txn(txn).await?.succeeded() {
                return Err(StorageError::Corrupt(format!(
                    "migration {key} exists already"
                )));
            }
            kv.get(key).await?.map(|kv| decode(&kv)).transpose()
        })?;
        made.ok_or_else(|| StorageError::Corrupt(format!("migration {} vanished", m.uuid)))
    }

    fn set_migration_status(
        &self,
        uuid: &str,
        from: &[&str],
        to: &str,
    ) -> Result<bool, StorageError> {
        let key = self.doors.kv.keys.migration(uuid);
        for _ in 0..TRIES {
            let read = key.clone();
            let Some(kv) = self.doors.call(|kv| async move { kv.get(read).await })? else {
                return Ok(false);
            };
            let mut m = decode(&kv)?;
            if !from.contains(&m.status.as_str()) {
                return Ok(false);
            }
            m.status = to.to_owned();
            m.updated_at = Some(Timestamp::now());
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([put_op(&self.doors.kv.keys, &m)]);
            let done = self
                .doors
                .call(|kv| async move { Ok::<_, StorageError>(kv.txn(txn).await?.succeeded()) })?;
            if done {
                return Ok(true);
            }
            std::thread::sleep(crate::random::retry_jitter());
        }
        Ok(false)
    }
}
