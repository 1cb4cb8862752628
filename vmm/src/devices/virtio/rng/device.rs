//! The virtio-rng device: no config space, no device features beyond the ring's.

use std::fs::File;
use std::sync::Arc;

use serde::Serialize;
use vmm_sys_util::eventfd::EventFd;

use super::request::MAX_REQUEST_BYTES;
use super::QUEUE_SIZE;
use crate::devices::virtio::activation::{ActiveQueues, LoopRegistrations};
use crate::devices::virtio::{
    ActivateError, GuestMemory, IrqTrigger, Queue, VirtioDevice, TYPE_RNG, VIRTIO_F_RING_EVENT_IDX,
    VIRTIO_F_VERSION_1,
};

/// Where entropy comes from: the kernel's CSPRNG, which never blocks once seeded.
const ENTROPY_SOURCE: &str = "/dev/urandom";

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

/// A virtio-rng device, shared as `Arc<Mutex<Rng>>` between the transport and the event
/// loop (see [`crate::devices::virtio::activation`]).
pub struct Rng {
    pub(super) source: File,
    acked_features: u64,
    pub(super) active: Option<ActiveQueues>,
    pub(super) activate_evt: EventFd,
    pub(super) registrations: LoopRegistrations,
    pub(super) scratch: Vec<u8>,
    pub(super) metrics: RngMetrics,
}

impl Rng {
    pub fn new() -> Result<Rng, RngError> {
        Ok(Rng {
            source: File::open(ENTROPY_SOURCE).map_err(RngError::Open)?,
            acked_features: 0,
            active: None,
            activate_evt: EventFd::new(libc::EFD_NONBLOCK).map_err(RngError::EventFd)?,
            registrations: LoopRegistrations::default(),
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

    fn avail_features(&self) -> u64 {
        1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_F_RING_EVENT_IDX
    }

    fn set_acked_features(&mut self, acked: u64) {
        self.acked_features = acked & self.avail_features();
    }

    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        // virtio 1.2 §5.4.4: no device configuration.
        data.fill(0);
    }

    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}

    fn activate(
        &mut self,
        mem: GuestMemory,
        queues: Vec<Queue>,
        queue_evts: Vec<Arc<EventFd>>,
        interrupt: Arc<IrqTrigger>,
    ) -> Result<(), ActivateError> {
        let active = ActiveQueues::new(mem, queues, queue_evts, interrupt, 1)?;
        self.activate_evt
            .write(1)
            .map_err(ActivateError::EventRegistration)?;
        self.active = Some(active);
        Ok(())
    }

    fn reset(&mut self) -> bool {
        self.active = None;
        self.acked_features = 0;
        if let Err(e) = self.activate_evt.write(1) {
            tracing::error!("virtio-rng: cannot tell the event loop about a reset: {e}");
        }
        true
    }

    fn is_activated(&self) -> bool {
        self.active.is_some()
    }
}
