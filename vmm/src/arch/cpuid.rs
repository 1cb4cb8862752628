//! The CPUID table each vCPU gets: KVM's supported set, with this vCPU's topology and the
//! hypervisor bit. Host-specific templates (see `crate::pvm`) are applied on top.

use kvm_bindings::CpuId;

const LEAF_FEATURES: u32 = 0x1;
const LEAF_CACHE: u32 = 0x4;
const LEAF_TOPOLOGY: u32 = 0xb;
const LEAF_TOPOLOGY_V2: u32 = 0x1f;
const ECX_HYPERVISOR_BIT: u32 = 31;
const EDX_HTT_BIT: u32 = 28;

/// Sets the APIC id and CPU count that this vCPU reports: one package of `count` cores, one
/// thread each.
pub fn set_topology(cpuid: &mut CpuId, index: u8, count: u8) {
    let shift = (u32::from(count).max(1))
        .next_power_of_two()
        .trailing_zeros();
    for e in cpuid.as_mut_slice().iter_mut() {
        match e.function {
            LEAF_FEATURES => {
                e.ebx = (e.ebx & 0x0000_ffff) | (u32::from(index) << 24) | (u32::from(count) << 16);
                e.ecx |= 1 << ECX_HYPERVISOR_BIT;
                if count > 1 {
                    e.edx |= 1 << EDX_HTT_BIT;
                }
            }
            LEAF_CACHE => {
                e.eax = (e.eax & 0x03ff_ffff) | ((u32::from(count) - 1) << 26);
                e.eax &= !(0xfff << 14);
            }
            LEAF_TOPOLOGY | LEAF_TOPOLOGY_V2 => {
                e.edx = u32::from(index);
                match e.index {
                    // SMT level: one thread per core.
                    0 => {
                        e.eax = 0;
                        e.ebx = 1;
                        e.ecx = (1 << 8) | e.index;
                    }
                    // Core level: `count` cores in the package.
                    1 => {
                        e.eax = shift;
                        e.ebx = u32::from(count);
                        e.ecx = (2 << 8) | e.index;
                    }
                    _ => {
                        e.eax = 0;
                        e.ebx = 0;
                        e.ecx = e.index;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn topology_reports_index_and_count() {
        let entries = [
            kvm_cpuid_entry2 {
                function: 1,
                ebx: 0x0000_0800,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 1,
                ..Default::default()
            },
        ];
        let mut cpuid = CpuId::from_entries(&entries).unwrap();
        set_topology(&mut cpuid, 3, 4);
        let e = cpuid.as_slice();
        assert_eq!(e[0].ebx >> 24, 3);
        assert_eq!((e[0].ebx >> 16) & 0xff, 4);
        assert_eq!(e[0].ebx & 0xffff, 0x0800);
        assert_ne!(e[0].ecx & (1 << 31), 0);
        assert_eq!((e[1].eax, e[1].ebx, e[1].edx), (2, 4, 3));
    }
}
