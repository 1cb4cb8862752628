//! What every virtio device keeps, whatever its type: the features it offers and the driver
//! accepted, its config space, its activation (the [`ActiveQueues`] it got on DRIVER_OK) and
//! the event-loop side that follows it (the activate eventfd and the queue registrations).
//! A device embeds one [`VirtioState`] and keeps only what is its own: parsing its requests
//! and talking to its backend. [`VirtioDevice`]'s default methods are written on top of it.
//!
//! [`VirtioDevice`]: super::VirtioDevice

use event_manager::{EventOps, EventSet, Events};
use virtio_queue::DescriptorChain;
use vmm_sys_util::eventfd::EventFd;

use super::activation::{
    drain_queue_kick, queue_of_event, rate_limiter_of_event, ActiveQueues, ChainOutcome,
    LoopRegistrations, EVENT_ACTIVATE, EVENT_BACKEND,
};
use super::guest_fault::{note, note_many};
use super::{ActivateError, GuestMemory};

/// A device's counters, as far as the shared queue code needs them.
pub trait DeviceMetrics {
    /// Guest memory that became unreachable, unusable rings, failed interrupts and event
    /// registrations: the errors that are about the queue, not about one request.
    fn queue_errors(&mut self) -> &mut u64;
}

/// Why the event loop woke a device, once [`VirtioState::loop_event`] has done the shared
/// part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceEvent {
    /// Activation or reset: the registered queue eventfds now match the device's state.
    Activation,
    /// The driver notified queue `index`.
    QueueKick(usize),
    /// The device backend's fd (registered with [`EVENT_BACKEND`]) has these events.
    Backend(EventSet),
    /// The timer of the device's rate limiter `index` fired (registered with
    /// [`rate_limiter_event`](super::activation::rate_limiter_event)).
    RateLimiter(usize),
    /// Data the device never registered.
    Unknown,
}

/// Features, config space and activation of one virtio device. The transport side (vCPU
/// threads) and the event-loop side reach it under the device's mutex; see
/// [`super::activation`] for who does what.
pub struct VirtioState {
    /// Names the device in logs ("virtio-blk").
    device: &'static str,
    avail_features: u64,
    acked_features: u64,
    config_space: Vec<u8>,
    active: Option<ActiveQueues>,
    activate_evt: EventFd,
    registrations: LoopRegistrations,
}

impl VirtioState {
    /// A device offering `avail_features` (VIRTIO_F_VERSION_1 included) with the given
    /// read-only config space. Fails only if the activate eventfd cannot be created.
    pub fn new(
        device: &'static str,
        avail_features: u64,
        config_space: Vec<u8>,
    ) -> std::io::Result<Self> {
        Ok(VirtioState {
            device,
            avail_features,
            acked_features: 0,
            config_space,
            active: None,
            activate_evt: EventFd::new(libc::EFD_NONBLOCK)?,
            registrations: LoopRegistrations::default(),
        })
    }

    pub fn device(&self) -> &'static str {
        self.device
    }

    pub fn avail_features(&self) -> u64 {
        self.avail_features
    }

    pub fn acked_features(&self) -> u64 {
        self.acked_features
    }

    /// Records what the driver accepted; bits we did not offer are dropped (the transport
    /// already refuses FEATURES_OK for them).
    pub fn set_acked_features(&mut self, acked: u64) {
        self.acked_features = acked & self.avail_features;
    }

    pub fn config_space(&self) -> &[u8] {
        &self.config_space
    }

    /// The queues, memory and interrupt while the device is active.
    pub fn active(&self) -> Option<&ActiveQueues> {
        self.active.as_ref()
    }

    pub fn active_mut(&mut self) -> Option<&mut ActiveQueues> {
        self.active.as_mut()
    }

    pub fn is_activated(&self) -> bool {
        self.active.is_some()
    }

    /// Takes the queues on DRIVER_OK and wakes the event loop to register their eventfds.
    /// Nothing changes if the loop cannot be woken.
    pub fn activate(&mut self, active: ActiveQueues) -> Result<(), ActivateError> {
        self.activate_evt
            .write(1)
            .map_err(ActivateError::EventRegistration)?;
        self.active = Some(active);
        Ok(())
    }

    /// Device reset (virtio 1.2 §2.4): drops the queues and the accepted features; the event
    /// loop, woken, drops the queue registrations.
    pub fn reset(&mut self) {
        self.active = None;
        self.acked_features = 0;
        if let Err(e) = self.activate_evt.write(1) {
            tracing::error!(
                device = self.device,
                "cannot tell the event loop about a reset: {e}"
            );
        }
    }

    /// Registers the activate eventfd; called from `MutEventSubscriber::init`.
    pub fn init_loop(&self, ops: &mut EventOps) {
        LoopRegistrations::init(ops, &self.activate_evt, self.device);
    }

    /// The shared part of `MutEventSubscriber::process`: on the activate event, makes the
    /// registered queue eventfds follow activation or reset (failures counted in the
    /// metrics' queue errors). Says what the event was, for the device to do its own part.
    pub fn loop_event(
        &mut self,
        events: &Events,
        ops: &mut EventOps,
        metrics: &mut impl DeviceMetrics,
    ) -> DeviceEvent {
        match events.data() {
            EVENT_ACTIVATE => {
                let wanted = self.active.as_ref().map_or(&[][..], |a| &a.queue_evts[..]);
                self.registrations.on_activate(
                    ops,
                    &self.activate_evt,
                    wanted,
                    metrics.queue_errors(),
                    self.device,
                );
                DeviceEvent::Activation
            }
            EVENT_BACKEND => DeviceEvent::Backend(events.event_set()),
            data => queue_of_event(data)
                .map(DeviceEvent::QueueKick)
                .or_else(|| rate_limiter_of_event(data).map(DeviceEvent::RateLimiter))
                .unwrap_or(DeviceEvent::Unknown),
        }
    }

    /// Clears queue `index`'s kick, counting a failure in the metrics' queue errors.
    pub fn drain_kick(&self, index: usize, metrics: &mut impl DeviceMetrics) {
        if let Some(active) = &self.active {
            drain_queue_kick(
                &active.queue_evts,
                index,
                metrics.queue_errors(),
                self.device,
            );
        }
    }

    /// A kick of queue `index` on an active device: clears it, then gives at most `budget`
    /// chains to `handle` (see [`ActiveQueues::process`]; if more are pending the queue's
    /// eventfd is re-signalled and the loop comes back after other work). Skipped heads
    /// and queue failures are counted in the metrics' queue errors. `handle` gets the
    /// metrics too, to count its own outcomes.
    pub fn serve_queue<M, F>(&mut self, index: usize, budget: usize, metrics: &mut M, mut handle: F)
    where
        M: DeviceMetrics,
        F: FnMut(&GuestMemory, DescriptorChain<&GuestMemory>, &mut M) -> u32,
    {
        self.serve_queue_or_defer(index, budget, metrics, |mem, chain, metrics| {
            ChainOutcome::Used(handle(mem, chain, metrics))
        });
    }

    /// As [`VirtioState::serve_queue`], for a device whose `handle` may defer a chain to
    /// wait for its rate limiter ([`ActiveQueues::process_or_defer`]). Says whether it did.
    pub fn serve_queue_or_defer<M, F>(
        &mut self,
        index: usize,
        budget: usize,
        metrics: &mut M,
        mut handle: F,
    ) -> bool
    where
        M: DeviceMetrics,
        F: FnMut(&GuestMemory, DescriptorChain<&GuestMemory>, &mut M) -> ChainOutcome,
    {
        let device = self.device;
        let Some(active) = self.active.as_mut() else {
            return false;
        };
        drain_queue_kick(&active.queue_evts, index, metrics.queue_errors(), device);
        let result =
            active.process_or_defer(index, budget, |mem, chain| handle(mem, chain, metrics));
        match result {
            Ok(run) => {
                note_many(
                    metrics.queue_errors(),
                    run.bad_heads as u64,
                    device,
                    &"available ring names a descriptor beyond the queue size",
                );
                run.deferred
            }
            Err(e) => {
                note(metrics.queue_errors(), device, &e);
                false
            }
        }
    }

    /// Signals queue `index`'s kick eventfd as the driver would, so the event loop looks at
    /// the queue again (after a rate limit changed, say). Nothing when inactive.
    pub fn kick(&self, index: usize) -> std::io::Result<()> {
        match self.active.as_ref().and_then(|a| a.queue_evts.get(index)) {
            Some(evt) => evt.write(1),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use event_manager::{EventManager, MutEventSubscriber, SubscriberOps};
    use virtio_queue::mock::MockSplitQueue;

    use super::*;
    use crate::devices::virtio::activation::drain_eventfd;
    use crate::devices::virtio::descriptor::tests::{desc, test_memory};
    use crate::devices::virtio::{IrqTrigger, VIRTIO_MMIO_INT_VRING};

    #[derive(Default)]
    struct Counters {
        queue_errors: u64,
        served: u64,
    }

    impl DeviceMetrics for Counters {
        fn queue_errors(&mut self) -> &mut u64 {
            &mut self.queue_errors
        }
    }

    /// The smallest device on a [`VirtioState`]: records what the loop told it.
    struct Probe {
        virtio: VirtioState,
        counters: Counters,
        seen: Vec<DeviceEvent>,
        /// Registered as the backend, and with data nobody uses.
        backend: EventFd,
        stray: EventFd,
    }

    const STRAY: u32 = 0x3_0000;

    impl MutEventSubscriber for Probe {
        fn init(&mut self, ops: &mut EventOps) {
            self.virtio.init_loop(ops);
            ops.add(Events::with_data(
                &self.backend,
                EVENT_BACKEND,
                EventSet::IN,
            ))
            .unwrap();
            ops.add(Events::with_data(&self.stray, STRAY, EventSet::IN))
                .unwrap();
        }
        fn process(&mut self, events: Events, ops: &mut EventOps) {
            let event = self.virtio.loop_event(&events, ops, &mut self.counters);
            self.seen.push(event);
            match event {
                DeviceEvent::QueueKick(index) => {
                    self.virtio
                        .serve_queue(index, 16, &mut self.counters, |_, _, c| {
                            c.served += 1;
                            4
                        })
                }
                DeviceEvent::Backend(_) => drain_eventfd(&self.backend).unwrap(),
                DeviceEvent::Unknown => drain_eventfd(&self.stray).unwrap(),
                DeviceEvent::Activation | DeviceEvent::RateLimiter(_) => {}
            }
        }
    }

    fn active(mem: &GuestMemory, mq: &MockSplitQueue<GuestMemory>) -> (ActiveQueues, Arc<EventFd>) {
        let evt = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let aq = ActiveQueues::new(
            mem.clone(),
            vec![mq.create_queue().unwrap()],
            vec![evt.clone()],
            Arc::new(IrqTrigger::new().unwrap()),
            1,
        )
        .unwrap();
        (aq, evt)
    }

    #[test]
    fn features_are_masked_and_reset_clears_them_with_the_queues() {
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let mut s = VirtioState::new("test", 0b1010, vec![1, 2]).unwrap();
        s.set_acked_features(0b1111);
        assert_eq!(s.acked_features(), 0b1010);
        assert_eq!(s.config_space(), [1, 2]);
        s.activate(active(&mem, &mq).0).unwrap();
        assert!(s.is_activated());
        s.reset();
        assert!(!s.is_activated());
        assert_eq!(s.acked_features(), 0);
        assert_eq!(s.avail_features(), 0b1010);
    }

    #[test]
    fn inactive_device_serves_nothing() {
        let mut s = VirtioState::new("test", 0, vec![]).unwrap();
        let mut c = Counters::default();
        s.serve_queue(0, 16, &mut c, |_, _, _| unreachable!("no queues"));
        s.drain_kick(0, &mut c);
        assert_eq!(c.queue_errors, 0);
    }

    #[test]
    fn serve_queue_counts_bad_heads_and_interrupts() {
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        mq.add_desc_chains(&[desc(0x10_0000, 8, true)], 0).unwrap();
        // A second available entry naming descriptor 200 of a 16-entry table.
        mq.avail().ring().ref_at(1).unwrap().store(200);
        mq.avail().idx().store(2);
        let mut s = VirtioState::new("test", 0, vec![]).unwrap();
        let (aq, _) = active(&mem, &mq);
        let irq = aq.interrupt.clone();
        s.activate(aq).unwrap();
        let mut c = Counters::default();
        s.serve_queue(0, 16, &mut c, |_, _, c| {
            c.served += 1;
            4
        });
        assert_eq!((c.served, c.queue_errors), (1, 1));
        assert_eq!(mq.used().idx().load(), 1);
        assert_eq!(mq.used().ring().ref_at(0).unwrap().load().len(), 4);
        assert_eq!(irq.status(), VIRTIO_MMIO_INT_VRING);
        // A queue the device does not have: counted, not a panic.
        s.serve_queue(5, 16, &mut c, |_, _, _| 0);
        assert_eq!(c.queue_errors, 2);
    }

    #[test]
    fn the_loop_follows_activation_and_reset() {
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let probe = Arc::new(Mutex::new(Probe {
            virtio: VirtioState::new("test", 0, vec![]).unwrap(),
            counters: Counters::default(),
            seen: Vec::new(),
            backend: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
            stray: EventFd::new(libc::EFD_NONBLOCK).unwrap(),
        }));
        let mut em = EventManager::<Arc<Mutex<dyn MutEventSubscriber + Send>>>::new().unwrap();
        em.add_subscriber(probe.clone());

        let (aq, evt) = active(&mem, &mq);
        probe.lock().unwrap().virtio.activate(aq).unwrap();
        assert_eq!(em.run_with_timeout(100).unwrap(), 1);
        mq.add_desc_chains(&[desc(0x10_0000, 8, true)], 0).unwrap();
        evt.write(1).unwrap();
        assert_eq!(em.run_with_timeout(100).unwrap(), 1);
        assert_eq!(
            probe.lock().unwrap().seen,
            [DeviceEvent::Activation, DeviceEvent::QueueKick(0)]
        );
        assert_eq!(probe.lock().unwrap().counters.served, 1);

        // The backend's fd and data nobody registered are told apart from queue kicks.
        probe.lock().unwrap().backend.write(1).unwrap();
        assert_eq!(em.run_with_timeout(100).unwrap(), 1);
        probe.lock().unwrap().stray.write(1).unwrap();
        assert_eq!(em.run_with_timeout(100).unwrap(), 1);
        assert_eq!(
            probe.lock().unwrap().seen[2..],
            [DeviceEvent::Backend(EventSet::IN), DeviceEvent::Unknown]
        );

        // After a reset a kick is no longer dispatched.
        probe.lock().unwrap().virtio.reset();
        assert_eq!(em.run_with_timeout(100).unwrap(), 1);
        evt.write(1).unwrap();
        assert_eq!(em.run_with_timeout(50).unwrap(), 0);
        assert_eq!(probe.lock().unwrap().counters.queue_errors, 0);
    }
}
