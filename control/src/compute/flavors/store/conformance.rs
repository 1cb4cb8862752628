//! The contract every [`FlavorStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())` from the implementation's tests. SQLite runs it
//! in `storage::flavors`; a cluster's store runs the same.

use super::{Flavor, FlavorFilter, FlavorStore, SortKey};
use crate::compute::flavors::FlavorError;
use crate::timestamp::Timestamp;
use std::collections::BTreeMap;

/// A flavor with one extra spec, for the suite and for implementations' own tests.
pub(crate) fn flavor(id: &str, name: &str, ram: i64, disk: i64, public: bool) -> Flavor {
    Flavor {
        seq: 0,
        id: id.into(),
        name: name.into(),
        ram,
        vcpus: 1,
        disk,
        ephemeral: 0,
        swap: 0,
        rxtx_factor: 1.0,
        is_public: public,
        disabled: false,
        description: None,
        extra_specs: BTreeMap::from([("hw:cpu_policy".into(), "shared".into())]),
        created_at: Timestamp::now(),
        updated_at: None,
    }
}

fn filter(sort_key: SortKey, descending: bool) -> FlavorFilter {
    FlavorFilter {
        min_ram: None,
        min_disk: None,
        is_public: None,
        sort_key,
        descending,
    }
}

fn ids(flavors: Vec<Flavor>) -> Vec<String> {
    flavors.into_iter().map(|f| f.id).collect()
}

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: FlavorStore>(fresh: impl Fn() -> S) {
    created_flavors_read_back_whole(&fresh());
    ids_and_names_are_taken_once(&fresh());
    only_one_of_two_racing_creates_wins(&fresh());
    listings_filter_and_sort(&fresh());
    descriptions_are_replaced_and_stamped(&fresh());
    extra_specs_merge_and_delete(&fresh());
    deleted_flavors_are_gone_with_their_specs(&fresh());
}

fn created_flavors_read_back_whole(store: &dyn FlavorStore) {
    let mut f = flavor("1", "small", 512, 1, true);
    f.description = Some("for tests".into());
    f.ephemeral = 2;
    f.swap = 64;
    f.rxtx_factor = 1.5;
    let stored = store.create_flavor(&f).unwrap();
    assert_eq!(
        Flavor {
            seq: f.seq,
            ..stored.clone()
        },
        f
    );
    assert_eq!(store.flavor("1").unwrap(), Some(stored.clone()));
    assert_eq!(store.flavor("small").unwrap(), None, "looked up by id only");
    let second = store
        .create_flavor(&flavor("0", "tiny", 256, 1, false))
        .unwrap();
    assert!(second.seq > stored.seq, "seq follows creation order");
}

fn ids_and_names_are_taken_once(store: &dyn FlavorStore) {
    store
        .create_flavor(&flavor("1", "small", 512, 1, true))
        .unwrap();
    match store.create_flavor(&flavor("1", "other", 512, 1, true)) {
        Err(FlavorError::IdExists(id)) => assert_eq!(id, "1"),
        other => panic!("a taken id: {other:?}"),
    }
    match store.create_flavor(&flavor("2", "small", 512, 1, true)) {
        Err(FlavorError::NameExists(name)) => assert_eq!(name, "small"),
        other => panic!("a taken name: {other:?}"),
    }
    assert_eq!(
        ids(store.flavors(&filter(SortKey::FlavorId, false)).unwrap()),
        ["1"]
    );
}

fn only_one_of_two_racing_creates_wins(store: &dyn FlavorStore) {
    let results: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|id| scope.spawn(move || store.create_flavor(&flavor(id, "same", 512, 1, true))))
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let won = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(won, 1, "{results:?}");
    assert!(results
        .iter()
        .all(|r| matches!(r, Ok(_) | Err(FlavorError::NameExists(_)))));
    assert_eq!(
        store.flavors(&filter(SortKey::Seq, false)).unwrap().len(),
        1
    );
}

fn listings_filter_and_sort(store: &dyn FlavorStore) {
    store
        .create_flavor(&flavor("1", "small", 512, 1, true))
        .unwrap();
    store
        .create_flavor(&flavor("2", "large", 4096, 20, true))
        .unwrap();
    store
        .create_flavor(&flavor("3", "secret", 2048, 10, false))
        .unwrap();
    store
        .create_flavor(&flavor("4", "also-large", 4096, 5, true))
        .unwrap();
    let got = store
        .flavors(&FlavorFilter {
            min_ram: Some(1024),
            min_disk: Some(10),
            is_public: Some(true),
            ..filter(SortKey::Name, false)
        })
        .unwrap();
    assert_eq!(ids(got.clone()), ["2"]);
    assert_eq!(got[0].extra_specs["hw:cpu_policy"], "shared");
    let private = FlavorFilter {
        is_public: Some(false),
        ..filter(SortKey::FlavorId, false)
    };
    assert_eq!(ids(store.flavors(&private).unwrap()), ["3"]);
    assert_eq!(
        ids(store.flavors(&filter(SortKey::Name, false)).unwrap()),
        ["4", "2", "3", "1"]
    );
    // Ties (the same ram) are broken by seq, in the listing's direction.
    assert_eq!(
        ids(store.flavors(&filter(SortKey::Ram, true)).unwrap()),
        ["4", "2", "3", "1"]
    );
    assert_eq!(
        ids(store.flavors(&filter(SortKey::Ram, false)).unwrap()),
        ["1", "3", "2", "4"]
    );
    assert_eq!(
        ids(store.flavors(&filter(SortKey::Seq, true)).unwrap()),
        ["4", "3", "2", "1"]
    );
}

fn descriptions_are_replaced_and_stamped(store: &dyn FlavorStore) {
    store
        .create_flavor(&flavor("1", "small", 512, 1, true))
        .unwrap();
    let f = store
        .set_flavor_description("1", Some("now described"))
        .unwrap()
        .unwrap();
    assert_eq!(f.description.as_deref(), Some("now described"));
    assert!(f.updated_at.is_some());
    assert_eq!(store.flavor("1").unwrap(), Some(f));
    let f = store.set_flavor_description("1", None).unwrap().unwrap();
    assert_eq!(f.description, None);
    assert_eq!(store.set_flavor_description("9", Some("x")).unwrap(), None);
}

fn extra_specs_merge_and_delete(store: &dyn FlavorStore) {
    store
        .create_flavor(&flavor("1", "small", 512, 1, true))
        .unwrap();
    let more = BTreeMap::from([
        ("hw:cpu_policy".to_owned(), "dedicated".to_owned()),
        ("quota:disk_read_iops_sec".to_owned(), "100".to_owned()),
    ]);
    assert!(store.set_extra_specs("1", &more).unwrap());
    let only = BTreeMap::from([("hw:mem_page_size".to_owned(), "large".to_owned())]);
    assert!(store.set_extra_specs("1", &only).unwrap());
    let mut want = more.clone();
    want.extend(only);
    assert_eq!(store.flavor("1").unwrap().unwrap().extra_specs, want);
    assert!(!store.set_extra_specs("9", &more).unwrap());
    assert_eq!(
        store.delete_extra_spec("1", "hw:cpu_policy").unwrap(),
        Some(true)
    );
    assert_eq!(
        store.delete_extra_spec("1", "hw:cpu_policy").unwrap(),
        Some(false)
    );
    assert_eq!(store.delete_extra_spec("9", "hw:cpu_policy").unwrap(), None);
    want.remove("hw:cpu_policy");
    assert_eq!(store.flavor("1").unwrap().unwrap().extra_specs, want);
}

fn deleted_flavors_are_gone_with_their_specs(store: &dyn FlavorStore) {
    store
        .create_flavor(&flavor("1", "small", 512, 1, true))
        .unwrap();
    let extra = BTreeMap::from([("k".to_owned(), "v".to_owned())]);
    store.set_extra_specs("1", &extra).unwrap();
    assert!(store.delete_flavor("1").unwrap());
    assert!(!store.delete_flavor("1").unwrap());
    assert_eq!(store.flavor("1").unwrap(), None);
    assert!(store
        .flavors(&filter(SortKey::FlavorId, false))
        .unwrap()
        .is_empty());
    // The id and the name are free again, and the new flavor has only its own specs.
    let mut again = flavor("1", "small", 512, 1, true);
    again.extra_specs.clear();
    let stored = store.create_flavor(&again).unwrap();
    assert!(stored.extra_specs.is_empty());
}
