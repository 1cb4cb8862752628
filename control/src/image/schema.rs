//! The JSON Schemas Glance publishes at `/v2/schemas/image`, `/v2/schemas/images`,
//! `/v2/schemas/member` and `/v2/schemas/members`, which clients (glanceclient,
//! openstackclient) read to know which attributes are core and which are additional
//! properties. Written from this service's own rules in [`super::fields`] and
//! [`super::store::MemberStatus`].

use super::fields::{self, CONTAINER_FORMATS};
use super::store::MemberStatus;
use outpost_image_store::DiskFormat;
use serde_json::{json, Value};

fn nullable_enum(values: &[&str]) -> Value {
    let mut all: Vec<Value> = values.iter().map(|v| json!(v)).collect();
    all.push(Value::Null);
    json!({"type": ["null", "string"], "enum": all})
}

const UUID_PATTERN: &str =
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$";

/// The schema of one image.
pub fn image() -> Value {
    let disk_formats: Vec<&str> = DiskFormat::ALL
        .iter()
        .filter(|f| f.is_accepted())
        .map(|f| f.as_str())
        .collect();
    let read_only = |ty: Value, description: &str| {
        let mut v = json!({"readOnly": true, "description": description});
        v["type"] = ty;
        v
    };
    json!({
        "name": "image",
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"}
        ],
        "properties": {
            "id": {"type": "string", "pattern": UUID_PATTERN,
                   "description": "Image id; may be given at creation."},
            "name": {"type": ["null", "string"], "maxLength": fields::MAX_NAME},
            "status": read_only(json!("string"), "queued, saving, active, killed or deactivated"),
            "visibility": {"type": "string",
                           "enum": ["community", "public", "private", "shared"]},
            "protected": {"type": "boolean",
                          "description": "A protected image cannot be deleted."},
            "checksum": read_only(json!(["null", "string"]), "MD5 of the stored data"),
            "os_hash_algo": read_only(json!(["null", "string"]), "Always sha512"),
            "os_hash_value": read_only(json!(["null", "string"]), "SHA-512 of the stored data"),
            "owner": {"type": ["null", "string"], "maxLength": 255,
                      "description": "Owning project (only admins may set another)"},
            "size": read_only(json!(["null", "integer"]), "Bytes of stored data"),
            "virtual_size": read_only(json!(["null", "integer"]), "Bytes of the disk a guest sees"),
            "min_ram": {"type": "integer", "minimum": 0, "maximum": fields::MAX_INT},
            "min_disk": {"type": "integer", "minimum": 0, "maximum": fields::MAX_INT},
            "container_format": nullable_enum(&CONTAINER_FORMATS),
            "disk_format": nullable_enum(&disk_formats),
            "created_at": read_only(json!("string"), "Creation time"),
            "updated_at": read_only(json!("string"), "Last change"),
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 255},
                     "maxItems": fields::MAX_TAGS},
            "self": read_only(json!("string"), "URI of the image"),
            "file": read_only(json!("string"), "URI of the image data"),
            "schema": read_only(json!("string"), "URI of this schema"),
            fields::KERNEL_ID: {
                "type": ["null", "string"], "pattern": UUID_PATTERN, "is_base": false,
                "description": "Image (aki) to boot as the kernel, for direct kernel boot."
            },
            fields::RAMDISK_ID: {
                "type": ["null", "string"], "pattern": UUID_PATTERN, "is_base": false,
                "description": "Image (ari) to load as the initial ramdisk."
            },
            fields::OS_COMMAND_LINE: {
                "type": "string", "is_base": false,
                "description": "Kernel command line for direct kernel boot."
            },
            fields::UPLOADED_DISK_FORMAT: read_only(json!("string"),
                "Set when the upload was converted: the format it was uploaded in"),
            fields::UPLOADED_CHECKSUM: read_only(json!("string"),
                "Set when the upload was converted: MD5 of the bytes received"),
            fields::UPLOADED_OS_HASH_VALUE: read_only(json!("string"),
                "Set when the upload was converted: SHA-512 of the bytes received"),
        }
    })
}

/// The schema of an image list.
pub fn images() -> Value {
    json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

/// The schema of one image member.
pub fn member() -> Value {
    let statuses: Vec<&str> = MemberStatus::ALL.iter().map(|s| s.as_str()).collect();
    json!({
        "name": "member",
        "properties": {
            "image_id": {"type": "string", "pattern": UUID_PATTERN,
                         "description": "The image shared"},
            "member_id": {"type": "string", "description": "The project it is shared with"},
            "status": {"type": "string", "enum": statuses,
                       "description": "Whether the member project accepted the image"},
            "created_at": {"type": "string", "description": "When the image was shared"},
            "updated_at": {"type": "string", "description": "Last change of the status"},
            "schema": {"type": "string", "readOnly": true}
        }
    })
}

/// The schema of an image's member list.
pub fn members() -> Value {
    json!({
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member()},
            "schema": {"type": "string"}
        },
        "links": [{"rel": "describedby", "href": "{schema}"}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_core_attribute_is_described_and_extras_are_strings() {
        let s = image();
        for k in [
            "id",
            "name",
            "status",
            "visibility",
            "protected",
            "checksum",
            "owner",
            "size",
            "virtual_size",
            "min_ram",
            "min_disk",
            "disk_format",
            "container_format",
            "tags",
            "os_hash_algo",
            "os_hash_value",
            "self",
            "file",
            "schema",
        ] {
            assert!(s["properties"].get(k).is_some(), "{k}");
        }
        assert_eq!(s["additionalProperties"]["type"], "string");
        let formats = s["properties"]["disk_format"]["enum"].as_array().unwrap();
        assert!(formats.contains(&json!("qcow2")) && !formats.contains(&json!("vmdk")));
        assert_eq!(images()["properties"]["images"]["items"], s);
    }

    #[test]
    fn the_member_schema_lists_every_member_status() {
        let statuses = member()["properties"]["status"]["enum"].clone();
        for s in MemberStatus::ALL {
            assert!(
                statuses.as_array().unwrap().contains(&json!(s.as_str())),
                "{s:?}"
            );
        }
        assert_eq!(members()["properties"]["members"]["items"], member());
    }
}
