//! Neutron's list parameters over rendered resources: `?attr=value` filters (repeat a key
//! for "any of"), `fixed_ips=ip_address=...` / `fixed_ips=subnet_id=...` on ports, `fields=`
//! (repeatable) to pick attributes, and `sort_key`/`sort_dir`, `marker`/`limit` paging.
//! Filters on attributes a resource does not have are ignored, as Neutron did before its
//! strict filter validation.

use crate::api::Fault;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Parameters that steer the list rather than filter it.
const CONTROL: &[&str] = &[
    "fields",
    "limit",
    "marker",
    "page_reverse",
    "sort_key",
    "sort_dir",
    "all_tenants",
    "all_projects",
    "tags",
    "tags-any",
    "not-tags",
    "not-tags-any",
];

/// How a filter value compares to an attribute.
fn matches(attr: &Value, want: &str) -> bool {
    match attr {
        Value::String(s) => s == want,
        Value::Bool(b) => want.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
        Value::Number(n) => n.to_string() == want,
        Value::Null => want.is_empty() || want == "None",
        Value::Array(items) => items.iter().any(|i| matches(i, want)),
        Value::Object(_) => false,
    }
}

fn fixed_ip_matches(port: &Value, want: &str) -> bool {
    let Some((key, value)) = want.split_once('=') else {
        return false;
    };
    port["fixed_ips"]
        .as_array()
        .is_some_and(|ips| ips.iter().any(|ip| ip[key].as_str() == Some(value)))
}

/// Applies the query to `items` (each a rendered resource with an `id`).
pub fn apply(items: Vec<Value>, query: &[(String, String)]) -> Result<Vec<Value>, Fault> {
    let mut filters: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    let mut fields: Vec<&str> = Vec::new();
    for (k, v) in query {
        match k.as_str() {
            "fields" => fields.extend(v.split(',').filter(|f| !f.is_empty())),
            k if CONTROL.contains(&k) => {}
            k => filters.entry(k).or_default().push(v),
        }
    }
    let mut out: Vec<Value> = items
        .into_iter()
        .filter(|item| {
            filters.iter().all(|(key, wants)| {
                if *key == "fixed_ips" {
                    return wants.iter().all(|w| fixed_ip_matches(item, w));
                }
                match item.get(*key) {
                    None => true,
                    Some(attr) => wants.iter().any(|w| matches(attr, w)),
                }
            })
        })
        .collect();
    let last = |k: &str| {
        query
            .iter()
            .rev()
            .find(|(q, _)| q == k)
            .map(|(_, v)| v.as_str())
    };
    if let Some(key) = last("sort_key") {
        let desc = match last("sort_dir") {
            None | Some("asc") => false,
            Some("desc") => true,
            Some(other) => {
                return Err(Fault::bad_request(format!(
                    "Invalid sort direction {other:?}: use asc or desc"
                )))
            }
        };
        out.sort_by(|a, b| {
            let o = a[key].to_string().cmp(&b[key].to_string());
            if desc {
                o.reverse()
            } else {
                o
            }
        });
    }
    if let Some(marker) = last("marker") {
        let at = out
            .iter()
            .position(|i| i["id"].as_str() == Some(marker))
            .ok_or_else(|| Fault::not_found(format!("Marker {marker} could not be found.")))?;
        out.drain(..=at);
    }
    if let Some(limit) = last("limit") {
        let n: usize = limit.parse().map_err(|_| {
            Fault::bad_request(format!(
                "Invalid limit {limit:?}: a non-negative integer is required"
            ))
        })?;
        if n > 0 {
            out.truncate(n);
        }
    }
    if !fields.is_empty() {
        out = out
            .into_iter()
            .map(|item| {
                let mut picked = Map::new();
                for f in &fields {
                    if let Some(v) = item.get(*f) {
                        picked.insert((*f).to_owned(), v.clone());
                    }
                }
                Value::Object(picked)
            })
            .collect();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect()
    }

    fn items() -> Vec<Value> {
        vec![
            json!({"id": "a", "name": "one", "shared": false, "fixed_ips": [{"subnet_id": "s1", "ip_address": "10.0.0.2"}]}),
            json!({"id": "b", "name": "two", "shared": true, "fixed_ips": [{"subnet_id": "s2", "ip_address": "10.0.1.2"}]}),
            json!({"id": "c", "name": "two", "shared": false, "fixed_ips": []}),
        ]
    }

    fn ids(v: &[Value]) -> Vec<&str> {
        v.iter().map(|i| i["id"].as_str().unwrap_or("-")).collect()
    }

    #[test]
    fn filters_fields_and_paging() {
        assert_eq!(
            ids(&apply(items(), &q(&[("name", "two")])).unwrap()),
            ["b", "c"]
        );
        assert_eq!(
            ids(&apply(items(), &q(&[("id", "a"), ("id", "c")])).unwrap()),
            ["a", "c"]
        );
        assert_eq!(
            ids(&apply(items(), &q(&[("shared", "True")])).unwrap()),
            ["b"]
        );
        assert_eq!(
            ids(&apply(items(), &q(&[("fixed_ips", "ip_address=10.0.0.2")])).unwrap()),
            ["a"]
        );
        assert_eq!(
            ids(&apply(items(), &q(&[("fixed_ips", "subnet_id=s2")])).unwrap()),
            ["b"]
        );
        assert_eq!(
            ids(&apply(items(), &q(&[("no_such_attr", "x")])).unwrap()).len(),
            3
        );
        let picked = apply(items(), &q(&[("fields", "id"), ("fields", "name")])).unwrap();
        assert_eq!(picked[0], json!({"id": "a", "name": "one"}));
        assert_eq!(
            ids(&apply(items(), &q(&[("marker", "a"), ("limit", "1")])).unwrap()),
            ["b"]
        );
        assert_eq!(
            ids(&apply(items(), &q(&[("sort_key", "id"), ("sort_dir", "desc")])).unwrap()),
            ["c", "b", "a"]
        );
        assert!(apply(items(), &q(&[("marker", "zz")])).is_err());
    }
}
