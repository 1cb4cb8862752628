//! virtio-blk (virtio 1.2 §5.2) over a raw image file: one request queue, requests IN,
//! OUT, FLUSH and GET_ID, served on the device event loop with positional file I/O.

mod device;
mod disk;
mod event_handler;
pub mod request;

pub use device::{Block, BlockConfig, BlockError, BlockMetrics};
pub use disk::DiskImage;

/// virtio 1.2 §5.2.6: sector size of `sector` and capacity, independent of `blk_size`.
pub const SECTOR_SIZE: u64 = 512;
/// Size of the single request queue.
pub const QUEUE_SIZE: u16 = 256;
/// virtio 1.2 §5.2.4 `seg_max`: data descriptors per request that we offer.
pub const SEG_MAX: u32 = 126;
/// virtio 1.2 §5.2.4 `size_max`: largest data descriptor we offer.
pub const SIZE_MAX: u32 = 128 << 10;
/// virtio 1.2 §5.2.6.1: the serial number GET_ID returns is at most 20 bytes.
pub const ID_BYTES: usize = 20;
