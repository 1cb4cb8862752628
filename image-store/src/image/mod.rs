//! Image files (Glance's image data): `root/images/<id>`, with uploads in progress under
//! `root/images/.partial/<id>.<nonce>`. Metadata (names, properties, status) lives in the
//! control service's database; this module only keeps the bytes and reports their checksums.

mod error;
mod upload;

pub use error::ImageError;
pub use upload::{ExpectedFormat, StoredImage, Upload};

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::id::SafeId;
use crate::partial::{self, PartialFile, PARTIAL_DIR};
use crate::qemu_img::QemuImg;

/// How the image store treats uploads.
#[derive(Debug, Clone)]
pub struct ImageStoreConfig {
    /// Store qcow2 uploads as raw files (the monitor reads raw only). Default: true.
    pub convert_qcow2_to_raw: bool,
    /// Refuse uploads whose bytes are not what `disk_format` says (a qcow2 declared raw, or
    /// the reverse). When false, the recognised format wins and is recorded in
    /// [`StoredImage::stored_format`]. Default: true, because a raw image whose first bytes
    /// happen to be a qcow2 header is the classic way to make a later reader open another
    /// file.
    pub require_format_match: bool,
    /// Largest upload, in bytes. Default: 64 GiB.
    pub max_image_size: u64,
    /// Largest virtual size of a qcow2 image (what conversion would produce), in bytes.
    /// Default: 2 TiB.
    pub max_virtual_size: u64,
    /// The qemu-img to run.
    pub qemu_img: QemuImg,
}

impl Default for ImageStoreConfig {
    fn default() -> Self {
        Self {
            convert_qcow2_to_raw: true,
            require_format_match: true,
            max_image_size: 64 << 30,
            max_virtual_size: 2 << 40,
            qemu_img: QemuImg::default(),
        }
    }
}

/// Where image files live.
#[derive(Debug, Clone)]
struct Layout {
    images_dir: PathBuf,
    partial_dir: PathBuf,
}

impl Layout {
    fn image_path(&self, id: &SafeId) -> PathBuf {
        self.images_dir.join(id.as_str())
    }
}

/// The image files under one root folder. Assumes it is the only writer of that folder (one
/// control service per host); concurrent uploads of different ids are fine, and of one id the
/// first to finish wins while the other gets [`ImageError::AlreadyExists`].
#[derive(Debug)]
pub struct ImageStore {
    layout: Layout,
    config: ImageStoreConfig,
    removed_at_open: Vec<PathBuf>,
}

impl ImageStore {
    /// Opens (creating if needed, mode 0700) `root/images` with the default configuration,
    /// and removes uploads left unfinished by a crash.
    pub fn open(root: PathBuf) -> Result<Self, ImageError> {
        Self::open_with(root, ImageStoreConfig::default())
    }

    /// [`ImageStore::open`] with a configuration.
    pub fn open_with(root: PathBuf, config: ImageStoreConfig) -> Result<Self, ImageError> {
        let partial_dir = root.join("images").join(PARTIAL_DIR);
        partial::create_private_dir(&partial_dir).map_err(ImageError::File)?;
        // Absolute, so qemu-img never reads a `proto:` prefix into our paths.
        let images_dir = root
            .join("images")
            .canonicalize()
            .map_err(|source| ImageError::Io {
                path: root.join("images"),
                source,
            })?;
        let partial_dir = images_dir.join(PARTIAL_DIR);
        let removed_at_open = partial::remove_leftovers(&partial_dir).map_err(ImageError::File)?;
        for path in &removed_at_open {
            tracing::info!(path = %path.display(), "removed unfinished image upload");
        }
        Ok(Self {
            layout: Layout {
                images_dir,
                partial_dir,
            },
            config,
            removed_at_open,
        })
    }

    /// Unfinished uploads that `open` removed (left by a crash).
    pub fn removed_at_open(&self) -> &[PathBuf] {
        &self.removed_at_open
    }

    /// The folder holding image files.
    pub fn images_dir(&self) -> &Path {
        &self.layout.images_dir
    }

    /// Starts receiving the data of image `id`. Refused if the format is one this store does
    /// not keep or the image already has data.
    pub fn begin_upload(&self, id: &str, expected: ExpectedFormat) -> Result<Upload, ImageError> {
        let id = SafeId::new("image", id)?;
        if !expected.disk_format.is_accepted() {
            return Err(ImageError::UnsupportedFormat {
                format: expected.disk_format,
            });
        }
        if self.layout.image_path(&id).exists() {
            return Err(ImageError::AlreadyExists {
                id: id.as_str().to_owned(),
            });
        }
        let partial =
            PartialFile::create(&self.layout.partial_dir, id.as_str()).map_err(ImageError::File)?;
        Ok(Upload::new(
            id,
            self.layout.clone(),
            self.config.clone(),
            expected,
            partial,
        ))
    }

    /// Where image `id`'s file is (whether or not it exists).
    pub fn image_path(&self, id: &str) -> Result<PathBuf, ImageError> {
        Ok(self.layout.image_path(&SafeId::new("image", id)?))
    }

    /// Whether image `id` has data.
    pub fn contains(&self, id: &str) -> Result<bool, ImageError> {
        Ok(self.image_path(id)?.is_file())
    }

    /// Opens image `id`'s file for reading (Glance `GET /v2/images/{id}/file`).
    pub fn open_image(&self, id: &str) -> Result<File, ImageError> {
        let path = self.image_path(id)?;
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => ImageError::NotFound { id: id.to_owned() },
                _ => ImageError::Io { path, source },
            })
    }

    /// Removes image `id`'s file; returns whether it existed. Volumes cloned from it are
    /// independent copies and are not affected.
    pub fn delete_image(&self, id: &str) -> Result<bool, ImageError> {
        partial::remove_durably(&self.image_path(id)?).map_err(ImageError::File)
    }

    /// Ids of all stored images, sorted.
    pub fn list_ids(&self) -> Result<Vec<String>, ImageError> {
        let list_err = |source| ImageError::Io {
            path: self.layout.images_dir.clone(),
            source,
        };
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.layout.images_dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            // Skips `.partial` and anything else that is not one of our files.
            if SafeId::new("image", &name).is_ok() && entry.file_type().is_ok_and(|t| t.is_file()) {
                ids.push(name);
            }
        }
        ids.sort();
        Ok(ids)
    }
}
