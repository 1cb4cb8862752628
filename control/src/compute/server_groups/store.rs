//! Server groups' door to their state. Everything that reads or writes a group goes through
//! [`ServerGroupStore`]; SQLite implements it for one box (`storage::server_groups`), etcd
//! for a site (`cluster::store::server_groups`). Each method is atomic on its own; adding and
//! removing members are idempotent, so a saga step that runs twice changes nothing more.

use crate::quota::{Limit, QuotaError};
use crate::store::StorageError;
use crate::timestamp::Timestamp;
use outpost_resources::GroupPolicy;

#[cfg(test)]
pub(crate) mod conformance;

/// A Nova server group: its policy, Nova's one rule, and its members (server ids, in the
/// order they joined).
#[derive(Debug, Clone, PartialEq)]
pub struct ServerGroup {
    /// The store's creation order, the list's sort key.
    pub seq: i64,
    pub id: String,
    pub name: String,
    pub project_id: String,
    pub user_id: String,
    pub policy: GroupPolicy,
    /// Nova's `rules.max_server_per_host` (anti-affinity only).
    pub max_server_per_host: Option<u32>,
    pub members: Vec<String>,
    pub created_at: Timestamp,
}

pub trait ServerGroupStore: Send + Sync {
    /// Records `g` (its `seq` and `members` are ignored: a new group has none) if its project
    /// holds fewer than `limit` groups, counted in the same write; returns the group as
    /// stored.
    fn create_group(&self, g: &ServerGroup, limit: Limit) -> Result<ServerGroup, QuotaError>;

    fn group(&self, id: &str) -> Result<Option<ServerGroup>, StorageError>;

    /// Every group of `project` (every group when None), in creation order.
    fn groups(&self, project: Option<&str>) -> Result<Vec<ServerGroup>, StorageError>;

    /// Removes the group (its members stay servers, in no group); false if there was none.
    fn delete_group(&self, id: &str) -> Result<bool, StorageError>;

    /// Makes `server` a member of `group` (once, however often asked) if the group has fewer
    /// than `limit` members, counted in the same write; false if there is no such group.
    fn add_member(&self, group: &str, server: &str, limit: Limit) -> Result<bool, QuotaError>;

    /// Takes `server` out of `group`; nothing happens if it was not a member or the group is
    /// gone.
    fn remove_member(&self, group: &str, server: &str) -> Result<(), StorageError>;
}
