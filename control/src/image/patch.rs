//! `PATCH /v2/images/{id}` bodies (`application/openstack-images-v2.1-json-patch`): a JSON
//! array of `{"op": "add"|"replace"|"remove", "path": "/<attribute>", "value": ...}`, applied
//! in order to a copy of the image, all or nothing. Paths name one top-level attribute
//! (RFC 6901 escapes `~0`, `~1` allowed); `add` on an existing property replaces it
//! (RFC 6902 §4.1), `replace` and `remove` need it to exist.

use super::fields::{self, Attr};
use super::ImageError;
use crate::image::store::Image;
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Add,
    Replace,
    Remove,
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
pub fn parse(body: &Value) -> Result<Vec<Change>, ImageError> {
    let ops = body
        .as_array()
        .ok_or_else(|| bad("Request body must be a JSON array of operation objects."))?;
    ops.iter().map(parse_one).collect()
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
    let key = pointer_key(path)?;
    let value = obj.get("value").cloned();
    match (op, &value) {
        (Op::Remove, Some(_)) => Err(bad("Operation \"remove\" takes no value.")),
        (Op::Add | Op::Replace, None) => Err(bad(format!(
            "Operation \"{}\" requires a member named \"value\".",
            if op == Op::Add { "add" } else { "replace" }
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
            (Op::Add | Op::Replace, _) => {
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
        let out = apply(&image(), &parse(&body).unwrap()).unwrap();
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
                matches!(parse(&body), Err(ImageError::BadPatch(_))),
                "{body}"
            );
        }
    }

    #[test]
    fn refusals() {
        let run = |body: Value| apply(&image(), &parse(&body).unwrap());
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
