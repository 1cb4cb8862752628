//! x87 control words, MXCSR and XCR0 for the PVM emulator (SDM Vol. 2: FWAIT, FNINIT,
//! FNSTSW, FNSTCW, FLDCW, FNCLEX, LDMXCSR, STMXCSR, XGETBV, XSETBV), through the legacy
//! region of KVM_GET_XSAVE / KVM_SET_XSAVE and KVM_GET_XCRS / KVM_SET_XCRS.
//!
//! Not KVM_GET_FPU / KVM_SET_FPU: they do not carry MXCSR (a fresh vCPU reads back 0 where
//! KVM_GET_XSAVE has 0x1F80), and the XSAVE image lets us mark the state in use.

use iced_x86::Code;

use super::cpu::Exception;
use super::decode::ctl;
use super::emulate::{Ctx, Flow, Stop};
use super::xstate::{load_area, u64_at, FCW_DEFAULT, HEADER};

/// Legacy-region fields (SDM Vol. 1 Table 10-2).
const FCW: usize = 0;
const FSW: usize = 2;
const FTW: usize = 4;
const FOP: usize = 6;
const MXCSR: usize = 24;
/// XSTATE_BV bits: x87 and SSE (MXCSR travels with SSE for KVM).
const X87_BIT: u64 = 0b01;
const SSE_BIT: u64 = 0b10;

/// The vCPU's XSAVE image, for reading and updating legacy-region fields.
struct Legacy {
    area: Vec<u8>,
}

impl Legacy {
    fn load(ctx: &mut Ctx<'_>) -> Result<Self, Stop> {
        Ok(Self {
            area: load_area(ctx)?,
        })
    }

    fn u16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.area[off], self.area[off + 1]])
    }

    fn u32(&self, off: usize) -> u32 {
        let b = &self.area[off..off + 4];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }

    fn put(&mut self, off: usize, bytes: &[u8]) {
        self.area[off..off + bytes.len()].copy_from_slice(bytes);
    }

    /// Writes the image back with `components` marked in use, so KVM loads the new values.
    fn store(mut self, ctx: &mut Ctx<'_>, components: u64) -> Result<(), Stop> {
        let bv = u64_at(&self.area, HEADER) | components;
        self.put(HEADER, &bv.to_le_bytes());
        ctx.cpu.set_xsave_area(&self.area)?;
        Ok(())
    }
}

pub(super) fn raise(vector: u8) -> Stop {
    Stop::Raise(Exception::new(vector))
}

pub(super) fn fwait(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
    if ctx.cr0() & (ctl::CR0_MP | ctl::CR0_TS) == (ctl::CR0_MP | ctl::CR0_TS) {
        return Err(raise(Exception::NM));
    }
    let fsw = Legacy::load(ctx)?.u16(FSW);
    // FSW.ES: an unmasked x87 exception is pending; with CR0.NE it is reported as #MF.
    const CR0_NE: u64 = 1 << 5;
    if fsw & 0x80 != 0 && ctx.cr0() & CR0_NE != 0 {
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
    let mut st = Legacy::load(ctx)?;
    match code {
        Fninit | Finit => {
            st.put(FCW, &FCW_DEFAULT.to_le_bytes());
            st.put(FSW, &[0, 0]);
            st.put(FTW, &[0]); // abridged tag word: all registers empty
            st.put(FOP, &[0; 18]); // FOP, FIP, FDP
            st.store(ctx, X87_BIT)?;
        }
        Fnclex | Fclex => {
            // Clears PE UE OE ZE DE IE, SF, ES and B (SDM Vol. 2A FCLEX).
            let fsw = st.u16(FSW) & !0x80ff;
            st.put(FSW, &fsw.to_le_bytes());
            st.store(ctx, X87_BIT)?;
        }
        Fnstsw_AX | Fstsw_AX => ctx.regs.rax = (ctx.regs.rax & !0xffff) | u64::from(st.u16(FSW)),
        Fnstsw_m2byte | Fstsw_m2byte => {
            let addr = ctx.ea()?;
            ctx.mem.write(addr, &st.u16(FSW).to_le_bytes())?;
        }
        Fnstcw_m2byte | Fstcw_m2byte => {
            let addr = ctx.ea()?;
            ctx.mem.write(addr, &st.u16(FCW).to_le_bytes())?;
        }
        Fldcw_m2byte => {
            let addr = ctx.ea()?;
            let fcw = ctx.read_u16(addr)?;
            st.put(FCW, &fcw.to_le_bytes());
            st.store(ctx, X87_BIT)?;
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
    let mut st = Legacy::load(ctx)?;
    if matches!(code, Ldmxcsr_m32 | VEX_Vldmxcsr_m32) {
        let value = ctx.read_u32(addr)?;
        if value & !ctx.cfg.mxcsr_mask != 0 {
            return Err(Stop::Raise(Exception::gp0()));
        }
        st.put(MXCSR, &value.to_le_bytes());
        st.store(ctx, SSE_BIT)?;
    } else {
        ctx.mem.write(addr, &st.u32(MXCSR).to_le_bytes())?;
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
            let area = load_area(ctx)?;
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
