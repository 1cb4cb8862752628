//! Placement's door to its state: the scheduler's claims, one per consumer (a server, or
//! the migration that holds a resized server's old size). SQLite implements it for one box
//! (`storage::claims`); a cluster's store implements the same trait, each method one
//! transaction.

use crate::store::StorageError;
use outpost_resources::{Claim, ConsumerId};

#[cfg(test)]
pub(crate) mod conformance;

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
