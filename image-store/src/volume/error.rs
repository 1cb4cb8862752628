//! Errors of the volume store, each naming the disk and what the caller can do.

use std::io;
use std::path::PathBuf;

use super::DiskKind;
use crate::id::IdError;
use crate::partial::PartialError;
use crate::size::SizeError;

/// What went wrong creating, changing or deleting a disk file.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error(transparent)]
    Id(#[from] IdError),
    #[error(transparent)]
    Size(#[from] SizeError),
    #[error(transparent)]
    File(PartialError),
    #[error("I/O error on {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{kind} {id} already exists; delete it first or use another id")]
    AlreadyExists { kind: DiskKind, id: String },
    #[error("{kind} {id} does not exist in this store")]
    NotFound { kind: DiskKind, id: String },
    #[error("source disk {path} cannot be opened: {source}")]
    Source { path: PathBuf, source: io::Error },
    #[error(
        "{kind} {id}: requested size {size} bytes is smaller than its source ({source_size} \
         bytes); ask for at least {source_size}"
    )]
    SmallerThanSource {
        kind: DiskKind,
        id: String,
        size: u64,
        source_size: u64,
    },
    #[error(
        "{kind} {id} is {current} bytes; it cannot shrink to {size} (data would be lost); \
         give a larger size"
    )]
    CannotShrink {
        kind: DiskKind,
        id: String,
        size: u64,
        current: u64,
    },
    #[error(
        "not enough free space on the filesystem of {path} to reserve {size} bytes; free \
         space, or use thin provisioning"
    )]
    NoSpace { path: PathBuf, size: u64 },
}

impl VolumeError {
    pub(crate) fn from_partial(kind: DiskKind, id: &str, e: PartialError) -> Self {
        match e {
            PartialError::AlreadyExists { .. } => Self::AlreadyExists {
                kind,
                id: id.to_owned(),
            },
            other => Self::File(other),
        }
    }

    /// An I/O error while writing `size` bytes to `path`, with ENOSPC made actionable.
    pub(crate) fn writing(path: PathBuf, size: u64, source: io::Error) -> Self {
        if source.raw_os_error() == Some(libc::ENOSPC) {
            Self::NoSpace { path, size }
        } else {
            Self::Io { path, source }
        }
    }
}
