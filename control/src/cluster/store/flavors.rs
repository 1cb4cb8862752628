//! Flavors' door in etcd: `/flavors/<id>` holds a flavor with its extra specs inline, and
//! `/names/flavor/<name>` its name, both created in one transaction. A flavor's `seq` (Nova's
//! sort key) is its key's `create_revision`. Changes are read, changed and written back under
//! a `mod_revision` compare, retried (bounded) when another box wrote in between.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::{
    committed_at, contended, from_json, jitter, name_record, to_json, EtcdDoors, Kv, MAX_TRIES,
};
use crate::cluster::keys::NameKind;
use crate::compute::flavors::store::{Flavor, FlavorFilter, FlavorStore, SortKey};
use crate::compute::flavors::FlavorError;
use crate::store::StorageError;
use crate::timestamp::Timestamp;

const FLAVOR_SCHEMA: u32 = 1;

#[derive(Serialize, Deserialize)]
struct FlavorRecord {
    schema: u32,
    id: String,
    name: String,
    ram: i64,
    vcpus: i64,
    disk: i64,
    ephemeral: i64,
    swap: i64,
    rxtx_factor: f64,
    is_public: bool,
    disabled: bool,
    description: Option<String>,
    #[serde(default)]
    extra_specs: BTreeMap<String, String>,
    /// Microseconds since the epoch, as [`Timestamp`].
    created_at: i64,
    updated_at: Option<i64>,
}

impl FlavorRecord {
    fn new(f: &Flavor) -> FlavorRecord {
        FlavorRecord {
            schema: FLAVOR_SCHEMA,
            id: f.id.clone(),
            name: f.name.clone(),
            ram: f.ram,
            vcpus: f.vcpus,
            disk: f.disk,
            ephemeral: f.ephemeral,
            swap: f.swap,
            rxtx_factor: f.rxtx_factor,
            is_public: f.is_public,
            disabled: f.disabled,
            description: f.description.clone(),
            extra_specs: f.extra_specs.clone(),
            created_at: f.created_at.micros(),
            updated_at: f.updated_at.map(Timestamp::micros),
        }
    }

    fn into_flavor(self, seq: i64) -> Flavor {
        Flavor {
            seq,
            id: self.id,
            name: self.name,
            ram: self.ram,
            vcpus: self.vcpus,
            disk: self.disk,
            ephemeral: self.ephemeral,
            swap: self.swap,
            rxtx_factor: self.rxtx_factor,
            is_public: self.is_public,
            disabled: self.disabled,
            description: self.description,
            extra_specs: self.extra_specs,
            created_at: Timestamp(self.created_at),
            updated_at: self.updated_at.map(Timestamp),
        }
    }
}

fn decode(kv: &KeyValue) -> Result<Flavor, StorageError> {
    Ok(from_json::<FlavorRecord>(kv)?.into_flavor(kv.create_revision()))
}

/// Orders by `key` as SQLite's ORDER BY does (NULL first, false before true, bytes for text).
fn by_key(key: SortKey, a: &Flavor, b: &Flavor) -> Ordering {
    match key {
        SortKey::CreatedAt => a.created_at.cmp(&b.created_at),
        SortKey::Description => a.description.cmp(&b.description),
        SortKey::Disabled => a.disabled.cmp(&b.disabled),
        SortKey::Ephemeral => a.ephemeral.cmp(&b.ephemeral),
        SortKey::FlavorId => a.id.cmp(&b.id),
        SortKey::Seq => a.seq.cmp(&b.seq),
        SortKey::IsPublic => a.is_public.cmp(&b.is_public),
        SortKey::Ram => a.ram.cmp(&b.ram),
        SortKey::Name => a.name.cmp(&b.name),
        SortKey::Disk => a.disk.cmp(&b.disk),
        SortKey::RxtxFactor => a.rxtx_factor.total_cmp(&b.rxtx_factor),
        SortKey::Swap => a.swap.cmp(&b.swap),
        SortKey::UpdatedAt => a.updated_at.cmp(&b.updated_at),
        SortKey::Vcpus => a.vcpus.cmp(&b.vcpus),
    }
}

/// [`FlavorStore`] on etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdFlavors {
    doors: EtcdDoors,
}

impl EtcdFlavors {
    pub(super) fn new(doors: EtcdDoors) -> EtcdFlavors {
        EtcdFlavors { doors }
    }
}

impl Kv {
    async fn create_flavor(self, f: Flavor) -> Result<Flavor, FlavorError> {
        let key = self.keys.flavor(&f.id);
        let name_key = self.keys.name(NameKind::Flavor, &f.name);
        let txn = Txn::new()
            .when([
                Compare::version(key.clone(), CompareOp::Equal, 0),
                Compare::version(name_key.clone(), CompareOp::Equal, 0),
            ])
            .and_then([
                TxnOp::put(key.clone(), to_json(&FlavorRecord::new(&f)), None),
                TxnOp::put(name_key, name_record(&f.id), None),
            ])
            .or_else([TxnOp::get(key, None)]);
        let resp = self.txn(txn).await?;
        if resp.succeeded() {
            return Ok(Flavor {
                seq: committed_at(&resp),
                ..f
            });
        }
        // The id is checked first, as SQLite does.
        if super::existing(&resp).first() == Some(&true) {
            Err(FlavorError::IdExists(f.id))
        } else {
            Err(FlavorError::NameExists(f.name))
        }
    }

    async fn flavors(self, filter: FlavorFilter) -> Result<Vec<Flavor>, StorageError> {
        let mut out = Vec::new();
        for kv in self.range(self.keys.flavors(), false).await? {
            let f = decode(&kv)?;
            let keep = filter.min_ram.is_none_or(|m| f.ram >= m)
                && filter.min_disk.is_none_or(|m| f.disk >= m)
                && filter.is_public.is_none_or(|p| f.is_public == p);
            if keep {
                out.push(f);
            }
        }
        out.sort_by(|a, b| {
            let o = by_key(filter.sort_key, a, b).then(a.seq.cmp(&b.seq));
            if filter.descending {
                o.reverse()
            } else {
                o
            }
        });
        Ok(out)
    }

    async fn delete_flavor(self, id: String) -> Result<bool, StorageError> {
        let key = self.keys.flavor(&id);
        for _ in 0..MAX_TRIES {
            let Some(kv) = self.get(key.clone()).await? else {
                return Ok(false);
            };
            let f: FlavorRecord = from_json(&kv)?;
            let txn = Txn::new()
                .when([Compare::mod_revision(
                    key.clone(),
                    CompareOp::Equal,
                    kv.mod_revision(),
                )])
                .and_then([
                    TxnOp::delete(key.clone(), None),
                    TxnOp::delete(self.keys.name(NameKind::Flavor, &f.name), None),
                ]);
            if self.txn(txn).await?.succeeded() {
                return Ok(true);
            }
            jitter().await;
        }
        Err(contended(&key))
    }

    /// Applies `change` to flavor `id` and writes it back unless someone wrote it in between
    /// (then re-reads and re-applies). None if there is no such flavor.
    async fn modify<R>(
        &self,
        id: &str,
        mut change: impl FnMut(&mut FlavorRecord) -> R,
    ) -> Result<Option<(Flavor, R)>, StorageError> {
        let done = self
            .modify_record(self.keys.flavor(id), |r| (change(r), true))
            .await?;
        Ok(done.map(|m| (m.record.into_flavor(m.create_revision), m.said)))
    }
}

impl FlavorStore for EtcdFlavors {
    fn create_flavor(&self, f: &Flavor) -> Result<Flavor, FlavorError> {
        let f = f.clone();
        self.doors.call(|kv| kv.create_flavor(f))
    }

    fn flavor(&self, id: &str) -> Result<Option<Flavor>, StorageError> {
        let id = id.to_owned();
        self.doors.call(|kv| async move {
            kv.get(kv.keys.flavor(&id))
                .await?
                .map(|kv| decode(&kv))
                .transpose()
        })
    }

    fn flavors(&self, filter: &FlavorFilter) -> Result<Vec<Flavor>, StorageError> {
        let filter = filter.clone();
        self.doors.call(|kv| kv.flavors(filter))
    }

    fn delete_flavor(&self, id: &str) -> Result<bool, StorageError> {
        let id = id.to_owned();
        self.doors.call(|kv| kv.delete_flavor(id))
    }

    fn set_flavor_description(
        &self,
        id: &str,
        description: Option<&str>,
    ) -> Result<Option<Flavor>, StorageError> {
        let (id, description) = (id.to_owned(), description.map(str::to_owned));
        self.doors.call(|kv| async move {
            let changed = kv
                .modify(&id, |f| {
                    f.description = description.clone();
                    f.updated_at = Some(Timestamp::now().micros());
                })
                .await?;
            Ok(changed.map(|(f, ())| f))
        })
    }

    fn set_extra_specs(
        &self,
        id: &str,
        specs: &BTreeMap<String, String>,
    ) -> Result<bool, StorageError> {
        let (id, specs) = (id.to_owned(), specs.clone());
        self.doors.call(|kv| async move {
            let changed = kv
                .modify(&id, |f| {
                    f.extra_specs
                        .extend(specs.iter().map(|(k, v)| (k.clone(), v.clone())));
                })
                .await?;
            Ok(changed.is_some())
        })
    }

    fn delete_extra_spec(&self, id: &str, key: &str) -> Result<Option<bool>, StorageError> {
        let (id, key) = (id.to_owned(), key.to_owned());
        self.doors.call(|kv| async move {
            let changed = kv
                .modify(&id, |f| f.extra_specs.remove(&key).is_some())
                .await?;
            Ok(changed.map(|(_, removed)| removed))
        })
    }
}
