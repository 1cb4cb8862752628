//! The doors a cluster keeps in etcd (docs/cluster.md, "Doors"): identity ([`identity`]),
//! flavors ([`flavors`]), key pairs ([`keypairs`]), servers ([`servers`]), server groups
//! ([`server_groups`]), host aggregates ([`aggregates`]), quota limits ([`quotas`]), images
//! ([`images`]), volumes ([`volumes`]) and networks ([`networks`], on a [`unit_of_work`]), implementing the same
//! store traits as SQLite, so every box reads and writes one copy. Keys come from
//! [`Keyspace`]; values are JSON with a `schema` field.
//!
//! The traits are synchronous and the etcd client is async. Every call runs on the stores'
//! own runtime: one thread (`etcd-store`) with a current-thread tokio runtime, on which the
//! client was also connected (tonic drives its channels on the runtime that made them). A
//! caller hands its future to that thread and waits on a channel. Not `Handle::current()
//! .block_on`: that panics on a runtime worker and needs a runtime at all, and the stores are
//! also called from the daemon's main thread before its runtime starts (bootstrap, recovery),
//! from the fleet's plain threads and from the conformance suites' threads. The cost is one
//! thread hop per call; a caller on an async worker (none today: handlers run on the blocking
//! pool) would block that worker for one etcd round trip, never deadlock it.

pub mod aggregates;
pub mod claims;
pub mod flavors;
pub mod identity;
pub mod images;
pub mod keypairs;
pub mod migrations;
pub mod networks;
pub mod quotas;
pub mod server_groups;
pub mod servers;
mod unit_of_work;
pub mod volumes;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;

use etcd_client::{GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse, TxnResponse};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::etcd::Etcd;
use super::keys::Keyspace;
use super::records::BoxRecord;
use super::{ClusterError, ClusterSettings};
use crate::store::StorageError;

pub use aggregates::EtcdAggregates;
pub use claims::EtcdSiteClaims;
pub use flavors::EtcdFlavors;
pub use identity::EtcdIdentity;
pub use images::EtcdImages;
pub use keypairs::EtcdKeyPairs;
pub use migrations::EtcdMigrations;
pub use networks::EtcdNetworks;
pub use quotas::EtcdQuotas;
pub use server_groups::EtcdServerGroups;
pub use servers::{EtcdServers, OwnerMove, ServerEntry, ServersAt};
pub use volumes::EtcdVolumes;

/// How often a write that lost a race re-reads and tries again before it gives up.
const MAX_TRIES: u32 = 8;
/// etcd refuses transactions of more than 128 operations; ours stay within 64.
const MAX_TXN_OPS: usize = 64;

type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The thread the stores' etcd calls run on (see the module's comment). It owns a
/// current-thread runtime and runs each job as a task; it stops when the last handle is
/// dropped.
#[derive(Clone)]
struct Executor {
    jobs: tokio::sync::mpsc::UnboundedSender<Job>,
}

impl Executor {
    fn start() -> std::io::Result<Executor> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (jobs, mut queue) = tokio::sync::mpsc::unbounded_channel::<Job>();
        std::thread::Builder::new()
            .name("etcd-store".into())
            .spawn(move || {
                runtime.block_on(async move {
                    while let Some(job) = queue.recv().await {
                        tokio::spawn(job);
                    }
                });
            })?;
        Ok(Executor { jobs })
    }

    /// Runs `fut` on the stores' thread and waits for its result.
    fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, StorageError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let job: Job = Box::pin(async move {
            let _ = tx.send(fut.await);
        });
        let gone = || StorageError::Backend("the etcd store's thread has stopped".into());
        self.jobs.send(job).map_err(|_| gone())?;
        rx.recv().map_err(|_| gone())
    }
}

/// One connection to etcd shared by the cluster's doors: the client, the thread its calls run
/// on, and the keyspace. Cheap to clone.
#[derive(Clone)]
pub struct EtcdDoors {
    exec: Executor,
    kv: Kv,
}

impl EtcdDoors {
    /// Connects to `endpoints` (in order of preference) with keys under `keys`.
    pub fn connect(endpoints: Vec<String>, keys: Keyspace) -> Result<EtcdDoors, ClusterError> {
        let exec = Executor::start().map_err(ClusterError::StoreThread)?;
        let etcd = exec
            .run(Etcd::connect(endpoints))
            .map_err(|e| ClusterError::StoreThread(std::io::Error::other(e.to_string())))??;
        Ok(EtcdDoors {
            exec,
            kv: Kv { etcd, keys },
        })
    }

    /// This box's doors for the cluster of `settings`: its own member first, as for its
    /// membership, keys under `/outpost/v1`.
    pub fn for_box(settings: &ClusterSettings) -> Result<EtcdDoors, ClusterError> {
        EtcdDoors::connect(settings.endpoints_own_first(), Keyspace::default())
    }

    pub fn identity(&self) -> EtcdIdentity {
        EtcdIdentity::new(self.clone())
    }

    /// Placement shared by the site's boxes (keys under `/outpost/v1` whatever the root).
    pub fn site_claims(&self) -> EtcdSiteClaims {
        EtcdSiteClaims::new(self.clone())
    }

    pub fn flavors(&self) -> EtcdFlavors {
        EtcdFlavors::new(self.clone())
    }

    pub fn keypairs(&self) -> EtcdKeyPairs {
        EtcdKeyPairs::new(self.clone())
    }

    pub fn servers(&self) -> EtcdServers {
        EtcdServers::new(self.clone())
    }

    pub fn server_groups(&self) -> EtcdServerGroups {
        EtcdServerGroups::new(self.clone())
    }

    pub fn aggregates(&self) -> EtcdAggregates {
        EtcdAggregates::new(self.clone())
    }

    pub fn migrations(&self) -> EtcdMigrations {
        EtcdMigrations::new(self.clone())
    }

    /// Every server record, with its epoch and `mod_revision`, as of the revision of one range
    /// read: where a reconciler of servers starts. It then watches [`Self::servers_prefix`]
    /// from `revision + 1` (decoding each event with [`ServerEntry::from_kv`]) and misses
    /// nothing in between. user_data is not read here (it has its own key).
    pub fn servers_at(&self) -> Result<ServersAt, StorageError> {
        self.call(Kv::servers_at)
    }

    /// The prefix every server record's key starts with (and no other key).
    pub fn servers_prefix(&self) -> String {
        self.kv.keys.servers()
    }

    /// Every member's underlay address, by box name (`/boxes/`).
    pub fn underlays(&self) -> Result<BTreeMap<String, IpAddr>, StorageError> {
        self.call(|kv| async move {
            let prefix = super::keys::boxes();
            let mut out = BTreeMap::new();
            for entry in kv.range(prefix.clone(), false).await? {
                let key = String::from_utf8_lossy(entry.key()).into_owned();
                let record: BoxRecord = serde_json::from_slice(entry.value())
                    .map_err(|e| StorageError::Corrupt(format!("{key}: {e}")))?;
                let addr = record.underlay.parse().map_err(|e| {
                    StorageError::Corrupt(format!("{key}: underlay {:?}: {e}", record.underlay))
                })?;
                out.insert(record.name, addr);
            }
            Ok::<_, StorageError>(out)
        })
    }

    pub fn images(&self) -> EtcdImages {
        EtcdImages::new(self.clone())
    }

    pub fn volumes(&self) -> EtcdVolumes {
        EtcdVolumes::new(self.clone())
    }

    pub fn networks(&self) -> EtcdNetworks {
        EtcdNetworks::new(self.clone())
    }

    pub fn quotas(&self) -> EtcdQuotas {
        EtcdQuotas::new(self.clone())
    }

    /// Runs `f` (one store operation) on the stores' thread.
    fn call<T, E, F, Fut>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(Kv) -> Fut,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Send + 'static,
        E: From<StorageError> + Send + 'static,
    {
        self.exec.run(f(self.kv.clone()))?
    }

    /// A read-decide-write run on the caller's thread, for doors whose trait hands them a
    /// closure that borrows (and so cannot move to the stores' thread). Each try reads and
    /// decides in `attempt`, which builds a transaction guarded by compares on what it read;
    /// when the compares fail someone wrote in between, and the next try reads again, after
    /// 0–20 ms, at most [`MAX_TRIES`] times. `key` names the contested record in the error.
    fn contested<T, E>(
        &self,
        key: &str,
        mut attempt: impl FnMut(&EtcdDoors) -> Result<Decided<T>, E>,
    ) -> Result<T, E>
    where
        E: From<StorageError>,
    {
        for _ in 0..MAX_TRIES {
            match attempt(self)? {
                Decided::Done(answer) => return Ok(answer),
                Decided::Write(txn, answer) => {
                    let committed: bool = self.call(|kv| async move {
                        Ok::<_, StorageError>(kv.txn(txn).await?.succeeded())
                    })?;
                    if committed {
                        return Ok(answer);
                    }
                }
            }
            std::thread::sleep(crate::random::retry_jitter());
        }
        Err(contended(key).into())
    }
}

/// What one try of a [`EtcdDoors::contested`] write decided from what it read.
enum Decided<T> {
    /// Nothing to write; the answer as read.
    Done(T),
    /// Commit the transaction; the answer once it has committed.
    Write(Txn, T),
}

/// The async side of the stores: etcd reads and writes, errors already in the doors' terms.
#[derive(Clone)]
struct Kv {
    etcd: Etcd,
    keys: Keyspace,
}

/// What [`Kv::modify_record`] left in a record.
struct Modified<R, T> {
    record: R,
    /// The record's key's create revision (a stable order of creation).
    create_revision: i64,
    /// What the change said.
    said: T,
}

impl Kv {
    /// Reads the record at `key`, applies `change` (which says what it found and whether the
    /// record must be written) and writes it back unless the key was written in between,
    /// then reads and applies again, at most [`MAX_TRIES`] times. None if there is no record.
    async fn modify_record<R, T>(
        &self,
        key: String,
        mut change: impl FnMut(&mut R) -> (T, bool),
    ) -> Result<Option<Modified<R, T>>, StorageError>
    where
        R: Serialize + DeserializeOwned,
    {
        for _ in 0..MAX_TRIES {
            let Some(kv) = self.get(key.clone()).await? else {
                return Ok(None);
            };
            let mut record: R = from_json(&kv)?;
            let (said, write) = change(&mut record);
            let done = Modified {
                create_revision: kv.create_revision(),
                record,
                said,
            };
            if !write {
                return Ok(Some(done));
            }
            let txn = Txn::new()
                .when([etcd_client::Compare::mod_revision(
                    key.clone(),
                    etcd_client::CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([TxnOp::put(key.clone(), to_json(&done.record), None)]);
            if self.txn(txn).await?.succeeded() {
                return Ok(Some(done));
            }
            jitter().await;
        }
        Err(contended(&key))
    }

    async fn get(&self, key: String) -> Result<Option<KeyValue>, StorageError> {
        let resp = self
            .etcd
            .run(|mut c| {
                let key = key.clone();
                async move { c.get(key, None).await }
            })
            .await
            .map_err(backend)?;
        Ok(resp.kvs().first().cloned())
    }

    /// Every key under `prefix`, with values unless `keys_only`.
    async fn range(&self, prefix: String, keys_only: bool) -> Result<Vec<KeyValue>, StorageError> {
        let resp = self
            .etcd
            .run(|mut c| {
                let prefix = prefix.clone();
                let mut options = GetOptions::new().with_prefix();
                if keys_only {
                    options = options.with_keys_only();
                }
                async move { c.get(prefix, Some(options)).await }
            })
            .await
            .map_err(backend)?;
        Ok(resp.kvs().to_vec())
    }

    /// Runs `txn`. Repeated on another member when one does not answer: every transaction
    /// here is guarded by compare clauses or idempotent.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StorageError> {
        self.etcd
            .run(|mut c| {
                let txn = txn.clone();
                async move { c.txn(txn).await }
            })
            .await
            .map_err(backend)
    }

    /// The values of `keys` (None where absent), read in transactions of at most 64 gets.
    async fn get_many(&self, keys: Vec<String>) -> Result<Vec<Option<KeyValue>>, StorageError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MAX_TXN_OPS) {
            let gets = chunk.iter().map(|k| TxnOp::get(k.clone(), None));
            let resp = self
                .txn(Txn::new().and_then(gets.collect::<Vec<_>>()))
                .await?;
            out.extend(ranges(&resp).into_iter().map(|kvs| kvs.first().cloned()));
        }
        Ok(out)
    }

    /// Deletes `keys`, in transactions of at most 64 deletes.
    async fn delete_all(&self, keys: Vec<String>) -> Result<(), StorageError> {
        for chunk in keys.chunks(MAX_TXN_OPS) {
            let deletes = chunk.iter().map(|k| TxnOp::delete(k.clone(), None));
            self.txn(Txn::new().and_then(deletes.collect::<Vec<_>>()))
                .await?;
        }
        Ok(())
    }
}

const NAME_SCHEMA: u32 = 1;

/// `/names/<kind>/<name>`: the id of the one record holding the name.
#[derive(serde::Serialize, serde::Deserialize)]
struct NameRecord {
    schema: u32,
    id: String,
}

fn name_record(id: &str) -> Vec<u8> {
    to_json(&NameRecord {
        schema: NAME_SCHEMA,
        id: id.to_owned(),
    })
}

/// The key-values of each range read in a transaction's answer, in order.
fn ranges(resp: &TxnResponse) -> Vec<Vec<KeyValue>> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g.kvs().to_vec()),
            _ => None,
        })
        .collect()
}

/// For a transaction whose failure branch reads keys (counts or values): whether each
/// exists, in order.
fn existing(resp: &TxnResponse) -> Vec<bool> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g.count() > 0),
            _ => None,
        })
        .collect()
}

/// The revision a transaction committed at: the `create_revision` of what it created.
fn committed_at(resp: &TxnResponse) -> i64 {
    resp.header().map_or(0, |h| h.revision())
}

fn to_json<T: Serialize>(record: &T) -> Vec<u8> {
    serde_json::to_vec(record).expect("records serialize: plain structs of strings and numbers")
}

fn from_json<T: DeserializeOwned>(kv: &KeyValue) -> Result<T, StorageError> {
    serde_json::from_slice(kv.value()).map_err(|e| {
        StorageError::Corrupt(format!(
            "{}: {e}",
            String::from_utf8_lossy(kv.key()).into_owned()
        ))
    })
}

fn backend(e: ClusterError) -> StorageError {
    StorageError::Backend(Box::new(e))
}

/// A write that lost its race [`MAX_TRIES`] times in a row.
fn contended(key: &str) -> StorageError {
    StorageError::Backend(
        format!("{key} kept changing while it was being written; try again").into(),
    )
}

/// Waits 0–20 ms before a retry, so boxes that collided do not collide again in step.
async fn jitter() {
    tokio::time::sleep(crate::random::retry_jitter()).await;
}
