//! The KVM VM and its vCPUs: guest memory registration, the in-kernel irqchip, and one
//! thread per vCPU running KVM_RUN.

pub mod memory;
pub mod vcpu;
pub mod vm;
