//! The 8250 UART console on COM1 (vm-superio's emulation), writing to stdout or a file and
//! to the console socket's client, if one is attached (`console_socket`).
//! IRQ 4 is an irqfd; vm-superio raises it when the transmitter empties and IER asks for it,
//! so output through the guest's tty layer flows, not only printk.

use std::fs::File;
use std::io::{self, Write};
use std::sync::Arc;

use vm_superio::serial::{SerialEvents, SerialState};
use vm_superio::Serial;
use vmm_sys_util::eventfd::EventFd;

use super::IrqLine;
use crate::devices::bus::BusDevice;

/// Where the console is kept: stdout or the console log.
pub type ConsoleOut = Box<dyn Write + Send>;

/// The UART's transmitter: every byte goes to the log, and to the attached client when
/// there is one. The client's socket is non-blocking and a byte it has no room for is
/// dropped, so a client that stops reading never stalls the vCPU writing (the log keeps
/// every byte; the socket's buffer bounds what waits for the client).
pub struct SerialOutput {
    log: ConsoleOut,
    client: Option<Arc<File>>,
    /// Bytes the current client had no room for.
    lost: u64,
}

impl SerialOutput {
    fn new(log: ConsoleOut) -> Self {
        SerialOutput {
            log,
            client: None,
            lost: 0,
        }
    }

    fn attach(&mut self, client: Option<Arc<File>>) {
        if self.lost > 0 {
            tracing::info!(
                bytes = self.lost,
                "the console client did not read all the output"
            );
        }
        self.client = client;
        self.lost = 0;
    }
}

impl Write for SerialOutput {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if let Some(client) = &self.client {
            match (&**client).write(buf) {
                Ok(n) => self.lost += (buf.len() - n) as u64,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.lost += buf.len() as u64,
                // The client went away (EPIPE; SIGPIPE is ignored): the device loop sees its
                // hang-up and detaches it, until then its bytes go only to the log.
                Err(_) => self.lost += buf.len() as u64,
            }
        }
        self.log.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.log.flush()
    }
}

/// Tells the console socket's reader that the guest emptied the receive FIFO, so it may
/// read more of its client's input (the reader stops reading while the FIFO is full rather
/// than drop keystrokes).
pub struct InputDrained(EventFd);

impl SerialEvents for InputDrained {
    fn buffer_read(&self) {}
    fn out_byte(&self) {}
    fn tx_lost_byte(&self) {}
    fn in_buffer_empty(&self) {
        // A full counter (2^64 - 2 unread wake-ups) still wakes the reader.
        let _ = self.0.write(1);
    }
}

pub struct SerialConsole {
    uart: Serial<IrqLine, InputDrained, SerialOutput>,
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
        let drained = drained_event().map_err(|e| SerialStateError(e.to_string()))?;
        let uart = Serial::from_state(&s, irq, drained, SerialOutput::new(out))
            .map_err(|e| SerialStateError(format!("{e:?}")))?;
        Ok(SerialConsole {
            uart,
            // Start-up figures are about this process's guest: it has printed already.
            first_output: None,
        })
    }

    pub fn new(irq: IrqLine, out: ConsoleOut) -> io::Result<Self> {
        Ok(SerialConsole {
            uart: Serial::with_events(irq, drained_event()?, SerialOutput::new(out)),
            first_output: None,
        })
    }

    /// Feeds host input (stdin, the console socket) to the guest: what fits the receive
    /// FIFO is queued and the guest interrupted if IER asks for it; returns how many bytes
    /// fit.
    pub fn enqueue_input(&mut self, input: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(input).unwrap_or(0)
    }

    /// How many more bytes of input the receive FIFO takes now.
    pub fn input_room(&self) -> usize {
        self.uart.fifo_capacity()
    }

    /// A handle on the event that fires whenever the guest empties the receive FIFO.
    pub fn input_drained(&self) -> io::Result<EventFd> {
        self.uart.events().0.try_clone()
    }

    /// Sends output to `client` from now on as well as to the log (None: to the log only).
    pub fn attach_client(&mut self, client: Option<Arc<File>>) {
        self.uart.writer_mut().attach(client);
    }
}

fn drained_event() -> io::Result<InputDrained> {
    EventFd::new(libc::EFD_NONBLOCK).map(InputDrained)
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
        SerialConsole::new(irq, Box::new(std::io::sink())).unwrap()
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
    fn input_is_read_from_rbr_and_interrupts_only_when_ier_allows() {
        const LSR: u8 = 5;
        let irq = EventFd::new(libc::EFD_NONBLOCK).unwrap();
        let mut c =
            SerialConsole::new(IrqLine(irq.try_clone().unwrap()), Box::new(std::io::sink()))
                .unwrap();
        let drained = c.input_drained().unwrap();

        // IER clear (a polling driver): the byte waits in the FIFO, no interrupt.
        assert_eq!(c.enqueue_input(b"a"), 1);
        assert!(irq.read().is_err(), "no interrupt without IER's RDA bit");
        assert_eq!(read(&mut c, LSR) & 0x01, 0x01, "data ready");
        assert_eq!(read(&mut c, DATA), b'a');
        assert_eq!(read(&mut c, LSR) & 0x01, 0);
        assert_eq!(
            drained.read().unwrap(),
            1,
            "reading the FIFO empty wakes its feeder"
        );

        // RDA interrupts enabled: input raises IRQ 4.
        c.write(u64::from(IER), &[0x01]);
        assert_eq!(c.enqueue_input(b"hi"), 2);
        assert_eq!(irq.read().unwrap(), 1);
        assert_eq!(c.input_room(), 62);
        assert_eq!((read(&mut c, DATA), read(&mut c, DATA)), (b'h', b'i'));
    }

    #[test]
    fn more_input_than_the_fifo_holds_is_refused() {
        let mut state = console().state();
        state.in_buffer = vec![b'x'; 4096];
        let irq = IrqLine(EventFd::new(libc::EFD_NONBLOCK).unwrap());
        assert!(SerialConsole::from_state(&state, irq, Box::new(std::io::sink())).is_err());
    }
}
