//! Disk formats: the names Glance uses for `disk_format`, recognising what a file really is from
//! its first and last bytes, and the qcow2 header checks that keep an image from pointing
//! qemu-img at files outside it (a backing file or an external data file).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Glance v2 `disk_format` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiskFormat {
    Raw,
    Qcow2,
    /// Amazon machine image: a raw disk.
    Ami,
    /// Amazon kernel image: a kernel, stored as bytes.
    Aki,
    /// Amazon ramdisk image: an initrd, stored as bytes.
    Ari,
    Iso,
    Vhd,
    Vhdx,
    Vmdk,
    Vdi,
    Ploop,
}

impl DiskFormat {
    /// Every value, in Glance's documentation order.
    pub const ALL: [DiskFormat; 11] = [
        Self::Ami,
        Self::Ari,
        Self::Aki,
        Self::Vhd,
        Self::Vhdx,
        Self::Vmdk,
        Self::Raw,
        Self::Qcow2,
        Self::Vdi,
        Self::Iso,
        Self::Ploop,
    ];

    /// The Glance spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
            Self::Ami => "ami",
            Self::Aki => "aki",
            Self::Ari => "ari",
            Self::Iso => "iso",
            Self::Vhd => "vhd",
            Self::Vhdx => "vhdx",
            Self::Vmdk => "vmdk",
            Self::Vdi => "vdi",
            Self::Ploop => "ploop",
        }
    }

    /// Whether this store accepts uploads in this format. The others (vhd, vmdk, ...) are
    /// refused rather than stored unchecked: each has its own ways of referring to other files
    /// (VMDK extents, for one) that we do not inspect.
    pub fn is_accepted(self) -> bool {
        matches!(
            self,
            Self::Raw | Self::Qcow2 | Self::Ami | Self::Aki | Self::Ari | Self::Iso
        )
    }

    /// The container format the bytes of a correct upload in this format have.
    pub fn expected_content(self) -> ContentFormat {
        match self {
            Self::Qcow2 => ContentFormat::Qcow2,
            Self::Vhd => ContentFormat::Vhd,
            Self::Vhdx => ContentFormat::Vhdx,
            Self::Vmdk => ContentFormat::Vmdk,
            Self::Vdi => ContentFormat::Vdi,
            // Plain bytes: a disk, a kernel, an initrd, an ISO 9660 image. ploop is raw data
            // plus a separate descriptor.
            Self::Raw | Self::Ami | Self::Aki | Self::Ari | Self::Iso | Self::Ploop => {
                ContentFormat::Raw
            }
        }
    }
}

impl fmt::Display for DiskFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `disk_format` string that Glance does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown disk_format {given:?}; use one of ami, ari, aki, vhd, vhdx, vmdk, raw, qcow2, vdi, iso, ploop")]
pub struct UnknownDiskFormat {
    pub given: String,
}

impl FromStr for DiskFormat {
    type Err = UnknownDiskFormat;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| UnknownDiskFormat {
                given: s.to_owned(),
            })
    }
}

/// What a file's bytes say it is, whatever it was declared as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentFormat {
    /// No container header we know: plain bytes.
    Raw,
    Qcow2,
    Qed,
    Vmdk,
    Vhd,
    Vhdx,
    Vdi,
    Luks,
}

impl fmt::Display for ContentFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
            Self::Qed => "qed",
            Self::Vmdk => "vmdk",
            Self::Vhd => "vhd",
            Self::Vhdx => "vhdx",
            Self::Vdi => "vdi",
            Self::Luks => "luks",
        })
    }
}

/// Bytes of the file's start that [`sniff`] looks at.
pub const SNIFF_HEAD: usize = 512;
/// Bytes of the file's end that [`sniff`] looks at (the VHD footer).
pub const SNIFF_TAIL: usize = 512;

/// Recognises a file from its first [`SNIFF_HEAD`] bytes (fewer if the file is shorter) and its
/// last [`SNIFF_TAIL`] bytes. Magic numbers are from each format's specification: qcow2
/// `QFI\xfb`, QED `QED\0`, VMDK sparse extent `KDMV` or a text descriptor, VHDX `vhdxfile`, VDI
/// signature 0xbeda107f at offset 0x40, VHD cookie `conectix` in the footer (or its copy at
/// offset 0 in dynamic disks), LUKS `LUKS\xba\xbe`.
pub fn sniff(head: &[u8], tail: &[u8]) -> ContentFormat {
    let starts = |magic: &[u8]| head.starts_with(magic);
    if starts(b"QFI\xfb") {
        ContentFormat::Qcow2
    } else if starts(b"QED\0") {
        ContentFormat::Qed
    } else if starts(b"KDMV") || starts(b"# Disk DescriptorFile") {
        ContentFormat::Vmdk
    } else if starts(b"vhdxfile") {
        ContentFormat::Vhdx
    } else if starts(b"LUKS\xba\xbe") {
        ContentFormat::Luks
    } else if head.get(0x40..0x44) == Some(&0xbeda_107f_u32.to_le_bytes()[..]) {
        ContentFormat::Vdi
    } else if starts(b"conectix") || tail.starts_with(b"conectix") {
        ContentFormat::Vhd
    } else {
        ContentFormat::Raw
    }
}

/// Why a qcow2 image is refused before qemu-img reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Qcow2Error {
    #[error("qcow2 header is truncated ({len} bytes; version 2 needs 72, version 3 needs 104)")]
    Truncated { len: usize },
    #[error("not a qcow2 image (no QFI\\xfb magic)")]
    BadMagic,
    #[error("qcow2 version {0} is not supported; convert it with `qemu-img amend -o compat=1.1`")]
    UnsupportedVersion(u32),
    #[error(
        "qcow2 image names a backing file; upload a standalone image (flatten it with \
         `qemu-img convert -O qcow2 in.qcow2 out.qcow2`)"
    )]
    BackingFile,
    #[error(
        "qcow2 image keeps its data in an external data file; upload a standalone image \
         (`qemu-img convert -O qcow2 in.qcow2 out.qcow2`)"
    )]
    ExternalDataFile,
    #[error("qcow2 image is marked corrupt; repair it with `qemu-img check -r all` first")]
    Corrupt,
    #[error("qcow2 image is encrypted; upload it decrypted")]
    Encrypted,
    #[error("qcow2 image uses incompatible features {0:#x} that qemu-img does not know")]
    UnknownFeatures(u64),
}

/// The qcow2 header fields this store relies on (qcow2 specification, "Header" section;
/// all fields big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Qcow2Header {
    pub version: u32,
    /// Disk size the guest sees, in bytes.
    pub virtual_size: u64,
    pub cluster_bits: u32,
    pub incompatible_features: u64,
}

/// Incompatible feature bits (qcow2 spec, bytes 72-79): dirty, corrupt, external data file,
/// compression type, extended L2 entries.
const INCOMPAT_CORRUPT: u64 = 1 << 1;
const INCOMPAT_DATA_FILE: u64 = 1 << 2;
const INCOMPAT_KNOWN: u64 = 0b1_1111;

impl Qcow2Header {
    /// Parses and vets a header: refuses backing files, external data files, encryption,
    /// corruption and features newer than we know.
    pub fn parse(head: &[u8]) -> Result<Self, Qcow2Error> {
        let u32_at = |o: usize| {
            head.get(o..o + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        };
        let u64_at = |o: usize| {
            head.get(o..o + 8)
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map(u64::from_be_bytes)
        };
        let truncated = Qcow2Error::Truncated { len: head.len() };
        if !head.starts_with(b"QFI\xfb") {
            return Err(if head.len() < 4 {
                truncated
            } else {
                Qcow2Error::BadMagic
            });
        }
        let version = u32_at(4).ok_or(truncated.clone())?;
        if !(2..=3).contains(&version) {
            return Err(Qcow2Error::UnsupportedVersion(version));
        }
        let min_len = if version == 2 { 72 } else { 104 };
        if head.len() < min_len {
            return Err(truncated);
        }
        let field32 = |o| u32_at(o).ok_or(truncated.clone());
        let field64 = |o| u64_at(o).ok_or(truncated.clone());
        if field64(8)? != 0 {
            return Err(Qcow2Error::BackingFile);
        }
        let cluster_bits = field32(20)?;
        let virtual_size = field64(24)?;
        if field32(32)? != 0 {
            return Err(Qcow2Error::Encrypted);
        }
        let incompatible_features = if version == 3 { field64(72)? } else { 0 };
        if incompatible_features & INCOMPAT_DATA_FILE != 0 {
            return Err(Qcow2Error::ExternalDataFile);
        }
        if incompatible_features & INCOMPAT_CORRUPT != 0 {
            return Err(Qcow2Error::Corrupt);
        }
        if incompatible_features & !INCOMPAT_KNOWN != 0 {
            return Err(Qcow2Error::UnknownFeatures(
                incompatible_features & !INCOMPAT_KNOWN,
            ));
        }
        Ok(Self {
            version,
            virtual_size,
            cluster_bits,
            incompatible_features,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn qcow2_v3(size: u64) -> Vec<u8> {
        let mut h = vec![0u8; 112];
        h[0..4].copy_from_slice(b"QFI\xfb");
        h[4..8].copy_from_slice(&3u32.to_be_bytes());
        h[20..24].copy_from_slice(&16u32.to_be_bytes());
        h[24..32].copy_from_slice(&size.to_be_bytes());
        h[100..104].copy_from_slice(&112u32.to_be_bytes());
        h
    }

    #[test]
    fn disk_format_names_round_trip() {
        for f in DiskFormat::ALL {
            assert_eq!(f.as_str().parse::<DiskFormat>(), Ok(f));
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.as_str())
            );
        }
        let err = "QCOW2".parse::<DiskFormat>().unwrap_err();
        assert!(err.to_string().contains("qcow2"), "{err}");
    }

    #[test]
    fn sniffs_known_magics() {
        let mut vdi = vec![0u8; 512];
        vdi[0x40..0x44].copy_from_slice(&0xbeda_107f_u32.to_le_bytes());
        let cases: [(&[u8], &[u8], ContentFormat); 9] = [
            (b"QFI\xfb\0\0\0\x03", b"", ContentFormat::Qcow2),
            (b"QED\0", b"", ContentFormat::Qed),
            (b"KDMV\x01", b"", ContentFormat::Vmdk),
            (b"# Disk DescriptorFile\n", b"", ContentFormat::Vmdk),
            (b"vhdxfile", b"", ContentFormat::Vhdx),
            (b"LUKS\xba\xbe\0\x02", b"", ContentFormat::Luks),
            (&vdi, b"", ContentFormat::Vdi),
            (&[0u8; 512], b"conectix\0\0", ContentFormat::Vhd),
            (b"\xebc\x90 boot sector", b"\x55\xaa", ContentFormat::Raw),
        ];
        for (head, tail, want) in cases {
            assert_eq!(sniff(head, tail), want, "{head:?}");
        }
        assert_eq!(sniff(b"", b""), ContentFormat::Raw);
        assert_eq!(sniff(b"QF", b""), ContentFormat::Raw);
    }

    #[test]
    fn accepted_formats_and_their_content() {
        let accepted: Vec<_> = DiskFormat::ALL
            .into_iter()
            .filter(|f| f.is_accepted())
            .collect();
        assert_eq!(
            accepted,
            [
                DiskFormat::Ami,
                DiskFormat::Ari,
                DiskFormat::Aki,
                DiskFormat::Raw,
                DiskFormat::Qcow2,
                DiskFormat::Iso
            ]
        );
        assert_eq!(DiskFormat::Qcow2.expected_content(), ContentFormat::Qcow2);
        assert_eq!(DiskFormat::Aki.expected_content(), ContentFormat::Raw);
    }

    #[test]
    fn plain_qcow2_header_parses() {
        let h = Qcow2Header::parse(&qcow2_v3(1 << 30)).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.virtual_size, 1 << 30);
        assert_eq!(h.cluster_bits, 16);
        let mut v2 = qcow2_v3(4096);
        v2[4..8].copy_from_slice(&2u32.to_be_bytes());
        v2.truncate(72);
        assert_eq!(Qcow2Header::parse(&v2).unwrap().version, 2);
    }

    #[test]
    fn qcow2_escapes_are_refused() {
        let mut backing = qcow2_v3(4096);
        backing[8..16].copy_from_slice(&0x200u64.to_be_bytes());
        assert_eq!(Qcow2Header::parse(&backing), Err(Qcow2Error::BackingFile));

        let mut data_file = qcow2_v3(4096);
        data_file[72..80].copy_from_slice(&INCOMPAT_DATA_FILE.to_be_bytes());
        assert_eq!(
            Qcow2Header::parse(&data_file),
            Err(Qcow2Error::ExternalDataFile)
        );

        let mut corrupt = qcow2_v3(4096);
        corrupt[72..80].copy_from_slice(&INCOMPAT_CORRUPT.to_be_bytes());
        assert_eq!(Qcow2Header::parse(&corrupt), Err(Qcow2Error::Corrupt));

        let mut future = qcow2_v3(4096);
        future[72..80].copy_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(
            Qcow2Header::parse(&future),
            Err(Qcow2Error::UnknownFeatures(1 << 40))
        );

        let mut encrypted = qcow2_v3(4096);
        encrypted[32..36].copy_from_slice(&2u32.to_be_bytes());
        assert_eq!(Qcow2Header::parse(&encrypted), Err(Qcow2Error::Encrypted));
    }

    #[test]
    fn malformed_qcow2_headers_are_refused() {
        assert_eq!(
            Qcow2Header::parse(b"QFI"),
            Err(Qcow2Error::Truncated { len: 3 })
        );
        assert_eq!(Qcow2Header::parse(b"RIFF...."), Err(Qcow2Error::BadMagic));
        let mut v9 = qcow2_v3(4096);
        v9[4..8].copy_from_slice(&9u32.to_be_bytes());
        assert_eq!(
            Qcow2Header::parse(&v9),
            Err(Qcow2Error::UnsupportedVersion(9))
        );
        let short = &qcow2_v3(4096)[..90];
        assert_eq!(
            Qcow2Header::parse(short),
            Err(Qcow2Error::Truncated { len: 90 })
        );
    }
}
