//! The contract every [`ImageRecordStore`] keeps, as one suite any implementation runs:
//! `conformance::run(|| fresh_empty_store())` from the implementation's tests, and
//! `conformance::races(|| two_handles_on_one_fresh_store())` for writers racing. SQLite runs it
//! in `storage::images`; a cluster's store runs the same.

use super::{
    Image, ImageCopy, ImageData, ImageMember, ImageRecordStore, ImageStatus, ImageVisibility,
    MemberStatus,
};
use crate::image::{ConsumerKind, ImageError};
use crate::store::{at_once, dawdle};
use crate::timestamp::Timestamp;
use std::collections::{BTreeMap, BTreeSet};

fn image(id: &str) -> Image {
    Image {
        id: id.into(),
        name: Some(format!("image {id}")),
        status: ImageStatus::Queued,
        visibility: ImageVisibility::Shared,
        owner: Some("p1".into()),
        disk_format: Some("raw".into()),
        container_format: Some("bare".into()),
        min_disk: 1,
        min_ram: 64,
        protected: false,
        size: None,
        virtual_size: None,
        checksum: None,
        os_hash_algo: None,
        os_hash_value: None,
        conversion: None,
        properties: BTreeMap::from([("os_distro".into(), "cirros".into())]),
        tags: BTreeSet::from(["boot".into()]),
        // Members are part of the record: every store keeps them with the image.
        members: BTreeMap::from([(
            "guest-project".into(),
            ImageMember {
                status: MemberStatus::Accepted,
                created_at: Timestamp(7),
                updated_at: Timestamp(8),
            },
        )]),
        created_at: Timestamp::now(),
        updated_at: Timestamp::now(),
    }
}

fn data() -> ImageData {
    ImageData {
        size: 512,
        virtual_size: 512,
        checksum: "c".repeat(32),
        os_hash_algo: "sha512".into(),
        os_hash_value: "h".repeat(128),
        disk_format: "raw".into(),
        conversion: None,
    }
}

/// An image made active through the store's own steps.
fn active(store: &dyn ImageRecordStore, id: &str) {
    store.create_image(&image(id)).unwrap();
    let to_saving = [ImageStatus::Queued];
    assert!(store
        .set_image_status_if(id, &to_saving, ImageStatus::Saving)
        .unwrap());
    assert!(store.record_image_data(id, &data(), "box1", 1).unwrap());
}

/// Runs every check, each on a store `fresh` makes (empty).
pub(crate) fn run<S: ImageRecordStore>(fresh: impl Fn() -> S) {
    images_read_back_whole_and_ids_are_taken_once(&fresh());
    updates_write_all_or_nothing(&fresh());
    statuses_move_only_from_where_they_are(&fresh());
    only_active_images_are_held_and_held_ones_are_not_deleted(&fresh());
    an_image_is_active_once_enough_copies_of_its_data_are_verified(&fresh());
}

fn images_read_back_whole_and_ids_are_taken_once(store: &dyn ImageRecordStore) {
    let i = image("i1");
    store.create_image(&i).unwrap();
    let got = store.image("i1").unwrap().unwrap();
    assert_eq!(
        Image {
            created_at: i.created_at,
            updated_at: i.updated_at,
            ..got
        },
        i
    );
    assert!(matches!(
        store.create_image(&image("i1")),
        Err(ImageError::IdExists(_))
    ));
    store.create_image(&image("i2")).unwrap();
    let mut ids: Vec<_> = store.images().unwrap().into_iter().map(|i| i.id).collect();
    ids.sort();
    assert_eq!(ids, ["i1", "i2"]);
    assert_eq!(store.image("nope").unwrap(), None);
}

fn updates_write_all_or_nothing(store: &dyn ImageRecordStore) {
    store.create_image(&image("i1")).unwrap();
    let after = store
        .update_image("i1", &mut |i| {
            i.name = Some("renamed".into());
            i.tags.insert("new".into());
            i.properties.remove("os_distro");
            i.members.remove("guest-project");
            let member = ImageMember {
                status: MemberStatus::Rejected,
                created_at: Timestamp(9),
                updated_at: Timestamp(10),
            };
            i.members.insert("other-project".into(), member);
            Ok(true)
        })
        .unwrap()
        .unwrap();
    assert_eq!(after.name.as_deref(), Some("renamed"));
    assert!(after.tags.contains("new") && after.properties.is_empty());
    assert_eq!(after.members.keys().collect::<Vec<_>>(), ["other-project"]);
    assert_eq!(store.image("i1").unwrap(), Some(after.clone()));
    // A refusal or a "no change" writes nothing.
    let refused = store.update_image("i1", &mut |i| {
        i.name = Some("lost".into());
        Err(ImageError::FormatsUnset)
    });
    assert!(matches!(refused, Err(ImageError::FormatsUnset)));
    let unchanged = store.update_image("i1", &mut |i| {
        i.name = Some("lost".into());
        Ok(false)
    });
    assert_eq!(unchanged.unwrap(), Some(after.clone()));
    assert_eq!(store.image("i1").unwrap(), Some(after));
    assert!(store
        .update_image("nope", &mut |_| Ok(true))
        .unwrap()
        .is_none());
    // A status changed by an update is written with it.
    let saving = store
        .update_image("i1", &mut |i| {
            i.status = ImageStatus::Saving;
            Ok(true)
        })
        .unwrap()
        .unwrap();
    assert_eq!(saving.status, ImageStatus::Saving);
}

fn statuses_move_only_from_where_they_are(store: &dyn ImageRecordStore) {
    store.create_image(&image("i1")).unwrap();
    assert!(
        !store.record_image_data("i1", &data(), "box1", 1).unwrap(),
        "not saving"
    );
    let queued = [ImageStatus::Queued];
    assert!(store
        .set_image_status_if("i1", &queued, ImageStatus::Saving)
        .unwrap());
    assert!(!store
        .set_image_status_if("i1", &queued, ImageStatus::Saving)
        .unwrap());
    assert_eq!(
        store.image_ids_in_status(ImageStatus::Saving).unwrap(),
        ["i1"]
    );
    assert!(store.record_image_data("i1", &data(), "box1", 1).unwrap());
    let i = store.image("i1").unwrap().unwrap();
    assert_eq!(i.status, ImageStatus::Active);
    assert_eq!(i.size, Some(512));
    assert_eq!(i.checksum, Some("c".repeat(32)));
    assert!(!store
        .set_image_status_if("nope", &queued, ImageStatus::Saving)
        .unwrap());
}

fn only_active_images_are_held_and_held_ones_are_not_deleted(store: &dyn ImageRecordStore) {
    store.create_image(&image("queued")).unwrap();
    active(store, "a");
    active(store, "b");
    let ids = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // All or none: a queued image among them holds nothing.
    assert!(matches!(
        store.hold_images(&ids(&["a", "queued"]), ConsumerKind::Server, "s1"),
        Err(ImageError::NotActive(_))
    ));
    assert!(matches!(
        store.hold_images(&ids(&["a", "nope"]), ConsumerKind::Server, "s1"),
        Err(ImageError::NotFound(_))
    ));
    assert!(store.image_holders("a").unwrap().is_empty());
    store
        .hold_images(&ids(&["a", "b"]), ConsumerKind::Server, "s1")
        .unwrap();
    store
        .hold_images(&ids(&["a"]), ConsumerKind::Server, "s1")
        .unwrap();
    store
        .hold_images(&ids(&["a"]), ConsumerKind::Volume, "v1")
        .unwrap();
    assert_eq!(
        store.image_holders("a").unwrap(),
        [
            ("server".to_owned(), "s1".to_owned()),
            ("volume".to_owned(), "v1".to_owned())
        ]
    );
    assert_eq!(store.holders_of_kind(ConsumerKind::Server).unwrap(), ["s1"]);
    assert!(matches!(
        store.delete_unheld_image("a", &mut |_| Ok(())),
        Err(ImageError::InUse { .. })
    ));
    // The caller's check comes first and can refuse on its own.
    assert!(matches!(
        store.delete_unheld_image("queued", &mut |i| Err(ImageError::Protected(i.id.clone()))),
        Err(ImageError::Protected(_))
    ));
    assert_eq!(store.release_images(ConsumerKind::Server, "s1").unwrap(), 2);
    assert_eq!(store.release_images(ConsumerKind::Server, "s1").unwrap(), 0);
    store.delete_unheld_image("b", &mut |_| Ok(())).unwrap();
    assert_eq!(store.image("b").unwrap(), None);
    assert!(matches!(
        store.delete_unheld_image("b", &mut |_| Ok(())),
        Err(ImageError::NotFound(_))
    ));
    assert_eq!(store.release_images(ConsumerKind::Volume, "v1").unwrap(), 1);
    assert!(store
        .holders_of_kind(ConsumerKind::Volume)
        .unwrap()
        .is_empty());
    store.delete_unheld_image("a", &mut |_| Ok(())).unwrap();
}

fn copy(holder: &str) -> ImageCopy {
    ImageCopy {
        holder: holder.into(),
        size: 512,
        os_hash_value: "h".repeat(128),
    }
}

fn an_image_is_active_once_enough_copies_of_its_data_are_verified(store: &dyn ImageRecordStore) {
    store.create_image(&image("i1")).unwrap();
    // No data yet: no copy of it can be recorded.
    assert_eq!(
        store.record_verified_copy("i1", &copy("box2"), 2).unwrap(),
        None
    );
    let queued = [ImageStatus::Queued];
    assert!(store
        .set_image_status_if("i1", &queued, ImageStatus::Saving)
        .unwrap());
    // The upload's own copy is one of two: the image has its data but stays saving.
    assert!(store.record_image_data("i1", &data(), "box1", 2).unwrap());
    let i = store.image("i1").unwrap().unwrap();
    assert_eq!((i.status, i.size), (ImageStatus::Saving, Some(512)));
    assert_eq!(store.image_copies("i1").unwrap(), [copy("box1")]);
    // A copy of other bytes is not this image's.
    let other = ImageCopy {
        os_hash_value: "0".repeat(128),
        ..copy("box2")
    };
    assert_eq!(store.record_verified_copy("i1", &other, 2).unwrap(), None);
    let short = ImageCopy {
        size: 511,
        ..copy("box2")
    };
    assert_eq!(store.record_verified_copy("i1", &short, 2).unwrap(), None);
    // The same box again counts once.
    assert_eq!(
        store.record_verified_copy("i1", &copy("box1"), 2).unwrap(),
        Some(ImageStatus::Saving)
    );
    // The second box's verified copy is the one that activates.
    assert_eq!(
        store.record_verified_copy("i1", &copy("box2"), 2).unwrap(),
        Some(ImageStatus::Active)
    );
    assert_eq!(
        store.image("i1").unwrap().unwrap().status,
        ImageStatus::Active
    );
    // A copy recorded again, the newest of all (a box verifying its file anew).
    for _ in 0..2 {
        assert_eq!(
            store.record_verified_copy("i1", &copy("box3"), 2).unwrap(),
            Some(ImageStatus::Active)
        );
    }
    let holders = |s: &dyn ImageRecordStore| -> Vec<String> {
        s.image_copies("i1")
            .unwrap()
            .into_iter()
            .map(|c| c.holder)
            .collect()
    };
    assert_eq!(holders(store), ["box1", "box2", "box3"]);
    assert!(store.drop_image_copy("i1", "box1").unwrap());
    assert!(!store.drop_image_copy("i1", "box1").unwrap());
    assert_eq!(holders(store), ["box2", "box3"]);
    // Deleting the image forgets its copies; a late copy of it is refused.
    store.delete_unheld_image("i1", &mut |_| Ok(())).unwrap();
    assert!(store.image_copies("i1").unwrap().is_empty());
    assert_eq!(
        store.record_verified_copy("i1", &copy("box2"), 2).unwrap(),
        None
    );

    // One box: its own copy is enough, at once.
    store.create_image(&image("alone")).unwrap();
    assert!(store
        .set_image_status_if("alone", &queued, ImageStatus::Saving)
        .unwrap());
    assert!(store
        .record_image_data("alone", &data(), "box1", 1)
        .unwrap());
    assert_eq!(
        store.image("alone").unwrap().unwrap().status,
        ImageStatus::Active
    );
}

/// Runs the checks of writers racing, each on a pair of handles `pair` makes on one fresh
/// store: two boxes of a cluster, or one database from two threads.
pub(crate) fn races<S: ImageRecordStore>(pair: impl Fn() -> (S, S)) {
    let (a, b) = pair();
    racing_updates_lose_none(&a, &b);
    let (a, b) = pair();
    a_hold_and_a_delete_racing_never_both_win(&a, &b);
    let (a, b) = pair();
    copies_racing_activate_the_image_once_both_are_counted(&a, &b);
}

fn copies_racing_activate_the_image_once_both_are_counted<S: ImageRecordStore>(a: &S, b: &S) {
    // Three boxes want two copies beside the upload's: each of two copies racing counts the
    // other or fails its compare, so the image ends active whichever commits first.
    for round in 0..5 {
        let id = format!("r{round}");
        a.create_image(&image(&id)).unwrap();
        let queued = [ImageStatus::Queued];
        assert!(a
            .set_image_status_if(&id, &queued, ImageStatus::Saving)
            .unwrap());
        assert!(a.record_image_data(&id, &data(), "box1", 3).unwrap());
        let (x, y) = at_once(
            (a, b),
            |s| s.record_verified_copy(&id, &copy("box2"), 3),
            |s| s.record_verified_copy(&id, &copy("box3"), 3),
        );
        let statuses = [x.unwrap(), y.unwrap()];
        assert!(
            statuses.contains(&Some(ImageStatus::Active)),
            "{statuses:?}"
        );
        assert_eq!(b.image(&id).unwrap().unwrap().status, ImageStatus::Active);
        assert_eq!(b.image_copies(&id).unwrap().len(), 3);
    }
}

fn racing_updates_lose_none<S: ImageRecordStore>(a: &S, b: &S) {
    a.create_image(&image("i1")).unwrap();
    let add_tags = |store: &S, prefix: &str| {
        for n in 0..10 {
            let tag = format!("{prefix}{n}");
            let after = store.update_image("i1", &mut |i| Ok(i.tags.insert(tag.clone())));
            assert!(after.unwrap().is_some_and(|i| i.tags.contains(&tag)));
        }
    };
    at_once((a, b), |s| add_tags(s, "a"), |s| add_tags(s, "b"));
    let tags = b.image("i1").unwrap().unwrap().tags;
    assert_eq!(
        tags.len(),
        21,
        "the first tag and each writer's ten: {tags:?}"
    );
}

fn a_hold_and_a_delete_racing_never_both_win<S: ImageRecordStore>(a: &S, b: &S) {
    for round in 0..10 {
        let id = format!("i{round}");
        active(a, &id);
        let ids = [id.clone()];
        let (held, deleted) = at_once(
            (a, b),
            |s| s.hold_images(&ids, ConsumerKind::Server, "s1"),
            |s| {
                s.delete_unheld_image(&id, &mut |_| {
                    dawdle();
                    Ok(())
                })
            },
        );
        match (held, deleted) {
            (Ok(()), Err(ImageError::InUse { .. })) => {
                assert!(b.image(&id).unwrap().is_some());
                assert_eq!(b.image_holders(&id).unwrap().len(), 1);
            }
            (Err(ImageError::NotFound(_)), Ok(())) => {
                assert_eq!(b.image(&id).unwrap(), None);
                assert!(
                    b.image_holders(&id).unwrap().is_empty(),
                    "no hold outlives it"
                );
            }
            (held, deleted) => panic!("round {round}: hold {held:?}, delete {deleted:?}"),
        }
        a.release_images(ConsumerKind::Server, "s1").unwrap();
    }
}
