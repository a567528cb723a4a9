//! A key source: a trust entry's (or client's) current key set, refreshed in the background
//! and refetched — at most once per cooldown, coalesced across concurrent requests — when a
//! token names an unknown `kid`.
//!
//! Where the key document comes from is a [`KeyFetch`]: the built-in ones read a JWKS file, a
//! `jwks_uri`, or the `jwks_uri` of the issuer's RFC 8414 / OpenID metadata; a kind may bring
//! its own (the OIDC kind discovers through `openidconnect`). Until a key set has loaded once,
//! lookups fail closed with `NotLoaded` (design invariant 12).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use super::fetch::{HttpFetcher, discovery_urls};
use crate::config::JwksSettings;
use crate::jose::{Alg, KeySet};

/// A fetched key document: a JWKS, and the algorithms its issuer advertises, if it does.
#[derive(Debug, Clone, Default)]
pub struct KeyDocument {
    pub jwks: Vec<u8>,
    pub algorithms: Option<Vec<Alg>>,
    /// Whether a document with no usable key is installed as an empty key set (a SPIFFE
    /// bundle whose keys were all revoked: every token of that source then fails) rather than
    /// refused (a JWKS that lost its keys by mistake: the previous keys stay).
    pub may_be_empty: bool,
    /// The document's version (`spiffe_sequence`): an older one never replaces a newer one.
    pub sequence: Option<u64>,
    /// How often the publisher suggests refetching it (`spiffe_refresh_hint`).
    pub refresh_hint: Option<Duration>,
    /// X.509 trust anchors (DER) the document carries (a SPIFFE bundle's `x509-svid` roots).
    pub roots: Vec<Vec<u8>>,
}

impl KeyDocument {
    /// A plain JWK Set.
    pub fn jwks(jwks: Vec<u8>) -> Self {
        Self {
            jwks,
            ..Self::default()
        }
    }
}

/// The shortest and longest refresh interval a publisher's hint may set.
const MIN_REFRESH_HINT: Duration = Duration::from_secs(5);
const MAX_REFRESH_HINT: Duration = Duration::from_secs(24 * 3600);

/// Where a key source's document comes from.
#[async_trait::async_trait]
pub trait KeyFetch: Send + Sync + std::fmt::Debug {
    async fn fetch(&self) -> Result<KeyDocument, String>;
    /// The file the keys come from, when they are local (checked at start and by `sts check`).
    fn local_file(&self) -> Option<&std::path::Path> {
        None
    }
}

#[derive(Debug, Clone)]
enum Location {
    File(PathBuf),
    Uri(String),
    Discovery { issuer: String },
}

#[derive(Debug)]
struct BuiltinFetch {
    name: String,
    location: Location,
    http: HttpFetcher,
}

/// The built-in key fetch for `jwks` settings (`issuer` is used by `discovery: true`).
pub fn key_fetch(
    name: &str,
    issuer: &str,
    jwks: &JwksSettings,
    http: &HttpFetcher,
) -> Box<dyn KeyFetch> {
    let location = match (&jwks.file, &jwks.uri) {
        (Some(f), _) => Location::File(f.clone()),
        (None, Some(u)) => Location::Uri(u.clone()),
        (None, None) => Location::Discovery {
            issuer: issuer.to_owned(),
        },
    };
    Box::new(BuiltinFetch {
        name: name.to_owned(),
        location,
        http: http.clone(),
    })
}

#[async_trait::async_trait]
impl KeyFetch for BuiltinFetch {
    async fn fetch(&self) -> Result<KeyDocument, String> {
        let jwks = match &self.location {
            Location::File(p) => read_key_file(p).await?,
            Location::Uri(u) => self.http.get(u).await?,
            Location::Discovery { issuer } => {
                let jwks_uri = self.discover(issuer).await?;
                self.http.get(&jwks_uri).await?
            }
        };
        Ok(KeyDocument::jwks(jwks))
    }

    fn local_file(&self) -> Option<&std::path::Path> {
        match &self.location {
            Location::File(p) => Some(p),
            _ => None,
        }
    }
}

/// A local JWK Set: a regular file (not a FIFO or device that could block or never end) of at
/// most the size a remote document may have.
pub(super) async fn read_key_file(p: &std::path::Path) -> Result<Vec<u8>, String> {
    let shown = |e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    let meta = tokio::fs::metadata(p).await.map_err(|e| shown(&e))?;
    if !meta.is_file() {
        return Err(shown(&"not a regular file"));
    }
    if meta.len() > super::fetch::MAX_DOCUMENT_BYTES as u64 {
        return Err(shown(&format!(
            "larger than {} bytes",
            super::fetch::MAX_DOCUMENT_BYTES
        )));
    }
    tokio::fs::read(p).await.map_err(|e| shown(&e))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyLookupError {
    #[error("no key matches the token's kid and alg")]
    UnknownKey,
    #[error("the issuer's keys are not available")]
    NotLoaded,
}

#[derive(Debug)]
pub struct KeyStore {
    name: String,
    fetch: Box<dyn KeyFetch>,
    allowed: Vec<Alg>,
    current: RwLock<Option<Arc<KeySet>>>,
    /// Held while refetching; holds the time of the last refetch.
    refetch: tokio::sync::Mutex<Option<Instant>>,
    /// Held for a whole load (fetch, checks, install), so that a slower, older document can
    /// never be installed after a newer one by a concurrent load.
    loading: tokio::sync::Mutex<()>,
    cooldown: Duration,
    /// The configured refresh interval, in seconds; a document's refresh hint replaces it.
    refresh_secs: AtomicU64,
    last_load: Mutex<Option<Instant>>,
    fetches: AtomicU64,
    /// Bumped whenever a load installs a key document that differs from the last one: what
    /// was verified under an older generation may no longer verify.
    generation: AtomicU64,
    /// SHA-256 of the last installed key document.
    installed: Mutex<Option<[u8; 32]>>,
    /// The `sequence` of the installed document, when it had one.
    sequence: Mutex<Option<u64>>,
    /// X.509 trust anchors of the installed document.
    roots: RwLock<Arc<[Vec<u8>]>>,
    /// Loads that failed (the previous keys were kept): for metrics and tests.
    failures: AtomicU64,
}

impl KeyStore {
    /// A key source named `name` (for logs) whose keys may verify `allowed` algorithms.
    pub fn new(name: &str, fetch: Box<dyn KeyFetch>, allowed: &[Alg], jwks: &JwksSettings) -> Self {
        Self {
            name: name.to_owned(),
            fetch,
            allowed: allowed.to_vec(),
            current: RwLock::new(None),
            refetch: tokio::sync::Mutex::new(None),
            loading: tokio::sync::Mutex::new(()),
            cooldown: jwks.refetch_cooldown,
            refresh_secs: AtomicU64::new(jwks.refresh.as_secs().max(1)),
            last_load: Mutex::new(None),
            fetches: AtomicU64::new(0),
            generation: AtomicU64::new(0),
            installed: Mutex::new(None),
            sequence: Mutex::new(None),
            roots: RwLock::new(Arc::from(Vec::new())),
            failures: AtomicU64::new(0),
        }
    }

    /// Which key set is installed: changes whenever the keys change (0: never loaded).
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The file the keys come from, when they are local.
    pub fn local_file(&self) -> Option<&std::path::Path> {
        self.fetch.local_file()
    }

    /// The name used in logs (`trust `x``, `client `y``).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// How many times keys were (re)loaded: for tests and metrics.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    pub fn is_loaded(&self) -> bool {
        self.snapshot().is_some()
    }

    /// How often the keys are refetched: the configured interval, or the last document's
    /// refresh hint (bounded to 5s–24h).
    pub fn refresh_interval(&self) -> Duration {
        Duration::from_secs(self.refresh_secs.load(Ordering::Relaxed))
    }

    /// Whether the periodic refresh is due (never loaded, or loaded a refresh interval ago).
    pub fn refresh_due(&self) -> bool {
        let every = self.refresh_interval();
        self.last_load
            .lock()
            .map(|g| g.is_none_or(|t| t.elapsed() >= every))
            .unwrap_or(true)
    }

    /// How many loads failed (the previous keys were kept each time).
    pub fn failure_count(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// The installed document's `sequence`, when it had one.
    pub fn sequence(&self) -> Option<u64> {
        self.sequence.lock().map(|g| *g).unwrap_or(None)
    }

    /// Whether the installed key set holds no key and no X.509 authority (a SPIFFE bundle
    /// with nothing of the entry's use): every token of the source is refused.
    pub fn is_empty(&self) -> bool {
        self.snapshot().is_none_or(|s| s.is_empty()) && self.roots().is_empty()
    }

    /// The X.509 trust anchors (DER) of the installed document: empty until one loaded with
    /// roots, and when the publisher revoked them all.
    pub fn roots(&self) -> Arc<[Vec<u8>]> {
        self.roots
            .read()
            .map(|g| g.clone())
            .unwrap_or_else(|_| Arc::from(Vec::new()))
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current.read().map(|g| g.clone()).unwrap_or(None)
    }

    /// Loads the keys now and replaces the current set on success. A failed load keeps the
    /// previous set (and is counted); so does a document older than the installed one.
    pub async fn load(&self) -> Result<(), String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut g) = self.last_load.lock() {
            *g = Some(Instant::now());
        }
        let outcome = self.fetch_and_install().await;
        if let Err(e) = &outcome {
            self.failures.fetch_add(1, Ordering::Relaxed);
            // The one log line of a failed load (the error names the source, never a key).
            if self.is_loaded() {
                tracing::warn!("key refresh failed, keeping the previous keys: {e}");
            } else {
                tracing::warn!("keys not loaded (their tokens are refused until they are): {e}");
            }
        }
        outcome
    }

    async fn fetch_and_install(&self) -> Result<(), String> {
        let _one_at_a_time = self.loading.lock().await;
        let doc = self
            .fetch
            .fetch()
            .await
            .map_err(|e| format!("{}: {e}", self.name))?;
        // SPIFFE bundle §4.1 / federation §5: bundles are ordered by their sequence; a lower
        // one is an older bundle (a stale replica, a replay) and never replaces the installed.
        // Once a publisher numbers its bundles, an unnumbered one cannot be ordered: refused.
        match (doc.sequence, self.sequence()) {
            (Some(new), Some(old)) if new < old => {
                return Err(format!(
                    "{}: bundle sequence {new} is older than the installed {old}; keeping it",
                    self.name
                ));
            }
            (None, Some(old)) => {
                return Err(format!(
                    "{}: bundle has no sequence after sequence {old}; keeping the installed one",
                    self.name
                ));
            }
            _ => {}
        }
        // Keys verify only algorithms both configured and (when it says) advertised.
        let allowed: Vec<Alg> = match &doc.algorithms {
            Some(advertised) => self
                .allowed
                .iter()
                .copied()
                .filter(|a| advertised.contains(a))
                .collect(),
            None => self.allowed.clone(),
        };
        let parsed = if doc.may_be_empty {
            KeySet::from_jwks_allow_empty(&doc.jwks, &allowed)
        } else {
            KeySet::from_jwks(&doc.jwks, &allowed)
        };
        let (set, skipped) = parsed.map_err(|e| format!("{}: {e}", self.name))?;
        for s in skipped {
            tracing::warn!(keys = %self.name, "skipped a key: {s}");
        }
        tracing::debug!(keys = %self.name, count = set.len(), "loaded keys");
        let mut digest_input = doc.jwks.clone();
        for root in &doc.roots {
            digest_input.extend_from_slice(root);
        }
        let digest = crate::secret::sha256(&digest_input);
        if let Ok(mut g) = self.current.write() {
            *g = Some(Arc::new(set));
        }
        if let Ok(mut g) = self.roots.write() {
            *g = Arc::from(doc.roots);
        }
        if let Ok(mut g) = self.sequence.lock() {
            *g = doc.sequence;
        }
        // The publisher's refresh hint, from an installed document only.
        if let Some(hint) = doc.refresh_hint {
            let every = hint.clamp(MIN_REFRESH_HINT, MAX_REFRESH_HINT);
            self.refresh_secs.store(every.as_secs(), Ordering::Relaxed);
        }
        if let Ok(mut last) = self.installed.lock()
            && *last != Some(digest)
        {
            *last = Some(digest);
            self.generation.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// The key set, guaranteed to hold a key for (`kid`, `alg`). An unknown key causes at most
    /// one reload per cooldown; concurrent callers wait for the same reload.
    pub async fn resolve(
        &self,
        kid: Option<&str>,
        alg: Alg,
    ) -> Result<Arc<KeySet>, KeyLookupError> {
        if let Some(set) = self.snapshot().filter(|s| s.find(kid, alg).is_some()) {
            return Ok(set);
        }
        let mut last = self.refetch.lock().await;
        // Another request may have reloaded while we waited.
        let current = self.snapshot();
        if let Some(set) = current.as_ref().filter(|s| s.find(kid, alg).is_some()) {
            return Ok(set.clone());
        }
        let cooling = last.is_some_and(|t| t.elapsed() < self.cooldown);
        if cooling {
            return Err(if current.is_some() {
                KeyLookupError::UnknownKey
            } else {
                KeyLookupError::NotLoaded
            });
        }
        *last = Some(Instant::now());
        // A failure is logged by `load`; the previous keys stay.
        let _ = self.load().await;
        match self.snapshot() {
            Some(set) if set.find(kid, alg).is_some() => Ok(set),
            Some(_) => Err(KeyLookupError::UnknownKey),
            None => Err(KeyLookupError::NotLoaded),
        }
    }
}

impl BuiltinFetch {
    /// Reads the issuer's metadata and returns its `jwks_uri`; the metadata's `issuer` must be
    /// identical to the configured one (RFC 8414 §3.3).
    async fn discover(&self, issuer: &str) -> Result<String, String> {
        let mut last_err = String::new();
        for url in discovery_urls(issuer) {
            let body = match self.http.get(&url).await {
                Ok(b) => b,
                Err(e) => {
                    last_err = e;
                    continue;
                }
            };
            let meta: serde_json::Value =
                serde_json::from_slice(&body).map_err(|_| format!("{url}: not JSON"))?;
            if meta.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
                return Err(format!("{url}: metadata issuer differs from `{issuer}`"));
            }
            let uri = meta
                .get("jwks_uri")
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("{url}: no jwks_uri"))?;
            crate::config::check_url("jwks_uri", uri).map_err(|e| e.to_string())?;
            return Ok(uri.to_owned());
        }
        Err(format!("{}: discovery failed: {last_err}", self.name))
    }
}
