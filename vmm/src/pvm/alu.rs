//! Integer and miscellaneous instruction semantics for the PVM emulator (SDM Vol. 2):
//! bit counts and scans, CRC32, CMPXCHG8B/16B, MOVBE, RDTSC(P), RDRAND/RDSEED.

use iced_x86::OpKind;

use super::cpu::Exception;
use super::decode::{ctl, flags};
use super::emulate::{Ctx, Flow, Stop};

/// MSR numbers (SDM Vol. 4).
pub(super) const MSR_IA32_TSC: u32 = 0x10;
pub(super) const MSR_TSC_AUX: u32 = 0xc000_0103;

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum BitOp {
    Popcnt,
    Lzcnt,
    Tzcnt,
    Bsf,
    Bsr,
}

/// POPCNT, LZCNT, TZCNT, BSF, BSR (SDM Vol. 2). Flags the SDM leaves undefined are left as
/// they were.
pub(super) fn bit_count(ctx: &mut Ctx<'_>, op: BitOp) -> Result<Flow, Stop> {
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
            let r = if src == 0 {
                bits
            } else {
                src.leading_zeros() - (64 - bits)
            };
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
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82f6_3b78
            } else {
                c >> 1
            };
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

pub(super) fn crc32(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
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

pub(super) fn cmpxchg16b(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
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

pub(super) fn cmpxchg8b(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
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

pub(super) fn movbe(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
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

pub(super) fn rdtsc(ctx: &mut Ctx<'_>, with_aux: bool) -> Result<Flow, Stop> {
    if ctx.cpl3() && ctx.cr4() & ctl::CR4_TSD != 0 {
        return Err(Stop::Raise(Exception::gp0()));
    }
    let values = if with_aux {
        ctx.cpu.read_msrs(&[MSR_IA32_TSC, MSR_TSC_AUX])?
    } else {
        ctx.cpu.read_msrs(&[MSR_IA32_TSC])?
    };
    let tsc = *values
        .first()
        .ok_or(Stop::Fail("KVM returned no TSC".into()))?;
    ctx.regs.rax = tsc & 0xffff_ffff;
    ctx.regs.rdx = tsc >> 32;
    if with_aux {
        let aux = *values
            .get(1)
            .ok_or(Stop::Fail("KVM returned no TSC_AUX".into()))?;
        ctx.regs.rcx = aux & 0xffff_ffff;
    }
    Ok(Flow::Next)
}

/// RDRAND/RDSEED from the host's generator; CF=0 ("no data, retry") if the host has none.
pub(super) fn random(ctx: &mut Ctx<'_>, seed: bool) -> Result<Flow, Stop> {
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
