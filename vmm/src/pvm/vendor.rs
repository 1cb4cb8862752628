//! The host CPU's vendor, where the x86 vendors document different results for the same
//! instruction. The guest runs on the host's CPU (PVM shows it the host's CPUID leaves), so an
//! emulated instruction must produce what that CPU would.
//!
//! Today one family differs: how FXSAVE/XSAVE* and FXRSTOR/XRSTOR treat the x87 last-instruction
//! fields (FOP, FIP/FCS, FDP/FDS) and the status word's summary bits; see `X87Pointers`.

/// Which vendor's rules the emulator follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuVendor {
    /// Intel (and vendors following Intel's documentation: Centaur, Zhaoxin).
    Intel,
    /// AMD (and Hygon, whose cores are AMD's). `xsave_err_ptr` is CPUID
    /// Fn8000_0008_EBX[2] (XSaveErPtr).
    Amd { xsave_err_ptr: bool },
}

impl CpuVendor {
    /// The host's vendor, from CPUID leaf 0's vendor string.
    pub fn host() -> Self {
        let l0 = std::arch::x86_64::__cpuid(0);
        let mut id = [0u8; 12];
        id[..4].copy_from_slice(&l0.ebx.to_le_bytes());
        id[4..8].copy_from_slice(&l0.edx.to_le_bytes());
        id[8..].copy_from_slice(&l0.ecx.to_le_bytes());
        Self::from_vendor_id(&id, host_xsave_err_ptr())
    }

    /// The vendor for a CPUID leaf-0 vendor string; `xsave_err_ptr` is only read for AMD.
    pub fn from_vendor_id(id: &[u8; 12], xsave_err_ptr: bool) -> Self {
        match id {
            b"AuthenticAMD" | b"HygonGenuine" => Self::Amd { xsave_err_ptr },
            _ => Self::Intel,
        }
    }

    /// The rule this vendor documents for the x87 last-instruction fields.
    pub fn x87_pointers(self) -> X87Pointers {
        match self {
            Self::Intel => X87Pointers::Always,
            Self::Amd { xsave_err_ptr } => X87Pointers::OnPendingException {
                saved_always: xsave_err_ptr,
            },
        }
    }
}

fn host_xsave_err_ptr() -> bool {
    let max = std::arch::x86_64::__cpuid(0x8000_0000).eax;
    max >= 0x8000_0008 && std::arch::x86_64::__cpuid(0x8000_0008).ebx & (1 << 2) != 0
}

/// How FXSAVE/XSAVE*/FXRSTOR/XRSTOR move FOP, FIP and FDP, and what they do with FSW.ES.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum X87Pointers {
    /// Intel SDM Vol. 1 §10.5.1 and Table 10-2 (FXSAVE area), Vol. 2 FXSAVE/FXRSTOR and XRSTOR
    /// ("x87 state" is FCW, FSW, FTW, FOP, FIP, FDP and the registers): the fields are always
    /// saved and always loaded, and FSW is loaded as the image holds it.
    Always,
    /// AMD64 APM Vol. 5, FXSAVE/FXRSTOR ("x87 FPU error pointers are saved/restored only if an
    /// unmasked exception is pending, FSW.ES = 1"), Vol. 4 XSAVE/XRSTOR by reference to it, and
    /// CPUID Fn8000_0008_EBX[2] XSaveErPtr in APM Vol. 3 Appendix E (the save side always
    /// stores them when set). On a restore the processor derives FSW.ES (bit 7) and FSW.B
    /// (bit 15) from the loaded exception flags and masks (an unmasked flag is a pending
    /// exception); without a pending exception FOP, FIP and FDP become zero, with one FIP and
    /// FDP are held as 48-bit canonical addresses. Checked against an AMD EPYC (family 25,
    /// XSaveErPtr set) by the "matches host" tests in xstate_tests.rs.
    OnPendingException { saved_always: bool },
}

/// FSW.ES, the error summary: some exception flag FSW[5:0] unmasked by FCW[5:0].
pub fn x87_exception_pending(fcw: u16, fsw: u16) -> bool {
    fsw & !fcw & 0x3f != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_strings_map_to_rules() {
        assert_eq!(
            CpuVendor::from_vendor_id(b"AuthenticAMD", true).x87_pointers(),
            X87Pointers::OnPendingException { saved_always: true }
        );
        assert_eq!(
            CpuVendor::from_vendor_id(b"HygonGenuine", false),
            CpuVendor::Amd {
                xsave_err_ptr: false
            }
        );
        assert_eq!(
            CpuVendor::from_vendor_id(b"GenuineIntel", true).x87_pointers(),
            X87Pointers::Always
        );
        assert_eq!(
            CpuVendor::from_vendor_id(b"CentaurHauls", false),
            CpuVendor::Intel
        );
    }

    #[test]
    fn error_summary_follows_unmasked_flags() {
        assert!(!x87_exception_pending(0x037f, 0x0001)); // IE flagged, masked
        assert!(x87_exception_pending(0x037e, 0x0001)); // IE flagged, unmasked
        assert!(!x87_exception_pending(0x037e, 0x0080)); // ES alone is no exception
        assert!(x87_exception_pending(0x035f, 0x0020)); // PE unmasked
    }

    #[test]
    fn host_vendor_is_known() {
        let v = CpuVendor::host();
        eprintln!("host CPU vendor rules: {v:?}");
        let l0 = std::arch::x86_64::__cpuid(0);
        let amd = l0.ebx.to_le_bytes() == *b"Auth" || l0.ebx.to_le_bytes() == *b"Hygo";
        assert_eq!(matches!(v, CpuVendor::Amd { .. }), amd);
    }
}
