//! Architectural pieces of the SYSCALL repair, pure and separately tested: IDT gates,
//! exception frames, the state SYSCALL produces, and debug-register programming.

use kvm_bindings::{
    kvm_guest_debug, kvm_segment, KVM_GUESTDBG_BLOCKIRQ, KVM_GUESTDBG_ENABLE,
    KVM_GUESTDBG_SINGLESTEP, KVM_GUESTDBG_USE_HW_BP,
};

use super::decode::flags;

/// A 64-bit IDT gate descriptor (SDM Vol. 3A §6.14.1, Figure 6-8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gate {
    pub offset: u64,
    pub selector: u16,
    pub ist: u8,
    pub gate_type: u8,
    pub dpl: u8,
    pub present: bool,
}

impl Gate {
    pub fn decode(b: &[u8; 16]) -> Self {
        let offset = u64::from(u16::from_le_bytes([b[0], b[1]]))
            | (u64::from(u16::from_le_bytes([b[6], b[7]])) << 16)
            | (u64::from(u32::from_le_bytes([b[8], b[9], b[10], b[11]])) << 32);
        Self {
            offset,
            selector: u16::from_le_bytes([b[2], b[3]]),
            ist: b[4] & 7,
            gate_type: b[5] & 0xf,
            dpl: (b[5] >> 5) & 3,
            present: b[5] & 0x80 != 0,
        }
    }

    /// A present 64-bit interrupt (0xE) or trap (0xF) gate.
    pub fn is_usable(&self) -> bool {
        self.present && matches!(self.gate_type, 0xe | 0xf)
    }
}

/// The frame a 64-bit exception with error code leaves at RSP (SDM Vol. 3A §6.14.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionFrame {
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

impl ExceptionFrame {
    pub const SIZE: usize = 48;

    pub fn parse(b: &[u8; Self::SIZE]) -> Self {
        let q = |i: usize| {
            let mut w = [0u8; 8];
            w.copy_from_slice(&b[i * 8..i * 8 + 8]);
            u64::from_le_bytes(w)
        };
        Self {
            error_code: q(0),
            rip: q(1),
            cs: q(2),
            rflags: q(3),
            rsp: q(4),
            ss: q(5),
        }
    }

    /// This fault is a user SYSCALL that reached LSTAR at CPL3.
    pub fn is_broken_syscall(&self, lstar: u64) -> bool {
        self.cs & 3 == 3 && self.rip == lstar
    }
}

/// CS after SYSCALL: selector STAR[47:32] & 0xFFFC, flat 64-bit code, DPL 0.
pub fn syscall_cs(star: u64) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: ((star >> 32) as u16) & 0xfffc,
        type_: 0xb,
        present: 1,
        dpl: 0,
        db: 0,
        s: 1,
        l: 1,
        g: 1,
        ..Default::default()
    }
}

/// SS after SYSCALL: selector STAR[47:32] + 8, flat read/write data, DPL 0.
pub fn syscall_ss(star: u64) -> kvm_segment {
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector: ((star >> 32) as u16).wrapping_add(8),
        type_: 0x3,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        ..Default::default()
    }
}

/// RFLAGS after SYSCALL: the user's flags with SFMASK's bits and RF cleared.
pub fn syscall_rflags(user: u64, sfmask: u64) -> u64 {
    (user & !sfmask & !flags::RF) | flags::FIXED1
}

/// The guest-debug programming for breakpoints at `bps` (DR0, DR1), or a single-step with all
/// breakpoints off. DR7: G0/G1, execute (R/W=00), length 1 (LEN=00); bits 9-10 as KVM expects.
/// With neither, guest debugging is switched off.
pub fn guest_debug(bps: &[u64], single_step: bool, block_irq: bool) -> kvm_guest_debug {
    if bps.is_empty() && !single_step {
        return kvm_guest_debug::default();
    }
    let mut dbg = kvm_guest_debug {
        control: KVM_GUESTDBG_ENABLE,
        ..Default::default()
    };
    if single_step {
        dbg.control |= KVM_GUESTDBG_SINGLESTEP;
        if block_irq {
            dbg.control |= KVM_GUESTDBG_BLOCKIRQ;
        }
        return dbg;
    }
    if !bps.is_empty() {
        dbg.control |= KVM_GUESTDBG_USE_HW_BP;
        let mut dr7 = 0x0600u64;
        for (n, &addr) in bps.iter().take(4).enumerate() {
            dbg.arch.debugreg[n] = addr;
            dr7 |= 2 << (n * 2);
        }
        dbg.arch.debugreg[7] = dr7;
    }
    dbg
}

#[cfg(test)]
mod tests {
    use super::*;

    const LSTAR: u64 = 0xffff_ffff_8200_0040;

    fn gate_bytes(offset: u64, present: bool) -> [u8; 16] {
        let mut g = [0u8; 16];
        g[0..2].copy_from_slice(&(offset as u16).to_le_bytes());
        g[2..4].copy_from_slice(&0x10u16.to_le_bytes());
        g[4] = 3;
        g[5] = if present { 0x8e } else { 0x0e };
        g[6..8].copy_from_slice(&((offset >> 16) as u16).to_le_bytes());
        g[8..12].copy_from_slice(&((offset >> 32) as u32).to_le_bytes());
        g
    }

    #[test]
    fn gate_decoding_reassembles_the_split_offset() {
        let g = Gate::decode(&gate_bytes(0xffff_ffff_8180_1234, true));
        assert_eq!(g.offset, 0xffff_ffff_8180_1234);
        assert_eq!((g.selector, g.gate_type, g.dpl, g.ist), (0x10, 0xe, 0, 3));
        assert!(g.is_usable());
        assert!(!Gate::decode(&gate_bytes(1, false)).is_usable());
        let mut call_gate = gate_bytes(1, true);
        call_gate[5] = 0x8c;
        assert!(!Gate::decode(&call_gate).is_usable());
    }

    #[test]
    fn frame_parsing_and_syscall_detection() {
        let f = ExceptionFrame {
            error_code: 0x15,
            rip: LSTAR,
            cs: 0x33,
            rflags: 0x10246,
            rsp: 0x7ffc_0000,
            ss: 0x2b,
        };
        let mut raw = [0u8; 48];
        for (i, v) in [f.error_code, f.rip, f.cs, f.rflags, f.rsp, f.ss]
            .iter()
            .enumerate()
        {
            raw[i * 8..i * 8 + 8].copy_from_slice(&v.to_le_bytes());
        }
        assert_eq!(ExceptionFrame::parse(&raw), f);
        assert!(f.is_broken_syscall(LSTAR));
        assert!(!ExceptionFrame { cs: 0x10, ..f }.is_broken_syscall(LSTAR));
        assert!(!ExceptionFrame {
            rip: LSTAR + 1,
            ..f
        }
        .is_broken_syscall(LSTAR));
    }

    #[test]
    fn syscall_state_follows_the_sdm() {
        let star: u64 = (0x23 << 48) | (0x10 << 32);
        let cs = syscall_cs(star | 3 << 32);
        assert_eq!(
            (
                cs.selector,
                cs.type_,
                cs.dpl,
                cs.l,
                cs.db,
                cs.s,
                cs.present,
                cs.limit
            ),
            (0x10, 0xb, 0, 1, 0, 1, 1, 0xffff_ffff)
        );
        let ss = syscall_ss(star);
        assert_eq!(
            (ss.selector, ss.type_, ss.dpl, ss.l, ss.db, ss.present),
            (0x18, 0x3, 0, 0, 1, 1)
        );
        // Linux's SFMASK (0x47700) clears TF, IF, DF, IOPL, NT, AC; RF is always cleared.
        assert_eq!(syscall_rflags(0x10246 | 0x100 | 0x40000, 0x47700), 0x46);
        assert_eq!(syscall_rflags(0, 0), 0x2);
    }

    #[test]
    fn debug_register_programming() {
        let dbg = guest_debug(&[0x1000, 0x2000], false, true);
        assert_eq!(dbg.control, KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP);
        assert_eq!(dbg.arch.debugreg[..2], [0x1000, 0x2000]);
        // G0 and G1, execute breakpoints of length 1 (R/W and LEN fields zero).
        assert_eq!(dbg.arch.debugreg[7], 0x0600 | 0b1010);
        let step = guest_debug(&[0x1000], true, true);
        assert_eq!(
            step.control,
            KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP | KVM_GUESTDBG_BLOCKIRQ
        );
        assert_eq!(
            step.arch.debugreg[7], 0,
            "breakpoints are off while stepping"
        );
        assert_eq!(guest_debug(&[], false, false).control, 0);
    }
}
