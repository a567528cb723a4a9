//! The grants the token endpoint understands, in one table: the metadata's
//! `grant_types_supported` and the request parser both read [`GRANT_TYPES`]. Each grant parses
//! its own parameters and maps its own failures to its own RFC error codes.

use super::request::{ExchangeRequest, FormParams};
use crate::config::Limits;
use crate::error::{ErrorCode, OAuthError};

/// RFC 8693 §2.1.
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// A token request's grant, with its typed parameters.
#[derive(Debug)]
pub enum Grant {
    /// RFC 8693 token exchange.
    TokenExchange(ExchangeRequest),
}

/// One supported `grant_type`.
pub struct GrantType {
    pub uri: &'static str,
    parse: fn(FormParams, &Limits) -> Result<Grant, OAuthError>,
}

/// Every supported grant type: one line each.
pub static GRANT_TYPES: &[GrantType] = &[GrantType {
    uri: TOKEN_EXCHANGE,
    parse: |p, limits| ExchangeRequest::from_params(p, limits).map(Grant::TokenExchange),
}];

impl Grant {
    /// Reads `grant_type` and parses the rest of the form for that grant (RFC 6749 §5.2:
    /// `unsupported_grant_type` for one we do not serve).
    pub fn parse(mut params: FormParams, limits: &Limits) -> Result<Self, OAuthError> {
        let Some(uri) = params.take("grant_type") else {
            return Err(OAuthError::invalid_request("grant_type is required"));
        };
        let grant = GRANT_TYPES.iter().find(|g| g.uri == uri).ok_or_else(|| {
            OAuthError::new(
                ErrorCode::UnsupportedGrantType,
                "grant_type is not supported",
            )
        })?;
        (grant.parse)(params, limits)
    }
}
