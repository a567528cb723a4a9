//! Failed client authentication is slow for the attacker: failures are counted per presented
//! `client_id` (client secrets only) and per peer address, and a spent budget is answered `429`
//! with `Retry-After` before any secret or signature is checked.
//!
//! Only failures count, after they happen: a burst of a real client's first requests is never
//! refused for being in flight. Attempts already admitted when a budget runs out still finish;
//! the secret-check pool bounds how many that can be. A secret that already passed PBKDF2 on
//! this process never reaches this module (`auth::authenticate` answers it first), so a flood
//! of wrong secrets for a real client's id does not lock out that client. When the store is
//! full, failures it cannot hold share one overflow budget, and secret guesses for ids it does
//! not hold are refused once that is spent: the limiter fails closed for guessing, not open.
//! Counters live behind the [`RateLimiter`] trait (memory now, Redis later). This module never
//! sees a secret or an assertion: only the presented id, hashed, and the peer address.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::UnixTime;
use crate::config::ClientAuthSettings;
use crate::error::{ErrorCode, OAuthError};
use crate::store::{RateLimiter, window_start};

/// The limiter keys of one attempt.
#[derive(Debug)]
pub struct AttemptKeys {
    peer: String,
    client: Option<String>,
}

impl AttemptKeys {
    /// Keys for an attempt by `client_id` (as presented, if it is charged) from `peer`. The id
    /// is hashed so a long or hostile id costs the store a fixed size.
    pub fn new(client_id: Option<&str>, peer: Option<IpAddr>) -> Self {
        Self {
            client: client_id.map(|id| {
                format!(
                    "auth-fail:client:{}",
                    crate::secret::digest_b64(id.as_bytes())
                )
            }),
            peer: format!("auth-fail:peer:{}", peer_key(peer)),
        }
    }
}

/// An IPv4 address as is; an IPv6 address by its /64 (one subscriber's usual allocation);
/// IPv4-mapped IPv6 as IPv4.
fn peer_key(peer: Option<IpAddr>) -> String {
    match peer.map(|p| p.to_canonical()) {
        None => "unknown".into(),
        Some(IpAddr::V4(v4)) => v4.to_string(),
        Some(IpAddr::V6(v6)) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
    }
}

/// The failed-authentication budgets of the service.
#[derive(Debug)]
pub struct FailureThrottle {
    limiter: Arc<dyn RateLimiter>,
    /// When the store is full: (window start, failures) shared by every key it cannot hold.
    overflow: Mutex<(UnixTime, u64)>,
    /// When the last "store full" warning was logged (at most one a minute).
    last_full_warning: AtomicI64,
}

fn rate_limited(retry_after: u64) -> OAuthError {
    OAuthError::unavailable("too many failed client authentication attempts")
        .retry_after(retry_after)
}

impl FailureThrottle {
    pub fn new(limiter: Arc<dyn RateLimiter>) -> Self {
        Self {
            limiter,
            overflow: Mutex::new((UnixTime::MIN, 0)),
            last_full_warning: AtomicI64::new(i64::MIN),
        }
    }

    /// Refuses the attempt with `429` when its peer's or its client id's budget is spent, or,
    /// for a secret, when the full store could not hold its id and the overflow budget is spent.
    pub async fn admit(
        &self,
        keys: &AttemptKeys,
        limits: &ClientAuthSettings,
        now: UnixTime,
    ) -> Result<(), OAuthError> {
        let budgets = [
            (Some(&keys.peer), limits.failures_per_peer),
            (keys.client.as_ref(), limits.failures_per_client),
        ];
        for (key, budget) in budgets {
            let Some(key) = key else { continue };
            let spent = self
                .limiter
                .count(key, limits.window(), now)
                .await
                .map_err(|_| OAuthError::unavailable("rate limiter is unavailable"))?;
            if spent.count >= budget {
                return Err(rate_limited(spent.resets_in));
            }
        }
        // A secret guess whose id the full store could not count meets the overflow budget.
        // Only secrets: they can be guessed, and an assertion's failures cost us little.
        if let Some(client) = &keys.client
            && let Some(resets_in) = self.overflow_spent(limits, now)
            && self
                .limiter
                .count(client, limits.window(), now)
                .await
                .is_ok_and(|c| c.count == 0)
        {
            return Err(rate_limited(resets_in));
        }
        Ok(())
    }

    /// Counts a failure against the attempt's peer and client id. Only `invalid_client`
    /// counts: a busy pool or an unavailable dependency is not the client's doing.
    pub async fn failed(
        &self,
        keys: &AttemptKeys,
        error: &OAuthError,
        limits: &ClientAuthSettings,
        now: UnixTime,
    ) {
        if error.code != ErrorCode::InvalidClient {
            return;
        }
        let mut lost = false;
        for key in [Some(&keys.peer), keys.client.as_ref()]
            .into_iter()
            .flatten()
        {
            lost |= self.limiter.add(key, limits.window(), now).await.is_err();
        }
        if lost {
            self.overflow_add(limits, now);
        }
    }

    /// `Some(seconds to the window's end)` when the overflow budget of this window is spent.
    fn overflow_spent(&self, limits: &ClientAuthSettings, now: UnixTime) -> Option<u64> {
        let start = window_start(now, limits.window());
        let overflow = self.overflow.lock().ok()?;
        (overflow.0 == start && overflow.1 >= limits.failures_per_client)
            .then(|| (start.saturating_add(limits.window() as i64) - now).max(1) as u64)
    }

    /// A failure the full store could not hold counts against the one overflow budget.
    fn overflow_add(&self, limits: &ClientAuthSettings, now: UnixTime) {
        let _ = self.warn_full(now);
        let start = window_start(now, limits.window());
        if let Ok(mut overflow) = self.overflow.lock() {
            if overflow.0 != start {
                *overflow = (start, 0);
            }
            overflow.1 = overflow.1.saturating_add(1);
        }
    }

    /// Logs that the store is full, at most once a minute; says whether it did.
    fn warn_full(&self, now: UnixTime) -> bool {
        let last = self.last_full_warning.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= 60
            && self
                .last_full_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if due {
            tracing::warn!(
                "the rate limiter is full: new addresses and client ids share one overflow budget"
            );
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryRateLimiter;
    use std::time::Duration;

    #[test]
    fn peers_are_keyed_by_address_or_ipv6_64() {
        let k = |s: &str| peer_key(Some(s.parse().unwrap()));
        assert_eq!(k("10.1.2.3"), "10.1.2.3");
        assert_eq!(k("::ffff:10.1.2.3"), "10.1.2.3");
        assert_eq!(k("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(k("2001:db8:1:2:bbbb::9"), k("2001:db8:1:2:aaaa::1"));
        assert_ne!(k("2001:db8:1:3::1"), k("2001:db8:1:2::1"));
        assert_eq!(peer_key(None), "unknown");
    }

    #[test]
    fn client_ids_are_hashed() {
        let long = "x".repeat(10_000);
        let keys = AttemptKeys::new(Some(&long), None);
        assert!(keys.client.as_ref().unwrap().len() < 100);
        assert!(!keys.client.as_ref().unwrap().contains("xxxx"));
    }

    fn limits(per_client: u64, per_peer: u64) -> ClientAuthSettings {
        ClientAuthSettings {
            failures_per_client: per_client,
            failures_per_peer: per_peer,
            failure_window: Duration::from_secs(60),
            ..ClientAuthSettings::default()
        }
    }

    fn failure() -> OAuthError {
        OAuthError::invalid_client("client authentication failed")
    }

    #[tokio::test]
    async fn a_full_store_fails_closed_through_the_overflow_budget() {
        // Room for one key only (the first peer): failures of other keys go to the overflow
        // budget of 2, counted once per attempt.
        let t = FailureThrottle::new(Arc::new(MemoryRateLimiter::new(1)));
        let l = limits(2, 100);
        let peer = IpAddr::from([10, 0, 0, 1]);
        let guess = |i: u8| AttemptKeys::new(Some(&format!("id-{i}")), Some(peer));
        for i in 0..2 {
            t.admit(&guess(i), &l, 600).await.unwrap();
            t.failed(&guess(i), &failure(), &l, 600).await;
        }
        // A secret guess for an id the store does not hold meets the spent overflow...
        let refused = t.admit(&guess(9), &l, 600).await.unwrap_err();
        assert_eq!(refused.retry_after, Some(60));
        // ...an assertion (no id charged) does not.
        t.admit(&AttemptKeys::new(None, Some(peer)), &l, 600)
            .await
            .unwrap();
        // The next window starts a new overflow budget.
        t.admit(&guess(9), &l, 660).await.unwrap();
    }

    #[tokio::test]
    async fn only_invalid_client_failures_count() {
        let t = FailureThrottle::new(Arc::new(MemoryRateLimiter::new(100)));
        let l = limits(100, 2);
        let keys = AttemptKeys::new(Some("c"), Some(IpAddr::from([10, 0, 0, 1])));
        let busy = OAuthError::unavailable("client authentication is busy");
        for _ in 0..5 {
            t.admit(&keys, &l, 600).await.unwrap();
            t.failed(&keys, &busy, &l, 600).await;
        }
        t.failed(&keys, &failure(), &l, 600).await;
        t.admit(&keys, &l, 600).await.unwrap();
        t.failed(&keys, &failure(), &l, 600).await;
        let refused = t.admit(&keys, &l, 600).await.unwrap_err();
        assert_eq!(refused.retry_after, Some(60));
        // A new window, a whole budget.
        t.admit(&keys, &l, 660).await.unwrap();
    }

    #[tokio::test]
    async fn the_client_budget_is_separate_from_the_peer_budget() {
        let t = FailureThrottle::new(Arc::new(MemoryRateLimiter::new(100)));
        let l = limits(2, 100);
        let from = |id: &str, i: u8| AttemptKeys::new(Some(id), Some(IpAddr::from([10, 0, 1, i])));
        t.failed(&from("c", 1), &failure(), &l, 600).await;
        t.failed(&from("c", 2), &failure(), &l, 600).await;
        assert!(t.admit(&from("c", 3), &l, 600).await.is_err());
        t.admit(&from("d", 3), &l, 600).await.unwrap();
        t.admit(
            &AttemptKeys::new(None, Some(IpAddr::from([10, 0, 1, 3]))),
            &l,
            600,
        )
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn a_full_store_is_said_once_a_minute() {
        let t = FailureThrottle::new(Arc::new(MemoryRateLimiter::new(0)));
        let said: Vec<bool> = [600, 601, 659, 660, 661]
            .into_iter()
            .map(|now| t.warn_full(now))
            .collect();
        assert_eq!(said, [true, false, false, true, false]);
    }
}
