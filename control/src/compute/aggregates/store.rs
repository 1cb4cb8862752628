//! Host aggregates' door to their state. Everything that reads or writes an aggregate goes
//! through [`AggregateStore`]; SQLite implements it for one box (`storage::aggregates`), etcd
//! for a site (`cluster::store::aggregates`). A write is decided on every aggregate as stored
//! and lands only if none changed meanwhile: the rules that span aggregates (a unique name, a
//! host in one availability zone) hold however many boxes write at once.

use std::collections::{BTreeMap, BTreeSet};

use crate::store::StorageError;
use crate::timestamp::Timestamp;

#[cfg(test)]
pub(crate) mod conformance;

/// Nova keeps an aggregate's availability zone as this metadata key, and so do we: setting
/// it through `set_metadata` or through an update is one change.
pub const ZONE_KEY: &str = "availability_zone";

/// A Nova host aggregate: a named set of hosts (box names) with metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aggregate {
    /// Nova's integer id, given by the store at creation and never reused.
    pub id: i64,
    pub uuid: String,
    pub name: String,
    pub hosts: BTreeSet<String>,
    pub metadata: BTreeMap<String, String>,
    pub created_at: Timestamp,
    pub updated_at: Option<Timestamp>,
}

impl Aggregate {
    /// The zone the aggregate puts its hosts in, if it has one.
    pub fn availability_zone(&self) -> Option<&str> {
        self.metadata.get(ZONE_KEY).map(String::as_str)
    }
}

/// What a decision of [`AggregateStore::write`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateWrite {
    /// A new aggregate (its `id` is ignored: the store gives one).
    Create(Aggregate),
    /// An aggregate's new state, replacing the one of the same `id` whole.
    Save(Aggregate),
    Delete(i64),
}

/// A decision made on every aggregate as stored: what to write, or nothing.
pub type Decide<'a> = dyn FnMut(&[Aggregate]) -> Option<AggregateWrite> + 'a;

pub trait AggregateStore: Send + Sync {
    /// Every aggregate, in id order.
    fn aggregates(&self) -> Result<Vec<Aggregate>, StorageError>;

    /// Calls `decide` on every aggregate (in id order) and makes the write it returns,
    /// atomically: if another writer changed an aggregate in between, `decide` is called
    /// again on the new state (a bounded number of times). Returns the aggregate as written
    /// (as it was, for a delete); None when `decide` chose to write nothing, or to save or
    /// delete an id that is not stored.
    fn write(&self, decide: &mut Decide<'_>) -> Result<Option<Aggregate>, StorageError>;
}
