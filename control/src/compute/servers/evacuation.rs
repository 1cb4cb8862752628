//! What the site may do with a server when its box dies (docs/cluster.md, "Evacuation"): its
//! evacuation policy, set by the flavor's extra spec or the server's metadata under
//! [`POLICY_KEY`] (the metadata wins, as a per-server choice should), and the file in the
//! server's runtime folder that tells this box's fence about it without etcd.

use super::monitor::{self, ServerDir};
use super::runner::{retask, RunError, Runner};
use super::store::{PowerState, Server, TaskChange, VmState};
use crate::compute::migrations::{self, MigrationType};
use outpost_image_store::Provisioning;
use std::sync::{Condvar, Mutex, PoisonError};

/// The flavor extra spec and the server metadata key that choose the policy. Namespaced as
/// Nova's own scheduler hints are (`hw:`, `quota:`), so Nova's validators leave it alone.
pub const POLICY_KEY: &str = "outpost:evacuation";

/// The operation (a server's task kind) that builds an evacuated server on its new box, and
/// its first step, written by the move itself.
pub const EVACUATE: &str = "evacuate";
pub const EVACUATE_SCHEDULED: &str = "scheduled";

/// The policy's file in a server's runtime folder: the fence reads it while etcd, which holds
/// the record, may be unreachable.
const POLICY_FILE: &str = "evacuation";

/// What evacuation does with a server whose box died.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvacuationPolicy {
    /// Run it on another box: the root disk is made again from its image (Nova's evacuate
    /// without shared storage). Its box fences it before the site can move it.
    Rebuild,
    /// Wait for its box: nothing moves it, and its box's fence leaves it running.
    Stay,
}

impl EvacuationPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            EvacuationPolicy::Rebuild => "rebuild",
            EvacuationPolicy::Stay => "stay",
        }
    }

    pub fn parse(value: &str) -> Option<EvacuationPolicy> {
        match value {
            "rebuild" => Some(EvacuationPolicy::Rebuild),
            "stay" => Some(EvacuationPolicy::Stay),
            _ => None,
        }
    }

    /// The policy of `s`: its metadata's, else its flavor's, else `rebuild` for a server
    /// booted from an image and `stay` for one whose root is a volume (its data lives on its
    /// box). A value that slipped past validation (a record from an older outpostd) counts
    /// as absent.
    pub fn of(s: &Server) -> EvacuationPolicy {
        let chosen = |specs: &std::collections::BTreeMap<String, String>| {
            specs
                .get(POLICY_KEY)
                .and_then(|v| EvacuationPolicy::parse(v))
        };
        chosen(&s.metadata)
            .or_else(|| chosen(&s.flavor.extra_specs))
            .unwrap_or(if s.boot.volume_backed() {
                EvacuationPolicy::Stay
            } else {
                EvacuationPolicy::Rebuild
            })
    }

    /// Records the policy in `dir` for the fence; unchanged files are not rewritten.
    pub fn record(self, dir: &ServerDir) -> std::io::Result<()> {
        let file = dir.path().join(POLICY_FILE);
        if std::fs::read_to_string(&file).is_ok_and(|t| t == self.as_str()) {
            return Ok(());
        }
        if !dir.path().is_dir() {
            // No folder: nothing runs that the fence could stop.
            return Ok(());
        }
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, self.as_str()).and_then(|()| std::fs::rename(&tmp, &file))
    }

    /// The policy recorded in `dir`, if any.
    pub fn recorded(dir: &ServerDir) -> Option<EvacuationPolicy> {
        let text = std::fs::read_to_string(dir.path().join(POLICY_FILE)).ok()?;
        EvacuationPolicy::parse(text.trim())
    }
}

/// Why a value of [`POLICY_KEY`] is refused, for the API's 400; None when it is fine (or the
/// key is another one).
pub fn invalid_value(key: &str, value: &str) -> Option<String> {
    (key == POLICY_KEY && EvacuationPolicy::parse(value).is_none())
        .then(|| format!("{POLICY_KEY} must be \"rebuild\" or \"stay\", not {value:?}"))
}

/// How many evacuated servers one box builds at once: each clones a disk and boots a guest,
/// and a box taking a dead box's twenty servers must not start them all on two cores.
pub const STARTS_AT_ONCE: usize = 4;

/// The step after which only the guest's start remains.
const START_MONITOR: &str = "start_monitor";

impl Runner {
    /// Builds the evacuated server `s` on this box, its new owner: its root disk made again
    /// from its image (pulled first if this box has no copy), its ports (same MAC and
    /// addresses, which follow the server's owner) wired here, its monitor started. A failure
    /// leaves it in ERROR with the fault; its claim and ports stay, for a delete to release.
    pub(super) fn rebuild_evacuated(&mut self, s: &Server) -> Result<(), RunError> {
        let fleet = self.fleet.clone();
        let _slot = fleet.evacuation_slot();
        match self.rebuild(s) {
            Ok(()) => {
                self.update_with(TaskChange::Clear, |row| {
                    row.vm_state = VmState::Active;
                    row.power_state = PowerState::Running;
                    retask(row, None);
                })?;
                tracing::warn!("server {}: evacuated to this box; ACTIVE", self.id);
                self.end_evacuation(migrations::DONE);
            }
            Err(e) => {
                tracing::warn!(
                    "server {}: rebuilding it after evacuation failed: {e}",
                    self.id
                );
                self.stop_monitor(None)?;
                self.fleet.volumes.remove_server_disks(&self.id)?;
                self.fail(&format!(
                    "Evacuation of the server to box {} failed: {e}",
                    self.fleet.host()
                ))?;
                self.end_evacuation(migrations::FAILED);
            }
        }
        Ok(())
    }

    /// Ends the evacuation's record (os-migrations) with `status`. The record reports; a
    /// failure to write it is logged and changes nothing of the server.
    fn end_evacuation(&self, status: &str) {
        let store = self.fleet.migrations();
        if let Err(e) = migrations::end_open(store, &self.id, MigrationType::Evacuation, status) {
            tracing::warn!("server {}: the evacuation's record: {e}", self.id);
        }
    }

    fn rebuild(&mut self, s: &Server) -> Result<(), RunError> {
        let step = self.fleet.servers().server_task(&self.id)?.map(|t| t.step);
        if step.as_deref() == Some(START_MONITOR)
            && self.monitor.is_some()
            && monitor::guest_started(&self.dir)
        {
            // outpostd stopped after the guest started: it runs, adopted by recovery.
            return Ok(());
        }
        // A monitor of an interrupted attempt is not this one's.
        self.stop_monitor(None)?;
        self.set_step(EVACUATE, "fetch_image")?;
        self.fleet.fetch_images(&s.boot.images)?;
        self.set_step(EVACUATE, "clone_disk")?;
        let boot = self.fleet.local_boot(&s.image_ref, &s.boot)?;
        if let Some(source) = &boot.root_source {
            self.fleet.volumes.remove_server_disks(&self.id)?;
            let image_bytes = std::fs::metadata(source).map(|m| m.len()).unwrap_or(0);
            let size = super::root_disk_bytes(&s.flavor, image_bytes);
            self.fleet
                .volumes
                .clone_for_server(&self.id, source, size, Provisioning::Thin)?;
        }
        // The ports are the server's, not a box's: this box wires them now that the record
        // names it the owner (the other boxes' forwarding entries follow the same record).
        self.set_step(EVACUATE, "network")?;
        super::nics::sync(&self.fleet)?;
        self.set_step(EVACUATE, START_MONITOR)?;
        let current = self.load()?.unwrap_or_else(|| s.clone());
        self.start_monitor(&current)
    }
}

/// A box's count of evacuated servers being built (see [`STARTS_AT_ONCE`]).
#[derive(Default)]
pub struct StartSlots {
    taken: Mutex<usize>,
    freed: Condvar,
}

/// One build's place among [`STARTS_AT_ONCE`]; given back when dropped.
pub struct StartSlot<'a>(&'a StartSlots);

impl StartSlots {
    /// Waits for a free place.
    pub fn take(&self) -> StartSlot<'_> {
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        while *taken >= STARTS_AT_ONCE {
            taken = self
                .freed
                .wait(taken)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *taken += 1;
        StartSlot(self)
    }
}

impl Drop for StartSlot<'_> {
    fn drop(&mut self) {
        let mut taken = self.0.taken.lock().unwrap_or_else(PoisonError::into_inner);
        *taken = taken.saturating_sub(1);
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_rebuild_or_stay_and_other_keys_are_not_judged() {
        assert_eq!(invalid_value(POLICY_KEY, "rebuild"), None);
        assert_eq!(invalid_value(POLICY_KEY, "stay"), None);
        assert!(invalid_value(POLICY_KEY, "auto").is_some_and(|m| m.contains("\"auto\"")));
        assert!(invalid_value(POLICY_KEY, "Rebuild").is_some());
        assert_eq!(invalid_value("hw:cpu_policy", "anything"), None);
    }

    #[test]
    fn the_recorded_policy_is_read_back_and_a_missing_folder_records_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = ServerDir::new(tmp.path().join("s1"));
        EvacuationPolicy::Stay.record(&dir).unwrap();
        assert_eq!(EvacuationPolicy::recorded(&dir), None);
        dir.create().unwrap();
        EvacuationPolicy::Stay.record(&dir).unwrap();
        assert_eq!(
            EvacuationPolicy::recorded(&dir),
            Some(EvacuationPolicy::Stay)
        );
        EvacuationPolicy::Rebuild.record(&dir).unwrap();
        assert_eq!(
            EvacuationPolicy::recorded(&dir),
            Some(EvacuationPolicy::Rebuild)
        );
    }

    #[test]
    fn no_more_than_the_limit_of_builds_run_at_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let slots = std::sync::Arc::new(StartSlots::default());
        let (running, most) = (
            std::sync::Arc::new(AtomicUsize::new(0)),
            std::sync::Arc::new(AtomicUsize::new(0)),
        );
        let threads: Vec<_> = (0..3 * STARTS_AT_ONCE)
            .map(|_| {
                let (slots, running, most) = (slots.clone(), running.clone(), most.clone());
                std::thread::spawn(move || {
                    let _slot = slots.take();
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), STARTS_AT_ONCE);
    }
}
