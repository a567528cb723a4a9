//! `POST /token`: turns the HTTP request into one typed `TokenRequest` (RFC 6749 form rules,
//! client credentials as presented, the grant, the request facts), then hands it to `exchange`.
//! No policy and no verification here.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use futures_util::StreamExt;
use tracing::Instrument;

use super::ApiError;
use crate::app::{AppState, Snapshot};
use crate::auth::ClientCredentials;
use crate::error::OAuthError;
use crate::exchange::{self, FormParams, Grant, TokenRequest, parse_basic};
use crate::secret::Token;
use crate::token::RequestFacts;

pub async fn token(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let span = super::request_span("/token", &req);
    let result = exchange_over_http(req, payload, state)
        .instrument(span.clone())
        .await;
    match &result {
        Ok(_) => crate::telemetry::finish(&span, 200, None),
        Err(e) => {
            crate::telemetry::finish(&span, e.status_code().as_u16(), Some(e.error.code.as_str()))
        }
    }
    result
}

async fn exchange_over_http(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let now = state.clock.now();
    let snap = state.snapshot();
    let request = typed_request(&req, payload, &state, &snap)
        .await
        .inspect_err(|e| log_malformed(&req, &snap, e))?;
    let response = exchange::handle(&state, &snap, request, now).await?;
    // Serialized into a buffer sized for the token up front (no regrowth while the token is
    // copied in); same bytes as `HttpResponseBuilder::json`.
    let scope_len = response.scope.as_ref().map_or(0, String::len);
    let mut body = Vec::with_capacity(response.access_token.len() + scope_len + 256);
    serde_json::to_writer(&mut body, &response)
        .map_err(|_| OAuthError::server_error("the response could not be written"))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
        .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")))
        .insert_header(header::ContentType::json())
        .body(body))
}

/// Any method but POST: `405` with `Allow: POST` (RFC 9110 §15.5.6), as an OAuth error body.
pub async fn wrong_method(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let span = super::request_span("/token", &req);
    let e = ApiError {
        error: OAuthError::invalid_request("the token endpoint takes POST only"),
        status: Some(StatusCode::METHOD_NOT_ALLOWED),
    };
    span.in_scope(|| log_malformed(&req, &state.snapshot(), &e));
    crate::telemetry::finish(&span, e.status_code().as_u16(), Some(e.error.code.as_str()));
    Err(e)
}

/// One `info` line for a request refused before it became a typed request (content type, size,
/// form, credentials syntax, grant type): the code, the status, the reason and the client id
/// the Basic header names (registered ids as they are, others as a fingerprint). Never the
/// header or the body.
fn log_malformed(req: &HttpRequest, snap: &Snapshot, e: &ApiError) {
    let client = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_basic(v).ok())
        .map(|(id, _)| snap.clients.loggable_id(&id));
    tracing::info!(
        client = ?client,
        error = %e.error.code,
        status = e.status_code().as_u16(),
        reason = %e.error.description,
        "token request refused"
    );
}

/// The whole request as one typed value, before any logic runs.
async fn typed_request(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    snap: &Snapshot,
) -> Result<TokenRequest, ApiError> {
    let limits = &snap.settings.limits;
    check_content_type(req)?;
    let body = read_body(payload, limits.max_body_bytes).await?;
    let mut params = FormParams::parse(&body, limits.max_params)?;
    let credentials = credentials(req, &mut params)?;
    let grant = Grant::parse(params, limits)?;
    let mut facts = facts(req, state, snap)?;
    // Only a request that sends a Content-Digest (an HTTP message signature covers it) pays
    // for hashing its body.
    if req.headers().contains_key("content-digest") {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &body);
        facts.body_sha256 = digest.as_ref().try_into().ok();
    }
    Ok(TokenRequest {
        credentials,
        grant,
        facts,
    })
}

/// What proofs need: the method, our endpoint URL from configuration (never `Host` or
/// forwarded headers), and only the headers a registered kind declares.
/// A declared header whose value is not visible ASCII is refused, never repaired: a stand-in
/// value could match a hash.
pub(super) fn facts(
    req: &HttpRequest,
    state: &AppState,
    snap: &Snapshot,
) -> Result<RequestFacts, ApiError> {
    // One pass over the request's few headers, comparing names with the declared ones (no
    // map lookups per declared name: most requests carry none of them).
    let declared = state.kinds.headers();
    let mut headers = Vec::new();
    for (name, value) in req.headers().iter() {
        let Some(&name) = declared.iter().find(|d| **d == name.as_str()) else {
            continue;
        };
        let text = value.to_str().map_err(|_| {
            OAuthError::invalid_request("a request header value is not visible ASCII")
        })?;
        headers.push((name, text.to_owned()));
    }
    Ok(RequestFacts {
        method: http::Method::from_bytes(req.method().as_str().as_bytes())
            .unwrap_or(http::Method::POST),
        endpoint: snap.endpoint.clone(),
        headers,
        // The chain the TLS handshake proved the client holds the key of (none without TLS);
        // only a trust entry that validates it makes it a credential.
        client_certificate: req.conn_data::<crate::token::ClientCertificate>().cloned(),
        peer: req.peer_addr().map(|a| a.ip()),
        body_sha256: None,
    })
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
fn credentials(req: &HttpRequest, params: &mut FormParams) -> Result<ClientCredentials, ApiError> {
    let basic = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| {
            v.to_str()
                .map_err(|_| OAuthError::invalid_client("malformed Basic authorization header"))
                .and_then(parse_basic)
        })
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
            Ok(ClientCredentials::Basic { client_id, secret })
        }
        (None, Some(a), Some(t)) => Ok(ClientCredentials::Assertion {
            assertion_type: t,
            assertion: Token::new(a),
            client_id: form_client_id,
        }),
        (None, Some(_), None) | (None, None, Some(_)) => Err(OAuthError::invalid_request(
            "client_assertion and client_assertion_type go together",
        )
        .into()),
        // A trust entry may find a credential in the declared headers (a WIT and its proof).
        (None, None, None) => Ok(ClientCredentials::Headers {
            client_id: form_client_id,
        }),
    }
}
