//! The control service's state in SQLite, for one box: opening the database (WAL, foreign
//! keys), schema migrations, and one module per resource kind that implements its domain's
//! store trait on [`Db`] (`impl FlavorStore for Db`, ...). Nothing above this module writes
//! SQL; every change runs inside [`Db::write`]'s transaction.
//!
//! One connection behind a mutex serves the whole daemon: an appliance's API traffic is light,
//! and a single writer is what SQLite allows anyway. Callers run on tokio's blocking pool.

mod aggregates;
mod claims;
mod flavors;
mod identity;
mod images;
mod keypairs;
mod migrations;
mod networks;
mod quotas;
mod security_groups;
mod server_groups;
mod server_migrations;
mod servers;
mod tokens;
mod volumes;

pub use migrations::{Migration, MIGRATIONS};

use rusqlite::{Connection, Transaction, TransactionBehavior};
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

pub use crate::store::StorageError;

impl From<rusqlite::Error> for StorageError {
    fn from(e: rusqlite::Error) -> Self {
        StorageError::Backend(Box::new(e))
    }
}

/// For the writes that check a quota in their transaction.
impl From<rusqlite::Error> for crate::quota::QuotaError {
    fn from(e: rusqlite::Error) -> Self {
        crate::quota::QuotaError::Storage(e.into())
    }
}

/// The database handle shared by all requests. Clones share the one connection, so
/// background work (a volume being copied) can record its outcome after its request ended.
#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
}

impl Db {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    pub fn open(path: &Path) -> Result<Db, StorageError> {
        let conn = Connection::open(path).map_err(|source| StorageError::Open {
            path: path.to_owned(),
            source: Box::new(source),
        })?;
        Self::setup(conn)
    }

    /// A private in-memory database, for unit tests of the layers above storage.
    pub fn open_in_memory() -> Result<Db, StorageError> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> Result<Db, StorageError> {
        // WAL: readers never block the writer. synchronous = FULL syncs the log at every
        // commit, so a committed change survives a power cut too, not only a crashed
        // process; the API's write rate makes the fsync cheap. journal_mode answers with a
        // row, so it is read rather than executed.
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        migrations::apply(&mut conn, MIGRATIONS)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock happened inside a transaction that was then rolled
        // back when it dropped, so the connection is consistent.
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the connection outside any explicit transaction (each statement is atomic).
    /// Only the SQLite implementations of the doors, in this module, reach the connection.
    pub(in crate::storage) fn read<T, E>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, E>,
    ) -> Result<T, E> {
        f(&self.lock())
    }

    /// Runs `f` in an IMMEDIATE transaction (the write lock is taken up front, so checks made
    /// inside `f` still hold when it writes); commits if `f` succeeds, rolls back otherwise.
    pub(in crate::storage) fn write<T, E>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<StorageError>,
    {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StorageError::from)?;
        let value = f(&tx)?;
        tx.commit().map_err(StorageError::from)?;
        Ok(value)
    }
}

impl crate::store::Doors {
    /// Every door on this one SQLite database (one box).
    pub fn sqlite(db: &Db) -> crate::store::Doors {
        let db = Arc::new(db.clone());
        crate::store::Doors {
            identity: db.clone(),
            flavors: db.clone(),
            keypairs: db.clone(),
            images: db.clone(),
            volumes: db.clone(),
            networks: db.clone(),
            servers: db.clone(),
            server_groups: db.clone(),
            aggregates: db.clone(),
            migrations: db.clone(),
            // OpenStack's defaults until the daemon gives the configured ones.
            quotas: crate::quota::Quotas::new(Default::default(), db.clone()),
            claims: crate::compute::servers::placement::store::PlacementDoor::Box(db),
        }
    }
}

/// Reads a boolean stored as INTEGER 0/1.
fn flag(v: i64) -> bool {
    v != 0
}

/// Sets the `status` of row `id` in `table` to `to` (and its `fault`, when `fault` is given)
/// if the current status is one of `from`; false when the row is gone or in another status.
/// One `UPDATE ... WHERE status IN (...)`, so the check and the change are atomic.
fn set_status_if(
    conn: &Connection,
    table: &'static str,
    id: &str,
    from: &[&str],
    to: &str,
    fault: Option<Option<&str>>,
) -> Result<bool, StorageError> {
    if from.is_empty() {
        return Ok(false);
    }
    let placeholders = (0..from.len())
        .map(|i| format!("?{}", i + 5))
        .collect::<Vec<_>>()
        .join(", ");
    let set_fault = if fault.is_some() { ", fault = ?4" } else { "" };
    let sql = format!(
        "UPDATE {table} SET status = ?2, updated_at = ?3{set_fault} \
         WHERE id = ?1 AND status IN ({placeholders})"
    );
    let now = crate::timestamp::Timestamp::now().micros();
    let mut params: Vec<&dyn rusqlite::ToSql> = vec![&id, &to, &now, &fault];
    for f in from {
        params.push(f);
    }
    Ok(conn.execute(&sql, params.as_slice())? == 1)
}
