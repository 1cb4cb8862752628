//! The contract every [`VolumeRecordStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())` from the implementation's tests, and
//! `conformance::races(|| two_handles_on_one_fresh_store())` for writers racing. SQLite runs it
//! in `storage::volumes`; a cluster's store runs the same.

use super::{Attachment, Snapshot, SnapshotStatus, Volume, VolumeRecordStore, VolumeStatus};
use crate::quota::{QuotaError, VolumeQuota, UNLIMITED};
use crate::store::{at_once, dawdle};
use crate::timestamp::Timestamp;
use crate::volume::VolumeError;
use std::collections::BTreeMap;

fn volume(id: &str, status: VolumeStatus) -> Volume {
    Volume {
        id: id.into(),
        project_id: "p1".into(),
        user_id: "u".into(),
        name: Some(format!("vol {id}")),
        description: None,
        size: 1,
        status,
        volume_type: "thin".into(),
        image_id: None,
        image_metadata: BTreeMap::new(),
        snapshot_id: None,
        fault: None,
        metadata: BTreeMap::from([("k".into(), "v".into())]),
        attachment: None,
        home: "box2".into(),
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    }
}

fn snapshot_of(v: &Volume, id: &str) -> Snapshot {
    Snapshot {
        id: id.into(),
        project_id: v.project_id.clone(),
        user_id: "u".into(),
        volume_id: v.id.clone(),
        name: None,
        description: None,
        size: v.size,
        status: SnapshotStatus::Creating,
        fault: None,
        home: v.home.clone(),
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    }
}

fn attachment(volume_id: &str, server_id: &str) -> Attachment {
    Attachment {
        id: format!("a-{volume_id}"),
        volume_id: volume_id.into(),
        server_id: server_id.into(),
        device: Some("/dev/vdb".into()),
        attached_at: Timestamp::now(),
    }
}

fn status(store: &dyn VolumeRecordStore, id: &str) -> VolumeStatus {
    store.volume(id).unwrap().unwrap().status
}

/// No quota on the suite's (thin) volumes.
fn unlimited() -> VolumeQuota {
    VolumeQuota::unlimited("thin")
}

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: VolumeRecordStore>(fresh: impl Fn() -> S) {
    volumes_read_back_and_copies_need_an_available_snapshot(&fresh());
    status_changes_see_snapshots_and_write_only_what_was_decided(&fresh());
    attachments_move_the_status_with_them(&fresh());
    snapshots_are_made_against_the_volume_as_it_is(&fresh());
    texts_merge_and_extends_finish(&fresh());
    racing_creates_stay_within_the_quota(&fresh());
}

/// 8 creates of one project at once with room for 3 volumes: exactly 3 land; then the
/// gigabytes (snapshots' count too) and a type's own limits refuse what would not fit.
fn racing_creates_stay_within_the_quota(store: &dyn VolumeRecordStore) {
    let quota = VolumeQuota {
        volumes: 3,
        ..unlimited()
    };
    let results: Vec<_> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..8)
            .map(|i| {
                let quota = &quota;
                scope.spawn(move || {
                    store.create_volume(&volume(&format!("r{i}"), VolumeStatus::Available), quota)
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(
        results.iter().filter(|r| matches!(r, Ok(true))).count(),
        3,
        "{results:?}"
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(
            matches!(
                r,
                QuotaError::Exceeded {
                    resource: "volumes",
                    used: 3,
                    limit: 3,
                    ..
                }
            ),
            "{r:?}"
        );
    }
    assert_eq!(store.volumes(Some("p1")).unwrap().len(), 3);
    // 3 GiB of volumes and a 1 GiB snapshot held: 5 GiB more do not fit in 8.
    let held = store
        .volume("r0")
        .unwrap()
        .or(store.volumes(Some("p1")).unwrap().pop());
    let held = held.unwrap();
    store
        .create_snapshot(&held.id, &unlimited(), &mut |v| Ok(snapshot_of(v, "s1")))
        .unwrap();
    let gigabytes = VolumeQuota {
        gigabytes: 8,
        ..unlimited()
    };
    let mut big = volume("big", VolumeStatus::Available);
    big.size = 5;
    match store.create_volume(&big, &gigabytes) {
        Err(QuotaError::Exceeded {
            resource: "gigabytes",
            used: 4,
            requested: 5,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    big.size = 4;
    assert!(store.create_volume(&big, &gigabytes).unwrap());
    // Snapshots: one held, room for one more; and 8 GiB are all taken.
    let snapshots = VolumeQuota {
        snapshots: 2,
        ..unlimited()
    };
    store
        .create_snapshot("big", &snapshots, &mut |v| Ok(snapshot_of(v, "s2")))
        .unwrap();
    match store.create_snapshot("big", &snapshots, &mut |v| Ok(snapshot_of(v, "s3"))) {
        Err(VolumeError::OverQuota(m)) => assert!(m.starts_with("SnapshotLimitExceeded"), "{m}"),
        other => panic!("{other:?}"),
    }
    match store.create_snapshot(&held.id, &gigabytes, &mut |v| Ok(snapshot_of(v, "s4"))) {
        Err(VolumeError::OverQuota(m)) => {
            assert!(m.starts_with("VolumeSizeExceedsAvailableQuota"), "{m}")
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(store.snapshots(Some("p1")).unwrap().len(), 2);
    // The type's own limit: thick volumes are not thin ones.
    let thin_only = VolumeQuota {
        of_type: [
            ("volumes_thin", 4),
            ("gigabytes_thin", UNLIMITED),
            ("snapshots_thin", UNLIMITED),
        ],
        ..unlimited()
    };
    match store.create_volume(&volume("t", VolumeStatus::Available), &thin_only) {
        Err(QuotaError::Exceeded {
            resource: "volumes_thin",
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
    // Another project is not limited by these.
    let mut other = volume("o", VolumeStatus::Available);
    other.project_id = "p2".into();
    assert!(store.create_volume(&other, &quota).unwrap());
}

fn volumes_read_back_and_copies_need_an_available_snapshot(store: &dyn VolumeRecordStore) {
    let v = volume("v1", VolumeStatus::Available);
    assert!(store.create_volume(&v, &unlimited()).unwrap());
    let got = store.volume("v1").unwrap().unwrap();
    assert_eq!(
        Volume {
            created_at: v.created_at,
            updated_at: v.updated_at,
            ..got
        },
        v
    );
    assert_eq!(store.volumes(Some("p1")).unwrap().len(), 1);
    assert!(store.volumes(Some("p2")).unwrap().is_empty());
    let snap = store
        .create_snapshot("v1", &unlimited(), &mut |v| Ok(snapshot_of(v, "s1")))
        .unwrap();
    let mut copy = volume("v2", VolumeStatus::Creating);
    copy.snapshot_id = Some(snap.id.clone());
    assert!(
        !store.create_volume(&copy, &unlimited()).unwrap(),
        "the snapshot is creating"
    );
    assert_eq!(store.volume("v2").unwrap(), None);
    let creating = [SnapshotStatus::Creating];
    assert!(store
        .set_snapshot_status_if("s1", &creating, SnapshotStatus::Available, None)
        .unwrap());
    assert!(store.create_volume(&copy, &unlimited()).unwrap());
    assert_eq!(
        store.volume_ids_in_status(VolumeStatus::Creating).unwrap(),
        ["v2"]
    );
}

fn status_changes_see_snapshots_and_write_only_what_was_decided(store: &dyn VolumeRecordStore) {
    store
        .create_volume(&volume("v1", VolumeStatus::Available), &unlimited())
        .unwrap();
    store
        .create_snapshot("v1", &unlimited(), &mut |v| Ok(snapshot_of(v, "s1")))
        .unwrap();
    let refused = store.change_volume_status("v1", &mut |seen| {
        assert_eq!(seen.snapshots.len(), 1);
        Err(VolumeError::InvalidVolume("has snapshots".into()))
    });
    assert!(matches!(refused, Err(VolumeError::InvalidVolume(_))));
    assert_eq!(status(store, "v1"), VolumeStatus::Available);
    store.change_volume_status("v1", &mut |_| Ok(None)).unwrap();
    assert_eq!(status(store, "v1"), VolumeStatus::Available);
    let was = store
        .change_volume_status("v1", &mut |_| Ok(Some(VolumeStatus::Extending)))
        .unwrap();
    assert_eq!(
        was.status,
        VolumeStatus::Available,
        "returns the volume as read"
    );
    assert_eq!(status(store, "v1"), VolumeStatus::Extending);
    assert!(matches!(
        store.change_volume_status("nope", &mut |_| Ok(None)),
        Err(VolumeError::NotFound(_))
    ));
    // Snapshots: the decision sees the volumes being copied from it.
    let mut copy = volume("v2", VolumeStatus::Creating);
    copy.snapshot_id = Some("s1".into());
    store
        .set_snapshot_status_if(
            "s1",
            &[SnapshotStatus::Creating],
            SnapshotStatus::Available,
            None,
        )
        .unwrap();
    store.create_volume(&copy, &unlimited()).unwrap();
    let seen = store
        .change_snapshot_status("s1", &mut |s, copies| {
            assert_eq!(s.status, SnapshotStatus::Available);
            assert_eq!(copies.len(), 1);
            assert_eq!(copies[0].id, "v2");
            Ok(Some(SnapshotStatus::Deleting))
        })
        .unwrap();
    assert_eq!(seen.status, SnapshotStatus::Available);
    assert_eq!(
        store.snapshot("s1").unwrap().unwrap().status,
        SnapshotStatus::Deleting
    );
    assert!(store.delete_snapshot("s1").unwrap());
    assert!(!store.delete_snapshot("s1").unwrap());
    assert!(matches!(
        store.change_snapshot_status("s1", &mut |_, _| Ok(None)),
        Err(VolumeError::SnapshotNotFound(_))
    ));
}

fn attachments_move_the_status_with_them(store: &dyn VolumeRecordStore) {
    store
        .create_volume(&volume("v1", VolumeStatus::Available), &unlimited())
        .unwrap();
    store
        .create_volume(&volume("v2", VolumeStatus::Error), &unlimited())
        .unwrap();
    let refused = store.attach_volume(&attachment("v1", "s1"), &mut |_| {
        Err(VolumeError::InvalidVolume("no".into()))
    });
    assert!(refused.is_err());
    assert_eq!(status(store, "v1"), VolumeStatus::Available);
    // A volume that is not available is never attached, whatever the check says.
    assert!(store
        .attach_volume(&attachment("v2", "s1"), &mut |_| Ok(()))
        .is_err());
    assert!(store.attachments_of_server("s1").unwrap().is_empty());
    let a = attachment("v1", "s1");
    store.attach_volume(&a, &mut |_| Ok(())).unwrap();
    let v = store.volume("v1").unwrap().unwrap();
    assert_eq!(v.status, VolumeStatus::InUse);
    assert_eq!(v.attachment, Some(a));
    assert!(store
        .attach_volume(&attachment("v1", "s2"), &mut |_| Ok(()))
        .is_err());
    assert_eq!(store.attachments_of_server("s1").unwrap().len(), 1);
    assert_eq!(
        store
            .detach_volume("v1", "s2", &mut |_| VolumeStatus::Available)
            .unwrap(),
        None,
        "attached to another server"
    );
    assert_eq!(
        store
            .detach_volume("v1", "s1", &mut |seen| {
                assert_eq!(seen.volume.attachment, None);
                VolumeStatus::Deleting
            })
            .unwrap(),
        Some(VolumeStatus::Deleting)
    );
    let v = store.volume("v1").unwrap().unwrap();
    assert_eq!((v.status, v.attachment), (VolumeStatus::Deleting, None));
    assert!(store.attachments_of_server("s1").unwrap().is_empty());
    assert!(store.delete_volume("v1").unwrap());
    assert!(!store.delete_volume("v1").unwrap());
}

fn snapshots_are_made_against_the_volume_as_it_is(store: &dyn VolumeRecordStore) {
    store
        .create_volume(&volume("v1", VolumeStatus::Available), &unlimited())
        .unwrap();
    let refused = store.create_snapshot("v1", &unlimited(), &mut |v| {
        Err(VolumeError::InvalidVolume(format!("{} says no", v.id)))
    });
    assert!(refused.is_err());
    assert!(store.snapshots(None).unwrap().is_empty());
    assert!(matches!(
        store.create_snapshot("nope", &unlimited(), &mut |v| Ok(snapshot_of(v, "s0"))),
        Err(VolumeError::NotFound(_))
    ));
    let s = store
        .create_snapshot("v1", &unlimited(), &mut |v| Ok(snapshot_of(v, "s1")))
        .unwrap();
    assert_eq!(store.snapshot("s1").unwrap(), Some(s));
    assert_eq!(store.snapshots(Some("p1")).unwrap().len(), 1);
    assert_eq!(
        store
            .snapshot_ids_in_status(SnapshotStatus::Creating)
            .unwrap(),
        ["s1"]
    );
    assert!(store
        .set_snapshot_status_if(
            "s1",
            &[SnapshotStatus::Creating],
            SnapshotStatus::Error,
            Some("x")
        )
        .unwrap());
    assert_eq!(
        store.snapshot("s1").unwrap().unwrap().fault.as_deref(),
        Some("x")
    );
}

fn texts_merge_and_extends_finish(store: &dyn VolumeRecordStore) {
    store
        .create_volume(&volume("v1", VolumeStatus::Available), &unlimited())
        .unwrap();
    let v = store
        .set_volume_text("v1", None, Some(Some("about it")))
        .unwrap()
        .unwrap();
    assert_eq!(v.name.as_deref(), Some("vol v1"), "kept");
    assert_eq!(v.description.as_deref(), Some("about it"));
    let v = store
        .set_volume_text("v1", Some(None), None)
        .unwrap()
        .unwrap();
    assert_eq!((v.name, v.description.as_deref()), (None, Some("about it")));
    assert_eq!(store.set_volume_text("nope", None, None).unwrap(), None);
    assert!(
        !store.finish_extend("v1", Some(5)).unwrap(),
        "not extending"
    );
    assert_eq!(store.volume("v1").unwrap().unwrap().size, 1);
    store
        .set_volume_status_if(
            "v1",
            &[VolumeStatus::Available],
            VolumeStatus::Extending,
            None,
        )
        .unwrap();
    assert!(store.finish_extend("v1", Some(5)).unwrap());
    let v = store.volume("v1").unwrap().unwrap();
    assert_eq!((v.status, v.size), (VolumeStatus::Available, 5));
    store
        .set_volume_status_if(
            "v1",
            &[VolumeStatus::Available],
            VolumeStatus::Extending,
            None,
        )
        .unwrap();
    assert!(
        store.finish_extend("v1", None).unwrap(),
        "a failed grow keeps the size"
    );
    assert_eq!(store.volume("v1").unwrap().unwrap().size, 5);

    // An extend asked of another box: refused as the check says, else recorded with its size.
    let refused = store.request_extend("v1", 9, &mut |_| {
        Err(VolumeError::InvalidVolume("no".into()))
    });
    assert!(matches!(refused, Err(VolumeError::InvalidVolume(_))));
    assert_eq!(store.volume("v1").unwrap().unwrap().size, 5, "unchanged");
    let was = store
        .request_extend("v1", 9, &mut |seen| {
            assert_eq!(seen.volume.size, 5);
            Ok(())
        })
        .unwrap();
    assert_eq!((was.status, was.size), (VolumeStatus::Available, 5));
    let v = store.volume("v1").unwrap().unwrap();
    assert_eq!((v.status, v.size), (VolumeStatus::Extending, 9));
    assert!(matches!(
        store.request_extend("nope", 9, &mut |_| Ok(())),
        Err(VolumeError::NotFound(_))
    ));
}

/// Runs the checks of writers racing, each on a pair of handles `pair` makes on one fresh
/// store: two boxes of a cluster, or one database from two threads.
pub(crate) fn races<S: VolumeRecordStore>(pair: impl Fn() -> (S, S)) {
    let (a, b) = pair();
    one_of_two_racing_changes_wins(&a, &b);
    let (a, b) = pair();
    a_snapshot_and_a_delete_racing_never_both_win(&a, &b);
    let (a, b) = pair();
    a_copy_and_its_snapshot_s_delete_racing_never_both_win(&a, &b);
    let (a, b) = pair();
    racing_metadata_merges_keep_both_keys(&a, &b);
}

/// Two merges of different keys at once: both keys stay (each edit sees the other's write),
/// and a volume that is not there is None.
fn racing_metadata_merges_keep_both_keys<S: VolumeRecordStore>(a: &S, b: &S) {
    for round in 0..10 {
        let id = format!("m{round}");
        a.create_volume(&volume(&id, VolumeStatus::Available), &unlimited())
            .unwrap();
        let merge = |store: &S, key: &str| {
            store.set_volume_metadata(&id, &mut |m| {
                m.insert(key.to_owned(), round.to_string());
            })
        };
        let (l, r) = at_once((a, b), |s| merge(s, "left"), |s| merge(s, "right"));
        assert!(l.unwrap().is_some() && r.unwrap().is_some());
        let m = b.volume(&id).unwrap().unwrap().metadata;
        assert_eq!(
            m.keys().map(String::as_str).collect::<Vec<_>>(),
            ["k", "left", "right"],
            "round {round}"
        );
    }
    assert!(a
        .set_volume_metadata("nope", &mut |m| m.clear())
        .unwrap()
        .is_none());
}

/// Both writers want the same available volume: extending it, attaching it.
fn one_of_two_racing_changes_wins<S: VolumeRecordStore>(a: &S, b: &S) {
    let extend = |store: &S, id: &str| {
        store.change_volume_status(id, &mut |seen| match seen.volume.status {
            VolumeStatus::Available => Ok(Some(VolumeStatus::Extending)),
            other => Err(VolumeError::InvalidVolume(other.as_str().into())),
        })
    };
    for round in 0..10 {
        let id = format!("e{round}");
        a.create_volume(&volume(&id, VolumeStatus::Available), &unlimited())
            .unwrap();
        let (l, r) = at_once((a, b), |s| extend(s, &id), |s| extend(s, &id));
        assert!(
            l.is_ok() != r.is_ok(),
            "round {round}: exactly one extends: {l:?} {r:?}"
        );
        assert_eq!(status(b, &id), VolumeStatus::Extending);

        let id = format!("a{round}");
        a.create_volume(&volume(&id, VolumeStatus::Available), &unlimited())
            .unwrap();
        let attach = |store: &S, server: &str| {
            store.attach_volume(&attachment(&id, server), &mut |_| Ok(()))
        };
        let (l, r) = at_once((a, b), |s| attach(s, "s1"), |s| attach(s, "s2"));
        assert!(l.is_ok() != r.is_ok(), "round {round}: {l:?} {r:?}");
        let winner = if l.is_ok() { "s1" } else { "s2" };
        let v = b.volume(&id).unwrap().unwrap();
        assert_eq!(v.attachment.map(|a| a.server_id).as_deref(), Some(winner));
    }
}

/// A volume being deleted gets no snapshot, and one with a snapshot is not deleted.
fn a_snapshot_and_a_delete_racing_never_both_win<S: VolumeRecordStore>(a: &S, b: &S) {
    for round in 0..10 {
        let id = format!("v{round}");
        a.create_volume(&volume(&id, VolumeStatus::Available), &unlimited())
            .unwrap();
        let snap_id = format!("s{round}");
        let (snapped, deleting) = at_once(
            (a, b),
            |s| {
                s.create_snapshot(&id, &unlimited(), &mut |v| match v.status {
                    VolumeStatus::Available => Ok(snapshot_of(v, &snap_id)),
                    other => Err(VolumeError::InvalidVolume(other.as_str().into())),
                })
            },
            |s| {
                s.change_volume_status(&id, &mut |seen| {
                    dawdle();
                    if !seen.snapshots.is_empty() {
                        return Err(VolumeError::InvalidVolume("has snapshots".into()));
                    }
                    Ok(Some(VolumeStatus::Deleting))
                })
            },
        );
        assert!(
            snapped.is_ok() != deleting.is_ok(),
            "round {round}: {snapped:?} {deleting:?}"
        );
        let snapshots = b.snapshots(None).unwrap();
        let has_snapshot = snapshots.iter().any(|s| s.id == snap_id);
        assert_eq!(has_snapshot, snapped.is_ok());
        let expected = if snapped.is_ok() {
            VolumeStatus::Available
        } else {
            VolumeStatus::Deleting
        };
        assert_eq!(status(b, &id), expected, "round {round}");
    }
}

/// A snapshot being deleted gets no new copy, and one being copied is not deleted.
fn a_copy_and_its_snapshot_s_delete_racing_never_both_win<S: VolumeRecordStore>(a: &S, b: &S) {
    let source = volume("source", VolumeStatus::Available);
    a.create_volume(&source, &unlimited()).unwrap();
    for round in 0..10 {
        let snap_id = format!("s{round}");
        a.create_snapshot("source", &unlimited(), &mut |v| {
            Ok(snapshot_of(v, &snap_id))
        })
        .unwrap();
        let creating = [SnapshotStatus::Creating];
        assert!(a
            .set_snapshot_status_if(&snap_id, &creating, SnapshotStatus::Available, None)
            .unwrap());
        let mut copy = volume(&format!("c{round}"), VolumeStatus::Creating);
        copy.snapshot_id = Some(snap_id.clone());
        let (copied, deleting) = at_once(
            (a, b),
            |s| s.create_volume(&copy, &unlimited()).unwrap(),
            |s| {
                s.change_snapshot_status(&snap_id, &mut |snap, copies| {
                    dawdle();
                    if copies.iter().any(|v| v.status == VolumeStatus::Creating) {
                        return Err(VolumeError::InvalidSnapshot("being copied".into()));
                    }
                    assert_eq!(snap.status, SnapshotStatus::Available);
                    Ok(Some(SnapshotStatus::Deleting))
                })
            },
        );
        assert!(
            copied != deleting.is_ok(),
            "round {round}: {copied} {deleting:?}"
        );
        let snap = b.snapshot(&snap_id).unwrap().unwrap();
        let expected = if copied {
            SnapshotStatus::Available
        } else {
            SnapshotStatus::Deleting
        };
        assert_eq!(snap.status, expected, "round {round}");
        assert_eq!(b.volume(&copy.id).unwrap().is_some(), copied);
    }
}
