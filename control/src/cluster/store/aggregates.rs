//! Host aggregates' door in etcd: `/aggregates/<uuid>` holds an aggregate with its hosts and
//! metadata inline (docs/cluster.md, "The keyspace"); Nova's integer id is the key's
//! `create_revision`. A write reads every aggregate, decides, and commits only if no
//! aggregate was written since (every key under the prefix last modified at or before the
//! newest read, and the one it saves or deletes as read): the name and zone rules, which span
//! aggregates, hold however many boxes write at once.

use std::collections::{BTreeMap, BTreeSet};

use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp};
use serde::{Deserialize, Serialize};

use super::{from_json, to_json, Decided, EtcdDoors};
use crate::compute::aggregates::store::{Aggregate, AggregateStore, AggregateWrite, Decide};
use crate::store::StorageError;
use crate::timestamp::Timestamp;

const AGGREGATE_SCHEMA: u32 = 1;

#[derive(Serialize, Deserialize)]
struct AggregateRecord {
    schema: u32,
    uuid: String,
    name: String,
    #[serde(default)]
    hosts: BTreeSet<String>,
    #[serde(default)]
    metadata: BTreeMap<String, String>,
    /// Microseconds since the epoch, as [`Timestamp`].
    created_at: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    updated_at: Option<i64>,
}

impl AggregateRecord {
    fn new(a: &Aggregate) -> AggregateRecord {
        AggregateRecord {
            schema: AGGREGATE_SCHEMA,
            uuid: a.uuid.clone(),
            name: a.name.clone(),
            hosts: a.hosts.clone(),
            metadata: a.metadata.clone(),
            created_at: a.created_at.micros(),
            updated_at: a.updated_at.map(Timestamp::micros),
        }
    }
}

fn decode(kv: &KeyValue) -> Result<Aggregate, StorageError> {
    let r: AggregateRecord = from_json(kv)?;
    Ok(Aggregate {
        id: kv.create_revision(),
        uuid: r.uuid,
        name: r.name,
        hosts: r.hosts,
        metadata: r.metadata,
        created_at: Timestamp(r.created_at),
        updated_at: r.updated_at.map(Timestamp),
    })
}

/// [`AggregateStore`] on etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdAggregates {
    doors: EtcdDoors,
}

impl EtcdAggregates {
    pub(super) fn new(doors: EtcdDoors) -> EtcdAggregates {
        EtcdAggregates { doors }
    }

    /// Every aggregate in id order, each with its key's `mod_revision`.
    fn read(&self) -> Result<Vec<(Aggregate, i64)>, StorageError> {
        let prefix = self.doors.kv.keys.aggregates();
        self.doors.call(|kv| async move {
            let mut out = kv
                .range(prefix, false)
                .await?
                .iter()
                .map(|kv| Ok((decode(kv)?, kv.mod_revision())))
                .collect::<Result<Vec<_>, StorageError>>()?;
            out.sort_by_key(|(a, _)| a.id);
            Ok(out)
        })
    }
}

/// What a committed write answers once it is known (a create's id is its commit revision).
enum Answer {
    Written(Aggregate),
    Created(String),
    Nothing,
}

impl AggregateStore for EtcdAggregates {
    fn aggregates(&self) -> Result<Vec<Aggregate>, StorageError> {
        Ok(self.read()?.into_iter().map(|(a, _)| a).collect())
    }

    fn write(&self, decide: &mut Decide<'_>) -> Result<Option<Aggregate>, StorageError> {
        let keys = self.doors.kv.keys.clone();
        let answer = self.doors.contested(&keys.aggregates(), |_| {
            let read = self.read()?;
            let newest = read.iter().map(|(_, rev)| *rev).max().unwrap_or(0);
            let all: Vec<Aggregate> = read.iter().map(|(a, _)| a.clone()).collect();
            let stored = |id: i64| read.iter().find(|(a, _)| a.id == id);
            // No aggregate written since the read (a delete is caught by the compare on the
            // key a write names: the others' deletes loosen no rule).
            let mut when =
                vec![
                    Compare::mod_revision(keys.aggregates(), CompareOp::Less, newest + 1)
                        .with_prefix(),
                ];
            let (op, answer) = match decide(&all) {
                None => return Ok(Decided::Done(Answer::Nothing)),
                Some(AggregateWrite::Create(new)) => {
                    let key = keys.aggregate(&new.uuid);
                    when.push(Compare::version(key.clone(), CompareOp::Equal, 0));
                    let op = TxnOp::put(key, to_json(&AggregateRecord::new(&new)), None);
                    (op, Answer::Created(new.uuid))
                }
                Some(AggregateWrite::Save(a)) => {
                    let Some((old, rev)) = stored(a.id) else {
                        return Ok(Decided::Done(Answer::Nothing));
                    };
                    let key = keys.aggregate(&old.uuid);
                    when.push(Compare::mod_revision(key.clone(), CompareOp::Equal, *rev));
                    // The uuid names the key: it is the stored one whatever the caller sent.
                    let saved = Aggregate {
                        uuid: old.uuid.clone(),
                        ..a
                    };
                    let op = TxnOp::put(key, to_json(&AggregateRecord::new(&saved)), None);
                    (op, Answer::Written(saved))
                }
                Some(AggregateWrite::Delete(id)) => {
                    let Some((old, rev)) = stored(id) else {
                        return Ok(Decided::Done(Answer::Nothing));
                    };
                    let key = keys.aggregate(&old.uuid);
                    when.push(Compare::mod_revision(key.clone(), CompareOp::Equal, *rev));
                    (TxnOp::delete(key, None), Answer::Written(old.clone()))
                }
            };
            Ok::<_, StorageError>(Decided::Write(Txn::new().when(when).and_then([op]), answer))
        })?;
        match answer {
            Answer::Nothing => Ok(None),
            Answer::Written(a) => Ok(Some(a)),
            Answer::Created(uuid) => {
                let key = keys.aggregate(&uuid);
                let made = self.doors.call(|kv| async move {
                    kv.get(key).await?.map(|kv| decode(&kv)).transpose()
                })?;
                made.map(Some).ok_or_else(|| {
                    StorageError::Corrupt(format!("aggregate {uuid} vanished as it was made"))
                })
            }
        }
    }
}
