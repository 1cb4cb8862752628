//! Guest physical memory layout.
//!
//! ```text
//! 0x0000_0500  GDT used at boot              0x0000_9000  boot page tables (PML4, PDPT, PD)
//! 0x0000_5000  PVH memory map                0x0002_0000  kernel command line
//! 0x0000_6000  PVH start_info                0x000e_0000  ACPI tables (RSDP first)
//! 0x0000_7000  zero page (boot_params)       0x0010_0000  high memory: kernel, initrd at top
//! 0xc000_0000 .. 0x1_0000_0000  MMIO gap: virtio-mmio devices, IOAPIC, LAPIC
//! 0x1_0000_0000 ..              RAM above 4 GiB when the guest has more than 3 GiB
//! ```

use vm_memory::GuestAddress;

pub const BOOT_GDT_START: u64 = 0x500;
pub const BOOT_IDT_START: u64 = 0x520;
pub const PVH_MEMMAP_START: u64 = 0x5000;
pub const PVH_INFO_START: u64 = 0x6000;
pub const ZERO_PAGE_START: u64 = 0x7000;
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
pub const PML4_START: u64 = 0x9000;
pub const PDPTE_START: u64 = 0xa000;
pub const PDE_START: u64 = 0xb000;
pub const CMDLINE_START: u64 = 0x20000;
/// Linux x86's COMMAND_LINE_SIZE.
pub const CMDLINE_MAX_SIZE: usize = 2048;
/// End of conventional memory; the EBDA and legacy ROM area follow.
pub const EBDA_START: u64 = 0x9fc00;
/// ACPI tables live in the BIOS area, where a guest scanning for the RSDP finds it too.
pub const ACPI_START: u64 = 0xe0000;
pub const ACPI_END: u64 = 0x100000;
pub const HIGH_MEMORY_START: u64 = 0x100000;

pub const MMIO_GAP_START: u64 = 0xc000_0000;
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// virtio-mmio devices, one page each.
pub const VIRTIO_MMIO_START: u64 = 0xd000_0000;
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// First GSI handed to virtio-mmio devices (ISA IRQs below are legacy devices').
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// IOAPIC pins the in-kernel irqchip provides.
pub const IOAPIC_PINS: u32 = 24;
pub const IOAPIC_ADDR: u64 = 0xfec0_0000;
pub const LAPIC_ADDR: u64 = 0xfee0_0000;

/// Legacy ports.
pub const COM1_PORT: u16 = 0x3f8;
pub const COM1_IRQ: u32 = 4;
pub const I8042_PORT: u16 = 0x60;
pub const I8042_IRQ: u32 = 1;
/// Our ACPI hardware-reduced power management block: sleep control, sleep status, reset.
pub const ACPI_PM_PORT: u16 = 0x600;
pub const ACPI_PM_LEN: u16 = 4;
/// The Generic Event Device's event register (one byte), right after the PM block.
pub const ACPI_GED_PORT: u16 = ACPI_PM_PORT + ACPI_PM_LEN;
pub const ACPI_GED_LEN: u16 = 1;
/// The GED's interrupt: COM2's legacy line, free here (only COM1 is emulated) and below the
/// virtio devices' range.
pub const ACPI_GED_IRQ: u32 = 3;

/// RAM ranges for a guest with `mem_size` bytes, around the MMIO gap.
pub fn ram_ranges(mem_size: u64) -> Vec<(GuestAddress, usize)> {
    if mem_size <= MMIO_GAP_START {
        vec![(GuestAddress(0), mem_size as usize)]
    } else {
        vec![
            (GuestAddress(0), MMIO_GAP_START as usize),
            (
                GuestAddress(MMIO_GAP_END),
                (mem_size - MMIO_GAP_START) as usize,
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_splits_around_the_mmio_gap() {
        assert_eq!(ram_ranges(256 << 20), vec![(GuestAddress(0), 256 << 20)]);
        let r = ram_ranges(16 << 30);
        assert_eq!(r[0], (GuestAddress(0), MMIO_GAP_START as usize));
        assert_eq!(r[1].0, GuestAddress(MMIO_GAP_END));
        assert_eq!(r[0].1 + r[1].1, 16 << 30);
    }
}
