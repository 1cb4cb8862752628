//! The PVM instruction emulator: one instruction, decoded from guest-chosen bytes, run
//! against a vCPU and a guest memory the input describes ([`FakeCpu`], [`FlatMem`], the
//! emulator's own test doubles).

use arbitrary::{Result, Unstructured};
use outpost_vmm::pvm::testutil::{FakeCpu, FlatMem};
use outpost_vmm::pvm::{self as emulator, EmulatorConfig};

/// Where the model's memory starts, and how many 4 KiB pages it has: a few, so that an
/// access crosses into a page that is absent or read-only as often as it lands in RAM.
const MEM_BASE: u64 = 0x7000_0000;
const MEM_PAGES: u64 = 4;

pub fn emulate(data: &[u8]) {
    let mut u = Unstructured::new(data);
    // An input too short for the whole description runs with what it has: `arbitrary`
    // answers zeros once the bytes are used up.
    let _ = run(&mut u);
}

fn run(u: &mut Unstructured<'_>) -> Result<()> {
    let config = EmulatorConfig {
        lzcnt: u.arbitrary()?,
        tzcnt: u.arbitrary()?,
        mxcsr_mask: u.arbitrary()?,
        ..EmulatorConfig::for_host()
    };
    let mut cpu = FakeCpu::long_mode();
    let regs = &mut cpu.regs;
    for reg in [
        &mut regs.rax,
        &mut regs.rbx,
        &mut regs.rcx,
        &mut regs.rdx,
        &mut regs.rsi,
        &mut regs.rdi,
        &mut regs.rsp,
        &mut regs.rbp,
        &mut regs.r8,
        &mut regs.r9,
        &mut regs.r10,
        &mut regs.r11,
        &mut regs.r12,
        &mut regs.r13,
        &mut regs.r14,
        &mut regs.r15,
        &mut regs.rip,
    ] {
        *reg = register_value(u)?;
    }
    regs.rflags = u.arbitrary()?;
    // Modes and privilege: flip any control bit, not only the ones a sane kernel sets.
    let sregs = &mut cpu.sregs;
    sregs.cr0 ^= u.arbitrary::<u64>()?;
    sregs.cr4 ^= u.arbitrary::<u64>()?;
    sregs.efer ^= u.arbitrary::<u64>()?;
    sregs.cs.l = u.arbitrary::<u8>()? & 1;
    sregs.cs.db = u.arbitrary::<u8>()? & 1;
    sregs.cs.dpl = u.arbitrary::<u8>()? & 3;
    sregs.ss.dpl = sregs.cs.dpl;
    for seg in [&mut sregs.ds, &mut sregs.es, &mut sregs.fs, &mut sregs.gs] {
        seg.base = u.arbitrary()?;
        seg.limit = u.arbitrary()?;
    }
    cpu.xcr0 = u.arbitrary()?;
    for _ in 0..u.int_in_range(0..=4)? {
        let msr = u.arbitrary()?;
        cpu.msrs.insert(msr, u.arbitrary()?);
    }
    // The XSAVE image the vCPU holds (FXSAVE legacy region and header are what matter).
    let area_len = cpu.area.len().min(576);
    let image = crate::bytes_up_to(u, area_len)?;
    cpu.area[..image.len()].copy_from_slice(image);

    let mut mem = FlatMem::new(MEM_BASE, (MEM_PAGES * 0x1000) as usize);
    let absent: u8 = u.arbitrary()?;
    let read_only: u8 = u.arbitrary()?;
    for page in 0..MEM_PAGES {
        let addr = MEM_BASE + page * 0x1000;
        if absent & (1 << page) != 0 {
            mem.absent.insert(addr);
        }
        if read_only & (1 << page) != 0 {
            mem.read_only.insert(addr);
        }
    }
    let contents = crate::bytes_up_to(u, mem.bytes.len())?;
    mem.bytes[..contents.len()].copy_from_slice(contents);

    // The rest is the instruction, as KVM reports it (at most 15 bytes).
    let bytes = crate::rest(u);
    let bytes = &bytes[..bytes.len().min(15)];
    let _ = emulator::emulate(&mut cpu, &mut mem, &config, bytes);
    Ok(())
}

/// A register's value: mostly an address in the model's memory (so memory operands reach
/// it), sometimes anything at all.
fn register_value(u: &mut Unstructured<'_>) -> Result<u64> {
    Ok(if u.ratio(3, 4)? {
        MEM_BASE.wrapping_add(u.int_in_range(0..=MEM_PAGES * 0x1000 + 0x10)?)
    } else {
        u.arbitrary()?
    })
}
