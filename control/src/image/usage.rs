//! Who uses an image (`image_usage`): a volume copied from it, for the volume's life, and a
//! server booted from it (or from its kernel and ramdisk), for the server's life. A hold is
//! taken only on an active image and an image is deleted only while nobody holds it, each
//! checked and written in one step by the store, so an image can never be deleted between the
//! check and the use.

use super::{ImageError, ImageRecordStore};
use crate::store::StorageError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerKind {
    Volume,
    Server,
}

impl ConsumerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Volume => "volume",
            Self::Server => "server",
        }
    }
}

/// Whether anything uses image `id`.
pub fn in_use(db: &dyn ImageRecordStore, id: &str) -> Result<bool, StorageError> {
    Ok(!db.image_holders(id)?.is_empty())
}

/// Who uses image `id`: (consumer kind, consumer id).
pub fn users(db: &dyn ImageRecordStore, id: &str) -> Result<Vec<(String, String)>, StorageError> {
    db.image_holders(id)
}

/// Holds images `image_ids` for `kind` `consumer_id` (each must exist and be active): all or
/// none, in one write. The consumer takes its hold before it uses the image and lets go when
/// it is gone; its own record is written through its own domain's door, so a consumer that
/// could be interrupted between the two sweeps holds left by consumers that never came to be
/// (see [`holders`]).
pub fn hold(
    db: &dyn ImageRecordStore,
    image_ids: &[String],
    kind: ConsumerKind,
    consumer_id: &str,
) -> Result<(), ImageError> {
    db.hold_images(image_ids, kind, consumer_id)
}

/// Drops every hold of `kind` `consumer_id`; returns how many images it held. Letting go
/// twice changes nothing.
pub fn let_go(
    db: &dyn ImageRecordStore,
    kind: ConsumerKind,
    consumer_id: &str,
) -> Result<usize, StorageError> {
    db.release_images(kind, consumer_id)
}

/// Every consumer of `kind` holding an image.
pub fn holders(db: &dyn ImageRecordStore, kind: ConsumerKind) -> Result<Vec<String>, StorageError> {
    db.holders_of_kind(kind)
}

/// `volume 1f0c…, server 9a2e…` for messages.
pub(crate) fn describe(users: &[(String, String)]) -> String {
    users
        .iter()
        .map(|(kind, id)| format!("{kind} {id}"))
        .collect::<Vec<_>>()
        .join(", ")
}
