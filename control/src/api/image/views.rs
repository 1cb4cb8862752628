//! Glance's JSON for an image: core attributes, additional properties at the top level, and
//! links relative to the API root (`/v2/images/{id}`), as Glance writes them.

use crate::image::fields::{UPLOADED_CHECKSUM, UPLOADED_DISK_FORMAT, UPLOADED_OS_HASH_VALUE};
use crate::image::Image;
use serde_json::{json, Map, Value};

pub fn image(i: &Image) -> Value {
    let mut m: Map<String, Value> = i
        .properties
        .iter()
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let core = json!({
        "id": i.id,
        "name": i.name,
        "status": i.status.as_str(),
        "visibility": i.visibility.as_str(),
        "protected": i.protected,
        "os_hidden": false,
        "size": i.size,
        "virtual_size": i.virtual_size,
        "checksum": i.checksum,
        "os_hash_algo": i.os_hash_algo,
        "os_hash_value": i.os_hash_value,
        "disk_format": i.disk_format,
        "container_format": i.container_format,
        "min_disk": i.min_disk,
        "min_ram": i.min_ram,
        "owner": i.owner,
        "tags": i.tags.iter().collect::<Vec<_>>(),
        "created_at": i.created_at.to_rfc3339(),
        "updated_at": i.updated_at.to_rfc3339(),
        "self": format!("/v2/images/{}", i.id),
        "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(core) = core {
        m.extend(core);
    }
    if let Some(c) = &i.conversion {
        m.insert(UPLOADED_DISK_FORMAT.into(), json!(c.from_format));
        m.insert(UPLOADED_CHECKSUM.into(), json!(c.checksum));
        m.insert(UPLOADED_OS_HASH_VALUE.into(), json!(c.os_hash_value));
    }
    Value::Object(m)
}
