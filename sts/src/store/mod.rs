//! Shared state that outlives a request: the replay guard (first use of a `jti` or nonce) and
//! the rate limiter (fixed-window counters).
//!
//! The in-memory implementations are per process; the Redis replay guard is shared by every
//! replica that names the same server. A full or unreachable store fails closed
//! (`StoreError::Full`, `StoreError::Unavailable`) instead of forgetting or guessing. This module knows nothing about tokens, clients or policy; callers build the
//! keys and decide what a count means.

mod memory;
mod redis;

use std::sync::Arc;

use async_trait::async_trait;

pub use memory::{MemoryRateLimiter, MemoryReplayGuard};
pub use redis::{RedisReplayGuard, RedisTimeouts};

use crate::clock::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store is full")]
    Full,
    /// A shared store (Redis) did not answer in time or refused: nothing was decided.
    #[error("store is unreachable")]
    Unavailable,
}

/// Remembers single-use identifiers (a client assertion's or proof's `jti`) until they expire.
/// Every implementation behaves like the in-memory one; `tests/replay.rs` runs one suite
/// against each.
#[async_trait]
pub trait ReplayGuard: Send + Sync + std::fmt::Debug {
    /// `Ok(true)` the first time `key` is seen before `expires_at` (and it is then remembered
    /// until `expires_at`); `Ok(false)` on a replay. An error decides nothing: callers fail
    /// closed.
    async fn first_use(
        &self,
        key: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError>;

    /// Whether the store answers now (readiness). In-process stores always do.
    async fn reachable(&self) -> bool {
        true
    }
}

/// One request's view of a replay guard: an identifier this request has already used (the
/// same WPT proving the client's WIT and the subject's, which is the same WIT) is accepted
/// again within the request; across requests the shared guard decides.
pub struct RequestReplay<'a> {
    shared: &'a dyn ReplayGuard,
    used: std::sync::Mutex<Vec<String>>,
}

impl<'a> RequestReplay<'a> {
    pub fn new(shared: &'a dyn ReplayGuard) -> Self {
        Self {
            shared,
            used: std::sync::Mutex::new(Vec::new()),
        }
    }
}

impl std::fmt::Debug for RequestReplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestReplay").finish_non_exhaustive()
    }
}

#[async_trait]
impl ReplayGuard for RequestReplay<'_> {
    async fn first_use(
        &self,
        key: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let seen = self
            .used
            .lock()
            .map_err(|_| StoreError::Unavailable)?
            .iter()
            .any(|k| k == key);
        if seen {
            return Ok(true);
        }
        let first = self.shared.first_use(key, expires_at, now).await?;
        if first && let Ok(mut used) = self.used.lock() {
            used.push(key.to_owned());
        }
        Ok(first)
    }

    async fn reachable(&self) -> bool {
        self.shared.reachable().await
    }
}

/// Which store the settings name: the in-memory one (per process) or Redis (shared by every
/// replica).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    Memory,
    Redis(String),
}

impl StoreUrl {
    /// `memory://`, `redis://…` or `rediss://…` (TLS).
    pub fn parse(url: &str) -> Result<Self, String> {
        if url == "memory://" {
            return Ok(Self::Memory);
        }
        let parsed = url::Url::parse(url)
            .map_err(|_| "is not memory://, redis://host:port/db or rediss://…".to_owned())?;
        match parsed.scheme() {
            "redis" | "rediss" if parsed.host().is_some() => Ok(Self::Redis(url.to_owned())),
            "redis" | "rediss" => Err("names no host".into()),
            _ => Err("must be memory://, redis://… or rediss://…".into()),
        }
    }
}

/// The replay guard the settings ask for. Redis connects lazily: an unreachable server makes
/// requests that need a replay check fail closed until it answers again.
pub fn replay_guard(
    url: &StoreUrl,
    timeouts: RedisTimeouts,
    memory_capacity: usize,
) -> Result<Arc<dyn ReplayGuard>, String> {
    Ok(match url {
        StoreUrl::Memory => Arc::new(MemoryReplayGuard::new(memory_capacity)),
        StoreUrl::Redis(u) => Arc::new(RedisReplayGuard::new(u, timeouts)?),
    })
}

/// A counter's state in the fixed window that contains `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowCount {
    pub count: u64,
    /// Seconds until this window ends (at least 1).
    pub resets_in: u64,
}

/// Fixed-window counters keyed by strings the caller builds. The Redis implementation will map
/// `add` to `INCR` + `EXPIRE` and `count` to `GET`; every implementation must behave like the
/// in-memory one. A full store answers `StoreError::Full` for a key it cannot hold.
#[async_trait]
pub trait RateLimiter: Send + Sync + std::fmt::Debug {
    /// `key`'s count in the `window`-second window containing `now`.
    async fn count(&self, key: &str, window: u64, now: UnixTime)
    -> Result<WindowCount, StoreError>;
    /// Adds one to `key`'s count in the current window.
    async fn add(&self, key: &str, window: u64, now: UnixTime) -> Result<(), StoreError>;
}

/// The start of the `window`-second window containing `now` (windows are aligned to the epoch,
/// so every replica agrees on them).
pub fn window_start(now: UnixTime, window: u64) -> UnixTime {
    let w = window.max(1) as i64;
    now - now.rem_euclid(w)
}
