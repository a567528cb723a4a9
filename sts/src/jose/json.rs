//! Strict JSON for untrusted token segments: UTF-8 only, objects only at the top, no duplicate
//! member names anywhere, bounded nesting.
//!
//! serde_json keeps the last of two equal member names, so `{"sub":"a","sub":"b"}` would pass
//! one check with "a" and another with "b"; RFC 7519 §4 says such a JWT MUST be rejected or
//! parsed consistently. We reject.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

/// The deepest nesting accepted in a token's header or claims (an `act` chain counts).
pub const MAX_DEPTH: usize = 16;

/// A JWT claims set or JOSE header: a JSON object.
pub type Claims = Map<String, Value>;

#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum StrictJsonError {
    #[error("not a JSON object")]
    NotAnObject,
    #[error("malformed JSON")]
    Malformed,
    #[error("duplicate JSON member name")]
    DuplicateKey,
    #[error("JSON nested too deeply")]
    TooDeep,
}

/// Parses `bytes` as one JSON object under the strict rules above.
pub fn parse_object(bytes: &[u8]) -> Result<Claims, StrictJsonError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = match StrictValue::deserialize(&mut de) {
        Ok(v) => v.0,
        Err(e) if e.to_string().starts_with(DUPLICATE) => {
            return Err(StrictJsonError::DuplicateKey);
        }
        Err(_) => return Err(StrictJsonError::Malformed),
    };
    de.end().map_err(|_| StrictJsonError::Malformed)?;
    if depth(&value) > MAX_DEPTH {
        return Err(StrictJsonError::TooDeep);
    }
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(StrictJsonError::NotAnObject),
    }
}

const DUPLICATE: &str = "duplicate member";

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

struct StrictValue(Value);

impl<'de> Deserialize<'de> for StrictValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = StrictValue;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Bool(v)))
    }
    fn visit_i64<E>(self, v: i64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_u64<E>(self, v: u64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_f64<E>(self, v: f64) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::from(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::String(v)))
    }
    fn visit_unit<E>(self) -> Result<StrictValue, E> {
        Ok(StrictValue(Value::Null))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<StrictValue, A::Error> {
        let mut out = Vec::new();
        while let Some(StrictValue(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(StrictValue(Value::Array(out)))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictValue, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let StrictValue(v) = map.next_value()?;
            if out.insert(key, v).is_some() {
                return Err(de::Error::custom(DUPLICATE));
            }
        }
        Ok(StrictValue(Value::Object(out)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_duplicates_at_any_depth() {
        assert_eq!(
            parse_object(br#"{"a":1,"a":2}"#),
            Err(StrictJsonError::DuplicateKey)
        );
        assert_eq!(
            parse_object(br#"{"act":{"sub":"x","sub":"y"}}"#),
            Err(StrictJsonError::DuplicateKey)
        );
    }

    #[test]
    fn rejects_non_objects_trailing_data_and_depth() {
        assert_eq!(parse_object(b"[1]"), Err(StrictJsonError::NotAnObject));
        assert_eq!(parse_object(b"{} x"), Err(StrictJsonError::Malformed));
        assert_eq!(parse_object(b"\xff"), Err(StrictJsonError::Malformed));
        let deep = format!(
            "{}{}",
            "{\"a\":".repeat(20),
            "1".to_owned() + &"}".repeat(20)
        );
        assert_eq!(parse_object(deep.as_bytes()), Err(StrictJsonError::TooDeep));
    }

    /// Nesting is counted through objects and arrays alike; `MAX_DEPTH` itself is allowed.
    #[test]
    fn depth_limit_is_exact_for_objects_and_arrays() {
        let objects = |n: usize| format!("{}1{}", "{\"a\":".repeat(n), "}".repeat(n));
        assert!(parse_object(objects(MAX_DEPTH).as_bytes()).is_ok());
        assert_eq!(
            parse_object(objects(MAX_DEPTH + 1).as_bytes()),
            Err(StrictJsonError::TooDeep)
        );
        // One object level around arrays: {"a":[[...1...]]}.
        let arrays = |n: usize| format!("{{\"a\":{}1{}}}", "[".repeat(n), "]".repeat(n));
        assert!(parse_object(arrays(MAX_DEPTH - 1).as_bytes()).is_ok());
        assert_eq!(
            parse_object(arrays(MAX_DEPTH).as_bytes()),
            Err(StrictJsonError::TooDeep)
        );
        // The deepest branch counts, not the first (members are read in sorted order, so the
        // shallow one, "a", comes first).
        let mixed = format!(
            "{{\"a\":1,\"z\":{}1{}}}",
            "[".repeat(MAX_DEPTH),
            "]".repeat(MAX_DEPTH)
        );
        assert_eq!(
            parse_object(mixed.as_bytes()),
            Err(StrictJsonError::TooDeep)
        );
    }

    #[test]
    fn accepts_ordinary_claims() {
        let c = parse_object(br#"{"sub":"a","n":1,"l":[1,"x"],"o":{"k":null}}"#).unwrap();
        assert_eq!(c["sub"], "a");
    }
}
