//! Image data: `PUT /v2/images/{id}/file` streams the body into the image store (hashed as it
//! goes) and moves the image queued → saving → active; `GET /v2/images/{id}/file` hands out the
//! stored file.
//!
//! A failed upload (interrupted body, checksum mismatch, wrong format, too large, full disk)
//! publishes nothing and puts the image back to `queued`, as Glance's `PUT /file` does, so the
//! data can be uploaded again. A crash during an upload leaves `saving`; [`super::recover`]
//! requeues it at the next start, and the image store removes the partial file.

use super::copies::CopyRule;
use super::store::{Conversion, Image, ImageData, ImageRecordStore};
use super::{check_modifiable, fields, not_found, ImageError, ImageStatus};
use crate::context::RequestContext;
use crate::random;
use outpost_image_store::{DiskFormat, ExpectedFormat, ImageStore, StoredImage, OS_HASH_ALGO};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{self, Read, Write};

/// Properties openstacksdk sets to the client's hashes of the file it uploads (empty when it
/// did not compute them). When present they are verified against the received bytes.
pub const OWNER_MD5: &str = "owner_specified.openstack.md5";
pub const OWNER_SHA256: &str = "owner_specified.openstack.sha256";

/// Bytes read from the request body at a time.
const CHUNK: usize = 256 * 1024;

/// What the uploader asked to be verified, beyond the image's own properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadChecks {
    /// Expected MD5 of the body, hex (from `Content-MD5`).
    pub md5: Option<String>,
}

/// An active image's data, opened for reading.
#[derive(Debug)]
pub struct ImageFile {
    pub file: File,
    pub size: u64,
    /// MD5 hex of the file.
    pub checksum: Option<String>,
}

fn hex_of_len(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The expected digests: the header's MD5, else the owner-specified properties. A malformed
/// one is refused before any data is read.
fn expectations(
    image: &Image,
    checks: &UploadChecks,
) -> Result<(Option<String>, Option<String>), ImageError> {
    let prop = |key: &str| image.properties.get(key).filter(|v| !v.is_empty()).cloned();
    let md5 = checks.md5.clone().or_else(|| prop(OWNER_MD5));
    let sha256 = prop(OWNER_SHA256);
    for (name, value, len) in [("MD5", &md5, 32), (OWNER_SHA256, &sha256, 64)] {
        if let Some(v) = value {
            if !hex_of_len(v, len) {
                return Err(ImageError::InvalidField {
                    field: name.to_owned(),
                    reason: format!("{v:?} is not {len} hexadecimal digits"),
                });
            }
        }
    }
    Ok((
        md5.map(|m| m.to_ascii_lowercase()),
        sha256.map(|s| s.to_ascii_lowercase()),
    ))
}

/// Receives image `id`'s data from `body` and records this box's copy of it; the image is
/// active once `rule` has enough verified copies (a box alone: at once).
pub fn upload(
    db: &dyn ImageRecordStore,
    images: &ImageStore,
    rule: &CopyRule,
    ctx: &RequestContext,
    id: &str,
    body: &mut dyn Read,
    checks: UploadChecks,
) -> Result<Image, ImageError> {
    // The checks and the move to `saving` are one step: formats cannot change under it.
    let mut expected = None;
    let mut image = None;
    db.update_image(id, &mut |i| {
        check_modifiable(ctx, i)?;
        if i.disk_format.is_none() || i.container_format.is_none() {
            return Err(ImageError::FormatsUnset);
        }
        expected = Some(expectations(i, &checks)?);
        if i.status != ImageStatus::Queued {
            return Err(ImageError::NotQueued {
                id: id.to_owned(),
                status: i.status.as_str(),
            });
        }
        image = Some(i.clone());
        i.status = ImageStatus::Saving;
        Ok(true)
    })?
    .ok_or_else(|| not_found(id))?;
    let (Some(image), Some((md5, sha256))) = (image, expected) else {
        return Err(not_found(id));
    };
    tracing::info!("image {id}: receiving data");
    let outcome = receive(images, &image, body, md5.as_deref(), sha256.as_deref())
        .and_then(|stored| record(db, images, rule, id, stored));
    match outcome {
        Ok(()) => {
            let image = super::get(db, ctx, id)?;
            tracing::info!(
                "image {id}: {}, {} bytes, md5 {}",
                image.status.as_str(),
                image.size.unwrap_or(0),
                image.checksum.as_deref().unwrap_or("")
            );
            Ok(image)
        }
        Err(e) => {
            tracing::info!("image {id}: upload failed, queued again: {e}");
            requeue(db, id);
            Err(e)
        }
    }
}

fn requeue(db: &dyn ImageRecordStore, id: &str) {
    let back = db.set_image_status_if(id, &[ImageStatus::Saving], ImageStatus::Queued);
    if let Err(e) = back {
        // Recovery at the next start requeues it.
        tracing::error!("image {id}: cannot return it to queued: {e}");
    }
}

/// Streams `body` into a new upload and publishes it (checked against `md5`/`sha256`).
fn receive(
    images: &ImageStore,
    image: &Image,
    body: &mut dyn Read,
    md5: Option<&str>,
    sha256: Option<&str>,
) -> Result<StoredImage, ImageError> {
    let id = image.id.as_str();
    let declared = image.disk_format.as_deref().unwrap_or_default();
    let disk_format = fields::parse_disk_format("disk_format", declared)?;
    let mut up = images.begin_upload(
        id,
        ExpectedFormat {
            disk_format,
            max_size: None,
        },
    )?;
    let mut sha = sha256.map(|_| Sha256::new());
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // `up` is dropped on return, which removes the partial file.
            Err(e) => {
                return Err(ImageError::Interrupted {
                    id: id.to_owned(),
                    reason: e.to_string(),
                })
            }
        };
        if let Some(h) = &mut sha {
            h.update(&buf[..n]);
        }
        if let Err(e) = up.write_all(&buf[..n]) {
            // The upload remembers why it stopped (too large, disk error); finish reports it.
            return match up.finish(None) {
                Err(typed) => Err(typed.into()),
                Ok(_) => {
                    images.delete_image(id)?;
                    Err(ImageError::Interrupted {
                        id: id.to_owned(),
                        reason: e.to_string(),
                    })
                }
            };
        }
    }
    let stored = up.finish(md5)?;
    if let (Some(h), Some(expected)) = (sha, sha256) {
        let actual = random::hex(&h.finalize());
        if actual != expected {
            images.delete_image(id)?;
            return Err(ImageError::Sha256Mismatch {
                id: id.to_owned(),
                expected: expected.to_owned(),
                actual,
            });
        }
    }
    Ok(stored)
}

/// Records the published data; if the image was deleted meanwhile, removes the file again.
fn record(
    db: &dyn ImageRecordStore,
    images: &ImageStore,
    rule: &CopyRule,
    id: &str,
    stored: StoredImage,
) -> Result<(), ImageError> {
    let converted =
        stored.disk_format == DiskFormat::Qcow2 && stored.stored_format == DiskFormat::Raw;
    let size = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
    let data = ImageData {
        size: size(stored.size),
        virtual_size: size(stored.virtual_size),
        checksum: stored.checksum_md5,
        os_hash_algo: OS_HASH_ALGO.to_owned(),
        os_hash_value: stored.os_hash_sha512,
        disk_format: if converted {
            DiskFormat::Raw.as_str().to_owned()
        } else {
            stored.disk_format.as_str().to_owned()
        },
        conversion: converted.then(|| Conversion {
            from_format: stored.disk_format.as_str().to_owned(),
            checksum: stored.uploaded.md5_hex.clone(),
            os_hash_value: stored.uploaded.sha512_hex.clone(),
        }),
    };
    match db.record_image_data(id, &data, rule.holder(), rule.needed()) {
        Ok(true) => Ok(()),
        Ok(false) => {
            images.delete_image(id)?;
            Err(ImageError::NotFound(id.to_owned()))
        }
        Err(e) => {
            images.delete_image(id)?;
            Err(e.into())
        }
    }
}

/// Image `id`'s data for `ctx`, or None while it has none (queued, saving without data,
/// killed), which Glance answers with 204.
pub fn download(
    db: &dyn ImageRecordStore,
    images: &ImageStore,
    ctx: &RequestContext,
    id: &str,
) -> Result<Option<ImageFile>, ImageError> {
    let image = super::get(db, ctx, id)?;
    // Glance's rule: a deactivated image's data is for admins only.
    if image.status == ImageStatus::Deactivated && !ctx.is_admin() {
        return Err(ImageError::Forbidden(
            "The requested image has been deactivated. Image data download is forbidden.".into(),
        ));
    }
    // In a site, an image `saving` with its data recorded waits for copies on other boxes,
    // which fetch them here.
    let has_data = image.status.has_stored_data()
        || (image.status == ImageStatus::Saving && image.os_hash_value.is_some());
    if !has_data {
        return Ok(None);
    }
    let file = images.open_image(id).map_err(|e| match e {
        outpost_image_store::ImageError::NotFound { .. } => ImageError::NotFound(id.to_owned()),
        other => other.into(),
    })?;
    let size = file
        .metadata()
        .map_err(|source| outpost_image_store::ImageError::Io {
            path: images.images_dir().join(id),
            source,
        })?
        .len();
    Ok(Some(ImageFile {
        file,
        size,
        checksum: image.checksum,
    }))
}
