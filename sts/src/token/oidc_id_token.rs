//! Input kind `oidc-id-token`: OpenID Connect ID tokens, declared as
//! `urn:ietf:params:oauth:token-type:id_token` (RFC 8693 §3).
//!
//! Keys: by default the provider is discovered with the `openidconnect` crate's typed metadata
//! (OpenID Connect Discovery 1.0 §4: `issuer` must equal the configured one, `jwks_uri` must
//! pass our URL rules), and keys verify only the algorithms the provider advertises in
//! `id_token_signing_alg_values_supported` (and the entry allows). A `jwks: {file|uri}` may be
//! configured instead.
//!
//! Checks: the signature and times go through the one JWS driver; then the `openidconnect`
//! crate's ID-token claims verifier (its signature check off, the driver did it) checks `iss`,
//! that `aud` contains our client id and holds no untrusted audience, and `exp` (OpenID Connect
//! Core §3.1.3.7 steps 2–3, 9); `azp` (steps 4–5), which the crate does not check, is checked
//! here. No profile policy.

use std::sync::Arc;

use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreProviderMetadata,
};
use openidconnect::{ClaimsVerificationError, ClientId, IssuerUrl, Nonce};
use serde::Deserialize;
use serde_json::json;

use super::{
    InputKind, JwsEntry, KindEnv, Presented, Rejection, TypRule, Verified, Verifier, VerifyContext,
    oauth_jwt, types,
};
use crate::config::{ConfigError, JwksSettings, TrustEntry, check_url};
use crate::jose::{Alg, Claims};
use crate::trust::{HttpFetcher, KeyDocument, KeyFetch, KeyStore};

const KIND: &str = "oidc-id-token";

/// The `oidc-id-token` kind.
pub struct OidcIdTokenKind;

/// An `oidc-id-token` trust entry's block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    /// The provider's issuer identifier, exactly as in its tokens.
    issuer: String,
    /// Our client id at the provider: `aud` must contain it.
    client_id: String,
    /// Other audiences an ID token may list besides `client_id` (none by default).
    #[serde(default)]
    trusted_audiences: Vec<String>,
    /// Accepted `alg` values (default ES256, EdDSA, RS256, PS256), further limited by what
    /// the provider advertises when it is discovered.
    #[serde(default)]
    algorithms: Option<Vec<Alg>>,
    /// Default: `{discovery: true}` through OpenID Connect Discovery.
    #[serde(default = "discovery")]
    jwks: JwksSettings,
}

fn discovery() -> JwksSettings {
    JwksSettings {
        discovery: true,
        ..JwksSettings::default()
    }
}

impl InputKind for OidcIdTokenKind {
    fn name(&self) -> &'static str {
        KIND
    }

    fn token_types(&self) -> &'static [&'static str] {
        &[types::ID_TOKEN]
    }

    fn sample_claims(&self) -> Claims {
        oauth_jwt::sample(json!({
            "aud": "sample-client", "azp": "sample-client", "email": "user@example.com",
            "email_verified": true, "name": "Sample User", "auth_time": 1_700_000_000,
        }))
    }

    fn configure(
        &self,
        entry: &TrustEntry,
        env: &KindEnv<'_>,
    ) -> Result<Arc<dyn Verifier>, ConfigError> {
        let b: Block = entry.parse_block()?;
        if b.client_id.is_empty() {
            return Err(entry.error("client_id", "must not be empty"));
        }
        let discovery: Option<Box<dyn KeyFetch>> = b.jwks.discovery.then(|| {
            Box::new(OidcDiscovery {
                issuer: b.issuer.clone(),
                http: env.http.clone(),
            }) as Box<dyn KeyFetch>
        });
        let jws = JwsEntry::configure(entry, env, b.issuer, b.algorithms, &b.jwks, discovery)?;
        let issuer_url =
            IssuerUrl::new(jws.issuer.clone()).map_err(|e| entry.error("issuer", e))?;
        Ok(Arc::new(IdTokenVerifier {
            jws,
            issuer_url,
            client_id: b.client_id,
            trusted_audiences: b.trusted_audiences,
        }))
    }
}

/// OpenID Connect Discovery 1.0 through the crate's typed provider metadata.
#[derive(Debug)]
struct OidcDiscovery {
    issuer: String,
    http: HttpFetcher,
}

#[async_trait::async_trait]
impl KeyFetch for OidcDiscovery {
    async fn fetch(&self) -> Result<KeyDocument, String> {
        // Discovery §4: the configuration document is under the issuer.
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let body = self.http.get(&url).await?;
        let meta: CoreProviderMetadata = serde_json::from_slice(&body)
            .map_err(|_| format!("{url}: not OpenID provider metadata"))?;
        // Discovery §4.3: the issuer MUST be identical to the one the document was got for.
        if meta.issuer().as_str() != self.issuer {
            return Err(format!(
                "{url}: metadata issuer differs from `{}`",
                self.issuer
            ));
        }
        let jwks_uri = meta.jwks_uri().url().as_str();
        check_url("jwks_uri", jwks_uri).map_err(|e| e.0)?;
        let jwks = self.http.get(jwks_uri).await?;
        let algorithms = meta
            .id_token_signing_alg_values_supported()
            .iter()
            .filter_map(|a| serde_json::to_value(a).ok()?.as_str()?.parse::<Alg>().ok())
            .collect();
        Ok(KeyDocument {
            algorithms: Some(algorithms),
            ..KeyDocument::jwks(jwks)
        })
    }
}

/// One `oidc-id-token` entry's verifier.
#[derive(Debug)]
struct IdTokenVerifier {
    jws: JwsEntry,
    issuer_url: IssuerUrl,
    client_id: String,
    trusted_audiences: Vec<String>,
}

impl IdTokenVerifier {
    /// OpenID Connect Core §3.1.3.7 claim rules over a token whose signature checked out.
    fn check_claims(&self, token: &str, ctx: &VerifyContext<'_>) -> Result<(), Rejection> {
        let id_token: CoreIdToken = token
            .parse()
            .map_err(|_| Rejection::Kind("ID token claims are malformed"))?;
        // The crate compares `now >= exp`; shifting its clock back by the leeway gives the same
        // tolerance as every other kind.
        let at = chrono::DateTime::from_timestamp(ctx.now.saturating_sub(ctx.leeway), 0)
            .ok_or(Rejection::BadClaim("exp"))?;
        let trusted = &self.trusted_audiences;
        let verifier = CoreIdTokenVerifier::new_public_client(
            ClientId::new(self.client_id.clone()),
            self.issuer_url.clone(),
            CoreJsonWebKeySet::new(Vec::new()),
        )
        .insecure_disable_signature_check()
        .set_time_fn(move || at)
        .set_other_audience_verifier_fn(|aud| trusted.iter().any(|t| t == aud.as_str()));
        // No nonce: the token was not requested by us (RFC 8693 exchanges a token issued to
        // someone else's login).
        let claims = id_token
            .claims(&verifier, |_: Option<&Nonce>| Ok(()))
            .map_err(|e| match e {
                ClaimsVerificationError::InvalidIssuer(_) => Rejection::UntrustedIssuer,
                ClaimsVerificationError::InvalidAudience(_) => Rejection::WrongAudience,
                ClaimsVerificationError::Expired(_) => Rejection::Expired,
                _ => Rejection::Kind("ID token claims are not acceptable"),
            })?;
        // Core §3.1.3.7 steps 4–5 (not checked by the crate): with several audiences `azp`
        // must be present, and when present it must be our client id.
        match claims.authorized_party() {
            Some(azp) if azp.as_str() != self.client_id => Err(Rejection::WrongAuthorizedParty),
            None if claims.audiences().len() > 1 => Err(Rejection::MissingClaim("azp")),
            _ => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Verifier for IdTokenVerifier {
    fn recognizes(&self, presented: &Presented<'_>) -> bool {
        self.jws.recognizes(presented)
    }

    /// Signature, issuer, audience, `azp` and times: nothing from the request.
    fn cacheable(&self) -> bool {
        true
    }

    async fn verify(
        &self,
        presented: Presented<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Verified, Rejection> {
        // ID tokens carry no explicit type, or the generic `JWT`; any other explicit type is
        // a different kind of JWT (RFC 8725 §3.11).
        let typ = TypRule {
            explicit: &[],
            untyped_ok: true,
        };
        let checked = self.jws.verify(presented.jws?, typ, ctx).await?;
        self.check_claims(presented.token.expose(), ctx)?;
        let claims = checked.claims;
        if claims
            .get("sub")
            .and_then(|s| s.as_str())
            .is_none_or(str::is_empty)
        {
            return Err(Rejection::MissingClaim("sub"));
        }
        oauth_jwt::check_actor_claims(&claims)?;
        oauth_jwt::refuse_sender_constrained(&claims)?;
        Ok(Verified {
            claims,
            trust: self.jws.trust.clone(),
            kind: KIND,
            proven_key: None,
            asserted_by_caller: false,
        })
    }

    fn issuer(&self) -> &str {
        &self.jws.issuer
    }

    fn keys(&self) -> Option<&KeyStore> {
        Some(&self.jws.keys)
    }

    fn accepts_untyped(&self) -> bool {
        true
    }
}
