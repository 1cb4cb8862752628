//! Copying one disk file into a new one: a reflink (FICLONE) when the filesystem can share
//! extents — a true copy-on-write clone that costs no space until either side is written — and
//! otherwise a sparse copy that reads only the source's data segments and writes only the
//! blocks that are not zeros.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use crate::sparse;

/// How a disk file got its contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMethod {
    /// Created empty (all zeros).
    Blank,
    /// Extents shared with the source (FICLONE); no data was copied.
    Reflink,
    /// Data blocks copied; zero blocks and holes left as holes.
    SparseCopy,
}

/// Fills the empty file `dst` with the contents of `src` (`dst` ends up exactly as long as
/// `src`). Tries a reflink first when `try_reflink`; any failure of it (ext4, tmpfs, another
/// filesystem: EOPNOTSUPP, EXDEV, EINVAL, ...) falls back to the sparse copy.
pub fn copy_disk(src: &File, dst: &File, try_reflink: bool) -> io::Result<CloneMethod> {
    if try_reflink {
        match reflink(src, dst) {
            Ok(()) => return Ok(CloneMethod::Reflink),
            Err(e) => tracing::debug!(error = %e, "reflink not possible; copying sparsely"),
        }
    }
    sparse_copy(src, dst)?;
    Ok(CloneMethod::SparseCopy)
}

fn reflink(src: &File, dst: &File) -> io::Result<()> {
    // SAFETY: FICLONE takes the source descriptor as its integer argument and reads no memory
    // of ours; both descriptors are open for the duration of the call.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), libc::FICLONE, src.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn sparse_copy(src: &File, dst: &File) -> io::Result<()> {
    const CHUNK: u64 = 1 << 20;
    let len = src.metadata()?.len();
    let mut buf = vec![0u8; CHUNK as usize];
    for (start, end) in sparse::data_segments(src, len)? {
        let mut at = start;
        while at < end {
            // At most CHUNK, so the cast is lossless.
            let n = (end - at).min(CHUNK) as usize;
            src.read_exact_at(&mut buf[..n], at)?;
            sparse::write_skipping_zeros(dst, at, &buf[..n])?;
            at += n as u64;
        }
    }
    dst.set_len(len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn rw(path: &std::path::Path) -> File {
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .unwrap()
    }

    #[test]
    fn sparse_copy_keeps_content_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let src = rw(&dir.path().join("src"));
        // Data, then 8 MiB of written zeros (allocated in the source), then data, then a hole.
        src.write_all_at(&[0xab; 10_000], 0).unwrap();
        src.write_all_at(&vec![0u8; 8 << 20], 10_000).unwrap();
        src.write_all_at(b"tail data", (8 << 20) + 10_000).unwrap();
        src.set_len(32 << 20).unwrap();

        let dst = rw(&dir.path().join("dst"));
        assert_eq!(
            copy_disk(&src, &dst, false).unwrap(),
            CloneMethod::SparseCopy
        );
        assert_eq!(
            std::fs::read(dir.path().join("src")).unwrap(),
            std::fs::read(dir.path().join("dst")).unwrap()
        );
        // The source has ~8 MiB allocated; the copy only the two data islands.
        assert!(src.metadata().unwrap().blocks() * 512 >= 8 << 20);
        assert!(dst.metadata().unwrap().blocks() * 512 <= 64 << 10);
    }

    #[test]
    fn reflink_falls_back_to_a_copy_on_filesystems_without_it() {
        let dir = tempfile::tempdir().unwrap();
        let src = rw(&dir.path().join("src"));
        src.write_all_at(b"content", 4096).unwrap();
        let dst = rw(&dir.path().join("dst"));
        let method = copy_disk(&src, &dst, true).unwrap();
        // Either is correct; which one depends on the filesystem under the temp folder.
        assert!(matches!(
            method,
            CloneMethod::Reflink | CloneMethod::SparseCopy
        ));
        assert_eq!(
            std::fs::read(dir.path().join("dst")).unwrap(),
            std::fs::read(dir.path().join("src")).unwrap()
        );
    }
}
