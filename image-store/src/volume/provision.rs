//! Thin and thick provisioning: a thin disk is a sparse file whose blocks are allocated as the
//! guest writes; a thick disk has every block reserved up front, so the guest can never hit
//! ENOSPC on the host.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

/// How a disk's space is reserved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provisioning {
    /// Sparse: only written blocks take space.
    Thin,
    /// Fully allocated when created or extended.
    Thick,
}

/// Makes `file` `size` bytes long, allocating every block when thick. Existing data is kept;
/// only holes are filled (with blocks that read as zeros).
pub fn provision(file: &File, size: u64, provisioning: Provisioning) -> io::Result<()> {
    match provisioning {
        Provisioning::Thin => file.set_len(size),
        Provisioning::Thick => allocate(file, 0, size),
    }
}

/// Allocates `[offset, offset + len)`, growing the file if that range ends past it.
pub fn allocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let to_off = |v: u64| {
        libc::off_t::try_from(v)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "size beyond off_t"))
    };
    let (off, n) = (to_off(offset)?, to_off(len)?);
    // SAFETY: fallocate(2) on a descriptor we own; it touches no memory of ours. Mode 0
    // allocates and extends the file size, never changing data already there.
    let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, off, n) };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(err);
    }
    // Filesystems without fallocate: glibc's posix_fallocate writes a zero into each block
    // that is still a hole, which allocates it without changing what it reads as.
    // SAFETY: as above; posix_fallocate returns the error number instead of setting errno.
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), off, n) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileExt, MetadataExt};

    #[test]
    fn thin_is_sparse_and_thick_is_allocated() {
        let dir = tempfile::tempdir().unwrap();
        let thin = File::create(dir.path().join("thin")).unwrap();
        provision(&thin, 16 << 20, Provisioning::Thin).unwrap();
        let thick = File::create(dir.path().join("thick")).unwrap();
        provision(&thick, 16 << 20, Provisioning::Thick).unwrap();

        let (t, k) = (thin.metadata().unwrap(), thick.metadata().unwrap());
        assert_eq!((t.len(), k.len()), (16 << 20, 16 << 20));
        assert_eq!(t.blocks(), 0);
        assert!(k.blocks() * 512 >= 16 << 20);
    }

    #[test]
    fn thick_keeps_existing_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let f = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        f.write_all_at(b"keep", 1 << 20).unwrap();
        provision(&f, 4 << 20, Provisioning::Thick).unwrap();
        let mut back = [0u8; 4];
        f.read_exact_at(&mut back, 1 << 20).unwrap();
        assert_eq!(&back, b"keep");
        assert_eq!(f.metadata().unwrap().len(), 4 << 20);
        assert!(f.metadata().unwrap().blocks() * 512 >= 4 << 20);
    }
}
