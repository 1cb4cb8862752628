//! The event register of the ACPI Generic Event Device (ACPI 6.5 §5.6.9), how the monitor
//! signals platform events to a hardware-reduced guest: an event sets its bit here and
//! raises the GED's interrupt; the DSDT's `_EVT` method reads the register, which hands the
//! pending bits over and clears them, and notifies the device each bit stands for.

use serde::{Deserialize, Serialize};

use super::IrqLine;
use crate::devices::bus::BusDevice;

/// The bits of the event register; `_EVT` in the DSDT tests the same ones
/// ([`crate::acpi`]).
pub const GED_EVENT_POWER_BUTTON: u8 = 1 << 0;

/// What a snapshot keeps: the events the guest has not read yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GedState {
    pub pending: u8,
}

pub struct Ged {
    pending: u8,
    irq: IrqLine,
}

impl Ged {
    pub fn new(irq: IrqLine) -> Self {
        Ged { pending: 0, irq }
    }

    /// A GED as a snapshot saved it. Events still pending raise the interrupt again: the
    /// saved edge may not have reached the saved irqchip, and a second one is harmless
    /// (`_EVT` then reads no event and does nothing).
    pub fn from_state(state: &GedState, irq: IrqLine) -> std::io::Result<Self> {
        let ged = Ged {
            pending: state.pending,
            irq,
        };
        if ged.pending != 0 {
            vm_superio::Trigger::trigger(&ged.irq)?;
        }
        Ok(ged)
    }

    pub fn state(&self) -> GedState {
        GedState {
            pending: self.pending,
        }
    }

    /// Records `events` (bits of the register) and interrupts the guest. Pressing again
    /// before the guest has read the register delivers one event, as a real button would.
    pub fn signal(&mut self, events: u8) -> std::io::Result<()> {
        self.pending |= events;
        vm_superio::Trigger::trigger(&self.irq)
    }
}

impl BusDevice for Ged {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        // Only the first byte is the register; a read hands its events over.
        if let (0, Some(first)) = (offset, data.first_mut()) {
            *first = std::mem::take(&mut self.pending);
        }
    }

    /// The register is read-only: the guest acknowledges by reading.
    fn write(&mut self, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

    use super::*;

    fn line() -> (IrqLine, EventFd) {
        let fd = EventFd::new(EFD_NONBLOCK).unwrap();
        (IrqLine(fd.try_clone().unwrap()), fd)
    }

    fn read(ged: &mut Ged) -> u8 {
        let mut b = [0xffu8; 1];
        ged.read(0, &mut b);
        b[0]
    }

    #[test]
    fn an_event_interrupts_and_a_read_takes_it() {
        let (irq, seen) = line();
        let mut ged = Ged::new(irq);
        assert_eq!(read(&mut ged), 0);
        assert!(seen.read().is_err(), "no interrupt before an event");
        ged.signal(GED_EVENT_POWER_BUTTON).unwrap();
        assert_eq!(seen.read().unwrap(), 1);
        // A write does not acknowledge; the read does, once.
        ged.write(0, &[0xff]);
        assert_eq!(read(&mut ged), GED_EVENT_POWER_BUTTON);
        assert_eq!(read(&mut ged), 0);
    }

    #[test]
    fn presses_before_the_read_are_one_event() {
        let (irq, seen) = line();
        let mut ged = Ged::new(irq);
        ged.signal(GED_EVENT_POWER_BUTTON).unwrap();
        ged.signal(GED_EVENT_POWER_BUTTON).unwrap();
        assert_eq!(seen.read().unwrap(), 2);
        assert_eq!(read(&mut ged), GED_EVENT_POWER_BUTTON);
        assert_eq!(read(&mut ged), 0);
    }

    #[test]
    fn bytes_past_the_register_read_zero() {
        let (irq, _seen) = line();
        let mut ged = Ged::new(irq);
        ged.signal(GED_EVENT_POWER_BUTTON).unwrap();
        let mut wide = [0xffu8; 4];
        ged.read(0, &mut wide);
        assert_eq!(wide, [GED_EVENT_POWER_BUTTON, 0, 0, 0]);
        let mut past = [0xffu8; 1];
        ged.read(1, &mut past);
        assert_eq!(past, [0]);
    }

    #[test]
    fn a_pending_event_survives_a_snapshot_and_interrupts_again() {
        let (irq, _seen) = line();
        let mut ged = Ged::new(irq);
        ged.signal(GED_EVENT_POWER_BUTTON).unwrap();
        let state = ged.state();
        let (irq, seen) = line();
        let mut restored = Ged::from_state(&state, irq).unwrap();
        assert_eq!(seen.read().unwrap(), 1);
        assert_eq!(read(&mut restored), GED_EVENT_POWER_BUTTON);

        let (irq, seen) = line();
        let mut idle = Ged::from_state(&GedState::default(), irq).unwrap();
        assert!(seen.read().is_err(), "nothing pending, no interrupt");
        assert_eq!(read(&mut idle), 0);
    }
}
