//! The block device on the device event loop: the activate eventfd (queue registration
//! follows activation and reset) and kicks of the request queue.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::DescriptorChain;

#[cfg(test)]
use super::device::BlockError;
use super::device::{Block, BlockMetrics, DEVICE};
use super::request::{
    parse_request, write_status, ExecuteContext, ExecuteError, RequestError, RequestType,
    STATUS_IOERR, STATUS_OK,
};
use super::QUEUE_SIZE;
use crate::devices::virtio::activation::{rate_limiter_event, ChainOutcome};
use crate::devices::virtio::guest_fault::note;
use crate::devices::virtio::rate_limiter::RateLimiter;
use crate::devices::virtio::{DeviceEvent, GuestMemory};

/// The request queue's rate limiter, in event-loop data.
const LIMITER: usize = 0;

impl MutEventSubscriber for Block {
    fn init(&mut self, ops: &mut EventOps) {
        self.virtio.init_loop(ops);
        let timer = Events::with_data(
            self.limiter.timer(),
            rate_limiter_event(LIMITER),
            EventSet::IN,
        );
        if let Err(e) = ops.add(timer) {
            note(
                &mut self.metrics.queue_errors,
                DEVICE,
                &format_args!("cannot register the rate limiter's timer: {e}"),
            );
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match self.virtio.loop_event(&events, ops, &mut self.metrics) {
            DeviceEvent::QueueKick(index) => self.process_queue_event(index),
            // The buckets refilled: a queue parked on them is served again.
            DeviceEvent::RateLimiter(_) => {
                let parked = self.limiter.on_timer();
                if parked {
                    self.process_queue_event(0);
                }
            }
            _ => {}
        }
    }
}

impl Block {
    /// A kick of queue `index`: serve at most one queue's worth of requests; if more are
    /// pending the queue eventfd is re-signalled and the loop comes back after other work.
    /// A request the rate limiter refuses stays in the queue until the limiter's timer.
    pub(super) fn process_queue_event(&mut self, index: usize) {
        let mut ctx = ExecuteContext {
            disk: &self.disk,
            serial: &self.serial,
            flush: self.flush,
            scratch: &mut self.scratch,
        };
        let limiter = &mut self.limiter;
        let budget = usize::from(QUEUE_SIZE);
        let parked = self.virtio.serve_queue_or_defer(
            index,
            budget,
            &mut self.metrics,
            |mem, chain, metrics| handle_chain(mem, chain, &mut ctx, limiter, metrics),
        );
        if parked {
            self.metrics.rate_limited += 1;
        }
    }
}

/// Serves one chain and returns its used length (bytes written to data buffers, plus the
/// status byte when there is one), or defers it when the rate limiter has no room for it.
fn handle_chain(
    mem: &GuestMemory,
    chain: DescriptorChain<&GuestMemory>,
    ctx: &mut ExecuteContext,
    limiter: &mut RateLimiter,
    metrics: &mut BlockMetrics,
) -> ChainOutcome {
    let request = match parse_request(mem, chain, ctx.disk.capacity_sectors()) {
        Ok(request) => request,
        Err(rejected) => {
            let counter = match rejected.error {
                RequestError::OutOfRange { .. } => &mut metrics.out_of_range_requests,
                _ if rejected.status.is_none() => &mut metrics.malformed_without_status,
                _ => &mut metrics.malformed_requests,
            };
            note(counter, DEVICE, &rejected.error);
            let Some(status) = rejected.status else {
                return ChainOutcome::Used(0);
            };
            return ChainOutcome::Used(match write_status(mem, status, STATUS_IOERR) {
                Ok(()) => 1,
                Err(e) => {
                    note(&mut metrics.queue_errors, DEVICE, &e);
                    0
                }
            });
        }
    };
    // Malformed requests above cost nothing: they do no I/O.
    let bytes = match request.request_type {
        RequestType::In | RequestType::Out => request.data_len,
        _ => 0,
    };
    if !limiter.consume(bytes, 1) {
        return ChainOutcome::Deferred;
    }

    let (status, written) = match request.execute(mem, ctx) {
        Ok(written) => {
            match request.request_type {
                RequestType::In => {
                    metrics.read_requests += 1;
                    metrics.read_bytes += request.data_len;
                }
                RequestType::Out => {
                    metrics.write_requests += 1;
                    metrics.write_bytes += request.data_len;
                }
                RequestType::Flush => metrics.flush_requests += 1,
                RequestType::GetId => metrics.get_id_requests += 1,
                RequestType::Unsupported(_) => {}
            }
            (STATUS_OK, written)
        }
        Err(e) => {
            let counter = match e {
                ExecuteError::ReadOnly => &mut metrics.read_only_writes,
                ExecuteError::Disk { .. } => &mut metrics.io_errors,
                ExecuteError::Memory(_) => &mut metrics.queue_errors,
                ExecuteError::FlushNotOffered | ExecuteError::Unsupported(_) => {
                    &mut metrics.unsupported_requests
                }
            };
            note(counter, DEVICE, &e);
            (e.status(), 0)
        }
    };
    ChainOutcome::Used(match write_status(mem, request.status, status) {
        Ok(()) => written.saturating_add(1),
        Err(e) => {
            note(&mut metrics.queue_errors, DEVICE, &e);
            written
        }
    })
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::FileExt;
    use std::sync::{Arc, Mutex};

    use event_manager::{EventManager, SubscriberOps};
    use virtio_bindings::virtio_blk::{
        VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK, VIRTIO_BLK_S_UNSUPP, VIRTIO_BLK_T_FLUSH,
        VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    };
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use virtio_queue::QueueT;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::EventFd;
    use vmm_sys_util::tempfile::TempFile;

    use super::super::request::tests::{write_header, DATA, HDR, STATUS};
    use super::super::BlockConfig;
    use super::*;
    use crate::devices::virtio::descriptor::tests::test_memory;
    use crate::devices::virtio::{
        IrqTrigger, VirtioDevice, VIRTIO_F_RING_EVENT_IDX, VIRTIO_MMIO_INT_VRING,
    };

    /// A disk of `sectors` sectors where byte i holds i % 251.
    fn disk(sectors: u64) -> TempFile {
        let f = TempFile::new().unwrap();
        let bytes: Vec<u8> = (0..sectors * 512).map(|i| (i % 251) as u8).collect();
        f.as_file().write_all(&bytes).unwrap();
        f
    }

    fn block(file: &TempFile, read_only: bool, flush: bool) -> Block {
        Block::new(BlockConfig {
            id: "disk-serial-1".into(),
            path: file.as_path().to_owned(),
            read_only,
            flush,
            rate_limiter: None,
        })
        .unwrap()
    }

    fn activate(
        b: &mut Block,
        mem: &GuestMemory,
        mq: &MockSplitQueue<GuestMemory>,
    ) -> Arc<IrqTrigger> {
        let irq = Arc::new(IrqTrigger::new().unwrap());
        let evt = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        b.activate(
            mem.clone(),
            vec![mq.create_queue().unwrap()],
            vec![evt],
            irq.clone(),
        )
        .unwrap();
        irq
    }

    /// Puts a chain of (addr, len, device-writable) buffers at descriptor `first`.
    fn push(mq: &MockSplitQueue<GuestMemory>, first: u16, bufs: &[(u64, u32, bool)]) {
        let descs: Vec<RawDescriptor> = bufs
            .iter()
            .enumerate()
            .map(|(i, &(addr, len, w))| {
                let last = i + 1 == bufs.len();
                let mut flags = if w { 2 } else { 0 };
                if !last {
                    flags |= 1;
                }
                let next = if last { 0 } else { first + i as u16 + 1 };
                RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
            })
            .collect();
        mq.add_desc_chains(&descs, first).unwrap();
    }

    fn used(mq: &MockSplitQueue<GuestMemory>, i: usize) -> (u32, u32) {
        let e = mq.used().ring().ref_at(i).unwrap().load();
        (e.id(), e.len())
    }

    fn status(mem: &GuestMemory) -> u32 {
        u32::from(mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap())
    }

    #[test]
    fn write_then_read_back_through_the_file() {
        let file = disk(16);
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let mut b = block(&file, false, false);
        let irq = activate(&mut b, &mem, &mq);

        let pattern: Vec<u8> = (0..1024).map(|i| (i * 7 % 256) as u8).collect();
        mem.write_slice(&pattern, GuestAddress(DATA)).unwrap();
        write_header(&mem, HDR, VIRTIO_BLK_T_OUT, 2);
        push(
            &mq,
            0,
            &[(HDR, 16, false), (DATA, 1024, false), (STATUS, 1, true)],
        );
        b.process_queue_event(0);
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK);
        assert_eq!(used(&mq, 0), (0, 1));
        assert_eq!(irq.status(), VIRTIO_MMIO_INT_VRING);
        let mut on_disk = vec![0u8; 1024];
        file.as_file().read_exact_at(&mut on_disk, 1024).unwrap();
        assert_eq!(on_disk, pattern);

        // Read sectors 1..5 into two buffers.
        write_header(&mem, HDR + 0x100, VIRTIO_BLK_T_IN, 1);
        push(
            &mq,
            3,
            &[
                (HDR + 0x100, 16, false),
                (DATA + 0x10000, 512, true),
                (DATA + 0x20000, 1536, true),
                (STATUS, 1, true),
            ],
        );
        b.process_queue_event(0);
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK);
        assert_eq!(used(&mq, 1), (3, 2049));
        let mut got = vec![0u8; 2048];
        mem.read_slice(&mut got[..512], GuestAddress(DATA + 0x10000))
            .unwrap();
        mem.read_slice(&mut got[512..], GuestAddress(DATA + 0x20000))
            .unwrap();
        let mut expected: Vec<u8> = (512..2560u64).map(|i| (i % 251) as u8).collect();
        expected[512..1536].copy_from_slice(&pattern);
        assert_eq!(got, expected);
        let m = b.metrics();
        assert_eq!(
            (
                m.read_requests,
                m.read_bytes,
                m.write_requests,
                m.write_bytes
            ),
            (1, 2048, 1, 1024)
        );
    }

    #[test]
    fn large_requests_move_in_chunks() {
        let file = disk(4096);
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let mut b = block(&file, false, false);
        activate(&mut b, &mem, &mq);
        // 1 MiB in one buffer: eight bounce-buffer chunks.
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 100);
        push(
            &mq,
            0,
            &[
                (HDR, 16, false),
                (0x40_0000, 1 << 20, true),
                (STATUS, 1, true),
            ],
        );
        b.process_queue_event(0);
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK);
        let mut got = vec![0u8; 1 << 20];
        mem.read_slice(&mut got, GuestAddress(0x40_0000)).unwrap();
        let expected: Vec<u8> = (100 * 512..100 * 512 + (1 << 20))
            .map(|i: u64| (i % 251) as u8)
            .collect();
        assert!(got == expected);
    }

    #[test]
    fn read_only_drive_refuses_writes() {
        let file = disk(16);
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let mut b = block(&file, true, false);
        assert_ne!(
            b.avail_features() & (1 << virtio_bindings::virtio_blk::VIRTIO_BLK_F_RO),
            0
        );
        activate(&mut b, &mem, &mq);
        mem.write_slice(&[0xaa; 512], GuestAddress(DATA)).unwrap();
        write_header(&mem, HDR, VIRTIO_BLK_T_OUT, 0);
        push(
            &mq,
            0,
            &[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)],
        );
        b.process_queue_event(0);
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR);
        assert_eq!(used(&mq, 0), (0, 1));
        let mut first = [0u8; 1];
        file.as_file().read_exact_at(&mut first, 0).unwrap();
        assert_eq!(first[0], 0);
        assert_eq!(b.metrics().read_only_writes, 1);
    }

    #[test]
    fn get_id_flush_unsupported_and_out_of_range() {
        let file = disk(16);
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let mut b = block(&file, false, true);
        assert_ne!(
            b.avail_features() & (1 << virtio_bindings::virtio_blk::VIRTIO_BLK_F_FLUSH),
            0
        );
        activate(&mut b, &mem, &mq);

        write_header(&mem, HDR, VIRTIO_BLK_T_GET_ID, 0);
        push(
            &mq,
            0,
            &[(HDR, 16, false), (DATA, 20, true), (STATUS, 1, true)],
        );
        b.process_queue_event(0);
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK);
        assert_eq!(used(&mq, 0), (0, 21));
        let mut id = [0xffu8; 20];
        mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id[..13], b"disk-serial-1");
        assert_eq!(id[13..], [0; 7]);

        write_header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
        push(&mq, 3, &[(HDR, 16, false), (STATUS, 1, true)]);
        b.process_queue_event(0);
        assert_eq!(status(&mem), VIRTIO_BLK_S_OK);

        write_header(&mem, HDR, 0x1234, 0);
        push(&mq, 5, &[(HDR, 16, false), (STATUS, 1, true)]);
        b.process_queue_event(0);
        assert_eq!(status(&mem), VIRTIO_BLK_S_UNSUPP);

        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 16);
        push(
            &mq,
            7,
            &[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, true)],
        );
        b.process_queue_event(0);
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR);

        let m = b.metrics();
        assert_eq!(
            (
                m.get_id_requests,
                m.flush_requests,
                m.unsupported_requests,
                m.out_of_range_requests
            ),
            (1, 1, 1, 1)
        );
        assert_eq!(mq.used().idx().load(), 4);
    }

    #[test]
    fn flush_is_unsupported_when_not_offered() {
        let file = disk(16);
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let mut b = block(&file, false, false);
        activate(&mut b, &mem, &mq);
        write_header(&mem, HDR, VIRTIO_BLK_T_FLUSH, 0);
        push(&mq, 0, &[(HDR, 16, false), (STATUS, 1, true)]);
        b.process_queue_event(0);
        assert_eq!(status(&mem), VIRTIO_BLK_S_UNSUPP);
    }

    #[test]
    fn malformed_chains_are_returned_and_counted() {
        let file = disk(16);
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let mut b = block(&file, false, false);
        activate(&mut b, &mem, &mq);
        mem.write_obj(0x55u8, GuestAddress(STATUS)).unwrap();
        write_header(&mem, HDR, VIRTIO_BLK_T_IN, 0);
        // Status not writable: nothing to answer in, the chain comes back with length 0.
        push(
            &mq,
            0,
            &[(HDR, 16, false), (DATA, 512, true), (STATUS, 1, false)],
        );
        // Data in the wrong direction: IOERR.
        push(
            &mq,
            3,
            &[(HDR, 16, false), (DATA, 512, false), (STATUS, 1, true)],
        );
        // Head index pointing outside the descriptor table.
        mq.avail().ring().ref_at(2).unwrap().store(200);
        mq.avail().idx().store(3);
        b.process_queue_event(0);
        assert_eq!(mq.used().idx().load(), 2);
        assert_eq!(used(&mq, 0), (0, 0));
        assert_eq!(used(&mq, 1), (3, 1));
        assert_eq!(status(&mem), VIRTIO_BLK_S_IOERR);
        let m = b.metrics();
        assert_eq!((m.malformed_without_status, m.malformed_requests), (1, 1));
        // The bad head index can go nowhere: skipped and counted, not a panic.
        assert_eq!(m.queue_errors, 1);
    }

    #[test]
    fn event_idx_suppresses_interrupts_the_driver_did_not_ask_for() {
        let file = disk(16);
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let mut b = block(&file, false, false);
        let irq = Arc::new(IrqTrigger::new().unwrap());
        let mut q: virtio_queue::Queue = mq.create_queue().unwrap();
        q.set_event_idx(true);
        let evt = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        b.set_acked_features(1 << VIRTIO_F_RING_EVENT_IDX);
        b.activate(mem.clone(), vec![q], vec![evt], irq.clone())
            .unwrap();
        // used_event (after the avail ring) = 5: the driver wants an interrupt once the
        // 6th chain is used.
        let used_event = mq.avail_addr().0 + 4 + 2 * 16;
        mem.write_obj(5u16, GuestAddress(used_event)).unwrap();
        write_header(&mem, HDR, VIRTIO_BLK_T_GET_ID, 0);
        push(
            &mq,
            0,
            &[(HDR, 16, false), (DATA, 20, true), (STATUS, 1, true)],
        );
        b.process_queue_event(0);
        assert_eq!(mq.used().idx().load(), 1);
        assert_eq!(irq.status(), 0);
        // The device published avail_event = next_avail so the driver's next kick comes.
        let avail_event = mq.used_addr().0 + 4 + 8 * 16;
        assert_eq!(mem.read_obj::<u16>(GuestAddress(avail_event)).unwrap(), 1);
    }

    #[test]
    fn runs_on_the_event_manager_across_activation_and_reset() {
        let file = disk(16);
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let dev = Arc::new(Mutex::new(block(&file, false, false)));
        let mut em = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
        em.add_subscriber(dev.clone());

        let evt = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let irq = Arc::new(IrqTrigger::new().unwrap());
        dev.lock()
            .unwrap()
            .activate(
                mem.clone(),
                vec![mq.create_queue().unwrap()],
                vec![evt.clone()],
                irq.clone(),
            )
            .unwrap();
        // The activate eventfd: the loop registers the queue eventfd.
        assert_eq!(em.run_with_timeout(100).unwrap(), 1);

        write_header(&mem, HDR, VIRTIO_BLK_T_GET_ID, 0);
        push(
            &mq,
            0,
            &[(HDR, 16, false), (DATA, 20, true), (STATUS, 1, true)],
        );
        evt.write(1).unwrap();
        assert_eq!(em.run_with_timeout(100).unwrap(), 1);
        assert_eq!(mq.used().idx().load(), 1);
        assert_eq!(irq.irq_evt().read().unwrap(), 1);

        // Reset: the loop drops the queue registration, so kicks are not dispatched.
        assert!(dev.lock().unwrap().reset());
        assert_eq!(em.run_with_timeout(100).unwrap(), 1);
        evt.write(1).unwrap();
        assert_eq!(em.run_with_timeout(50).unwrap(), 0);

        // Re-activation registers it again; the pending kick is then served (nothing new
        // in the fresh queue, so no used entry).
        let mq2 = MockSplitQueue::create(&mem, GuestAddress(0x8_0000), 16);
        dev.lock()
            .unwrap()
            .activate(
                mem.clone(),
                vec![mq2.create_queue().unwrap()],
                vec![evt.clone()],
                irq,
            )
            .unwrap();
        em.run_with_timeout(100).unwrap();
        em.run_with_timeout(100).unwrap();
        assert!(dev.lock().unwrap().is_activated());
        assert_eq!(mq2.used().idx().load(), 0);
    }

    #[test]
    fn rate_limited_requests_wait_in_the_ring_for_the_refill_timer() {
        use crate::config::{RateLimiterConfig, TokenBucketConfig};
        let file = disk(16);
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let mut b = block(&file, false, false);
        // One request per 100 ms.
        let one_op = RateLimiterConfig {
            bandwidth: None,
            ops: Some(TokenBucketConfig {
                size: 1,
                one_time_burst: None,
                refill_time: 100,
            }),
        };
        b.update_rate_limiter(&one_op).unwrap();
        let dev = Arc::new(Mutex::new(b));
        let mut em = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
        em.add_subscriber(dev.clone());
        let evt = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        dev.lock()
            .unwrap()
            .activate(
                mem.clone(),
                vec![mq.create_queue().unwrap()],
                vec![evt.clone()],
                Arc::new(IrqTrigger::new().unwrap()),
            )
            .unwrap();
        em.run_with_timeout(100).unwrap();
        for i in 0..3u16 {
            let hdr = HDR + u64::from(i) * 0x100;
            write_header(&mem, hdr, VIRTIO_BLK_T_GET_ID, 0);
            push(
                &mq,
                i * 3,
                &[(hdr, 16, false), (DATA, 20, true), (STATUS, 1, true)],
            );
        }
        evt.write(1).unwrap();
        em.run_with_timeout(100).unwrap();
        assert_eq!(mq.used().idx().load(), 1, "one request per refill");
        assert_eq!(dev.lock().unwrap().metrics().rate_limited, 1);
        // The limiter's timer, not a kick, brings the next ones: a handful of wake-ups,
        // not a busy loop.
        let t0 = std::time::Instant::now();
        let mut wakeups = 0;
        while mq.used().idx().load() < 3 && t0.elapsed() < std::time::Duration::from_secs(5) {
            wakeups += em.run_with_timeout(200).unwrap();
        }
        assert_eq!(mq.used().idx().load(), 3);
        assert!(wakeups <= 4, "{wakeups} events for two refills");
        assert!(t0.elapsed() >= std::time::Duration::from_millis(150));

        // Lifting the limit serves what is parked at once (the update kicks the queue).
        for i in 3..5u16 {
            write_header(&mem, HDR, VIRTIO_BLK_T_GET_ID, 0);
            push(
                &mq,
                i * 3,
                &[(HDR, 16, false), (DATA, 20, true), (STATUS, 1, true)],
            );
        }
        evt.write(1).unwrap();
        em.run_with_timeout(100).unwrap();
        let off = RateLimiterConfig {
            bandwidth: None,
            ops: Some(TokenBucketConfig::default()),
        };
        dev.lock().unwrap().update_rate_limiter(&off).unwrap();
        em.run_with_timeout(100).unwrap();
        assert_eq!(mq.used().idx().load(), 5);
    }

    #[test]
    fn bad_configs_are_refused() {
        let err = Block::new(BlockConfig {
            id: "x".repeat(21),
            path: "/nonexistent".into(),
            read_only: true,
            flush: false,
            rate_limiter: None,
        });
        assert!(matches!(err, Err(BlockError::IdTooLong { len: 21, .. })));
        let err = Block::new(BlockConfig {
            id: "x".into(),
            path: "/nonexistent/disk.img".into(),
            read_only: true,
            flush: false,
            rate_limiter: None,
        });
        assert!(matches!(err, Err(BlockError::Open { .. })));
    }
}
