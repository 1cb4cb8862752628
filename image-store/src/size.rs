//! Sizes that come from API requests: Cinder gives volume sizes in GiB as JSON integers, which
//! may be zero or negative; everything below this module works in bytes that are known good.

/// Bytes per sector of the virtio-blk device the monitor exposes; a volume that is not a whole
/// number of sectors would lose its tail in the guest.
pub const SECTOR_SIZE: u64 = 512;

/// One GiB, the unit of Cinder's `size`.
pub const GIB: u64 = 1 << 30;

/// Why a requested size is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SizeError {
    #[error("{what} size must be greater than zero")]
    Zero { what: &'static str },
    #[error("{what} size {value} is negative; give a positive number of GiB")]
    Negative { what: &'static str, value: i64 },
    #[error("{what} size {gib} GiB does not fit in 64 bits of bytes")]
    Overflow { what: &'static str, gib: i64 },
    #[error("{what} size {size} bytes is above this host's limit of {max} bytes")]
    TooLarge {
        what: &'static str,
        size: u64,
        max: u64,
    },
    #[error(
        "{what} size {size} bytes is not a multiple of {SECTOR_SIZE}-byte sectors; \
         round it up to {rounded}"
    )]
    NotSectorMultiple {
        what: &'static str,
        size: u64,
        rounded: u64,
    },
}

/// Converts a Cinder-style GiB count into bytes, refusing zero, negative and overflowing values.
pub fn bytes_from_gib(what: &'static str, gib: i64) -> Result<u64, SizeError> {
    if gib == 0 {
        return Err(SizeError::Zero { what });
    }
    let positive = u64::try_from(gib).map_err(|_| SizeError::Negative { what, value: gib })?;
    positive
        .checked_mul(GIB)
        .ok_or(SizeError::Overflow { what, gib })
}

/// Checks a size in bytes for a disk the monitor will read: non-zero, whole sectors, at most
/// `max`.
pub fn check_disk_size(what: &'static str, size: u64, max: u64) -> Result<u64, SizeError> {
    if size == 0 {
        return Err(SizeError::Zero { what });
    }
    if size > max {
        return Err(SizeError::TooLarge { what, size, max });
    }
    if size % SECTOR_SIZE != 0 {
        return Err(SizeError::NotSectorMultiple {
            what,
            size,
            rounded: size.div_ceil(SECTOR_SIZE).saturating_mul(SECTOR_SIZE),
        });
    }
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gib_conversion_refuses_zero_negative_and_overflow() {
        assert_eq!(bytes_from_gib("volume", 1), Ok(GIB));
        assert_eq!(bytes_from_gib("volume", 10), Ok(10 * GIB));
        assert_eq!(
            bytes_from_gib("volume", 0),
            Err(SizeError::Zero { what: "volume" })
        );
        assert_eq!(
            bytes_from_gib("volume", -3),
            Err(SizeError::Negative {
                what: "volume",
                value: -3
            })
        );
        assert_eq!(
            bytes_from_gib("volume", i64::MAX),
            Err(SizeError::Overflow {
                what: "volume",
                gib: i64::MAX
            })
        );
    }

    #[test]
    fn disk_size_checks_limit_and_sectors() {
        assert_eq!(check_disk_size("volume", 4096, 1 << 20), Ok(4096));
        assert_eq!(check_disk_size("volume", 1 << 20, 1 << 20), Ok(1 << 20));
        assert!(matches!(
            check_disk_size("volume", 0, 1 << 20),
            Err(SizeError::Zero { .. })
        ));
        assert!(matches!(
            check_disk_size("volume", (1 << 20) + 512, 1 << 20),
            Err(SizeError::TooLarge { .. })
        ));
        assert_eq!(
            check_disk_size("volume", 1000, 1 << 20),
            Err(SizeError::NotSectorMultiple {
                what: "volume",
                size: 1000,
                rounded: 1024
            })
        );
    }
}
