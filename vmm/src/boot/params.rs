//! What the kernel reads at entry: the zero page (Linux boot protocol) or the PVH start_info,
//! each with the memory map, command line, initrd and ACPI RSDP.

use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_params, setup_header};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use crate::arch::layout::*;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const XEN_HVM_START_MAGIC: u32 = 0x336e_c578;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448;
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;

#[derive(Debug, thiserror::Error)]
pub enum ParamsError {
    #[error("cannot write boot parameters: {0}")]
    Write(String),
    #[error("too many memory map entries")]
    TooManyE820,
}

/// The guest's memory map: RAM below the EBDA, the legacy hole (where the ACPI tables sit,
/// reserved), RAM from 1 MiB to the MMIO gap, and RAM above 4 GiB.
pub fn memory_map(mem_size: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, EBDA_START, E820_RAM),
        (EBDA_START, HIGH_MEMORY_START - EBDA_START, E820_RESERVED),
    ];
    for (start, len) in ram_ranges(mem_size) {
        let (s, l) = if start.0 == 0 {
            (HIGH_MEMORY_START, len as u64 - HIGH_MEMORY_START)
        } else {
            (start.0, len as u64)
        };
        map.push((s, l, E820_RAM));
    }
    map
}

/// Where the initrd and the command line are.
#[derive(Clone, Copy, Debug, Default)]
pub struct BootInputs {
    pub cmdline_addr: u64,
    pub cmdline_len: usize,
    pub initrd: Option<(u64, u64)>,
    pub rsdp: u64,
}

pub fn write_zero_page(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    header: Option<setup_header>,
    inputs: &BootInputs,
) -> Result<(), ParamsError> {
    let mut params = boot_params::default();
    if let Some(h) = header {
        params.hdr = h;
    }
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    params.hdr.cmd_line_ptr = inputs.cmdline_addr as u32;
    params.hdr.cmdline_size = inputs.cmdline_len as u32;
    if let Some((addr, size)) = inputs.initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    params.acpi_rsdp_addr = inputs.rsdp;
    let map = memory_map(mem_size);
    if map.len() > params.e820_table.len() {
        return Err(ParamsError::TooManyE820);
    }
    for (i, (addr, size, type_)) in map.iter().enumerate() {
        params.e820_table[i].addr = *addr;
        params.e820_table[i].size = *size;
        params.e820_table[i].r#type = *type_;
    }
    params.e820_entries = map.len() as u8;
    mem.write_obj(params, GuestAddress(ZERO_PAGE_START))
        .map_err(|e| ParamsError::Write(e.to_string()))
}

pub fn write_pvh_start_info(
    mem: &GuestMemoryMmap,
    mem_size: u64,
    inputs: &BootInputs,
) -> Result<(), ParamsError> {
    let map: Vec<hvm_memmap_table_entry> = memory_map(mem_size)
        .into_iter()
        .map(|(addr, size, type_)| hvm_memmap_table_entry {
            addr,
            size,
            type_,
            reserved: 0,
        })
        .collect();
    let mut info = hvm_start_info {
        magic: XEN_HVM_START_MAGIC,
        version: 1,
        cmdline_paddr: inputs.cmdline_addr,
        rsdp_paddr: inputs.rsdp,
        memmap_paddr: PVH_MEMMAP_START,
        memmap_entries: map.len() as u32,
        ..Default::default()
    };
    let modules: Vec<hvm_modlist_entry> = inputs
        .initrd
        .map(|(paddr, size)| hvm_modlist_entry {
            paddr,
            size,
            ..Default::default()
        })
        .into_iter()
        .collect();
    let modlist_addr =
        PVH_MEMMAP_START + (map.len() * std::mem::size_of::<hvm_memmap_table_entry>()) as u64;
    if !modules.is_empty() {
        info.nr_modules = modules.len() as u32;
        info.modlist_paddr = modlist_addr;
    }
    let mut params = BootParams::new(&info, GuestAddress(PVH_INFO_START));
    params.set_sections(&map, GuestAddress(PVH_MEMMAP_START));
    if !modules.is_empty() {
        params.set_modules(&modules, GuestAddress(modlist_addr));
    }
    PvhBootConfigurator::write_bootparams::<GuestMemoryMmap>(&params, mem)
        .map_err(|e| ParamsError::Write(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_map_covers_ram_and_skips_the_gap() {
        let m = memory_map(256 << 20);
        assert_eq!(m[0], (0, EBDA_START, E820_RAM));
        assert_eq!(
            m[2],
            (HIGH_MEMORY_START, (256 << 20) - HIGH_MEMORY_START, E820_RAM)
        );
        let m = memory_map(8 << 30);
        let ram: u64 = m.iter().filter(|e| e.2 == E820_RAM).map(|e| e.1).sum();
        assert_eq!(ram, (8 << 30) - (HIGH_MEMORY_START - EBDA_START));
        assert!(m
            .iter()
            .all(|e| e.0 + e.1 <= MMIO_GAP_START || e.0 >= MMIO_GAP_END));
    }
}
