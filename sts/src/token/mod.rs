//! Token kinds: one file per kind, each a `Verifier` (input) and/or `Minter` (output), all
//! registered in `input_kind` / `OUTPUT_KINDS` below.
//!
//! `verify` is the one driver every input kind goes through: size and JOSE checks, the trust
//! source chosen by the configured issuer (never by keys in the token), the kind's header rules,
//! the key from that source's set, the signature, then the kind's claim rules. Nothing here
//! applies profile policy. Adding a kind is a new file plus one table line.

mod access_token;
mod claims;

use std::sync::Arc;

pub use access_token::{AccessTokenMinter, AccessTokenVerifier};
pub use claims::{ClaimsExt, audience_contains};

use crate::clock::UnixTime;
use crate::config::TrustKind;
use crate::error::OAuthError;
use crate::jose::{Claims, JoseError, JoseHeader, UnverifiedJws};
use crate::keys::Signer;
use crate::secret::Token;
use crate::trust::{KeyLookupError, TrustSource};

/// RFC 8693 §3 token type identifiers used so far.
pub mod types {
    pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
}

/// Why an input token was refused. Every message is safe to return to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    Jose(#[from] JoseError),
    #[error("token issuer is not trusted for this exchange")]
    UntrustedIssuer,
    #[error("token type (typ) is not accepted")]
    WrongType,
    #[error("token algorithm is not accepted")]
    AlgNotAllowed,
    #[error("token signing key is unknown")]
    UnknownKey,
    #[error("token issuer keys are unavailable")]
    KeysUnavailable,
    #[error("token is expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token audience does not include this service")]
    WrongAudience,
    #[error("token lacks a required claim: {0}")]
    MissingClaim(&'static str),
    #[error("token claim is malformed: {0}")]
    BadClaim(&'static str),
}

/// What a kind needs to know to judge a token beyond its signature.
#[derive(Debug, Clone, Copy)]
pub struct VerifyContext {
    pub now: UnixTime,
    /// Tolerated clock skew, seconds.
    pub leeway: i64,
    pub max_token_bytes: usize,
}

/// An input token kind's own rules.
pub trait Verifier: Send + Sync {
    /// Header rules (explicit typing, RFC 8725 §3.11), checked before any key lookup.
    fn check_header(&self, header: &JoseHeader, source: &TrustSource) -> Result<(), Rejection>;
    /// Claim rules, checked after the signature.
    fn check_claims(
        &self,
        claims: &Claims,
        source: &TrustSource,
        ctx: &VerifyContext,
    ) -> Result<(), Rejection>;
}

/// A token that passed every check of its kind, with the trust source that vouched for it.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: Claims,
    pub source: Arc<TrustSource>,
}

/// An input kind: the trust entries of `trust_kind` verify tokens declared as one of
/// `token_types`.
pub struct InputKind {
    pub trust_kind: TrustKind,
    pub token_types: &'static [&'static str],
    pub verifier: &'static dyn Verifier,
}

/// The input kinds, one line each; the `match` makes every `TrustKind` have one.
pub fn input_kind(trust_kind: TrustKind) -> &'static InputKind {
    match trust_kind {
        TrustKind::OauthJwt => &OAUTH_JWT,
    }
}

static OAUTH_JWT: InputKind = InputKind {
    trust_kind: TrustKind::OauthJwt,
    token_types: &[types::ACCESS_TOKEN],
    verifier: &AccessTokenVerifier,
};

/// Verifies `token` against whichever of `sources` is configured for its issuer.
pub async fn verify(
    token: &Token,
    sources: &[Arc<TrustSource>],
    ctx: &VerifyContext,
) -> Result<Verified, Rejection> {
    let jws = UnverifiedJws::parse(token.expose(), ctx.max_token_bytes)?;
    let unverified_iss = jws.unverified_claims.get("iss").and_then(|v| v.as_str());
    // The issuer only picks among the sources this profile accepts; keys come from that source.
    let source = sources
        .iter()
        .find(|s| Some(s.issuer.as_str()) == unverified_iss)
        .ok_or(Rejection::UntrustedIssuer)?;
    let kind = input_kind(source.kind);
    kind.verifier.check_header(&jws.header, source)?;
    if !source.algorithms.contains(&jws.header.alg) {
        return Err(Rejection::AlgNotAllowed);
    }
    let kid = jws.header.kid.as_deref();
    let keys = source
        .keys
        .resolve(kid, jws.header.alg)
        .await
        .map_err(|e| match e {
            KeyLookupError::UnknownKey => Rejection::UnknownKey,
            KeyLookupError::NotLoaded => Rejection::KeysUnavailable,
        })?;
    let key = keys
        .find(kid, jws.header.alg)
        .ok_or(Rejection::UnknownKey)?;
    let claims = jws.verify(key)?;
    kind.verifier.check_claims(&claims, source, ctx)?;
    Ok(Verified {
        claims,
        source: source.clone(),
    })
}

/// Everything the engine decides about an issued token; a `Minter` writes these last, over
/// whatever the mapping produced.
#[derive(Debug, Clone)]
pub struct Reserved {
    pub issuer: String,
    pub subject: String,
    pub audience: Vec<String>,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub jti: String,
    pub client_id: String,
    pub scope: Option<String>,
    pub act: Option<serde_json::Value>,
}

/// A signed token and how to describe it in the RFC 8693 §2.2.1 response.
#[derive(Debug)]
pub struct Minted {
    pub token: Token,
    pub issued_token_type: &'static str,
    pub token_type: &'static str,
}

/// An output token kind's own rules.
pub trait Minter: Send + Sync {
    fn mint(
        &self,
        mapped: Claims,
        reserved: &Reserved,
        signer: &Signer,
    ) -> Result<Minted, OAuthError>;
}

/// An output kind, as named by `issue.kind` in a profile.
pub struct OutputKind {
    pub name: &'static str,
    pub issued_token_type: &'static str,
    /// Claims a mapping may not write for this kind.
    pub reserved_claims: &'static [&'static str],
    pub minter: &'static dyn Minter,
}

/// Claims no mapping may write, whatever the kind (design §4).
pub const ALWAYS_RESERVED: &[&str] = &[
    "iss", "aud", "exp", "iat", "nbf", "jti", "cnf", "act", "may_act",
];

pub static OUTPUT_KINDS: &[OutputKind] = &[OutputKind {
    name: "access-token",
    issued_token_type: types::ACCESS_TOKEN,
    reserved_claims: &["scope", "client_id"],
    minter: &AccessTokenMinter,
}];

impl std::fmt::Debug for OutputKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "OutputKind({})", self.name)
    }
}

pub fn output_kind(name: &str) -> Option<&'static OutputKind> {
    OUTPUT_KINDS.iter().find(|k| k.name == name)
}
