//! Rendering results: ASCII tables (rows for lists, field/value pairs for one resource) or
//! pretty JSON.

use comfy_table::Table;
use serde_json::Value;

/// openstackclient's look: ASCII borders, a `+---+` rule under the header, no rules between
/// rows (comfy-table's ASCII_FULL_CONDENSED with `-` and `+` in the header rule).
const STYLE: &str = "||--+-++|    ++++++";

/// A list as a table with `headers`, one row per item.
pub fn list(headers: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut t = Table::new();
    t.load_preset(STYLE);
    t.set_header(headers.iter().copied());
    for r in rows {
        t.add_row(r);
    }
    format!("{t}\n")
}

/// One resource as a two-column Field/Value table.
pub fn fields(pairs: Vec<(&str, String)>) -> String {
    let mut t = Table::new();
    t.load_preset(STYLE);
    t.set_header(["Field", "Value"]);
    for (k, v) in pairs {
        t.add_row([k.to_owned(), v]);
    }
    format!("{t}\n")
}

pub fn json(v: &Value) -> String {
    // Serializing a Value cannot fail.
    format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
}

/// A JSON scalar as a table cell: strings without quotes, null as empty.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `{"a": "1", "b": "2"}` as `a='1', b='2'`, as openstackclient prints properties.
pub fn properties(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}='{}'", cell(v)))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}
