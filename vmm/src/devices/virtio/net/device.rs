//! The virtio-net device: offered features, config space (virtio 1.2 §5.1.3, §5.1.4),
//! the tap's offloads, activation.

use std::io::Read;
use std::path::Path;

use serde::Serialize;
use virtio_bindings::virtio_net::{
    VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM, VIRTIO_NET_F_GUEST_ECN, VIRTIO_NET_F_GUEST_TSO4,
    VIRTIO_NET_F_GUEST_TSO6, VIRTIO_NET_F_HOST_ECN, VIRTIO_NET_F_HOST_TSO4, VIRTIO_NET_F_HOST_TSO6,
    VIRTIO_NET_F_MAC, VIRTIO_NET_F_STATUS, VIRTIO_NET_S_LINK_UP,
};

use super::request::MAX_TX_LEN;
use super::tap::{Tap, TapError};
use super::{MAX_FRAME_LEN, QUEUE_SIZE, RX_QUEUE, TX_QUEUE, VNET_HDR_LEN};
use crate::config::RateLimiterConfig;
use crate::devices::virtio::rate_limiter::RateLimiter;
use crate::devices::virtio::{
    ActivateError, DeviceMetrics, VirtioDevice, VirtioState, TYPE_NET, VIRTIO_F_INDIRECT_DESC,
    VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_VERSION_1,
};

/// virtio 1.2 §5.1.4: mac[6], status (le16).
const CONFIG_LEN: usize = 8;
/// Names the device in logs.
pub(super) const DEVICE: &str = "virtio-net";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    pub id: String,
    /// A tap the host already created (persistent); it is attached to, never created.
    pub tap_name: String,
    /// The guest's MAC; a random locally administered one when None.
    pub mac: Option<[u8; 6]>,
    /// Limits on frames from the tap to the guest: bytes (without the vnet header) and frames.
    pub rx_rate_limiter: Option<RateLimiterConfig>,
    /// Limits on frames from the guest to the tap.
    pub tx_rate_limiter: Option<RateLimiterConfig>,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Tap(#[from] TapError),
    #[error("cannot generate a MAC address: {0}")]
    RandomMac(std::io::Error),
    #[error("cannot create the device's activate eventfd: {0}")]
    EventFd(std::io::Error),
    #[error("cannot create a rate limiter's timerfd: {0}")]
    Timer(std::io::Error),
}

/// Counters of one interface. Errors are counted by kind; each kind is logged once.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct NetMetrics {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub tx_frames: u64,
    pub tx_bytes: u64,
    /// Times reception paused because the guest had no receive buffer posted; the frame
    /// waits (in the tap's queue) until the driver adds buffers.
    pub rx_no_buffer_stalls: u64,
    /// Frames from the tap larger than the guest's receive buffer: dropped.
    pub rx_dropped_too_big: u64,
    /// Receive chains that were readable, outside guest memory or too small: returned empty.
    pub rx_malformed_buffers: u64,
    /// Errors reading the tap (reception stops until the device is reset).
    pub rx_tap_errors: u64,
    /// Transmit chains over 64 KiB + header: dropped.
    pub tx_dropped_oversize: u64,
    /// Other malformed transmit chains (writable, outside memory, too short): dropped.
    pub tx_malformed_chains: u64,
    /// Frames the tap refused or could not take: dropped.
    pub tx_tap_errors: u64,
    pub queue_errors: u64,
    /// Times reception paused to wait for the receive rate limiter.
    pub rx_rate_limited: u64,
    /// Times the transmit queue was parked to wait for the transmit rate limiter.
    pub tx_rate_limited: u64,
}

impl DeviceMetrics for NetMetrics {
    fn queue_errors(&mut self) -> &mut u64 {
        &mut self.queue_errors
    }
}

/// Where reception stands. Frames are read from the tap only while it is `Polling`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RxState {
    /// Not active: the tap is not registered with the event loop.
    Idle,
    /// The tap is registered for EPOLLIN.
    Polling,
    /// No receive buffer: the tap is unregistered until the driver kicks the receive queue.
    WaitingForBuffers,
    /// The tap failed; unregistered until the next activation.
    Failed,
    /// The receive rate limiter is empty: the tap is unregistered until it refills.
    Throttled,
}

/// A virtio-net device, shared as `Arc<Mutex<Net>>` between the transport and the event
/// loop (see [`crate::devices::virtio::activation`]).
pub struct Net {
    pub(super) id: String,
    pub(super) tap: Tap,
    mac: [u8; 6],
    pub(super) virtio: VirtioState,
    pub(super) rx_state: RxState,
    /// Set on activation/reset so the event loop re-arms reception.
    pub(super) rx_rearm: bool,
    /// A frame read from the tap that is waiting for a receive buffer.
    pub(super) rx_pending: Option<usize>,
    /// The pending frame's tokens are taken from the receive limiter already.
    pub(super) rx_pending_paid: bool,
    pub(super) rx_limiter: RateLimiter,
    pub(super) tx_limiter: RateLimiter,
    pub(super) rx_frame: Vec<u8>,
    pub(super) tx_frame: Vec<u8>,
    pub(super) metrics: NetMetrics,
}

impl Net {
    pub fn new(cfg: NetConfig) -> Result<Net, NetError> {
        let tap = Tap::open_named(&cfg.tap_name)?;
        let mac = match cfg.mac {
            Some(mac) => mac,
            None => random_mac()?,
        };
        let avail_features = 1 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_F_RING_EVENT_IDX
            | 1 << VIRTIO_F_INDIRECT_DESC
            | 1 << VIRTIO_NET_F_MAC
            | 1 << VIRTIO_NET_F_STATUS
            | 1 << VIRTIO_NET_F_CSUM
            | 1 << VIRTIO_NET_F_GUEST_CSUM
            | 1 << VIRTIO_NET_F_GUEST_TSO4
            | 1 << VIRTIO_NET_F_GUEST_TSO6
            | 1 << VIRTIO_NET_F_GUEST_ECN
            | 1 << VIRTIO_NET_F_HOST_TSO4
            | 1 << VIRTIO_NET_F_HOST_TSO6
            | 1 << VIRTIO_NET_F_HOST_ECN;
        let mut config = [0u8; CONFIG_LEN];
        config[..6].copy_from_slice(&mac);
        config[6..8].copy_from_slice(&(VIRTIO_NET_S_LINK_UP as u16).to_le_bytes());
        Ok(Net {
            id: cfg.id,
            tap,
            mac,
            virtio: VirtioState::new(DEVICE, avail_features, config.to_vec())
                .map_err(NetError::EventFd)?,
            rx_state: RxState::Idle,
            rx_rearm: false,
            rx_pending: None,
            rx_pending_paid: false,
            rx_limiter: RateLimiter::new(DEVICE, cfg.rx_rate_limiter.as_ref())
                .map_err(NetError::Timer)?,
            tx_limiter: RateLimiter::new(DEVICE, cfg.tx_rate_limiter.as_ref())
                .map_err(NetError::Timer)?,
            rx_frame: vec![0; VNET_HDR_LEN + MAX_FRAME_LEN],
            tx_frame: vec![0; MAX_TX_LEN],
            metrics: NetMetrics::default(),
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    pub fn tap_name(&self) -> &str {
        self.tap.name()
    }

    pub fn metrics(&self) -> NetMetrics {
        self.metrics.clone()
    }

    pub fn acked_features(&self) -> u64 {
        self.virtio.acked_features()
    }

    /// Replaces the rate limiters' buckets the updates name, then has the event loop look
    /// at both queues again, so traffic parked under the old limits moves under the new
    /// ones. Called on the API thread: it only writes eventfds.
    pub fn update_rate_limiters(
        &mut self,
        rx: Option<&RateLimiterConfig>,
        tx: Option<&RateLimiterConfig>,
    ) -> std::io::Result<()> {
        if let Some(rx) = rx {
            self.rx_limiter.update(rx);
            self.virtio.kick(RX_QUEUE)?;
        }
        if let Some(tx) = tx {
            self.tx_limiter.update(tx);
            self.virtio.kick(TX_QUEUE)?;
        }
        Ok(())
    }

    /// TUN_F_* flags for what the guest accepts on receive (virtio 1.2 §5.1.6.4.1): the
    /// GUEST_* features map one to one; TSO needs checksum offload in both worlds.
    pub(super) fn tap_offloads(acked: u64) -> libc::c_uint {
        let has = |bit: u32| acked & (1 << bit) != 0;
        if !has(VIRTIO_NET_F_GUEST_CSUM) {
            return 0;
        }
        let mut flags = libc::TUN_F_CSUM;
        if has(VIRTIO_NET_F_GUEST_TSO4) {
            flags |= libc::TUN_F_TSO4;
        }
        if has(VIRTIO_NET_F_GUEST_TSO6) {
            flags |= libc::TUN_F_TSO6;
        }
        if has(VIRTIO_NET_F_GUEST_ECN) && flags & (libc::TUN_F_TSO4 | libc::TUN_F_TSO6) != 0 {
            flags |= libc::TUN_F_TSO_ECN;
        }
        flags
    }
}

/// A random unicast, locally administered MAC (IEEE 802: bit 0 of the first octet clear,
/// bit 1 set).
fn random_mac() -> Result<[u8; 6], NetError> {
    let mut mac = [0u8; 6];
    crate::jail::files::open_read(Path::new("/dev/urandom"))
        .and_then(|mut f| f.read_exact(&mut mac))
        .map_err(NetError::RandomMac)?;
    mac[0] = (mac[0] & 0xfc) | 0x02;
    Ok(mac)
}

impl VirtioDevice for Net {
    fn device_type(&self) -> u32 {
        TYPE_NET
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
    }

    fn virtio(&self) -> &VirtioState {
        &self.virtio
    }

    fn virtio_mut(&mut self) -> &mut VirtioState {
        &mut self.virtio
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {
        // virtio 1.2 §5.1.4: with VERSION_1 the mac is read-only (changes go through the
        // control queue, which we do not offer).
    }

    /// virtio 1.2 §5.1.6.4.1: the tap hands the guest only offloaded frames it accepted.
    fn prepare_activation(&mut self) -> Result<(), ActivateError> {
        self.tap
            .set_offload(Net::tap_offloads(self.virtio.acked_features()))
            .map_err(|e| ActivateError::Backend(std::io::Error::other(e)))
    }

    /// Reception starts afresh: the event loop re-arms the tap, and a frame held for the
    /// old queues is dropped.
    fn activation_changed(&mut self) {
        self.rx_rearm = true;
        self.rx_pending = None;
        self.rx_pending_paid = false;
    }
}
