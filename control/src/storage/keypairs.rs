//! Nova key pairs in SQLite, behind [`KeyPairStore`].

use super::StorageError;
use crate::compute::keypairs::{KeyPair, KeyPairError, KeyPairStore, KeyType};
use crate::quota::Limit;
use crate::timestamp::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row};

const COLUMNS: &str = "seq, user_id, name, key_type, public_key, fingerprint, created_at";

fn row(r: &Row<'_>) -> rusqlite::Result<KeyPair> {
    let key_type: String = r.get(3)?;
    Ok(KeyPair {
        seq: r.get(0)?,
        user_id: r.get(1)?,
        name: r.get(2)?,
        key_type: KeyType::parse(&key_type).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                3,
                rusqlite::types::Type::Text,
                format!("unknown key pair type {key_type:?}").into(),
            )
        })?,
        public_key: r.get(4)?,
        fingerprint: r.get(5)?,
        created_at: Timestamp(r.get(6)?),
    })
}

fn one(conn: &Connection, user_id: &str, name: &str) -> Result<Option<KeyPair>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM key_pairs WHERE user_id = ?1 AND name = ?2");
    Ok(conn.query_row(&sql, (user_id, name), row).optional()?)
}

/// The SQLite implementation of key pairs' door: each method one statement or transaction.
impl KeyPairStore for super::Db {
    fn create_key_pair(&self, k: &KeyPair, limit: Limit) -> Result<KeyPair, KeyPairError> {
        // IMMEDIATE: nobody takes the name, or the last pair of the quota, between the checks
        // and the insert.
        self.write(|tx| {
            if one(tx, &k.user_id, &k.name)?.is_some() {
                return Err(KeyPairError::NameExists(k.name.clone()));
            }
            let held: i64 = tx
                .query_row(
                    "SELECT COUNT(*) FROM key_pairs WHERE user_id = ?1",
                    [&k.user_id],
                    |r| r.get(0),
                )
                .map_err(StorageError::from)?;
            if crate::quota::check("key_pairs", limit, held, 1).is_err() {
                return Err(KeyPairError::QuotaExceeded);
            }
            tx.execute(
                "INSERT INTO key_pairs (user_id, name, key_type, public_key, fingerprint,
                                        created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                (
                    &k.user_id,
                    &k.name,
                    k.key_type.as_str(),
                    &k.public_key,
                    &k.fingerprint,
                    k.created_at.micros(),
                ),
            )
            .map_err(StorageError::from)?;
            Ok(KeyPair {
                seq: tx.last_insert_rowid(),
                ..k.clone()
            })
        })
    }

    fn key_pair(&self, user_id: &str, name: &str) -> Result<Option<KeyPair>, StorageError> {
        self.read(|c| one(c, user_id, name))
    }

    fn key_pairs(&self, user_id: &str) -> Result<Vec<KeyPair>, StorageError> {
        self.read(|c| {
            let sql =
                format!("SELECT {COLUMNS} FROM key_pairs WHERE user_id = ?1 ORDER BY name, seq");
            let mut st = c.prepare(&sql)?;
            let pairs = st.query_map([user_id], row)?.collect::<Result<_, _>>()?;
            Ok(pairs)
        })
    }

    fn delete_key_pair(&self, user_id: &str, name: &str) -> Result<bool, StorageError> {
        self.write(|tx| {
            Ok(tx.execute(
                "DELETE FROM key_pairs WHERE user_id = ?1 AND name = ?2",
                (user_id, name),
            )? > 0)
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::storage::Db;

    #[test]
    fn conforms_to_the_key_pair_store_contract() {
        crate::compute::keypairs::store::conformance::run(|| Db::open_in_memory().unwrap());
    }
}
