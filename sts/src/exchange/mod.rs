//! The exchange pipeline (design §3): select the profile, verify the subject and actor tokens
//! with the trust sources it accepts, enforce delegation, evaluate conditions and mappings,
//! narrow scope, bound lifetime, mint.
//!
//! Cheap checks run before crypto; `now` is read once by the caller and passed in. The engine
//! rules (act preserved, may_act honoured, scope only narrows, lifetime bounded by the input)
//! live here and in `delegation`, not in profiles. No HTTP types appear here.

pub mod delegation;
pub mod request;

use std::sync::Arc;

use serde::Serialize;
use serde_json::json;

pub use request::{ExchangeRequest, FormParams, TOKEN_EXCHANGE, TypedToken, decode_component};

use crate::app::AppState;
use crate::auth::Caller;
use crate::clock::UnixTime;
use crate::error::OAuthError;
use crate::expr::{Variables, is_missing_key};
use crate::jose::{Claims, b64_encode};
use crate::mapping::MappingError;
use crate::profile::{ActorMode, Profile};
use crate::token::{self, ClaimsExt, Rejection, Reserved, Verified, VerifyContext};
use crate::trust::TrustSource;

/// The RFC 8693 §2.2.1 success response.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub issued_token_type: &'static str,
    pub token_type: &'static str,
    pub expires_in: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field(
                "access_token",
                &crate::secret::fingerprint(self.access_token.as_bytes()),
            )
            .field("issued_token_type", &self.issued_token_type)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Runs one token exchange for an authenticated caller.
pub async fn exchange(
    state: &AppState,
    caller: &Caller,
    req: ExchangeRequest,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    // Step 2: the one profile for (caller, requested type, targets).
    let profile = state.catalog.select(
        &caller.id,
        req.requested_token_type.as_deref(),
        &req.targets,
    )?;
    // The actor rules need no crypto: check them before any signature.
    check_actor_presence(profile, &req)?;
    let ctx = VerifyContext {
        now,
        leeway: state.settings.leeway.as_secs() as i64,
        max_token_bytes: state.settings.limits.max_token_bytes,
    };
    // Step 4: subject and actor, each against the trust sources the profile names for it.
    let subject = verify_input(
        "subject_token",
        &req.subject,
        &profile.subject_sources,
        &ctx,
    )
    .await?;
    let actor = match &req.actor {
        Some(a) => Some(verify_input("actor_token", a, &profile.actor_sources, &ctx).await?),
        None => None,
    };
    let actor_claims = actor.as_ref().map(|a| &a.claims);
    // Step 6: delegation, enforced by the engine.
    delegation::check_may_act(&subject.claims, actor_claims)?;
    let act = delegation::act_claim(&subject.claims, actor_claims);
    // Step 7: conditions, scope and mapping over one set of variables.
    let (caller_v, request_v) = (caller_value(caller), request_value(&req));
    let vars = Variables::from_claims(&subject.claims, actor_claims, &caller_v, &request_v, now);
    check_condition(profile, &vars)?;
    let scope = decide_scope(profile, &subject.claims, &req, &vars)?;
    let mapped = match &profile.mapping {
        Some(m) => m.apply(&vars).map_err(|e| mapping_error(profile, e))?,
        None => Claims::new(),
    };
    // Step 8: reserved claims and signature.
    let expires_at = expiry(profile, &subject.claims, actor_claims, now);
    let reserved = Reserved {
        issuer: state.settings.issuer.clone(),
        subject: subject
            .claims
            .required_str("sub")
            .unwrap_or_default()
            .to_owned(),
        audience: profile.audience_for(&req.targets),
        issued_at: now,
        expires_at,
        jti: new_jti()?,
        client_id: caller.id.clone(),
        scope: scope.clone(),
        act,
    };
    let minted = profile.kind.minter.mint(mapped, &reserved, &state.signer)?;
    log_exchange(profile, caller, &subject, actor_claims, &reserved);
    Ok(TokenResponse {
        access_token: minted.token.into_exposed(),
        issued_token_type: minted.issued_token_type,
        token_type: minted.token_type,
        expires_in: expires_at - now,
        scope,
    })
}

/// RFC 8693 §2.1 leaves actors to policy: the profile says whether one is refused, allowed or
/// required.
fn check_actor_presence(profile: &Profile, req: &ExchangeRequest) -> Result<(), OAuthError> {
    match (&req.actor, profile.actor_mode) {
        (Some(_), ActorMode::Forbidden) => Err(OAuthError::invalid_request(
            "actor_token is not accepted by this exchange profile",
        )),
        (None, ActorMode::Required) => Err(OAuthError::invalid_request(
            "this exchange profile requires an actor_token",
        )),
        _ => Ok(()),
    }
}

/// The one log line of a successful exchange: identifiers only, never a token.
fn log_exchange(
    profile: &Profile,
    caller: &Caller,
    subject: &Verified,
    actor: Option<&Claims>,
    reserved: &Reserved,
) {
    tracing::info!(
        profile = %profile.name,
        caller = %caller.id,
        subject_iss = %subject.source.issuer,
        sub = reserved.subject.as_str(),
        subject_jti = subject.claims.str_claim("jti").ok().flatten().unwrap_or("-"),
        actor_sub = actor.and_then(|a| a.get("sub")).and_then(serde_json::Value::as_str).unwrap_or("-"),
        issued_jti = %reserved.jti,
        exp = reserved.expires_at,
        "token exchanged"
    );
}

async fn verify_input(
    which: &'static str,
    presented: &TypedToken,
    accepted: &[Arc<TrustSource>],
    ctx: &VerifyContext,
) -> Result<Verified, OAuthError> {
    // Validation rules come from the declared type and the profile, never from the token.
    let sources: Vec<Arc<TrustSource>> = accepted
        .iter()
        .filter(|s| {
            token::input_kind(s.kind)
                .token_types
                .contains(&presented.token_type.as_str())
        })
        .cloned()
        .collect();
    if sources.is_empty() {
        return Err(OAuthError::invalid_request(format!(
            "{which}_type is not accepted by this exchange profile"
        )));
    }
    token::verify(&presented.token, &sources, ctx).await.map_err(|r| {
        tracing::info!(input = which, token = %presented.token, reason = %r, "input token rejected");
        match r {
            Rejection::KeysUnavailable => OAuthError::unavailable("the token issuer's keys are not available"),
            // RFC 8693 §2.2.2: an invalid or unacceptable subject/actor token is invalid_request.
            other => OAuthError::invalid_request(format!("{which} rejected: {other}")),
        }
    })
}

/// `caller` as CEL sees it.
fn caller_value(caller: &Caller) -> serde_json::Value {
    json!({"id": caller.id, "method": caller.method.as_str()})
}

/// `request` as CEL sees it (absent strings are "").
fn request_value(req: &ExchangeRequest) -> serde_json::Value {
    json!({
        "audience": req.audience,
        "resource": req.resource,
        "scope": req.scope.as_deref().unwrap_or(""),
        "requested_token_type": req.requested_token_type.as_deref().unwrap_or(""),
        "subject_token_type": req.subject.token_type,
        "actor_token_type": req.actor.as_ref().map_or("", |a| a.token_type.as_str()),
    })
}

fn check_condition(profile: &Profile, vars: &Variables) -> Result<(), OAuthError> {
    let Some(when) = &profile.when else {
        return Ok(());
    };
    match when.eval(vars) {
        Ok(cel::Value::Bool(true)) => Ok(()),
        Ok(_) => Err(OAuthError::invalid_request(
            "subject_token does not meet the exchange profile's conditions",
        )),
        Err(e) if is_missing_key(&e) => Err(OAuthError::invalid_request(
            "subject_token lacks a claim the exchange profile's conditions need",
        )),
        Err(e) => {
            tracing::error!(profile = %profile.name, at = %when.loc, "condition failed: {e}");
            Err(OAuthError::server_error(
                "the exchange profile's condition could not be evaluated",
            ))
        }
    }
}

/// Scope only narrows (design invariant 8): the requested scope must be within the subject's;
/// the profile may narrow further; the result must stay within both.
fn decide_scope(
    profile: &Profile,
    subject: &Claims,
    req: &ExchangeRequest,
    vars: &Variables,
) -> Result<Option<String>, OAuthError> {
    let subject_scope = subject.str_claim("scope").ok().flatten().unwrap_or("");
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
        let within_request = requested.as_ref().is_none_or(|r| r.contains(&s));
        if !held.contains(&s) || !within_request {
            return Err(OAuthError::invalid_scope(
                "the exchange profile would widen the scope",
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

fn mapping_error(profile: &Profile, e: MappingError) -> OAuthError {
    match e {
        MappingError::MissingClaim { at } => {
            tracing::info!(profile = %profile.name, at = %at, "mapping needs a claim the subject lacks");
            OAuthError::invalid_request(
                "subject_token lacks a claim the exchange profile's mapping needs",
            )
        }
        MappingError::Failed { at, why } => {
            tracing::error!(profile = %profile.name, at = %at, "mapping failed: {why}");
            OAuthError::server_error("the exchange profile's mapping failed")
        }
    }
}

/// The issued token's `exp`: the profile's lifetime, cut to the inputs' expiry unless the
/// profile explicitly allows outliving them (design invariant 9).
fn expiry(profile: &Profile, subject: &Claims, actor: Option<&Claims>, now: UnixTime) -> UnixTime {
    let mut exp = now + profile.lifetime_secs;
    if !profile.may_outlive_subject {
        for c in std::iter::once(subject).chain(actor) {
            if let Ok(Some(input_exp)) = c.time_claim("exp") {
                exp = exp.min(input_exp);
            }
        }
    }
    exp.max(now + 1)
}

fn new_jti() -> Result<String, OAuthError> {
    let mut bytes = [0u8; 18];
    aws_lc_rs::rand::fill(&mut bytes).map_err(|_| OAuthError::server_error("no randomness"))?;
    Ok(b64_encode(&bytes))
}
