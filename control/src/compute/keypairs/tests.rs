use super::*;
use crate::identity::testing::{fixture, Fixture};

/// Keys made with OpenSSH's ssh-keygen; their fingerprints are what `ssh-keygen -l -E md5`
/// printed for them, so the expected values come from another implementation.
const ED25519: &str = "ssh-ed25519 \
    AAAAC3NzaC1lZDI1NTE5AAAAIPgAyOn7mqK6t40d1vomWpQFLwog8t6nxabIP6+Mwz9S bob@desk";
const ED25519_MD5: &str = "dd:c7:60:b3:69:06:5c:f3:52:48:e0:d7:98:93:4a:7f";
const RSA: &str = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQDZYU6WahGFgRDKmnnBbry/kmU3ciB0zQw+3AS\
    l3ZmiqaD2nTw6INMaIcMXsrnh8Rn/orJ109BZdQM89NjHrPbK6l6bJM7J9B5ibaGISHG1j7p36f0g5IkmHA00moQg5\
    EegEpT6svKz2F2yUyKbmeV9edVa9hfJpR3ULD6tdOrspP6CHhBPI924yxnzfU0DuA8XThA4L4aDm0UztSTWc62ErnKV\
    joG1BY92ZlnoriRIQGAdjRBfhyXcrouD8UQrIbHJmpcOxDjyq7dPODaye7z1ysbTC0ChuOYJaxUhpxl5drUMDxRTUXiL\
    NGsIMEKfbc/pZFaPEe1QLSkFvhiDC9ij alice@laptop";
const RSA_MD5: &str = "fb:d7:a5:d1:f8:f2:df:0d:2e:ca:a6:02:d1:05:13:a0";

fn import(name: &str, key: &str) -> NewKeyPair {
    NewKeyPair {
        name: name.into(),
        key_type: KeyType::Ssh,
        public_key: Some(key.into()),
        user_id: None,
    }
}

fn generated(name: &str) -> NewKeyPair {
    NewKeyPair {
        public_key: None,
        ..import(name, "")
    }
}

fn names(pairs: &[KeyPair]) -> Vec<&str> {
    pairs.iter().map(|k| k.name.as_str()).collect()
}

#[test]
fn imported_keys_keep_their_line_and_get_nova_s_md5_fingerprint() {
    let f = fixture();
    for (name, key, md5) in [("ed", ED25519, ED25519_MD5), ("rsa", RSA, RSA_MD5)] {
        let made = create(&f.db, &f.member, import(name, &format!("  {key}\n"))).unwrap();
        assert!(made.private_key.is_none(), "nothing private for an import");
        assert_eq!(made.pair.public_key, key);
        assert_eq!(made.pair.fingerprint, md5);
        assert_eq!(fingerprint_of(key).unwrap(), md5);
        assert_eq!(made.pair.user_id, f.member.user_id);
        assert_eq!(get(&f.db, &f.member, None, name).unwrap(), made.pair);
    }
}

#[test]
fn a_generated_pair_s_private_key_matches_its_stored_public_key() {
    let f = fixture();
    let made = create(&f.db, &f.member, generated("gen")).unwrap();
    let pem = made
        .private_key
        .expect("a generated pair returns its private key");
    let private = PrivateKey::from_openssh(pem.as_str()).unwrap();
    assert_eq!(private.algorithm(), Algorithm::Ed25519);
    let public = PublicKey::from_openssh(&made.pair.public_key).unwrap();
    assert_eq!(private.public_key().key_data(), public.key_data());
    assert_eq!(made.pair.fingerprint, fingerprint(&public).unwrap());
    // Two generated pairs share nothing.
    let other = create(&f.db, &f.member, generated("gen2")).unwrap();
    assert_ne!(other.pair.public_key, made.pair.public_key);
}

#[test]
fn bad_names_keys_and_types_are_refused_and_nothing_is_stored() {
    let f = fixture();
    let long = "k".repeat(256);
    for name in ["", "key_/.\\@:", " edge", "edge ", long.as_str()] {
        let err = create(&f.db, &f.member, import(name, ED25519)).unwrap_err();
        assert!(matches!(err, KeyPairError::Invalid(_)), "{name:?}: {err:?}");
    }
    create(&f.db, &f.member, import(&"k".repeat(255), ED25519)).unwrap();
    for key in [
        "ssh-rsa JUNK nova@ubuntu",
        &format!("ssh-rsa {} openstack@ubuntu", "A".repeat(2048)),
        "not a key",
    ] {
        let err = create(&f.db, &f.member, import("bad", key)).unwrap_err();
        assert!(matches!(err, KeyPairError::Invalid(_)), "{key:?}: {err:?}");
    }
    let x509 = NewKeyPair {
        key_type: KeyType::X509,
        ..generated("cert")
    };
    assert!(matches!(
        create(&f.db, &f.member, x509),
        Err(KeyPairError::X509Unsupported)
    ));
    assert_eq!(
        list(&f.db, &f.member, &KeyPairQuery::default())
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn each_user_sees_only_their_own_pairs_unless_an_admin_names_the_user() {
    let Fixture {
        db, admin, member, ..
    } = fixture();
    create(&db, &member, import("mine", ED25519)).unwrap();
    // The same name is free for another user, and taken twice by one.
    create(&db, &admin, import("mine", RSA)).unwrap();
    assert!(matches!(
        create(&db, &member, import("mine", RSA)),
        Err(KeyPairError::NameExists(_))
    ));
    let mine = get(&db, &member, None, "mine").unwrap();
    assert_eq!(mine.fingerprint, ED25519_MD5);
    assert_eq!(get(&db, &admin, None, "mine").unwrap().fingerprint, RSA_MD5);
    // A member cannot reach the admin's pairs by naming the admin.
    let theirs = Some(admin.user_id.as_str());
    for err in [
        get(&db, &member, theirs, "mine").unwrap_err(),
        delete(&db, &member, theirs, "mine").unwrap_err(),
        list(
            &db,
            &member,
            &KeyPairQuery {
                user_id: Some(admin.user_id.clone()),
                ..Default::default()
            },
        )
        .unwrap_err(),
    ] {
        assert!(matches!(err, KeyPairError::Forbidden(_)), "{err:?}");
    }
    // An admin can, and creates a pair for the member.
    let on_behalf = NewKeyPair {
        user_id: Some(member.user_id.clone()),
        ..import("given", RSA)
    };
    create(&db, &admin, on_behalf).unwrap();
    let q = KeyPairQuery {
        user_id: Some(member.user_id.clone()),
        ..Default::default()
    };
    assert_eq!(names(&list(&db, &admin, &q).unwrap()), ["given", "mine"]);
    delete(&db, &admin, Some(&member.user_id), "given").unwrap();
    assert!(matches!(
        get(&db, &member, None, "given"),
        Err(KeyPairError::NotFound { .. })
    ));
    assert_eq!(get(&db, &admin, None, "mine").unwrap().fingerprint, RSA_MD5);
}

#[test]
fn marker_and_limit_page_through_a_user_s_pairs_in_name_order() {
    let f = fixture();
    for name in ["c", "a", "d", "b"] {
        create(&f.db, &f.member, import(name, ED25519)).unwrap();
    }
    let page = |limit, marker: Option<&str>| {
        let q = KeyPairQuery {
            user_id: None,
            limit,
            marker: marker.map(str::to_owned),
        };
        list(&f.db, &f.member, &q).map(|p| names(&p).join(""))
    };
    assert_eq!(page(None, None).unwrap(), "abcd");
    assert_eq!(page(Some(2), None).unwrap(), "ab");
    assert_eq!(page(Some(2), Some("b")).unwrap(), "cd");
    assert_eq!(page(None, Some("d")).unwrap(), "");
    assert!(matches!(
        page(None, Some("zz")),
        Err(KeyPairError::MarkerNotFound(_))
    ));
}

#[test]
fn deleting_a_missing_pair_is_not_found() {
    let f = fixture();
    create(&f.db, &f.member, import("k", ED25519)).unwrap();
    delete(&f.db, &f.member, None, "k").unwrap();
    assert!(matches!(
        delete(&f.db, &f.member, None, "k"),
        Err(KeyPairError::NotFound { .. })
    ));
}

/// [`super::create`] under the quotas kept in `db` (OpenStack's defaults unless a test set a
/// project's).
fn create(
    db: &crate::storage::Db,
    ctx: &RequestContext,
    new: NewKeyPair,
) -> Result<Created, KeyPairError> {
    let quotas = Quotas::new(Default::default(), std::sync::Arc::new(db.clone()));
    super::create(db, &quotas, ctx, new)
}

#[test]
fn a_user_stops_at_the_key_pairs_quota_of_the_callers_project() {
    use crate::quota::QuotaStore;
    let f = fixture();
    let project = f.member.project_id.clone().unwrap();
    let limits = [("key_pairs".to_owned(), 2)].into_iter().collect();
    f.db.set_quota_overrides(&project, &limits).unwrap();
    create(&f.db, &f.member, generated("one")).unwrap();
    create(&f.db, &f.member, generated("two")).unwrap();
    let err = create(&f.db, &f.member, generated("three")).unwrap_err();
    assert!(matches!(err, KeyPairError::QuotaExceeded), "{err:?}");
    assert_eq!(err.to_string(), "Quota exceeded, too many key pairs.");
    // Another user of another project has its own.
    create(&f.db, &f.admin, generated("three")).unwrap();
}
