//! The contract every [`ClaimStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())` from the implementation's tests. SQLite runs it
//! in `storage::claims`; a cluster's store runs the same.

use super::ClaimStore;
use outpost_resources::{Claim, ConsumerId, HostId, Resources};

fn claim(consumer: &str, vcpus: u64) -> Claim {
    Claim {
        consumer_id: ConsumerId::from(consumer),
        host_id: HostId("box".into()),
        amounts: Resources::compute(vcpus, 256 * vcpus, 1),
    }
}

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: ClaimStore>(fresh: impl Fn() -> S) {
    claims_are_one_per_consumer_and_replaced(&fresh());
    a_resize_moves_claims_in_one_write(&fresh());
}

fn claims_are_one_per_consumer_and_replaced(store: &dyn ClaimStore) {
    assert!(store.claims().unwrap().is_empty());
    store.put_claims(&[claim("s2", 1), claim("s1", 1)]).unwrap();
    store.put_claims(&[claim("s1", 2)]).unwrap();
    assert_eq!(store.claims().unwrap(), [claim("s1", 2), claim("s2", 1)]);
    assert!(store.remove_claim(&ConsumerId::from("s1"), None).unwrap());
    assert!(!store.remove_claim(&ConsumerId::from("s1"), None).unwrap());
    assert_eq!(store.claims().unwrap(), [claim("s2", 1)]);
}

fn a_resize_moves_claims_in_one_write(store: &dyn ClaimStore) {
    // Begin: the migration takes the old size, the server the new one.
    let old = Claim {
        consumer_id: ConsumerId::from("migration:s1"),
        ..claim("s1", 1)
    };
    store.put_claims(&[old.clone(), claim("s1", 2)]).unwrap();
    assert_eq!(store.claims().unwrap().len(), 2);
    // Revert: the migration's claim goes back to the server.
    let back = claim("s1", 1);
    assert!(store.remove_claim(&old.consumer_id, Some(&back)).unwrap());
    assert_eq!(store.claims().unwrap(), [back]);
}
