//! `private_key_jwt`: RFC 7523 §3 JWT client assertions, with RFC 7523bis audience rules.

use serde_json::Value;

use super::{AuthContext, AuthMethod, Caller, ClientRegistry, failed};
use crate::error::OAuthError;
use crate::jose::UnverifiedJws;
use crate::secret::Token;
use crate::token::{CheckedJws, ClaimsExt, JwsRules, Rejection, TypRule, verify_jws};

/// 7523bis §3: explicit typing SHOULD be used but is not required of the client; any other
/// explicit type is a different kind of JWT and is refused (RFC 8725 §3.12).
const ASSERTION_TYP: TypRule = TypRule {
    explicit: &["client-authentication+jwt"],
    untyped_ok: true,
};

/// The longest an assertion may still be valid when we see it; bounds replay memory.
const MAX_ASSERTION_LIFETIME: i64 = 300;

pub(super) async fn authenticate(
    registry: &ClientRegistry,
    assertion: &Token,
    form_client_id: Option<&str>,
    ctx: &AuthContext<'_>,
) -> Result<Caller, OAuthError> {
    let jws = UnverifiedJws::parse(assertion.expose(), ctx.max_token_bytes)
        .map_err(|e| OAuthError::invalid_client(format!("client assertion is malformed: {e}")))?;
    // Refuse a wrong explicit type before any lookup.
    ASSERTION_TYP
        .check(&jws.header)
        .map_err(|_| failed("client assertion has the wrong typ"))?;
    let c = &jws.unverified_claims;
    let (Ok(iss), Ok(sub)) = (c.required_str("iss"), c.required_str("sub")) else {
        return Err(failed("client assertion lacks iss or sub"));
    };
    // RFC 7523 §3: for client authentication sub (and iss) is the client_id.
    if iss != sub || form_client_id.is_some_and(|id| id != sub) {
        return Err(failed("client assertion iss, sub and client_id disagree"));
    }
    let (client, store, algorithms) = registry
        .keys_of(sub)
        .ok_or_else(|| failed("client is not registered for private_key_jwt"))?;
    // The one verification driver: alg allowlist, key lookup, signature, times.
    let rules = JwsRules {
        typ: ASSERTION_TYP,
        algorithms,
        keys: store,
    };
    let vctx = ctx.verify_context();
    let CheckedJws { claims, exp } = verify_jws(jws, rules, &vctx).await.map_err(|r| match r {
        Rejection::KeysUnavailable => OAuthError::unavailable("client keys are unavailable"),
        Rejection::AlgNotAllowed => failed("client assertion algorithm is not accepted"),
        Rejection::UnknownKey => failed("client assertion key is unknown"),
        Rejection::Jose(_) => failed("client assertion signature is invalid"),
        Rejection::WrongType => failed("client assertion has the wrong typ"),
        other => OAuthError::invalid_client(format!("client assertion rejected: {other}")),
    })?;
    // 7523bis: aud is our issuer identifier as the sole value.
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => a == ctx.issuer,
        Some(Value::Array(a)) => a.len() == 1 && a[0].as_str() == Some(ctx.issuer),
        _ => false,
    };
    if !aud_ok {
        return Err(failed(
            "client assertion audience must be the issuer identifier alone",
        ));
    }
    if exp > ctx.now + MAX_ASSERTION_LIFETIME + ctx.leeway {
        return Err(failed("client assertion lifetime is too long"));
    }
    let jti = claims
        .str_claim("jti")
        .ok()
        .flatten()
        .filter(|j| !j.is_empty())
        .ok_or_else(|| failed("client assertion lacks jti"))?;
    let key = format!("client-assertion\u{0}{}\u{0}{jti}", client.id);
    match ctx.replay.first_use(&key, exp + ctx.leeway, ctx.now).await {
        Ok(true) => {}
        Ok(false) => return Err(failed("client assertion was already used")),
        Err(_) => return Err(OAuthError::unavailable("replay store is unavailable")),
    }
    Ok(Caller {
        id: client.id.clone(),
        method: AuthMethod::PrivateKeyJwt,
        proven_key: None,
        certificate_thumbprint: None,
    })
}
