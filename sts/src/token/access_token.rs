//! OAuth 2.0 JWT access tokens (RFC 9068): verified as subject/actor tokens from `oauth-jwt`
//! trust entries, and minted as the workload access tokens we issue (`issue.kind:
//! access-token`).
//!
//! Verification follows RFC 9068 §4: `typ` is `at+jwt` (unless the entry allows legacy untyped
//! tokens), `iss` exact, `aud` names us, `exp` in the future. Minting writes the reserved claims
//! last and checks the result's shape before signing.

use serde_json::Value;

use super::{
    ClaimsExt, Minted, Minter, Rejection, Reserved, Verifier, VerifyContext, audience_contains,
    types,
};
use crate::error::OAuthError;
use crate::jose::{Claims, JoseHeader};
use crate::keys::Signer;
use crate::secret::Token;
use crate::trust::TrustSource;

const TYP: &str = "at+jwt";

pub struct AccessTokenVerifier;

impl Verifier for AccessTokenVerifier {
    fn check_header(&self, header: &JoseHeader, source: &TrustSource) -> Result<(), Rejection> {
        // RFC 9068 §4 step 1; a legacy IdP may be allowed `JWT` or no typ (RFC 8725 §3.11).
        let legacy = source.allow_untyped
            && header
                .typ
                .as_deref()
                .is_none_or(|t| crate::jose::media_type_eq(t, "JWT"));
        if header.typ_is(TYP) || legacy {
            Ok(())
        } else {
            Err(Rejection::WrongType)
        }
    }

    fn check_claims(
        &self,
        claims: &Claims,
        source: &TrustSource,
        ctx: &VerifyContext,
    ) -> Result<(), Rejection> {
        // RFC 9068 §4 step 3: iss exactly the configured issuer.
        if claims.required_str("iss")? != source.issuer {
            return Err(Rejection::UntrustedIssuer);
        }
        // Step 4 (and RFC 8725 §3.9): aud must name this service.
        if !audience_contains(claims.get("aud"), &source.audience)? {
            return Err(Rejection::WrongAudience);
        }
        // Step 6 with bounded leeway.
        claims.check_times(ctx)?;
        // RFC 9068 §2.2 required claims.
        if claims.required_str("sub")?.is_empty() {
            return Err(Rejection::BadClaim("sub"));
        }
        claims.str_claim("scope")?;
        claims.str_claim("client_id")?;
        claims.str_claim("jti")?;
        for name in ["act", "may_act"] {
            if claims.get(name).is_some_and(|v| !is_actor_object(v)) {
                return Err(Rejection::BadClaim(if name == "act" {
                    "act"
                } else {
                    "may_act"
                }));
            }
        }
        Ok(())
    }
}

/// RFC 8693 §4.1/§4.4: an `act`/`may_act` value is an object whose `sub` (if any) is a string.
fn is_actor_object(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.get("sub").is_none_or(Value::is_string))
}

pub struct AccessTokenMinter;

impl Minter for AccessTokenMinter {
    fn mint(
        &self,
        mut claims: Claims,
        r: &Reserved,
        signer: &Signer,
    ) -> Result<Minted, OAuthError> {
        // RFC 9068 §2.2: iss, exp, aud, sub, client_id, iat, jti — set last, by the engine.
        claims.insert("iss".into(), r.issuer.clone().into());
        if claims
            .get("sub")
            .is_none_or(|s| s.as_str().is_none_or(|s| s.is_empty()))
        {
            claims.insert("sub".into(), r.subject.clone().into());
        }
        claims.insert("aud".into(), audience_value(&r.audience));
        claims.insert("iat".into(), r.issued_at.into());
        claims.insert("exp".into(), r.expires_at.into());
        claims.insert("jti".into(), r.jti.clone().into());
        claims.insert("client_id".into(), r.client_id.clone().into());
        match &r.scope {
            Some(s) => claims.insert("scope".into(), s.clone().into()),
            None => claims.remove("scope"),
        };
        match &r.act {
            Some(act) => claims.insert("act".into(), act.clone()),
            None => claims.remove("act"),
        };
        self_check(&claims)?;
        let jws = signer
            .sign_jws(TYP, &claims)
            .map_err(|_| OAuthError::server_error("token signing failed"))?;
        Ok(Minted {
            token: Token::new(jws),
            issued_token_type: types::ACCESS_TOKEN,
            token_type: "Bearer",
        })
    }
}

/// `aud` as a string when there is one audience, else an array (RFC 7519 §4.1.3).
pub fn audience_value(aud: &[String]) -> Value {
    match aud {
        [one] => Value::String(one.clone()),
        many => Value::Array(many.iter().cloned().map(Value::String).collect()),
    }
}

/// The issued token must be a well-formed RFC 9068 token before it leaves.
fn self_check(c: &Claims) -> Result<(), OAuthError> {
    let bad = || {
        Err(OAuthError::server_error(
            "issued token failed its self-check",
        ))
    };
    let (Some(iat), Some(exp)) = (
        c.get("iat").and_then(Value::as_i64),
        c.get("exp").and_then(Value::as_i64),
    ) else {
        return bad();
    };
    let sub_ok = c
        .get("sub")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty());
    let aud_ok = match c.get("aud") {
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        _ => false,
    };
    if exp <= iat || !sub_ok || !aud_ok {
        return bad();
    }
    Ok(())
}
