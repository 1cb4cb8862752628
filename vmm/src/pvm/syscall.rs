//! Repair of user-mode SYSCALL on PVM. On this host `syscall` at CPL3 loads RCX/R11 and jumps
//! to LSTAR but stays at CPL3, so the fetch of the kernel's entry point page-faults (error
//! code 0x15). A hardware execute breakpoint (KVM_SET_GUEST_DEBUG) on the guest's #PF entry
//! stops the vCPU there; if the fault is such a SYSCALL, the monitor puts the vCPU in the
//! state SYSCALL should have produced (SDM Vol. 2B SYSCALL) and lets the guest run its syscall
//! entry. Other page faults step over the breakpoint.
//!
//! A breakpoint on LSTAR itself was tried and dropped: it does not fire in natively-run user
//! mode on PVM (the process dies with SIGSEGV at LSTAR), and with both breakpoints every
//! repaired syscall costs an extra single-step at LSTAR.
//!
//! Per vCPU: [`SyscallRepair`] tracks where the breakpoint is, re-arms it when the guest
//! moves its IDT (checked at most every [`RECHECK_INTERVAL`]), and steps over the first
//! instruction of the #PF entry by emulating it when it is trivial (ENDBR64, NOP, CLAC, STAC,
//! CLD) or else with one single-step.

use std::time::{Duration, Instant};

use iced_x86::Code;
use kvm_bindings::{kvm_debug_exit_arch, kvm_guest_debug, KVM_GUESTDBG_BLOCKIRQ};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::cpu::{CpuError, CpuState, Exception, KvmCpu};
use super::decode::{self, ctl, flags};
use super::entry::{guest_debug, syscall_cs, syscall_rflags, syscall_ss, ExceptionFrame, Gate};
use super::mmu::{translate, Access, MemError, Paging};
use super::PvmStats;

/// How often `before_run` looks for a moved IDT.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(20);

const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_SFMASK: u32 = 0xc000_0084;
const PF_VECTOR: u64 = 14;
const GATE_SIZE: u64 = 16;
/// DR6.BS: the debug exception came from single-stepping (SDM Vol. 3B §18.2.3).
const DR6_BS: u64 = 1 << 14;
const DR6_B0_3: u64 = 0xf;

/// Programs KVM_SET_GUEST_DEBUG.
pub trait DebugControl {
    fn set_guest_debug(&mut self, dbg: &kvm_guest_debug) -> Result<(), CpuError>;
}

impl DebugControl for KvmCpu<'_> {
    fn set_guest_debug(&mut self, dbg: &kvm_guest_debug) -> Result<(), CpuError> {
        self.fd()
            .set_guest_debug(dbg)
            .map_err(|e| CpuError::new("KVM_SET_GUEST_DEBUG", e))
    }
}

/// What a debug exit turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugOutcome {
    /// A broken SYSCALL was turned into a proper one.
    Repaired,
    /// Some other page fault passed the breakpoint.
    SteppedOver,
    /// A single-step over a breakpointed instruction finished; breakpoints are back.
    StepDone,
    /// A breakpoint that is no longer ours (stale after a reset or a move): re-armed.
    Stale,
    /// Not caused by the monitor: the #DB was handed to the guest.
    Reinjected,
}

/// Errors of the repair machinery.
#[derive(Debug, thiserror::Error)]
pub enum RepairError {
    #[error(transparent)]
    Cpu(#[from] CpuError),
    #[error("reading guest memory for the SYSCALL repair: {0}")]
    Memory(#[from] MemError),
}

/// Per-vCPU SYSCALL repair state.
#[derive(Debug)]
pub struct SyscallRepair {
    /// Address of the guest's #PF entry the breakpoint is on.
    armed: Option<u64>,
    stepping: bool,
    clear_pending: bool,
    block_irq: bool,
    last_check: Option<Instant>,
}

impl Default for SyscallRepair {
    fn default() -> Self {
        Self::new()
    }
}

impl SyscallRepair {
    pub fn new() -> Self {
        Self {
            armed: None,
            stepping: false,
            clear_pending: false,
            block_irq: true,
            last_check: None,
        }
    }

    /// Forgets everything (guest reset); the next `before_run` clears KVM's debug state.
    pub fn reset(&mut self) {
        self.armed = None;
        self.stepping = false;
        self.last_check = None;
        self.clear_pending = true;
    }

    /// Cheap unless the re-check interval has passed: then finds the #PF entry and LSTAR and
    /// re-programs the breakpoints when they moved.
    pub fn before_run<C: CpuState + DebugControl>(
        &mut self,
        cpu: &mut C,
        mem: &GuestMemoryMmap,
        stats: &PvmStats,
        now: Instant,
    ) -> Result<(), RepairError> {
        if self.stepping {
            return Ok(());
        }
        if self.clear_pending {
            self.program(cpu, &guest_debug(&[], false, false))?;
            self.clear_pending = false;
        }
        if let Some(last) = self.last_check {
            if now.duration_since(last) < RECHECK_INTERVAL {
                return Ok(());
            }
        }
        self.last_check = Some(now);
        self.arm(cpu, mem, stats)
    }

    /// Locates the targets now and (re)programs the breakpoints if they changed.
    pub fn arm<C: CpuState + DebugControl>(
        &mut self,
        cpu: &mut C,
        mem: &GuestMemoryMmap,
        stats: &PvmStats,
    ) -> Result<(), RepairError> {
        let target = self.locate(cpu, mem)?;
        if target == self.armed {
            return Ok(());
        }
        let bps: Vec<u64> = target.into_iter().collect();
        self.program(cpu, &guest_debug(&bps, false, false))?;
        self.armed = target;
        if target.is_some() {
            stats.count_rearm();
        }
        Ok(())
    }

    fn program<C: DebugControl>(
        &mut self,
        cpu: &mut C,
        dbg: &kvm_guest_debug,
    ) -> Result<(), RepairError> {
        match cpu.set_guest_debug(dbg) {
            Err(e) if e.is_einval() && dbg.control & KVM_GUESTDBG_BLOCKIRQ != 0 => {
                // Kernels before 5.15 lack BLOCKIRQ: step without it.
                self.block_irq = false;
                let mut plain = *dbg;
                plain.control &= !KVM_GUESTDBG_BLOCKIRQ;
                cpu.set_guest_debug(&plain)?;
                Ok(())
            }
            other => Ok(other?),
        }
    }

    /// The guest's #PF entry, from the IDT gate for vector 14 (none before long mode, or
    /// while the IDT is too short, unreadable or its gate not present).
    fn locate<C: CpuState>(
        &self,
        cpu: &mut C,
        mem: &GuestMemoryMmap,
    ) -> Result<Option<u64>, RepairError> {
        let sregs = cpu.sregs()?;
        if sregs.cr0 & ctl::CR0_PG == 0 || sregs.efer & ctl::EFER_LMA == 0 {
            return Ok(None);
        }
        if u64::from(sregs.idt.limit) < PF_VECTOR * GATE_SIZE + GATE_SIZE - 1 {
            return Ok(None);
        }
        let paging = Paging::from_sregs(&sregs, 0);
        let mut raw = [0u8; 16];
        let gate_addr = sregs.idt.base.wrapping_add(PF_VECTOR * GATE_SIZE);
        if peek(mem, &paging, gate_addr, &mut raw).is_err() {
            return Ok(None);
        }
        let gate = Gate::decode(&raw);
        Ok(gate.is_usable().then_some(gate.offset))
    }

    /// Handles KVM_EXIT_DEBUG.
    pub fn handle_debug<C: CpuState + DebugControl>(
        &mut self,
        cpu: &mut C,
        mem: &GuestMemoryMmap,
        arch: &kvm_debug_exit_arch,
        stats: &PvmStats,
    ) -> Result<DebugOutcome, RepairError> {
        if self.stepping {
            self.stepping = false;
            let bps: Vec<u64> = self.armed.into_iter().collect();
            self.program(cpu, &guest_debug(&bps, false, false))?;
            if arch.dr6 & DR6_BS != 0 {
                return Ok(DebugOutcome::StepDone);
            }
            // Something else stopped the step; fall through with the breakpoints re-armed.
        }
        if self.armed != Some(arch.pc) {
            return self.not_ours(cpu, mem, arch, stats);
        }
        let [star, lstar, sfmask] = read_syscall_msrs(cpu)?;
        let sregs = cpu.sregs()?;
        let regs = cpu.regs()?;
        // The exception frame the #PF delivery pushed (SDM Vol. 3A §6.14.2).
        let paging = Paging::from_sregs(&sregs, regs.rflags);
        let mut raw = [0u8; ExceptionFrame::SIZE];
        peek(mem, &paging, regs.rsp, &mut raw)?;
        let frame = ExceptionFrame::parse(&raw);
        if frame.is_broken_syscall(lstar) {
            self.repair(cpu, star, lstar, sfmask, frame.rflags, frame.rsp)?;
            stats.count_syscall_repair();
            return Ok(DebugOutcome::Repaired);
        }
        stats.count_pf_stepover();
        self.step_over(cpu, mem, arch.pc, stats)?;
        Ok(DebugOutcome::SteppedOver)
    }

    /// Puts the vCPU where SYSCALL would have: CPL0 at LSTAR with the user's stack pointer
    /// (RCX and R11 were already loaded by the partial SYSCALL).
    fn repair<C: CpuState>(
        &mut self,
        cpu: &mut C,
        star: u64,
        lstar: u64,
        sfmask: u64,
        user_rflags: u64,
        user_rsp: u64,
    ) -> Result<(), RepairError> {
        let mut sregs = cpu.sregs()?;
        sregs.cs = syscall_cs(star);
        sregs.ss = syscall_ss(star);
        cpu.set_sregs(&sregs)?;
        let mut regs = cpu.regs()?;
        regs.rip = lstar;
        regs.rsp = user_rsp;
        regs.rflags = syscall_rflags(user_rflags, sfmask);
        cpu.set_regs(&regs)?;
        Ok(())
    }

    /// Gets past the breakpointed instruction at `addr` (the vCPU's RIP): emulated when it is
    /// trivial, else one single-step with the breakpoints off.
    fn step_over<C: CpuState + DebugControl>(
        &mut self,
        cpu: &mut C,
        mem: &GuestMemoryMmap,
        addr: u64,
        stats: &PvmStats,
    ) -> Result<(), RepairError> {
        let sregs = cpu.sregs()?;
        let mut regs = cpu.regs()?;
        let paging = Paging::from_sregs(&sregs, regs.rflags);
        let mut bytes = [0u8; 15];
        if regs.rip == addr && peek(mem, &paging, addr, &mut bytes).is_ok() {
            if let Some(instr) = decode::decode(addr, &bytes) {
                let skip = match instr.code() {
                    Code::Endbr64
                    | Code::Nopw
                    | Code::Nopd
                    | Code::Nopq
                    | Code::Nop_rm16
                    | Code::Nop_rm32
                    | Code::Nop_rm64 => Some(regs.rflags),
                    Code::Clac => Some(regs.rflags & !flags::AC),
                    Code::Stac => Some(regs.rflags | flags::AC),
                    Code::Cld => Some(regs.rflags & !(1 << 10)),
                    _ => None,
                };
                if let Some(rflags) = skip {
                    regs.rip = instr.next_ip();
                    regs.rflags = rflags & !flags::RF;
                    cpu.set_regs(&regs)?;
                    stats.count_first_insn_skip();
                    return Ok(());
                }
            }
        }
        self.program(cpu, &guest_debug(&[], true, self.block_irq))?;
        self.stepping = true;
        stats.count_single_step();
        Ok(())
    }

    fn not_ours<C: CpuState + DebugControl>(
        &mut self,
        cpu: &mut C,
        mem: &GuestMemoryMmap,
        arch: &kvm_debug_exit_arch,
        stats: &PvmStats,
    ) -> Result<DebugOutcome, RepairError> {
        if arch.dr6 & DR6_B0_3 != 0 {
            // A hardware breakpoint we no longer own: re-program from scratch.
            self.armed = None;
            self.arm(cpu, mem, stats)?;
            if self.armed.is_none() {
                self.program(cpu, &guest_debug(&[], false, false))?;
            }
            stats.count_debug_stale();
            return Ok(DebugOutcome::Stale);
        }
        cpu.inject(Exception::new(Exception::DB))?;
        stats.count_debug_reinjected();
        Ok(DebugOutcome::Reinjected)
    }
}

fn read_syscall_msrs<C: CpuState>(cpu: &mut C) -> Result<[u64; 3], RepairError> {
    let v = cpu.read_msrs(&[MSR_STAR, MSR_LSTAR, MSR_SFMASK])?;
    match v.as_slice() {
        &[star, lstar, sfmask] => Ok([star, lstar, sfmask]),
        _ => Err(CpuError::invalid("KVM_GET_MSRS (STAR/LSTAR/SFMASK)").into()),
    }
}

/// Reads guest memory by linear address as the monitor: presence only, no accessed bits.
fn peek(mem: &GuestMemoryMmap, paging: &Paging, gva: u64, buf: &mut [u8]) -> Result<(), MemError> {
    let mut done = 0;
    while done < buf.len() {
        let addr = gva.wrapping_add(done as u64);
        let n = ((0x1000 - (addr & 0xfff)) as usize).min(buf.len() - done);
        let gpa = translate(mem, paging, addr, Access::Peek)?;
        mem.read_slice(&mut buf[done..done + n], GuestAddress(gpa))
            .map_err(|_| MemError::NotRam { gva: addr, gpa })?;
        done += n;
    }
    Ok(())
}

#[cfg(test)]
#[path = "syscall_tests.rs"]
mod tests;
