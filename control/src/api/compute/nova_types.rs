//! Nova's lenient request types (its `parameter_types`): integers may come as strings of
//! digits, booleans as the words oslo's `strutils.bool_from_string` knows, ids as numbers.
//! Clients written against Nova send all of these, so the flavor bodies accept them.

use serde::de::{Deserializer, Error};
use serde::Deserialize;
use serde_json::Value;

/// An integer, or a string of decimal digits (`"1024"`).
pub fn integer<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_i64()
            .ok_or_else(|| D::Error::custom(format!("{n} is not an integer"))),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse()
            .map_err(|_| D::Error::custom(format!("{s:?} is too large"))),
        other => Err(D::Error::custom(format!(
            "{other} is not an integer or a string of digits"
        ))),
    }
}

/// A number, or a string holding one (`rxtx_factor`).
pub fn number<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    match Value::deserialize(d)? {
        Value::Number(n) => n
            .as_f64()
            .ok_or_else(|| D::Error::custom(format!("{n} is not a number"))),
        Value::String(s) => s
            .trim()
            .parse()
            .map_err(|_| D::Error::custom(format!("{s:?} is not a number"))),
        other => Err(D::Error::custom(format!("{other} is not a number"))),
    }
}

/// What Nova takes as a boolean: true/false, or one of its words for them in any case (oslo's
/// `bool_from_string(strict=True)` vocabulary).
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "t" | "true" | "on" | "y" | "yes" => Some(true),
        "0" | "f" | "false" | "off" | "n" | "no" => Some(false),
        _ => None,
    }
}

pub fn boolean<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::String(s) => {
            parse_bool(&s).ok_or_else(|| D::Error::custom(format!("{s:?} is not a boolean")))
        }
        other => Err(D::Error::custom(format!("{other} is not a boolean"))),
    }
}

/// A flavor id: a string, a number (kept as its decimal text) or null (generate one).
pub fn optional_id<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    match Value::deserialize(d)? {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s)),
        Value::Number(n) => Ok(Some(n.to_string())),
        other => Err(D::Error::custom(format!(
            "{other} is not a string or number"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Deserialize, Debug, PartialEq)]
    struct Body {
        #[serde(deserialize_with = "integer")]
        ram: i64,
        #[serde(deserialize_with = "boolean")]
        public: bool,
        #[serde(default, deserialize_with = "optional_id")]
        id: Option<String>,
        #[serde(deserialize_with = "number")]
        factor: f64,
    }

    fn parse(v: Value) -> Result<Body, serde_json::Error> {
        serde_json::from_value(v)
    }

    #[test]
    fn nova_spellings_are_taken_and_others_refused() {
        let b = parse(json!({"ram": "1024", "public": "True", "id": 7, "factor": "1.5"})).unwrap();
        assert_eq!(
            b,
            Body {
                ram: 1024,
                public: true,
                id: Some("7".into()),
                factor: 1.5
            }
        );
        let b = parse(json!({"ram": 512, "public": "off", "id": null, "factor": 1})).unwrap();
        assert_eq!((b.ram, b.public, b.id), (512, false, None));
        for bad in [
            json!({"ram": "1e3", "public": true, "factor": 1}),
            json!({"ram": "-1", "public": true, "factor": 1}),
            json!({"ram": 1.5, "public": true, "factor": 1}),
            json!({"ram": 1, "public": "maybe", "factor": 1}),
            json!({"ram": 1, "public": 1, "factor": 1}),
            json!({"ram": 1, "public": true, "id": [], "factor": 1}),
            json!({"ram": 1, "public": true, "factor": "fast"}),
        ] {
            assert!(parse(bad.clone()).is_err(), "{bad}");
        }
    }
}
