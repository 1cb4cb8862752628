//! Sparse files: finding the allocated parts of a file (SEEK_DATA/SEEK_HOLE, lseek(2)) and
//! writing only the blocks that are not all zeros, so copies of mostly empty disks stay small.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

/// Granularity of zero detection: the block size of ext4, xfs and btrfs on x86. A zero run
/// shorter than this is written out, which costs at most one block.
pub const ZERO_BLOCK: usize = 4096;

/// A byte range `[start, end)` of a file that may hold data (everything else reads as zeros).
pub type Segment = (u64, u64);

/// The ranges of `file`, up to `len`, that the filesystem reports as data. Filesystems without
/// SEEK_DATA report the whole file as one range, which is correct, only slower.
pub fn data_segments(file: &File, len: u64) -> io::Result<Vec<Segment>> {
    let mut segments = Vec::new();
    let mut pos = 0u64;
    while pos < len {
        let start = match seek(file, pos, libc::SEEK_DATA) {
            Ok(s) => s,
            // ENXIO: no data at or after `pos`.
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) && segments.is_empty() => {
                return Ok(vec![(0, len)]);
            }
            Err(e) => return Err(e),
        };
        if start >= len {
            break;
        }
        let end = seek(file, start, libc::SEEK_HOLE)?.min(len);
        segments.push((start, end));
        pos = end;
    }
    Ok(segments)
}

fn seek(file: &File, offset: u64, whence: libc::c_int) -> io::Result<u64> {
    let off = libc::off_t::try_from(offset)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset beyond off_t"))?;
    // SAFETY: lseek on a file descriptor we own; it only moves the file offset, which no other
    // code of ours relies on (all our I/O is positional).
    let r = unsafe { libc::lseek(file.as_raw_fd(), off, whence) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // r >= 0 was just checked.
    Ok(r as u64)
}

/// Whether every byte of `buf` is zero.
pub fn is_zero(buf: &[u8]) -> bool {
    // Comparing 16-byte chunks as integers is several times faster than byte by byte.
    let (chunks, rest) = buf.split_at(buf.len() - buf.len() % 16);
    chunks
        .chunks_exact(16)
        .all(|c| u128::from_ne_bytes(c.try_into().expect("chunks_exact(16) yields 16 bytes")) == 0)
        && rest.iter().all(|&b| b == 0)
}

/// Writes `buf` at `offset`, leaving out whole [`ZERO_BLOCK`]s of zeros (the file must already
/// read as zeros there, as a freshly created or truncated file does). Returns the number of
/// bytes actually written.
pub fn write_skipping_zeros(file: &File, offset: u64, buf: &[u8]) -> io::Result<u64> {
    let mut written = 0u64;
    let mut run_start: Option<usize> = None;
    let mut at = 0usize;
    while at < buf.len() {
        let end = (at + ZERO_BLOCK).min(buf.len());
        if is_zero(&buf[at..end]) {
            if let Some(s) = run_start.take() {
                file.write_all_at(&buf[s..at], offset + s as u64)?;
                written += (at - s) as u64;
            }
        } else if run_start.is_none() {
            run_start = Some(at);
        }
        at = end;
    }
    if let Some(s) = run_start {
        file.write_all_at(&buf[s..], offset + s as u64)?;
        written += (buf.len() - s) as u64;
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn zero_detection() {
        assert!(is_zero(&[]));
        assert!(is_zero(&[0; 33]));
        let mut v = vec![0u8; 100];
        v[99] = 1;
        assert!(!is_zero(&v));
        v[99] = 0;
        v[3] = 7;
        assert!(!is_zero(&v));
    }

    #[test]
    fn zero_blocks_are_not_written() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        let mut buf = vec![0u8; 64 * ZERO_BLOCK];
        buf[5] = 1; // first block
        buf[40 * ZERO_BLOCK + 9] = 2; // one block in the middle
        let written = write_skipping_zeros(&file, 0, &buf).unwrap();
        assert_eq!(written, 2 * ZERO_BLOCK as u64);
        file.set_len(buf.len() as u64).unwrap();
        let mut back = vec![0u8; buf.len()];
        file.read_exact_at(&mut back, 0).unwrap();
        assert_eq!(back, buf);
        // Two data blocks, far apart: at most a few blocks are allocated, and SEEK_DATA finds
        // the two islands (ext4/xfs/btrfs/tmpfs all support it).
        assert!(file.metadata().unwrap().blocks() * 512 <= 4 * ZERO_BLOCK as u64);
        let segs = data_segments(&file, buf.len() as u64).unwrap();
        assert!(segs.len() >= 2, "{segs:?}");
        assert_eq!(segs[0].0, 0);
        assert!(segs
            .iter()
            .any(|&(s, e)| s <= 40 * ZERO_BLOCK as u64 && e > 40 * ZERO_BLOCK as u64));
    }

    #[test]
    fn empty_and_hole_only_files_have_no_segments() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("f")).unwrap();
        assert!(data_segments(&file, 0).unwrap().is_empty());
        file.set_len(1 << 20).unwrap();
        assert!(data_segments(&file, 1 << 20).unwrap().is_empty());
    }
}
