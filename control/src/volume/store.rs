//! Cinder's door to its state: volumes (with their metadata and attachment) and snapshots.
//! Everything that reads or writes them goes through [`VolumeRecordStore`]; SQLite implements
//! it for one box (`storage::volumes`), and a cluster's store implements the same trait.
//!
//! A volume's status serialises work on it, and what may happen depends on more than the
//! volume (its attachment, its snapshots, volumes being copied from a snapshot). So the
//! contested writes are single calls that read all of that and write as one atomic step:
//! the domain's rules come in as a closure that sees the current records and decides, so an
//! etcd store can run it inside one transaction comparing the revisions it read (and run the
//! closure again after a lost race; it must only decide).

use super::VolumeError;
use crate::quota::{QuotaError, VolumeQuota};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use std::collections::BTreeMap;

#[cfg(test)]
pub(crate) mod conformance;

/// The Cinder volume statuses this service uses. A status also serialises work on a volume:
/// only one long operation (create, extend, delete) holds it at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeStatus {
    Creating,
    Available,
    InUse,
    Extending,
    Deleting,
    Error,
    ErrorDeleting,
}

impl VolumeStatus {
    pub const ALL: [VolumeStatus; 7] = [
        Self::Creating,
        Self::Available,
        Self::InUse,
        Self::Extending,
        Self::Deleting,
        Self::Error,
        Self::ErrorDeleting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Available => "available",
            Self::InUse => "in-use",
            Self::Extending => "extending",
            Self::Deleting => "deleting",
            Self::Error => "error",
            Self::ErrorDeleting => "error_deleting",
        }
    }

    pub fn parse(s: &str) -> Option<VolumeStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Snapshot statuses (Cinder's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotStatus {
    Creating,
    Available,
    Deleting,
    Error,
    ErrorDeleting,
}

impl SnapshotStatus {
    pub const ALL: [SnapshotStatus; 5] = [
        Self::Creating,
        Self::Available,
        Self::Deleting,
        Self::Error,
        Self::ErrorDeleting,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Available => "available",
            Self::Deleting => "deleting",
            Self::Error => "error",
            Self::ErrorDeleting => "error_deleting",
        }
    }

    pub fn parse(s: &str) -> Option<SnapshotStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attachment {
    pub id: String,
    pub volume_id: String,
    pub server_id: String,
    pub device: Option<String>,
    pub attached_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub id: String,
    pub project_id: String,
    pub user_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// GiB.
    pub size: i64,
    pub status: VolumeStatus,
    /// `thin` or `thick`.
    pub volume_type: String,
    pub image_id: Option<String>,
    /// Cinder's `volume_image_metadata`: the source image's attributes and properties.
    pub image_metadata: BTreeMap<String, String>,
    pub snapshot_id: Option<String>,
    pub fault: Option<String>,
    pub metadata: BTreeMap<String, String>,
    pub attachment: Option<Attachment>,
    /// The box whose disk holds the file; only it makes, grows, snapshots and removes it
    /// (docs/cluster.md, "What lives where"). Empty in records written before boxes had
    /// homes, which only a box alone has: the file is its own.
    pub home: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub id: String,
    pub project_id: String,
    pub user_id: String,
    pub volume_id: String,
    pub name: Option<String>,
    pub description: Option<String>,
    /// GiB.
    pub size: i64,
    pub status: SnapshotStatus,
    pub fault: Option<String>,
    /// Its volume's home: the snapshot's file is made beside the volume's.
    pub home: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What a status change decides: the status to move to (None: stay), or why not.
pub type Decision<S> = Result<Option<S>, VolumeError>;

/// A volume with its snapshots, as a status change sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeView {
    pub volume: Volume,
    /// The snapshots taken of it, any status.
    pub snapshots: Vec<Snapshot>,
}

pub trait VolumeRecordStore: Send + Sync {
    /// Records a new volume with its metadata, if its project's volumes and snapshots with it
    /// stay within `quota` (counted in the same write, so racing creates cannot overshoot
    /// it). One copied from a snapshot is recorded only while that snapshot is `available`;
    /// false (nothing written) otherwise.
    fn create_volume(&self, v: &Volume, quota: &VolumeQuota) -> Result<bool, QuotaError>;

    /// Volume `id` with its attachment.
    fn volume(&self, id: &str) -> Result<Option<Volume>, StorageError>;

    /// Every volume (of `project_id`, if given) with its attachment, unsorted.
    fn volumes(&self, project_id: Option<&str>) -> Result<Vec<Volume>, StorageError>;

    fn volume_ids_in_status(&self, status: VolumeStatus) -> Result<Vec<String>, StorageError>;

    /// Moves volume `id` from one of `from` to `to`, recording `fault` (None clears it); false
    /// if it is in another status or gone.
    fn set_volume_status_if(
        &self,
        id: &str,
        from: &[VolumeStatus],
        to: VolumeStatus,
        fault: Option<&str>,
    ) -> Result<bool, StorageError>;

    /// Reads volume `id` and its snapshots, lets `decide` check them and name the status to
    /// move to (None: no change), and writes it: one atomic step. `decide`'s error is
    /// returned as it is; a missing volume is [`VolumeError::NotFound`]. Returns the volume as
    /// it was read.
    fn change_volume_status(
        &self,
        id: &str,
        decide: &mut dyn FnMut(&VolumeView) -> Decision<VolumeStatus>,
    ) -> Result<Volume, VolumeError>;

    /// Replaces the name and/or the description (None keeps a field); the volume as stored
    /// after, None if there is no such volume.
    fn set_volume_text(
        &self,
        id: &str,
        name: Option<Option<&str>>,
        description: Option<Option<&str>>,
    ) -> Result<Option<Volume>, StorageError>;

    /// Replaces the volume's metadata with what `edit` makes of it, as one atomic step (so
    /// two merges never lose one another's keys); the volume as stored after, None if there is
    /// no such volume. `edit` may run more than once (a contested write is retried).
    fn set_volume_metadata(
        &self,
        id: &str,
        edit: &mut dyn FnMut(&mut BTreeMap<String, String>),
    ) -> Result<Option<Volume>, StorageError>;

    /// Reads volume `id` and its snapshots, lets `decide` check them, and moves the volume to
    /// `extending` with `new_size` GiB recorded as its size, as one atomic step: how a box
    /// that is not the volume's home asks the home to grow the file (which then grows it to
    /// the recorded size, or records the size the file kept). Returns the volume as it was
    /// read.
    fn request_extend(
        &self,
        id: &str,
        new_size: i64,
        decide: &mut dyn FnMut(&VolumeView) -> Result<(), VolumeError>,
    ) -> Result<Volume, VolumeError>;

    /// An `extending` volume becomes `available` again, with `new_size` GiB when given (the
    /// file grew); false if it was not extending.
    fn finish_extend(&self, id: &str, new_size: Option<i64>) -> Result<bool, StorageError>;

    /// Removes the volume record; false if there was none.
    fn delete_volume(&self, id: &str) -> Result<bool, StorageError>;

    /// Attaches: reads volume `a.volume_id` ([`VolumeError::NotFound`]), lets `check` refuse
    /// it as it is, then records `a` and moves the volume `available` → `in-use`, as one
    /// atomic step. A volume that is not `available` when written is refused by `check`
    /// (which sees the status) or, after a lost race, by the store with
    /// [`VolumeError::InvalidVolume`].
    fn attach_volume(
        &self,
        a: &Attachment,
        check: &mut dyn FnMut(&Volume) -> Result<(), VolumeError>,
    ) -> Result<(), VolumeError>;

    /// Detaches volume `volume_id` from server `server_id` and moves it from `in-use` to the
    /// status `then` names (seeing the volume and its snapshots), as one atomic step. None if
    /// the volume is not attached to that server (nothing written); else the status set.
    fn detach_volume(
        &self,
        volume_id: &str,
        server_id: &str,
        then: &mut dyn FnMut(&VolumeView) -> VolumeStatus,
    ) -> Result<Option<VolumeStatus>, StorageError>;

    /// The volumes attached to server `server_id`, oldest first.
    fn attachments_of_server(&self, server_id: &str) -> Result<Vec<Attachment>, StorageError>;

    /// Reads volume `volume_id` ([`VolumeError::NotFound`]), lets `make` check it and make the
    /// snapshot, and records the snapshot if the volume's project stays within `quota`
    /// ([`VolumeError::OverQuota`]), as one atomic step.
    fn create_snapshot(
        &self,
        volume_id: &str,
        quota: &VolumeQuota,
        make: &mut dyn FnMut(&Volume) -> Result<Snapshot, VolumeError>,
    ) -> Result<Snapshot, VolumeError>;

    fn snapshot(&self, id: &str) -> Result<Option<Snapshot>, StorageError>;

    /// Every snapshot (of `project_id`, if given), unsorted.
    fn snapshots(&self, project_id: Option<&str>) -> Result<Vec<Snapshot>, StorageError>;

    fn snapshot_ids_in_status(&self, status: SnapshotStatus) -> Result<Vec<String>, StorageError>;

    /// Like [`Self::set_volume_status_if`], for snapshots.
    fn set_snapshot_status_if(
        &self,
        id: &str,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
        fault: Option<&str>,
    ) -> Result<bool, StorageError>;

    /// Reads snapshot `id` and the volumes copied from it, lets `decide` check them and name
    /// the status to move to, and writes it: one atomic step ([`VolumeError::SnapshotNotFound`]
    /// if it is gone). Returns the snapshot as it was read.
    fn change_snapshot_status(
        &self,
        id: &str,
        decide: &mut dyn FnMut(&Snapshot, &[Volume]) -> Decision<SnapshotStatus>,
    ) -> Result<Snapshot, VolumeError>;

    /// Removes the snapshot record; false if there was none.
    fn delete_snapshot(&self, id: &str) -> Result<bool, StorageError>;
}
