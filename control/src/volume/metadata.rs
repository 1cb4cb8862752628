//! Cinder's volume metadata (`/volumes/{id}/metadata`): free key/value pairs the owner sets,
//! merged, replaced whole, or changed one key at a time. Every change is one atomic write of
//! the volume's record ([`VolumeRecordStore::set_volume_metadata`]).

use super::{visible, VolumeError, VolumeRecordStore};
use crate::context::RequestContext;
use std::collections::BTreeMap;

/// Cinder's limits: keys of 1 to 255 characters, values of at most 255.
pub fn check(metadata: &BTreeMap<String, String>) -> Result<(), VolumeError> {
    for (k, v) in metadata {
        if k.is_empty() || k.chars().count() > 255 || v.chars().count() > 255 {
            return Err(VolumeError::InvalidInput(format!(
                "metadata key {k:?}: keys are 1 to 255 characters, values at most 255"
            )));
        }
    }
    Ok(())
}

/// The metadata of volume `id`.
pub fn get(
    db: &dyn VolumeRecordStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<BTreeMap<String, String>, VolumeError> {
    Ok(visible(db, ctx, id)?.metadata)
}

/// One key's value.
pub fn get_key(
    db: &dyn VolumeRecordStore,
    ctx: &RequestContext,
    id: &str,
    key: &str,
) -> Result<String, VolumeError> {
    get(db, ctx, id)?
        .remove(key)
        .ok_or_else(|| not_found(id, key))
}

/// How a change treats the keys it does not name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Others {
    /// Kept (`POST /metadata`, `PUT /metadata/{key}`).
    Kept,
    /// Removed: the given metadata is the whole of it (`PUT /metadata`).
    Removed,
}

/// Sets `items` on volume `id`; the volume's metadata after.
pub fn set(
    db: &dyn VolumeRecordStore,
    ctx: &RequestContext,
    id: &str,
    items: BTreeMap<String, String>,
    others: Others,
) -> Result<BTreeMap<String, String>, VolumeError> {
    check(&items)?;
    visible(db, ctx, id)?;
    let v = db
        .set_volume_metadata(id, &mut |m| {
            if others == Others::Removed {
                m.clear();
            }
            m.extend(items.iter().map(|(k, v)| (k.clone(), v.clone())));
        })?
        .ok_or_else(|| VolumeError::NotFound(id.to_owned()))?;
    Ok(v.metadata)
}

/// Removes `key` from volume `id`'s metadata (404 when it has no such key).
pub fn delete_key(
    db: &dyn VolumeRecordStore,
    ctx: &RequestContext,
    id: &str,
    key: &str,
) -> Result<(), VolumeError> {
    if !visible(db, ctx, id)?.metadata.contains_key(key) {
        return Err(not_found(id, key));
    }
    // Checked again in the write: another request may have removed it meanwhile.
    let mut had = false;
    db.set_volume_metadata(id, &mut |m| had = m.remove(key).is_some())?
        .ok_or_else(|| VolumeError::NotFound(id.to_owned()))?;
    if had {
        Ok(())
    } else {
        Err(not_found(id, key))
    }
}

fn not_found(volume: &str, key: &str) -> VolumeError {
    VolumeError::MetadataNotFound {
        volume: volume.to_owned(),
        key: key.to_owned(),
    }
}
