//! Guest RAM: anonymous private mappings (populated on first touch) around the MMIO gap.

use vm_memory::GuestMemoryMmap;

use crate::arch::layout::ram_ranges;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error("cannot map {mib} MiB of guest memory: {reason}")]
    Map { mib: u64, reason: String },
}

pub fn create_guest_memory(mem_size_mib: u64) -> Result<GuestMemoryMmap, MemoryError> {
    let bytes = mem_size_mib << 20;
    GuestMemoryMmap::from_ranges(&ram_ranges(bytes)).map_err(|e| MemoryError::Map {
        mib: mem_size_mib,
        reason: e.to_string(),
    })
}
