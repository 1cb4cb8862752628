//! Instruction decoding for the PVM emulator: iced-x86 in 64-bit mode over the bytes KVM hands
//! back with `KVM_EXIT_INTERNAL_ERROR`, general-purpose register access with x86-64 width rules,
//! and effective-address computation (SDM Vol. 1 §3.7.5).

use iced_x86::{Decoder, DecoderOptions, Instruction, Register};
use kvm_bindings::{kvm_regs, kvm_sregs};

use super::cpu::Exception;

/// RFLAGS bits the emulator reads or writes (SDM Vol. 1 §3.4.3).
pub mod flags {
    pub const CF: u64 = 1 << 0;
    pub const FIXED1: u64 = 1 << 1;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const OF: u64 = 1 << 11;
    pub const RF: u64 = 1 << 16;
    pub const AC: u64 = 1 << 18;
    /// The six arithmetic status flags.
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
}

/// Control-register and EFER bits the emulator consults.
pub mod ctl {
    pub const CR0_MP: u64 = 1 << 1;
    pub const CR0_EM: u64 = 1 << 2;
    pub const CR0_TS: u64 = 1 << 3;
    pub const CR0_WP: u64 = 1 << 16;
    pub const CR0_PG: u64 = 1 << 31;
    pub const CR4_TSD: u64 = 1 << 2;
    pub const CR4_OSFXSR: u64 = 1 << 9;
    pub const CR4_LA57: u64 = 1 << 12;
    pub const CR4_OSXSAVE: u64 = 1 << 18;
    pub const CR4_SMAP: u64 = 1 << 21;
    pub const EFER_LMA: u64 = 1 << 10;
}

/// Decodes one instruction at `rip` from `bytes` (at most 15 are looked at).
/// Returns `None` when the bytes do not form a valid 64-bit instruction.
pub fn decode(rip: u64, bytes: &[u8]) -> Option<Instruction> {
    let len = bytes.len().min(15);
    let mut decoder = Decoder::with_ip(64, &bytes[..len], rip, DecoderOptions::NONE);
    let instr = decoder.decode();
    if instr.is_invalid() {
        None
    } else {
        Some(instr)
    }
}

/// Formats instruction bytes as lower-case hex separated by spaces, for error messages.
pub fn hex_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn slot(regs: &kvm_regs, full: Register) -> Option<u64> {
    Some(match full {
        Register::RAX => regs.rax,
        Register::RBX => regs.rbx,
        Register::RCX => regs.rcx,
        Register::RDX => regs.rdx,
        Register::RSI => regs.rsi,
        Register::RDI => regs.rdi,
        Register::RSP => regs.rsp,
        Register::RBP => regs.rbp,
        Register::R8 => regs.r8,
        Register::R9 => regs.r9,
        Register::R10 => regs.r10,
        Register::R11 => regs.r11,
        Register::R12 => regs.r12,
        Register::R13 => regs.r13,
        Register::R14 => regs.r14,
        Register::R15 => regs.r15,
        Register::RIP => regs.rip,
        _ => return None,
    })
}

fn slot_mut(regs: &mut kvm_regs, full: Register) -> Option<&mut u64> {
    Some(match full {
        Register::RAX => &mut regs.rax,
        Register::RBX => &mut regs.rbx,
        Register::RCX => &mut regs.rcx,
        Register::RDX => &mut regs.rdx,
        Register::RSI => &mut regs.rsi,
        Register::RDI => &mut regs.rdi,
        Register::RSP => &mut regs.rsp,
        Register::RBP => &mut regs.rbp,
        Register::R8 => &mut regs.r8,
        Register::R9 => &mut regs.r9,
        Register::R10 => &mut regs.r10,
        Register::R11 => &mut regs.r11,
        Register::R12 => &mut regs.r12,
        Register::R13 => &mut regs.r13,
        Register::R14 => &mut regs.r14,
        Register::R15 => &mut regs.r15,
        _ => return None,
    })
}

fn is_high_byte(reg: Register) -> bool {
    matches!(
        reg,
        Register::AH | Register::CH | Register::DH | Register::BH
    )
}

/// Reads a general-purpose register of any width, zero-extended to 64 bits.
/// `None` for registers that are not GPRs.
pub fn read_gpr(regs: &kvm_regs, reg: Register) -> Option<u64> {
    let full = slot(regs, reg.full_register())?;
    if is_high_byte(reg) {
        return Some((full >> 8) & 0xff);
    }
    Some(match reg.size() {
        1 => full & 0xff,
        2 => full & 0xffff,
        4 => full & 0xffff_ffff,
        8 => full,
        _ => return None,
    })
}

/// Writes a general-purpose register with x86-64 rules: 32-bit writes zero the upper half,
/// 8- and 16-bit writes keep the other bits (SDM Vol. 1 §3.4.1.1).
pub fn write_gpr(regs: &mut kvm_regs, reg: Register, value: u64) -> Option<()> {
    let high = is_high_byte(reg);
    let size = reg.size();
    let full = slot_mut(regs, reg.full_register())?;
    *full = if high {
        (*full & !0xff00) | ((value & 0xff) << 8)
    } else {
        match size {
            1 => (*full & !0xff) | (value & 0xff),
            2 => (*full & !0xffff) | (value & 0xffff),
            4 => value & 0xffff_ffff,
            8 => value,
            _ => return None,
        }
    };
    Some(())
}

/// True when `addr` is canonical for the paging mode (48 or 57 linear-address bits).
pub fn is_canonical(addr: u64, la57: bool) -> bool {
    let bits = if la57 { 57 } else { 48 };
    let shift = 64 - bits;
    (((addr << shift) as i64) >> shift) as u64 == addr
}

/// Linear address of the memory operand of `instr` (SDM Vol. 1 §3.7.5; in 64-bit mode only
/// FS and GS contribute a base, Vol. 3A §3.4.4). A non-canonical result raises #GP(0), or
/// #SS(0) when the stack segment is used.
pub fn effective_address(
    instr: &Instruction,
    regs: &kvm_regs,
    sregs: &kvm_sregs,
) -> Result<u64, EaError> {
    let base = instr.memory_base();
    let index = instr.memory_index();
    let mut addr_32 = false;
    let mut ea = instr.memory_displacement64();
    if base == Register::RIP || base == Register::EIP {
        // iced already folded next_ip into the displacement for IP-relative operands.
        addr_32 = base == Register::EIP;
    } else {
        if base != Register::None {
            addr_32 |= base.size() == 4;
            ea = ea.wrapping_add(read_gpr(regs, base).ok_or(EaError::BadRegister(base))?);
        }
        if index != Register::None {
            addr_32 |= index.size() == 4;
            let value = read_gpr(regs, index).ok_or(EaError::BadRegister(index))?;
            ea = ea.wrapping_add(value.wrapping_mul(u64::from(instr.memory_index_scale())));
        }
    }
    if addr_32 {
        ea &= 0xffff_ffff;
    }
    let segment = instr.memory_segment();
    let linear = match segment {
        Register::FS => ea.wrapping_add(sregs.fs.base),
        Register::GS => ea.wrapping_add(sregs.gs.base),
        _ => ea,
    };
    let la57 = sregs.cr4 & ctl::CR4_LA57 != 0;
    if !is_canonical(linear, la57) {
        let vector = if segment == Register::SS { 12 } else { 13 };
        return Err(EaError::Fault(Exception::with_code(vector, 0)));
    }
    Ok(linear)
}

/// Why no effective address could be formed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EaError {
    /// The address is not canonical: the guest gets this exception.
    Fault(Exception),
    /// iced named a base or index register the emulator does not model.
    BadRegister(Register),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn regs() -> kvm_regs {
        kvm_regs {
            rax: 0x1111_2222_3333_4444,
            rbx: 0x1000,
            rcx: 0x8,
            rsp: 0x7fff_0000,
            r12: 0xffff_ffff_0000_0010,
            ..Default::default()
        }
    }

    #[test]
    fn gpr_widths_follow_x86_64_rules() {
        let mut r = regs();
        assert_eq!(read_gpr(&r, Register::AH), Some(0x44));
        assert_eq!(read_gpr(&r, Register::AL), Some(0x44));
        assert_eq!(read_gpr(&r, Register::AX), Some(0x4444));
        assert_eq!(read_gpr(&r, Register::EAX), Some(0x3333_4444));
        write_gpr(&mut r, Register::AH, 0x1ab).unwrap();
        assert_eq!(r.rax, 0x1111_2222_3333_ab44);
        write_gpr(&mut r, Register::AX, 0x12345).unwrap();
        assert_eq!(r.rax, 0x1111_2222_3333_2345);
        write_gpr(&mut r, Register::EAX, 0xffff_ffff_dead_beef).unwrap();
        assert_eq!(r.rax, 0xdead_beef);
        write_gpr(&mut r, Register::R12D, 5).unwrap();
        assert_eq!(r.r12, 5);
        write_gpr(&mut r, Register::R12L, 0x1ff).unwrap();
        assert_eq!(r.r12, 0xff);
        assert_eq!(read_gpr(&r, Register::XMM0), None);
        assert_eq!(write_gpr(&mut r, Register::CR0, 1), None);
    }

    #[test]
    fn ah_reads_bits_8_to_15() {
        let r = kvm_regs {
            rax: 0xa5_5a,
            ..Default::default()
        };
        assert_eq!(read_gpr(&r, Register::AH), Some(0xa5));
    }

    #[test]
    fn canonical_boundaries() {
        assert!(is_canonical(0x0000_7fff_ffff_ffff, false));
        assert!(!is_canonical(0x0000_8000_0000_0000, false));
        assert!(is_canonical(0xffff_8000_0000_0000, false));
        assert!(is_canonical(0x00ff_ffff_ffff_ffff, true));
        assert!(is_canonical(0xff00_0000_0000_0000, true));
        assert!(!is_canonical(0x0100_0000_0000_0000, true));
        assert!(is_canonical(0x0080_0000_0000_0000, true));
        assert!(!is_canonical(0x0080_0000_0000_0000, false));
    }

    #[test]
    fn effective_address_forms() {
        let r = regs();
        let mut s = kvm_sregs::default();
        s.gs.base = 0xffff_8880_0000_0000;
        // popcnt rax, [rbx+rcx*8+0x10]  = f3 48 0f b8 44 cb 10
        let i = decode(0x1000, &[0xf3, 0x48, 0x0f, 0xb8, 0x44, 0xcb, 0x10]).unwrap();
        assert_eq!(effective_address(&i, &r, &s), Ok(0x1000 + 0x40 + 0x10));
        // popcnt rax, gs:[rbx] = 65 f3 48 0f b8 03
        let i = decode(0x1000, &[0x65, 0xf3, 0x48, 0x0f, 0xb8, 0x03]).unwrap();
        assert_eq!(effective_address(&i, &r, &s), Ok(0xffff_8880_0000_1000));
        // popcnt rax, [rip+0x20] = f3 48 0f b8 05 20 00 00 00 (9 bytes)
        let i = decode(0x4000, &[0xf3, 0x48, 0x0f, 0xb8, 0x05, 0x20, 0, 0, 0]).unwrap();
        assert_eq!(effective_address(&i, &r, &s), Ok(0x4000 + 9 + 0x20));
        // popcnt eax, [r12d] with 0x67 = 67 f3 41 0f b8 04 24
        let i = decode(0, &[0x67, 0xf3, 0x41, 0x0f, 0xb8, 0x04, 0x24]).unwrap();
        assert_eq!(effective_address(&i, &r, &s), Ok(0x10));
        // popcnt rax, [rbx - 8] wraps below zero into a non-canonical address -> #GP(0)
        let r2 = kvm_regs {
            rbx: 0x0000_8000_0000_0008,
            ..regs()
        };
        let i = decode(0, &[0xf3, 0x48, 0x0f, 0xb8, 0x03]).unwrap();
        assert_eq!(
            effective_address(&i, &r2, &s),
            Err(EaError::Fault(Exception::with_code(13, 0)))
        );
        // Stack-based operand: [rsp] non-canonical -> #SS(0)
        let r3 = kvm_regs {
            rsp: 0x0000_8000_0000_0000,
            ..regs()
        };
        let i = decode(0, &[0xf3, 0x48, 0x0f, 0xb8, 0x04, 0x24]).unwrap();
        assert_eq!(
            effective_address(&i, &r3, &s),
            Err(EaError::Fault(Exception::with_code(12, 0)))
        );
    }

    #[test]
    fn invalid_bytes_do_not_decode() {
        assert!(decode(0, &[0x0f, 0x04]).is_none());
        assert!(decode(0, &[0xf3, 0x48, 0x0f]).is_none());
        assert!(decode(0, &[]).is_none());
        assert_eq!(hex_bytes(&[0x0f, 0xa2]), "0f a2");
    }
}
