//! The raw image file behind a virtio-blk device, read and written with positional I/O so
//! no seek position is shared between requests.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::device::BlockError;
use super::SECTOR_SIZE;

pub struct DiskImage {
    file: File,
    capacity_sectors: u64,
    read_only: bool,
}

impl DiskImage {
    /// Opens `path` (a regular file or a block device); the capacity is its size in whole
    /// 512-byte sectors (a partial last sector is not exposed).
    pub fn open(path: &Path, read_only: bool) -> Result<Self, BlockError> {
        let mut file =
            crate::jail::files::open(path, OpenOptions::new().read(true).write(!read_only))
                .map_err(|source| BlockError::Open {
                    path: path.to_owned(),
                    source,
                })?;
        // Seeking to the end gives the size of block devices too, where metadata says 0.
        let size = file
            .seek(SeekFrom::End(0))
            .map_err(|source| BlockError::Size {
                path: path.to_owned(),
                source,
            })?;
        Ok(DiskImage {
            file,
            capacity_sectors: size / SECTOR_SIZE,
            read_only,
        })
    }

    pub fn capacity_sectors(&self) -> u64 {
        self.capacity_sectors
    }

    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Fills `buf` from byte `offset`; a short file (truncated under us) is an error.
    pub fn read_at(&self, buf: &mut [u8], offset: u64) -> std::io::Result<()> {
        self.file.read_exact_at(buf, offset)
    }

    pub fn write_at(&self, buf: &[u8], offset: u64) -> std::io::Result<()> {
        self.file.write_all_at(buf, offset)
    }

    /// Makes completed writes durable (fdatasync).
    pub fn flush(&self) -> std::io::Result<()> {
        self.file.sync_data()
    }
}
