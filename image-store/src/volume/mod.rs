//! Raw disk files for guests (Cinder's volumes and snapshots, and servers' root disks):
//! `root/volumes/<id>.raw`, `root/snapshots/<id>.raw`, `root/instances/<server_id>/disk.raw`,
//! each written under the folder's `.partial/` and renamed into place when complete.
//! The monitor reads these files as virtio-blk backends, so they are always raw.

mod copy;
mod error;
mod provision;

pub use copy::CloneMethod;
pub use error::VolumeError;
pub use provision::Provisioning;

use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::id::SafeId;
use crate::partial::{self, PartialFile, PARTIAL_DIR};
use crate::size::check_disk_size;

/// Which kind of disk file; decides its folder and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DiskKind {
    Volume,
    Snapshot,
    /// A server's root disk, cloned from an image.
    ServerDisk,
}

impl DiskKind {
    fn as_str(self) -> &'static str {
        match self {
            Self::Volume => "volume",
            Self::Snapshot => "snapshot",
            Self::ServerDisk => "server disk",
        }
    }

    fn id_kind(self) -> &'static str {
        match self {
            Self::Volume => "volume",
            Self::Snapshot => "snapshot",
            Self::ServerDisk => "server",
        }
    }
}

impl fmt::Display for DiskKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Limits of the volume store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VolumeStoreConfig {
    /// Largest disk, in bytes. Default: 4 TiB.
    pub max_volume_size: u64,
}

impl Default for VolumeStoreConfig {
    fn default() -> Self {
        Self {
            max_volume_size: 4 << 40,
        }
    }
}

/// A disk file as it is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Volume {
    pub kind: DiskKind,
    pub id: String,
    pub path: PathBuf,
    /// Size the guest sees, in bytes.
    pub size: u64,
    /// Bytes the filesystem has allocated for it (st_blocks × 512). For a reflinked clone this
    /// counts shared extents too.
    pub allocated: u64,
    pub provisioning: Provisioning,
    /// How its contents were made.
    pub method: CloneMethod,
}

/// The disk files under one root folder. Like [`crate::ImageStore`], assumes it is the only
/// writer there; the caller serialises operations on one id (it already does, per resource,
/// in its database).
#[derive(Debug)]
pub struct VolumeStore {
    root: PathBuf,
    config: VolumeStoreConfig,
    removed_at_open: Vec<PathBuf>,
}

const KINDS: [DiskKind; 3] = [DiskKind::Volume, DiskKind::Snapshot, DiskKind::ServerDisk];

impl VolumeStore {
    /// Opens (creating if needed, mode 0700) the volume folders under `root` with the default
    /// limits, and removes files left half-written by a crash.
    pub fn open(root: PathBuf) -> Result<Self, VolumeError> {
        Self::open_with(root, VolumeStoreConfig::default())
    }

    /// [`VolumeStore::open`] with limits.
    pub fn open_with(root: PathBuf, config: VolumeStoreConfig) -> Result<Self, VolumeError> {
        partial::create_private_dir(&root).map_err(VolumeError::File)?;
        let root = root.canonicalize().map_err(|source| VolumeError::Io {
            path: root.clone(),
            source,
        })?;
        let mut store = Self {
            root,
            config,
            removed_at_open: Vec::new(),
        };
        for kind in KINDS {
            let dir = store.partial_dir(kind);
            partial::create_private_dir(&dir).map_err(VolumeError::File)?;
            let removed = partial::remove_leftovers(&dir).map_err(VolumeError::File)?;
            for path in &removed {
                tracing::info!(path = %path.display(), "removed unfinished {kind}");
            }
            store.removed_at_open.extend(removed);
        }
        Ok(store)
    }

    /// Half-written files that `open` removed (left by a crash).
    pub fn removed_at_open(&self) -> &[PathBuf] {
        &self.removed_at_open
    }

    fn kind_dir(&self, kind: DiskKind) -> PathBuf {
        self.root.join(match kind {
            DiskKind::Volume => "volumes",
            DiskKind::Snapshot => "snapshots",
            DiskKind::ServerDisk => "instances",
        })
    }

    fn partial_dir(&self, kind: DiskKind) -> PathBuf {
        self.kind_dir(kind).join(PARTIAL_DIR)
    }

    fn disk_path(&self, kind: DiskKind, id: &SafeId) -> PathBuf {
        let dir = self.kind_dir(kind);
        match kind {
            DiskKind::Volume | DiskKind::Snapshot => dir.join(format!("{id}.raw")),
            DiskKind::ServerDisk => dir.join(id.as_str()).join("disk.raw"),
        }
    }

    fn checked(&self, kind: DiskKind, id: &str) -> Result<(SafeId, PathBuf), VolumeError> {
        let id = SafeId::new(kind.id_kind(), id)?;
        let path = self.disk_path(kind, &id);
        Ok((id, path))
    }

    /// Where volume `id`'s file is (whether or not it exists).
    pub fn path(&self, id: &str) -> Result<PathBuf, VolumeError> {
        Ok(self.checked(DiskKind::Volume, id)?.1)
    }

    /// Where snapshot `id`'s file is (whether or not it exists).
    pub fn snapshot_path(&self, id: &str) -> Result<PathBuf, VolumeError> {
        Ok(self.checked(DiskKind::Snapshot, id)?.1)
    }

    /// Where server `server_id`'s root disk is (whether or not it exists).
    pub fn server_disk_path(&self, server_id: &str) -> Result<PathBuf, VolumeError> {
        Ok(self.checked(DiskKind::ServerDisk, server_id)?.1)
    }

    /// A new volume of `size_bytes` that reads as zeros.
    pub fn create_blank(
        &self,
        id: &str,
        size_bytes: u64,
        provisioning: Provisioning,
    ) -> Result<Volume, VolumeError> {
        self.create(DiskKind::Volume, id, size_bytes, provisioning, None)
    }

    /// A new volume holding a copy of the raw image at `image_path`, grown to `size_bytes`
    /// (which must be at least the image's size). The image must be raw (what
    /// [`crate::ImageStore`] stores when it converts qcow2); its bytes are copied as they are.
    pub fn create_from_image(
        &self,
        id: &str,
        image_path: &Path,
        size_bytes: u64,
        provisioning: Provisioning,
    ) -> Result<Volume, VolumeError> {
        self.create(
            DiskKind::Volume,
            id,
            size_bytes,
            provisioning,
            Some(image_path),
        )
    }

    /// A new volume holding a copy of snapshot `snapshot_id`, grown to `size_bytes`.
    pub fn create_from_snapshot(
        &self,
        id: &str,
        snapshot_id: &str,
        size_bytes: u64,
        provisioning: Provisioning,
    ) -> Result<Volume, VolumeError> {
        // Both ids are checked before anything is looked up, so a bad one is always reported.
        self.checked(DiskKind::Volume, id)?;
        let source = self.existing(DiskKind::Snapshot, snapshot_id)?;
        self.create(
            DiskKind::Volume,
            id,
            size_bytes,
            provisioning,
            Some(&source),
        )
    }

    /// Copies volume `volume_id` to snapshot `snapshot_id` (thin). The copy is consistent if
    /// nothing writes the volume meanwhile; if a guest does, it is crash-consistent at best,
    /// which the caller accepts or avoids by pausing the guest.
    pub fn snapshot(&self, volume_id: &str, snapshot_id: &str) -> Result<Volume, VolumeError> {
        self.checked(DiskKind::Snapshot, snapshot_id)?;
        let source = self.existing(DiskKind::Volume, volume_id)?;
        let size = file_len(&source)?;
        self.create(
            DiskKind::Snapshot,
            snapshot_id,
            size,
            Provisioning::Thin,
            Some(&source),
        )
    }

    /// Server `server_id`'s root disk: a copy of the raw image at `image_path` grown to
    /// `size_bytes`, at `instances/<server_id>/disk.raw`. The monitor gets this file, never
    /// the image itself, so a guest can never write to an image.
    pub fn clone_for_server(
        &self,
        server_id: &str,
        image_path: &Path,
        size_bytes: u64,
        provisioning: Provisioning,
    ) -> Result<Volume, VolumeError> {
        self.create(
            DiskKind::ServerDisk,
            server_id,
            size_bytes,
            provisioning,
            Some(image_path),
        )
    }

    /// Removes server `server_id`'s folder and every disk in it; returns whether it existed.
    pub fn remove_server_disks(&self, server_id: &str) -> Result<bool, VolumeError> {
        let id = SafeId::new(DiskKind::ServerDisk.id_kind(), server_id)?;
        let dir = self.kind_dir(DiskKind::ServerDisk).join(id.as_str());
        match fs::remove_dir_all(&dir) {
            Ok(()) => {
                partial::sync_dir(&self.kind_dir(DiskKind::ServerDisk))
                    .map_err(VolumeError::File)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(VolumeError::Io { path: dir, source }),
        }
    }

    /// Grows volume `id` to `new_size` bytes; thick allocates the new part. Refuses to shrink.
    /// The size changes in one system call, so a crash leaves the old or the new size. A guest
    /// using the volume must be told of the new capacity by the caller.
    pub fn extend(
        &self,
        id: &str,
        new_size: u64,
        provisioning: Provisioning,
    ) -> Result<Volume, VolumeError> {
        check_disk_size("volume", new_size, self.config.max_volume_size)?;
        let path = self.existing(DiskKind::Volume, id)?;
        let io_err = |source| VolumeError::Io {
            path: path.clone(),
            source,
        };
        let file = File::options().write(true).open(&path).map_err(io_err)?;
        let current = file.metadata().map_err(io_err)?.len();
        if new_size < current {
            return Err(VolumeError::CannotShrink {
                kind: DiskKind::Volume,
                id: id.to_owned(),
                size: new_size,
                current,
            });
        }
        let grown = match provisioning {
            Provisioning::Thin => file.set_len(new_size),
            Provisioning::Thick => provision::allocate(&file, current, new_size - current),
        };
        grown.map_err(|e| VolumeError::writing(path.clone(), new_size, e))?;
        file.sync_all().map_err(io_err)?;
        Ok(Volume {
            kind: DiskKind::Volume,
            id: id.to_owned(),
            size: new_size,
            allocated: allocated_of(&file, &path)?,
            path,
            provisioning,
            method: CloneMethod::Blank,
        })
    }

    /// Removes volume `id`; returns whether it existed. Snapshots of it are independent.
    pub fn delete(&self, id: &str) -> Result<bool, VolumeError> {
        partial::remove_durably(&self.path(id)?).map_err(VolumeError::File)
    }

    /// Removes snapshot `id`; returns whether it existed. Volumes made from it are
    /// independent.
    pub fn delete_snapshot(&self, id: &str) -> Result<bool, VolumeError> {
        partial::remove_durably(&self.snapshot_path(id)?).map_err(VolumeError::File)
    }

    /// Size of volume `id` in bytes.
    pub fn size_bytes(&self, id: &str) -> Result<u64, VolumeError> {
        file_len(&self.existing(DiskKind::Volume, id)?)
    }

    /// Bytes the filesystem has allocated for volume `id` (st_blocks × 512).
    pub fn allocated_bytes(&self, id: &str) -> Result<u64, VolumeError> {
        let path = self.existing(DiskKind::Volume, id)?;
        let meta = fs::metadata(&path).map_err(|source| VolumeError::Io { path, source })?;
        Ok(meta.blocks() * 512)
    }

    /// Ids of the volumes, snapshots or servers with disks on disk, sorted (to reconcile with
    /// the database after a crash).
    pub fn list(&self, kind: DiskKind) -> Result<Vec<String>, VolumeError> {
        let dir = self.kind_dir(kind);
        let list_err = |source| VolumeError::Io {
            path: dir.clone(),
            source,
        };
        let mut ids = Vec::new();
        for entry in fs::read_dir(&dir).map_err(list_err)? {
            let name = entry.map_err(list_err)?.file_name();
            let Some(name) = name.to_str() else { continue };
            let id = match kind {
                DiskKind::ServerDisk => Some(name),
                DiskKind::Volume | DiskKind::Snapshot => name.strip_suffix(".raw"),
            };
            if let Some(id) = id.filter(|id| SafeId::new("disk", id).is_ok()) {
                ids.push(id.to_owned());
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// The path of an existing disk, or NotFound.
    fn existing(&self, kind: DiskKind, id: &str) -> Result<PathBuf, VolumeError> {
        let (id, path) = self.checked(kind, id)?;
        if path.is_file() {
            Ok(path)
        } else {
            Err(VolumeError::NotFound {
                kind,
                id: id.as_str().to_owned(),
            })
        }
    }

    /// Every creation: validate, write under `.partial/`, provision, fsync, rename into place.
    fn create(
        &self,
        kind: DiskKind,
        id: &str,
        size: u64,
        provisioning: Provisioning,
        source: Option<&Path>,
    ) -> Result<Volume, VolumeError> {
        let (id, final_path) = self.checked(kind, id)?;
        check_disk_size(kind.id_kind(), size, self.config.max_volume_size)?;
        if final_path.exists() {
            return Err(VolumeError::AlreadyExists {
                kind,
                id: id.as_str().to_owned(),
            });
        }
        let source = match source {
            Some(path) => {
                let src_err = |source| VolumeError::Source {
                    path: path.to_owned(),
                    source,
                };
                let file = File::open(path).map_err(src_err)?;
                let source_size = file.metadata().map_err(src_err)?.len();
                if size < source_size {
                    return Err(VolumeError::SmallerThanSource {
                        kind,
                        id: id.as_str().to_owned(),
                        size,
                        source_size,
                    });
                }
                Some(file)
            }
            None => None,
        };

        let partial =
            PartialFile::create(&self.partial_dir(kind), id.as_str()).map_err(VolumeError::File)?;
        let writing = |e| VolumeError::writing(partial.path().to_owned(), size, e);
        let method = match &source {
            // Thick means the disk's blocks are its own; a reflink would share them.
            Some(src) => copy::copy_disk(src, partial.file(), provisioning == Provisioning::Thin)
                .map_err(writing)?,
            None => CloneMethod::Blank,
        };
        provision::provision(partial.file(), size, provisioning).map_err(writing)?;
        if let Some(dir) = final_path.parent() {
            partial::create_private_dir(dir).map_err(VolumeError::File)?;
        }
        let file = partial
            .commit(&final_path)
            .map_err(|e| VolumeError::from_partial(kind, id.as_str(), e))?;
        Ok(Volume {
            kind,
            id: id.as_str().to_owned(),
            size,
            allocated: allocated_of(&file, &final_path)?,
            path: final_path,
            provisioning,
            method,
        })
    }
}

fn file_len(path: &Path) -> Result<u64, VolumeError> {
    fs::metadata(path)
        .map(|m| m.len())
        .map_err(|source| VolumeError::Io {
            path: path.to_owned(),
            source,
        })
}

fn allocated_of(file: &File, path: &Path) -> Result<u64, VolumeError> {
    file.metadata()
        .map(|m| m.blocks() * 512)
        .map_err(|source| VolumeError::Io {
            path: path.to_owned(),
            source,
        })
}
