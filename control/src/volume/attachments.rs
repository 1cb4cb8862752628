//! Attaching volumes to servers, for Nova's `os-volume_attachments` (and boot from volume).
//! One attachment per volume; attaching makes it `in-use`, detaching `available` again.
//! Checking that the caller may use the volume (same project, or admin) is the caller's part:
//! look the volume up with [`super::get`] as the request's context first.

use super::{Attachment, Volume, VolumeError, VolumeRecordStore, VolumeStatus};
use crate::random;
use crate::timestamp::Timestamp;

/// Attaches volume `volume_id` to server `server_id` as `device` (e.g. `/dev/vdb`; None if the
/// guest picks). The volume must be `available`.
pub fn attach(
    db: &dyn VolumeRecordStore,
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
    db.attach_volume(&attachment, &mut |v| {
        if let Some(a) = &v.attachment {
            return Err(VolumeError::InvalidVolume(format!(
                "volume {volume_id} is already attached to server {}",
                a.server_id
            )));
        }
        if v.status != VolumeStatus::Available {
            return Err(VolumeError::InvalidVolume(format!(
                "volume {volume_id} is {}; only an available volume can be attached",
                v.status.as_str()
            )));
        }
        Ok(())
    })?;
    tracing::info!("volume {volume_id}: attached to server {server_id}");
    Ok(attachment)
}

/// Detaches volume `volume_id` from server `server_id`; it becomes `available`.
pub fn detach(
    db: &dyn VolumeRecordStore,
    volume_id: &str,
    server_id: &str,
) -> Result<(), VolumeError> {
    if db
        .detach_volume(volume_id, server_id, &mut |_| VolumeStatus::Available)?
        .is_none()
    {
        return Err(VolumeError::InvalidVolume(format!(
            "volume {volume_id} is not attached to server {server_id}"
        )));
    }
    tracing::info!("volume {volume_id}: detached from server {server_id}");
    Ok(())
}

/// Volume `id`, whoever owns it: for the compute side, which checks the caller's right to it
/// with [`super::get`] when the request comes in and acts later as the server's saga.
pub fn find(db: &dyn VolumeRecordStore, id: &str) -> Result<Option<Volume>, VolumeError> {
    Ok(db.volume(id)?)
}

/// The volumes attached to server `server_id`, oldest first.
pub fn attachments_of_server(
    db: &dyn VolumeRecordStore,
    server_id: &str,
) -> Result<Vec<Attachment>, VolumeError> {
    Ok(db.attachments_of_server(server_id)?)
}
