//! YAML as the admin wrote it: where each key path sits in a file, and parser or deserializer
//! complaints rewritten in the admin's words (the key path with dots, what was found, what is
//! allowed), with no Rust type names or parser internals.
//!
//! Used by the process settings (`config`) and by profiles and mappings (`profile`). This module
//! reads text it is given; it opens no file and decides nothing about what is valid.

use std::collections::BTreeMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// Most key paths recorded for one document: a configuration with more is not one an admin
/// wrote by hand, and positions past it are simply unknown.
const MAX_PATHS: usize = 20_000;
/// Longest key path recorded (bytes); deeper or longer paths are not addressed. Together with
/// `MAX_PATHS` this bounds the memory a hostile file can make this use.
const MAX_PATH_BYTES: usize = 512;

/// Line and column (both 1-based) of every key path in a YAML document: `limits.max_params`,
/// `trust[0]`, `trust[0].jwks.file`. Keys map to where the key was written, list items to where
/// the item starts. Best effort: text that does not parse yields what was read before the
/// error; at most `MAX_PATHS` paths of at most `MAX_PATH_BYTES` bytes are recorded.
pub fn key_positions(text: &str) -> BTreeMap<String, (u64, u64)> {
    enum Frame {
        Map {
            path: String,
            key: Option<String>,
        },
        Seq {
            path: String,
            next: usize,
        },
        /// A complex (non-scalar) key: nothing inside it is addressed.
        Opaque,
    }
    let mut out = BTreeMap::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        let at = (span.start.line() as u64, span.start.col() as u64 + 1);
        let is_node = matches!(
            event,
            Event::Scalar(..)
                | Event::MappingStart(..)
                | Event::SequenceStart(..)
                | Event::Alias(_)
        );
        if matches!(event, Event::MappingEnd | Event::SequenceEnd) {
            stack.pop();
            continue;
        }
        if !is_node {
            continue;
        }
        // The path of this node, or `None` when it is a key (or inside something unaddressed).
        let full = out.len() >= MAX_PATHS;
        let path: Option<String> = match stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Opaque) => None,
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) if k.is_empty() => None,
                Some(k) => Some(join(path, &k)),
                None => {
                    if let Event::Scalar(k, ..) = &event
                        && path.len() + k.len() < MAX_PATH_BYTES
                        && !full
                    {
                        out.insert(join(path, k), at);
                        *key = Some(k.to_string());
                    } else {
                        // A complex or overlong key: its value is not addressed either.
                        *key = Some(String::new());
                    }
                    if matches!(event, Event::Scalar(..) | Event::Alias(_)) {
                        continue;
                    }
                    None
                }
            },
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                if p.len() < MAX_PATH_BYTES && !full {
                    out.insert(p.clone(), at);
                    Some(p)
                } else {
                    None
                }
            }
        };
        match (event, path) {
            (Event::MappingStart(..), Some(path)) => stack.push(Frame::Map { path, key: None }),
            (Event::SequenceStart(..), Some(path)) => stack.push(Frame::Seq { path, next: 0 }),
            (Event::MappingStart(..) | Event::SequenceStart(..), None) => stack.push(Frame::Opaque),
            _ => {}
        }
    }
    out
}

/// The key path whose key is written last before (line, column) on that same line: what a
/// complaint at that position is about (`actor.mode` for `mode: sometimes`).
pub fn path_at(text: &str, line: u64, column: u64) -> Option<String> {
    key_positions(text)
        .into_iter()
        .filter(|(p, (l, c))| *l == line && *c <= column && !p.ends_with(']'))
        .max_by_key(|(p, (_, c))| (*c, p.len()))
        .map(|(p, _)| p)
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// Where a serde-saphyr error points (line, column) and what it means, in the admin's words.
pub fn describe_error(e: &serde_saphyr::Error) -> (Option<(u64, u64)>, String) {
    use serde_saphyr::Error as E;
    let at = e
        .location()
        .map(|l| (l.line(), l.column()))
        .filter(|(l, _)| *l > 0);
    let mut inner = e.without_snippet();
    while let E::AliasError { error, .. } = inner {
        inner = error.without_snippet();
    }
    let message = match inner {
        E::DuplicateMappingKey { key: Some(k), .. } => {
            format!("`{k}` is written twice in the same mapping")
        }
        E::DuplicateMappingKey { key: None, .. } => {
            "a key is written twice in the same mapping".to_owned()
        }
        E::Budget { .. } => "the document is too large or too deeply nested, or expands aliases \
                             too far (YAML size budget)"
            .to_owned(),
        E::SerdeUnknownField {
            field, expected, ..
        } => unknown_key(field, expected),
        E::SerdeMissingField { field, .. } => format!("`{field}` is required"),
        E::Unexpected { expected, .. } => {
            let what = match expected.trim_end_matches(" start") {
                "mapping" => "a mapping (key: value pairs)",
                "sequence" => "a list",
                other => other,
            };
            format!("expected {what} here")
        }
        E::SerdeUnknownVariant {
            variant, expected, ..
        } => format!(
            "`{variant}` is not allowed here; use one of: {}",
            expected.join(", ")
        ),
        E::SerdeInvalidType {
            unexpected,
            expected,
            ..
        }
        | E::SerdeInvalidValue {
            unexpected,
            expected,
            ..
        } => format!("found {}, expected {}", found(unexpected), wanted(expected)),
        _ => {
            let text = inner.to_string();
            let first = text.lines().next().unwrap_or("").trim();
            // "error: line L column C: message" → "message"
            first
                .strip_prefix("error: ")
                .map(|rest| rest.split_once(": ").map_or(rest, |x| x.1))
                .unwrap_or(first)
                .to_owned()
        }
    };
    (at, message)
}

fn unknown_key(field: &str, expected: &[&str]) -> String {
    if expected.is_empty() {
        format!("`{field}` is not a known key here")
    } else {
        format!(
            "`{field}` is not a known key here; known keys: {}",
            expected.join(", ")
        )
    }
}

/// A serde error message (from any deserializer) rewritten for an admin; `None` when the
/// message is not one of serde's standard shapes. Also returns the key an "unknown field" or
/// "missing field" message is about.
pub fn humanize_serde(message: &str) -> (String, Option<String>) {
    let quoted = |s: &str| -> Option<String> { Some(s.split('`').nth(1)?.to_owned()) };
    if let Some(rest) = message.strip_prefix("unknown field ") {
        let field = quoted(rest).unwrap_or_default();
        let expected: Vec<&str> = rest
            .split_once("expected one of ")
            .or_else(|| rest.split_once("expected "))
            .map(|(_, list)| list.split(", ").map(|s| s.trim_matches('`')).collect())
            .unwrap_or_default();
        return (unknown_key(&field, &expected), Some(field));
    }
    if let Some(rest) = message.strip_prefix("missing field ") {
        let field = quoted(rest).unwrap_or_default();
        return (format!("`{field}` is required"), Some(field));
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        let variant = quoted(rest).unwrap_or_default();
        let list = rest
            .split_once("expected one of ")
            .or_else(|| rest.split_once("expected "))
            .map(|(_, l)| l.replace('`', ""))
            .unwrap_or_default();
        return (
            format!("`{variant}` is not allowed here; use one of: {list}"),
            None,
        );
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((unexpected, expected)) = rest.split_once(", expected ")
        {
            return (
                format!("found {}, expected {}", found(unexpected), wanted(expected)),
                None,
            );
        }
    }
    (message.to_owned(), None)
}

/// serde's "unexpected" wording (`string "x"`, `integer `5``, `map`) in plain words.
fn found(unexpected: &str) -> String {
    let unquote = |s: &str| s.trim_matches('`').to_owned();
    if let Some(s) = unexpected.strip_prefix("string ") {
        return format!("the text {s}");
    }
    for prefix in ["integer ", "floating point "] {
        if let Some(n) = unexpected.strip_prefix(prefix) {
            return format!("the number {}", unquote(n));
        }
    }
    if let Some(b) = unexpected.strip_prefix("boolean ") {
        return unquote(b);
    }
    match unexpected {
        "map" => "a mapping (key: value pairs)".into(),
        "sequence" => "a list".into(),
        "unit value" | "null" => "nothing (null)".into(),
        other => other.to_owned(),
    }
}

/// serde's "expected" wording (`usize`, `struct Limits`, `a string`) in plain words.
fn wanted(expected: &str) -> String {
    let e = expected.trim();
    if e.starts_with("struct ") || e.starts_with("map") || e == "a map" {
        return "a mapping (key: value pairs)".into();
    }
    if e.starts_with("enum ") {
        return "one of the allowed names".into();
    }
    match e {
        "usize" | "u8" | "u16" | "u32" | "u64" | "u128" | "a nonnegative integer" => {
            "a whole number (0 or more)".into()
        }
        "isize" | "i8" | "i16" | "i32" | "i64" | "i128" | "an integer" | "integer" => {
            "a whole number".into()
        }
        "f32" | "f64" | "a float" => "a number".into(),
        "a string" | "string" | "a borrowed string" => "text".into(),
        "a sequence" | "sequence" | "a list" => "a list".into(),
        "a boolean" | "bool" => "true or false".into(),
        other => other.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_of_keys_and_items() {
        let text = "issuer: x\nlimits: {max_params: 3}\ntrust:\n  - name: a\n    jwks:\n      file: f\n  - {name: b}\n";
        let p = key_positions(text);
        assert_eq!(p["issuer"], (1, 1));
        assert_eq!(p["limits.max_params"], (2, 10));
        assert_eq!(p["trust"], (3, 1));
        assert_eq!(p["trust[0]"], (4, 5));
        assert_eq!(p["trust[0].name"], (4, 5));
        assert_eq!(p["trust[0].jwks.file"], (6, 7));
        assert_eq!(p["trust[1].name"], (7, 6));
        assert!(!p.contains_key("trust[2]"));
    }

    #[test]
    fn hostile_documents_are_addressed_only_within_bounds() {
        let many: String = (0..MAX_PATHS + 500).map(|i| format!("k{i}: 1\n")).collect();
        assert_eq!(key_positions(&many).len(), MAX_PATHS);
        let long_key = "x".repeat(MAX_PATH_BYTES);
        let text = format!("{long_key}:\n  inner: [1, 2]\nafter: 1\n");
        let p = key_positions(&text);
        assert_eq!(p.keys().collect::<Vec<_>>(), vec!["after"]);
    }

    #[test]
    fn the_key_a_position_is_about() {
        let text = "name: x\nactor: {mode: sometimes}\nissue:\n  lifetime: forever\n";
        assert_eq!(path_at(text, 2, 15).as_deref(), Some("actor.mode"));
        assert_eq!(path_at(text, 4, 13).as_deref(), Some("issue.lifetime"));
        assert_eq!(path_at(text, 3, 1).as_deref(), Some("issue"));
        assert_eq!(path_at(text, 9, 1), None);
    }

    #[test]
    fn serde_messages_in_plain_words() {
        let h = |m: &str| humanize_serde(m).0;
        assert_eq!(
            h("invalid type: string \"x\", expected usize"),
            "found the text \"x\", expected a whole number (0 or more)"
        );
        assert_eq!(
            h("invalid type: integer `5`, expected struct Limits"),
            "found the number 5, expected a mapping (key: value pairs)"
        );
        assert_eq!(
            h("unknown field `bogus`, expected one of `max_body_bytes`, `max_params`"),
            "`bogus` is not a known key here; known keys: max_body_bytes, max_params"
        );
        assert_eq!(h("missing field `dir`"), "`dir` is required");
        assert_eq!(
            h("unknown variant `HS256`, expected one of `ES256`, `EdDSA`"),
            "`HS256` is not allowed here; use one of: ES256, EdDSA"
        );
        assert_eq!(
            h("invalid type: string \"yes\", expected true or false"),
            "found the text \"yes\", expected true or false"
        );
    }
}
