//! Volume snapshots: a thin copy of a volume, taken in the background like a volume creation.
//! A snapshot of an attached volume needs `force` (its guest may be writing; the copy is then
//! crash-consistent). A volume cannot be deleted while it has snapshots; a snapshot cannot be
//! deleted while a volume is being created from it.

use super::jobs::{self, JobKind};
use super::{check_text, check_visible, project_of, query, ListQuery, Stores, VolumeError};
use super::{Snapshot, SnapshotStatus, VolumeRecordStore, VolumeStatus};
use crate::context::RequestContext;
use crate::quota::VolumeQuota;
use crate::random;
use crate::timestamp::Timestamp;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSnapshot {
    pub volume_id: String,
    pub force: bool,
    pub name: Option<String>,
    pub description: Option<String>,
}

fn visible(
    db: &dyn VolumeRecordStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<Snapshot, VolumeError> {
    db.snapshot(id)?
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
    // A volume's project and type never change: its quota is read before the write.
    let of = super::get(stores.records.as_ref(), ctx, &new.volume_id)?;
    let quota = VolumeQuota::of(&stores.quotas, &of.project_id, &of.volume_type)?;
    let snap = stores
        .records
        .create_snapshot(&new.volume_id, &quota, &mut |v| {
            check_visible(ctx, v)?;
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
                home: v.home.clone(),
                created_at: now,
                updated_at: now,
            };
            Ok(snap)
        })?;
    if !stores.homes.holds(&snap.home) {
        // Recorded `creating`: the volume's home takes it.
        return Ok(snap);
    }
    if let Some(busy) = stores.homes.start(&snap.id) {
        spawn_make(stores, &snap, busy)?;
    }
    Ok(snap)
}

/// Takes snapshot `snap` on a worker thread, which records the outcome.
pub(super) fn spawn_make(
    stores: &Stores,
    snap: &Snapshot,
    busy: super::homes::Busy,
) -> Result<(), VolumeError> {
    let worker = stores.clone();
    let (id, volume_id) = (snap.id.clone(), snap.volume_id.clone());
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
            drop(busy);
        },
    )
}

pub fn get(
    db: &dyn VolumeRecordStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<Snapshot, VolumeError> {
    visible(db, ctx, id)
}

pub fn list(
    db: &dyn VolumeRecordStore,
    ctx: &RequestContext,
    q: &ListQuery,
) -> Result<Vec<Snapshot>, VolumeError> {
    let project = if q.all_projects && ctx.is_admin() {
        None
    } else {
        Some(project_of(ctx)?)
    };
    let all = db.snapshots(project.as_deref())?;
    query::page(all, q)
}

const DELETABLE: [SnapshotStatus; 3] = [
    SnapshotStatus::Available,
    SnapshotStatus::Error,
    SnapshotStatus::ErrorDeleting,
];

pub fn delete(stores: &Stores, ctx: &RequestContext, id: &str) -> Result<(), VolumeError> {
    stores
        .records
        .change_snapshot_status(id, &mut |s, copies| {
            if !ctx.can_see(&s.project_id) {
                return Err(VolumeError::SnapshotNotFound(id.to_owned()));
            }
            let copying = copies.iter().any(|v| v.status == VolumeStatus::Creating);
            if copying {
                return Err(VolumeError::InvalidSnapshot(format!(
                    "a volume is being created from snapshot {id}; delete it once that is done"
                )));
            }
            if !DELETABLE.contains(&s.status) {
                return Err(VolumeError::InvalidSnapshot(format!(
                    "Snapshot status must be available or error; snapshot {id} is {}",
                    s.status.as_str()
                )));
            }
            Ok(Some(SnapshotStatus::Deleting))
        })?;
    let s = stores.records.snapshot(id)?;
    let Some(_busy) = s
        .filter(|s| stores.homes.holds(&s.home))
        .and_then(|_| stores.homes.start(id))
    else {
        // Recorded `deleting`: the volume's home removes the file and then the record.
        return Ok(());
    };
    finish_delete(stores, id)
}

pub(super) fn finish_delete(stores: &Stores, id: &str) -> Result<(), VolumeError> {
    if let Err(e) = stores.volumes.delete_snapshot(id) {
        let fault = e.to_string();
        stores.records.set_snapshot_status_if(
            id,
            &[SnapshotStatus::Deleting],
            SnapshotStatus::ErrorDeleting,
            Some(&fault),
        )?;
        return Err(e.into());
    }
    stores.records.delete_snapshot(id)?;
    tracing::info!("snapshot {id}: deleted");
    Ok(())
}
