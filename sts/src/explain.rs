//! `sts explain`: a dry run of one token request against a configuration. It shows which
//! profiles were candidates and why each was or was not chosen, the verified (or given) input
//! claims, every CEL condition with its value, and the claims that would be issued or the
//! refusal with its reason.
//!
//! It runs the service's own pipeline steps (`exchange::choose`, `verify_input`, `decide`), so
//! what it reports is what `serve` would do. It never signs: it stops at the output kind's
//! `prepare`. Tokens given to it are verified with the configured keys; claims given as JSON are
//! taken as they are and reported as unverified. It prints claims, never a token.

use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::app::Snapshot;
use crate::auth::{AuthMethod, Caller};
use crate::clock::UnixTime;
use crate::error::OAuthError;
use crate::exchange::{self, Decision, ExchangeRequest, FormParams, Trace, TypedToken};
use crate::expr::{Expr, Variables, cel_to_json};
use crate::jose::Claims;
use crate::profile::{Miss, Profile, Query};
use crate::secret::Token;
use crate::store::MemoryReplayGuard;
use crate::token::{RequestFacts, Verified, VerifyContext};
use crate::trust::TrustSource;

/// A subject or actor token as given to `explain`.
pub enum Input {
    /// A real token: verified with the configured keys.
    Token(Token),
    /// Claims as JSON: taken as given, not verified.
    Claims(Claims),
}

/// What to explain: who calls, with which form fields and input tokens, at what time.
pub struct Request {
    pub client_id: String,
    /// The form fields other than the tokens (`subject_token_type`, `audience`, `scope`, …).
    pub params: Vec<(String, String)>,
    pub subject: Input,
    pub actor: Option<Input>,
    pub now: UnixTime,
}

/// The report; `--json` prints it as is.
#[derive(Debug, Serialize)]
pub struct Explanation {
    pub client: ClientReport,
    pub now: UnixTime,
    pub profiles: Vec<Candidate>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<InputReport>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<InputReport>,
    pub conditions: Vec<Evaluated>,
    pub outcome: Outcome,
}

#[derive(Debug, Serialize)]
pub struct ClientReport {
    pub id: String,
    /// How the client authenticates, or `null` when no client has this id.
    pub method: Option<&'static str>,
}

/// One profile and what selection made of it.
#[derive(Debug, Serialize)]
pub struct Candidate {
    pub profile: String,
    pub at: String,
    pub chosen: bool,
    pub reason: String,
}

#[derive(Debug, Serialize)]
pub struct InputReport {
    /// The trust entry that verified it, or the one that would have.
    pub trust: String,
    pub kind: &'static str,
    /// Whether a signature (or introspection) vouched for the claims.
    pub verified: bool,
    pub claims: Claims,
}

/// One CEL expression of the chosen profile and its value on this request.
#[derive(Debug, Serialize)]
pub struct Evaluated {
    /// `when`, `when (part)` or `issue.scope`.
    pub role: &'static str,
    pub at: String,
    pub expression: String,
    /// The value as JSON, when it evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// What would be issued (not signed).
    Issued {
        issued_token_type: &'static str,
        token_type: &'static str,
        expires_in: i64,
        #[serde(skip_serializing_if = "Option::is_none")]
        scope: Option<String>,
        claims: Claims,
    },
    /// What the client would get instead.
    Refused {
        error: String,
        error_description: String,
    },
}

impl Outcome {
    fn refused(e: &OAuthError) -> Self {
        Self::Refused {
            error: e.code.as_str().to_owned(),
            error_description: e.description.to_string(),
        }
    }
}

/// Explains `req` against `snap` (whose keys should be loaded). Signs nothing.
pub async fn explain(snap: &Snapshot, req: Request) -> Explanation {
    let method = snap.clients.method_of(&req.client_id);
    let caller = Caller {
        id: req.client_id.clone(),
        method: method.unwrap_or(AuthMethod::ClientSecretBasic),
        proven_key: None,
        certificate_thumbprint: None,
    };
    let mut ex = Explanation {
        client: ClientReport {
            id: req.client_id.clone(),
            method: method.map(AuthMethod::as_str),
        },
        now: req.now,
        profiles: Vec::new(),
        subject: None,
        actor: None,
        conditions: Vec::new(),
        outcome: Outcome::Refused {
            error: String::new(),
            error_description: String::new(),
        },
    };
    if method.is_none() {
        ex.outcome = Outcome::refused(&OAuthError::invalid_client("client authentication failed"));
    }
    let limits = &snap.settings.limits;
    let parsed =
        form_of(&req, limits.max_params).and_then(|f| ExchangeRequest::from_params(f, limits));
    let request = match parsed {
        Ok(r) => r,
        Err(e) => {
            // An unknown client is refused before its form is read.
            if method.is_some() {
                ex.outcome = Outcome::refused(&e);
            }
            return ex;
        }
    };
    ex.profiles = candidates(snap, &caller.id, &request);
    if method.is_none() {
        return ex;
    }
    match run(snap, &caller, &request, &req, &mut ex).await {
        Ok(d) => {
            ex.outcome = Outcome::Issued {
                issued_token_type: d.draft.issued_token_type,
                token_type: d.draft.token_type,
                expires_in: d.draft.expires_at.min(d.common.expires_at) - req.now,
                scope: d.draft.scope,
                claims: d.draft.claims,
            }
        }
        Err(e) => ex.outcome = Outcome::refused(&e),
    }
    ex
}

/// The request's form as the service would parse it; the tokens are placeholders when claims
/// are given instead.
fn form_of(req: &Request, max_params: usize) -> Result<FormParams, OAuthError> {
    let placeholder = |i: &Input| match i {
        Input::Token(t) => t.expose().to_owned(),
        Input::Claims(_) => "(claims given as JSON)".to_owned(),
    };
    let mut pairs: Vec<(String, String)> = req.params.clone();
    if !pairs.iter().any(|(k, _)| k == "grant_type") {
        pairs.push(("grant_type".into(), exchange::TOKEN_EXCHANGE.into()));
    }
    pairs.push(("subject_token".into(), placeholder(&req.subject)));
    if let Some(a) = &req.actor {
        pairs.push(("actor_token".into(), placeholder(a)));
    }
    let body: String = pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    FormParams::parse(body.as_bytes(), max_params)
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Every profile with the selection stage it fails, or that it matches.
fn candidates(snap: &Snapshot, caller_id: &str, req: &ExchangeRequest) -> Vec<Candidate> {
    let q = Query {
        caller_id,
        subject_type: &req.subject.token_type,
        requested_type: req.requested_token_type.as_deref(),
        targets: &req.targets,
    };
    let matching = snap
        .catalog
        .profiles
        .iter()
        .filter(|p| p.miss(&q).is_none())
        .count();
    snap.catalog
        .profiles
        .iter()
        .map(|p| {
            let miss = p.miss(&q);
            Candidate {
                profile: p.name.clone(),
                at: p.at.to_string(),
                chosen: miss.is_none() && matching == 1,
                reason: match miss {
                    None if matching == 1 => "matches: client, token types and target".into(),
                    None => format!("matches, but so do {} other profile(s)", matching - 1),
                    Some(m) => why_not(p, m, &q),
                },
            }
        })
        .collect()
}

fn why_not(p: &Profile, miss: Miss, q: &Query<'_>) -> String {
    match miss {
        Miss::Caller => format!("callers does not include `{}`", q.caller_id),
        Miss::RequestedType => format!(
            "issues {} (kind {}), not the requested_token_type {}",
            p.kind.issued_token_type(),
            p.kind.name(),
            q.requested_type.unwrap_or("-")
        ),
        Miss::SubjectType => {
            let mut types: Vec<&str> = p.subject_types().collect();
            types.dedup();
            format!(
                "subject.accept takes subject_token_type {}, not {}",
                types.join(" or "),
                q.subject_type
            )
        }
        Miss::Target => format!(
            "issues for {}, not for {}",
            p.audiences.join(", "),
            q.targets.join(", ")
        ),
    }
}

/// The pipeline after selection, recording what it sees in `ex`.
async fn run(
    snap: &Snapshot,
    caller: &Caller,
    request: &ExchangeRequest,
    req: &Request,
    ex: &mut Explanation,
) -> Result<Decision, OAuthError> {
    let mut trace = Trace::default();
    let profile = exchange::choose(snap, caller, request, &mut trace)?;
    let facts = RequestFacts::post(&snap.endpoint);
    let presented = (&request.subject, &profile.subject_sources);
    let subject = input(
        snap,
        request,
        "subject_token",
        &req.subject,
        presented,
        &facts,
        req.now,
    )
    .await?;
    ex.subject = Some(report(&subject.0, subject.1));
    let actor = match (&req.actor, &request.actor) {
        (Some(given), Some(typed)) => {
            let presented = (typed, &profile.actor_sources);
            let a = input(
                snap,
                request,
                "actor_token",
                given,
                presented,
                &facts,
                req.now,
            )
            .await?;
            ex.actor = Some(report(&a.0, a.1));
            Some(a.0)
        }
        _ => None,
    };
    ex.conditions = evaluate(
        profile,
        caller,
        request,
        &subject.0,
        actor.as_ref(),
        req.now,
    );
    exchange::decide(
        snap,
        profile,
        caller,
        request,
        &subject.0,
        actor.as_ref(),
        req.now,
        &mut trace,
    )
    .await
}

/// Verifies a given token as the service would, or takes given claims as they are (naming the
/// first trust entry of the profile that takes this token type).
#[allow(clippy::too_many_arguments)]
async fn input(
    snap: &Snapshot,
    request: &ExchangeRequest,
    which: &'static str,
    given: &Input,
    (typed, sources): (&TypedToken, &Vec<Arc<TrustSource>>),
    facts: &RequestFacts,
    now: UnixTime,
) -> Result<(Verified, bool), OAuthError> {
    match given {
        Input::Token(_) => {
            // A scratch replay guard: a dry run never uses up a proof's jti.
            let scratch = MemoryReplayGuard::new(64);
            let ctx = VerifyContext {
                exchange: Some(request),
                caller: None,
                ..exchange::verify_context(snap, facts, &scratch, now)
            };
            let v = exchange::verify_input(which, typed, sources, &ctx).await?;
            Ok((v, true))
        }
        Input::Claims(claims) => {
            // As the service chooses: an entry of this type whose issuer the claims name, else
            // a catch-all (introspection) entry, else the first of this type.
            let iss = claims.get("iss").and_then(Value::as_str);
            let typed_sources = || sources.iter().filter(|s| s.accepts_type(&typed.token_type));
            let source = typed_sources()
                .find(|s| !s.verifier.is_fallback() && Some(s.verifier.issuer()) == iss)
                .or_else(|| typed_sources().find(|s| s.verifier.is_fallback()))
                .or_else(|| typed_sources().next())
                .ok_or_else(|| {
                    OAuthError::invalid_request(format!(
                        "{which}_type is not accepted by this exchange profile"
                    ))
                })?;
            Ok((
                Verified {
                    claims: claims.clone(),
                    trust: Arc::clone(&source.name),
                    kind: source.kind.name(),
                    proven_key: None,
                    asserted_by_caller: false,
                },
                false,
            ))
        }
    }
}

fn report(v: &Verified, verified: bool) -> InputReport {
    InputReport {
        trust: v.trust.to_string(),
        kind: v.kind,
        verified,
        claims: v.claims.clone(),
    }
}

/// The chosen profile's `when` (whole, then each `&&` part) and `issue.scope`, on the same
/// variables the pipeline builds.
fn evaluate(
    profile: &Profile,
    caller: &Caller,
    request: &ExchangeRequest,
    subject: &Verified,
    actor: Option<&Verified>,
    now: UnixTime,
) -> Vec<Evaluated> {
    let (caller_v, request_v) = (
        exchange::caller_value(caller),
        exchange::request_value(request),
    );
    let vars = Variables::from_claims(
        &subject.claims,
        actor.map(|a| &a.claims),
        &caller_v,
        &request_v,
        now,
    );
    let mut out = Vec::new();
    if let Some(when) = &profile.when {
        out.push(value_of("when", when, &vars));
        let parts = crate::expr::conjuncts(&when.source);
        if parts.len() > 1 {
            for part in parts {
                if let Ok(e) = Expr::compile(part, when.loc.clone()) {
                    out.push(value_of("when (part)", &e, &vars));
                }
            }
        }
    }
    if let Some(scope) = &profile.scope {
        out.push(value_of("issue.scope", scope, &vars));
    }
    out
}

fn value_of(role: &'static str, e: &Expr, vars: &Variables) -> Evaluated {
    let (value, error) = match e.eval(vars) {
        Ok(v) => match cel_to_json(&v) {
            Ok(j) => (Some(j), None),
            Err(m) => (None, Some(m)),
        },
        Err(err) if crate::expr::is_missing_key(&err) => {
            (None, Some(format!("reads a claim the token lacks ({err})")))
        }
        Err(err) => (None, Some(err.to_string())),
    };
    Evaluated {
        role,
        at: e.loc.to_string(),
        expression: e.source.clone(),
        value,
        error,
    }
}

impl Explanation {
    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let method = self.client.method.unwrap_or("no such client is configured");
        let _ = writeln!(out, "client: {} ({method})", self.client.id);
        let _ = writeln!(out, "time: {}", self.now);
        let _ = writeln!(out, "profiles:");
        if self.profiles.is_empty() {
            let _ = writeln!(out, "  (none considered)");
        }
        for c in &self.profiles {
            let mark = if c.chosen { "chosen" } else { "not chosen" };
            let _ = writeln!(out, "  {} [{}] {mark}: {}", c.profile, c.at, c.reason);
        }
        for (name, input) in [
            ("subject_token", &self.subject),
            ("actor_token", &self.actor),
        ] {
            if let Some(i) = input {
                let how = if i.verified {
                    "verified by"
                } else {
                    "claims given as JSON, NOT verified; would be checked by"
                };
                let _ = writeln!(
                    out,
                    "{name}: {how} trust entry `{}` (kind {})",
                    i.trust, i.kind
                );
                let _ = writeln!(out, "{}", indent(&pretty(&i.claims)));
            }
        }
        if !self.conditions.is_empty() {
            let _ = writeln!(out, "conditions:");
        }
        for c in &self.conditions {
            let result = match (&c.value, &c.error) {
                (Some(v), _) => v.to_string(),
                (None, Some(e)) => format!("error: {e}"),
                (None, None) => "-".into(),
            };
            let _ = writeln!(out, "  {} [{}] {} => {result}", c.role, c.at, c.expression);
        }
        match &self.outcome {
            Outcome::Issued {
                issued_token_type,
                expires_in,
                claims,
                ..
            } => {
                let _ = writeln!(
                    out,
                    "result: would issue {issued_token_type}, expires_in {expires_in} (not signed)"
                );
                let _ = writeln!(out, "{}", indent(&pretty(claims)));
            }
            Outcome::Refused {
                error,
                error_description,
            } => {
                let _ = writeln!(out, "result: refused: {error}: {error_description}");
            }
        }
        out
    }
}

fn pretty(c: &Claims) -> String {
    serde_json::to_string_pretty(c).unwrap_or_default()
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}
