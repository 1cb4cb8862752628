//! The contract every [`VolumeRecordStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())` from the implementation's tests. SQLite runs it
//! in `storage::volumes`; a cluster's store runs the same.

use super::{Attachment, Snapshot, SnapshotStatus, Volume, VolumeRecordStore, VolumeStatus};
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

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: VolumeRecordStore>(fresh: impl Fn() -> S) {
    volumes_read_back_and_copies_need_an_available_snapshot(&fresh());
    status_changes_see_snapshots_and_write_only_what_was_decided(&fresh());
    attachments_move_the_status_with_them(&fresh());
    snapshots_are_made_against_the_volume_as_it_is(&fresh());
    texts_merge_and_extends_finish(&fresh());
}

fn volumes_read_back_and_copies_need_an_available_snapshot(store: &dyn VolumeRecordStore) {
    let v = volume("v1", VolumeStatus::Available);
    assert!(store.create_volume(&v).unwrap());
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
        .create_snapshot("v1", &mut |v| Ok(snapshot_of(v, "s1")))
        .unwrap();
    let mut copy = volume("v2", VolumeStatus::Creating);
    copy.snapshot_id = Some(snap.id.clone());
    assert!(
        !store.create_volume(&copy).unwrap(),
        "the snapshot is creating"
    );
    assert_eq!(store.volume("v2").unwrap(), None);
    let creating = [SnapshotStatus::Creating];
    assert!(store
        .set_snapshot_status_if("s1", &creating, SnapshotStatus::Available, None)
        .unwrap());
    assert!(store.create_volume(&copy).unwrap());
    assert_eq!(
        store.volume_ids_in_status(VolumeStatus::Creating).unwrap(),
        ["v2"]
    );
}

fn status_changes_see_snapshots_and_write_only_what_was_decided(store: &dyn VolumeRecordStore) {
    store
        .create_volume(&volume("v1", VolumeStatus::Available))
        .unwrap();
    store
        .create_snapshot("v1", &mut |v| Ok(snapshot_of(v, "s1")))
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
    store.create_volume(&copy).unwrap();
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
        .create_volume(&volume("v1", VolumeStatus::Available))
        .unwrap();
    store
        .create_volume(&volume("v2", VolumeStatus::Error))
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
        .create_volume(&volume("v1", VolumeStatus::Available))
        .unwrap();
    let refused = store.create_snapshot("v1", &mut |v| {
        Err(VolumeError::InvalidVolume(format!("{} says no", v.id)))
    });
    assert!(refused.is_err());
    assert!(store.snapshots(None).unwrap().is_empty());
    assert!(matches!(
        store.create_snapshot("nope", &mut |v| Ok(snapshot_of(v, "s0"))),
        Err(VolumeError::NotFound(_))
    ));
    let s = store
        .create_snapshot("v1", &mut |v| Ok(snapshot_of(v, "s1")))
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
        .create_volume(&volume("v1", VolumeStatus::Available))
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
}
