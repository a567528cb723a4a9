//! Input kind `oauth-jwt`: OAuth 2.0 JWT access tokens (RFC 9068) from an authorization server,
//! declared as `urn:ietf:params:oauth:token-type:access_token`.
//!
//! Verification follows RFC 9068 §4: `typ` is `at+jwt` (unless the entry allows legacy untyped
//! tokens), the signature is by a key of the configured source, `iss` is exactly the configured
//! issuer, `aud` names us, `exp` is in the future. It applies no profile policy.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ClaimsExt, InputKind, JwsEntry, KindEnv, Presented, Rejection, TypRule, Verified, Verifier,
    VerifyContext, audience_contains, types,
};
use crate::config::{ConfigError, JwksSettings, TrustEntry};
use crate::jose::{Alg, Claims};
use crate::trust::KeyStore;

const TYP: &str = "at+jwt";

/// The `oauth-jwt` kind.
pub struct OauthJwtKind;

/// An `oauth-jwt` trust entry's block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    /// The exact `iss` value (RFC 9068 §4 step 3).
    issuer: String,
    /// `aud` values that name us; a token must carry one. Defaults to our issuer.
    #[serde(default)]
    audience: Vec<String>,
    /// Accepted `alg` values; defaults to ES256, EdDSA, RS256, PS256.
    #[serde(default)]
    algorithms: Option<Vec<Alg>>,
    /// Accept `typ: JWT` (or no `typ`) from a legacy IdP instead of requiring `at+jwt`.
    #[serde(default)]
    allow_untyped: bool,
    jwks: JwksSettings,
}

impl InputKind for OauthJwtKind {
    fn name(&self) -> &'static str {
        "oauth-jwt"
    }

    fn token_types(&self) -> &'static [&'static str] {
        &[types::ACCESS_TOKEN]
    }

    fn sample_claims(&self) -> Claims {
        sample(json!({"scope": "read write", "client_id": "sample-client"}))
    }

    fn configure(
        &self,
        entry: &TrustEntry,
        env: &KindEnv<'_>,
    ) -> Result<Arc<dyn Verifier>, ConfigError> {
        let b: Block = entry.parse_block()?;
        let audience = if b.audience.is_empty() {
            vec![env.our_issuer.to_owned()]
        } else {
            b.audience
        };
        let jws = JwsEntry::configure(entry, env, b.issuer, b.algorithms, &b.jwks, None)?;
        Ok(Arc::new(AccessTokenVerifier {
            jws,
            audience,
            allow_untyped: b.allow_untyped,
        }))
    }
}

/// Typical verified claims over common JWT claims, for load-time CEL checks.
pub(super) fn sample(extra: Value) -> Claims {
    let now = 1_700_000_000;
    let mut c = json!({
        "iss": "https://issuer.example", "sub": "sample-subject", "aud": "https://sts.example",
        "exp": now + 300, "iat": now, "jti": "sample-jti",
    });
    if let (Value::Object(c), Value::Object(e)) = (&mut c, extra) {
        c.extend(e);
    }
    match c {
        Value::Object(m) => m,
        _ => Claims::new(),
    }
}

/// One `oauth-jwt` entry's verifier.
#[derive(Debug)]
struct AccessTokenVerifier {
    jws: JwsEntry,
    audience: Vec<String>,
    allow_untyped: bool,
}

#[async_trait::async_trait]
impl Verifier for AccessTokenVerifier {
    fn recognizes(&self, presented: &Presented<'_>) -> bool {
        self.jws.recognizes(presented)
    }

    async fn verify(
        &self,
        presented: Presented<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Verified, Rejection> {
        // RFC 9068 §4 step 1; a legacy IdP may be allowed `JWT` or no typ (RFC 8725 §3.11).
        let typ = TypRule {
            explicit: &[TYP],
            untyped_ok: self.allow_untyped,
        };
        let checked = self.jws.verify(presented.jws?, typ, ctx).await?;
        let claims = checked.claims;
        // RFC 9068 §4 step 3: iss exactly the configured issuer.
        if claims.required_str("iss")? != self.jws.issuer {
            return Err(Rejection::UntrustedIssuer);
        }
        // Step 4 (and RFC 8725 §3.9): aud must name this service.
        if !audience_contains(claims.get("aud"), &self.audience)? {
            return Err(Rejection::WrongAudience);
        }
        // RFC 9068 §2.2 required claims.
        if claims.required_str("sub")?.is_empty() {
            return Err(Rejection::BadClaim("sub"));
        }
        claims.str_claim("scope")?;
        claims.str_claim("client_id")?;
        claims.str_claim("jti")?;
        check_actor_claims(&claims)?;
        refuse_sender_constrained(&claims)?;
        Ok(Verified {
            claims,
            trust: self.jws.trust.clone(),
            kind: "oauth-jwt",
            proven_key: None,
            asserted_by_caller: false,
        })
    }

    fn issuer(&self) -> &str {
        &self.jws.issuer
    }

    fn keys(&self) -> Option<&KeyStore> {
        Some(&self.jws.keys)
    }

    fn accepts_untyped(&self) -> bool {
        self.allow_untyped
    }
    /// Signature, issuer, audience and times: nothing from the request.
    fn cacheable(&self) -> bool {
        true
    }
}

/// RFC 8693 §4.1/§4.4: `act` and `may_act`, when present, are objects whose `sub` (if any) is
/// a string.
pub(super) fn check_actor_claims(claims: &Claims) -> Result<(), Rejection> {
    let is_actor_object = |v: &Value| {
        v.as_object()
            .is_some_and(|o| o.get("sub").is_none_or(Value::is_string))
    };
    if claims.get("act").is_some_and(|v| !is_actor_object(v)) {
        return Err(Rejection::BadClaim("act"));
    }
    if claims.get("may_act").is_some_and(|v| !is_actor_object(v)) {
        return Err(Rejection::BadClaim("may_act"));
    }
    Ok(())
}

/// A token bound to a key (`cnf`, RFC 7800; DPoP RFC 9449, mTLS RFC 8705) is not a bearer token:
/// kinds that do not check the binding against the request refuse it.
pub(super) fn refuse_sender_constrained(claims: &Claims) -> Result<(), Rejection> {
    if claims.contains_key("cnf") {
        Err(Rejection::SenderConstrained)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Profiles' CEL is checked at load against this sample: it must hold the claims an RFC 9068
    /// access token carries (§2.2), so `subject.scope` or `subject.client_id` type-check.
    #[test]
    fn the_sample_has_the_access_token_claims() {
        let c = OauthJwtKind.sample_claims();
        for name in [
            "iss",
            "sub",
            "aud",
            "exp",
            "iat",
            "jti",
            "scope",
            "client_id",
        ] {
            assert!(c.contains_key(name), "{name}");
        }
        assert_eq!(c["scope"], "read write");
        assert!(c["exp"].as_i64().unwrap() > c["iat"].as_i64().unwrap());
    }
}
