//! The 8250 UART console on COM1 (vm-superio's emulation), writing to stdout or a file.
//! IRQ 4 is an irqfd; vm-superio raises it when the transmitter empties and IER asks for it,
//! so output through the guest's tty layer flows, not only printk.

use std::io::Write;

use vm_superio::serial::{NoEvents, SerialState};
use vm_superio::Serial;

use super::IrqLine;
use crate::devices::bus::BusDevice;

pub type ConsoleOut = Box<dyn Write + Send>;

pub struct SerialConsole {
    uart: Serial<IrqLine, NoEvents, ConsoleOut>,
    /// Whether the guest ever printed, for the "first console line" figure.
    pub first_output: Option<std::time::Instant>,
}

/// The UART's registers and unread input, as a snapshot keeps them (vm-superio's
/// `SerialState`, which has no serde of its own, field for field).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SerialConsoleState {
    pub baud_divisor_low: u8,
    pub baud_divisor_high: u8,
    pub interrupt_enable: u8,
    pub interrupt_identification: u8,
    pub line_control: u8,
    pub line_status: u8,
    pub modem_control: u8,
    pub modem_status: u8,
    pub scratch: u8,
    pub in_buffer: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot restore the serial console from the snapshot: {0}")]
pub struct SerialStateError(String);

impl SerialConsole {
    pub fn state(&self) -> SerialConsoleState {
        let s = self.uart.state();
        SerialConsoleState {
            baud_divisor_low: s.baud_divisor_low,
            baud_divisor_high: s.baud_divisor_high,
            interrupt_enable: s.interrupt_enable,
            interrupt_identification: s.interrupt_identification,
            line_control: s.line_control,
            line_status: s.line_status,
            modem_control: s.modem_control,
            modem_status: s.modem_status,
            scratch: s.scratch,
            in_buffer: s.in_buffer,
        }
    }

    /// The UART as saved, writing to `out`. vm-superio raises the interrupt again when the
    /// saved registers say one is due (a level the guest has not acknowledged yet); the
    /// guest's driver tolerates a spurious one.
    pub fn from_state(
        state: &SerialConsoleState,
        irq: IrqLine,
        out: ConsoleOut,
    ) -> Result<Self, SerialStateError> {
        let s = SerialState {
            baud_divisor_low: state.baud_divisor_low,
            baud_divisor_high: state.baud_divisor_high,
            interrupt_enable: state.interrupt_enable,
            interrupt_identification: state.interrupt_identification,
            line_control: state.line_control,
            line_status: state.line_status,
            modem_control: state.modem_control,
            modem_status: state.modem_status,
            scratch: state.scratch,
            in_buffer: state.in_buffer.clone(),
        };
        let uart = Serial::from_state(&s, irq, NoEvents, out)
            .map_err(|e| SerialStateError(format!("{e:?}")))?;
        Ok(SerialConsole {
            uart,
            // Start-up figures are about this process's guest: it has printed already.
            first_output: None,
        })
    }

    pub fn new(irq: IrqLine, out: ConsoleOut) -> Self {
        SerialConsole {
            uart: Serial::new(irq, out),
            first_output: None,
        }
    }

    /// Feeds host input (stdin) to the guest; returns how many bytes fit the FIFO.
    pub fn enqueue_input(&mut self, input: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(input).unwrap_or(0)
    }
}

impl BusDevice for SerialConsole {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if let (Ok(off), Some(d)) = (u8::try_from(offset), data.first_mut()) {
            *d = self.uart.read(off);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let (Ok(off), Some(&v)) = (u8::try_from(offset), data.first()) else {
            return;
        };
        if off == 0 && self.first_output.is_none() {
            self.first_output = Some(std::time::Instant::now());
        }
        // An output error (closed stdout, full disk) must not stop the guest.
        let _ = self.uart.write(off, v);
    }
}

/// Host input for the console: stdin, read on the device event loop whenever it is readable
/// and fed to the UART's receive FIFO; what does not fit is dropped, as a real UART overruns.
pub struct ConsoleInput {
    console: std::sync::Arc<std::sync::Mutex<SerialConsole>>,
}

impl ConsoleInput {
    pub fn new(console: std::sync::Arc<std::sync::Mutex<SerialConsole>>) -> Self {
        ConsoleInput { console }
    }
}

impl event_manager::MutEventSubscriber for ConsoleInput {
    fn process(&mut self, events: event_manager::Events, ops: &mut event_manager::EventOps) {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let n = match std::io::stdin().lock().read(&mut buf) {
            Ok(0) | Err(_) => {
                // EOF or a broken stdin: stop watching it.
                let _ = ops.remove(events);
                return;
            }
            Ok(n) => n,
        };
        let mut c = self.console.lock().expect("serial lock poisoned");
        c.enqueue_input(&buf[..n]);
    }

    fn init(&mut self, ops: &mut event_manager::EventOps) {
        let stdin = std::io::stdin();
        // epoll refuses regular files and /dev/null: then there is simply no console input.
        if let Err(e) = ops.add(event_manager::Events::new(
            &stdin,
            event_manager::EventSet::IN,
        )) {
            tracing::debug!("no console input from stdin: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vmm_sys_util::eventfd::EventFd;

    const LCR: u8 = 3;
    const SCR: u8 = 7;
    const IER: u8 = 1;
    const DATA: u8 = 0;
    const DLAB: u8 = 0x80;

    fn console() -> SerialConsole {
        let irq = IrqLine(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        SerialConsole::new(irq, Box::new(std::io::sink()))
    }

    fn read(c: &mut SerialConsole, off: u8) -> u8 {
        let mut b = [0u8];
        c.read(u64::from(off), &mut b);
        b[0]
    }

    #[test]
    fn a_restored_uart_keeps_its_registers_and_unread_input() {
        let mut c = console();
        // A baud divisor (through DLAB), 8N1 and the scratch register, as a driver leaves them.
        c.write(u64::from(LCR), &[DLAB | 0x03]);
        c.write(u64::from(DATA), &[0x0c]);
        c.write(u64::from(LCR), &[0x03]);
        c.write(u64::from(SCR), &[0x5a]);
        c.write(u64::from(IER), &[0x01]);
        assert_eq!(c.enqueue_input(b"ok"), 2);
        let state = c.state();

        let irq = IrqLine(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        let mut r = SerialConsole::from_state(&state, irq, Box::new(std::io::sink())).unwrap();
        assert_eq!(r.state(), state);
        assert_eq!(read(&mut r, SCR), 0x5a);
        assert_eq!(read(&mut r, LCR), 0x03);
        assert_eq!((read(&mut r, DATA), read(&mut r, DATA)), (b'o', b'k'));
        r.write(u64::from(LCR), &[DLAB | 0x03]);
        assert_eq!(read(&mut r, DATA), 0x0c, "baud divisor");
    }

    #[test]
    fn more_input_than_the_fifo_holds_is_refused() {
        let mut state = console().state();
        state.in_buffer = vec![b'x'; 4096];
        let irq = IrqLine(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        assert!(SerialConsole::from_state(&state, irq, Box::new(std::io::sink())).is_err());
    }
}
