//! The probe: does this host's KVM give back everything a vCPU holds? A tiny 64-bit guest
//! counts in a register and in memory and reports both on I/O ports; it is paused, its vCPU
//! state and memory are saved through the state file and the memory file, the VM is
//! destroyed, and a new VM and vCPU are built from those files. The guest must go on counting
//! from where it was, and every piece of state read back from the new vCPU is compared with
//! what was saved.

use std::sync::Arc;

use kvm_bindings::KVM_MAX_CPUID_ENTRIES;
use kvm_ioctls::{VcpuExit, VcpuFd};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

use super::memory::{self, MemoryRegionState};
use super::vcpu::{saved_msr_indices, settle, VcpuState};
use super::vm::VmState;
use crate::devices::bus::Bus;
use crate::devices::legacy::PowerSignal;
use crate::pvm::testutil::long_mode_sregs;
use crate::pvm::{apply_cpu_template, is_pvm_host, PvmStats, PvmVcpu};
use crate::vstate::vcpu::{
    install_kick_handler, ExitCounters, VcpuContext, VcpuControl, VcpuHandle, VcpuSaveError,
};
use crate::vstate::vm::Vm;

const CODE: u64 = 0x10000;
const COUNTER: u64 = 0x8000;
const GDT: u64 = 0x5000;
const COUNT_PORT: u16 = 0x10;
const MSR_PORT: u16 = 0x11;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_TSC_DEADLINE: u32 = 0x6e0;
/// An IOAPIC pin the probe programs (vector 0x24, masked) to see it come back.
const IOAPIC_PIN: usize = 4;
const IOAPIC_ENTRY: u64 = 0x24 | (1 << 16);
/// The counting probe's guest memory: the size the restore goal names.
const PROBE_MEM: usize = 256 << 20;
const XMM0: [u32; 4] = [0x0102_0304, 0x0506_0708, 0x090a_0b0c, 0x0d0e_0f10];
const IDT: u64 = 0x4000;
/// The #UD handler: mov eax, [rsp] (the faulting RIP) ; out UD_PORT, eax ; hlt
const UD_HANDLER: u64 = CODE + 0x800;
const UD_HANDLER_CODE: &[u8] = &[0x8b, 0x04, 0x24, 0xe7, 0x12, 0xf4];
const UD_PORT: u16 = 0x12;

/// inc rbx ; inc qword [COUNTER] ; mov eax, ebx ; out COUNT_PORT, eax ;
/// mov ecx, MSR_KERNEL_GS_BASE ; rdmsr ; out MSR_PORT, eax ; jmp back to the start
const PROGRAM: &[u8] = &[
    0x48, 0xff, 0xc3, //
    0x48, 0xff, 0x04, 0x25, 0x00, 0x80, 0x00, 0x00, //
    0x89, 0xd8, 0xe7, 0x10, //
    0xb9, 0x02, 0x01, 0x00, 0xc0, 0x0f, 0x32, 0xe7, 0x11, //
    0xeb, 0xe6,
];

fn load_guest(mem: &GuestMemoryMmap) {
    // Identity map of the first 2 MiB with one large page: PML4 0x1000, PDPT 0x2000, PD 0x3000.
    mem.write_obj(0x2003u64, GuestAddress(0x1000)).unwrap();
    mem.write_obj(0x3003u64, GuestAddress(0x2000)).unwrap();
    mem.write_obj(0x83u64, GuestAddress(0x3000)).unwrap();
    mem.write_slice(PROGRAM, GuestAddress(CODE)).unwrap();
    mem.write_slice(UD_HANDLER_CODE, GuestAddress(UD_HANDLER))
        .unwrap();
    let mut gate = [0u8; 16];
    gate[0..2].copy_from_slice(&(UD_HANDLER as u16).to_le_bytes());
    gate[2..4].copy_from_slice(&0x08u16.to_le_bytes());
    gate[5] = 0x8e; // present, DPL 0, 64-bit interrupt gate
    gate[6..8].copy_from_slice(&((UD_HANDLER >> 16) as u16).to_le_bytes());
    mem.write_slice(&gate, GuestAddress(IDT + 6 * 16)).unwrap();
    for (i, d) in [0u64, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff]
        .iter()
        .enumerate()
    {
        mem.write_obj(*d, GuestAddress(GDT + 8 * i as u64)).unwrap();
    }
}

fn new_vcpu(vm: &Vm) -> VcpuFd {
    let vcpu = vm.fd.create_vcpu(0).unwrap();
    let mut cpuid = vm.kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    if is_pvm_host() {
        apply_cpu_template(&mut cpuid);
    }
    vcpu.set_cpuid2(&cpuid).unwrap();
    vcpu
}

/// Long mode, and state a guest kernel would have set that the plain counter does not
/// touch: an MSR, MXCSR and an XMM register, debug address registers, the LAPIC's TPR, its
/// timer in TSC-deadline mode with a deadline far ahead, and a pending NMI (held back by NMI
/// masking, as inside an NMI handler).
fn set_up_cpu(vcpu: &VcpuFd) {
    let mut sregs = vcpu.get_sregs().unwrap();
    long_mode_sregs(&mut sregs, GDT, IDT, 0x1000);
    sregs.cr4 = (1 << 5) | (1 << 9) | (1 << 10); // PAE OSFXSR OSXMMEXCPT
    vcpu.set_sregs(&sregs).unwrap();
    vcpu.set_regs(&kvm_bindings::kvm_regs {
        rip: CODE,
        rflags: 2,
        rsp: 0x9000,
        r15: 0x0f0f_1515_0f0f_1515,
        ..Default::default()
    })
    .unwrap();
    let msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
        index: MSR_KERNEL_GS_BASE,
        data: 0x1234_5678,
        ..Default::default()
    }])
    .unwrap();
    assert_eq!(vcpu.set_msrs(&msrs).unwrap(), 1);
    let mut xsave = vcpu.get_xsave().unwrap();
    // MXCSR (byte 24), XMM0 (byte 160), and XSTATE_BV (byte 512) saying SSE state is there.
    xsave.region[6] = 0x3f80;
    xsave.region[40..44].copy_from_slice(&XMM0);
    xsave.region[128] |= 0b10;
    // SAFETY: a whole 4096-byte kvm_xsave; this process never enables dynamic guest
    // xstate, so KVM reads no more than that.
    unsafe { vcpu.set_xsave(&xsave) }.unwrap();
    let mut debug = vcpu.get_debug_regs().unwrap();
    debug.db = [0x1000, 0x2000, 0x3000, 0x4000];
    vcpu.set_debug_regs(&debug).unwrap();
    let mut lapic = vcpu.get_lapic().unwrap();
    lapic.regs[0x80] = 0x20; // TPR
                             // LVT timer: vector 0xec, masked (bit 16), TSC-deadline mode (bits 18:17 = 2).
    lapic.regs[0x320..0x324].copy_from_slice(&[0xecu8 as i8, 0, 0b101, 0]);
    vcpu.set_lapic(&lapic).unwrap();
    let mut msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
        index: MSR_IA32_TSC,
        ..Default::default()
    }])
    .unwrap();
    vcpu.get_msrs(&mut msrs).unwrap();
    let deadline = msrs.as_slice()[0].data + (1 << 40);
    let msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
        index: MSR_IA32_TSC_DEADLINE,
        data: deadline,
        ..Default::default()
    }])
    .unwrap();
    assert_eq!(vcpu.set_msrs(&msrs).unwrap(), 1);
    let mut events = vcpu.get_vcpu_events().unwrap();
    events.nmi.pending = 1;
    events.nmi.masked = 1;
    events.flags |= kvm_bindings::KVM_VCPUEVENT_VALID_NMI_PENDING;
    vcpu.set_vcpu_events(&events).unwrap();
}

fn program_ioapic(vm: &Vm) {
    let mut chip = kvm_bindings::kvm_irqchip {
        chip_id: kvm_bindings::KVM_IRQCHIP_IOAPIC,
        ..Default::default()
    };
    vm.fd.get_irqchip(&mut chip).unwrap();
    // SAFETY: KVM filled the union's `ioapic` member for the IOAPIC chip id.
    unsafe { chip.chip.ioapic.redirtbl[IOAPIC_PIN].bits = IOAPIC_ENTRY };
    vm.fd.set_irqchip(&chip).unwrap();
}

/// Runs the guest until `stop` says so on one of its port writes, and returns that value.
fn run_until(
    vcpu: &mut VcpuFd,
    mem: &GuestMemoryMmap,
    mut stop: impl FnMut(u16, u32) -> bool,
) -> u32 {
    let mut pvm = PvmVcpu::new(0, Arc::new(PvmStats::new()));
    for _ in 0..10_000 {
        enum Exit {
            Out(u16, u32),
            Internal,
            Other(String),
        }
        let exit = match vcpu.run() {
            Ok(VcpuExit::IoOut(port, d)) => {
                Exit::Out(port, u32::from_le_bytes([d[0], d[1], d[2], d[3]]))
            }
            Ok(VcpuExit::InternalError) => Exit::Internal,
            Ok(other) => Exit::Other(format!("{other:?}")),
            Err(e) if pvm.should_retry_run(&e) => continue,
            Err(e) => Exit::Other(format!("KVM_RUN: {e}")),
        };
        match exit {
            Exit::Out(port, v) if stop(port, v) => return v,
            Exit::Out(..) => {}
            Exit::Internal => pvm.handle_internal_error(vcpu, mem).unwrap(),
            Exit::Other(what) => panic!(
                "unexpected exit {what} at {:#x}",
                vcpu.get_regs().unwrap().rip
            ),
        }
    }
    panic!("the guest never got where the test waits for it");
}

/// Runs the counting guest until it has reported `reports` times; returns the last count and
/// MSR value it reported.
fn run_counts(vcpu: &mut VcpuFd, mem: &GuestMemoryMmap, reports: usize) -> (u32, u32) {
    let (mut count, mut seen) = (0, 0);
    let msr = run_until(vcpu, mem, |port, v| match port {
        COUNT_PORT => {
            count = v;
            false
        }
        MSR_PORT => {
            seen += 1;
            seen == reports
        }
        _ => panic!("unexpected out {v:#x} to port {port:#x}"),
    });
    (count, msr)
}

/// What differs between the saved state and the state read back from the restored vCPU,
/// besides what time moves on its own (the TSC, the LAPIC timer's current count).
fn differences(saved: &VcpuState, back: &VcpuState) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |what: &str, same: bool, detail: String| {
        if !same {
            diffs.push(format!("{what}: {detail}"));
        }
    };
    // A field compared whole, shown with Debug when it differs.
    macro_rules! same {
        ($what:literal, $field:ident) => {
            check(
                $what,
                saved.$field == back.$field,
                format!("{:?} -> {:?}", saved.$field, back.$field),
            )
        };
    }
    same!("mp_state", mp_state);
    same!("regs", regs);
    same!("sregs", sregs);
    for (i, (a, b)) in saved
        .xsave
        .region
        .iter()
        .zip(back.xsave.region.iter())
        .enumerate()
    {
        check(
            &format!("xsave byte {}", i * 4),
            a == b,
            format!("{a:#x} -> {b:#x}"),
        );
    }
    same!("xcrs", xcrs);
    same!("debug regs", debug_regs);
    // 0x390: the LAPIC timer's current count, which runs down by itself.
    for (i, (a, b)) in saved
        .lapic
        .regs
        .iter()
        .zip(back.lapic.regs.iter())
        .enumerate()
    {
        if !(0x390..0x394).contains(&i) {
            check(
                &format!("lapic byte {i:#x}"),
                a == b,
                format!("{a:#x} -> {b:#x}"),
            );
        }
    }
    let back_msrs: std::collections::BTreeMap<_, _> =
        back.msrs.iter().map(|m| (m.index, m.data)).collect();
    for m in saved.msrs.iter().filter(|m| m.index != MSR_IA32_TSC) {
        let now = back_msrs.get(&m.index);
        check(
            &format!("MSR {:#x}", m.index),
            now == Some(&m.data),
            format!("{:#x} -> {now:x?}", m.data),
        );
    }
    same!("vcpu events", vcpu_events);
    check("cpuid", saved.cpuid == back.cpuid, "entries differ".into());
    diffs
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ProbeSnapshot {
    vm: VmState,
    vcpu: VcpuState,
    memory: Vec<MemoryRegionState>,
}

#[test]
fn a_guest_goes_on_counting_in_a_new_vm_from_its_snapshot() {
    if !std::path::Path::new("/dev/kvm").exists() {
        eprintln!("no /dev/kvm on this machine: nothing to run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (state_path, mem_path) = (dir.path().join("state"), dir.path().join("mem"));

    let (saved, saved_clock, saved_at) = {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), PROBE_MEM)]).unwrap();
        load_guest(&mem);
        let vm = Vm::new(&mem, false).unwrap();
        program_ioapic(&vm);
        let mut vcpu = new_vcpu(&vm);
        set_up_cpu(&vcpu);
        let (count, msr) = run_counts(&mut vcpu, &mem, 3);
        assert_eq!((count, msr), (3, 0x1234_5678));
        // The last OUT is finished inside KVM only on the next entry: settle before saving.
        settle(&mut vcpu).unwrap();
        let indices = saved_msr_indices(&vm.kvm).unwrap();
        let state = ProbeSnapshot {
            vm: VmState::save(&vm).unwrap(),
            vcpu: VcpuState::save(&vcpu, &indices).unwrap(),
            memory: memory::save(&mem, &mem_path).unwrap(),
        };
        super::file::write(&state_path, &state).unwrap();
        (state.vcpu, state.vm.clock.clock, std::time::Instant::now())
        // The VM, its vCPU and memory are dropped here.
    };

    // What the probe set up was there to be saved (a state that compares equal because it
    // is empty on both sides proves nothing).
    let msr = |s: &VcpuState, index| s.msrs.iter().find(|m| m.index == index).map(|m| m.data);
    assert!(
        msr(&saved, MSR_IA32_TSC_DEADLINE).is_some_and(|d| d != 0),
        "TSC deadline armed"
    );
    assert_eq!(msr(&saved, MSR_KERNEL_GS_BASE), Some(0x1234_5678));
    assert_eq!(
        (saved.vcpu_events.nmi.pending, saved.vcpu_events.nmi.masked),
        (1, 1)
    );
    assert_eq!(saved.lapic.regs[0x80], 0x20, "TPR");
    assert_eq!(saved.debug_regs.db, [0x1000, 0x2000, 0x3000, 0x4000]);

    // What a restore costs, step by step (no assertion: a figure for the goal of a
    // 256 MiB guest restored in under 100 ms; this is a debug build).
    let t0 = std::time::Instant::now();
    let loaded: ProbeSnapshot = super::file::read(&state_path).unwrap();
    let t_file = t0.elapsed();
    let mem = memory::restore(&mem_path, &loaded.memory).unwrap();
    let t_mem = t0.elapsed();
    let vm = Vm::new(&mem, false).unwrap();
    loaded.vm.restore(&vm).unwrap();
    let t_vm = t0.elapsed();
    let mut vcpu = vm.fd.create_vcpu(0).unwrap();
    loaded.vcpu.restore(&vcpu).unwrap();
    let t_vcpu = t0.elapsed();
    eprintln!(
        "restore of a {} MiB guest: state file read at {t_file:?}, memory mapped at {t_mem:?}, \
         VM at {t_vm:?}, vCPU at {t_vcpu:?}",
        PROBE_MEM >> 20
    );
    assert_eq!(mem.read_obj::<u64>(GuestAddress(COUNTER)).unwrap(), 3);

    let vm_back = VmState::save(&vm).unwrap();
    // SAFETY: KVM filled the union's `ioapic` member for the IOAPIC chip id.
    let pin = unsafe { vm_back.ioapic.chip.ioapic.redirtbl[IOAPIC_PIN].bits };
    assert_eq!(pin, IOAPIC_ENTRY, "IOAPIC redirection entry");
    // Time may only go on by what passed since the save (a loaded machine stretches that to
    // seconds): never back, never by the host's uptime. A second of slack for the clock's own
    // rounding; the TSC's bound assumes at most 10 GHz.
    let since_save = saved_at.elapsed() + std::time::Duration::from_secs(1);
    let clock_step = vm_back.clock.clock.wrapping_sub(saved_clock) as i64;
    let max_clock_step = i64::try_from(since_save.as_nanos()).unwrap();
    assert!(
        (0..max_clock_step).contains(&clock_step),
        "kvm-clock resumes where it was saved: {saved_clock} -> {}",
        vm_back.clock.clock
    );

    let back = VcpuState::save(&vcpu, &saved_msr_indices(&vm.kvm).unwrap()).unwrap();
    let diffs = differences(&saved, &back);
    let (tsc_saved, tsc_back) = (
        msr(&saved, MSR_IA32_TSC).unwrap(),
        msr(&back, MSR_IA32_TSC).unwrap(),
    );
    assert!(
        tsc_back >= tsc_saved && u128::from(tsc_back - tsc_saved) < since_save.as_nanos() * 10,
        "the guest TSC resumes where it was saved: {tsc_saved} -> {tsc_back}"
    );
    eprintln!(
        "{} MSRs saved; state that did not come back: {diffs:#?}",
        saved.msrs.len()
    );

    let (count, msr) = run_counts(&mut vcpu, &mem, 3);
    assert_eq!(count, 6, "the register counter goes on from 3");
    assert_eq!(msr, 0x1234_5678, "the guest reads its MSR back");
    assert_eq!(
        mem.read_obj::<u64>(GuestAddress(COUNTER)).unwrap(),
        6,
        "the memory counter goes on from 3"
    );
    let regs = vcpu.get_regs().unwrap();
    assert_eq!(regs.r15, 0x0f0f_1515_0f0f_1515);
    let xsave = vcpu.get_xsave().unwrap();
    assert_eq!(xsave.region[6], 0x3f80, "MXCSR");
    assert_eq!(xsave.region[40..44], XMM0, "XMM0");
    assert!(diffs.is_empty(), "state lost in the restore: {diffs:#?}");
    assert_eq!(
        memory::restore(&mem_path, &loaded.memory)
            .unwrap()
            .read_obj::<u64>(GuestAddress(COUNTER))
            .unwrap(),
        3,
        "the restored guest's writes stay out of the memory file"
    );
}

/// An exception the monitor injected (as the PVM emulator does, with `exception.injected`)
/// and KVM has not delivered yet when the vCPU is paused must be delivered by the restored
/// vCPU: the guest's handler runs and sees the faulting RIP.
#[test]
fn an_injected_exception_is_delivered_after_the_restore() {
    if !std::path::Path::new("/dev/kvm").exists() {
        eprintln!("no /dev/kvm on this machine: nothing to run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mem_path = dir.path().join("mem");
    let (state, regions, rip) = {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        load_guest(&mem);
        let vm = Vm::new(&mem, false).unwrap();
        let mut vcpu = new_vcpu(&vm);
        set_up_cpu(&vcpu);
        run_counts(&mut vcpu, &mem, 1);
        settle(&mut vcpu).unwrap();
        let mut events = vcpu.get_vcpu_events().unwrap();
        events.exception.injected = 1;
        events.exception.nr = 6; // #UD
        events.exception.has_error_code = 0;
        vcpu.set_vcpu_events(&events).unwrap();
        let state = VcpuState::save(&vcpu, &saved_msr_indices(&vm.kvm).unwrap()).unwrap();
        assert_eq!(
            (
                state.vcpu_events.exception.injected,
                state.vcpu_events.exception.nr
            ),
            (1, 6),
            "KVM reports the injected #UD back: {:?}",
            state.vcpu_events.exception
        );
        let rip = state.regs.rip;
        (state, memory::save(&mem, &mem_path).unwrap(), rip)
    };
    let mem = memory::restore(&mem_path, &regions).unwrap();
    let vm = Vm::new(&mem, false).unwrap();
    let mut vcpu = vm.fd.create_vcpu(0).unwrap();
    state.restore(&vcpu).unwrap();
    let seen = run_until(&mut vcpu, &mem, |port, _| port == UD_PORT);
    assert_eq!(
        u64::from(seen),
        rip,
        "the #UD handler saw the RIP the exception was injected at"
    );
}

fn spawn(vcpu: VcpuFd, mem: &GuestMemoryMmap, control: &Arc<VcpuControl>) -> VcpuHandle {
    spawn_with_pio(vcpu, mem, control, Bus::new())
}

fn spawn_with_pio(
    vcpu: VcpuFd,
    mem: &GuestMemoryMmap,
    control: &Arc<VcpuControl>,
    pio: Bus,
) -> VcpuHandle {
    install_kick_handler().unwrap();
    let ctx = VcpuContext {
        index: 0,
        mem: mem.clone(),
        pio: Arc::new(pio),
        mmio: Arc::new(Bus::new()),
        power: PowerSignal::new(),
        control: control.clone(),
        counters: Arc::new(ExitCounters::default()),
        pvm: is_pvm_host().then(|| PvmVcpu::new(0, Arc::new(PvmStats::new()))),
        on_first_run: None,
        profile: None,
    };
    VcpuHandle::spawn(vcpu, ctx).unwrap()
}

/// The monitor's own path: vCPU threads paused through `VcpuControl` save their state on
/// request (after settling their last exit), and a vCPU thread started from that state goes
/// on from there.
#[test]
fn paused_vcpu_threads_save_their_state_and_a_restored_thread_goes_on() {
    if !std::path::Path::new("/dev/kvm").exists() {
        eprintln!("no /dev/kvm on this machine: nothing to run");
        return;
    }
    let counter = |mem: &GuestMemoryMmap| mem.read_obj::<u64>(GuestAddress(COUNTER)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mem_path = dir.path().join("mem");
    let (saved, regions) = {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        load_guest(&mem);
        let vm = Vm::new(&mem, false).unwrap();
        let vcpu = new_vcpu(&vm);
        set_up_cpu(&vcpu);
        let indices = saved_msr_indices(&vm.kvm).unwrap();
        let control = Arc::new(VcpuControl::default());
        let vcpus = [spawn(vcpu, &mem, &control)];
        assert!(matches!(
            control.save_states(&vcpus, &indices),
            Err(VcpuSaveError::NotPaused)
        ));
        std::thread::sleep(std::time::Duration::from_millis(50));
        control.pause(&vcpus);
        let mut states = control.save_states(&vcpus, &indices).unwrap();
        let state = states.pop().unwrap();
        assert!(state.regs.rbx > 0, "the guest counted before the pause");
        in_step(state.regs.rbx, counter(&mem));
        // A second request in the same pause is answered too, with the same state.
        let again = control.save_states(&vcpus, &indices).unwrap();
        assert_eq!(again[0].regs, state.regs);
        let regions = memory::save(&mem, &mem_path).unwrap();
        control.stop(&vcpus);
        (state, regions)
    };

    let mem = memory::restore(&mem_path, &regions).unwrap();
    let vm = Vm::new(&mem, false).unwrap();
    let vcpu = vm.fd.create_vcpu(0).unwrap();
    saved.restore(&vcpu).unwrap();
    let indices = saved_msr_indices(&vm.kvm).unwrap();
    let control = Arc::new(VcpuControl::default());
    let vcpus = [spawn(vcpu, &mem, &control)];
    std::thread::sleep(std::time::Duration::from_millis(50));
    control.pause(&vcpus);
    let now = control.save_states(&vcpus, &indices).unwrap().remove(0);
    control.stop(&vcpus);
    assert!(
        now.regs.rbx > saved.regs.rbx,
        "the restored guest counted on from {}: {}",
        saved.regs.rbx,
        now.regs.rbx
    );
    in_step(now.regs.rbx, counter(&mem));
}

/// The memory counter follows the register one instruction later, and a kick can stop the
/// guest between the two (between any two instructions, emulated ones too).
fn in_step(register: u64, memory: u64) {
    assert!(
        memory == register || memory + 1 == register,
        "register counter {register} and memory counter {memory} are out of step"
    );
}

/// `sti ; hlt ; jmp back`: an idle guest.
const IDLE: u64 = 0x11000;
const IDLE_CODE: &[u8] = &[0xfb, 0xf4, 0xeb, 0xfc];
/// Timer handler: out TIMER_PORT, al ; mov rdi, LAPIC EOI ; mov dword [rdi], 0 ; iretq
const TIMER_HANDLER: u64 = 0x11800;
const TIMER_HANDLER_CODE: &[u8] = &[
    0xe6, 0x13, //
    0x48, 0xbf, 0xb0, 0x00, 0xe0, 0xfe, 0x00, 0x00, 0x00, 0x00, //
    0xc7, 0x07, 0x00, 0x00, 0x00, 0x00, //
    0x48, 0xcf,
];
const TIMER_PORT: u16 = 0x13;
const TIMER_VECTOR: usize = 0xec;

/// Counts the guest's writes to the port it is mapped at.
struct PortCounter(Arc<std::sync::atomic::AtomicU32>);

impl crate::devices::bus::BusDevice for PortCounter {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn write(&mut self, _offset: u64, _data: &[u8]) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn counting_pio() -> (Bus, Arc<std::sync::atomic::AtomicU32>) {
    let count = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut pio = Bus::new();
    pio.insert(
        Arc::new(std::sync::Mutex::new(PortCounter(count.clone()))),
        u64::from(TIMER_PORT),
        1,
    )
    .unwrap();
    (pio, count)
}

/// An idle guest is what a snapshot usually catches: halted, waiting for its timer. The
/// probe arms the LAPIC's TSC deadline about a second ahead, lets the guest halt, pauses
/// and saves it before the deadline, and checks that the restored vCPU, halted, wakes on
/// that deadline in the new VM and runs its handler.
#[test]
fn a_halted_guest_wakes_on_its_timer_after_the_restore() {
    use std::sync::atomic::Ordering;
    if !std::path::Path::new("/dev/kvm").exists() {
        eprintln!("no /dev/kvm on this machine: nothing to run");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mem_path = dir.path().join("mem");
    let (vm_state, saved, regions) = {
        let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
        load_guest(&mem);
        mem.write_slice(IDLE_CODE, GuestAddress(IDLE)).unwrap();
        mem.write_slice(TIMER_HANDLER_CODE, GuestAddress(TIMER_HANDLER))
            .unwrap();
        // The LAPIC page: PDPT[3] -> PD at 0x6000, whose entry 0x1f7 maps 0xfec00000 (2 MiB,
        // uncached).
        mem.write_obj(0x6003u64, GuestAddress(0x2000 + 3 * 8))
            .unwrap();
        mem.write_obj(0xfec0_0093u64, GuestAddress(0x6000 + 0x1f7 * 8))
            .unwrap();
        let mut gate = [0u8; 16];
        gate[0..2].copy_from_slice(&(TIMER_HANDLER as u16).to_le_bytes());
        gate[2..4].copy_from_slice(&0x08u16.to_le_bytes());
        gate[5] = 0x8e;
        gate[6..8].copy_from_slice(&((TIMER_HANDLER >> 16) as u16).to_le_bytes());
        mem.write_slice(&gate, GuestAddress(IDT + TIMER_VECTOR as u64 * 16))
            .unwrap();

        let vm = Vm::new(&mem, false).unwrap();
        let vcpu = new_vcpu(&vm);
        set_up_cpu(&vcpu);
        // No pending NMI here: the handler's IRET would unblock it, and there is no gate.
        let mut events = vcpu.get_vcpu_events().unwrap();
        events.nmi.pending = 0;
        events.nmi.masked = 0;
        vcpu.set_vcpu_events(&events).unwrap();
        let mut regs = vcpu.get_regs().unwrap();
        regs.rip = IDLE;
        vcpu.set_regs(&regs).unwrap();
        let mut lapic = vcpu.get_lapic().unwrap();
        lapic.regs[0xf0..0xf4].copy_from_slice(&[0xffu8 as i8, 1, 0, 0]); // SVR: enabled
        lapic.regs[0x80] = 0; // TPR
                              // LVT timer: the vector, unmasked, TSC-deadline mode.
        lapic.regs[0x320..0x324].copy_from_slice(&[TIMER_VECTOR as u8 as i8, 0, 0b100, 0]);
        vcpu.set_lapic(&lapic).unwrap();
        let khz = u64::from(vcpu.get_tsc_khz().unwrap());
        let mut msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
            index: MSR_IA32_TSC,
            ..Default::default()
        }])
        .unwrap();
        vcpu.get_msrs(&mut msrs).unwrap();
        let deadline = msrs.as_slice()[0].data + khz * 1000; // one second ahead
        let msrs = kvm_bindings::Msrs::from_entries(&[kvm_bindings::kvm_msr_entry {
            index: MSR_IA32_TSC_DEADLINE,
            data: deadline,
            ..Default::default()
        }])
        .unwrap();
        assert_eq!(vcpu.set_msrs(&msrs).unwrap(), 1);

        let indices = saved_msr_indices(&vm.kvm).unwrap();
        let control = Arc::new(VcpuControl::default());
        let (pio, fired) = counting_pio();
        let vcpus = [spawn_with_pio(vcpu, &mem, &control, pio)];
        std::thread::sleep(std::time::Duration::from_millis(200));
        control.pause(&vcpus);
        let state = control.save_states(&vcpus, &indices).unwrap().remove(0);
        let vm_state = VmState::save(&vm).unwrap();
        let regions = memory::save(&mem, &mem_path).unwrap();
        control.stop(&vcpus);
        assert_eq!(
            fired.load(Ordering::SeqCst),
            0,
            "the timer fired before the snapshot"
        );
        (vm_state, state, regions)
    };
    eprintln!(
        "saved: mp_state {}, RIP {:#x}, RFLAGS {:#x}, deadline {:?}",
        saved.mp_state.mp_state,
        saved.regs.rip,
        saved.regs.rflags,
        saved
            .msrs
            .iter()
            .find(|m| m.index == MSR_IA32_TSC_DEADLINE)
            .map(|m| m.data)
    );
    assert_eq!(
        saved.mp_state.mp_state,
        kvm_bindings::KVM_MP_STATE_HALTED,
        "the idle guest was saved halted"
    );

    let mem = memory::restore(&mem_path, &regions).unwrap();
    let vm = Vm::new(&mem, false).unwrap();
    vm_state.restore(&vm).unwrap();
    let vcpu = vm.fd.create_vcpu(0).unwrap();
    saved.restore(&vcpu).unwrap();
    let control = Arc::new(VcpuControl::default());
    let (pio, fired) = counting_pio();
    let restored = std::time::Instant::now();
    let vcpus = [spawn_with_pio(vcpu, &mem, &control, pio)];
    while fired.load(Ordering::SeqCst) == 0 && restored.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let waited = restored.elapsed();
    control.stop(&vcpus);
    assert_eq!(
        fired.load(Ordering::SeqCst),
        1,
        "the restored guest's timer fired once, within {waited:?}"
    );
    eprintln!("the restored halted guest woke on its timer after {waited:?}");
}
