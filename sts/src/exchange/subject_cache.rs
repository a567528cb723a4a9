//! The verified-subject cache of the ingress path: a gateway re-exchanging the same user token
//! pays only for signing.
//!
//! An entry is keyed by SHA-256 of the declared token type and the whole token, and remembers
//! which trust source verified it (by its unique id, so a reload never reuses an entry) and
//! that source's key generation. It is used only while the token has not reached its `exp`,
//! only for a profile that accepts that source for that token type, and only while the
//! source's keys are unchanged. The cache is bounded: least recently used entries go first,
//! in 16 locked shards. Only sources whose verification depends on nothing but the token,
//! their keys and the time are cached (`Verifier::cacheable`), and a token is remembered only
//! from the second time it is verified, so traffic of distinct tokens pays a lookup and
//! nothing more. Profile policy (conditions, mapping, scope) is never cached: it runs on every
//! request. This module holds no token, only digests.

use std::hash::{BuildHasherDefault, Hasher};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::UnixTime;
use crate::token::Verified;
use crate::trust::TrustSource;

/// Shards of the cache (each its own lock), so concurrent workers rarely wait on each other.
const SHARDS: usize = 16;

/// One remembered verification.
#[derive(Debug)]
struct Entry {
    verified: Arc<Verified>,
    source: u64,
    generation: u64,
    exp: UnixTime,
}

/// The keys are SHA-256 digests already: their first eight bytes are a uniform hash.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 = u64::from_le_bytes(first);
    }
}

type Shard = lru::LruCache<[u8; 32], Arc<Entry>, BuildHasherDefault<DigestHasher>>;

/// Verified subject tokens, bounded in number (least recently used go first).
pub struct SubjectCache {
    shards: Vec<Mutex<Shard>>,
    /// Fingerprints of tokens seen once (direct-mapped): a token is remembered only when it
    /// comes back, so traffic of distinct tokens costs a lookup here and nothing more.
    seen: Vec<AtomicU64>,
}

impl std::fmt::Debug for SubjectCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SubjectCache")
            .field("entries", &self.len())
            .finish()
    }
}

impl SubjectCache {
    /// A cache of at most `capacity` tokens; 0 remembers nothing.
    pub fn new(capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX);
        if capacity == 0 {
            return Self {
                shards: Vec::new(),
                seen: Vec::new(),
            };
        }
        let n = SHARDS.min(capacity);
        let each = NonZeroUsize::new(capacity.div_ceil(n)).unwrap_or(NonZeroUsize::MIN);
        let shards = (0..n)
            .map(|_| Mutex::new(Shard::with_hasher(each, BuildHasherDefault::default())))
            .collect();
        // Four slots per entry: a returning token is rarely overwritten in between.
        let slots = capacity.saturating_mul(4).next_power_of_two().min(1 << 22);
        let seen = (0..slots).map(|_| AtomicU64::new(0)).collect();
        Self { shards, seen }
    }

    /// Whether the token with `key` was seen before (and remembers that it now has been).
    fn seen_before(&self, key: &[u8; 32]) -> bool {
        let mut first = [0u8; 8];
        first.copy_from_slice(&key[..8]);
        let mut second = [0u8; 8];
        second.copy_from_slice(&key[8..16]);
        let slot = (u64::from_le_bytes(first) as usize) & (self.seen.len() - 1);
        let fingerprint = u64::from_le_bytes(second) | 1;
        self.seen[slot].swap(fingerprint, Ordering::Relaxed) == fingerprint
    }

    pub fn is_enabled(&self) -> bool {
        !self.shards.is_empty()
    }

    fn shard(&self, key: &[u8; 32]) -> Option<&Mutex<Shard>> {
        let n = self.shards.len();
        (n > 0).then(|| &self.shards[usize::from(key[31]) % n])
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
        let entry = self.shard(key)?.lock().ok()?.get(key).cloned()?;
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
    /// `generation`, until the token's `exp` — from the second time the token is verified
    /// (a token seen once is only noted).
    pub fn put(
        &self,
        key: [u8; 32],
        source: &TrustSource,
        generation: u64,
        verified: Arc<Verified>,
        now: UnixTime,
    ) {
        let Some(shard) = self.shard(&key) else {
            return;
        };
        let Some(exp) = verified
            .claims
            .get("exp")
            .and_then(serde_json::Value::as_i64)
        else {
            return;
        };
        if exp <= now || !source.verifier.cacheable() || !self.seen_before(&key) {
            return;
        }
        let entry = Arc::new(Entry {
            verified,
            source: source.id,
            generation,
            exp,
        });
        if let Ok(mut s) = shard.lock() {
            s.put(key, entry);
        }
    }

    /// How many tokens are remembered (for metrics and tests).
    pub fn len(&self) -> u64 {
        self.shards
            .iter()
            .filter_map(|s| s.lock().ok().map(|s| s.len() as u64))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::{OauthJwtKind, Presented, Rejection, Verifier, VerifyContext};
    use serde_json::json;

    #[derive(Debug)]
    struct Fixed {
        cacheable: bool,
    }

    #[async_trait::async_trait]
    impl Verifier for Fixed {
        fn recognizes(&self, _: &Presented<'_>) -> bool {
            true
        }
        async fn verify(
            &self,
            _: Presented<'_>,
            _: &VerifyContext<'_>,
        ) -> Result<Verified, Rejection> {
            Err(Rejection::Inactive)
        }
        fn issuer(&self) -> &str {
            "urn:fixed"
        }
        fn cacheable(&self) -> bool {
            self.cacheable
        }
    }

    fn source(id: u64, cacheable: bool) -> Arc<TrustSource> {
        Arc::new(TrustSource {
            id,
            name: Arc::from("t"),
            kind: Arc::new(OauthJwtKind),
            verifier: Arc::new(Fixed { cacheable }),
        })
    }

    fn verified(exp: i64) -> Arc<Verified> {
        let claims = match json!({"sub": "alice", "exp": exp}) {
            serde_json::Value::Object(m) => m,
            _ => serde_json::Map::new(),
        };
        Arc::new(Verified {
            claims,
            trust: Arc::from("t"),
            kind: "oauth-jwt",
            proven_key: None,
            asserted_by_caller: false,
        })
    }

    #[test]
    fn entries_hash_by_the_digests_first_bytes_and_are_stored_only_when_seen_twice() {
        let mut h = DigestHasher::default();
        h.write(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
        assert_eq!(h.finish(), u64::from_le_bytes([1, 2, 3, 4, 5, 6, 7, 8]));
        let mut short = DigestHasher::default();
        short.write(&[7]);
        assert_eq!(short.finish(), 7);
        // However the fingerprints fall, a first sighting never stores.
        let cache = SubjectCache::new(1000);
        let s = source(1, true);
        for i in 0..200 {
            cache.put(
                SubjectCache::key("t", &format!("once-{i}")),
                &s,
                0,
                verified(5000),
                1000,
            );
        }
        assert!(cache.is_empty());
    }

    #[test]
    fn an_empty_slot_never_counts_as_a_sighting() {
        // Bytes 8..16 are the fingerprint: one whose value is 1 must still differ from an
        // empty slot (0), or a token would be stored at its first sighting.
        let cache = SubjectCache::new(16);
        for fingerprint in [0u64, 1] {
            let mut key = [0u8; 32];
            key[8..16].copy_from_slice(&fingerprint.to_le_bytes());
            key[0] = fingerprint as u8;
            assert!(!cache.seen_before(&key), "fingerprint {fingerprint}");
            assert!(cache.seen_before(&key), "fingerprint {fingerprint}");
        }
    }

    #[test]
    fn keys_bind_the_declared_type_and_the_whole_token() {
        let a = SubjectCache::key("urn:a", "tok");
        assert_eq!(a, SubjectCache::key("urn:a", "tok"));
        assert_ne!(a, SubjectCache::key("urn:b", "tok"));
        assert_ne!(a, SubjectCache::key("urn:a", "tok2"));
        assert_ne!(
            SubjectCache::key("urn:a", "btok"),
            SubjectCache::key("urn:ab", "tok")
        );
    }

    #[test]
    fn an_entry_serves_only_its_source_before_exp() {
        let cache = SubjectCache::new(10);
        let s = source(7, true);
        let key = SubjectCache::key("t", "token");
        cache.put(key, &s, 0, verified(2000), 1000);
        assert_eq!(cache.len(), 0, "a token seen once is not remembered");
        assert!(cache.get(&key, [&s].into_iter(), 1000).is_none());
        cache.put(key, &s, 0, verified(2000), 1000);
        assert_eq!(cache.len(), 1);
        assert!(!cache.is_empty());
        assert_eq!(format!("{cache:?}"), "SubjectCache { entries: 1 }");
        assert!(cache.get(&key, [&s].into_iter(), 1000).is_some());
        assert!(cache.get(&key, [&s].into_iter(), 1999).is_some());
        assert!(
            cache.get(&key, [&s].into_iter(), 2000).is_none(),
            "exp is exclusive"
        );
        // Another source instance (a reload, another profile's entry) never gets it.
        let other = source(8, true);
        assert!(cache.get(&key, [&other].into_iter(), 1000).is_none());
        assert!(cache.get(&key, [&other, &s].into_iter(), 1000).is_some());
        assert!(cache.get(&key, std::iter::empty(), 1000).is_none());
        assert!(
            cache
                .get(&SubjectCache::key("t", "other"), [&s].into_iter(), 1000)
                .is_none()
        );
    }

    #[test]
    fn expired_uncacheable_and_disabled_are_never_stored() {
        let cache = SubjectCache::new(10);
        let key = SubjectCache::key("t", "token");
        for _ in 0..2 {
            cache.put(key, &source(1, true), 0, verified(1000), 1000);
            cache.put(key, &source(1, false), 0, verified(2000), 1000);
        }
        assert!(cache.is_empty());
        let no_exp = Arc::new(Verified {
            claims: serde_json::Map::new(),
            ..(*verified(0)).clone()
        });
        cache.put(key, &source(1, true), 0, no_exp.clone(), 1000);
        cache.put(key, &source(1, true), 0, no_exp, 1000);
        assert!(cache.is_empty());
        let off = SubjectCache::new(0);
        assert!(!off.is_enabled());
        off.put(key, &source(1, true), 0, verified(2000), 1000);
        off.put(key, &source(1, true), 0, verified(2000), 1000);
        assert!(
            off.get(&key, [&source(1, true)].into_iter(), 1000)
                .is_none()
        );
        assert!(cache.is_enabled());
    }

    #[test]
    fn the_cache_is_bounded_and_forgets_the_least_recently_used() {
        let cache = SubjectCache::new(32);
        let s = source(1, true);
        let keys: Vec<[u8; 32]> = (0..200)
            .map(|i| SubjectCache::key("t", &format!("token-{i}")))
            .collect();
        for k in &keys {
            cache.put(*k, &s, 0, verified(5000), 1000);
            cache.put(*k, &s, 0, verified(5000), 1000);
        }
        assert!(cache.len() <= 32, "{}", cache.len());
        assert!(cache.get(&keys[199], [&s].into_iter(), 1000).is_some());
        assert!(cache.get(&keys[0], [&s].into_iter(), 1000).is_none());
    }
}
