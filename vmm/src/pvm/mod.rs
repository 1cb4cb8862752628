//! Running guests on a PVM host (`kvm_pvm`: shadow paging plus an instruction emulator for
//! guest kernel mode). Nothing here is entered on hardware KVM: the builder asks
//! [`is_pvm_host`] once at start and only then creates a [`PvmVcpu`] per vCPU.
//!
//! Owns: detection, the PVM CPU template, guest command-line additions, emulation of the
//! instructions the host's emulator lacks (`KVM_EXIT_INTERNAL_ERROR`), the repair of
//! user-mode SYSCALL (`KVM_EXIT_DEBUG` on a hardware breakpoint), the tick policy, and
//! counters of all of it.

/// True when /dev/kvm is provided by the `kvm_pvm` module.
pub fn is_pvm_host() -> bool {
    std::path::Path::new("/sys/module/kvm_pvm").exists()
}

// --- Contract stubs until the PVM module lands (replaced wholesale by it). ---
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum PvmError {
    #[error("{0}")]
    Unhandled(String),
}

#[derive(Debug, Default)]
pub struct PvmStats {}

impl PvmStats {
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        BTreeMap::new()
    }
}

pub struct PvmVcpu {}

impl PvmVcpu {
    pub fn new(_index: u8, _stats: Arc<PvmStats>) -> Self {
        PvmVcpu {}
    }
    pub fn before_run(
        &mut self,
        _vcpu: &kvm_ioctls::VcpuFd,
        _mem: &vm_memory::GuestMemoryMmap,
    ) -> Result<(), PvmError> {
        Ok(())
    }
    pub fn handle_internal_error(
        &mut self,
        _vcpu: &mut kvm_ioctls::VcpuFd,
        _mem: &vm_memory::GuestMemoryMmap,
    ) -> Result<(), PvmError> {
        Err(PvmError::Unhandled("internal error".into()))
    }
    pub fn handle_debug(
        &mut self,
        _vcpu: &mut kvm_ioctls::VcpuFd,
        _mem: &vm_memory::GuestMemoryMmap,
        _arch: &kvm_bindings::kvm_debug_exit_arch,
    ) -> Result<(), PvmError> {
        Err(PvmError::Unhandled("debug".into()))
    }
    pub fn reset(&mut self) {}
}

pub fn apply_cpu_template(_cpuid: &mut kvm_bindings::CpuId) {}

pub fn guest_cmdline(user_boot_args: &str) -> String {
    user_boot_args.to_string()
}
