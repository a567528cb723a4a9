//! Trust sources: the configured issuers whose tokens we accept, and their public keys.
//!
//! Keys come only from the entry's configuration (a JWKS file, a `jwks_uri`, or the `jwks_uri`
//! of the issuer's metadata), never from the token (RFC 8725 §3.10). This module verifies no
//! token and applies no policy; it answers "which key is `kid` for this issuer".

mod fetch;
mod keystore;

use std::collections::HashMap;
use std::sync::Arc;

pub use fetch::{HttpFetcher, discovery_urls};
pub use keystore::{KeyLookupError, KeyStore};

use crate::config::{DEFAULT_ALGS, Settings, TrustKind};
use crate::jose::Alg;

/// One configured trust entry, ready to verify tokens.
#[derive(Debug)]
pub struct TrustSource {
    pub name: String,
    pub kind: TrustKind,
    pub issuer: String,
    /// `aud` values that name us.
    pub audience: Vec<String>,
    pub algorithms: Vec<Alg>,
    pub allow_untyped: bool,
    pub keys: KeyStore,
}

/// All trust sources, by name.
#[derive(Debug, Default)]
pub struct TrustRegistry {
    by_name: HashMap<String, Arc<TrustSource>>,
}

impl TrustRegistry {
    pub fn from_settings(settings: &Settings, http: &HttpFetcher) -> Self {
        let by_name = settings
            .trust
            .iter()
            .map(|t| {
                let algorithms = if t.algorithms.is_empty() {
                    DEFAULT_ALGS.to_vec()
                } else {
                    t.algorithms.clone()
                };
                let audience = if t.audience.is_empty() {
                    vec![settings.issuer.clone()]
                } else {
                    t.audience.clone()
                };
                let keys = KeyStore::new(&t.name, &t.issuer, &t.jwks, &algorithms, http.clone());
                let source = TrustSource {
                    name: t.name.clone(),
                    kind: t.kind,
                    issuer: t.issuer.clone(),
                    audience,
                    algorithms,
                    allow_untyped: t.allow_untyped,
                    keys,
                };
                (t.name.clone(), Arc::new(source))
            })
            .collect();
        Self { by_name }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<TrustSource>> {
        self.by_name.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<TrustSource>> {
        self.by_name.values()
    }
}
