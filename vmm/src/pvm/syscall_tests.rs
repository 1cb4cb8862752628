//! SYSCALL-repair tests: the pure pieces (gate decoding, frame parsing, segment and flag
//! construction, DR7) and the state machine driven through a fake vCPU over real guest
//! memory with page tables.

use std::time::{Duration, Instant};

use kvm_bindings::{kvm_debug_exit_arch, KVM_GUESTDBG_ENABLE, KVM_GUESTDBG_SINGLESTEP};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::*;
use crate::pvm::entry::*;
use crate::pvm::mmu::tests::guest_with_tables;
use crate::pvm::testutil::FakeCpu;

const V: u64 = 0x40_0000_0000;
const PHYS: u64 = 0x10_0000;
const IDT: u64 = V + 0x1000;
const HANDLER: u64 = V + 0x2010;
const LSTAR: u64 = V + 0x5000;
const STACK: u64 = V + 0x6f00;
const STAR: u64 = (0x23 << 48) | (0x10 << 32);
const SFMASK: u64 = 0x47700;
const USER_RSP: u64 = 0x7ffc_1234_5670;

/// Writes bytes at a linear address in the test mapping (V + n maps to PHYS + n).
fn put(mem: &GuestMemoryMmap, gva: u64, bytes: &[u8]) {
    mem.write_slice(bytes, GuestAddress(PHYS + (gva - V)))
        .unwrap();
}

fn gate_bytes(offset: u64, present: bool) -> [u8; 16] {
    let mut g = [0u8; 16];
    g[0..2].copy_from_slice(&(offset as u16).to_le_bytes());
    g[2..4].copy_from_slice(&0x10u16.to_le_bytes());
    g[5] = if present { 0x8e } else { 0x0e };
    g[6..8].copy_from_slice(&((offset >> 16) as u16).to_le_bytes());
    g[8..12].copy_from_slice(&((offset >> 32) as u32).to_le_bytes());
    g
}

fn frame_bytes(f: &ExceptionFrame) -> [u8; 48] {
    let mut b = [0u8; 48];
    for (i, v) in [f.error_code, f.rip, f.cs, f.rflags, f.rsp, f.ss]
        .iter()
        .enumerate()
    {
        b[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
    }
    b
}

/// A guest whose #PF gate points at HANDLER (first instruction `handler_insn`), with LSTAR
/// starting with `lstar_insn`, and a vCPU stopped at the #PF entry in kernel mode.
fn setup(handler_insn: &[u8], lstar_insn: &[u8]) -> (GuestMemoryMmap, FakeCpu) {
    let (mem, cr3) = guest_with_tables(false);
    put(&mem, IDT + 14 * 16, &gate_bytes(HANDLER, true));
    put(&mem, HANDLER, handler_insn);
    put(&mem, LSTAR, lstar_insn);
    let mut cpu = FakeCpu::long_mode();
    cpu.sregs.cr3 = cr3;
    cpu.sregs.idt.base = IDT;
    cpu.sregs.idt.limit = 0xfff;
    cpu.msrs.insert(MSR_STAR, STAR);
    cpu.msrs.insert(MSR_LSTAR, LSTAR);
    cpu.msrs.insert(MSR_SFMASK, SFMASK);
    cpu.regs.rip = HANDLER;
    cpu.regs.rsp = STACK;
    cpu.regs.rcx = 0x40_1000;
    cpu.regs.r11 = 0x246;
    (mem, cpu)
}

fn hit(pc: u64) -> kvm_debug_exit_arch {
    kvm_debug_exit_arch {
        exception: 1,
        pc,
        dr6: 0xffff_0ff1,
        ..Default::default()
    }
}

const ENDBR64: [u8; 4] = [0xf3, 0x0f, 0x1e, 0xfa];
const PUSH_RBP: [u8; 1] = [0x55];
const SWAPGS: [u8; 3] = [0x0f, 0x01, 0xf8];

#[test]
fn arms_on_the_page_fault_gate_and_only_reprograms_on_change() {
    let (mem, mut cpu) = setup(&ENDBR64, &SWAPGS);
    let stats = PvmStats::new();
    let mut r = SyscallRepair::new();
    let t0 = Instant::now();
    r.before_run(&mut cpu, &mem, &stats, t0).unwrap();
    assert_eq!(cpu.debug.len(), 1);
    assert_eq!(cpu.debug[0], guest_debug(&[HANDLER], false, false));
    // The guest installs a new IDT entry: noticed only after the re-check interval.
    put(&mem, IDT + 14 * 16, &gate_bytes(HANDLER + 0x100, true));
    r.before_run(&mut cpu, &mem, &stats, t0 + Duration::from_millis(5))
        .unwrap();
    assert_eq!(cpu.debug.len(), 1);
    r.before_run(&mut cpu, &mem, &stats, t0 + RECHECK_INTERVAL * 2)
        .unwrap();
    assert_eq!(
        cpu.debug.last(),
        Some(&guest_debug(&[HANDLER + 0x100], false, false))
    );
    r.before_run(&mut cpu, &mem, &stats, t0 + RECHECK_INTERVAL * 4)
        .unwrap();
    assert_eq!(cpu.debug.len(), 2);
    assert_eq!(stats.snapshot()["rearm"], 2);
    // Before paging (early boot or after reset) nothing is armed.
    let mut early = FakeCpu::long_mode();
    early.sregs.cr0 = 0;
    let mut r2 = SyscallRepair::new();
    r2.arm(&mut early, &mem, &stats).unwrap();
    assert!(early.debug.is_empty());
}

#[test]
fn broken_syscall_at_the_page_fault_entry_is_repaired() {
    let (mem, mut cpu) = setup(&ENDBR64, &SWAPGS);
    let frame = ExceptionFrame {
        error_code: 0x15,
        rip: LSTAR,
        cs: 0x33,
        rflags: 0x10246,
        rsp: USER_RSP,
        ss: 0x2b,
    };
    put(&mem, STACK, &frame_bytes(&frame));
    let stats = PvmStats::new();
    let mut r = SyscallRepair::new();
    r.arm(&mut cpu, &mem, &stats).unwrap();
    let out = r
        .handle_debug(&mut cpu, &mem, &hit(HANDLER), &stats)
        .unwrap();
    assert_eq!(out, DebugOutcome::Repaired);
    assert_eq!((cpu.regs.rip, cpu.regs.rsp), (LSTAR, USER_RSP));
    assert_eq!(cpu.regs.rflags, syscall_rflags(0x10246, SFMASK));
    assert_eq!(
        (cpu.regs.rcx, cpu.regs.r11),
        (0x40_1000, 0x246),
        "RCX/R11 come from the CPU"
    );
    assert_eq!(cpu.sregs.cs, syscall_cs(STAR));
    assert_eq!(cpu.sregs.ss, syscall_ss(STAR));
    assert_eq!(
        cpu.debug.len(),
        1,
        "no re-programming needed with the #PF site only"
    );
    assert_eq!(stats.snapshot()["syscall_repairs"], 1);
}

#[test]
fn other_page_faults_skip_a_trivial_first_instruction() {
    let (mem, mut cpu) = setup(&ENDBR64, &SWAPGS);
    let frame = ExceptionFrame {
        error_code: 0x2,
        rip: 0xffff_ffff_8100_0000,
        cs: 0x10,
        rflags: 0x46,
        rsp: STACK + 0x100,
        ss: 0,
    };
    put(&mem, STACK, &frame_bytes(&frame));
    let stats = PvmStats::new();
    let mut r = SyscallRepair::new();
    r.arm(&mut cpu, &mem, &stats).unwrap();
    let out = r
        .handle_debug(&mut cpu, &mem, &hit(HANDLER), &stats)
        .unwrap();
    assert_eq!(out, DebugOutcome::SteppedOver);
    assert_eq!(cpu.regs.rip, HANDLER + 4);
    assert_eq!(cpu.regs.rsp, STACK);
    let snap = stats.snapshot();
    assert_eq!(
        (
            snap["pf_stepovers"],
            snap["first_insn_skips"],
            snap["single_steps"]
        ),
        (1, 1, 0)
    );
    // A user fault at another address is not a syscall either.
    cpu.regs.rip = HANDLER;
    put(
        &mem,
        STACK,
        &frame_bytes(&ExceptionFrame {
            cs: 0x33,
            rip: 0x40_2000,
            ..frame
        }),
    );
    assert_eq!(
        r.handle_debug(&mut cpu, &mem, &hit(HANDLER), &stats)
            .unwrap(),
        DebugOutcome::SteppedOver
    );
}

#[test]
fn non_trivial_first_instruction_is_single_stepped_then_rearmed() {
    let (mem, mut cpu) = setup(&PUSH_RBP, &SWAPGS);
    let frame = ExceptionFrame {
        error_code: 0,
        rip: 0xffff_ffff_8100_0000,
        cs: 0x10,
        rflags: 0x46,
        rsp: 0,
        ss: 0,
    };
    put(&mem, STACK, &frame_bytes(&frame));
    let stats = PvmStats::new();
    let mut r = SyscallRepair::new();
    cpu.reject_blockirq = true;
    r.arm(&mut cpu, &mem, &stats).unwrap();
    assert_eq!(
        r.handle_debug(&mut cpu, &mem, &hit(HANDLER), &stats)
            .unwrap(),
        DebugOutcome::SteppedOver
    );
    let step = cpu.debug.last().unwrap();
    assert_eq!(
        step.control,
        KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP,
        "BLOCKIRQ dropped on EINVAL"
    );
    assert_eq!(
        cpu.regs.rip, HANDLER,
        "the CPU executes the instruction itself"
    );
    // before_run does not disturb a step in progress.
    r.before_run(
        &mut cpu,
        &mem,
        &stats,
        Instant::now() + Duration::from_secs(1),
    )
    .unwrap();
    assert_eq!(cpu.debug.len(), 2);
    let done = kvm_debug_exit_arch {
        exception: 1,
        pc: HANDLER + 1,
        dr6: 0xffff_4ff0,
        ..Default::default()
    };
    assert_eq!(
        r.handle_debug(&mut cpu, &mem, &done, &stats).unwrap(),
        DebugOutcome::StepDone
    );
    assert_eq!(
        cpu.debug.last(),
        Some(&guest_debug(&[HANDLER], false, false))
    );
    assert_eq!(stats.snapshot()["single_steps"], 1);
}

#[test]
fn foreign_debug_exits_are_rearmed_or_reinjected() {
    let (mem, mut cpu) = setup(&ENDBR64, &SWAPGS);
    let stats = PvmStats::new();
    let mut r = SyscallRepair::new();
    r.arm(&mut cpu, &mem, &stats).unwrap();
    // A hit on an address that is no longer ours (the gate moved).
    put(&mem, IDT + 14 * 16, &gate_bytes(HANDLER + 0x40, true));
    assert_eq!(
        r.handle_debug(&mut cpu, &mem, &hit(0x1234), &stats)
            .unwrap(),
        DebugOutcome::Stale
    );
    assert_eq!(
        cpu.debug.last(),
        Some(&guest_debug(&[HANDLER + 0x40], false, false))
    );
    // A single-step trap the monitor did not ask for goes to the guest.
    let trap = kvm_debug_exit_arch {
        exception: 1,
        pc: 0x5000,
        dr6: 0xffff_4ff0,
        ..Default::default()
    };
    assert_eq!(
        r.handle_debug(&mut cpu, &mem, &trap, &stats).unwrap(),
        DebugOutcome::Reinjected
    );
    assert_eq!(cpu.injected, vec![Exception::new(Exception::DB)]);
}

#[test]
fn reset_clears_kvm_debug_state_then_rearms() {
    let (mem, mut cpu) = setup(&ENDBR64, &SWAPGS);
    let stats = PvmStats::new();
    let mut r = SyscallRepair::new();
    let t0 = Instant::now();
    r.before_run(&mut cpu, &mem, &stats, t0).unwrap();
    r.reset();
    cpu.sregs.cr0 = 0; // the guest restarts without paging
    r.before_run(&mut cpu, &mem, &stats, t0).unwrap();
    assert_eq!(cpu.debug.last().map(|d| d.control), Some(0));
    cpu.sregs.cr0 = FakeCpu::long_mode().sregs.cr0;
    r.before_run(&mut cpu, &mem, &stats, t0 + RECHECK_INTERVAL)
        .unwrap();
    assert_eq!(
        cpu.debug.last(),
        Some(&guest_debug(&[HANDLER], false, false))
    );
}
