//! The home's side of changes asked for through other boxes (docs/cluster.md, "Watches, the
//! mirror and the reconcilers": `VolumeReconciler`). Any box records a volume `creating`,
//! `extending` (with the size asked for) or `deleting`, or a snapshot `creating` or
//! `deleting`; the home, woken by a change to the records or by its timer, finds each record
//! of its own in such a status that it is not already working on and carries it out, as a
//! request to the home itself would have. A pass is idempotent: what is done is recorded, and
//! what is under way on this box is skipped ([`super::Homes::start`]).

use super::{finish_delete, gib_for, snapshots, Planned, Stores, VolumeError};
use super::{SnapshotStatus, Volume, VolumeStatus};

/// One pass over the volumes and snapshots homed on this box.
pub fn reconcile(stores: &Stores) -> Result<(), VolumeError> {
    let db = stores.records.as_ref();
    let homes = &stores.homes;
    for v in db.volumes(None)? {
        let pending = matches!(
            v.status,
            VolumeStatus::Creating | VolumeStatus::Extending | VolumeStatus::Deleting
        );
        if !pending || v.home != homes.me() {
            continue;
        }
        let Some(busy) = homes.start(&v.id) else {
            continue;
        };
        // Read again now that no request of this box can act on it: work that ended between
        // the list and the guard must not be done twice (a second copy onto a finished file
        // would fail, and its failure remove the file).
        let Some(v) = db.volume(&v.id)?.filter(|now| now.status == v.status) else {
            continue;
        };
        let made = stores.volumes.path(&v.id)?.exists();
        // One volume's failure is logged and left for the next pass; the others go on.
        let done = match v.status {
            // A restart between the copy and its record: the file is complete (the store
            // publishes only complete files), so only the record is missing.
            VolumeStatus::Creating if made => {
                super::jobs::finish(stores, super::jobs::JobKind::Volume, &v.id, Ok(()));
                Ok(())
            }
            VolumeStatus::Creating => match Planned::of_record(stores, &v) {
                Ok(Some(planned)) => {
                    tracing::info!("volume {}: making it, as asked through another box", v.id);
                    planned.spawn(stores, busy)
                }
                Ok(None) => {
                    tracing::info!(
                        "volume {}: waiting for a copy of image {} on this box",
                        v.id,
                        v.image_id.as_deref().unwrap_or_default()
                    );
                    Ok(())
                }
                Err(e) => Err(e),
            },
            VolumeStatus::Extending => grow(stores, &v),
            _ => finish_delete(stores, &v.id),
        };
        if let Err(e) = done {
            tracing::warn!("volume {}: {e}; trying again at the next pass", v.id);
        }
    }
    for s in db.snapshots(None)? {
        let pending = matches!(
            s.status,
            SnapshotStatus::Creating | SnapshotStatus::Deleting
        );
        if !pending || s.home != homes.me() {
            continue;
        }
        let Some(busy) = homes.start(&s.id) else {
            continue;
        };
        let Some(s) = db.snapshot(&s.id)?.filter(|now| now.status == s.status) else {
            continue;
        };
        let done = if s.status == SnapshotStatus::Deleting {
            snapshots::finish_delete(stores, &s.id)
        } else if stores.volumes.snapshot_path(&s.id)?.exists() {
            super::jobs::finish(stores, super::jobs::JobKind::Snapshot, &s.id, Ok(()));
            Ok(())
        } else {
            tracing::info!("snapshot {}: taking it, as asked through another box", s.id);
            snapshots::spawn_make(stores, &s, busy)
        };
        if let Err(e) = done {
            tracing::warn!("snapshot {}: {e}; trying again at the next pass", s.id);
        }
    }
    Ok(())
}

/// Grows `v`'s file to the size its record asks for, then records the size the file has: the
/// size asked for, or, if the grow failed, the size it kept.
fn grow(stores: &Stores, v: &Volume) -> Result<(), VolumeError> {
    let provisioning = super::types::by_name(&v.volume_type)
        .unwrap_or(super::types::DEFAULT)
        .provisioning;
    let wanted = super::bytes(v.size)?;
    let have = stores.volumes.size_bytes(&v.id)?;
    let grown = if have < wanted {
        stores.volumes.extend(&v.id, wanted, provisioning).map(drop)
    } else {
        Ok(())
    };
    let size = i64::try_from(stores.volumes.size_bytes(&v.id)?).unwrap_or(i64::MAX);
    stores.records.finish_extend(&v.id, Some(gib_for(size)))?;
    match grown {
        Ok(()) => tracing::info!("volume {}: extended to {} GiB", v.id, v.size),
        Err(e) => tracing::error!("volume {}: cannot extend it: {e}", v.id),
    }
    Ok(())
}
