//! control/api/openapi.yaml as data: its operations with their parameters and request body
//! examples, for the tests that walk every documented route.

use serde_json::Value;

pub const METHODS: [&str; 6] = ["get", "head", "put", "post", "patch", "delete"];

pub fn doc() -> Value {
    serde_norway::from_str(include_str!("../../api/openapi.yaml")).expect("openapi.yaml parses")
}

pub fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r.strip_prefix('#').expect("local $ref");
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling {r}")),
            )
        }
        None => v,
    }
}

pub struct Op {
    pub method: String,
    pub path: String,
    pub op: Value,
    pub params: Vec<Value>,
}

pub fn operations(doc: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        let shared: Vec<Value> = item
            .get("parameters")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for m in METHODS {
            if let Some(op) = item.get(m) {
                let mut params = shared.clone();
                params.extend(
                    op.get("parameters")
                        .and_then(Value::as_array)
                        .cloned()
                        .unwrap_or_default(),
                );
                let params = params.iter().map(|p| resolve(doc, p).clone()).collect();
                ops.push(Op {
                    method: m.to_uppercase(),
                    path: path.clone(),
                    op: op.clone(),
                    params,
                });
            }
        }
    }
    // Creates first (parents before children) so later reads find something; deletes last,
    // children before parents.
    let rank = |m: &str| {
        ["POST", "PUT", "GET", "PATCH", "DELETE"]
            .iter()
            .position(|x| *x == m)
    };
    ops.sort_by_key(|o| {
        let depth = o.path.len() as i64;
        (
            rank(&o.method),
            if o.method == "DELETE" { -depth } else { depth },
        )
    });
    ops
}

/// The first documented request body with an example, as (media type, bytes): JSON examples
/// serialized, other media types' examples sent as their text.
pub fn request_body(op: &Value) -> Option<(String, Vec<u8>)> {
    let content = op.pointer("/requestBody/content")?.as_object()?;
    content.iter().find_map(|(media, c)| {
        let example = c.get("example")?;
        let bytes = match (media.ends_with("json"), example) {
            (false, Value::String(s)) => s.clone().into_bytes(),
            _ => example.to_string().into_bytes(),
        };
        Some((media.clone(), bytes))
    })
}
