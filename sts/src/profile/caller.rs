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

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// Path segments drawn from a small alphabet so prefixes, equal segments and
        /// near-misses (`a` vs `ab`) come up often.
        fn segment() -> impl Strategy<Value = String> {
            "[ab]{1,3}"
        }

        fn path() -> impl Strategy<Value = Vec<String>> {
            prop::collection::vec(segment(), 1..5)
        }

        proptest! {
            /// `p/*` matches exactly the ids with all of p's segments and at least one more.
            #[test]
            fn prefix_matches_whole_segments_only(p in path(), id in path()) {
                let pattern = CallerPattern::parse(&format!("spiffe://td/{}/*", p.join("/"))).unwrap();
                let id_text = format!("spiffe://td/{}", id.join("/"));
                let expected = id.len() > p.len() && id[..p.len()] == p[..];
                prop_assert_eq!(pattern.matches(&id_text), expected, "{} vs {}", pattern, id_text);
            }

            /// A pattern never matches its own prefix, nor the prefix plus a trailing slash.
            #[test]
            fn prefix_never_matches_itself(p in path()) {
                let base = format!("spiffe://td/{}", p.join("/"));
                let pattern = CallerPattern::parse(&format!("{base}/*")).unwrap();
                prop_assert!(!pattern.matches(&base));
                let with_slash = format!("{base}/");
                prop_assert!(!pattern.matches(&with_slash));
            }

            /// Exact patterns are byte-for-byte.
            #[test]
            fn exact_is_byte_for_byte(a in path(), b in path()) {
                let (a, b) = (a.join("/"), b.join("/"));
                prop_assert_eq!(CallerPattern::parse(&a).unwrap().matches(&b), a == b);
            }

            /// `overlaps` is true exactly when some id matches both (checked on witnesses).
            #[test]
            fn overlap_has_a_witness(p in path(), q in path(), extra in segment()) {
                let pp = CallerPattern::parse(&format!("{}/*", p.join("/"))).unwrap();
                let qp = CallerPattern::parse(&format!("{}/*", q.join("/"))).unwrap();
                let longer = if p.len() >= q.len() { &p } else { &q };
                let witness = format!("{}/{extra}", longer.join("/"));
                let both = pp.matches(&witness) && qp.matches(&witness);
                prop_assert_eq!(pp.overlaps(&qp), both);
            }
        }
    }
}
