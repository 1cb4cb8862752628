//! Flavors' door to their state. Everything that reads or writes a flavor goes through
//! [`FlavorStore`]; SQLite implements it for one box (`storage::flavors`), and a cluster's
//! store implements the same trait. Each method is atomic on its own; creating a flavor checks
//! that its id and name are free and writes it as one step, so two creates of one name cannot
//! both succeed.

use super::FlavorError;
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use std::collections::BTreeMap;

#[cfg(test)]
pub(crate) mod conformance;

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

#[derive(Debug, Clone)]
pub struct FlavorFilter {
    pub min_ram: Option<i64>,
    pub min_disk: Option<i64>,
    /// `Some(b)`: only flavors whose is_public is `b`; `None`: both.
    pub is_public: Option<bool>,
    pub sort_key: SortKey,
    pub descending: bool,
}

pub trait FlavorStore: Send + Sync {
    /// Records `f` (its `seq` is ignored; the store numbers flavors in creation order) with its
    /// extra specs, unless a flavor has its id ([`FlavorError::IdExists`]) or its name
    /// ([`FlavorError::NameExists`]); returns the flavor as stored.
    fn create_flavor(&self, f: &Flavor) -> Result<Flavor, FlavorError>;

    fn flavor(&self, id: &str) -> Result<Option<Flavor>, StorageError>;

    /// Every flavor passing `filter`, sorted by its key (ties by `seq`, in the same
    /// direction), with extra specs.
    fn flavors(&self, filter: &FlavorFilter) -> Result<Vec<Flavor>, StorageError>;

    /// Removes the flavor and its extra specs; false if there was none.
    fn delete_flavor(&self, id: &str) -> Result<bool, StorageError>;

    /// Replaces the description and stamps `updated_at`; returns the flavor as stored, None
    /// if there is no such flavor.
    fn set_flavor_description(
        &self,
        id: &str,
        description: Option<&str>,
    ) -> Result<Option<Flavor>, StorageError>;

    /// Adds or replaces each of `specs` on the flavor (keys not named are kept); false if
    /// there is no such flavor.
    fn set_extra_specs(
        &self,
        id: &str,
        specs: &BTreeMap<String, String>,
    ) -> Result<bool, StorageError>;

    /// Removes one extra spec: None if there is no such flavor, Some(false) if it had no such
    /// key.
    fn delete_extra_spec(&self, id: &str, key: &str) -> Result<Option<bool>, StorageError>;
}
