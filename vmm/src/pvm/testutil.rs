//! Test doubles for the emulator's two traits: a vCPU held in plain structs and a flat linear
//! memory with pages that fault. For unit tests of the pure emulation logic and for the fuzz
//! targets (fuzz/), which is why nothing here may panic on a guest address.

use std::collections::{BTreeMap, BTreeSet};

use kvm_bindings::{kvm_guest_debug, kvm_regs, kvm_segment, kvm_sregs, KVM_GUESTDBG_BLOCKIRQ};

use super::cpu::{CpuError, CpuState, Exception, XSAVE_AREA_SIZE};
use super::decode::ctl;
use super::mmu::{pf, GuestVirtMem, MemError};
use super::syscall::DebugControl;

pub struct FakeCpu {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub area: Vec<u8>,
    pub xcr0: u64,
    /// XCR0 values outside this mask make set_xcr0 fail with EINVAL, as KVM does.
    pub xcr0_supported: u64,
    pub msrs: BTreeMap<u32, u64>,
    pub injected: Vec<Exception>,
    pub set_regs_calls: usize,
    /// Every KVM_SET_GUEST_DEBUG accepted.
    pub debug: Vec<kvm_guest_debug>,
    /// Refuse KVM_GUESTDBG_BLOCKIRQ with EINVAL, as kernels before 5.15 do.
    pub reject_blockirq: bool,
}

impl FakeCpu {
    /// A CPL0 vCPU in 64-bit mode with SSE and XSAVE enabled.
    pub fn long_mode() -> Self {
        let cs = kvm_segment {
            selector: 0x10,
            l: 1,
            present: 1,
            s: 1,
            type_: 0xb,
            ..Default::default()
        };
        let sregs = kvm_sregs {
            cs,
            cr0: 1 | ctl::CR0_MP | ctl::CR0_PG | ctl::CR0_WP | (1 << 5),
            cr4: (1 << 5) | ctl::CR4_OSFXSR | ctl::CR4_OSXSAVE,
            efer: ctl::EFER_LMA | (1 << 8),
            ..Default::default()
        };
        let mut area = vec![0u8; XSAVE_AREA_SIZE];
        area[0..2].copy_from_slice(&0x037fu16.to_le_bytes());
        area[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
        Self {
            regs: kvm_regs {
                rip: 0x1000,
                rflags: 0x2,
                ..Default::default()
            },
            sregs,
            area,
            xcr0: 0b111,
            xcr0_supported: 0b111,
            msrs: BTreeMap::new(),
            injected: Vec::new(),
            set_regs_calls: 0,
            debug: Vec::new(),
            reject_blockirq: false,
        }
    }
}

impl FakeCpu {
    /// A 16-bit field of the XSAVE image's legacy region.
    pub fn legacy_u16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.area[off], self.area[off + 1]])
    }

    pub fn set_legacy_u16(&mut self, off: usize, v: u16) {
        self.area[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    pub fn mxcsr(&self) -> u32 {
        u32::from_le_bytes([self.area[24], self.area[25], self.area[26], self.area[27]])
    }

    pub fn set_mxcsr(&mut self, v: u32) {
        self.area[24..28].copy_from_slice(&v.to_le_bytes());
    }

    pub fn xstate_bv(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.area[512..520]);
        u64::from_le_bytes(b)
    }
}

impl CpuState for FakeCpu {
    fn regs(&mut self) -> Result<kvm_regs, CpuError> {
        Ok(self.regs)
    }
    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), CpuError> {
        self.set_regs_calls += 1;
        self.regs = *regs;
        Ok(())
    }
    fn sregs(&mut self) -> Result<kvm_sregs, CpuError> {
        Ok(self.sregs)
    }
    fn set_sregs(&mut self, sregs: &kvm_sregs) -> Result<(), CpuError> {
        self.sregs = *sregs;
        Ok(())
    }
    fn xsave_area(&mut self) -> Result<Vec<u8>, CpuError> {
        Ok(self.area.clone())
    }
    fn set_xsave_area(&mut self, area: &[u8]) -> Result<(), CpuError> {
        self.area = area.to_vec();
        Ok(())
    }
    fn xcr0(&mut self) -> Result<u64, CpuError> {
        Ok(self.xcr0)
    }
    fn set_xcr0(&mut self, value: u64) -> Result<(), CpuError> {
        if value & !self.xcr0_supported != 0 {
            return Err(CpuError::invalid("KVM_SET_XCRS"));
        }
        self.xcr0 = value;
        Ok(())
    }
    fn read_msrs(&mut self, indices: &[u32]) -> Result<Vec<u64>, CpuError> {
        indices
            .iter()
            .map(|i| {
                self.msrs
                    .get(i)
                    .copied()
                    .ok_or_else(|| CpuError::invalid("KVM_GET_MSRS"))
            })
            .collect()
    }
    fn inject(&mut self, exc: Exception) -> Result<(), CpuError> {
        if let Some(cr2) = exc.cr2 {
            self.sregs.cr2 = cr2;
        }
        self.injected.push(exc);
        Ok(())
    }
}

/// Linear memory `[base, base + len)`, identity "paging", with not-present and read-only pages.
pub struct FlatMem {
    pub base: u64,
    pub bytes: Vec<u8>,
    pub absent: BTreeSet<u64>,
    pub read_only: BTreeSet<u64>,
}

impl FlatMem {
    pub fn new(base: u64, len: usize) -> Self {
        Self {
            base,
            bytes: vec![0; len],
            absent: BTreeSet::new(),
            read_only: BTreeSet::new(),
        }
    }

    fn check(&self, gva: u64, len: usize, write: bool) -> Result<usize, MemError> {
        // Pages wrap at the top of the address space, like linear addresses.
        let pages = ((gva & 0xfff) + len.max(1) as u64).div_ceil(0x1000);
        for i in 0..pages {
            let page = (gva & !0xfff).wrapping_add(i * 0x1000);
            let addr = if i == 0 { gva } else { page };
            if self.absent.contains(&page) {
                let code = if write { pf::WRITE } else { 0 };
                return Err(MemError::Fault(Exception::page_fault(addr, code)));
            }
            if write && self.read_only.contains(&page) {
                return Err(MemError::Fault(Exception::page_fault(
                    addr,
                    pf::WRITE | pf::PRESENT,
                )));
            }
        }
        let not_ram = || MemError::NotRam { gva, gpa: gva };
        let off = gva.checked_sub(self.base).ok_or_else(not_ram)?;
        let off = usize::try_from(off).map_err(|_| not_ram())?;
        match off.checked_add(len) {
            Some(end) if end <= self.bytes.len() => Ok(off),
            _ => Err(not_ram()),
        }
    }

    pub fn at(&self, gva: u64, len: usize) -> &[u8] {
        let off = (gva - self.base) as usize;
        &self.bytes[off..off + len]
    }

    pub fn put(&mut self, gva: u64, data: &[u8]) {
        let off = (gva - self.base) as usize;
        self.bytes[off..off + data.len()].copy_from_slice(data);
    }
}

impl GuestVirtMem for FlatMem {
    fn read(&mut self, gva: u64, buf: &mut [u8]) -> Result<(), MemError> {
        let off = self.check(gva, buf.len(), false)?;
        buf.copy_from_slice(&self.bytes[off..off + buf.len()]);
        Ok(())
    }
    fn write(&mut self, gva: u64, data: &[u8]) -> Result<(), MemError> {
        let off = self.check(gva, data.len(), true)?;
        self.bytes[off..off + data.len()].copy_from_slice(data);
        Ok(())
    }
    fn probe(&mut self, gva: u64, len: usize, write: bool) -> Result<(), MemError> {
        self.check(gva, len, write).map(|_| ())
    }
    fn cmpxchg16(
        &mut self,
        gva: u64,
        expected: u128,
        new: u128,
    ) -> Result<Result<(), u128>, MemError> {
        let off = self.check(gva, 16, true)?;
        let mut cur = [0u8; 16];
        cur.copy_from_slice(&self.bytes[off..off + 16]);
        let cur = u128::from_le_bytes(cur);
        if cur == expected {
            self.bytes[off..off + 16].copy_from_slice(&new.to_le_bytes());
            Ok(Ok(()))
        } else {
            Ok(Err(cur))
        }
    }
    fn cmpxchg8(&mut self, gva: u64, expected: u64, new: u64) -> Result<Result<(), u64>, MemError> {
        let off = self.check(gva, 8, true)?;
        let mut cur = [0u8; 8];
        cur.copy_from_slice(&self.bytes[off..off + 8]);
        let cur = u64::from_le_bytes(cur);
        if cur == expected {
            self.bytes[off..off + 8].copy_from_slice(&new.to_le_bytes());
            Ok(Ok(()))
        } else {
            Ok(Err(cur))
        }
    }
}

impl DebugControl for FakeCpu {
    fn set_guest_debug(&mut self, dbg: &kvm_guest_debug) -> Result<(), CpuError> {
        if self.reject_blockirq && dbg.control & KVM_GUESTDBG_BLOCKIRQ != 0 {
            return Err(CpuError::invalid("KVM_SET_GUEST_DEBUG"));
        }
        self.debug.push(*dbg);
        Ok(())
    }
}

/// Flat 64-bit long mode as the small guests of the tests on the real /dev/kvm set it up:
/// code selector 0x08 and data selector 0x10 from the three-entry GDT at `gdt`, the IDT at
/// `idt`, page tables at `cr3`, protection, paging and long mode on. CR4 is the caller's.
pub fn long_mode_sregs(sregs: &mut kvm_sregs, gdt: u64, idt: u64, cr3: u64) {
    let code = kvm_segment {
        selector: 0x08,
        limit: 0xffff_ffff,
        type_: 0xb,
        present: 1,
        s: 1,
        l: 1,
        g: 1,
        ..Default::default()
    };
    let data = kvm_segment {
        selector: 0x10,
        type_: 0x3,
        l: 0,
        db: 1,
        ..code
    };
    sregs.cs = code;
    (sregs.ds, sregs.es, sregs.fs, sregs.gs, sregs.ss) = (data, data, data, data, data);
    sregs.gdt.base = gdt;
    sregs.gdt.limit = 23;
    sregs.idt.base = idt;
    sregs.idt.limit = 0xfff;
    sregs.cr3 = cr3;
    sregs.cr0 = 1 | (1 << 1) | (1 << 4) | (1 << 5) | (1 << 31); // PE MP ET NE PG
    sregs.efer = (1 << 8) | (1 << 10); // LME LMA
}
