//! XSAVE-family tests against the host CPU: the host loads a known state, runs the real
//! instruction, and XSAVEs its state in standard format — the same format KVM_GET_XSAVE
//! returns — which is what the emulator is given and must reproduce.

use std::arch::asm;

use super::super::emulate::{emulate, EmulatorConfig};
use super::super::testutil::{FakeCpu, FlatMem};
use super::super::vendor::CpuVendor;
use super::*;

const BUF: usize = 16384;
const BASE: u64 = 0x5000_0000;

#[repr(C, align(64))]
struct Area([u8; BUF]);

fn area() -> Box<Area> {
    Box::new(Area([0; BUF]))
}

fn host_xcr0() -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: XGETBV(0) only reads XCR0 into EDX:EAX; the host has OSXSAVE (Linux x86-64).
    unsafe {
        asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    u64::from(lo) | (u64::from(hi) << 32)
}

/// Components the tests exercise: x87, SSE, AVX and AVX-512 where present. PKRU is left out
/// (loading a test pattern into it would revoke the test's own memory access), as is AMX.
fn mask() -> u64 {
    host_xcr0() & 0xff
}

/// Defines a host sequence: save the thread's state; XRSTOR64 `prep` (mask `m`); run `$op` on
/// `target` with EDX:EAX = `rfbm`; XSAVE64 the resulting state to `after` (mask `m`); restore.
macro_rules! host_seq {
    ($name:ident, $op:literal) => {
        fn $name(prep: &Area, m: u64, target: &mut Area, rfbm: u64, after: &mut Area) {
            let mut orig = area();
            // SAFETY: every buffer is a live, 64-byte-aligned 16 KiB allocation, larger than the
            // host's XSAVE size for XCR0; the thread's own extended state is saved first and
            // restored last within the same block, so no Rust code sees the test state.
            unsafe {
                asm!(
                    "mov eax, {ml:e}", "mov edx, {mh:e}", "xsave64 [{orig}]",
                    "xrstor64 [{prep}]",
                    "mov eax, {rl:e}", "mov edx, {rh:e}", concat!($op, " [{t}]"),
                    "mov eax, {ml:e}", "mov edx, {mh:e}", "xsave64 [{after}]",
                    "xrstor64 [{orig}]",
                    orig = in(reg) orig.0.as_mut_ptr(), prep = in(reg) prep.0.as_ptr(),
                    t = in(reg) target.0.as_mut_ptr(), after = in(reg) after.0.as_mut_ptr(),
                    ml = in(reg) m & 0xffff_ffff, mh = in(reg) m >> 32,
                    rl = in(reg) rfbm & 0xffff_ffff, rh = in(reg) rfbm >> 32,
                    out("eax") _, out("edx") _,
                );
            }
        }
    };
}

host_seq!(host_xsave64, "xsave64");
host_seq!(host_xsave32, "xsave");
host_seq!(host_xsaveopt64, "xsaveopt64");
host_seq!(host_xsavec64, "xsavec64");
host_seq!(host_fxsave64, "fxsave64");
host_seq!(host_fxsave32, "fxsave");
host_seq!(host_xrstor64, "xrstor64");
host_seq!(host_xrstor32, "xrstor");
host_seq!(host_fxrstor64, "fxrstor64");

/// A recognisable, valid standard-format state with XSTATE_BV = `bv`, no x87 exception pending.
fn make_state(bv: u64, seed: u8) -> Box<Area> {
    make_x87_state(bv, seed, X87::Quiet)
}

/// Whether the x87 state carries a pending (unmasked) exception: vendors differ in what they
/// do with the x87 last-instruction fields then (vendor.rs, `X87Pointers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum X87 {
    Quiet,
    Pending,
}

fn make_x87_state(bv: u64, seed: u8, x87: X87) -> Box<Area> {
    let layout = XsaveLayout::host();
    let mut a = area();
    let b = &mut a.0;
    let pat = |i: usize| (i as u8).wrapping_mul(7).wrapping_add(seed) | 1;
    let (fcw, fsw) = match x87 {
        X87::Quiet => (0x027fu16, 0x3800u16), // all masked; TOP = 7
        X87::Pending => (0x027e, 0x3881),     // IE unmasked and flagged, ES set; TOP = 7
    };
    b[0..2].copy_from_slice(&fcw.to_le_bytes());
    b[2..4].copy_from_slice(&fsw.to_le_bytes());
    b[4] = 0x81; // abridged FTW
    b[6..8].copy_from_slice(&0x0123u16.to_le_bytes()); // FOP
    b[8..16].copy_from_slice(&(0x1122_3344_5566_7788u64 + u64::from(seed)).to_le_bytes());
    b[16..24].copy_from_slice(&(0x0102_0304_0506_0708u64 + u64::from(seed)).to_le_bytes());
    b[24..28].copy_from_slice(&0x9fc0u32.to_le_bytes()); // MXCSR: FTZ, DAZ, all masked
    for st in 0..8 {
        for k in 0..10 {
            b[32 + st * 16 + k] = pat(st * 16 + k);
        }
    }
    for (i, byte) in b.iter_mut().enumerate().take(416).skip(160) {
        *byte = pat(i);
    }
    b[512..520].copy_from_slice(&bv.to_le_bytes());
    for i in 2..64 {
        if bv & (1 << i) != 0 {
            let c = layout.standard(i).unwrap();
            for (k, byte) in b.iter_mut().enumerate().skip(c.offset).take(c.size) {
                *byte = pat(k);
            }
        }
    }
    a
}

fn fake_cpu_with(state_std: &Area) -> FakeCpu {
    let mut cpu = FakeCpu::long_mode();
    cpu.area = state_std.0[..XSAVE_AREA_SIZE].to_vec();
    cpu.xcr0 = host_xcr0();
    cpu.xcr0_supported = cpu.xcr0;
    cpu
}

fn emulate_at(cpu: &mut FakeCpu, mem: &mut FlatMem, bytes: &[u8], rfbm: u64) {
    cpu.regs.rdi = BASE;
    cpu.regs.rax = rfbm & 0xffff_ffff;
    cpu.regs.rdx = rfbm >> 32;
    let e = emulate(cpu, mem, &EmulatorConfig::for_host(), bytes).unwrap();
    assert_eq!(e.injected, None, "{bytes:02x?}");
}

/// Extent of the standard-format image for `m`.
fn extent(m: u64) -> usize {
    let layout = XsaveLayout::host();
    (2..64)
        .filter(|i| m & (1 << i) != 0)
        .map(|i| layout.standard(i).map(|c| c.offset + c.size).unwrap_or(0))
        .max()
        .unwrap_or(0)
        .max(576)
}

type HostSeq = fn(&Area, u64, &mut Area, u64, &mut Area);

/// Runs a save instruction on the host and in the emulator and compares the memory images.
fn check_save(host: HostSeq, bytes: &[u8], state_bv: u64, rfbm: u64) {
    for x87 in [X87::Quiet, X87::Pending] {
        check_save_x87(host, bytes, state_bv, rfbm, x87);
    }
}

fn check_save_x87(host: HostSeq, bytes: &[u8], state_bv: u64, rfbm: u64, x87: X87) {
    let m = mask();
    let prep = make_x87_state(state_bv & m, 3, x87);
    let mut target = area();
    target.0.fill(0xa5);
    let mut after = area();
    host(&prep, m, &mut target, rfbm, &mut after);

    let mut cpu = fake_cpu_with(&after);
    let mut mem = FlatMem::new(BASE, 0x4000);
    mem.bytes.fill(0xa5);
    emulate_at(&mut cpu, &mut mem, bytes, rfbm);
    let n = extent(m);
    let diffs: Vec<String> = (0..n)
        .filter(|&i| mem.bytes[i] != target.0[i])
        .map(|i| format!("{i:#x}: emu {:02x} host {:02x}", mem.bytes[i], target.0[i]))
        .collect();
    assert!(
        diffs.is_empty(),
        "{bytes:02x?} bv {state_bv:#x} rfbm {rfbm:#x} x87 {x87:?} on {:?}: {} diffs: {:?}",
        CpuVendor::host(),
        diffs.len(),
        &diffs[..diffs.len().min(40)]
    );
}

#[test]
fn xsave_forms_match_host() {
    let m = mask();
    for (bv, rfbm) in [
        (m, m),
        (m, m & !0b10),
        (m & !0b100, m),
        (m, 0b11),
        (0b11, m),
        (m & !0b10, m),
        (m & !0b10, m & !0b10),
    ] {
        check_save(host_xsave64, &[0x48, 0x0f, 0xae, 0x27], bv, rfbm);
        check_save(host_xsave32, &[0x0f, 0xae, 0x27], bv, rfbm);
        check_save(host_xsaveopt64, &[0x48, 0x0f, 0xae, 0x37], bv, rfbm);
        check_save(host_xsavec64, &[0x48, 0x0f, 0xc7, 0x27], bv, rfbm);
    }
}

#[test]
fn fxsave_matches_host() {
    let m = mask();
    check_save(host_fxsave64, &[0x48, 0x0f, 0xae, 0x07], m, m);
    check_save(host_fxsave32, &[0x0f, 0xae, 0x07], m, m);
}

/// Loads `image` on the host (from a known state) and in the emulator; compares the state.
fn check_restore(host: HostSeq, bytes: &[u8], image: &Area, rfbm: u64) {
    let m = mask();
    let base_state = make_state(m, 11);
    let mut scratch = area();
    let mut before = area();
    host_xsave64(&base_state, m, &mut scratch, m, &mut before);
    let mut img = area();
    img.0.copy_from_slice(&image.0);
    let mut after = area();
    host(&base_state, m, &mut img, rfbm, &mut after);

    let mut cpu = fake_cpu_with(&before);
    let mut mem = FlatMem::new(BASE, 0x4000);
    mem.bytes.copy_from_slice(&image.0[..0x4000]);
    emulate_at(&mut cpu, &mut mem, bytes, rfbm);
    let layout = XsaveLayout::host();
    // Compare the state: legacy fields and every component in the mask; XSTATE_BV under m.
    let mut ranges = vec![(0usize, 416usize)];
    for i in 2..64 {
        if m & (1 << i) != 0 {
            let c = layout.standard(i).unwrap();
            ranges.push((c.offset, c.offset + c.size));
        }
    }
    let mut diffs = Vec::new();
    for (lo, hi) in ranges {
        for i in lo..hi {
            if (28..32).contains(&i) {
                continue; // MXCSR_MASK is a CPU property, not state.
            }
            if i == 15 && CpuVendor::host() == CpuVendor::Intel {
                // FIP bits 63:56: the Intel CPU this was written on does not keep them (XSAVE
                // reports 0xff after loading anything else). The emulator's image is loaded
                // by the real CPU through KVM_SET_XSAVE, which normalises them the same way.
                // AMD holds FIP as a 48-bit canonical address, which the emulator follows.
                continue;
            }
            if cpu.area[i] != after.0[i] {
                diffs.push(format!(
                    "{i:#x}: emu {:02x} host {:02x}",
                    cpu.area[i], after.0[i]
                ));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{bytes:02x?} rfbm {rfbm:#x} on {:?}: {} diffs: {:?}",
        CpuVendor::host(),
        diffs.len(),
        &diffs[..diffs.len().min(40)]
    );
    let emu_bv = u64_at(&cpu.area, HEADER) & m;
    let host_bv = u64_at(&after.0, HEADER) & m;
    // The emulator may mark a component in use that the host reports as initial (MXCSR rule).
    assert_eq!(
        emu_bv & !0b10,
        host_bv & !0b10,
        "XSTATE_BV for {bytes:02x?}"
    );
}

#[test]
fn xrstor_standard_form_matches_host() {
    let m = mask();
    for (bv, rfbm) in [
        (m, m),
        (m & !0b110, m),
        (0b1, m),
        (m, 0b101),
        (m & !0b1, m & !0b10),
    ] {
        for x87 in [X87::Quiet, X87::Pending] {
            let image = make_x87_state(bv, 40, x87);
            check_restore(host_xrstor64, &[0x48, 0x0f, 0xae, 0x2f], &image, rfbm);
            check_restore(host_xrstor32, &[0x0f, 0xae, 0x2f], &image, rfbm);
        }
    }
}

#[test]
fn xrstor_compacted_form_matches_host() {
    let m = mask();
    for (bv, xsavec_rfbm, rfbm) in [
        (m, m, m),
        (m, m & !0b100, m),
        (m & !0b10, m, m),
        (m, m, 0b11),
    ] {
        // Let the host produce a compacted image from a known state.
        let state = make_state(bv, 77);
        let mut image = area();
        let mut after = area();
        host_xsavec64(&state, m, &mut image, xsavec_rfbm, &mut after);
        check_restore(host_xrstor64, &[0x48, 0x0f, 0xae, 0x2f], &image, rfbm);
    }
}

#[test]
fn fxrstor_matches_host() {
    for x87 in [X87::Quiet, X87::Pending] {
        let image = make_x87_state(mask(), 99, x87);
        check_restore(host_fxrstor64, &[0x48, 0x0f, 0xae, 0x0f], &image, mask());
    }
}

#[test]
fn xrstor_rejects_bad_headers_and_alignment() {
    let m = mask();
    let cfg = EmulatorConfig::for_host();
    type Corrupt = Box<dyn Fn(&mut Area)>;
    let cases: Vec<(u64, Corrupt)> = vec![
        (BASE, Box::new(|a: &mut Area| a.0[520] = 1)), // standard form with XCOMP_BV != 0
        (BASE, Box::new(|a: &mut Area| a.0[530] = 1)), // reserved header byte
        (
            BASE,
            Box::new(move |a: &mut Area| {
                a.0[512..520].copy_from_slice(&(1u64 << 62).to_le_bytes())
            }),
        ),
        (
            BASE,
            Box::new(|a: &mut Area| a.0[24..28].copy_from_slice(&0xffff_ffffu32.to_le_bytes())),
        ),
        (BASE + 16, Box::new(|_: &mut Area| {})),
    ];
    for (addr, corrupt) in cases {
        let mut image = make_state(m, 1);
        corrupt(&mut image);
        let mut cpu = fake_cpu_with(&image);
        let area_before = cpu.area.clone();
        let mut mem = FlatMem::new(BASE, 0x4000);
        mem.bytes.copy_from_slice(&image.0[..0x4000]);
        cpu.regs.rdi = addr;
        cpu.regs.rax = m;
        let e = emulate(&mut cpu, &mut mem, &cfg, &[0x48, 0x0f, 0xae, 0x2f]).unwrap();
        assert_eq!(e.injected, Some(Exception::gp0()));
        assert_eq!(cpu.area, area_before);
        assert_eq!(cpu.regs.rip, 0x1000);
    }
}

#[test]
fn xsave_is_all_or_nothing_on_a_fault() {
    let m = mask();
    let mut cpu = fake_cpu_with(&make_state(m, 5));
    let mut mem = FlatMem::new(BASE, 0x4000);
    mem.absent.insert(BASE + 0x1000);
    // The legacy region and header alone (576 bytes) cross into the absent page, whatever
    // components beyond them the host has (AVX-512 or not).
    cpu.regs.rdi = BASE + 0x0f00;
    cpu.regs.rax = m;
    let e = emulate(
        &mut cpu,
        &mut mem,
        &EmulatorConfig::for_host(),
        &[0x48, 0x0f, 0xae, 0x27],
    )
    .unwrap();
    assert_eq!(e.injected.map(|x| x.vector), Some(Exception::PF));
    assert!(mem.bytes.iter().all(|&b| b == 0));
}

#[test]
fn mxcsr_and_xgetbv_match_host() {
    let host_mxcsr: u32 = {
        let mut v = 0u32;
        // SAFETY: STMXCSR writes 4 bytes to the live local `v`.
        unsafe { asm!("stmxcsr [{p}]", p = in(reg) &mut v as *mut u32) };
        v
    };
    let mut mem = FlatMem::new(BASE, 0x1000);
    let mut cpu = FakeCpu::long_mode();
    cpu.set_mxcsr(host_mxcsr);
    cpu.regs.rdi = BASE + 4;
    emulate(
        &mut cpu,
        &mut mem,
        &EmulatorConfig::for_host(),
        &[0x0f, 0xae, 0x1f],
    )
    .unwrap();
    assert_eq!(mem.at(BASE + 4, 4), &host_mxcsr.to_le_bytes());
    // ldmxcsr: a valid value loads, a reserved bit raises #GP(0).
    mem.put(BASE + 8, &0x3f80u32.to_le_bytes());
    cpu.regs.rdi = BASE + 8;
    emulate(
        &mut cpu,
        &mut mem,
        &EmulatorConfig::for_host(),
        &[0x0f, 0xae, 0x17],
    )
    .unwrap();
    assert_eq!(cpu.mxcsr(), 0x3f80);
    assert_eq!(
        cpu.xstate_bv() & 0b10,
        0b10,
        "SSE marked in use so KVM loads MXCSR"
    );
    let bad = !host_mxcsr_mask();
    if bad != 0 {
        mem.put(BASE + 8, &(0x1f80 | bad).to_le_bytes());
        let rip = cpu.regs.rip;
        let e = emulate(
            &mut cpu,
            &mut mem,
            &EmulatorConfig::for_host(),
            &[0x0f, 0xae, 0x17],
        )
        .unwrap();
        assert_eq!(e.injected, Some(Exception::gp0()));
        assert_eq!((cpu.mxcsr(), cpu.regs.rip), (0x3f80, rip));
    }
    // xgetbv with ECX=0 returns XCR0 split like the host's.
    let mut cpu = FakeCpu::long_mode();
    cpu.xcr0 = host_xcr0();
    cpu.regs.rax = u64::MAX;
    cpu.regs.rdx = u64::MAX;
    emulate(
        &mut cpu,
        &mut mem,
        &EmulatorConfig::for_host(),
        &[0x0f, 0x01, 0xd0],
    )
    .unwrap();
    assert_eq!(cpu.regs.rax | (cpu.regs.rdx << 32), host_xcr0());
    assert!(cpu.regs.rax <= u64::from(u32::MAX) && cpu.regs.rdx <= u64::from(u32::MAX));
    cpu.regs.rcx = 7;
    let e = emulate(
        &mut cpu,
        &mut mem,
        &EmulatorConfig::for_host(),
        &[0x0f, 0x01, 0xd0],
    )
    .unwrap();
    assert_eq!(e.injected, Some(Exception::gp0()));
}

#[test]
fn xsetbv_validates_like_the_sdm() {
    let mut mem = FlatMem::new(BASE, 0x1000);
    let cfg = EmulatorConfig::for_host();
    for (value, ok) in [
        (0b111u64, true),
        (0b11, true),
        (0b10, false),
        (0b101, false),
        (0b1111, false),
    ] {
        let mut cpu = FakeCpu::long_mode();
        cpu.xcr0 = 0b11;
        cpu.regs.rax = value;
        let e = emulate(&mut cpu, &mut mem, &cfg, &[0x0f, 0x01, 0xd1]).unwrap();
        assert_eq!(e.injected.is_none(), ok, "xcr0 {value:#b}");
        assert_eq!(cpu.xcr0, if ok { value } else { 0b11 });
    }
}

#[test]
fn x87_control_words() {
    let mut mem = FlatMem::new(BASE, 0x1000);
    let cfg = EmulatorConfig::for_host();
    let mut cpu = FakeCpu::long_mode();
    cpu.set_legacy_u16(0, 0x1234); // FCW
    cpu.set_legacy_u16(2, 0xb8ff); // FSW
    cpu.area[4] = 0xff; // abridged FTW
    cpu.area[6..24].fill(0x5a); // FOP, FIP, FDP
    emulate(&mut cpu, &mut mem, &cfg, &[0xdf, 0xe0]).unwrap(); // fnstsw ax
    assert_eq!(cpu.regs.rax & 0xffff, 0xb8ff);
    emulate(&mut cpu, &mut mem, &cfg, &[0xdb, 0xe2]).unwrap(); // fnclex
    assert_eq!(cpu.legacy_u16(2), 0x3800);
    cpu.regs.rbx = BASE;
    emulate(&mut cpu, &mut mem, &cfg, &[0xd9, 0x3b]).unwrap(); // fnstcw [rbx]
    assert_eq!(mem.at(BASE, 2), &0x1234u16.to_le_bytes());
    mem.put(BASE + 2, &0x0272u16.to_le_bytes());
    cpu.regs.rbx = BASE + 2;
    emulate(&mut cpu, &mut mem, &cfg, &[0xd9, 0x2b]).unwrap(); // fldcw [rbx]
    assert_eq!(cpu.legacy_u16(0), 0x0272);
    assert_eq!(cpu.xstate_bv() & 1, 1, "x87 marked in use");
    emulate(&mut cpu, &mut mem, &cfg, &[0xdb, 0xe3]).unwrap(); // fninit
    assert_eq!(
        (cpu.legacy_u16(0), cpu.legacy_u16(2), cpu.area[4]),
        (0x037f, 0, 0)
    );
    assert!(
        cpu.area[6..24].iter().all(|&b| b == 0),
        "FOP, FIP, FDP cleared"
    );
    assert_eq!(cpu.regs.rip, 0x1000 + 2 + 2 + 2 + 2 + 2);
    // With CR0.TS the x87 control instructions raise #NM.
    cpu.sregs.cr0 |= ctl::CR0_TS;
    let e = emulate(&mut cpu, &mut mem, &cfg, &[0xdb, 0xe3]).unwrap();
    assert_eq!(e.injected, Some(Exception::new(Exception::NM)));
}

#[test]
fn compacted_offsets_follow_alignment() {
    let layout = XsaveLayout::new(
        [
            None,
            None,
            Some(Component {
                offset: 576,
                size: 256,
                align64: false,
            }),
            Some(Component {
                offset: 960,
                size: 8,
                align64: false,
            }),
            Some(Component {
                offset: 1024,
                size: 64,
                align64: true,
            }),
        ]
        .into_iter()
        .chain(std::iter::repeat_n(None, 59))
        .collect(),
    );
    assert_eq!(layout.compacted_offset(0b11100, 2), Some(576));
    assert_eq!(layout.compacted_offset(0b11100, 3), Some(832));
    assert_eq!(layout.compacted_offset(0b11100, 4), Some(896)); // 840 rounded up to 64
    assert_eq!(layout.compacted_offset(0b10100, 4), Some(832));
    assert_eq!(layout.compacted_offset(0b00100, 4), None);
}
