//! One image upload (Glance `PUT /v2/images/{id}/file`): bytes stream into a partial file while
//! being hashed and counted; `finish` checks them and publishes the file under its final name,
//! or nothing is published at all.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use super::{ImageError, ImageStoreConfig, Layout};
use crate::digest::{self, Digests, Hasher};
use crate::format::{self, ContentFormat, DiskFormat, Qcow2Header};
use crate::id::SafeId;
use crate::partial::PartialFile;
use crate::sparse;

/// What the uploader declared about the data to come.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpectedFormat {
    /// Glance `disk_format` of the image record.
    pub disk_format: DiskFormat,
    /// Largest upload accepted for this image, in bytes (lower than the store's limit, e.g. a
    /// quota). `None`: only the store's limit applies.
    pub max_size: Option<u64>,
}

/// An image as published in the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredImage {
    pub id: String,
    /// The file `open_image` serves.
    pub path: PathBuf,
    /// Size of the stored file, in bytes (Glance `size`).
    pub size: u64,
    /// MD5 of the stored file, hex (Glance `checksum`): what a client downloading the image
    /// verifies. Equals `uploaded.md5_hex` unless the image was converted.
    pub checksum_md5: String,
    /// SHA-512 of the stored file, hex (Glance `os_hash_value`, with `os_hash_algo` =
    /// [`digest::OS_HASH_ALGO`]).
    pub os_hash_sha512: String,
    /// Size of the disk a guest sees, in bytes (Glance `virtual_size`).
    pub virtual_size: u64,
    /// The format the uploader declared.
    pub disk_format: DiskFormat,
    /// The format of the stored file: `Raw` (plain bytes, readable by the monitor) or `Qcow2`
    /// (kept as uploaded when conversion is off).
    pub stored_format: DiskFormat,
    /// Size and hashes of the bytes as received.
    pub uploaded: Digests,
}

/// Why an upload stopped before `finish`.
#[derive(Debug, Clone)]
enum Failure {
    TooLarge,
    Io(String),
}

/// Bytes buffered before writing, so writes start on [`sparse::ZERO_BLOCK`] boundaries and
/// zero blocks can be skipped (an uploaded disk is mostly zeros; skipping them keeps the stored
/// file sparse).
const WRITE_CHUNK: usize = 1 << 20;

/// An upload in progress. Write the image's bytes into it (it is a [`std::io::Write`]; the
/// calls block on disk I/O), then call [`Upload::finish`]. Dropping it, or
/// [`Upload::abort`], removes the partial file.
#[derive(Debug)]
pub struct Upload {
    id: SafeId,
    layout: Layout,
    config: ImageStoreConfig,
    declared: DiskFormat,
    limit: u64,
    partial: PartialFile,
    hasher: Hasher,
    pending: Vec<u8>,
    flushed: u64,
    failure: Option<Failure>,
}

impl Upload {
    pub(super) fn new(
        id: SafeId,
        layout: Layout,
        config: ImageStoreConfig,
        expected: ExpectedFormat,
        partial: PartialFile,
    ) -> Self {
        let limit = expected
            .max_size
            .map_or(config.max_image_size, |m| m.min(config.max_image_size));
        Self {
            id,
            layout,
            config,
            declared: expected.disk_format,
            limit,
            partial,
            hasher: Hasher::new(),
            pending: Vec::with_capacity(WRITE_CHUNK),
            flushed: 0,
            failure: None,
        }
    }

    /// The image id this upload is for.
    pub fn id(&self) -> &str {
        self.id.as_str()
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.hasher.size()
    }

    /// Gives up: the partial file is removed and nothing is published.
    pub fn abort(self) {
        drop(self);
    }

    fn flush_whole_blocks(&mut self, all: bool) -> io::Result<()> {
        let n = if all {
            self.pending.len()
        } else {
            self.pending.len() - self.pending.len() % sparse::ZERO_BLOCK
        };
        sparse::write_skipping_zeros(self.partial.file(), self.flushed, &self.pending[..n])?;
        self.flushed += n as u64;
        self.pending.drain(..n);
        Ok(())
    }

    fn io_error(&self, e: io::Error) -> ImageError {
        ImageError::Io {
            path: self.partial.path().to_owned(),
            source: e,
        }
    }

    /// Checks the data and publishes it as image `id`: verifies `expected_checksum` (MD5 hex,
    /// Glance's `checksum`) if given, recognises the real format, refuses qcow2 images that
    /// refer to other files, converts qcow2 to raw if the store is configured to, flushes
    /// everything to disk and renames it into place. On any error nothing is published.
    pub fn finish(mut self, expected_checksum: Option<&str>) -> Result<StoredImage, ImageError> {
        let id = self.id.as_str().to_owned();
        match &self.failure {
            Some(Failure::TooLarge) => {
                return Err(ImageError::TooLarge {
                    id,
                    limit: self.limit,
                })
            }
            Some(Failure::Io(reason)) => {
                return Err(ImageError::UploadFailed {
                    id,
                    reason: reason.clone(),
                })
            }
            None => {}
        }
        let expected = expected_checksum.map(normalize_md5).transpose()?;
        self.flush_whole_blocks(true)
            .map_err(|e| self.io_error(e))?;
        let size = self.hasher.size();
        if size == 0 {
            return Err(ImageError::Empty { id });
        }
        // Holes written by skipping zero blocks at the end only exist once the length is set.
        self.partial
            .file()
            .set_len(size)
            .map_err(|e| self.io_error(e))?;
        let uploaded = std::mem::take(&mut self.hasher).finish();
        if let Some(expected) = expected {
            if expected != uploaded.md5_hex {
                return Err(ImageError::ChecksumMismatch {
                    id,
                    expected,
                    actual: uploaded.md5_hex,
                });
            }
        }

        let (head, tail) =
            head_and_tail(self.partial.file(), size).map_err(|e| self.io_error(e))?;
        let found = format::sniff(&head, &tail);
        let wanted = self.declared.expected_content();
        if found != ContentFormat::Raw && found != ContentFormat::Qcow2 {
            return Err(if found == wanted {
                ImageError::UnsupportedContent { id, found }
            } else {
                mismatch(id, self.declared, found)
            });
        }
        if found != wanted && self.config.require_format_match {
            return Err(mismatch(id, self.declared, found));
        }

        let final_path = self.layout.image_path(&self.id);
        if found == ContentFormat::Raw {
            self.partial
                .commit(&final_path)
                .map_err(|e| ImageError::from_partial(&id, e))?;
            return Ok(StoredImage {
                id,
                path: final_path,
                size,
                checksum_md5: uploaded.md5_hex.clone(),
                os_hash_sha512: uploaded.sha512_hex.clone(),
                virtual_size: size,
                disk_format: self.declared,
                stored_format: DiskFormat::Raw,
                uploaded,
            });
        }
        self.finish_qcow2(&head, final_path, uploaded)
    }

    fn finish_qcow2(
        self,
        head: &[u8],
        final_path: PathBuf,
        uploaded: Digests,
    ) -> Result<StoredImage, ImageError> {
        let id = self.id.as_str().to_owned();
        // Our own header check first: it needs no subprocess and cannot be fooled by a
        // qemu-img that would resolve the references before reporting them.
        let header = Qcow2Header::parse(head).map_err(|source| ImageError::Qcow2 {
            id: id.clone(),
            source,
        })?;
        let too_big = |size| ImageError::VirtualSizeTooLarge {
            id: id.clone(),
            size,
            max: self.config.max_virtual_size,
        };
        if header.virtual_size > self.config.max_virtual_size {
            return Err(too_big(header.virtual_size));
        }
        let qemu = |source| ImageError::QemuImg {
            id: id.clone(),
            source,
        };
        let info = self
            .config
            .qemu_img
            .info_qcow2(self.partial.path())
            .map_err(qemu)?;
        let refers = |what, name: Option<String>| {
            name.map_or(Ok(()), |name| {
                Err(ImageError::Qcow2References {
                    id: id.clone(),
                    what,
                    name,
                })
            })
        };
        refers("a backing file", info.backing_filename.clone())?;
        refers("an external data file", info.data_file.clone())?;
        if info.encrypted {
            return Err(ImageError::Qcow2Encrypted { id });
        }
        let virtual_size = info.virtual_size;
        if virtual_size > self.config.max_virtual_size {
            return Err(too_big(virtual_size));
        }

        if !self.config.convert_qcow2_to_raw {
            self.partial
                .commit(&final_path)
                .map_err(|e| ImageError::from_partial(&id, e))?;
            return Ok(StoredImage {
                id,
                path: final_path,
                size: uploaded.size,
                checksum_md5: uploaded.md5_hex.clone(),
                os_hash_sha512: uploaded.sha512_hex.clone(),
                virtual_size,
                disk_format: self.declared,
                stored_format: DiskFormat::Qcow2,
                uploaded,
            });
        }

        // Before qemu-img writes anything: the raw image can take up to its virtual size.
        let free = rustix::fs::statvfs(&self.layout.partial_dir)
            .map(|st| st.f_bavail.saturating_mul(st.f_frsize))
            .map_err(|e| ImageError::Io {
                path: self.layout.partial_dir.clone(),
                source: e.into(),
            })?;
        if virtual_size > free {
            return Err(ImageError::NoSpace {
                id,
                needed: virtual_size,
                free,
            });
        }
        let mut raw = PartialFile::create(&self.layout.partial_dir, self.id.as_str())
            .map_err(ImageError::File)?;
        self.config
            .qemu_img
            .convert_qcow2_to_raw(self.partial.path(), raw.path())
            .map_err(qemu)?;
        // qemu-img truncated and rewrote the file; read it through a fresh descriptor.
        raw.reopen().map_err(ImageError::File)?;
        let io = |path: &std::path::Path| {
            let path = path.to_owned();
            move |source| ImageError::Io { path, source }
        };
        let len = raw.file().metadata().map_err(io(raw.path()))?.len();
        if len != virtual_size {
            return Err(ImageError::ConvertedSizeMismatch {
                id,
                expected: virtual_size,
                actual: len,
            });
        }
        let stored = digest::hash_file(raw.file(), len).map_err(io(raw.path()))?;
        raw.commit(&final_path)
            .map_err(|e| ImageError::from_partial(&id, e))?;
        // `self.partial` (the qcow2 as uploaded) is dropped here, which removes it.
        Ok(StoredImage {
            id,
            path: final_path,
            size: len,
            checksum_md5: stored.md5_hex,
            os_hash_sha512: stored.sha512_hex,
            virtual_size,
            disk_format: self.declared,
            stored_format: DiskFormat::Raw,
            uploaded,
        })
    }
}

impl Write for Upload {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &self.failure {
            Some(Failure::TooLarge) => {
                return Err(too_large(self.id.as_str(), self.limit));
            }
            Some(Failure::Io(reason)) => {
                return Err(io::Error::other(format!(
                    "upload of image {} failed earlier: {reason}",
                    self.id
                )))
            }
            None => {}
        }
        let total = self.hasher.size().saturating_add(buf.len() as u64);
        if total > self.limit {
            self.failure = Some(Failure::TooLarge);
            return Err(too_large(self.id.as_str(), self.limit));
        }
        self.hasher.update(buf);
        self.pending.extend_from_slice(buf);
        if self.pending.len() >= WRITE_CHUNK {
            if let Err(e) = self.flush_whole_blocks(false) {
                self.failure = Some(Failure::Io(e.to_string()));
                return Err(e);
            }
        }
        Ok(buf.len())
    }

    /// Nothing to do: data reaches the disk in `finish`, which also fsyncs.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn too_large(id: &str, limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("image {id} is larger than the limit of {limit} bytes; upload stopped"),
    )
}

fn mismatch(id: String, declared: DiskFormat, found: ContentFormat) -> ImageError {
    let hint = match found {
        ContentFormat::Qcow2 => " (qcow2)",
        ContentFormat::Raw => " (raw)",
        _ => "",
    };
    ImageError::FormatMismatch {
        id,
        declared,
        found,
        hint,
    }
}

/// Lower-cases and checks an MD5 hex digest given by a client.
fn normalize_md5(given: &str) -> Result<String, ImageError> {
    if given.len() == 32 && given.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(given.to_ascii_lowercase())
    } else {
        Err(ImageError::BadExpectedChecksum {
            given: given.chars().take(64).collect(),
        })
    }
}

/// The first [`format::SNIFF_HEAD`] and last [`format::SNIFF_TAIL`] bytes of the file (fewer
/// when the file is shorter).
fn head_and_tail(file: &File, size: u64) -> io::Result<(Vec<u8>, Vec<u8>)> {
    // Both bounds are at most 512, so the casts are lossless.
    let head_len = size.min(format::SNIFF_HEAD as u64);
    let tail_len = size.min(format::SNIFF_TAIL as u64);
    let mut head = vec![0u8; head_len as usize];
    file.read_exact_at(&mut head, 0)?;
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact_at(&mut tail, size - tail_len)?;
    Ok((head, tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_checksums_are_checked_for_shape_and_case() {
        assert_eq!(
            normalize_md5("900150983CD24FB0D6963F7D28E17F72").unwrap(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
        for bad in [
            "",
            "abc",
            "900150983cd24fb0d6963f7d28e17f7g",
            &"a".repeat(33),
        ] {
            assert!(
                matches!(
                    normalize_md5(bad),
                    Err(ImageError::BadExpectedChecksum { .. })
                ),
                "{bad:?}"
            );
        }
    }
}
