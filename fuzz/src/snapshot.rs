//! A snapshot's state file is input: whoever can name a file in `PUT /snapshot/load` chooses
//! its bytes. An input is a state file (or, with the first byte odd, a body framed with a
//! valid header, to get past the checksum) holding the legacy devices' and a virtio-mmio
//! transport's state; whatever decodes is restored into real devices, which must refuse
//! what does not fit and never panic.

use std::path::Path;
use std::sync::{Arc, Mutex};

use outpost_vmm::devices::bus::BusDevice;
use outpost_vmm::devices::legacy::i8042::{I8042State, I8042};
use outpost_vmm::devices::legacy::serial::{SerialConsole, SerialConsoleState};
use outpost_vmm::devices::legacy::{IrqLine, PowerSignal};
use outpost_vmm::devices::virtio::mmio::{MmioTransport, MmioTransportState};
use outpost_vmm::devices::virtio::{rng, IrqTrigger};
use outpost_vmm::snapshot::file;
use vm_memory::{GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

type Devices = (I8042State, SerialConsoleState, MmioTransportState);

pub fn devices(data: &[u8]) {
    let (&how, rest) = data.split_first().unwrap_or((&0, &[]));
    let bytes = if how & 1 == 1 {
        file::frame(rest)
    } else {
        rest.to_vec()
    };
    let Ok((i8042, serial, transport)) = file::decode::<Devices>(Path::new("fuzz"), &bytes) else {
        return;
    };
    let irq = || EventFd::new(EFD_NONBLOCK).ok().map(IrqLine);
    if let Some(Ok(mut kbd)) = irq().map(|irq| I8042::from_state(&i8042, irq, PowerSignal::new())) {
        let mut b = [0u8];
        kbd.read(0, &mut b);
        kbd.read(4, &mut b);
    }
    if let Some(Ok(mut uart)) =
        irq().map(|irq| SerialConsole::from_state(&serial, irq, Box::new(std::io::sink())))
    {
        let mut b = [0u8];
        for off in 0..8 {
            uart.read(off, &mut b);
        }
    }
    let (Ok(mem), Ok(rng), Ok(irq)) = (
        GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 1 << 20)]),
        rng::Rng::new(),
        IrqTrigger::new(),
    ) else {
        return;
    };
    if let Ok(mut t) =
        MmioTransport::restore(mem, Arc::new(Mutex::new(rng)), Arc::new(irq), &transport)
    {
        let mut b = [0u8; 4];
        for off in (0..0x100).step_by(4) {
            t.read(off, &mut b);
        }
    }
}
