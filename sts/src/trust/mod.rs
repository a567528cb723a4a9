//! Trust sources: the configured trust entries whose tokens we accept, each bound to its input
//! kind's verifier, and the key sources those verifiers read.
//!
//! Keys come only from an entry's configuration (a JWKS file, a `jwks_uri`, discovery under
//! the configured issuer), never from the token (RFC 8725 §3.10). This module verifies no token
//! and applies no policy: it builds entries through their kinds and finds them by name.

mod fetch;
mod keystore;

use std::collections::HashMap;
use std::sync::Arc;

pub use fetch::{HttpFetcher, OutboundError, discovery_urls};
pub use keystore::{KeyDocument, KeyFetch, KeyLookupError, KeyStore, key_fetch};

use crate::config::{ConfigError, TrustEntry};
use crate::token::{InputKind, KindEnv, KindRegistry, Verifier};

/// One configured trust entry, ready to verify tokens.
pub struct TrustSource {
    pub name: Arc<str>,
    pub kind: Arc<dyn InputKind>,
    pub verifier: Arc<dyn Verifier>,
}

impl std::fmt::Debug for TrustSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustSource")
            .field("name", &self.name)
            .field("kind", &self.kind.name())
            .field("verifier", &self.verifier)
            .finish()
    }
}

impl TrustSource {
    /// Whether this entry's kind verifies tokens declared as `token_type`.
    pub fn accepts_type(&self, token_type: &str) -> bool {
        self.kind.token_types().contains(&token_type)
    }
}

/// All trust sources, in configuration order.
#[derive(Debug, Default)]
pub struct TrustRegistry {
    sources: Vec<Arc<TrustSource>>,
    by_name: HashMap<Arc<str>, usize>,
}

impl TrustRegistry {
    /// Builds every entry through its kind; an unknown kind or a block the kind refuses is an
    /// error naming the entry and where it was written.
    pub fn build(
        entries: &[TrustEntry],
        kinds: &KindRegistry,
        env: &KindEnv<'_>,
    ) -> Result<Self, ConfigError> {
        let mut out = Self::default();
        for entry in entries {
            let Some(kind) = kinds.input(&entry.kind) else {
                return Err(entry.error(
                    "kind",
                    format!(
                        "unknown kind `{}` (kind must be one of: {})",
                        entry.kind,
                        kinds.input_names().join(", ")
                    ),
                ));
            };
            let verifier = kind.configure(entry, env)?;
            // RFC 8725 §3.12: kinds without explicit typing are told apart by their issuers.
            if verifier.accepts_untyped()
                && let Some(other) = out.sources.iter().find(|s| {
                    s.kind.name() != kind.name()
                        && s.verifier.accepts_untyped()
                        && s.verifier.issuer() == verifier.issuer()
                })
            {
                return Err(entry.error(
                    "",
                    format!(
                        "entry `{}` ({}) also accepts untyped tokens from issuer `{}`: one kind's \
                         tokens would pass as the other's; require explicit typing (e.g. \
                         allow_untyped: false)",
                        other.name,
                        other.kind.name(),
                        verifier.issuer()
                    ),
                ));
            }
            let name: Arc<str> = Arc::from(entry.name.as_str());
            out.by_name.insert(name.clone(), out.sources.len());
            out.sources.push(Arc::new(TrustSource {
                name,
                kind: kind.clone(),
                verifier,
            }));
        }
        Ok(out)
    }

    pub fn get(&self, name: &str) -> Option<&Arc<TrustSource>> {
        self.by_name.get(name).map(|&i| &self.sources[i])
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.sources.iter().map(|s| &*s.name)
    }

    pub fn all(&self) -> impl Iterator<Item = &Arc<TrustSource>> {
        self.sources.iter()
    }
}
