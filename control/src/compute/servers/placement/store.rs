//! Placement's door to its state: the scheduler's claims, one per consumer (a server, or
//! the migration that holds a resized server's old size). SQLite implements it for one box
//! (`storage::claims`); a cluster's store implements the same trait, each method one
//! transaction.

use crate::store::StorageError;
use outpost_resources::{Claim, Cluster, ConsumerId, HostId};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

#[cfg(test)]
pub(crate) mod conformance;

/// Placement's door, as a daemon wires it: one box's own claims, or a site's.
#[derive(Clone)]
pub enum PlacementDoor {
    Box(Arc<dyn ClaimStore>),
    Site(Arc<dyn SiteClaims>),
}

pub trait ClaimStore: Send + Sync {
    /// Every claim, ordered by consumer, for replay at start.
    fn claims(&self) -> Result<Vec<Claim>, StorageError>;

    /// Records `claims`, each replacing its consumer's claim if it had one: all or none.
    fn put_claims(&self, claims: &[Claim]) -> Result<(), StorageError>;

    /// Removes `consumer`'s claim and, in the same write, records `then` (a resize reverted
    /// gives the migration's claim back to the server). False if `consumer` held none.
    fn remove_claim(
        &self,
        consumer: &ConsumerId,
        then: Option<&Claim>,
    ) -> Result<bool, StorageError>;
}

/// Placement's door when boxes share it (a cluster): every box is a host, every claim is
/// visible to all, and a change commits only if none of the boxes it touches changed since it
/// was read (docs/cluster.md, "Contested writes": Claim). Two boxes scheduling at once can
/// therefore never both spend the same capacity: the loser reads again and decides again.
pub trait SiteClaims: Send + Sync {
    /// One consistent read of the site: every box with its inventory, enabled flag and
    /// liveness, every claim restored onto its box, and each box's generation.
    fn read(&self) -> Result<SiteView, StorageError>;

    /// Applies `change` (claims put, consumers' claims removed) if every box it touches, and
    /// the group it places a member of, is still at the generation `view` saw, bumping those
    /// generations. False when another
    /// writer changed one of them first (nothing was written).
    fn commit(&self, view: &SiteView, change: &ClaimChange) -> Result<bool, StorageError>;
}

/// What [`SiteClaims::read`] saw.
#[derive(Debug, Clone)]
pub struct SiteView {
    /// The boxes as the scheduler's hosts, with the claims held on them.
    pub cluster: Cluster,
    /// Each box's generation when read (0: no claim was ever committed on it).
    pub generations: BTreeMap<HostId, i64>,
    /// Each server group's placement generation when read: it changes whenever one of the
    /// group's members is placed (absent: none ever was).
    pub group_generations: BTreeMap<String, i64>,
}

/// One atomic change to the site's claims.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClaimChange {
    pub put: Vec<Claim>,
    pub remove: Vec<ConsumerId>,
    /// The server group whose members `put` places: the change commits only if no other
    /// member was placed since the read, and bumps the group's generation.
    pub group: Option<String>,
}

impl ClaimChange {
    /// The boxes whose usage the change alters (as `view` places the removed claims).
    pub fn touched(&self, view: &SiteView) -> BTreeSet<HostId> {
        let removed = self
            .remove
            .iter()
            .filter_map(|c| view.cluster.holder(c).cloned());
        self.put
            .iter()
            .map(|c| c.host_id.clone())
            .chain(removed)
            .collect()
    }

    /// The site as it is once the change is applied to `view`: what each touched box's
    /// usage becomes.
    pub fn apply(&self, view: &SiteView) -> Cluster {
        let mut after = view.cluster.clone();
        for c in &self.remove {
            after.release(c);
        }
        for c in &self.put {
            after.release(&c.consumer_id);
            if let Err(e) = after.restore(c) {
                tracing::warn!("claim of {} cannot be applied: {e}", c.consumer_id);
            }
        }
        after
    }
}
