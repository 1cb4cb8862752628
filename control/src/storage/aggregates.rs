//! Nova's host aggregates with their hosts and metadata in SQLite, behind [`AggregateStore`].
//! A write reads every aggregate and writes its decision in one IMMEDIATE transaction, so no
//! other write lands in between.

use super::StorageError;
use crate::compute::aggregates::store::{Aggregate, AggregateStore, AggregateWrite, Decide};
use crate::timestamp::Timestamp;
use rusqlite::{named_params, Connection};

fn all(conn: &Connection) -> Result<Vec<Aggregate>, StorageError> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, uuid, name, created_at, updated_at FROM aggregates ORDER BY id",
    )?;
    let mut out: Vec<Aggregate> = stmt
        .query_map([], |r| {
            Ok(Aggregate {
                id: r.get("id")?,
                uuid: r.get("uuid")?,
                name: r.get("name")?,
                hosts: Default::default(),
                metadata: Default::default(),
                created_at: Timestamp(r.get("created_at")?),
                updated_at: r.get::<_, Option<i64>>("updated_at")?.map(Timestamp),
            })
        })?
        .collect::<Result<_, _>>()?;
    let mut hosts = conn.prepare_cached("SELECT aggregate_id, host FROM aggregate_hosts")?;
    let hosts = hosts
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut metadata =
        conn.prepare_cached("SELECT aggregate_id, key, value FROM aggregate_metadata")?;
    let metadata = metadata
        .query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    for a in &mut out {
        a.hosts = hosts
            .iter()
            .filter(|(id, _)| *id == a.id)
            .map(|(_, h)| h.clone())
            .collect();
        a.metadata = metadata
            .iter()
            .filter(|(id, _, _)| *id == a.id)
            .map(|(_, k, v)| (k.clone(), v.clone()))
            .collect();
    }
    Ok(out)
}

/// Writes `a`'s hosts and metadata in place of whatever it had.
fn put_members(conn: &Connection, a: &Aggregate) -> Result<(), StorageError> {
    let id = named_params! {":id": a.id};
    conn.execute("DELETE FROM aggregate_hosts WHERE aggregate_id = :id", id)?;
    conn.execute(
        "DELETE FROM aggregate_metadata WHERE aggregate_id = :id",
        id,
    )?;
    for host in &a.hosts {
        conn.execute(
            "INSERT INTO aggregate_hosts (aggregate_id, host) VALUES (:id, :host)",
            named_params! {":id": a.id, ":host": host},
        )?;
    }
    for (key, value) in &a.metadata {
        conn.execute(
            "INSERT INTO aggregate_metadata (aggregate_id, key, value)
             VALUES (:id, :key, :value)",
            named_params! {":id": a.id, ":key": key, ":value": value},
        )?;
    }
    Ok(())
}

impl AggregateStore for super::Db {
    fn aggregates(&self) -> Result<Vec<Aggregate>, StorageError> {
        self.read(all)
    }

    fn write(&self, decide: &mut Decide<'_>) -> Result<Option<Aggregate>, StorageError> {
        self.write(|tx| {
            let before = all(tx)?;
            let stored = |id: i64| before.iter().find(|a| a.id == id).cloned();
            match decide(&before) {
                None => Ok(None),
                Some(AggregateWrite::Create(new)) => {
                    tx.execute(
                        "INSERT INTO aggregates (uuid, name, created_at, updated_at)
                         VALUES (:uuid, :name, :created, :updated)",
                        named_params! {
                            ":uuid": new.uuid,
                            ":name": new.name,
                            ":created": new.created_at.micros(),
                            ":updated": new.updated_at.map(Timestamp::micros),
                        },
                    )?;
                    let made = Aggregate {
                        id: tx.last_insert_rowid(),
                        ..new
                    };
                    put_members(tx, &made)?;
                    Ok(Some(made))
                }
                Some(AggregateWrite::Save(a)) => {
                    if stored(a.id).is_none() {
                        return Ok(None);
                    }
                    tx.execute(
                        "UPDATE aggregates SET name = :name, updated_at = :updated
                         WHERE id = :id",
                        named_params! {
                            ":id": a.id,
                            ":name": a.name,
                            ":updated": a.updated_at.map(Timestamp::micros),
                        },
                    )?;
                    put_members(tx, &a)?;
                    Ok(Some(a))
                }
                Some(AggregateWrite::Delete(id)) => {
                    let gone = stored(id);
                    tx.execute(
                        "DELETE FROM aggregates WHERE id = :id",
                        named_params! {":id": id},
                    )?;
                    Ok(gone)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::compute::aggregates::store::conformance;
    use crate::storage::Db;

    #[test]
    fn sqlite_aggregates_conform_to_the_store_contract() {
        conformance::run(|| Db::open_in_memory().unwrap());
        conformance::races(|| {
            let db = Db::open_in_memory().unwrap();
            (db.clone(), db)
        });
    }
}
