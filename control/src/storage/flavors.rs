//! Nova flavors and their extra specs in SQLite, behind [`FlavorStore`].

use super::{flag, StorageError};
use crate::compute::flavors::store::{Flavor, FlavorFilter, FlavorStore, SortKey};
use crate::compute::flavors::FlavorError;
use crate::timestamp::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row};
use std::collections::BTreeMap;

/// The SQL column each sort key orders by.
fn column(key: SortKey) -> &'static str {
    match key {
        SortKey::CreatedAt => "created_at",
        SortKey::Description => "description",
        SortKey::Disabled => "disabled",
        SortKey::Ephemeral => "ephemeral",
        SortKey::FlavorId => "id",
        SortKey::Seq => "seq",
        SortKey::IsPublic => "is_public",
        SortKey::Ram => "ram",
        SortKey::Name => "name",
        SortKey::Disk => "disk",
        SortKey::RxtxFactor => "rxtx_factor",
        SortKey::Swap => "swap",
        SortKey::UpdatedAt => "updated_at",
        SortKey::Vcpus => "vcpus",
    }
}

const COLUMNS: &str = "seq, id, name, ram, vcpus, disk, ephemeral, swap, rxtx_factor, \
                       is_public, disabled, description, created_at, updated_at";

fn row(r: &Row<'_>) -> rusqlite::Result<Flavor> {
    Ok(Flavor {
        seq: r.get(0)?,
        id: r.get(1)?,
        name: r.get(2)?,
        ram: r.get(3)?,
        vcpus: r.get(4)?,
        disk: r.get(5)?,
        ephemeral: r.get(6)?,
        swap: r.get(7)?,
        rxtx_factor: r.get(8)?,
        is_public: flag(r.get(9)?),
        disabled: flag(r.get(10)?),
        description: r.get(11)?,
        extra_specs: BTreeMap::new(),
        created_at: Timestamp(r.get(12)?),
        updated_at: r.get::<_, Option<i64>>(13)?.map(Timestamp),
    })
}

/// Inserts `f` (its `seq` is ignored) with its extra specs; returns the stored flavor.
fn insert(conn: &Connection, f: &Flavor) -> Result<Flavor, StorageError> {
    conn.execute(
        "INSERT INTO flavors (id, name, ram, vcpus, disk, ephemeral, swap, rxtx_factor,
                              is_public, disabled, description, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        rusqlite::params![
            f.id,
            f.name,
            f.ram,
            f.vcpus,
            f.disk,
            f.ephemeral,
            f.swap,
            f.rxtx_factor,
            f.is_public,
            f.disabled,
            f.description,
            f.created_at.micros(),
        ],
    )?;
    let seq = conn.last_insert_rowid();
    set_extra_specs(conn, seq, &f.extra_specs)?;
    by_id(conn, &f.id)?.ok_or_else(|| StorageError::Corrupt(format!("flavor {} vanished", f.id)))
}

fn by_id(conn: &Connection, id: &str) -> Result<Option<Flavor>, StorageError> {
    one(conn, "id", id)
}

fn by_name(conn: &Connection, name: &str) -> Result<Option<Flavor>, StorageError> {
    one(conn, "name", name)
}

fn one(conn: &Connection, column: &str, value: &str) -> Result<Option<Flavor>, StorageError> {
    let sql = format!("SELECT {COLUMNS} FROM flavors WHERE {column} = ?1");
    let Some(mut f) = conn.query_row(&sql, [value], row).optional()? else {
        return Ok(None);
    };
    f.extra_specs = extra_specs(conn, f.seq)?;
    Ok(Some(f))
}

/// Every flavor passing `filter`, sorted (ties broken by `seq`), with extra specs.
fn list(conn: &Connection, filter: &FlavorFilter) -> Result<Vec<Flavor>, StorageError> {
    let dir = if filter.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {COLUMNS} FROM flavors
         WHERE (?1 IS NULL OR ram >= ?1) AND (?2 IS NULL OR disk >= ?2)
           AND (?3 IS NULL OR is_public = ?3)
         ORDER BY {col} {dir}, seq {dir}",
        col = column(filter.sort_key)
    );
    let mut st = conn.prepare(&sql)?;
    let mut flavors: Vec<Flavor> = st
        .query_map((filter.min_ram, filter.min_disk, filter.is_public), row)?
        .collect::<Result<_, _>>()?;
    let mut specs = conn.prepare("SELECT flavor_seq, key, value FROM flavor_extra_specs")?;
    let mut by_seq: BTreeMap<i64, BTreeMap<String, String>> = BTreeMap::new();
    for spec in specs.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))? {
        let (seq, k, v): (i64, String, String) = spec?;
        by_seq.entry(seq).or_default().insert(k, v);
    }
    for f in &mut flavors {
        f.extra_specs = by_seq.remove(&f.seq).unwrap_or_default();
    }
    Ok(flavors)
}

fn delete(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM flavors WHERE id = ?1", [id])? > 0)
}

fn set_description(
    conn: &Connection,
    seq: i64,
    description: Option<&str>,
) -> Result<(), StorageError> {
    conn.execute(
        "UPDATE flavors SET description = ?1, updated_at = ?2 WHERE seq = ?3",
        (description, Timestamp::now().micros(), seq),
    )?;
    Ok(())
}

fn extra_specs(conn: &Connection, seq: i64) -> Result<BTreeMap<String, String>, StorageError> {
    let mut st = conn.prepare("SELECT key, value FROM flavor_extra_specs WHERE flavor_seq = ?1")?;
    let rows = st.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds or replaces each of `specs` on the flavor; keys not named are kept.
fn set_extra_specs(
    conn: &Connection,
    seq: i64,
    specs: &BTreeMap<String, String>,
) -> Result<(), StorageError> {
    let mut st = conn.prepare(
        "INSERT INTO flavor_extra_specs (flavor_seq, key, value) VALUES (?1, ?2, ?3)
         ON CONFLICT (flavor_seq, key) DO UPDATE SET value = excluded.value",
    )?;
    for (k, v) in specs {
        st.execute((seq, k, v))?;
    }
    Ok(())
}

fn delete_extra_spec(conn: &Connection, seq: i64, key: &str) -> Result<bool, StorageError> {
    Ok(conn.execute(
        "DELETE FROM flavor_extra_specs WHERE flavor_seq = ?1 AND key = ?2",
        (seq, key),
    )? > 0)
}

/// The SQLite implementation of flavors' door: each method one transaction.
impl FlavorStore for super::Db {
    fn create_flavor(&self, f: &Flavor) -> Result<Flavor, FlavorError> {
        // IMMEDIATE: nobody takes the id or the name between the checks and the insert.
        self.write(|tx| {
            if by_id(tx, &f.id)?.is_some() {
                return Err(FlavorError::IdExists(f.id.clone()));
            }
            if by_name(tx, &f.name)?.is_some() {
                return Err(FlavorError::NameExists(f.name.clone()));
            }
            Ok(insert(tx, f)?)
        })
    }

    fn flavor(&self, id: &str) -> Result<Option<Flavor>, StorageError> {
        self.read(|c| by_id(c, id))
    }

    fn flavors(&self, filter: &FlavorFilter) -> Result<Vec<Flavor>, StorageError> {
        self.read(|c| list(c, filter))
    }

    fn delete_flavor(&self, id: &str) -> Result<bool, StorageError> {
        self.write(|tx| delete(tx, id))
    }

    fn set_flavor_description(
        &self,
        id: &str,
        description: Option<&str>,
    ) -> Result<Option<Flavor>, StorageError> {
        self.write(|tx| {
            let Some(f) = by_id(tx, id)? else {
                return Ok(None);
            };
            set_description(tx, f.seq, description)?;
            by_id(tx, id)
        })
    }

    fn set_extra_specs(
        &self,
        id: &str,
        specs: &BTreeMap<String, String>,
    ) -> Result<bool, StorageError> {
        self.write(|tx| {
            let Some(f) = by_id(tx, id)? else {
                return Ok(false);
            };
            set_extra_specs(tx, f.seq, specs)?;
            Ok(true)
        })
    }

    fn delete_extra_spec(&self, id: &str, key: &str) -> Result<Option<bool>, StorageError> {
        self.write(|tx| {
            let Some(f) = by_id(tx, id)? else {
                return Ok(None);
            };
            Ok(Some(delete_extra_spec(tx, f.seq, key)?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

    #[test]
    fn conforms_to_the_flavor_store_contract() {
        crate::compute::flavors::store::conformance::run(|| Db::open_in_memory().unwrap());
    }

    #[test]
    fn extra_specs_go_with_their_flavor() {
        let db = Db::open_in_memory().unwrap();
        let f = crate::compute::flavors::store::conformance::flavor("1", "small", 512, 1, true);
        db.create_flavor(&f).unwrap();
        assert!(db.delete_flavor("1").unwrap());
        let left: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM flavor_extra_specs", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(left, 0);
    }
}
