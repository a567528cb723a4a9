//! The exchange pipeline (design §3): one typed token request in; authenticate the caller,
//! select the profile, verify the subject and actor tokens through their kinds, enforce
//! delegation, evaluate conditions and the mapping, bound the lifetime, and hand the result to
//! the profile's output kind to mint.
//!
//! Cheap checks run before crypto; `now` is read once by the caller and passed in; the request
//! takes the live snapshot once. The engine rules (act preserved, may_act honoured, lifetime
//! bounded by the inputs) live here and in `delegation`, not in profiles. Nothing here is
//! specific to one token kind, and no HTTP types appear here.

pub mod delegation;
pub mod grant;
pub mod request;
pub mod subject_cache;

use serde::Serialize;
use serde_json::json;

pub use grant::{GRANT_TYPES, Grant, TOKEN_EXCHANGE};
pub use request::{
    ExchangeRequest, FormParams, TypedToken, check_scope, decode_component, parse_basic,
};
pub use subject_cache::SubjectCache;

use std::sync::Arc;

use crate::app::{AppState, Snapshot};
use crate::auth::{AuthContext, Caller, ClientCredentials};
use crate::clock::UnixTime;
use crate::error::OAuthError;
use crate::expr::{Variables, is_missing_key};
use crate::jose::Claims;
use crate::mapping::MappingError;
use crate::profile::{ActorMode, Profile};
use crate::store::{ReplayGuard, RequestReplay};
use crate::telemetry;
use crate::token::{
    ClaimsExt, CommonClaims, Draft, MintRequest, Minted, Presented, Rejection, RequestFacts,
    Verified, VerifyContext,
};
use crate::trust::TrustSource;

/// One token request, fully typed before any logic runs: the client's credentials as
/// presented, the grant with its parameters, and the request facts proofs need.
#[derive(Debug)]
pub struct TokenRequest {
    pub credentials: ClientCredentials,
    pub grant: Grant,
    pub facts: RequestFacts,
}

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

/// Handles one token request against the snapshot it started with.
pub async fn handle(
    state: &AppState,
    snap: &Snapshot,
    req: TokenRequest,
    now: UnixTime,
) -> Result<TokenResponse, OAuthError> {
    let limits = &snap.settings.limits;
    // What a proof may bind: the grant's tokens.
    let Grant::TokenExchange(exchange) = &req.grant;
    // A proof checked for the client credential may be checked again for the same WIT as
    // subject within this request; across requests it is single use.
    let replay = RequestReplay::new(state.replay.as_ref());
    let auth = AuthContext {
        issuer: &snap.settings.issuer,
        now,
        leeway: snap.settings.leeway.as_secs() as i64,
        max_token_bytes: limits.max_token_bytes,
        replay: &replay,
        facts: &req.facts,
        secret_checks: &state.secret_checks,
        throttle: &state.throttle,
        limits: &snap.settings.client_auth,
        trust: &snap.trust,
        exchange: Some(exchange),
    };
    let caller = snap.clients.authenticate(req.credentials, &auth).await?;
    telemetry::record(telemetry::field::CALLER, &caller.id);
    match &req.grant {
        Grant::TokenExchange(x) => {
            let mut trace = Trace::default();
            let ctx = verify_context(snap, &req.facts, &replay, now);
            token_exchange(snap, &state.subjects, &caller, x, ctx, &mut trace)
                .await
                .inspect_err(|e| {
                    tracing::info!(
                        caller = caller.id.as_str(),
                        profile = trace.profile.unwrap_or("-"),
                        condition = trace.condition.as_deref().unwrap_or("-"),
                        error = %e.code,
                        reason = %e.description,
                        "exchange refused"
                    );
                })
        }
    }
}

/// What a refusal's log line says besides the error: the profile that was considered and, when
/// its `when` returned false, that condition (`file:line: expression`).
#[derive(Debug, Default)]
pub struct Trace<'a> {
    pub profile: Option<&'a str>,
    pub condition: Option<String>,
}

/// Runs one RFC 8693 token exchange for an authenticated caller; `trace` learns the profile
/// considered and a condition that refused.
pub async fn token_exchange<'s>(
    snap: &'s Snapshot,
    subjects: &SubjectCache,
    caller: &Caller,
    req: &ExchangeRequest,
    ctx: VerifyContext<'_>,
    trace: &mut Trace<'s>,
) -> Result<TokenResponse, OAuthError> {
    let now = ctx.now;
    let profile = choose(snap, caller, req, trace)?;
    // Step 4: subject and actor, each against the trust sources the profile names for it.
    let ctx = VerifyContext {
        exchange: Some(req),
        caller: Some(caller),
        ..ctx
    };
    let subject = verify_subject(subjects, &req.subject, &profile.subject_sources, &ctx).await?;
    let actor = match &req.actor {
        Some(a) => Some(verify_input("actor_token", a, &profile.actor_sources, &ctx).await?),
        None => None,
    };
    let Decision { draft, common } = decide(
        snap,
        profile,
        caller,
        req,
        &subject,
        actor.as_ref(),
        now,
        trace,
    )
    .await?;
    // A kind may shorten the engine's lifetime (a key's credential ends sooner), never extend it.
    let minted_exp = draft.expires_at.min(common.expires_at);
    let signer = snap
        .signer_for(profile.kind.key_purpose())
        .ok_or_else(|| OAuthError::server_error("token signing failed"))?;
    let minted = profile.kind.seal(draft, signer)?;
    telemetry::record(telemetry::field::ISSUED_ID, &minted.id.value);
    log_exchange(
        profile,
        caller,
        &subject,
        actor.as_ref().map(|a| &a.claims),
        &minted,
        minted_exp,
    );
    Ok(TokenResponse {
        access_token: minted.token.into_exposed(),
        issued_token_type: minted.issued_token_type,
        token_type: minted.token_type,
        expires_in: minted_exp - now,
        scope: minted.scope,
    })
}

/// Step 2: the one profile for (caller, subject token type, requested type, targets), and the
/// actor rules that need no crypto.
pub fn choose<'s>(
    snap: &'s Snapshot,
    caller: &Caller,
    req: &ExchangeRequest,
    trace: &mut Trace<'s>,
) -> Result<&'s Profile, OAuthError> {
    let profile = snap.catalog.select(
        &caller.id,
        &req.subject.token_type,
        req.requested_token_type.as_deref(),
        &req.targets,
    )?;
    trace.profile = Some(&profile.name);
    telemetry::record(telemetry::field::PROFILE, &profile.name);
    check_actor_presence(profile, req)?;
    profile.kind.check_request(req)?;
    Ok(profile)
}

/// What verifiers need besides the token.
pub fn verify_context<'a>(
    snap: &Snapshot,
    facts: &'a RequestFacts,
    replay: &'a dyn ReplayGuard,
    now: UnixTime,
) -> VerifyContext<'a> {
    VerifyContext {
        now,
        leeway: snap.settings.leeway.as_secs() as i64,
        max_token_bytes: snap.settings.limits.max_token_bytes,
        facts,
        replay,
        exchange: None,
        caller: None,
    }
}

/// What the engine decided for verified inputs: the claims to issue (unsigned) and the
/// engine's own claims.
#[derive(Debug)]
pub struct Decision {
    pub draft: Draft,
    pub common: CommonClaims,
}

/// Steps 6–8 for verified inputs: delegation, the profile's condition and mapping, the
/// lifetime, and the output kind's claims. Signs nothing.
#[allow(clippy::too_many_arguments)]
pub async fn decide(
    snap: &Snapshot,
    profile: &Profile,
    caller: &Caller,
    req: &ExchangeRequest,
    subject: &Verified,
    actor: Option<&Verified>,
    now: UnixTime,
    trace: &mut Trace<'_>,
) -> Result<Decision, OAuthError> {
    let actor_claims = actor.map(|a| &a.claims);
    // Step 6: delegation, enforced by the engine.
    delegation::check_actor_chain(actor_claims, profile.chained_actors)?;
    delegation::check_may_act(&subject.claims, actor_claims)?;
    let act = delegation::act_claim(&subject.claims, actor_claims);
    // Step 7: conditions and mapping over one set of variables.
    let (caller_v, request_v) = (caller_value(caller), request_value(req));
    let vars = Variables::from_claims(&subject.claims, actor_claims, &caller_v, &request_v, now);
    if let Err(e) = check_condition(profile, &vars) {
        trace.condition = profile.when.as_ref().map(|w| w.described.clone());
        return Err(e);
    }
    let mapped = match &profile.mapping {
        Some(m) => m.apply(&vars).map_err(|e| mapping_error(profile, e))?,
        None => Claims::new(),
    };
    // Step 8: the engine's claims, then the output kind's.
    let expires_at = expiry(profile, &subject.claims, actor_claims, now)?;
    let common = CommonClaims {
        issuer: snap.settings.issuer.clone(),
        subject: subject
            .claims
            .required_str("sub")
            .unwrap_or_default()
            .to_owned(),
        audience: profile.audience_for(&req.targets),
        issued_at: now,
        expires_at,
        act,
    };
    let draft = profile
        .kind
        .prepare(MintRequest {
            claims: mapped,
            common: &common,
            subject,
            actor,
            caller,
            request: req,
            profile,
            vars: &vars,
        })
        .await?;
    Ok(Decision { draft, common })
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
    minted: &Minted,
    exp: UnixTime,
) {
    // Every field a string, quoted and escaped like the subject's claims (and written
    // without `Debug` formatting when nothing needs escaping: `log_format`).
    tracing::info!(
        profile = profile.name.as_str(),
        caller = caller.id.as_str(),
        trust = &*subject.trust,
        subject_iss = str_or_dash(&subject.claims, "iss"),
        sub = str_or_dash(&subject.claims, "sub"),
        subject_jti = str_or_dash(&subject.claims, "jti"),
        actor_sub = actor.map_or("-", |a| str_or_dash(a, "sub")),
        issued_claim = minted.id.claim,
        issued_id = minted.id.value.as_str(),
        exp,
        "token exchanged"
    );
}

/// A string claim for a log line, `-` when absent or not a string.
fn str_or_dash<'c>(claims: &'c Claims, name: &'static str) -> &'c str {
    claims.str_claim(name).ok().flatten().unwrap_or("-")
}

/// Verifies a subject or actor token with the first of the profile's accepted trust entries
/// (in the profile's order) whose kind takes its declared type and that recognizes it.
/// Validation rules come from the declared type and the profile, never from the token.
pub async fn verify_input(
    which: &'static str,
    presented: &TypedToken,
    accepted: &[Arc<TrustSource>],
    ctx: &VerifyContext<'_>,
) -> Result<Verified, OAuthError> {
    verify_typed(which, presented, accepted, ctx)
        .await
        .map(|(v, _)| v)
}

/// [`verify_input`] for the subject through the verified-subject cache: a token a cacheable
/// entry this profile accepts has verified before is not verified again (see `subject_cache`).
pub async fn verify_subject(
    cache: &SubjectCache,
    presented: &TypedToken,
    accepted: &[Arc<TrustSource>],
    ctx: &VerifyContext<'_>,
) -> Result<Arc<Verified>, OAuthError> {
    if !cache.is_enabled() {
        return verify_input("subject_token", presented, accepted, ctx)
            .await
            .map(Arc::new);
    }
    let key = SubjectCache::key(&presented.token_type, presented.token.expose());
    let token_type = presented.token_type.as_str();
    let candidates = accepted.iter().filter(|s| s.accepts_type(token_type));
    if let Some(hit) = cache.get(&key, candidates, ctx.now) {
        return Ok(hit);
    }
    let (verified, by) = verify_typed("subject_token", presented, accepted, ctx).await?;
    let verified = Arc::new(verified);
    if let Some((source, generation)) = by {
        cache.put(key, source, generation, verified.clone(), ctx.now);
    }
    Ok(verified)
}

/// The verification, and which source made it with its key generation before verifying (keys
/// that change meanwhile invalidate it).
async fn verify_typed<'s>(
    which: &'static str,
    presented: &TypedToken,
    accepted: &'s [Arc<TrustSource>],
    ctx: &VerifyContext<'_>,
) -> Result<(Verified, Option<(&'s TrustSource, u64)>), OAuthError> {
    let token_type = presented.token_type.as_str();
    let candidates = || accepted.iter().filter(|s| s.accepts_type(token_type));
    if candidates().next().is_none() {
        return Err(OAuthError::invalid_request(format!(
            "{which}_type is not accepted by this exchange profile"
        )));
    }
    let parsed = Presented::new(&presented.token, token_type, ctx.max_token_bytes);
    // Entries that recognize a token by its content first; catch-all entries (introspection)
    // only when none of those does, whatever the profile's order.
    let source = candidates()
        .find(|s| !s.verifier.is_fallback() && s.verifier.recognizes(&parsed))
        .or_else(|| {
            candidates().find(|s| s.verifier.is_fallback() && s.verifier.recognizes(&parsed))
        });
    let result = match source {
        Some(s) => {
            let generation = s.verifier.keys().map_or(0, |k| k.generation());
            s.verifier
                .verify(parsed, ctx)
                .await
                .map(|v| (v, Some((&**s, generation))))
        }
        None => Err(match parsed.jws {
            Err(jose) => Rejection::Jose(jose),
            Ok(_) => Rejection::UntrustedIssuer,
        }),
    };
    result.map_err(|r| {
        tracing::info!(input = which, token = %presented.token, reason = %r, "input token rejected");
        // RFC 8693 §2.2.2: an invalid or unacceptable subject/actor token is invalid_request;
        // an upstream we depend on being down is not the token's fault (invariant 12).
        if r.is_unavailable() {
            OAuthError::unavailable(format!("{which} could not be checked: {r}"))
        } else if r.is_about_caller() {
            OAuthError::invalid_request(format!("{which} rejected: {r}"))
        } else {
            OAuthError::invalid_request(format!("{which} rejected: {r}")).about_input(which)
        }
    })
}

/// `caller` as CEL sees it.
pub fn caller_value(caller: &Caller) -> serde_json::Value {
    json!({"id": caller.id, "method": caller.method.as_str()})
}

/// `request` as CEL sees it (absent strings are ""). Built member by member: cloning the
/// context objects directly is cheaper than serializing them into a new value.
pub fn request_value(req: &ExchangeRequest) -> serde_json::Value {
    use serde_json::{Map, Value};
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    let text = |s: Option<&str>| Value::String(s.unwrap_or("").to_owned());
    let object = |o: &Option<Claims>| o.clone().map_or(Value::Null, Value::Object);
    let mut m = Map::new();
    m.insert("audience".into(), strings(&req.audience));
    m.insert("resource".into(), strings(&req.resource));
    m.insert("scope".into(), text(req.scope.as_deref()));
    m.insert(
        "requested_token_type".into(),
        text(req.requested_token_type.as_deref()),
    );
    m.insert(
        "subject_token_type".into(),
        text(Some(&req.subject.token_type)),
    );
    m.insert(
        "actor_token_type".into(),
        text(req.actor.as_ref().map(|a| a.token_type.as_str())),
    );
    m.insert("request_context".into(), object(&req.request_context));
    m.insert("request_details".into(), object(&req.request_details));
    Value::Object(m)
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
/// profile explicitly allows outliving them (design invariant 9). An input whose `exp` has
/// already passed — accepted by the verifier only thanks to the clock-skew leeway — is refused:
/// nothing is issued on an expired token.
fn expiry(
    profile: &Profile,
    subject: &Claims,
    actor: Option<&Claims>,
    now: UnixTime,
) -> Result<UnixTime, OAuthError> {
    let mut exp = now.saturating_add(profile.lifetime_secs);
    for (which, claims) in [("subject_token", Some(subject)), ("actor_token", actor)] {
        let Some(claims) = claims else {
            continue;
        };
        // Every kind must give its tokens an expiry; a kind that did not is refused here, so
        // nothing is issued without a bound.
        let input_exp = match claims.time_claim("exp") {
            Ok(Some(exp)) => exp,
            Ok(None) => {
                return Err(OAuthError::invalid_request(format!(
                    "{which} rejected: token lacks a required claim: exp"
                ))
                .about_input(which));
            }
            Err(r) => {
                return Err(
                    OAuthError::invalid_request(format!("{which} rejected: {r}"))
                        .about_input(which),
                );
            }
        };
        if input_exp <= now {
            return Err(
                OAuthError::invalid_request(format!("{which} rejected: token is expired"))
                    .about_input(which),
            );
        }
        if !profile.may_outlive_subject {
            exp = exp.min(input_exp);
        }
    }
    Ok(exp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Token;

    fn typed(token_type: &str) -> TypedToken {
        TypedToken {
            token: Token::new("t"),
            token_type: token_type.into(),
        }
    }

    /// Every member CEL and mappings read, with its value or its default when absent.
    #[test]
    fn request_value_has_every_member() {
        let object = |v: serde_json::Value| v.as_object().cloned();
        let full = ExchangeRequest {
            subject: typed("urn:s"),
            actor: Some(typed("urn:a")),
            requested_token_type: Some("urn:r".into()),
            targets: vec!["a1".into(), "a2".into(), "https://r".into()],
            audience: vec!["a1".into(), "a2".into()],
            resource: vec!["https://r".into()],
            scope: Some("x y".into()),
            request_context: object(json!({"ip": "10.0.0.1", "n": {"d": [1]}})),
            request_details: object(json!({"op": "buy"})),
        };
        assert_eq!(
            request_value(&full),
            json!({
                "audience": ["a1", "a2"],
                "resource": ["https://r"],
                "scope": "x y",
                "requested_token_type": "urn:r",
                "subject_token_type": "urn:s",
                "actor_token_type": "urn:a",
                "request_context": {"ip": "10.0.0.1", "n": {"d": [1]}},
                "request_details": {"op": "buy"},
            })
        );
        let bare = ExchangeRequest {
            subject: typed("urn:s"),
            actor: None,
            requested_token_type: None,
            targets: vec![],
            audience: vec![],
            resource: vec![],
            scope: None,
            request_context: None,
            request_details: None,
        };
        assert_eq!(
            request_value(&bare),
            json!({
                "audience": [],
                "resource": [],
                "scope": "",
                "requested_token_type": "",
                "subject_token_type": "urn:s",
                "actor_token_type": "",
                "request_context": null,
                "request_details": null,
            })
        );
    }
}
