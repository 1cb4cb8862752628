//! Guest memory by linear address: a 4- and 5-level page walk over guest RAM from CR3
//! (SDM Vol. 3A §4.5) with the permission checks and accessed/dirty updates a real access
//! would make, and the host-side atomics `cmpxchg8b`/`cmpxchg16b` need.
//!
//! All guest RAM access goes through vm-memory; the one raw pointer (for `lock cmpxchg16b`)
//! comes from vm-memory's `get_slice` and never leaves [`host_cmpxchg16b`].

use std::sync::atomic::{AtomicU64, Ordering};

use kvm_bindings::kvm_sregs;
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, VolatileMemory};

use super::cpu::Exception;
use super::decode::{ctl, flags};

const PAGE_SIZE: u64 = 4096;
const ADDR_MASK: u64 = 0x000f_ffff_ffff_f000;
const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;
const PTE_PS: u64 = 1 << 7;

/// #PF error-code bits (SDM Vol. 3A §4.7).
pub mod pf {
    pub const PRESENT: u32 = 1 << 0;
    pub const WRITE: u32 = 1 << 1;
    pub const USER: u32 = 1 << 2;
    pub const RSVD: u32 = 1 << 3;
}

/// What went wrong accessing guest memory by linear address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemError {
    /// The access faults architecturally: the guest gets this #PF (or #GP for alignment).
    #[error("guest fault {} at {:#x}", .0.name(), .0.cr2.unwrap_or(0))]
    Fault(Exception),
    /// The page tables point outside guest RAM (MMIO or garbage).
    #[error("linear address {gva:#x} maps to {gpa:#x}, which is not guest RAM")]
    NotRam { gva: u64, gpa: u64 },
    /// The vCPU is in a paging mode this walker does not model.
    #[error("unsupported paging mode: {0}")]
    UnsupportedPaging(&'static str),
}

/// Guest memory as the emulated instruction sees it: linear addresses, current privilege.
pub trait GuestVirtMem {
    fn read(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), MemError>;
    /// Writes all of `data` or nothing: every page is translated before the first byte lands.
    fn write(&mut self, gva: u64, data: &[u8]) -> Result<(), MemError>;
    /// Checks that `len` bytes at `gva` are accessible, without touching them.
    fn probe(&mut self, gva: u64, len: usize, write: bool) -> Result<(), MemError>;
    /// Atomic 16-byte compare-exchange at a 16-byte aligned `gva`.
    /// `Ok(Ok(()))` when swapped, `Ok(Err(current))` when the comparison failed.
    fn cmpxchg16(
        &mut self,
        gva: u64,
        expected: u128,
        new: u128,
    ) -> Result<Result<(), u128>, MemError>;
    /// 8-byte compare-exchange; atomic when `gva` is 8-byte aligned.
    fn cmpxchg8(&mut self, gva: u64, expected: u64, new: u64) -> Result<Result<(), u64>, MemError>;
}

/// The paging-relevant part of the vCPU state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Paging {
    pub enabled: bool,
    pub long_mode: bool,
    pub cr3: u64,
    pub la57: bool,
    pub wp: bool,
    pub smap: bool,
    /// CPL 3.
    pub user: bool,
    /// RFLAGS.AC (lets CPL0 touch user pages under SMAP).
    pub ac: bool,
}

impl Paging {
    pub fn from_sregs(sregs: &kvm_sregs, rflags: u64) -> Self {
        Self {
            enabled: sregs.cr0 & ctl::CR0_PG != 0,
            long_mode: sregs.efer & ctl::EFER_LMA != 0,
            cr3: sregs.cr3,
            la57: sregs.cr4 & ctl::CR4_LA57 != 0,
            wp: sregs.cr0 & ctl::CR0_WP != 0,
            smap: sregs.cr4 & ctl::CR4_SMAP != 0,
            user: sregs.cs.selector & 3 == 3,
            ac: rflags & flags::AC != 0,
        }
    }
}

/// Kind of access a translation is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    /// The monitor looking at guest memory (IDT, exception frame): only presence is checked
    /// and no accessed bit is set.
    Peek,
}

/// Translates `gva` to a guest-physical address, as an access of kind `access` would.
pub fn translate(
    mem: &GuestMemoryMmap,
    paging: &Paging,
    gva: u64,
    access: Access,
) -> Result<u64, MemError> {
    if !paging.enabled {
        return Ok(gva);
    }
    if !paging.long_mode {
        return Err(MemError::UnsupportedPaging(
            "32-bit or PAE paging outside long mode",
        ));
    }
    let levels: u32 = if paging.la57 { 5 } else { 4 };
    let write = access == Access::Write;
    let fault = |present: bool, rsvd: bool| {
        let mut code = 0;
        if present {
            code |= pf::PRESENT;
        }
        if write {
            code |= pf::WRITE;
        }
        if paging.user {
            code |= pf::USER;
        }
        if rsvd {
            code |= pf::RSVD | pf::PRESENT;
        }
        MemError::Fault(Exception::page_fault(gva, code))
    };

    let mut table = paging.cr3 & ADDR_MASK;
    let mut entries: [u64; 5] = [0; 5];
    let mut writable = true;
    let mut user_ok = true;
    let mut walked = 0;
    let mut leaf = None;
    for level in (1..=levels).rev() {
        let shift = 12 + 9 * (level - 1);
        let entry_addr = table + ((gva >> shift) & 0x1ff) * 8;
        let entry: u64 = mem
            .read_obj(GuestAddress(entry_addr))
            .map_err(|_| MemError::NotRam {
                gva,
                gpa: entry_addr,
            })?;
        entries[walked] = entry_addr;
        walked += 1;
        if entry & PTE_P == 0 {
            return Err(fault(false, false));
        }
        writable &= entry & PTE_RW != 0;
        user_ok &= entry & PTE_US != 0;
        let large = entry & PTE_PS != 0;
        if large && level >= 4 {
            return Err(fault(true, true));
        }
        if level == 1 || large {
            let page_mask = (1u64 << shift) - 1;
            let base = entry & ADDR_MASK & !page_mask;
            leaf = Some(base | (gva & page_mask));
            break;
        }
        table = entry & ADDR_MASK;
    }
    let gpa = leaf.ok_or(MemError::UnsupportedPaging(
        "page walk ended without a leaf",
    ))?;

    if access != Access::Peek {
        if paging.user && !user_ok {
            return Err(fault(true, false));
        }
        if write && !writable && (paging.user || paging.wp) {
            return Err(fault(true, false));
        }
        if !paging.user && user_ok && paging.smap && !paging.ac {
            return Err(fault(true, false));
        }
        // SDM Vol. 3A §4.8: the processor sets A in every entry used and D in the leaf on
        // a write; the guest (and KVM's shadow MMU) rely on them.
        for (i, &entry_addr) in entries[..walked].iter().enumerate() {
            let mut bits = PTE_A;
            if write && i + 1 == walked {
                bits |= PTE_D;
            }
            set_entry_bits(mem, entry_addr, bits).map_err(|_| MemError::NotRam {
                gva,
                gpa: entry_addr,
            })?;
        }
    }
    Ok(gpa)
}

fn set_entry_bits(mem: &GuestMemoryMmap, entry_addr: u64, bits: u64) -> Result<(), ()> {
    let slice = mem.get_slice(GuestAddress(entry_addr), 8).map_err(|_| ())?;
    let entry = slice.get_atomic_ref::<AtomicU64>(0).map_err(|_| ())?;
    if entry.load(Ordering::Relaxed) & bits != bits {
        entry.fetch_or(bits, Ordering::SeqCst);
    }
    Ok(())
}

/// Splits `[gva, gva+len)` into pieces that stay within one 4 KiB page.
fn page_chunks(gva: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
    let mut done = 0usize;
    std::iter::from_fn(move || {
        if done >= len {
            return None;
        }
        let addr = gva.wrapping_add(done as u64);
        let room = (PAGE_SIZE - (addr & (PAGE_SIZE - 1))) as usize;
        let n = room.min(len - done);
        let item = (addr, done, n);
        done += n;
        Some(item)
    })
}

/// [`GuestVirtMem`] over the monitor's mapping of guest RAM.
pub struct PagedMemory<'a> {
    mem: &'a GuestMemoryMmap,
    paging: Paging,
}

impl<'a> PagedMemory<'a> {
    pub fn new(mem: &'a GuestMemoryMmap, paging: Paging) -> Self {
        Self { mem, paging }
    }

    fn translate_all(
        &self,
        gva: u64,
        len: usize,
        access: Access,
    ) -> Result<Vec<(u64, usize, usize)>, MemError> {
        page_chunks(gva, len)
            .map(|(addr, off, n)| {
                translate(self.mem, &self.paging, addr, access).map(|gpa| (gpa, off, n))
            })
            .collect()
    }

    /// Reads guest memory as the monitor (presence checks only, no accessed bits).
    pub fn peek(&self, gva: u64, buf: &mut [u8]) -> Result<(), MemError> {
        for (gpa, off, n) in self.translate_all(gva, buf.len(), Access::Peek)? {
            self.mem
                .read_slice(&mut buf[off..off + n], GuestAddress(gpa))
                .map_err(|_| MemError::NotRam { gva, gpa })?;
        }
        Ok(())
    }
}

impl GuestVirtMem for PagedMemory<'_> {
    fn read(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), MemError> {
        for (gpa, off, n) in self.translate_all(gva, buf.len(), Access::Read)? {
            self.mem
                .read_slice(&mut buf[off..off + n], GuestAddress(gpa))
                .map_err(|_| MemError::NotRam { gva, gpa })?;
        }
        Ok(())
    }

    fn write(&mut self, gva: u64, data: &[u8]) -> Result<(), MemError> {
        let chunks = self.translate_all(gva, data.len(), Access::Write)?;
        for &(gpa, _, n) in &chunks {
            if !self.mem.check_range(GuestAddress(gpa), n) {
                return Err(MemError::NotRam { gva, gpa });
            }
        }
        for (gpa, off, n) in chunks {
            self.mem
                .write_slice(&data[off..off + n], GuestAddress(gpa))
                .map_err(|_| MemError::NotRam { gva, gpa })?;
        }
        Ok(())
    }

    fn probe(&mut self, gva: u64, len: usize, write: bool) -> Result<(), MemError> {
        let access = if write { Access::Write } else { Access::Read };
        self.translate_all(gva, len.max(1), access).map(|_| ())
    }

    fn cmpxchg16(
        &mut self,
        gva: u64,
        expected: u128,
        new: u128,
    ) -> Result<Result<(), u128>, MemError> {
        if gva % 16 != 0 {
            return Err(MemError::Fault(Exception::gp0()));
        }
        let gpa = translate(self.mem, &self.paging, gva, Access::Write)?;
        let slice = self
            .mem
            .get_slice(GuestAddress(gpa), 16)
            .map_err(|_| MemError::NotRam { gva, gpa })?;
        host_cmpxchg16b(&slice, expected, new).ok_or(MemError::NotRam { gva, gpa })
    }

    fn cmpxchg8(&mut self, gva: u64, expected: u64, new: u64) -> Result<Result<(), u64>, MemError> {
        if gva % 8 == 0 {
            let gpa = translate(self.mem, &self.paging, gva, Access::Write)?;
            let slice = self
                .mem
                .get_slice(GuestAddress(gpa), 8)
                .map_err(|_| MemError::NotRam { gva, gpa })?;
            let cell = slice
                .get_atomic_ref::<AtomicU64>(0)
                .map_err(|_| MemError::NotRam { gva, gpa })?;
            return Ok(cell
                .compare_exchange(expected, new, Ordering::SeqCst, Ordering::SeqCst)
                .map(|_| ()));
        }
        // Misaligned: a host locked access could be a split lock (and #AC/SIGBUS with
        // split-lock detection), so fall back to a plain read-compare-write. Atomic against
        // this vCPU only; Linux never issues a misaligned cmpxchg8b.
        self.probe(gva, 8, true)?;
        let mut cur = [0u8; 8];
        self.read(gva, &mut cur)?;
        let current = u64::from_le_bytes(cur);
        if current == expected {
            self.write(gva, &new.to_le_bytes())?;
            Ok(Ok(()))
        } else {
            self.write(gva, &cur)?;
            Ok(Err(current))
        }
    }
}

/// `lock cmpxchg16b` on a 16-byte slice of guest RAM. `None` if the slice is not 16 bytes
/// or its host address is not 16-byte aligned.
pub fn host_cmpxchg16b<B: vm_memory::bitmap::BitmapSlice>(
    slice: &vm_memory::VolatileSlice<'_, B>,
    expected: u128,
    new: u128,
) -> Option<Result<(), u128>> {
    let guard = slice.ptr_guard_mut();
    let ptr = guard.as_ptr();
    if guard.len() < 16 || (ptr as usize) % 16 != 0 {
        return None;
    }
    let mut lo = expected as u64;
    let mut hi = (expected >> 64) as u64;
    let swapped: u8;
    // SAFETY: `ptr` points into the monitor's mmap of guest RAM, valid for 16 bytes (checked
    // length) for as long as `guard` lives, and is 16-byte aligned (checked), which is what
    // cmpxchg16b requires. Guest memory is shared with the guest, so the access is a locked
    // atomic RMW, never a Rust reference. RBX is reserved by LLVM, so it is swapped with a
    // scratch register around the instruction and restored before the block ends.
    unsafe {
        std::arch::asm!(
            "xchg {new_lo}, rbx",
            "lock cmpxchg16b xmmword ptr [{ptr}]",
            "sete {ok}",
            "mov rbx, {new_lo}",
            ptr = in(reg) ptr,
            new_lo = inout(reg) new as u64 => _,
            ok = out(reg_byte) swapped,
            inout("rax") lo,
            inout("rdx") hi,
            in("rcx") (new >> 64) as u64,
            options(nostack),
        );
    }
    if swapped != 0 {
        Some(Ok(()))
    } else {
        Some(Err(u128::from(lo) | (u128::from(hi) << 64)))
    }
}

#[cfg(test)]
#[path = "mmu_tests.rs"]
pub(crate) mod tests;
