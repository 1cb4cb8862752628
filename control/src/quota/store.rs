//! Quotas' door to their state: the limits an admin set for a project, by resource name.
//! SQLite implements it for one box (`storage::quotas`), etcd for a site
//! (`cluster::store::quotas`). The defaults are configuration, not state, and are not here.

use super::Limit;
use crate::store::StorageError;
use std::collections::BTreeMap;

#[cfg(test)]
pub(crate) mod conformance;

pub trait QuotaStore: Send + Sync {
    /// The limits set for `project_id`, by resource name (empty when none was set).
    fn quota_overrides(&self, project_id: &str) -> Result<BTreeMap<String, Limit>, StorageError>;

    /// Sets each of `limits` for `project_id`, replacing earlier values of the same names and
    /// keeping the others; all land or none.
    fn set_quota_overrides(
        &self,
        project_id: &str,
        limits: &BTreeMap<String, Limit>,
    ) -> Result<(), StorageError>;

    /// Removes `project_id`'s limits of `resources` (absent ones are no error).
    fn clear_quota_overrides(
        &self,
        project_id: &str,
        resources: &[&str],
    ) -> Result<(), StorageError>;
}
