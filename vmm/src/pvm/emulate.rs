//! Emulation of the instructions PVM's in-kernel emulator rejects at CPL0
//! (`KVM_EXIT_INTERNAL_ERROR` / `KVM_INTERNAL_ERROR_EMULATION`): one instruction, decoded from
//! the bytes KVM reports, executed against [`CpuState`] and [`GuestVirtMem`], then RIP advanced
//! or an exception injected. Pure logic: the KVM-backed implementations live in `cpu.rs` and
//! `mmu.rs`. The x87/SSE/XSAVE family is in `xstate.rs`.

use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};
use kvm_bindings::{kvm_regs, kvm_sregs};

use super::cpu::{CpuError, CpuState, Exception};
use super::decode::{self, ctl, flags, EaError};
use super::mmu::{GuestVirtMem, MemError};
use super::xstate::{self, XsaveLayout};

/// MSR numbers (SDM Vol. 4).
const MSR_IA32_TSC: u32 = 0x10;
const MSR_TSC_AUX: u32 = 0xc000_0103;

/// Host-dependent choices of the emulator.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    /// `F3 0F BD` is LZCNT. False when the guest's CPUID hides ABM: the CPU then runs it as BSR.
    pub lzcnt: bool,
    /// `F3 0F BC` is TZCNT (CPUID BMI1); otherwise BSF.
    pub tzcnt: bool,
    /// MXCSR bits LDMXCSR/FXRSTOR/XRSTOR accept (the FXSAVE MXCSR_MASK).
    pub mxcsr_mask: u32,
    /// Where each XSAVE component lives (CPUID leaf 0xD).
    pub layout: XsaveLayout,
}

impl EmulatorConfig {
    /// The configuration for guests on this host with the PVM CPU template applied
    /// (LZCNT hidden, BMI1 visible because PVM always shows the host's leaf 7).
    pub fn for_host() -> Self {
        Self {
            lzcnt: false,
            tzcnt: std::is_x86_feature_detected!("bmi1"),
            mxcsr_mask: xstate::host_mxcsr_mask(),
            layout: XsaveLayout::host(),
        }
    }
}

/// What one emulation did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Emulated {
    pub mnemonic: Mnemonic,
    /// The exception delivered to the guest instead of (or, for INT3, after) completing.
    pub injected: Option<Exception>,
}

impl Emulated {
    /// Counter name: `emulated.<mnemonic>`.
    pub fn counter(&self) -> String {
        format!("emulated.{}", mnemonic_name(self.mnemonic))
    }
}

/// Lower-case mnemonic for counters and messages.
pub fn mnemonic_name(m: Mnemonic) -> String {
    format!("{m:?}").to_lowercase()
}

/// Why an instruction could not be emulated. Every message names RIP and the bytes.
#[derive(Debug, thiserror::Error)]
pub enum EmulateError {
    #[error("cannot decode the instruction at RIP {rip:#x}: bytes [{bytes}]")]
    Undecodable { rip: u64, bytes: String },
    #[error("instruction not emulated at RIP {rip:#x}: {mnemonic} [{bytes}]")]
    Unsupported { rip: u64, mnemonic: String, bytes: String },
    #[error("emulating {mnemonic} [{bytes}] at RIP {rip:#x} failed: {reason}")]
    Failed { rip: u64, mnemonic: String, bytes: String, reason: String },
    #[error("vCPU is not in 64-bit mode at RIP {rip:#x} (bytes [{bytes}]); only long mode is emulated")]
    NotLongMode { rip: u64, bytes: String },
    #[error("vCPU state access failed while emulating at RIP {rip:#x}: {source}")]
    Cpu {
        rip: u64,
        #[source]
        source: CpuError,
    },
}

/// How an instruction ended inside the emulator.
pub(super) enum Stop {
    /// Architectural fault: deliver it, leave RIP and registers as they were.
    Raise(Exception),
    Unsupported,
    Fail(String),
    Cpu(CpuError),
}

impl From<MemError> for Stop {
    fn from(e: MemError) -> Self {
        match e {
            MemError::Fault(exc) => Stop::Raise(exc),
            other => Stop::Fail(other.to_string()),
        }
    }
}

impl From<CpuError> for Stop {
    fn from(e: CpuError) -> Self {
        Stop::Cpu(e)
    }
}

/// How a completed instruction continues.
pub(super) enum Flow {
    Next,
    /// Advance RIP, then deliver a trap (INT3's #BP).
    NextThenRaise(Exception),
}

/// Everything one emulation works on.
pub(super) struct Ctx<'a> {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    pub cpu: &'a mut dyn CpuState,
    pub mem: &'a mut dyn GuestVirtMem,
    pub cfg: &'a EmulatorConfig,
    pub instr: Instruction,
}

impl Ctx<'_> {
    pub fn cpl3(&self) -> bool {
        self.sregs.cs.selector & 3 == 3
    }

    pub fn ea(&self) -> Result<u64, Stop> {
        decode::effective_address(&self.instr, &self.regs, &self.sregs).map_err(|e| match e {
            EaError::Fault(exc) => Stop::Raise(exc),
            EaError::BadRegister(r) => Stop::Fail(format!("unmodelled address register {r:?}")),
        })
    }

    pub fn reg(&self, r: Register) -> Result<u64, Stop> {
        decode::read_gpr(&self.regs, r).ok_or_else(|| Stop::Fail(format!("unmodelled register {r:?}")))
    }

    pub fn set_reg(&mut self, r: Register, v: u64) -> Result<(), Stop> {
        decode::write_gpr(&mut self.regs, r, v)
            .ok_or_else(|| Stop::Fail(format!("unmodelled register {r:?}")))
    }

    /// Reads operand `op` (register or memory) of `size` bytes, zero-extended.
    pub fn read_rm(&mut self, op: u32, size: usize) -> Result<u64, Stop> {
        match self.instr.op_kind(op) {
            OpKind::Register => self.reg(self.instr.op_register(op)),
            OpKind::Memory => {
                let addr = self.ea()?;
                let mut buf = [0u8; 8];
                self.mem.read(addr, &mut buf[..size])?;
                Ok(u64::from_le_bytes(buf))
            }
            other => Err(Stop::Fail(format!("unexpected operand kind {other:?}"))),
        }
    }

    pub fn read_u16(&mut self, addr: u64) -> Result<u16, Stop> {
        let mut b = [0u8; 2];
        self.mem.read(addr, &mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    pub fn read_u32(&mut self, addr: u64) -> Result<u32, Stop> {
        let mut b = [0u8; 4];
        self.mem.read(addr, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    /// Sets the status flags in `mask` to the bits of `value`.
    pub fn set_flags(&mut self, mask: u64, value: u64) {
        self.regs.rflags = (self.regs.rflags & !mask) | (value & mask);
    }

    pub fn cr0(&self) -> u64 {
        self.sregs.cr0
    }

    pub fn cr4(&self) -> u64 {
        self.sregs.cr4
    }
}

/// Emulates the instruction at the vCPU's RIP, whose first bytes are `bytes`.
pub fn emulate(
    cpu: &mut dyn CpuState,
    mem: &mut dyn GuestVirtMem,
    cfg: &EmulatorConfig,
    bytes: &[u8],
) -> Result<Emulated, EmulateError> {
    let regs = cpu.regs().map_err(|source| EmulateError::Cpu { rip: 0, source })?;
    let rip = regs.rip;
    let sregs = cpu.sregs().map_err(|source| EmulateError::Cpu { rip, source })?;
    let hex = || decode::hex_bytes(bytes);
    if sregs.efer & ctl::EFER_LMA == 0 || sregs.cs.l == 0 {
        return Err(EmulateError::NotLongMode { rip, bytes: hex() });
    }
    let instr = decode::decode(rip, bytes).ok_or_else(|| EmulateError::Undecodable { rip, bytes: hex() })?;
    let used = &bytes[..instr.len().min(bytes.len())];
    let mnemonic = instr.mnemonic();

    let (result, regs) = {
        let mut ctx = Ctx { regs, sregs, cpu: &mut *cpu, mem, cfg, instr };
        let r = execute(&mut ctx);
        (r, ctx.regs)
    };
    let cpu_err = |source| EmulateError::Cpu { rip, source };
    match result {
        Ok(flow) => {
            let mut regs = regs;
            regs.rip = instr.next_ip();
            // SDM Vol. 3A §18.3.1.1: RF is cleared after an instruction completes.
            regs.rflags &= !flags::RF;
            cpu.set_regs(&regs).map_err(cpu_err)?;
            let injected = match flow {
                Flow::Next => None,
                Flow::NextThenRaise(exc) => {
                    cpu.inject(exc).map_err(cpu_err)?;
                    Some(exc)
                }
            };
            Ok(Emulated { mnemonic, injected })
        }
        Err(Stop::Raise(exc)) => {
            cpu.inject(exc).map_err(cpu_err)?;
            Ok(Emulated { mnemonic, injected: Some(exc) })
        }
        Err(Stop::Unsupported) => Err(EmulateError::Unsupported {
            rip,
            mnemonic: mnemonic_name(mnemonic),
            bytes: decode::hex_bytes(used),
        }),
        Err(Stop::Fail(reason)) => Err(EmulateError::Failed {
            rip,
            mnemonic: mnemonic_name(mnemonic),
            bytes: decode::hex_bytes(used),
            reason,
        }),
        Err(Stop::Cpu(source)) => Err(EmulateError::Cpu { rip, source }),
    }
}

fn execute(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
    use Code::*;
    let code = ctx.instr.code();
    match code {
        Popcnt_r16_rm16 | Popcnt_r32_rm32 | Popcnt_r64_rm64 => bit_count(ctx, BitOp::Popcnt),
        Lzcnt_r16_rm16 | Lzcnt_r32_rm32 | Lzcnt_r64_rm64 => {
            bit_count(ctx, if ctx.cfg.lzcnt { BitOp::Lzcnt } else { BitOp::Bsr })
        }
        Tzcnt_r16_rm16 | Tzcnt_r32_rm32 | Tzcnt_r64_rm64 => {
            bit_count(ctx, if ctx.cfg.tzcnt { BitOp::Tzcnt } else { BitOp::Bsf })
        }
        Bsf_r16_rm16 | Bsf_r32_rm32 | Bsf_r64_rm64 => bit_count(ctx, BitOp::Bsf),
        Bsr_r16_rm16 | Bsr_r32_rm32 | Bsr_r64_rm64 => bit_count(ctx, BitOp::Bsr),
        Crc32_r32_rm8 | Crc32_r64_rm8 | Crc32_r32_rm16 | Crc32_r32_rm32 | Crc32_r64_rm64 => crc32(ctx),
        Cmpxchg16b_m128 => cmpxchg16b(ctx),
        Cmpxchg8b_m64 => cmpxchg8b(ctx),
        Movbe_r16_m16 | Movbe_r32_m32 | Movbe_r64_m64 | Movbe_m16_r16 | Movbe_m32_r32
        | Movbe_m64_r64 => movbe(ctx),
        Int3 => Ok(Flow::NextThenRaise(Exception::new(Exception::BP))),
        Ud0_r16_rm16 | Ud0_r32_rm32 | Ud0_r64_rm64 | Ud1_r16_rm16 | Ud1_r32_rm32 | Ud1_r64_rm64
        | Ud2 => Err(Stop::Raise(Exception::new(Exception::UD))),
        Clac | Stac => {
            if ctx.cpl3() {
                return Err(Stop::Raise(Exception::new(Exception::UD)));
            }
            let ac = if code == Stac { flags::AC } else { 0 };
            ctx.set_flags(flags::AC, ac);
            Ok(Flow::Next)
        }
        Rdtsc | Rdtscp => rdtsc(ctx, code == Rdtscp),
        Rdpid_r32 | Rdpid_r64 => {
            let aux = ctx.cpu.msr(MSR_TSC_AUX)?;
            ctx.set_reg(ctx.instr.op0_register(), aux)?;
            Ok(Flow::Next)
        }
        Rdrand_r16 | Rdrand_r32 | Rdrand_r64 => random(ctx, false),
        Rdseed_r16 | Rdseed_r32 | Rdseed_r64 => random(ctx, true),
        Clwb_m8 | Clflush_m8 | Clflushopt_m8 => {
            let addr = ctx.ea()?;
            ctx.mem.probe(addr, 1, false)?;
            Ok(Flow::Next)
        }
        Lfence | Lfence_E9 | Lfence_EA | Lfence_EB | Lfence_EC | Lfence_ED | Lfence_EE
        | Lfence_EF | Mfence | Mfence_F1 | Mfence_F2 | Mfence_F3 | Mfence_F4 | Mfence_F5
        | Mfence_F6 | Mfence_F7 | Sfence | Sfence_F9 | Sfence_FA | Sfence_FB | Sfence_FC
        | Sfence_FD | Sfence_FE | Sfence_FF => {
            std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
            Ok(Flow::Next)
        }
        // Prefetches and hint NOPs never fault (SDM Vol. 2B PREFETCHh: "does not cause faults").
        Prefetch_m8 | Prefetchw_m8 | Prefetchwt1_m8 | Prefetchnta_m8 | Prefetcht0_m8
        | Prefetcht1_m8 | Prefetcht2_m8 | Prefetchreserved3_m8 | Prefetchreserved4_m8
        | Prefetchreserved5_m8 | Prefetchreserved6_m8 | Nop_rm16 | Nop_rm32 | Nop_rm64
        | Endbr64 | Endbr32 => Ok(Flow::Next),
        c if is_reserved_nop(c) => Ok(Flow::Next),
        _ => xstate::execute(ctx),
    }
}

fn is_reserved_nop(code: Code) -> bool {
    let n = code as u32;
    (Code::Reservednop_rm16_r16_0F0D as u32..=Code::Reservednop_rm64_r64_0F0D as u32).contains(&n)
        || (Code::Reservednop_rm16_r16_0F18 as u32..=Code::Reservednop_rm64_r64_0F1F as u32)
            .contains(&n)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum BitOp {
    Popcnt,
    Lzcnt,
    Tzcnt,
    Bsf,
    Bsr,
}

/// POPCNT, LZCNT, TZCNT, BSF, BSR (SDM Vol. 2). Flags the SDM leaves undefined are left as
/// they were.
fn bit_count(ctx: &mut Ctx<'_>, op: BitOp) -> Result<Flow, Stop> {
    let dst = ctx.instr.op0_register();
    let size = dst.size();
    let bits = (size * 8) as u32;
    let src = ctx.read_rm(1, size)?;
    let (result, fl_mask, fl) = match op {
        BitOp::Popcnt => {
            let zf = if src == 0 { flags::ZF } else { 0 };
            (Some(u64::from(src.count_ones())), flags::STATUS, zf)
        }
        BitOp::Lzcnt => {
            let r = if src == 0 { bits } else { src.leading_zeros() - (64 - bits) };
            let cf = if src == 0 { flags::CF } else { 0 };
            let zf = if r == 0 { flags::ZF } else { 0 };
            (Some(u64::from(r)), flags::CF | flags::ZF, cf | zf)
        }
        BitOp::Tzcnt => {
            let r = if src == 0 { bits } else { src.trailing_zeros() };
            let cf = if src == 0 { flags::CF } else { 0 };
            let zf = if r == 0 { flags::ZF } else { 0 };
            (Some(u64::from(r)), flags::CF | flags::ZF, cf | zf)
        }
        BitOp::Bsf | BitOp::Bsr if src == 0 => (None, flags::ZF, flags::ZF),
        BitOp::Bsf => (Some(u64::from(src.trailing_zeros())), flags::ZF, 0),
        BitOp::Bsr => (Some(u64::from(63 - src.leading_zeros())), flags::ZF, 0),
    };
    if let Some(v) = result {
        ctx.set_reg(dst, v)?;
    }
    ctx.set_flags(fl_mask, fl);
    Ok(Flow::Next)
}

/// CRC-32C table (polynomial 0x1EDC6F41, bit-reflected as 0x82F63B78), as CRC32 computes.
const CRC32C_TABLE: [u32; 256] = {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ 0x82f6_3b78 } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
};

/// One CRC32 step over `data` (little-endian bytes of the source), no pre/post inversion.
pub fn crc32c_update(mut crc: u32, data: &[u8]) -> u32 {
    for &b in data {
        crc = CRC32C_TABLE[((crc ^ u32::from(b)) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

fn crc32(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
    let dst = ctx.instr.op0_register();
    let src_size = match ctx.instr.op_kind(1) {
        OpKind::Register => ctx.instr.op1_register().size(),
        _ => ctx.instr.memory_size().size(),
    };
    let src = ctx.read_rm(1, src_size)?;
    let acc = ctx.reg(dst)? as u32;
    let crc = crc32c_update(acc, &src.to_le_bytes()[..src_size]);
    // The result is 32 bits, zero-extended into a 64-bit destination.
    ctx.set_reg(dst.full_register(), u64::from(crc))?;
    Ok(Flow::Next)
}

fn cmpxchg16b(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
    let addr = ctx.ea()?;
    if addr % 16 != 0 {
        return Err(Stop::Raise(Exception::gp0()));
    }
    let expected = u128::from(ctx.regs.rax) | (u128::from(ctx.regs.rdx) << 64);
    let new = u128::from(ctx.regs.rbx) | (u128::from(ctx.regs.rcx) << 64);
    match ctx.mem.cmpxchg16(addr, expected, new)? {
        Ok(()) => ctx.set_flags(flags::ZF, flags::ZF),
        Err(current) => {
            ctx.set_flags(flags::ZF, 0);
            ctx.regs.rax = current as u64;
            ctx.regs.rdx = (current >> 64) as u64;
        }
    }
    Ok(Flow::Next)
}

fn cmpxchg8b(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
    let addr = ctx.ea()?;
    let expected = (ctx.regs.rax & 0xffff_ffff) | (ctx.regs.rdx << 32);
    let new = (ctx.regs.rbx & 0xffff_ffff) | (ctx.regs.rcx << 32);
    match ctx.mem.cmpxchg8(addr, expected, new)? {
        Ok(()) => ctx.set_flags(flags::ZF, flags::ZF),
        Err(current) => {
            ctx.set_flags(flags::ZF, 0);
            // 32-bit destination writes: the upper halves of RAX/RDX are cleared.
            ctx.regs.rax = current & 0xffff_ffff;
            ctx.regs.rdx = current >> 32;
        }
    }
    Ok(Flow::Next)
}

fn movbe(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
    let addr = ctx.ea()?;
    if ctx.instr.op_kind(0) == OpKind::Register {
        let dst = ctx.instr.op0_register();
        let size = dst.size();
        let mut b = [0u8; 8];
        ctx.mem.read(addr, &mut b[..size])?;
        b[..size].reverse();
        ctx.set_reg(dst, u64::from_le_bytes(b))?;
    } else {
        let src = ctx.instr.op1_register();
        let size = src.size();
        let mut b = ctx.reg(src)?.to_le_bytes();
        b[..size].reverse();
        ctx.mem.write(addr, &b[..size])?;
    }
    Ok(Flow::Next)
}

fn rdtsc(ctx: &mut Ctx<'_>, with_aux: bool) -> Result<Flow, Stop> {
    if ctx.cpl3() && ctx.cr4() & ctl::CR4_TSD != 0 {
        return Err(Stop::Raise(Exception::gp0()));
    }
    let values = if with_aux {
        ctx.cpu.read_msrs(&[MSR_IA32_TSC, MSR_TSC_AUX])?
    } else {
        ctx.cpu.read_msrs(&[MSR_IA32_TSC])?
    };
    let tsc = *values.first().ok_or(Stop::Fail("KVM returned no TSC".into()))?;
    ctx.regs.rax = tsc & 0xffff_ffff;
    ctx.regs.rdx = tsc >> 32;
    if with_aux {
        let aux = *values.get(1).ok_or(Stop::Fail("KVM returned no TSC_AUX".into()))?;
        ctx.regs.rcx = aux & 0xffff_ffff;
    }
    Ok(Flow::Next)
}

/// RDRAND/RDSEED from the host's generator; CF=0 ("no data, retry") if the host has none.
fn random(ctx: &mut Ctx<'_>, seed: bool) -> Result<Flow, Stop> {
    let dst = ctx.instr.op0_register();
    let value = host_random(seed);
    ctx.set_reg(dst, value.unwrap_or(0))?;
    let cf = if value.is_some() { flags::CF } else { 0 };
    ctx.set_flags(flags::STATUS, cf);
    Ok(Flow::Next)
}

fn host_random(seed: bool) -> Option<u64> {
    let available = if seed {
        std::is_x86_feature_detected!("rdseed")
    } else {
        std::is_x86_feature_detected!("rdrand")
    };
    if !available {
        return None;
    }
    for _ in 0..10 {
        let value: u64;
        let ok: u8;
        // SAFETY: CPUID reports the instruction, and it only writes the two named registers
        // and the flags; no memory is touched.
        unsafe {
            if seed {
                std::arch::asm!("rdseed {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok,
                    options(nomem, nostack));
            } else {
                std::arch::asm!("rdrand {v}", "setc {ok}", v = out(reg) value, ok = out(reg_byte) ok,
                    options(nomem, nostack));
            }
        }
        if ok != 0 {
            return Some(value);
        }
    }
    None
}

#[cfg(test)]
#[path = "emulate_tests.rs"]
mod tests;
