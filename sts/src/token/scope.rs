//! Scope narrowing for output kinds that carry a `scope` (design invariant 8): the requested
//! scope must lie within the subject token's; the profile's `issue.scope` may narrow further;
//! the result stays within both. RFC 6749 §3.3 and RFC 8693 §2.1 / §2.2.1.
//!
//! Pure: no I/O, no signing. Called by minters, not by the pipeline.

use crate::error::OAuthError;
use crate::exchange::ExchangeRequest;
use crate::expr::Variables;
use crate::jose::Claims;
use crate::profile::Profile;

use super::ClaimsExt;

/// The scope to issue, or `None` for a token without one.
pub fn decide(
    profile: &Profile,
    subject: &Claims,
    req: &ExchangeRequest,
    vars: &Variables,
) -> Result<Option<String>, OAuthError> {
    let subject_scope = subject.str_claim("scope").ok().flatten().unwrap_or("");
    decide_within(profile, subject_scope, req, vars)
}

/// [`decide`] against a held scope that a trusted source other than the subject token states
/// (e.g. a profile's `subject_scope` for ID tokens, which carry none).
pub fn decide_within(
    profile: &Profile,
    subject_scope: &str,
    req: &ExchangeRequest,
    vars: &Variables,
) -> Result<Option<String>, OAuthError> {
    let held: Vec<&str> = subject_scope.split(' ').filter(|s| !s.is_empty()).collect();
    let requested = req.scope_tokens();
    if let Some(r) = &requested
        && r.iter().any(|s| !held.contains(s))
    {
        return Err(OAuthError::invalid_scope(
            "requested scope exceeds the subject_token's scope",
        ));
    }
    let candidate: String = match &profile.scope {
        None => req
            .scope
            .clone()
            .unwrap_or_else(|| subject_scope.to_owned()),
        Some(e) => match e.eval(vars) {
            Ok(cel::Value::String(s)) => s.as_str().to_owned(),
            Ok(cel::Value::Null) => String::new(),
            Err(e) if crate::expr::is_missing_key(&e) => {
                return Err(OAuthError::invalid_request(
                    "subject_token lacks a claim the exchange profile's scope needs",
                ));
            }
            Ok(_) | Err(_) => {
                tracing::error!(profile = %profile.name, at = %e.loc, "issue.scope did not yield a string");
                return Err(OAuthError::invalid_scope(
                    "the exchange profile could not compute a scope",
                ));
            }
        },
    };
    let mut granted: Vec<&str> = Vec::new();
    for s in candidate.split(' ').filter(|s| !s.is_empty()) {
        // The profile's result must lie within both; say which one it left.
        if !held.contains(&s) {
            return Err(OAuthError::invalid_scope(
                "the exchange profile's scope exceeds the subject_token's scope",
            ));
        }
        if requested.as_ref().is_some_and(|r| !r.contains(&s)) {
            return Err(OAuthError::invalid_scope(
                "the exchange profile's scope includes scope the request did not ask for",
            ));
        }
        if !granted.contains(&s) {
            granted.push(s);
        }
    }
    // RFC 8693 §2.2.1: an absent `scope` in the response means "as requested", so a request
    // whose scope narrows to nothing is refused rather than answered without one.
    if granted.is_empty() && requested.is_some() {
        return Err(OAuthError::invalid_scope(
            "none of the requested scope can be granted",
        ));
    }
    Ok((!granted.is_empty()).then(|| granted.join(" ")))
}
