//! virtio-mmio transport (virtio 1.2 §4.2): the register file a guest driver programs, the
//! device status state machine, and the hand-over of queues to the device on DRIVER_OK.
//!
//! Every register access comes straight from the guest, so nothing here may panic, and
//! queue configuration is frozen once a queue is ready or the driver has set DRIVER_OK:
//! re-programming a live queue's addresses is how guests escaped other monitors.

use std::sync::{Arc, Mutex, MutexGuard};

use serde::{Deserialize, Serialize};
use virtio_bindings::virtio_config::{
    VIRTIO_CONFIG_S_ACKNOWLEDGE, VIRTIO_CONFIG_S_DRIVER, VIRTIO_CONFIG_S_DRIVER_OK,
    VIRTIO_CONFIG_S_FAILED, VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET,
};
use vm_memory::{GuestAddress, GuestMemory as _, Permissions};
use vmm_sys_util::eventfd::EventFd;

use super::guest_fault;
use super::{
    GuestMemory, IrqTrigger, Queue, QueueT, VirtioDevice, VIRTIO_F_RING_EVENT_IDX,
    VIRTIO_F_VERSION_1, VIRTIO_MMIO_INT_CONFIG,
};
use crate::devices::bus::BusDevice;

/// virtio 1.2 §4.2.2: "virt" in little endian.
pub const MMIO_MAGIC_VALUE: u32 = 0x7472_6976;
/// virtio 1.2 §4.2.2: version 2 is the non-legacy interface.
pub const MMIO_VERSION: u32 = 2;
/// VendorID the driver reads; any value is allowed. "OUTP" in little endian.
pub const MMIO_VENDOR_ID: u32 = 0x5054_554f;
/// Offset of the device-specific config space.
pub const MMIO_CONFIG_OFFSET: u64 = 0x100;
/// Size of the whole register window; the builder maps each device at a multiple of this.
pub const MMIO_WINDOW_SIZE: u64 = 0x1000;
/// Offset of QueueNotify, where the builder registers each queue's ioeventfd (datamatch =
/// queue index).
pub const MMIO_QUEUE_NOTIFY_OFFSET: u64 = 0x50;

// virtio 1.2 §4.2.2 register offsets.
const MAGIC_VALUE: u64 = 0x000;
const VERSION: u64 = 0x004;
const DEVICE_ID: u64 = 0x008;
const VENDOR_ID: u64 = 0x00c;
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM_MAX: u64 = 0x034;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = MMIO_QUEUE_NOTIFY_OFFSET;
const INTERRUPT_STATUS: u64 = 0x060;
const INTERRUPT_ACK: u64 = 0x064;
const STATUS: u64 = 0x070;
const QUEUE_DESC_LOW: u64 = 0x080;
const QUEUE_DESC_HIGH: u64 = 0x084;
const QUEUE_DRIVER_LOW: u64 = 0x090;
const QUEUE_DRIVER_HIGH: u64 = 0x094;
const QUEUE_DEVICE_LOW: u64 = 0x0a0;
const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
const SHM_LEN_LOW: u64 = 0x0b0;
const SHM_LEN_HIGH: u64 = 0x0b4;
const SHM_BASE_LOW: u64 = 0x0b8;
const SHM_BASE_HIGH: u64 = 0x0bc;
const CONFIG_GENERATION: u64 = 0x0fc;

const ACK: u32 = VIRTIO_CONFIG_S_ACKNOWLEDGE;
const DRIVER: u32 = VIRTIO_CONFIG_S_DRIVER;
const FEATURES_OK: u32 = VIRTIO_CONFIG_S_FEATURES_OK;
const DRIVER_OK: u32 = VIRTIO_CONFIG_S_DRIVER_OK;
const FAILED: u32 = VIRTIO_CONFIG_S_FAILED;
const NEEDS_RESET: u32 = VIRTIO_CONFIG_S_NEEDS_RESET;

/// Counts of driver behaviour the transport refused. None of them is logged more than once.
#[derive(Debug, Default, Clone, Serialize)]
pub struct MmioMetrics {
    /// Accesses to control registers that were not 32 bits wide and aligned, or to
    /// read-only / write-only registers in the wrong direction, or unknown offsets.
    pub bad_accesses: u64,
    /// Writes to queue configuration refused (queue ready, DRIVER_OK set, before FEATURES_OK,
    /// or an invalid value).
    pub refused_queue_writes: u64,
    /// Status writes that were not a permitted step of virtio 1.2 §3.1.1.
    pub refused_status_writes: u64,
    /// FEATURES_OK refused: features acked that were not offered, or no VIRTIO_F_VERSION_1.
    pub refused_features: u64,
    /// DRIVER_OK with an invalid queue, or the device failed to activate.
    pub activation_failures: u64,
    /// Errors writing a queue's notify eventfd or raising the config interrupt.
    pub eventfd_errors: u64,
}

/// One queue as a snapshot keeps it (virtio-queue's `QueueState`, which has no serde).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSnapshot {
    pub max_size: u16,
    pub size: u16,
    pub ready: bool,
    pub desc_table: u64,
    pub avail_ring: u64,
    pub used_ring: u64,
    /// The device's positions in the rings (the transport's own copy never moves).
    pub next_avail: u16,
    pub next_used: u16,
}

/// The transport's registers and queues as a snapshot keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MmioTransportState {
    pub device_type: u32,
    pub device_features_sel: u32,
    pub driver_features_sel: u32,
    pub acked_features: u64,
    pub acked_unknown_features: bool,
    pub queue_sel: u32,
    pub status: u32,
    pub config_generation: u32,
    pub interrupt_status: u32,
    pub queues: Vec<QueueSnapshot>,
}

#[derive(Debug, thiserror::Error)]
pub enum TransportStateError {
    #[error(
        "the snapshot has a virtio device of type {saved} with {saved_queues} queues where \
         this configuration has type {configured} with {configured_queues}: the drives, \
         interfaces and entropy device must be configured as when the snapshot was taken"
    )]
    DeviceMismatch {
        saved: u32,
        saved_queues: usize,
        configured: u32,
        configured_queues: usize,
    },
    #[error("the snapshot's queue {index} of virtio device type {device_type} is invalid: {why}")]
    InvalidQueue {
        device_type: u32,
        index: usize,
        why: String,
    },
    #[error(
        "the snapshot's virtio device type {device_type} has status {status:#x}, which no \
         driver can reach (virtio 1.2 §3.1.1)"
    )]
    InvalidStatus { device_type: u32, status: u32 },
    #[error(
        "the snapshot's virtio device type {device_type} accepted features {acked:#x}, which \
         the device does not offer ({offered:#x}) or which lack VIRTIO_F_VERSION_1"
    )]
    InvalidFeatures {
        device_type: u32,
        acked: u64,
        offered: u64,
    },
    #[error("virtio device type {device_type} cannot be activated again: {source}")]
    Activation {
        device_type: u32,
        source: super::ActivateError,
    },
    #[error("cannot create the transport: {0}")]
    Create(std::io::Error),
}

/// The virtio-mmio register file of one device.
pub struct MmioTransport {
    mem: GuestMemory,
    device: Arc<Mutex<dyn VirtioDevice>>,
    interrupt: Arc<IrqTrigger>,
    device_type: u32,
    queues: Vec<Queue>,
    queue_evts: Vec<Arc<EventFd>>,
    device_features_sel: u32,
    driver_features_sel: u32,
    acked_features: u64,
    /// The driver acked a bit beyond the 64 we can offer; FEATURES_OK will be refused.
    acked_unknown_features: bool,
    queue_sel: u32,
    status: u32,
    config_generation: u32,
    metrics: MmioMetrics,
}

impl MmioTransport {
    /// Builds the transport for `device`, with one queue (and one notify eventfd) per entry
    /// of `device.queue_max_sizes()`.
    pub fn new(
        mem: GuestMemory,
        device: Arc<Mutex<dyn VirtioDevice>>,
        interrupt: Arc<IrqTrigger>,
    ) -> std::io::Result<Self> {
        let (device_type, max_sizes) = {
            let dev = lock(&device);
            (dev.device_type(), dev.queue_max_sizes().to_vec())
        };
        let mut queues = Vec::with_capacity(max_sizes.len());
        let mut queue_evts = Vec::with_capacity(max_sizes.len());
        for (index, max) in max_sizes.into_iter().enumerate() {
            let queue = Queue::new(max).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("queue {index}: maximum size {max} is not a power of two ≤ 32768: {e}"),
                )
            })?;
            queues.push(queue);
            queue_evts.push(Arc::new(EventFd::new(libc::EFD_NONBLOCK)?));
        }
        Ok(MmioTransport {
            mem,
            device,
            interrupt,
            device_type,
            queues,
            queue_evts,
            device_features_sel: 0,
            driver_features_sel: 0,
            acked_features: 0,
            acked_unknown_features: false,
            queue_sel: 0,
            status: 0,
            config_generation: 0,
            metrics: MmioMetrics::default(),
        })
    }

    /// One eventfd per queue, signalled when the driver notifies that queue. The builder
    /// registers `queue_evts()[i]` as a KVM ioeventfd at base + [`MMIO_QUEUE_NOTIFY_OFFSET`]
    /// with datamatch `i`; a notify that reaches [`BusDevice::write`] anyway is forwarded.
    pub fn queue_evts(&self) -> &[Arc<EventFd>] {
        &self.queue_evts
    }

    /// The device's interrupt (its eventfd is the KVM irqfd of the device's GSI).
    pub fn interrupt(&self) -> &Arc<IrqTrigger> {
        &self.interrupt
    }

    /// The device status byte (virtio 1.2 §2.1) as the driver last left it.
    pub fn status(&self) -> u32 {
        self.status
    }

    pub fn metrics(&self) -> MmioMetrics {
        self.metrics.clone()
    }

    /// The transport's state, with the device's positions in its rings while it is active.
    /// The guest must be paused and the device quiet (its lock held by the caller's order of
    /// saving, or its event loop stopped), or the positions may move after they are read.
    pub fn state(&self) -> MmioTransportState {
        let positions = lock(&self.device).queue_positions();
        let queues = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| {
                let (next_avail, next_used) = positions
                    .as_ref()
                    .and_then(|p| p.get(i).copied())
                    .unwrap_or((q.next_avail(), q.next_used()));
                QueueSnapshot {
                    max_size: q.max_size(),
                    size: q.size(),
                    ready: q.ready(),
                    desc_table: q.desc_table(),
                    avail_ring: q.avail_ring(),
                    used_ring: q.used_ring(),
                    next_avail,
                    next_used,
                }
            })
            .collect();
        MmioTransportState {
            device_type: self.device_type,
            device_features_sel: self.device_features_sel,
            driver_features_sel: self.driver_features_sel,
            acked_features: self.acked_features,
            acked_unknown_features: self.acked_unknown_features,
            queue_sel: self.queue_sel,
            status: self.status,
            config_generation: self.config_generation,
            interrupt_status: self.interrupt.status(),
            queues,
        }
    }

    /// The transport for `device` as `state` saved it. A device the driver had started
    /// (DRIVER_OK, no NEEDS_RESET) is activated again with its queues where it left them,
    /// after the same checks as at DRIVER_OK: a snapshot is input, not trusted state.
    pub fn restore(
        mem: GuestMemory,
        device: Arc<Mutex<dyn VirtioDevice>>,
        interrupt: Arc<IrqTrigger>,
        state: &MmioTransportState,
    ) -> Result<Self, TransportStateError> {
        let mut t =
            MmioTransport::new(mem, device, interrupt).map_err(TransportStateError::Create)?;
        let device_type = t.device_type;
        if state.device_type != device_type || state.queues.len() != t.queues.len() {
            return Err(TransportStateError::DeviceMismatch {
                saved: state.device_type,
                saved_queues: state.queues.len(),
                configured: device_type,
                configured_queues: t.queues.len(),
            });
        }
        let event_idx = state.acked_features & (1 << VIRTIO_F_RING_EVENT_IDX) != 0;
        let invalid = |index, why: String| TransportStateError::InvalidQueue {
            device_type,
            index,
            why,
        };
        for (index, (queue, saved)) in t.queues.iter_mut().zip(&state.queues).enumerate() {
            if saved.max_size != queue.max_size() {
                return Err(invalid(
                    index,
                    format!(
                        "maximum size {} where the device has {}",
                        saved.max_size,
                        queue.max_size()
                    ),
                ));
            }
            *queue = Queue::try_from(virtio_queue::QueueState {
                max_size: saved.max_size,
                next_avail: saved.next_avail,
                next_used: saved.next_used,
                event_idx_enabled: event_idx,
                size: saved.size,
                ready: saved.ready,
                desc_table: saved.desc_table,
                avail_ring: saved.avail_ring,
                used_ring: saved.used_ring,
            })
            .map_err(|e| invalid(index, e.to_string()))?;
        }
        // The status must be a step of the handshake a driver can reach, and features past
        // FEATURES_OK what negotiate_features would have taken.
        let steps = [
            0,
            ACK,
            ACK | DRIVER,
            ACK | DRIVER | FEATURES_OK,
            ACK | DRIVER | FEATURES_OK | DRIVER_OK,
        ];
        if !steps.contains(&(state.status & !(FAILED | NEEDS_RESET))) {
            return Err(TransportStateError::InvalidStatus {
                device_type,
                status: state.status,
            });
        }
        let offered = lock(&t.device).avail_features();
        if state.status & FEATURES_OK != 0
            && (state.acked_unknown_features
                || state.acked_features & !offered != 0
                || state.acked_features & (1 << VIRTIO_F_VERSION_1) == 0)
        {
            return Err(TransportStateError::InvalidFeatures {
                device_type,
                acked: state.acked_features,
                offered,
            });
        }
        t.device_features_sel = state.device_features_sel;
        t.driver_features_sel = state.driver_features_sel;
        t.acked_features = state.acked_features;
        t.acked_unknown_features = state.acked_unknown_features;
        t.queue_sel = state.queue_sel;
        t.config_generation = state.config_generation;
        t.interrupt.restore_status(state.interrupt_status);
        if state.status & FEATURES_OK != 0 {
            lock(&t.device).set_acked_features(state.acked_features);
        }
        if state.status & (DRIVER_OK | NEEDS_RESET | FAILED) == DRIVER_OK {
            let mut handed = Vec::with_capacity(t.queues.len());
            for (index, queue) in t.queues.iter().enumerate() {
                if queue.ready() && !queue_fits_memory(queue, &t.mem) {
                    return Err(invalid(index, "outside guest memory".into()));
                }
                handed.push(
                    Queue::try_from(queue.state()).map_err(|e| invalid(index, e.to_string()))?,
                );
            }
            lock(&t.device)
                .activate(
                    t.mem.clone(),
                    handed,
                    t.queue_evts.clone(),
                    t.interrupt.clone(),
                )
                .map_err(|source| TransportStateError::Activation {
                    device_type,
                    source,
                })?;
        }
        t.status = state.status;
        Ok(t)
    }

    fn bad_access(&mut self, what: &str, offset: u64) {
        guest_fault::note(
            &mut self.metrics.bad_accesses,
            "virtio-mmio",
            &format_args!("{what} at offset {offset:#x}"),
        );
    }

    fn selected_queue(&self) -> Option<&Queue> {
        self.queues.get(self.queue_sel as usize)
    }

    fn read_register(&mut self, offset: u64) -> u32 {
        match offset {
            MAGIC_VALUE => MMIO_MAGIC_VALUE,
            VERSION => MMIO_VERSION,
            DEVICE_ID => self.device_type,
            VENDOR_ID => MMIO_VENDOR_ID,
            DEVICE_FEATURES => match self.device_features_sel {
                0 => lock(&self.device).avail_features() as u32,
                1 => (lock(&self.device).avail_features() >> 32) as u32,
                _ => 0,
            },
            QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            INTERRUPT_STATUS => self.interrupt.status(),
            STATUS => self.status,
            CONFIG_GENERATION => self.config_generation,
            // virtio 1.2 §4.2.2: a shared memory region that does not exist reads as -1.
            SHM_LEN_LOW | SHM_LEN_HIGH | SHM_BASE_LOW | SHM_BASE_HIGH => u32::MAX,
            _ => {
                self.bad_access("read of a write-only or unknown register", offset);
                0
            }
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        match offset {
            DEVICE_FEATURES_SEL => self.device_features_sel = value,
            DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            DRIVER_FEATURES => self.write_driver_features(value),
            QUEUE_SEL => self.queue_sel = value,
            QUEUE_NUM | QUEUE_READY | QUEUE_DESC_LOW | QUEUE_DESC_HIGH | QUEUE_DRIVER_LOW
            | QUEUE_DRIVER_HIGH | QUEUE_DEVICE_LOW | QUEUE_DEVICE_HIGH => {
                self.write_queue_config(offset, value)
            }
            QUEUE_NOTIFY => self.notify(value),
            INTERRUPT_ACK => self.interrupt.ack(value),
            STATUS => self.write_status(value),
            _ => self.bad_access("write to a read-only or unknown register", offset),
        }
    }

    /// virtio 1.2 §3.1.1 step 5: the driver writes its features between DRIVER and
    /// FEATURES_OK; afterwards they are fixed.
    fn write_driver_features(&mut self, value: u32) {
        if self.status & (DRIVER | FEATURES_OK | FAILED | NEEDS_RESET) != DRIVER {
            self.bad_access(
                "DriverFeatures write outside feature negotiation",
                DRIVER_FEATURES,
            );
            return;
        }
        match self.driver_features_sel {
            0 => self.acked_features = (self.acked_features & !0xffff_ffff) | u64::from(value),
            1 => {
                self.acked_features = (self.acked_features & 0xffff_ffff) | (u64::from(value) << 32)
            }
            _ => self.acked_unknown_features |= value != 0,
        }
    }

    /// Queue registers may only be written during setup: after FEATURES_OK, before
    /// DRIVER_OK, while the selected queue is not ready (virtio 1.2 §3.1.1 step 7, §4.2.3.2).
    /// Anything else is refused, so a running queue cannot be moved under the device.
    fn write_queue_config(&mut self, offset: u64, value: u32) {
        let in_setup =
            self.status & (FEATURES_OK | DRIVER_OK | FAILED | NEEDS_RESET) == FEATURES_OK;
        let refusal = match self.queues.get_mut(self.queue_sel as usize) {
            None => Some("queue register write with QueueSel naming no queue"),
            Some(_) if !in_setup => Some("queue register write outside queue setup"),
            // Writing 0 to QueueReady of a ready queue is how a driver takes it back.
            Some(q) if q.ready() && !(offset == QUEUE_READY && value == 0) => {
                Some("queue register write while the queue is ready")
            }
            Some(q) => (!apply_queue_write(q, offset, value))
                .then_some("invalid queue size, alignment or QueueReady value"),
        };
        if let Some(why) = refusal {
            guest_fault::note(
                &mut self.metrics.refused_queue_writes,
                "virtio-mmio",
                &format_args!("{why} (offset {offset:#x}, value {value:#x})"),
            );
        }
    }

    fn notify(&mut self, value: u32) {
        // Without VIRTIO_F_NOTIFICATION_DATA (never offered) the value is the queue index.
        match self.queue_evts.get(value as usize) {
            Some(evt) => {
                if let Err(e) = evt.write(1) {
                    guest_fault::note(
                        &mut self.metrics.eventfd_errors,
                        "virtio-mmio",
                        &format_args!("cannot signal queue {value}: {e}"),
                    );
                }
            }
            None => self.bad_access("QueueNotify for a queue that does not exist", QUEUE_NOTIFY),
        }
    }

    /// virtio 1.2 §3.1.1 and §2.1.2: the driver sets one status bit at a time, in order;
    /// FAILED may be set at any time; 0 resets. Other writes are refused.
    fn write_status(&mut self, value: u32) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        if value & FAILED != 0 {
            // The driver gave up; it will reset the device before trying again.
            self.status |= FAILED;
            return;
        }
        let added = value & !old;
        let step_ok = old & (FAILED | NEEDS_RESET) == 0
            && old & !value == 0
            && match added {
                ACK => old == 0,
                DRIVER => old == ACK,
                FEATURES_OK => old == ACK | DRIVER,
                DRIVER_OK => old == ACK | DRIVER | FEATURES_OK,
                _ => false,
            };
        if !step_ok {
            guest_fault::note(
                &mut self.metrics.refused_status_writes,
                "virtio-mmio",
                &format_args!("status write {value:#x} is not a valid step from {old:#x}"),
            );
            return;
        }
        match added {
            FEATURES_OK => self.negotiate_features(value),
            DRIVER_OK => self.activate(value),
            _ => self.status = value,
        }
    }

    /// virtio 1.2 §3.1.1 step 6 and §6.1: FEATURES_OK only if the driver acked a subset of
    /// what was offered, including VIRTIO_F_VERSION_1 (we have no legacy interface). When
    /// refused, the bit stays clear and the driver sees that on reading Status back.
    fn negotiate_features(&mut self, value: u32) {
        let offered = lock(&self.device).avail_features();
        let acked = self.acked_features;
        if self.acked_unknown_features
            || acked & !offered != 0
            || acked & (1 << VIRTIO_F_VERSION_1) == 0
        {
            guest_fault::note(
                &mut self.metrics.refused_features,
                "virtio-mmio",
                &format_args!("driver features {acked:#x} refused (offered {offered:#x})"),
            );
            return;
        }
        lock(&self.device).set_acked_features(acked);
        self.status = value;
    }

    /// DRIVER_OK: every ready queue must lie in guest memory; the device then gets a copy of
    /// each queue (the transport keeps its own to answer register reads) and starts.
    fn activate(&mut self, value: u32) {
        let event_idx = self.acked_features & (1 << VIRTIO_F_RING_EVENT_IDX) != 0;
        let mut handed = Vec::with_capacity(self.queues.len());
        for (index, queue) in self.queues.iter().enumerate() {
            if queue.ready() && !queue_fits_memory(queue, &self.mem) {
                self.fail_activation(
                    value,
                    &format_args!("queue {index} is outside guest memory"),
                );
                return;
            }
            match Queue::try_from(queue.state()) {
                Ok(mut copy) => {
                    copy.set_event_idx(event_idx);
                    handed.push(copy);
                }
                Err(e) => {
                    self.fail_activation(value, &format_args!("queue {index}: {e}"));
                    return;
                }
            }
        }
        let result = lock(&self.device).activate(
            self.mem.clone(),
            handed,
            self.queue_evts.clone(),
            self.interrupt.clone(),
        );
        match result {
            Ok(()) => self.status = value,
            Err(e) => self.fail_activation(value, &e),
        }
    }

    /// virtio 1.2 §2.1.2: the device sets DEVICE_NEEDS_RESET and tells the driver through a
    /// configuration change interrupt. DRIVER_OK stays set so the queues remain frozen.
    fn fail_activation(&mut self, value: u32, why: &dyn std::fmt::Display) {
        guest_fault::note(
            &mut self.metrics.activation_failures,
            "virtio-mmio",
            &format_args!("device type {} not activated: {why}", self.device_type),
        );
        self.status = value | NEEDS_RESET;
        if let Err(e) = self.interrupt.trigger(VIRTIO_MMIO_INT_CONFIG) {
            guest_fault::note(
                &mut self.metrics.eventfd_errors,
                "virtio-mmio",
                &format_args!("cannot raise the config interrupt: {e}"),
            );
        }
    }

    /// virtio 1.2 §2.4: writing 0 to Status resets the device and the transport.
    fn reset(&mut self) {
        let device_reset = lock(&self.device).reset();
        for queue in &mut self.queues {
            queue.reset();
        }
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.acked_features = 0;
        self.acked_unknown_features = false;
        self.queue_sel = 0;
        self.interrupt.ack(u32::MAX);
        self.status = if device_reset { 0 } else { NEEDS_RESET };
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= MMIO_CONFIG_OFFSET {
            if matches!(data.len(), 1 | 2 | 4 | 8) {
                lock(&self.device).read_config(offset - MMIO_CONFIG_OFFSET, data);
            } else {
                data.fill(0);
                self.bad_access("config space read of odd width", offset);
            }
            return;
        }
        // virtio 1.2 §4.2.2.2: control registers are accessed 32 bits wide and aligned.
        if data.len() == 4 && offset % 4 == 0 {
            let value = self.read_register(offset);
            data.copy_from_slice(&value.to_le_bytes());
        } else {
            data.fill(0);
            self.bad_access("register read not 32 bits wide and aligned", offset);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= MMIO_CONFIG_OFFSET {
            if matches!(data.len(), 1 | 2 | 4 | 8) {
                lock(&self.device).write_config(offset - MMIO_CONFIG_OFFSET, data);
            } else {
                self.bad_access("config space write of odd width", offset);
            }
            return;
        }
        match <[u8; 4]>::try_from(data) {
            Ok(word) if offset % 4 == 0 => self.write_register(offset, u32::from_le_bytes(word)),
            Ok(_) => self.bad_access("unaligned register write", offset),
            Err(_) => self.bad_access("register write not 32 bits wide", offset),
        }
    }
}

/// Applies one queue register write; false if the value is invalid (size not a power of two
/// within the maximum, misaligned ring address, QueueReady neither 0 nor 1).
fn apply_queue_write(queue: &mut Queue, offset: u64, value: u32) -> bool {
    let low = |old: u64| (old & !0xffff_ffff) | u64::from(value);
    let high = |old: u64| (old & 0xffff_ffff) | (u64::from(value) << 32);
    match offset {
        QUEUE_NUM => u16::try_from(value).is_ok_and(|n| queue.try_set_size(n).is_ok()),
        QUEUE_READY => match value {
            0 | 1 => {
                queue.set_ready(value == 1);
                true
            }
            _ => false,
        },
        QUEUE_DESC_LOW => queue
            .try_set_desc_table_address(GuestAddress(low(queue.desc_table())))
            .is_ok(),
        QUEUE_DESC_HIGH => queue
            .try_set_desc_table_address(GuestAddress(high(queue.desc_table())))
            .is_ok(),
        QUEUE_DRIVER_LOW => queue
            .try_set_avail_ring_address(GuestAddress(low(queue.avail_ring())))
            .is_ok(),
        QUEUE_DRIVER_HIGH => queue
            .try_set_avail_ring_address(GuestAddress(high(queue.avail_ring())))
            .is_ok(),
        QUEUE_DEVICE_LOW => queue
            .try_set_used_ring_address(GuestAddress(low(queue.used_ring())))
            .is_ok(),
        QUEUE_DEVICE_HIGH => queue
            .try_set_used_ring_address(GuestAddress(high(queue.used_ring())))
            .is_ok(),
        _ => false,
    }
}

/// virtio 1.2 §2.7: the descriptor table (16 bytes per entry), the driver area (flags, idx,
/// ring, used_event) and the device area (flags, idx, ring of 8-byte entries, avail_event)
/// must lie in guest memory. Checked here first because virtio-queue's `is_valid` logs every
/// failure, and a guest could repeat the handshake forever; `is_valid` then confirms.
fn queue_fits_memory(queue: &Queue, mem: &GuestMemory) -> bool {
    let size = u64::from(queue.size());
    let areas = [
        (queue.desc_table(), 16 * size, Permissions::Read),
        (queue.avail_ring(), 6 + 2 * size, Permissions::Read),
        (queue.used_ring(), 6 + 8 * size, Permissions::Write),
    ];
    areas
        .iter()
        .all(|&(addr, len, access)| mem.check_range(GuestAddress(addr), len as usize, access))
        && queue.is_valid(mem)
}

/// A poisoned device lock means a device panicked on another thread; the register file must
/// still answer the guest, so the state is used as it is.
fn lock<'a>(
    device: &'a Mutex<dyn VirtioDevice + 'static>,
) -> MutexGuard<'a, dyn VirtioDevice + 'static> {
    device
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::{ActivateError, VirtioState, VIRTIO_MMIO_INT_VRING};

    /// Size, desc, driver and device area addresses, ready, event_idx of a handed-over queue.
    type QueueSummary = (u16, u64, u64, u64, bool, bool);

    /// A device that records what the transport does to it. Features go through the shared
    /// [`VirtioState`]; activation, reset and config space are its own, to record them.
    struct Recorder {
        virtio: VirtioState,
        activated: Option<Vec<QueueSummary>>,
        /// (next_avail, next_used) of each queue handed over at activation; a test moves
        /// them to stand for requests served.
        positions: Option<Vec<(u16, u16)>>,
        resets: usize,
        fail_activation: bool,
        config: [u8; 8],
    }

    impl Default for Recorder {
        fn default() -> Self {
            let features = 1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_F_RING_EVENT_IDX | 1 << 3;
            Recorder {
                virtio: VirtioState::new("recorder", features, Vec::new()).unwrap(),
                activated: None,
                positions: None,
                resets: 0,
                fail_activation: false,
                config: [0; 8],
            }
        }
    }

    impl VirtioDevice for Recorder {
        fn device_type(&self) -> u32 {
            42
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 8]
        }
        fn virtio(&self) -> &VirtioState {
            &self.virtio
        }
        fn virtio_mut(&mut self) -> &mut VirtioState {
            &mut self.virtio
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            data.fill(0);
            let start = offset as usize;
            if let Some(src) = self.config.get(start..start.saturating_add(data.len())) {
                data.copy_from_slice(src);
            }
        }
        fn write_config(&mut self, offset: u64, data: &[u8]) {
            let start = offset as usize;
            if let Some(dst) = self.config.get_mut(start..start.saturating_add(data.len())) {
                dst.copy_from_slice(data);
            }
        }
        fn activate(
            &mut self,
            _mem: GuestMemory,
            queues: Vec<Queue>,
            queue_evts: Vec<Arc<EventFd>>,
            _interrupt: Arc<IrqTrigger>,
        ) -> Result<(), ActivateError> {
            assert_eq!(queues.len(), queue_evts.len());
            if self.fail_activation {
                return Err(ActivateError::Backend(std::io::Error::other("refused")));
            }
            self.positions = Some(
                queues
                    .iter()
                    .map(|q| (q.next_avail(), q.next_used()))
                    .collect(),
            );
            self.activated = Some(
                queues
                    .iter()
                    .map(|q| {
                        (
                            q.size(),
                            q.desc_table(),
                            q.avail_ring(),
                            q.used_ring(),
                            q.ready(),
                            q.event_idx_enabled(),
                        )
                    })
                    .collect(),
            );
            Ok(())
        }
        fn reset(&mut self) -> bool {
            self.resets += 1;
            self.activated = None;
            true
        }
        fn is_activated(&self) -> bool {
            self.activated.is_some()
        }
        fn queue_positions(&self) -> Option<Vec<(u16, u16)>> {
            self.positions.clone()
        }
    }

    fn setup() -> (MmioTransport, Arc<Mutex<Recorder>>) {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let t = MmioTransport::new(mem, dev.clone(), Arc::new(IrqTrigger::new().unwrap())).unwrap();
        (t, dev)
    }

    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    fn negotiate(t: &mut MmioTransport, features: u64) {
        w(t, STATUS, ACK);
        w(t, STATUS, ACK | DRIVER);
        w(t, DRIVER_FEATURES_SEL, 0);
        w(t, DRIVER_FEATURES, features as u32);
        w(t, DRIVER_FEATURES_SEL, 1);
        w(t, DRIVER_FEATURES, (features >> 32) as u32);
        w(t, STATUS, ACK | DRIVER | FEATURES_OK);
    }

    fn setup_queue(t: &mut MmioTransport, sel: u32, size: u32, base: u64) {
        w(t, QUEUE_SEL, sel);
        w(t, QUEUE_NUM, size);
        w(t, QUEUE_DESC_LOW, base as u32);
        w(t, QUEUE_DESC_HIGH, (base >> 32) as u32);
        w(t, QUEUE_DRIVER_LOW, (base + 0x1000) as u32);
        w(t, QUEUE_DRIVER_HIGH, 0);
        w(t, QUEUE_DEVICE_LOW, (base + 0x2000) as u32);
        w(t, QUEUE_DEVICE_HIGH, 0);
        w(t, QUEUE_READY, 1);
    }

    const FEATURES: u64 = 1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_F_RING_EVENT_IDX;

    #[test]
    fn full_handshake_activates_with_the_programmed_queues() {
        let (mut t, dev) = setup();
        assert_eq!(r(&mut t, MAGIC_VALUE), 0x7472_6976);
        assert_eq!(r(&mut t, VERSION), 2);
        assert_eq!(r(&mut t, DEVICE_ID), 42);
        assert_eq!(r(&mut t, VENDOR_ID), MMIO_VENDOR_ID);
        w(&mut t, DEVICE_FEATURES_SEL, 0);
        assert_eq!(
            r(&mut t, DEVICE_FEATURES),
            1 << VIRTIO_F_RING_EVENT_IDX | 1 << 3
        );
        w(&mut t, DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&mut t, DEVICE_FEATURES), 1);
        w(&mut t, DEVICE_FEATURES_SEL, 2);
        assert_eq!(r(&mut t, DEVICE_FEATURES), 0);

        negotiate(&mut t, FEATURES);
        assert_eq!(r(&mut t, STATUS), ACK | DRIVER | FEATURES_OK);
        assert_eq!(dev.lock().unwrap().virtio.acked_features(), FEATURES);

        w(&mut t, QUEUE_SEL, 0);
        assert_eq!(r(&mut t, QUEUE_NUM_MAX), 16);
        w(&mut t, QUEUE_SEL, 1);
        assert_eq!(r(&mut t, QUEUE_NUM_MAX), 8);
        w(&mut t, QUEUE_SEL, 2);
        assert_eq!(r(&mut t, QUEUE_NUM_MAX), 0);
        setup_queue(&mut t, 0, 8, 0x1_0000);
        assert_eq!(r(&mut t, QUEUE_READY), 1);
        setup_queue(&mut t, 1, 4, 0x2_0000);

        w(&mut t, STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        assert_eq!(r(&mut t, STATUS), ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        let activated = dev.lock().unwrap().activated.clone().unwrap();
        assert_eq!(
            activated,
            vec![
                (8, 0x1_0000, 0x1_1000, 0x1_2000, true, true),
                (4, 0x2_0000, 0x2_1000, 0x2_2000, true, true)
            ]
        );

        // A notify that reaches the transport is forwarded to the queue's eventfd.
        w(&mut t, QUEUE_NOTIFY, 1);
        assert_eq!(t.queue_evts()[1].read().unwrap(), 1);
        w(&mut t, QUEUE_NOTIFY, 5);
        assert_eq!(t.metrics().bad_accesses, 1);

        t.interrupt().trigger(VIRTIO_MMIO_INT_VRING).unwrap();
        assert_eq!(r(&mut t, INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
        w(&mut t, INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
        assert_eq!(r(&mut t, INTERRUPT_STATUS), 0);

        // Config space goes to the device, at any width.
        w(&mut t, 0x104, 0xaabb_ccdd);
        let mut b = [0u8; 2];
        t.read(0x105, &mut b);
        assert_eq!(b, [0xcc, 0xbb]);

        w(&mut t, STATUS, 0);
        assert_eq!(r(&mut t, STATUS), 0);
        assert_eq!(dev.lock().unwrap().resets, 1);
        assert!(dev.lock().unwrap().activated.is_none());
        w(&mut t, QUEUE_SEL, 0);
        assert_eq!(r(&mut t, QUEUE_READY), 0);
    }

    fn started() -> (MmioTransport, Arc<Mutex<Recorder>>) {
        let (mut t, dev) = setup();
        negotiate(&mut t, FEATURES);
        setup_queue(&mut t, 0, 8, 0x1_0000);
        setup_queue(&mut t, 1, 4, 0x2_0000);
        w(&mut t, STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        (t, dev)
    }

    fn restore(
        state: &MmioTransportState,
    ) -> Result<(MmioTransport, Arc<Mutex<Recorder>>), TransportStateError> {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 0x10_0000)]).unwrap();
        let dev = Arc::new(Mutex::new(Recorder::default()));
        let irq = Arc::new(IrqTrigger::new().unwrap());
        MmioTransport::restore(mem, dev.clone(), irq, state).map(|t| (t, dev))
    }

    #[test]
    fn a_restored_transport_restarts_its_device_where_it_was() {
        let (mut t, dev) = started();
        // The device served requests on both queues, and one interrupt is unacknowledged.
        dev.lock().unwrap().positions = Some(vec![(5, 5), (3, 2)]);
        t.interrupt().trigger(VIRTIO_MMIO_INT_VRING).unwrap();
        w(&mut t, QUEUE_SEL, 1);
        let state = t.state();
        assert_eq!(state.queues[0].next_avail, 5);
        assert_eq!(
            (state.queues[1].next_avail, state.queues[1].next_used),
            (3, 2)
        );

        let (mut r2, dev2) = restore(&state).unwrap();
        assert_eq!(r2.state(), state);
        let dev2 = dev2.lock().unwrap();
        assert_eq!(dev2.virtio.acked_features(), FEATURES);
        assert_eq!(
            dev2.activated.clone().unwrap(),
            vec![
                (8, 0x1_0000, 0x1_1000, 0x1_2000, true, true),
                (4, 0x2_0000, 0x2_1000, 0x2_2000, true, true)
            ]
        );
        assert_eq!(dev2.positions, Some(vec![(5, 5), (3, 2)]));
        drop(dev2);
        assert_eq!(r(&mut r2, STATUS), ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        assert_eq!(r(&mut r2, INTERRUPT_STATUS), VIRTIO_MMIO_INT_VRING);
        assert_eq!(r(&mut r2, QUEUE_NUM_MAX), 8, "QueueSel 1 still selected");
        assert_eq!(
            r2.interrupt().irq_evt().read().map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "the restore raises no interrupt of its own"
        );
        // Still frozen: a restored live queue cannot be moved either.
        w(&mut r2, QUEUE_DESC_LOW, 0x8000);
        assert_eq!(r2.state().queues[1].desc_table, 0x2_0000);
        assert_eq!(r2.metrics().refused_queue_writes, 1);
    }

    #[test]
    fn a_device_mid_negotiation_is_restored_inactive() {
        let (mut t, _) = setup();
        negotiate(&mut t, FEATURES);
        setup_queue(&mut t, 0, 8, 0x1_0000);
        let state = t.state();
        let (mut r2, dev2) = restore(&state).unwrap();
        assert!(dev2.lock().unwrap().activated.is_none());
        assert_eq!(r2.state(), state);
        // The driver goes on with the handshake where it was.
        setup_queue(&mut r2, 1, 4, 0x2_0000);
        w(&mut r2, STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        assert!(dev2.lock().unwrap().activated.is_some());
    }

    #[test]
    fn a_snapshot_that_does_not_fit_the_device_or_memory_is_refused() {
        let (t, _) = started();
        let mut other = t.state();
        other.device_type = crate::devices::virtio::TYPE_BLOCK;
        assert!(matches!(
            restore(&other),
            Err(TransportStateError::DeviceMismatch {
                saved: crate::devices::virtio::TYPE_BLOCK,
                ..
            })
        ));
        let mut outside = t.state();
        outside.queues[1].used_ring = 0x10_0000 - 8;
        assert!(matches!(
            restore(&outside),
            Err(TransportStateError::InvalidQueue { index: 1, .. })
        ));
        let mut bad_size = t.state();
        bad_size.queues[0].size = 7;
        assert!(matches!(
            restore(&bad_size),
            Err(TransportStateError::InvalidQueue { index: 0, .. })
        ));
        let mut bad_status = t.state();
        bad_status.status = ACK | DRIVER_OK;
        assert!(matches!(
            restore(&bad_status),
            Err(TransportStateError::InvalidStatus { .. })
        ));
        let mut unoffered = t.state();
        unoffered.acked_features |= 1 << 40;
        assert!(matches!(
            restore(&unoffered),
            Err(TransportStateError::InvalidFeatures { .. })
        ));
        let mut legacy = t.state();
        legacy.acked_features &= !(1 << VIRTIO_F_VERSION_1);
        assert!(matches!(
            restore(&legacy),
            Err(TransportStateError::InvalidFeatures { .. })
        ));
    }

    #[test]
    fn features_ok_needs_version_1_and_only_offered_bits() {
        let (mut t, _) = setup();
        negotiate(&mut t, 1 << VIRTIO_F_RING_EVENT_IDX);
        assert_eq!(r(&mut t, STATUS), ACK | DRIVER);
        w(&mut t, STATUS, 0);
        negotiate(&mut t, FEATURES | 1 << 4);
        assert_eq!(r(&mut t, STATUS), ACK | DRIVER);
        w(&mut t, STATUS, 0);
        w(&mut t, STATUS, ACK);
        w(&mut t, STATUS, ACK | DRIVER);
        w(&mut t, DRIVER_FEATURES_SEL, 2);
        w(&mut t, DRIVER_FEATURES, 1);
        w(&mut t, DRIVER_FEATURES_SEL, 1);
        w(&mut t, DRIVER_FEATURES, 1);
        w(&mut t, STATUS, ACK | DRIVER | FEATURES_OK);
        assert_eq!(r(&mut t, STATUS), ACK | DRIVER);
        assert_eq!(t.metrics().refused_features, 3);
        // Features can no longer change once FEATURES_OK is set.
        w(&mut t, STATUS, 0);
        negotiate(&mut t, FEATURES);
        w(&mut t, DRIVER_FEATURES_SEL, 0);
        w(&mut t, DRIVER_FEATURES, 0xffff_ffff);
        assert_eq!(t.acked_features, FEATURES);
    }

    #[test]
    fn status_steps_out_of_order_are_refused() {
        let (mut t, dev) = setup();
        w(&mut t, STATUS, ACK | DRIVER);
        assert_eq!(r(&mut t, STATUS), 0);
        w(&mut t, STATUS, ACK);
        w(&mut t, STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        assert_eq!(r(&mut t, STATUS), ACK);
        w(&mut t, STATUS, ACK | DRIVER);
        w(&mut t, STATUS, ACK | DRIVER | DRIVER_OK);
        assert_eq!(r(&mut t, STATUS), ACK | DRIVER);
        assert!(dev.lock().unwrap().activated.is_none());
        // Clearing a bit is not a step either.
        w(&mut t, STATUS, DRIVER);
        assert_eq!(r(&mut t, STATUS), ACK | DRIVER);
        assert_eq!(t.metrics().refused_status_writes, 4);
        // FAILED is accepted at any time and blocks further steps until reset.
        w(&mut t, STATUS, ACK | DRIVER | FAILED);
        assert_eq!(r(&mut t, STATUS), ACK | DRIVER | FAILED);
        negotiate(&mut t, FEATURES);
        assert_eq!(r(&mut t, STATUS) & FEATURES_OK, 0);
    }

    #[test]
    fn queue_writes_are_refused_outside_setup() {
        let (mut t, dev) = setup();
        // Before FEATURES_OK.
        w(&mut t, STATUS, ACK);
        w(&mut t, STATUS, ACK | DRIVER);
        w(&mut t, QUEUE_SEL, 0);
        w(&mut t, QUEUE_NUM, 4);
        assert_eq!(t.queues[0].size(), 16);
        w(&mut t, STATUS, 0);

        negotiate(&mut t, FEATURES);
        // Invalid sizes and misaligned rings.
        w(&mut t, QUEUE_NUM, 3);
        w(&mut t, QUEUE_NUM, 32);
        w(&mut t, QUEUE_NUM, 0x1_0004);
        assert_eq!(t.queues[0].size(), 16);
        w(&mut t, QUEUE_DESC_LOW, 0x1008);
        assert_eq!(t.queues[0].desc_table(), 0);
        w(&mut t, QUEUE_READY, 2);
        assert!(!t.queues[0].ready());

        setup_queue(&mut t, 0, 8, 0x1_0000);
        setup_queue(&mut t, 1, 8, 0x2_0000);
        // The queue is ready: moving it is refused, taking it back is allowed.
        w(&mut t, QUEUE_SEL, 0);
        w(&mut t, QUEUE_DESC_LOW, 0x5_0000);
        w(&mut t, QUEUE_NUM, 4);
        assert_eq!(
            (t.queues[0].desc_table(), t.queues[0].size()),
            (0x1_0000, 8)
        );
        w(&mut t, QUEUE_READY, 0);
        assert!(!t.queues[0].ready());
        w(&mut t, QUEUE_READY, 1);

        w(&mut t, STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        assert!(dev.lock().unwrap().activated.is_some());
        // After DRIVER_OK nothing about a queue may change, not even un-readying it.
        let refused_before = t.metrics().refused_queue_writes;
        for off in [
            QUEUE_READY,
            QUEUE_NUM,
            QUEUE_DESC_LOW,
            QUEUE_DESC_HIGH,
            QUEUE_DRIVER_LOW,
            QUEUE_DRIVER_HIGH,
            QUEUE_DEVICE_LOW,
            QUEUE_DEVICE_HIGH,
        ] {
            w(&mut t, off, 0);
        }
        assert_eq!(t.metrics().refused_queue_writes, refused_before + 8);
        assert!(t.queues[0].ready());
        assert_eq!(t.queues[0].used_ring(), 0x1_2000);
        // Selecting a queue that does not exist makes every queue write a no-op.
        w(&mut t, QUEUE_SEL, 9);
        w(&mut t, QUEUE_READY, 1);
        assert_eq!(r(&mut t, QUEUE_READY), 0);
    }

    #[test]
    fn queue_outside_memory_sets_needs_reset() {
        let (mut t, dev) = setup();
        negotiate(&mut t, FEATURES);
        setup_queue(&mut t, 0, 16, 0x1_0000);
        // Used ring at the very end of the 1 MiB of memory: it does not fit.
        w(&mut t, QUEUE_SEL, 1);
        w(&mut t, QUEUE_NUM, 8);
        w(&mut t, QUEUE_DEVICE_LOW, 0x10_0000 - 8);
        w(&mut t, QUEUE_READY, 1);
        w(&mut t, STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        assert_eq!(
            r(&mut t, STATUS),
            ACK | DRIVER | FEATURES_OK | DRIVER_OK | NEEDS_RESET
        );
        assert_eq!(r(&mut t, INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
        assert!(dev.lock().unwrap().activated.is_none());
        assert_eq!(t.metrics().activation_failures, 1);
        // Only a reset gets out of it.
        w(&mut t, STATUS, ACK);
        assert_ne!(r(&mut t, STATUS), ACK);
        w(&mut t, STATUS, 0);
        assert_eq!(r(&mut t, STATUS), 0);
        assert_eq!(r(&mut t, INTERRUPT_STATUS), 0);
    }

    #[test]
    fn failed_device_activation_sets_needs_reset() {
        let (mut t, dev) = setup();
        dev.lock().unwrap().fail_activation = true;
        negotiate(&mut t, FEATURES);
        setup_queue(&mut t, 0, 16, 0x1_0000);
        w(&mut t, STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
        assert_ne!(r(&mut t, STATUS) & NEEDS_RESET, 0);
        assert_eq!(r(&mut t, INTERRUPT_STATUS), VIRTIO_MMIO_INT_CONFIG);
    }

    #[test]
    fn odd_accesses_are_ignored_and_nothing_panics() {
        let (mut t, _) = setup();
        let mut b2 = [0xffu8; 2];
        t.read(MAGIC_VALUE, &mut b2);
        assert_eq!(b2, [0, 0]);
        let mut b4 = [0xffu8; 4];
        t.read(MAGIC_VALUE + 2, &mut b4);
        assert_eq!(b4, [0; 4]);
        let mut b3 = [0xffu8; 3];
        t.read(0x100, &mut b3);
        assert_eq!(b3, [0; 3]);
        t.write(STATUS, &[ACK as u8]);
        assert_eq!(r(&mut t, STATUS), 0);
        t.write(STATUS, &(ACK as u64).to_le_bytes());
        assert_eq!(r(&mut t, STATUS), 0);
        assert_eq!(r(&mut t, SHM_LEN_LOW), u32::MAX);
        // Every offset, width and a few values, in both directions, in every state.
        for round in 0..3u32 {
            for off in (0..0x110u64).chain([u64::MAX - 3, 0xfff, 0x1000]) {
                for len in [1usize, 2, 3, 4, 8] {
                    let mut buf = vec![0u8; len];
                    t.read(off, &mut buf);
                    let val = [0u32, 1, 0xffff_ffff, 0x8000_0000 | round]
                        [(off as usize).wrapping_add(len) % 4];
                    let mut bytes = val.to_le_bytes().to_vec();
                    bytes.resize(len, 0xff);
                    if off != STATUS || round == 2 {
                        t.write(off, &bytes);
                    }
                }
            }
            negotiate(&mut t, FEATURES);
            setup_queue(&mut t, 0, 16, 0x1_0000);
        }
    }
}
