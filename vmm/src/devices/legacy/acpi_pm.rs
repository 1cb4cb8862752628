//! ACPI hardware-reduced sleep control, sleep status and reset registers (ACPI 6.5
//! §4.8.3.7, §4.8.3.6), at the ports the FADT names. Writing SLP_EN with the `_S5_` type
//! powers the guest off; writing the reset value reboots it.

use std::sync::Arc;

use super::{PowerEvent, PowerSignal};
use crate::acpi::{PM_RESET, PM_RESET_VALUE, PM_SLEEP_CONTROL, SLP_TYP_S5};
use crate::devices::bus::BusDevice;

const SLP_EN: u8 = 1 << 5;
const SLP_TYP_SHIFT: u8 = 2;
const SLP_TYP_MASK: u8 = 0x7;

pub struct AcpiPm {
    power: Arc<PowerSignal>,
}

impl AcpiPm {
    pub fn new(power: Arc<PowerSignal>) -> Self {
        AcpiPm { power }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        // Every register reads 0; in particular the sleep status's WAK_STS is never set (at
        // offset PM_SLEEP_STATUS), as the guest never resumes from sleep.
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            o if o == u64::from(PM_SLEEP_CONTROL)
                && v & SLP_EN != 0
                && (v >> SLP_TYP_SHIFT) & SLP_TYP_MASK == SLP_TYP_S5 =>
            {
                self.power.request(PowerEvent::Poweroff)
            }
            o if o == u64::from(PM_RESET) && v == PM_RESET_VALUE => {
                self.power.request(PowerEvent::Reboot)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_powers_off_and_reset_reboots() {
        let p = PowerSignal::new();
        let mut pm = AcpiPm::new(p.clone());
        pm.write(PM_SLEEP_CONTROL.into(), &[SLP_TYP_S5 << 2]); // no SLP_EN
        assert_eq!(p.get(), None);
        pm.write(PM_SLEEP_CONTROL.into(), &[(SLP_TYP_S5 << 2) | SLP_EN]);
        assert_eq!(p.get(), Some(PowerEvent::Poweroff));
        let p = PowerSignal::new();
        let mut pm = AcpiPm::new(p.clone());
        pm.write(PM_RESET.into(), &[0x01]);
        assert_eq!(p.get(), None);
        pm.write(PM_RESET.into(), &[PM_RESET_VALUE]);
        assert_eq!(p.get(), Some(PowerEvent::Reboot));
    }
}
