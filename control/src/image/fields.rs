//! An image's attributes as clients name them: which are core fields (validated and typed),
//! which are read-only or reserved, and which are additional properties (strings). Both
//! `POST /images` and `PATCH /images/{id}` set attributes through [`set`], so they validate
//! alike.

use super::ImageError;
use crate::image::store::{Image, ImageVisibility};
use outpost_image_store::DiskFormat;
use serde_json::Value;
use std::collections::BTreeSet;

/// Glance's bounds (its database columns and default quotas).
pub const MAX_NAME: usize = 255;
pub const MAX_INT: i64 = i32::MAX as i64;
pub const MAX_TAGS: usize = 128;
pub const MAX_PROPERTIES: usize = 128;
pub const MAX_KEY: usize = 255;
pub const MAX_VALUE: usize = 65535;

/// Container formats this appliance stores: plain bytes. (ovf, ova and docker are archives
/// nothing here can unpack.)
pub const CONTAINER_FORMATS: [&str; 4] = ["ami", "ari", "aki", "bare"];

/// The properties that choose direct kernel boot, as Nova reads them from AMI-style images.
pub const KERNEL_ID: &str = "kernel_id";
pub const RAMDISK_ID: &str = "ramdisk_id";
pub const OS_COMMAND_LINE: &str = "os_command_line";
/// Nova's image property: how many seconds a clean shutdown (the ACPI power button) may
/// take before the server is stopped hard; 0 skips it.
pub const OS_SHUTDOWN_TIMEOUT: &str = "os_shutdown_timeout";

/// Read-only attributes that describe a converted upload, shown with the image.
pub const UPLOADED_DISK_FORMAT: &str = "outpost_uploaded_disk_format";
pub const UPLOADED_CHECKSUM: &str = "outpost_uploaded_checksum";
pub const UPLOADED_OS_HASH_VALUE: &str = "outpost_uploaded_os_hash_value";

/// The core attributes a client may set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Core {
    Name,
    Visibility,
    Protected,
    ContainerFormat,
    DiskFormat,
    MinDisk,
    MinRam,
    Tags,
    Owner,
}

/// What an attribute name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attr {
    Core(Core),
    /// Set by the service (status, checksums, links...).
    ReadOnly,
    /// Glance's `os_glance_*` namespace and ours (`outpost_*`).
    Reserved,
    /// Anything else: an additional property.
    Extra,
}

pub fn classify(key: &str) -> Attr {
    match key {
        "name" => Attr::Core(Core::Name),
        "visibility" => Attr::Core(Core::Visibility),
        "protected" => Attr::Core(Core::Protected),
        "container_format" => Attr::Core(Core::ContainerFormat),
        "disk_format" => Attr::Core(Core::DiskFormat),
        "min_disk" => Attr::Core(Core::MinDisk),
        "min_ram" => Attr::Core(Core::MinRam),
        "tags" => Attr::Core(Core::Tags),
        "owner" => Attr::Core(Core::Owner),
        "id" | "status" | "size" | "virtual_size" | "checksum" | "os_hash_algo"
        | "os_hash_value" | "created_at" | "updated_at" | "self" | "file" | "schema"
        | "direct_url" | "locations" | "stores" | "os_hidden" => Attr::ReadOnly,
        k if k.starts_with("os_glance") || k.starts_with("outpost_") => Attr::Reserved,
        _ => Attr::Extra,
    }
}

fn invalid(field: &str, reason: impl Into<String>) -> ImageError {
    ImageError::InvalidField {
        field: field.to_owned(),
        reason: reason.into(),
    }
}

fn text(field: &str, v: &Value, max: usize) -> Result<String, ImageError> {
    let s = v
        .as_str()
        .ok_or_else(|| invalid(field, format!("{v} is not of type 'string'")))?;
    if s.chars().count() > max {
        return Err(invalid(field, format!("is longer than {max} characters")));
    }
    if s.contains('\0') {
        return Err(invalid(field, "contains a NUL character"));
    }
    Ok(s.to_owned())
}

fn nullable_text(field: &str, v: &Value, max: usize) -> Result<Option<String>, ImageError> {
    if v.is_null() {
        Ok(None)
    } else {
        text(field, v, max).map(Some)
    }
}

fn integer(field: &str, v: &Value) -> Result<i64, ImageError> {
    match v.as_i64() {
        Some(n) if (0..=MAX_INT).contains(&n) => Ok(n),
        Some(n) => Err(invalid(
            field,
            format!("{n} is not between 0 and {MAX_INT}"),
        )),
        None => Err(invalid(field, format!("{v} is not of type 'integer'"))),
    }
}

/// Glance's image ids are UUIDs (8-4-4-4-12 hex digits).
pub fn is_uuid(s: &str) -> bool {
    let groups: Vec<&str> = s.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

pub fn parse_disk_format(field: &str, s: &str) -> Result<DiskFormat, ImageError> {
    let accepted: Vec<&str> = DiskFormat::ALL
        .iter()
        .filter(|f| f.is_accepted())
        .map(|f| f.as_str())
        .collect();
    match s.parse::<DiskFormat>() {
        Ok(f) if f.is_accepted() => Ok(f),
        _ => Err(invalid(
            field,
            format!("{s:?} is not one of {}", accepted.join(", ")),
        )),
    }
}

/// Sets core attribute `core` of `image` to `v`, validated.
pub fn set_core(image: &mut Image, core: Core, v: &Value) -> Result<(), ImageError> {
    match core {
        Core::Name => image.name = nullable_text("name", v, MAX_NAME)?,
        Core::Visibility => {
            let s = text("visibility", v, 16)?;
            image.visibility = ImageVisibility::parse(&s).ok_or_else(|| {
                invalid(
                    "visibility",
                    format!("{s:?} is not one of public, private, shared, community"),
                )
            })?;
        }
        Core::Protected => {
            image.protected = v
                .as_bool()
                .ok_or_else(|| invalid("protected", format!("{v} is not of type 'boolean'")))?;
        }
        Core::ContainerFormat => {
            let f = nullable_text("container_format", v, 32)?;
            if let Some(f) = &f {
                if !CONTAINER_FORMATS.contains(&f.as_str()) {
                    return Err(invalid(
                        "container_format",
                        format!("{f:?} is not one of {}", CONTAINER_FORMATS.join(", ")),
                    ));
                }
            }
            image.container_format = f;
        }
        Core::DiskFormat => {
            let f = nullable_text("disk_format", v, 32)?;
            if let Some(f) = &f {
                parse_disk_format("disk_format", f)?;
            }
            image.disk_format = f;
        }
        Core::MinDisk => image.min_disk = integer("min_disk", v)?,
        Core::MinRam => image.min_ram = integer("min_ram", v)?,
        Core::Tags => image.tags = tags(v)?,
        Core::Owner => image.owner = nullable_text("owner", v, 255)?,
    }
    Ok(())
}

fn tags(v: &Value) -> Result<BTreeSet<String>, ImageError> {
    let list = v
        .as_array()
        .ok_or_else(|| invalid("tags", format!("{v} is not of type 'array'")))?;
    let mut out = BTreeSet::new();
    for t in list {
        out.insert(tag(t)?);
    }
    if out.len() > MAX_TAGS {
        return Err(invalid("tags", format!("more than {MAX_TAGS} tags")));
    }
    Ok(out)
}

pub fn tag(v: &Value) -> Result<String, ImageError> {
    let t = text("tags", v, 255)?;
    if t.is_empty() {
        return Err(invalid("tags", "a tag is empty"));
    }
    Ok(t)
}

/// Checks an additional property; `None` means "remove it" (a null `kernel_id`).
pub fn extra_value(key: &str, v: &Value) -> Result<Option<String>, ImageError> {
    if key.is_empty() || key.chars().count() > MAX_KEY || key.chars().any(char::is_control) {
        return Err(invalid(
            key,
            format!("property names are 1 to {MAX_KEY} printable characters"),
        ));
    }
    let is_image_ref = key == KERNEL_ID || key == RAMDISK_ID;
    if is_image_ref && v.is_null() {
        return Ok(None);
    }
    let s = text(key, v, MAX_VALUE)?;
    if is_image_ref && !is_uuid(&s) {
        return Err(invalid(key, format!("{s:?} is not an image id (a UUID)")));
    }
    Ok(Some(s))
}

/// Sets any attribute by name: core fields are typed, extras are strings.
pub fn set(image: &mut Image, key: &str, v: &Value) -> Result<(), ImageError> {
    match classify(key) {
        Attr::Core(core) => set_core(image, core, v),
        Attr::ReadOnly => Err(ImageError::ReadOnly(key.to_owned())),
        Attr::Reserved => Err(ImageError::Reserved(key.to_owned())),
        Attr::Extra => {
            match extra_value(key, v)? {
                Some(s) => {
                    image.properties.insert(key.to_owned(), s);
                }
                None => {
                    image.properties.remove(key);
                }
            }
            if image.properties.len() > MAX_PROPERTIES {
                return Err(ImageError::TooManyProperties(MAX_PROPERTIES));
            }
            Ok(())
        }
    }
}

/// Glance's rule for AMI-style images: when either format is ami, aki or ari, both must be
/// the same.
pub fn check_format_pair(image: &Image) -> Result<(), ImageError> {
    let amazon = ["ami", "aki", "ari"];
    match (&image.disk_format, &image.container_format) {
        (Some(d), Some(c))
            if (amazon.contains(&d.as_str()) || amazon.contains(&c.as_str())) && d != c =>
        {
            Err(invalid(
                "container_format",
                format!(
                    "disk_format {d} and container_format {c} must match when either is ami, \
                     aki or ari"
                ),
            ))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timestamp::Timestamp;
    use serde_json::json;
    use std::collections::BTreeMap;

    fn blank() -> Image {
        Image {
            id: "i".into(),
            name: None,
            status: crate::image::store::ImageStatus::Queued,
            visibility: ImageVisibility::Shared,
            owner: None,
            disk_format: None,
            container_format: None,
            min_disk: 0,
            min_ram: 0,
            protected: false,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            conversion: None,
            properties: BTreeMap::new(),
            tags: BTreeSet::new(),
            members: BTreeMap::new(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn attributes_are_classified() {
        assert_eq!(classify("name"), Attr::Core(Core::Name));
        assert_eq!(classify("checksum"), Attr::ReadOnly);
        assert_eq!(classify("os_glance_import_task"), Attr::Reserved);
        assert_eq!(classify(UPLOADED_CHECKSUM), Attr::Reserved);
        assert_eq!(classify("kernel_id"), Attr::Extra);
        assert_eq!(classify("owner_specified.openstack.md5"), Attr::Extra);
    }

    #[test]
    fn core_fields_are_typed_and_bounded() {
        let mut i = blank();
        set(&mut i, "name", &json!("cirros")).unwrap();
        set(&mut i, "min_disk", &json!(2)).unwrap();
        set(&mut i, "visibility", &json!("community")).unwrap();
        set(&mut i, "tags", &json!(["a", "b", "a"])).unwrap();
        set(&mut i, "disk_format", &json!("qcow2")).unwrap();
        assert_eq!(i.name.as_deref(), Some("cirros"));
        assert_eq!(i.min_disk, 2);
        assert_eq!(i.visibility, ImageVisibility::Community);
        assert_eq!(i.tags.len(), 2);
        for (k, v) in [
            ("min_disk", json!(-1)),
            ("min_ram", json!(1u64 << 40)),
            ("min_ram", json!("1")),
            ("visibility", json!("everyone")),
            ("protected", json!("yes")),
            ("disk_format", json!("vmdk")),
            ("container_format", json!("ovf")),
            ("name", json!("x".repeat(256))),
            ("tags", json!("a")),
            ("tags", json!([""])),
            ("kernel_id", json!("not-a-uuid")),
            ("os_command_line", json!(5)),
        ] {
            assert!(
                matches!(set(&mut i, k, &v), Err(ImageError::InvalidField { .. })),
                "{k} = {v}"
            );
        }
        assert!(matches!(
            set(&mut i, "size", &json!(1)),
            Err(ImageError::ReadOnly(_))
        ));
        assert!(matches!(
            set(&mut i, "os_glance_x", &json!("1")),
            Err(ImageError::Reserved(_))
        ));
        // The failed sets changed nothing they named.
        assert_eq!(i.min_disk, 2);
    }

    #[test]
    fn kernel_boot_properties_and_null_removal() {
        let mut i = blank();
        let k = "6ce3b7a4-46f1-4f0a-9d7e-1b1a2c3d4e5f";
        set(&mut i, KERNEL_ID, &json!(k)).unwrap();
        set(
            &mut i,
            OS_COMMAND_LINE,
            &json!("console=ttyS0 root=/dev/vda"),
        )
        .unwrap();
        assert_eq!(i.properties[KERNEL_ID], k);
        set(&mut i, KERNEL_ID, &Value::Null).unwrap();
        assert!(!i.properties.contains_key(KERNEL_ID));
        assert!(set(&mut i, "other", &Value::Null).is_err());
    }

    #[test]
    fn amazon_formats_must_pair() {
        let mut i = blank();
        i.disk_format = Some("aki".into());
        i.container_format = Some("bare".into());
        assert!(check_format_pair(&i).is_err());
        i.container_format = Some("aki".into());
        assert!(check_format_pair(&i).is_ok());
        i.disk_format = Some("raw".into());
        i.container_format = Some("bare".into());
        assert!(check_format_pair(&i).is_ok());
    }

    #[test]
    fn uuids() {
        assert!(is_uuid("6ce3b7a4-46f1-4f0a-9d7e-1b1a2c3d4e5f"));
        assert!(!is_uuid("6ce3b7a446f14f0a9d7e1b1a2c3d4e5f"));
        assert!(!is_uuid("6ce3b7a4-46f1-4f0a-9d7e-1b1a2c3d4e5g"));
    }
}
