//! Turning the merged configuration (file + environment, as JSON) into [`Settings`] while
//! collecting every problem instead of stopping at the first: a bad value is reported and set
//! aside (its key falls back to its default) and deserialization goes on; trust entries and
//! clients are read one by one.
//!
//! Messages come out in the admin's words (`crate::yaml::humanize_serde`) with the dotted key
//! path. This module checks structure only; value rules are `Settings::check`.

use serde_json::Value;
use serde_path_to_error::Segment;

use super::{ClientSettings, ConfigError, DEFAULT_YAML, Locator, Settings, TrustEntry};
use crate::yaml::humanize_serde;

/// Most problems collected before giving up (a file of garbage is not worth listing whole).
const MAX_PROBLEMS: usize = 50;
/// Most deserialization rounds (one key set aside or filled per round).
const MAX_ROUNDS: usize = 200;

/// A key path as segments.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Key(String),
    Index(usize),
}

/// `a.b[0].c` from serde's path.
pub fn path_string(path: &serde_path_to_error::Path) -> String {
    to_string(&segments(path))
}

fn segments(path: &serde_path_to_error::Path) -> Vec<Seg> {
    path.iter()
        .filter_map(|s| match s {
            Segment::Map { key } => Some(Seg::Key(key.clone())),
            Segment::Seq { index } => Some(Seg::Index(*index)),
            Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
            _ => None,
        })
        .collect()
}

fn to_string(segs: &[Seg]) -> String {
    let mut out = String::new();
    for s in segs {
        match s {
            Seg::Key(k) => out = join(&out, k),
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// `parent.key`, or `key` at the top.
pub fn join(parent: &str, key: &str) -> String {
    if key.is_empty() {
        parent.to_owned()
    } else if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

fn get<'v>(mut v: &'v Value, path: &[Seg]) -> Option<&'v Value> {
    for s in path {
        v = match s {
            Seg::Key(k) => v.get(k)?,
            Seg::Index(i) => v.get(i)?,
        };
    }
    Some(v)
}

/// Removes the value at `path`; whether there was one.
fn remove(v: &mut Value, path: &[Seg]) -> bool {
    let Some((last, parent)) = path.split_last() else {
        return false;
    };
    let mut v = v;
    for s in parent {
        let next = match s {
            Seg::Key(k) => v.get_mut(k),
            Seg::Index(i) => v.get_mut(i),
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    match (last, v) {
        (Seg::Key(k), Value::Object(m)) => m.remove(k).is_some(),
        _ => false,
    }
}

fn set(v: &mut Value, path: &[Seg], value: Value) -> bool {
    let Some((Seg::Key(last), parent)) = path.split_last() else {
        return false;
    };
    let mut v = v;
    for s in parent {
        let next = match s {
            Seg::Key(k) => v.get_mut(k),
            Seg::Index(i) => v.get_mut(i),
        };
        match next {
            Some(n) => v = n,
            None => return false,
        }
    }
    match v {
        Value::Object(m) => {
            m.insert(last.clone(), value);
            true
        }
        _ => false,
    }
}

/// Deserializes `value` into [`Settings`], recording every problem in `problems`. A bad value
/// is removed so its key takes its default; a missing required key is filled from the embedded
/// default so the rest can still be checked. Returns the settings (with those stand-ins) when
/// deserialization could finish.
pub fn deserialize_all(
    mut value: Value,
    at: &Locator,
    problems: &mut Vec<ConfigError>,
) -> Option<Settings> {
    if !value.is_object() {
        problems.push(at.problem("", "the configuration must be a mapping of keys"));
        return None;
    }
    let fallback: Value = serde_saphyr::from_str(DEFAULT_YAML).unwrap_or(Value::Null);
    let mut set_aside: Vec<Vec<Seg>> = Vec::new();
    let start = problems.len();
    // Each round removes or fills one key, so the rounds are bounded by the document's size.
    for _ in 0..MAX_ROUNDS {
        if problems.len() - start >= MAX_PROBLEMS {
            break;
        }
        let e = match serde_path_to_error::deserialize::<_, Settings>(&value) {
            Ok(s) => return Some(s),
            Err(e) => e,
        };
        let mut path = segments(e.path());
        let raw = e.inner().to_string();
        let (message, field) = humanize_serde(&raw);
        if let Some(f) = &field
            && path.last() != Some(&Seg::Key(f.clone()))
        {
            path.push(Seg::Key(f.clone()));
        }
        let key = to_string(&path);
        if raw.starts_with("missing field") {
            if !set_aside.contains(&path) {
                problems.push(at.problem(&key, message));
            }
            let filler = get(&fallback, &path).cloned()?;
            if !set(&mut value, &path, filler) {
                return None;
            }
            set_aside.push(path);
            continue;
        }
        problems.push(at.problem(&key, message));
        if !remove(&mut value, &path) {
            return None;
        }
        set_aside.push(path);
    }
    None
}

/// Each `trust:` item: a mapping with a non-empty string `name` and `kind`; the rest is the
/// kind's block, read later by the kind.
pub fn trust_entries(
    raw: &[Value],
    at: &Locator,
    problems: &mut Vec<ConfigError>,
) -> Vec<TrustEntry> {
    let mut out = Vec::new();
    for (index, item) in raw.iter().enumerate() {
        let key = format!("trust[{index}]");
        let Value::Object(map) = item else {
            problems.push(at.problem(&key, "each trust entry must be a mapping of keys"));
            continue;
        };
        let mut block = map.clone();
        let mut take = |k: &str| match block.remove(k) {
            Some(Value::String(s)) if !s.is_empty() => Some(s),
            _ => {
                problems.push(at.problem(&format!("{key}.{k}"), "a non-empty text is required"));
                None
            }
        };
        let (name, kind) = (take("name"), take("kind"));
        let (Some(name), Some(kind)) = (name, kind) else {
            continue;
        };
        let mut entry = TrustEntry::new(&name, &kind, Value::Object(block));
        entry.index = index;
        entry.locate(at);
        out.push(entry);
    }
    out
}

/// Each `clients:` item, read on its own so every client's problems are reported.
pub fn clients(
    raw: &[Value],
    at: &Locator,
    problems: &mut Vec<ConfigError>,
) -> Vec<ClientSettings> {
    let mut out = Vec::new();
    for (index, item) in raw.iter().enumerate() {
        match serde_path_to_error::deserialize::<_, ClientSettings>(item) {
            Ok(c) => out.push(c),
            Err(e) => {
                let (message, field) = humanize_serde(&e.inner().to_string());
                let mut key = join(&format!("clients[{index}]"), &path_string(e.path()));
                if let Some(f) = field
                    && !key.ends_with(&f)
                {
                    key = join(&key, &f);
                }
                problems.push(at.problem(&key, message));
            }
        }
    }
    out
}
