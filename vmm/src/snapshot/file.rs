//! The state file: a fixed header (magic, format version, body length, CRC-32 of the body)
//! and a postcard-encoded body. A reader checks all of the header and the checksum, then
//! decodes the whole body, before handing anything back: a file from another version or a
//! damaged one is refused, never half-loaded.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// "OUTPOST" and a format marker byte: tells a snapshot from any other file.
const MAGIC: [u8; 8] = *b"OUTPOST\x53";

/// The body's layout. Any change to a saved type (a field added, removed, reordered, or a
/// type changed) bumps it; a monitor restores only its own version.
pub const FORMAT_VERSION: u32 = 2;

/// magic, version (u32), body length (u64), CRC-32 of the body (u32); little-endian.
const HEADER_LEN: usize = 8 + 4 + 8 + 4;

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("cannot read snapshot {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write snapshot {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not an Outpost snapshot (no snapshot header)")]
    NotASnapshot { path: PathBuf },
    #[error(
        "snapshot {path} has format version {found}; this monitor restores only version \
         {supported}: take the snapshot again with this monitor"
    )]
    Version {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "snapshot {path} is truncated: its header announces {expected} bytes of state, the \
         file holds {found}"
    )]
    Truncated {
        path: PathBuf,
        expected: u64,
        found: u64,
    },
    #[error(
        "snapshot {path} is corrupted: CRC-32 of its state is {found:#010x}, its header says \
         {expected:#010x}"
    )]
    Checksum {
        path: PathBuf,
        expected: u32,
        found: u32,
    },
    #[error("snapshot {path} passed its checksum but does not decode: {reason}")]
    Decode { path: PathBuf, reason: String },
    #[error("cannot encode the snapshot's state: {0}")]
    Encode(String),
}

/// Writes `state` to `path` (mode 0600: a snapshot holds guest state), through a temporary
/// file renamed into place, so `path` never holds a partial snapshot.
pub fn write<T: Serialize>(path: &Path, state: &T) -> Result<(), StateFileError> {
    let bytes = encode(state)?;

    let err = |source| StateFileError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".partial");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        use std::os::unix::fs::OpenOptionsExt;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(err)
}

/// The whole file for `state`: header and body.
pub fn encode<T: Serialize>(state: &T) -> Result<Vec<u8>, StateFileError> {
    let body = postcard::to_stdvec(state).map_err(|e| StateFileError::Encode(e.to_string()))?;
    Ok(frame(&body))
}

/// `body` behind a header of this format version with its length and checksum (also how
/// the fuzz target gets past the checksum to the body's decoding).
pub fn frame(body: &[u8]) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(HEADER_LEN + body.len());
    bytes.extend_from_slice(&MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&(body.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    bytes.extend_from_slice(body);
    bytes
}

/// Reads and checks a snapshot written by [`write`] with the same `FORMAT_VERSION`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T, StateFileError> {
    let bytes = std::fs::read(path).map_err(|source| StateFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    decode(path, &bytes)
}

/// Checks and decodes a whole state file's bytes; `path` names it in errors.
pub fn decode<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<T, StateFileError> {
    let path = || path.to_path_buf();
    let (header, body) = match bytes.split_at_checked(HEADER_LEN) {
        Some((h, b)) if h[..8] == MAGIC => (h, b),
        _ => return Err(StateFileError::NotASnapshot { path: path() }),
    };
    let field = |at: usize, len: usize| &header[at..at + len];
    let version = u32::from_le_bytes(field(8, 4).try_into().expect("a 4-byte header field"));
    if version != FORMAT_VERSION {
        return Err(StateFileError::Version {
            path: path(),
            found: version,
            supported: FORMAT_VERSION,
        });
    }
    let len = u64::from_le_bytes(field(12, 8).try_into().expect("an 8-byte header field"));
    if len != body.len() as u64 {
        return Err(StateFileError::Truncated {
            path: path(),
            expected: len,
            found: body.len() as u64,
        });
    }
    let expected = u32::from_le_bytes(field(20, 4).try_into().expect("a 4-byte header field"));
    let found = crc32fast::hash(body);
    if found != expected {
        return Err(StateFileError::Checksum {
            path: path(),
            expected,
            found,
        });
    }
    let (state, rest) = postcard::take_from_bytes(body).map_err(|e| StateFileError::Decode {
        path: path(),
        reason: e.to_string(),
    })?;
    if !rest.is_empty() {
        return Err(StateFileError::Decode {
            path: path(),
            reason: format!("{} bytes left over after the state", rest.len()),
        });
    }
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Serialize, serde::Deserialize)]
    struct Sample {
        counter: u64,
        name: String,
        regs: Vec<u32>,
    }

    fn sample() -> Sample {
        Sample {
            counter: 41,
            name: "vcpu0".into(),
            regs: vec![1, 2, 3, 0xdead_beef],
        }
    }

    fn written() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state");
        write(&path, &sample()).unwrap();
        (dir, path)
    }

    #[test]
    fn round_trip_with_owner_only_permissions() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, path) = written();
        assert_eq!(read::<Sample>(&path).unwrap(), sample());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!path.with_extension("partial").exists());
    }

    #[test]
    fn another_version_is_refused() {
        let (_dir, path) = written();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[8..12].copy_from_slice(&(FORMAT_VERSION + 1).to_le_bytes());
        std::fs::write(&path, &bytes).unwrap();
        let err = read::<Sample>(&path).unwrap_err();
        assert!(
            matches!(err, StateFileError::Version { found, supported, .. }
                if found == FORMAT_VERSION + 1 && supported == FORMAT_VERSION),
            "{err}"
        );
    }

    #[test]
    fn a_flipped_bit_in_the_body_is_refused() {
        let (_dir, path) = written();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let err = read::<Sample>(&path).unwrap_err();
        assert!(matches!(err, StateFileError::Checksum { .. }), "{err}");
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let (_dir, path) = written();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        let err = read::<Sample>(&path).unwrap_err();
        assert!(
            matches!(err, StateFileError::Truncated { expected, found, .. }
                if expected == found + 3),
            "{err}"
        );
        std::fs::write(&path, &bytes[..5]).unwrap();
        let err = read::<Sample>(&path).unwrap_err();
        assert!(matches!(err, StateFileError::NotASnapshot { .. }), "{err}");
    }

    #[test]
    fn another_file_is_not_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vmlinux");
        std::fs::write(
            &path,
            b"\x7fELF\x02\x01\x01\0 and more than a header's worth",
        )
        .unwrap();
        let err = read::<Sample>(&path).unwrap_err();
        assert!(matches!(err, StateFileError::NotASnapshot { .. }), "{err}");
    }

    #[test]
    fn a_body_of_another_shape_is_refused_after_its_checksum() {
        // A body that checks out but is not the type asked for (a bug, or a version bump
        // forgotten) must not decode into something half-filled.
        let (_dir, path) = written();
        let err = read::<(u64, String, Vec<u32>, u64)>(&path).unwrap_err();
        assert!(matches!(err, StateFileError::Decode { .. }), "{err}");
    }
}
