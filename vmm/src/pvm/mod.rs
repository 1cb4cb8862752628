//! Running guests on a PVM host (`kvm_pvm`: shadow paging plus an instruction emulator for
//! guest kernel mode). Nothing here is entered on hardware KVM: the builder asks
//! [`is_pvm_host`] once at start and only then creates a [`PvmVcpu`] per vCPU.
//!
//! Owns: detection, the PVM CPU template, guest command-line additions, emulation of the
//! instructions the host's emulator lacks (`KVM_EXIT_INTERNAL_ERROR`), the repair of
//! user-mode SYSCALL (`KVM_EXIT_DEBUG` on a hardware breakpoint), and
//! counters of all of it. See README.md beside this file.

mod alu;
mod cmdline;
mod cpu;
mod cpuid;
mod decode;
mod emulate;
mod entry;
mod fpu;
mod mmu;
pub(crate) mod seccomp;
mod stats;
mod syscall;
mod vendor;
mod xstate;

#[cfg(test)]
mod kvm_tests;
#[cfg(any(test, feature = "test-doubles"))]
#[doc(hidden)]
pub mod testutil;

use std::sync::Arc;
use std::time::Instant;

use kvm_bindings::{
    kvm_debug_exit_arch, KVM_EXIT_INTERNAL_ERROR, KVM_INTERNAL_ERROR_EMULATION,
    KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES,
};
use kvm_ioctls::VcpuFd;
use vm_memory::GuestMemoryMmap;

pub use cmdline::{guest_cmdline, merge_boot_args, PVM_BOOT_ARGS};
pub use cpu::{CpuError, CpuState, Exception, KvmCpu};
pub use cpuid::apply_cpu_template;
pub use emulate::{emulate, EmulateError, Emulated, EmulatorConfig};
pub use mmu::{GuestVirtMem, MemError, PagedMemory, Paging};
pub use stats::PvmStats;
pub use syscall::{DebugOutcome, RepairError, SyscallRepair};

/// True when /dev/kvm is provided by the `kvm_pvm` module. Asked of /sys once, at the first
/// call, which the monitor makes before it enters its jail (where /sys is not mounted).
pub fn is_pvm_host() -> bool {
    static PVM: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *PVM.get_or_init(|| std::path::Path::new("/sys/module/kvm_pvm").exists())
}

/// What stops a guest on a PVM host. Emulation errors name RIP, the bytes and the mnemonic.
#[derive(Debug, thiserror::Error)]
pub enum PvmError {
    #[error("vCPU {index}: {source}")]
    Emulation {
        index: u8,
        #[source]
        source: EmulateError,
    },
    #[error(
        "vCPU {index}: KVM internal error, suberror {suberror}, at RIP {rip:#x} (data {data:x?})"
    )]
    InternalError {
        index: u8,
        suberror: u32,
        rip: u64,
        data: Vec<u64>,
    },
    #[error("vCPU {index}: exit reason {exit_reason} passed to the PVM internal-error handler")]
    NotInternalError { index: u8, exit_reason: u32 },
    #[error("vCPU {index}: SYSCALL repair: {source}")]
    Repair {
        index: u8,
        #[source]
        source: RepairError,
    },
    #[error("vCPU {index}: {source}")]
    Cpu {
        index: u8,
        #[source]
        source: CpuError,
    },
}

/// The instruction bytes KVM reports with `KVM_INTERNAL_ERROR_EMULATION` when
/// `KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES` is set: `data[0]` holds the flags,
/// then a length byte and up to 15 bytes packed little-endian into `data[1]` and `data[2]`
/// (`struct emulation_failure` in include/uapi/linux/kvm.h).
pub fn reported_instruction_bytes(ndata: u32, data: &[u64]) -> Option<Vec<u8>> {
    if ndata < 3 || data.len() < 3 {
        return None;
    }
    if data[0] & u64::from(KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) == 0 {
        return None;
    }
    let mut packed = [0u8; 16];
    packed[..8].copy_from_slice(&data[1].to_le_bytes());
    packed[8..].copy_from_slice(&data[2].to_le_bytes());
    let len = usize::from(packed[0]).min(15);
    if len == 0 {
        return None;
    }
    Some(packed[1..1 + len].to_vec())
}

/// PVM state of one vCPU, driven by the vCPU thread's run loop.
pub struct PvmVcpu {
    index: u8,
    stats: Arc<PvmStats>,
    config: EmulatorConfig,
    repair: SyscallRepair,
}

impl PvmVcpu {
    pub fn new(index: u8, stats: Arc<PvmStats>) -> Self {
        Self {
            index,
            stats,
            config: EmulatorConfig::for_host(),
            repair: SyscallRepair::new(),
        }
    }

    /// Called after every VM exit the loop handled and before re-entering KVM_RUN; cheap;
    /// re-arms the breakpoint when IDT/LSTAR moved (rate-limited).
    pub fn before_run(&mut self, vcpu: &VcpuFd, mem: &GuestMemoryMmap) -> Result<(), PvmError> {
        let mut cpu = KvmCpu::new(vcpu);
        self.repair
            .before_run(&mut cpu, mem, &self.stats, Instant::now())
            .map_err(|source| PvmError::Repair {
                index: self.index,
                source,
            })
    }

    /// KVM_EXIT_INTERNAL_ERROR: reads suberror/data from vcpu.get_kvm_run() itself.
    pub fn handle_internal_error(
        &mut self,
        vcpu: &mut VcpuFd,
        mem: &GuestMemoryMmap,
    ) -> Result<(), PvmError> {
        let index = self.index;
        let run = vcpu.get_kvm_run();
        if run.exit_reason != KVM_EXIT_INTERNAL_ERROR {
            return Err(PvmError::NotInternalError {
                index,
                exit_reason: run.exit_reason,
            });
        }
        // SAFETY: exit_reason is KVM_EXIT_INTERNAL_ERROR, so `internal` is the member KVM
        // filled; it consists of integers only, so every bit pattern is a valid value.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let ndata = internal.ndata.min(internal.data.len() as u32);
        let data = internal.data[..ndata as usize].to_vec();

        let vcpu: &VcpuFd = vcpu;
        let mut cpu = KvmCpu::new(vcpu);
        let cpu_err = |source| PvmError::Cpu { index, source };
        let regs = cpu.regs().map_err(cpu_err)?;
        if internal.suberror != KVM_INTERNAL_ERROR_EMULATION {
            self.stats.count_emulation_error();
            return Err(PvmError::InternalError {
                index,
                suberror: internal.suberror,
                rip: regs.rip,
                data,
            });
        }
        let sregs = cpu.sregs().map_err(cpu_err)?;
        let mut mem = PagedMemory::new(mem, Paging::from_sregs(&sregs, regs.rflags));
        let bytes = match reported_instruction_bytes(internal.ndata, &internal.data) {
            Some(b) => b,
            None => fetch_at_rip(&mem, regs.rip),
        };
        match emulate(&mut cpu, &mut mem, &self.config, &bytes) {
            Ok(done) => {
                self.stats.count_emulated(&done);
                Ok(())
            }
            Err(source) => {
                self.stats.count_emulation_error();
                Err(PvmError::Emulation { index, source })
            }
        }
    }

    /// KVM_EXIT_DEBUG.
    pub fn handle_debug(
        &mut self,
        vcpu: &mut VcpuFd,
        mem: &GuestMemoryMmap,
        arch: &kvm_debug_exit_arch,
    ) -> Result<(), PvmError> {
        let vcpu: &VcpuFd = vcpu;
        let mut cpu = KvmCpu::new(vcpu);
        self.repair
            .handle_debug(&mut cpu, mem, arch, &self.stats)
            .map(|_| ())
            .map_err(|source| PvmError::Repair {
                index: self.index,
                source,
            })
    }

    /// The guest rebooted (or was reset): forget armed state.
    pub fn reset(&mut self) {
        self.repair.reset();
    }

    /// KVM_RUN failed with `err`: true when the caller should simply re-enter. A secondary
    /// vCPU's KVM_RUN returns EAGAIN once when it leaves wait-for-SIPI on PVM.
    pub fn should_retry_run(&self, err: &kvm_ioctls::Error) -> bool {
        if err.errno() == libc::EAGAIN {
            self.stats.count_run_eagain();
            return true;
        }
        false
    }
}

/// Up to 15 instruction bytes at `rip`, stopping at the first page that cannot be read.
fn fetch_at_rip(mem: &PagedMemory<'_>, rip: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(15);
    let first = ((0x1000 - (rip & 0xfff)) as usize).min(15);
    let mut buf = [0u8; 15];
    if mem.peek(rip, &mut buf[..first]).is_ok() {
        out.extend_from_slice(&buf[..first]);
        if first < 15
            && mem
                .peek(rip.wrapping_add(first as u64), &mut buf[first..])
                .is_ok()
        {
            out.extend_from_slice(&buf[first..]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instruction_bytes_unpack_little_endian() {
        // popcnt rax, rbx = f3 48 0f b8 c3, reported with length 15 (trailing bytes follow).
        let bytes: [u8; 15] = [
            0xf3, 0x48, 0x0f, 0xb8, 0xc3, 0x90, 1, 2, 3, 4, 5, 6, 7, 8, 9,
        ];
        let mut packed = [0u8; 16];
        packed[0] = 15;
        packed[1..].copy_from_slice(&bytes);
        let d1 = u64::from_le_bytes(packed[..8].try_into().unwrap());
        let d2 = u64::from_le_bytes(packed[8..].try_into().unwrap());
        let data = [1u64, d1, d2, 0];
        assert_eq!(reported_instruction_bytes(3, &data), Some(bytes.to_vec()));
        assert_eq!(d1 & 0xff, 15);
        // Without the flag, or with too little data, KVM gave no bytes.
        assert_eq!(reported_instruction_bytes(3, &[0, d1, d2]), None);
        assert_eq!(reported_instruction_bytes(2, &data), None);
        // A short report is honoured.
        let short = [1u64, 0x0000_00b8_0f48_f304, 0];
        assert_eq!(
            reported_instruction_bytes(3, &short),
            Some(vec![0xf3, 0x48, 0x0f, 0xb8])
        );
    }

    #[test]
    fn fetch_at_rip_stops_at_unreadable_pages() {
        let (gm, cr3) = mmu::tests::guest_with_tables(false);
        let pm = PagedMemory::new(&gm, mmu::tests::paging(cr3, false));
        // Page 3 → page 4 (not present): only the bytes before the boundary.
        let rip = 0x40_0000_0000 + 4 * 4096 - 6;
        assert_eq!(fetch_at_rip(&pm, rip).len(), 6);
        assert_eq!(fetch_at_rip(&pm, 0x40_0000_0000 + 0x10).len(), 15);
        assert!(fetch_at_rip(&pm, 0x40_0000_0000 + 4 * 4096).is_empty());
    }

    #[test]
    fn error_messages_name_the_vcpu_and_rip() {
        let e = PvmError::InternalError {
            index: 2,
            suberror: 3,
            rip: 0xffff_ffff_8100_0000,
            data: vec![0x10],
        };
        let msg = e.to_string();
        assert!(
            msg.contains("vCPU 2")
                && msg.contains("0xffffffff81000000")
                && msg.contains("suberror 3"),
            "{msg}"
        );
    }
}
