//! Workload identifiers: `wimse://` (draft-ietf-wimse-identifier §3, canonical form) and
//! `spiffe://` (SPIFFE-ID.md), parsed strictly. Only the canonical serialization is accepted:
//! nothing is lowercased, decoded or repaired, and identifiers compare byte for byte.
//!
//! Validation happens before any trust lookup or authorization uses the value (identifier
//! §3.1). This module does no I/O and knows no trust configuration.

use std::fmt;

/// The longest identifier accepted (both specifications: implementations support 2048 bytes).
pub const MAX_LEN: usize = 2048;
/// The longest trust domain accepted (SPIFFE-ID.md §2.1).
pub const MAX_TRUST_DOMAIN: usize = 255;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Wimse,
    Spiffe,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Wimse => "wimse",
            Self::Spiffe => "spiffe",
        }
    }
}

/// A validated workload identifier with a path (a workload, not a trust domain).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WorkloadId {
    text: String,
    scheme: Scheme,
    /// Where the trust domain ends (the index of the path's first `/`).
    domain_end: usize,
}

impl fmt::Debug for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WorkloadId({})", self.text)
    }
}

impl fmt::Display for WorkloadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Why an identifier was refused. The messages name the rule, never echo the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("is longer than 2048 bytes")]
    TooLong,
    #[error("does not start with wimse:// or spiffe:// (lowercase)")]
    Scheme,
    #[error("has an empty trust domain")]
    EmptyTrustDomain,
    #[error("has a trust domain longer than 255 bytes")]
    TrustDomainTooLong,
    #[error("has a trust domain that is not canonical (lowercase letters, digits, '.', '-', '_')")]
    TrustDomainChars,
    #[error("has an IP address as its trust domain")]
    IpTrustDomain,
    #[error("has no workload path")]
    NoPath,
    #[error("has an empty, '.' or '..' path segment, or a trailing '/'")]
    Segment,
    #[error("has a path character outside the scheme's canonical set (no percent-encoding)")]
    PathChars,
}

impl WorkloadId {
    /// Parses a workload identifier in canonical form; `spiffe://` and `wimse://` both need a
    /// path here (a trust domain alone names no workload).
    pub fn parse(s: &str) -> Result<Self, IdError> {
        if s.len() > MAX_LEN {
            return Err(IdError::TooLong);
        }
        let (scheme, rest) = if let Some(r) = s.strip_prefix("wimse://") {
            (Scheme::Wimse, r)
        } else if let Some(r) = s.strip_prefix("spiffe://") {
            (Scheme::Spiffe, r)
        } else {
            return Err(IdError::Scheme);
        };
        let prefix = s.len() - rest.len();
        let (domain, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        check_trust_domain(scheme, domain)?;
        if path.is_empty() {
            return Err(IdError::NoPath);
        }
        check_path(scheme, path)?;
        Ok(Self {
            text: s.to_owned(),
            scheme,
            domain_end: prefix + domain.len(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The trust domain, without scheme.
    pub fn trust_domain(&self) -> &str {
        let start = self.scheme.as_str().len() + 3;
        &self.text[start..self.domain_end]
    }

    /// The path, starting with `/`.
    pub fn path(&self) -> &str {
        &self.text[self.domain_end..]
    }
}

/// A trust domain as configuration names it (`example.org`): the same rules as inside an
/// identifier.
pub fn check_trust_domain(scheme: Scheme, domain: &str) -> Result<(), IdError> {
    if domain.is_empty() {
        return Err(IdError::EmptyTrustDomain);
    }
    if domain.len() > MAX_TRUST_DOMAIN {
        return Err(IdError::TrustDomainTooLong);
    }
    let ok =
        |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_');
    if !domain.bytes().all(ok) {
        return Err(IdError::TrustDomainChars);
    }
    // identifier §3.1–3.2: a wimse trust domain is a host name — no empty label (so no
    // leading, trailing or doubled dot) and no IP address.
    if scheme == Scheme::Wimse {
        if domain.split('.').any(str::is_empty) {
            return Err(IdError::TrustDomainChars);
        }
        if domain.parse::<std::net::Ipv4Addr>().is_ok() {
            return Err(IdError::IpTrustDomain);
        }
    }
    Ok(())
}

fn check_path(scheme: Scheme, path: &str) -> Result<(), IdError> {
    // SPIFFE-ID.md §2.2: [a-zA-Z0-9.-_]; wimse: RFC 3986 unreserved (adds '~').
    let ok = |b: u8| {
        b.is_ascii_alphanumeric()
            || matches!(b, b'.' | b'-' | b'_')
            || (scheme == Scheme::Wimse && b == b'~')
    };
    for segment in path[1..].split('/') {
        if segment.is_empty() || segment == "." || segment == ".." {
            return Err(IdError::Segment);
        }
        if !segment.bytes().all(ok) {
            return Err(IdError::PathChars);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_identifiers_parse_and_split() {
        for s in [
            "wimse://trust.example.com/service/payment",
            "wimse://trust.example.com/service/payment/instance/1234",
            "wimse://prod.corp.example/workload/89a6ec51-f877-44c0-9501-b213597f2d1d",
            "wimse://example.com/specific-workload",
            "wimse://td/a~b",
            "spiffe://incubation.example.org/ns/experimental/analytics/ingest",
            "spiffe://prod.trust.domain/ns/prod-01/sa/foo-service",
            "spiffe://prod.trust.domain/foo-service/sha256/c4dbb1a06030e142cb0ed4be61421967618289a19c0c7760bdd745ac67779ca7",
        ] {
            let id = WorkloadId::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(id.as_str(), s);
        }
        let id = WorkloadId::parse("spiffe://example.org/ns/prod/a").unwrap();
        assert_eq!(id.scheme(), Scheme::Spiffe);
        assert_eq!(id.trust_domain(), "example.org");
        assert_eq!(id.path(), "/ns/prod/a");
    }

    #[test]
    fn non_canonical_identifiers_are_refused_never_repaired() {
        let refused = [
            (
                "wimse://trust.example/service/%70ayment",
                IdError::PathChars,
            ),
            ("wimse://trust.example/service/payment/", IdError::Segment),
            (
                "wimse://Trust.example/service/payment",
                IdError::TrustDomainChars,
            ),
            ("WIMSE://trust.example/service/payment", IdError::Scheme),
            ("Spiffe://example.org/a", IdError::Scheme),
            ("wimse://trust.example./service", IdError::TrustDomainChars),
            ("wimse://.trust.example/service", IdError::TrustDomainChars),
            ("wimse://trust..example/service", IdError::TrustDomainChars),
            ("wimse://192.0.2.1/service", IdError::IpTrustDomain),
            ("wimse://trust.example//service", IdError::Segment),
            ("wimse://trust.example/./service", IdError::Segment),
            ("wimse://trust.example/service/..", IdError::Segment),
            (
                "wimse://trust.example:8443/service",
                IdError::TrustDomainChars,
            ),
            (
                "wimse://user@trust.example/service",
                IdError::TrustDomainChars,
            ),
            ("wimse://trust.example/service?x=1", IdError::PathChars),
            ("wimse://trust.example/service#f", IdError::PathChars),
            ("wimse://trust.example", IdError::NoPath),
            ("wimse:///service", IdError::EmptyTrustDomain),
            ("spiffe://example.org", IdError::NoPath),
            ("spiffe://example.org/", IdError::Segment),
            ("spiffe://example.org/a~b", IdError::PathChars),
            ("spiffe://example.org/caf\u{e9}", IdError::PathChars),
            ("https://example.org/a", IdError::Scheme),
        ];
        for (s, why) in refused {
            assert_eq!(WorkloadId::parse(s), Err(why), "{s}");
        }
        let long_domain = format!("spiffe://{}/a", "a".repeat(256));
        assert_eq!(
            WorkloadId::parse(&long_domain),
            Err(IdError::TrustDomainTooLong)
        );
        let at_domain_limit = format!("spiffe://{}/a", "a".repeat(255));
        assert!(WorkloadId::parse(&at_domain_limit).is_ok());
        let at_limit = format!("spiffe://example.org/{}", "a".repeat(MAX_LEN - 21));
        assert_eq!(at_limit.len(), MAX_LEN);
        assert!(WorkloadId::parse(&at_limit).is_ok());
        let over = format!("{at_limit}b");
        assert_eq!(WorkloadId::parse(&over), Err(IdError::TooLong));
    }

    #[test]
    fn shown_as_written() {
        let id = WorkloadId::parse("wimse://td/service/payments").unwrap();
        assert_eq!(id.to_string(), "wimse://td/service/payments");
        assert_eq!(format!("{id:?}"), "WorkloadId(wimse://td/service/payments)");
    }

    #[test]
    fn comparison_is_byte_for_byte() {
        let a = WorkloadId::parse("wimse://td/service/Payment").unwrap();
        let b = WorkloadId::parse("wimse://td/service/payment").unwrap();
        assert_ne!(a, b);
    }
}
