//! The contract every [`AggregateStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())`. SQLite runs it in `storage::aggregates`, etcd
//! in `cluster::store::tests`.

use super::{Aggregate, AggregateStore, AggregateWrite};
use crate::timestamp::Timestamp;

/// An aggregate named `name` with no host and no metadata.
pub(crate) fn aggregate(name: &str) -> Aggregate {
    Aggregate {
        id: 0,
        uuid: format!("uuid-{name}"),
        name: name.into(),
        hosts: Default::default(),
        metadata: Default::default(),
        created_at: Timestamp(1_000_000),
        updated_at: None,
    }
}

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: AggregateStore>(fresh: impl Fn() -> S) {
    aggregates_read_back_whole_in_id_order(&fresh());
    a_save_replaces_hosts_and_metadata_whole(&fresh());
    deleted_aggregates_are_gone_and_their_ids_not_reused(&fresh());
    a_decision_to_write_nothing_writes_nothing(&fresh());
}

/// Two writers create an aggregate of one name at once, each refusing a duplicate of what
/// it read: exactly one is made (run on two connections to one store, as two boxes).
pub(crate) fn races<S: AggregateStore + Sync>(pair: impl Fn() -> (S, S)) {
    let (a, b) = pair();
    for round in 0..5 {
        let name = format!("agg{round}");
        let create = |s: &S, uuid: &str| {
            let mut new = aggregate(&name);
            new.uuid = uuid.to_owned();
            s.write(&mut |all: &[Aggregate]| {
                let taken = all.iter().any(|g| g.name == new.name);
                // The other writer commits between this read and this write.
                crate::store::dawdle();
                (!taken).then(|| AggregateWrite::Create(new.clone()))
            })
        };
        let (l, r) = crate::store::at_once(
            (&a, &b),
            |s| create(s, &format!("l{round}")),
            |s| create(s, &format!("r{round}")),
        );
        let made = [l.unwrap(), r.unwrap()].into_iter().flatten().count();
        assert_eq!(
            made, 1,
            "round {round}: one of two same-named creates is made"
        );
    }
    assert_eq!(a.aggregates().unwrap().len(), 5);
}

fn create(store: &dyn AggregateStore, new: Aggregate) -> Aggregate {
    store
        .write(&mut |_| Some(AggregateWrite::Create(new.clone())))
        .unwrap()
        .expect("a create writes")
}

fn aggregates_read_back_whole_in_id_order(store: &dyn AggregateStore) {
    assert!(store.aggregates().unwrap().is_empty());
    let mut first = aggregate("a");
    first.hosts.insert("box1".into());
    first.metadata.insert("ssd".into(), "true".into());
    first
        .metadata
        .insert(super::ZONE_KEY.into(), "edge-1".into());
    let stored = create(store, first.clone());
    assert_eq!(
        Aggregate {
            id: first.id,
            ..stored.clone()
        },
        first,
        "everything but the id is kept"
    );
    assert_eq!(stored.availability_zone(), Some("edge-1"));
    let second = create(store, aggregate("b"));
    assert!(second.id > stored.id, "ids follow creation order");
    assert_eq!(store.aggregates().unwrap(), [stored, second]);
}

fn a_save_replaces_hosts_and_metadata_whole(store: &dyn AggregateStore) {
    let mut a = aggregate("a");
    a.hosts = ["box1".to_owned(), "box2".to_owned()].into();
    a.metadata.insert("k".into(), "v".into());
    let mut a = create(store, a);
    a.name = "renamed".into();
    a.hosts = ["box3".to_owned()].into();
    a.metadata = [("other".to_owned(), "x".to_owned())].into();
    a.updated_at = Some(Timestamp(2_000_000));
    let saved = store
        .write(&mut |_| Some(AggregateWrite::Save(a.clone())))
        .unwrap();
    assert_eq!(saved.as_ref(), Some(&a));
    assert_eq!(store.aggregates().unwrap(), std::slice::from_ref(&a));
    let mut ghost = a.clone();
    ghost.id += 100;
    assert_eq!(
        store
            .write(&mut |_| Some(AggregateWrite::Save(ghost.clone())))
            .unwrap(),
        None,
        "saving an id not stored writes nothing"
    );
    assert_eq!(store.aggregates().unwrap(), [a]);
}

fn deleted_aggregates_are_gone_and_their_ids_not_reused(store: &dyn AggregateStore) {
    let a = create(store, aggregate("a"));
    let b = create(store, aggregate("b"));
    let gone = store
        .write(&mut |_| Some(AggregateWrite::Delete(b.id)))
        .unwrap();
    assert_eq!(gone, Some(b.clone()));
    assert_eq!(
        store
            .write(&mut |_| Some(AggregateWrite::Delete(b.id)))
            .unwrap(),
        None
    );
    assert_eq!(store.aggregates().unwrap(), std::slice::from_ref(&a));
    let c = create(store, aggregate("b"));
    assert!(c.id > b.id, "a deleted aggregate's id is not given again");
}

fn a_decision_to_write_nothing_writes_nothing(store: &dyn AggregateStore) {
    let a = create(store, aggregate("a"));
    let mut seen = Vec::new();
    let written = store
        .write(&mut |all: &[Aggregate]| {
            seen = all.to_vec();
            None
        })
        .unwrap();
    assert_eq!(written, None);
    assert_eq!(
        seen,
        std::slice::from_ref(&a),
        "the decision sees every aggregate"
    );
    assert_eq!(store.aggregates().unwrap(), [a]);
}
