//! Trust sources: the configured trust entries whose tokens we accept, each bound to its input
//! kind's verifier, and the key sources those verifiers read.
//!
//! Keys come only from an entry's configuration (a JWKS file, a `jwks_uri`, discovery under
//! the configured issuer), never from the token (RFC 8725 §3.10). This module verifies no token
//! and applies no policy: it builds entries through their kinds and finds them by name.

mod bundle;
mod fetch;
mod keystore;
mod own;
mod spiffe_endpoint;

use std::collections::HashMap;
use std::sync::Arc;

pub use bundle::{BundleKeys, BundleUse, ParsedBundle, parse_bundle};
pub use fetch::{HttpFetcher, MAX_DOCUMENT_BYTES, OutboundError, discovery_urls, extra_roots};
pub use keystore::{KeyDocument, KeyFetch, KeyLookupError, KeyStore, key_fetch};
pub use own::OwnKeys;
pub use spiffe_endpoint::SpiffeEndpointFetch;

use crate::config::{ConfigError, ConfigProblems, TrustEntry};
use crate::token::{InputKind, KindEnv, KindRegistry, Verifier};

/// One configured trust entry, ready to verify tokens.
pub struct TrustSource {
    /// Unique among every trust source this process built (a reload builds new ones): what
    /// remembered verifications are tied to.
    pub id: u64,
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
    /// Whether this entry verifies tokens declared as `token_type` (its configured types, else
    /// its kind's).
    pub fn accepts_type(&self, token_type: &str) -> bool {
        match self.verifier.token_types() {
            Some(own) => own.iter().any(|t| t == token_type),
            None => self.kind.token_types().contains(&token_type),
        }
    }

    /// The token types this entry takes.
    pub fn types(&self) -> Vec<&str> {
        match self.verifier.token_types() {
            Some(own) => own.iter().map(String::as_str).collect(),
            None => self.kind.token_types().to_vec(),
        }
    }
}

/// All trust sources, in configuration order.
#[derive(Debug, Default)]
pub struct TrustRegistry {
    sources: Vec<Arc<TrustSource>>,
    by_name: HashMap<Arc<str>, usize>,
}

impl TrustRegistry {
    /// Builds every entry through its kind; an unknown kind or a block the kind refuses is a
    /// problem naming the entry and where it was written. Every entry's problems are reported.
    pub fn build(
        entries: &[TrustEntry],
        kinds: &KindRegistry,
        env: &KindEnv<'_>,
    ) -> Result<Self, ConfigProblems> {
        let mut out = Self::default();
        let mut problems = Vec::new();
        for entry in entries {
            match Self::source(&out, entry, kinds, env) {
                Ok(source) => {
                    out.by_name.insert(source.name.clone(), out.sources.len());
                    out.sources.push(Arc::new(source));
                }
                Err(e) => problems.push(e),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ConfigProblems(problems))
        }
    }

    fn source(
        &self,
        entry: &TrustEntry,
        kinds: &KindRegistry,
        env: &KindEnv<'_>,
    ) -> Result<TrustSource, ConfigError> {
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
            && let Some(other) = self.sources.iter().find(|s| {
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
        // A bearer client assertion (a JWT-SVID, `jwt-spiffe`) must never pass as a subject
        // token at a sibling entry of the same kind and issuer with other audience rules: one
        // such entry per issuer (its own configuration keeps the two audiences apart).
        if let Some(other) = self.sources.iter().find(|s| {
            s.kind.name() == kind.name()
                && s.verifier.issuer() == verifier.issuer()
                && (s.verifier.client_assertion_type().is_some()
                    || verifier.client_assertion_type().is_some())
        }) {
            return Err(entry.error(
                "",
                format!(
                    "entry `{}` ({}) already covers `{}` and one of the two authenticates \
                     clients by assertion: a client assertion could pass as a subject token at \
                     the other; use one entry",
                    other.name,
                    kind.name(),
                    verifier.issuer()
                ),
            ));
        }
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        Ok(TrustSource {
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            name: Arc::from(entry.name.as_str()),
            kind: kind.clone(),
            verifier,
        })
    }

    /// Loads the key sources that are local files now and reports each that cannot be read or
    /// has no usable key (`skip` names entries whose file is made later, e.g. development
    /// mode's). Remote sources are not fetched here.
    pub async fn check_local_keys(
        &self,
        entries: &[TrustEntry],
        skip: &[&str],
    ) -> Vec<ConfigError> {
        let mut problems = Vec::new();
        for source in &self.sources {
            let Some(keys) = source.verifier.keys() else {
                continue;
            };
            if keys.local_file().is_none() || skip.contains(&&*source.name) {
                continue;
            }
            let loaded = match keys.load().await {
                // A SPIFFE bundle may be empty to revoke every key, but a file that starts out
                // with nothing of the entry's use is a mistake (a misspelt `use`, no `kid`).
                Ok(()) if keys.is_empty() => Err(format!(
                    "{}: the file holds no usable key for this entry (check each key's `use`, \
                     `kid` and algorithm)",
                    keys.name()
                )),
                other => other,
            };
            if let Err(e) = loaded {
                let message = e
                    .strip_prefix(&format!("{}: ", keys.name()))
                    .unwrap_or(&e)
                    .to_owned();
                match entries.iter().find(|t| *t.name == *source.name) {
                    Some(t) => problems.push(t.error("jwks.file", message)),
                    None => problems.push(ConfigError(format!(
                        "trust entry `{}`: jwks.file: {message}",
                        source.name
                    ))),
                }
            }
        }
        problems
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
