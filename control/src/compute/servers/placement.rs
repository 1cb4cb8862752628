//! Where servers go: the cluster of hosts (this box, from `[compute]`) and its claims,
//! scheduled by `outpost-resources` (filters → weighers → claim). Every change to the
//! claims is written to SQLite in the same transaction as the step that made it, and the
//! saved claims are replayed at start. One lock serialises scheduling, as the resources
//! crate expects.

use super::config::ComputeSettings;
use crate::storage::servers::FlavorSnapshot;
use crate::storage::{claims, Db, StorageError};
use outpost_resources::{
    Claim, ClaimError, Cluster, ConsumerId, Flavor, FlavorError, HostId, InventoryError,
    NoValidHost, Resize, ScheduleError, Scheduler,
};
use rusqlite::Transaction;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    #[error(transparent)]
    NoValidHost(#[from] NoValidHost),
    #[error("the flavor cannot be scheduled: {0}")]
    Flavor(#[from] FlavorError),
    #[error("claim refused: {0}")]
    Claim(#[from] ClaimError),
    #[error("the host's inventory is invalid: {0}")]
    Inventory(#[from] InventoryError),
    #[error("the scheduler configuration is invalid: {0}")]
    Scheduler(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl From<ScheduleError> for PlacementError {
    fn from(e: ScheduleError) -> Self {
        match e {
            ScheduleError::NoValidHost(n) => PlacementError::NoValidHost(n),
            ScheduleError::Claim(c) => PlacementError::Claim(c),
        }
    }
}

/// The consumer that holds a resized server's old size until confirm or revert.
pub fn migration_id(server_id: &str) -> ConsumerId {
    ConsumerId(format!("migration:{server_id}"))
}

/// The scheduler's view of a server's flavor.
pub fn resource_flavor(f: &FlavorSnapshot) -> Flavor {
    let n = |v: i64| u64::try_from(v).unwrap_or(0);
    Flavor {
        vcpus: n(f.vcpus),
        ram_mb: n(f.ram),
        disk_gb: n(f.disk),
        ephemeral_gb: n(f.ephemeral),
        swap_mb: n(f.swap),
        extra_specs: f.extra_specs.clone(),
    }
}

pub struct Placement {
    cluster: Mutex<Cluster>,
    scheduler: Scheduler,
}

impl Placement {
    /// The cluster of this one host, with no claims yet.
    pub fn new(settings: &ComputeSettings) -> Result<Placement, PlacementError> {
        let host = settings
            .inventory
            .to_host(HostId(settings.host.clone()), settings.host.clone())?;
        let cluster =
            Cluster::from_hosts([host]).map_err(|e| PlacementError::Scheduler(e.to_string()))?;
        let scheduler = Scheduler::from_config(&settings.scheduler)
            .map_err(|e| PlacementError::Scheduler(e.to_string()))?;
        Ok(Placement {
            cluster: Mutex::new(cluster),
            scheduler,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Cluster> {
        // The cluster is only changed by calls that either complete or change nothing.
        self.cluster.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replays saved claims (without re-checking capacity: a host that shrank keeps its
    /// servers). A claim that cannot be replayed (its host is gone) is logged and skipped.
    pub fn restore(&self, saved: &[Claim]) {
        let mut cluster = self.lock();
        for claim in saved {
            if let Err(e) = cluster.restore(claim) {
                tracing::warn!("cannot restore the claim of {}: {e}", claim.consumer_id);
            }
        }
    }

    /// Every claim held now.
    pub fn claims(&self) -> Vec<Claim> {
        self.lock().claims().collect()
    }

    /// Schedules a server of `flavor` and persists its claim, together with whatever `also`
    /// writes in the same transaction. Nothing is held if any of it fails.
    pub fn claim(
        &self,
        db: &Db,
        server_id: &str,
        flavor: &FlavorSnapshot,
        boot_from_volume: bool,
        also: impl FnOnce(&Transaction<'_>, &Claim) -> Result<(), StorageError>,
    ) -> Result<Claim, PlacementError> {
        let request = resource_flavor(flavor).to_request(boot_from_volume)?;
        let consumer = ConsumerId(server_id.to_owned());
        let mut cluster = self.lock();
        let selection = self.scheduler.schedule(&mut cluster, &consumer, &request)?;
        let saved = db.write(|tx| {
            claims::put(tx, &selection.claim)?;
            also(tx, &selection.claim)
        });
        if let Err(e) = saved {
            cluster.release(&consumer);
            return Err(e.into());
        }
        Ok(selection.claim)
    }

    /// Releases `consumer`'s claim, in the database first (idempotent).
    pub fn release(&self, db: &Db, consumer: &ConsumerId) -> Result<(), StorageError> {
        let mut cluster = self.lock();
        db.write(|tx| claims::remove(tx, &consumer.0))?;
        cluster.release(consumer);
        Ok(())
    }

    /// Starts a resize to `flavor`: the old claim passes to the migration, the server
    /// claims the new size (beside the old one on this host). Persisted with `also`.
    pub fn begin_resize(
        &self,
        db: &Db,
        server_id: &str,
        flavor: &FlavorSnapshot,
        boot_from_volume: bool,
        also: impl FnOnce(&Transaction<'_>, &Resize) -> Result<(), StorageError>,
    ) -> Result<Resize, PlacementError> {
        let request = resource_flavor(flavor).to_request(boot_from_volume)?;
        let consumer = ConsumerId(server_id.to_owned());
        let migration = migration_id(server_id);
        let mut cluster = self.lock();
        let resize =
            self.scheduler
                .schedule_resize(&mut cluster, &consumer, &migration, &request)?;
        let saved = db.write(|tx| {
            claims::put(tx, &resize.source)?;
            claims::put(tx, &resize.dest)?;
            also(tx, &resize)
        });
        if let Err(e) = saved {
            // Gives the old claim back to the server, as it was.
            let _ = cluster.revert_resize(&consumer, &migration);
            return Err(e.into());
        }
        Ok(resize)
    }

    /// Confirms a resize: the old size, held by the migration, is released.
    pub fn confirm_resize(&self, db: &Db, server_id: &str) -> Result<(), StorageError> {
        self.release(db, &migration_id(server_id))
    }

    /// Reverts a resize: the new size is released and the old one goes back to the server.
    /// A resize already reverted (the migration holds nothing) changes nothing.
    pub fn revert_resize(&self, db: &Db, server_id: &str) -> Result<(), PlacementError> {
        let consumer = ConsumerId(server_id.to_owned());
        let migration = migration_id(server_id);
        let mut cluster = self.lock();
        let Some(old) = cluster.claim_of(&migration) else {
            return Ok(());
        };
        let restored = Claim {
            consumer_id: consumer.clone(),
            ..old
        };
        db.write(|tx| {
            claims::remove(tx, &migration.0)?;
            claims::put(tx, &restored)
        })?;
        cluster.revert_resize(&consumer, &migration)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::servers::config::{ComputeSection, Machine};
    use std::collections::BTreeMap;

    fn placement(vcpus: u64, ram_mb: u64) -> Placement {
        let settings = ComputeSettings::resolve(
            &ComputeSection {
                host: Some("box".into()),
                reserved_host_memory_mb: Some(0),
                cpu_allocation_ratio: Some(1.0),
                ..ComputeSection::default()
            },
            Machine {
                vcpus,
                ram_mb,
                disk_gb: 10,
            },
        )
        .unwrap();
        Placement::new(&settings).unwrap()
    }

    fn flavor(vcpus: i64, ram: i64) -> FlavorSnapshot {
        FlavorSnapshot {
            id: "f".into(),
            name: "f".into(),
            vcpus,
            ram,
            disk: 1,
            ephemeral: 0,
            swap: 0,
            extra_specs: BTreeMap::new(),
        }
    }

    #[test]
    fn claims_are_persisted_released_and_restored() {
        let db = Db::open_in_memory().unwrap();
        let p = placement(2, 1024);
        p.claim(&db, "a", &flavor(1, 512), false, |_, _| Ok(()))
            .unwrap();
        let err = p
            .claim(&db, "b", &flavor(2, 512), false, |_, _| Ok(()))
            .unwrap_err();
        match err {
            PlacementError::NoValidHost(n) => {
                assert!(n.to_string().starts_with("No valid host was found."), "{n}")
            }
            other => panic!("{other}"),
        }
        // A failing companion write leaves nothing claimed.
        let failed = p.claim(&db, "c", &flavor(1, 256), false, |_, _| {
            Err(StorageError::Corrupt("no".into()))
        });
        assert!(failed.is_err());
        assert_eq!(p.claims().len(), 1);
        let saved = db.read(claims::all).unwrap();
        assert_eq!(saved.len(), 1);
        let again = placement(2, 1024);
        again.restore(&saved);
        assert_eq!(again.claims(), p.claims());
        p.release(&db, &ConsumerId::from("a")).unwrap();
        p.release(&db, &ConsumerId::from("a")).unwrap();
        assert!(p.claims().is_empty());
        assert!(db.read(claims::all).unwrap().is_empty());
    }

    #[test]
    fn resize_holds_both_then_confirm_or_revert() {
        let db = Db::open_in_memory().unwrap();
        let p = placement(4, 2048);
        p.claim(&db, "a", &flavor(1, 512), false, |_, _| Ok(()))
            .unwrap();
        p.begin_resize(&db, "a", &flavor(2, 1024), false, |_, _| Ok(()))
            .unwrap();
        assert_eq!(db.read(claims::all).unwrap().len(), 2);
        p.revert_resize(&db, "a").unwrap();
        p.revert_resize(&db, "a").unwrap();
        let left = db.read(claims::all).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            left[0]
                .amounts
                .get(&outpost_resources::ResourceClass::MemoryMb),
            512
        );
        p.begin_resize(&db, "a", &flavor(2, 1024), false, |_, _| Ok(()))
            .unwrap();
        p.confirm_resize(&db, "a").unwrap();
        let left = db.read(claims::all).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            left[0]
                .amounts
                .get(&outpost_resources::ResourceClass::MemoryMb),
            1024
        );
        // Too big beside the old size: refused, nothing changes.
        assert!(p
            .begin_resize(&db, "a", &flavor(3, 1024), false, |_, _| Ok(()))
            .is_err());
        assert_eq!(p.claims().len(), 1);
    }
}
