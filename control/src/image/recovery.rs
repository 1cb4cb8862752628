//! Bringing records and files back into agreement at start, after a crash. The image store has
//! already removed unfinished partial files when it was opened; here:
//!
//! - an image left `saving` with no verified copy is queued again (and a file published just
//!   before the crash, but never recorded, is removed: its checks are not on record); one
//!   with a copy has its data and waits for more copies (docs/cluster.md);
//! - a copy of this box whose file is gone is forgotten; an `active` image left with no copy
//!   (or never given one: recorded before copies were) becomes `killed`;
//! - a file whose record was deleted is removed.

use super::{ImageError, ImageRecordStore, ImageStatus};
use outpost_image_store::ImageStore;

/// What [`recover`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub requeued: Vec<String>,
    pub killed: Vec<String>,
    pub orphan_files_removed: Vec<String>,
}

/// Recovers the images of the box whose copies are recorded as `holder`'s.
pub fn recover(
    db: &dyn ImageRecordStore,
    images: &ImageStore,
    holder: &str,
) -> Result<Recovered, ImageError> {
    let mut out = Recovered::default();
    for id in db.image_ids_in_status(ImageStatus::Saving)? {
        if !lost_copy(db, images, &id, holder)?.is_empty() {
            continue;
        }
        images.delete_image(&id)?;
        db.set_image_status_if(&id, &[ImageStatus::Saving], ImageStatus::Queued)?;
        tracing::info!("image {id}: upload interrupted by a restart; queued again");
        out.requeued.push(id);
    }
    for status in [ImageStatus::Active, ImageStatus::Deactivated] {
        for id in db.image_ids_in_status(status)? {
            if !images.contains(&id)? && lost_copy(db, images, &id, holder)?.is_empty() {
                db.set_image_status_if(&id, &[status], ImageStatus::Killed)?;
                tracing::error!("image {id}: its data is missing from the image store; killed");
                out.killed.push(id);
            }
        }
    }
    for id in images.list_ids()? {
        if db.image(&id)?.is_none() {
            images.delete_image(&id)?;
            tracing::info!("image {id}: removed data left by a deleted image");
            out.orphan_files_removed.push(id);
        }
    }
    Ok(out)
}

/// Forgets `holder`'s copy of image `id` if its file is gone; the copies left.
fn lost_copy(
    db: &dyn ImageRecordStore,
    images: &ImageStore,
    id: &str,
    holder: &str,
) -> Result<Vec<super::ImageCopy>, ImageError> {
    let mut copies = db.image_copies(id)?;
    if copies.iter().any(|c| c.holder == holder) && !images.contains(id)? {
        db.drop_image_copy(id, holder)?;
        tracing::error!("image {id}: this box's copy is missing from the image store");
        copies.retain(|c| c.holder != holder);
    }
    Ok(copies)
}
