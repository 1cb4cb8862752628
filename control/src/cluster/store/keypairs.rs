//! Key pairs' door in etcd: `/keypairs/<user id>/<name>` holds one pair, so a user's pairs
//! are one range read, already in name order, and a name is taken by creating its key only
//! if absent. A pair's `seq` (Nova's integer id) is its key's `create_revision`.

use etcd_client::{Compare, CompareOp, KeyValue, Txn, TxnOp, TxnOpResponse};
use serde::{Deserialize, Serialize};

use super::{committed_at, from_json, to_json, EtcdDoors};
use crate::compute::keypairs::{KeyPair, KeyPairError, KeyPairStore, KeyType};
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
    fn create_key_pair(&self, k: &KeyPair) -> Result<KeyPair, KeyPairError> {
        let k = k.clone();
        self.doors.call(|kv| async move {
            let key = kv.keys.key_pair(&k.user_id, &k.name);
            let record = KeyPairRecord {
                schema: KEY_PAIR_SCHEMA,
                user_id: k.user_id.clone(),
                name: k.name.clone(),
                key_type: k.key_type.as_str().to_owned(),
                public_key: k.public_key.clone(),
                fingerprint: k.fingerprint.clone(),
                created_at: k.created_at.micros(),
            };
            let txn = Txn::new()
                .when([Compare::version(key.clone(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key, to_json(&record), None)]);
            let resp = kv.txn(txn).await?;
            if !resp.succeeded() {
                return Err(KeyPairError::NameExists(k.name));
            }
            Ok(KeyPair {
                seq: committed_at(&resp),
                ..k
            })
        })
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
