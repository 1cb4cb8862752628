//! The KVM ioctl request numbers the filters name (linux/kvm.h; KVMIO is 0xAE). kvm-ioctls
//! keeps its own private, so they are spelled out here with vmm-sys-util's macros.
#![allow(non_snake_case)]

use kvm_bindings::{
    kvm_clock_data, kvm_cpuid2, kvm_debugregs, kvm_guest_debug, kvm_irqchip, kvm_lapic_state,
    kvm_mp_state, kvm_msrs, kvm_pit_state2, kvm_regs, kvm_sregs, kvm_vcpu_events, kvm_xcrs,
    kvm_xsave,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr, ioctl_iowr_nr};

const KVMIO: u32 = 0xAE;

ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
ioctl_iow_nr!(KVM_SET_REGS, KVMIO, 0x82, kvm_regs);
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
ioctl_iow_nr!(KVM_SET_SREGS, KVMIO, 0x84, kvm_sregs);
ioctl_iowr_nr!(KVM_GET_MSRS, KVMIO, 0x88, kvm_msrs);
ioctl_iow_nr!(KVM_SET_MSRS, KVMIO, 0x89, kvm_msrs);
ioctl_iow_nr!(KVM_SET_GUEST_DEBUG, KVMIO, 0x9b, kvm_guest_debug);
ioctl_ior_nr!(KVM_GET_VCPU_EVENTS, KVMIO, 0x9f, kvm_vcpu_events);
ioctl_iow_nr!(KVM_SET_VCPU_EVENTS, KVMIO, 0xa0, kvm_vcpu_events);
ioctl_ior_nr!(KVM_GET_XSAVE, KVMIO, 0xa4, kvm_xsave);
ioctl_iow_nr!(KVM_SET_XSAVE, KVMIO, 0xa5, kvm_xsave);
ioctl_ior_nr!(KVM_GET_XCRS, KVMIO, 0xa6, kvm_xcrs);
ioctl_iow_nr!(KVM_SET_XCRS, KVMIO, 0xa7, kvm_xcrs);
ioctl_ior_nr!(KVM_GET_LAPIC, KVMIO, 0x8e, kvm_lapic_state);
ioctl_iowr_nr!(KVM_GET_CPUID2, KVMIO, 0x91, kvm_cpuid2);
ioctl_ior_nr!(KVM_GET_MP_STATE, KVMIO, 0x98, kvm_mp_state);
ioctl_ior_nr!(KVM_GET_DEBUGREGS, KVMIO, 0xa1, kvm_debugregs);
ioctl_io_nr!(KVM_GET_TSC_KHZ, KVMIO, 0xa3);
ioctl_iowr_nr!(KVM_GET_IRQCHIP, KVMIO, 0x62, kvm_irqchip);
ioctl_ior_nr!(KVM_GET_CLOCK, KVMIO, 0x7c, kvm_clock_data);
ioctl_ior_nr!(KVM_GET_PIT2, KVMIO, 0x9f, kvm_pit_state2);

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_match_linux_kvm_h() {
        // Values from linux/kvm.h on x86-64.
        assert_eq!(super::KVM_RUN(), 0xae80);
        assert_eq!(super::KVM_GET_REGS(), 0x8090_ae81);
        assert_eq!(super::KVM_SET_SREGS(), 0x4138_ae84);
        assert_eq!(super::KVM_GET_MSRS(), 0xc008_ae88);
        assert_eq!(super::KVM_SET_GUEST_DEBUG(), 0x4048_ae9b);
        assert_eq!(super::KVM_GET_XSAVE(), 0x9000_aea4);
        assert_eq!(super::KVM_SET_XCRS(), 0x4188_aea7);
        assert_eq!(super::KVM_GET_LAPIC(), 0x8400_ae8e);
        assert_eq!(super::KVM_GET_CPUID2(), 0xc008_ae91);
        assert_eq!(super::KVM_GET_MP_STATE(), 0x8004_ae98);
        assert_eq!(super::KVM_GET_DEBUGREGS(), 0x8080_aea1);
        assert_eq!(super::KVM_GET_TSC_KHZ(), 0xaea3);
        assert_eq!(super::KVM_GET_IRQCHIP(), 0xc208_ae62);
        assert_eq!(super::KVM_GET_CLOCK(), 0x8030_ae7c);
        assert_eq!(super::KVM_GET_PIT2(), 0x8070_ae9f);
    }
}
