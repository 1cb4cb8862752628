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

/// `2 server(s), 1 volume(s)` for messages: counted, never named, since an image's users may
/// be other projects' servers and volumes, whose ids are not the caller's to learn.
pub(crate) fn describe(users: &[(String, String)]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for (kind, _) in users {
        match counts.iter_mut().find(|(k, _)| k == kind) {
            Some((_, n)) => *n += 1,
            None => counts.push((kind, 1)),
        }
    }
    counts
        .iter()
        .map(|(kind, n)| format!("{n} {kind}(s)"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    #[test]
    fn users_are_counted_not_named() {
        let users = [
            ("server".to_owned(), "9a2e-of-another-project".to_owned()),
            ("volume".to_owned(), "1f0c".to_owned()),
            ("server".to_owned(), "77b1".to_owned()),
        ];
        let said = super::describe(&users);
        assert_eq!(said, "2 server(s), 1 volume(s)");
        assert!(!said.contains("9a2e"));
    }
}
