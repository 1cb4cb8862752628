//! Reading `vmm/api/openapi.yaml`: `$ref`s, operations and their examples, and a minimal
//! JSON-schema check for the subset of OpenAPI the document uses.

use super::HttpResponse;
use serde_json::Value;

pub const METHODS: &[&str] = &["get", "put", "patch", "post", "delete"];

pub fn doc() -> Value {
    let text = include_str!("../../api/openapi.yaml");
    serde_norway::from_str(text).expect("openapi.yaml is valid YAML")
}

/// Follows a local `$ref` (`#/components/...`).
pub fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let pointer = r
                .strip_prefix('#')
                .unwrap_or_else(|| panic!("non-local $ref {r}"));
            resolve(
                doc,
                doc.pointer(pointer)
                    .unwrap_or_else(|| panic!("dangling $ref {r}")),
            )
        }
        None => v,
    }
}

pub struct Operation {
    pub path: String,
    pub method: String,
    pub op: Value,
}

impl Operation {
    pub fn request_schema<'a>(&'a self, doc: &'a Value) -> Option<&'a Value> {
        let body = self.op.pointer("/requestBody/content/application~1json")?;
        Some(resolve(
            doc,
            body.get("schema").expect("request bodies have a schema"),
        ))
    }

    pub fn example(&self) -> Option<Value> {
        self.op
            .pointer("/requestBody/content/application~1json/example")
            .cloned()
    }

    /// The path with its `{param}` filled from the example's id field of the same name.
    pub fn concrete_path(&self, example: Option<&Value>) -> String {
        let mut path = self.path.clone();
        while let (Some(start), Some(end)) = (path.find('{'), path.find('}')) {
            let name = &path[start + 1..end];
            let value = example
                .and_then(|e| e.get(name))
                .and_then(Value::as_str)
                .unwrap_or("x1")
                .to_owned();
            path.replace_range(start..=end, &value);
        }
        path
    }

    pub fn documented_statuses(&self) -> Vec<String> {
        self.op["responses"]
            .as_object()
            .expect("responses")
            .keys()
            .cloned()
            .collect()
    }
}

/// Every operation in the document; PUTs before PATCHes so updates apply to a full config.
pub fn operations(doc: &Value) -> Vec<Operation> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(*method) {
                ops.push(Operation {
                    path: path.clone(),
                    method: method.to_uppercase(),
                    op: op.clone(),
                });
            }
        }
    }
    ops.sort_by_key(|o| o.method == "PATCH");
    ops
}

/// Minimal JSON-schema check for the subset the document uses; returns what does not match.
pub fn schema_errors(doc: &Value, schema: &Value, value: &Value, at: &str) -> Vec<String> {
    let schema = resolve(doc, schema);
    let mut errors = Vec::new();
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array) {
        if !allowed.contains(value) {
            errors.push(format!("{at}: {value} not in {allowed:?}"));
        }
    }
    let ok = match schema.get("type").and_then(Value::as_str) {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_u64() || value.is_i64(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !ok {
        errors.push(format!("{at}: {value} is not of type {}", schema["type"]));
        return errors;
    }
    if let Some(obj) = value.as_object() {
        let props = schema.get("properties").and_then(Value::as_object);
        for req in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if !obj.contains_key(req.as_str().unwrap_or_default()) {
                errors.push(format!("{at}: required {req} missing"));
            }
        }
        for (key, v) in obj {
            match (
                props.and_then(|p| p.get(key)),
                schema.get("additionalProperties"),
            ) {
                (Some(sub), _) => errors.extend(schema_errors(doc, sub, v, &format!("{at}.{key}"))),
                (None, Some(Value::Bool(false))) => {
                    errors.push(format!("{at}: undocumented field {key}"))
                }
                (None, Some(extra @ Value::Object(_))) => {
                    errors.extend(schema_errors(doc, extra, v, &format!("{at}.{key}")))
                }
                (None, _) => {}
            }
        }
    }
    if let (Some(items), Some(arr)) = (schema.get("items"), value.as_array()) {
        for (i, v) in arr.iter().enumerate() {
            errors.extend(schema_errors(doc, items, v, &format!("{at}[{i}]")));
        }
    }
    errors
}

/// The response's body must match the schema documented for its status (or `default`).
pub fn assert_matches_doc(doc: &Value, op: &Operation, resp: &HttpResponse) {
    let key = resp.status.to_string();
    let responses = &op.op["responses"];
    let documented = responses.get(&key).or_else(|| responses.get("default"));
    let documented = resolve(
        doc,
        documented.unwrap_or_else(|| panic!("{} {}: {key} undocumented", op.method, op.path)),
    );
    match documented.pointer("/content/application~1json/schema") {
        Some(schema) => {
            let errors = schema_errors(doc, schema, &resp.json(), "body");
            assert!(
                errors.is_empty(),
                "{} {} -> {}: {errors:?}",
                op.method,
                op.path,
                resp.status
            );
        }
        None => assert!(
            resp.body.is_empty(),
            "{} {}: undocumented body {:?}",
            op.method,
            op.path,
            resp.body
        ),
    }
}
