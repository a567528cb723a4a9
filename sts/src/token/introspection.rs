//! Input kind `oauth-introspection`: opaque access tokens (declared as
//! `urn:ietf:params:oauth:token-type:access_token`) checked through the authorization server's
//! RFC 7662 introspection endpoint, with the `oauth2` crate, authenticating with this entry's
//! own client credentials (`client_secret_basic`, RFC 7662 §2.1).
//!
//! Results are cached under the SHA-256 of the token until the earlier of the token's `exp` and
//! the entry's `cache_max` — never past `exp`. `active: false` is a refusal (`invalid_request`);
//! a timeout, a 5xx, a reply that is not JSON, or one without `active` is upstream trouble
//! (`temporarily_unavailable`). A reply must carry `exp` and `sub`: an issued token is bounded
//! by its input's expiry. No profile policy.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenResponse, BasicTokenType,
};
use oauth2::{
    AccessToken, ClientId, ClientSecret, EndpointNotSet, EndpointSet, ExtraTokenFields,
    IntrospectionUrl, RequestTokenError, StandardRevocableToken,
    StandardTokenIntrospectionResponse, TokenIntrospectionResponse,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    ClaimsExt, InputKind, KindEnv, Presented, Rejection, Verified, Verifier, VerifyContext,
    audience_contains, oauth_jwt, types,
};
use crate::clock::UnixTime;
use crate::config::{ConfigError, TrustEntry, check_url};
use crate::jose::Claims;
use crate::trust::{HttpFetcher, OutboundError};

const KIND: &str = "oauth-introspection";

/// The `oauth-introspection` kind.
pub struct IntrospectionKind;

/// An `oauth-introspection` trust entry's block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    /// The authorization server: a reply's `iss`, when present, must equal it; it is the `iss`
    /// CEL sees when the reply has none.
    issuer: String,
    /// The RFC 7662 introspection endpoint.
    endpoint: String,
    /// Our client id at the authorization server.
    client_id: String,
    /// A file holding our client secret there (first line).
    client_secret_file: PathBuf,
    /// `aud` values a reply must contain one of (default: our issuer).
    #[serde(default)]
    audience: Vec<String>,
    /// Accept replies whatever their `aud` (for servers that do not report it).
    #[serde(default)]
    any_audience: bool,
    /// The longest a result is reused (never past the token's `exp`); 0s: not cached.
    #[serde(default = "default_cache_max", with = "humantime_serde")]
    cache_max: Duration,
    /// How long one introspection call may take.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    timeout: Duration,
    /// Most results cached at once (memory bound).
    #[serde(default = "default_cache_entries")]
    cache_entries: usize,
}

fn default_cache_entries() -> usize {
    100_000
}

fn default_cache_max() -> Duration {
    Duration::from_secs(60)
}
fn default_timeout() -> Duration {
    Duration::from_secs(2)
}

/// Members of an introspection reply beyond RFC 7662 §2.2's: kept for CEL.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ExtraClaims {
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

impl ExtraTokenFields for ExtraClaims {}

type Reply = StandardTokenIntrospectionResponse<ExtraClaims, BasicTokenType>;
type Client = oauth2::Client<
    BasicErrorResponse,
    BasicTokenResponse,
    Reply,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
>;

impl InputKind for IntrospectionKind {
    fn name(&self) -> &'static str {
        KIND
    }

    fn token_types(&self) -> &'static [&'static str] {
        &[types::ACCESS_TOKEN]
    }

    fn sample_claims(&self) -> Claims {
        oauth_jwt::sample(json!({
            "scope": "read write", "client_id": "sample-client", "username": "sample-user",
            "token_type": "Bearer",
        }))
    }

    fn configure(
        &self,
        entry: &TrustEntry,
        env: &KindEnv<'_>,
    ) -> Result<Arc<dyn Verifier>, ConfigError> {
        let b: Block = entry.parse_block()?;
        check_url("", &b.issuer).map_err(|e| entry.error("issuer", e.0))?;
        check_url("", &b.endpoint).map_err(|e| entry.error("endpoint", e.0))?;
        if b.timeout < Duration::from_millis(10) || b.timeout > Duration::from_secs(30) {
            return Err(entry.error("timeout", "must be between 10ms and 30s"));
        }
        if b.cache_max > Duration::from_secs(3600) {
            return Err(entry.error("cache_max", "must be at most 1h"));
        }
        if !(1..=10_000_000).contains(&b.cache_entries) {
            return Err(entry.error("cache_entries", "must be between 1 and 10000000"));
        }
        let secret = std::fs::read_to_string(&b.client_secret_file).map_err(|e| {
            entry.error(
                "client_secret_file",
                format!("{}: {e}", b.client_secret_file.display()),
            )
        })?;
        let secret = secret.lines().next().unwrap_or("").trim().to_owned();
        if secret.is_empty() {
            return Err(entry.error("client_secret_file", "the file is empty"));
        }
        let url =
            IntrospectionUrl::new(b.endpoint.clone()).map_err(|e| entry.error("endpoint", e))?;
        let client: Client = oauth2::Client::new(ClientId::new(b.client_id))
            .set_client_secret(ClientSecret::new(secret))
            .set_introspection_url(url);
        if b.any_audience && !b.audience.is_empty() {
            return Err(entry.error("any_audience", "cannot be set together with audience"));
        }
        let audience = match (b.any_audience, b.audience.is_empty()) {
            (true, _) => Vec::new(),
            (false, true) => vec![env.our_issuer.to_owned()],
            (false, false) => b.audience,
        };
        Ok(Arc::new(IntrospectionVerifier {
            trust: Arc::from(entry.name.as_str()),
            issuer: b.issuer,
            audience,
            cache_max: b.cache_max.as_secs() as i64,
            cache_entries: b.cache_entries,
            timeout: b.timeout,
            client,
            http: env.http.clone(),
            cache: Mutex::new(HashMap::new()),
        }))
    }
}

/// SHA-256 of a token → (its claims, reusable until).
type Cache = HashMap<[u8; 32], (Arc<Claims>, UnixTime)>;

/// One `oauth-introspection` entry's verifier.
struct IntrospectionVerifier {
    trust: Arc<str>,
    issuer: String,
    /// Empty: any audience (`any_audience: true`).
    audience: Vec<String>,
    cache_max: i64,
    cache_entries: usize,
    timeout: Duration,
    client: Client,
    http: HttpFetcher,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for IntrospectionVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IntrospectionVerifier")
            .field("trust", &self.trust)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

impl IntrospectionVerifier {
    fn cached(&self, key: &[u8; 32], now: UnixTime) -> Option<Arc<Claims>> {
        let mut cache = self.cache.lock().ok()?;
        match cache.get(key) {
            Some((claims, until)) if now < *until => Some(claims.clone()),
            Some(_) => {
                cache.remove(key);
                None
            }
            None => None,
        }
    }

    fn remember(&self, key: [u8; 32], claims: Arc<Claims>, exp: UnixTime, now: UnixTime) {
        // Never past `exp`, never longer than the configured limit.
        let until = exp.min(now.saturating_add(self.cache_max));
        if until <= now {
            return;
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= self.cache_entries {
                cache.retain(|_, (_, u)| *u > now);
                // Still more than half full of live entries: start over rather than scan again
                // on the next misses.
                if cache.len() * 2 > self.cache_entries {
                    cache.clear();
                }
            }
            cache.insert(key, (claims, until));
        }
    }

    /// Asks the endpoint (RFC 7662 §2.1) and turns an active reply into claims.
    async fn introspect(&self, token: &str) -> Result<Claims, Rejection> {
        let access_token = AccessToken::new(token.to_owned());
        // RFC 7662 §2.1: we are asking about an access token.
        let call = self
            .client
            .introspect(&access_token)
            .set_token_type_hint("access_token")
            .request_async(&self.http);
        let reply = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => return Err(upstream(&self.trust, "timed out")),
            Ok(Err(e)) => return Err(classify(&self.trust, e)),
            Ok(Ok(reply)) => reply,
        };
        if !reply.active() {
            return Err(Rejection::Inactive);
        }
        // RFC 7662 §2.2 members (`scope` space-delimited, times as NumericDate) plus extensions.
        match serde_json::to_value(&reply) {
            Ok(Value::Object(mut claims)) => {
                claims.remove("active");
                Ok(claims)
            }
            _ => Err(upstream(&self.trust, "reply could not be read")),
        }
    }

    /// Claim rules over an active reply; returns its `exp`.
    fn check(&self, claims: &mut Claims, ctx: &VerifyContext<'_>) -> Result<UnixTime, Rejection> {
        let exp = claims.check_times(ctx)?;
        match claims.str_claim("iss")? {
            Some(iss) if iss != self.issuer => return Err(Rejection::UntrustedIssuer),
            Some(_) => {}
            None => {
                claims.insert("iss".into(), self.issuer.clone().into());
            }
        }
        if !self.audience.is_empty() && !audience_contains(claims.get("aud"), &self.audience)? {
            return Err(Rejection::WrongAudience);
        }
        if claims.required_str("sub")?.is_empty() {
            return Err(Rejection::BadClaim("sub"));
        }
        claims.str_claim("scope")?;
        claims.str_claim("client_id")?;
        // RFC 7662 §2.2 `token_type`: only bearer access tokens are exchanged.
        if claims
            .str_claim("token_type")?
            .is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(Rejection::Kind("token is not a bearer access token"));
        }
        oauth_jwt::check_actor_claims(claims)?;
        oauth_jwt::refuse_sender_constrained(claims)?;
        Ok(exp)
    }
}

fn upstream(trust: &str, what: &'static str) -> Rejection {
    tracing::warn!(trust, "introspection failed: {what}");
    Rejection::Upstream("the introspection endpoint is unavailable")
}

fn classify(trust: &str, e: RequestTokenError<OutboundError, BasicErrorResponse>) -> Rejection {
    match e {
        RequestTokenError::Request(_) => upstream(trust, "the endpoint could not be reached"),
        RequestTokenError::ServerResponse(_) => upstream(trust, "the endpoint answered an error"),
        RequestTokenError::Parse(_, _) => {
            upstream(trust, "the reply is not an introspection response")
        }
        RequestTokenError::Other(_) => upstream(trust, "the reply is not JSON"),
    }
}

#[async_trait::async_trait]
impl Verifier for IntrospectionVerifier {
    /// Opaque tokens carry nothing to recognize: an introspection entry takes every token that
    /// no other entry of the profile recognizes.
    fn recognizes(&self, _presented: &Presented<'_>) -> bool {
        true
    }

    fn is_fallback(&self) -> bool {
        true
    }

    async fn verify(
        &self,
        presented: Presented<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Verified, Rejection> {
        let token = presented.token.expose();
        let key = token_hash(token);
        if let Some(claims) = self.cached(&key, ctx.now) {
            return Ok(Verified {
                claims: (*claims).clone(),
                trust: self.trust.clone(),
                kind: KIND,
                proven_key: None,
                asserted_by_caller: false,
            });
        }
        let mut claims = self.introspect(token).await?;
        let exp = self.check(&mut claims, ctx)?;
        let claims = Arc::new(claims);
        self.remember(key, claims.clone(), exp, ctx.now);
        Ok(Verified {
            claims: Arc::unwrap_or_clone(claims),
            trust: self.trust.clone(),
            kind: KIND,
            proven_key: None,
            asserted_by_caller: false,
        })
    }

    fn issuer(&self) -> &str {
        &self.issuer
    }
}
