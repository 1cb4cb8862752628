//! Background copies: creating a volume or a snapshot runs on its own thread, which owns
//! clones of the stores and records the outcome (`available`, or `error` with the reason)
//! when the file is complete. A thread is never stopped from outside: at shutdown the process
//! exits under it, the volume store's partial file is removed at the next start, and
//! [`super::recover`] fails the record.

use super::{SnapshotStatus, Stores, VolumeError, VolumeStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    Volume,
    Snapshot,
}

/// Starts `work` on a thread named `name`; if no thread can be started, the record `id`
/// (of `kind`) is failed at once.
pub fn spawn(
    stores: &Stores,
    name: &str,
    kind: JobKind,
    id: &str,
    work: impl FnOnce() + Send + 'static,
) -> Result<(), VolumeError> {
    match std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(work)
    {
        Ok(_detached) => Ok(()),
        Err(e) => {
            finish(stores, kind, id, Err(format!("no worker thread: {e}")));
            Err(VolumeError::Worker(e))
        }
    }
}

/// Records how creating record `id` ended: `available`, or `error` with `fault`. If the
/// record was removed meanwhile the new file is removed too.
pub fn finish(stores: &Stores, kind: JobKind, id: &str, outcome: Result<(), String>) {
    let fault = outcome.as_ref().err().map(String::as_str);
    let db = stores.records.as_ref();
    let recorded = match kind {
        JobKind::Volume => db.set_volume_status_if(
            id,
            &[VolumeStatus::Creating],
            if fault.is_some() {
                VolumeStatus::Error
            } else {
                VolumeStatus::Available
            },
            fault,
        ),
        JobKind::Snapshot => db.set_snapshot_status_if(
            id,
            &[SnapshotStatus::Creating],
            if fault.is_some() {
                SnapshotStatus::Error
            } else {
                SnapshotStatus::Available
            },
            fault,
        ),
    };
    let what = match kind {
        JobKind::Volume => "volume",
        JobKind::Snapshot => "snapshot",
    };
    match (&recorded, fault) {
        (Ok(true), None) => tracing::info!("{what} {id}: available"),
        (Ok(true), Some(f)) => tracing::error!("{what} {id}: creation failed: {f}"),
        (Ok(false), _) => {
            tracing::warn!("{what} {id}: its record changed while it was being made; removing it");
            let removed = match kind {
                JobKind::Volume => stores.volumes.delete(id),
                JobKind::Snapshot => stores.volumes.delete_snapshot(id),
            };
            if let Err(e) = removed {
                tracing::error!("{what} {id}: cannot remove the file: {e}");
            }
        }
        (Err(e), _) => {
            // The next start's recovery settles it from the file on disk.
            tracing::error!("{what} {id}: cannot record the outcome: {e}");
        }
    }
}
