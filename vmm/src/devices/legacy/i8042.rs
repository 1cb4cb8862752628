//! An i8042 keyboard controller with just enough of a keyboard behind it for Linux's i8042
//! and atkbd drivers to probe it, for `reboot=k` (command 0xfe resets the CPU), and for
//! Ctrl-Alt-Del (the `SendCtrlAltDel` action) to reach the guest as key presses.

use std::collections::VecDeque;
use std::sync::Arc;

use super::{IrqLine, PowerEvent, PowerSignal};
use crate::devices::bus::BusDevice;

const DATA: u64 = 0;
const COMMAND: u64 = 4;

const SR_OBF: u8 = 1 << 0;
const SR_SYS: u8 = 1 << 2;
const SR_CMD: u8 = 1 << 3;
const SR_KEYLOCK: u8 = 1 << 4;

const CB_KBD_INT: u8 = 1 << 0;
const CB_SYS: u8 = 1 << 2;
const CB_XLATE: u8 = 1 << 6;

const CMD_READ_CB: u8 = 0x20;
const CMD_WRITE_CB: u8 = 0x60;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_READ_OUTP: u8 = 0xd0;
const CMD_WRITE_OUTP: u8 = 0xd1;
const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_RESET_CPU: u8 = 0xfe;

const KBD_ACK: u8 = 0xfa;
const KBD_RESET: u8 = 0xff;
const KBD_SELF_TEST_OK: u8 = 0xaa;
const KBD_GET_ID: u8 = 0xf2;
/// Keyboard commands that take one argument byte (LEDs, typematic rate, scancode set).
const KBD_CMDS_WITH_ARG: [u8; 3] = [0xed, 0xf3, 0xf0];

/// Output buffer bound: the guest drains it; nothing it does can make it grow past this.
const OUTBUF_MAX: usize = 16;

pub struct I8042 {
    status: u8,
    control: u8,
    outbuf: VecDeque<u8>,
    /// A controller command waiting for its data byte.
    pending_cmd: Option<u8>,
    /// The keyboard waits for the argument of a command.
    kbd_expects_arg: bool,
    irq: IrqLine,
    power: Arc<PowerSignal>,
}

/// What a snapshot keeps of the controller: its registers and the bytes the guest has yet to
/// read. The interrupt already raised for them lives in the irqchip's state.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct I8042State {
    pub status: u8,
    pub control: u8,
    pub outbuf: Vec<u8>,
    pub pending_cmd: Option<u8>,
    pub kbd_expects_arg: bool,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "the snapshot's i8042 holds {0} unread bytes, more than the controller buffers \
     ({OUTBUF_MAX}): the snapshot is not one this monitor wrote"
)]
pub struct I8042StateError(usize);

impl I8042 {
    pub fn state(&self) -> I8042State {
        I8042State {
            status: self.status,
            control: self.control,
            outbuf: self.outbuf.iter().copied().collect(),
            pending_cmd: self.pending_cmd,
            kbd_expects_arg: self.kbd_expects_arg,
        }
    }

    /// The controller as saved; raises no interrupt (the irqchip's restored state has it).
    pub fn from_state(
        state: &I8042State,
        irq: IrqLine,
        power: Arc<PowerSignal>,
    ) -> Result<Self, I8042StateError> {
        if state.outbuf.len() > OUTBUF_MAX {
            return Err(I8042StateError(state.outbuf.len()));
        }
        Ok(I8042 {
            status: state.status,
            control: state.control,
            outbuf: state.outbuf.iter().copied().collect(),
            pending_cmd: state.pending_cmd,
            kbd_expects_arg: state.kbd_expects_arg,
            irq,
            power,
        })
    }

    pub fn new(irq: IrqLine, power: Arc<PowerSignal>) -> Self {
        I8042 {
            status: SR_SYS | SR_KEYLOCK,
            control: CB_KBD_INT | CB_SYS | CB_XLATE,
            outbuf: VecDeque::new(),
            pending_cmd: None,
            kbd_expects_arg: false,
            irq,
            power,
        }
    }

    fn push(&mut self, b: u8) {
        if self.outbuf.len() < OUTBUF_MAX {
            self.outbuf.push_back(b);
        }
        self.update_irq();
    }

    fn update_irq(&mut self) {
        if self.outbuf.is_empty() {
            self.status &= !SR_OBF;
            return;
        }
        self.status |= SR_OBF;
        if self.control & CB_KBD_INT != 0 {
            // Edge-triggered: one edge per byte made available.
            let _ = vm_superio::Trigger::trigger(&self.irq);
        }
    }

    /// Queues Ctrl-Alt-Del presses and releases, in the scancode set the driver reads.
    pub fn send_ctrl_alt_del(&mut self) {
        let codes: &[u8] = if self.control & CB_XLATE != 0 {
            // Set 1 (after the controller's translation).
            &[0x1d, 0x38, 0xe0, 0x53, 0xe0, 0xd3, 0xb8, 0x9d]
        } else {
            // Set 2.
            &[
                0x14, 0x11, 0xe0, 0x71, 0xe0, 0xf0, 0x71, 0xf0, 0x11, 0xf0, 0x14,
            ]
        };
        for &c in codes {
            if self.outbuf.len() < OUTBUF_MAX {
                self.outbuf.push_back(c);
            }
        }
        self.update_irq();
    }

    fn command(&mut self, cmd: u8) {
        self.status |= SR_CMD;
        match cmd {
            CMD_READ_CB => self.push(self.control),
            CMD_WRITE_CB | CMD_WRITE_OUTP | CMD_WRITE_AUX => self.pending_cmd = Some(cmd),
            CMD_SELF_TEST => self.push(0x55),
            CMD_KBD_TEST => self.push(0x00),
            // No mouse: its interface test reports a clock line stuck low.
            CMD_AUX_TEST => self.push(0x01),
            CMD_READ_OUTP => self.push(0x01),
            CMD_RESET_CPU => self.power.request(PowerEvent::Reboot),
            CMD_KBD_DISABLE | CMD_KBD_ENABLE | CMD_AUX_DISABLE | CMD_AUX_ENABLE => {}
            _ => {}
        }
    }

    fn data(&mut self, v: u8) {
        self.status &= !SR_CMD;
        match self.pending_cmd.take() {
            Some(CMD_WRITE_CB) => {
                self.control = v;
                self.update_irq();
            }
            // Output port bit 0 low holds the CPU in reset.
            Some(CMD_WRITE_OUTP) if v & 1 == 0 => self.power.request(PowerEvent::Reboot),
            Some(CMD_WRITE_OUTP) => {}
            // Bytes to the absent mouse vanish.
            Some(CMD_WRITE_AUX) => {}
            _ => self.keyboard(v),
        }
    }

    fn keyboard(&mut self, v: u8) {
        if std::mem::take(&mut self.kbd_expects_arg) {
            self.push(KBD_ACK);
            return;
        }
        match v {
            KBD_RESET => {
                self.outbuf.clear();
                self.push(KBD_ACK);
                self.push(KBD_SELF_TEST_OK);
            }
            KBD_GET_ID => {
                self.push(KBD_ACK);
                self.push(0xab);
                self.push(0x83);
            }
            c if KBD_CMDS_WITH_ARG.contains(&c) => {
                self.kbd_expects_arg = true;
                self.push(KBD_ACK);
            }
            _ => self.push(KBD_ACK),
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let v = match offset {
            DATA => {
                let b = self.outbuf.pop_front().unwrap_or(0);
                self.update_irq();
                b
            }
            COMMAND => self.status,
            _ => 0xff,
        };
        data.fill(0);
        if let Some(d) = data.first_mut() {
            *d = v;
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let Some(&v) = data.first() else { return };
        match offset {
            DATA => self.data(v),
            COMMAND => self.command(v),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EventFd;

    fn dev() -> (I8042, Arc<PowerSignal>) {
        let p = PowerSignal::new();
        let irq = IrqLine(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        (I8042::new(irq, p.clone()), p)
    }

    fn read(d: &mut I8042, off: u64) -> u8 {
        let mut b = [0u8];
        d.read(off, &mut b);
        b[0]
    }

    #[test]
    fn probe_sequence_answers_like_a_controller() {
        let (mut d, _) = dev();
        d.write(COMMAND, &[CMD_SELF_TEST]);
        assert_ne!(read(&mut d, COMMAND) & SR_OBF, 0);
        assert_eq!(read(&mut d, DATA), 0x55);
        assert_eq!(read(&mut d, COMMAND) & SR_OBF, 0);
        d.write(COMMAND, &[CMD_WRITE_CB]);
        d.write(DATA, &[0x45]);
        d.write(COMMAND, &[CMD_READ_CB]);
        assert_eq!(read(&mut d, DATA), 0x45);
        d.write(DATA, &[KBD_RESET]);
        assert_eq!(
            (read(&mut d, DATA), read(&mut d, DATA)),
            (KBD_ACK, KBD_SELF_TEST_OK)
        );
        d.write(DATA, &[0xed]);
        d.write(DATA, &[0x07]);
        assert_eq!((read(&mut d, DATA), read(&mut d, DATA)), (KBD_ACK, KBD_ACK));
    }

    #[test]
    fn reset_command_reboots_and_ctrl_alt_del_queues_keys() {
        let (mut d, p) = dev();
        d.send_ctrl_alt_del();
        assert_eq!(read(&mut d, DATA), 0x1d);
        assert_eq!(read(&mut d, DATA), 0x38);
        assert_eq!(p.get(), None);
        d.write(COMMAND, &[CMD_RESET_CPU]);
        assert_eq!(p.get(), Some(PowerEvent::Reboot));
    }

    #[test]
    fn a_restored_controller_goes_on_mid_conversation() {
        let (mut d, _) = dev();
        // Control byte written, a keyboard command waiting for its argument, an ID unread.
        d.write(COMMAND, &[CMD_WRITE_CB]);
        d.write(DATA, &[0x47]);
        d.write(DATA, &[KBD_GET_ID]);
        assert_eq!(read(&mut d, DATA), KBD_ACK);
        d.write(DATA, &[0xf3]);
        d.write(COMMAND, &[CMD_WRITE_CB]);
        let state = d.state();
        let p = PowerSignal::new();
        let irq = IrqLine(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let mut r = I8042::from_state(&state, irq, p).unwrap();
        assert_eq!(r.state(), state);
        assert_eq!(
            r.irq.0.read().map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "no interrupt raised again by the restore"
        );
        assert_eq!(read(&mut r, DATA), 0xab);
        assert_eq!(read(&mut r, DATA), 0x83);
        assert_eq!(read(&mut r, DATA), KBD_ACK, "ack of the typematic command");
        // The pending controller command takes the next data byte.
        r.write(DATA, &[0x45]);
        r.write(COMMAND, &[CMD_READ_CB]);
        assert_eq!(read(&mut r, DATA), 0x45);
        // The keyboard still expected the typematic argument: acked, not run as a command.
        r.write(DATA, &[KBD_RESET]);
        assert_eq!(read(&mut r, DATA), KBD_ACK);
        assert_eq!(
            read(&mut r, COMMAND) & SR_OBF,
            0,
            "no self-test byte: not a reset"
        );
    }

    #[test]
    fn an_oversized_saved_buffer_is_refused() {
        let (d, p) = dev();
        let mut state = d.state();
        state.outbuf = vec![0; OUTBUF_MAX + 1];
        let irq = IrqLine(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        assert!(I8042::from_state(&state, irq, p).is_err());
    }

    #[test]
    fn output_buffer_is_bounded() {
        let (mut d, _) = dev();
        for _ in 0..100 {
            d.write(DATA, &[KBD_GET_ID]);
        }
        assert!(d.outbuf.len() <= OUTBUF_MAX);
    }
}
