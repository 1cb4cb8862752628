//! The contract every [`QuotaStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())`. SQLite runs it in `storage::quotas`, etcd in
//! the cluster's store tests.

use super::QuotaStore;
use std::collections::BTreeMap;

fn limits(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|&(n, l)| (n.to_owned(), l)).collect()
}

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: QuotaStore>(fresh: impl Fn() -> S) {
    set_limits_read_back_per_project(&fresh());
    a_set_replaces_only_the_names_it_gives(&fresh());
    cleared_limits_are_gone_and_others_stay(&fresh());
}

fn set_limits_read_back_per_project(store: &dyn QuotaStore) {
    assert!(store.quota_overrides("p1").unwrap().is_empty());
    let set = limits(&[("instances", 5), ("network", -1), ("gigabytes_thin", 0)]);
    store.set_quota_overrides("p1", &set).unwrap();
    assert_eq!(store.quota_overrides("p1").unwrap(), set);
    assert!(
        store.quota_overrides("p2").unwrap().is_empty(),
        "limits are per project"
    );
}

fn a_set_replaces_only_the_names_it_gives(store: &dyn QuotaStore) {
    store
        .set_quota_overrides("p1", &limits(&[("instances", 5), ("cores", 8)]))
        .unwrap();
    store
        .set_quota_overrides("p1", &limits(&[("cores", 16), ("port", 50)]))
        .unwrap();
    assert_eq!(
        store.quota_overrides("p1").unwrap(),
        limits(&[("cores", 16), ("instances", 5), ("port", 50)])
    );
}

fn cleared_limits_are_gone_and_others_stay(store: &dyn QuotaStore) {
    store
        .set_quota_overrides("p1", &limits(&[("instances", 5), ("network", 3)]))
        .unwrap();
    store
        .set_quota_overrides("p2", &limits(&[("network", 7)]))
        .unwrap();
    store
        .clear_quota_overrides("p1", &["network", "subnet"])
        .unwrap();
    assert_eq!(
        store.quota_overrides("p1").unwrap(),
        limits(&[("instances", 5)])
    );
    assert_eq!(
        store.quota_overrides("p2").unwrap(),
        limits(&[("network", 7)]),
        "another project's limits stay"
    );
    // Clearing what is not set changes nothing and is no error.
    store.clear_quota_overrides("p3", &["network"]).unwrap();
}
