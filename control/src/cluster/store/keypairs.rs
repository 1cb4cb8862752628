//! Key pairs' door in etcd: `/keypairs/<user id>/<name>` holds one pair, so a user's pairs
//! are one range read, already in name order, and a name is taken by creating its key only
//! if absent. A pair's `seq` (Nova's integer id) is its key's `create_revision`. Under a
//! `key_pairs` quota the put also compares the user's prefix against the revision the pairs
//! were counted at, so racing creates cannot overshoot it.

use etcd_client::{Compare, CompareOp, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use super::{committed_at, contended, existing, from_json, to_json, EtcdDoors, MAX_TRIES};
use crate::compute::keypairs::{KeyPair, KeyPairError, KeyPairStore, KeyType};
use crate::quota::{Limit, UNLIMITED};
use crate::store::StorageError;
use crate::timestamp::Timestamp;

const KEY_PAIR_SCHEMA: u32 = 1;

#[derive(Serialize, Deserialize)]
struct KeyPairRecord {
    schema: u32,
    user_id: String,
    name: String,
    /// `ssh` or `x509`, as the API spells it.
    key_type: String,
    public_key: String,
    fingerprint: String,
    /// Microseconds since the epoch, as [`Timestamp`].
    created_at: i64,
}

fn decode(kv: &KeyValue) -> Result<KeyPair, StorageError> {
    let r: KeyPairRecord = from_json(kv)?;
    let key_type = KeyType::parse(&r.key_type).ok_or_else(|| {
        StorageError::Corrupt(format!(
            "{}: unknown key pair type {:?}",
            String::from_utf8_lossy(kv.key()),
            r.key_type
        ))
    })?;
    Ok(KeyPair {
        seq: kv.create_revision(),
        user_id: r.user_id,
        name: r.name,
        key_type,
        public_key: r.public_key,
        fingerprint: r.fingerprint,
        created_at: Timestamp(r.created_at),
    })
}

/// [`KeyPairStore`] on etcd. Cheap to clone.
#[derive(Clone)]
pub struct EtcdKeyPairs {
    doors: EtcdDoors,
}

impl EtcdKeyPairs {
    pub(super) fn new(doors: EtcdDoors) -> EtcdKeyPairs {
        EtcdKeyPairs { doors }
    }
}

impl KeyPairStore for EtcdKeyPairs {
    fn create_key_pair(&self, k: &KeyPair, limit: Limit) -> Result<KeyPair, KeyPairError> {
        let record = KeyPairRecord {
            schema: KEY_PAIR_SCHEMA,
            user_id: k.user_id.clone(),
            name: k.name.clone(),
            key_type: k.key_type.as_str().to_owned(),
            public_key: k.public_key.clone(),
            fingerprint: k.fingerprint.clone(),
            created_at: k.created_at.micros(),
        };
        let value = to_json(&record);
        for _ in 0..MAX_TRIES {
            let (k, value) = (k.clone(), value.clone());
            let done = self.doors.call(|kv| async move {
                let key = kv.keys.key_pair(&k.user_id, &k.name);
                let mine = kv.keys.key_pairs_of(&k.user_id);
                let mut when = vec![Compare::version(key.clone(), CompareOp::Equal, 0)];
                if limit != UNLIMITED {
                    // The user's pairs as of one revision; the put commits only if none was
                    // added since, so the count still holds.
                    let read = kv
                        .txn(Txn::new().and_then([TxnOp::get(
                            mine.as_str(),
                            Some(GetOptions::new().with_prefix().with_count_only()),
                        )]))
                        .await?;
                    let held = read
                        .op_responses()
                        .into_iter()
                        .find_map(|r| match r {
                            TxnOpResponse::Get(g) => Some(g.count()),
                            _ => None,
                        })
                        .unwrap_or(0);
                    if crate::quota::check("key_pairs", limit, held, 1).is_err() {
                        return Err(KeyPairError::QuotaExceeded);
                    }
                    when.push(
                        Compare::mod_revision(mine, CompareOp::Less, committed_at(&read) + 1)
                            .with_prefix(),
                    );
                }
                let txn = Txn::new()
                    .when(when)
                    .and_then([TxnOp::put(key.clone(), value, None)])
                    .or_else([TxnOp::get(key, None)]);
                let resp = kv.txn(txn).await?;
                if resp.succeeded() {
                    return Ok(Some(KeyPair {
                        seq: committed_at(&resp),
                        ..k
                    }));
                }
                if existing(&resp).first() == Some(&true) {
                    return Err(KeyPairError::NameExists(k.name));
                }
                // Another pair of the user's landed between the count and the put.
                Ok(None)
            })?;
            if let Some(pair) = done {
                return Ok(pair);
            }
            std::thread::sleep(crate::random::retry_jitter());
        }
        Err(contended(&self.doors.kv.keys.key_pair(&k.user_id, &k.name)).into())
    }

    fn key_pair(&self, user_id: &str, name: &str) -> Result<Option<KeyPair>, StorageError> {
        let (user_id, name) = (user_id.to_owned(), name.to_owned());
        self.doors.call(|kv| async move {
            kv.get(kv.keys.key_pair(&user_id, &name))
                .await?
                .map(|kv| decode(&kv))
                .transpose()
        })
    }

    fn key_pairs(&self, user_id: &str) -> Result<Vec<KeyPair>, StorageError> {
        let user_id = user_id.to_owned();
        self.doors.call(|kv| async move {
            // etcd answers a range in key order, which is name order (bytes, as SQLite's).
            kv.range(kv.keys.key_pairs_of(&user_id), false)
                .await?
                .iter()
                .map(decode)
                .collect()
        })
    }

    fn delete_key_pair(&self, user_id: &str, name: &str) -> Result<bool, StorageError> {
        let (user_id, name) = (user_id.to_owned(), name.to_owned());
        self.doors.call(|kv| async move {
            let txn = Txn::new().and_then([TxnOp::delete(kv.keys.key_pair(&user_id, &name), None)]);
            let resp = kv.txn(txn).await?;
            Ok(resp
                .op_responses()
                .into_iter()
                .any(|r| matches!(r, TxnOpResponse::Delete(d) if d.deleted() > 0)))
        })
    }
}
