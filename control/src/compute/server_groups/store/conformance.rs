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
    racing_creates_and_joins_stay_within_their_quotas(&fresh());
}

/// 8 groups of one project made at once with room for 3: exactly 3 land; then 8 servers
/// join one group at once with room for 2 members: exactly 2 do, and one already a member
/// joins again however full the group is.
fn racing_creates_and_joins_stay_within_their_quotas(store: &dyn ServerGroupStore) {
    use crate::quota::QuotaError;
    let made: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|i| {
                scope.spawn(move || {
                    store.create_group(&group(&format!("g{i}"), "p1", GroupPolicy::Affinity), 3)
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(made.iter().filter(|r| r.is_ok()).count(), 3, "{made:?}");
    assert!(made
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(
            e,
            QuotaError::Exceeded {
                resource: "server_groups",
                used: 3,
                limit: 3,
                ..
            }
        )));
    assert_eq!(store.groups(Some("p1")).unwrap().len(), 3);
    store
        .create_group(&group("other", "p2", GroupPolicy::Affinity), 3)
        .unwrap();

    let g = store.groups(Some("p1")).unwrap().remove(0).id;
    let joined: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let g = &g;
                scope.spawn(move || store.add_member(g, &format!("s{i}"), 2))
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(
        joined.iter().filter(|r| matches!(r, Ok(true))).count(),
        2,
        "{joined:?}"
    );
    assert!(joined
        .iter()
        .filter_map(|r| r.as_ref().err())
        .all(|e| matches!(
            e,
            QuotaError::Exceeded {
                resource: "server_group_members",
                limit: 2,
                ..
            }
        )));
    let members = store.group(&g).unwrap().unwrap().members;
    assert_eq!(members.len(), 2);
    assert!(
        store.add_member(&g, &members[0], 2).unwrap(),
        "a member joins again"
    );
}

/// Two writers add members to one group at once: both members are kept (run on two
/// connections to one store, as two boxes write the same group).
pub(crate) fn races<S: ServerGroupStore + Sync>(pair: impl Fn() -> (S, S)) {
    let (a, b) = pair();
    a.create_group(
        &group("g", "p", GroupPolicy::AntiAffinity),
        crate::quota::UNLIMITED,
    )
    .unwrap();
    for round in 0..5 {
        let (left, right) = (format!("l{round}"), format!("r{round}"));
        let (l, r) = crate::store::at_once(
            (&a, &b),
            |s| s.add_member("g", &left, crate::quota::UNLIMITED),
            |s| s.add_member("g", &right, crate::quota::UNLIMITED),
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
    let stored = store.create_group(&first, crate::quota::UNLIMITED).unwrap();
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
        .create_group(
            &group("g2", "p2", GroupPolicy::SoftAffinity),
            crate::quota::UNLIMITED,
        )
        .unwrap();
    assert!(second.seq > stored.seq, "seq follows creation order");
    store
        .create_group(
            &group("g3", "p1", GroupPolicy::Affinity),
            crate::quota::UNLIMITED,
        )
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
        .create_group(
            &group("g", "p", GroupPolicy::Affinity),
            crate::quota::UNLIMITED,
        )
        .unwrap();
    assert!(store
        .add_member("g", "s1", crate::quota::UNLIMITED)
        .unwrap());
    assert!(store
        .add_member("g", "s2", crate::quota::UNLIMITED)
        .unwrap());
    assert!(
        store
            .add_member("g", "s1", crate::quota::UNLIMITED)
            .unwrap(),
        "joining twice is once"
    );
    assert!(!store
        .add_member("none", "s1", crate::quota::UNLIMITED)
        .unwrap());
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
        .create_group(
            &group("g", "p", GroupPolicy::SoftAntiAffinity),
            crate::quota::UNLIMITED,
        )
        .unwrap();
    store
        .add_member("g", "s1", crate::quota::UNLIMITED)
        .unwrap();
    assert!(store.delete_group("g").unwrap());
    assert!(!store.delete_group("g").unwrap());
    assert_eq!(store.group("g").unwrap(), None);
    assert!(store.groups(None).unwrap().is_empty());
    assert!(!store
        .add_member("g", "s2", crate::quota::UNLIMITED)
        .unwrap());
    // A group made again under the same id starts empty.
    store
        .create_group(
            &group("g", "p", GroupPolicy::Affinity),
            crate::quota::UNLIMITED,
        )
        .unwrap();
    assert!(store.group("g").unwrap().unwrap().members.is_empty());
}
