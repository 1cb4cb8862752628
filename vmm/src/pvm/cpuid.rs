//! The PVM CPU template: CPUID changes applied on top of `KVM_GET_SUPPORTED_CPUID` so the
//! guest avoids instructions PVM's CPL0 emulator lacks and paravirtual features that need
//! hypercalls (which never complete on PVM).
//!
//! PVM only honours part of the table (leaf 1: CX16, x2APIC, TSC-deadline, PCID, hypervisor;
//! leaf 0x80000001 fully; leaf 0x40000001); everything else the guest sees is the host's.
//! The rest (POPCNT, XSAVE, AVX, SMAP, ...) is hidden through the command line instead
//! (`clearcpuid=`, `noxsave`, see `cmdline.rs`).

use kvm_bindings::CpuId;

/// Leaf 1 ECX: CMPXCHG16B. Hidden so the kernel never takes its cmpxchg16b paths at CPL0.
pub const LEAF1_ECX_CX16: u32 = 1 << 13;
/// Leaf 0x80000001 EDX: RDTSCP.
pub const EXT1_EDX_RDTSCP: u32 = 1 << 27;
/// Leaf 0x80000001 ECX: ABM (LZCNT).
pub const EXT1_ECX_ABM: u32 = 1 << 5;

/// KVM paravirtual feature bits in leaf 0x40000001 EAX (Documentation/virt/kvm/x86/cpuid.rst).
pub mod kvm_feature {
    /// Halted vCPUs woken by the KVM_HC_KICK_CPU hypercall (PV spinlocks).
    pub const PV_UNHALT: u32 = 1 << 7;
    /// IPIs sent with the KVM_HC_SEND_IPI hypercall.
    pub const PV_SEND_IPI: u32 = 1 << 11;
    /// MSR_KVM_POLL_CONTROL: host-side halt polling control.
    pub const POLL_CONTROL: u32 = 1 << 12;
    /// Directed yield with the KVM_HC_SCHED_YIELD hypercall.
    pub const PV_SCHED_YIELD: u32 = 1 << 13;
    /// KVM_HC_MAP_GPA_RANGE hypercall.
    pub const HC_MAP_GPA_RANGE: u32 = 1 << 16;
}

/// The paravirtual features this template removes.
pub const HIDDEN_KVM_FEATURES: u32 = kvm_feature::PV_UNHALT
    | kvm_feature::PV_SEND_IPI
    | kvm_feature::POLL_CONTROL
    | kvm_feature::PV_SCHED_YIELD
    | kvm_feature::HC_MAP_GPA_RANGE;

/// Applies the PVM template to `cpuid` (normally `Kvm::get_supported_cpuid` output, before the
/// monitor's own per-vCPU adjustments).
pub fn apply_cpu_template(cpuid: &mut CpuId) {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            0x1 => entry.ecx &= !LEAF1_ECX_CX16,
            0x8000_0001 => {
                entry.edx &= !EXT1_EDX_RDTSCP;
                entry.ecx &= !EXT1_ECX_ABM;
            }
            0x4000_0001 => entry.eax &= !HIDDEN_KVM_FEATURES,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn entry(function: u32, eax: u32, ecx: u32, edx: u32) -> kvm_cpuid_entry2 {
        kvm_cpuid_entry2 {
            function,
            eax,
            ecx,
            edx,
            ebx: 0x5a5a,
            ..Default::default()
        }
    }

    #[test]
    fn template_clears_exactly_the_listed_bits() {
        let all = u32::MAX;
        let mut cpuid = CpuId::from_entries(&[
            entry(0x0, 0xd, all, all),
            entry(0x1, all, all, all),
            entry(0x7, all, all, all),
            entry(0x4000_0001, all, all, all),
            entry(0x8000_0001, all, all, all),
        ])
        .unwrap();
        apply_cpu_template(&mut cpuid);
        let e = cpuid.as_slice();
        assert_eq!((e[0].eax, e[0].ecx, e[0].edx), (0xd, all, all));
        assert_eq!((e[1].eax, e[1].ecx, e[1].edx), (all, all & !(1 << 13), all));
        assert_eq!((e[2].eax, e[2].ecx, e[2].edx), (all, all, all));
        assert_eq!(
            e[3].eax,
            all & !((1 << 7) | (1 << 11) | (1 << 12) | (1 << 13) | (1 << 16))
        );
        assert_eq!((e[3].ecx, e[3].edx), (all, all));
        assert_eq!((e[4].ecx, e[4].edx), (all & !(1 << 5), all & !(1 << 27)));
        assert!(e.iter().all(|x| x.ebx == 0x5a5a));
    }

    #[test]
    fn features_without_hypercalls_survive() {
        // CLOCKSOURCE2 (3), ASYNC_PF (4), STEAL_TIME (5), PV_EOI (6), PV_TLB_FLUSH (9),
        // MSI_EXT_DEST_ID (15), CLOCKSOURCE_STABLE (24).
        let keep = (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 9) | (1 << 15) | (1 << 24);
        let mut cpuid =
            CpuId::from_entries(&[entry(0x4000_0001, keep | kvm_feature::PV_UNHALT, 0, 0)])
                .unwrap();
        apply_cpu_template(&mut cpuid);
        assert_eq!(cpuid.as_slice()[0].eax, keep);
    }

    #[test]
    fn clean_leaves_stay_clean() {
        let mut cpuid =
            CpuId::from_entries(&[entry(0x1, 0, 0, 0), entry(0x8000_0001, 0, 0, 0)]).unwrap();
        apply_cpu_template(&mut cpuid);
        assert!(cpuid.as_slice().iter().all(|e| e.ecx == 0 && e.edx == 0));
    }
}
