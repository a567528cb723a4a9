//! `trust:` entries as written: a `name`, a `kind`, and the rest of the entry as the kind's own
//! block, which the kind parses (`token::InputKind::configure`) with its own typed struct.
//!
//! Positions (file, line, column) are recovered from the configuration text so that a kind's
//! complaint about its block points at the line the admin wrote. This module knows no kind.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

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
    /// Where each key path under the entry (`jwks.file`) was written.
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

    /// Records where the entry and its keys were written (from the file's key positions).
    pub fn locate(&mut self, at: &super::Locator) {
        let prefix = format!("trust[{}]", self.index);
        self.at = at.position(&prefix);
        self.key_at = at
            .positions_under(&prefix)
            .map(|(k, p)| (k.to_owned(), p))
            .collect();
    }

    /// `file:line:col: ` of the entry, or nothing when unknown.
    pub fn position(&self) -> String {
        self.at
            .as_ref()
            .map(|p| format!("{p}: "))
            .unwrap_or_default()
    }

    /// A configuration error about `key` of this entry (a dotted path; its nearest written
    /// parent gives the position).
    pub fn error(&self, key: &str, message: impl fmt::Display) -> ConfigError {
        let mut k = key;
        let found = loop {
            if let Some(p) = self.key_at.get(k) {
                break Some(p);
            }
            match k.rfind(['.', '[']) {
                Some(i) => k = &k[..i],
                None => break self.at.as_ref(),
            }
        };
        let at = found.map(|p| format!("{p}: ")).unwrap_or_default();
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
    /// names the key, says what was found and what is allowed, and where it was written.
    pub fn parse_block<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        let value = Value::Object(self.block.clone());
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = super::load::path_string(e.path());
            let (message, field) = crate::yaml::humanize_serde(&e.inner().to_string());
            let key = match field {
                Some(f) if !path.ends_with(&f) => super::load::join(&path, &f),
                _ => path,
            };
            self.error(&key, message)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::Locator;
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Block {
        issuer: String,
        #[serde(default)]
        strict: bool,
        jwks: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        uri: Option<String>,
    }

    fn entry(block: Value, file: &str, text: &str) -> TrustEntry {
        let mut e = TrustEntry::new("a", "k", block);
        e.locate(&Locator::new(file, text, false));
        e
    }

    #[test]
    fn a_kinds_complaint_points_at_the_key() {
        let text = "issuer: x\ntrust:\n  - name: a\n    kind: k\n    issuer: https://a\n    isuser: typo\n";
        let e = entry(
            serde_json::json!({"issuer": "https://a", "isuser": "typo"}),
            "sts.yaml",
            text,
        );
        let err = e.parse_block::<Block>().unwrap_err().to_string();
        assert_eq!(
            err,
            "configuration: sts.yaml:6:5: trust[0].isuser (entry `a`, kind k): `isuser` is not \
             a known key here; known keys: issuer, strict, jwks"
        );
        let e = entry(
            serde_json::json!({"issuer": "https://a", "strict": "yes"}),
            "f",
            "trust:\n  - {name: a, kind: k, issuer: x, strict: yes}\n",
        );
        let err = e.parse_block::<Block>().unwrap_err().to_string();
        assert_eq!(
            err,
            "configuration: f:2:35: trust[0].strict (entry `a`, kind k): found the text \"yes\", \
             expected true or false"
        );
        let e = entry(
            serde_json::json!({"issuer": "x", "jwks": {"urii": "x"}}),
            "f",
            "trust:\n  - name: a\n    kind: k\n    issuer: x\n    jwks: {urii: x}\n",
        );
        let err = e.parse_block::<Block>().unwrap_err().to_string();
        assert_eq!(
            err,
            "configuration: f:5:12: trust[0].jwks.urii (entry `a`, kind k): `urii` is not a \
             known key here; known keys: uri"
        );
    }
}
