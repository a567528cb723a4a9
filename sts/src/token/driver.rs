//! The one JWS verification driver, shared by every JWS-based input kind and by client
//! assertions: explicit-typing rule → algorithm allowlist → key lookup in the configured key
//! source (never from the token, RFC 8725 §3.10) → signature → `exp`/`nbf`/`iat` with leeway.
//!
//! What it does not do: choose the trust entry (the engine does, by the kind's `recognizes`),
//! or check issuer, audience and the kind's other claims (the kind does, after this returns).

use std::sync::Arc;

use super::{ClaimsExt, KindEnv, Presented, Rejection, VerifyContext};
use crate::config::{
    ConfigError, DEFAULT_ALGS, EMPTY_ALGORITHMS, JwksSettings, TrustEntry, check_url,
};
use crate::jose::{Alg, Claims, JoseHeader, UnverifiedJws, media_type_eq};
use crate::trust::{KeyFetch, KeyLookupError, KeyStore, key_fetch};

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

/// A trust entry's `algorithms` as written, or the default (ES256, EdDSA, RS256, PS256); an
/// empty list is an error at its line (no token could ever verify).
pub fn allowed_algorithms(
    entry: &TrustEntry,
    written: Option<Vec<Alg>>,
) -> Result<Vec<Alg>, ConfigError> {
    match written {
        None => Ok(DEFAULT_ALGS.to_vec()),
        Some(list) if list.is_empty() => Err(entry.error("algorithms", EMPTY_ALGORITHMS)),
        Some(list) => Ok(list),
    }
}

/// What every JWS trust entry has: its name, its exact issuer, its alg allowlist and its key
/// source. It recognizes tokens by their unverified `iss` and runs the driver with the kind's
/// `typ` rule; the kind adds its claim rules.
#[derive(Debug)]
pub struct JwsEntry {
    pub trust: Arc<str>,
    pub issuer: String,
    pub algorithms: Vec<Alg>,
    pub keys: KeyStore,
}

impl JwsEntry {
    /// Checks the common settings of a JWS kind's block — `issuer` (a URL), `jwks` (one
    /// source), `algorithms` (default ES256, EdDSA, RS256, PS256) — and builds the key source:
    /// `fetch` when the kind brings its own, else the built-in one for `jwks`.
    pub fn configure(
        entry: &TrustEntry,
        env: &KindEnv<'_>,
        issuer: String,
        algorithms: Option<Vec<Alg>>,
        jwks: &JwksSettings,
        fetch: Option<Box<dyn KeyFetch>>,
    ) -> Result<Self, ConfigError> {
        check_url("", &issuer).map_err(|e| entry.error("issuer", e.0))?;
        jwks.validate("").map_err(|e| entry.error("jwks", e.0))?;
        let algorithms = allowed_algorithms(entry, algorithms)?;
        let fetch = fetch.unwrap_or_else(|| key_fetch(&entry.name, &issuer, jwks, env.http));
        let keys = KeyStore::new(&format!("trust `{}`", entry.name), fetch, &algorithms, jwks);
        Ok(Self {
            trust: Arc::from(entry.name.as_str()),
            issuer,
            algorithms,
            keys,
        })
    }

    /// Whether the token's unverified `iss` is this entry's issuer.
    pub fn recognizes(&self, presented: &Presented<'_>) -> bool {
        presented.unverified_iss() == Some(self.issuer.as_str())
    }

    /// The driver with this entry's allowlist and keys, and the kind's `typ` rule.
    pub async fn verify(
        &self,
        jws: UnverifiedJws<'_>,
        typ: TypRule,
        ctx: &VerifyContext<'_>,
    ) -> Result<CheckedJws, Rejection> {
        let rules = JwsRules {
            typ,
            algorithms: &self.algorithms,
            keys: &self.keys,
        };
        verify_jws(jws, rules, ctx).await
    }
}
