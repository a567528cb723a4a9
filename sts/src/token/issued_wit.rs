//! Output kind `wit`: a Workload Identity Token we issue (draft-ietf-wimse-workload-creds),
//! bound to a key the caller proved it holds in this request — its own WIT's key (WIT client
//! authentication) or the subject or actor WIT's key (proven by the request's WPT). Used for a
//! gateway-attested workload getting its WIT, and for egress identity generalization (an
//! instance identity exchanged for a service identity, the mapping computing `sub`).
//!
//! The profile's `audiences` are the Workload Identifier Origins it may issue identities in
//! (`wimse://example.com`, identifier §3.3: scheme and trust domain); the request's `audience`
//! names one. The WIT carries no `aud`. Its `sub` must be a canonical workload
//! identifier in that trust domain; the engine's `sub` (the subject's) is used when the mapping
//! writes none. It is never issued without a proven key.

use std::time::Duration;

use serde_json::{Value, json};

use super::{Draft, MintRequest, Minter, ProvenKey, types};
use crate::error::OAuthError;
use crate::workload_id::WorkloadId;

/// The `wit` output kind.
pub struct WitMinter;

#[async_trait::async_trait(?Send)]
impl Minter for WitMinter {
    fn name(&self) -> &'static str {
        "wit"
    }

    fn issued_token_type(&self) -> &'static str {
        types::JWT
    }

    fn typ(&self) -> &'static str {
        super::WIT_TYP
    }

    fn reserved_claims(&self) -> &'static [&'static str] {
        &[]
    }

    /// WITs are short-lived, "on the order of hours" (workload-creds §3.1).
    fn max_lifetime(&self) -> Duration {
        Duration::from_secs(24 * 3600)
    }

    async fn prepare(&self, req: MintRequest<'_, '_>) -> Result<Draft, OAuthError> {
        let r = req.common;
        let proven = proven_key(&req).cloned().ok_or_else(|| {
            OAuthError::invalid_request(
                "a WIT is issued only for a key the caller proves in this request",
            )
        })?;
        let mut claims = req.claims;
        let sub = match claims.get("sub").and_then(Value::as_str) {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => r.subject.clone(),
        };
        // identifier §3.1: issuers emit canonical identifiers only, in a trust domain this
        // profile issues for (the request's audience, else the profile's first).
        let id = WorkloadId::parse(&sub).map_err(|_| {
            OAuthError::invalid_request(
                "the issued WIT's sub would not be a canonical workload identifier",
            )
        })?;
        let origin = format!("{}://{}", id.scheme().as_str(), id.trust_domain());
        if !r.audience.contains(&origin) {
            return Err(OAuthError::invalid_target(
                "the issued WIT's sub is not in a trust domain this profile issues for",
            ));
        }
        claims.insert("sub".into(), sub.into());
        claims.insert("iss".into(), r.issuer.clone().into());
        // Never beyond the credential that binds the key to its holder.
        let expires_at = r.expires_at.min(proven.until);
        if expires_at <= r.issued_at {
            return Err(OAuthError::invalid_request(
                "the credential that proved the key has expired",
            ));
        }
        claims.insert("iat".into(), r.issued_at.into());
        claims.insert("exp".into(), expires_at.into());
        let id = super::IssuedId::insert_new_jti(&mut claims)?;
        claims.insert("cnf".into(), json!({ "jwk": proven.jwk }));
        claims.remove("aud");
        match &r.act {
            Some(act) => claims.insert("act".into(), act.clone()),
            None => claims.remove("act"),
        };
        Ok(Draft {
            claims,
            id,
            expires_at,
            issued_token_type: types::JWT,
            token_type: "N_A",
            scope: None,
        })
    }
}

/// The key this request proved: the client's own (WIT client authentication), else the
/// subject's, else the actor's. The input kind kept only its public members.
fn proven_key<'r>(req: &'r MintRequest<'_, '_>) -> Option<&'r ProvenKey> {
    req.caller
        .proven_key
        .as_ref()
        .or(req.subject.proven_key.as_ref())
        .or(req.actor.and_then(|a| a.proven_key.as_ref()))
}
