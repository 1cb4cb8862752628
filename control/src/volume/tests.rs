//! Volume rules on a real (in-memory) database and real files in a temp folder; background
//! copies are real threads, waited for by polling the record.

use super::*;
use crate::identity::testing::{fixture, Fixture};
use crate::image::{NewImage, UploadChecks};
use serde_json::json;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

struct Env {
    f: Fixture,
    stores: Stores,
    _dir: tempfile::TempDir,
}

fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let f = fixture();
    let stores = Stores {
        records: Arc::new(f.db.clone()),
        image_records: Arc::new(f.db.clone()),
        volumes: Arc::new(VolumeStore::open(dir.path().to_owned()).unwrap()),
        images: Arc::new(ImageStore::open(dir.path().to_owned()).unwrap()),
        homes: Arc::new(Homes::alone("box1")),
        quotas: crate::quota::Quotas::new(Default::default(), Arc::new(f.db.clone())),
    };
    Env {
        f,
        stores,
        _dir: dir,
    }
}

fn blank(size: i64) -> NewVolume {
    NewVolume {
        size: Some(json!(size)),
        name: Some("v".into()),
        ..NewVolume::default()
    }
}

/// Waits until volume `id` is no longer creating.
fn settled(e: &Env, id: &str) -> Volume {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = get(&e.f.db, &e.f.admin, id).unwrap();
        if v.status != VolumeStatus::Creating {
            return v;
        }
        assert!(Instant::now() < deadline, "volume {id} still creating");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn settled_snapshot(e: &Env, id: &str) -> Snapshot {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = snapshots::get(&e.f.db, &e.f.admin, id).unwrap();
        if s.status != SnapshotStatus::Creating {
            return s;
        }
        assert!(Instant::now() < deadline, "snapshot {id} still creating");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn blocks(e: &Env, id: &str) -> u64 {
    std::fs::metadata(e.stores.volumes.path(id).unwrap())
        .unwrap()
        .blocks()
        * 512
}

/// An active raw image of `data`, owned by the member's project.
fn image_of(e: &Env, data: &[u8]) -> String {
    let attrs = json!({"name": "img", "disk_format": "raw", "container_format": "bare"});
    let i = image::create(
        &e.f.db,
        &e.f.member,
        NewImage {
            attributes: attrs.as_object().unwrap().clone(),
        },
    )
    .unwrap();
    image::upload(
        &e.f.db,
        &e.stores.images,
        &image::CopyRule::alone("box"),
        &e.f.member,
        &i.id,
        &mut &data[..],
        UploadChecks::default(),
    )
    .unwrap();
    i.id
}

#[test]
fn thin_and_thick_blank_volumes() {
    let e = env();
    let member = &e.f.member;
    let thin = create(&e.stores, member, blank(1)).unwrap();
    assert_eq!(thin.status, VolumeStatus::Creating);
    assert_eq!(thin.volume_type, "thin");
    let thick = create(
        &e.stores,
        member,
        NewVolume {
            volume_type: Some("thick".into()),
            ..blank(1)
        },
    )
    .unwrap();
    assert_eq!(settled(&e, &thin.id).status, VolumeStatus::Available);
    assert_eq!(settled(&e, &thick.id).status, VolumeStatus::Available);
    assert_eq!(e.stores.volumes.size_bytes(&thin.id).unwrap(), GIB);
    assert!(
        blocks(&e, &thin.id) < 1 << 20,
        "thin allocated {}",
        blocks(&e, &thin.id)
    );
    assert!(
        blocks(&e, &thick.id) >= GIB,
        "thick allocated {}",
        blocks(&e, &thick.id)
    );
    // The member's project owns them; another project does not see them.
    assert_eq!(thin.project_id, e.f.member_project_id);
    let others = list(&e.f.db, &e.f.admin, &ListQuery::default()).unwrap();
    assert!(others.is_empty());
    let everyone = ListQuery {
        all_projects: true,
        ..ListQuery::default()
    };
    assert_eq!(list(&e.f.db, &e.f.admin, &everyone).unwrap().len(), 2);
    assert!(matches!(
        create(
            &e.stores,
            member,
            NewVolume {
                volume_type: Some("gold".into()),
                ..blank(1)
            }
        ),
        Err(VolumeError::TypeNotFound(_))
    ));
}

#[test]
fn sizes_are_checked_before_anything_is_made() {
    let e = env();
    for bad in [
        json!(0),
        json!(-1),
        json!(4097),
        json!(1u64 << 62),
        json!("x"),
        json!(1.5),
        json!("-1"),
    ] {
        let r = create(
            &e.stores,
            &e.f.member,
            NewVolume {
                size: Some(bad.clone()),
                ..NewVolume::default()
            },
        );
        assert!(matches!(r, Err(VolumeError::InvalidInput(_))), "{bad}");
    }
    assert_eq!(parse_size("size", &json!("3")).unwrap(), 3);
    assert!(create(&e.stores, &e.f.member, NewVolume::default()).is_err());
    let q = ListQuery {
        all_projects: true,
        ..ListQuery::default()
    };
    assert!(list(&e.f.db, &e.f.admin, &q).unwrap().is_empty());
    assert!(e.stores.volumes.list(DiskKind::Volume).unwrap().is_empty());
}

use outpost_image_store::DiskKind;

#[test]
fn from_image_copies_it_and_holds_it() {
    let e = env();
    let member = &e.f.member;
    let data: Vec<u8> = (0..3 * 4096u32).map(|n| (n % 253) as u8 + 1).collect();
    let img = image_of(&e, &data);
    let v = create(
        &e.stores,
        member,
        NewVolume {
            image_ref: Some(img.clone()),
            ..blank(1)
        },
    )
    .unwrap();
    let v = settled(&e, &v.id);
    assert_eq!(v.status, VolumeStatus::Available, "{:?}", v.fault);
    assert_eq!(v.image_metadata["image_id"], img);
    let bytes = std::fs::read(e.stores.volumes.path(&v.id).unwrap()).unwrap();
    assert_eq!(bytes.len() as u64, GIB);
    assert_eq!(&bytes[..data.len()], &data[..]);
    assert!(bytes[data.len()..].iter().all(|b| *b == 0));
    // The image is in use while the volume exists.
    assert!(image::in_use(&e.f.db, &img).unwrap());
    assert!(matches!(
        image::delete(&e.f.db, &e.stores.images, member, &img),
        Err(ImageError::InUse { .. })
    ));
    delete(&e.stores, member, &v.id).unwrap();
    assert!(!image::in_use(&e.f.db, &img).unwrap());
    image::delete(&e.f.db, &e.stores.images, member, &img).unwrap();
    // An image bigger than the volume, and a missing image, are refused.
    let big = image_of(&e, &vec![1u8; 4096]);
    let mut meta = image::get(&e.f.db, member, &big).unwrap();
    meta.min_disk = 2;
    crate::image::ImageRecordStore::update_image(&e.f.db, &big, &mut |i| {
        *i = meta.clone();
        Ok(true)
    })
    .unwrap();
    let r = create(
        &e.stores,
        member,
        NewVolume {
            image_ref: Some(big),
            ..blank(1)
        },
    );
    assert!(matches!(r, Err(VolumeError::InvalidInput(_))), "{r:?}");
    let r = create(
        &e.stores,
        member,
        NewVolume {
            image_ref: Some("6ce3b7a4-46f1-4f0a-9d7e-1b1a2c3d4e5f".into()),
            ..blank(1)
        },
    );
    assert!(matches!(
        r,
        Err(VolumeError::InvalidImage(ImageError::NotFound(_)))
    ));
}

#[test]
fn snapshots_copies_extend_and_refusals() {
    let e = env();
    let member = &e.f.member;
    let v = create(&e.stores, member, blank(1)).unwrap();
    settled(&e, &v.id);
    let path = e.stores.volumes.path(&v.id).unwrap();
    let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::io::Write::write_all(&mut f, b"written by a guest").unwrap();
    drop(f);

    let s = snapshots::create(
        &e.stores,
        member,
        snapshots::NewSnapshot {
            volume_id: v.id.clone(),
            name: Some("s".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        settled_snapshot(&e, &s.id).status,
        SnapshotStatus::Available
    );
    assert!(matches!(
        delete(&e.stores, member, &v.id),
        Err(VolumeError::InvalidVolume(_))
    ));
    let copy = create(
        &e.stores,
        member,
        NewVolume {
            size: None,
            snapshot_id: Some(s.id.clone()),
            ..NewVolume::default()
        },
    )
    .unwrap();
    let copy = settled(&e, &copy.id);
    assert_eq!(copy.size, 1);
    let bytes = std::fs::read(e.stores.volumes.path(&copy.id).unwrap()).unwrap();
    assert!(bytes.starts_with(b"written by a guest"));

    extend(&e.stores, member, &v.id, &json!(2)).unwrap();
    assert_eq!(get(&e.f.db, member, &v.id).unwrap().size, 2);
    assert_eq!(e.stores.volumes.size_bytes(&v.id).unwrap(), 2 * GIB);
    assert!(matches!(
        extend(&e.stores, member, &v.id, &json!(2)),
        Err(VolumeError::InvalidInput(_))
    ));

    // Attached: in-use, not deletable, not extendable; snapshots need force.
    attach(&e.f.db, &v.id, "server-1", Some("/dev/vdb")).unwrap();
    assert!(attach(&e.f.db, &v.id, "server-2", None).is_err());
    assert_eq!(
        get(&e.f.db, member, &v.id).unwrap().status,
        VolumeStatus::InUse
    );
    assert_eq!(attachments_of_server(&e.f.db, "server-1").unwrap().len(), 1);
    assert!(matches!(
        extend(&e.stores, member, &v.id, &json!(3)),
        Err(VolumeError::InvalidVolume(_))
    ));
    let unforced = snapshots::NewSnapshot {
        volume_id: v.id.clone(),
        ..Default::default()
    };
    assert!(snapshots::create(&e.stores, member, unforced.clone()).is_err());
    let forced = snapshots::create(
        &e.stores,
        member,
        snapshots::NewSnapshot {
            force: true,
            ..unforced
        },
    )
    .unwrap();
    settled_snapshot(&e, &forced.id);
    assert!(detach(&e.f.db, &v.id, "server-2").is_err());
    detach(&e.f.db, &v.id, "server-1").unwrap();
    assert_eq!(
        get(&e.f.db, member, &v.id).unwrap().status,
        VolumeStatus::Available
    );

    snapshots::delete(&e.stores, member, &s.id).unwrap();
    snapshots::delete(&e.stores, member, &forced.id).unwrap();
    delete(&e.stores, member, &v.id).unwrap();
    assert!(!path.exists());
    // The copy made from the snapshot is independent of it.
    assert_eq!(
        get(&e.f.db, member, &copy.id).unwrap().status,
        VolumeStatus::Available
    );
}

#[test]
fn recovery_settles_interrupted_work() {
    let e = env();
    let member = &e.f.member;
    let done = create(&e.stores, member, blank(1)).unwrap();
    settled(&e, &done.id);
    let lost = create(&e.stores, member, blank(1)).unwrap();
    settled(&e, &lost.id);
    // As a crash would leave them: one finished copy not yet recorded, one copy whose file
    // never appeared, one deletion half done, one file with no record.
    let set = |id: &str, to: VolumeStatus| {
        e.f.db
            .set_volume_status_if(id, &VolumeStatus::ALL, to, None)
            .unwrap()
    };
    set(&done.id, VolumeStatus::Creating);
    set(&lost.id, VolumeStatus::Creating);
    e.stores.volumes.delete(&lost.id).unwrap();
    let dying = create(&e.stores, member, blank(1)).unwrap();
    settled(&e, &dying.id);
    set(&dying.id, VolumeStatus::Deleting);
    e.stores
        .volumes
        .create_blank(
            "0a0b0c0d-0000-4000-8000-000000000000",
            GIB,
            outpost_image_store::Provisioning::Thin,
        )
        .unwrap();

    let r = recover(&e.stores).unwrap();
    assert_eq!(r.completed, vec![done.id.clone()]);
    assert_eq!(r.failed, vec![lost.id.clone()]);
    assert_eq!(r.deleted, vec![dying.id.clone()]);
    assert_eq!(r.orphan_files_removed.len(), 1);
    assert_eq!(
        get(&e.f.db, member, &done.id).unwrap().status,
        VolumeStatus::Available
    );
    let failed = get(&e.f.db, member, &lost.id).unwrap();
    assert_eq!(failed.status, VolumeStatus::Error);
    assert!(failed.fault.unwrap().contains("restart"));
    assert!(matches!(
        get(&e.f.db, member, &dying.id),
        Err(VolumeError::NotFound(_))
    ));
    // An errored volume can be deleted.
    delete(&e.stores, member, &lost.id).unwrap();
}

#[test]
fn a_volume_made_in_place_is_detached_and_deleted_with_its_server() {
    let e = env();
    let member = &e.f.member;
    // Made in the caller's thread under the caller's id: available on return.
    let v = create_now(&e.stores, member, blank(1), "chosen-id").unwrap();
    assert_eq!(
        (v.id.as_str(), v.status),
        ("chosen-id", VolumeStatus::Available)
    );
    assert!(create_now(&e.stores, member, blank(0), "other").is_err());
    assert!(get(&e.f.db, member, "other").is_err());

    // Not attached to that server: nothing happens.
    attach(&e.f.db, &v.id, "server-1", Some("/dev/vda")).unwrap();
    assert!(!detach_and_delete(&e.stores, &v.id, "server-2").unwrap());
    assert_eq!(
        get(&e.f.db, member, &v.id).unwrap().status,
        VolumeStatus::InUse
    );
    assert!(detach_and_delete(&e.stores, &v.id, "server-1").unwrap());
    assert!(matches!(
        get(&e.f.db, member, &v.id),
        Err(VolumeError::NotFound(_))
    ));
    assert!(e.stores.volumes.path(&v.id).map_or(true, |p| !p.exists()));

    // A volume with a snapshot is only detached.
    let w = create_now(&e.stores, member, blank(1), "with-snapshot").unwrap();
    let snap = snapshots::create(
        &e.stores,
        member,
        snapshots::NewSnapshot {
            volume_id: w.id.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    settled_snapshot(&e, &snap.id);
    attach(&e.f.db, &w.id, "server-1", None).unwrap();
    assert!(!detach_and_delete(&e.stores, &w.id, "server-1").unwrap());
    let w = get(&e.f.db, member, &w.id).unwrap();
    assert_eq!(w.status, VolumeStatus::Available);
    assert!(w.attachment.is_none());
}

/// Always picks one box, as a site's placement would when that box has the most free disk.
struct Picks(&'static str);

impl HomePicker for Picks {
    fn pick_home(&self, _: Option<&str>, _: &str) -> Result<Option<String>, String> {
        Ok(Some(self.0.to_owned()))
    }
}

/// Box `me` of a two-box site sharing `e`'s records, with its own volume files.
fn member_box(e: &Env, me: &str, dir: &std::path::Path) -> Stores {
    Stores {
        volumes: Arc::new(VolumeStore::open(dir.to_owned()).unwrap()),
        images: Arc::new(ImageStore::open(dir.to_owned()).unwrap()),
        homes: Arc::new(Homes::in_site(me, Arc::new(Picks("box2")))),
        ..e.stores.clone()
    }
}

/// Waits until `done` holds after a pass of `home`'s reconciler.
fn reconciled(home: &Stores, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        reconcile(home).unwrap();
        if done() {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: not done by the home");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn work_asked_through_one_box_is_done_by_the_volumes_home() {
    let e = env();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let box1 = member_box(&e, "box1", d1.path());
    let box2 = member_box(&e, "box2", d2.path());
    let member = &e.f.member;
    let db = e.stores.records.as_ref();

    // Asked of box 1, homed on box 2 (most free disk): only box 2 makes the file.
    let v = create(&box1, member, blank(1)).unwrap();
    assert_eq!(
        (v.home.as_str(), v.status),
        ("box2", VolumeStatus::Creating)
    );
    reconcile(&box1).unwrap();
    assert_eq!(
        get(db, member, &v.id).unwrap().status,
        VolumeStatus::Creating
    );
    reconciled(&box2, "create", || {
        get(db, member, &v.id).unwrap().status == VolumeStatus::Available
    });
    assert!(box2.volumes.path(&v.id).unwrap().exists());
    assert!(!box1.volumes.path(&v.id).unwrap().exists());

    // Extend through box 1: recorded with its size, grown by box 2.
    let asked = extend(&box1, member, &v.id, &json!(2)).unwrap();
    assert_eq!((asked.status, asked.size), (VolumeStatus::Extending, 2));
    reconciled(&box2, "extend", || {
        get(db, member, &v.id).unwrap().status == VolumeStatus::Available
    });
    assert_eq!(get(db, member, &v.id).unwrap().size, 2);
    assert_eq!(box2.volumes.size_bytes(&v.id).unwrap(), 2 << 30);

    // A snapshot asked of box 1 is taken beside the volume, and a copy of it homed there.
    let snap = snapshots::create(
        &box1,
        member,
        snapshots::NewSnapshot {
            volume_id: v.id.clone(),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(snap.home, "box2");
    reconciled(&box2, "snapshot", || {
        snapshots::get(db, member, &snap.id).unwrap().status == SnapshotStatus::Available
    });
    assert!(box2.volumes.snapshot_path(&snap.id).unwrap().exists());
    let copy = create(
        &box1,
        member,
        NewVolume {
            snapshot_id: Some(snap.id.clone()),
            ..blank(2)
        },
    )
    .unwrap();
    assert_eq!(copy.home, "box2");
    reconciled(&box2, "copy", || {
        get(db, member, &copy.id).unwrap().status == VolumeStatus::Available
    });

    // Deletes through box 1: recorded `deleting`, done by box 2, file and record gone.
    delete(&box1, member, &copy.id).unwrap();
    snapshots::delete(&box1, member, &snap.id).unwrap();
    assert!(
        box2.volumes.path(&copy.id).unwrap().exists(),
        "not box 1's to remove"
    );
    reconciled(&box2, "snapshot delete", || {
        matches!(
            snapshots::get(db, member, &snap.id),
            Err(VolumeError::SnapshotNotFound(_))
        )
    });
    delete(&box1, member, &v.id).unwrap();
    reconciled(&box2, "delete", || {
        matches!(get(db, member, &v.id), Err(VolumeError::NotFound(_)))
            && matches!(get(db, member, &copy.id), Err(VolumeError::NotFound(_)))
    });
    assert!(!box2.volumes.path(&v.id).unwrap().exists());
    assert!(!box2.volumes.path(&copy.id).unwrap().exists());
}
