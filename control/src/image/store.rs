//! Glance's door to its state: image records (with their properties and tags) and who holds
//! each image (`image_usage`: a volume copied from it, a server booted from it). Everything
//! that reads or writes them goes through [`ImageRecordStore`]; SQLite implements it for one
//! box (`storage::images`), and a cluster's store implements the same trait.
//!
//! Each method is atomic on its own. The contested writes are single calls: an image is held
//! only while it is active, and deleted only while nobody holds it, each checked and written
//! in one step, so a hold and a delete racing cannot both succeed.

use super::{ConsumerKind, ImageError};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

#[cfg(test)]
pub(crate) mod conformance;

/// Glance's image statuses, as far as this service moves through them. A failed or
/// interrupted upload returns the image to `Queued` (as Glance's `PUT /file` does), so the
/// data can be uploaded again; `Killed` marks an image whose data vanished from disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageStatus {
    Queued,
    Saving,
    Active,
    Killed,
    /// Taken out of use by an admin (Glance's deactivate): its data is kept, but only admins
    /// may download it and no new server or volume is made from it.
    Deactivated,
}

impl ImageStatus {
    pub const ALL: [ImageStatus; 5] = [
        Self::Queued,
        Self::Saving,
        Self::Active,
        Self::Killed,
        Self::Deactivated,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Saving => "saving",
            Self::Active => "active",
            Self::Killed => "killed",
            Self::Deactivated => "deactivated",
        }
    }

    /// Whether the image's data is stored and complete: active, or deactivated (which keeps
    /// it, so its copies are kept and replicated too).
    pub fn has_stored_data(self) -> bool {
        matches!(self, Self::Active | Self::Deactivated)
    }

    pub fn parse(s: &str) -> Option<ImageStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Glance v2 visibility. `Shared` images are seen by their owner and the projects it made
/// members of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageVisibility {
    Public,
    Private,
    Shared,
    Community,
}

impl ImageVisibility {
    pub const ALL: [ImageVisibility; 4] =
        [Self::Public, Self::Private, Self::Shared, Self::Community];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
            Self::Shared => "shared",
            Self::Community => "community",
        }
    }

    pub fn parse(s: &str) -> Option<ImageVisibility> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Where a project stands on an image shared with it (Glance's member status): the owner adds
/// it `Pending`; only the member itself accepts or rejects, and only accepted images are in
/// its default listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemberStatus {
    Pending,
    Accepted,
    Rejected,
}

impl MemberStatus {
    pub const ALL: [MemberStatus; 3] = [Self::Pending, Self::Accepted, Self::Rejected];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<MemberStatus> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// A project an image is shared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageMember {
    pub status: MemberStatus,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// What was received when the upload was converted before being stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conversion {
    pub from_format: String,
    pub checksum: String,
    pub os_hash_value: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub id: String,
    pub name: Option<String>,
    pub status: ImageStatus,
    pub visibility: ImageVisibility,
    /// The owning project's id.
    pub owner: Option<String>,
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub min_disk: i64,
    pub min_ram: i64,
    pub protected: bool,
    pub size: Option<i64>,
    pub virtual_size: Option<i64>,
    pub checksum: Option<String>,
    pub os_hash_algo: Option<String>,
    pub os_hash_value: Option<String>,
    pub conversion: Option<Conversion>,
    pub properties: BTreeMap<String, String>,
    pub tags: BTreeSet<String>,
    /// The projects it is shared with, by project id (only `Shared` images have members).
    pub members: BTreeMap<String, ImageMember>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// A box's copy of an image's data whose SHA-512 it checked against the image's
/// `os_hash_value` (docs/cluster.md, "Images across boxes"). One box holds the only copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageCopy {
    /// The box that holds it.
    pub holder: String,
    pub size: i64,
    pub os_hash_value: String,
}

/// The stored data of an image, recorded when its upload completes.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageData {
    pub size: i64,
    pub virtual_size: i64,
    pub checksum: String,
    pub os_hash_algo: String,
    pub os_hash_value: String,
    /// The disk format of the stored file (raw after a qcow2 conversion).
    pub disk_format: String,
    pub conversion: Option<Conversion>,
}

pub trait ImageRecordStore: Send + Sync {
    /// Records a new image unless one has its id ([`ImageError::IdExists`]).
    fn create_image(&self, image: &Image) -> Result<(), ImageError>;

    fn image(&self, id: &str) -> Result<Option<Image>, StorageError>;

    /// Every image, in no particular order (listings sort and page them).
    fn images(&self) -> Result<Vec<Image>, StorageError>;

    /// Ids of the images in `status`.
    fn image_ids_in_status(&self, status: ImageStatus) -> Result<Vec<String>, StorageError>;

    /// Reads image `id`, lets `change` edit it and writes it back (stamping `updated_at`), as
    /// one atomic step. `change` refusing (an error) or answering false writes nothing. It may
    /// run more than once (on a newer copy), so it must only edit the image and what it
    /// captures. Returns the image as stored afterwards, None if there is no such image.
    fn update_image(
        &self,
        id: &str,
        change: &mut dyn FnMut(&mut Image) -> Result<bool, ImageError>,
    ) -> Result<Option<Image>, ImageError>;

    /// Moves image `id` from one of `from` to `to`; false if it is not in one of `from` (or
    /// gone).
    fn set_image_status_if(
        &self,
        id: &str,
        from: &[ImageStatus],
        to: ImageStatus,
    ) -> Result<bool, StorageError>;

    /// Records the stored data of image `id`, received by box `holder`, with holder's
    /// verified copy, if the image is still `saving`; false otherwise (it was deleted
    /// meanwhile). The image becomes active when that makes `needed` verified copies (one
    /// box: at once); else it stays `saving` until [`Self::record_verified_copy`] adds them.
    fn record_image_data(
        &self,
        id: &str,
        data: &ImageData,
        holder: &str,
        needed: usize,
    ) -> Result<bool, StorageError>;

    /// The verified copies of image `id`'s data, sorted by holder.
    fn image_copies(&self, id: &str) -> Result<Vec<ImageCopy>, StorageError>;

    /// Records `copy` as verified if image `id` is `saving` or `active` with data whose
    /// `os_hash_value` and size are the copy's, and makes a `saving` image active when that
    /// makes `needed` verified copies: one step, so the copy that completes the count is the
    /// one that activates. The image's status afterwards; None if the copy was not recorded
    /// (the image is gone, has no data, or other data: the copy's file should go).
    fn record_verified_copy(
        &self,
        id: &str,
        copy: &ImageCopy,
        needed: usize,
    ) -> Result<Option<ImageStatus>, StorageError>;

    /// Forgets `holder`'s copy of image `id` (its file is gone); whether there was one.
    fn drop_image_copy(&self, id: &str, holder: &str) -> Result<bool, StorageError>;

    /// Deletes image `id` if `check` accepts it as it is now and nobody holds it
    /// ([`ImageError::InUse`]); [`ImageError::NotFound`] if there is no such image.
    fn delete_unheld_image(
        &self,
        id: &str,
        check: &mut dyn FnMut(&Image) -> Result<(), ImageError>,
    ) -> Result<(), ImageError>;

    /// Holds each of `image_ids` for `kind` `consumer` if every one exists
    /// ([`ImageError::NotFound`]) and is active ([`ImageError::NotActive`]): all or none.
    /// Holding again is not an error.
    fn hold_images(
        &self,
        image_ids: &[String],
        kind: ConsumerKind,
        consumer: &str,
    ) -> Result<(), ImageError>;

    /// Drops every hold of `kind` `consumer`; returns how many images it held.
    fn release_images(&self, kind: ConsumerKind, consumer: &str) -> Result<usize, StorageError>;

    /// Who holds image `id`: (consumer kind, consumer id), sorted.
    fn image_holders(&self, id: &str) -> Result<Vec<(String, String)>, StorageError>;

    /// Every consumer of `kind` that holds any image, sorted (for sweeping holds whose
    /// consumer is gone).
    fn holders_of_kind(&self, kind: ConsumerKind) -> Result<Vec<String>, StorageError>;
}
