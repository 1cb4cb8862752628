//! What every domain's door to its state shares: the error a store reports. Each domain
//! defines its own store trait (`identity::store`, `compute::flavors::store`,
//! `compute::keypairs::store`,
//! `compute::servers::store`, ...); [`crate::storage`] implements them on SQLite for one box,
//! and a cluster's store implements the same traits. Nothing here names a backend.

use crate::compute::aggregates::AggregateStore;
use crate::compute::flavors::FlavorStore;
use crate::compute::keypairs::KeyPairStore;
use crate::compute::server_groups::ServerGroupStore;
use crate::compute::servers::placement::store::PlacementDoor;
use crate::compute::servers::store::ServerStore;
use crate::identity::store::IdentityStore;
use crate::image::ImageRecordStore;
use crate::network::NetworkStore;
use crate::quota::Quotas;
use crate::volume::VolumeRecordStore;
use std::path::PathBuf;
use std::sync::Arc;

/// Every domain's door, as a daemon wires them: built once (`Doors::sqlite` for one box, a
/// cluster's store later) and handed to the API, the fleet and the background work. Cheap to
/// clone.
#[derive(Clone)]
pub struct Doors {
    pub identity: Arc<dyn IdentityStore>,
    pub flavors: Arc<dyn FlavorStore>,
    pub keypairs: Arc<dyn KeyPairStore>,
    pub images: Arc<dyn ImageRecordStore>,
    pub volumes: Arc<dyn VolumeRecordStore>,
    pub networks: Arc<dyn NetworkStore>,
    pub servers: Arc<dyn ServerStore>,
    pub server_groups: Arc<dyn ServerGroupStore>,
    pub aggregates: Arc<dyn AggregateStore>,
    /// Nova's migration records (os-migrations).
    pub migrations: Arc<dyn crate::compute::migrations::MigrationStore>,
    /// The quota limits set per project, over the deployment's defaults.
    pub quotas: Quotas,
    pub claims: PlacementDoor,
}

/// The backend's own error, kept as the cause (a SQLite or etcd client error).
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open the database {path:?}: {source}")]
    Open { path: PathBuf, source: BackendError },
    #[error("the database schema is at version {found}, newer than this outpostd knows ({known}); run a newer outpostd")]
    SchemaTooNew { found: i64, known: i64 },
    #[error("schema migration {version} ({name}) failed: {source}")]
    Migration {
        version: i64,
        name: &'static str,
        source: BackendError,
    },
    /// The store failed to read or write.
    #[error("database error: {0}")]
    Backend(BackendError),
    #[error("the database holds a value this outpostd cannot read: {0}")]
    Corrupt(String),
}

/// For the doors' conformance suites: runs `left` on `a` and `right` on `b` at once, each on
/// its own thread, released together, so two writers (two boxes, or two threads on one
/// database) race for the same records.
#[cfg(test)]
pub(crate) fn at_once<S: Sync, L: Send, R: Send>(
    (a, b): (&S, &S),
    left: impl FnOnce(&S) -> L + Send,
    right: impl FnOnce(&S) -> R + Send,
) -> (L, R) {
    let start = std::sync::Barrier::new(2);
    std::thread::scope(|s| {
        let l = s.spawn(|| {
            start.wait();
            left(a)
        });
        let r = s.spawn(|| {
            start.wait();
            right(b)
        });
        (
            l.join().expect("the left writer does not panic"),
            r.join().expect("the right writer does not panic"),
        )
    })
}

/// Called in a racing writer's decision, waits long enough for the other writer of
/// [`at_once`] to commit, which puts that write between this one's read and its write.
#[cfg(test)]
pub(crate) fn dawdle() {
    std::thread::sleep(std::time::Duration::from_millis(30));
}
