//! The contract every [`IdentityStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())` from the implementation's tests. SQLite runs it
//! in `storage::identity`; a cluster's store runs the same.

use super::{Grant, IdentityStore, ListFilter, Project, ProjectRole, Role, TokenRecord, User};
use crate::identity::IdentityError;
use crate::timestamp::Timestamp;
use std::time::Duration;

fn project(id: &str, name: &str) -> Project {
    Project {
        id: id.into(),
        name: name.into(),
        description: format!("project {name}"),
        enabled: true,
    }
}

fn user(id: &str, name: &str) -> User {
    User {
        id: id.into(),
        name: name.into(),
        enabled: true,
        default_project_id: None,
        email: Some(format!("{name}@example.com")),
        description: String::new(),
    }
}

fn role(id: &str, name: &str) -> Role {
    Role {
        id: id.into(),
        name: name.into(),
        description: String::new(),
    }
}

fn grant<'a>(project_id: &'a str, user_id: &'a str, role_id: &'a str) -> Grant<'a> {
    Grant {
        project_id,
        user_id,
        role_id,
    }
}

const ALL: ListFilter<'static> = ListFilter {
    name: None,
    project: None,
};

fn not_found(r: Result<impl std::fmt::Debug, IdentityError>, want: &str) {
    match r {
        Err(IdentityError::NotFound { kind, .. }) => assert_eq!(kind, want),
        other => panic!("expected a missing {want}: {other:?}"),
    }
}

fn duplicate(r: Result<impl std::fmt::Debug, IdentityError>, want: &str) {
    match r {
        Err(IdentityError::Duplicate { kind, .. }) => assert_eq!(kind, want),
        other => panic!("expected a duplicate {want}: {other:?}"),
    }
}

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: IdentityStore>(fresh: impl Fn() -> S) {
    projects_are_found_by_id_and_name_and_named_once(&fresh());
    only_one_of_racing_creates_of_a_name_wins(&fresh());
    users_keep_their_password_hash_and_need_their_project(&fresh());
    a_user_created_with_a_role_has_it_or_does_not_exist(&fresh());
    roles_are_named_once_and_listed_by_name(&fresh());
    grants_need_all_three_parts_and_list_users_by_project(&fresh());
    tokens_are_kept_revoked_and_purged_once_expired(&fresh());
}

fn projects_are_found_by_id_and_name_and_named_once(store: &dyn IdentityStore) {
    let p = store.create_project(&project("p2", "zeta")).unwrap();
    assert_eq!(p, project("p2", "zeta"));
    store.create_project(&project("p1", "alpha")).unwrap();
    assert_eq!(store.project("p2").unwrap(), Some(p.clone()));
    assert_eq!(store.project_by_name("zeta").unwrap(), Some(p.clone()));
    assert_eq!(store.project("zeta").unwrap(), None);
    assert_eq!(store.project_by_name("p2").unwrap(), None);
    duplicate(store.create_project(&project("p3", "zeta")), "Project");
    let names: Vec<_> = store
        .projects(ALL)
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["alpha", "zeta"]);
    let by_name = ListFilter {
        name: Some("zeta"),
        project: None,
    };
    assert_eq!(store.projects(by_name).unwrap(), std::slice::from_ref(&p));
    let by_id = ListFilter {
        name: None,
        project: Some("p2"),
    };
    assert_eq!(store.projects(by_id).unwrap(), [p]);
}

fn only_one_of_racing_creates_of_a_name_wins(store: &dyn IdentityStore) {
    let results: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["a", "b", "c", "d"]
            .into_iter()
            .map(|id| scope.spawn(move || store.create_project(&project(id, "same"))))
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| r.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert_eq!(store.projects(ALL).unwrap().len(), 1);
    let users: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = ["a", "b", "c"]
            .into_iter()
            .map(|id| scope.spawn(move || store.create_user(&user(id, "same"), None, None)))
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(users.iter().filter(|r| r.is_ok()).count(), 1, "{users:?}");
}

fn users_keep_their_password_hash_and_need_their_project(store: &dyn IdentityStore) {
    store.create_project(&project("p1", "one")).unwrap();
    let mut alice = user("u1", "alice");
    alice.default_project_id = Some("p1".into());
    assert_eq!(
        store
            .create_user(&alice, Some("$argon2id$x"), None)
            .unwrap(),
        alice
    );
    store.create_user(&user("u2", "bob"), None, None).unwrap();
    assert_eq!(store.user("u1").unwrap(), Some(alice.clone()));
    assert_eq!(store.user_by_name("alice").unwrap(), Some(alice.clone()));
    assert_eq!(store.user("alice").unwrap(), None);
    assert_eq!(
        store.password_hash("u1").unwrap().as_deref(),
        Some("$argon2id$x")
    );
    assert_eq!(store.password_hash("u2").unwrap(), None);
    assert_eq!(store.password_hash("nobody").unwrap(), None);
    duplicate(store.create_user(&user("u3", "alice"), None, None), "User");
    let mut lost = user("u4", "carol");
    lost.default_project_id = Some("nowhere".into());
    not_found(store.create_user(&lost, None, None), "project");
    assert_eq!(store.user("u4").unwrap(), None);
    let names: Vec<_> = store
        .users(ALL)
        .unwrap()
        .into_iter()
        .map(|u| u.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
}

fn a_user_created_with_a_role_has_it_or_does_not_exist(store: &dyn IdentityStore) {
    store.create_project(&project("p1", "one")).unwrap();
    store.create_role(&role("r1", "admin")).unwrap();
    let with = |role_id| ProjectRole {
        project_id: "p1",
        role_id,
    };
    not_found(
        store.create_user(&user("u0", "nobody"), None, Some(with("r9"))),
        "role",
    );
    assert_eq!(store.user_by_name("nobody").unwrap(), None);
    store
        .create_user(&user("u1", "admin"), Some("$h"), Some(with("r1")))
        .unwrap();
    assert_eq!(
        store.assigned_roles("u1", "p1").unwrap(),
        [role("r1", "admin")]
    );
}

fn roles_are_named_once_and_listed_by_name(store: &dyn IdentityStore) {
    store.create_role(&role("r2", "reader")).unwrap();
    store.create_role(&role("r1", "member")).unwrap();
    duplicate(store.create_role(&role("r3", "member")), "Role");
    assert_eq!(store.role("r1").unwrap(), Some(role("r1", "member")));
    assert_eq!(
        store.role_by_name("reader").unwrap(),
        Some(role("r2", "reader"))
    );
    assert_eq!(store.role_by_name("r1").unwrap(), None);
    assert_eq!(
        store.roles(None).unwrap(),
        [role("r1", "member"), role("r2", "reader")]
    );
    assert_eq!(store.roles(Some("reader")).unwrap(), [role("r2", "reader")]);
    assert!(store.roles(Some("none")).unwrap().is_empty());
}

fn grants_need_all_three_parts_and_list_users_by_project(store: &dyn IdentityStore) {
    store.create_project(&project("p1", "one")).unwrap();
    store.create_project(&project("p2", "two")).unwrap();
    store.create_user(&user("u1", "alice"), None, None).unwrap();
    store.create_user(&user("u2", "bob"), None, None).unwrap();
    store.create_role(&role("r1", "member")).unwrap();
    store.create_role(&role("r0", "admin")).unwrap();
    not_found(store.grant_role(grant("px", "ux", "rx")), "project");
    not_found(store.grant_role(grant("p1", "ux", "rx")), "user");
    not_found(store.grant_role(grant("p1", "u1", "rx")), "role");
    store.grant_role(grant("p1", "u1", "r1")).unwrap();
    store.grant_role(grant("p1", "u1", "r1")).unwrap();
    store.grant_role(grant("p1", "u1", "r0")).unwrap();
    store.grant_role(grant("p2", "u2", "r1")).unwrap();
    assert_eq!(
        store.assigned_roles("u1", "p1").unwrap(),
        [role("r0", "admin"), role("r1", "member")]
    );
    assert!(store.assigned_roles("u1", "p2").unwrap().is_empty());
    let in_p1 = ListFilter {
        name: None,
        project: Some("p1"),
    };
    let users = store.users(in_p1).unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].name, "alice");
    store.revoke_role(grant("p1", "u1", "r1")).unwrap();
    not_found(
        store.revoke_role(grant("p1", "u1", "r1")),
        "role assignment",
    );
    not_found(store.revoke_role(grant("p1", "u1", "rx")), "role");
    assert_eq!(
        store.assigned_roles("u1", "p1").unwrap(),
        [role("r0", "admin")]
    );
}

fn token(id_hash: &str, issued_at: Timestamp, ttl: Duration) -> TokenRecord {
    TokenRecord {
        id_hash: id_hash.into(),
        user_id: "u1".into(),
        project_id: Some("p1".into()),
        methods: vec!["password".into(), "token".into()],
        audit_id: format!("audit-{id_hash}"),
        issued_at,
        expires_at: issued_at.saturating_add(ttl),
        revoked: false,
    }
}

fn tokens_are_kept_revoked_and_purged_once_expired(store: &dyn IdentityStore) {
    store.create_project(&project("p1", "one")).unwrap();
    store.create_user(&user("u1", "alice"), None, None).unwrap();
    let then = Timestamp(Timestamp::now().micros() - 7_200_000_000);
    let old = token("old", then, Duration::from_secs(60));
    store.insert_token(&old).unwrap();
    assert_eq!(store.token("old").unwrap(), Some(old));
    let now = Timestamp::now();
    let t = token("new", now, Duration::from_secs(3600));
    store.insert_token(&t).unwrap();
    assert_eq!(store.token("new").unwrap(), Some(t.clone()));
    assert_eq!(
        store.token("old").unwrap(),
        None,
        "expired before the issue"
    );
    let mut unscoped = token("bare", now, Duration::from_secs(3600));
    unscoped.project_id = None;
    store.insert_token(&unscoped).unwrap();
    assert_eq!(store.token("bare").unwrap(), Some(unscoped));
    assert!(store.revoke_token("new").unwrap());
    assert!(store.token("new").unwrap().unwrap().revoked);
    assert!(!store.revoke_token("unknown").unwrap());
    assert_eq!(store.token("unknown").unwrap(), None);
}
