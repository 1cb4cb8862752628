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
