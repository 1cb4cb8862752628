//! Repair of user-mode SYSCALL on PVM. On this host `syscall` at CPL3 loads RCX/R11 and jumps
//! to LSTAR but stays at CPL3, so the fetch of the kernel's entry point page-faults (error
//! code 0x15). A hardware execute breakpoint (KVM_SET_GUEST_DEBUG) on the guest's #PF entry —
//! and optionally on LSTAR itself — stops the vCPU there; if the fault is such a SYSCALL, the
//! monitor puts the vCPU in the state SYSCALL should have produced (SDM Vol. 2B SYSCALL) and
//! lets the guest run its syscall entry. Other page faults step over the breakpoint.
//!
//! Per vCPU: [`SyscallRepair`] tracks where the breakpoints are, re-arms them when the guest
//! moves its IDT or LSTAR (checked at most every [`RECHECK_INTERVAL`]), and steps over the
//! first instruction of a breakpointed handler by emulating it when it is trivial (ENDBR64,
//! NOP, CLAC, STAC, CLD) or else with one single-step.

use std::time::{Duration, Instant};

use iced_x86::Code;
use kvm_bindings::{kvm_debug_exit_arch, kvm_guest_debug, KVM_GUESTDBG_BLOCKIRQ};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::cpu::{CpuError, CpuState, Exception, KvmCpu};
use super::decode::{self, ctl, flags};
use super::entry::{guest_debug, syscall_cs, syscall_rflags, syscall_ss, ExceptionFrame, Gate};
use super::mmu::{translate, Access, MemError, Paging};
use super::PvmStats;

/// How often `before_run` looks for a moved IDT or LSTAR.
pub const RECHECK_INTERVAL: Duration = Duration::from_millis(20);
/// Environment variable choosing the breakpoint sites: `pf` (default), `lstar` or `both`.
pub const SITE_ENV: &str = "OUTPOST_PVM_SYSCALL_BP";

const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_SFMASK: u32 = 0xc000_0084;
const PF_VECTOR: u64 = 14;
const GATE_SIZE: u64 = 16;
/// DR6.BS: the debug exception came from single-stepping (SDM Vol. 3B §18.2.3).
const DR6_BS: u64 = 1 << 14;
const DR6_B0_3: u64 = 0xf;

/// Where the breakpoints go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Sites {
    /// The #PF entry only: one exit per syscall and per page fault. Shown to fire on PVM.
    #[default]
    PageFault,
    /// LSTAR only: one exit per syscall, none per page fault; needs the breakpoint to fire
    /// in natively-run user mode (not yet shown on PVM; a miss kills the process with SIGSEGV).
    Lstar,
    /// Both: LSTAR catches syscalls if user-mode breakpoints fire, #PF catches them if not.
    Both,
}

impl Sites {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "pf" => Some(Sites::PageFault),
            "lstar" => Some(Sites::Lstar),
            "both" => Some(Sites::Both),
            _ => None,
        }
    }

    /// From [`SITE_ENV`], defaulting to [`Sites::PageFault`] when unset or unknown.
    pub fn from_env() -> Self {
        std::env::var(SITE_ENV)
            .ok()
            .and_then(|v| Self::parse(&v))
            .unwrap_or_default()
    }

    fn uses_pf(self) -> bool {
        self != Sites::Lstar
    }

    fn uses_lstar(self) -> bool {
        self != Sites::PageFault
    }
}

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

/// Where the breakpoints are armed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    pf_entry: Option<u64>,
    lstar: u64,
}

impl Target {
    fn breakpoints(&self, sites: Sites) -> Vec<u64> {
        let mut v = Vec::new();
        if let (true, Some(pf)) = (sites.uses_pf(), self.pf_entry) {
            v.push(pf);
        }
        if sites.uses_lstar() && self.lstar != 0 && !v.contains(&self.lstar) {
            v.push(self.lstar);
        }
        v
    }
}

/// What a debug exit turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugOutcome {
    /// A broken SYSCALL was turned into a proper one.
    Repaired,
    /// Some other page fault (or a repaired syscall at LSTAR) passed the breakpoint.
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
    sites: Sites,
    armed: Option<Target>,
    stepping: bool,
    clear_pending: bool,
    block_irq: bool,
    last_check: Option<Instant>,
}

impl SyscallRepair {
    pub fn new(sites: Sites) -> Self {
        Self {
            sites,
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
        let bps = target
            .map(|t| t.breakpoints(self.sites))
            .unwrap_or_default();
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

    fn locate<C: CpuState>(
        &self,
        cpu: &mut C,
        mem: &GuestMemoryMmap,
    ) -> Result<Option<Target>, RepairError> {
        let sregs = cpu.sregs()?;
        if sregs.cr0 & ctl::CR0_PG == 0 || sregs.efer & ctl::EFER_LMA == 0 {
            return Ok(None);
        }
        let lstar = cpu.msr(MSR_LSTAR)?;
        let paging = Paging::from_sregs(&sregs, 0);
        let mut pf_entry = None;
        if u64::from(sregs.idt.limit) >= PF_VECTOR * GATE_SIZE + GATE_SIZE - 1 {
            let mut raw = [0u8; 16];
            if peek(
                mem,
                &paging,
                sregs.idt.base + PF_VECTOR * GATE_SIZE,
                &mut raw,
            )
            .is_ok()
            {
                let gate = Gate::decode(&raw);
                if gate.is_usable() {
                    pf_entry = Some(gate.offset);
                }
            }
        }
        let target = Target { pf_entry, lstar };
        Ok(if target.breakpoints(self.sites).is_empty() {
            None
        } else {
            Some(target)
        })
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
            let bps = self
                .armed
                .map(|t| t.breakpoints(self.sites))
                .unwrap_or_default();
            self.program(cpu, &guest_debug(&bps, false, false))?;
            if arch.dr6 & DR6_BS != 0 {
                return Ok(DebugOutcome::StepDone);
            }
            // Something else stopped the step; fall through with the breakpoints re-armed.
        }
        let Some(target) = self.armed else {
            return self.not_ours(cpu, mem, arch, stats);
        };
        let at_pf = self.sites.uses_pf() && target.pf_entry == Some(arch.pc);
        let at_lstar = self.sites.uses_lstar() && target.lstar == arch.pc;
        if !at_pf && !at_lstar {
            return self.not_ours(cpu, mem, arch, stats);
        }
        let [star, lstar, sfmask] = read_syscall_msrs(cpu)?;
        let sregs = cpu.sregs()?;
        let regs = cpu.regs()?;
        if at_lstar && sregs.cs.selector & 3 == 3 {
            // The breakpoint caught the SYSCALL before its fetch faulted.
            self.repair(cpu, star, lstar, sfmask, regs.rflags, regs.rsp)?;
            stats.count_syscall_repair();
            self.step_over(cpu, mem, lstar, stats)?;
            return Ok(DebugOutcome::Repaired);
        }
        if at_pf {
            let paging = Paging::from_sregs(&sregs, regs.rflags);
            let mut raw = [0u8; ExceptionFrame::SIZE];
            peek(mem, &paging, regs.rsp, &mut raw)?;
            let frame = ExceptionFrame::parse(&raw);
            if frame.is_broken_syscall(lstar) {
                self.repair(cpu, star, lstar, sfmask, frame.rflags, frame.rsp)?;
                stats.count_syscall_repair();
                if self.sites.uses_lstar() {
                    self.step_over(cpu, mem, lstar, stats)?;
                }
                return Ok(DebugOutcome::Repaired);
            }
            stats.count_pf_stepover();
        }
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
