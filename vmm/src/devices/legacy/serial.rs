//! The 8250 UART console on COM1 (vm-superio's emulation), writing to stdout or a file.
//! IRQ 4 is an irqfd; vm-superio raises it when the transmitter empties and IER asks for it,
//! so output through the guest's tty layer flows, not only printk.

use std::io::Write;

use vm_superio::serial::NoEvents;
use vm_superio::Serial;

use super::IrqLine;
use crate::devices::bus::BusDevice;

pub type ConsoleOut = Box<dyn Write + Send>;

pub struct SerialConsole {
    uart: Serial<IrqLine, NoEvents, ConsoleOut>,
    /// Whether the guest ever printed, for the "first console line" figure.
    pub first_output: Option<std::time::Instant>,
}

impl SerialConsole {
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
