//! Client authentication, shared by every flow: turns the credentials a request presents into
//! the `Caller` that profiles match.
//!
//! Methods: `private_key_jwt` (RFC 7523 §3 as tightened by 7523bis: `aud` is our issuer and
//! nothing else; `jti` is single use) and `client_secret_basic` (RFC 6749 §2.3.1; secrets stored
//! as PBKDF2 hashes, compared in constant time). Every failure is `invalid_client`. This module
//! never logs or returns a presented secret or assertion.

mod assertion;
pub mod secret_hash;

use std::collections::HashMap;
use std::sync::Arc;

pub use secret_hash::SecretHash;

use crate::clock::UnixTime;
use crate::config::{DEFAULT_ALGS, Settings};
use crate::error::{ErrorCode, OAuthError};
use crate::jose::Alg;
use crate::secret::{ClientSecret, Token};
use crate::store::ReplayGuard;
use crate::token::RequestFacts;
use crate::trust::{HttpFetcher, KeyStore, key_fetch};

/// `client_assertion_type` for RFC 7523 JWT client authentication.
pub const JWT_BEARER_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    PrivateKeyJwt,
    ClientSecretBasic,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::PrivateKeyJwt => "private_key_jwt",
            Self::ClientSecretBasic => "client_secret_basic",
        }
    }
}

/// The authenticated client of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: String,
    pub method: AuthMethod,
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
}

enum Credential {
    Secret(SecretHash),
    Keys {
        store: KeyStore,
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
    pub replay: &'a ReplayGuard,
    pub facts: &'a RequestFacts,
}

fn failed(d: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, d)
}

impl ClientRegistry {
    pub fn from_settings(settings: &Settings, http: &HttpFetcher) -> Result<Self, String> {
        let mut clients = HashMap::new();
        for c in &settings.clients {
            let credential = match (&c.secret_hash, &c.jwks) {
                (Some(h), _) => Credential::Secret(SecretHash::parse(h)?),
                (None, Some(jwks)) => {
                    let algorithms = if c.algorithms.is_empty() {
                        DEFAULT_ALGS.to_vec()
                    } else {
                        c.algorithms.clone()
                    };
                    let name = format!("client `{}`", c.id);
                    let store = KeyStore::new(
                        &name,
                        key_fetch(&name, &c.id, jwks, http),
                        &algorithms,
                        jwks,
                    );
                    Credential::Keys { store, algorithms }
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
        Ok(Self { clients })
    }

    /// Loads every client's keys once (at start).
    pub async fn load_keys(&self) {
        for c in self.clients.values() {
            if let Credential::Keys { store, .. } = &c.credential
                && let Err(e) = store.load().await
            {
                tracing::warn!(client = %c.id, "client keys not loaded: {e}");
            }
        }
    }

    /// Every `private_key_jwt` client's key source (for the periodic refresh).
    pub fn key_stores(&self) -> impl Iterator<Item = &KeyStore> {
        self.clients.values().filter_map(|c| match &c.credential {
            Credential::Keys { store, .. } => Some(store),
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

    /// Authenticates one request's credentials.
    pub async fn authenticate(
        &self,
        presented: ClientCredentials,
        ctx: &AuthContext<'_>,
    ) -> Result<Caller, OAuthError> {
        match presented {
            ClientCredentials::Basic { client_id, secret } => {
                let client = self
                    .clients
                    .get(&client_id)
                    .ok_or_else(|| failed("client authentication failed"))?;
                let Credential::Secret(hash) = &client.credential else {
                    return Err(failed("client is not registered for client_secret_basic"));
                };
                if !hash.verify(&secret) {
                    return Err(failed("client authentication failed"));
                }
                Ok(Caller {
                    id: client.id.clone(),
                    method: AuthMethod::ClientSecretBasic,
                })
            }
            ClientCredentials::Assertion {
                assertion_type,
                assertion,
                client_id,
            } => {
                if assertion_type != JWT_BEARER_ASSERTION {
                    return Err(failed("unsupported client_assertion_type"));
                }
                assertion::authenticate(self, &assertion, client_id.as_deref(), ctx).await
            }
        }
    }

    fn keys_of(&self, id: &str) -> Option<(&Client, &KeyStore, &[Alg])> {
        let c = self.clients.get(id)?;
        match &c.credential {
            Credential::Keys { store, algorithms } => Some((c, store, algorithms)),
            Credential::Secret(_) => None,
        }
    }
}
