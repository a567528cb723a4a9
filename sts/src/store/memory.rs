//! In-process replay guard: a map from key to expiry, swept when it fills.

use std::collections::HashMap;
use std::sync::Mutex;

use super::StoreError;
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

    pub fn first_use(
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_until_expiry_and_fails_closed_when_full() {
        let g = MemoryReplayGuard::new(2);
        assert_eq!(g.first_use("a", 100, 10), Ok(true));
        assert_eq!(g.first_use("a", 100, 50), Ok(false));
        assert_eq!(g.first_use("b", 100, 50), Ok(true));
        assert_eq!(g.first_use("c", 100, 50), Err(StoreError::Full));
        assert_eq!(
            g.first_use("c", 200, 150),
            Ok(true),
            "expired entries are swept"
        );
        assert_eq!(
            g.first_use("a", 300, 150),
            Ok(true),
            "an expired key may be used again"
        );
    }
}
