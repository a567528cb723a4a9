//! The verified-subject cache of the ingress path: a gateway re-exchanging the same user token
//! pays only for signing.
//!
//! An entry is keyed by SHA-256 of the declared token type and the whole token, and remembers
//! which trust source verified it (by its unique id, so a reload never reuses an entry) and
//! that source's key generation. It is used only while the token has not reached its `exp`,
//! only for a profile that accepts that source for that token type, and only while the
//! source's keys are unchanged; the cache is bounded (least recently used entries go first).
//! Only sources whose verification depends on nothing but the token, their keys and the time
//! are cached (`Verifier::cacheable`). Profile policy (conditions, mapping, scope) is never
//! cached: it runs on every request. This module holds no token, only digests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::UnixTime;
use crate::token::Verified;
use crate::trust::TrustSource;

/// One remembered verification.
#[derive(Debug)]
struct Entry {
    verified: Arc<Verified>,
    source: u64,
    generation: u64,
    exp: UnixTime,
    ttl: Duration,
}

struct UntilExp;

impl moka::Expiry<[u8; 32], Arc<Entry>> for UntilExp {
    fn expire_after_create(
        &self,
        _key: &[u8; 32],
        value: &Arc<Entry>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Verified subject tokens, bounded in number.
pub struct SubjectCache {
    entries: Option<moka::sync::Cache<[u8; 32], Arc<Entry>>>,
}

impl std::fmt::Debug for SubjectCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectCache")
            .field("entries", &self.entries.as_ref().map(|c| c.entry_count()))
            .finish()
    }
}

impl SubjectCache {
    /// A cache of at most `capacity` tokens; 0 remembers nothing.
    pub fn new(capacity: u64) -> Self {
        let entries = (capacity > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(capacity)
                .expire_after(UntilExp)
                .build()
        });
        Self { entries }
    }

    pub fn is_enabled(&self) -> bool {
        self.entries.is_some()
    }

    /// The key of a presented token.
    pub fn key(token_type: &str, token: &str) -> [u8; 32] {
        let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        ctx.update(token_type.as_bytes());
        ctx.update(&[0]);
        ctx.update(token.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        out
    }

    /// A remembered verification of the token with `key`, when one of `accepted` (the
    /// profile's sources that take its declared type) made it, that source's keys are
    /// unchanged and the token has not reached its `exp` at `now`.
    pub fn get<'s>(
        &self,
        key: &[u8; 32],
        accepted: impl Iterator<Item = &'s Arc<TrustSource>>,
        now: UnixTime,
    ) -> Option<Arc<Verified>> {
        let entry = self.entries.as_ref()?.get(key)?;
        if now >= entry.exp {
            return None;
        }
        let source = accepted
            .into_iter()
            .find(|s| s.id == entry.source && s.verifier.cacheable())?;
        let generation = source.verifier.keys().map_or(0, |k| k.generation());
        (generation == entry.generation).then(|| entry.verified.clone())
    }

    /// Remembers that `source` verified the token with `key` while its keys were at
    /// `generation`, until the token's `exp`.
    pub fn put(
        &self,
        key: [u8; 32],
        source: &TrustSource,
        generation: u64,
        verified: Arc<Verified>,
        now: UnixTime,
    ) {
        let Some(entries) = &self.entries else {
            return;
        };
        let Some(exp) = verified
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
        else {
            return;
        };
        if exp <= now || !source.verifier.cacheable() {
            return;
        }
        let ttl = Duration::from_secs(u64::try_from(exp - now).unwrap_or(0));
        entries.insert(
            key,
            Arc::new(Entry {
                verified,
                source: source.id,
                generation,
                exp,
                ttl,
            }),
        );
    }

    /// How many tokens are remembered (approximate; for metrics and tests).
    pub fn len(&self) -> u64 {
        self.entries.as_ref().map_or(0, |c| {
            c.run_pending_tasks();
            c.entry_count()
        })
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
