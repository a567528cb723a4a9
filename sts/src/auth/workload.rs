//! Client authentication by a credential a trust entry reads from the request headers: today a
//! WIT with its WPT, or a WIT-SVID client attestation with its PoP (kind `wit`,
//! `client_authentication: true`). The caller is the verified
//! `sub`, a workload identifier, so profiles authorise workloads by identifier pattern with no
//! per-workload registration.
//!
//! The entry's own verifier does every check (including the proof and its replay); this module
//! only finds the entry and turns the result into a `Caller`. It knows no kind.

use super::{AuthContext, AuthMethod, Caller, failed};
use crate::error::OAuthError;
use crate::secret::Token;
use crate::token::{ClaimsExt, Presented, VerifyContext};

/// The token type label under which a header credential is offered to its verifier.
const HEADER_CREDENTIAL: &str = "(client credential)";

/// `form_client_id`: a `client_id` sent in the form must name the verified workload
/// (attestation-based-client-auth §5.2).
pub async fn authenticate(
    form_client_id: Option<&str>,
    ctx: &AuthContext<'_>,
) -> Result<Caller, OAuthError> {
    for source in ctx.trust.all() {
        let Some(credential) = source.verifier.client_credential(ctx.facts) else {
            continue;
        };
        let token = Token::new(credential.to_owned());
        let presented = Presented::new(&token, HEADER_CREDENTIAL, ctx.max_token_bytes);
        if !source.verifier.recognizes(&presented) {
            continue;
        }
        let vctx = VerifyContext {
            now: ctx.now,
            leeway: ctx.leeway,
            max_token_bytes: ctx.max_token_bytes,
            facts: ctx.facts,
            replay: ctx.replay,
            exchange: ctx.exchange,
            caller: None,
        };
        let verified = source
            .verifier
            .verify(presented, &vctx)
            .await
            .map_err(|r| {
                if r.is_unavailable() {
                    OAuthError::unavailable(format!(
                        "workload credential could not be checked: {r}"
                    ))
                } else {
                    OAuthError::invalid_client(format!("workload credential rejected: {r}"))
                }
            })?;
        let sub = verified
            .claims
            .required_str("sub")
            .map_err(|_| failed("workload credential lacks sub"))?;
        if form_client_id.is_some_and(|id| id != sub) {
            return Err(failed(
                "client_id differs from the workload credential's sub",
            ));
        }
        return Ok(Caller {
            id: sub.to_owned(),
            method: AuthMethod::Workload(source.verifier.client_auth_method()),
            proven_key: verified.proven_key.clone(),
        });
    }
    Err(failed("client authentication is required"))
}
