//! In-process stores: a replay guard (key → expiry) and a rate limiter (key → window count).
//! Both sweep expired entries when they fill and fail closed when still full.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::{RateLimiter, ReplayGuard, StoreError, WindowCount, window_start};
use crate::clock::UnixTime;

#[derive(Debug)]
pub struct MemoryReplayGuard {
    seen: Mutex<HashMap<String, UnixTime>>,
    capacity: usize,
}

impl MemoryReplayGuard {
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: Mutex::new(HashMap::new()),
            capacity,
        }
    }
}

#[async_trait]
impl ReplayGuard for MemoryReplayGuard {
    async fn first_use(
        &self,
        key: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let mut seen = self.seen.lock().map_err(|_| StoreError::Full)?;
        if let Some(&exp) = seen.get(key)
            && exp > now
        {
            return Ok(false);
        }
        if seen.len() >= self.capacity {
            seen.retain(|_, exp| *exp > now);
            if seen.len() >= self.capacity {
                return Err(StoreError::Full);
            }
        }
        seen.insert(key.to_owned(), expires_at);
        Ok(true)
    }
}

/// One counter: its count in the window that ends at `until`.
#[derive(Debug, Clone, Copy)]
struct Entry {
    count: u64,
    until: UnixTime,
}

#[derive(Debug, Default)]
struct Counters {
    entries: HashMap<String, Entry>,
    /// When expired entries were last swept (at most once a second, however full).
    last_sweep: UnixTime,
}

#[derive(Debug)]
pub struct MemoryRateLimiter {
    counters: Mutex<Counters>,
    capacity: usize,
}

impl MemoryRateLimiter {
    pub fn new(capacity: usize) -> Self {
        Self {
            counters: Mutex::new(Counters::default()),
            capacity,
        }
    }
}

fn window_end(now: UnixTime, window: u64) -> UnixTime {
    window_start(now, window).saturating_add(window.max(1) as i64)
}

#[async_trait]
impl RateLimiter for MemoryRateLimiter {
    async fn count(
        &self,
        key: &str,
        window: u64,
        now: UnixTime,
    ) -> Result<WindowCount, StoreError> {
        let end = window_end(now, window);
        let c = self.counters.lock().map_err(|_| StoreError::Full)?;
        let count = c
            .entries
            .get(key)
            .filter(|e| e.until == end)
            .map_or(0, |e| e.count);
        Ok(WindowCount {
            count,
            resets_in: (end - now).max(1) as u64,
        })
    }

    async fn add(&self, key: &str, window: u64, now: UnixTime) -> Result<(), StoreError> {
        let end = window_end(now, window);
        let mut c = self.counters.lock().map_err(|_| StoreError::Full)?;
        if let Some(e) = c.entries.get_mut(key) {
            if e.until != end {
                *e = Entry {
                    count: 0,
                    until: end,
                };
            }
            e.count = e.count.saturating_add(1);
            return Ok(());
        }
        if c.entries.len() >= self.capacity && c.last_sweep != now {
            c.last_sweep = now;
            c.entries.retain(|_, e| e.until > now);
        }
        if c.entries.len() >= self.capacity {
            return Err(StoreError::Full);
        }
        c.entries.insert(
            key.to_owned(),
            Entry {
                count: 1,
                until: end,
            },
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn remembers_until_expiry_and_fails_closed_when_full() {
        let g = MemoryReplayGuard::new(2);
        assert_eq!(g.first_use("a", 100, 10).await, Ok(true));
        assert_eq!(g.first_use("a", 100, 50).await, Ok(false));
        assert_eq!(g.first_use("b", 100, 50).await, Ok(true));
        assert_eq!(g.first_use("c", 100, 50).await, Err(StoreError::Full));
        assert_eq!(
            g.first_use("c", 200, 150).await,
            Ok(true),
            "expired entries are swept"
        );
        assert_eq!(
            g.first_use("a", 300, 150).await,
            Ok(true),
            "an expired key may be used again"
        );
    }

    #[tokio::test]
    async fn counts_per_aligned_window_and_fails_closed_when_full() {
        let l = MemoryRateLimiter::new(2);
        // Window [60, 120).
        l.add("k", 60, 61).await.unwrap();
        l.add("k", 60, 119).await.unwrap();
        assert_eq!(
            l.count("k", 60, 119).await.unwrap(),
            WindowCount {
                count: 2,
                resets_in: 1
            }
        );
        assert_eq!(l.count("k", 60, 120).await.unwrap().count, 0, "new window");
        assert_eq!(l.count("k", 60, 120).await.unwrap().resets_in, 60);
        l.add("k", 60, 120).await.unwrap();
        assert_eq!(l.count("k", 60, 121).await.unwrap().count, 1, "restarted");
        assert_eq!(l.count("other", 60, 121).await.unwrap().count, 0);
        // Full: k and n live, o is refused; an existing key still counts.
        l.add("n", 60, 150).await.unwrap();
        assert_eq!(l.add("o", 60, 150).await, Err(StoreError::Full));
        l.add("n", 60, 151).await.unwrap();
        assert_eq!(l.count("n", 60, 151).await.unwrap().count, 2);
        // Once the window is over its keys are swept to make room.
        l.add("o", 60, 181).await.unwrap();
        assert_eq!(l.count("o", 60, 181).await.unwrap().count, 1);
    }

    #[test]
    fn windows_are_aligned_to_the_epoch() {
        assert_eq!(window_start(0, 60), 0);
        assert_eq!(window_start(59, 60), 0);
        assert_eq!(window_start(60, 60), 60);
        assert_eq!(window_start(-1, 60), -60);
        assert_eq!(window_start(5, 0), 5, "a zero window is one second");
    }
}
