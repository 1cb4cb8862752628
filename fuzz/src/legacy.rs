//! The legacy devices a guest programs through port I/O: the 8250 UART (COM1) and the
//! i8042 keyboard controller. An input is a sequence of port accesses.

use arbitrary::{Result, Unstructured};
use outpost_vmm::devices::bus::BusDevice;
use outpost_vmm::devices::legacy::i8042::I8042;
use outpost_vmm::devices::legacy::serial::SerialConsole;
use outpost_vmm::devices::legacy::{IrqLine, PowerSignal};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

/// Accesses per input.
const MAX_ACCESSES: usize = 256;

pub fn serial(data: &[u8]) {
    let Some(irq) = irq_line() else { return };
    // Only the eventfd it makes can fail, as irq_line's can.
    let Ok(mut uart) = SerialConsole::new(irq, Box::new(std::io::sink())) else {
        return;
    };
    let mut u = Unstructured::new(data);
    let _ = accesses(&mut u, 8, |u, op| {
        if op == Op::HostInput {
            // Host input (stdin) arrives between the guest's accesses.
            let bytes = crate::bytes_up_to(u, 80)?;
            uart.enqueue_input(bytes);
            return Ok(());
        }
        port_access(u, &mut uart, op)
    });
}

pub fn i8042(data: &[u8]) {
    let Some(irq) = irq_line() else { return };
    let mut kbd = I8042::new(irq, PowerSignal::new());
    let mut u = Unstructured::new(data);
    let _ = accesses(&mut u, 8, |u, op| {
        if op == Op::HostInput {
            kbd.send_ctrl_alt_del();
            return Ok(());
        }
        port_access(u, &mut kbd, op)
    });
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Read(u64),
    Write(u64),
    HostInput,
}

/// Calls `step` for each operation the input spells, with offsets below `ports`.
fn accesses(
    u: &mut Unstructured<'_>,
    ports: u64,
    mut step: impl FnMut(&mut Unstructured<'_>, Op) -> Result<()>,
) -> Result<()> {
    for _ in 0..MAX_ACCESSES {
        if u.is_empty() {
            break;
        }
        let kind = u.int_in_range(0..=8u8)?;
        let offset = u.int_in_range(0..=ports - 1)?;
        let op = match kind {
            0..=3 => Op::Write(offset),
            4..=7 => Op::Read(offset),
            _ => Op::HostInput,
        };
        step(u, op)?;
    }
    Ok(())
}

/// One port access, of a width the input picks (the guest may use any).
fn port_access(u: &mut Unstructured<'_>, dev: &mut dyn BusDevice, op: Op) -> Result<()> {
    let width = *u.choose(&[1usize, 1, 1, 2, 4, 0])?;
    match op {
        Op::Write(offset) => {
            let value = u.arbitrary::<u32>()?.to_le_bytes();
            dev.write(offset, &value[..width.min(4)]);
        }
        Op::Read(offset) => {
            let mut buf = [0u8; 4];
            dev.read(offset, &mut buf[..width.min(4)]);
        }
        Op::HostInput => {}
    }
    Ok(())
}

/// Non-blocking, as the monitor's: an interrupt nobody reads must not block the device once
/// the counter is full.
fn irq_line() -> Option<IrqLine> {
    EventFd::new(EFD_NONBLOCK).ok().map(IrqLine)
}
