//! Checksums Glance reports for image data: `checksum` (MD5, hex) and the "multihash"
//! `os_hash_algo`/`os_hash_value` (we always use SHA-512), computed incrementally as bytes go by.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use md5::{Digest as _, Md5};
use sha2::Sha512;

use crate::sparse;

/// Value of Glance's `os_hash_algo` for the hashes this crate computes.
pub const OS_HASH_ALGO: &str = "sha512";

/// Size and hashes of a byte stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    /// Number of bytes hashed.
    pub size: u64,
    /// MD5 as 32 lowercase hex digits (Glance `checksum`).
    pub md5_hex: String,
    /// SHA-512 as 128 lowercase hex digits (Glance `os_hash_value`).
    pub sha512_hex: String,
}

/// Running MD5 + SHA-512 over bytes fed in order.
#[derive(Clone, Default)]
pub struct Hasher {
    md5: Md5,
    sha512: Sha512,
    size: u64,
}

impl Hasher {
    /// A hasher that has seen nothing.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        self.sha512.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The final size and hex digests.
    pub fn finish(self) -> Digests {
        Digests {
            size: self.size,
            md5_hex: hex(&self.md5.finalize()),
            sha512_hex: hex(&self.sha512.finalize()),
        }
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hasher")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// Hashes the first `len` bytes of `file`, reading only its data segments and feeding zeros
/// for holes (a converted multi-GiB disk is mostly holes).
pub fn hash_file(file: &File, len: u64) -> io::Result<Digests> {
    const CHUNK: usize = 1 << 20;
    let zeros = vec![0u8; CHUNK];
    let mut buf = vec![0u8; CHUNK];
    let mut hasher = Hasher::new();
    let feed_zeros = |hasher: &mut Hasher, mut n: u64| {
        while n > 0 {
            let k = n.min(CHUNK as u64) as usize;
            hasher.update(&zeros[..k]);
            n -= k as u64;
        }
    };
    let mut pos = 0u64;
    for (start, end) in sparse::data_segments(file, len)? {
        feed_zeros(&mut hasher, start - pos);
        let mut at = start;
        while at < end {
            let k = (end - at).min(CHUNK as u64) as usize;
            file.read_exact_at(&mut buf[..k], at)?;
            hasher.update(&buf[..k]);
            at += k as u64;
        }
        pos = end;
    }
    feed_zeros(&mut hasher, len - pos);
    Ok(hasher.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Reference values from RFC 1321 §A.5 and FIPS 180-2 appendix C.1 ("abc").
    #[test]
    fn known_answers() {
        let mut h = Hasher::new();
        h.update(b"a");
        h.update(b"bc");
        let d = h.finish();
        assert_eq!(d.size, 3);
        assert_eq!(d.md5_hex, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            d.sha512_hex,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
        );
        assert_eq!(
            Hasher::new().finish().md5_hex,
            "d41d8cd98f00b204e9800998ecf8427e"
        );
    }

    #[test]
    fn sparse_file_hash_equals_hash_of_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        let len = 5 * (1 << 20) + 123;
        file.write_all_at(b"island", 3 * (1 << 20) + 7).unwrap();
        file.set_len(len).unwrap();
        let mut h = Hasher::new();
        h.update(&std::fs::read(&path).unwrap());
        assert_eq!(hash_file(&file, len).unwrap(), h.finish());
    }
}
