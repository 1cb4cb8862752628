//! Bringing records and files back into agreement at start, after a crash. The image store has
//! already removed unfinished partial files when it was opened; here:
//!
//! - an image left `saving` is queued again (and a file published just before the crash, but
//!   never recorded, is removed: its checks are not on record);
//! - an `active` image whose file is gone becomes `killed`;
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

pub fn recover(db: &dyn ImageRecordStore, images: &ImageStore) -> Result<Recovered, ImageError> {
    let mut out = Recovered::default();
    for id in db.image_ids_in_status(ImageStatus::Saving)? {
        images.delete_image(&id)?;
        db.set_image_status_if(&id, &[ImageStatus::Saving], ImageStatus::Queued)?;
        tracing::info!("image {id}: upload interrupted by a restart; queued again");
        out.requeued.push(id);
    }
    for id in db.image_ids_in_status(ImageStatus::Active)? {
        if !images.contains(&id)? {
            db.set_image_status_if(&id, &[ImageStatus::Active], ImageStatus::Killed)?;
            tracing::error!("image {id}: its data is missing from the image store; killed");
            out.killed.push(id);
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
