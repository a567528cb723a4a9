//! Caller patterns in profiles: an exact client identifier, or a whole-segment prefix written
//! `prefix/*` (matches `prefix/a` and `prefix/a/b`, never `prefix` or `prefixx/a`).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerPattern {
    Exact(String),
    /// Holds the prefix including its trailing `/`.
    Prefix(String),
}

impl CallerPattern {
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("caller pattern is empty".into());
        }
        match s.strip_suffix("/*") {
            Some(prefix) if !prefix.is_empty() && !prefix.contains('*') => {
                Ok(Self::Prefix(format!("{prefix}/")))
            }
            _ if s.contains('*') => Err(format!(
                "caller pattern `{s}`: `*` is allowed only as a whole last segment (`prefix/*`)"
            )),
            _ => Ok(Self::Exact(s.to_owned())),
        }
    }

    pub fn matches(&self, id: &str) -> bool {
        match self {
            Self::Exact(e) => e == id,
            Self::Prefix(p) => id.len() > p.len() && id.starts_with(p.as_str()),
        }
    }

    /// Whether some caller could match both patterns.
    pub fn overlaps(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Exact(a), Self::Exact(b)) => a == b,
            (Self::Exact(e), p @ Self::Prefix(_)) | (p @ Self::Prefix(_), Self::Exact(e)) => {
                p.matches(e)
            }
            (Self::Prefix(a), Self::Prefix(b)) => {
                a.starts_with(b.as_str()) || b.starts_with(a.as_str())
            }
        }
    }
}

impl fmt::Display for CallerPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Exact(e) => f.write_str(e),
            Self::Prefix(p) => write!(f, "{p}*"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_segment_prefixes() {
        let p = CallerPattern::parse("spiffe://example.com/gateway/*").unwrap();
        assert!(p.matches("spiffe://example.com/gateway/eu"));
        assert!(!p.matches("spiffe://example.com/gateway"));
        assert!(!p.matches("spiffe://example.com/gatewayx/eu"));
        assert!(CallerPattern::parse("spiffe://example.com/gate*").is_err());
        assert!(CallerPattern::parse("*").is_err());
        let q = CallerPattern::parse("spiffe://example.com/*").unwrap();
        assert!(p.overlaps(&q));
        assert!(!p.overlaps(&CallerPattern::parse("other").unwrap()));
    }
}
