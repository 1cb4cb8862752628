//! Nova's migration records (`os-migrations`): what moved or resized a server, from which box
//! to which, and how it ended. Written by the operations themselves (evacuation, resize),
//! read by admins.

pub mod store;

pub use store::{Migration, MigrationStore, MigrationType};

use crate::compute::servers::store::Server;
use crate::store::StorageError;
use crate::timestamp::Timestamp;

/// An evacuation's statuses: accepted when the server's ownership moved, then done or failed
/// on the new box.
pub const ACCEPTED: &str = "accepted";
pub const DONE: &str = "done";
pub const FAILED: &str = "failed";
/// A resize's: migrating while it runs, finished when the server waits in VERIFY_RESIZE,
/// then confirmed or reverted (error when it failed).
pub const MIGRATING: &str = "migrating";
pub const FINISHED: &str = "finished";
pub const CONFIRMED: &str = "confirmed";
pub const REVERTED: &str = "reverted";
pub const ERROR: &str = "error";
/// The statuses after which a migration changes no more.
const FINAL: &[&str] = &[DONE, FAILED, CONFIRMED, REVERTED, ERROR];

/// A new record of `kind` for server `s`, from `source` to `dest`, in `status`.
pub fn record(
    kind: MigrationType,
    s: &Server,
    source: &str,
    dest: &str,
    status: &str,
    new_flavor: Option<&str>,
) -> Result<Migration, crate::random::RandomError> {
    Ok(Migration {
        id: 0,
        uuid: crate::random::uuid()?,
        instance_uuid: s.id.clone(),
        project_id: s.project_id.clone(),
        user_id: s.user_id.clone(),
        migration_type: kind,
        source_compute: source.to_owned(),
        dest_compute: Some(dest.to_owned()),
        status: status.to_owned(),
        old_flavor: Some(s.flavor.id.clone()),
        new_flavor: Some(new_flavor.unwrap_or(&s.flavor.id).to_owned()),
        created_at: Timestamp::now(),
        updated_at: None,
    })
}

/// Ends server `server_id`'s latest migration of `kind` that has not ended, with `status`.
/// None of its kind open (a record lost to a crash, a server older than the records): does
/// nothing, since the record is a report, never what drives the operation.
pub fn end_open(
    store: &dyn MigrationStore,
    server_id: &str,
    kind: MigrationType,
    status: &str,
) -> Result<(), StorageError> {
    let open = store
        .migrations()?
        .into_iter()
        .filter(|m| m.instance_uuid == server_id && m.migration_type == kind)
        .filter(|m| !FINAL.contains(&m.status.as_str()))
        .max_by_key(|m| m.id);
    if let Some(m) = open {
        let from = [m.status.as_str()];
        store.set_migration_status(&m.uuid, &from, status)?;
    }
    Ok(())
}

/// Nova's os-migrations filters.
#[derive(Debug, Default, Clone)]
pub struct MigrationFilter {
    /// Source or destination.
    pub host: Option<String>,
    pub status: Option<String>,
    pub instance_uuid: Option<String>,
    pub migration_type: Option<String>,
    pub source_compute: Option<String>,
}

/// The migrations `filter` lets through, newest first, as Nova lists them.
pub fn list(
    store: &dyn MigrationStore,
    filter: &MigrationFilter,
) -> Result<Vec<Migration>, StorageError> {
    let same = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
    let mut out: Vec<Migration> = store
        .migrations()?
        .into_iter()
        .filter(|m| {
            filter
                .host
                .as_deref()
                .is_none_or(|h| m.source_compute == h || m.dest_compute.as_deref() == Some(h))
        })
        .filter(|m| same(&filter.status, &m.status))
        .filter(|m| same(&filter.instance_uuid, &m.instance_uuid))
        .filter(|m| same(&filter.migration_type, m.migration_type.as_str()))
        .filter(|m| same(&filter.source_compute, &m.source_compute))
        .collect();
    out.sort_by_key(|m| std::cmp::Reverse((m.created_at, m.id)));
    Ok(out)
}

/// What every [`MigrationStore`] does: ids it gives, increasing; an open record ended once;
/// lists newest first through Nova's filters.
#[cfg(test)]
pub(crate) fn conformance(db: &dyn MigrationStore) {
    use crate::compute::servers::store::conformance::server;
    {
        let s = server("s1", "p", 1);
        let first = record(
            MigrationType::Evacuation,
            &s,
            "box2",
            "box1",
            ACCEPTED,
            None,
        )
        .unwrap();
        let first = db.add_migration(&first).unwrap();
        end_open(db, "s1", MigrationType::Evacuation, DONE).unwrap();
        let mut second = record(
            MigrationType::Resize,
            &s,
            "box1",
            "box1",
            FINISHED,
            Some("big"),
        )
        .unwrap();
        second.created_at = Timestamp(first.created_at.micros() + 1);
        let second = db.add_migration(&second).unwrap();
        assert!(second.id > first.id, "ids are the store's, increasing");
        // Ending an evacuation again changes nothing: the one there was has ended.
        end_open(db, "s1", MigrationType::Evacuation, FAILED).unwrap();
        let all = list(db, &MigrationFilter::default()).unwrap();
        let statuses: Vec<(&str, &str)> = all
            .iter()
            .map(|m| (m.migration_type.as_str(), m.status.as_str()))
            .collect();
        assert_eq!(statuses, [("resize", FINISHED), ("evacuation", DONE)]);
        assert!(all[1].updated_at.is_some());
        assert_eq!(all[0].new_flavor.as_deref(), Some("big"));
        let on_box2 = MigrationFilter {
            host: Some("box2".into()),
            ..MigrationFilter::default()
        };
        assert_eq!(list(db, &on_box2).unwrap(), [all[1].clone()]);
        let resizes = MigrationFilter {
            migration_type: Some("resize".into()),
            instance_uuid: Some("s1".into()),
            ..MigrationFilter::default()
        };
        assert_eq!(list(db, &resizes).unwrap(), [all[0].clone()]);
        let other = MigrationFilter {
            instance_uuid: Some("s2".into()),
            ..MigrationFilter::default()
        };
        assert!(list(db, &other).unwrap().is_empty());
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn migration_records_in_sqlite_keep_nova_s_ids_and_end_once() {
        super::conformance(&crate::storage::Db::open_in_memory().unwrap());
    }
}
