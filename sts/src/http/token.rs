//! `POST /token`: RFC 6749 form handling, client authentication, then the RFC 8693 exchange.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;

use super::ApiError;
use crate::app::AppState;
use crate::auth::{AuthContext, Presented};
use crate::error::{ErrorCode, OAuthError};
use crate::exchange::{self, ExchangeRequest, FormParams, TOKEN_EXCHANGE, decode_component};
use crate::secret::{ClientSecret, Token};

pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    check_content_type(&req)?;
    let body = read_body(payload, state.settings.limits.max_body_bytes).await?;
    let mut params = FormParams::parse(&body, state.settings.limits.max_params)?;
    let presented = credentials(&req, &mut params)?;
    let ctx = AuthContext {
        issuer: &state.settings.issuer,
        now,
        leeway: state.settings.leeway.as_secs() as i64,
        max_token_bytes: state.settings.limits.max_token_bytes,
        replay: &state.replay,
    };
    let caller = state.clients.authenticate(presented, &ctx).await.inspect_err(|e| {
        tracing::info!(error = %e.code, reason = %e.description, "client authentication failed");
    })?;
    match params.get("grant_type") {
        Some(TOKEN_EXCHANGE) => {}
        Some(_) => {
            return Err(OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type is not supported",
            )
            .into());
        }
        None => return Err(OAuthError::invalid_request("grant_type is required").into()),
    }
    let request = ExchangeRequest::from_params(params, state.settings.limits.max_token_bytes)?;
    let response = exchange::exchange(&state, &caller, request, now).await.inspect_err(|e| {
        tracing::info!(caller = %caller.id, error = %e.code, reason = %e.description, "exchange refused");
    })?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .json(response))
}

/// RFC 6749 §3.2: the token endpoint takes `application/x-www-form-urlencoded`.
fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let ok = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if ok {
        Ok(())
    } else {
        Err(
            OAuthError::invalid_request("content type must be application/x-www-form-urlencoded")
                .into(),
        )
    }
}

async fn read_body(mut payload: web::Payload, limit: usize) -> Result<web::BytesMut, ApiError> {
    let too_large = || ApiError {
        error: OAuthError::invalid_request("request body is too large"),
        status: Some(StatusCode::PAYLOAD_TOO_LARGE),
    };
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk =
            chunk.map_err(|_| OAuthError::invalid_request("request body could not be read"))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The client credentials the request presents; more than one method is an error
/// (RFC 6749 §2.3).
fn credentials(req: &HttpRequest, params: &mut FormParams) -> Result<Presented, ApiError> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(parse_basic)
        .transpose()?;
    let assertion = params.take("client_assertion");
    let assertion_type = params.take("client_assertion_type");
    let form_client_id = params.take("client_id");
    if params.get("client_secret").is_some() {
        return Err(OAuthError::invalid_client("client_secret_post is not supported").into());
    }
    match (basic, assertion, assertion_type) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => Err(OAuthError::invalid_request(
            "more than one client authentication method was used",
        )
        .into()),
        (Some((client_id, secret)), None, None) => {
            if form_client_id.is_some_and(|id| id != client_id) {
                return Err(OAuthError::invalid_request(
                    "client_id differs from the authenticated client",
                )
                .into());
            }
            Ok(Presented::Basic { client_id, secret })
        }
        (None, Some(a), Some(t)) => Ok(Presented::Assertion {
            assertion_type: t,
            assertion: Token::new(a),
            client_id: form_client_id,
        }),
        (None, Some(_), None) | (None, None, Some(_)) => Err(OAuthError::invalid_request(
            "client_assertion and client_assertion_type go together",
        )
        .into()),
        (None, None, None) => {
            Err(OAuthError::invalid_client("client authentication is required").into())
        }
    }
}

/// RFC 6749 §2.3.1: `Basic base64(urlencode(id) ":" urlencode(secret))`.
fn parse_basic(value: &HeaderValue) -> Result<(String, ClientSecret), ApiError> {
    let bad = || {
        ApiError::from(OAuthError::invalid_client(
            "malformed Basic authorization header",
        ))
    };
    let text = value.to_str().map_err(|_| bad())?;
    let (scheme, b64) = text.split_once(' ').ok_or_else(bad)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(OAuthError::invalid_client("unsupported authorization scheme").into());
    }
    let decoded = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let decoded = String::from_utf8(decoded).map_err(|_| bad())?;
    let (id, secret) = decoded.split_once(':').ok_or_else(bad)?;
    let unescape = |s: &str| {
        decode_component(s.as_bytes())
            .map_err(|_| bad())
            .map(|c| c.into_owned())
    };
    let (id, secret) = (unescape(id)?, unescape(secret)?);
    if id.is_empty() {
        return Err(bad());
    }
    Ok((id, ClientSecret::new(secret)))
}
