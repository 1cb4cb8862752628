//! One vCPU's architectural state as KVM exposes it, saved from a paused vCPU and written back
//! into a fresh one of a new VM. The order of both follows KVM's dependencies between the
//! pieces (see `restore`).

use kvm_bindings::{
    kvm_cpuid_entry2, kvm_debugregs, kvm_lapic_state, kvm_mp_state, kvm_msr_entry, kvm_regs,
    kvm_sregs, kvm_vcpu_events, kvm_xcrs, kvm_xsave, CpuId, Msrs, KVM_MAX_CPUID_ENTRIES,
};
use kvm_ioctls::{Kvm, VcpuFd};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum VcpuStateError {
    #[error("saving vCPU state: KVM {what} failed: {source}")]
    Save {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("restoring vCPU state: KVM {what} failed: {source}")]
    Restore {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error(
        "restoring vCPU state: KVM refused MSR {index:#x} (value {value:#x}); this host's KVM \
         cannot take the saved vCPU's state"
    )]
    MsrRefused { index: u32, value: u64 },
    #[error("the snapshot's CPUID has {0} entries, more than KVM takes ({KVM_MAX_CPUID_ENTRIES})")]
    CpuidTooLarge(usize),
}

/// Everything KVM keeps for one vCPU that a guest can observe.
#[derive(Debug, Serialize, Deserialize)]
pub struct VcpuState {
    /// The CPUID the vCPU was given: KVM checks MSRs and XSAVE components against it.
    pub cpuid: Vec<kvm_cpuid_entry2>,
    pub mp_state: kvm_mp_state,
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
    /// x87, SSE and AVX state in the standard (non-compacted) XSAVE layout; it carries MXCSR,
    /// which KVM_GET_FPU does not.
    pub xsave: kvm_xsave,
    pub xcrs: kvm_xcrs,
    pub debug_regs: kvm_debugregs,
    pub lapic: kvm_lapic_state,
    /// Every MSR of KVM_GET_MSR_INDEX_LIST this vCPU could read, in that list's order.
    pub msrs: Vec<kvm_msr_entry>,
    /// Pending or injected exception, interrupt and NMI, interrupt shadow, SMM.
    pub vcpu_events: kvm_vcpu_events,
    /// The guest TSC's frequency; a restore on a host with another one scales it to this.
    pub tsc_khz: Option<u32>,
}

/// The MSRs a snapshot saves: all KVM lists for this host.
pub fn saved_msr_indices(kvm: &Kvm) -> Result<Vec<u32>, VcpuStateError> {
    let list = kvm
        .get_msr_index_list()
        .map_err(|source| VcpuStateError::Save {
            what: "KVM_GET_MSR_INDEX_LIST",
            source,
        })?;
    Ok(list.as_slice().to_vec())
}

/// MSRs read or written per KVM_GET/SET_MSRS call: KVM stops at the first MSR it refuses,
/// so batches keep one refusal from costing a call per MSR.
const MSR_BATCH: usize = 64;

/// Reads `indices`; those KVM refuses to read on this vCPU (listed for the host, but not
/// enabled by this vCPU's CPUID) are left out, since the guest cannot have used them either.
fn read_msrs(vcpu: &VcpuFd, indices: &[u32]) -> Result<Vec<kvm_msr_entry>, VcpuStateError> {
    let save = |source| VcpuStateError::Save {
        what: "KVM_GET_MSRS",
        source,
    };
    let mut out = Vec::with_capacity(indices.len());
    let mut rest = indices;
    while !rest.is_empty() {
        let batch = &rest[..rest.len().min(MSR_BATCH)];
        let entries: Vec<_> = batch
            .iter()
            .map(|&index| kvm_msr_entry {
                index,
                ..Default::default()
            })
            .collect();
        let mut msrs = Msrs::from_entries(&entries).map_err(|_| {
            save(kvm_ioctls::Error::new(libc::E2BIG)) // MSR_BATCH is below the FAM limit.
        })?;
        let read = vcpu.get_msrs(&mut msrs).map_err(save)?;
        out.extend_from_slice(&msrs.as_slice()[..read]);
        // Skip the refused MSR (if any) and go on after it.
        rest = &rest[(read + 1).min(rest.len())..];
        if read == batch.len() {
            continue;
        }
        tracing::debug!(
            msr = batch[read],
            "KVM cannot read this MSR on this vCPU: not saved"
        );
    }
    Ok(out)
}

fn write_msrs(vcpu: &VcpuFd, msrs: &[kvm_msr_entry]) -> Result<(), VcpuStateError> {
    for batch in msrs.chunks(MSR_BATCH) {
        let wrapper = Msrs::from_entries(batch).map_err(|_| VcpuStateError::Restore {
            what: "KVM_SET_MSRS",
            source: kvm_ioctls::Error::new(libc::E2BIG),
        })?;
        let written = vcpu
            .set_msrs(&wrapper)
            .map_err(|source| VcpuStateError::Restore {
                what: "KVM_SET_MSRS",
                source,
            })?;
        if let Some(refused) = batch.get(written) {
            return Err(VcpuStateError::MsrRefused {
                index: refused.index,
                value: refused.data,
            });
        }
    }
    Ok(())
}

impl VcpuState {
    /// Saves the state of a vCPU that is out of KVM_RUN (paused) and stays there.
    pub fn save(vcpu: &VcpuFd, msr_indices: &[u32]) -> Result<VcpuState, VcpuStateError> {
        fn get<T>(
            what: &'static str,
            r: Result<T, kvm_ioctls::Error>,
        ) -> Result<T, VcpuStateError> {
            r.map_err(|source| VcpuStateError::Save { what, source })
        }
        // mp_state first: reading it makes KVM process pending INIT/SIPI, settling the
        // registers read after it.
        let mp_state = get("KVM_GET_MP_STATE", vcpu.get_mp_state())?;
        let cpuid = get("KVM_GET_CPUID2", vcpu.get_cpuid2(KVM_MAX_CPUID_ENTRIES))?;
        Ok(VcpuState {
            cpuid: cpuid.as_slice().to_vec(),
            mp_state,
            regs: get("KVM_GET_REGS", vcpu.get_regs())?,
            sregs: get("KVM_GET_SREGS", vcpu.get_sregs())?,
            xsave: get("KVM_GET_XSAVE", vcpu.get_xsave())?,
            xcrs: get("KVM_GET_XCRS", vcpu.get_xcrs())?,
            debug_regs: get("KVM_GET_DEBUGREGS", vcpu.get_debug_regs())?,
            lapic: get("KVM_GET_LAPIC", vcpu.get_lapic())?,
            msrs: read_msrs(vcpu, msr_indices)?,
            vcpu_events: get("KVM_GET_VCPU_EVENTS", vcpu.get_vcpu_events())?,
            // Not every KVM reports it (no KVM_CAP_GET_TSC_KHZ): then the host's is assumed.
            tsc_khz: vcpu.get_tsc_khz().ok(),
        })
    }

    /// Writes the state into a vCPU that has not run yet.
    pub fn restore(&self, vcpu: &VcpuFd) -> Result<(), VcpuStateError> {
        fn set(what: &'static str, r: Result<(), kvm_ioctls::Error>) -> Result<(), VcpuStateError> {
            r.map_err(|source| VcpuStateError::Restore { what, source })
        }
        // The TSC frequency before the TSC itself (an MSR below) is written in its units.
        if let Some(khz) = self.tsc_khz {
            if vcpu.get_tsc_khz().ok() != Some(khz) {
                set("KVM_SET_TSC_KHZ", vcpu.set_tsc_khz(khz))?;
            }
        }
        // CPUID before anything KVM validates against it (MSRs, XCR0, XSAVE components).
        let cpuid = CpuId::from_entries(&self.cpuid)
            .map_err(|_| VcpuStateError::CpuidTooLarge(self.cpuid.len()))?;
        set("KVM_SET_CPUID2", vcpu.set_cpuid2(&cpuid))?;
        set("KVM_SET_MP_STATE", vcpu.set_mp_state(self.mp_state))?;
        set("KVM_SET_REGS", vcpu.set_regs(&self.regs))?;
        set("KVM_SET_SREGS", vcpu.set_sregs(&self.sregs))?;
        set("KVM_SET_XCRS", vcpu.set_xcrs(&self.xcrs))?;
        // SAFETY: `self.xsave` is a whole 4096-byte kvm_xsave. KVM reads more than that only
        // when the process enabled dynamic guest xstate (ARCH_REQ_XCOMP_GUEST_PERM, e.g. AMX),
        // which this monitor never does, so the kernel reads only memory we own.
        set("KVM_SET_XSAVE", unsafe { vcpu.set_xsave(&self.xsave) })?;
        set("KVM_SET_DEBUGREGS", vcpu.set_debug_regs(&self.debug_regs))?;
        // The LAPIC before the MSRs: the TSC-deadline MSR is only taken by a LAPIC whose
        // timer is in TSC-deadline mode.
        set("KVM_SET_LAPIC", vcpu.set_lapic(&self.lapic))?;
        write_msrs(vcpu, &self.msrs)?;
        // Events last: setting the registers above may clear a pending exception.
        set(
            "KVM_SET_VCPU_EVENTS",
            vcpu.set_vcpu_events(&self.vcpu_events),
        )
    }
}

/// Finishes the exit a vCPU last took, inside KVM: after an I/O or MMIO exit KVM completes
/// the instruction (an IN's register write, an emulated OUT's RIP advance) only on the next
/// KVM_RUN, so state saved before that would replay or lose it. A KVM_RUN with
/// `immediate_exit` set completes it and returns EINTR without running guest code.
pub fn settle(vcpu: &mut VcpuFd) -> Result<(), VcpuStateError> {
    vcpu.set_kvm_immediate_exit(1);
    let ran = vcpu.run().map(|_| ());
    vcpu.set_kvm_immediate_exit(0);
    match ran {
        Err(e) if e.errno() == libc::EINTR => Ok(()),
        Err(source) => Err(VcpuStateError::Save {
            what: "KVM_RUN (immediate exit)",
            source,
        }),
        // KVM ran nothing but reported an exit anyway: the state is settled all the same.
        Ok(()) => Ok(()),
    }
}
