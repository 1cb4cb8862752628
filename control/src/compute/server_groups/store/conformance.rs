//! The contract every [`ServerGroupStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())`. SQLite runs it in `storage::server_groups`,
//! etcd in `cluster::store::tests`.

use super::{ServerGroup, ServerGroupStore};
use crate::timestamp::Timestamp;
use outpost_resources::GroupPolicy;

/// A group of `project` with no member.
pub(crate) fn group(id: &str, project: &str, policy: GroupPolicy) -> ServerGroup {
    ServerGroup {
        seq: 0,
        id: id.into(),
        name: format!("group-{id}"),
        project_id: project.into(),
        user_id: "u".into(),
        policy,
        max_server_per_host: None,
        members: Vec::new(),
        created_at: Timestamp::now(),
    }
}

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: ServerGroupStore>(fresh: impl Fn() -> S) {
    groups_read_back_whole_in_creation_order(&fresh());
    members_join_once_and_leave(&fresh());
    deleted_groups_are_gone(&fresh());
}

/// Two writers add members to one group at once: both members are kept (run on two
/// connections to one store, as two boxes write the same group).
pub(crate) fn races<S: ServerGroupStore + Sync>(pair: impl Fn() -> (S, S)) {
    let (a, b) = pair();
    a.create_group(&group("g", "p", GroupPolicy::AntiAffinity))
        .unwrap();
    for round in 0..5 {
        let (left, right) = (format!("l{round}"), format!("r{round}"));
        let (l, r) = crate::store::at_once(
            (&a, &b),
            |s| s.add_member("g", &left),
            |s| s.add_member("g", &right),
        );
        assert!(l.unwrap() && r.unwrap());
    }
    let members = a.group("g").unwrap().unwrap().members;
    assert_eq!(members.len(), 10, "{members:?}");
}

fn groups_read_back_whole_in_creation_order(store: &dyn ServerGroupStore) {
    let mut first = group("g1", "p1", GroupPolicy::AntiAffinity);
    first.max_server_per_host = Some(2);
    first.members = vec!["ignored".into()];
    let stored = store.create_group(&first).unwrap();
    assert!(stored.members.is_empty(), "a new group has no member");
    assert_eq!(
        ServerGroup {
            seq: first.seq,
            members: first.members.clone(),
            ..stored.clone()
        },
        first
    );
    assert_eq!(store.group("g1").unwrap(), Some(stored.clone()));
    assert_eq!(store.group("nope").unwrap(), None);
    let second = store
        .create_group(&group("g2", "p2", GroupPolicy::SoftAffinity))
        .unwrap();
    assert!(second.seq > stored.seq, "seq follows creation order");
    store
        .create_group(&group("g3", "p1", GroupPolicy::Affinity))
        .unwrap();
    let ids = |project| -> Vec<String> {
        store
            .groups(project)
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect()
    };
    assert_eq!(ids(None), ["g1", "g2", "g3"]);
    assert_eq!(ids(Some("p1")), ["g1", "g3"]);
    assert!(ids(Some("p3")).is_empty());
}

fn members_join_once_and_leave(store: &dyn ServerGroupStore) {
    store
        .create_group(&group("g", "p", GroupPolicy::Affinity))
        .unwrap();
    assert!(store.add_member("g", "s1").unwrap());
    assert!(store.add_member("g", "s2").unwrap());
    assert!(
        store.add_member("g", "s1").unwrap(),
        "joining twice is once"
    );
    assert!(!store.add_member("none", "s1").unwrap());
    let members = |id| store.group(id).unwrap().unwrap().members;
    assert_eq!(members("g"), ["s1", "s2"]);
    store.remove_member("g", "s1").unwrap();
    store.remove_member("g", "s1").unwrap();
    store.remove_member("none", "s1").unwrap();
    assert_eq!(members("g"), ["s2"]);
    assert_eq!(
        store.groups(Some("p")).unwrap()[0].members,
        ["s2"],
        "lists show members too"
    );
}

fn deleted_groups_are_gone(store: &dyn ServerGroupStore) {
    store
        .create_group(&group("g", "p", GroupPolicy::SoftAntiAffinity))
        .unwrap();
    store.add_member("g", "s1").unwrap();
    assert!(store.delete_group("g").unwrap());
    assert!(!store.delete_group("g").unwrap());
    assert_eq!(store.group("g").unwrap(), None);
    assert!(store.groups(None).unwrap().is_empty());
    assert!(!store.add_member("g", "s2").unwrap());
    // A group made again under the same id starts empty.
    store
        .create_group(&group("g", "p", GroupPolicy::Affinity))
        .unwrap();
    assert!(store.group("g").unwrap().unwrap().members.is_empty());
}
