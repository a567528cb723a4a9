//! The one JWS verification driver, shared by every JWS-based input kind and by client
//! assertions: explicit-typing rule → algorithm allowlist → key lookup in the configured key
//! source (never from the token, RFC 8725 §3.10) → signature → `exp`/`nbf`/`iat` with leeway.
//!
//! What it does not do: choose the trust entry (the engine does, by the kind's `recognizes`),
//! or check issuer, audience and the kind's other claims (the kind does, after this returns).

use super::{ClaimsExt, Rejection, VerifyContext};
use crate::jose::{Alg, Claims, JoseHeader, UnverifiedJws, media_type_eq};
use crate::trust::{KeyLookupError, KeyStore};

/// Which `typ` header values are accepted (RFC 8725 §3.11).
#[derive(Debug, Clone, Copy)]
pub struct TypRule {
    /// Explicit types accepted (compared per RFC 7515 §4.1.9).
    pub explicit: &'static [&'static str],
    /// Whether a token without `typ`, or with the generic `JWT`, is accepted too.
    pub untyped_ok: bool,
}

impl TypRule {
    pub fn check(&self, header: &JoseHeader) -> Result<(), Rejection> {
        let ok = match header.typ.as_deref() {
            None => self.untyped_ok,
            Some(t) => {
                self.explicit.iter().any(|e| media_type_eq(t, e))
                    || (self.untyped_ok && media_type_eq(t, "JWT"))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Rejection::WrongType)
        }
    }
}

/// What one JWS verification is checked against: all from configuration.
#[derive(Debug, Clone, Copy)]
pub struct JwsRules<'a> {
    pub typ: TypRule,
    pub algorithms: &'a [Alg],
    pub keys: &'a KeyStore,
}

/// A JWS whose signature and times checked out.
#[derive(Debug)]
pub struct CheckedJws {
    pub claims: Claims,
    /// Its `exp` (required).
    pub exp: i64,
}

/// Runs the driver over a parsed, unverified JWS.
pub async fn verify_jws(
    jws: UnverifiedJws<'_>,
    rules: JwsRules<'_>,
    ctx: &VerifyContext<'_>,
) -> Result<CheckedJws, Rejection> {
    rules.typ.check(&jws.header)?;
    let alg = jws.header.alg;
    if !rules.algorithms.contains(&alg) {
        return Err(Rejection::AlgNotAllowed);
    }
    let kid = jws.header.kid.as_deref();
    let keys = rules.keys.resolve(kid, alg).await.map_err(|e| match e {
        KeyLookupError::UnknownKey => Rejection::UnknownKey,
        KeyLookupError::NotLoaded => Rejection::KeysUnavailable,
    })?;
    let key = keys.find(kid, alg).ok_or(Rejection::UnknownKey)?;
    let claims = jws.verify(key)?;
    let exp = claims.check_times(ctx)?;
    Ok(CheckedJws { claims, exp })
}
