//! Counters of everything the PVM workarounds did, shared by all vCPUs of a guest and read
//! by the monitor's metrics (`snapshot`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use iced_x86::Mnemonic;

use super::emulate::{mnemonic_name, Emulated};

/// Lock-free PVM counters.
#[derive(Debug)]
pub struct PvmStats {
    /// Emulated instructions, indexed by iced's `Mnemonic`.
    emulated: Box<[AtomicU64]>,
    /// Exceptions the emulator delivered instead of (or after) an instruction, by vector.
    injected: [AtomicU64; 32],
    emulation_errors: AtomicU64,
    syscall_repairs: AtomicU64,
    pf_stepovers: AtomicU64,
    first_insn_skips: AtomicU64,
    single_steps: AtomicU64,
    rearm: AtomicU64,
    debug_stale: AtomicU64,
    debug_reinjected: AtomicU64,
    run_eagain: AtomicU64,
}

impl Default for PvmStats {
    fn default() -> Self {
        Self::new()
    }
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

impl PvmStats {
    pub fn new() -> Self {
        let mnemonics = Mnemonic::values().count();
        Self {
            emulated: (0..mnemonics).map(|_| AtomicU64::new(0)).collect(),
            injected: std::array::from_fn(|_| AtomicU64::new(0)),
            emulation_errors: AtomicU64::new(0),
            syscall_repairs: AtomicU64::new(0),
            pf_stepovers: AtomicU64::new(0),
            first_insn_skips: AtomicU64::new(0),
            single_steps: AtomicU64::new(0),
            rearm: AtomicU64::new(0),
            debug_stale: AtomicU64::new(0),
            debug_reinjected: AtomicU64::new(0),
            run_eagain: AtomicU64::new(0),
        }
    }

    pub(super) fn count_emulated(&self, e: &Emulated) {
        if let Some(c) = self.emulated.get(e.mnemonic as usize) {
            bump(c);
        }
        if let Some(exc) = e.injected {
            if let Some(c) = self.injected.get(usize::from(exc.vector)) {
                bump(c);
            }
        }
    }

    pub(super) fn count_emulation_error(&self) {
        bump(&self.emulation_errors);
    }
    pub(super) fn count_syscall_repair(&self) {
        bump(&self.syscall_repairs);
    }
    pub(super) fn count_pf_stepover(&self) {
        bump(&self.pf_stepovers);
    }
    pub(super) fn count_first_insn_skip(&self) {
        bump(&self.first_insn_skips);
    }
    pub(super) fn count_single_step(&self) {
        bump(&self.single_steps);
    }
    pub(super) fn count_rearm(&self) {
        bump(&self.rearm);
    }
    pub(super) fn count_debug_stale(&self) {
        bump(&self.debug_stale);
    }
    pub(super) fn count_debug_reinjected(&self) {
        bump(&self.debug_reinjected);
    }
    pub(super) fn count_run_eagain(&self) {
        bump(&self.run_eagain);
    }

    /// All counters by name: the fixed ones always, `emulated.<mnemonic>` and
    /// `injected.<exception>` only when non-zero.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let mut out = BTreeMap::new();
        for (name, c) in [
            ("emulation_errors", &self.emulation_errors),
            ("syscall_repairs", &self.syscall_repairs),
            ("pf_stepovers", &self.pf_stepovers),
            ("first_insn_skips", &self.first_insn_skips),
            ("single_steps", &self.single_steps),
            ("rearm", &self.rearm),
            ("debug_stale", &self.debug_stale),
            ("debug_reinjected", &self.debug_reinjected),
            ("run_eagain", &self.run_eagain),
        ] {
            out.insert(name.to_string(), load(c));
        }
        let mut total = 0;
        for (m, c) in Mnemonic::values().zip(self.emulated.iter()) {
            let n = load(c);
            if n > 0 {
                out.insert(format!("emulated.{}", mnemonic_name(m)), n);
                total += n;
            }
        }
        out.insert("emulated".to_string(), total);
        for (vector, c) in self.injected.iter().enumerate() {
            let n = load(c);
            if n > 0 {
                let name = super::cpu::Exception::new(vector as u8).name();
                let key = if name == "other" {
                    format!("injected.vector{vector}")
                } else {
                    format!("injected.{name}")
                };
                *out.entry(key).or_insert(0) += n;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pvm::cpu::Exception;

    #[test]
    fn snapshot_reports_counts_by_kind() {
        let s = PvmStats::new();
        let popcnt = Emulated {
            mnemonic: Mnemonic::Popcnt,
            injected: None,
        };
        let int3 = Emulated {
            mnemonic: Mnemonic::Int3,
            injected: Some(Exception::new(3)),
        };
        s.count_emulated(&popcnt);
        s.count_emulated(&popcnt);
        s.count_emulated(&int3);
        s.count_syscall_repair();
        s.count_pf_stepover();
        s.count_rearm();
        let snap = s.snapshot();
        assert_eq!(snap["emulated.popcnt"], 2);
        assert_eq!(snap["emulated.int3"], 1);
        assert_eq!(snap["emulated"], 3);
        assert_eq!(snap["injected.bp"], 1);
        assert_eq!(snap["syscall_repairs"], 1);
        assert_eq!(snap["pf_stepovers"], 1);
        assert_eq!(snap["rearm"], 1);
        assert_eq!(snap["single_steps"], 0);
        assert!(!snap.contains_key("emulated.cmpxchg16b"));
    }
}
