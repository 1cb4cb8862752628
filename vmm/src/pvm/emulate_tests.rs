//! Emulator tests: each emulated instruction is checked against the host CPU executing the
//! same instruction (inline asm), in register and memory-operand forms, flags included.

use std::arch::asm;

use super::*;
use crate::pvm::alu::{crc32c_update, MSR_IA32_TSC};
use crate::pvm::mmu::{self, PagedMemory};
use crate::pvm::testutil::{FakeCpu, FlatMem};

const MEM_BASE: u64 = 0x7000_0000;

fn cfg() -> EmulatorConfig {
    EmulatorConfig {
        lzcnt: true,
        tzcnt: true,
        ..EmulatorConfig::for_host()
    }
}

/// Runs `bytes` on a fake vCPU whose registers are set up by `setup`.
fn run(
    bytes: &[u8],
    mem: &mut FlatMem,
    setup: impl FnOnce(&mut FakeCpu),
) -> (FakeCpu, Result<Emulated, EmulateError>) {
    run_with(&cfg(), bytes, mem, setup)
}

fn run_with(
    cfg: &EmulatorConfig,
    bytes: &[u8],
    mem: &mut FlatMem,
    setup: impl FnOnce(&mut FakeCpu),
) -> (FakeCpu, Result<Emulated, EmulateError>) {
    let mut cpu = FakeCpu::long_mode();
    setup(&mut cpu);
    let r = emulate(&mut cpu, mem, cfg, bytes);
    (cpu, r)
}

/// `[66] [F3] [48] 0F op modrm` for a 16/32/64-bit operation.
fn enc(size: usize, rep: bool, op: u8, modrm: u8) -> Vec<u8> {
    let mut v = Vec::new();
    if size == 2 {
        v.push(0x66);
    }
    if rep {
        v.push(0xf3);
    }
    if size == 8 {
        v.push(0x48);
    }
    v.extend_from_slice(&[0x0f, op, modrm]);
    v
}

/// Defines a host function running `$m dst, src` at 16/32/64 bits, register or memory source,
/// returning (dst, rflags).
macro_rules! host_bitop {
    ($name:ident, $m:literal) => {
        fn $name(size: usize, dst: u64, src: u64, fl: u64, mem: bool) -> (u64, u64) {
            let mut d = dst;
            let f: u64;
            let cell = src;
            let p = &cell as *const u64;
            // SAFETY: the instruction reads `src` from a register or from `cell`, a live local,
            // and writes only `d` and the flags; status flags are all popf may set here.
            unsafe {
                match (size, mem) {
                    (8, false) => asm!("push {fi}", "popfq", concat!($m, " {d}, {s}"), "pushfq", "pop {fo}",
                        fi = in(reg) fl, fo = lateout(reg) f, d = inout(reg) d, s = in(reg) src),
                    (8, true) => asm!("push {fi}", "popfq", concat!($m, " {d}, qword ptr [{s}]"), "pushfq", "pop {fo}",
                        fi = in(reg) fl, fo = lateout(reg) f, d = inout(reg) d, s = in(reg) p),
                    (4, false) => asm!("push {fi}", "popfq", concat!($m, " {d:e}, {s:e}"), "pushfq", "pop {fo}",
                        fi = in(reg) fl, fo = lateout(reg) f, d = inout(reg) d, s = in(reg) src),
                    (4, true) => asm!("push {fi}", "popfq", concat!($m, " {d:e}, dword ptr [{s}]"), "pushfq", "pop {fo}",
                        fi = in(reg) fl, fo = lateout(reg) f, d = inout(reg) d, s = in(reg) p),
                    (2, false) => asm!("push {fi}", "popfq", concat!($m, " {d:x}, {s:x}"), "pushfq", "pop {fo}",
                        fi = in(reg) fl, fo = lateout(reg) f, d = inout(reg) d, s = in(reg) src),
                    _ => asm!("push {fi}", "popfq", concat!($m, " {d:x}, word ptr [{s}]"), "pushfq", "pop {fo}",
                        fi = in(reg) fl, fo = lateout(reg) f, d = inout(reg) d, s = in(reg) p),
                }
            }
            (d, f)
        }
    };
}

host_bitop!(host_popcnt, "popcnt");
host_bitop!(host_lzcnt, "lzcnt");
host_bitop!(host_tzcnt, "tzcnt");
host_bitop!(host_bsf, "bsf");
host_bitop!(host_bsr, "bsr");

const VALUES: [u64; 12] = [
    0,
    1,
    2,
    0x80,
    0x8000,
    0x1_0000,
    0x8000_0000,
    0xffff_0000,
    0x00f0_0000_0000_0000,
    0x8000_0000_0000_0000,
    0x1234_5678_9abc_def0,
    u64::MAX,
];

type HostFn = fn(usize, u64, u64, u64, bool) -> (u64, u64);

/// The host's instruction where its CPU has it, else the SDM's definition: a host without
/// POPCNT, LZCNT or TZCNT would run the encoding as something else (or fault), and comparing
/// against that would test the host, not the emulator. Says which it uses.
fn host_or_reference(feature: &str, on_host: bool, host: HostFn, reference: HostFn) -> HostFn {
    if on_host {
        host
    } else {
        eprintln!("the host CPU lacks {feature}: comparing with the SDM's definition instead");
        reference
    }
}

/// `dst` with its low `size` bytes replaced by `v`, as a 16/32/64-bit register write does
/// (32-bit writes zero the upper half).
fn write_sized(size: usize, dst: u64, v: u64) -> u64 {
    match size {
        2 => (dst & !0xffff) | (v & 0xffff),
        4 => v & 0xffff_ffff,
        _ => v,
    }
}

fn sized(size: usize, v: u64) -> (u64, u32) {
    let bits = (size * 8) as u32;
    let v = if bits == 64 { v } else { v & ((1 << bits) - 1) };
    (v, bits)
}

/// SDM Vol. 2 POPCNT: ZF = (source == 0), the other status flags cleared.
fn reference_popcnt(size: usize, dst: u64, src: u64, fl: u64, _: bool) -> (u64, u64) {
    let (v, _) = sized(size, src);
    let zf = if v == 0 { flags::ZF } else { 0 };
    (
        write_sized(size, dst, u64::from(v.count_ones())),
        (fl & !flags::STATUS) | zf,
    )
}

/// SDM Vol. 2 LZCNT/TZCNT: CF = (source == 0), ZF = (result == 0).
fn reference_count(size: usize, dst: u64, src: u64, fl: u64, leading: bool) -> (u64, u64) {
    let (v, bits) = sized(size, src);
    let n = match (v, leading) {
        (0, _) => bits,
        (v, true) => v.leading_zeros() - (64 - bits),
        (v, false) => v.trailing_zeros(),
    };
    let cf = if v == 0 { flags::CF } else { 0 };
    let zf = if n == 0 { flags::ZF } else { 0 };
    (
        write_sized(size, dst, u64::from(n)),
        (fl & !(flags::CF | flags::ZF)) | cf | zf,
    )
}

fn reference_lzcnt(size: usize, dst: u64, src: u64, fl: u64, _: bool) -> (u64, u64) {
    reference_count(size, dst, src, fl, true)
}

fn reference_tzcnt(size: usize, dst: u64, src: u64, fl: u64, _: bool) -> (u64, u64) {
    reference_count(size, dst, src, fl, false)
}

#[test]
fn references_agree_with_the_host_where_it_has_the_instructions() {
    let pairs: [(bool, HostFn, HostFn); 3] = [
        (
            std::is_x86_feature_detected!("popcnt"),
            host_popcnt,
            reference_popcnt,
        ),
        (
            std::is_x86_feature_detected!("lzcnt"),
            host_lzcnt,
            reference_lzcnt,
        ),
        (
            std::is_x86_feature_detected!("bmi1"),
            host_tzcnt,
            reference_tzcnt,
        ),
    ];
    for (_, host, reference) in pairs.into_iter().filter(|(on_host, ..)| *on_host) {
        for size in [2usize, 4, 8] {
            for &v in &VALUES {
                let (hd, hf) = host(size, 0xdead_beef_cafe_f00d, v, 0x2, false);
                let (rd, rf) = reference(size, 0xdead_beef_cafe_f00d, v, 0x2, false);
                assert_eq!(hd, rd, "size {size} v {v:#x}");
                assert_eq!(hf & (flags::CF | flags::ZF), rf & (flags::CF | flags::ZF));
            }
        }
    }
}

/// Compares emulator and host for one bit-scan family over all widths, forms and values;
/// only the flags the SDM defines for the instruction are compared.
fn check_bitop(cfg: &EmulatorConfig, op: u8, rep: bool, host: HostFn, defined: u64) {
    for size in [2usize, 4, 8] {
        for mem_form in [false, true] {
            for &v in &VALUES {
                for fl_in in [0x2u64, 0x2 | flags::STATUS] {
                    let dst0 = 0xdead_beef_cafe_f00d;
                    let modrm = if mem_form { 0x03 } else { 0xc3 }; // rax, rbx / rax, [rbx]
                    let bytes = enc(size, rep, op, modrm);
                    let mut mem = FlatMem::new(MEM_BASE, 0x2000);
                    mem.put(MEM_BASE + 0x100, &v.to_le_bytes());
                    let (cpu, r) = run_with(cfg, &bytes, &mut mem, |c| {
                        c.regs.rax = dst0;
                        c.regs.rbx = if mem_form { MEM_BASE + 0x100 } else { v };
                        c.regs.rflags = fl_in;
                    });
                    let e = r.unwrap();
                    assert_eq!(e.injected, None);
                    let (hd, hf) = host(size, dst0, v, fl_in, mem_form);
                    let what = format!(
                        "op {op:#x} rep {rep} size {size} mem {mem_form} v {v:#x} fl {fl_in:#x}"
                    );
                    assert_eq!(cpu.regs.rax, hd, "dest: {what}");
                    assert_eq!(cpu.regs.rflags & defined, hf & defined, "flags: {what}");
                    assert_eq!(cpu.regs.rip, 0x1000 + bytes.len() as u64, "rip: {what}");
                }
            }
        }
    }
}

#[test]
fn popcnt_matches_host() {
    let host = host_or_reference(
        "popcnt",
        std::is_x86_feature_detected!("popcnt"),
        host_popcnt,
        reference_popcnt,
    );
    check_bitop(&cfg(), 0xb8, true, host, flags::STATUS);
}

#[test]
fn lzcnt_and_tzcnt_match_host() {
    let lzcnt = host_or_reference(
        "lzcnt",
        std::is_x86_feature_detected!("lzcnt"),
        host_lzcnt,
        reference_lzcnt,
    );
    let tzcnt = host_or_reference(
        "tzcnt (bmi1)",
        std::is_x86_feature_detected!("bmi1"),
        host_tzcnt,
        reference_tzcnt,
    );
    check_bitop(&cfg(), 0xbd, true, lzcnt, flags::CF | flags::ZF);
    check_bitop(&cfg(), 0xbc, true, tzcnt, flags::CF | flags::ZF);
}

#[test]
fn bsf_and_bsr_match_host_and_stand_in_for_missing_abm() {
    check_bitop(&cfg(), 0xbc, false, host_bsf, flags::ZF);
    check_bitop(&cfg(), 0xbd, false, host_bsr, flags::ZF);
    // Without ABM/BMI1 in the guest's CPUID, F3 0F BD/BC run as BSR/BSF.
    let legacy = EmulatorConfig {
        lzcnt: false,
        tzcnt: false,
        ..cfg()
    };
    check_bitop(&legacy, 0xbd, true, host_bsr, flags::ZF);
    check_bitop(&legacy, 0xbc, true, host_bsf, flags::ZF);
}

/// Host CRC32 of `src` (register form) into accumulator `acc`, by source width / dest width.
fn host_crc32(acc: u64, src: u64, src_size: usize, dst64: bool) -> u64 {
    let mut d = acc;
    // SAFETY: CRC32 reads and writes only the named registers.
    unsafe {
        match (src_size, dst64) {
            (1, false) => asm!("crc32 {d:e}, {s:l}", d = inout(reg) d, s = in(reg) src),
            (1, true) => asm!("crc32 {d}, {s:l}", d = inout(reg) d, s = in(reg) src),
            (2, _) => asm!("crc32 {d:e}, {s:x}", d = inout(reg) d, s = in(reg) src),
            (4, _) => asm!("crc32 {d:e}, {s:e}", d = inout(reg) d, s = in(reg) src),
            _ => asm!("crc32 {d}, {s}", d = inout(reg) d, s = in(reg) src),
        }
    }
    d
}

#[test]
fn crc32_matches_host_for_every_operand_size() {
    // (source size, REX.W destination, bytes for crc32 eax|rax, bl|bx|ebx|rbx, same with [rbx])
    let forms: [(usize, bool, &[u8], &[u8]); 5] = [
        (
            1,
            false,
            &[0xf2, 0x0f, 0x38, 0xf0, 0xc3],
            &[0xf2, 0x0f, 0x38, 0xf0, 0x03],
        ),
        (
            1,
            true,
            &[0xf2, 0x48, 0x0f, 0x38, 0xf0, 0xc3],
            &[0xf2, 0x48, 0x0f, 0x38, 0xf0, 0x03],
        ),
        (
            2,
            false,
            &[0x66, 0xf2, 0x0f, 0x38, 0xf1, 0xc3],
            &[0x66, 0xf2, 0x0f, 0x38, 0xf1, 0x03],
        ),
        (
            4,
            false,
            &[0xf2, 0x0f, 0x38, 0xf1, 0xc3],
            &[0xf2, 0x0f, 0x38, 0xf1, 0x03],
        ),
        (
            8,
            true,
            &[0xf2, 0x48, 0x0f, 0x38, 0xf1, 0xc3],
            &[0xf2, 0x48, 0x0f, 0x38, 0xf1, 0x03],
        ),
    ];
    for (size, dst64, reg_form, mem_form) in forms {
        for &acc in &[0u64, 0xffff_ffff, 0xdead_beef_1234_5678] {
            for &v in &VALUES {
                let want = if std::is_x86_feature_detected!("sse4.2") {
                    host_crc32(acc, v, size, dst64)
                } else {
                    // CRC32 (SSE4.2) is CRC-32C over the source's bytes, result zero-extended.
                    let bytes = v.to_le_bytes();
                    u64::from(crc32c_update(acc as u32, &bytes[..size]))
                };
                for (bytes, in_mem) in [(reg_form, false), (mem_form, true)] {
                    let mut mem = FlatMem::new(MEM_BASE, 0x2000);
                    mem.put(MEM_BASE + 0x10, &v.to_le_bytes());
                    let (cpu, r) = run(bytes, &mut mem, |c| {
                        c.regs.rax = acc;
                        c.regs.rbx = if in_mem { MEM_BASE + 0x10 } else { v };
                        c.regs.rflags = 0x2 | flags::CF;
                    });
                    r.unwrap();
                    assert_eq!(
                        cpu.regs.rax, want,
                        "crc32 size {size} acc {acc:#x} v {v:#x} mem {in_mem}"
                    );
                    assert_eq!(cpu.regs.rflags, 0x2 | flags::CF, "crc32 leaves flags alone");
                }
            }
        }
    }
}

/// Host `lock cmpxchg16b` on a 16-byte cell: returns (rax, rdx, rflags, cell after).
fn host_cmpxchg16b(cell: u128, rax: u64, rdx: u64, rbx: u64, rcx: u64) -> (u64, u64, u64, u128) {
    #[repr(C, align(16))]
    struct Cell(u128);
    let mut c = Cell(cell);
    let (mut a, mut d) = (rax, rdx);
    let f: u64;
    // SAFETY: `c` is a live, 16-byte-aligned local; RBX is swapped with a scratch register
    // around the instruction and restored before the block ends.
    unsafe {
        asm!("xchg {b}, rbx", "lock cmpxchg16b xmmword ptr [{p}]", "pushfq", "pop {f}", "mov rbx, {b}",
            p = in(reg) &mut c.0 as *mut u128, b = inout(reg) rbx => _, f = lateout(reg) f,
            inout("rax") a, inout("rdx") d, in("rcx") rcx);
    }
    (a, d, f, c.0)
}

/// Host `lock cmpxchg8b`: returns (rax, rdx, rflags, cell after).
fn host_cmpxchg8b(cell: u64, rax: u64, rdx: u64, rbx: u64, rcx: u64) -> (u64, u64, u64, u64) {
    let mut c = cell;
    let (mut a, mut d) = (rax, rdx);
    let f: u64;
    // SAFETY: as for host_cmpxchg16b, on an 8-byte aligned local.
    unsafe {
        asm!("xchg {b}, rbx", "lock cmpxchg8b qword ptr [{p}]", "pushfq", "pop {f}", "mov rbx, {b}",
            p = in(reg) &mut c as *mut u64, b = inout(reg) rbx => _, f = lateout(reg) f,
            inout("rax") a, inout("rdx") d, in("rcx") rcx);
    }
    (a, d, f, c)
}

#[test]
fn cmpxchg16b_matches_host_on_real_guest_memory() {
    let (gm, cr3) = mmu::tests::guest_with_tables(false);
    let addr = 0x40_0000_0000u64 + 0x80;
    let cell0: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
    let (rbx, rcx) = (0xaaaa_bbbb_cccc_dddd, 0x1111_2222_3333_4444);
    for (rax, rdx) in [
        (0x7654_3210_u64 | 0xfedc_ba98 << 32, 0x0123_4567_89ab_cdef),
        (1, 2),
    ] {
        let mut pm = PagedMemory::new(&gm, mmu::tests::paging(cr3, false));
        pm.write(addr, &cell0.to_le_bytes()).unwrap();
        let mut cpu = FakeCpu::long_mode();
        cpu.regs = kvm_regs {
            rax,
            rdx,
            rbx,
            rcx,
            rdi: addr,
            rip: 0x1000,
            rflags: 0x2,
            ..Default::default()
        };
        // lock cmpxchg16b [rdi]
        emulate(&mut cpu, &mut pm, &cfg(), &[0xf0, 0x48, 0x0f, 0xc7, 0x0f]).unwrap();
        let (ha, hd, hf, hcell) = host_cmpxchg16b(cell0, rax, rdx, rbx, rcx);
        let mut after = [0u8; 16];
        pm.read(addr, &mut after).unwrap();
        assert_eq!((cpu.regs.rax, cpu.regs.rdx), (ha, hd));
        assert_eq!(cpu.regs.rflags & flags::ZF, hf & flags::ZF);
        assert_eq!(u128::from_le_bytes(after), hcell);
    }
    // Misaligned operand: #GP(0), RIP unchanged.
    let mut pm = PagedMemory::new(&gm, mmu::tests::paging(cr3, false));
    let mut cpu = FakeCpu::long_mode();
    cpu.regs.rdi = addr + 8;
    let e = emulate(&mut cpu, &mut pm, &cfg(), &[0xf0, 0x48, 0x0f, 0xc7, 0x0f]).unwrap();
    assert_eq!(e.injected, Some(Exception::gp0()));
    assert_eq!(cpu.regs.rip, 0x1000);
}

#[test]
fn cmpxchg8b_matches_host_including_upper_halves() {
    let cell0 = 0x8888_7777_6666_5555u64;
    let garbage = 0xffff_ffff_0000_0000u64;
    for (rax, rdx) in [
        (0x6666_5555 | garbage, 0x8888_7777 | garbage),
        (3 | garbage, 4 | garbage),
    ] {
        let (rbx, rcx) = (0x1234_5678 | garbage, 0x9abc_def0 | garbage);
        let mut mem = FlatMem::new(MEM_BASE, 0x1000);
        mem.put(MEM_BASE + 0x20, &cell0.to_le_bytes());
        let (cpu, r) = run(&[0xf0, 0x0f, 0xc7, 0x0f], &mut mem, |c| {
            c.regs.rax = rax;
            c.regs.rdx = rdx;
            c.regs.rbx = rbx;
            c.regs.rcx = rcx;
            c.regs.rdi = MEM_BASE + 0x20;
        });
        r.unwrap();
        let (ha, hd, hf, hcell) = host_cmpxchg8b(cell0, rax, rdx, rbx, rcx);
        assert_eq!((cpu.regs.rax, cpu.regs.rdx), (ha, hd), "rax {rax:#x}");
        assert_eq!(cpu.regs.rflags & flags::ZF, hf & flags::ZF);
        assert_eq!(mem.at(MEM_BASE + 0x20, 8), &hcell.to_le_bytes());
    }
}

#[test]
fn movbe_matches_host() {
    let v = 0x0102_0304_0506_0708u64;
    let (host_load, host_store) = if std::is_x86_feature_detected!("movbe") {
        let load: u64;
        let mut store = 0u64;
        // SAFETY: MOVBE between registers and the live locals `v` / `store`.
        unsafe {
            asm!("movbe {d}, qword ptr [{p}]", d = out(reg) load, p = in(reg) &v as *const u64);
            asm!("movbe qword ptr [{p}], {s}", p = in(reg) &mut store as *mut u64, s = in(reg) v);
        }
        (load, store)
    } else {
        eprintln!("the host CPU lacks movbe: comparing with a byte swap instead");
        (v.swap_bytes(), v.swap_bytes())
    };
    let mut mem = FlatMem::new(MEM_BASE, 0x1000);
    mem.put(MEM_BASE, &v.to_le_bytes());
    // movbe rax, [rbx]
    let (cpu, r) = run(&[0x48, 0x0f, 0x38, 0xf0, 0x03], &mut mem, |c| {
        c.regs.rbx = MEM_BASE
    });
    r.unwrap();
    assert_eq!(cpu.regs.rax, host_load);
    // movbe [rbx+8], rax
    let (_, r) = run(&[0x48, 0x0f, 0x38, 0xf1, 0x43, 0x08], &mut mem, |c| {
        c.regs.rbx = MEM_BASE;
        c.regs.rax = v;
    });
    r.unwrap();
    assert_eq!(mem.at(MEM_BASE + 8, 8), &host_store.to_le_bytes());
}

#[test]
fn rdtscp_and_rdtsc_pack_registers_like_the_host() {
    let garbage = 0xdead_0000_0000_0000u64;
    let (a, d, c): (u64, u64, u64);
    // CPUID Fn8000_0001 EDX[27]: RDTSCP. Without it, any TSC value and TSC_AUX stand in.
    if std::arch::x86_64::__cpuid(0x8000_0001).edx & (1 << 27) != 0 {
        // SAFETY: RDTSCP writes only RAX, RDX and RCX.
        unsafe {
            asm!("rdtscp", inout("rax") garbage => a, inout("rdx") garbage => d, inout("rcx") garbage => c);
        }
    } else {
        eprintln!("the host CPU lacks rdtscp: checking the packing with a made-up TSC");
        (a, d, c) = (0x89ab_cdef, 0x0123_4567, 3);
    }
    let tsc = (d << 32) | a;
    let mut mem = FlatMem::new(MEM_BASE, 0x1000);
    let (cpu, r) = run(&[0x0f, 0x01, 0xf9], &mut mem, |cpu| {
        cpu.regs.rax = garbage;
        cpu.regs.rdx = garbage;
        cpu.regs.rcx = garbage;
        cpu.msrs.insert(MSR_IA32_TSC, tsc);
        cpu.msrs.insert(MSR_TSC_AUX, c);
    });
    r.unwrap();
    assert_eq!((cpu.regs.rax, cpu.regs.rdx, cpu.regs.rcx), (a, d, c));
    let (cpu, r) = run(&[0x0f, 0x31], &mut mem, |cpu| {
        cpu.regs.rcx = garbage;
        cpu.msrs.insert(MSR_IA32_TSC, tsc);
    });
    r.unwrap();
    assert_eq!((cpu.regs.rax, cpu.regs.rdx, cpu.regs.rcx), (a, d, garbage));
    // rdpid rax = f3 0f c7 f8
    let (cpu, r) = run(&[0xf3, 0x0f, 0xc7, 0xf8], &mut mem, |cpu| {
        cpu.msrs.insert(MSR_TSC_AUX, 5);
    });
    r.unwrap();
    assert_eq!(cpu.regs.rax, 5);
}

#[test]
fn int3_advances_and_injects_breakpoint() {
    let mut mem = FlatMem::new(MEM_BASE, 0x1000);
    let (cpu, r) = run(&[0xcc], &mut mem, |_| {});
    let e = r.unwrap();
    assert_eq!(cpu.regs.rip, 0x1001);
    assert_eq!(cpu.injected, vec![Exception::new(Exception::BP)]);
    assert_eq!(e.injected, Some(Exception::new(Exception::BP)));
    assert_eq!(e.counter(), "emulated.int3");
}

#[test]
fn clac_stac_fwait_and_ud2() {
    let mut mem = FlatMem::new(MEM_BASE, 0x1000);
    let (cpu, _) = run(&[0x0f, 0x01, 0xcb], &mut mem, |_| {});
    assert_eq!(cpu.regs.rflags & flags::AC, flags::AC);
    let (cpu, _) = run(&[0x0f, 0x01, 0xca], &mut mem, |c| {
        c.regs.rflags |= flags::AC
    });
    assert_eq!(cpu.regs.rflags & flags::AC, 0);
    assert_eq!(cpu.regs.rip, 0x1003);
    // fwait: a no-op unless an unmasked x87 exception is pending.
    let (cpu, _) = run(&[0x9b], &mut mem, |_| {});
    assert_eq!((cpu.regs.rip, cpu.injected.len()), (0x1001, 0));
    let (cpu, _) = run(&[0x9b], &mut mem, |c| c.set_legacy_u16(2, 0x8081));
    assert_eq!(cpu.injected, vec![Exception::new(Exception::MF)]);
    assert_eq!(cpu.regs.rip, 0x1000);
    // ud2 faults with #UD at the instruction.
    let (cpu, _) = run(&[0x0f, 0x0b], &mut mem, |_| {});
    assert_eq!(cpu.injected, vec![Exception::new(Exception::UD)]);
    assert_eq!(cpu.regs.rip, 0x1000);
}

#[test]
fn memory_operand_page_fault_is_injected_without_side_effects() {
    let mut mem = FlatMem::new(MEM_BASE, 0x3000);
    mem.absent.insert(MEM_BASE + 0x1000);
    // popcnt rax, [rbx] on a not-present page.
    let (cpu, r) = run(&[0xf3, 0x48, 0x0f, 0xb8, 0x03], &mut mem, |c| {
        c.regs.rax = 77;
        c.regs.rbx = MEM_BASE + 0x1008;
    });
    let e = r.unwrap();
    let pf = Exception::page_fault(MEM_BASE + 0x1008, 0);
    assert_eq!(e.injected, Some(pf));
    assert_eq!(cpu.sregs.cr2, MEM_BASE + 0x1008);
    assert_eq!(
        (cpu.regs.rip, cpu.regs.rax, cpu.set_regs_calls),
        (0x1000, 77, 0)
    );
    // clflush on it faults too; a prefetch does not.
    let (cpu, _) = run(&[0x0f, 0xae, 0x3b], &mut mem, |c| {
        c.regs.rbx = MEM_BASE + 0x1000
    });
    assert_eq!(cpu.injected.len(), 1);
    let (cpu, _) = run(&[0x0f, 0x18, 0x0b], &mut mem, |c| {
        c.regs.rbx = MEM_BASE + 0x1000
    });
    assert_eq!((cpu.injected.len(), cpu.regs.rip), (0, 0x1003));
    // clwb [rbx] on a present page completes.
    let (cpu, _) = run(&[0x66, 0x0f, 0xae, 0x33], &mut mem, |c| {
        c.regs.rbx = MEM_BASE
    });
    assert_eq!((cpu.injected.len(), cpu.regs.rip), (0, 0x1004));
}

#[test]
fn rdrand_returns_host_entropy_with_cf() {
    let mut mem = FlatMem::new(MEM_BASE, 0x1000);
    let (a, _) = run(&[0x48, 0x0f, 0xc7, 0xf0], &mut mem, |c| {
        c.regs.rflags = 0x2 | flags::ZF
    });
    let (b, _) = run(&[0x48, 0x0f, 0xc7, 0xf0], &mut mem, |_| {});
    if std::is_x86_feature_detected!("rdrand") {
        assert_eq!(a.regs.rflags & flags::STATUS, flags::CF);
        assert_ne!(a.regs.rax, b.regs.rax);
    } else {
        assert_eq!(a.regs.rflags & flags::CF, 0);
    }
}

#[test]
fn errors_name_rip_bytes_and_mnemonic() {
    let mut mem = FlatMem::new(MEM_BASE, 0x1000);
    // vaddps xmm0, xmm0, xmm1
    let (cpu, r) = run(&[0xc5, 0xf8, 0x58, 0xc1, 0x90, 0x90], &mut mem, |_| {});
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("0x1000") && msg.contains("c5 f8 58 c1") && msg.contains("vaddps"),
        "{msg}"
    );
    assert!(
        !msg.contains("90"),
        "only the instruction's own bytes: {msg}"
    );
    assert_eq!(cpu.set_regs_calls, 0);
    let (_, r) = run(&[0x0f, 0x04], &mut mem, |_| {});
    let msg = r.unwrap_err().to_string();
    assert!(
        msg.contains("cannot decode") && msg.contains("0f 04"),
        "{msg}"
    );
    let (_, r) = run(&[0xcc], &mut mem, |c| c.sregs.efer = 0);
    assert!(matches!(
        r,
        Err(EmulateError::NotLongMode { rip: 0x1000, .. })
    ));
}

#[test]
fn crc32c_reference_vector() {
    // RFC 3720 B.4: CRC32C of 32 zero bytes is 0x8a9136aa (with the standard inversions).
    assert_eq!(!crc32c_update(!0, &[0u8; 32]), 0x8a91_36aa);
}
