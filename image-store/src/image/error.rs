//! Errors of the image store, each saying which image and what the uploader can do about it.

use std::io;
use std::path::PathBuf;

use crate::format::{ContentFormat, DiskFormat, Qcow2Error};
use crate::id::IdError;
use crate::partial::PartialError;
use crate::qemu_img::QemuImgError;

/// What went wrong storing, reading or deleting an image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    File(PartialError),
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("image {id} already exists; delete it before uploading its data again")]
    AlreadyExists { id: String },
    #[error("image {id} has no data in this store")]
    NotFound { id: String },
    #[error(
        "disk_format {format} is not accepted here; upload raw or qcow2 \
         (`qemu-img convert -O qcow2 SRC DST` converts most formats)"
    )]
    UnsupportedFormat { format: DiskFormat },
    #[error("image {id} is larger than the limit of {limit} bytes; upload stopped")]
    TooLarge { id: String, limit: u64 },
    #[error("upload of image {id} failed earlier ({reason}); start a new upload")]
    UploadFailed { id: String, reason: String },
    #[error("image {id} has no data; upload at least one byte")]
    Empty { id: String },
    #[error("expected checksum {given:?} is not an MD5 digest; give 32 hexadecimal digits")]
    BadExpectedChecksum { given: String },
    #[error(
        "checksum mismatch for image {id}: expected MD5 {expected}, the received data has \
         {actual}; the upload was corrupted or the expected checksum is wrong"
    )]
    ChecksumMismatch {
        id: String,
        expected: String,
        actual: String,
    },
    #[error(
        "image {id} was declared disk_format={declared} but its data is a {found} image; \
         upload it again with the matching disk_format{hint}"
    )]
    FormatMismatch {
        id: String,
        declared: DiskFormat,
        found: ContentFormat,
        hint: &'static str,
    },
    #[error(
        "image {id} is a {found} image, which this store does not keep; convert it to raw \
         or qcow2 with qemu-img first"
    )]
    UnsupportedContent { id: String, found: ContentFormat },
    #[error("image {id}: {source}")]
    Qcow2 { id: String, source: Qcow2Error },
    #[error("image {id}: qemu-img reports {what} {name:?}; upload a standalone image")]
    Qcow2References {
        id: String,
        what: &'static str,
        name: String,
    },
    #[error("image {id}: qemu-img reports the image is encrypted; upload it decrypted")]
    Qcow2Encrypted { id: String },
    #[error(
        "image {id} has a virtual size of {size} bytes, above this host's limit of {max} bytes"
    )]
    VirtualSizeTooLarge { id: String, size: u64, max: u64 },
    #[error(
        "converting image {id} produced {actual} bytes, but qemu-img info reported a virtual \
         size of {expected}"
    )]
    ConvertedSizeMismatch {
        id: String,
        expected: u64,
        actual: u64,
    },
    #[error("image {id}: {source}")]
    QemuImg { id: String, source: QemuImgError },
    #[error(
        "image {id} needs {needed} bytes once converted to raw, but the image store has {free} \
         bytes free; free space or upload a smaller image"
    )]
    NoSpace { id: String, needed: u64, free: u64 },
}

impl ImageError {
    /// Maps a file error, turning "the final name exists" into [`ImageError::AlreadyExists`].
    pub(crate) fn from_partial(id: &str, e: PartialError) -> Self {
        match e {
            PartialError::AlreadyExists { .. } => Self::AlreadyExists { id: id.to_owned() },
            other => Self::File(other),
        }
    }
}
