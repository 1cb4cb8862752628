//! The net device on the device event loop: activation, the tap becoming readable
//! (reception), kicks of the receive queue (new buffers) and of the transmit queue.
//!
//! Reception reads the tap only while the guest has buffers: when it runs out, the tap is
//! taken off the epoll set (the frame already read waits in `rx_pending`, the rest in the
//! tap's own queue) and comes back when the driver kicks the receive queue. Each wake-up
//! handles a bounded number of frames; the tap is level-triggered, so the loop comes back
//! for the rest after serving other devices. Each direction has a rate limiter: an empty
//! receive limiter takes the tap off the epoll set the same way, an empty transmit limiter
//! leaves the frame in the transmit queue, and the limiter's timer resumes either.

use event_manager::{EventOps, EventSet, Events, MutEventSubscriber};
use virtio_queue::{QueueOwnedT, QueueT};

use super::device::{Net, RxState, DEVICE};
use super::request::{parse_rx, parse_tx, BufferError};
use super::{QUEUE_SIZE, RX_QUEUE, TX_QUEUE, VNET_HDR_LEN};
use crate::devices::virtio::activation::{rate_limiter_event, ChainOutcome, EVENT_BACKEND};
use crate::devices::virtio::guest_fault::note;
use crate::devices::virtio::DeviceEvent;
/// The rate limiters, in event-loop data: one per queue, numbered like the queues.
const RX_LIMITER: usize = RX_QUEUE;
const TX_LIMITER: usize = TX_QUEUE;
/// Tap reads (or receive chains consumed) per wake-up.
const RX_BUDGET: usize = 256;

/// Why a pass of reception stopped.
enum RxStop {
    /// The budget ran out, or the tap has nothing more: wait for the next EPOLLIN.
    Poll,
    /// The guest has no receive buffer: wait for a receive-queue kick.
    NoBuffers,
    /// The tap or the receive ring is broken: stop until the device is reset.
    Broken,
    /// The receive rate limiter is empty: wait for its timer.
    Throttled,
}

impl MutEventSubscriber for Net {
    fn init(&mut self, ops: &mut EventOps) {
        self.virtio.init_loop(ops);
        for (index, limiter) in [
            (RX_LIMITER, &self.rx_limiter),
            (TX_LIMITER, &self.tx_limiter),
        ] {
            let timer = Events::with_data(limiter.timer(), rate_limiter_event(index), EventSet::IN);
            if let Err(e) = ops.add(timer) {
                note(
                    &mut self.metrics.queue_errors,
                    DEVICE,
                    &format_args!("cannot register a rate limiter's timer: {e}"),
                );
            }
        }
    }

    fn process(&mut self, events: Events, ops: &mut EventOps) {
        match self.virtio.loop_event(&events, ops, &mut self.metrics) {
            DeviceEvent::Activation => self.rearm_rx(ops),
            DeviceEvent::Backend(set) if set.intersects(EventSet::ERROR | EventSet::HANG_UP) => {
                note(
                    &mut self.metrics.rx_tap_errors,
                    DEVICE,
                    &"tap reported an error or hang-up",
                );
                self.set_rx_state(ops, RxState::Failed);
            }
            DeviceEvent::Backend(_) => self.process_rx(ops),
            DeviceEvent::QueueKick(RX_QUEUE) => self.process_rx_kick(ops),
            DeviceEvent::QueueKick(TX_QUEUE) => self.process_tx(),
            // The buckets refilled: traffic parked on them moves again.
            DeviceEvent::RateLimiter(RX_LIMITER) => {
                let parked = self.rx_limiter.on_timer();
                if parked {
                    self.resume_rx(ops);
                }
            }
            DeviceEvent::RateLimiter(TX_LIMITER) => {
                let parked = self.tx_limiter.on_timer();
                if parked {
                    self.process_tx();
                }
            }
            DeviceEvent::QueueKick(_) | DeviceEvent::RateLimiter(_) | DeviceEvent::Unknown => {}
        }
    }
}

impl Net {
    /// Moves reception to `state`, registering or unregistering the tap as needed.
    fn set_rx_state(&mut self, ops: &mut EventOps, state: RxState) {
        let tap_events = Events::with_data(&self.tap, EVENT_BACKEND, EventSet::IN);
        let was_polling = self.rx_state == RxState::Polling;
        let polling = state == RxState::Polling;
        let result = match (was_polling, polling) {
            (true, false) => ops.remove(tap_events),
            (false, true) => ops.add(tap_events),
            _ => Ok(()),
        };
        match result {
            Ok(()) => self.rx_state = state,
            Err(e) => {
                note(
                    &mut self.metrics.queue_errors,
                    DEVICE,
                    &format_args!("tap registration: {e}"),
                );
                self.rx_state = if was_polling {
                    RxState::Polling
                } else {
                    RxState::Failed
                };
            }
        }
    }

    /// After activation or reset: poll the tap exactly when the device is active.
    pub(super) fn rearm_rx(&mut self, ops: &mut EventOps) {
        if !self.rx_rearm {
            return;
        }
        self.rx_rearm = false;
        if self.virtio.is_activated() {
            self.poll_tap(ops);
        } else {
            self.set_rx_state(ops, RxState::Idle);
        }
    }

    /// The driver added receive buffers (or just kicked, or a rate limit changed): resume
    /// reading the tap if we were waiting for buffers or for the limiter (which refuses
    /// again at once if it is still empty).
    pub(super) fn process_rx_kick(&mut self, ops: &mut EventOps) {
        if !self.virtio.is_activated() {
            return;
        }
        self.virtio.drain_kick(RX_QUEUE, &mut self.metrics);
        self.resume_rx(ops);
    }

    /// Reception was paused for buffers or for the limiter: read the tap again.
    fn resume_rx(&mut self, ops: &mut EventOps) {
        if !self.virtio.is_activated()
            || !matches!(
                self.rx_state,
                RxState::WaitingForBuffers | RxState::Throttled
            )
        {
            return;
        }
        self.poll_tap(ops);
        // The frame we held back may be the only one: the tap will not wake us for it.
        self.process_rx(ops);
    }

    /// Reads the tap for the active queues. Receive kicks only matter while we wait for
    /// buffers, so they are turned off.
    fn poll_tap(&mut self, ops: &mut EventOps) {
        if let Some(active) = self.virtio.active_mut() {
            if let Err(e) = active.queues[RX_QUEUE].disable_notification(&active.mem) {
                note(&mut self.metrics.queue_errors, DEVICE, &e);
            }
        }
        self.set_rx_state(ops, RxState::Polling);
    }

    /// Moves frames from the tap into receive buffers, at most [`RX_BUDGET`] steps.
    pub(super) fn process_rx(&mut self, ops: &mut EventOps) {
        if !self.virtio.is_activated() {
            self.rx_rearm = true;
            self.rearm_rx(ops);
            return;
        }
        if self.rx_state != RxState::Polling {
            return;
        }
        let (added, stop) = self.receive_frames();
        if let Some(active) = self.virtio.active_mut() {
            if let Err(e) = active.signal_used(RX_QUEUE, added) {
                note(&mut self.metrics.queue_errors, DEVICE, &e);
            }
        }
        match stop {
            RxStop::Poll => {}
            RxStop::NoBuffers => {
                note(
                    &mut self.metrics.rx_no_buffer_stalls,
                    DEVICE,
                    &"no receive buffers: reception paused until the driver adds some",
                );
                self.set_rx_state(ops, RxState::WaitingForBuffers);
            }
            RxStop::Broken => self.set_rx_state(ops, RxState::Failed),
            RxStop::Throttled => {
                self.metrics.rx_rate_limited += 1;
                self.set_rx_state(ops, RxState::Throttled);
            }
        }
    }

    /// The receive loop proper; returns the used entries added and why it stopped.
    fn receive_frames(&mut self) -> (usize, RxStop) {
        let Some(active) = self.virtio.active_mut() else {
            return (0, RxStop::Poll);
        };
        let mem = &active.mem;
        let queue = &mut active.queues[RX_QUEUE];
        let metrics = &mut self.metrics;
        let mut added = 0;
        for _ in 0..RX_BUDGET {
            let len = match self.rx_pending {
                Some(len) => len,
                None => match self.tap.read_frame(&mut self.rx_frame) {
                    Ok(len) if len >= VNET_HDR_LEN => len,
                    Ok(len) => {
                        note(
                            &mut metrics.rx_tap_errors,
                            DEVICE,
                            &format_args!("{len}-byte read from the tap"),
                        );
                        continue;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        return (added, RxStop::Poll)
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        note(
                            &mut metrics.rx_tap_errors,
                            DEVICE,
                            &format_args!("tap read: {e}"),
                        );
                        return (added, RxStop::Broken);
                    }
                },
            };
            self.rx_pending = Some(len);
            // Paid once per frame, when it is first tried: a frame that waits for a buffer
            // is not charged again.
            if !self.rx_pending_paid {
                if !self.rx_limiter.consume((len - VNET_HDR_LEN) as u64, 1) {
                    return (added, RxStop::Throttled);
                }
                self.rx_pending_paid = true;
            }

            let chain = match queue.iter(mem) {
                Ok(mut avail) => avail.next(),
                Err(e) => {
                    note(&mut metrics.queue_errors, DEVICE, &e);
                    return (added, RxStop::Broken);
                }
            };
            let Some(chain) = chain else {
                // virtio 1.2 §2.7.10: ask for a kick, then look again in case the driver
                // added buffers before it could see the request.
                match queue.enable_notification(mem) {
                    Ok(true) => {
                        // Buffers arrived after all: back to ignoring receive kicks.
                        if let Err(e) = queue.disable_notification(mem) {
                            note(&mut metrics.queue_errors, DEVICE, &e);
                        }
                        continue;
                    }
                    Ok(false) => return (added, RxStop::NoBuffers),
                    Err(e) => {
                        note(&mut metrics.queue_errors, DEVICE, &e);
                        return (added, RxStop::Broken);
                    }
                }
            };
            let head = chain.head_index();
            if head >= queue.size() {
                // Can be neither used nor returned; checked here because virtio-queue
                // would log every such add_used.
                note(
                    &mut metrics.queue_errors,
                    DEVICE,
                    &"available ring names a descriptor beyond the queue size",
                );
                continue;
            }
            let used = match parse_rx(mem, chain) {
                Ok(buffer) => match buffer.write_frame(mem, &mut self.rx_frame[..len]) {
                    Ok(Some(n)) => {
                        self.rx_pending = None;
                        self.rx_pending_paid = false;
                        metrics.rx_frames += 1;
                        metrics.rx_bytes += (n - VNET_HDR_LEN) as u64;
                        n
                    }
                    Ok(None) => {
                        // The frame is bigger than the buffer: drop the frame, keep the
                        // buffer for the next one.
                        self.rx_pending = None;
                        self.rx_pending_paid = false;
                        note(
                            &mut metrics.rx_dropped_too_big,
                            DEVICE,
                            &format_args!("{len}-byte frame, {}-byte buffer", buffer.capacity),
                        );
                        queue.go_to_previous_position();
                        continue;
                    }
                    Err(e) => {
                        note(&mut metrics.queue_errors, DEVICE, &e);
                        0
                    }
                },
                Err(e) => {
                    // Unusable buffer: give it back empty; the frame tries the next one.
                    note(&mut metrics.rx_malformed_buffers, DEVICE, &e);
                    0
                }
            };
            if let Err(e) = queue.add_used(mem, head, used as u32) {
                note(&mut metrics.queue_errors, DEVICE, &e);
                return (added, RxStop::Broken);
            }
            added += 1;
        }
        (added, RxStop::Poll)
    }

    /// Sends every queued transmit chain (at most a queue's worth per kick) to the tap.
    /// A chain that cannot be sent is dropped and counted; the guest always gets it back.
    /// A frame the transmit limiter refuses stays in the queue until the limiter refills.
    pub(super) fn process_tx(&mut self) {
        let tap = &self.tap;
        let buf = &mut self.tx_frame[..];
        let limiter = &mut self.tx_limiter;
        let budget = usize::from(QUEUE_SIZE);
        let parked = self.virtio.serve_queue_or_defer(
            TX_QUEUE,
            budget,
            &mut self.metrics,
            |mem, chain, metrics| {
                let frame = match parse_tx(mem, chain) {
                    Ok(frame) => frame,
                    Err(e @ BufferError::TxTooLong { .. }) => {
                        note(&mut metrics.tx_dropped_oversize, DEVICE, &e);
                        return ChainOutcome::Used(0);
                    }
                    Err(e) => {
                        note(&mut metrics.tx_malformed_chains, DEVICE, &e);
                        return ChainOutcome::Used(0);
                    }
                };
                if !limiter.consume(frame.len.saturating_sub(VNET_HDR_LEN) as u64, 1) {
                    return ChainOutcome::Deferred;
                }
                match frame.gather(mem, buf) {
                    Ok(bytes) => match tap.write_frame(bytes) {
                        Ok(_) => {
                            metrics.tx_frames += 1;
                            metrics.tx_bytes += bytes.len().saturating_sub(VNET_HDR_LEN) as u64;
                        }
                        Err(e) => note(
                            &mut metrics.tx_tap_errors,
                            DEVICE,
                            &format_args!("tap write: {e}"),
                        ),
                    },
                    Err(e) => note(&mut metrics.queue_errors, DEVICE, &e),
                }
                // The device writes nothing into a transmit buffer.
                ChainOutcome::Used(0)
            },
        );
        if parked {
            self.metrics.tx_rate_limited += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::UdpSocket;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use event_manager::{EventManager, SubscriberOps};
    use virtio_queue::desc::{split::Descriptor as SplitDescriptor, RawDescriptor};
    use virtio_queue::mock::MockSplitQueue;
    use vm_memory::{Bytes, GuestAddress};
    use vmm_sys_util::eventfd::EventFd;

    use super::super::tap::tests::TestTap;
    use super::super::NetConfig;
    use super::*;
    use crate::devices::virtio::descriptor::tests::test_memory;
    use crate::devices::virtio::{GuestMemory, IrqTrigger, VirtioDevice, VIRTIO_F_VERSION_1};

    const RXQ: u64 = 0;
    const TXQ: u64 = 0x8000;

    fn net_on(tap: &TestTap) -> Net {
        Net::new(NetConfig {
            id: "eth0".into(),
            tap_name: tap.name.clone(),
            mac: Some([0x02, 0, 0, 0, 0, 7]),
            rx_rate_limiter: None,
            tx_rate_limiter: None,
        })
        .unwrap()
    }

    fn activate(
        net: &mut dyn VirtioDevice,
        mem: &GuestMemory,
        rx: &MockSplitQueue<GuestMemory>,
        tx: &MockSplitQueue<GuestMemory>,
    ) -> Vec<Arc<EventFd>> {
        let evts: Vec<_> = (0..2)
            .map(|_| Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap()))
            .collect();
        net.set_acked_features(net.avail_features());
        net.activate(
            mem.clone(),
            vec![rx.create_queue().unwrap(), tx.create_queue().unwrap()],
            evts.clone(),
            Arc::new(IrqTrigger::new().unwrap()),
        )
        .unwrap();
        evts
    }

    fn stat(tap: &TestTap, name: &str) -> u64 {
        std::fs::read_to_string(format!("/sys/class/net/{}/statistics/{name}", tap.name))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    /// Single-descriptor chains (addr, len, writable) at descriptor indexes `first..`.
    fn push(q: &MockSplitQueue<GuestMemory>, first: u16, bufs: &[(u64, u32, bool)]) {
        let descs: Vec<_> = bufs
            .iter()
            .map(|&(a, l, w)| {
                RawDescriptor::from(SplitDescriptor::new(a, l, if w { 2 } else { 0 }, 0))
            })
            .collect();
        q.add_desc_chains(&descs, first).unwrap();
    }

    #[test]
    fn offloads_follow_the_guest_features() {
        use virtio_bindings::virtio_net::*;
        assert_eq!(Net::tap_offloads(1 << VIRTIO_NET_F_GUEST_TSO4), 0);
        let all = 1 << VIRTIO_NET_F_GUEST_CSUM
            | 1 << VIRTIO_NET_F_GUEST_TSO4
            | 1 << VIRTIO_NET_F_GUEST_TSO6
            | 1 << VIRTIO_NET_F_GUEST_ECN;
        assert_eq!(
            Net::tap_offloads(all),
            libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6 | libc::TUN_F_TSO_ECN
        );
        assert_eq!(
            Net::tap_offloads(1 << VIRTIO_NET_F_GUEST_CSUM | 1 << VIRTIO_NET_F_GUEST_ECN),
            libc::TUN_F_CSUM
        );
    }

    #[test]
    fn transmits_to_the_tap_and_drops_bad_chains() {
        let Some(tap) = TestTap::create("t") else {
            eprintln!("skipping: cannot create taps here");
            return;
        };
        tap.ip(&["link", "set", &tap.name, "up"]);
        let mut net = net_on(&tap);
        assert_eq!(net.device_type(), crate::devices::virtio::TYPE_NET);
        assert_ne!(net.avail_features() & (1 << VIRTIO_F_VERSION_1), 0);
        let mut cfg = [0u8; 8];
        net.read_config(0, &mut cfg);
        assert_eq!(cfg, [2, 0, 0, 0, 0, 7, 1, 0]);

        let mem = test_memory();
        let (rx, tx) = mock_queues(&mem);
        activate(&mut net, &mem, &rx, &tx);

        // A broadcast frame of the local experimental ethertype, after a zero vnet header.
        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 7, 0x88, 0xb5]);
        frame.resize(12 + 60, 0xab);
        mem.write_slice(&frame, GuestAddress(0x10_0000)).unwrap();
        let before = stat(&tap, "rx_packets");
        push(
            &tx,
            0,
            &[
                (0x10_0000, frame.len() as u32, false),
                // Over 64 KiB + header.
                (0x20_0000, 70_000, false),
                // Device-writable: not a transmit buffer.
                (0x10_0000, 72, true),
            ],
        );
        net.process_tx();
        assert_eq!(tx.used().idx().load(), 3);
        for i in 0..3 {
            assert_eq!(tx.used().ring().ref_at(i).unwrap().load().len(), 0);
        }
        let m = net.metrics();
        assert_eq!(
            (
                m.tx_frames,
                m.tx_bytes,
                m.tx_dropped_oversize,
                m.tx_malformed_chains
            ),
            (1, 60, 1, 1)
        );
        assert_eq!(stat(&tap, "rx_packets"), before + 1);
    }

    /// Makes the host send an ARP request out of the tap by sending to an unknown
    /// neighbour on the tap's subnet.
    fn provoke_arp(tap: &TestTap, index: u32) {
        let id = (std::process::id() * 4 + index) % 16384;
        let (c, d) = (id / 64, (id % 64) * 4);
        let _ = std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", tap.name),
            "1",
        );
        tap.ip(&[
            "addr",
            "add",
            &format!("198.18.{c}.{}/30", d + 1),
            "dev",
            &tap.name,
        ]);
        tap.ip(&["link", "set", &tap.name, "up"]);
        let sock = UdpSocket::bind(format!("198.18.{c}.{}:0", d + 1)).unwrap();
        sock.send_to(b"x", format!("198.18.{c}.{}:9", d + 2))
            .unwrap();
    }

    type Loop = EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>>;

    /// The receive and transmit queues, apart in guest memory.
    fn mock_queues(
        mem: &GuestMemory,
    ) -> (
        MockSplitQueue<'_, GuestMemory>,
        MockSplitQueue<'_, GuestMemory>,
    ) {
        (
            MockSplitQueue::create(mem, GuestAddress(RXQ), 16),
            MockSplitQueue::create(mem, GuestAddress(TXQ), 16),
        )
    }

    /// A device on `tap` with its own event loop, activated on `rx` and `tx`, once the loop
    /// has seen the activation. Returns the queues' kick eventfds too.
    fn active_on_loop(
        tap: &TestTap,
        mem: &GuestMemory,
        rx: &MockSplitQueue<GuestMemory>,
        tx: &MockSplitQueue<GuestMemory>,
    ) -> (Arc<Mutex<Net>>, Loop, Vec<Arc<EventFd>>) {
        let net = Arc::new(Mutex::new(net_on(tap)));
        let mut em = Loop::new().unwrap();
        em.add_subscriber(net.clone());
        let evts = activate(&mut *net.lock().unwrap(), mem, rx, tx);
        em.run_with_timeout(100).unwrap();
        assert_eq!(net.lock().unwrap().rx_state, RxState::Polling);
        (net, em, evts)
    }

    fn run_until(em: &mut Loop, net: &Arc<Mutex<Net>>, done: impl Fn(&Net) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !done(&net.lock().unwrap()) {
            assert!(
                Instant::now() < deadline,
                "timed out; metrics {:?}",
                net.lock().unwrap().metrics()
            );
            em.run_with_timeout(100).unwrap();
        }
    }

    #[test]
    fn receive_waits_for_buffers_then_delivers() {
        let Some(tap) = TestTap::create("r") else {
            eprintln!("skipping: cannot create taps here");
            return;
        };
        let mem = test_memory();
        let (rx, tx) = mock_queues(&mem);
        let (net, mut em, evts) = active_on_loop(&tap, &mem, &rx, &tx);

        // No buffers yet: the first frame is read, then reception pauses.
        provoke_arp(&tap, 0);
        run_until(&mut em, &net, |n| n.metrics().rx_no_buffer_stalls >= 1);
        assert_eq!(net.lock().unwrap().rx_state, RxState::WaitingForBuffers);
        assert!(net.lock().unwrap().rx_pending.is_some());
        assert_eq!(rx.used().idx().load(), 0);

        // The driver posts buffers (one split in two) and kicks.
        let bufs: Vec<_> = (0..4u64)
            .map(|i| (0x10_0000 + i * 0x1000, 2048u32, true))
            .collect();
        push(&rx, 0, &bufs);
        evts[RX_QUEUE].write(1).unwrap();
        run_until(&mut em, &net, |n| n.metrics().rx_frames >= 1);
        let delivered = rx.used().idx().load();
        assert!(delivered >= 1);
        let mut saw_arp = false;
        for i in 0..delivered {
            let used = rx.used().ring().ref_at(i as usize).unwrap().load();
            let addr = GuestAddress(0x10_0000 + u64::from(used.id()) * 0x1000);
            let mut head = [0u8; 12 + 14];
            mem.read_slice(&mut head, addr).unwrap();
            assert_eq!(&head[10..12], &[1, 0], "num_buffers");
            assert!(used.len() as usize >= head.len());
            saw_arp |= head[12 + 12..] == [0x08, 0x06];
        }
        assert!(saw_arp, "the ARP request reached the guest");
        let m = net.lock().unwrap().metrics();
        assert_eq!(m.rx_frames, u64::from(delivered));
        assert_eq!(m.rx_dropped_too_big, 0);
    }

    #[test]
    fn frames_bigger_than_the_buffers_are_dropped_and_counted() {
        let Some(tap) = TestTap::create("b") else {
            eprintln!("skipping: cannot create taps here");
            return;
        };
        let mem = test_memory();
        let (rx, tx) = mock_queues(&mem);
        let (net, mut em, _) = active_on_loop(&tap, &mem, &rx, &tx);
        // Room for the header and 20 bytes: an ARP frame (42 bytes) does not fit. Also a
        // device-readable buffer, which is returned empty.
        push(&rx, 0, &[(0x10_0000, 8, false), (0x20_0000, 32, true)]);
        provoke_arp(&tap, 1);
        run_until(&mut em, &net, |n| n.metrics().rx_dropped_too_big >= 1);
        let m = net.lock().unwrap().metrics();
        assert_eq!((m.rx_frames, m.rx_malformed_buffers), (0, 1));
        // The readable buffer came back empty; the small one stays with the device.
        assert_eq!(rx.used().idx().load(), 1);
        assert_eq!(rx.used().ring().ref_at(0).unwrap().load().len(), 0);
    }

    #[test]
    fn rate_limits_park_reception_and_transmission_until_lifted() {
        use crate::config::{RateLimiterConfig, TokenBucketConfig};
        let Some(tap) = TestTap::create("l") else {
            eprintln!("skipping: cannot create taps here");
            return;
        };
        let mem = test_memory();
        let (rx, tx) = mock_queues(&mem);
        let (net, mut em, evts) = active_on_loop(&tap, &mem, &rx, &tx);
        // One frame each way, then nothing for a minute.
        let one_frame = RateLimiterConfig {
            bandwidth: None,
            ops: Some(TokenBucketConfig {
                size: 1,
                one_time_burst: None,
                refill_time: 60_000,
            }),
        };
        net.lock()
            .unwrap()
            .update_rate_limiters(Some(&one_frame), Some(&one_frame))
            .unwrap();
        em.run_with_timeout(100).unwrap();

        let bufs: Vec<_> = (0..4u64)
            .map(|i| (0x10_0000 + i * 0x1000, 2048u32, true))
            .collect();
        push(&rx, 0, &bufs);
        provoke_arp(&tap, 2);
        provoke_arp(&tap, 3);
        run_until(&mut em, &net, |n| n.metrics().rx_rate_limited >= 1);
        assert_eq!(net.lock().unwrap().rx_state, RxState::Throttled);
        assert_eq!(net.lock().unwrap().metrics().rx_frames, 1);

        let mut frame = vec![0u8; 12];
        frame.extend_from_slice(&[0xff; 6]);
        frame.extend_from_slice(&[2, 0, 0, 0, 0, 7, 0x88, 0xb5]);
        frame.resize(12 + 60, 0xab);
        mem.write_slice(&frame, GuestAddress(0x30_0000)).unwrap();
        let len = frame.len() as u32;
        push(&tx, 0, &[(0x30_0000, len, false), (0x30_0000, len, false)]);
        evts[TX_QUEUE].write(1).unwrap();
        run_until(&mut em, &net, |n| n.metrics().tx_rate_limited >= 1);
        assert_eq!(net.lock().unwrap().metrics().tx_frames, 1);
        assert_eq!(
            tx.used().idx().load(),
            1,
            "the second frame waits in the ring"
        );

        // Lifting the limits moves what was parked at once, without waiting for a refill.
        let off = RateLimiterConfig {
            bandwidth: None,
            ops: Some(TokenBucketConfig::default()),
        };
        net.lock()
            .unwrap()
            .update_rate_limiters(Some(&off), Some(&off))
            .unwrap();
        run_until(&mut em, &net, |n| {
            n.metrics().rx_frames >= 2 && n.metrics().tx_frames >= 2
        });
        assert_eq!(net.lock().unwrap().rx_state, RxState::Polling);
        assert_eq!(tx.used().idx().load(), 2);
    }

    #[test]
    fn reset_stops_polling_the_tap() {
        let Some(tap) = TestTap::create("s") else {
            eprintln!("skipping: cannot create taps here");
            return;
        };
        let mem = test_memory();
        let (rx, tx) = mock_queues(&mem);
        let (net, mut em, _) = active_on_loop(&tap, &mem, &rx, &tx);
        assert!(net.lock().unwrap().reset());
        em.run_with_timeout(100).unwrap();
        assert_eq!(net.lock().unwrap().rx_state, RxState::Idle);
        // A frame on the tap no longer wakes the loop.
        provoke_arp(&tap, 2);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(em.run_with_timeout(100).unwrap(), 0);
        // Activating again resumes reception.
        activate(&mut *net.lock().unwrap(), &mem, &rx, &tx);
        em.run_with_timeout(100).unwrap();
        assert_eq!(net.lock().unwrap().rx_state, RxState::Polling);
    }
}
