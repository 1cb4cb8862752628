//! Holds the device event loop still while a snapshot is saved: the `devices` thread keeps
//! serving queues while the vCPUs are paused (net RX writes guest memory, a block request
//! in flight moves a used ring), so ring positions and memory are only consistent while the
//! loop waits at this gate.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use event_manager::{EventOps, Events, MutEventSubscriber};
use vmm_sys_util::epoll::EventSet;
use vmm_sys_util::eventfd::EventFd;

/// How long a hold waits for the loop to reach the gate: a loop that takes longer is stuck
/// in a device (or gone), and a snapshot taken beside it would not be consistent.
const REACH_GATE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DeviceLoopError {
    #[error("cannot signal the device event loop: {0}")]
    Signal(std::io::Error),
    #[error("the device event loop did not stop within {0:?}: a device is stuck")]
    NotReached(Duration),
}

#[derive(Default)]
struct GateState {
    /// A holder wants the loop to wait.
    held: bool,
    /// The loop waits at the gate.
    parked: bool,
}

/// The gate, shared by the loop (through [`DeviceLoopGate::subscriber`]) and holders.
pub struct DeviceLoopGate {
    evt: EventFd,
    state: Mutex<GateState>,
    cv: Condvar,
}

/// While it lives, the device event loop runs no device code. Dropping it lets it go on.
pub struct DeviceLoopHold<'a>(&'a DeviceLoopGate);

impl DeviceLoopGate {
    pub fn new() -> std::io::Result<Arc<Self>> {
        Ok(Arc::new(DeviceLoopGate {
            evt: EventFd::new(libc::EFD_NONBLOCK)?,
            state: Mutex::new(GateState::default()),
            cv: Condvar::new(),
        }))
    }

    /// The subscriber the device event loop runs: it parks the loop while a hold lives.
    pub fn subscriber(self: &Arc<Self>) -> GateSubscriber {
        GateSubscriber(self.clone())
    }

    /// Stops the loop at the gate (after the event it is handling) and keeps it there.
    pub fn hold(&self) -> Result<DeviceLoopHold<'_>, DeviceLoopError> {
        let mut st = self.state.lock().expect("device loop gate lock poisoned");
        st.held = true;
        let hold = DeviceLoopHold(self);
        self.evt.write(1).map_err(DeviceLoopError::Signal)?;
        let (st, waited) = self
            .cv
            .wait_timeout_while(st, REACH_GATE, |s| !s.parked)
            .expect("device loop gate lock poisoned");
        if waited.timed_out() {
            drop(st);
            return Err(DeviceLoopError::NotReached(REACH_GATE));
        }
        Ok(hold)
    }
}

impl Drop for DeviceLoopHold<'_> {
    fn drop(&mut self) {
        let gate = self.0;
        gate.state
            .lock()
            .expect("device loop gate lock poisoned")
            .held = false;
        gate.cv.notify_all();
    }
}

/// The gate's side on the `devices` thread.
pub struct GateSubscriber(Arc<DeviceLoopGate>);

impl MutEventSubscriber for GateSubscriber {
    fn init(&mut self, ops: &mut EventOps) {
        if let Err(e) = ops.add(Events::new(&self.0.evt, EventSet::IN)) {
            tracing::error!("cannot watch the device loop's gate: snapshots will fail: {e}");
        }
    }

    fn process(&mut self, _events: Events, _ops: &mut EventOps) {
        let gate = &self.0;
        // Nonblocking: a spurious wake-up with nothing to read is harmless.
        let _ = gate.evt.read();
        let mut st = gate.state.lock().expect("device loop gate lock poisoned");
        st.parked = true;
        gate.cv.notify_all();
        while st.held {
            st = gate.cv.wait(st).expect("device loop gate lock poisoned");
        }
        st.parked = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use event_manager::{EventManager, SubscriberOps};
    use std::sync::atomic::{AtomicBool, Ordering};

    #[test]
    fn a_hold_keeps_the_loop_parked_until_dropped() {
        let gate = DeviceLoopGate::new().unwrap();
        let mut em: EventManager<Arc<Mutex<dyn MutEventSubscriber + Send>>> =
            EventManager::new().unwrap();
        em.add_subscriber(Arc::new(Mutex::new(gate.subscriber())));
        let done = Arc::new(AtomicBool::new(false));
        let looped = {
            let done = done.clone();
            std::thread::spawn(move || {
                while !done.load(Ordering::SeqCst) {
                    em.run_with_timeout(50).unwrap();
                }
            })
        };
        let hold = gate.hold().unwrap();
        assert!(gate.state.lock().unwrap().parked);
        std::thread::sleep(Duration::from_millis(100));
        // Still parked: the loop did not go on while the hold lives.
        assert!(gate.state.lock().unwrap().parked);
        drop(hold);
        done.store(true, Ordering::SeqCst);
        looped.join().unwrap();
        assert!(!gate.state.lock().unwrap().parked);
    }
}
