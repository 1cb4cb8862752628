//! Cinder volumes attached to servers (Nova's `os-volume_attachments`): the attachment is
//! recorded by [`crate::volume::attach`] (the volume becomes `in-use`) and the monitor gets
//! every attached volume as an extra virtio-blk drive when it starts. A running guest's
//! monitor is not changed: a volume attached or detached while the server runs takes effect
//! at its next start (stop/start or hard reboot), and the attachment says so; a volume the
//! running guest has open cannot be detached until the server stops (409). A volume-backed
//! server's root volume is attached as `/dev/vda` and is never detached (400); the volumes of
//! `block_device_mapping_v2` are made and attached by the create saga
//! ([`super::block_devices`]).

use super::{Fleet, Server, ServerError};
use crate::compute::servers::store::{PowerState, VmState};
use crate::context::RequestContext;
use crate::volume::{self, Attachment, VolumeError};
use std::path::PathBuf;

/// An attachment as Nova shows it, and whether the running guest sees it yet.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeAttachment {
    pub attachment: Attachment,
    /// The server runs a monitor started before this attachment: the guest gets the volume
    /// at its next start.
    pub pending_restart: bool,
}

/// The server states an attach or detach may happen in (Nova also allows more, such as
/// paused or shelved, which outpost does not have); no task may be running.
fn changeable(s: &Server, action: &'static str) -> Result<(), ServerError> {
    if let Some(t) = s.task_state {
        return Err(ServerError::InvalidState {
            action,
            id: s.id.clone(),
            attribute: "task_state",
            state: t.as_str(),
        });
    }
    if !matches!(s.vm_state, VmState::Active | VmState::Stopped) {
        return Err(ServerError::InvalidState {
            action,
            id: s.id.clone(),
            attribute: "vm_state",
            state: s.vm_state.as_str(),
        });
    }
    Ok(())
}

/// Whether `s` runs a monitor that was given volume `volume_id`.
fn guest_has(fleet: &Fleet, s: &Server, volume_id: &str) -> bool {
    s.power_state == PowerState::Running
        && fleet
            .dir(&s.id)
            .started_volumes()
            .iter()
            .any(|v| v == volume_id)
}

fn view(fleet: &Fleet, s: &Server, a: Attachment) -> VolumeAttachment {
    let pending_restart =
        s.power_state == PowerState::Running && !guest_has(fleet, s, &a.volume_id);
    VolumeAttachment {
        attachment: a,
        pending_restart,
    }
}

/// The next free `/dev/vdX` after the root disk (`vda`).
pub(super) fn next_device(taken: &[Attachment]) -> Option<String> {
    (b'b'..=b'z')
        .map(|c| format!("/dev/vd{}", c as char))
        .find(|d| {
            !taken
                .iter()
                .any(|a| a.device.as_deref() == Some(d.as_str()))
        })
}

pub fn attach(
    fleet: &Fleet,
    ctx: &RequestContext,
    server_id: &str,
    volume_id: &str,
    device: Option<&str>,
) -> Result<VolumeAttachment, ServerError> {
    let s = super::get(fleet, ctx, server_id)?;
    changeable(&s, "attach_volume")?;
    // The caller must be able to see the volume (same project, or admin).
    let v = volume::get(fleet.volume_records(), ctx, volume_id)?;
    // Volumes are local to their home box: a guest elsewhere could not open the file.
    if let Some(owner) = s
        .host
        .as_ref()
        .filter(|h| !v.home.is_empty() && **h != v.home)
    {
        return Err(ServerError::Conflict(format!(
            "Volume {volume_id} is on box {}, and server {} runs on box {owner}: a volume \
             attaches only to a server on its own box.",
            v.home, s.id
        )));
    }
    let taken = volume::attachments_of_server(fleet.volume_records(), &s.id)?;
    let device = match device {
        Some(d) => d.to_owned(),
        None => next_device(&taken).ok_or_else(|| {
            ServerError::BadRequest(format!("Server {} has no free device name.", s.id))
        })?,
    };
    let a = volume::attach(fleet.volume_records(), volume_id, &s.id, Some(&device))?;
    Ok(view(fleet, &s, a))
}

pub fn detach(
    fleet: &Fleet,
    ctx: &RequestContext,
    server_id: &str,
    volume_id: &str,
) -> Result<(), ServerError> {
    let s = super::get(fleet, ctx, server_id)?;
    changeable(&s, "detach_volume")?;
    show(fleet, ctx, server_id, volume_id)?;
    if s.boot.root_volume.as_deref() == Some(volume_id) {
        return Err(ServerError::BadRequest(
            "Cannot detach a root device volume".into(),
        ));
    }
    // The monitor cannot drop a drive from a running guest: freeing the volume meanwhile
    // would let another server or a delete use a disk this guest still writes.
    if guest_has(fleet, &s, volume_id) {
        return Err(ServerError::VolumeOpen {
            server: s.id,
            volume: volume_id.to_owned(),
        });
    }
    volume::detach(fleet.volume_records(), volume_id, &s.id)?;
    Ok(())
}

pub fn list(
    fleet: &Fleet,
    ctx: &RequestContext,
    server_id: &str,
) -> Result<Vec<VolumeAttachment>, ServerError> {
    let s = super::get(fleet, ctx, server_id)?;
    Ok(
        volume::attachments_of_server(fleet.volume_records(), &s.id)?
            .into_iter()
            .map(|a| view(fleet, &s, a))
            .collect(),
    )
}

pub fn show(
    fleet: &Fleet,
    ctx: &RequestContext,
    server_id: &str,
    volume_id: &str,
) -> Result<VolumeAttachment, ServerError> {
    list(fleet, ctx, server_id)?
        .into_iter()
        .find(|v| v.attachment.volume_id == volume_id)
        .ok_or_else(|| ServerError::NotAttached {
            server: server_id.to_owned(),
            volume: volume_id.to_owned(),
        })
}

/// The files of the volumes attached to server `s` beside its root disk, in attachment
/// order, for its monitor.
pub(super) fn drives(fleet: &Fleet, s: &Server) -> Result<Vec<(String, PathBuf)>, VolumeError> {
    volume::attachments_of_server(fleet.volume_records(), &s.id)?
        .into_iter()
        .filter(|a| s.boot.root_volume.as_deref() != Some(a.volume_id.as_str()))
        .map(|a| volume::path(&fleet.volumes, &a.volume_id).map(|p| (a.volume_id, p)))
        .collect()
}

/// Nova's `os-extended-volumes:volumes_attached`: each attached volume's id and whether
/// deleting the server deletes it.
pub fn attached(fleet: &Fleet, s: &Server) -> Result<Vec<(String, bool)>, ServerError> {
    Ok(
        volume::attachments_of_server(fleet.volume_records(), &s.id)?
            .into_iter()
            .map(|a| {
                let dot = s.boot.delete_on_termination(&a.volume_id);
                (a.volume_id, dot)
            })
            .collect(),
    )
}

/// Detaches every volume of a server (they become `available`).
pub(super) fn detach_all(fleet: &Fleet, server_id: &str) -> Result<(), VolumeError> {
    for a in volume::attachments_of_server(fleet.volume_records(), server_id)? {
        volume::detach(fleet.volume_records(), &a.volume_id, server_id)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;

    #[test]
    fn devices_are_named_after_the_root_disk_skipping_taken_ones() {
        let a = |d: &str| Attachment {
            id: "a".into(),
            volume_id: "v".into(),
            server_id: "s".into(),
            device: Some(d.into()),
            attached_at: Timestamp::now(),
        };
        assert_eq!(next_device(&[]).as_deref(), Some("/dev/vdb"));
        assert_eq!(
            next_device(&[a("/dev/vdb"), a("/dev/vdd")]).as_deref(),
            Some("/dev/vdc")
        );
    }
}
