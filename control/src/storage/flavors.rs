//! Nova flavors and their extra specs.

use super::{flag, StorageError};
use crate::timestamp::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row};
use std::collections::BTreeMap;

#[derive(Debug, Clone, PartialEq)]
pub struct Flavor {
    /// Internal row id: Nova's integer flavor `id`, usable as a sort key.
    pub seq: i64,
    pub id: String,
    pub name: String,
    pub ram: i64,
    pub vcpus: i64,
    pub disk: i64,
    pub ephemeral: i64,
    pub swap: i64,
    pub rxtx_factor: f64,
    pub is_public: bool,
    pub disabled: bool,
    pub description: Option<String>,
    pub extra_specs: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

/// Columns a flavor list can be sorted by; each maps to one fixed SQL column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortKey {
    CreatedAt,
    Description,
    Disabled,
    Ephemeral,
    FlavorId,
    Seq,
    IsPublic,
    Ram,
    Name,
    Disk,
    RxtxFactor,
    Swap,
    UpdatedAt,
    Vcpus,
}

impl SortKey {
    fn column(self) -> &'static str {
        match self {
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
}

#[derive(Debug, Clone)]
pub struct FlavorFilter {
    pub min_ram: Option<i64>,
    pub min_disk: Option<i64>,
    /// `Some(b)`: only flavors whose is_public is `b`; `None`: both.
    pub is_public: Option<bool>,
    pub sort_key: SortKey,
    pub descending: bool,
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
pub fn insert(conn: &Connection, f: &Flavor) -> Result<Flavor, StorageError> {
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

pub fn by_id(conn: &Connection, id: &str) -> Result<Option<Flavor>, StorageError> {
    one(conn, "id", id)
}

pub fn by_name(conn: &Connection, name: &str) -> Result<Option<Flavor>, StorageError> {
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
pub fn list(conn: &Connection, filter: &FlavorFilter) -> Result<Vec<Flavor>, StorageError> {
    let dir = if filter.descending { "DESC" } else { "ASC" };
    let sql = format!(
        "SELECT {COLUMNS} FROM flavors
         WHERE (?1 IS NULL OR ram >= ?1) AND (?2 IS NULL OR disk >= ?2)
           AND (?3 IS NULL OR is_public = ?3)
         ORDER BY {col} {dir}, seq {dir}",
        col = filter.sort_key.column()
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

pub fn delete(conn: &Connection, id: &str) -> Result<bool, StorageError> {
    Ok(conn.execute("DELETE FROM flavors WHERE id = ?1", [id])? > 0)
}

pub fn set_description(
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

pub fn extra_specs(conn: &Connection, seq: i64) -> Result<BTreeMap<String, String>, StorageError> {
    let mut st = conn.prepare("SELECT key, value FROM flavor_extra_specs WHERE flavor_seq = ?1")?;
    let rows = st.query_map([seq], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Adds or replaces each of `specs` on the flavor; keys not named are kept.
pub fn set_extra_specs(
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

pub fn delete_extra_spec(conn: &Connection, seq: i64, key: &str) -> Result<bool, StorageError> {
    Ok(conn.execute(
        "DELETE FROM flavor_extra_specs WHERE flavor_seq = ?1 AND key = ?2",
        (seq, key),
    )? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Db;

    fn flavor(id: &str, name: &str, ram: i64, disk: i64, public: bool) -> Flavor {
        Flavor {
            seq: 0,
            id: id.into(),
            name: name.into(),
            ram,
            vcpus: 1,
            disk,
            ephemeral: 0,
            swap: 0,
            rxtx_factor: 1.0,
            is_public: public,
            disabled: false,
            description: None,
            extra_specs: BTreeMap::from([("hw:cpu_policy".into(), "shared".into())]),
            created_at: Timestamp::now(),
            updated_at: None,
        }
    }

    #[test]
    fn filters_sort_and_specs() {
        let db = Db::open_in_memory().unwrap();
        db.write(|tx| -> Result<(), StorageError> {
            insert(tx, &flavor("1", "small", 512, 1, true))?;
            insert(tx, &flavor("2", "large", 4096, 20, true))?;
            insert(tx, &flavor("3", "secret", 2048, 10, false))?;
            Ok(())
        })
        .unwrap();
        let filter = FlavorFilter {
            min_ram: Some(1024),
            min_disk: None,
            is_public: Some(true),
            sort_key: SortKey::Name,
            descending: false,
        };
        let got = db.read(|c| list(c, &filter)).unwrap();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].name, "large");
        assert_eq!(got[0].extra_specs["hw:cpu_policy"], "shared");
        let all = FlavorFilter {
            min_ram: None,
            min_disk: Some(5),
            is_public: None,
            sort_key: SortKey::Ram,
            descending: true,
        };
        let names: Vec<_> = db
            .read(|c| list(c, &all))
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(names, ["large", "secret"]);
    }

    #[test]
    fn extra_specs_upsert_and_cascade() {
        let db = Db::open_in_memory().unwrap();
        let f = db
            .write(|tx| insert(tx, &flavor("1", "small", 512, 1, true)))
            .unwrap();
        let more = BTreeMap::from([
            ("hw:cpu_policy".to_owned(), "dedicated".to_owned()),
            ("quota:disk_read_iops_sec".to_owned(), "100".to_owned()),
        ]);
        db.write(|tx| set_extra_specs(tx, f.seq, &more)).unwrap();
        assert_eq!(db.read(|c| extra_specs(c, f.seq)).unwrap(), more);
        assert!(db
            .write(|tx| delete_extra_spec(tx, f.seq, "hw:cpu_policy"))
            .unwrap());
        assert!(!db
            .write(|tx| delete_extra_spec(tx, f.seq, "hw:cpu_policy"))
            .unwrap());
        assert!(db.write(|tx| delete(tx, "1")).unwrap());
        let left: i64 = db
            .read(|c| c.query_row("SELECT COUNT(*) FROM flavor_extra_specs", [], |r| r.get(0)))
            .unwrap();
        assert_eq!(left, 0);
    }
}
