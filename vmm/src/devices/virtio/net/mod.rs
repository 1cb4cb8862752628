//! virtio-net (virtio 1.2 §5.1) on a host tap: one receive and one transmit queue, the
//! 12-byte virtio-net header passed through to the tap (IFF_VNET_HDR) so checksum and
//! segmentation offloads work end to end.

mod device;
mod event_handler;
pub mod request;
pub mod tap;

pub use device::{Net, NetConfig, NetError, NetMetrics};
pub use tap::{Tap, TapError};

/// virtio 1.2 §5.1.6: `struct virtio_net_hdr` with `num_buffers` (always present with
/// VIRTIO_F_VERSION_1).
pub const VNET_HDR_LEN: usize = 12;
/// The largest frame either way, without the vnet header: a 64 KiB GSO packet plus an
/// Ethernet header with one VLAN tag.
pub const MAX_FRAME_LEN: usize = 65536 + 14 + 4;
/// Receive queue index (virtio 1.2 §5.1.2).
pub const RX_QUEUE: usize = 0;
/// Transmit queue index.
pub const TX_QUEUE: usize = 1;
/// Size of each queue.
pub const QUEUE_SIZE: u16 = 256;
