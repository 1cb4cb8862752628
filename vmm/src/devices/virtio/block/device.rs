//! The virtio-blk device: configuration, offered features, config space (virtio 1.2 §5.2.3,
//! §5.2.4) and activation.

use std::path::PathBuf;

use serde::Serialize;
use virtio_bindings::virtio_blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO, VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_F_SIZE_MAX,
};

use super::disk::DiskImage;
use super::{ID_BYTES, QUEUE_SIZE, SECTOR_SIZE, SEG_MAX, SIZE_MAX};
use crate::config::RateLimiterConfig;
use crate::devices::virtio::rate_limiter::RateLimiter;
use crate::devices::virtio::{
    DeviceMetrics, VirtioDevice, VirtioState, TYPE_BLOCK, VIRTIO_F_INDIRECT_DESC,
    VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_VERSION_1,
};

/// Bounce buffer between guest memory and the image file; requests move in chunks of it.
const SCRATCH_BYTES: usize = 128 << 10;
/// virtio 1.2 §5.2.4: capacity, size_max, seg_max, geometry, blk_size.
const CONFIG_LEN: usize = 24;
/// Names the device in logs.
pub(super) const DEVICE: &str = "virtio-blk";

/// How the builder describes a drive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockConfig {
    /// Drive id; also the serial number VIRTIO_BLK_T_GET_ID returns (at most 20 bytes).
    pub id: String,
    pub path: PathBuf,
    pub read_only: bool,
    /// Offer VIRTIO_BLK_F_FLUSH and make FLUSH requests fdatasync the file. Without it
    /// the guest assumes a write-through disk and writes sit in the host page cache.
    pub flush: bool,
    /// Limits on the guest's requests: data bytes and requests.
    pub rate_limiter: Option<RateLimiterConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum BlockError {
    #[error("drive id {id:?} is {len} bytes; virtio-blk serials are at most {ID_BYTES}")]
    IdTooLong { id: String, len: usize },
    #[error("cannot open disk image {path}: {source}", path = path.display())]
    Open {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot find the size of disk image {path}: {source}", path = path.display())]
    Size {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the device's activate eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("cannot create the rate limiter's timerfd: {0}")]
    Timer(std::io::Error),
}

/// Counters of one drive. Errors are counted by kind; each kind is logged once.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct BlockMetrics {
    pub read_requests: u64,
    pub write_requests: u64,
    pub flush_requests: u64,
    pub get_id_requests: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    /// Requests of a type we do not implement (answered VIRTIO_BLK_S_UNSUPP).
    pub unsupported_requests: u64,
    /// Malformed chains answered with VIRTIO_BLK_S_IOERR.
    pub malformed_requests: u64,
    /// Malformed chains without a usable status byte, returned with nothing written.
    pub malformed_without_status: u64,
    /// Sector ranges beyond the disk.
    pub out_of_range_requests: u64,
    /// Writes to a read-only drive.
    pub read_only_writes: u64,
    /// Host I/O errors (read, write, fdatasync).
    pub io_errors: u64,
    /// Guest memory that became unreachable mid-request, unusable rings, failed interrupts.
    pub queue_errors: u64,
    /// Times the request queue was parked to wait for the rate limiter.
    pub rate_limited: u64,
}

impl DeviceMetrics for BlockMetrics {
    fn queue_errors(&mut self) -> &mut u64 {
        &mut self.queue_errors
    }
}

/// A virtio-blk device. Shared between the transport (vCPU threads) and the device event
/// loop as `Arc<Mutex<Block>>`; see [`crate::devices::virtio::activation`] for who does what.
pub struct Block {
    pub(super) id: String,
    pub(super) serial: [u8; ID_BYTES],
    pub(super) disk: DiskImage,
    pub(super) flush: bool,
    pub(super) virtio: VirtioState,
    pub(super) scratch: Vec<u8>,
    pub(super) limiter: RateLimiter,
    pub(super) metrics: BlockMetrics,
}

impl Block {
    pub fn new(cfg: BlockConfig) -> Result<Block, BlockError> {
        if cfg.id.len() > ID_BYTES {
            return Err(BlockError::IdTooLong {
                len: cfg.id.len(),
                id: cfg.id,
            });
        }
        let mut serial = [0u8; ID_BYTES];
        serial[..cfg.id.len()].copy_from_slice(cfg.id.as_bytes());
        let disk = DiskImage::open(&cfg.path, cfg.read_only)?;

        let mut avail_features = 1 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_F_RING_EVENT_IDX
            | 1 << VIRTIO_F_INDIRECT_DESC
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_SIZE_MAX
            | 1 << VIRTIO_BLK_F_BLK_SIZE;
        if cfg.read_only {
            avail_features |= 1 << VIRTIO_BLK_F_RO;
        }
        if cfg.flush {
            avail_features |= 1 << VIRTIO_BLK_F_FLUSH;
        }

        let mut config = [0u8; CONFIG_LEN];
        config[0..8].copy_from_slice(&disk.capacity_sectors().to_le_bytes());
        config[8..12].copy_from_slice(&SIZE_MAX.to_le_bytes());
        config[12..16].copy_from_slice(&SEG_MAX.to_le_bytes());
        // Geometry (16..20) stays zero: not offered.
        config[20..24].copy_from_slice(&(SECTOR_SIZE as u32).to_le_bytes());

        Ok(Block {
            id: cfg.id,
            serial,
            disk,
            flush: cfg.flush,
            virtio: VirtioState::new(DEVICE, avail_features, config.to_vec())
                .map_err(BlockError::EventFd)?,
            scratch: vec![0; SCRATCH_BYTES],
            limiter: RateLimiter::new(DEVICE, cfg.rate_limiter.as_ref())
                .map_err(BlockError::Timer)?,
            metrics: BlockMetrics::default(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn capacity_sectors(&self) -> u64 {
        self.disk.capacity_sectors()
    }

    pub fn metrics(&self) -> BlockMetrics {
        self.metrics.clone()
    }

    pub fn acked_features(&self) -> u64 {
        self.virtio.acked_features()
    }

    /// Replaces the rate limiter's buckets that `update` names, then has the event loop look
    /// at the queue again, so requests parked under the old limits are served under the
    /// new ones. Called on the API thread: it only writes an eventfd.
    pub fn update_rate_limiter(&mut self, update: &RateLimiterConfig) -> std::io::Result<()> {
        self.limiter.update(update);
        self.virtio.kick(0)
    }
}

impl VirtioDevice for Block {
    fn device_type(&self) -> u32 {
        TYPE_BLOCK
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn virtio(&self) -> &VirtioState {
        &self.virtio
    }

    fn virtio_mut(&mut self) -> &mut VirtioState {
        &mut self.virtio
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // Every field we expose is read-only (writeback is only writable with CONFIG_WCE).
    }
}
