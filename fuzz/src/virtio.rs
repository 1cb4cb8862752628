//! virtio devices as a guest driver sees them: the virtio-mmio register file, and each
//! device's queue loop on the device event loop, over guest memory the input fills.
//!
//! A target is a script the input spells out: register reads and writes, stores into guest
//! memory, queue notifications, and turns of the event loop. The device targets start from
//! a driver that has set the device up (queues at fixed places in memory the input fills,
//! DRIVER_OK), so the fuzzer spends its time on descriptor chains; the mmio target starts
//! from reset and reaches the device only through registers.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use arbitrary::{Result, Unstructured};
use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
use outpost_vmm::devices::bus::BusDevice;
use outpost_vmm::devices::virtio::mmio::{MmioTransport, MMIO_WINDOW_SIZE};
use outpost_vmm::devices::virtio::{block, rng, IrqTrigger, VirtioDevice};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

/// Guest RAM: small, so that the addresses in descriptors land in it often.
const MEM_SIZE: usize = 64 << 10;
/// Where the set-up driver puts queue `i`'s rings: `RINGS + i * RING_STRIDE` (descriptor
/// table), then the available ring a page later and the used ring a page after that.
const RINGS: u64 = 0x1000;
const RING_STRIDE: u64 = 0x3000;
/// The queue size the set-up driver picks: small, so chains wrap and collide.
const QUEUE_SIZE: u32 = 16;
/// Operations per input and event-loop turns per operation, so every input ends quickly.
const MAX_OPS: usize = 64;

// virtio 1.2 §4.2.2 register offsets and §2.1 status bits the set-up driver uses.
const DRIVER_FEATURES: u64 = 0x020;
const DRIVER_FEATURES_SEL: u64 = 0x024;
const DEVICE_FEATURES: u64 = 0x010;
const DEVICE_FEATURES_SEL: u64 = 0x014;
const QUEUE_SEL: u64 = 0x030;
const QUEUE_NUM: u64 = 0x038;
const QUEUE_READY: u64 = 0x044;
const QUEUE_NOTIFY: u64 = 0x050;
const STATUS: u64 = 0x070;
const QUEUE_DESC_LOW: u64 = 0x080;
const QUEUE_DRIVER_LOW: u64 = 0x090;
const QUEUE_DEVICE_LOW: u64 = 0x0a0;
const ACKNOWLEDGE: u32 = 1;
const DRIVER: u32 = 2;
const DRIVER_OK: u32 = 4;
const FEATURES_OK: u32 = 8;

type Subscriber = Arc<Mutex<dyn MutEventSubscriber + Send>>;

/// The mmio transport from reset, driven by register accesses only (an rng behind it).
pub fn mmio(data: &[u8]) {
    let Some(rng) = rng::Rng::new().ok() else {
        return;
    };
    let _ = Rig::new(Arc::new(Mutex::new(rng))).and_then(|mut rig| {
        let mut u = Unstructured::new(data);
        rig.script(&mut u)
    });
}

/// virtio-rng's request queue.
pub fn rng(data: &[u8]) {
    let Some(rng) = rng::Rng::new().ok() else {
        return;
    };
    drive_ready_device(Arc::new(Mutex::new(rng)), data);
}

/// virtio-blk's request queue, over a 64 KiB image file (read-only and flush chosen by the
/// input).
pub fn block(data: &[u8]) {
    let (&options, data) = data.split_first().unwrap_or((&0, &[]));
    let Some(path) = disk_image() else {
        return;
    };
    let Ok(dev) = block::Block::new(block::BlockConfig {
        id: "fuzz".into(),
        path: path.into(),
        read_only: options & 1 != 0,
        flush: options & 2 != 0,
        rate_limiter: None,
    }) else {
        return;
    };
    drive_ready_device(Arc::new(Mutex::new(dev)), data);
}

/// A set-up device: the input's first bytes are what memory holds where the rings and
/// buffers are, the rest a script.
fn drive_ready_device<D>(dev: Arc<Mutex<D>>, data: &[u8])
where
    D: VirtioDevice + MutEventSubscriber + 'static,
{
    let _ = Rig::new(dev).and_then(|mut rig| {
        let mut u = Unstructured::new(data);
        let image = crate::bytes_up_to(&mut u, MEM_SIZE - RINGS as usize)?;
        let _ = rig.mem.write_slice(image, GuestAddress(RINGS));
        let features: u64 = u.arbitrary()?;
        rig.set_up(features);
        rig.script(&mut u)
    });
}

/// A device behind its transport, on its own event loop, over its own guest memory.
struct Rig {
    mem: GuestMemoryMmap,
    transport: MmioTransport,
    events: EventManager<Subscriber>,
    queues: usize,
}

impl Rig {
    fn new<D>(dev: Arc<Mutex<D>>) -> Result<Rig>
    where
        D: VirtioDevice + MutEventSubscriber + 'static,
    {
        let fail = |_| arbitrary::Error::IncorrectFormat;
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).map_err(fail)?;
        let mut events =
            EventManager::<Subscriber>::new().map_err(|_| arbitrary::Error::IncorrectFormat)?;
        events.add_subscriber(dev.clone());
        let irq = Arc::new(IrqTrigger::new().map_err(|_| arbitrary::Error::IncorrectFormat)?);
        let queues = dev.lock().map_or(0, |d| d.queue_max_sizes().len());
        let transport = MmioTransport::new(mem.clone(), dev, irq)
            .map_err(|_| arbitrary::Error::IncorrectFormat)?;
        Ok(Rig {
            mem,
            transport,
            events,
            queues,
        })
    }

    fn write(&mut self, offset: u64, value: u32) {
        self.transport.write(offset, &value.to_le_bytes());
    }

    /// What a driver does before DRIVER_OK (virtio 1.2 §3.1.1), accepting `wanted` of the
    /// features offered.
    fn set_up(&mut self, wanted: u64) {
        self.write(STATUS, ACKNOWLEDGE);
        self.write(STATUS, ACKNOWLEDGE | DRIVER);
        let mut offered = 0u64;
        for half in 0..2 {
            self.write(DEVICE_FEATURES_SEL, half);
            let mut word = [0u8; 4];
            self.transport.read(DEVICE_FEATURES, &mut word);
            offered |= u64::from(u32::from_le_bytes(word)) << (32 * half);
        }
        let acked = offered & wanted;
        for half in 0..2 {
            self.write(DRIVER_FEATURES_SEL, half);
            self.write(DRIVER_FEATURES, (acked >> (32 * half)) as u32);
        }
        self.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK);
        for q in 0..self.queues {
            let desc = RINGS + q as u64 * RING_STRIDE;
            self.write(QUEUE_SEL, q as u32);
            self.write(QUEUE_NUM, QUEUE_SIZE);
            self.write(QUEUE_DESC_LOW, desc as u32);
            self.write(QUEUE_DRIVER_LOW, (desc + 0x1000) as u32);
            self.write(QUEUE_DEVICE_LOW, (desc + 0x2000) as u32);
            self.write(QUEUE_READY, 1);
        }
        self.write(STATUS, ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK);
        // Activation happens on the event loop.
        self.turn();
        for q in 0..self.queues {
            self.write(QUEUE_NOTIFY, q as u32);
        }
        self.turn();
    }

    /// The rest of the input as operations, until it runs out.
    fn script(&mut self, u: &mut Unstructured<'_>) -> Result<()> {
        for _ in 0..MAX_OPS {
            if u.is_empty() {
                break;
            }
            match u.int_in_range(0..=4u8)? {
                0 => {
                    let offset = u.int_in_range(0..=MMIO_WINDOW_SIZE - 1)?;
                    let width = *u.choose(&[1usize, 2, 4, 8])?;
                    let value = u.arbitrary::<u64>()?.to_le_bytes();
                    self.transport.write(offset, &value[..width]);
                }
                1 => {
                    let offset = u.int_in_range(0..=MMIO_WINDOW_SIZE - 1)?;
                    let width = *u.choose(&[1usize, 2, 4, 8])?;
                    let mut buf = [0u8; 8];
                    self.transport.read(offset, &mut buf[..width]);
                }
                2 => {
                    let addr = u.int_in_range(0..=MEM_SIZE as u64 - 1)?;
                    let bytes = crate::bytes_up_to(u, 64)?;
                    let _ = self.mem.write_slice(bytes, GuestAddress(addr));
                }
                3 => {
                    let q = u.int_in_range(0..=self.queues as u32)?;
                    self.write(QUEUE_NOTIFY, q);
                }
                _ => self.turn(),
            }
        }
        self.turn();
        Ok(())
    }

    /// Runs the event loop until nothing is ready (a bounded number of rounds: a device
    /// that keeps re-kicking itself would otherwise spin here forever).
    fn turn(&mut self) {
        for _ in 0..8 {
            match self.events.run_with_timeout(0) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    }
}

/// A 64 KiB disk image, made once per process (an unlinked file, reached by its
/// /proc/self/fd path, so nothing is left behind).
fn disk_image() -> Option<&'static str> {
    static IMAGE: OnceLock<Option<(std::fs::File, String)>> = OnceLock::new();
    IMAGE
        .get_or_init(|| {
            let mut file = tempfile::tempfile().ok()?;
            file.write_all(&[0xa5; 64 << 10]).ok()?;
            use std::os::fd::AsRawFd;
            let path = format!("/proc/self/fd/{}", file.as_raw_fd());
            Some((file, path))
        })
        .as_ref()
        .map(|(_, path)| path.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The set-up driver gets each device to DRIVER_OK and activated, so the fuzzer's
    /// descriptor chains reach the queue loop rather than stopping at the transport.
    #[test]
    fn set_up_activates_each_device() {
        let rng = Arc::new(Mutex::new(rng::Rng::new().expect("/dev/urandom opens")));
        let path = disk_image().expect("a temporary disk image");
        let block = Arc::new(Mutex::new(
            block::Block::new(block::BlockConfig {
                id: "fuzz".into(),
                path: path.into(),
                read_only: false,
                flush: true,
                rate_limiter: None,
            })
            .expect("the disk image opens"),
        ));
        let devices: [Arc<Mutex<dyn VirtioDevice>>; 2] = [rng.clone(), block.clone()];
        let mut rigs = [
            Rig::new(rng).expect("rng rig"),
            Rig::new(block).expect("block rig"),
        ];
        for (rig, dev) in rigs.iter_mut().zip(devices) {
            rig.set_up(u64::MAX);
            assert_eq!(
                rig.transport.status(),
                ACKNOWLEDGE | DRIVER | FEATURES_OK | DRIVER_OK
            );
            assert!(dev.lock().expect("device lock").is_activated());
        }
    }
}
