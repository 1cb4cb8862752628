//! Settling volumes and snapshots left mid-operation by a crash, at start. The volume store
//! has already removed half-written files when it was opened, and publishes a file only when
//! it is complete, so a file on disk means the copy finished:
//!
//! - `creating` with its file → `available`; without → `error`;
//! - `extending` → `available`, with the size the file has (the grow is one system call);
//! - `deleting` → the deletion is finished;
//! - a volume or snapshot file with no record is removed;
//! - an image held for a volume that has no record (its create or delete was interrupted
//!   between the two domains' writes) is let go.
//!
//! Server disks (`instances/`) belong to servers and are left alone. In a site only the
//! records homed on this box are settled, and a `creating` volume with no file, or an
//! `extending` one whose file is smaller than its record, may have been asked for through
//! another box while this one was down: [`super::reconcile`] carries those out instead.

use super::{finish_delete, gib_for, snapshots, Stores, VolumeError};
use super::{SnapshotStatus, VolumeStatus};
use crate::image::ConsumerKind;
use outpost_image_store::DiskKind;

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub completed: Vec<String>,
    pub failed: Vec<String>,
    pub deleted: Vec<String>,
    pub orphan_files_removed: Vec<String>,
}

const INTERRUPTED: &str = "interrupted by a restart of outpostd";

pub fn recover(stores: &Stores) -> Result<Recovered, VolumeError> {
    let db = stores.records.as_ref();
    let vs = &stores.volumes;
    let mut out = Recovered::default();
    let on_disk = vs.list(DiskKind::Volume)?;
    let homes = &stores.homes;
    let mine = |status| -> Result<Vec<(String, i64)>, VolumeError> {
        Ok(db
            .volumes(None)?
            .into_iter()
            .filter(|v| v.status == status && homes.holds(&v.home))
            .map(|v| (v.id, v.size))
            .collect())
    };
    for (id, _) in mine(VolumeStatus::Creating)? {
        let made = on_disk.contains(&id);
        if !made && homes.is_site() {
            continue;
        }
        let (to, fault) = if made {
            (VolumeStatus::Available, None)
        } else {
            (VolumeStatus::Error, Some(INTERRUPTED))
        };
        db.set_volume_status_if(&id, &[VolumeStatus::Creating], to, fault)?;
        tracing::info!(
            "volume {id}: creation {}",
            if made { "had finished" } else { INTERRUPTED }
        );
        if made {
            &mut out.completed
        } else {
            &mut out.failed
        }
        .push(id);
    }
    for (id, asked) in mine(VolumeStatus::Extending)? {
        let size = i64::try_from(vs.size_bytes(&id)?).unwrap_or(i64::MAX);
        if homes.is_site() && gib_for(size) < asked {
            continue;
        }
        db.finish_extend(&id, Some(gib_for(size)))?;
        out.completed.push(id);
    }
    for (id, _) in mine(VolumeStatus::Deleting)? {
        finish_delete(stores, &id)?;
        out.deleted.push(id);
    }

    let on_disk = vs.list(DiskKind::Snapshot)?;
    let mine = |status| -> Result<Vec<String>, VolumeError> {
        Ok(db
            .snapshots(None)?
            .into_iter()
            .filter(|s| s.status == status && homes.holds(&s.home))
            .map(|s| s.id)
            .collect())
    };
    for id in mine(SnapshotStatus::Creating)? {
        let made = on_disk.contains(&id);
        if !made && homes.is_site() {
            continue;
        }
        let (to, fault) = if made {
            (SnapshotStatus::Available, None)
        } else {
            (SnapshotStatus::Error, Some(INTERRUPTED))
        };
        db.set_snapshot_status_if(&id, &[SnapshotStatus::Creating], to, fault)?;
        if made {
            &mut out.completed
        } else {
            &mut out.failed
        }
        .push(id);
    }
    for id in mine(SnapshotStatus::Deleting)? {
        snapshots::finish_delete(stores, &id)?;
        out.deleted.push(id);
    }

    for id in vs.list(DiskKind::Volume)? {
        if db.volume(&id)?.is_none() {
            vs.delete(&id)?;
            tracing::warn!("volume {id}: removed a file with no volume record");
            out.orphan_files_removed.push(id);
        }
    }
    for id in vs.list(DiskKind::Snapshot)? {
        if db.snapshot(&id)?.is_none() {
            vs.delete_snapshot(&id)?;
            tracing::warn!("snapshot {id}: removed a file with no snapshot record");
            out.orphan_files_removed.push(id);
        }
    }
    for id in crate::image::holders(stores.image_records.as_ref(), ConsumerKind::Volume)? {
        if db.volume(&id)?.is_none() {
            crate::image::let_go(stores.image_records.as_ref(), ConsumerKind::Volume, &id)?;
            tracing::info!("volume {id}: let go of the image held for it; it has no record");
        }
    }
    Ok(out)
}
