//! The emulator against the real /dev/kvm: a tiny 64-bit guest runs, at CPL0, instructions
//! that PVM's emulator rejects; the exits go through `PvmVcpu::handle_internal_error` and the
//! guest reports each result on an I/O port. On hardware KVM the same guest runs natively
//! (results are checked, emulation counters are not). On PVM, FXSAVE and XSETBV turn out to be
//! handled by PVM's own emulator; they check that our state changes are the ones it sees.

use std::sync::Arc;

use kvm_bindings::{kvm_userspace_memory_region, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::{Kvm, VcpuExit};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

use super::testutil::long_mode_sregs;
use super::*;

const CODE: u64 = 0x10000;
const CELL: u64 = 0x8000;
const DONE_PORT: u16 = 0x1f;

/// Guest code: each test leaves its result in EAX and writes it to port 0x10 + n.
const PROGRAM: &[u8] = &[
    // movabs rbx, 0xf0f0_f0f0_f0f0_f0f0 ; popcnt rax, rbx ; out 0x10, eax
    0x48, 0xbb, 0xf0, 0xf0, 0xf0, 0xf0, 0xf0, 0xf0, 0xf0, 0xf0, //
    0xf3, 0x48, 0x0f, 0xb8, 0xc3, 0xe7, 0x10, //
    // xor ecx, ecx ; xgetbv ; out 0x11, eax
    0x31, 0xc9, 0x0f, 0x01, 0xd0, 0xe7, 0x11, //
    // mov edi, CELL ; mov eax, 1 ; xor edx, edx ; mov ebx, 0x55 ; xor ecx, ecx
    0xbf, 0x00, 0x80, 0x00, 0x00, 0xb8, 0x01, 0x00, 0x00, 0x00, 0x31, 0xd2, //
    0xbb, 0x55, 0x00, 0x00, 0x00, 0x31, 0xc9, //
    // lock cmpxchg16b [rdi] ; sete al ; movzx eax, al ; out 0x12, eax
    0xf0, 0x48, 0x0f, 0xc7, 0x0f, 0x0f, 0x94, 0xc0, 0x0f, 0xb6, 0xc0, 0xe7, 0x12, //
    // mov eax, 0xffffffff ; mov ebx, 0x12345678 ; crc32 eax, ebx ; out 0x13, eax
    0xb8, 0xff, 0xff, 0xff, 0xff, 0xbb, 0x78, 0x56, 0x34, 0x12, //
    0xf2, 0x0f, 0x38, 0xf1, 0xc3, 0xe7, 0x13, //
    // stmxcsr [rdi+16] ; mov eax, [rdi+16] ; out 0x14, eax
    0x0f, 0xae, 0x5f, 0x10, 0x8b, 0x47, 0x10, 0xe7, 0x14, //
    // fwait ; clac ; stac ; mov eax, 7 ; out 0x15, eax
    0x9b, 0x0f, 0x01, 0xca, 0x0f, 0x01, 0xcb, 0xb8, 0x07, 0x00, 0x00, 0x00, 0xe7, 0x15, //
    // mov dword [rdi+20], 0x3f80 ; ldmxcsr [rdi+20] ; stmxcsr [rdi+24] ; mov eax, [rdi+24] ;
    // out 0x16, eax
    0xc7, 0x47, 0x14, 0x80, 0x3f, 0x00, 0x00, 0x0f, 0xae, 0x57, 0x14, 0x0f, 0xae, 0x5f,
    0x18, //
    0x8b, 0x47, 0x18, 0xe7, 0x16, //
    // fxsave64 [rdi+0x100] ; mov eax, [rdi+0x118] (its MXCSR) ; out 0x17, eax
    0x48, 0x0f, 0xae, 0x87, 0x00, 0x01, 0x00, 0x00, 0x8b, 0x87, 0x18, 0x01, 0x00, 0x00, 0xe7,
    0x17, //
    // xor ecx, ecx ; mov eax, 7 ; xor edx, edx ; xsetbv ; xgetbv ; out 0x1b, eax
    0x31, 0xc9, 0xb8, 0x07, 0x00, 0x00, 0x00, 0x31, 0xd2, 0x0f, 0x01, 0xd1, 0x0f, 0x01,
    0xd0, //
    0xe7, 0x1b, //
    // xsave64 [rdi+0x200] ; mov eax, [rdi+0x218] (MXCSR) ; out 0x18 ; mov eax, [rdi+0x400]
    // (XSTATE_BV) ; out 0x19
    0x48, 0x0f, 0xae, 0xa7, 0x00, 0x02, 0x00, 0x00, 0x8b, 0x87, 0x18, 0x02, 0x00, 0x00, 0xe7, 0x18,
    0x8b, 0x87, 0x00, 0x04, 0x00, 0x00, 0xe7, 0x19, //
    // mov dword [rdi+0x218], 0x1f80 ; mov eax, 7 ; xrstor64 [rdi+0x200] ; stmxcsr [rdi+24] ;
    // mov eax, [rdi+24] ; out 0x1a
    0xc7, 0x87, 0x18, 0x02, 0x00, 0x00, 0x80, 0x1f, 0x00, 0x00, 0xb8, 0x07, 0x00, 0x00, 0x00, 0x48,
    0x0f, 0xae, 0xaf, 0x00, 0x02, 0x00, 0x00, 0x0f, 0xae, 0x5f, 0x18, 0x8b, 0x47, 0x18, 0xe7,
    0x1a, //
    // mov esi, 0x400000 (not mapped) ; popcnt rax, [rsi] -> #PF, handled at PF_HANDLER
    0xbe, 0x00, 0x00, 0x40, 0x00, 0xf3, 0x48, 0x0f, 0xb8, 0x06, //
    // (not reached) out 0x1f, eax
    0xe7, 0x1f,
];

/// #PF handler: mov rax, cr2 ; out 0x1e, eax ; mov rax, [rsp] (error code) ; out 0x1d, eax ;
/// out 0x1f, eax
const PF_HANDLER: u64 = CODE + 0x800;
const PF_HANDLER_CODE: &[u8] = &[
    0x0f, 0x20, 0xd0, 0xe7, 0x1e, 0x48, 0x8b, 0x04, 0x24, 0xe7, 0x1d, 0xe7, 0x1f,
];
const IDT: u64 = 0x4000;
const GDT: u64 = 0x5000;

fn long_mode_guest(mem: &GuestMemoryMmap) {
    // Identity map of the first 2 MiB with one large page: PML4 0x1000, PDPT 0x2000, PD 0x3000.
    mem.write_obj(0x2003u64, GuestAddress(0x1000)).unwrap();
    mem.write_obj(0x3003u64, GuestAddress(0x2000)).unwrap();
    mem.write_obj(0x83u64, GuestAddress(0x3000)).unwrap();
    mem.write_slice(PROGRAM, GuestAddress(CODE)).unwrap();
    mem.write_slice(PF_HANDLER_CODE, GuestAddress(PF_HANDLER))
        .unwrap();
    // GDT: null, 64-bit code (0x08), data (0x10); IDT gate 14: interrupt gate to PF_HANDLER.
    for (i, d) in [0u64, 0x00af_9b00_0000_ffff, 0x00cf_9300_0000_ffff]
        .iter()
        .enumerate()
    {
        mem.write_obj(*d, GuestAddress(GDT + 8 * i as u64)).unwrap();
    }
    let mut gate = [0u8; 16];
    gate[0..2].copy_from_slice(&(PF_HANDLER as u16).to_le_bytes());
    gate[2..4].copy_from_slice(&0x08u16.to_le_bytes());
    gate[5] = 0x8e;
    gate[6..8].copy_from_slice(&((PF_HANDLER >> 16) as u16).to_le_bytes());
    mem.write_slice(&gate, GuestAddress(IDT + 14 * 16)).unwrap();
    // The 16-byte cell holds (1, 0) so the first cmpxchg16b succeeds.
    mem.write_obj(1u128, GuestAddress(CELL)).unwrap();
}

#[test]
fn emulated_instructions_run_in_a_real_guest() {
    if !std::path::Path::new("/dev/kvm").exists() {
        eprintln!("no /dev/kvm on this machine: nothing to run");
        return;
    }
    let kvm = Kvm::new().unwrap();
    let vm = kvm.create_vm().unwrap();
    let mem = GuestMemoryMmap::from_ranges(&[(GuestAddress(0), 2 << 20)]).unwrap();
    long_mode_guest(&mem);
    let region = mem.iter().next().unwrap();
    let host = region
        .get_host_address(vm_memory::MemoryRegionAddress(0))
        .unwrap();
    let r = kvm_userspace_memory_region {
        slot: 0,
        flags: 0,
        guest_phys_addr: 0,
        memory_size: region.len(),
        userspace_addr: host as u64,
    };
    // SAFETY: `mem` maps `region.len()` bytes at `host` and outlives the VM (dropped after it).
    unsafe { vm.set_user_memory_region(r).unwrap() };
    let mut vcpu = vm.create_vcpu(0).unwrap();
    let mut cpuid = kvm.get_supported_cpuid(KVM_MAX_CPUID_ENTRIES).unwrap();
    apply_cpu_template(&mut cpuid);
    vcpu.set_cpuid2(&cpuid).unwrap();

    let mut sregs = vcpu.get_sregs().unwrap();
    long_mode_sregs(&mut sregs, GDT, IDT, 0x1000);
    sregs.cr4 = (1 << 5) | (1 << 9) | (1 << 10) | (1 << 18); // PAE OSFXSR OSXMMEXCPT OSXSAVE
    vcpu.set_sregs(&sregs).unwrap();
    let regs = kvm_bindings::kvm_regs {
        rip: CODE,
        rflags: 2,
        rsp: 0x9000,
        ..Default::default()
    };
    vcpu.set_regs(&regs).unwrap();

    let stats = Arc::new(PvmStats::new());
    let mut pvm = PvmVcpu::new(0, stats.clone());
    let mut results = std::collections::BTreeMap::new();
    for _ in 0..200 {
        enum Exit {
            Out(u16, u32),
            Internal,
            Other(String),
        }
        let exit = match vcpu.run() {
            Ok(VcpuExit::IoOut(port, d)) => {
                let mut w = [0u8; 4];
                w[..d.len().min(4)].copy_from_slice(&d[..d.len().min(4)]);
                Exit::Out(port, u32::from_le_bytes(w))
            }
            Ok(VcpuExit::InternalError) => Exit::Internal,
            Ok(other) => Exit::Other(format!("{other:?}")),
            Err(e) if pvm.should_retry_run(&e) => continue,
            Err(e) => Exit::Other(format!("KVM_RUN: {e}")),
        };
        match exit {
            Exit::Out(DONE_PORT, _) => break,
            Exit::Out(port, value) => {
                results.insert(port, value);
            }
            Exit::Internal => pvm.handle_internal_error(&mut vcpu, &mem).unwrap(),
            Exit::Other(what) => panic!(
                "unexpected exit {what} at {:#x}",
                vcpu.get_regs().unwrap().rip
            ),
        }
    }
    let host_mxcsr = 0x1f80;
    let want_crc = crate::pvm::alu::crc32c_update(0xffff_ffff, &0x1234_5678u32.to_le_bytes());
    assert_eq!(results.get(&0x10), Some(&32), "popcnt");
    assert_eq!(
        results.get(&0x11),
        Some(&1),
        "xgetbv: XCR0 of a new vCPU is x87 only"
    );
    assert_eq!(results.get(&0x12), Some(&1), "cmpxchg16b succeeded");
    assert_eq!(
        mem.read_obj::<u128>(GuestAddress(CELL)).unwrap(),
        0x55,
        "cmpxchg16b stored RCX:RBX"
    );
    assert_eq!(results.get(&0x13), Some(&want_crc), "crc32");
    assert_eq!(
        results.get(&0x14),
        Some(&host_mxcsr),
        "stmxcsr of a fresh vCPU"
    );
    assert_eq!(results.get(&0x15), Some(&7), "fwait, clac, stac");
    assert_eq!(results.get(&0x16), Some(&0x3f80), "ldmxcsr then stmxcsr");
    assert_eq!(
        results.get(&0x17),
        Some(&0x3f80),
        "fxsave64 stores the loaded MXCSR"
    );
    assert_eq!(results.get(&0x1b), Some(&7), "xsetbv then xgetbv");
    assert_eq!(results.get(&0x18), Some(&0x3f80), "xsave64 stores MXCSR");
    let bv = results.get(&0x19).copied().unwrap_or(0);
    assert!(bv & 0b10 != 0 && bv & !0b111 == 0, "XSTATE_BV {bv:#x}");
    assert_eq!(results.get(&0x1a), Some(&0x1f80), "xrstor64 loads MXCSR");
    assert_eq!(
        vcpu.get_xcrs().unwrap().xcrs[0].value,
        7,
        "XCR0 set through KVM_SET_XCRS"
    );
    // The emulator's #PF reached the guest's handler with CR2 and a not-present read code.
    assert_eq!(
        results.get(&0x1e),
        Some(&0x40_0000),
        "CR2 of the injected #PF"
    );
    assert_eq!(results.get(&0x1d), Some(&0), "#PF error code");
    if is_pvm_host() {
        let snap = stats.snapshot();
        for (m, n) in [
            ("popcnt", 2),
            ("xgetbv", 2),
            ("cmpxchg16b", 1),
            ("crc32", 1),
            ("stmxcsr", 3),
            ("xsave64", 1),
            ("xrstor64", 1),
            ("ldmxcsr", 1),
            ("wait", 1),
            ("clac", 1),
            ("stac", 1),
        ] {
            assert_eq!(
                snap.get(&format!("emulated.{m}")),
                Some(&n),
                "{m}: {snap:?}"
            );
        }
        assert_eq!(snap.get("injected.pf"), Some(&1), "{snap:?}");
    }
}
