//! What a vCPU thread needs beyond KVM_RUN on a PVM host: the instruction emulator reads and
//! writes the extended state, XCRs, MSRs and pending events, and the SYSCALL repair arms a
//! hardware breakpoint. Kept here so a hardware-KVM monitor's vCPU filter allows none of it.

use seccompiler::{BackendError, SeccompRule};
use std::collections::BTreeMap;

use crate::seccomp::ioctls as nr;

pub fn allow_vcpu(rules: &mut BTreeMap<i64, Vec<SeccompRule>>) -> Result<(), BackendError> {
    crate::seccomp::allow_ioctls(
        rules,
        &[
            nr::KVM_GET_XSAVE(),
            nr::KVM_SET_XSAVE(),
            nr::KVM_GET_XCRS(),
            nr::KVM_SET_XCRS(),
            nr::KVM_GET_MSRS(),
            nr::KVM_SET_MSRS(),
            nr::KVM_GET_VCPU_EVENTS(),
            nr::KVM_SET_VCPU_EVENTS(),
            nr::KVM_SET_GUEST_DEBUG(),
        ],
    )
}
