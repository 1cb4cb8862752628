//! Image domain rules on a real (in-memory) database and a real image store in a temp folder.

use super::*;
use crate::identity::testing::{fixture, Fixture};
use md5::{Digest, Md5};
use serde_json::json;
use std::io::{self, Read};

struct Env {
    f: Fixture,
    store: ImageStore,
    _dir: tempfile::TempDir,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    Env {
        f: fixture(),
        store: ImageStore::open(dir.path().to_owned()).unwrap(),
        _dir: dir,
    }
}

fn new(attrs: Value) -> NewImage {
    NewImage {
        attributes: attrs.as_object().unwrap().clone(),
    }
}

fn raw(e: &Env, ctx: &RequestContext, name: &str) -> Image {
    create(
        &e.f.db,
        ctx,
        new(json!({"name": name, "disk_format": "raw", "container_format": "bare"})),
    )
    .unwrap()
}

fn put(e: &Env, ctx: &RequestContext, id: &str, data: &[u8]) -> Result<Image, ImageError> {
    upload(
        &e.f.db,
        &e.store,
        &CopyRule::alone("box"),
        ctx,
        id,
        &mut &data[..],
        UploadChecks::default(),
    )
}

fn md5_hex(data: &[u8]) -> String {
    random::hex(&Md5::digest(data))
}

/// A body that yields `good` bytes, then fails as a dropped connection does.
struct Broken {
    good: Vec<u8>,
    at: usize,
}

impl Read for Broken {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.at < self.good.len() {
            let n = buf.len().min(self.good.len() - self.at);
            buf[..n].copy_from_slice(&self.good[self.at..self.at + n]);
            self.at += n;
            return Ok(n);
        }
        Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "client went away",
        ))
    }
}

fn partials(e: &Env) -> usize {
    std::fs::read_dir(e.store.images_dir().join(".partial"))
        .unwrap()
        .count()
}

#[test]
fn create_defaults_and_policy() {
    let e = env();
    let (admin, member) = (&e.f.admin, &e.f.member);
    let i = raw(&e, member, "cirros");
    assert_eq!(i.status, ImageStatus::Queued);
    assert_eq!(i.visibility, ImageVisibility::Shared);
    assert_eq!(i.owner.as_deref(), Some(e.f.member_project_id.as_str()));
    assert!(fields::is_uuid(&i.id));

    let public = new(json!({"name": "p", "visibility": "public"}));
    assert!(matches!(
        create(&e.f.db, member, public.clone()),
        Err(ImageError::Forbidden(_))
    ));
    assert_eq!(
        create(&e.f.db, admin, public).unwrap().visibility,
        ImageVisibility::Public
    );
    let foreign = new(json!({"owner": "someone-else"}));
    assert!(matches!(
        create(&e.f.db, member, foreign),
        Err(ImageError::Forbidden(_))
    ));
    assert!(matches!(
        create(&e.f.db, member, new(json!({"status": "active"}))),
        Err(ImageError::ReadOnly(_))
    ));
    assert!(matches!(
        create(&e.f.db, member, new(json!({"id": "not-a-uuid"}))),
        Err(ImageError::InvalidField { .. })
    ));
    let with_id = new(json!({"id": "6CE3B7A4-46F1-4F0A-9D7E-1B1A2C3D4E5F"}));
    assert_eq!(
        create(&e.f.db, member, with_id.clone()).unwrap().id,
        "6ce3b7a4-46f1-4f0a-9d7e-1b1a2c3d4e5f"
    );
    assert!(matches!(
        create(&e.f.db, member, with_id),
        Err(ImageError::IdExists(_))
    ));
}

#[test]
fn raw_upload_becomes_active_and_downloads_the_same_bytes() {
    let e = env();
    let member = &e.f.member;
    let i = raw(&e, member, "disk");
    let data: Vec<u8> = (0..300_000u32).map(|n| (n % 251) as u8).collect();
    let active = put(&e, member, &i.id, &data).unwrap();
    assert_eq!(active.status, ImageStatus::Active);
    assert_eq!(active.size, Some(data.len() as i64));
    assert_eq!(active.virtual_size, Some(data.len() as i64));
    assert_eq!(active.checksum.as_deref(), Some(md5_hex(&data).as_str()));
    assert_eq!(active.os_hash_algo.as_deref(), Some("sha512"));
    assert_eq!(active.conversion, None);
    let f = download(&e.f.db, &e.store, member, &i.id).unwrap().unwrap();
    assert_eq!(f.size, data.len() as u64);
    let mut back = Vec::new();
    (&f.file).read_to_end(&mut back).unwrap();
    assert_eq!(back, data);
    // Data is uploaded once.
    assert!(matches!(
        put(&e, member, &i.id, b"again"),
        Err(ImageError::NotQueued { .. })
    ));
    // A queued image has nothing to download.
    let empty = raw(&e, member, "empty");
    assert!(download(&e.f.db, &e.store, member, &empty.id)
        .unwrap()
        .is_none());
}

#[test]
fn failed_uploads_store_nothing_and_requeue() {
    let e = env();
    let member = &e.f.member;
    let i = raw(&e, member, "disk");
    let data = vec![7u8; 100_000];

    let wrong = UploadChecks {
        md5: Some(md5_hex(b"something else")),
    };
    let err = upload(
        &e.f.db,
        &e.store,
        &CopyRule::alone("box"),
        member,
        &i.id,
        &mut &data[..],
        wrong,
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Data(_)), "{err}");
    let mut broken = Broken {
        good: data.clone(),
        at: 0,
    };
    let err = upload(
        &e.f.db,
        &e.store,
        &CopyRule::alone("box"),
        member,
        &i.id,
        &mut broken,
        UploadChecks::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ImageError::Interrupted { .. }), "{err}");
    // The owner's sha256 property is checked too.
    let mut with_sha = get(&e.f.db, member, &i.id).unwrap();
    with_sha
        .properties
        .insert(data::OWNER_SHA256.into(), "ab".repeat(32));
    e.f.db
        .update_image(&i.id, &mut |im| {
            *im = with_sha.clone();
            Ok(true)
        })
        .unwrap();
    assert!(matches!(
        put(&e, member, &i.id, &data),
        Err(ImageError::Sha256Mismatch { .. })
    ));

    let after = get(&e.f.db, member, &i.id).unwrap();
    assert_eq!(after.status, ImageStatus::Queued);
    assert_eq!(after.checksum, None);
    assert!(!e.store.contains(&i.id).unwrap());
    assert_eq!(partials(&e), 0);

    // Declared raw, but the bytes are a qcow2 image: refused, nothing kept.
    let mut qcow = b"QFI\xfb\0\0\0\x03".to_vec();
    qcow.resize(4096, 0);
    assert!(matches!(
        put(&e, member, &raw(&e, member, "q").id, &qcow),
        Err(ImageError::Data(_))
    ));
    // Formats must be set first.
    let bare = create(&e.f.db, member, new(json!({"name": "x"}))).unwrap();
    assert!(matches!(
        put(&e, member, &bare.id, b"x"),
        Err(ImageError::FormatsUnset)
    ));
}

#[test]
fn visibility_and_ownership() {
    let e = env();
    let (admin, member) = (&e.f.admin, &e.f.member);
    let private = create(
        &e.f.db,
        admin,
        new(json!({"name": "adm", "visibility": "private"})),
    )
    .unwrap();
    assert!(matches!(
        get(&e.f.db, member, &private.id),
        Err(ImageError::NotFound(_))
    ));
    let community = create(
        &e.f.db,
        admin,
        new(json!({"name": "com", "visibility": "community"})),
    )
    .unwrap();
    assert!(get(&e.f.db, member, &community.id).is_ok());
    let rename = patch::parse(
        &json!([{"op": "replace", "path": "/name", "value": "mine"}]),
        patch::Dialect::V21,
    )
    .unwrap();
    assert!(matches!(
        update(&e.f.db, member, &community.id, &rename),
        Err(ImageError::Forbidden(_))
    ));
    assert!(matches!(
        delete(&e.f.db, &e.store, member, &community.id),
        Err(ImageError::Forbidden(_))
    ));
    // Listing without a filter: the member's own and public ones only.
    let own = raw(&e, member, "own");
    let listed = list(&e.f.db, member, &ImageQuery::default()).unwrap();
    assert_eq!(
        listed.iter().map(|i| i.id.as_str()).collect::<Vec<_>>(),
        [own.id.as_str()]
    );
    assert_eq!(
        list(&e.f.db, admin, &ImageQuery::default()).unwrap().len(),
        3
    );
}

#[test]
fn updates_follow_policy() {
    let e = env();
    let member = &e.f.member;
    let i = raw(&e, member, "disk");
    let ch = |body: Value| patch::parse(&body, patch::Dialect::V21).unwrap();
    let publish = ch(json!([{"op": "replace", "path": "/visibility", "value": "public"}]));
    assert!(matches!(
        update(&e.f.db, member, &i.id, &publish),
        Err(ImageError::Forbidden(_))
    ));
    assert_eq!(
        update(&e.f.db, &e.f.admin, &i.id, &publish)
            .unwrap()
            .visibility,
        ImageVisibility::Public
    );
    let fmt = ch(json!([{"op": "replace", "path": "/disk_format", "value": "qcow2"}]));
    assert_eq!(
        update(&e.f.db, member, &i.id, &fmt)
            .unwrap()
            .disk_format
            .as_deref(),
        Some("qcow2")
    );
    let back = ch(json!([{"op": "replace", "path": "/disk_format", "value": "raw"}]));
    update(&e.f.db, member, &i.id, &back).unwrap();
    put(&e, member, &i.id, &[1u8; 512]).unwrap();
    // Formats are fixed once data exists.
    assert!(matches!(
        update(&e.f.db, member, &i.id, &fmt),
        Err(ImageError::Forbidden(_))
    ));
    // All or nothing: the second change fails, so the first is not kept.
    let half = ch(json!([
        {"op": "replace", "path": "/name", "value": "renamed"},
        {"op": "replace", "path": "/min_ram", "value": -5}
    ]));
    assert!(update(&e.f.db, member, &i.id, &half).is_err());
    assert_eq!(
        get(&e.f.db, member, &i.id).unwrap().name.as_deref(),
        Some("disk")
    );
    add_tag(&e.f.db, member, &i.id, "gold").unwrap();
    add_tag(&e.f.db, member, &i.id, "gold").unwrap();
    assert!(get(&e.f.db, member, &i.id).unwrap().tags.contains("gold"));
    remove_tag(&e.f.db, member, &i.id, "gold").unwrap();
    assert!(matches!(
        remove_tag(&e.f.db, member, &i.id, "gold"),
        Err(ImageError::NotFound(_))
    ));
}

#[test]
fn delete_is_refused_while_protected_or_in_use() {
    let e = env();
    let member = &e.f.member;
    let i = raw(&e, member, "disk");
    put(&e, member, &i.id, &[3u8; 1024]).unwrap();
    hold(
        &e.f.db,
        std::slice::from_ref(&i.id),
        ConsumerKind::Server,
        "srv-1",
    )
    .unwrap();
    assert!(in_use(&e.f.db, &i.id).unwrap());
    let err = delete(&e.f.db, &e.store, member, &i.id).unwrap_err();
    // Counted, not named: the server may be another project's.
    assert!(err.to_string().contains("1 server(s)"), "{err}");
    assert!(!err.to_string().contains("srv-1"), "{err}");
    assert_eq!(let_go(&e.f.db, ConsumerKind::Server, "srv-1").unwrap(), 1);
    let protect = patch::parse(
        &json!([{"op": "replace", "path": "/protected", "value": true}]),
        patch::Dialect::V21,
    )
    .unwrap();
    update(&e.f.db, member, &i.id, &protect).unwrap();
    assert!(matches!(
        delete(&e.f.db, &e.store, member, &i.id),
        Err(ImageError::Protected(_))
    ));
    let unprotect = patch::parse(
        &json!([{"op": "replace", "path": "/protected", "value": false}]),
        patch::Dialect::V21,
    )
    .unwrap();
    update(&e.f.db, member, &i.id, &unprotect).unwrap();
    delete(&e.f.db, &e.store, member, &i.id).unwrap();
    assert!(!e.store.contains(&i.id).unwrap());
    assert!(matches!(
        get(&e.f.db, member, &i.id),
        Err(ImageError::NotFound(_))
    ));
    // Only an active image can be used.
    let queued = raw(&e, member, "q");
    assert!(matches!(
        hold(
            &e.f.db,
            std::slice::from_ref(&queued.id),
            ConsumerKind::Volume,
            "v"
        ),
        Err(ImageError::NotActive(_))
    ));
}

#[test]
fn boot_source_resolves_kernel_and_ramdisk() {
    let e = env();
    let member = &e.f.member;
    let mk = |name: &str, fmt: &str| {
        let i = create(
            &e.f.db,
            member,
            new(json!({"name": name, "disk_format": fmt, "container_format": fmt})),
        )
        .unwrap();
        put(&e, member, &i.id, &[9u8; 4096]).unwrap();
        i.id
    };
    let kernel = mk("vmlinuz", "aki");
    let ramdisk = mk("initrd", "ari");
    let disk = create(
        &e.f.db,
        member,
        new(json!({
            "name": "root", "disk_format": "ami", "container_format": "ami",
            "kernel_id": kernel, "ramdisk_id": ramdisk,
            "os_command_line": "console=ttyS0 root=/dev/vda"
        })),
    )
    .unwrap();
    put(&e, member, &disk.id, &[1u8; 8192]).unwrap();
    let b = boot_source(&e.f.db, &e.store, member, &disk.id).unwrap();
    assert_eq!(b.path, e.store.image_path(&disk.id).unwrap());
    assert_eq!(b.kernel.as_ref().unwrap().image_id, kernel);
    assert!(b.kernel.unwrap().path.is_file());
    assert!(b.ramdisk.unwrap().path.is_file());
    assert_eq!(
        b.command_line.as_deref(),
        Some("console=ttyS0 root=/dev/vda")
    );
    // A kernel_id naming a disk image is refused.
    let wrong = create(
        &e.f.db,
        member,
        new(json!({"disk_format": "raw", "container_format": "bare", "kernel_id": disk.id})),
    )
    .unwrap();
    put(&e, member, &wrong.id, &[1u8; 512]).unwrap();
    assert!(matches!(
        boot_source(&e.f.db, &e.store, member, &wrong.id),
        Err(ImageError::InvalidField { .. })
    ));
}

#[test]
fn recovery_requeues_kills_and_removes_orphans() {
    let e = env();
    let member = &e.f.member;
    let saving = raw(&e, member, "saving");
    let active = raw(&e, member, "active");
    put(&e, member, &active.id, &[1u8; 512]).unwrap();
    let gone = raw(&e, member, "gone");
    put(&e, member, &gone.id, &[2u8; 512]).unwrap();
    // As a crash would leave them: one upload mid-way (published but unrecorded), one active
    // image whose file vanished, one file whose record was deleted.
    e.f.db
        .set_image_status_if(&saving.id, &[ImageStatus::Queued], ImageStatus::Saving)
        .unwrap();
    let mut up = e
        .store
        .begin_upload(
            &saving.id,
            outpost_image_store::ExpectedFormat {
                disk_format: outpost_image_store::DiskFormat::Raw,
                max_size: None,
            },
        )
        .unwrap();
    std::io::Write::write_all(&mut up, &[5u8; 512]).unwrap();
    up.finish(None).unwrap();
    std::fs::remove_file(e.store.image_path(&active.id).unwrap()).unwrap();
    e.f.db
        .delete_unheld_image(&gone.id, &mut |_| Ok(()))
        .unwrap();

    let r = recover(&e.f.db, &e.store, "box").unwrap();
    assert_eq!(r.requeued, vec![saving.id.clone()]);
    assert_eq!(r.killed, vec![active.id.clone()]);
    assert_eq!(r.orphan_files_removed, vec![gone.id.clone()]);
    assert_eq!(
        get(&e.f.db, member, &saving.id).unwrap().status,
        ImageStatus::Queued
    );
    assert!(!e.store.contains(&saving.id).unwrap());
    assert_eq!(
        get(&e.f.db, member, &active.id).unwrap().status,
        ImageStatus::Killed
    );
    assert!(!e.store.contains(&gone.id).unwrap());
    // The requeued image takes its data again.
    put(&e, member, &saving.id, &[6u8; 512]).unwrap();
}

/// A member (not admin) of project `project`.
fn member_of(project: &str) -> RequestContext {
    RequestContext {
        user_id: format!("user-of-{project}"),
        user_name: format!("user-of-{project}"),
        project_id: Some(project.into()),
        project_name: Some(project.into()),
        roles: vec!["member".into()],
    }
}

fn listed_ids(e: &Env, ctx: &RequestContext, q: &ImageQuery) -> Vec<String> {
    list(&e.f.db, ctx, q)
        .unwrap()
        .into_iter()
        .map(|i| i.id)
        .collect()
}

#[test]
fn members_share_a_shared_image_with_the_projects_that_accept_it() {
    let e = env();
    let owner = &e.f.member;
    let (guest, stranger) = (member_of("guest"), member_of("stranger"));
    let image = raw(&e, owner, "shared");
    assert!(matches!(
        get(&e.f.db, &guest, &image.id),
        Err(ImageError::NotFound(_))
    ));

    // The owner shares it: pending, so the guest sees it by id but does not list it yet.
    let m = members::add(&e.f.db, owner, &image.id, "guest").unwrap();
    assert_eq!(
        (m.member_id.as_str(), m.member.status),
        ("guest", MemberStatus::Pending)
    );
    assert!(matches!(
        members::add(&e.f.db, owner, &image.id, "guest"),
        Err(ImageError::MemberExists { .. })
    ));
    assert_eq!(get(&e.f.db, &guest, &image.id).unwrap().id, image.id);
    assert!(listed_ids(&e, &guest, &ImageQuery::default()).is_empty());
    let pending = ImageQuery {
        member_status: Some(MemberStatus::Pending),
        ..ImageQuery::default()
    };
    assert_eq!(listed_ids(&e, &guest, &pending), [image.id.as_str()]);

    // Only the member answers for itself.
    assert!(matches!(
        members::set_status(&e.f.db, owner, &image.id, "guest", "accepted"),
        Err(ImageError::Forbidden(_))
    ));
    assert!(matches!(
        members::set_status(&e.f.db, &guest, &image.id, "guest", "maybe"),
        Err(ImageError::InvalidField { .. })
    ));
    assert!(matches!(
        members::set_status(&e.f.db, &stranger, &image.id, "guest", "accepted"),
        Err(ImageError::NotFound(_))
    ));
    let m = members::set_status(&e.f.db, &guest, &image.id, "guest", "accepted").unwrap();
    assert_eq!(m.member.status, MemberStatus::Accepted);
    assert_eq!(
        listed_ids(&e, &guest, &ImageQuery::default()),
        [image.id.as_str()]
    );

    // The owner sees every member, a member itself only, anyone else not the image.
    members::add(&e.f.db, owner, &image.id, "stranger").unwrap();
    let ids = |ctx: &RequestContext| -> Vec<String> {
        members::list(&e.f.db, ctx, &image.id)
            .unwrap()
            .into_iter()
            .map(|m| m.member_id)
            .collect()
    };
    assert_eq!(ids(owner), ["guest", "stranger"]);
    assert_eq!(ids(&guest), ["guest"]);
    assert!(matches!(
        members::get(&e.f.db, &guest, &image.id, "stranger"),
        Err(ImageError::NotFound(_))
    ));
    let rejected = members::set_status(&e.f.db, &stranger, &image.id, "stranger", "rejected");
    assert_eq!(rejected.unwrap().member.status, MemberStatus::Rejected);
    assert!(listed_ids(&e, &stranger, &ImageQuery::default()).is_empty());

    // Members do not change the image; the owner removes them, members cannot.
    assert!(matches!(
        members::remove(&e.f.db, &guest, &image.id, "guest"),
        Err(ImageError::Forbidden(_))
    ));
    members::remove(&e.f.db, owner, &image.id, "guest").unwrap();
    assert!(matches!(
        get(&e.f.db, &guest, &image.id),
        Err(ImageError::NotFound(_))
    ));
    assert_eq!(
        get(&e.f.db, owner, &image.id)
            .unwrap()
            .members
            .keys()
            .collect::<Vec<_>>(),
        ["stranger"]
    );
}

#[test]
fn only_shared_images_have_members() {
    let e = env();
    let owner = &e.f.member;
    let image = create(
        &e.f.db,
        owner,
        new(json!({"name": "mine", "visibility": "private"})),
    )
    .unwrap();
    assert!(matches!(
        members::add(&e.f.db, owner, &image.id, "guest"),
        Err(ImageError::Forbidden(_))
    ));
    assert!(matches!(
        members::list(&e.f.db, owner, &image.id),
        Err(ImageError::Forbidden(_))
    ));
    // A member added while shared sees nothing once the image is made private.
    let shared = raw(&e, owner, "shared");
    members::add(&e.f.db, owner, &shared.id, "guest").unwrap();
    let private = patch::parse(
        &json!([{"op": "replace", "path": "/visibility", "value": "private"}]),
        patch::Dialect::V21,
    )
    .unwrap();
    update(&e.f.db, owner, &shared.id, &private).unwrap();
    assert!(matches!(
        get(&e.f.db, &member_of("guest"), &shared.id),
        Err(ImageError::NotFound(_))
    ));
}
