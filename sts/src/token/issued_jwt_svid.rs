//! Output kind `jwt-svid`: a SPIFFE JWT-SVID (JWT-SVID.md) for a SPIFFE-protected target, so
//! that a workload holding an OAuth token (or another SVID) can call a service that accepts
//! only JWT-SVIDs. Its `sub` (the mapping's, else the subject's) is a canonical SPIFFE ID in a trust domain the profile may issue
//! for (`issue.options.trust_domains`, default ours); `aud` is the target (the request's
//! `audience`/`resource`, one of the profile's `audiences`); the lifetime is short (at most
//! 1h). The header is `alg`, `kid` and `typ: JWT` only, and `alg` must be one of the JWT-SVID
//! algorithms: JWT-SVIDs are signed with keys of their own (ES256, `keys.dir/jwt-svid/`),
//! published apart from our other keys as a SPIFFE bundle (`GET /spiffe/bundle`).
//!
//! Targets accept what we issue only if those keys are in that trust domain's bundle as
//! `jwt-svid` keys: that is the operator's decision (docs/spiffe.md), not this file's.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::jwt_svid::SVID_ALGS;
use super::{
    Draft, KeyPurpose, MintRequest, Minted, Minter, ProfileEnv, audience_value, seal_jws, types,
};
use crate::error::OAuthError;
use crate::keys::Signer;
use crate::workload_id::{Scheme, WorkloadId, check_trust_domain};

/// The `jwt-svid` output kind.
#[derive(Debug, Default)]
pub struct JwtSvidMinter {
    /// Trust domains the profile may issue SPIFFE IDs in.
    trust_domains: Vec<String>,
}

/// `issue.options` of a `jwt-svid` profile.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default)]
    trust_domains: Vec<String>,
}

#[async_trait::async_trait(?Send)]
impl Minter for JwtSvidMinter {
    fn name(&self) -> &'static str {
        "jwt-svid"
    }

    fn issued_token_type(&self) -> &'static str {
        types::JWT
    }

    /// JWT-SVID.md §2.3.
    fn typ(&self) -> &'static str {
        "JWT"
    }

    fn reserved_claims(&self) -> &'static [&'static str] {
        &[]
    }

    /// JWT-SVID.md §3: keep it short.
    fn max_lifetime(&self) -> Duration {
        Duration::from_secs(3600)
    }

    fn configure(&self, p: &ProfileEnv<'_>) -> Result<Option<Arc<dyn Minter>>, Vec<String>> {
        let options: Options = match p.options {
            None => Options::default(),
            Some(v) => {
                serde_json::from_value(v.clone()).map_err(|e| vec![format!("options: {e}")])?
            }
        };
        let mut problems = Vec::new();
        let trust_domains = if options.trust_domains.is_empty() {
            vec![p.trust_domain.to_owned()]
        } else {
            options.trust_domains
        };
        for td in &trust_domains {
            if let Err(e) = check_trust_domain(Scheme::Spiffe, td) {
                problems.push(format!("options.trust_domains: `{td}` {e}"));
            }
        }
        if p.audiences.is_empty() {
            problems.push("audiences: a JWT-SVID names its target: list the audiences".into());
        }
        if problems.is_empty() {
            Ok(Some(Arc::new(Self { trust_domains })))
        } else {
            Err(problems)
        }
    }

    async fn prepare(&self, req: MintRequest<'_, '_>) -> Result<Draft, OAuthError> {
        let r = req.common;
        let mut claims = req.claims;
        // The mapping's `sub` (e.g. a workload's ID computed from a user token), else the
        // subject's. SPIFFE-ID.md: issuers emit canonical IDs only, in a trust domain we
        // issue for.
        let sub = match claims.get("sub").and_then(serde_json::Value::as_str) {
            Some(s) if !s.is_empty() => s.to_owned(),
            _ => r.subject.clone(),
        };
        let id = WorkloadId::parse(&sub)
            .ok()
            .filter(|id| id.scheme() == Scheme::Spiffe)
            .ok_or_else(|| {
                OAuthError::invalid_request("the issued JWT-SVID's sub would not be a SPIFFE ID")
            })?;
        if !self.trust_domains.iter().any(|td| td == id.trust_domain()) {
            return Err(OAuthError::invalid_target(
                "the issued JWT-SVID's sub is not in a trust domain this profile issues for",
            ));
        }
        if r.audience.is_empty() {
            return Err(OAuthError::invalid_target("a JWT-SVID needs an audience"));
        }
        claims.insert("sub".into(), id.as_str().into());
        claims.insert("aud".into(), audience_value(&r.audience));
        claims.insert("iss".into(), r.issuer.clone().into());
        claims.insert("iat".into(), r.issued_at.into());
        claims.insert("exp".into(), r.expires_at.into());
        let id = super::IssuedId::insert_new_jti(&mut claims)?;
        match &r.act {
            Some(act) => claims.insert("act".into(), act.clone()),
            None => claims.remove("act"),
        };
        claims.remove("cnf");
        Ok(Draft {
            claims,
            id,
            expires_at: r.expires_at,
            issued_token_type: types::JWT,
            // JWT-SVID.md §5: presented as `Authorization: Bearer`.
            token_type: "Bearer",
            scope: None,
        })
    }

    /// A key set of its own: what goes into a trust domain's bundle verifies JWT-SVIDs only.
    fn key_purpose(&self) -> KeyPurpose {
        KeyPurpose::JwtSvid
    }

    /// JWT-SVID.md §2.1: only the RS/ES/PS algorithms (our JWT-SVID keys are ES256).
    fn seal(&self, draft: Draft, signer: &Signer) -> Result<Minted, OAuthError> {
        if !SVID_ALGS.contains(&signer.alg()) {
            return Err(OAuthError::server_error(
                "JWT-SVIDs need an RS, ES or PS signing key (keys.dir/jwt-svid holds another)",
            ));
        }
        seal_jws(self.typ(), draft, signer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn configure(options: Option<Value>, audiences: &[String]) -> Result<(), Vec<String>> {
        let env = ProfileEnv {
            options: options.as_ref(),
            audiences,
            subject_types: &[],
            caller_asserted_types: &[],
            trust_domain: "example.com",
        };
        JwtSvidMinter::default().configure(&env).map(|_| ())
    }

    #[test]
    fn options_name_spiffe_trust_domains_and_audiences_are_required() {
        let target = ["spiffe://example.org/reports".to_owned()];
        let td = serde_json::json!({"trust_domains": ["example.org"]});
        assert!(configure(Some(td.clone()), &target).is_ok());
        assert!(configure(None, &target).is_ok());
        assert!(configure(Some(td), &[]).is_err());
        for bad in [
            serde_json::json!({"trust_domains": ["Example.org"]}),
            serde_json::json!({"trust_domains": ["example.org:443"]}),
            serde_json::json!({"domains": ["example.org"]}),
        ] {
            assert!(configure(Some(bad.clone()), &target).is_err(), "{bad}");
        }
    }
}
