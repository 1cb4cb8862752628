use super::*;
use crate::compute::extra_specs;
use crate::identity::testing::{fixture, Fixture};

fn new(name: &str, id: &str, ram: i64, disk: i64) -> NewFlavor {
    NewFlavor {
        name: name.into(),
        id: Some(id.into()),
        ram,
        vcpus: 1,
        disk,
        ephemeral: 0,
        swap: 0,
        rxtx_factor: 1.0,
        is_public: true,
        description: None,
    }
}

fn seeded() -> Fixture {
    let f = fixture();
    for (name, id, ram, disk) in [
        ("m1.tiny", "1", 512, 1),
        ("m1.small", "2", 2048, 20),
        ("m1.medium", "3", 4096, 40),
    ] {
        create(&f.db, &f.admin, new(name, id, ram, disk)).unwrap();
    }
    let private = NewFlavor {
        is_public: false,
        ..new("secret", "9", 8192, 80)
    };
    create(&f.db, &f.admin, private).unwrap();
    f
}

fn ids(flavors: &[Flavor]) -> Vec<&str> {
    flavors.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn create_generates_an_id_and_refuses_duplicates_and_members() {
    let f = fixture();
    let mut n = new("m1.tiny", "x", 512, 1);
    n.id = None;
    let made = create(&f.db, &f.admin, n.clone()).unwrap();
    assert_eq!(made.id.len(), 36);
    assert_eq!(get(&f.db, &f.member, &made.id).unwrap(), made);
    assert!(matches!(
        create(&f.db, &f.admin, n.clone()),
        Err(FlavorError::NameExists(_))
    ));
    let same_id = NewFlavor {
        name: "other".into(),
        id: Some(made.id.clone()),
        ..n.clone()
    };
    assert!(matches!(
        create(&f.db, &f.admin, same_id),
        Err(FlavorError::IdExists(_))
    ));
    assert!(matches!(
        create(&f.db, &f.member, new("m", "m", 1, 0)),
        Err(FlavorError::Forbidden("os-flavor-manage:create"))
    ));
}

#[test]
fn out_of_range_or_malformed_fields_are_refused_and_nothing_is_stored() {
    let f = fixture();
    let base = new("ok", "ok", 512, 1);
    let bad = [
        NewFlavor {
            ram: 0,
            ..base.clone()
        },
        NewFlavor {
            ram: -1,
            ..base.clone()
        },
        NewFlavor {
            ram: MAX_INT + 1,
            ..base.clone()
        },
        NewFlavor {
            vcpus: 0,
            ..base.clone()
        },
        NewFlavor {
            disk: -1,
            ..base.clone()
        },
        NewFlavor {
            swap: -5,
            ..base.clone()
        },
        NewFlavor {
            ephemeral: i64::MAX,
            ..base.clone()
        },
        NewFlavor {
            rxtx_factor: 0.0,
            ..base.clone()
        },
        NewFlavor {
            rxtx_factor: f64::NAN,
            ..base.clone()
        },
        NewFlavor {
            rxtx_factor: 1e300,
            ..base.clone()
        },
        NewFlavor {
            name: "".into(),
            ..base.clone()
        },
        NewFlavor {
            name: " lead".into(),
            ..base.clone()
        },
        NewFlavor {
            name: "a\u{7}b".into(),
            ..base.clone()
        },
        NewFlavor {
            name: "x".repeat(256),
            ..base.clone()
        },
        NewFlavor {
            id: Some("a/b".into()),
            ..base.clone()
        },
        NewFlavor {
            id: Some("".into()),
            ..base.clone()
        },
        NewFlavor {
            id: Some(" x".into()),
            ..base.clone()
        },
    ];
    for n in bad {
        let r = create(&f.db, &f.admin, n.clone());
        assert!(
            matches!(r, Err(FlavorError::InvalidField { .. })),
            "{n:?}: {r:?}"
        );
    }
    let everything = FlavorQuery {
        is_public: None,
        ..FlavorQuery::default()
    };
    assert!(list(&f.db, &f.admin, &everything).unwrap().is_empty());
}

#[test]
fn filters_visibility_and_sorting() {
    let f = seeded();
    let q = FlavorQuery::default();
    // Public only by default, for admins and members alike; sorted by flavor id.
    assert_eq!(ids(&list(&f.db, &f.admin, &q).unwrap()), ["1", "2", "3"]);
    assert_eq!(ids(&list(&f.db, &f.member, &q).unwrap()), ["1", "2", "3"]);
    let all = FlavorQuery {
        is_public: None,
        ..q.clone()
    };
    assert_eq!(
        ids(&list(&f.db, &f.admin, &all).unwrap()),
        ["1", "2", "3", "9"]
    );
    // Members never see private flavors, whatever they ask.
    assert_eq!(ids(&list(&f.db, &f.member, &all).unwrap()), ["1", "2", "3"]);
    let private = FlavorQuery {
        is_public: Some(false),
        ..q.clone()
    };
    assert_eq!(ids(&list(&f.db, &f.admin, &private).unwrap()), ["9"]);
    let big = FlavorQuery {
        min_ram: Some(2048),
        min_disk: Some(30),
        ..q.clone()
    };
    assert_eq!(ids(&list(&f.db, &f.member, &big).unwrap()), ["3"]);
    let by_name_desc = FlavorQuery {
        sort_key: SortKey::Name,
        descending: true,
        ..q.clone()
    };
    assert_eq!(
        ids(&list(&f.db, &f.member, &by_name_desc).unwrap()),
        ["1", "2", "3"]
    );
    let negative = FlavorQuery {
        min_ram: Some(-1),
        ..q
    };
    assert!(list(&f.db, &f.member, &negative).is_err());
    assert!(matches!(
        get(&f.db, &f.member, "9"),
        Err(FlavorError::NotFound(_))
    ));
    assert_eq!(get(&f.db, &f.admin, "9").unwrap().name, "secret");
}

#[test]
fn marker_and_limit_page_through_the_list() {
    let f = seeded();
    let page = |marker: Option<&str>| FlavorQuery {
        limit: Some(2),
        marker: marker.map(Into::into),
        ..FlavorQuery::default()
    };
    let first = list(&f.db, &f.member, &page(None)).unwrap();
    assert_eq!(ids(&first), ["1", "2"]);
    let second = list(&f.db, &f.member, &page(Some("2"))).unwrap();
    assert_eq!(ids(&second), ["3"]);
    assert!(matches!(
        list(&f.db, &f.member, &page(Some("nope"))),
        Err(FlavorError::MarkerNotFound(_))
    ));
}

#[test]
fn delete_and_describe() {
    let f = seeded();
    assert!(matches!(
        delete(&f.db, &f.member, "1"),
        Err(FlavorError::Forbidden(_))
    ));
    let d = set_description(&f.db, &f.admin, "1", Some("tiny one".into())).unwrap();
    assert_eq!(d.description.as_deref(), Some("tiny one"));
    assert!(d.updated_at.is_some());
    delete(&f.db, &f.admin, "1").unwrap();
    assert!(matches!(
        delete(&f.db, &f.admin, "1"),
        Err(FlavorError::NotFound(_))
    ));
    assert!(matches!(
        set_description(&f.db, &f.admin, "1", None),
        Err(FlavorError::NotFound(_))
    ));
}

#[test]
fn extra_specs_lifecycle() {
    let f = seeded();
    let specs = BTreeMap::from([
        ("hw:cpu_policy".to_owned(), "dedicated".to_owned()),
        ("hw:mem_page_size".to_owned(), "large".to_owned()),
    ]);
    assert!(matches!(
        extra_specs::set(&f.db, &f.member, "1", specs.clone()),
        Err(FlavorError::Forbidden(_))
    ));
    extra_specs::set(&f.db, &f.admin, "1", specs.clone()).unwrap();
    assert_eq!(extra_specs::list(&f.db, &f.member, "1").unwrap(), specs);
    assert_eq!(
        extra_specs::get(&f.db, &f.member, "1", "hw:cpu_policy").unwrap(),
        "dedicated"
    );
    extra_specs::delete(&f.db, &f.admin, "1", "hw:cpu_policy").unwrap();
    assert!(matches!(
        extra_specs::get(&f.db, &f.member, "1", "hw:cpu_policy"),
        Err(FlavorError::ExtraSpecNotFound { .. })
    ));
    let bad = BTreeMap::from([("bad/key".to_owned(), "v".to_owned())]);
    assert!(matches!(
        extra_specs::set(&f.db, &f.admin, "1", bad),
        Err(FlavorError::InvalidField { .. })
    ));
    let long = BTreeMap::from([("k".to_owned(), "v".repeat(256))]);
    assert!(extra_specs::set(&f.db, &f.admin, "1", long).is_err());
    // The evacuation policy takes only the values evacuation knows.
    let policy = |v: &str| BTreeMap::from([("outpost:evacuation".to_owned(), v.to_owned())]);
    assert!(matches!(
        extra_specs::set(&f.db, &f.admin, "1", policy("sometimes")),
        Err(FlavorError::InvalidField { .. })
    ));
    extra_specs::set(&f.db, &f.admin, "1", policy("stay")).unwrap();
    extra_specs::delete(&f.db, &f.admin, "1", "outpost:evacuation").unwrap();
    assert!(matches!(
        extra_specs::list(&f.db, &f.member, "9"),
        Err(FlavorError::NotFound(_))
    ));
    assert_eq!(get(&f.db, &f.member, "1").unwrap().extra_specs.len(), 1);
}
