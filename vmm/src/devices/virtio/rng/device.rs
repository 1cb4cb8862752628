//! The virtio-rng device: no config space, no device features beyond the ring's.

use std::fs::File;
use std::path::Path;

use serde::Serialize;

use super::request::MAX_REQUEST_BYTES;
use super::QUEUE_SIZE;
use crate::devices::virtio::{
    DeviceMetrics, VirtioDevice, VirtioState, TYPE_RNG, VIRTIO_F_RING_EVENT_IDX, VIRTIO_F_VERSION_1,
};

/// Where entropy comes from: the kernel's CSPRNG, which never blocks once seeded.
const ENTROPY_SOURCE: &str = "/dev/urandom";
/// Names the device in logs.
pub(super) const DEVICE: &str = "virtio-rng";

#[derive(Debug, thiserror::Error)]
pub enum RngError {
    #[error("cannot open the entropy source {ENTROPY_SOURCE}: {0}")]
    Open(std::io::Error),
    #[error("cannot create the device's activate eventfd: {0}")]
    EventFd(std::io::Error),
}

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct RngMetrics {
    pub requests: u64,
    pub bytes: u64,
    /// Chains with a device-readable buffer, outside guest memory or too long; returned
    /// with nothing written.
    pub malformed_requests: u64,
    /// Reads of the entropy source that failed.
    pub entropy_errors: u64,
    pub queue_errors: u64,
}

impl DeviceMetrics for RngMetrics {
    fn queue_errors(&mut self) -> &mut u64 {
        &mut self.queue_errors
    }
}

/// A virtio-rng device, shared as `Arc<Mutex<Rng>>` between the transport and the event
/// loop (see [`crate::devices::virtio::activation`]).
pub struct Rng {
    pub(super) source: File,
    pub(super) virtio: VirtioState,
    pub(super) scratch: Vec<u8>,
    pub(super) metrics: RngMetrics,
}

impl Rng {
    pub fn new() -> Result<Rng, RngError> {
        Ok(Rng {
            source: crate::jail::files::open_read(Path::new(ENTROPY_SOURCE))
                .map_err(RngError::Open)?,
            // virtio 1.2 §5.4.4: no device configuration.
            virtio: VirtioState::new(
                DEVICE,
                1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_F_RING_EVENT_IDX,
                Vec::new(),
            )
            .map_err(RngError::EventFd)?,
            scratch: vec![0; MAX_REQUEST_BYTES as usize],
            metrics: RngMetrics::default(),
        })
    }

    pub fn metrics(&self) -> RngMetrics {
        self.metrics.clone()
    }
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        TYPE_RNG
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

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
}
