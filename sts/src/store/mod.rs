//! Shared state that outlives a request: the replay guard (first use of a `jti` or nonce) and
//! the rate limiter (fixed-window counters).
//!
//! Only in-memory implementations exist so far; they are per process, so replicas do not share
//! them. A full store fails closed (`StoreError::Full`) instead of forgetting entries that have
//! not expired. This module knows nothing about tokens, clients or policy; callers build the
//! keys and decide what a count means.

mod memory;

use async_trait::async_trait;

pub use memory::{MemoryRateLimiter, MemoryReplayGuard};

use crate::clock::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("store is full")]
    Full,
}

/// Remembers single-use identifiers until they expire.
#[derive(Debug)]
pub enum ReplayGuard {
    Memory(MemoryReplayGuard),
}

impl ReplayGuard {
    pub fn memory(capacity: usize) -> Self {
        Self::Memory(MemoryReplayGuard::new(capacity))
    }

    /// `Ok(true)` the first time `key` is seen before `expires_at`; `Ok(false)` on a replay.
    pub async fn first_use(
        &self,
        key: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Memory(m) => m.first_use(key, expires_at, now),
        }
    }
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
