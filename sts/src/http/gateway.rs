//! The gateway adapter (`docs/ingress.md`): the endpoint a gateway's auth sub-request calls
//! (nginx `auth_request`, Envoy `ext_authz` in HTTP mode) on every inbound request.
//!
//! It reads the user's `Authorization: Bearer` token, the gateway's own client credentials from
//! `gateway.client_header`, the transaction's scope from `gateway.scope_header` (or
//! `gateway.default_scope`) and the request context members from the headers the settings
//! name, and runs one Txn-Token exchange (audience: our trust domain) through the same
//! pipeline as `POST /token`. The answer is `200` with a `Txn-Token` header; `401` with
//! `WWW-Authenticate: Bearer` when the user's token is missing or refused (RFC 6750 §3.1);
//! `403` when policy refuses; `500`/`503` when the gateway's own credentials or the service
//! fail. It decides no policy and never logs or echoes a token.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Map, Value};
use tracing::Instrument;

use crate::app::{AppState, Snapshot};
use crate::auth::ClientCredentials;
use crate::error::{ErrorCode, OAuthError};
use crate::exchange::{self, ExchangeRequest, Grant, TokenRequest, TypedToken, parse_basic};
use crate::secret::Token;
use crate::token::types;

/// The header a gateway forwards to its upstream (Txn-Token draft §4.7 of our digest).
pub const TXN_TOKEN_HEADER: &str = "txn-token";

pub async fn txn_token(req: HttpRequest, state: web::Data<AppState>) -> HttpResponse {
    let snap = state.snapshot();
    let span = super::request_span(&snap.settings.gateway.path, &req);
    let (response, error) = exchange_for_gateway(req, state, snap)
        .instrument(span.clone())
        .await;
    crate::telemetry::finish(&span, response.status().as_u16(), error);
    response
}

/// The answer, and the OAuth error code when it is a refusal.
async fn exchange_for_gateway(
    req: HttpRequest,
    state: web::Data<AppState>,
    snap: Arc<Snapshot>,
) -> (HttpResponse, Option<&'static str>) {
    let now = state.clock.now();
    let refused = |r: Refusal| {
        let code = r.error.code.as_str();
        (r.answer(), Some(code))
    };
    let request = match typed_request(&req, &state, &snap) {
        Ok(r) => r,
        Err(refusal) => return refused(refusal),
    };
    match exchange::handle(&state, &snap, request, now).await {
        Ok(issued) => (
            HttpResponse::Ok()
                .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
                .insert_header((TXN_TOKEN_HEADER, issued.access_token))
                .finish(),
            None,
        ),
        Err(e) => refused(Refusal::from(e)),
    }
}

/// Why the adapter said no, and how it says it.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    error: OAuthError,
    /// RFC 6750 §3: the `WWW-Authenticate: Bearer` value, for 401 and 403.
    challenge: Option<String>,
}

impl From<OAuthError> for Refusal {
    fn from(error: OAuthError) -> Self {
        let (status, challenge) = match error.code {
            // The user's token itself was refused: RFC 6750 §3.1 invalid_token.
            _ if error.input.is_some() => (
                StatusCode::UNAUTHORIZED,
                Some(bearer_challenge("invalid_token", &error.description)),
            ),
            // The gateway's own credentials failing is a deployment fault, not the user's.
            ErrorCode::ServerError | ErrorCode::InvalidClient => {
                (StatusCode::INTERNAL_SERVER_ERROR, None)
            }
            ErrorCode::TemporarilyUnavailable => (StatusCode::SERVICE_UNAVAILABLE, None),
            ErrorCode::InvalidScope => (
                StatusCode::FORBIDDEN,
                Some(bearer_challenge("insufficient_scope", &error.description)),
            ),
            // Policy: no profile, a condition, a target, the request's shape.
            _ => (StatusCode::FORBIDDEN, None),
        };
        Self {
            status,
            error,
            challenge,
        }
    }
}

impl Refusal {
    /// `401` without an error code: no token was presented (RFC 6750 §3.1).
    fn no_token(why: &'static str) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: OAuthError::invalid_request(why).about_input("subject_token"),
            challenge: Some("Bearer realm=\"sts\"".to_owned()),
        }
    }

    fn answer(self) -> HttpResponse {
        tracing::info!(
            status = self.status.as_u16(),
            error = %self.error.code,
            reason = %self.error.description,
            "gateway request refused"
        );
        let mut resp = HttpResponse::build(self.status);
        resp.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")));
        if let Some(c) = self.challenge
            && let Ok(v) = HeaderValue::from_str(&c)
        {
            resp.insert_header((header::WWW_AUTHENTICATE, v));
        }
        resp.json(serde_json::json!({
            "error": self.error.code.as_str(),
            "error_description": super::error::safe_text(&self.error.description),
        }))
    }
}

/// RFC 6750 §3: `Bearer realm="sts", error="…", error_description="…"` (the description is
/// our fixed text, with quotes and backslashes replaced).
fn bearer_challenge(error: &str, description: &str) -> String {
    let safe: String = super::error::safe_text(description)
        .chars()
        .map(|c| if c == '"' || c == '\\' { '\'' } else { c })
        .collect();
    format!("Bearer realm=\"sts\", error=\"{error}\", error_description=\"{safe}\"")
}

/// The sub-request as one typed token request.
fn typed_request(
    req: &HttpRequest,
    state: &AppState,
    snap: &Snapshot,
) -> Result<TokenRequest, Refusal> {
    let g = &snap.settings.gateway;
    let limits = &snap.settings.limits;
    let token = bearer_token(req)?;
    if token.len() > limits.max_token_bytes {
        return Err(OAuthError::invalid_request("the bearer token is too large")
            .about_input("subject_token")
            .into());
    }
    let credentials = match header_text(req, &g.client_header)? {
        Some(v) => {
            let (client_id, secret) = parse_basic(v)?;
            ClientCredentials::Basic { client_id, secret }
        }
        None => ClientCredentials::Headers { client_id: None },
    };
    let scope = match header_text(req, &g.scope_header)? {
        Some(s) => s.to_owned(),
        None if !g.default_scope.is_empty() => g.default_scope.clone(),
        None => {
            return Err(
                OAuthError::invalid_request("the gateway sent no transaction scope").into(),
            );
        }
    };
    exchange::check_scope(&scope)?;
    let request_context = context(req, &g.context_headers, limits.max_context_bytes)?;
    let request_details = context(req, &g.details_headers, limits.max_context_bytes)?;
    let audience = vec![snap.trust_domain.to_string()];
    let exchange = ExchangeRequest {
        subject: TypedToken {
            token: Token::new(token),
            token_type: g.subject_token_type.clone(),
        },
        actor: None,
        requested_token_type: Some(types::TXN_TOKEN.to_owned()),
        targets: audience.clone(),
        audience,
        resource: Vec::new(),
        scope: Some(scope),
        request_context,
        request_details,
    };
    let facts = super::token::facts(req, state, snap).map_err(|e| Refusal::from(e.error))?;
    Ok(TokenRequest {
        credentials,
        grant: Grant::TokenExchange(exchange),
        facts,
    })
}

/// RFC 6750 §2.1: exactly one `Authorization: Bearer <token>`.
fn bearer_token(req: &HttpRequest) -> Result<String, Refusal> {
    let mut values = req.headers().get_all(header::AUTHORIZATION);
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err(Refusal::no_token("the request carries no bearer token"));
    };
    let text = value
        .to_str()
        .map_err(|_| Refusal::no_token("the authorization header is malformed"))?;
    match text.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty() => {
            Ok(t.trim().to_owned())
        }
        _ => Err(Refusal::no_token("the request carries no bearer token")),
    }
}

/// The value of header `name`, if sent once; twice is an error, never a choice.
fn header_text<'r>(req: &'r HttpRequest, name: &str) -> Result<Option<&'r str>, Refusal> {
    let mut values = req.headers().get_all(name);
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => v.to_str().map(Some).map_err(|_| {
            OAuthError::invalid_request("a gateway header value is not visible ASCII").into()
        }),
        (Some(_), Some(_)) => {
            Err(OAuthError::invalid_request("a gateway header is repeated").into())
        }
    }
}

/// A request context object from the headers the settings name (member → header); `None`
/// when the request carries none of them.
fn context(
    req: &HttpRequest,
    members: &std::collections::BTreeMap<String, String>,
    max_bytes: usize,
) -> Result<Option<Map<String, Value>>, Refusal> {
    let mut out = Map::new();
    let mut size = 0;
    for (member, name) in members {
        if let Some(v) = header_text(req, name)? {
            size += member.len() + v.len() + 6;
            out.insert(member.clone(), Value::String(v.to_owned()));
        }
    }
    if size > max_bytes {
        return Err(OAuthError::invalid_request("the request context is too large").into());
    }
    Ok((!out.is_empty()).then_some(out))
}
