//! Compact JWS (RFC 7515 §7.1) parsing and signature verification.
//!
//! `UnverifiedJws::parse` splits and decodes a token without trusting any of it; its claims are
//! reachable only as `unverified_claims` until `verify` succeeds with a key the caller chose from
//! configuration. This module does not check `typ`, issuer, audience or time: that is the token
//! kind's job.

use super::json::{Claims, StrictJsonError, parse_object};
use super::{Alg, VerifyingKey, b64_decode};

/// Why a token failed at the JOSE layer. Each message is safe to show a client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JoseError {
    #[error("token is too large")]
    Oversized,
    #[error("token is not a compact JWS")]
    NotCompact,
    #[error("encrypted tokens (JWE) are not accepted")]
    Encrypted,
    #[error("token segment is not valid base64url")]
    BadBase64,
    #[error("token header is invalid: {0}")]
    BadHeader(StrictJsonError),
    #[error("token claims are invalid: {0}")]
    BadClaims(StrictJsonError),
    #[error("token header has no usable alg")]
    MissingAlg,
    #[error("token algorithm is not accepted")]
    AlgNotAllowed,
    #[error("token uses critical header extensions that are not understood")]
    CriticalHeader,
    #[error("token signature is invalid")]
    BadSignature,
}

/// The JOSE header members this service reads. `jku`, `x5u`, `jwk` and `x5c` are deliberately
/// not read: keys come only from configuration (RFC 8725 §3.10).
#[derive(Debug, Clone)]
pub struct JoseHeader {
    pub alg: Alg,
    pub typ: Option<String>,
    pub kid: Option<String>,
    /// How many members the header has in all (a kind whose spec forbids other header
    /// parameters compares it with the members it knows, e.g. JWT-SVID §2).
    pub member_count: usize,
}

impl JoseHeader {
    fn from_json(h: &Claims) -> Result<Self, JoseError> {
        // RFC 7515 §4.1.11: we understand no extension, so any `crit` means reject.
        if h.contains_key("crit") {
            return Err(JoseError::CriticalHeader);
        }
        let alg = match h.get("alg").and_then(|a| a.as_str()) {
            None => return Err(JoseError::MissingAlg),
            // `none` and HMAC algorithms have no Alg value: RFC 8725 §3.1–3.2.
            Some(a) => a.parse::<Alg>().map_err(|()| JoseError::AlgNotAllowed)?,
        };
        let string = |name: &str| -> Result<Option<String>, JoseError> {
            match h.get(name) {
                None => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(JoseError::BadHeader(StrictJsonError::Malformed)),
            }
        };
        Ok(Self {
            alg,
            typ: string("typ")?,
            kid: string("kid")?,
            member_count: h.len(),
        })
    }

    /// Whether the `typ` header names `media` (RFC 8725 §3.11; RFC 7515 §4.1.9: compared
    /// case-insensitively, the `application/` prefix optional).
    pub fn typ_is(&self, media: &str) -> bool {
        self.typ.as_deref().is_some_and(|t| media_type_eq(t, media))
    }
}

/// Compares two JOSE `typ` values per RFC 7515 §4.1.9.
pub fn media_type_eq(typ: &str, media: &str) -> bool {
    without_application_prefix(typ).eq_ignore_ascii_case(without_application_prefix(media))
}

fn without_application_prefix(media_type: &str) -> &str {
    const PREFIX: &str = "application/";
    match media_type.get(..PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(PREFIX) => &media_type[PREFIX.len()..],
        _ => media_type,
    }
}

/// A parsed, not yet verified compact JWS. `Debug` shows the header only: the signing input is
/// most of the token.
pub struct UnverifiedJws<'a> {
    pub header: JoseHeader,
    pub unverified_claims: Claims,
    signing_input: &'a str,
    signature: Vec<u8>,
}

impl std::fmt::Debug for UnverifiedJws<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnverifiedJws")
            .field("header", &self.header)
            .finish_non_exhaustive()
    }
}

impl<'a> UnverifiedJws<'a> {
    /// Splits and decodes `token`, refusing anything larger than `max_len` bytes before doing
    /// any other work.
    pub fn parse(token: &'a str, max_len: usize) -> Result<Self, JoseError> {
        if token.len() > max_len {
            return Err(JoseError::Oversized);
        }
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(JoseError::NotCompact);
        };
        match parts.count() {
            0 => {}
            2 => return Err(JoseError::Encrypted),
            _ => return Err(JoseError::NotCompact),
        }
        let header_json = b64_decode(h).ok_or(JoseError::BadBase64)?;
        let header_obj = parse_object(&header_json).map_err(JoseError::BadHeader)?;
        let header = JoseHeader::from_json(&header_obj)?;
        let claims_json = b64_decode(p).ok_or(JoseError::BadBase64)?;
        let unverified_claims = parse_object(&claims_json).map_err(JoseError::BadClaims)?;
        let signature = b64_decode(s).ok_or(JoseError::BadBase64)?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        Ok(Self {
            header,
            unverified_claims,
            signing_input,
            signature,
        })
    }

    /// Checks the signature with `key`, which must be for the header's `alg`; on success the
    /// claims are returned as verified.
    pub fn verify(self, key: &VerifyingKey) -> Result<Claims, JoseError> {
        if key.alg() != self.header.alg {
            return Err(JoseError::AlgNotAllowed);
        }
        key.verify(self.signing_input.as_bytes(), &self.signature)
            .map_err(|()| JoseError::BadSignature)?;
        Ok(self.unverified_claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::b64_encode;

    fn seg(json: &str) -> String {
        b64_encode(json.as_bytes())
    }

    #[test]
    fn refuses_none_hmac_crit_jwe_and_oversize() {
        let body = seg(r#"{"sub":"a"}"#);
        for (hdr, want) in [
            (r#"{"alg":"none"}"#, JoseError::AlgNotAllowed),
            (r#"{"alg":"HS256"}"#, JoseError::AlgNotAllowed),
            (r#"{"typ":"JWT"}"#, JoseError::MissingAlg),
            (
                r#"{"alg":"ES256","crit":["b64"]}"#,
                JoseError::CriticalHeader,
            ),
        ] {
            let t = format!("{}.{}.", seg(hdr), body);
            assert_eq!(UnverifiedJws::parse(&t, 4096).unwrap_err(), want, "{hdr}");
        }
        assert_eq!(
            UnverifiedJws::parse("a.b.c.d.e", 100).unwrap_err(),
            JoseError::Encrypted
        );
        assert_eq!(
            UnverifiedJws::parse("a.b", 100).unwrap_err(),
            JoseError::NotCompact
        );
        assert_eq!(
            UnverifiedJws::parse("a.b.c", 2).unwrap_err(),
            JoseError::Oversized
        );
        let padded = format!("{}=.{}.", seg(r#"{"alg":"ES256"}"#), body);
        assert_eq!(
            UnverifiedJws::parse(&padded, 4096).unwrap_err(),
            JoseError::BadBase64
        );
    }

    /// A signer of ours and the key set its JWKS publishes.
    fn key_pair(alg: Alg) -> (crate::keys::Signer, crate::jose::jwk::KeySet) {
        use crate::keys::{Signer, SigningKey};
        let der = SigningKey::generate_pkcs8(alg).unwrap();
        let signer = Signer::new(SigningKey::from_pkcs8(&der).unwrap(), &[]);
        let jwks = serde_json::to_vec(signer.jwks()).unwrap();
        let (set, _) = crate::jose::jwk::KeySet::from_jwks(&jwks, &[alg]).unwrap();
        (signer, set)
    }

    fn verify_with(token: &str, key: &VerifyingKey) -> Result<Claims, JoseError> {
        UnverifiedJws::parse(token, 4096).unwrap().verify(key)
    }

    fn claims() -> Claims {
        let mut c = Claims::new();
        c.insert("sub".into(), "alice".into());
        c
    }

    /// RFC 7515 §5.2: the signature covers exactly `header.payload`; any other key, payload
    /// or algorithm fails.
    #[test]
    fn verify_checks_the_signing_input_key_and_alg() {
        let (signer, keys) = key_pair(Alg::ES256);
        let key = keys.find(None, Alg::ES256).unwrap();
        let (other, other_keys) = key_pair(Alg::ES256);
        let other_key = other_keys.find(None, Alg::ES256).unwrap();
        let (_, eddsa_keys) = key_pair(Alg::EdDSA);
        let eddsa_key = eddsa_keys.find(None, Alg::EdDSA).unwrap();
        let token = signer.sign_jws("at+jwt", &claims()).unwrap();

        let jws = UnverifiedJws::parse(&token, token.len()).unwrap();
        assert_eq!(jws.header.alg, Alg::ES256);
        assert!(jws.header.typ_is("application/at+jwt"));
        assert_eq!(jws.header.kid.as_deref(), Some(signer.kid()));
        assert_eq!(jws.header.member_count, 3);
        assert_eq!(jws.verify(key).unwrap(), claims());

        assert_eq!(verify_with(&token, other_key), Err(JoseError::BadSignature));
        assert_eq!(
            verify_with(&token, eddsa_key),
            Err(JoseError::AlgNotAllowed)
        );

        // Another token's payload under this token's header and signature.
        let mut bob = Claims::new();
        bob.insert("sub".into(), "bob".into());
        let forged_from = signer.sign_jws("at+jwt", &bob).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let bob_parts: Vec<&str> = forged_from.split('.').collect();
        let spliced = format!("{}.{}.{}", parts[0], bob_parts[1], parts[2]);
        assert_eq!(verify_with(&spliced, key), Err(JoseError::BadSignature));
        // Another key's signature (over its own header and these claims).
        let theirs = other.sign_jws("at+jwt", &claims()).unwrap();
        let their_sig = theirs.rsplit('.').next().unwrap();
        let swapped = format!("{}.{}.{}", parts[0], parts[1], their_sig);
        assert_eq!(verify_with(&swapped, key), Err(JoseError::BadSignature));
        // An empty signature.
        let unsigned = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(verify_with(&unsigned, key), Err(JoseError::BadSignature));
    }

    #[test]
    fn size_limit_is_inclusive() {
        let (signer, _) = key_pair(Alg::ES256);
        let token = signer.sign_jws("at+jwt", &claims()).unwrap();
        assert!(UnverifiedJws::parse(&token, token.len()).is_ok());
        assert_eq!(
            UnverifiedJws::parse(&token, token.len() - 1).unwrap_err(),
            JoseError::Oversized
        );
    }

    /// RFC 7515 §7.1: exactly three segments (five is a JWE, RFC 7516 §7.1), each base64url.
    #[test]
    fn segment_count_and_encoding() {
        let h = seg(r#"{"alg":"ES256"}"#);
        let p = seg(r#"{"sub":"a"}"#);
        for (token, want) in [
            (format!("{h}.{p}.AA.AA"), JoseError::NotCompact),
            (format!("{h}.{p}.AA.AA.AA.AA"), JoseError::NotCompact),
            (format!("{h}.{p}.AA.AA.AA"), JoseError::Encrypted),
            (h.clone(), JoseError::NotCompact),
            (format!("{h}.{p}!.AA"), JoseError::BadBase64),
            (format!("{h}.{p}.A*"), JoseError::BadBase64),
            (format!("{h}!.{p}.AA"), JoseError::BadBase64),
        ] {
            assert_eq!(
                UnverifiedJws::parse(&token, 4096).unwrap_err(),
                want,
                "{token}"
            );
        }
        assert!(UnverifiedJws::parse(&format!("{h}.{p}.AA"), 4096).is_ok());
    }

    /// `typ` and `kid` must be strings when present (RFC 7515 §4.1.4, §4.1.9); the header and
    /// claims must be strict JSON objects.
    #[test]
    fn header_members_and_json() {
        let p = seg(r#"{"sub":"a"}"#);
        for hdr in [
            r#"{"alg":"ES256","typ":1}"#,
            r#"{"alg":"ES256","kid":["k"]}"#,
        ] {
            let t = format!("{}.{p}.AA", seg(hdr));
            assert_eq!(
                UnverifiedJws::parse(&t, 4096).unwrap_err(),
                JoseError::BadHeader(StrictJsonError::Malformed),
                "{hdr}"
            );
        }
        let dup = format!("{}.{p}.AA", seg(r#"{"alg":"ES256","alg":"ES256"}"#));
        assert!(matches!(
            UnverifiedJws::parse(&dup, 4096).unwrap_err(),
            JoseError::BadHeader(StrictJsonError::DuplicateKey)
        ));
        let h = seg(r#"{"alg":"ES256"}"#);
        let dup_claims = format!("{h}.{}.AA", seg(r#"{"sub":"a","sub":"b"}"#));
        assert!(matches!(
            UnverifiedJws::parse(&dup_claims, 4096).unwrap_err(),
            JoseError::BadClaims(StrictJsonError::DuplicateKey)
        ));
        let alg_not_string = format!("{}.{p}.AA", seg(r#"{"alg":7}"#));
        assert_eq!(
            UnverifiedJws::parse(&alg_not_string, 4096).unwrap_err(),
            JoseError::MissingAlg
        );
    }

    #[test]
    fn typ_comparison_follows_rfc7515() {
        assert!(media_type_eq("application/AT+JWT", "at+jwt"));
        assert!(media_type_eq("at+jwt", "at+jwt"));
        assert!(!media_type_eq("jwt", "at+jwt"));
        assert!(media_type_eq("Application/at+JWT", "application/AT+jwt"));
        assert!(!media_type_eq("application/jwt", "at+jwt"));
        assert!(!media_type_eq("applicatioñ/at+jwt", "at+jwt"));
        // Only the `application/` prefix is optional, not any twelve characters.
        assert!(!media_type_eq("applicatiox/at+jwt", "at+jwt"));
    }

    #[test]
    fn typ_is_needs_a_matching_typ() {
        let p = seg(r#"{"sub":"a"}"#);
        let header = |h: &str| {
            let t = format!("{}.{p}.AA", seg(h));
            UnverifiedJws::parse(&t, 4096).unwrap().header
        };
        assert!(header(r#"{"alg":"ES256","typ":"at+jwt"}"#).typ_is("at+jwt"));
        assert!(!header(r#"{"alg":"ES256","typ":"JWT"}"#).typ_is("at+jwt"));
        assert!(!header(r#"{"alg":"ES256"}"#).typ_is("at+jwt"));
    }

    /// `Debug` shows the header and never the claims or the signature (the token is a secret).
    #[test]
    fn debug_shows_the_header_only() {
        let (signer, _) = key_pair(Alg::ES256);
        let token = signer.sign_jws("at+jwt", &claims()).unwrap();
        let jws = UnverifiedJws::parse(&token, 4096).unwrap();
        let shown = format!("{jws:?}");
        assert!(shown.starts_with("UnverifiedJws"), "{shown}");
        assert!(
            shown.contains("ES256") && shown.contains(signer.kid()),
            "{shown}"
        );
        for part in token.split('.').skip(1) {
            assert!(!shown.contains(part), "{shown}");
        }
        assert!(!shown.contains("alice"), "{shown}");
    }
}
