//! Virtio devices on the virtio-mmio transport (virtio 1.2 §4.2).
//!
//! Each device is a folder of the same shape: `device.rs` (features, config space,
//! activation), `request.rs` (descriptor chain → typed request; the only place guest memory
//! is interpreted), `event_handler.rs` (queue kicks and backend events), `mod.rs`. What
//! every device shares (features, config space, activation and the event-loop registrations
//! that follow it) is one [`VirtioState`] (`state.rs`) that each device embeds.
//! The transport in `mmio.rs` owns the register file and hands queues to a device on
//! DRIVER_OK. Queue kicks arrive on per-queue `EventFd`s (a KVM ioeventfd, or written by the
//! transport itself); the device signals the guest through an [`IrqTrigger`].
//!
//! Wiring one device (the builder's side):
//! ```text
//! let dev = Arc::new(Mutex::new(Block::new(cfg)?));          // or Net::new, Rng::new
//! event_manager.add_subscriber(dev.clone());                   // device event loop
//! let irq = Arc::new(IrqTrigger::new()?);                      // irq.irq_evt() -> KVM irqfd
//! let transport = MmioTransport::new(mem.clone(), dev.clone(), irq)?;
//! for (i, evt) in transport.queue_evts().iter().enumerate() {  // KVM ioeventfd, datamatch i
//!     vm.register_ioevent(evt, base + MMIO_QUEUE_NOTIFY_OFFSET, i as u32)?;
//! }
//! mmio_bus.insert(Arc::new(Mutex::new(transport)), base, MMIO_WINDOW_SIZE)?;
//! ```
//! Threading is described in [`activation`].

pub mod activation;
pub mod block;
pub mod descriptor;
mod guest_fault;
pub mod mmio;
pub mod net;
pub mod rate_limiter;
pub mod rng;
pub mod state;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

use vm_memory::GuestMemoryMmap;
use vmm_sys_util::eventfd::EventFd;

pub use state::{DeviceEvent, DeviceMetrics, VirtioState};
pub use virtio_queue::{Queue, QueueT};

use activation::ActiveQueues;

/// Guest memory as every device sees it.
pub type GuestMemory = GuestMemoryMmap;

/// virtio 1.2 §5: device ids.
pub const TYPE_NET: u32 = 1;
pub const TYPE_BLOCK: u32 = 2;
pub const TYPE_RNG: u32 = 4;

/// virtio 1.2 §6: VIRTIO_F_VERSION_1.
pub const VIRTIO_F_VERSION_1: u32 = 32;
/// virtio 1.2 §6: VIRTIO_F_RING_EVENT_IDX.
pub const VIRTIO_F_RING_EVENT_IDX: u32 = 29;

/// virtio 1.2 §6: VIRTIO_F_INDIRECT_DESC.
pub const VIRTIO_F_INDIRECT_DESC: u32 = 28;

/// virtio 1.2 §4.2.2: InterruptStatus bits.
pub const VIRTIO_MMIO_INT_VRING: u32 = 0x01;
pub const VIRTIO_MMIO_INT_CONFIG: u32 = 0x02;

/// Why a device could not be activated.
#[derive(Debug, thiserror::Error)]
pub enum ActivateError {
    #[error("the driver gave {got} queues, the device needs {expected}")]
    QueueCount { expected: usize, got: usize },
    #[error("queue {index} is not valid for guest memory (size, alignment or addresses)")]
    InvalidQueue { index: usize },
    #[error("cannot register the device's events: {0}")]
    EventRegistration(std::io::Error),
    #[error("device backend failed: {0}")]
    Backend(std::io::Error),
}

/// How a device interrupts the guest: an edge on its GSI through a KVM irqfd, plus the
/// InterruptStatus bits the driver reads and acknowledges through the transport.
#[derive(Debug)]
pub struct IrqTrigger {
    status: AtomicU32,
    irq_evt: EventFd,
}

impl IrqTrigger {
    pub fn new() -> std::io::Result<Self> {
        Ok(IrqTrigger {
            status: AtomicU32::new(0),
            irq_evt: EventFd::new(libc::EFD_NONBLOCK)?,
        })
    }

    /// The eventfd the builder registers as a KVM irqfd for this device's GSI.
    pub fn irq_evt(&self) -> &EventFd {
        &self.irq_evt
    }

    /// Sets `bits` in InterruptStatus and raises the interrupt line.
    pub fn trigger(&self, bits: u32) -> std::io::Result<()> {
        self.status.fetch_or(bits, Ordering::SeqCst);
        self.irq_evt.write(1)
    }

    /// InterruptStatus as the driver reads it.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }

    /// InterruptACK: clears the acknowledged bits.
    pub fn ack(&self, bits: u32) {
        self.status.fetch_and(!bits, Ordering::SeqCst);
    }

    /// InterruptStatus as a snapshot saved it, without raising the line: the interrupt the
    /// bits stand for is in the restored irqchip's state already.
    pub fn restore_status(&self, bits: u32) {
        self.status.store(bits, Ordering::SeqCst);
    }
}

/// A virtio device behind the mmio transport. Implementations live in one folder each and
/// embed a [`VirtioState`]; the default methods below are the bookkeeping every device
/// shares, so a device writes only its identity, its config writes and, where its backend
/// needs them, the two activation hooks.
pub trait VirtioDevice: Send {
    /// virtio 1.2 §5 device id.
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// The device's features, config space and activation.
    fn virtio(&self) -> &VirtioState;
    fn virtio_mut(&mut self) -> &mut VirtioState;

    /// Feature bits the device offers (VIRTIO_F_VERSION_1 included).
    fn avail_features(&self) -> u64 {
        self.virtio().avail_features()
    }
    /// Feature bits the driver accepted (a subset of `avail_features`, checked by the transport).
    fn set_acked_features(&mut self, acked: u64) {
        self.virtio_mut().set_acked_features(acked);
    }
    /// Reads device config space at `offset`; bytes outside the config space read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        read_config_bytes(self.virtio().config_space(), offset, data);
    }
    /// Writes device config space; writes to read-only fields are ignored.
    fn write_config(&mut self, offset: u64, data: &[u8]);
    /// Starts the device on DRIVER_OK with the queues the driver set up. `queue_evts[i]`
    /// is signalled whenever the driver notifies queue `i`. On failure the device stays
    /// inactive.
    fn activate(
        &mut self,
        mem: GuestMemory,
        queues: Vec<Queue>,
        queue_evts: Vec<Arc<EventFd>>,
        interrupt: Arc<IrqTrigger>,
    ) -> Result<(), ActivateError> {
        let expected = self.queue_max_sizes().len();
        let active = ActiveQueues::new(mem, queues, queue_evts, interrupt, expected)?;
        self.prepare_activation()?;
        self.virtio_mut().activate(active)?;
        self.activation_changed();
        Ok(())
    }
    /// Hook: readies the backend for the features the driver accepted, before the device
    /// becomes active; an error refuses activation.
    fn prepare_activation(&mut self) -> Result<(), ActivateError> {
        Ok(())
    }
    /// Hook: the device was just activated or reset (the event loop sees it next).
    fn activation_changed(&mut self) {}
    /// Device reset by the driver (status written 0). Returns false if the device cannot be
    /// reset, in which case the transport reports DEVICE_NEEDS_RESET.
    fn reset(&mut self) -> bool {
        self.virtio_mut().reset();
        self.activation_changed();
        true
    }
    /// Whether the device is activated.
    fn is_activated(&self) -> bool {
        self.virtio().is_activated()
    }
    /// Where the device is in each of its active queues (next available entry to take, next
    /// used entry to fill), for a snapshot; None while it is not active.
    fn queue_positions(&self) -> Option<Vec<(u16, u16)>> {
        self.virtio().active().map(|a| {
            a.queues
                .iter()
                .map(|q| (q.next_avail(), q.next_used()))
                .collect()
        })
    }
}

/// Copies the part of a device's config space at `offset` into `data`; bytes beyond the
/// config space read as zero (virtio 1.2 §4.2.2: the driver may read any width).
pub fn read_config_bytes(config: &[u8], offset: u64, data: &mut [u8]) {
    data.fill(0);
    let Ok(start) = usize::try_from(offset) else {
        return;
    };
    if let Some(avail) = config.get(start..) {
        let n = avail.len().min(data.len());
        data[..n].copy_from_slice(&avail[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_reads_are_clipped_and_zero_filled() {
        let cfg = [1u8, 2, 3, 4];
        let mut b = [0xffu8; 4];
        read_config_bytes(&cfg, 2, &mut b);
        assert_eq!(b, [3, 4, 0, 0]);
        read_config_bytes(&cfg, 4, &mut b);
        assert_eq!(b, [0; 4]);
        b = [0xff; 4];
        read_config_bytes(&cfg, u64::MAX, &mut b);
        assert_eq!(b, [0; 4]);
    }
}
