//! Output kind `access-token`: the RFC 9068 JWT access tokens we issue for one audience or
//! resource. It owns the claims only access tokens carry (`scope`, `client_id`), decides the
//! scope (it only narrows, see `scope`), writes the reserved claims last and self-checks the
//! result; the engine's default `seal` signs it with our key as `at+jwt`.
//!
//! With `issue.options.certificate_bound: true` the token is bound to the TLS client
//! certificate the caller authenticated with (RFC 8705 §3: `cnf.x5t#S256`), and a caller that
//! did not authenticate with mutual TLS gets none.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{Draft, MintRequest, Minter, ProfileEnv, scope, types};
use crate::error::OAuthError;
use crate::jose::Claims;

const TYP: &str = "at+jwt";

/// The `access-token` kind.
#[derive(Debug, Default)]
pub struct AccessTokenMinter {
    /// RFC 8705 §3: bind tokens to the caller's TLS client certificate.
    certificate_bound: bool,
}

/// `issue.options` of an `access-token` profile.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default)]
    certificate_bound: bool,
}

#[async_trait::async_trait(?Send)]
impl Minter for AccessTokenMinter {
    fn name(&self) -> &'static str {
        "access-token"
    }

    fn issued_token_type(&self) -> &'static str {
        types::ACCESS_TOKEN
    }

    fn typ(&self) -> &'static str {
        TYP
    }

    fn reserved_claims(&self) -> &'static [&'static str] {
        &["scope", "client_id"]
    }

    fn max_lifetime(&self) -> Duration {
        Duration::from_secs(24 * 3600)
    }

    fn configure(&self, p: &ProfileEnv<'_>) -> Result<Option<Arc<dyn Minter>>, Vec<String>> {
        let Some(options) = p.options else {
            return Ok(None);
        };
        let o: Options =
            serde_json::from_value(options.clone()).map_err(|e| vec![format!("options: {e}")])?;
        Ok(Some(Arc::new(Self {
            certificate_bound: o.certificate_bound,
        })))
    }

    async fn prepare(&self, req: MintRequest<'_, '_>) -> Result<Draft, OAuthError> {
        // RFC 8705 §3.1: the binding is to the certificate the caller authenticated with.
        let binding = match (&req.caller.certificate_thumbprint, self.certificate_bound) {
            (Some(x5t), true) => Some(json!({ "x5t#S256": x5t })),
            (None, true) => {
                return Err(OAuthError::invalid_request(
                    "this profile issues certificate-bound tokens: authenticate with mutual TLS",
                ));
            }
            (_, false) => None,
        };
        let scope = scope::decide(req.profile, &req.subject.claims, req.request, req.vars)?;
        let r = req.common;
        let mut claims = req.claims;
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
        let id = super::IssuedId::insert_new_jti(&mut claims)?;
        claims.insert("client_id".into(), req.caller.id.clone().into());
        match &scope {
            Some(s) => claims.insert("scope".into(), s.clone().into()),
            None => claims.remove("scope"),
        };
        match &r.act {
            Some(act) => claims.insert("act".into(), act.clone()),
            None => claims.remove("act"),
        };
        match binding {
            Some(cnf) => claims.insert("cnf".into(), cnf),
            None => claims.remove("cnf"),
        };
        self_check(&claims)?;
        Ok(Draft {
            claims,
            id,
            expires_at: r.expires_at,
            issued_token_type: types::ACCESS_TOKEN,
            token_type: "Bearer",
            scope,
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
