//! x86_64 specifics: the guest physical memory layout, boot-time registers and CPUID.

pub mod cpuid;
pub mod layout;
pub mod regs;
