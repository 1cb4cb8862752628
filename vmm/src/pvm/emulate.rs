//! Emulation of the instructions PVM's in-kernel emulator rejects at CPL0
//! (`KVM_EXIT_INTERNAL_ERROR` / `KVM_INTERNAL_ERROR_EMULATION`): one instruction, decoded from
//! the bytes KVM reports, executed against [`CpuState`] and [`GuestVirtMem`], then RIP advanced
//! or an exception injected. Pure logic: the KVM-backed implementations live in `cpu.rs` and
//! `mmu.rs`. The x87/SSE/XSAVE family is in `xstate.rs`.

use iced_x86::{Code, Instruction, Mnemonic, OpKind, Register};
use kvm_bindings::{kvm_regs, kvm_sregs};

use super::alu::{self, BitOp, MSR_TSC_AUX};
use super::cpu::{CpuError, CpuState, Exception};
use super::decode::{self, ctl, flags, EaError};
use super::mmu::{GuestVirtMem, MemError};
use super::vendor::CpuVendor;
use super::xstate::{self, XsaveLayout};

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
    /// Whose documented behaviour to follow where Intel and AMD differ.
    pub vendor: CpuVendor,
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
            vendor: CpuVendor::host(),
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
    Unsupported {
        rip: u64,
        mnemonic: String,
        bytes: String,
    },
    #[error("emulating {mnemonic} [{bytes}] at RIP {rip:#x} failed: {reason}")]
    Failed {
        rip: u64,
        mnemonic: String,
        bytes: String,
        reason: String,
    },
    #[error(
        "vCPU is not in 64-bit mode at RIP {rip:#x} (bytes [{bytes}]); only long mode is emulated"
    )]
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
        decode::read_gpr(&self.regs, r)
            .ok_or_else(|| Stop::Fail(format!("unmodelled register {r:?}")))
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
    let regs = cpu
        .regs()
        .map_err(|source| EmulateError::Cpu { rip: 0, source })?;
    let rip = regs.rip;
    let sregs = cpu
        .sregs()
        .map_err(|source| EmulateError::Cpu { rip, source })?;
    let hex = || decode::hex_bytes(bytes);
    if sregs.efer & ctl::EFER_LMA == 0 || sregs.cs.l == 0 {
        return Err(EmulateError::NotLongMode { rip, bytes: hex() });
    }
    let instr = decode::decode(rip, bytes)
        .ok_or_else(|| EmulateError::Undecodable { rip, bytes: hex() })?;
    let used = &bytes[..instr.len().min(bytes.len())];
    let mnemonic = instr.mnemonic();

    let (result, regs) = {
        let mut ctx = Ctx {
            regs,
            sregs,
            cpu: &mut *cpu,
            mem,
            cfg,
            instr,
        };
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
            Ok(Emulated {
                mnemonic,
                injected: Some(exc),
            })
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
        Popcnt_r16_rm16 | Popcnt_r32_rm32 | Popcnt_r64_rm64 => alu::bit_count(ctx, BitOp::Popcnt),
        Lzcnt_r16_rm16 | Lzcnt_r32_rm32 | Lzcnt_r64_rm64 => alu::bit_count(
            ctx,
            if ctx.cfg.lzcnt {
                BitOp::Lzcnt
            } else {
                BitOp::Bsr
            },
        ),
        Tzcnt_r16_rm16 | Tzcnt_r32_rm32 | Tzcnt_r64_rm64 => alu::bit_count(
            ctx,
            if ctx.cfg.tzcnt {
                BitOp::Tzcnt
            } else {
                BitOp::Bsf
            },
        ),
        Bsf_r16_rm16 | Bsf_r32_rm32 | Bsf_r64_rm64 => alu::bit_count(ctx, BitOp::Bsf),
        Bsr_r16_rm16 | Bsr_r32_rm32 | Bsr_r64_rm64 => alu::bit_count(ctx, BitOp::Bsr),
        Crc32_r32_rm8 | Crc32_r64_rm8 | Crc32_r32_rm16 | Crc32_r32_rm32 | Crc32_r64_rm64 => {
            alu::crc32(ctx)
        }
        Cmpxchg16b_m128 => alu::cmpxchg16b(ctx),
        Cmpxchg8b_m64 => alu::cmpxchg8b(ctx),
        Movbe_r16_m16 | Movbe_r32_m32 | Movbe_r64_m64 | Movbe_m16_r16 | Movbe_m32_r32
        | Movbe_m64_r64 => alu::movbe(ctx),
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
        Rdtsc | Rdtscp => alu::rdtsc(ctx, code == Rdtscp),
        Rdpid_r32 | Rdpid_r64 => {
            let aux = ctx.cpu.msr(MSR_TSC_AUX)?;
            ctx.set_reg(ctx.instr.op0_register(), aux)?;
            Ok(Flow::Next)
        }
        Rdrand_r16 | Rdrand_r32 | Rdrand_r64 => alu::random(ctx, false),
        Rdseed_r16 | Rdseed_r32 | Rdseed_r64 => alu::random(ctx, true),
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

#[cfg(test)]
#[path = "emulate_tests.rs"]
mod tests;
