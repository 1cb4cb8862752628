//! The scheduler's claims, one JSON row per consumer (a server, or the migration that holds
//! a resized server's old size). Written in the same transaction as the step that took or
//! released the claim, and replayed into the scheduler's cluster at start.

use super::StorageError;
use crate::compute::servers::placement::store::ClaimStore;
use outpost_resources::{Claim, ConsumerId};
use rusqlite::Connection;

fn put(conn: &Connection, claim: &Claim) -> Result<(), StorageError> {
    let json = serde_json::to_string(claim)
        .map_err(|e| StorageError::Corrupt(format!("cannot encode a claim: {e}")))?;
    conn.execute(
        "INSERT INTO claims (consumer_id, claim) VALUES (?1, ?2)
         ON CONFLICT (consumer_id) DO UPDATE SET claim = excluded.claim",
        (&claim.consumer_id.0, json),
    )?;
    Ok(())
}

/// Removes the consumer's claim; false if it had none.
fn remove(conn: &Connection, consumer_id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM claims WHERE consumer_id = ?1", [consumer_id])? > 0)
}

fn all(conn: &Connection) -> Result<Vec<Claim>, StorageError> {
    let mut st = conn.prepare("SELECT consumer_id, claim FROM claims ORDER BY consumer_id")?;
    let rows = st.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
    rows.map(|row| {
        let (id, json) = row?;
        serde_json::from_str(&json)
            .map_err(|e| StorageError::Corrupt(format!("claim of {id}: {e}")))
    })
    .collect()
}

/// The SQLite implementation of placement's door: each method one transaction.
impl ClaimStore for super::Db {
    fn claims(&self) -> Result<Vec<Claim>, StorageError> {
        self.read(all)
    }

    fn put_claims(&self, claims: &[Claim]) -> Result<(), StorageError> {
        self.write(|tx| claims.iter().try_for_each(|c| put(tx, c)))
    }

    fn remove_claim(
        &self,
        consumer: &ConsumerId,
        then: Option<&Claim>,
    ) -> Result<bool, StorageError> {
        self.write(|tx| {
            let removed = remove(tx, &consumer.0)?;
            if let Some(c) = then {
                put(tx, c)?;
            }
            Ok(removed)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;
    use outpost_resources::{HostId, Resources};

    #[test]
    fn conforms_to_the_claim_store_contract() {
        crate::compute::servers::placement::store::conformance::run(|| {
            Db::open_in_memory().unwrap()
        });
    }

    #[test]
    fn claims_round_trip_and_replace() {
        let db = Db::open_in_memory().unwrap();
        let mut claim = Claim {
            consumer_id: ConsumerId::from("s1"),
            host_id: HostId("box".into()),
            amounts: Resources::compute(1, 256, 1),
        };
        db.write(|tx| put(tx, &claim)).unwrap();
        claim.amounts = Resources::compute(2, 512, 1);
        db.write(|tx| put(tx, &claim)).unwrap();
        assert_eq!(db.read(all).unwrap(), vec![claim]);
        assert!(db.write(|tx| remove(tx, "s1")).unwrap());
        assert!(!db.write(|tx| remove(tx, "s1")).unwrap());
        assert!(db.read(all).unwrap().is_empty());
    }
}
