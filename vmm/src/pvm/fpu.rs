//! x87 control words, MXCSR and XCR0 for the PVM emulator (SDM Vol. 2: FWAIT, FNINIT,
//! FNSTSW, FNSTCW, FLDCW, FNCLEX, LDMXCSR, STMXCSR, XGETBV, XSETBV), through KVM_GET_FPU /
//! KVM_SET_FPU and KVM_GET_XCRS / KVM_SET_XCRS.

use iced_x86::Code;

use super::cpu::Exception;
use super::decode::ctl;
use super::emulate::{Ctx, Flow, Stop};
use super::xstate::{u64_at, FCW_DEFAULT, HEADER};

pub(super) fn raise(vector: u8) -> Stop {
    Stop::Raise(Exception::new(vector))
}

pub(super) fn fwait(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
    if ctx.cr0() & (ctl::CR0_MP | ctl::CR0_TS) == (ctl::CR0_MP | ctl::CR0_TS) {
        return Err(raise(Exception::NM));
    }
    let fpu = ctx.cpu.fpu()?;
    // FSW.ES: an unmasked x87 exception is pending; with CR0.NE it is reported as #MF.
    const CR0_NE: u64 = 1 << 5;
    if fpu.fsw & 0x80 != 0 && ctx.cr0() & CR0_NE != 0 {
        return Err(raise(Exception::MF));
    }
    Ok(Flow::Next)
}

pub(super) fn x87_control(ctx: &mut Ctx<'_>, code: Code) -> Result<Flow, Stop> {
    use Code::*;
    if ctx.cr0() & (ctl::CR0_EM | ctl::CR0_TS) != 0 {
        return Err(raise(Exception::NM));
    }
    if matches!(code, Finit | Fclex | Fstsw_AX | Fstsw_m2byte | Fstcw_m2byte) {
        fwait(ctx)?;
    }
    let mut fpu = ctx.cpu.fpu()?;
    match code {
        Fninit | Finit => {
            fpu.fcw = FCW_DEFAULT;
            fpu.fsw = 0;
            fpu.ftwx = 0;
            fpu.last_opcode = 0;
            fpu.last_ip = 0;
            fpu.last_dp = 0;
            ctx.cpu.set_fpu(&fpu)?;
        }
        Fnclex | Fclex => {
            // Clears PE UE OE ZE DE IE, SF, ES and B (SDM Vol. 2A FCLEX).
            fpu.fsw &= !0x80ff;
            ctx.cpu.set_fpu(&fpu)?;
        }
        Fnstsw_AX | Fstsw_AX => ctx.regs.rax = (ctx.regs.rax & !0xffff) | u64::from(fpu.fsw),
        Fnstsw_m2byte | Fstsw_m2byte => {
            let addr = ctx.ea()?;
            ctx.mem.write(addr, &fpu.fsw.to_le_bytes())?;
        }
        Fnstcw_m2byte | Fstcw_m2byte => {
            let addr = ctx.ea()?;
            ctx.mem.write(addr, &fpu.fcw.to_le_bytes())?;
        }
        Fldcw_m2byte => {
            let addr = ctx.ea()?;
            fpu.fcw = ctx.read_u16(addr)?;
            ctx.cpu.set_fpu(&fpu)?;
        }
        _ => return Err(Stop::Unsupported),
    }
    Ok(Flow::Next)
}

pub(super) fn mxcsr(ctx: &mut Ctx<'_>, code: Code) -> Result<Flow, Stop> {
    use Code::*;
    let vex = matches!(code, VEX_Vldmxcsr_m32 | VEX_Vstmxcsr_m32);
    if ctx.cr0() & ctl::CR0_EM != 0 && !vex {
        return Err(raise(Exception::UD));
    }
    if ctx.cr4() & ctl::CR4_OSFXSR == 0 || (vex && ctx.cr4() & ctl::CR4_OSXSAVE == 0) {
        return Err(raise(Exception::UD));
    }
    if ctx.cr0() & ctl::CR0_TS != 0 {
        return Err(raise(Exception::NM));
    }
    let addr = ctx.ea()?;
    let mut fpu = ctx.cpu.fpu()?;
    if matches!(code, Ldmxcsr_m32 | VEX_Vldmxcsr_m32) {
        let value = ctx.read_u32(addr)?;
        if value & !ctx.cfg.mxcsr_mask != 0 {
            return Err(Stop::Raise(Exception::gp0()));
        }
        fpu.mxcsr = value;
        ctx.cpu.set_fpu(&fpu)?;
    } else {
        ctx.mem.write(addr, &fpu.mxcsr.to_le_bytes())?;
    }
    Ok(Flow::Next)
}

pub(super) fn xgetbv(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
    if ctx.cr4() & ctl::CR4_OSXSAVE == 0 {
        return Err(raise(Exception::UD));
    }
    let value = match ctx.regs.rcx as u32 {
        0 => ctx.cpu.xcr0()?,
        // XGETBV with ECX=1: XCR0 & XINUSE (SDM Vol. 2C XGETBV).
        1 => {
            let xcr0 = ctx.cpu.xcr0()?;
            let area = ctx.cpu.xsave_area()?;
            xcr0 & u64_at(&area, HEADER)
        }
        _ => return Err(Stop::Raise(Exception::gp0())),
    };
    ctx.regs.rax = value & 0xffff_ffff;
    ctx.regs.rdx = value >> 32;
    Ok(Flow::Next)
}

pub(super) fn xsetbv(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
    if ctx.cr4() & ctl::CR4_OSXSAVE == 0 {
        return Err(raise(Exception::UD));
    }
    let value = (ctx.regs.rax & 0xffff_ffff) | (ctx.regs.rdx << 32);
    let avx512 = 0b1110_0000;
    let amx = (1 << 17) | (1 << 18);
    let invalid = ctx.cpl3()
        || ctx.regs.rcx as u32 != 0
        || value & 1 == 0
        || (value & 0b100 != 0 && value & 0b10 == 0)
        || (value & avx512 != 0 && (value & avx512 != avx512 || value & 0b100 == 0))
        || (value & amx != 0 && value & amx != amx);
    if invalid {
        return Err(Stop::Raise(Exception::gp0()));
    }
    match ctx.cpu.set_xcr0(value) {
        Ok(()) => Ok(Flow::Next),
        Err(e) if e.is_einval() => Err(Stop::Raise(Exception::gp0())),
        Err(e) => Err(Stop::Cpu(e)),
    }
}
