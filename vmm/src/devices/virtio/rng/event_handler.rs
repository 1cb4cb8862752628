//! The rng device on the device event loop: activation and kicks of its request queue.

use event_manager::{EventOps, Events, MutEventSubscriber};

use super::device::{Rng, DEVICE};
use super::request::parse_request;
use super::QUEUE_SIZE;
use crate::devices::virtio::guest_fault::note;
use crate::devices::virtio::DeviceEvent;

impl MutEventSubscriber for Rng {
    fn init(&mut self, ops: &mut EventOps) {
        self.virtio.init_loop(ops);
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        if let DeviceEvent::QueueKick(index) =
            self.virtio.loop_event(&events, ops, &mut self.metrics)
        {
            self.process_queue_event(index);
        }
    }
}

impl Rng {
    /// Serves at most a queue's worth of requests per kick; the rest on a re-kick.
    pub(super) fn process_queue_event(&mut self, index: usize) {
        let source = &mut self.source;
        let scratch = &mut self.scratch[..];
        let budget = usize::from(QUEUE_SIZE);
        self.virtio
            .serve_queue(index, budget, &mut self.metrics, |mem, chain, metrics| {
                let request = match parse_request(mem, chain) {
                    Ok(r) => r,
                    Err(e) => {
                        note(&mut metrics.malformed_requests, DEVICE, &e);
                        return 0;
                    }
                };
                match request.fill(mem, source, scratch) {
                    Ok(n) => {
                        metrics.requests += 1;
                        metrics.bytes += u64::from(n);
                        n
                    }
                    Err(e) => {
                        note(&mut metrics.entropy_errors, DEVICE, &e);
                        0
                    }
                }
            });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::EventFd;

    use super::*;
    use crate::devices::virtio::descriptor::tests::test_memory;
    use crate::devices::virtio::{IrqTrigger, VirtioDevice, TYPE_RNG};

    #[test]
    fn fills_requests_with_entropy_and_skips_bad_ones() {
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let mut rng = Rng::new().unwrap();
        assert_eq!(rng.device_type(), TYPE_RNG);
        let evt = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let irq = Arc::new(IrqTrigger::new().unwrap());
        rng.activate(
            mem.clone(),
            vec![mq.create_queue().unwrap()],
            vec![evt],
            irq.clone(),
        )
        .unwrap();
        let descs = [
            RawDescriptor::from(SplitDescriptor::new(0x10_0000, 64, 2, 0)),
            // Device-readable: malformed.
            RawDescriptor::from(SplitDescriptor::new(0x20_0000, 64, 0, 0)),
            // 1 MiB asked for: 64 KiB given.
            RawDescriptor::from(SplitDescriptor::new(0x30_0000, 1 << 20, 2, 0)),
        ];
        mq.add_desc_chains(&descs, 0).unwrap();
        rng.process_queue_event(0);
        assert_eq!(mq.used().idx().load(), 3);
        let lens: Vec<u32> = (0..3)
            .map(|i| mq.used().ring().ref_at(i).unwrap().load().len())
            .collect();
        assert_eq!(lens, [64, 0, 64 << 10]);
        let mut got = [0u8; 64];
        mem.read_slice(&mut got, GuestAddress(0x10_0000)).unwrap();
        assert_ne!(got, [0u8; 64], "64 bytes of urandom are not all zero");
        let m = rng.metrics();
        assert_eq!(
            (m.requests, m.bytes, m.malformed_requests),
            (2, 64 + (64 << 10), 1)
        );
        assert_eq!(irq.status(), crate::devices::virtio::VIRTIO_MMIO_INT_VRING);
    }
}
