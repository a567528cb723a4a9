//! Client authentication by a credential a trust entry verifies, so that workloads are
//! authorised by identifier pattern with no per-workload registration:
//!
//! - a credential in the request headers the entry's kind declares (a WIT with its WPT, a
//!   WIT-SVID client attestation with its PoP: kind `wit`);
//! - a `client_assertion` of a type the entry names (a JWT-SVID, `jwt-spiffe`: kind
//!   `jwt-svid`);
//! - the TLS client certificate (an X509-SVID, RFC 8705: kind `x509-svid`).
//!
//! The caller is the verified `sub`. The entry's own verifier does every check of the
//! credential (including proofs and their replay); this module finds the entry, applies the
//! rules of client authentication that hold for every such credential (a `client_id` sent
//! must name the verified identity; with mutual TLS it must be sent) and turns the result
//! into a `Caller`. It knows no kind.

use super::{AuthContext, AuthMethod, Caller, failed};
use crate::error::OAuthError;
use crate::secret::Token;
use crate::token::{ClaimsExt, Presented, Rejection, Verified, types};
use crate::trust::TrustSource;

/// `form_client_id`: a `client_id` sent in the form must name the verified workload
/// (attestation-based-client-auth §5.2, RFC 7523 §3).
pub async fn authenticate(
    form_client_id: Option<&str>,
    ctx: &AuthContext<'_>,
) -> Result<Caller, OAuthError> {
    for source in ctx.trust.all() {
        let Some(credential) = source.verifier.client_credential(ctx.facts) else {
            continue;
        };
        let token = Token::new(credential.to_owned());
        let presented = Presented::new(&token, types::CLIENT_CREDENTIAL, ctx.max_token_bytes);
        if !source.verifier.recognizes(&presented) {
            continue;
        }
        let verified = source
            .verifier
            .verify(presented, &ctx.verify_context())
            .await;
        return caller(source, verified, form_client_id, None);
    }
    if ctx.facts.client_certificate.is_some() {
        return authenticate_certificate(form_client_id, ctx).await;
    }
    Err(failed("client authentication is required"))
}

/// A `client_assertion` whose type is not RFC 7523's: the entry that authenticates clients by
/// that type and recognizes the assertion verifies it.
pub async fn authenticate_assertion(
    assertion_type: &str,
    assertion: &Token,
    form_client_id: Option<&str>,
    ctx: &AuthContext<'_>,
) -> Result<Caller, OAuthError> {
    let presented = || Presented::new(assertion, types::CLIENT_CREDENTIAL, ctx.max_token_bytes);
    let mut typed = ctx
        .trust
        .all()
        .filter(|s| s.verifier.client_assertion_type() == Some(assertion_type))
        .peekable();
    if typed.peek().is_none() {
        return Err(failed("unsupported client_assertion_type"));
    }
    let Some(source) = typed.find(|s| s.verifier.recognizes(&presented())) else {
        return Err(match presented().jws {
            Err(e) => OAuthError::invalid_client(format!("client assertion is malformed: {e}")),
            Ok(_) => failed(
                "client assertion is not from a trust domain accepted for client authentication",
            ),
        });
    };
    let verified = source
        .verifier
        .verify(presented(), &ctx.verify_context())
        .await;
    caller(source, verified, form_client_id, None)
}

/// RFC 8705 §2 / spiffe-client-auth §3.2: mutual TLS. The `client_id` MUST be sent and name
/// the certificate's identity; the entry of the certificate's trust domain validates it.
async fn authenticate_certificate(
    form_client_id: Option<&str>,
    ctx: &AuthContext<'_>,
) -> Result<Caller, OAuthError> {
    let Some(certificate) = ctx.facts.client_certificate.as_ref() else {
        return Err(failed("client authentication is required"));
    };
    if form_client_id.is_none() {
        return Err(failed(
            "mutual TLS client authentication needs client_id in the request",
        ));
    }
    let vctx = ctx.verify_context();
    for source in ctx.trust.all() {
        if !source.verifier.authenticates_certificates() {
            continue;
        }
        let Some(verified) = source.verifier.verify_certificate(certificate, &vctx).await else {
            continue;
        };
        return caller(source, verified, form_client_id, certificate.thumbprint());
    }
    Err(failed(
        "client certificate is not from a trust domain accepted for client authentication",
    ))
}

/// The caller a verified credential names, once the form's `client_id` agrees with it.
fn caller(
    source: &TrustSource,
    verified: Result<Verified, Rejection>,
    form_client_id: Option<&str>,
    certificate_thumbprint: Option<String>,
) -> Result<Caller, OAuthError> {
    let verified = verified.map_err(|r| {
        if r.is_unavailable() {
            OAuthError::unavailable(format!("workload credential could not be checked: {r}"))
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
    Ok(Caller {
        id: sub.to_owned(),
        method: AuthMethod::Workload(source.verifier.client_auth_method()),
        proven_key: verified.proven_key.clone(),
        certificate_thumbprint,
    })
}
