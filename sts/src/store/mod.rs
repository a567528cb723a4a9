//! Shared state that outlives a request: the replay guard (first use of a `jti` or nonce).
//!
//! Only the in-memory implementation exists so far; it is per process, so replicas do not share
//! it. A full store fails closed (`StoreError::Full`) instead of forgetting entries that have
//! not expired. This module knows nothing about tokens; callers build the keys.

mod memory;

pub use memory::MemoryReplayGuard;

use crate::clock::UnixTime;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("replay store is full")]
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
