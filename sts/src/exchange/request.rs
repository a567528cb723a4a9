//! The token request as typed values: form parameters per RFC 6749 (§3.1 empty means absent,
//! no repeats) and RFC 8693 §2.1 (`resource` and `audience` may repeat; a `*_token` needs its
//! `*_token_type`, and the reverse).
//!
//! Parsing refuses rather than repairs: every rule broken is `invalid_request` (or
//! `invalid_target` / `invalid_scope` where RFC 8707 / RFC 6749 §3.3 say so). Nothing here
//! verifies a token.

use std::borrow::Cow;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::config::Limits;
use crate::error::{ErrorCode, OAuthError};
use crate::jose::{Claims, StrictJsonError, parse_object};
use crate::secret::{ClientSecret, Token};

/// RFC 6749 §2.3.1: an `Authorization` value `Basic base64(urlencode(id) ":" urlencode(secret))`
/// → the client id and secret. Every malformation is `invalid_client`.
pub fn parse_basic(value: &str) -> Result<(String, ClientSecret), OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Basic authorization header");
    let (scheme, b64) = value.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client(
            "unsupported authorization scheme",
        ));
    }
    let decoded = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        decode_component(s.as_bytes())
            .map_err(|_| bad())
            .map(|c| c.into_owned())
    };
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    if id.is_empty() {
        return Err(bad());
    }
    Ok((id, ClientSecret::new(secret)))
}

/// Form parameters with RFC 6749 duplicate rules applied. Values may be tokens or secrets, so
/// `Debug` shows parameter names only.
///
/// A request has about ten parameters (bounded by `limits.max_params`), so they are kept in a
/// small vector: a linear scan of a few short names is cheaper than hashing them.
#[derive(Default)]
pub struct FormParams {
    single: Vec<(String, String)>,
    resource: Vec<String>,
    audience: Vec<String>,
}

impl std::fmt::Debug for FormParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut names: Vec<&str> = self.single.iter().map(|(n, _)| n.as_str()).collect();
        names.sort_unstable();
        f.debug_struct("FormParams")
            .field("names", &names)
            .field("audience", &self.audience)
            .field("resource", &self.resource)
            .finish()
    }
}

impl FormParams {
    /// Parses an `application/x-www-form-urlencoded` body (WHATWG URL §5.1: `&`-separated
    /// pairs, split at the first `=`, `+` is a space, percent-decoding). Names and values must
    /// be UTF-8 after decoding; invalid UTF-8 is refused, not replaced.
    pub fn parse(body: &[u8], max_params: usize) -> Result<Self, OAuthError> {
        let mut out = FormParams::default();
        // Pairs found with memchr (vectorised), not byte by byte: a body is mostly one token.
        let mut start = 0;
        let ends = memchr::memchr_iter(b'&', body).chain(std::iter::once(body.len()));
        let pairs = ends
            .map(|end| {
                let pair = &body[start..end];
                start = end + 1;
                pair
            })
            .filter(|p| !p.is_empty());
        for (count, pair) in pairs.enumerate() {
            if count >= max_params {
                return Err(OAuthError::invalid_request("too many parameters"));
            }
            let (name, value) = match memchr::memchr(b'=', pair) {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            // RFC 6749 §3.1: a parameter sent without a value is treated as omitted.
            if value.is_empty() {
                continue;
            }
            out.insert(
                decode_component(name)?,
                decode_component(value)?.into_owned(),
            )?;
        }
        Ok(out)
    }

    fn insert(&mut self, name: Cow<'_, str>, value: String) -> Result<(), OAuthError> {
        match name.as_ref() {
            "resource" => self.resource.push(value),
            "audience" => self.audience.push(value),
            other if self.get(other).is_some() => {
                // Names of parameters we know are safe to echo; others are not echoed.
                let shown = if KNOWN.contains(&other) {
                    other
                } else {
                    "a parameter"
                };
                return Err(OAuthError::invalid_request(format!("{shown} is repeated")));
            }
            _ => self.single.push((name.into_owned(), value)),
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.single
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn take(&mut self, name: &str) -> Option<String> {
        let at = self.single.iter().position(|(n, _)| n == name)?;
        Some(self.single.swap_remove(at).1)
    }
}

/// One form-urlencoded name or value (also the halves of RFC 6749 §2.3.1 Basic credentials):
/// borrowed when it holds no `+` or `%` (tokens never do), decoded otherwise.
pub fn decode_component(raw: &[u8]) -> Result<Cow<'_, str>, OAuthError> {
    let not_utf8 = || OAuthError::invalid_request("form parameters must be UTF-8");
    if memchr::memchr2(b'+', b'%', raw).is_none() {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| not_utf8());
    }
    String::from_utf8(form_decode(raw))
        .map(Cow::Owned)
        .map_err(|_| not_utf8())
}

/// The form-urlencoded decoding of `raw` in one pass: `+` is a space, `%` and two hex digits
/// a byte, and a `%` without two hex digits after it stays as it is (WHATWG URL §5.1).
fn form_decode(raw: &[u8]) -> Vec<u8> {
    fn hex(b: u8) -> Option<u8> {
        char::from(b).to_digit(16).map(|d| d as u8)
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(at) = memchr::memchr2(b'+', b'%', rest) {
        out.extend_from_slice(&rest[..at]);
        let escaped = (rest[at] == b'%')
            .then(|| Some(hex(*rest.get(at + 1)?)? << 4 | hex(*rest.get(at + 2)?)?))
            .flatten();
        match (rest[at], escaped) {
            (b'+', _) => out.push(b' '),
            (_, Some(byte)) => {
                out.push(byte);
                rest = &rest[at + 3..];
                continue;
            }
            _ => out.push(b'%'),
        }
        rest = &rest[at + 1..];
    }
    out.extend_from_slice(rest);
    out
}

const KNOWN: &[&str] = &[
    "grant_type",
    "scope",
    "requested_token_type",
    "subject_token",
    "subject_token_type",
    "actor_token",
    "actor_token_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "request_context",
    "request_details",
];

/// A presented token with its declared type.
#[derive(Debug)]
pub struct TypedToken {
    pub token: Token,
    pub token_type: String,
}

/// An RFC 8693 §2.1 request.
#[derive(Debug)]
pub struct ExchangeRequest {
    pub subject: TypedToken,
    pub actor: Option<TypedToken>,
    pub requested_token_type: Option<String>,
    /// `audience` values, then `resource` values, in request order.
    pub targets: Vec<String>,
    pub audience: Vec<String>,
    pub resource: Vec<String>,
    /// The requested scope as sent, and split (RFC 6749 §3.3).
    pub scope: Option<String>,
    /// Txn-Token draft §4.3: `request_context`, a JSON object (the basis of `rctx`).
    pub request_context: Option<Claims>,
    /// Txn-Token draft §4.3: `request_details`, a JSON object (the basis of `tctx`).
    pub request_details: Option<Claims>,
}

impl ExchangeRequest {
    /// Interprets the form of a token-exchange grant (the grant type is checked by the caller).
    pub fn from_params(mut p: FormParams, limits: &Limits) -> Result<Self, OAuthError> {
        let max_token_bytes = limits.max_token_bytes;
        let subject = typed_pair(
            &mut p,
            "subject_token",
            "subject_token_type",
            max_token_bytes,
        )?
        .ok_or_else(|| {
            OAuthError::invalid_request("subject_token and subject_token_type are required")
        })?;
        let actor = typed_pair(&mut p, "actor_token", "actor_token_type", max_token_bytes)?;
        for r in &p.resource {
            check_resource(r)?;
        }
        let scope = p.take("scope");
        if let Some(s) = &scope {
            check_scope(s)?;
        }
        let request_context = json_param(&mut p, "request_context", limits.max_context_bytes)?;
        let request_details = json_param(&mut p, "request_details", limits.max_context_bytes)?;
        let targets = p.audience.iter().chain(&p.resource).cloned().collect();
        Ok(Self {
            request_context,
            request_details,
            subject,
            actor,
            requested_token_type: p.take("requested_token_type"),
            targets,
            audience: p.audience,
            resource: p.resource,
            scope,
        })
    }

    pub fn scope_tokens(&self) -> Option<Vec<&str>> {
        self.scope.as_deref().map(|s| s.split(' ').collect())
    }
}

/// Txn-Token draft §4.3: `request_context` and `request_details` are JSON objects sent as
/// their JSON text (form-encoded, not base64url since -07). Parsed strictly: an object at the
/// top, no duplicate member names, bounded size and nesting.
fn json_param(
    p: &mut FormParams,
    name: &'static str,
    max: usize,
) -> Result<Option<Claims>, OAuthError> {
    let Some(text) = p.take(name) else {
        return Ok(None);
    };
    if text.len() > max {
        return Err(OAuthError::invalid_request(format!(
            "{name} is larger than {max} bytes"
        )));
    }
    parse_object(text.as_bytes()).map(Some).map_err(|e| {
        OAuthError::invalid_request(match e {
            StrictJsonError::NotAnObject => format!("{name} must be a JSON object"),
            other => format!("{name} is not a valid JSON object: {other}"),
        })
    })
}

fn typed_pair(
    p: &mut FormParams,
    token: &'static str,
    ty: &'static str,
    max: usize,
) -> Result<Option<TypedToken>, OAuthError> {
    match (p.take(token), p.take(ty)) {
        (None, None) => Ok(None),
        (Some(t), Some(token_type)) => {
            if t.len() > max {
                return Err(OAuthError::invalid_request(format!("{token} is too large")));
            }
            Ok(Some(TypedToken {
                token: Token::new(t),
                token_type,
            }))
        }
        (Some(_), None) => Err(OAuthError::invalid_request(format!(
            "{token} requires {ty}"
        ))),
        (None, Some(_)) => Err(OAuthError::invalid_request(format!(
            "{ty} was sent without {token}"
        ))),
    }
}

/// RFC 8693 §2.1 / RFC 8707 §2: an absolute URI without a fragment.
fn check_resource(r: &str) -> Result<(), OAuthError> {
    let scheme_ok = r.split_once(':').is_some_and(|(s, rest)| {
        !rest.is_empty()
            && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if !scheme_ok || r.contains('#') || r.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "resource must be an absolute URI without a fragment",
        ));
    }
    Ok(())
}

/// RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), separated by single spaces.
pub fn check_scope(s: &str) -> Result<(), OAuthError> {
    let token_ok = |t: &str| {
        !t.is_empty()
            && t.bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
    };
    if s.split(' ').all(token_ok) {
        Ok(())
    } else {
        Err(OAuthError::invalid_scope("scope is malformed"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The one-pass decoder gives the bytes of the reference: `+` to space, then
        /// percent-decoding (a `%` without two hex digits stays).
        #[test]
        fn form_decode_matches_the_reference(raw in proptest::collection::vec(
            prop_oneof![Just(b'%'), Just(b'+'), Just(b'a'), Just(b'F'), Just(b'0'), Just(b'g'), any::<u8>()],
            0..24,
        )) {
            let spaced: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
            let reference: Vec<u8> = percent_encoding::percent_decode(&spaced).collect();
            prop_assert_eq!(form_decode(&raw), reference);
        }

        /// The pairs are those of splitting at every `&` (empty pairs and pairs without a
        /// value dropped), whatever the body.
        #[test]
        fn pairs_are_the_ampersand_split(raw in proptest::collection::vec(
            prop_oneof![Just(b'&'), Just(b'='), Just(b'a'), Just(b'b'), Just(b'%'), Just(b'+')],
            0..40,
        )) {
            let mut reference = Vec::new();
            for pair in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
                let (name, value) = match pair.iter().position(|&b| b == b'=') {
                    Some(i) => (&pair[..i], &pair[i + 1..]),
                    None => (pair, &pair[pair.len()..]),
                };
                if !value.is_empty() {
                    reference.push((form_decode(name), form_decode(value)));
                }
            }
            match FormParams::parse(&raw, 64) {
                Ok(p) => {
                    let got: Vec<(Vec<u8>, Vec<u8>)> = p
                        .single
                        .iter()
                        .map(|(n, v)| (n.clone().into_bytes(), v.clone().into_bytes()))
                        .collect();
                    // (The generated bytes cannot spell the repeatable `audience`/`resource`.)
                    prop_assert_eq!(got, reference);
                }
                // Refused only for a name sent twice, or bytes that decode to no UTF-8.
                Err(e) => {
                    let not_utf8 = reference.iter().any(|(n, v)| {
                        std::str::from_utf8(n).is_err() || std::str::from_utf8(v).is_err()
                    });
                    let names: std::collections::HashSet<&Vec<u8>> =
                        reference.iter().map(|(n, _)| n).collect();
                    let repeated = names.len() < reference.len();
                    let utf8 = not_utf8 && e.description.contains("UTF-8");
                    let twice = repeated && e.description.contains("repeated");
                    prop_assert!(utf8 || twice, "{}", e.description);
                }
            }
        }
    }

    #[test]
    fn form_decode_edges() {
        for (raw, want) in [
            ("a%20b+c", "a b c"),
            ("%", "%"),
            ("%4", "%4"),
            ("%4+", "%4 "),
            ("%zz%41", "%zzA"),
            ("100%", "100%"),
            ("%%41", "%A"),
            ("%7B%22a%22%3A1%7D", "{\"a\":1}"),
        ] {
            assert_eq!(form_decode(raw.as_bytes()), want.as_bytes(), "{raw}");
        }
    }

    fn req(body: &str) -> Result<ExchangeRequest, OAuthError> {
        let limits = Limits {
            max_token_bytes: 1000,
            max_context_bytes: 64,
            ..Limits::default()
        };
        ExchangeRequest::from_params(FormParams::parse(body.as_bytes(), 32)?, &limits)
    }

    #[test]
    fn debug_shows_names_not_values() {
        let p = FormParams::parse(
            b"subject_token=eyJsecret&client_secret=hunter2&audience=a",
            32,
        )
        .unwrap();
        let shown = format!("{p:?}");
        assert!(
            shown.contains("subject_token")
                && !shown.contains("eyJsecret")
                && !shown.contains("hunter2")
        );
    }

    #[test]
    fn form_decoding() {
        let p = FormParams::parse(b"&a=x+y%2Bz&&b%3D=%E2%82%AC&c&d=", 32).unwrap();
        assert_eq!(p.get("a"), Some("x y+z"));
        assert_eq!(p.get("b="), Some("\u{20ac}"));
        assert_eq!(p.get("c"), None);
        assert_eq!(p.get("d"), None);
        for bad in [&b"a=%FF"[..], b"a=\xff", b"%C3=x"] {
            assert_eq!(
                FormParams::parse(bad, 32).unwrap_err().description,
                "form parameters must be UTF-8"
            );
        }
        assert_eq!(
            FormParams::parse(b"scope=a&scope=b", 32)
                .unwrap_err()
                .description,
            "scope is repeated"
        );
        assert_eq!(
            FormParams::parse(b"x%3Dtoken=a&x%3Dtoken=b", 32)
                .unwrap_err()
                .description,
            "a parameter is repeated"
        );
    }

    #[test]
    fn rfc6749_and_rfc8693_parameter_rules() {
        let ok = req("subject_token=a&subject_token_type=t&audience=x&audience=y&resource=https://r/&scope=a%20b").unwrap();
        assert_eq!(ok.targets, ["x", "y", "https://r/"]);
        assert_eq!(
            req("subject_token=a&subject_token=b&subject_token_type=t")
                .unwrap_err()
                .description,
            "subject_token is repeated"
        );
        assert_eq!(
            req("subject_token=a").unwrap_err().description,
            "subject_token requires subject_token_type"
        );
        assert_eq!(
            req("subject_token=a&subject_token_type=t&actor_token_type=t")
                .unwrap_err()
                .code,
            ErrorCode::InvalidRequest
        );
        assert_eq!(
            req("subject_token=a&subject_token_type=t&resource=relative")
                .unwrap_err()
                .code,
            ErrorCode::InvalidTarget
        );
        assert_eq!(
            req("subject_token=a&subject_token_type=t&resource=https://r/%23f")
                .unwrap_err()
                .code,
            ErrorCode::InvalidTarget
        );
        assert_eq!(
            req("subject_token=a&subject_token_type=t&scope=a%20%20b")
                .unwrap_err()
                .code,
            ErrorCode::InvalidScope
        );
        assert_eq!(
            req("subject_token=&subject_token_type=t")
                .unwrap_err()
                .description,
            "subject_token_type was sent without subject_token"
        );
        assert!(
            req(&format!(
                "subject_token={}&subject_token_type=t",
                "a".repeat(1001)
            ))
            .is_err()
        );
        let many = (0..40)
            .map(|i| format!("p{i}=v"))
            .collect::<Vec<_>>()
            .join("&");
        assert_eq!(
            FormParams::parse(many.as_bytes(), 32)
                .unwrap_err()
                .description,
            "too many parameters"
        );
    }
}
