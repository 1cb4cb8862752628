//! Files that become visible only when complete. Every file the store creates is written under
//! `<dir>/.partial/<stem>.<nonce>`, flushed to disk, then renamed onto its final name without
//! replacing anything, and the folder is flushed so the rename survives a power cut. A partial
//! file that is dropped before [`PartialFile::commit`] is removed; after a crash the next `open`
//! removes what is left ([`remove_leftovers`]).

use std::ffi::CString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Name of the folder, beside the final files, that holds files being written.
pub const PARTIAL_DIR: &str = ".partial";

/// What went wrong while creating, publishing or cleaning up files.
#[derive(Debug, thiserror::Error)]
pub enum PartialError {
    #[error("cannot create folder {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("cannot create temporary file {path}: {source}")]
    Create { path: PathBuf, source: io::Error },
    #[error("cannot reopen temporary file {path}: {source}")]
    Reopen { path: PathBuf, source: io::Error },
    #[error("cannot flush {path} to disk: {source}")]
    Sync { path: PathBuf, source: io::Error },
    #[error("{path} already exists; delete it first or use another id")]
    AlreadyExists { path: PathBuf },
    #[error("cannot move {from} to {to}: {source}")]
    Rename {
        from: PathBuf,
        to: PathBuf,
        source: io::Error,
    },
    #[error("cannot remove {path}: {source}")]
    Remove { path: PathBuf, source: io::Error },
    #[error("cannot list {path}: {source}")]
    List { path: PathBuf, source: io::Error },
}

/// Creates `path` and its missing parents with mode 0700: disk images hold guests' data, so
/// only the service's user may read them.
pub fn create_private_dir(path: &Path) -> Result<(), PartialError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
        .map_err(|source| PartialError::CreateDir {
            path: path.to_owned(),
            source,
        })
}

/// A file under a `.partial` folder that is removed unless committed.
#[derive(Debug)]
pub struct PartialFile {
    path: PathBuf,
    file: File,
    committed: bool,
}

impl PartialFile {
    /// Creates a new empty file `<partial_dir>/<stem>.<nonce>` (mode 0600, never an existing
    /// file: two writers of the same id get different nonces).
    pub fn create(partial_dir: &Path, stem: &str) -> Result<Self, PartialError> {
        let path = partial_dir.join(format!("{stem}.{}", nonce()));
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|source| PartialError::Create {
                path: path.clone(),
                source,
            })?;
        Ok(Self {
            path,
            file,
            committed: false,
        })
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Where the file is while it is being written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the path again, for when another program (qemu-img) rewrote it.
    pub fn reopen(&mut self) -> Result<(), PartialError> {
        self.file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)
            .map_err(|source| PartialError::Reopen {
                path: self.path.clone(),
                source,
            })?;
        Ok(())
    }

    /// Flushes the data, renames the file to `final_path` unless something already has that
    /// name, and flushes the final folder so the new name is durable. Returns the open file.
    pub fn commit(mut self, final_path: &Path) -> Result<File, PartialError> {
        self.file.sync_all().map_err(|source| PartialError::Sync {
            path: self.path.clone(),
            source,
        })?;
        rename_noreplace(&self.path, final_path)?;
        self.committed = true;
        sync_parent(final_path)?;
        let file = self
            .file
            .try_clone()
            .map_err(|source| PartialError::Reopen {
                path: final_path.to_owned(),
                source,
            })?;
        Ok(file)
    }
}

impl Drop for PartialFile {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        match fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            // Nothing else can be done from a destructor; the next open removes it.
            Err(e) => tracing::warn!(path = %self.path.display(), error = %e,
                "cannot remove unfinished file; it will be removed when the store is next opened"),
        }
    }
}

/// A name that is unique within this process and unlikely to collide across restarts; the
/// exclusive create in [`PartialFile::create`] makes a collision an error, never a clobber.
fn nonce() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!("{:x}-{nanos:x}-{n:x}", std::process::id())
}

/// Renames `from` to `to`, failing with [`PartialError::AlreadyExists`] instead of replacing an
/// existing `to` (two uploads of one id must not silently overwrite each other).
pub fn rename_noreplace(from: &Path, to: &Path) -> Result<(), PartialError> {
    let rename_err = |source| PartialError::Rename {
        from: from.to_owned(),
        to: to.to_owned(),
        source,
    };
    let c_from = CString::new(from.as_os_str().as_bytes())
        .map_err(|_| rename_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    let c_to = CString::new(to.as_os_str().as_bytes())
        .map_err(|_| rename_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
    // SAFETY: both pointers are NUL-terminated strings that outlive the call; renameat2 only
    // reads them.
    let rc = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            c_from.as_ptr(),
            libc::AT_FDCWD,
            c_to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if rc == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::EEXIST) => Err(PartialError::AlreadyExists {
            path: to.to_owned(),
        }),
        // Filesystems without RENAME_NOREPLACE: link() also refuses an existing name.
        Some(libc::EINVAL) | Some(libc::ENOSYS) => match fs::hard_link(from, to) {
            Ok(()) => fs::remove_file(from).map_err(rename_err),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(PartialError::AlreadyExists {
                    path: to.to_owned(),
                })
            }
            Err(e) => Err(rename_err(e)),
        },
        _ => Err(rename_err(err)),
    }
}

/// Flushes a folder's entries (a new, renamed or removed name) to disk.
pub fn sync_dir(dir: &Path) -> Result<(), PartialError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| PartialError::Sync {
            path: dir.to_owned(),
            source,
        })
}

fn sync_parent(path: &Path) -> Result<(), PartialError> {
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Removes `path` if it exists and flushes its folder; returns whether it existed.
pub fn remove_durably(path: &Path) -> Result<bool, PartialError> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_parent(path)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(source) => Err(PartialError::Remove {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Removes everything in a `.partial` folder: files there belong to writes that never finished
/// (the process died). Must only run when no writer is active, i.e. when the store is opened.
pub fn remove_leftovers(partial_dir: &Path) -> Result<Vec<PathBuf>, PartialError> {
    let list_err = |source| PartialError::List {
        path: partial_dir.to_owned(),
        source,
    };
    let mut removed = Vec::new();
    for entry in fs::read_dir(partial_dir).map_err(list_err)? {
        let path = entry.map_err(list_err)?.path();
        let is_dir = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir());
        let result = if is_dir {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
        match result {
            Ok(()) => removed.push(path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(PartialError::Remove { path, source }),
        }
    }
    if !removed.is_empty() {
        sync_dir(partial_dir)?;
    }
    removed.sort();
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn dropped_partial_file_disappears() {
        let dir = tempfile::tempdir().unwrap();
        let path = {
            let p = PartialFile::create(dir.path(), "x").unwrap();
            p.file().write_all(b"half").unwrap();
            p.path().to_owned()
        };
        assert!(!path.exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn commit_publishes_once_and_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let partial = dir.path().join(PARTIAL_DIR);
        create_private_dir(&partial).unwrap();
        assert_eq!(
            fs::metadata(&partial).unwrap().permissions().mode() & 0o777,
            0o700
        );
        let target = dir.path().join("img");

        let first = PartialFile::create(&partial, "img").unwrap();
        first.file().write_all(b"first").unwrap();
        first.commit(&target).unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"first");
        assert_eq!(
            fs::metadata(&target).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let second = PartialFile::create(&partial, "img").unwrap();
        second.file().write_all(b"second").unwrap();
        let err = second.commit(&target).unwrap_err();
        assert!(matches!(err, PartialError::AlreadyExists { .. }), "{err}");
        assert_eq!(fs::read(&target).unwrap(), b"first");
        // The refused partial file was dropped, hence removed.
        assert_eq!(fs::read_dir(&partial).unwrap().count(), 0);
    }

    #[test]
    fn nonces_differ_so_concurrent_writers_do_not_collide() {
        let dir = tempfile::tempdir().unwrap();
        let a = PartialFile::create(dir.path(), "same").unwrap();
        let b = PartialFile::create(dir.path(), "same").unwrap();
        assert_ne!(a.path(), b.path());
    }

    #[test]
    fn leftovers_are_listed_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("a.1"), b"x").unwrap();
        fs::create_dir(dir.path().join("b.2")).unwrap();
        fs::write(dir.path().join("b.2").join("inner"), b"y").unwrap();
        let removed = remove_leftovers(dir.path()).unwrap();
        assert_eq!(
            removed,
            vec![dir.path().join("a.1"), dir.path().join("b.2")]
        );
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
        assert!(remove_leftovers(dir.path()).unwrap().is_empty());
    }

    #[test]
    fn remove_durably_reports_existence() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        fs::write(&f, b"x").unwrap();
        assert!(remove_durably(&f).unwrap());
        assert!(!remove_durably(&f).unwrap());
    }
}
