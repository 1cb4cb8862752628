use super::*;
use crate::identity::testing::{fixture, MEMBER_PASSWORD};
use crate::identity::IdentityError;

fn by_name(name: &str) -> NamedRef {
    NamedRef::Name {
        name: name.to_owned(),
        domain: DomainRef::Name("Default".to_owned()),
    }
}

fn alice(project: Option<NamedRef>) -> PasswordAuth {
    PasswordAuth {
        user: by_name("alice"),
        password: MEMBER_PASSWORD.to_owned(),
        project,
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// A login with no limits in the way (they are tested in `identity::logins`).
fn login(
    db: &dyn IdentityStore,
    auth: &PasswordAuth,
    ttl: Duration,
) -> Result<IssuedToken, IdentityError> {
    issue(db, auth, ttl, &LoginGuard::new(Default::default()), None)
}

#[test]
fn issue_validate_revoke() {
    let f = fixture();
    let t = login(&f.db, &alice(Some(by_name("demo"))), HOUR).unwrap();
    assert_eq!(t.info.user.name, "alice");
    assert_eq!(t.info.project.as_ref().unwrap().id, f.member_project_id);
    let roles: Vec<_> = t.info.roles.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(roles, ["member", "reader"]);
    assert_eq!(t.info.methods, ["password"]);
    assert_eq!(t.info.audit_id.len(), 22);
    let expected = t.info.issued_at.saturating_add(HOUR);
    assert_eq!(t.info.expires_at, expected);

    let v = validate(&f.db, &t.value).unwrap();
    assert_eq!(v.user.id, t.info.user.id);
    assert_eq!(v.audit_id, t.info.audit_id);

    revoke(&f.db, &t.value).unwrap();
    assert!(matches!(
        validate(&f.db, &t.value),
        Err(IdentityError::Unauthenticated)
    ));
    assert!(matches!(
        revoke(&f.db, &t.value),
        Err(IdentityError::TokenNotFound)
    ));
}

#[test]
fn only_the_digest_of_a_token_is_stored() {
    let f = fixture();
    let t = login(&f.db, &alice(None), HOUR).unwrap();
    let stored = f.db.token(&digest(&t.value)).unwrap().unwrap();
    assert_eq!(stored.id_hash, digest(&t.value));
    assert_ne!(stored.id_hash, t.value);
    assert_eq!(f.db.token(&t.value).unwrap(), None);
}

#[test]
fn unscoped_and_by_id() {
    let f = fixture();
    let t = login(&f.db, &alice(None), HOUR).unwrap();
    assert!(t.info.project.is_none());
    assert!(t.info.roles.is_empty());
    let by_ids = PasswordAuth {
        user: NamedRef::Id(f.member.user_id.clone()),
        password: MEMBER_PASSWORD.to_owned(),
        project: Some(NamedRef::Id(f.member_project_id.clone())),
    };
    let t = login(&f.db, &by_ids, HOUR).unwrap();
    assert_eq!(t.info.project.unwrap().name, "demo");
}

#[test]
fn expired_tokens_are_invalid_and_purged() {
    let f = fixture();
    let t = login(&f.db, &alice(None), Duration::from_millis(1)).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    assert!(matches!(
        validate(&f.db, &t.value),
        Err(IdentityError::Unauthenticated)
    ));
    // The next issue drops it.
    login(&f.db, &alice(None), HOUR).unwrap();
    let left = f.db.token(&digest(&t.value)).unwrap();
    assert!(left.is_none());
}

#[test]
fn bad_credentials_and_scopes_are_all_the_same_refusal() {
    let f = fixture();
    let cases = [
        PasswordAuth {
            password: "nope".into(),
            ..alice(None)
        },
        PasswordAuth {
            user: by_name("mallory"),
            ..alice(None)
        },
        PasswordAuth {
            user: NamedRef::Name {
                name: "alice".into(),
                domain: DomainRef::Id("other".into()),
            },
            ..alice(None)
        },
        // alice holds no role on project admin, and project nowhere does not exist.
        alice(Some(by_name("admin"))),
        alice(Some(NamedRef::Id("nowhere".into()))),
    ];
    for auth in &cases {
        assert!(
            matches!(
                login(&f.db, auth, HOUR),
                Err(IdentityError::InvalidCredentials)
            ),
            "{auth:?}"
        );
    }
}

#[test]
fn the_default_domain_s_name_matches_in_any_case() {
    let f = fixture();
    let in_domain = |name: &str, domain: &str| NamedRef::Name {
        name: name.to_owned(),
        domain: DomainRef::Name(domain.to_owned()),
    };
    for domain in ["default", "DEFAULT", "Default", "dEfAuLt"] {
        let auth = PasswordAuth {
            user: in_domain("alice", domain),
            password: MEMBER_PASSWORD.to_owned(),
            project: Some(in_domain("demo", domain)),
        };
        let t = login(&f.db, &auth, HOUR).unwrap_or_else(|e| panic!("{domain}: {e}"));
        assert_eq!(t.info.project.unwrap().id, f.member_project_id);
    }
    // Another domain's name is still no domain here.
    let auth = PasswordAuth {
        user: in_domain("alice", "defaults"),
        password: MEMBER_PASSWORD.to_owned(),
        project: None,
    };
    assert!(matches!(
        login(&f.db, &auth, HOUR),
        Err(IdentityError::InvalidCredentials)
    ));
}

#[test]
fn losing_the_role_invalidates_a_scoped_token() {
    let f = fixture();
    let t = login(&f.db, &alice(Some(by_name("demo"))), HOUR).unwrap();
    let member = f.db.role_by_name("member").unwrap().unwrap();
    f.db.revoke_role(crate::identity::store::Grant {
        project_id: &f.member_project_id,
        user_id: &f.member.user_id,
        role_id: &member.id,
    })
    .unwrap();
    assert!(matches!(
        validate(&f.db, &t.value),
        Err(IdentityError::Unauthenticated)
    ));
}
