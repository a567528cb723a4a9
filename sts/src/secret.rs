//! Types that hold credentials (tokens, client secrets) and cannot leak them by accident.
//!
//! Their `Debug` and `Display` print a short SHA-256 fingerprint, never the value, so a token
//! that ends up in a log line, an error or a span shows as `token(sha256:…)`. Code that needs the
//! bytes must call `expose()` explicitly. This module must not offer any formatting that reveals
//! the value.

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// SHA-256 over `bytes`, base64url: a fixed-size key for stores (not for display).
pub fn digest_b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, bytes).as_ref())
}

/// SHA-256 over `bytes`, raw: a fixed-size cache key.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

/// The first 12 base64url characters of SHA-256 over `bytes`: enough to correlate log lines,
/// useless for recovering a token.
pub fn fingerprint(bytes: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, bytes);
    let mut s = URL_SAFE_NO_PAD.encode(d.as_ref());
    s.truncate(12);
    s
}

/// A presented or issued token (JWT compact serialization or opaque string).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The token text, for signature checks and for the response body only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn into_exposed(self) -> String {
        self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.as_bytes())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "token(sha256:{})", self.fingerprint())
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A client secret as presented in a request.
#[derive(Clone)]
pub struct ClientSecret(String);

impl ClientSecret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client_secret(redacted)")
    }
}

impl fmt::Display for ClientSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let t = Token::new("eyJhbGciOiJFUzI1NiJ9.payload.sig");
        assert!(!format!("{t:?}").contains("payload"));
        assert!(!format!("{t}").contains("payload"));
        let s = ClientSecret::new("hunter2");
        assert!(!format!("{s:?} {s}").contains("hunter2"));
    }
}
