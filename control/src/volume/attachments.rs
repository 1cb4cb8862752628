//! Attaching volumes to servers, for Nova's `os-volume_attachments` (and boot from volume).
//! One attachment per volume; attaching makes it `in-use`, detaching `available` again.
//! Checking that the caller may use the volume (same project, or admin) is the caller's part:
//! look the volume up with [`super::get`] as the request's context first.

use super::VolumeError;
use crate::random;
use crate::storage::volumes::{self as store, Attachment, VolumeStatus};
use crate::storage::Db;
use crate::timestamp::Timestamp;

/// Attaches volume `volume_id` to server `server_id` as `device` (e.g. `/dev/vdb`; None if the
/// guest picks). The volume must be `available`.
pub fn attach(
    db: &Db,
    volume_id: &str,
    server_id: &str,
    device: Option<&str>,
) -> Result<Attachment, VolumeError> {
    let attachment = Attachment {
        id: random::uuid()?,
        volume_id: volume_id.to_owned(),
        server_id: server_id.to_owned(),
        device: device.map(str::to_owned),
        attached_at: Timestamp::now(),
    };
    db.write(|tx| {
        let v = store::volume(tx, volume_id)?
            .ok_or_else(|| VolumeError::NotFound(volume_id.to_owned()))?;
        if let Some(a) = &v.attachment {
            return Err(VolumeError::InvalidVolume(format!(
                "volume {volume_id} is already attached to server {}",
                a.server_id
            )));
        }
        if !store::set_volume_status_if(
            tx,
            volume_id,
            &[VolumeStatus::Available],
            VolumeStatus::InUse,
            None,
        )? {
            return Err(VolumeError::InvalidVolume(format!(
                "volume {volume_id} is {}; only an available volume can be attached",
                v.status.as_str()
            )));
        }
        store::insert_attachment(tx, &attachment)?;
        Ok(())
    })?;
    tracing::info!("volume {volume_id}: attached to server {server_id}");
    Ok(attachment)
}

/// Detaches volume `volume_id` from server `server_id`; it becomes `available`.
pub fn detach(db: &Db, volume_id: &str, server_id: &str) -> Result<(), VolumeError> {
    db.write(|tx| {
        let a = store::attachment_of(tx, volume_id)?
            .filter(|a| a.server_id == server_id)
            .ok_or_else(|| {
                VolumeError::InvalidVolume(format!(
                    "volume {volume_id} is not attached to server {server_id}"
                ))
            })?;
        store::delete_attachment(tx, &a.volume_id)?;
        store::set_volume_status_if(
            tx,
            volume_id,
            &[VolumeStatus::InUse],
            VolumeStatus::Available,
            None,
        )?;
        Ok::<_, VolumeError>(())
    })?;
    tracing::info!("volume {volume_id}: detached from server {server_id}");
    Ok(())
}

/// Volume `id`, whoever owns it: for the compute side, which checks the caller's right to it
/// with [`super::get`] when the request comes in and acts later as the server's saga.
pub fn find(db: &Db, id: &str) -> Result<Option<super::Volume>, VolumeError> {
    Ok(db.read(|c| store::volume(c, id))?)
}

/// The volumes attached to server `server_id`, oldest first.
pub fn attachments_of_server(db: &Db, server_id: &str) -> Result<Vec<Attachment>, VolumeError> {
    Ok(db.read(|c| store::attachments_of_server(c, server_id))?)
}
