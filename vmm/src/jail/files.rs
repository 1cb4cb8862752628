//! Files the monitor's parent opened for it (`--fd PATH=N`, `--tap-fd NAME=N`): a jailed
//! monitor cannot open its disks, kernel, /dev/kvm or taps itself, so every place that
//! would open one asks here first, by the name the configuration gives it, and gets a
//! duplicate of the descriptor it was handed. A name not handed over is opened as before,
//! which is how an unjailed monitor (and every test of the library) works.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{arg} {value:?}: use NAME=FD with a descriptor number of 3 or more")]
    Syntax { arg: &'static str, value: String },
    #[error("{arg} {value:?}: descriptor {fd} is not open in this process")]
    NotOpen {
        arg: &'static str,
        value: String,
        fd: RawFd,
    },
    #[error("{arg} {value:?}: descriptor {fd} is handed over twice")]
    Duplicate {
        arg: &'static str,
        value: String,
        fd: RawFd,
    },
    #[error("the handed-over files were already set")]
    AlreadySet,
}

/// The descriptors handed over, by path (files) and by interface name (taps).
#[derive(Debug, Default)]
pub struct HandedOver {
    files: BTreeMap<PathBuf, OwnedFd>,
    taps: BTreeMap<String, OwnedFd>,
}

static HANDED_OVER: OnceLock<HandedOver> = OnceLock::new();

impl HandedOver {
    /// Takes ownership of the inherited descriptors that `--fd` and `--tap-fd` name, and
    /// marks them close-on-exec. Each must be open, and named once.
    pub fn adopt(files: &[String], taps: &[String]) -> Result<HandedOver, FilesError> {
        let mut seen = Vec::new();
        let mut parse = |arg: &'static str, value: &String| {
            let bad = || FilesError::Syntax {
                arg,
                value: value.clone(),
            };
            let (name, fd) = value.rsplit_once('=').ok_or_else(bad)?;
            let fd: RawFd = fd.parse().map_err(|_| bad())?;
            // 0-2 are stdio; a name must be there.
            if fd < 3 || name.is_empty() {
                return Err(bad());
            }
            if seen.contains(&fd) {
                return Err(FilesError::Duplicate {
                    arg,
                    value: value.clone(),
                    fd,
                });
            }
            seen.push(fd);
            // SAFETY: F_SETFD on any number is harmless: it fails with EBADF when nothing is
            // open there, which is how an fd that was not really inherited is detected.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
                return Err(FilesError::NotOpen {
                    arg,
                    value: value.clone(),
                    fd,
                });
            }
            // SAFETY: the descriptor is open (checked above), was inherited from the parent
            // for this purpose, and nothing else in this process owns it: each number is
            // adopted once (checked above) and only here, before any thread exists.
            let owned = unsafe { OwnedFd::from_raw_fd(fd) };
            Ok((name.to_owned(), owned))
        };
        let mut handed = HandedOver::default();
        for value in files {
            let (name, fd) = parse("--fd", value)?;
            handed.files.insert(PathBuf::from(name), fd);
        }
        for value in taps {
            let (name, fd) = parse("--tap-fd", value)?;
            handed.taps.insert(name, fd);
        }
        Ok(handed)
    }

    /// Makes these the process's handed-over files (once, before any thread exists).
    pub fn install(self) -> Result<(), FilesError> {
        HANDED_OVER.set(self).map_err(|_| FilesError::AlreadySet)
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.taps.is_empty()
    }
}

fn handed() -> Option<&'static HandedOver> {
    HANDED_OVER.get()
}

/// A duplicate of the descriptor handed over as `path`, if one was.
fn handed_file(path: &Path) -> Option<io::Result<File>> {
    let fd = handed()?.files.get(path)?;
    Some(fd.try_clone().map(File::from))
}

/// Opens `path` with `options`, from the handed-over files first. A handed-over file is
/// used as its parent opened it (the parent decides read-only or read-write), and its
/// duplicates share one file offset: readers seek (or use positional I/O) before they read.
pub fn open(path: &Path, options: &OpenOptions) -> io::Result<File> {
    match handed_file(path) {
        Some(file) => file,
        None => options.open(path),
    }
}

/// Opens `path` for reading, from the handed-over files first.
pub fn open_read(path: &Path) -> io::Result<File> {
    open(path, OpenOptions::new().read(true))
}

/// Whether `path` was handed over (then it needs no directory or file in this mount
/// namespace).
pub fn is_handed_over(path: &Path) -> bool {
    handed().is_some_and(|h| h.files.contains_key(path))
}

/// The tap `name` as its parent attached it (TUNSETIFF done), if it was handed over.
pub fn tap(name: &str) -> Option<io::Result<File>> {
    let fd = handed()?.taps.get(name)?;
    Some(fd.try_clone().map(File::from))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::fd::{AsRawFd, IntoRawFd};

    #[test]
    fn inherited_descriptors_are_adopted_by_name() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"kernel").unwrap();
        let fd = file.into_raw_fd();
        let handed = HandedOver::adopt(&[format!("/images/vmlinux={fd}")], &[]).unwrap();
        let mut dup = handed.files[Path::new("/images/vmlinux")]
            .try_clone()
            .map(File::from)
            .unwrap();
        assert_ne!(dup.as_raw_fd(), fd);
        let mut text = String::new();
        dup.seek(SeekFrom::Start(0)).unwrap();
        dup.read_to_string(&mut text).unwrap();
        assert_eq!(text, "kernel");
    }

    #[test]
    fn bad_hand_overs_are_refused() {
        let err = |files: &[&str]| {
            let files: Vec<String> = files.iter().map(|s| s.to_string()).collect();
            HandedOver::adopt(&files, &[]).unwrap_err().to_string()
        };
        assert!(err(&["/dev/kvm"]).contains("NAME=FD"));
        assert!(err(&["/dev/kvm=1"]).contains("NAME=FD"));
        assert!(err(&["=5"]).contains("NAME=FD"));
        // Far above anything this test process has open.
        assert!(err(&["/dev/kvm=9999"]).contains("not open"));
        let file = tempfile::tempfile().unwrap();
        let fd = file.as_raw_fd();
        let e = err(&[&format!("/a={fd}"), &format!("/b={fd}")]);
        assert!(e.contains("twice"), "{e}");
        // The first was adopted (and closed when dropped): keep `file` from closing again.
        std::mem::forget(file);
    }
}
