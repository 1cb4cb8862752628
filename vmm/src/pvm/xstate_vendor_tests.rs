//! Each vendor's rule for the x87 last-instruction fields, checked on any host by giving the
//! emulator the vendor explicitly (the "matches host" tests in xstate_tests.rs check the host's
//! own vendor against its CPU).

use super::super::emulate::{emulate, EmulatorConfig};
use super::super::testutil::{FakeCpu, FlatMem};
use super::super::vendor::CpuVendor;
use super::*;

const BASE: u64 = 0x5000_0000;
const INTEL: CpuVendor = CpuVendor::Intel;
const AMD_ERPTR: CpuVendor = CpuVendor::Amd {
    xsave_err_ptr: true,
};
const AMD_OLD: CpuVendor = CpuVendor::Amd {
    xsave_err_ptr: false,
};

const FXSAVE64: &[u8] = &[0x48, 0x0f, 0xae, 0x07]; // fxsave64 [rdi]
const FXSAVE32: &[u8] = &[0x0f, 0xae, 0x07]; // fxsave [rdi]
const FXRSTOR64: &[u8] = &[0x48, 0x0f, 0xae, 0x0f]; // fxrstor64 [rdi]
const XSAVE64: &[u8] = &[0x48, 0x0f, 0xae, 0x27]; // xsave64 [rdi]
const XSAVEOPT64: &[u8] = &[0x48, 0x0f, 0xae, 0x37]; // xsaveopt64 [rdi]
const XSAVEC64: &[u8] = &[0x48, 0x0f, 0xc7, 0x27]; // xsavec64 [rdi]
const XRSTOR64: &[u8] = &[0x48, 0x0f, 0xae, 0x2f]; // xrstor64 [rdi]

/// FOP with bits 15:11 set, FIP/FDP with bit 47 set and non-canonical upper bits.
const FOP_IN: u16 = 0xff23;
const FIP_IN: u64 = 0x1122_8344_5566_7788;
const FDP_IN: u64 = 0x0000_0000_0102_0304;

fn cfg(vendor: CpuVendor) -> EmulatorConfig {
    EmulatorConfig {
        vendor,
        ..EmulatorConfig::for_host()
    }
}

/// A 512-byte legacy region (plus an XSAVE header marking x87 and SSE in use).
fn legacy_image(fcw: u16, fsw: u16) -> Vec<u8> {
    let mut b = vec![0u8; 0x1000];
    b[0..2].copy_from_slice(&fcw.to_le_bytes());
    b[2..4].copy_from_slice(&fsw.to_le_bytes());
    b[6..8].copy_from_slice(&FOP_IN.to_le_bytes());
    b[8..16].copy_from_slice(&FIP_IN.to_le_bytes());
    b[16..24].copy_from_slice(&FDP_IN.to_le_bytes());
    b[24..28].copy_from_slice(&0x1f80u32.to_le_bytes());
    b[HEADER..HEADER + 8].copy_from_slice(&0b11u64.to_le_bytes());
    b
}

/// Runs a restore of `image` and returns the vCPU's FSW, FOP, FIP and FDP afterwards.
fn restore(vendor: CpuVendor, bytes: &[u8], image: &[u8]) -> (u16, u16, u64, u64) {
    let mut cpu = FakeCpu::long_mode();
    cpu.area[6..24].fill(0x5a); // stale pointers from before
    cpu.xcr0 = 0b11;
    cpu.xcr0_supported = 0b11;
    let mut mem = FlatMem::new(BASE, 0x1000);
    mem.bytes.copy_from_slice(image);
    cpu.regs.rdi = BASE;
    cpu.regs.rax = 0b11;
    let e = emulate(&mut cpu, &mut mem, &cfg(vendor), bytes).unwrap();
    assert_eq!(e.injected, None);
    (
        cpu.legacy_u16(2),
        cpu.legacy_u16(6),
        u64_at(&cpu.area, 8),
        u64_at(&cpu.area, 16),
    )
}

/// Runs a save from a vCPU in the state of `image` and returns the stored FOP, FIP and FDP.
fn save(vendor: CpuVendor, bytes: &[u8], image: &[u8]) -> (u16, u64, u64) {
    let mut cpu = FakeCpu::long_mode();
    cpu.area[..XSAVE_AREA_SIZE].copy_from_slice(&image[..XSAVE_AREA_SIZE]);
    cpu.xcr0 = 0b11;
    cpu.xcr0_supported = 0b11;
    let mut mem = FlatMem::new(BASE, 0x1000);
    mem.bytes.fill(0xa5);
    cpu.regs.rdi = BASE;
    cpu.regs.rax = 0b11;
    let e = emulate(&mut cpu, &mut mem, &cfg(vendor), bytes).unwrap();
    assert_eq!(e.injected, None);
    let m = mem.at(BASE, 24);
    (
        u16::from_le_bytes([m[6], m[7]]),
        u64_at(m, 8),
        u64_at(m, 16),
    )
}

#[test]
fn intel_restores_fsw_and_pointers_as_stored() {
    // ES set although every exception is masked, and no ES with an unmasked flag: Intel
    // loads FSW verbatim either way and always loads the pointers.
    for (fcw, fsw) in [(0x037f, 0x8081), (0x037e, 0x0001), (0x037f, 0x3800)] {
        for bytes in [FXRSTOR64, XRSTOR64] {
            let got = restore(INTEL, bytes, &legacy_image(fcw, fsw));
            assert_eq!(
                got,
                (fsw, FOP_IN, FIP_IN, FDP_IN),
                "{bytes:02x?} fsw {fsw:#x}"
            );
        }
    }
}

#[test]
fn amd_restores_pointers_only_for_a_pending_exception() {
    for vendor in [AMD_ERPTR, AMD_OLD] {
        for bytes in [FXRSTOR64, XRSTOR64] {
            // No unmasked flag: ES and B cleared, the pointers zero (not the stale ones).
            let got = restore(vendor, bytes, &legacy_image(0x037f, 0x8081));
            assert_eq!(got, (0x0001, 0, 0, 0), "{vendor:?} {bytes:02x?}");
            // An unmasked flag: ES and B set whatever the image says, FOP 11 bits, FIP/FDP
            // 48-bit canonical.
            let got = restore(vendor, bytes, &legacy_image(0x037e, 0x3801));
            assert_eq!(
                got,
                (0xb881, 0x0723, 0xffff_8344_5566_7788, FDP_IN),
                "{vendor:?} {bytes:02x?}"
            );
        }
    }
}

#[test]
fn restores_32bit_form_zero_extends_pointers_for_both_vendors() {
    let image = legacy_image(0x037e, 0x0001);
    // fxrstor [rdi] (no REX.W): FIP/FDP are 32-bit offsets; FCS/FDS (bytes 12, 20) ignored.
    for vendor in [INTEL, AMD_ERPTR] {
        let (_, _, fip, fdp) = restore(vendor, &[0x0f, 0xae, 0x0f], &image);
        assert_eq!((fip, fdp), (0x5566_7788, 0x0102_0304), "{vendor:?}");
    }
}

#[test]
fn saves_pointers_by_vendor_and_xsaveerptr() {
    // The vCPU's state: pointers set, no pending exception.
    let quiet = legacy_image(0x037f, 0x0001);
    // The same with an unmasked exception pending.
    let pending = legacy_image(0x037e, 0x8081);
    for bytes in [FXSAVE64, XSAVE64, XSAVEOPT64, XSAVEC64] {
        let stored = (FOP_IN, FIP_IN, FDP_IN);
        // Intel and AMD with XSaveErPtr: always stored.
        assert_eq!(save(INTEL, bytes, &quiet), stored, "intel {bytes:02x?}");
        assert_eq!(save(AMD_ERPTR, bytes, &quiet), stored, "amd {bytes:02x?}");
        // AMD without XSaveErPtr: stored only while an exception is pending, else zero.
        assert_eq!(
            save(AMD_OLD, bytes, &quiet),
            (0, 0, 0),
            "old amd {bytes:02x?}"
        );
        assert_eq!(
            save(AMD_OLD, bytes, &pending),
            stored,
            "old amd {bytes:02x?}"
        );
    }
    // The 32-bit form stores 32-bit offsets with zero selectors, for every vendor.
    for vendor in [INTEL, AMD_ERPTR] {
        assert_eq!(
            save(vendor, FXSAVE32, &quiet),
            (FOP_IN, 0x5566_7788, 0x0102_0304),
            "{vendor:?}"
        );
    }
}

/// Guest addresses at the top of the address space: the area's offsets wrap like the CPU's
/// linear addresses and the access faults; the emulator never overflows or panics.
#[test]
fn areas_at_the_top_of_the_address_space_fault_without_overflow() {
    for bytes in [XSAVE64, XRSTOR64, XSAVEC64, FXSAVE64, FXRSTOR64] {
        let mut cpu = FakeCpu::long_mode();
        cpu.xcr0 = 0b11;
        cpu.xcr0_supported = 0b11;
        let mut mem = FlatMem::new(BASE, 0x1000);
        // The last page and (after the wrap) the first are not mapped.
        mem.absent.insert(!0xfff);
        mem.absent.insert(0);
        cpu.regs.rdi = !63;
        cpu.regs.rax = 0b11;
        let e = emulate(&mut cpu, &mut mem, &cfg(INTEL), bytes).unwrap();
        assert_eq!(
            e.injected.map(|x| x.vector),
            Some(crate::pvm::cpu::Exception::PF),
            "{bytes:02x?}"
        );
    }
}
