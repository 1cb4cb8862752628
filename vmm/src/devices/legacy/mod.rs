//! Legacy PC devices on port I/O: the 8250 serial console, an i8042 (reset line and
//! Ctrl-Alt-Del), the ACPI hardware-reduced power-management registers and the Generic
//! Event Device's register (the power button).

pub mod acpi_pm;
pub mod console_socket;
pub mod ged;
pub mod i8042;
pub mod serial;

use std::sync::{Arc, Condvar, Mutex};

use vmm_sys_util::eventfd::EventFd;

/// What the guest asked the platform for: the monitor ends the process with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PowerEvent {
    Poweroff,
    Reboot,
    /// The monitor cannot go on with this guest (a fault it cannot handle).
    Crash(String),
}

/// An interrupt line into the in-kernel irqchip: an eventfd registered as a KVM irqfd.
#[derive(Debug)]
pub struct IrqLine(pub EventFd);

impl vm_superio::Trigger for IrqLine {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// Where the guest's power requests go: the first request wins and wakes the waiter.
#[derive(Debug, Default)]
pub struct PowerSignal {
    event: Mutex<Option<PowerEvent>>,
    cv: Condvar,
}

impl PowerSignal {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn request(&self, ev: PowerEvent) {
        let mut e = self.event.lock().expect("power signal lock poisoned");
        if e.is_none() {
            *e = Some(ev);
            self.cv.notify_all();
        }
    }

    pub fn get(&self) -> Option<PowerEvent> {
        self.event
            .lock()
            .expect("power signal lock poisoned")
            .clone()
    }

    /// Blocks until the guest asks for an end.
    pub fn wait(&self) -> PowerEvent {
        let mut e = self.event.lock().expect("power signal lock poisoned");
        loop {
            if let Some(ev) = e.clone() {
                return ev;
            }
            e = self.cv.wait(e).expect("power signal lock poisoned");
        }
    }
}
