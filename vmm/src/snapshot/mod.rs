//! Snapshots of a guest: what its vCPUs hold (registers, MSRs, LAPIC, pending events), in a
//! versioned and checksummed state file, with guest memory in a file of its own that a
//! restore maps privately, so it costs what the guest touches rather than its size.

pub mod device_loop;
pub mod file;
pub mod guest;
pub mod memory;
pub mod vcpu;
pub mod vm;

#[cfg(test)]
mod kvm_tests;
