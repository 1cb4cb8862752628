//! Guest memory in a snapshot: each region written at its own offset of the memory file
//! (pages of zeros left as holes), and on restore mapped privately (MAP_PRIVATE) from there.
//! A restored guest reads pages from the page cache as it touches them and its writes go to
//! its own copies: the file stays as saved, and one file can back several restored guests.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use vm_memory::mmap::MmapRegion;
use vm_memory::{
    Address, Bytes, FileOffset, GuestAddress, GuestMemoryBackend, GuestMemoryMmap,
    GuestMemoryRegion, GuestRegionMmap,
};

/// Where one guest RAM region lives in the memory file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryRegionState {
    pub guest_addr: u64,
    pub size: u64,
    pub file_offset: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MemoryFileError {
    #[error("cannot write guest memory to {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    #[error("cannot open guest memory file {path}: {source}")]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "guest memory file {path} holds {file_len} bytes, the snapshot needs {needed}: it is \
         not the memory file of this snapshot, or it was truncated"
    )]
    TooShort {
        path: PathBuf,
        file_len: u64,
        needed: u64,
    },
    #[error("cannot map guest memory region at {guest_addr:#x} from {path}: {reason}")]
    Map {
        path: PathBuf,
        guest_addr: u64,
        reason: String,
    },
}

/// Bytes compared and copied at a time while saving: large enough for few syscalls, small
/// enough that a mostly-empty guest leaves mostly holes.
const CHUNK: usize = 64 << 10;

/// Writes guest memory to `path` (created mode 0600, replaced if present) and returns where
/// each region went. The vCPUs must be paused and devices quiet, so nothing changes under it.
pub fn save(mem: &GuestMemoryMmap, path: &Path) -> Result<Vec<MemoryRegionState>, MemoryFileError> {
    let err = |reason: String| MemoryFileError::Write {
        path: path.to_path_buf(),
        reason,
    };
    let file = {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| err(e.to_string()))?
    };
    let mut regions = Vec::new();
    let mut offset = 0u64;
    let mut buf = vec![0u8; CHUNK];
    for region in mem.iter() {
        let (start, size) = (region.start_addr(), region.len());
        let mut done = 0u64;
        while done < size {
            let n = (size - done).min(CHUNK as u64) as usize;
            mem.read_slice(&mut buf[..n], start.unchecked_add(done))
                .map_err(|e| err(e.to_string()))?;
            // A hole reads back as zeros: no need to write them.
            if buf[..n].iter().any(|&b| b != 0) {
                file.write_all_at(&buf[..n], offset + done)
                    .map_err(|e| err(e.to_string()))?;
            }
            done += n as u64;
        }
        regions.push(MemoryRegionState {
            guest_addr: start.raw_value(),
            size,
            file_offset: offset,
        });
        offset += size;
    }
    // Trailing holes count too: the file's length is what a restore checks.
    file.set_len(offset).map_err(|e| err(e.to_string()))?;
    file.sync_all().map_err(|e| err(e.to_string()))?;
    Ok(regions)
}

/// Maps each region of `regions` privately from `path`.
pub fn restore(
    path: &Path,
    regions: &[MemoryRegionState],
) -> Result<GuestMemoryMmap, MemoryFileError> {
    let file = File::open(path).map_err(|source| MemoryFileError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let file_len = file
        .metadata()
        .map_err(|source| MemoryFileError::Open {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    let needed = regions
        .iter()
        .map(|r| r.file_offset.saturating_add(r.size))
        .max()
        .unwrap_or(0);
    if file_len < needed {
        return Err(MemoryFileError::TooShort {
            path: path.to_path_buf(),
            file_len,
            needed,
        });
    }
    let map_err = |r: &MemoryRegionState, reason: String| MemoryFileError::Map {
        path: path.to_path_buf(),
        guest_addr: r.guest_addr,
        reason,
    };
    let mut mapped = Vec::with_capacity(regions.len());
    for r in regions {
        let size = usize::try_from(r.size).map_err(|e| map_err(r, e.to_string()))?;
        let fd = file.try_clone().map_err(|e| map_err(r, e.to_string()))?;
        // Private and writable: the guest's writes stay in this process. NORESERVE: the
        // host commits memory only for the pages the guest writes.
        let mapping = MmapRegion::build(
            Some(FileOffset::new(fd, r.file_offset)),
            size,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_NORESERVE,
        )
        .map_err(|e| map_err(r, e.to_string()))?;
        let region = GuestRegionMmap::new(mapping, GuestAddress(r.guest_addr))
            .ok_or_else(|| map_err(r, "the region's end overflows".into()))?;
        mapped.push(region);
    }
    GuestMemoryMmap::from_regions(mapped).map_err(|e| MemoryFileError::Map {
        path: path.to_path_buf(),
        guest_addr: regions.first().map_or(0, |r| r.guest_addr),
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_come_back_with_their_bytes_and_writes_stay_private() {
        // Two regions around a gap, like RAM around the MMIO hole.
        let mem = GuestMemoryMmap::from_ranges(&[
            (GuestAddress(0), 1 << 20),
            (GuestAddress(0x1_0000_0000), 2 << 20),
        ])
        .unwrap();
        mem.write_obj(0x1122_3344_5566_7788u64, GuestAddress(0x1000))
            .unwrap();
        mem.write_slice(b"last bytes", GuestAddress(0x1_0000_0000 + (2 << 20) - 10))
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mem");
        let regions = save(&mem, &path).unwrap();
        assert_eq!(
            regions,
            vec![
                MemoryRegionState {
                    guest_addr: 0,
                    size: 1 << 20,
                    file_offset: 0
                },
                MemoryRegionState {
                    guest_addr: 0x1_0000_0000,
                    size: 2 << 20,
                    file_offset: 1 << 20
                },
            ]
        );
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 << 20);

        let restored = restore(&path, &regions).unwrap();
        assert_eq!(
            restored.read_obj::<u64>(GuestAddress(0x1000)).unwrap(),
            0x1122_3344_5566_7788
        );
        let mut tail = [0u8; 10];
        restored
            .read_slice(&mut tail, GuestAddress(0x1_0000_0000 + (2 << 20) - 10))
            .unwrap();
        assert_eq!(&tail, b"last bytes");
        assert_eq!(
            restored.read_obj::<u64>(GuestAddress(0x8000)).unwrap(),
            0,
            "a hole reads as zeros"
        );

        restored.write_obj(7u64, GuestAddress(0x1000)).unwrap();
        let again = restore(&path, &regions).unwrap();
        assert_eq!(
            again.read_obj::<u64>(GuestAddress(0x1000)).unwrap(),
            0x1122_3344_5566_7788,
            "a restored guest's write must not reach the file"
        );
    }

    #[test]
    fn a_short_file_is_refused() {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mem");
        let regions = save(&mem, &path).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(4096)
            .unwrap();
        let err = restore(&path, &regions).unwrap_err();
        assert!(
            matches!(err, MemoryFileError::TooShort { file_len: 4096, needed, .. }
                if needed == 1 << 20),
            "{err}"
        );
    }
}
