//! Images across the boxes of a site (tests/src/rig.rs, three boxes): an image uploaded
//! through box 1 stays `saving` until a second box has verified a copy; a copy whose bytes do
//! not match the image's checksums is refused and not recorded, and fetched again once the
//! source is sound; the third box pulls its copy in the background; with box 1 powered off,
//! the image's data is still served, byte for byte, by the others.

use std::time::Duration;

use outpost_tests::eventually;
use outpost_tests::rig::{BoxNode, Rig};
use serde_json::{json, Value};

fn image(b: &BoxNode, id: &str) -> Value {
    let (code, body) = b.api("GET", &format!("/image/v2/images/{id}"), None, "2.1");
    assert_eq!(code, 200, "{body}");
    body
}

/// The boxes etcd records a verified copy of image `id` on.
fn holders(rig: &Rig, id: &str) -> Vec<String> {
    let prefix = format!("/outpost/v1/image-copies/{id}/");
    let out = rig.boxes[0].etcdctl(&["get", "--prefix", "--keys-only", &prefix]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .map(str::to_owned)
        .collect()
}

fn image_file(b: &BoxNode, id: &str) -> std::path::PathBuf {
    b.state_dir().join("images").join(id)
}

#[test]
fn an_image_is_active_with_two_verified_copies_and_outlives_its_upload_box() {
    let mut rig = Rig::site(3);
    let (code, body) = rig.boxes[0].api(
        "POST",
        "/image/v2/images",
        Some(&json!({"name": "tiny", "disk_format": "raw", "container_format": "bare"})),
        "2.1",
    );
    assert_eq!(code, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();

    // Boxes 2 and 3 stopped: box 1 alone holds the data it received.
    rig.boxes[1].kill9("outpostd");
    rig.boxes[2].kill9("outpostd");
    let data: Vec<u8> = (0..3 * 1024 * 1024u32).map(|n| (n % 251) as u8).collect();
    let upload = rig.boxes[0].dir.join("tiny.raw");
    std::fs::write(&upload, &data).unwrap();
    rig.boxes[0].upload_image_data(&id, &upload);
    let uploaded = image(&rig.boxes[0], &id);
    assert_eq!(
        uploaded["status"],
        "saving",
        "one copy of the two needed: {}",
        rig.boxes[0].log("outpostd")
    );
    assert_eq!(uploaded["size"], data.len());
    assert_eq!(holders(&rig, &id), ["box1"]);

    // The source's file damaged: box 2's pull is refused, recorded nowhere, kept nowhere.
    let source = image_file(&rig.boxes[0], &id);
    let mut damaged = data.clone();
    damaged[1000] ^= 0xff;
    std::fs::write(&source, &damaged).unwrap();
    rig.start_outpostd(2);
    rig.boxes[1].wait_api(Duration::from_secs(60));
    eventually(30, "box 2 refuses the damaged copy", || {
        let log = rig.boxes[1].log("outpostd");
        log.contains(&format!("the copy of image {id} from box1 was refused"))
            .then_some(())
    });
    assert_eq!(image(&rig.boxes[1], &id)["status"], "saving");
    assert_eq!(holders(&rig, &id), ["box1"]);
    assert!(!image_file(&rig.boxes[1], &id).exists());

    // Sound again: the next pass fetches it, and the second verified copy activates.
    std::fs::write(&source, &data).unwrap();
    eventually(30, "the image active through box 2", || {
        (image(&rig.boxes[1], &id)["status"] == "active").then_some(())
    });
    assert_eq!(holders(&rig, &id), ["box1", "box2"]);

    // Box 3 back: it pulls its own copy in the background.
    rig.start_outpostd(3);
    rig.boxes[2].wait_api(Duration::from_secs(60));
    eventually(30, "box 3 holds a verified copy", || {
        (holders(&rig, &id) == ["box1", "box2", "box3"]).then_some(())
    });
    assert_eq!(std::fs::read(image_file(&rig.boxes[2], &id)).unwrap(), data);

    // The upload box lost: the others still serve the image, byte for byte.
    rig.power_off(1);
    for b in &rig.boxes[1..] {
        assert_eq!(image(b, &id)["status"], "active");
        let (code, got) = b.curl(&[], &format!("/image/v2/images/{id}/file"));
        assert_eq!(code, 200, "through {}", b.name);
        assert!(got == data, "through {}: the bytes differ", b.name);
    }
}
