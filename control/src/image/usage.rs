//! Who uses an image (`image_usage`): a volume copied from it, for the volume's life, and a
//! server booted from it (or from its kernel and ramdisk), for the server's life. Consumers
//! record their use in the same transaction that creates them, so an image can never be
//! deleted between the check and the use.

use super::{ImageError, ImageStatus};
use crate::storage::images as store;
use crate::storage::{Db, StorageError};
use rusqlite::Connection;

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
pub fn in_use(db: &Db, id: &str) -> Result<bool, StorageError> {
    Ok(!db.read(|c| store::usage(c, id))?.is_empty())
}

/// Who uses image `id`: (consumer kind, consumer id).
pub fn users(db: &Db, id: &str) -> Result<Vec<(String, String)>, StorageError> {
    db.read(|c| store::usage(c, id))
}

/// Records, inside the caller's transaction, that `kind` `consumer_id` uses image `image_id`,
/// which must exist and be active. Call it in the transaction that creates the consumer.
pub fn acquire(
    tx: &Connection,
    image_id: &str,
    kind: ConsumerKind,
    consumer_id: &str,
) -> Result<(), ImageError> {
    let image = store::by_id(tx, image_id)?.ok_or_else(|| ImageError::NotFound(image_id.into()))?;
    if image.status != ImageStatus::Active {
        return Err(ImageError::NotActive(image_id.to_owned()));
    }
    store::add_usage(tx, image_id, kind.as_str(), consumer_id)?;
    Ok(())
}

/// Drops every use by `kind` `consumer_id` (in the transaction that deletes the consumer);
/// returns how many images it used.
pub fn release(
    tx: &Connection,
    kind: ConsumerKind,
    consumer_id: &str,
) -> Result<usize, StorageError> {
    store::remove_usage(tx, kind.as_str(), consumer_id)
}

/// Holds images `image_ids` for `kind` `consumer_id` (each must exist and be active): all or
/// none, in one write. For a consumer whose own record is written elsewhere (a server's
/// create saga records its progress first and lets go in its undo).
pub fn hold(
    db: &Db,
    image_ids: &[String],
    kind: ConsumerKind,
    consumer_id: &str,
) -> Result<(), ImageError> {
    db.write(|tx| {
        image_ids
            .iter()
            .try_for_each(|id| acquire(tx, id, kind, consumer_id))
    })
}

/// Drops every hold of `kind` `consumer_id`, in one write; returns how many images it held.
/// Letting go twice changes nothing.
pub fn let_go(db: &Db, kind: ConsumerKind, consumer_id: &str) -> Result<usize, StorageError> {
    db.write(|tx| release(tx, kind, consumer_id))
}

/// `volume 1f0c…, server 9a2e…` for messages.
pub(super) fn describe(users: &[(String, String)]) -> String {
    users
        .iter()
        .map(|(kind, id)| format!("{kind} {id}"))
        .collect::<Vec<_>>()
        .join(", ")
}
