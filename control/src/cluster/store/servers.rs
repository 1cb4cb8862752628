//! Servers' door in etcd: `/servers/<id>` holds the Nova record with its owner box and epoch,
//! `/server-user-data/<id>` its user_data (up to 64 KiB, kept apart so records stay small
//! enough for transactions of many) and `/server-tasks/<id>` the step its operation under way
//! has reached. A server's `seq` is its record's `create_revision`. Every change to a server is
//! a compare-and-swap on the record's `mod_revision`, with the progress row the change goes
//! with in the same transaction.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use super::{
    committed_at, contended, existing, from_json, jitter, ranges, to_json, EtcdDoors, Kv, MAX_TRIES,
};
use crate::cluster::keys::{child, Keyspace};
use crate::compute::servers::evacuation::{EVACUATE, EVACUATE_SCHEDULED};
use crate::compute::servers::placement::store::{ClaimChange, SiteView};
use crate::compute::servers::store::{
    BootConfig, FlavorSnapshot, MonitorRecord, PlacementRequest, PowerState, ResizeRecord, Server,
    ServerFault, ServerStore, ServerTask, TaskChange, TaskState, VmState,
};
use crate::quota::{QuotaError, ServerQuota};
use crate::store::StorageError;
use crate::timestamp::Timestamp;

const SERVER_SCHEMA: u32 = 1;
const USER_DATA_SCHEMA: u32 = 1;
const TASK_SCHEMA: u32 = 1;

/// `/servers/<id>`: everything Nova shows of a server but its user_data.
#[derive(Serialize, Deserialize)]
struct ServerRecord {
    schema: u32,
    id: String,
    name: String,
    description: Option<String>,
    project_id: String,
    user_id: String,
    flavor: FlavorSnapshot,
    image_ref: String,
    boot: BootConfig,
    /// Nova's spellings (`active`, `powering-off`), as the API shows them.
    vm_state: String,
    task_state: Option<String>,
    /// Nova's number.
    power_state: i64,
    /// The box whose monitor runs the server (Nova's `host`).
    owner: Option<String>,
    /// 1 at create; each move to another owner raises it, so a box that lost the server
    /// learns so from the record it next writes.
    epoch: u64,
    fault: Option<ServerFault>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    key_name: Option<String>,
    #[serde(default)]
    key_data: Option<String>,
    #[serde(default)]
    admin_pass: Option<String>,
    config_drive: String,
    disk_config: String,
    networks: serde_json::Value,
    monitor: Option<MonitorRecord>,
    resize: Option<ResizeRecord>,
    /// Where the create request asked the server to go.
    #[serde(default)]
    placement: PlacementRequest,
    /// Microseconds since the epoch, as [`Timestamp`].
    created_at: i64,
    updated_at: Option<i64>,
    launched_at: Option<i64>,
}

/// `/server-user-data/<id>`: the base64 text the create request gave.
#[derive(Serialize, Deserialize)]
struct UserDataRecord {
    schema: u32,
    user_data: String,
}

/// `/server-tasks/<id>`: the step operation `kind` reached, recorded before its effect.
#[derive(Serialize, Deserialize)]
struct TaskRecord {
    schema: u32,
    kind: String,
    step: String,
    /// When the step was recorded, in microseconds since the epoch: how long a stuck
    /// operation has been stuck.
    updated_at: i64,
}

impl ServerRecord {
    fn new(s: &Server, epoch: u64) -> ServerRecord {
        ServerRecord {
            schema: SERVER_SCHEMA,
            id: s.id.clone(),
            name: s.name.clone(),
            description: s.description.clone(),
            project_id: s.project_id.clone(),
            user_id: s.user_id.clone(),
            flavor: s.flavor.clone(),
            image_ref: s.image_ref.clone(),
            boot: s.boot.clone(),
            vm_state: s.vm_state.as_str().to_owned(),
            task_state: s.task_state.map(|t| t.as_str().to_owned()),
            power_state: s.power_state.code(),
            owner: s.host.clone(),
            epoch,
            fault: s.fault.clone(),
            metadata: s.metadata.clone(),
            key_name: s.key_name.clone(),
            key_data: s.key_data.clone(),
            admin_pass: s.admin_pass.clone(),
            config_drive: s.config_drive.clone(),
            disk_config: s.disk_config.clone(),
            networks: s.networks.clone(),
            monitor: s.monitor.clone(),
            resize: s.resize.clone(),
            placement: s.placement.clone(),
            created_at: s.created_at.micros(),
            updated_at: s.updated_at.map(Timestamp::micros),
            launched_at: s.launched_at.map(Timestamp::micros),
        }
    }

    fn into_server(self, seq: i64, user_data: Option<String>) -> Result<Server, StorageError> {
        let corrupt = |what: &str, v: &str| {
            StorageError::Corrupt(format!("server {}: {what} {v:?}", self.id))
        };
        let vm_state =
            VmState::parse(&self.vm_state).ok_or_else(|| corrupt("vm_state", &self.vm_state))?;
        let task_state = match &self.task_state {
            None => None,
            Some(t) => Some(TaskState::parse(t).ok_or_else(|| corrupt("task_state", t))?),
        };
        let power_state = PowerState::from_code(self.power_state)
            .ok_or_else(|| corrupt("power_state", &self.power_state.to_string()))?;
        Ok(Server {
            seq,
            id: self.id,
            name: self.name,
            description: self.description,
            project_id: self.project_id,
            user_id: self.user_id,
            flavor: self.flavor,
            image_ref: self.image_ref,
            boot: self.boot,
            vm_state,
            task_state,
            power_state,
            host: self.owner,
            fault: self.fault,
            metadata: self.metadata,
            user_data,
            key_name: self.key_name,
            key_data: self.key_data,
            admin_pass: self.admin_pass,
            config_drive: self.config_drive,
            disk_config: self.disk_config,
            networks: self.networks,
            monitor: self.monitor,
            resize: self.resize,
            placement: self.placement,
            created_at: Timestamp(self.created_at),
            updated_at: self.updated_at.map(Timestamp),
            launched_at: self.launched_at.map(Timestamp),
        })
    }
}

/// A server as its record was read: with the epoch and the revision a write compares against.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerEntry {
    pub server: Server,
    /// How often the server changed owner (1 from its create).
    pub epoch: u64,
    /// The record's `mod_revision`.
    pub mod_revision: i64,
}

impl ServerEntry {
    /// Decodes a `/servers/<id>` key-value, as a range read or a watch event carries it.
    /// `server.user_data` is None: it has its own key, read by [`ServerStore::server`].
    pub fn from_kv(kv: &KeyValue) -> Result<ServerEntry, StorageError> {
        ServerEntry::decode(kv, None)
    }

    fn decode(kv: &KeyValue, user_data: Option<String>) -> Result<ServerEntry, StorageError> {
        let record: ServerRecord = from_json(kv)?;
        let epoch = record.epoch;
        Ok(ServerEntry {
            server: record.into_server(kv.create_revision(), user_data)?,
            epoch,
            mod_revision: kv.mod_revision(),
        })
    }
}

fn user_data_of(kv: &KeyValue) -> Result<String, StorageError> {
    Ok(from_json::<UserDataRecord>(kv)?.user_data)
}

fn put_user_data(keys: &Keyspace, id: &str, user_data: &str) -> TxnOp {
    let record = UserDataRecord {
        schema: USER_DATA_SCHEMA,
        user_data: user_data.to_owned(),
    };
    TxnOp::put(keys.server_user_data(id), to_json(&record), None)
}

/// The write `task` makes to server `id`'s progress row, if any.
fn task_op(keys: &Keyspace, id: &str, task: TaskChange<'_>) -> Option<TxnOp> {
    match task {
        TaskChange::Keep => None,
        TaskChange::Step { kind, step } => {
            let record = TaskRecord {
                schema: TASK_SCHEMA,
                kind: kind.to_owned(),
                step: step.to_owned(),
                updated_at: Timestamp::now().micros(),
            };
            Some(TxnOp::put(keys.server_task(id), to_json(&record), None))
        }
        TaskChange::Clear => Some(TxnOp::delete(keys.server_task(id), None)),
    }
}

/// Every server record as of one revision: what a reconciler starts from before it watches
/// [`Keyspace::servers`] from `revision + 1`.
#[derive(Debug, Clone)]
pub struct ServersAt {
    /// The store's revision the read saw.
    pub revision: i64,
    pub servers: Vec<ServerEntry>,
}

/// [`ServerStore`] on etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdServers {
    doors: EtcdDoors,
}

impl EtcdServers {
    pub(super) fn new(doors: EtcdDoors) -> EtcdServers {
        EtcdServers { doors }
    }

    fn keys(&self) -> &Keyspace {
        &self.doors.kv.keys
    }
}

/// A server's record as stored, with its user_data.
struct Stored {
    record: KeyValue,
    user_data: Option<String>,
}

impl Stored {
    fn entry(&self) -> Result<ServerEntry, StorageError> {
        ServerEntry::decode(&self.record, self.user_data.clone())
    }
}

impl Kv {
    /// Server `id` with its user_data, both read at one revision.
    async fn server(self, id: String) -> Result<Option<Stored>, StorageError> {
        let keys = vec![self.keys.server(&id), self.keys.server_user_data(&id)];
        let mut read = self.get_many(keys).await?.into_iter();
        let (Some(Some(record)), user_data) = (read.next(), read.next().flatten()) else {
            return Ok(None);
        };
        Ok(Some(Stored {
            record,
            user_data: user_data.as_ref().map(user_data_of).transpose()?,
        }))
    }

    async fn servers(self, project_id: Option<String>) -> Result<Vec<Server>, StorageError> {
        let (servers, user_data) = (self.keys.servers(), self.keys.servers_user_data());
        let range = |prefix: &str| TxnOp::get(prefix, Some(GetOptions::new().with_prefix()));
        // One transaction: the records and their user_data as of one revision.
        let resp = self
            .txn(Txn::new().and_then([range(&servers), range(&user_data)]))
            .await?;
        let mut read = ranges(&resp).into_iter();
        let (records, texts) = (
            read.next().unwrap_or_default(),
            read.next().unwrap_or_default(),
        );
        let mut texts: BTreeMap<String, String> = texts
            .iter()
            .filter_map(|kv| {
                let id = child(kv.key_str().ok()?, &user_data)?.to_owned();
                Some(user_data_of(kv).map(|text| (id, text)))
            })
            .collect::<Result<_, _>>()?;
        let mut out = Vec::new();
        for kv in &records {
            let Some(id) = kv.key_str().ok().and_then(|k| child(k, &servers)) else {
                continue;
            };
            let text = texts.remove(id);
            let s = ServerEntry::decode(kv, text)?.server;
            if project_id.as_deref().is_none_or(|p| s.project_id == p) {
                out.push(s);
            }
        }
        // Nova's default order: created_at descending, then the later insert first.
        out.sort_by_key(|s| std::cmp::Reverse((s.created_at, s.seq)));
        Ok(out)
    }

    pub(super) async fn servers_at(self) -> Result<ServersAt, StorageError> {
        let prefix = self.keys.servers();
        let resp = self
            .etcd
            .run(|mut c| {
                let prefix = prefix.clone();
                async move { c.get(prefix, Some(GetOptions::new().with_prefix())).await }
            })
            .await
            .map_err(super::backend)?;
        Ok(ServersAt {
            revision: resp.header().map_or(0, |h| h.revision()),
            servers: resp
                .kvs()
                .iter()
                .map(ServerEntry::from_kv)
                .collect::<Result<_, _>>()?,
        })
    }

    /// The (vcpus, ram) of each server of `project_id`, and the revision they were read at.
    async fn held_by(self, project_id: String) -> Result<(Vec<(i64, i64)>, i64), StorageError> {
        let prefix = self.keys.servers();
        let resp = self
            .txn(Txn::new().and_then([TxnOp::get(
                prefix.as_str(),
                Some(GetOptions::new().with_prefix()),
            )]))
            .await?;
        let mut held = Vec::new();
        for kv in ranges(&resp).into_iter().flatten() {
            if kv.key_str().ok().and_then(|k| child(k, &prefix)).is_none() {
                continue;
            }
            let s = ServerEntry::decode(&kv, None)?.server;
            if s.project_id == project_id {
                held.push((s.flavor.vcpus, s.flavor.ram));
            }
        }
        Ok((held, committed_at(&resp)))
    }

    /// Runs `txn` (guarded by a compare on a record's revision); on losing, waits a jitter
    /// before saying so, so that writers that collided try again apart.
    async fn swap(self, txn: Txn) -> Result<bool, StorageError> {
        if self.txn(txn).await?.succeeded() {
            return Ok(true);
        }
        jitter().await;
        Ok(false)
    }
}

/// An evacuation's move of a server to another box (docs/cluster.md, "Contested writes":
/// Ownership move).
pub struct OwnerMove<'a> {
    /// The server as read, with the revision the move compares.
    pub entry: &'a ServerEntry,
    /// The dead box: the move commits only while its alive key is absent, which proves its
    /// lease had expired (and its fence had stopped the guest).
    pub from: &'a str,
    pub to: &'a str,
    /// The claim's move from `from` to `to`, as placement decided it on `view`.
    pub view: &'a SiteView,
    pub claims: &'a ClaimChange,
    /// The evacuation's record (os-migrations), put in the same transaction.
    pub migration: Option<&'a crate::compute::migrations::Migration>,
}

impl EtcdServers {
    /// Moves a server to another box in one transaction: the record (owner := `to`, epoch + 1,
    /// no monitor, task_state `rebuilding`, the step the new owner builds from) and the claim
    /// with both boxes' usage. False when the record, either box's usage or the dead box's
    /// liveness changed since they were read (nothing was written).
    pub fn move_owner(&self, m: &OwnerMove<'_>) -> Result<bool, StorageError> {
        let keys = self.keys();
        let id = &m.entry.server.id;
        let key = keys.server(id);
        let mut s = m.entry.server.clone();
        s.host = Some(m.to.to_owned());
        // The old monitor ran on the dead box: its pid means nothing on the new one.
        s.monitor = None;
        s.task_state = Some(TaskState::Rebuilding);
        s.updated_at = Some(Timestamp::now());
        let record = ServerRecord::new(&s, m.entry.epoch + 1);
        let (mut compares, mut ops) = super::claims::change_ops(m.view, m.claims)?;
        compares.push(Compare::mod_revision(
            key.clone(),
            CompareOp::Equal,
            m.entry.mod_revision,
        ));
        compares.push(Compare::version(
            crate::cluster::keys::alive(m.from),
            CompareOp::Equal,
            0,
        ));
        ops.push(TxnOp::put(key, to_json(&record), None));
        if let Some(m) = m.migration {
            ops.push(super::migrations::put_op(keys, m));
        }
        ops.extend(task_op(
            keys,
            id,
            TaskChange::Step {
                kind: EVACUATE,
                step: EVACUATE_SCHEDULED,
            },
        ));
        let txn = Txn::new().when(compares).and_then(ops);
        self.doors
            .call(|kv| async move { Ok::<_, StorageError>(kv.txn(txn).await?.succeeded()) })
    }
}

impl ServerStore for EtcdServers {
    fn insert_server(
        &self,
        s: &Server,
        kind: &str,
        step: &str,
        quota: &ServerQuota,
    ) -> Result<Server, QuotaError> {
        let keys = self.keys().clone();
        let key = keys.server(&s.id);
        let puts = || {
            let mut puts = vec![TxnOp::put(
                key.clone(),
                to_json(&ServerRecord::new(s, 1)),
                None,
            )];
            if let Some(text) = &s.user_data {
                puts.push(put_user_data(&keys, &s.id, text));
            }
            puts.extend(task_op(&keys, &s.id, TaskChange::Step { kind, step }));
            puts
        };
        for _ in 0..MAX_TRIES {
            let mut when = vec![Compare::version(key.clone(), CompareOp::Equal, 0)];
            if !quota.is_unlimited() {
                // The project's servers as of one revision; the insert commits only if no
                // server was recorded or changed since, so the count still holds.
                let project = s.project_id.clone();
                let (held, revision) = self.doors.call(|kv| kv.held_by(project))?;
                quota.check(&held, s.flavor.vcpus, s.flavor.ram)?;
                when.push(
                    Compare::mod_revision(keys.servers(), CompareOp::Less, revision + 1)
                        .with_prefix(),
                );
            }
            let txn = Txn::new()
                .when(when)
                .and_then(puts())
                .or_else([TxnOp::get(key.clone(), None)]);
            let resp = self.doors.call(|kv| async move { kv.txn(txn).await })?;
            if resp.succeeded() {
                return Ok(Server {
                    seq: committed_at(&resp),
                    ..s.clone()
                });
            }
            if existing(&resp).first() == Some(&true) {
                let taken = format!(
                    "server {} already exists; a new server needs a new id",
                    s.id
                );
                return Err(StorageError::Backend(taken.into()).into());
            }
            std::thread::sleep(crate::random::retry_jitter());
        }
        Err(contended(&key).into())
    }

    fn server(&self, id: &str) -> Result<Option<Server>, StorageError> {
        let id = id.to_owned();
        let stored = self.doors.call(|kv| kv.server(id))?;
        Ok(stored.map(|s| s.entry()).transpose()?.map(|e| e.server))
    }

    fn servers(&self, project_id: Option<&str>) -> Result<Vec<Server>, StorageError> {
        let project_id = project_id.map(str::to_owned);
        self.doors.call(|kv| kv.servers(project_id))
    }

    fn update_server(
        &self,
        id: &str,
        task: TaskChange<'_>,
        change: &mut dyn FnMut(&mut Server) -> bool,
    ) -> Result<Option<Server>, StorageError> {
        let keys = self.keys();
        let key = keys.server(id);
        // `change` stays on the caller's thread (it borrows the caller's state); only the
        // read and the compare-and-swap go to the stores' thread.
        let mut attempted: Option<Vec<u8>> = None;
        for _ in 0..MAX_TRIES {
            let Some(stored) = self.doors.call(|kv| kv.server(id.to_owned()))? else {
                return Ok(None);
            };
            let read = stored.entry()?;
            // A write whose answer was lost (its member stopped answering and the write was
            // repeated on the next) may have landed before the repeat lost the compare. If
            // nobody wrote since, the record holds our bytes, updated_at to the microsecond
            // included: it is done, and running `change` again would apply it twice.
            if attempted.as_deref() == Some(stored.record.value()) {
                return Ok(Some(read.server));
            }
            let mut s = read.server.clone();
            if !change(&mut s) {
                return Ok(Some(read.server));
            }
            s.updated_at = Some(Timestamp::now());
            let record = to_json(&ServerRecord::new(&s, read.epoch));
            let mut ops = vec![TxnOp::put(key.clone(), record.clone(), None)];
            if s.user_data != read.server.user_data {
                ops.push(match &s.user_data {
                    Some(text) => put_user_data(keys, id, text),
                    None => TxnOp::delete(keys.server_user_data(id), None),
                });
            }
            ops.extend(task_op(keys, id, task));
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    read.mod_revision,
                )])
                .and_then(ops);
            if self.doors.call(|kv| kv.swap(txn))? {
                return Ok(Some(s));
            }
            attempted = Some(record);
        }
        Err(contended(&key))
    }

    fn delete_server(&self, id: &str) -> Result<bool, StorageError> {
        let keys = self.keys();
        let txn = Txn::new().and_then([
            TxnOp::delete(keys.server(id), None),
            TxnOp::delete(keys.server_user_data(id), None),
            TxnOp::delete(keys.server_task(id), None),
        ]);
        let resp = self.doors.call(|kv| async move { kv.txn(txn).await })?;
        let deleted = resp
            .op_responses()
            .into_iter()
            .next()
            .is_some_and(|r| matches!(r, TxnOpResponse::Delete(d) if d.deleted() > 0));
        Ok(deleted)
    }

    fn server_task(&self, id: &str) -> Result<Option<ServerTask>, StorageError> {
        let key = self.keys().server_task(id);
        let kv = self.doors.call(|kv| async move { kv.get(key).await })?;
        let Some(kv) = kv else {
            return Ok(None);
        };
        let record: TaskRecord = from_json(&kv)?;
        Ok(Some(ServerTask {
            server_id: id.to_owned(),
            kind: record.kind,
            step: record.step,
        }))
    }

    fn set_server_task(&self, id: &str, task: TaskChange<'_>) -> Result<(), StorageError> {
        let keys = self.keys();
        let Some(op) = task_op(keys, id, task) else {
            return Ok(());
        };
        // A step needs its server (a progress row of no server would never be cleared); a
        // clear needs nothing.
        let guard = match task {
            TaskChange::Step { .. } => {
                vec![Compare::version(keys.server(id), CompareOp::Greater, 0)]
            }
            TaskChange::Keep | TaskChange::Clear => Vec::new(),
        };
        let txn = Txn::new().when(guard).and_then([op]);
        let resp = self.doors.call(|kv| async move { kv.txn(txn).await })?;
        if !resp.succeeded() {
            let missing = format!("server {id} does not exist; no progress is recorded for it");
            return Err(StorageError::Backend(missing.into()));
        }
        Ok(())
    }
}
