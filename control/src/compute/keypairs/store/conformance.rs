//! The contract every [`KeyPairStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())`. SQLite runs it in `storage::keypairs`, etcd in
//! the cluster's store tests.

use super::{KeyPair, KeyPairStore, KeyType};
use crate::compute::keypairs::KeyPairError;
use crate::quota::UNLIMITED;
use crate::timestamp::Timestamp;

/// A pair for the suite; its key and fingerprint are plausible text, not checked here.
pub(crate) fn key_pair(user: &str, name: &str) -> KeyPair {
    KeyPair {
        seq: 0,
        user_id: user.into(),
        name: name.into(),
        key_type: KeyType::Ssh,
        public_key: format!("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{name} {user}"),
        fingerprint: "0f:6d:2a:9b:aa:01:02:03:04:05:06:07:08:09:0a:0b".into(),
        created_at: Timestamp::now(),
    }
}

fn names(pairs: Vec<KeyPair>) -> Vec<String> {
    pairs.into_iter().map(|k| k.name).collect()
}

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: KeyPairStore>(fresh: impl Fn() -> S) {
    created_pairs_read_back_whole(&fresh());
    names_are_per_user_and_taken_once(&fresh());
    only_one_of_racing_creates_wins(&fresh());
    listings_are_per_user_in_name_order(&fresh());
    deleted_pairs_are_gone_and_their_names_free(&fresh());
    racing_creates_stay_within_the_quota(&fresh());
}

/// 8 creates of one user's pairs at once with room for 3: exactly 3 land; another user
/// counts apart.
fn racing_creates_stay_within_the_quota(store: &dyn KeyPairStore) {
    store.create_key_pair(&key_pair("u1", "old"), 3).unwrap();
    let results: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|i| {
                scope.spawn(move || store.create_key_pair(&key_pair("u1", &format!("k{i}")), 3))
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        2,
        "{results:?}"
    );
    assert!(results
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(e, KeyPairError::QuotaExceeded)));
    assert_eq!(store.key_pairs("u1").unwrap().len(), 3);
    store.create_key_pair(&key_pair("u2", "k"), 3).unwrap();
}

fn created_pairs_read_back_whole(store: &dyn KeyPairStore) {
    let mut k = key_pair("u1", "laptop");
    k.key_type = KeyType::X509;
    let stored = store.create_key_pair(&k, UNLIMITED).unwrap();
    assert_eq!(
        KeyPair {
            seq: k.seq,
            ..stored.clone()
        },
        k
    );
    assert_eq!(
        store.key_pair("u1", "laptop").unwrap(),
        Some(stored.clone())
    );
    assert_eq!(store.key_pair("u2", "laptop").unwrap(), None, "per user");
    let second = store
        .create_key_pair(&key_pair("u1", "desk"), UNLIMITED)
        .unwrap();
    assert!(second.seq > stored.seq, "seq follows creation order");
}

fn names_are_per_user_and_taken_once(store: &dyn KeyPairStore) {
    store
        .create_key_pair(&key_pair("u1", "laptop"), UNLIMITED)
        .unwrap();
    match store.create_key_pair(&key_pair("u1", "laptop"), UNLIMITED) {
        Err(KeyPairError::NameExists(name)) => assert_eq!(name, "laptop"),
        other => panic!("a taken name: {other:?}"),
    }
    // Another user's pair of the same name is a different pair.
    store
        .create_key_pair(&key_pair("u2", "laptop"), UNLIMITED)
        .unwrap();
    assert_eq!(names(store.key_pairs("u1").unwrap()), ["laptop"]);
    assert_eq!(names(store.key_pairs("u2").unwrap()), ["laptop"]);
}

fn only_one_of_racing_creates_wins(store: &dyn KeyPairStore) {
    let results: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..4)
            .map(|_| scope.spawn(|| store.create_key_pair(&key_pair("u1", "same"), UNLIMITED)))
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(_) | Err(KeyPairError::NameExists(_)))));
    assert_eq!(store.key_pairs("u1").unwrap().len(), 1);
}

fn listings_are_per_user_in_name_order(store: &dyn KeyPairStore) {
    for (user, name) in [("u1", "b"), ("u2", "x"), ("u1", "c"), ("u1", "a")] {
        store
            .create_key_pair(&key_pair(user, name), UNLIMITED)
            .unwrap();
    }
    assert_eq!(names(store.key_pairs("u1").unwrap()), ["a", "b", "c"]);
    assert_eq!(names(store.key_pairs("u2").unwrap()), ["x"]);
    assert!(store.key_pairs("u3").unwrap().is_empty());
}

fn deleted_pairs_are_gone_and_their_names_free(store: &dyn KeyPairStore) {
    store
        .create_key_pair(&key_pair("u1", "laptop"), UNLIMITED)
        .unwrap();
    store
        .create_key_pair(&key_pair("u2", "laptop"), UNLIMITED)
        .unwrap();
    assert!(!store.delete_key_pair("u3", "laptop").unwrap());
    assert!(store.delete_key_pair("u1", "laptop").unwrap());
    assert!(!store.delete_key_pair("u1", "laptop").unwrap());
    assert_eq!(store.key_pair("u1", "laptop").unwrap(), None);
    assert!(
        store.key_pair("u2", "laptop").unwrap().is_some(),
        "only u1's"
    );
    store
        .create_key_pair(&key_pair("u1", "laptop"), UNLIMITED)
        .unwrap();
}
