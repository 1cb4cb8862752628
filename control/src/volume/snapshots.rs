//! Volume snapshots: a thin copy of a volume, taken in the background like a volume creation.
//! A snapshot of an attached volume needs `force` (its guest may be writing; the copy is then
//! crash-consistent). A volume cannot be deleted while it has snapshots; a snapshot cannot be
//! deleted while a volume is being created from it.

use super::jobs::{self, JobKind};
use super::{check_text, project_of, query, ListQuery, Stores, VolumeError};
use crate::context::RequestContext;
use crate::random;
use crate::storage::volumes::{self as store, Snapshot, SnapshotStatus, VolumeStatus};
use crate::storage::Db;
use crate::timestamp::Timestamp;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSnapshot {
    pub volume_id: String,
    pub force: bool,
    pub name: Option<String>,
    pub description: Option<String>,
}

fn visible(
    c: &rusqlite::Connection,
    ctx: &RequestContext,
    id: &str,
) -> Result<Snapshot, VolumeError> {
    store::snapshot(c, id)?
        .filter(|s| ctx.can_see(&s.project_id))
        .ok_or_else(|| VolumeError::SnapshotNotFound(id.to_owned()))
}

pub fn create(
    stores: &Stores,
    ctx: &RequestContext,
    new: NewSnapshot,
) -> Result<Snapshot, VolumeError> {
    check_text("name", &new.name, 255)?;
    check_text("description", &new.description, 255)?;
    let now = Timestamp::now();
    let id = random::uuid()?;
    let snap = stores.db.write(|tx| {
        let v = super::visible(tx, ctx, &new.volume_id)?;
        let ok = match v.status {
            VolumeStatus::Available => true,
            VolumeStatus::InUse => new.force,
            _ => false,
        };
        if !ok {
            return Err(VolumeError::InvalidVolume(format!(
                "Volume {} status must be available{}, but current status is: {}",
                v.id,
                if v.status == VolumeStatus::InUse {
                    " (or in-use with force)"
                } else {
                    ""
                },
                v.status.as_str()
            )));
        }
        let snap = Snapshot {
            id: id.clone(),
            project_id: project_of(ctx)?,
            user_id: ctx.user_id.clone(),
            volume_id: v.id.clone(),
            name: new.name.clone(),
            description: new.description.clone(),
            size: v.size,
            status: SnapshotStatus::Creating,
            fault: None,
            created_at: now,
            updated_at: now,
        };
        store::insert_snapshot(tx, &snap)?;
        Ok(snap)
    })?;
    let worker = stores.clone();
    let volume_id = snap.volume_id.clone();
    jobs::spawn(
        stores,
        "snapshot-create",
        JobKind::Snapshot,
        &snap.id,
        move || {
            let made = worker.volumes.snapshot(&volume_id, &id);
            jobs::finish(
                &worker,
                JobKind::Snapshot,
                &id,
                made.map(drop).map_err(|e| e.to_string()),
            );
        },
    )?;
    Ok(snap)
}

pub fn get(db: &Db, ctx: &RequestContext, id: &str) -> Result<Snapshot, VolumeError> {
    db.read(|c| visible(c, ctx, id))
}

pub fn list(db: &Db, ctx: &RequestContext, q: &ListQuery) -> Result<Vec<Snapshot>, VolumeError> {
    let project = if q.all_projects && ctx.is_admin() {
        None
    } else {
        Some(project_of(ctx)?)
    };
    let all = db.read(|c| store::snapshots(c, project.as_deref()))?;
    query::page(all, q)
}

const DELETABLE: [SnapshotStatus; 3] = [
    SnapshotStatus::Available,
    SnapshotStatus::Error,
    SnapshotStatus::ErrorDeleting,
];

pub fn delete(stores: &Stores, ctx: &RequestContext, id: &str) -> Result<(), VolumeError> {
    stores.db.write(|tx| {
        let s = visible(tx, ctx, id)?;
        let copying = store::volumes(tx, None)?
            .iter()
            .any(|v| v.snapshot_id.as_deref() == Some(id) && v.status == VolumeStatus::Creating);
        if copying {
            return Err(VolumeError::InvalidSnapshot(format!(
                "a volume is being created from snapshot {id}; delete it once that is done"
            )));
        }
        if !store::set_snapshot_status_if(tx, id, &DELETABLE, SnapshotStatus::Deleting, None)? {
            return Err(VolumeError::InvalidSnapshot(format!(
                "Snapshot status must be available or error; snapshot {id} is {}",
                s.status.as_str()
            )));
        }
        Ok(())
    })?;
    finish_delete(stores, id)
}

pub(super) fn finish_delete(stores: &Stores, id: &str) -> Result<(), VolumeError> {
    if let Err(e) = stores.volumes.delete_snapshot(id) {
        let fault = e.to_string();
        stores.db.write(|tx| {
            store::set_snapshot_status_if(
                tx,
                id,
                &[SnapshotStatus::Deleting],
                SnapshotStatus::ErrorDeleting,
                Some(&fault),
            )
        })?;
        return Err(e.into());
    }
    stores.db.write(|tx| store::delete_snapshot(tx, id))?;
    tracing::info!("snapshot {id}: deleted");
    Ok(())
}
