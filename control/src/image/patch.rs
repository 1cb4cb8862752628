//! `PATCH /v2/images/{id}` bodies: a JSON array of operations, applied in order to a copy of
//! the image, all or nothing. Glance takes two dialects, told apart by the media type:
//! - `application/openstack-images-v2.1-json-patch` (RFC 6902): `{"op": "add"|"replace"|
//!   "remove", "path": "/<attribute>", "value": ...}`; `add` on an existing property replaces
//!   it (RFC 6902 §4.1);
//! - `application/openstack-images-v2.0-json-patch` (the JSON-patch draft 04 Glance first
//!   took): the operation's name is the member holding the path, `{"add": "/<attribute>",
//!   "value": ...}`, and `add` of an attribute the image already has is a conflict.
//!
//! Paths name one top-level attribute (RFC 6901 escapes `~0`, `~1` allowed); `replace` and
//! `remove` need it to exist.

use super::fields::{self, Attr};
use super::ImageError;
use crate::image::store::Image;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    /// v2.0's `add`: the image must not have the attribute yet.
    AddAbsent,
    Replace,
    Remove,
}

/// Which JSON-patch dialect a body is in, by its media type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    V20,
    V21,
}

impl Dialect {
    pub const V20_MEDIA_TYPE: &'static str = "application/openstack-images-v2.0-json-patch";
    pub const V21_MEDIA_TYPE: &'static str = "application/openstack-images-v2.1-json-patch";

    /// The dialect of a `Content-Type` (parameters ignored), None for any other type.
    pub fn of_media_type(content_type: &str) -> Option<Dialect> {
        let media = content_type.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case(Self::V21_MEDIA_TYPE) {
            Some(Dialect::V21)
        } else if media.eq_ignore_ascii_case(Self::V20_MEDIA_TYPE) {
            Some(Dialect::V20)
        } else {
            None
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub op: Op,
    /// The attribute, unescaped.
    pub key: String,
    /// Absent for `remove`.
    pub value: Option<Value>,
}

fn bad(msg: impl Into<String>) -> ImageError {
    ImageError::BadPatch(msg.into())
}

/// Parses the body into changes; anything malformed is [`ImageError::BadPatch`].
pub fn parse(body: &Value, dialect: Dialect) -> Result<Vec<Change>, ImageError> {
    let ops = body
        .as_array()
        .ok_or_else(|| bad("Request body must be a JSON array of operation objects."))?;
    ops.iter()
        .map(|op| match dialect {
            Dialect::V21 => parse_one(op),
            Dialect::V20 => parse_draft_04(op),
        })
        .collect()
}

/// One v2.0 operation: exactly one of `add`, `replace`, `remove` holds the path.
fn parse_draft_04(v: &Value) -> Result<Change, ImageError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("Operations must be JSON objects."))?;
    let named: Vec<(Op, &Value)> = [
        ("add", Op::AddAbsent),
        ("replace", Op::Replace),
        ("remove", Op::Remove),
    ]
    .into_iter()
    .filter_map(|(name, op)| obj.get(name).map(|path| (op, path)))
    .collect();
    let [(op, path)] = named[..] else {
        return Err(bad(
            "Operation objects must contain exactly one member named \"add\", \"remove\", or \
             \"replace\".",
        ));
    };
    for k in obj.keys() {
        if !matches!(k.as_str(), "add" | "replace" | "remove" | "value") {
            return Err(bad(format!("Operation objects have no member {k:?}.")));
        }
    }
    let path = path
        .as_str()
        .ok_or_else(|| bad("The operation's path must be a string."))?;
    checked(op, pointer_key(path)?, obj.get("value").cloned())
}

fn parse_one(v: &Value) -> Result<Change, ImageError> {
    let obj = v
        .as_object()
        .ok_or_else(|| bad("Operations must be JSON objects."))?;
    let op = match obj.get("op").and_then(Value::as_str) {
        Some("add") => Op::Add,
        Some("replace") => Op::Replace,
        Some("remove") => Op::Remove,
        Some(other) => {
            return Err(bad(format!(
                "Operation \"{other}\" is not supported; use add, replace or remove."
            )))
        }
        None => return Err(bad("Unable to find 'op' in JSON Schema change")),
    };
    for k in obj.keys() {
        if !matches!(k.as_str(), "op" | "path" | "value") {
            return Err(bad(format!("Operation objects have no member {k:?}.")));
        }
    }
    let path = obj
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("Unable to find 'path' in JSON Schema change"))?;
    checked(op, pointer_key(path)?, obj.get("value").cloned())
}

/// A change whose value is present exactly when its operation takes one.
fn checked(op: Op, key: String, value: Option<Value>) -> Result<Change, ImageError> {
    match (op, &value) {
        (Op::Remove, Some(_)) => Err(bad("Operation \"remove\" takes no value.")),
        (Op::Add | Op::AddAbsent | Op::Replace, None) => Err(bad(format!(
            "Operation \"{}\" requires a member named \"value\".",
            if op == Op::Replace { "replace" } else { "add" }
        ))),
        _ => Ok(Change { op, key, value }),
    }
}

/// The attribute a JSON pointer names: exactly one segment.
fn pointer_key(path: &str) -> Result<String, ImageError> {
    let invalid = || bad(format!("Invalid JSON pointer for this resource: '{path}'"));
    let rest = path.strip_prefix('/').ok_or_else(invalid)?;
    if rest.is_empty() || rest.contains('/') {
        return Err(invalid());
    }
    // RFC 6901 §4: `~1` then `~0`; any other `~` is malformed.
    let mut key = String::with_capacity(rest.len());
    let mut chars = rest.chars();
    while let Some(c) = chars.next() {
        if c == '~' {
            match chars.next() {
                Some('0') => key.push('~'),
                Some('1') => key.push('/'),
                _ => return Err(invalid()),
            }
        } else {
            key.push(c);
        }
    }
    Ok(key)
}

/// Applies `changes` to a copy of `image`; the first error stops and nothing is returned.
pub fn apply(image: &Image, changes: &[Change]) -> Result<Image, ImageError> {
    let mut out = image.clone();
    for c in changes {
        let attr = fields::classify(&c.key);
        match (c.op, attr) {
            (Op::Remove, Attr::Core(_)) => {
                return Err(ImageError::Forbidden(format!(
                    "Property '{}' cannot be removed; replace it instead.",
                    c.key
                )))
            }
            (Op::Remove, Attr::ReadOnly) => return Err(ImageError::ReadOnly(c.key.clone())),
            (Op::Remove, Attr::Reserved) => return Err(ImageError::Reserved(c.key.clone())),
            (Op::Remove, Attr::Extra) => {
                if out.properties.remove(&c.key).is_none() {
                    return Err(ImageError::NoSuchProperty(c.key.clone()));
                }
            }
            (Op::Replace, Attr::Extra) if !out.properties.contains_key(&c.key) => {
                return Err(ImageError::NoSuchProperty(c.key.clone()))
            }
            // Glance's v2.0 add conflicts with any attribute the image has: every core and
            // read-only one, and the additional properties set on it.
            (Op::AddAbsent, Attr::Core(_) | Attr::ReadOnly) => {
                return Err(ImageError::AlreadyPresent(c.key.clone()))
            }
            (Op::AddAbsent, Attr::Extra) if out.properties.contains_key(&c.key) => {
                return Err(ImageError::AlreadyPresent(c.key.clone()))
            }
            (Op::Add | Op::AddAbsent | Op::Replace, _) => {
                // parse() guarantees a value for add and replace.
                let v = c.value.as_ref().unwrap_or(&Value::Null);
                fields::set(&mut out, &c.key, v)?;
            }
        }
    }
    fields::check_format_pair(&out)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::store::{ImageStatus, ImageVisibility};
    use crate::timestamp::Timestamp;
    use serde_json::json;
    use std::collections::{BTreeMap, BTreeSet};

    fn image() -> Image {
        Image {
            id: "i".into(),
            name: Some("a".into()),
            status: ImageStatus::Active,
            visibility: ImageVisibility::Private,
            owner: Some("p".into()),
            disk_format: Some("raw".into()),
            container_format: Some("bare".into()),
            min_disk: 0,
            min_ram: 0,
            protected: false,
            size: Some(1),
            virtual_size: Some(1),
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            conversion: None,
            properties: BTreeMap::from([("os_distro".into(), "debian".into())]),
            tags: BTreeSet::new(),
            members: BTreeMap::new(),
            created_at: Timestamp(0),
            updated_at: Timestamp(0),
        }
    }

    #[test]
    fn applies_in_order() {
        let body = json!([
            {"op": "replace", "path": "/name", "value": "b"},
            {"op": "add", "path": "/os_command_line", "value": "console=ttyS0"},
            {"op": "add", "path": "/os_distro", "value": "alpine"},
            {"op": "add", "path": "/tags", "value": ["x"]},
            {"op": "add", "path": "/a~1b~0c", "value": "1"},
            {"op": "replace", "path": "/min_ram", "value": 64},
            {"op": "remove", "path": "/os_command_line"},
        ]);
        let out = apply(&image(), &parse(&body, Dialect::V21).unwrap()).unwrap();
        assert_eq!(out.name.as_deref(), Some("b"));
        assert_eq!(out.properties["os_distro"], "alpine");
        assert_eq!(out.properties["a/b~c"], "1");
        assert!(!out.properties.contains_key("os_command_line"));
        assert_eq!(out.min_ram, 64);
        assert!(out.tags.contains("x"));
    }

    #[test]
    fn malformed_bodies() {
        for body in [
            json!({"op": "add"}),
            json!([{"op": "move", "path": "/name", "from": "/x"}]),
            json!([{"op": "test", "path": "/name", "value": "a"}]),
            json!([{"path": "/name", "value": "a"}]),
            json!([{"op": "add", "value": "a"}]),
            json!([{"op": "add", "path": "name", "value": "a"}]),
            json!([{"op": "add", "path": "/a/b", "value": "a"}]),
            json!([{"op": "add", "path": "/", "value": "a"}]),
            json!([{"op": "add", "path": "/a~2", "value": "a"}]),
            json!([{"op": "add", "path": "/name"}]),
            json!([{"op": "remove", "path": "/x", "value": 1}]),
            json!(["add"]),
        ] {
            assert!(
                matches!(parse(&body, Dialect::V21), Err(ImageError::BadPatch(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn the_v2_0_dialect_names_the_operation_by_its_member() {
        let body = json!([
            {"replace": "/name", "value": "b"},
            {"add": "/os_command_line", "value": "console=ttyS0"},
            {"add": "/a~1b", "value": "1"},
            {"remove": "/os_distro"},
        ]);
        let changes = parse(&body, Dialect::V20).unwrap();
        let out = apply(&image(), &changes).unwrap();
        assert_eq!(out.name.as_deref(), Some("b"));
        assert_eq!(out.properties["os_command_line"], "console=ttyS0");
        assert_eq!(out.properties["a/b"], "1");
        assert!(!out.properties.contains_key("os_distro"));
        // The v2.1 form is not v2.0, nor the other way round.
        let v21 = json!([{"op": "replace", "path": "/name", "value": "b"}]);
        assert!(parse(&v21, Dialect::V20).is_err());
        assert!(parse(&json!([{"replace": "/name", "value": "b"}]), Dialect::V21).is_err());
        for malformed in [
            json!([{"add": "/a", "replace": "/b", "value": 1}]),
            json!([{"add": "/a"}]),
            json!([{"remove": "/a", "value": 1}]),
            json!([{"add": 3, "value": 1}]),
            json!([{"add": "/a", "value": 1, "path": "/a"}]),
        ] {
            assert!(
                matches!(
                    parse(&malformed, Dialect::V20),
                    Err(ImageError::BadPatch(_))
                ),
                "{malformed}"
            );
        }
    }

    #[test]
    fn a_v2_0_add_of_an_attribute_the_image_has_conflicts() {
        let run = |body: Value| apply(&image(), &parse(&body, Dialect::V20).unwrap());
        for present in ["/os_distro", "/name", "/min_ram", "/status"] {
            assert!(
                matches!(
                    run(json!([{"add": present, "value": "x"}])),
                    Err(ImageError::AlreadyPresent(_))
                ),
                "{present}"
            );
        }
        // v2.1's add replaces what is there.
        let v21 = json!([{"op": "add", "path": "/os_distro", "value": "alpine"}]);
        let out = apply(&image(), &parse(&v21, Dialect::V21).unwrap()).unwrap();
        assert_eq!(out.properties["os_distro"], "alpine");
    }

    #[test]
    fn media_types_pick_the_dialect() {
        let v20 = "application/openstack-images-v2.0-json-patch";
        assert_eq!(Dialect::of_media_type(v20), Some(Dialect::V20));
        let v21 = "Application/OpenStack-Images-v2.1-JSON-Patch; charset=UTF-8";
        assert_eq!(Dialect::of_media_type(v21), Some(Dialect::V21));
        assert_eq!(Dialect::of_media_type("application/json-patch+json"), None);
        assert_eq!(Dialect::of_media_type(""), None);
    }

    #[test]
    fn refusals() {
        let run = |body: Value| apply(&image(), &parse(&body, Dialect::V21).unwrap());
        assert!(matches!(
            run(json!([{"op": "replace", "path": "/status", "value": "active"}])),
            Err(ImageError::ReadOnly(_))
        ));
        assert!(matches!(
            run(json!([{"op": "remove", "path": "/name"}])),
            Err(ImageError::Forbidden(_))
        ));
        assert!(matches!(
            run(json!([{"op": "replace", "path": "/nope", "value": "1"}])),
            Err(ImageError::NoSuchProperty(_))
        ));
        assert!(matches!(
            run(json!([{"op": "remove", "path": "/nope"}])),
            Err(ImageError::NoSuchProperty(_))
        ));
        assert!(matches!(
            run(json!([{"op": "replace", "path": "/min_disk", "value": -1}])),
            Err(ImageError::InvalidField { .. })
        ));
        assert!(matches!(
            run(json!([{"op": "replace", "path": "/disk_format", "value": "aki"}])),
            Err(ImageError::InvalidField { .. })
        ));
    }
}
