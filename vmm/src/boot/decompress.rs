//! Decompression of a bzImage's payload in the monitor, so the guest never runs its own
//! decompressor (minutes of emulated instructions on a PVM host). The codecs are the ones
//! Linux's `KERNEL_*` choices produce (arch/x86/boot/compressed, scripts/Makefile.lib).

use std::io::Read;

/// Refuse to inflate a kernel beyond this: no real vmlinux is near it.
pub const MAX_KERNEL_SIZE: usize = 512 << 20;
/// LZ4 legacy frames hold blocks of at most 8 MiB uncompressed.
const LZ4_LEGACY_BLOCK: usize = 8 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Codec {
    Gzip,
    Bzip2,
    Lzma,
    Xz,
    Lzo,
    Lz4Legacy,
    Zstd,
}

#[derive(Debug, thiserror::Error)]
pub enum DecompressError {
    #[error("unknown compression (payload starts with {0:02x?})")]
    UnknownCodec(Vec<u8>),
    #[error("{0:?} payloads are not supported by the monitor")]
    Unsupported(Codec),
    #[error("{codec:?} payload is corrupt: {reason}")]
    Corrupt { codec: Codec, reason: String },
    #[error("decompressed kernel exceeds {MAX_KERNEL_SIZE} bytes")]
    TooLarge,
}

/// Identifies the codec from the payload's magic bytes.
pub fn detect(payload: &[u8]) -> Result<Codec, DecompressError> {
    let starts = |m: &[u8]| payload.starts_with(m);
    Ok(if starts(&[0x1f, 0x8b]) {
        Codec::Gzip
    } else if starts(b"BZh") {
        Codec::Bzip2
    } else if starts(&[0x5d, 0x00, 0x00]) {
        Codec::Lzma
    } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0x00]) {
        Codec::Xz
    } else if starts(&[0x89, b'L', b'Z', b'O']) {
        Codec::Lzo
    } else if starts(&[0x02, 0x21, 0x4c, 0x18]) {
        Codec::Lz4Legacy
    } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Codec::Zstd
    } else {
        return Err(DecompressError::UnknownCodec(
            payload.iter().take(8).copied().collect(),
        ));
    })
}

/// Decompresses a bzImage payload. All codecs but gzip carry the uncompressed size as
/// 4 little-endian bytes after the stream (`size_append`); it is stripped and checked.
pub fn decompress(payload: &[u8]) -> Result<Vec<u8>, DecompressError> {
    let codec = detect(payload)?;
    let corrupt = |reason: String| DecompressError::Corrupt { codec, reason };
    let (stream, expected) = match codec {
        Codec::Gzip => (payload, None),
        _ => {
            let (s, tail) = payload
                .split_at_checked(payload.len().saturating_sub(4))
                .filter(|(_, t)| t.len() == 4)
                .ok_or_else(|| corrupt("payload shorter than its size trailer".into()))?;
            let size = u32::from_le_bytes(tail.try_into().expect("tail is 4 bytes")) as usize;
            (s, Some(size))
        }
    };
    if expected.is_some_and(|n| n > MAX_KERNEL_SIZE) {
        return Err(DecompressError::TooLarge);
    }
    let out = match codec {
        Codec::Gzip => read_bounded(flate2::read::GzDecoder::new(stream), codec)?,
        Codec::Bzip2 => read_bounded(bzip2::read::BzDecoder::new(stream), codec)?,
        Codec::Xz => read_bounded(xz2::read::XzDecoder::new(stream), codec)?,
        Codec::Zstd => {
            let dec = ruzstd::decoding::StreamingDecoder::new(stream)
                .map_err(|e| corrupt(e.to_string()))?;
            read_bounded(dec, codec)?
        }
        Codec::Lzma => {
            let mut out = Vec::new();
            let opts = lzma_rs::decompress::Options {
                memlimit: Some(MAX_KERNEL_SIZE),
                ..Default::default()
            };
            lzma_rs::lzma_decompress_with_options(&mut &stream[..], &mut out, &opts)
                .map_err(|e| corrupt(e.to_string()))?;
            out
        }
        Codec::Lz4Legacy => {
            // The magic `detect` matched is part of the stream, unless the size trailer
            // took some of its bytes: then there is no stream at all.
            let blocks = stream
                .get(4..)
                .ok_or_else(|| corrupt("payload shorter than its magic and size trailer".into()))?;
            lz4_legacy(blocks, expected.unwrap_or(0), codec)?
        }
        Codec::Lzo => return Err(DecompressError::Unsupported(codec)),
    };
    if let Some(n) = expected {
        if n != out.len() {
            return Err(corrupt(format!(
                "decompressed to {} bytes, trailer says {n}",
                out.len()
            )));
        }
    }
    Ok(out)
}

fn read_bounded<R: Read>(r: R, codec: Codec) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    r.take(MAX_KERNEL_SIZE as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecompressError::Corrupt {
            codec,
            reason: e.to_string(),
        })?;
    if out.len() > MAX_KERNEL_SIZE {
        return Err(DecompressError::TooLarge);
    }
    Ok(out)
}

/// LZ4 legacy frame (lz4 -l): after the magic, blocks of `u32 LE compressed size` + data.
fn lz4_legacy(mut s: &[u8], hint: usize, codec: Codec) -> Result<Vec<u8>, DecompressError> {
    let corrupt = |reason: String| DecompressError::Corrupt { codec, reason };
    let mut out = Vec::with_capacity(hint.min(MAX_KERNEL_SIZE));
    let mut block = vec![0u8; LZ4_LEGACY_BLOCK];
    while s.len() >= 4 {
        let size = u32::from_le_bytes(s[..4].try_into().expect("checked length")) as usize;
        // Concatenated legacy frames repeat the magic.
        if size == 0x184c_2102 {
            s = &s[4..];
            continue;
        }
        let data = s
            .get(4..4 + size)
            .ok_or_else(|| corrupt(format!("block of {size} bytes runs past the payload")))?;
        let n = lz4_flex::block::decompress_into(data, &mut block)
            .map_err(|e| corrupt(e.to_string()))?;
        if out.len() + n > MAX_KERNEL_SIZE {
            return Err(DecompressError::TooLarge);
        }
        out.extend_from_slice(&block[..n]);
        s = &s[4 + size..];
    }
    if !s.is_empty() {
        return Err(corrupt(format!(
            "{} stray bytes after the last block",
            s.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn sample() -> Vec<u8> {
        (0..300_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect()
    }

    fn with_size(mut v: Vec<u8>, n: usize) -> Vec<u8> {
        v.extend_from_slice(&(n as u32).to_le_bytes());
        v
    }

    /// Found by the kernel_decompress fuzz target: the LZ4 magic with one byte after it
    /// leaves a one-byte stream once the 4-byte size trailer is taken off.
    #[test]
    fn lz4_payload_shorter_than_magic_and_trailer_is_corrupt() {
        for tail in [&[][..], &[0x13], &[1, 2, 3]] {
            let payload = [&[0x02, 0x21, 0x4c, 0x18][..], tail].concat();
            assert!(
                matches!(
                    decompress(&payload),
                    Err(DecompressError::Corrupt {
                        codec: Codec::Lz4Legacy,
                        ..
                    })
                ),
                "{payload:02x?}"
            );
        }
    }

    #[test]
    fn gzip_roundtrip() {
        let data = sample();
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&data).unwrap();
        let z = e.finish().unwrap();
        assert_eq!(detect(&z).unwrap(), Codec::Gzip);
        assert_eq!(decompress(&z).unwrap(), data);
    }

    #[test]
    fn xz_and_bzip2_roundtrip_with_size_trailer() {
        let data = sample();
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(&data).unwrap();
        let z = with_size(e.finish().unwrap(), data.len());
        assert_eq!(decompress(&z).unwrap(), data);
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        e.write_all(&data).unwrap();
        let z = with_size(e.finish().unwrap(), data.len());
        assert_eq!(decompress(&z).unwrap(), data);
    }

    #[test]
    fn zstd_and_lzma_roundtrip_with_size_trailer() {
        let data = sample();
        let mut z = Vec::new();
        ruzstd::encoding::compress(
            &data[..],
            &mut z,
            ruzstd::encoding::CompressionLevel::Fastest,
        );
        assert_eq!(detect(&z).unwrap(), Codec::Zstd);
        assert_eq!(decompress(&with_size(z, data.len())).unwrap(), data);
        let mut z = Vec::new();
        lzma_rs::lzma_compress(&mut &data[..], &mut z).unwrap();
        assert_eq!(detect(&z).unwrap(), Codec::Lzma);
        assert_eq!(decompress(&with_size(z, data.len())).unwrap(), data);
    }

    #[test]
    fn lz4_legacy_blocks_roundtrip() {
        let data = sample();
        let mut z = vec![0x02, 0x21, 0x4c, 0x18];
        for chunk in data.chunks(500_000) {
            let c = lz4_flex::block::compress(chunk);
            z.extend_from_slice(&(c.len() as u32).to_le_bytes());
            z.extend_from_slice(&c);
        }
        let z = with_size(z, data.len());
        assert_eq!(decompress(&z).unwrap(), data);
    }

    #[test]
    fn wrong_size_trailer_and_garbage_are_errors() {
        let data = sample();
        let mut e = xz2::write::XzEncoder::new(Vec::new(), 1);
        e.write_all(&data).unwrap();
        let z = with_size(e.finish().unwrap(), data.len() + 1);
        assert!(matches!(
            decompress(&z),
            Err(DecompressError::Corrupt { .. })
        ));
        assert!(matches!(
            decompress(b"not a kernel"),
            Err(DecompressError::UnknownCodec(_))
        ));
        let mut lz = vec![0x02, 0x21, 0x4c, 0x18];
        lz.extend_from_slice(&u32::MAX.to_le_bytes());
        assert!(decompress(&with_size(lz, 10)).is_err());
    }
}
