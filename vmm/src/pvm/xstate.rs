//! x87 control, MXCSR and the XSAVE family for the PVM emulator (SDM Vol. 1 ch. 13, Vol. 2
//! FXSAVE/XSAVE/XRSTOR). The vCPU's extended state comes from KVM_GET_XSAVE in standard
//! format; instructions that move state to or from guest memory translate between that image
//! and the guest's (standard or compacted) layout, honouring RFBM = EDX:EAX & XCR0 and the
//! XSTATE_BV / XCOMP_BV header.

use iced_x86::Code;

use super::cpu::{Exception, XSAVE_AREA_SIZE};
use super::decode::ctl;
use super::emulate::{Ctx, Flow, Stop};
use super::fpu::{self, raise};
use super::vendor::{x87_exception_pending, X87Pointers};

/// Legacy-region offsets (SDM Vol. 1 Table 10-2).
const FCW: usize = 0;
const FSW: usize = 2;
const FOP: usize = 6;
const FIP: usize = 8;
const FDP: usize = 16;
const MXCSR: usize = 24;
const ST0: usize = 32;
const XMM0: usize = 160;
const LEGACY_END: usize = 416;
/// The XSAVE header follows the 512-byte legacy region.
pub(super) const HEADER: usize = 512;
const EXT_START: usize = 576;
const COMPACTED: u64 = 1 << 63;
const MXCSR_DEFAULT: u32 = 0x1f80;
pub(super) const FCW_DEFAULT: u16 = 0x037f;
const FOP_MASK: u16 = 0x07ff;
/// FSW's error-summary and busy bits (SDM Vol. 1 §8.1.3).
const FSW_ES: u16 = 1 << 7;
const FSW_B: u16 = 1 << 15;

/// Location of one extended state component (CPUID.(EAX=0DH,ECX=i)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Component {
    /// Offset in the standard format.
    pub offset: usize,
    pub size: usize,
    /// Starts on a 64-byte boundary in the compacted format.
    pub align64: bool,
}

/// Where components 2..63 live; components 0 and 1 are the fixed legacy region.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XsaveLayout {
    components: Vec<Option<Component>>,
}

impl XsaveLayout {
    pub fn new(components: Vec<Option<Component>>) -> Self {
        Self { components }
    }

    /// The host's layout, from CPUID leaf 0xD (the guest sees the host's leaf on PVM, and
    /// KVM's xsave image uses the host's standard offsets).
    pub fn host() -> Self {
        let mut components = vec![None; 64];
        let l0 = std::arch::x86_64::__cpuid_count(0xd, 0);
        let l1 = std::arch::x86_64::__cpuid_count(0xd, 1);
        let supported = u64::from(l0.eax)
            | (u64::from(l0.edx) << 32)
            | u64::from(l1.ecx)
            | (u64::from(l1.edx) << 32);
        for (i, slot) in components.iter_mut().enumerate().skip(2) {
            if supported & (1 << i) == 0 {
                continue;
            }
            let c = std::arch::x86_64::__cpuid_count(0xd, i as u32);
            if c.eax != 0 {
                *slot = Some(Component {
                    offset: c.ebx as usize,
                    size: c.eax as usize,
                    align64: c.ecx & 2 != 0,
                });
            }
        }
        Self { components }
    }

    /// Component `i` in the standard format (0: x87 registers, 1: XMM registers).
    pub fn standard(&self, i: usize) -> Option<Component> {
        match i {
            0 => Some(Component {
                offset: 0,
                size: XMM0,
                align64: false,
            }),
            1 => Some(Component {
                offset: XMM0,
                size: LEGACY_END - XMM0,
                align64: false,
            }),
            _ => self.components.get(i).copied().flatten(),
        }
    }

    /// Offset of component `i >= 2` in the compacted format for XCOMP_BV `xcomp`
    /// (SDM Vol. 1 §13.4.3).
    pub fn compacted_offset(&self, xcomp: u64, i: usize) -> Option<usize> {
        let mut off = EXT_START;
        for j in 2..64 {
            if xcomp & (1 << j) == 0 {
                continue;
            }
            let c = self.standard(j)?;
            if c.align64 {
                off = off.next_multiple_of(64);
            }
            if j == i {
                return Some(off);
            }
            off += c.size;
        }
        None
    }
}

/// MXCSR_MASK as the host's FXSAVE reports it (0xFFBF when it reports 0, SDM Vol. 1 §11.6.6).
pub fn host_mxcsr_mask() -> u32 {
    #[repr(C, align(16))]
    struct Fx([u8; 512]);
    let mut fx = Fx([0; 512]);
    // SAFETY: `fx` is a 512-byte, 16-byte-aligned buffer we own; FXSAVE writes only into it.
    unsafe {
        std::arch::asm!("fxsave64 [{p}]", p = in(reg) fx.0.as_mut_ptr(), options(nostack));
    }
    match u32::from_le_bytes([fx.0[28], fx.0[29], fx.0[30], fx.0[31]]) {
        0 => 0xffbf,
        m => m,
    }
}

pub(super) fn execute(ctx: &mut Ctx<'_>) -> Result<Flow, Stop> {
    use Code::*;
    let code = ctx.instr.code();
    match code {
        Wait => fpu::fwait(ctx),
        Fninit | Finit | Fnclex | Fclex | Fnstsw_AX | Fstsw_AX | Fnstsw_m2byte | Fstsw_m2byte
        | Fnstcw_m2byte | Fstcw_m2byte | Fldcw_m2byte => fpu::x87_control(ctx, code),
        Ldmxcsr_m32 | VEX_Vldmxcsr_m32 | Stmxcsr_m32 | VEX_Vstmxcsr_m32 => fpu::mxcsr(ctx, code),
        Fxsave_m512byte | Fxsave64_m512byte => fxsave(ctx, code == Fxsave64_m512byte),
        Fxrstor_m512byte | Fxrstor64_m512byte => fxrstor(ctx, code == Fxrstor64_m512byte),
        Xsave_mem | Xsave64_mem => xsave(ctx, code == Xsave64_mem, Form::Standard),
        Xsaveopt_mem | Xsaveopt64_mem => xsave(ctx, code == Xsaveopt64_mem, Form::Optimised),
        Xsavec_mem | Xsavec64_mem => xsave(ctx, code == Xsavec64_mem, Form::Compacted),
        Xrstor_mem | Xrstor64_mem => xrstor(ctx, code == Xrstor64_mem),
        Xgetbv => fpu::xgetbv(ctx),
        Xsetbv => fpu::xsetbv(ctx),
        Xsaves_mem | Xsaves64_mem | Xrstors_mem | Xrstors64_mem => Err(Stop::Fail(
            "supervisor state (XSAVES/XRSTORS) is not emulated; boot the guest with noxsave".into(),
        )),
        _ => Err(Stop::Unsupported),
    }
}

fn check_xsave_enabled(ctx: &Ctx<'_>) -> Result<(), Stop> {
    if ctx.cr4() & ctl::CR4_OSXSAVE == 0 {
        return Err(raise(Exception::UD));
    }
    if ctx.cr0() & ctl::CR0_TS != 0 {
        return Err(raise(Exception::NM));
    }
    Ok(())
}

fn aligned_ea(ctx: &Ctx<'_>, align: u64) -> Result<u64, Stop> {
    let addr = ctx.ea()?;
    if addr % align != 0 {
        return Err(Stop::Raise(Exception::gp0()));
    }
    Ok(addr)
}

/// The vCPU's XSAVE image, checked to be the full standard-format region every offset used
/// here lies within.
pub(super) fn load_area(ctx: &mut Ctx<'_>) -> Result<Vec<u8>, Stop> {
    let area = ctx.cpu.xsave_area()?;
    if area.len() != XSAVE_AREA_SIZE {
        return Err(Stop::Fail(format!(
            "KVM returned a {}-byte xsave image, expected {XSAVE_AREA_SIZE}",
            area.len()
        )));
    }
    Ok(area)
}

pub(super) fn u64_at(b: &[u8], off: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[off..off + 8]);
    u64::from_le_bytes(w)
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Bytes 0..24 of the legacy region in the layout FXSAVE/XSAVE write: the 64-bit form keeps
/// 64-bit FIP/FDP; the 32-bit form stores 32-bit offsets with FCS/FDS, which this CPU
/// generation reports as zero (CPUID.7.EBX[13], FPU CS/DS deprecated, on Intel; AMD stores
/// zero there in 64-bit mode too).
fn legacy_header_out(area: &[u8], rex_w: bool, rule: X87Pointers) -> [u8; 24] {
    let mut h = [0u8; 24];
    h.copy_from_slice(&area[..24]);
    if rule
        == (X87Pointers::OnPendingException {
            saved_always: false,
        })
        && !x87_exception_pending(u16_at(area, FCW), u16_at(area, FSW))
    {
        // AMD APM Vol. 5 FXSAVE: without XSaveErPtr the error pointers are stored only while
        // an unmasked exception is pending; otherwise the fields are written as zero.
        h[FOP..MXCSR].fill(0);
    }
    if !rex_w {
        let fip = u64_at(&h, FIP) as u32;
        let fdp = u64_at(&h, FDP) as u32;
        h[FIP..FIP + 8].copy_from_slice(&u64::from(fip).to_le_bytes());
        h[FDP..FDP + 8].copy_from_slice(&u64::from(fdp).to_le_bytes());
    }
    h
}

/// Loads bytes 0..24 of a guest legacy region into the 64-bit-format image, by the vendor's
/// rule for the x87 last-instruction fields (see [`X87Pointers`]).
fn legacy_header_in(area: &mut [u8], image: &[u8], rex_w: bool, rule: X87Pointers) {
    area[..MXCSR].copy_from_slice(&image[..MXCSR]);
    if !rex_w {
        let fip = u32_at(image, FIP);
        let fdp = u32_at(image, FDP);
        area[FIP..FIP + 8].copy_from_slice(&u64::from(fip).to_le_bytes());
        area[FDP..FDP + 8].copy_from_slice(&u64::from(fdp).to_le_bytes());
    }
    match rule {
        // Intel SDM Vol. 2 FXRSTOR/XRSTOR: FSW and the pointers are loaded as stored.
        X87Pointers::Always => {}
        X87Pointers::OnPendingException { .. } => {
            // AMD APM Vol. 5 FXRSTOR: FSW.ES and FSW.B follow from the loaded flags and masks,
            // and the error pointers are loaded only for a pending exception (zero otherwise).
            let pending = x87_exception_pending(u16_at(area, FCW), u16_at(area, FSW));
            let summary = if pending { FSW_ES | FSW_B } else { 0 };
            let fsw = (u16_at(area, FSW) & !(FSW_ES | FSW_B)) | summary;
            area[FSW..FSW + 2].copy_from_slice(&fsw.to_le_bytes());
            if pending {
                // The last opcode is 11 bits (APM Vol. 1 §6.2.7: bits 15:11 read as zero).
                let fop = u16_at(area, FOP) & FOP_MASK;
                area[FOP..FOP + 2].copy_from_slice(&fop.to_le_bytes());
                for off in [FIP, FDP] {
                    let canonical = canonical48(u64_at(area, off));
                    area[off..off + 8].copy_from_slice(&canonical.to_le_bytes());
                }
            } else {
                area[FOP..MXCSR].fill(0);
            }
        }
    }
}

/// `v` sign-extended from bit 47, as AMD processors hold FIP and FDP.
fn canonical48(v: u64) -> u64 {
    (((v << 16) as i64) >> 16) as u64
}

fn init_component(area: &mut [u8], layout: &super::emulate::EmulatorConfig, i: usize) {
    match i {
        0 => {
            area[..MXCSR].fill(0);
            area[..2].copy_from_slice(&FCW_DEFAULT.to_le_bytes());
            area[ST0..XMM0].fill(0);
        }
        1 => area[XMM0..LEGACY_END].fill(0),
        _ => {
            if let Some(c) = layout.layout.standard(i) {
                area[c.offset..c.offset + c.size].fill(0);
            }
        }
    }
}

/// Memory writes collected first, so a fault anywhere leaves guest memory untouched.
struct Stores {
    base: u64,
    pieces: Vec<(usize, Vec<u8>)>,
}

impl Stores {
    fn new(base: u64) -> Self {
        Self {
            base,
            pieces: Vec::new(),
        }
    }

    fn put(&mut self, off: usize, bytes: &[u8]) {
        self.pieces.push((off, bytes.to_vec()));
    }

    fn commit(self, ctx: &mut Ctx<'_>) -> Result<(), Stop> {
        let extent = self
            .pieces
            .iter()
            .map(|(o, b)| o + b.len())
            .max()
            .unwrap_or(0);
        ctx.mem.probe(self.base, extent, true)?;
        for (off, bytes) in self.pieces {
            ctx.mem.write(self.base.wrapping_add(off as u64), &bytes)?;
        }
        Ok(())
    }
}

fn xmm_guard(ctx: &Ctx<'_>) -> Result<(), Stop> {
    if ctx.cr0() & (ctl::CR0_TS | ctl::CR0_EM) != 0 {
        return Err(raise(Exception::NM));
    }
    Ok(())
}

fn fxsave(ctx: &mut Ctx<'_>, rex_w: bool) -> Result<Flow, Stop> {
    xmm_guard(ctx)?;
    let addr = aligned_ea(ctx, 16)?;
    let area = load_area(ctx)?;
    let mut st = Stores::new(addr);
    st.put(
        0,
        &legacy_header_out(&area, rex_w, ctx.cfg.vendor.x87_pointers()),
    );
    st.put(MXCSR, &area[MXCSR..ST0]);
    st.put(ST0, &area[ST0..LEGACY_END]);
    st.commit(ctx)?;
    Ok(Flow::Next)
}

fn fxrstor(ctx: &mut Ctx<'_>, rex_w: bool) -> Result<Flow, Stop> {
    xmm_guard(ctx)?;
    let addr = aligned_ea(ctx, 16)?;
    let mut image = vec![0u8; 512];
    ctx.mem.read(addr, &mut image)?;
    let mxcsr = u32_at(&image, MXCSR);
    if mxcsr & !ctx.cfg.mxcsr_mask != 0 {
        return Err(Stop::Raise(Exception::gp0()));
    }
    let mut area = load_area(ctx)?;
    legacy_header_in(&mut area, &image, rex_w, ctx.cfg.vendor.x87_pointers());
    area[MXCSR..MXCSR + 4].copy_from_slice(&mxcsr.to_le_bytes());
    area[ST0..LEGACY_END].copy_from_slice(&image[ST0..LEGACY_END]);
    let bv = u64_at(&area, HEADER) | 0b11;
    area[HEADER..HEADER + 8].copy_from_slice(&bv.to_le_bytes());
    ctx.cpu.set_xsave_area(&area)?;
    Ok(Flow::Next)
}

fn rfbm(ctx: &mut Ctx<'_>) -> Result<(u64, u64), Stop> {
    let xcr0 = ctx.cpu.xcr0()?;
    let requested = (ctx.regs.rax & 0xffff_ffff) | (ctx.regs.rdx << 32);
    Ok((xcr0, xcr0 & requested))
}

fn component_in_area(ctx: &Ctx<'_>, i: usize) -> Result<super::xstate::Component, Stop> {
    let c = ctx
        .cfg
        .layout
        .standard(i)
        .ok_or_else(|| Stop::Fail(format!("XSAVE component {i} has no CPUID 0xD layout")))?;
    if c.offset + c.size > XSAVE_AREA_SIZE {
        return Err(Stop::Fail(format!(
            "XSAVE component {i} lies beyond KVM's 4 KiB xsave image (offset {:#x})",
            c.offset
        )));
    }
    Ok(c)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Standard,
    /// XSAVEOPT: standard layout, components in their initial configuration are not written.
    Optimised,
    Compacted,
}

fn xsave(ctx: &mut Ctx<'_>, rex_w: bool, form: Form) -> Result<Flow, Stop> {
    check_xsave_enabled(ctx)?;
    let addr = aligned_ea(ctx, 64)?;
    let (_, rfbm) = rfbm(ctx)?;
    let area = load_area(ctx)?;
    let mut in_use = u64_at(&area, HEADER);
    if form == Form::Compacted && u32_at(&area, MXCSR) != MXCSR_DEFAULT {
        // XSAVEC treats a non-default MXCSR as SSE state in use (the host CPU does; XINUSE[1]
        // as XSAVE reports it covers only the XMM registers).
        in_use |= 0b10;
    }
    let mut st = Stores::new(addr);
    let mut ext_off = EXT_START;
    for i in 0..64usize {
        if rfbm & (1 << i) == 0 {
            continue;
        }
        let c = component_in_area(ctx, i)?;
        let mut dest = c.offset;
        if form == Form::Compacted && i >= 2 {
            if c.align64 {
                ext_off = ext_off.next_multiple_of(64);
            }
            dest = ext_off;
            ext_off += c.size;
        }
        if form != Form::Standard && in_use & (1 << i) == 0 {
            continue;
        }
        match i {
            0 => {
                st.put(
                    0,
                    &legacy_header_out(&area, rex_w, ctx.cfg.vendor.x87_pointers()),
                );
                st.put(ST0, &area[ST0..XMM0]);
            }
            _ => st.put(dest, &area[c.offset..c.offset + c.size]),
        }
    }
    // MXCSR belongs to both SSE and AVX state (SDM Vol. 1 §13.5.2) for the standard form;
    // XSAVEC writes it only with the SSE component (as the host CPU does).
    let mxcsr_saved = if form == Form::Compacted {
        rfbm & in_use & 0b10 != 0
    } else {
        rfbm & 0b110 != 0
    };
    if mxcsr_saved {
        st.put(MXCSR, &area[MXCSR..ST0]);
    }
    let header: [u8; 16] = if form == Form::Compacted {
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&(in_use & rfbm).to_le_bytes());
        h[8..].copy_from_slice(&(rfbm | COMPACTED).to_le_bytes());
        h
    } else {
        let mut old = [0u8; 8];
        ctx.mem.read(addr.wrapping_add(HEADER as u64), &mut old)?;
        let bv = (u64::from_le_bytes(old) & !rfbm) | (in_use & rfbm);
        let mut h = [0u8; 16];
        h[..8].copy_from_slice(&bv.to_le_bytes());
        h
    };
    let header_len = if form == Form::Compacted { 16 } else { 8 };
    st.put(HEADER, &header[..header_len]);
    st.commit(ctx)?;
    Ok(Flow::Next)
}

fn xrstor(ctx: &mut Ctx<'_>, rex_w: bool) -> Result<Flow, Stop> {
    check_xsave_enabled(ctx)?;
    let addr = aligned_ea(ctx, 64)?;
    let (xcr0, rfbm) = rfbm(ctx)?;
    let mut header = [0u8; 64];
    ctx.mem
        .read(addr.wrapping_add(HEADER as u64), &mut header)?;
    let xstate_bv = u64_at(&header, 0);
    let xcomp_bv = u64_at(&header, 8);
    let compacted = xcomp_bv & COMPACTED != 0;
    // SDM Vol. 1 §13.8: header consistency, else #GP(0).
    let bad = if compacted {
        xcomp_bv & !(xcr0 | COMPACTED) != 0
            || xstate_bv & !xcomp_bv != 0
            || header[16..].iter().any(|&b| b != 0)
    } else {
        xstate_bv & !xcr0 != 0 || header[8..24].iter().any(|&b| b != 0)
    };
    if bad {
        return Err(Stop::Raise(Exception::gp0()));
    }

    let mut area = load_area(ctx)?;
    let mut legacy = [0u8; LEGACY_END];
    ctx.mem.read(addr, &mut legacy)?;
    let load_mxcsr = if compacted {
        rfbm & xstate_bv & 0b110 != 0
    } else {
        rfbm & 0b110 != 0
    };
    let mxcsr = if load_mxcsr {
        u32_at(&legacy, MXCSR)
    } else {
        MXCSR_DEFAULT
    };
    if mxcsr & !ctx.cfg.mxcsr_mask != 0 {
        return Err(Stop::Raise(Exception::gp0()));
    }
    for i in 0..64usize {
        if rfbm & (1 << i) == 0 {
            continue;
        }
        let c = component_in_area(ctx, i)?;
        if xstate_bv & (1 << i) == 0 {
            init_component(&mut area, ctx.cfg, i);
            continue;
        }
        match i {
            0 => {
                legacy_header_in(&mut area, &legacy, rex_w, ctx.cfg.vendor.x87_pointers());
                area[ST0..XMM0].copy_from_slice(&legacy[ST0..XMM0]);
            }
            1 => area[XMM0..LEGACY_END].copy_from_slice(&legacy[XMM0..LEGACY_END]),
            _ => {
                let src = if compacted {
                    ctx.cfg
                        .layout
                        .compacted_offset(xcomp_bv, i)
                        .ok_or_else(|| {
                            Stop::Fail(format!("no compacted offset for component {i}"))
                        })?
                } else {
                    c.offset
                };
                let mut buf = vec![0u8; c.size];
                ctx.mem.read(addr.wrapping_add(src as u64), &mut buf)?;
                area[c.offset..c.offset + c.size].copy_from_slice(&buf);
            }
        }
    }
    if rfbm & 0b110 != 0 {
        area[MXCSR..MXCSR + 4].copy_from_slice(&mxcsr.to_le_bytes());
    }
    let mut bv = (u64_at(&area, HEADER) & !rfbm) | (xstate_bv & rfbm);
    if rfbm & 0b110 != 0 && mxcsr != MXCSR_DEFAULT {
        // KVM takes MXCSR from the image only when FP, SSE or YMM is marked in use.
        bv |= 0b10;
    }
    area[HEADER..HEADER + 8].copy_from_slice(&bv.to_le_bytes());
    ctx.cpu.set_xsave_area(&area)?;
    Ok(Flow::Next)
}

#[cfg(test)]
#[path = "xstate_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "xstate_vendor_tests.rs"]
mod vendor_tests;
