//! Client authentication, shared by every flow: turns the credentials a request presents into
//! the `Caller` that profiles match.
//!
//! Methods: `private_key_jwt` (RFC 7523 §3 as tightened by 7523bis: `aud` is our issuer and
//! nothing else; `jti` is single use) and `client_secret_basic` (RFC 6749 §2.3.1; secrets stored
//! as PBKDF2 hashes, compared in constant time, checked on a bounded pool off the HTTP
//! workers). Every failure is `invalid_client`; an unknown `client_id` costs the same PBKDF2 work
//! and gets the same text as a wrong secret. Failures are throttled per client id and peer
//! (`throttle`). This module never logs or returns a presented secret or assertion.

mod assertion;
pub mod secret_hash;
pub mod secret_pool;
pub mod throttle;
mod workload;

use std::collections::HashMap;
use std::sync::Arc;

pub use secret_hash::SecretHash;
pub use secret_pool::SecretCheckPool;
pub use throttle::{AttemptKeys, FailureThrottle};

use crate::clock::UnixTime;
use crate::config::{ClientAuthSettings, DEFAULT_ALGS, Settings};
use crate::error::{ErrorCode, OAuthError};
use crate::exchange::ExchangeRequest;
use crate::jose::Alg;
use crate::secret::{ClientSecret, Token};
use crate::store::ReplayGuard;
use crate::token::RequestFacts;
use crate::trust::{HttpFetcher, KeyStore, TrustRegistry, key_fetch};

/// `client_assertion_type` for RFC 7523 JWT client authentication.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    PrivateKeyJwt,
    ClientSecretBasic,
    /// A credential a trust entry's kind reads from the request headers, named by the kind
    /// (`wimse_wit_wpt`).
    Workload(&'static str),
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::ClientSecretBasic => "client_secret_basic",
            Self::Workload(name) => name,
        }
    }
}

/// The authenticated client of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub method: AuthMethod,
    /// The public key (JWK) the client proved it holds in this request, when its
    /// authentication was a proof of possession (a WIT and its WPT).
    pub proven_key: Option<crate::token::ProvenKey>,
    /// RFC 8705 §3.1: `x5t#S256` of the TLS client certificate the client authenticated
    /// with (mutual TLS), which an output kind may bind what it issues to.
    pub certificate_thumbprint: Option<String>,
}

/// Credentials as presented, before any check.
#[derive(Debug)]
pub enum ClientCredentials {
    Basic {
        client_id: String,
        secret: ClientSecret,
    },
    Assertion {
        assertion_type: String,
        assertion: Token,
        client_id: Option<String>,
    },
    /// Nothing in the form or `Authorization`: a trust entry may find a credential in the
    /// headers its kind declares (a WIT and its WPT). `client_id` is the form's, if sent.
    Headers { client_id: Option<String> },
}

enum Credential {
    Secret(Arc<SecretHash>),
    Keys {
        store: Box<KeyStore>,
        algorithms: Vec<Alg>,
    },
}

struct Client {
    id: String,
    credential: Credential,
}

/// The registered clients.
pub struct ClientRegistry {
    clients: HashMap<String, Arc<Client>>,
    /// Checked instead of a real hash when the presented `client_id` has no secret, so that
    /// case costs what a wrong secret costs.
    decoy: Arc<SecretHash>,
}

impl std::fmt::Debug for ClientRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRegistry")
            .field("clients", &self.clients.len())
            .finish()
    }
}

/// What the checks need besides the credentials.
pub struct AuthContext<'a> {
    pub issuer: &'a str,
    pub now: UnixTime,
    pub leeway: i64,
    pub max_token_bytes: usize,
    pub replay: &'a dyn ReplayGuard,
    pub facts: &'a RequestFacts,
    pub secret_checks: &'a SecretCheckPool,
    pub throttle: &'a FailureThrottle,
    pub limits: &'a ClientAuthSettings,
    /// Trust entries that may authenticate clients (a WIT with its proof).
    pub trust: &'a TrustRegistry,
    /// The token-exchange parameters a proof may bind.
    pub exchange: Option<&'a ExchangeRequest>,
}

impl<'a> AuthContext<'a> {
    /// What a kind's verifier needs to check a client credential (there is no caller yet).
    pub fn verify_context(&self) -> crate::token::VerifyContext<'a> {
        crate::token::VerifyContext {
            now: self.now,
            leeway: self.leeway,
            max_token_bytes: self.max_token_bytes,
            facts: self.facts,
            replay: self.replay,
            exchange: self.exchange,
            caller: None,
        }
    }
}

fn failed(d: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, d)
}

/// The one answer to a wrong secret, an unknown client and a client without a secret.
const SECRET_FAILED: &str = "client authentication failed";

impl ClientCredentials {
    /// The `client_id` the request claims (Basic user name or the form's `client_id`), before
    /// any check: for the log.
    pub fn claimed_id(&self) -> Option<&str> {
        match self {
            Self::Basic { client_id, .. } => Some(client_id),
            Self::Assertion { client_id, .. } => client_id.as_deref(),
            Self::Headers { client_id } => client_id.as_deref(),
        }
    }

    /// The `client_id` a failure is counted against: secrets only (they can be guessed; an
    /// assertion cannot, and an id named in a form costs an attacker nothing to write).
    pub fn charged_id(&self) -> Option<&str> {
        match self {
            Self::Basic { client_id, .. } => Some(client_id),
            Self::Assertion { .. } | Self::Headers { .. } => None,
        }
    }
}

/// The PBKDF2 check on the pool, padded to `cost` iterations so every client (and the decoy)
/// costs the same. A saturated pool is `temporarily_unavailable`: the secret was not judged.
async fn check_secret(
    hash: Arc<SecretHash>,
    secret: ClientSecret,
    cost: u32,
    pool: &SecretCheckPool,
) -> Result<bool, OAuthError> {
    pool.run(move || {
        let ok = hash.verify_slow(&secret);
        SecretHash::burn(cost.saturating_sub(hash.iterations()));
        ok
    })
    .await
    .map_err(|_| OAuthError::unavailable("client authentication is busy"))
}

impl ClientRegistry {
    pub fn from_settings(settings: &Settings, http: &HttpFetcher) -> Result<Self, String> {
        let mut clients = HashMap::new();
        let mut slowest = 0;
        for c in &settings.clients {
            let credential = match (&c.secret_hash, &c.jwks) {
                (Some(h), _) => {
                    let hash = SecretHash::parse(h)?;
                    slowest = slowest.max(hash.iterations());
                    Credential::Secret(Arc::new(hash))
                }
                (None, Some(jwks)) => {
                    let algorithms = c
                        .algorithms
                        .clone()
                        .unwrap_or_else(|| DEFAULT_ALGS.to_vec());
                    let name = format!("client `{}`", c.id);
                    let store = KeyStore::new(
                        &name,
                        key_fetch(&name, &c.id, jwks, http),
                        &algorithms,
                        jwks,
                    );
                    Credential::Keys {
                        store: Box::new(store),
                        algorithms,
                    }
                }
                (None, None) => return Err(format!("client `{}` has no credential", c.id)),
            };
            clients.insert(
                c.id.clone(),
                Arc::new(Client {
                    id: c.id.clone(),
                    credential,
                }),
            );
        }
        Ok(Self {
            clients,
            decoy: Arc::new(SecretHash::decoy(if slowest == 0 {
                secret_hash::DEFAULT_ITERATIONS
            } else {
                slowest
            })),
        })
    }

    /// Loads every client's keys once (at start).
    pub async fn load_keys(&self) {
        for c in self.clients.values() {
            if let Credential::Keys { store, .. } = &c.credential {
                // A failure is logged by `load` (naming the client).
                let _ = store.load().await;
            }
        }
    }

    /// Every `private_key_jwt` client's key source (for the periodic refresh).
    /// How the client registered as `id` authenticates, if there is one.
    pub fn method_of(&self, id: &str) -> Option<AuthMethod> {
        self.clients.get(id).map(|c| match c.credential {
            Credential::Secret(_) => AuthMethod::ClientSecretBasic,
            Credential::Keys { .. } => AuthMethod::PrivateKeyJwt,
        })
    }

    pub fn key_stores(&self) -> impl Iterator<Item = &KeyStore> {
        self.clients.values().filter_map(|c| match &c.credential {
            Credential::Keys { store, .. } => Some(&**store),
            Credential::Secret(_) => None,
        })
    }

    /// `(client id, loaded)` for every `private_key_jwt` client: for readiness.
    pub fn keys_loaded(&self) -> Vec<(&str, bool)> {
        self.clients
            .values()
            .filter_map(|c| match &c.credential {
                Credential::Keys { store, .. } => Some((c.id.as_str(), store.is_loaded())),
                Credential::Secret(_) => None,
            })
            .collect()
    }

    /// Authenticates one request's credentials. A secret that already passed PBKDF2 answers at
    /// once: there is nothing to guess. Every other attempt meets the failure budgets first (a
    /// spent budget is refused before any check), and a failure is counted.
    pub async fn authenticate(
        &self,
        presented: ClientCredentials,
        ctx: &AuthContext<'_>,
    ) -> Result<Caller, OAuthError> {
        if let ClientCredentials::Basic { client_id, secret } = &presented {
            let client = self.clients.get(client_id);
            // The decoy for unknown ids too, so this step costs the same either way.
            let hash = match client.map(|c| &c.credential) {
                Some(Credential::Secret(h)) => h,
                _ => &self.decoy,
            };
            if hash.matches_remembered(secret)
                && let Some(client) = client
            {
                return Ok(Caller {
                    id: client.id.clone(),
                    method: AuthMethod::ClientSecretBasic,
                    proven_key: None,
                    certificate_thumbprint: None,
                });
            }
        }
        let presented_id = presented.claimed_id().map(|id| self.loggable_id(id));
        let keys = AttemptKeys::new(presented.charged_id(), ctx.facts.peer);
        let outcome = match ctx.throttle.admit(&keys, ctx.limits, ctx.now).await {
            Ok(()) => self.check(presented, ctx).await,
            Err(refused) => Err(refused),
        };
        if let Err(e) = &outcome {
            // Counts only `invalid_client`, so a refusal here is not counted again.
            ctx.throttle.failed(&keys, e, ctx.limits, ctx.now).await;
            // The id as presented, escaped by `Debug`; never the secret or assertion.
            tracing::info!(client = ?presented_id, error = %e.code, reason = %e.description, "client authentication failed");
        }
        outcome
    }

    async fn check(
        &self,
        presented: ClientCredentials,
        ctx: &AuthContext<'_>,
    ) -> Result<Caller, OAuthError> {
        match presented {
            ClientCredentials::Basic { client_id, secret } => {
                let client = self.clients.get(&client_id);
                let hash = match client.map(|c| &c.credential) {
                    Some(Credential::Secret(h)) => h.clone(),
                    // Unknown, or registered for private_key_jwt: same work, same answer.
                    _ => self.decoy.clone(),
                };
                let cost = self.decoy.iterations();
                if !check_secret(hash, secret, cost, ctx.secret_checks).await? {
                    return Err(failed(SECRET_FAILED));
                }
                let client = client.ok_or_else(|| failed(SECRET_FAILED))?;
                Ok(Caller {
                    id: client.id.clone(),
                    method: AuthMethod::ClientSecretBasic,
                    proven_key: None,
                    certificate_thumbprint: None,
                })
            }
            ClientCredentials::Assertion {
                assertion_type,
                assertion,
                client_id,
            } => {
                if assertion_type != JWT_BEARER_ASSERTION {
                    // Another assertion type is a trust entry's (a JWT-SVID, `jwt-spiffe`).
                    return workload::authenticate_assertion(
                        &assertion_type,
                        &assertion,
                        client_id.as_deref(),
                        ctx,
                    )
                    .await;
                }
                assertion::authenticate(self, &assertion, client_id.as_deref(), ctx).await
            }
            ClientCredentials::Headers { client_id } => {
                workload::authenticate(client_id.as_deref(), ctx).await
            }
        }
    }

    /// A presented client id as it may appear in a log: a registered id as it is; anything
    /// else (a typo, a secret sent as the user name, a huge string) as a fingerprint and length.
    pub fn loggable_id(&self, id: &str) -> String {
        if self.clients.contains_key(id) {
            id.to_owned()
        } else {
            format!(
                "unregistered(sha256:{}, {} bytes)",
                crate::secret::fingerprint(id.as_bytes()),
                id.len()
            )
        }
    }

    fn keys_of(&self, id: &str) -> Option<(&Client, &KeyStore, &[Alg])> {
        let c = self.clients.get(id)?;
        match &c.credential {
            Credential::Keys { store, algorithms } => Some((c, &**store, algorithms)),
            Credential::Secret(_) => None,
        }
    }
}
