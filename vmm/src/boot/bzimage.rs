//! The bzImage container (Documentation/arch/x86/boot.rst): the setup header and the
//! compressed payload that holds the real vmlinux ELF.

use super::decompress::{self, Codec, DecompressError};

const SETUP_HEADER_OFFSET: usize = 0x1f1;
const HDRS_MAGIC: u32 = 0x5372_6448;
/// `payload_offset`/`payload_length` exist since boot protocol 2.08.
const MIN_PAYLOAD_PROTOCOL: u16 = 0x0208;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub protocol: u16,
    pub setup_sects: u8,
    pub payload_offset: u32,
    pub payload_length: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BzImageError {
    #[error("no bzImage setup header (HdrS) found")]
    NotBzImage,
    #[error("boot protocol {0:#x} predates payload_offset (2.08)")]
    TooOld(u16),
    #[error("payload at {offset:#x}+{len:#x} lies outside the {size}-byte image")]
    PayloadOutOfBounds {
        offset: usize,
        len: usize,
        size: usize,
    },
    #[error(transparent)]
    Decompress(#[from] DecompressError),
}

fn le16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at + 2)?.try_into().ok()?))
}
fn le32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

pub fn parse(image: &[u8]) -> Result<Header, BzImageError> {
    let magic = le32(image, 0x202).ok_or(BzImageError::NotBzImage)?;
    if magic != HDRS_MAGIC {
        return Err(BzImageError::NotBzImage);
    }
    let protocol = le16(image, 0x206).ok_or(BzImageError::NotBzImage)?;
    if protocol < MIN_PAYLOAD_PROTOCOL {
        return Err(BzImageError::TooOld(protocol));
    }
    Ok(Header {
        protocol,
        setup_sects: *image
            .get(SETUP_HEADER_OFFSET)
            .ok_or(BzImageError::NotBzImage)?,
        payload_offset: le32(image, 0x248).ok_or(BzImageError::NotBzImage)?,
        payload_length: le32(image, 0x24c).ok_or(BzImageError::NotBzImage)?,
    })
}

/// The payload is relative to the protected-mode code, which starts after the real-mode
/// setup sectors (`setup_sects` of 0 means 4).
pub fn payload<'a>(image: &'a [u8], h: &Header) -> Result<&'a [u8], BzImageError> {
    let sects = if h.setup_sects == 0 {
        4
    } else {
        h.setup_sects as usize
    };
    let offset = (sects + 1) * 512 + h.payload_offset as usize;
    let len = h.payload_length as usize;
    image
        .get(offset..offset.saturating_add(len))
        .ok_or(BzImageError::PayloadOutOfBounds {
            offset,
            len,
            size: image.len(),
        })
}

pub fn unpack_payload(image: &[u8], h: &Header) -> Result<(Codec, Vec<u8>), BzImageError> {
    let p = payload(image, h)?;
    let codec = decompress::detect(p)?;
    Ok((codec, decompress::decompress(p)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// A synthetic bzImage: header fields at their offsets, a gzip payload after setup.
    fn fake_bzimage(payload: &[u8]) -> Vec<u8> {
        let setup_sects = 3u8;
        let mut img = vec![0u8; (setup_sects as usize + 1) * 512];
        img[SETUP_HEADER_OFFSET] = setup_sects;
        img[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        img[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        img[0x248..0x24c].copy_from_slice(&0x10u32.to_le_bytes());
        img[0x24c..0x250].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        img.extend_from_slice(&[0u8; 0x10]);
        img.extend_from_slice(payload);
        img
    }

    #[test]
    fn finds_and_unpacks_the_payload() {
        let elf = b"\x7fELF-pretend-vmlinux".repeat(100);
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&elf).unwrap();
        let img = fake_bzimage(&e.finish().unwrap());
        let h = parse(&img).unwrap();
        assert_eq!(h.setup_sects, 3);
        let (codec, out) = unpack_payload(&img, &h).unwrap();
        assert_eq!(codec, Codec::Gzip);
        assert_eq!(out, elf);
    }

    #[test]
    fn rejects_truncated_and_foreign_images() {
        assert!(matches!(parse(b"short"), Err(BzImageError::NotBzImage)));
        let mut img = fake_bzimage(b"xxxx");
        assert!(parse(&img).is_ok());
        img[0x24c..0x250].copy_from_slice(&u32::MAX.to_le_bytes());
        let h = parse(&img).unwrap();
        assert!(matches!(
            payload(&img, &h),
            Err(BzImageError::PayloadOutOfBounds { .. })
        ));
    }
}
