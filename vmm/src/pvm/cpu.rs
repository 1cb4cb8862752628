//! The vCPU state the PVM emulator and the SYSCALL repair read and write, behind a trait so
//! their logic is tested without /dev/kvm; [`KvmCpu`] implements it over a real `VcpuFd`.

use kvm_bindings::{kvm_msr_entry, kvm_regs, kvm_sregs, kvm_xsave, Msrs};
use kvm_ioctls::VcpuFd;

/// Size of the legacy `kvm_xsave` region: standard (non-compacted) XSAVE format, the layout
/// KVM_GET_XSAVE/KVM_SET_XSAVE use (Documentation/virt/kvm/api.rst, 4.42).
pub const XSAVE_AREA_SIZE: usize = 4096;

/// An exception to deliver to the guest (SDM Vol. 3A §6.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exception {
    pub vector: u8,
    pub error_code: Option<u32>,
    /// For #PF: the faulting linear address, written to CR2 before delivery.
    pub cr2: Option<u64>,
}

impl Exception {
    pub const DB: u8 = 1;
    pub const BP: u8 = 3;
    pub const UD: u8 = 6;
    pub const NM: u8 = 7;
    pub const SS: u8 = 12;
    pub const GP: u8 = 13;
    pub const PF: u8 = 14;
    pub const MF: u8 = 16;

    /// An exception without error code (#UD, #NM, #BP, #MF, #DB).
    pub const fn new(vector: u8) -> Self {
        Self {
            vector,
            error_code: None,
            cr2: None,
        }
    }

    /// An exception that pushes an error code (#GP, #SS).
    pub const fn with_code(vector: u8, code: u32) -> Self {
        Self {
            vector,
            error_code: Some(code),
            cr2: None,
        }
    }

    /// #GP(0).
    pub const fn gp0() -> Self {
        Self::with_code(Self::GP, 0)
    }

    /// #PF with CR2 = `addr` (SDM Vol. 3A §4.7 for the error code).
    pub const fn page_fault(addr: u64, code: u32) -> Self {
        Self {
            vector: Self::PF,
            error_code: Some(code),
            cr2: Some(addr),
        }
    }

    /// Mnemonic of the vector, for counters and messages.
    pub fn name(&self) -> &'static str {
        match self.vector {
            0 => "de",
            Self::DB => "db",
            Self::BP => "bp",
            Self::UD => "ud",
            Self::NM => "nm",
            Self::SS => "ss",
            Self::GP => "gp",
            Self::PF => "pf",
            Self::MF => "mf",
            _ => "other",
        }
    }
}

/// A vCPU ioctl failed.
#[derive(Debug, thiserror::Error)]
#[error("{op} failed: {source}")]
pub struct CpuError {
    pub op: &'static str,
    #[source]
    pub source: kvm_ioctls::Error,
}

impl CpuError {
    pub fn new(op: &'static str, source: kvm_ioctls::Error) -> Self {
        Self { op, source }
    }

    /// An error for a call that needs no ioctl error number (used by the test doubles).
    pub fn invalid(op: &'static str) -> Self {
        Self {
            op,
            source: kvm_ioctls::Error::new(libc::EINVAL),
        }
    }

    /// True when KVM refused the value (EINVAL), which for XSETBV means #GP.
    pub fn is_einval(&self) -> bool {
        self.source.errno() == libc::EINVAL
    }
}

/// Register state of one vCPU as the emulator needs it.
pub trait CpuState {
    fn regs(&mut self) -> Result<kvm_regs, CpuError>;
    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), CpuError>;
    fn sregs(&mut self) -> Result<kvm_sregs, CpuError>;
    fn set_sregs(&mut self, sregs: &kvm_sregs) -> Result<(), CpuError>;
    /// The XSAVE state in standard format, [`XSAVE_AREA_SIZE`] bytes.
    fn xsave_area(&mut self) -> Result<Vec<u8>, CpuError>;
    fn set_xsave_area(&mut self, area: &[u8]) -> Result<(), CpuError>;
    fn xcr0(&mut self) -> Result<u64, CpuError>;
    fn set_xcr0(&mut self, value: u64) -> Result<(), CpuError>;
    /// Reads MSRs in one go; the result has one value per index.
    fn read_msrs(&mut self, indices: &[u32]) -> Result<Vec<u64>, CpuError>;
    /// Delivers `exc` on the next entry (as an already-injected exception: KVM drops
    /// `pending` exceptions on PVM).
    fn inject(&mut self, exc: Exception) -> Result<(), CpuError>;

    fn msr(&mut self, index: u32) -> Result<u64, CpuError> {
        let values = self.read_msrs(&[index])?;
        values
            .first()
            .copied()
            .ok_or_else(|| CpuError::invalid("KVM_GET_MSRS"))
    }
}

/// [`CpuState`] over a real vCPU file descriptor. Meant to live for the handling of one exit:
/// it caches the general and segment registers it has read or written.
pub struct KvmCpu<'a> {
    fd: &'a VcpuFd,
    regs: Option<kvm_regs>,
    sregs: Option<kvm_sregs>,
}

impl<'a> KvmCpu<'a> {
    pub fn new(fd: &'a VcpuFd) -> Self {
        Self {
            fd,
            regs: None,
            sregs: None,
        }
    }

    pub fn fd(&self) -> &'a VcpuFd {
        self.fd
    }
}

impl CpuState for KvmCpu<'_> {
    fn regs(&mut self) -> Result<kvm_regs, CpuError> {
        if let Some(r) = self.regs {
            return Ok(r);
        }
        let r = self
            .fd
            .get_regs()
            .map_err(|e| CpuError::new("KVM_GET_REGS", e))?;
        self.regs = Some(r);
        Ok(r)
    }

    fn set_regs(&mut self, regs: &kvm_regs) -> Result<(), CpuError> {
        self.regs = None;
        self.fd
            .set_regs(regs)
            .map_err(|e| CpuError::new("KVM_SET_REGS", e))?;
        self.regs = Some(*regs);
        Ok(())
    }

    fn sregs(&mut self) -> Result<kvm_sregs, CpuError> {
        if let Some(s) = self.sregs {
            return Ok(s);
        }
        let s = self
            .fd
            .get_sregs()
            .map_err(|e| CpuError::new("KVM_GET_SREGS", e))?;
        self.sregs = Some(s);
        Ok(s)
    }

    fn set_sregs(&mut self, sregs: &kvm_sregs) -> Result<(), CpuError> {
        self.sregs = None;
        self.fd
            .set_sregs(sregs)
            .map_err(|e| CpuError::new("KVM_SET_SREGS", e))?;
        // KVM normalises some fields (e.g. the pending-interrupt bitmap), so re-read next time.
        Ok(())
    }

    fn xsave_area(&mut self) -> Result<Vec<u8>, CpuError> {
        let xsave = self
            .fd
            .get_xsave()
            .map_err(|e| CpuError::new("KVM_GET_XSAVE", e))?;
        Ok(xsave.region.iter().flat_map(|w| w.to_le_bytes()).collect())
    }

    fn set_xsave_area(&mut self, area: &[u8]) -> Result<(), CpuError> {
        if area.len() != XSAVE_AREA_SIZE {
            return Err(CpuError::invalid("KVM_SET_XSAVE"));
        }
        let mut xsave = kvm_xsave::default();
        for (word, bytes) in xsave.region.iter_mut().zip(area.chunks_exact(4)) {
            *word = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        // SAFETY: `xsave` is a full 4096-byte kvm_xsave. KVM copies more than that only when the
        // process asked for dynamically enabled guest xstate (ARCH_REQ_XCOMP_GUEST_PERM, e.g.
        // AMX), which this monitor never does, so the kernel reads only memory we own.
        unsafe { self.fd.set_xsave(&xsave) }.map_err(|e| CpuError::new("KVM_SET_XSAVE", e))
    }

    fn xcr0(&mut self) -> Result<u64, CpuError> {
        let xcrs = self
            .fd
            .get_xcrs()
            .map_err(|e| CpuError::new("KVM_GET_XCRS", e))?;
        let count = (xcrs.nr_xcrs as usize).min(xcrs.xcrs.len());
        xcrs.xcrs[..count]
            .iter()
            .find(|x| x.xcr == 0)
            .map(|x| x.value)
            .ok_or_else(|| CpuError::invalid("KVM_GET_XCRS (no XCR0)"))
    }

    fn set_xcr0(&mut self, value: u64) -> Result<(), CpuError> {
        let mut xcrs = self
            .fd
            .get_xcrs()
            .map_err(|e| CpuError::new("KVM_GET_XCRS", e))?;
        xcrs.nr_xcrs = 1;
        xcrs.xcrs[0].xcr = 0;
        xcrs.xcrs[0].value = value;
        self.fd
            .set_xcrs(&xcrs)
            .map_err(|e| CpuError::new("KVM_SET_XCRS", e))
    }

    fn read_msrs(&mut self, indices: &[u32]) -> Result<Vec<u64>, CpuError> {
        let entries: Vec<kvm_msr_entry> = indices
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs =
            Msrs::from_entries(&entries).map_err(|_| CpuError::invalid("KVM_GET_MSRS"))?;
        let read = self
            .fd
            .get_msrs(&mut msrs)
            .map_err(|e| CpuError::new("KVM_GET_MSRS", e))?;
        if read != indices.len() {
            return Err(CpuError::invalid("KVM_GET_MSRS (MSR not readable)"));
        }
        Ok(msrs.as_slice().iter().map(|e| e.data).collect())
    }

    fn inject(&mut self, exc: Exception) -> Result<(), CpuError> {
        if let Some(cr2) = exc.cr2 {
            let mut sregs = self.sregs()?;
            sregs.cr2 = cr2;
            self.set_sregs(&sregs)?;
        }
        let mut events = self
            .fd
            .get_vcpu_events()
            .map_err(|e| CpuError::new("KVM_GET_VCPU_EVENTS", e))?;
        events.exception.injected = 1;
        events.exception.pending = 0;
        events.exception.nr = exc.vector;
        events.exception.has_error_code = u8::from(exc.error_code.is_some());
        events.exception.error_code = exc.error_code.unwrap_or(0);
        events.exception_has_payload = 0;
        events.exception_payload = 0;
        events.flags &= !kvm_bindings::KVM_VCPUEVENT_VALID_PAYLOAD;
        self.fd
            .set_vcpu_events(&events)
            .map_err(|e| CpuError::new("KVM_SET_VCPU_EVENTS", e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exception_constructors() {
        let pf = Exception::page_fault(0xdead_b000, 0x7);
        assert_eq!(pf.vector, 14);
        assert_eq!(pf.error_code, Some(7));
        assert_eq!(pf.cr2, Some(0xdead_b000));
        assert_eq!(pf.name(), "pf");
        assert_eq!(Exception::gp0(), Exception::with_code(13, 0));
        assert_eq!(Exception::new(Exception::BP).error_code, None);
    }

    #[test]
    fn einval_is_recognised() {
        assert!(CpuError::invalid("x").is_einval());
        let other = CpuError::new("y", kvm_ioctls::Error::new(libc::EFAULT));
        assert!(!other.is_einval());
        assert_eq!(other.to_string().split(':').next(), Some("y failed"));
    }
}
