//! What KVM keeps for the whole VM: the kvm-clock and the in-kernel interrupt controllers
//! (both PICs and the IOAPIC, which `Vm::new` always creates) and the i8254 where it exists.

use kvm_bindings::{
    kvm_clock_data, kvm_irqchip, kvm_pit_state2, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE,
};
use serde::{Deserialize, Serialize};

use crate::vstate::vm::Vm;

#[derive(Debug, thiserror::Error)]
pub enum VmStateError {
    #[error("saving VM state: KVM {what} failed: {source}")]
    Save {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error("restoring VM state: KVM {what} failed: {source}")]
    Restore {
        what: &'static str,
        source: kvm_ioctls::Error,
    },
    #[error(
        "the snapshot {saved} an i8254 (PIT) and the new VM {new} one: restore on a host of the \
         same kind (PVM or hardware KVM) as the one that took it"
    )]
    PitMismatch {
        saved: &'static str,
        new: &'static str,
    },
}

#[derive(Debug, Serialize, Deserialize)]
pub struct VmState {
    pub clock: kvm_clock_data,
    pub pic_master: kvm_irqchip,
    pub pic_slave: kvm_irqchip,
    pub ioapic: kvm_irqchip,
    pub pit: Option<kvm_pit_state2>,
}

fn irqchip(vm: &Vm, chip_id: u32) -> Result<kvm_irqchip, VmStateError> {
    let mut chip = kvm_irqchip {
        chip_id,
        ..Default::default()
    };
    vm.fd
        .get_irqchip(&mut chip)
        .map_err(|source| VmStateError::Save {
            what: "KVM_GET_IRQCHIP",
            source,
        })?;
    Ok(chip)
}

impl VmState {
    /// Saves the state of a VM whose vCPUs are all paused.
    pub fn save(vm: &Vm) -> Result<VmState, VmStateError> {
        let mut clock = vm.fd.get_clock().map_err(|source| VmStateError::Save {
            what: "KVM_GET_CLOCK",
            source,
        })?;
        // The guest's clock resumes where it stopped, as its TSC does (restored from the
        // saved MSR): without REALTIME, KVM_SET_CLOCK does not add the time the snapshot
        // spent on disk. Wall-clock catch-up is the guest's NTP's business, as on any pause.
        clock.flags = 0;
        let pit = if vm.has_pit {
            Some(vm.fd.get_pit2().map_err(|source| VmStateError::Save {
                what: "KVM_GET_PIT2",
                source,
            })?)
        } else {
            None
        };
        Ok(VmState {
            clock,
            pic_master: irqchip(vm, KVM_IRQCHIP_PIC_MASTER)?,
            pic_slave: irqchip(vm, KVM_IRQCHIP_PIC_SLAVE)?,
            ioapic: irqchip(vm, KVM_IRQCHIP_IOAPIC)?,
            pit,
        })
    }

    /// Writes the state into a new VM, before any of its vCPUs runs.
    pub fn restore(&self, vm: &Vm) -> Result<(), VmStateError> {
        let set = |what: &'static str| move |source| VmStateError::Restore { what, source };
        let kind = |present: bool| if present { "has" } else { "has no" };
        match (&self.pit, vm.has_pit) {
            (Some(pit), true) => vm.fd.set_pit2(pit).map_err(set("KVM_SET_PIT2"))?,
            (None, false) => {}
            (saved, new) => {
                return Err(VmStateError::PitMismatch {
                    saved: kind(saved.is_some()),
                    new: kind(new),
                })
            }
        }
        vm.fd.set_clock(&self.clock).map_err(set("KVM_SET_CLOCK"))?;
        for chip in [&self.pic_master, &self.pic_slave, &self.ioapic] {
            vm.fd.set_irqchip(chip).map_err(set("KVM_SET_IRQCHIP"))?;
        }
        Ok(())
    }
}
