//! Key pairs' door to their state. Everything that reads or writes a key pair goes through
//! [`KeyPairStore`]; SQLite implements it for one box (`storage::keypairs`), and a cluster's
//! store implements the same trait in etcd. A key pair belongs to one user and is named within
//! that user's pairs only; creating one checks the name is free and writes it as one step, so
//! two creates of one name cannot both succeed.

use super::KeyPairError;
use crate::quota::Limit;
use crate::store::StorageError;
use crate::timestamp::Timestamp;

#[cfg(test)]
pub(crate) mod conformance;

/// Nova's key pair `type` (microversion 2.2): an OpenSSH public key or an X.509 certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Ssh,
    X509,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::Ssh => "ssh",
            KeyType::X509 => "x509",
        }
    }

    pub fn parse(s: &str) -> Option<KeyType> {
        match s {
            "ssh" => Some(KeyType::Ssh),
            "x509" => Some(KeyType::X509),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyPair {
    /// Nova's integer `id`: numbered by the store in creation order (its value is ignored
    /// when a pair is created).
    pub seq: i64,
    pub user_id: String,
    pub name: String,
    pub key_type: KeyType,
    /// One line in OpenSSH's `authorized_keys` form.
    pub public_key: String,
    /// MD5 of the key's wire encoding, colon-separated hex, as Nova shows it.
    pub fingerprint: String,
    pub created_at: Timestamp,
}

pub trait KeyPairStore: Send + Sync {
    /// Records `k` unless its user already has a pair of its name
    /// ([`KeyPairError::NameExists`]) or `limit` pairs ([`KeyPairError::QuotaExceeded`],
    /// counted in the same write, so racing creates cannot overshoot it); returns the pair as
    /// stored.
    fn create_key_pair(&self, k: &KeyPair, limit: Limit) -> Result<KeyPair, KeyPairError>;

    /// The pair `name` of user `user_id`.
    fn key_pair(&self, user_id: &str, name: &str) -> Result<Option<KeyPair>, StorageError>;

    /// Every pair of user `user_id`, by name (Nova pages key pairs in name order).
    fn key_pairs(&self, user_id: &str) -> Result<Vec<KeyPair>, StorageError>;

    /// Removes the pair; false if the user had none of that name.
    fn delete_key_pair(&self, user_id: &str, name: &str) -> Result<bool, StorageError>;
}
