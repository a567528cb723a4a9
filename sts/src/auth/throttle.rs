//! Failed client authentication is slow for the attacker: failures are counted per presented
//! `client_id` (client secrets only) and per peer address, and a spent budget is answered `429`
//! with `Retry-After` before any secret or signature is checked.
//!
//! Only failures count, after they happen: a burst of a real client's first requests is never
//! refused for being in flight. Attempts already admitted when a budget runs out still finish;
//! the secret-check pool bounds how many that can be. A secret that already passed PBKDF2 on
//! this process never reaches this module (`auth::authenticate` answers it first), so a flood
//! of wrong secrets for a real client's id does not lock out that client. When the store is
//! full, new keys share one overflow budget: the limiter fails closed, not open.
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

    /// Refuses the attempt with `429` when its peer's or its client id's budget is spent, or
    /// when the store is full, the key is not in it, and the overflow budget is spent too.
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
            if spent.count == 0
                && let Some(resets_in) = self.overflow_spent(limits, now)
            {
                return Err(rate_limited(resets_in));
            }
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
        for key in [Some(&keys.peer), keys.client.as_ref()]
            .into_iter()
            .flatten()
        {
            if self.limiter.add(key, limits.window(), now).await.is_err() {
                self.overflow_add(limits, now);
            }
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
        self.warn_full(now);
        let start = window_start(now, limits.window());
        if let Ok(mut overflow) = self.overflow.lock() {
            if overflow.0 != start {
                *overflow = (start, 0);
            }
            overflow.1 = overflow.1.saturating_add(1);
        }
    }

    fn warn_full(&self, now: UnixTime) {
        let last = self.last_full_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60
            && self
                .last_full_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "the rate limiter is full: new addresses and client ids share one overflow budget"
            );
        }
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
        // Room for one key only: failures of other keys go to the overflow budget of 2.
        let t = FailureThrottle::new(Arc::new(MemoryRateLimiter::new(1)));
        let l = limits(2, 100);
        let peer = |i: u8| AttemptKeys::new(None, Some(IpAddr::from([10, 0, 0, i])));
        for i in 0..3 {
            t.admit(&peer(i), &l, 600).await.unwrap();
            t.failed(&peer(i), &failure(), &l, 600).await;
        }
        // Peer 0 is in the store (1 failure of 100); any new peer meets the spent overflow.
        t.admit(&peer(0), &l, 600).await.unwrap();
        let refused = t.admit(&peer(9), &l, 600).await.unwrap_err();
        assert_eq!(refused.retry_after, Some(60));
        // The next window starts a new overflow budget.
        t.admit(&peer(9), &l, 660).await.unwrap();
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

    /// Collects what a subscriber writes.
    #[derive(Clone, Default)]
    struct Collect(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Collect {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_full_store_is_said_once_a_minute() {
        use tracing::instrument::WithSubscriber;
        let out = Collect::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .finish();
        async {
            let t = FailureThrottle::new(Arc::new(MemoryRateLimiter::new(0)));
            let l = limits(1000, 1000);
            let keys = AttemptKeys::new(Some("c"), Some(IpAddr::from([10, 0, 0, 1])));
            for now in [600, 601, 659, 660, 661] {
                t.failed(&keys, &failure(), &l, now).await;
            }
        }
        .with_subscriber(subscriber)
        .await;
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text.matches("the rate limiter is full").count(),
            2,
            "{text}"
        );
    }
}
