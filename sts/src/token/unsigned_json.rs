//! Input kind `unsigned-json`: a JSON object naming the subject, unsigned, declared as
//! `urn:ietf:params:oauth:token-type:unsigned_json` (Txn-Token draft §4.3 of our digest).
//!
//! Nothing but the caller's authentication backs it, so the entry names the callers that may
//! present one (exact or whole-segment prefix patterns) and every other caller is refused; a
//! profile must also accept the entry. The object is parsed strictly (no duplicate members,
//! bounded size and depth), `sub` is required, and an `exp` in the past is refused; without
//! `exp`, it is treated as expiring `lifetime` after the request. It applies no profile policy
//! and does no I/O.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::json;

use super::oauth_jwt::sample;
use super::{
    ClaimsExt, InputKind, KindEnv, Presented, Rejection, Verified, Verifier, VerifyContext, types,
};

/// What a caller asserts on its own word may not carry delegation (`act`, `may_act`) or a key
/// binding (`cnf`): the engine would carry them into what it signs.
pub(super) fn refuse_delegation_and_binding(claims: &Claims) -> Result<(), Rejection> {
    for name in ["act", "may_act", "cnf"] {
        if claims.contains_key(name) {
            return Err(Rejection::BadClaim(name));
        }
    }
    Ok(())
}
use crate::config::{ConfigError, TrustEntry};
use crate::jose::{Claims, JoseError, parse_object};
use crate::profile::CallerPattern;

const KIND: &str = "unsigned-json";

/// The `unsigned-json` kind.
pub struct UnsignedJsonKind;

/// An `unsigned-json` trust entry's block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    /// The callers that may present unsigned subjects (required, at least one).
    callers: Vec<String>,
    /// How long a subject without `exp` counts as valid.
    #[serde(default = "default_lifetime", with = "humantime_serde")]
    lifetime: Duration,
}

fn default_lifetime() -> Duration {
    Duration::from_secs(60)
}

impl InputKind for UnsignedJsonKind {
    fn name(&self) -> &'static str {
        KIND
    }

    fn token_types(&self) -> &'static [&'static str] {
        &[types::UNSIGNED_JSON]
    }

    fn sample_claims(&self) -> Claims {
        sample(json!({"scope": "read"}))
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
        if b.callers.is_empty() {
            return Err(entry.error(
                "callers",
                "name at least one caller: unsigned subjects are accepted only from callers listed here",
            ));
        }
        let callers = b
            .callers
            .iter()
            .enumerate()
            .map(|(i, c)| {
                CallerPattern::parse(c).map_err(|m| entry.error(&format!("callers[{i}]"), m))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if b.lifetime < Duration::from_secs(1) || b.lifetime > Duration::from_secs(600) {
            return Err(entry.error("lifetime", "between 1s and 10m"));
        }
        Ok(Arc::new(UnsignedJsonVerifier {
            trust: Arc::from(entry.name.as_str()),
            issuer: env.our_issuer.to_owned(),
            callers,
            lifetime: b.lifetime.as_secs() as i64,
        }))
    }
}

#[derive(Debug)]
struct UnsignedJsonVerifier {
    trust: Arc<str>,
    issuer: String,
    callers: Vec<CallerPattern>,
    lifetime: i64,
}

#[async_trait::async_trait]
impl Verifier for UnsignedJsonVerifier {
    /// Draft §7.2 step 5: nothing but the caller's authentication backs what this verifies.
    fn caller_asserted(&self) -> bool {
        true
    }

    fn recognizes(&self, presented: &Presented<'_>) -> bool {
        presented.token.expose().trim_start().starts_with('{')
    }

    async fn verify(
        &self,
        presented: Presented<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Verified, Rejection> {
        let caller = ctx.caller.ok_or(Rejection::Caller(
            "an unsigned_json token needs an authenticated caller",
        ))?;
        if !self.callers.iter().any(|p| p.matches(&caller.id)) {
            return Err(Rejection::Caller(
                "this caller may not present unsigned_json subject tokens",
            ));
        }
        let text = presented.token.expose();
        if text.len() > ctx.max_token_bytes {
            return Err(Rejection::Jose(JoseError::Oversized));
        }
        let mut claims = parse_object(text.as_bytes()).map_err(JoseError::BadClaims)?;
        if claims.required_str("sub")?.is_empty() {
            return Err(Rejection::BadClaim("sub"));
        }
        claims.str_claim("scope")?;
        refuse_delegation_and_binding(&claims)?;
        // Never signed, so never "forever": an expiry is always set.
        if claims.time_claim("exp")?.is_none() {
            claims.insert("exp".into(), ctx.now.saturating_add(self.lifetime).into());
        }
        claims.check_times(ctx)?;
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
