//! A KVM VM with guest memory registered and the in-kernel irqchip (PIC, IOAPIC, LAPICs).

use kvm_bindings::{kvm_pit_config, kvm_userspace_memory_region, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{Address, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("cannot open /dev/kvm: {0}")]
    OpenKvm(kvm_ioctls::Error),
    #[error("KVM {what} failed: {source}")]
    Ioctl {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
}

/// /dev/kvm as the parent handed it over (a jailed monitor has no /dev), else opened here.
fn open_kvm() -> Result<Kvm, kvm_ioctls::Error> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    let path = std::path::Path::new("/dev/kvm");
    if !crate::jail::files::is_handed_over(path) {
        return Kvm::new();
    }
    let file = crate::jail::files::open_read(path)
        .map_err(|e| kvm_ioctls::Error::new(e.raw_os_error().unwrap_or(libc::EBADF)))?;
    // SAFETY: the descriptor is a fresh duplicate, owned by nothing else once into_raw_fd()
    // gave it up, of the /dev/kvm the parent opened read-write for this monitor.
    Ok(unsafe { Kvm::from_raw_fd(file.into_raw_fd()) })
}

fn ioctl(what: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> VmError {
    move |source| VmError::Ioctl { what, source }
}

/// TSS and identity-map page for Intel VMX's real-mode emulation, just below the BIOS.
const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
const KVM_IDENTITY_MAP_ADDRESS: u64 = 0xfffb_c000;

pub struct Vm {
    pub kvm: Kvm,
    pub fd: VmFd,
    /// Whether the in-kernel i8254 exists (a snapshot saves its state only then).
    pub has_pit: bool,
}

impl Vm {
    /// Creates the VM, registers `mem` and sets up the irqchip. `with_pit` adds the in-kernel
    /// i8254 (used by older kernels for calibration; a PVM host runs without it).
    pub fn new(mem: &GuestMemoryMmap, with_pit: bool) -> Result<Vm, VmError> {
        let kvm = open_kvm().map_err(VmError::OpenKvm)?;
        let fd = kvm.create_vm().map_err(ioctl("KVM_CREATE_VM"))?;
        for (slot, region) in mem.iter().enumerate() {
            let host = region
                .get_host_address(vm_memory::MemoryRegionAddress(0))
                .expect("a mapped region has a host address at offset 0");
            let r = kvm_userspace_memory_region {
                slot: slot as u32,
                flags: 0,
                guest_phys_addr: region.start_addr().raw_value(),
                memory_size: region.len(),
                userspace_addr: host as u64,
            };
            // SAFETY: `host` is the start of a live mapping of `region.len()` bytes that
            // `mem` owns; `mem` (and clones of it held by devices and vCPUs) outlives the VM
            // fd, so KVM never sees the mapping go away while the guest can use it. Slots
            // are distinct and the ranges come from non-overlapping regions.
            unsafe { fd.set_user_memory_region(r) }.map_err(ioctl("KVM_SET_USER_MEMORY_REGION"))?;
        }
        fd.set_tss_address(KVM_TSS_ADDRESS)
            .map_err(ioctl("KVM_SET_TSS_ADDR"))?;
        fd.set_identity_map_address(KVM_IDENTITY_MAP_ADDRESS)
            .map_err(ioctl("KVM_SET_IDENTITY_MAP_ADDR"))?;
        fd.create_irq_chip().map_err(ioctl("KVM_CREATE_IRQCHIP"))?;
        if with_pit {
            let pit = kvm_pit_config {
                flags: KVM_PIT_SPEAKER_DUMMY,
                ..Default::default()
            };
            fd.create_pit2(pit).map_err(ioctl("KVM_CREATE_PIT2"))?;
        }
        Ok(Vm {
            kvm,
            fd,
            has_pit: with_pit,
        })
    }
}
