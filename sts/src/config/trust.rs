//! `trust:` entries as written: a `name`, a `kind`, and the rest of the entry as the kind's own
//! block, which the kind parses (`token::InputKind::configure`) with its own typed struct.
//!
//! Positions (file, line, column) are recovered from the configuration text so that a kind's
//! complaint about its block points at the line the admin wrote. This module knows no kind.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};
use serde_saphyr::Spanned;

use super::ConfigError;

/// Where something was written in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub file: String,
    pub line: u64,
    pub column: u64,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One trust entry: its name, its kind and the kind's block.
#[derive(Debug, Clone)]
pub struct TrustEntry {
    pub name: String,
    pub kind: String,
    /// Every key of the entry but `name` and `kind`.
    pub block: Map<String, Value>,
    /// Which `trust[i]` this is.
    pub index: usize,
    at: Option<Position>,
    key_at: BTreeMap<String, Position>,
}

impl TrustEntry {
    /// An entry built in code (development mode, tools, tests).
    pub fn new(name: &str, kind: &str, block: Value) -> Self {
        Self {
            name: name.to_owned(),
            kind: kind.to_owned(),
            block: match block {
                Value::Object(m) => m,
                _ => Map::new(),
            },
            index: 0,
            at: None,
            key_at: BTreeMap::new(),
        }
    }

    /// `file:line:col: ` of the entry, or nothing when unknown.
    pub fn position(&self) -> String {
        self.at
            .as_ref()
            .map(|p| format!("{p}: "))
            .unwrap_or_default()
    }

    /// A configuration error about `key` of this entry (`key` may be a dotted path; its first
    /// segment picks the position).
    pub fn error(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        let first = key.split(['.', '[']).next().unwrap_or(key);
        let at = self
            .key_at
            .get(first)
            .or(self.at.as_ref())
            .map(|p| format!("{p}: "))
            .unwrap_or_default();
        let path = if key.is_empty() {
            String::new()
        } else {
            format!(".{key}")
        };
        ConfigError(format!(
            "{at}trust[{}]{path} (entry `{}`, kind {}): {message}",
            self.index, self.name, self.kind
        ))
    }

    /// Deserializes the kind's block into `T` (which should deny unknown fields); a failure
    /// names the key and where it was written.
    pub fn parse_block<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let value = Value::Object(self.block.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let inner = e.into_inner().to_string();
            // serde names an unknown key in its message but not always in the path.
            let key = match unknown_field(&inner) {
                Some(field) if path.is_empty() => field,
                Some(field) if !path.ends_with(&field) => format!("{path}.{field}"),
                _ => path,
            };
            self.error(&key, inner)
        })
    }
}

fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_owned())
}

/// Reads the `trust:` list (through the `config` crate): each entry a map with a string `name`
/// and `kind`.
pub fn deserialize_entries<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<TrustEntry>, D::Error> {
    let raw: Vec<Map<String, Value>> = Vec::deserialize(d)?;
    raw.into_iter()
        .enumerate()
        .map(|(index, mut block)| {
            let mut take = |key: &str| match block.remove(key) {
                Some(Value::String(s)) if !s.is_empty() => Ok(s),
                _ => Err(serde::de::Error::custom(format!(
                    "trust[{index}].{key}: a non-empty string is required"
                ))),
            };
            let name = take("name")?;
            let kind = take("kind")?;
            Ok(TrustEntry {
                name,
                kind,
                block,
                index,
                at: None,
                key_at: BTreeMap::new(),
            })
        })
        .collect()
}

#[derive(Deserialize)]
struct PositionsDoc {
    #[serde(default)]
    trust: Vec<Spanned<BTreeMap<String, Spanned<IgnoredAny>>>>,
}

/// Fills in where each entry and each of its keys was written in `text` (best effort: a text
/// that does not parse here already failed, or will fail, with its own message).
pub fn locate_trust_entries(entries: &mut [TrustEntry], file: &str, text: &str) {
    let Ok(doc) = serde_saphyr::from_str::<PositionsDoc>(text) else {
        return;
    };
    let pos = |line: u64, column: u64| Position {
        file: file.to_owned(),
        line,
        column,
    };
    for (entry, spanned) in entries.iter_mut().zip(doc.trust) {
        entry.at = Some(pos(spanned.referenced.line(), spanned.referenced.column()));
        entry.key_at = spanned
            .value
            .iter()
            .map(|(k, v)| (k.clone(), pos(v.referenced.line(), v.referenced.column())))
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Block {
        issuer: String,
        #[serde(default)]
        strict: bool,
    }

    #[test]
    fn a_kinds_complaint_points_at_the_key() {
        let text = "issuer: x\ntrust:\n  - name: a\n    kind: k\n    issuer: https://a\n    isuser: typo\n";
        let mut e = vec![TrustEntry::new(
            "a",
            "k",
            serde_json::json!({"issuer": "https://a", "isuser": "typo"}),
        )];
        locate_trust_entries(&mut e, "sts.yaml", text);
        let err = e[0].parse_block::<Block>().unwrap_err().to_string();
        assert!(
            err.starts_with("configuration: sts.yaml:6:13: trust[0].isuser "),
            "{err}"
        );
        assert!(err.contains("unknown field `isuser`"), "{err}");
        let mut e = vec![TrustEntry::new(
            "a",
            "k",
            serde_json::json!({"issuer": "https://a", "strict": "yes"}),
        )];
        locate_trust_entries(&mut e, "f", "trust:\n  - {name: a, kind: k, strict: yes}\n");
        let err = e[0].parse_block::<Block>().unwrap_err().to_string();
        assert!(err.contains("trust[0].strict"), "{err}");
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Outer {
            jwks: Inner,
        }
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        #[allow(dead_code)]
        struct Inner {
            uri: Option<String>,
        }
        let mut e = vec![TrustEntry::new(
            "a",
            "k",
            serde_json::json!({"jwks": {"urii": "x"}}),
        )];
        locate_trust_entries(
            &mut e,
            "f",
            "trust:\n  - name: a\n    kind: k\n    jwks: {urii: x}\n",
        );
        let err = e[0].parse_block::<Outer>().unwrap_err().to_string();
        assert!(err.contains("f:4:11: trust[0].jwks.urii "), "{err}");
    }
}
