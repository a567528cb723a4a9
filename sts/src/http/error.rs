//! The one place OAuth errors become HTTP: RFC 6749 §5.2 JSON, with status 400, or 401 plus
//! `WWW-Authenticate` for `invalid_client`, 503 for `temporarily_unavailable`, 500 for
//! `server_error`, 429 with `Retry-After` for a spent budget. Error responses are never cached.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use crate::error::{ErrorCode, OAuthError};

/// An `OAuthError` on its way to the client, optionally with its own status (413 for a body
/// that is too large).
#[derive(Debug)]
pub struct ApiError {
    pub error: OAuthError,
    pub status: Option<StatusCode>,
}

impl From<OAuthError> for ApiError {
    fn from(error: OAuthError) -> Self {
        Self {
            error,
            status: None,
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::BAD_REQUEST,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        if self.error.retry_after.is_some() {
            return StatusCode::TOO_MANY_REQUESTS;
        }
        self.status.unwrap_or_else(|| status_of(self.error.code))
    }

    fn error_response(&self) -> HttpResponse {
        let mut resp = HttpResponse::build(self.status_code());
        resp.insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-store")))
            .insert_header((header::PRAGMA, HeaderValue::from_static("no-cache")));
        if self.status_code() == StatusCode::METHOD_NOT_ALLOWED {
            // RFC 9110 §15.5.6: a 405 names the methods the resource takes.
            resp.insert_header((header::ALLOW, HeaderValue::from_static("POST")));
        }
        if let Some(seconds) = self.error.retry_after {
            // RFC 6585 §4 / RFC 9110 §10.2.3: delay-seconds.
            resp.insert_header((header::RETRY_AFTER, seconds));
        }
        if self.error.code == ErrorCode::InvalidClient {
            // RFC 6749 §5.2: 401 with the scheme the client can use.
            resp.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"sts\""),
            ));
        }
        resp.json(serde_json::json!({
            "error": self.error.code.as_str(),
            "error_description": safe_text(&self.error.description),
        }))
    }
}

/// RFC 6749 §5.2: `error_description` uses %x20-21 / %x23-5B / %x5D-7E only.
pub(super) fn safe_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '\'',
        })
        .collect()
}
