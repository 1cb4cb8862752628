use super::*;
use crate::storage::Db;

fn ctx(project: &str, roles: &[&str]) -> RequestContext {
    RequestContext {
        user_id: format!("{project}-user"),
        user_name: "user".into(),
        project_id: Some(project.into()),
        project_name: Some(project.into()),
        roles: roles.iter().map(|r| (*r).to_owned()).collect(),
    }
}

fn quotas() -> Quotas {
    let defaults = QuotaDefaults::with(&BTreeMap::from([("instances".to_owned(), 4)])).unwrap();
    Quotas::new(defaults, Arc::new(Db::open_in_memory().unwrap()))
}

fn changes(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|&(n, l)| (n.to_owned(), l)).collect()
}

fn limit_of(limits: &[(&'static str, Limit)], name: &str) -> Limit {
    limits
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, l)| l)
        .unwrap()
}

#[test]
fn every_service_has_openstacks_resources_and_volume_types_have_theirs() {
    let q = quotas();
    let names = |s| -> Vec<&str> { q.defaults(s).into_iter().map(|(n, _)| n).collect() };
    assert_eq!(
        names(Service::Compute),
        [
            "instances",
            "cores",
            "ram",
            "key_pairs",
            "server_groups",
            "server_group_members",
            "metadata_items"
        ]
    );
    assert_eq!(
        names(Service::Network),
        [
            "network",
            "subnet",
            "port",
            "security_group",
            "security_group_rule"
        ]
    );
    for t in crate::volume::types::ALL {
        for kind in ["volumes", "gigabytes", "snapshots"] {
            let name = format!("{kind}_{}", t.name);
            assert_eq!(
                resource(&name),
                Some((leak(&name), Service::Volume)),
                "{name}"
            );
            assert_eq!(q.defaults.of(&name), UNLIMITED);
        }
    }
}

/// The static name equal to `name` (resource() answers with the table's own).
fn leak(name: &str) -> &'static str {
    RESOURCES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(n, _, _)| *n)
        .unwrap()
}

#[test]
fn a_project_gets_its_overrides_over_the_configured_defaults() {
    let q = quotas();
    let admin = ctx("admin", &["admin", "member", "reader"]);
    assert_eq!(
        q.limit("p1", "instances").unwrap(),
        4,
        "the config's default"
    );
    assert_eq!(q.limit("p1", "cores").unwrap(), 20, "OpenStack's default");
    let after = q
        .set(
            &admin,
            "p1",
            Service::Compute,
            &changes(&[("cores", 8)]),
            "r",
        )
        .unwrap();
    assert_eq!(limit_of(&after, "cores"), 8);
    assert_eq!(limit_of(&after, "instances"), 4);
    assert_eq!(q.limit("p2", "cores").unwrap(), 20, "only p1 changed");
    q.reset(&admin, "p1", Service::Compute, "r").unwrap();
    assert_eq!(q.limit("p1", "cores").unwrap(), 20);
}

#[test]
fn only_an_admin_sets_and_a_member_reads_only_its_own_project() {
    let q = quotas();
    let member = ctx("p1", &["member", "reader"]);
    assert!(matches!(
        q.set(
            &member,
            "p1",
            Service::Compute,
            &changes(&[("cores", 99)]),
            "set"
        ),
        Err(QuotaError::Forbidden("set"))
    ));
    assert!(matches!(
        q.reset(&member, "p1", Service::Network, "delete"),
        Err(QuotaError::Forbidden("delete"))
    ));
    assert!(q
        .limits_for(&member, "p1", Service::Compute, "show")
        .is_ok());
    assert!(matches!(
        q.limits_for(&member, "p2", Service::Compute, "show"),
        Err(QuotaError::Forbidden("show"))
    ));
}

#[test]
fn a_set_with_any_bad_name_or_value_writes_nothing() {
    let q = quotas();
    let admin = ctx("admin", &["admin"]);
    // Another service's resource is no resource of this one.
    let bad = [
        changes(&[("cores", 8), ("network", 3)]),
        changes(&[("cores", 8), ("floating_ips", 3)]),
        changes(&[("cores", 8), ("ram", -2)]),
    ];
    for c in bad {
        assert!(
            q.set(&admin, "p1", Service::Compute, &c, "r").is_err(),
            "{c:?}"
        );
        assert_eq!(q.limit("p1", "cores").unwrap(), 20, "{c:?}");
    }
}

#[test]
fn check_allows_up_to_the_limit_and_unlimited_always() {
    assert!(check("network", 2, 1, 1).is_ok());
    assert!(check("network", UNLIMITED, 1_000_000, 1).is_ok());
    let err = check("instances", 10, 10, 1).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Quota exceeded for instances: Requested 1, but already used 10 of 10 instances"
    );
    assert!(check("cores", 0, 0, 1).is_err(), "0 allows none");
}
