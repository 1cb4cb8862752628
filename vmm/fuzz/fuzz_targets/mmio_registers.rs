//! The virtio-mmio register file under arbitrary access sequences: every offset, width and
//! value, in any order (a guest driver's whole handshake is one such sequence). Nothing may
//! panic; the rules themselves (frozen queues after DRIVER_OK, ...) are unit-tested in mmio.rs.
#![no_main]

use std::sync::{Arc, Mutex};

use libfuzzer_sys::fuzz_target;
use outpost_vmm::devices::bus::BusDevice;
use outpost_vmm::devices::virtio::mmio::MmioTransport;
use outpost_vmm::devices::virtio::rng::Rng;
use outpost_vmm::devices::virtio::IrqTrigger;
use vm_memory::{GuestAddress, GuestMemoryMmap};

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x1_0000)]).expect("memory");
    let Ok(rng) = Rng::new() else { return };
    let Ok(irq) = IrqTrigger::new() else { return };
    let Ok(mut t) = MmioTransport::new(mem, Arc::new(Mutex::new(rng)), Arc::new(irq)) else {
        return;
    };
    // Each access: [write?+width selector][offset lo][offset hi][value: 8 bytes].
    for op in data.chunks_exact(11) {
        let write = op[0] & 0x80 != 0;
        let len = [1usize, 2, 3, 4, 8][usize::from(op[0] & 0x7f) % 5];
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]])) % 0x200;
        let value = &op[3..3 + len.min(8)];
        if write {
            t.write(offset, value);
        } else {
            let mut out = vec![0u8; len];
            t.read(offset, &mut out);
        }
    }
});
