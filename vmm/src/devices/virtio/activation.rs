//! What a device owns between DRIVER_OK and reset, and how its event-loop side follows
//! activation.
//!
//! Threading: the transport calls [`VirtioDevice::activate`] and [`VirtioDevice::reset`] on
//! a vCPU thread, holding the device's mutex. The device's `MutEventSubscriber` side runs on
//! the device event-loop thread under the same mutex. Epoll registrations can only be made
//! from the loop (`EventOps` exist only inside `init`/`process`), so activate and reset just
//! store or drop the [`ActiveQueues`] and write the device's activate `EventFd`; the loop,
//! woken by it, makes its registrations match ([`LoopRegistrations::sync`]). A kick that
//! arrives before the queue eventfds are registered stays pending in the eventfd's counter.
//! Devices reach all of this through their [`VirtioState`](super::VirtioState).
//!
//! [`VirtioDevice::activate`]: super::VirtioDevice::activate
//! [`VirtioDevice::reset`]: super::VirtioDevice::reset

use crate::devices::virtio::guest_fault::note;
use std::sync::Arc;

use event_manager::{EventOps, EventSet, Events};
use virtio_queue::{DescriptorChain, QueueOwnedT};
use vmm_sys_util::eventfd::EventFd;

use super::{ActivateError, GuestMemory, IrqTrigger, Queue, QueueT, VIRTIO_MMIO_INT_VRING};

/// Event-loop data of a device's activate eventfd.
pub const EVENT_ACTIVATE: u32 = 0;
/// Event-loop data of a device backend's fd (the tap of a net device).
pub const EVENT_BACKEND: u32 = 0x1_0000;

/// Event-loop data of a device's first rate limiter timer; the next ones follow.
pub const EVENT_RATE_LIMITER: u32 = 0x2_0000;
/// Rate limiter timers a device may register.
const RATE_LIMITERS_MAX: u32 = 16;

/// Event-loop data of rate limiter `index`'s timer.
pub const fn rate_limiter_event(index: usize) -> u32 {
    EVENT_RATE_LIMITER + index as u32
}

/// The rate limiter an event-loop data value stands for, if it is a limiter's timer.
pub fn rate_limiter_of_event(data: u32) -> Option<usize> {
    (EVENT_RATE_LIMITER..EVENT_RATE_LIMITER + RATE_LIMITERS_MAX)
        .contains(&data)
        .then(|| (data - EVENT_RATE_LIMITER) as usize)
}

/// Event-loop data of queue `index`'s kick eventfd.
pub const fn queue_event(index: usize) -> u32 {
    1 + index as u32
}

/// The queue index an event-loop data value stands for, if it is a queue kick.
pub fn queue_of_event(data: u32) -> Option<usize> {
    (1..EVENT_BACKEND)
        .contains(&data)
        .then(|| (data - 1) as usize)
}

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue {index} does not exist")]
    NoSuchQueue { index: usize },
    #[error("virtio queue: {0}")]
    Queue(#[from] virtio_queue::Error),
    #[error("cannot interrupt the guest: {0}")]
    Interrupt(std::io::Error),
    #[error("cannot re-signal queue {index} to continue later: {source}")]
    Rekick {
        index: usize,
        source: std::io::Error,
    },
}

/// Everything a device received at activation.
pub struct ActiveQueues {
    pub mem: GuestMemory,
    pub queues: Vec<Queue>,
    pub queue_evts: Vec<Arc<EventFd>>,
    pub interrupt: Arc<IrqTrigger>,
}

/// What one pass over a queue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueRun {
    /// Chains consumed and put in the used ring.
    pub chains: usize,
    /// The budget ran out with chains still available; the queue's eventfd was written so
    /// the event loop comes back after serving the other devices.
    pub more: bool,
    /// The handler deferred a chain (rate limited): it is still in the ring.
    pub deferred: bool,
    /// Available-ring entries naming a descriptor beyond the queue size: skipped, since
    /// they can neither be parsed nor returned (virtio 1.2 §2.7.6).
    pub bad_heads: usize,
}

/// What a device did with one chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainOutcome {
    /// Served: into the used ring, with this many bytes written into the chain.
    Used(u32),
    /// Not served now (the device's rate limiter is empty): back to the ring.
    Deferred,
}

/// Why a pass over a queue ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PassEnd {
    Drained,
    Budget,
    Deferred,
}

impl ActiveQueues {
    /// Checks what the transport handed over: `expected` queues and eventfds, all ready.
    pub fn new(
        mem: GuestMemory,
        queues: Vec<Queue>,
        queue_evts: Vec<Arc<EventFd>>,
        interrupt: Arc<IrqTrigger>,
        expected: usize,
    ) -> Result<Self, ActivateError> {
        if queues.len() != expected {
            return Err(ActivateError::QueueCount {
                expected,
                got: queues.len(),
            });
        }
        if queue_evts.len() != expected {
            return Err(ActivateError::QueueCount {
                expected,
                got: queue_evts.len(),
            });
        }
        if let Some(index) = queues.iter().position(|q| !q.ready()) {
            return Err(ActivateError::InvalidQueue { index });
        }
        Ok(ActiveQueues {
            mem,
            queues,
            queue_evts,
            interrupt,
        })
    }

    /// Consumes at most `budget` chains from queue `index`, giving each to `handle`, which
    /// returns the number of bytes it wrote into the chain (the used length). Then interrupts
    /// the guest if it asked to be (virtio 1.2 §2.7.10; with VIRTIO_F_RING_EVENT_IDX the
    /// used_event field decides). Notifications are suppressed while the queue is drained
    /// and re-enabled, with a re-check, once it is empty (§2.7.7 and §2.7.10).
    pub fn process<F>(
        &mut self,
        index: usize,
        budget: usize,
        mut handle: F,
    ) -> Result<QueueRun, QueueError>
    where
        F: FnMut(&GuestMemory, DescriptorChain<&GuestMemory>) -> u32,
    {
        self.process_or_defer(index, budget, |mem, chain| {
            ChainOutcome::Used(handle(mem, chain))
        })
    }

    /// As [`ActiveQueues::process`], but `handle` may defer a chain (its rate limiter is
    /// empty): the chain goes back to the ring, the pass stops with notifications still
    /// suppressed (a kick could not be served anyway), and the device comes back when its
    /// limiter refills.
    pub fn process_or_defer<F>(
        &mut self,
        index: usize,
        budget: usize,
        mut handle: F,
    ) -> Result<QueueRun, QueueError>
    where
        F: FnMut(&GuestMemory, DescriptorChain<&GuestMemory>) -> ChainOutcome,
    {
        let mem = &self.mem;
        let queue = self
            .queues
            .get_mut(index)
            .ok_or(QueueError::NoSuchQueue { index })?;
        let mut chains = 0;
        let mut bad_heads = 0;
        let stop = (|| -> Result<PassEnd, virtio_queue::Error> {
            loop {
                queue.disable_notification(mem)?;
                loop {
                    if chains + bad_heads == budget {
                        return Ok(PassEnd::Budget);
                    }
                    let Some(chain) = queue.iter(mem)?.next() else {
                        break;
                    };
                    let head = chain.head_index();
                    // Checked here: virtio-queue would log every such add_used.
                    if head >= queue.size() {
                        bad_heads += 1;
                        continue;
                    }
                    let used = match handle(mem, chain) {
                        ChainOutcome::Used(used) => used,
                        ChainOutcome::Deferred => {
                            queue.go_to_previous_position();
                            return Ok(PassEnd::Deferred);
                        }
                    };
                    queue.add_used(mem, head, used)?;
                    chains += 1;
                }
                if !queue.enable_notification(mem)? {
                    return Ok(PassEnd::Drained);
                }
            }
        })();
        // Chains already in the used ring are signalled even if the pass stopped on an error.
        self.signal_used(index, chains)?;
        let stop = stop?;
        let more = stop == PassEnd::Budget;
        if more {
            self.queue_evts
                .get(index)
                .ok_or(QueueError::NoSuchQueue { index })?
                .write(1)
                .map_err(|source| QueueError::Rekick { index, source })?;
        }
        Ok(QueueRun {
            chains,
            more,
            deferred: stop == PassEnd::Deferred,
            bad_heads,
        })
    }

    /// Interrupts the guest for `added` new used entries on queue `index` if it wants one.
    pub fn signal_used(&mut self, index: usize, added: usize) -> Result<(), QueueError> {
        if added == 0 {
            return Ok(());
        }
        let queue = self
            .queues
            .get_mut(index)
            .ok_or(QueueError::NoSuchQueue { index })?;
        if queue.needs_notification(&self.mem)? {
            self.interrupt
                .trigger(VIRTIO_MMIO_INT_VRING)
                .map_err(QueueError::Interrupt)?;
        }
        Ok(())
    }
}

/// The queue eventfds a device has registered with its event loop.
#[derive(Default)]
pub struct LoopRegistrations {
    // Held so the fds stay open until they are removed from epoll.
    queue_evts: Vec<Arc<EventFd>>,
}

impl LoopRegistrations {
    /// Registers the activate eventfd; called from `MutEventSubscriber::init`.
    pub fn init(ops: &mut EventOps, activate_evt: &EventFd, device: &str) {
        if let Err(e) = ops.add(Events::with_data(
            activate_evt,
            EVENT_ACTIVATE,
            EventSet::IN,
        )) {
            tracing::error!(device, "cannot register the activate eventfd: {e}");
        }
    }

    /// Makes the registered queue eventfds exactly `wanted` (empty when the device is not
    /// active), with data [`queue_event`]`(i)` for `wanted[i]`.
    pub fn sync(
        &mut self,
        ops: &mut EventOps,
        wanted: &[Arc<EventFd>],
    ) -> Result<(), event_manager::Error> {
        let unchanged = self.queue_evts.len() == wanted.len()
            && self
                .queue_evts
                .iter()
                .zip(wanted)
                .all(|(a, b)| Arc::ptr_eq(a, b));
        if unchanged {
            return Ok(());
        }
        let mut first_err = None;
        for (i, evt) in self.queue_evts.drain(..).enumerate() {
            if let Err(e) = ops.remove(Events::with_data(
                evt.as_ref(),
                queue_event(i),
                EventSet::IN,
            )) {
                first_err.get_or_insert(e);
            }
        }
        for (i, evt) in wanted.iter().enumerate() {
            ops.add(Events::with_data(
                evt.as_ref(),
                queue_event(i),
                EventSet::IN,
            ))?;
            self.queue_evts.push(evt.clone());
        }
        first_err.map_or(Ok(()), Err)
    }
}

impl LoopRegistrations {
    /// The activate event: clears it and brings the registered queue eventfds in line with
    /// `wanted` (the device's active queues, or none after a reset). Failures are counted in
    /// `errors` and logged once.
    pub fn on_activate(
        &mut self,
        ops: &mut EventOps,
        activate_evt: &EventFd,
        wanted: &[Arc<EventFd>],
        errors: &mut u64,
        device: &str,
    ) {
        if let Err(e) = drain_eventfd(activate_evt) {
            note(errors, device, &format_args!("activate eventfd: {e}"));
        }
        if let Err(e) = self.sync(ops, wanted) {
            note(errors, device, &format_args!("queue eventfds: {e}"));
        }
    }
}

/// Clears queue `index`'s kick, counting a failure in `errors`.
pub fn drain_queue_kick(evts: &[Arc<EventFd>], index: usize, errors: &mut u64, device: &str) {
    if let Some(evt) = evts.get(index) {
        if let Err(e) = drain_eventfd(evt) {
            note(errors, device, &format_args!("queue eventfd: {e}"));
        }
    }
}

/// Reads (and so clears) an eventfd's counter; a non-blocking eventfd with nothing pending
/// is not an error.
pub fn drain_eventfd(evt: &EventFd) -> std::io::Result<()> {
    match evt.read() {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::descriptor::tests::{desc, test_memory};
    use virtio_queue::mock::MockSplitQueue;

    fn active(mem: &GuestMemory, q: Queue) -> ActiveQueues {
        let evt = Arc::new(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        ActiveQueues::new(
            mem.clone(),
            vec![q],
            vec![evt],
            Arc::new(IrqTrigger::new().unwrap()),
            1,
        )
        .unwrap()
    }

    #[test]
    fn rejects_wrong_queue_count_and_unready_queue() {
        let mem = test_memory();
        let irq = Arc::new(IrqTrigger::new().unwrap());
        let err = ActiveQueues::new(mem.clone(), vec![], vec![], irq.clone(), 1);
        assert!(matches!(
            err,
            Err(ActivateError::QueueCount {
                expected: 1,
                got: 0
            })
        ));
        let q = Queue::new(16).unwrap();
        let evt = Arc::new(EventFd::new(0).unwrap());
        let err = ActiveQueues::new(mem, vec![q], vec![evt], irq, 1);
        assert!(matches!(err, Err(ActivateError::InvalidQueue { index: 0 })));
    }

    #[test]
    fn budget_limits_work_and_rekicks() {
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        for i in 0..3u64 {
            mq.add_desc_chains(&[desc(0x10_0000 + i * 0x100, 8, true)], i as u16)
                .unwrap();
        }
        let mut aq = active(&mem, mq.create_queue().unwrap());
        let run = aq.process(0, 2, |_, _| 5).unwrap();
        assert_eq!(
            run,
            QueueRun {
                chains: 2,
                more: true,
                deferred: false,
                bad_heads: 0
            }
        );
        assert_eq!(aq.queue_evts[0].read().unwrap(), 1);
        assert_eq!(aq.interrupt.status(), VIRTIO_MMIO_INT_VRING);
        assert_eq!(mq.used().idx().load(), 2);
        let run = aq.process(0, 2, |_, _| 5).unwrap();
        assert_eq!(
            run,
            QueueRun {
                chains: 1,
                more: false,
                deferred: false,
                bad_heads: 0
            }
        );
        assert_eq!(mq.used().idx().load(), 3);
        assert_eq!(mq.used().ring().ref_at(2).unwrap().load().len(), 5);
    }

    #[test]
    fn a_deferred_chain_stays_in_the_ring_for_the_next_pass() {
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        for i in 0..3u64 {
            mq.add_desc_chains(&[desc(0x10_0000 + i * 0x100, 8, true)], i as u16)
                .unwrap();
        }
        let mut aq = active(&mem, mq.create_queue().unwrap());
        let mut allowed = 1;
        let run = aq
            .process_or_defer(0, 16, |_, _| {
                if allowed == 0 {
                    return ChainOutcome::Deferred;
                }
                allowed -= 1;
                ChainOutcome::Used(1)
            })
            .unwrap();
        assert_eq!((run.chains, run.more, run.deferred), (1, false, true));
        assert_eq!(mq.used().idx().load(), 1);
        // Deferring is not a reason to come back by itself: no re-kick.
        assert!(aq.queue_evts[0].read().is_err());
        let run = aq
            .process_or_defer(0, 16, |_, _| ChainOutcome::Used(1))
            .unwrap();
        assert_eq!((run.chains, run.deferred), (2, false));
        let heads: Vec<u32> = (0..3)
            .map(|i| mq.used().ring().ref_at(i).unwrap().load().id())
            .collect();
        assert_eq!(heads, [0, 1, 2]);
    }

    #[test]
    fn bogus_avail_index_is_an_error_not_a_spin() {
        let mem = test_memory();
        let mq = MockSplitQueue::new(&mem, 16);
        let mut aq = active(&mem, mq.create_queue().unwrap());
        // The driver claims 1000 new chains in a 16-entry ring.
        mq.avail().idx().store(1000);
        assert!(matches!(
            aq.process(0, 16, |_, _| 0),
            Err(QueueError::Queue(
                virtio_queue::Error::InvalidAvailRingIndex
            ))
        ));
        assert!(matches!(
            aq.process(7, 16, |_, _| 0),
            Err(QueueError::NoSuchQueue { index: 7 })
        ));
    }

    #[test]
    fn event_data_round_trips() {
        assert_eq!(queue_of_event(queue_event(3)), Some(3));
        assert_eq!(queue_of_event(EVENT_ACTIVATE), None);
        assert_eq!(queue_of_event(EVENT_BACKEND), None);
        assert_eq!(rate_limiter_of_event(rate_limiter_event(1)), Some(1));
        assert_eq!(rate_limiter_of_event(queue_event(1)), None);
        assert_eq!(queue_of_event(rate_limiter_event(0)), None);
    }
}
