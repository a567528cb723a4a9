//! A trust source's current key set, refreshed in the background and refetched — at most once
//! per cooldown, coalesced across concurrent requests — when a token names an unknown `kid`.
//!
//! Until a key set has loaded once, lookups fail closed with `NotLoaded` (design invariant 12).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::fetch::{HttpFetcher, discovery_urls};
use crate::config::JwksSettings;
use crate::jose::{Alg, KeySet};

#[derive(Debug, Clone)]
enum Location {
    File(PathBuf),
    Uri(String),
    Discovery { issuer: String },
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
    location: Location,
    allowed: Vec<Alg>,
    http: HttpFetcher,
    current: RwLock<Option<Arc<KeySet>>>,
    /// Held while refetching; holds the time of the last refetch.
    refetch: tokio::sync::Mutex<Option<Instant>>,
    cooldown: Duration,
    refresh: Duration,
    fetches: AtomicU64,
}

impl KeyStore {
    pub fn new(
        name: &str,
        issuer: &str,
        jwks: &JwksSettings,
        allowed: &[Alg],
        http: HttpFetcher,
    ) -> Self {
        let location = match (&jwks.file, &jwks.uri) {
            (Some(f), _) => Location::File(f.clone()),
            (None, Some(u)) => Location::Uri(u.clone()),
            (None, None) => Location::Discovery {
                issuer: issuer.to_owned(),
            },
        };
        Self {
            name: name.to_owned(),
            location,
            allowed: allowed.to_vec(),
            http,
            current: RwLock::new(None),
            refetch: tokio::sync::Mutex::new(None),
            cooldown: jwks.refetch_cooldown,
            refresh: jwks.refresh,
            fetches: AtomicU64::new(0),
        }
    }

    /// How many times keys were (re)loaded: for tests and metrics.
    pub fn fetch_count(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    pub fn is_loaded(&self) -> bool {
        self.snapshot().is_some()
    }

    pub fn refresh_interval(&self) -> Duration {
        self.refresh
    }

    pub fn is_remote(&self) -> bool {
        !matches!(self.location, Location::File(_))
    }

    fn snapshot(&self) -> Option<Arc<KeySet>> {
        self.current.read().map(|g| g.clone()).unwrap_or(None)
    }

    /// Loads the keys now and replaces the current set on success. A failed load keeps the
    /// previous set.
    pub async fn load(&self) -> Result<(), String> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let document = self.read_document().await?;
        let (set, skipped) = KeySet::from_jwks(&document, &self.allowed)
            .map_err(|e| format!("trust `{}`: {e}", self.name))?;
        for s in skipped {
            tracing::warn!(trust = %self.name, "skipped a key: {s}");
        }
        tracing::debug!(trust = %self.name, keys = set.len(), "loaded keys");
        if let Ok(mut g) = self.current.write() {
            *g = Some(Arc::new(set));
        }
        Ok(())
    }

    async fn read_document(&self) -> Result<Vec<u8>, String> {
        match &self.location {
            Location::File(p) => tokio::fs::read(p)
                .await
                .map_err(|e| format!("trust `{}`: {}: {e}", self.name, p.display())),
            Location::Uri(u) => self
                .http
                .get(u)
                .await
                .map_err(|e| format!("trust `{}`: {e}", self.name)),
            Location::Discovery { issuer } => {
                let jwks_uri = self.discover(issuer).await?;
                self.http
                    .get(&jwks_uri)
                    .await
                    .map_err(|e| format!("trust `{}`: {e}", self.name))
            }
        }
    }

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
            let meta: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|_| format!("trust `{}`: {url}: not JSON", self.name))?;
            if meta.get("issuer").and_then(|v| v.as_str()) != Some(issuer) {
                return Err(format!(
                    "trust `{}`: {url}: metadata issuer differs from `{issuer}`",
                    self.name
                ));
            }
            let uri = meta
                .get("jwks_uri")
                .and_then(|v| v.as_str())
                .ok_or_else(|| format!("trust `{}`: {url}: no jwks_uri", self.name))?;
            crate::config::check_url("jwks_uri", uri)
                .map_err(|e| format!("trust `{}`: {e}", self.name))?;
            return Ok(uri.to_owned());
        }
        Err(format!(
            "trust `{}`: discovery failed: {last_err}",
            self.name
        ))
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
        if let Err(e) = self.load().await {
            tracing::warn!(trust = %self.name, "key reload failed: {e}");
        }
        match self.snapshot() {
            Some(set) if set.find(kid, alg).is_some() => Ok(set),
            Some(_) => Err(KeyLookupError::UnknownKey),
            None => Err(KeyLookupError::NotLoaded),
        }
    }
}
