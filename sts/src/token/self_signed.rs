//! Input kind `self-signed`: a JWT the requesting workload signed itself, declared as
//! `urn:ietf:params:oauth:token-type:self_signed` (Txn-Token draft §4.3 of our digest).
//!
//! The draft leaves the key open; we bind it to the caller: the token must verify with the key
//! the caller proved in this same request (the `cnf.jwk` of its WIT, proven by its WPT or
//! HTTP signature), its `iss` must be the caller's identity, its `aud` must name us, and `exp`
//! and `iat` must be present and recent. A caller that proved no key cannot present one. No
//! key is ever read from the token. It applies no profile policy and does no I/O.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::oauth_jwt::sample;
use super::{
    ClaimsExt, InputKind, KindEnv, Presented, Rejection, TypRule, Verified, Verifier,
    VerifyContext, audience_contains, types,
};
use crate::config::{ConfigError, TrustEntry};
use crate::jose::{Alg, Claims, parse_jwk_public};

const KIND: &str = "self-signed";

/// The `self-signed` kind.
pub struct SelfSignedKind;

/// A `self-signed` trust entry's block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    /// Accepted `alg` values (default ES256, EdDSA, PS256, RS256).
    #[serde(default)]
    algorithms: Option<Vec<Alg>>,
    /// `aud` values that name us (default: our issuer).
    #[serde(default)]
    audience: Vec<String>,
    /// How old (`iat`) a token may be.
    #[serde(default = "default_max_age", with = "humantime_serde")]
    max_age: Duration,
}

fn default_max_age() -> Duration {
    Duration::from_secs(300)
}

impl InputKind for SelfSignedKind {
    fn name(&self) -> &'static str {
        KIND
    }

    fn token_types(&self) -> &'static [&'static str] {
        &[types::SELF_SIGNED]
    }

    fn sample_claims(&self) -> Claims {
        sample(json!({"iss": "wimse://example.com/gateway", "scope": "read"}))
    }

    fn only_for_output(&self) -> Option<&'static str> {
        Some("txn-token")
    }

    fn configure(
        &self,
        entry: &TrustEntry,
        env: &KindEnv<'_>,
    ) -> Result<Arc<dyn Verifier>, ConfigError> {
        let b: Block = entry.parse_block()?;
        let algorithms = super::driver::allowed_algorithms(entry, b.algorithms)?;
        if b.max_age < Duration::from_secs(1) || b.max_age > Duration::from_secs(3600) {
            return Err(entry.error("max_age", "between 1s and 1h"));
        }
        Ok(Arc::new(SelfSignedVerifier {
            trust: Arc::from(entry.name.as_str()),
            issuer: env.our_issuer.to_owned(),
            audience: if b.audience.is_empty() {
                vec![env.our_issuer.to_owned()]
            } else {
                b.audience
            },
            algorithms,
            max_age: b.max_age.as_secs() as i64,
        }))
    }
}

#[derive(Debug)]
struct SelfSignedVerifier {
    trust: Arc<str>,
    issuer: String,
    audience: Vec<String>,
    algorithms: Vec<Alg>,
    max_age: i64,
}

#[async_trait::async_trait]
impl Verifier for SelfSignedVerifier {
    /// Draft §7.2 step 5: nothing but the caller's authentication backs what this verifies.
    fn caller_asserted(&self) -> bool {
        true
    }

    /// Any JWS: the declared type already says it is self-signed, and the caller's key decides.
    fn recognizes(&self, presented: &Presented<'_>) -> bool {
        presented.jws.is_ok()
    }

    async fn verify(
        &self,
        presented: Presented<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Verified, Rejection> {
        let jws = presented.jws?;
        let caller = ctx.caller.ok_or(Rejection::Caller(
            "a self_signed token needs an authenticated caller",
        ))?;
        let proven = caller.proven_key.as_ref().ok_or(Rejection::Caller(
            "a self_signed token is accepted only from a caller that proved a key in this request",
        ))?;
        // No explicit type is defined for these tokens: `JWT` or none.
        TypRule {
            explicit: &[],
            untyped_ok: true,
        }
        .check(&jws.header)?;
        let alg = jws.header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(Rejection::AlgNotAllowed);
        }
        let key = parse_jwk_public(&proven.jwk, &[alg])
            .ok()
            .and_then(|keys| keys.into_iter().next())
            .ok_or(Rejection::Kind(
                "the self_signed token is not signed with the key the caller proved",
            ))?;
        let claims = jws.verify(&key)?;
        claims.check_times(ctx)?;
        // The signer is the caller: `iss` is its identity, byte for byte.
        if claims.required_str("iss")? != caller.id {
            return Err(Rejection::Caller(
                "a self_signed token's iss must be the authenticated caller",
            ));
        }
        if !audience_contains(claims.get("aud"), &self.audience)? {
            return Err(Rejection::WrongAudience);
        }
        let iat = claims
            .time_claim("iat")?
            .ok_or(Rejection::MissingClaim("iat"))?;
        if ctx.now.saturating_sub(iat) > self.max_age {
            return Err(Rejection::Kind("the self_signed token is too old (iat)"));
        }
        if claims.required_str("sub")?.is_empty() {
            return Err(Rejection::BadClaim("sub"));
        }
        claims.str_claim("scope")?;
        super::unsigned_json::refuse_delegation_and_binding(&claims)?;
        Ok(Verified {
            claims,
            trust: self.trust.clone(),
            kind: KIND,
            proven_key: None,
            asserted_by_caller: true,
        })
    }

    fn issuer(&self) -> &str {
        &self.issuer
    }
}
