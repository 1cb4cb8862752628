//! Cinder 3.0's JSON for volumes, snapshots and volume types.

use crate::volume::types::{VolumeType, PROVISIONING_SPEC};
use crate::volume::{Snapshot, Volume, VolumeStatus};
use serde_json::{json, Value};

/// The availability zone everything here is in (Cinder's default name).
pub const ZONE: &str = "nova";

fn links(base: &str, project: &str, kind: &str, id: &str) -> Value {
    json!([
        {"rel": "self", "href": format!("{base}/volume/v3/{project}/{kind}/{id}")},
        {"rel": "bookmark", "href": format!("{base}/volume/{project}/{kind}/{id}")},
    ])
}

/// The entry of `GET /volumes`.
pub fn volume_summary(v: &Volume, base: &str) -> Value {
    json!({"id": v.id, "name": v.name, "links": links(base, &v.project_id, "volumes", &v.id)})
}

/// The volume as Cinder's create and update answer it: its own fields only. Show and detail
/// add the extensions' attributes the caller may see ([`add_extended`]).
pub fn volume(v: &Volume, base: &str) -> Value {
    let attachments: Vec<Value> = v
        .attachment
        .iter()
        .map(|a| {
            json!({
                "id": a.volume_id,
                "attachment_id": a.id,
                "volume_id": a.volume_id,
                "server_id": a.server_id,
                "host_name": null,
                "device": a.device,
                "attached_at": a.attached_at.to_rfc3339_micros(),
            })
        })
        .collect();
    let mut out = json!({
        "id": v.id,
        "name": v.name,
        "description": v.description,
        "status": v.status.as_str(),
        "size": v.size,
        "availability_zone": ZONE,
        "created_at": v.created_at.to_rfc3339_micros(),
        "updated_at": v.updated_at.to_rfc3339_micros(),
        "attachments": attachments,
        "bootable": if v.image_id.is_some() { "true" } else { "false" },
        "encrypted": false,
        "multiattach": false,
        "replication_status": "disabled",
        "consistencygroup_id": null,
        "migration_status": null,
        "volume_type": v.volume_type,
        "snapshot_id": v.snapshot_id,
        "source_volid": null,
        "metadata": v.metadata,
        "user_id": v.user_id,
        "links": links(base, &v.project_id, "volumes", &v.id),
    });
    if v.status == VolumeStatus::Error {
        // Not a Cinder field (Cinder keeps such reasons in its messages API): why it failed.
        out["outpost_fault"] = json!(v.fault);
    }
    out
}

/// What Cinder's extensions add to show and detail, by its default policy:
/// `volume_image_metadata` (`volume_extension:volume_image_metadata:show`, any reader of the
/// project) on a volume made from an image, and for admins only
/// (`volume_extension:volume_tenant_attribute`, `volume_host_attribute`) the owning project
/// and `os-vol-host-attr:host` (`host@backend#pool`: the volume's home box, whose one backend
/// and pool are its volume store).
pub fn add_extended(out: &mut Value, v: &Volume, admin: bool) {
    if !v.image_metadata.is_empty() {
        out["volume_image_metadata"] = json!(v.image_metadata);
    }
    if admin {
        out["os-vol-tenant-attr:tenant_id"] = json!(v.project_id);
        let host = (!v.home.is_empty()).then(|| format!("{}@outpost#local", v.home));
        out["os-vol-host-attr:host"] = json!(host);
    }
}

pub fn snapshot(s: &Snapshot, detail: bool) -> Value {
    let mut out = json!({
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "status": s.status.as_str(),
        "size": s.size,
        "volume_id": s.volume_id,
        "created_at": s.created_at.to_rfc3339_micros(),
        "updated_at": s.updated_at.to_rfc3339_micros(),
        "metadata": {},
    });
    if detail {
        let progress = match s.status.as_str() {
            "available" => "100%",
            _ => "0%",
        };
        out["os-extended-snapshot-attributes:project_id"] = json!(s.project_id);
        out["os-extended-snapshot-attributes:progress"] = json!(progress);
    }
    out
}

pub fn volume_type(t: &VolumeType) -> Value {
    let provisioning = match t.provisioning {
        outpost_image_store::Provisioning::Thin => "thin",
        outpost_image_store::Provisioning::Thick => "thick",
    };
    json!({
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "is_public": true,
        "os-volume-type-access:is_public": true,
        "qos_specs_id": null,
        "extra_specs": {PROVISIONING_SPEC: provisioning},
    })
}
