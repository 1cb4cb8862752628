//! The JSON Schemas of Glance's metadata definitions (`/v2/schemas/metadefs/...`): the
//! documents that describe which properties an image, flavor or volume may carry. Clients
//! read these schemas to render and check such documents; the metadefs catalog itself
//! (`/v2/metadefs/namespaces`) is not served (control/README.md, "Tempest").

use serde_json::{json, Value};

/// What one property definition may say (a subset of JSON Schema, as Glance's metadefs use).
fn property_definition() -> Value {
    json!({
        "type": "object",
        "required": ["title", "type"],
        "properties": {
            "name": {"type": "string", "maxLength": 80},
            "title": {"type": "string"},
            "description": {"type": "string"},
            "operators": {"type": "array", "items": {"type": "string"}},
            "type": {"type": "string",
                     "enum": ["array", "boolean", "integer", "number", "object", "string"]},
            "readonly": {"type": "boolean"},
            "default": {},
            "minimum": {"type": "number"},
            "maximum": {"type": "number"},
            "minLength": {"type": "integer", "minimum": 0},
            "maxLength": {"type": "integer", "minimum": 0},
            "pattern": {"type": "string", "format": "regex"},
            "enum": {"type": "array"},
            "items": {"type": "object"},
            "minItems": {"type": "integer", "minimum": 0},
            "maxItems": {"type": "integer", "minimum": 0},
            "uniqueItems": {"type": "boolean"},
            "additionalItems": {"type": "boolean"}
        }
    })
}

/// A metadefs document's schema: `properties` and the timestamps every such document has.
fn object(name: &str, mut properties: Value) -> Value {
    for (k, what) in [
        ("created_at", "When it was created"),
        ("updated_at", "When it last changed"),
    ] {
        properties[k] = json!({"type": "string", "readOnly": true, "format": "date-time",
                               "description": what});
    }
    json!({"name": name, "properties": properties, "additionalProperties": false})
}

fn list(name: &str, items_key: &str, item: Value) -> Value {
    json!({
        "name": name,
        "properties": {
            items_key: {"type": "array", "items": item},
            "first": {"type": "string"},
            "next": {"type": "string"},
            "schema": {"type": "string"}
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"}
        ]
    })
}

fn resource_type_association() -> Value {
    object(
        "resource_type_association",
        json!({
            "name": {"type": "string", "maxLength": 80,
                     "description": "The resource type, such as OS::Glance::Image"},
            "prefix": {"type": "string", "maxLength": 80,
                       "description": "Prefix of the properties when applied to it"},
            "properties_target": {"type": "string", "maxLength": 80,
                                  "description": "Which part of the resource they go to"}
        }),
    )
}

fn property() -> Value {
    let mut p = property_definition();
    p["name"] = json!("property");
    p
}

fn metadef_object() -> Value {
    object(
        "object",
        json!({
            "name": {"type": "string", "maxLength": 80},
            "description": {"type": "string"},
            "required": {"type": "array", "items": {"type": "string"}},
            "properties": {"type": "object", "additionalProperties": property_definition()}
        }),
    )
}

fn tag() -> Value {
    object("tag", json!({"name": {"type": "string", "maxLength": 255}}))
}

fn namespace() -> Value {
    object(
        "namespace",
        json!({
            "namespace": {"type": "string", "maxLength": 80,
                          "description": "The namespace's unique name"},
            "display_name": {"type": "string", "maxLength": 80},
            "description": {"type": "string", "maxLength": 500},
            "visibility": {"type": "string", "enum": ["public", "private"]},
            "protected": {"type": "boolean"},
            "owner": {"type": "string", "maxLength": 255},
            "self": {"type": "string", "readOnly": true},
            "schema": {"type": "string", "readOnly": true},
            "resource_type_associations": {"type": "array", "items": resource_type_association()},
            "properties": {"type": "object", "additionalProperties": property_definition()},
            "objects": {"type": "array", "items": metadef_object()},
            "tags": {"type": "array", "items": tag()}
        }),
    )
}

/// The schema Glance publishes at `/v2/schemas/metadefs/{kind}`; None for an unknown kind.
pub fn schema(kind: &str) -> Option<Value> {
    Some(match kind {
        "namespace" => namespace(),
        "namespaces" => list("namespaces", "namespaces", namespace()),
        "resource_type" => resource_type_association(),
        "resource_types" => list(
            "resource_type_associations",
            "resource_type_associations",
            resource_type_association(),
        ),
        "object" => metadef_object(),
        "objects" => list("objects", "objects", metadef_object()),
        "property" => property(),
        "properties" => json!({
            "name": "properties",
            "properties": {
                "properties": {"type": "object", "additionalProperties": property_definition()},
                "schema": {"type": "string"}
            }
        }),
        "tag" => tag(),
        "tags" => list("tags", "tags", tag()),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_has_its_schema_and_lists_describe_their_items() {
        for (kind, name) in [
            ("namespace", "namespace"),
            ("namespaces", "namespaces"),
            ("resource_type", "resource_type_association"),
            ("resource_types", "resource_type_associations"),
            ("object", "object"),
            ("objects", "objects"),
            ("property", "property"),
            ("properties", "properties"),
            ("tag", "tag"),
            ("tags", "tags"),
        ] {
            let s = schema(kind).unwrap_or_else(|| panic!("{kind}"));
            assert_eq!(s["name"], name, "{kind}");
        }
        assert_eq!(
            schema("namespaces").unwrap()["properties"]["namespaces"]["items"],
            schema("namespace").unwrap()
        );
        assert_eq!(schema("image"), None);
    }
}
