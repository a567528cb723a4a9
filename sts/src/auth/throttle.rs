//! Failed client authentication is slow for the attacker: attempts that need a check are
//! charged per presented `client_id` (client secrets only) and per peer address, and a spent
//! budget is answered `429` with `Retry-After` before any secret or signature is checked.
//!
//! A charge is taken before the check, so concurrent attempts cannot all slip under a budget;
//! it is given back when the attempt succeeds or is refused here. A secret that already passed
//! PBKDF2 on this process never reaches this module (`auth::authenticate` answers it first), so
//! a flood of wrong secrets for a real client's id does not lock out that client. When the
//! store is full, new keys share one overflow budget: the limiter fails closed, not open.
//! Counters live behind the [`RateLimiter`] trait (memory now, Redis later). This module never
//! sees a secret or an assertion: only the presented id, hashed, and the peer address.

use std::net::IpAddr;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use crate::clock::UnixTime;
use crate::config::ClientAuthSettings;
use crate::error::OAuthError;
use crate::store::{RateLimiter, StoreError, WindowCount, window_start};

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

/// What [`FailureThrottle::admit`] charged, to give back exactly that.
#[derive(Debug, Default, Clone, Copy)]
#[must_use]
pub struct Charge {
    peer: bool,
    client: bool,
}

/// The failed-authentication budgets of the service.
#[derive(Debug)]
pub struct FailureThrottle {
    limiter: Arc<dyn RateLimiter>,
    /// When the store is full: (window start, attempts) shared by every key it cannot hold.
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

    /// Charges the attempt to its peer and its client id, and refuses it with `429` when either
    /// budget is spent (giving that charge back: nothing was checked).
    pub async fn admit(
        &self,
        keys: &AttemptKeys,
        limits: &ClientAuthSettings,
        now: UnixTime,
    ) -> Result<Charge, OAuthError> {
        let mut charge = Charge::default();
        let budgets = [
            (Some(&keys.peer), limits.failures_per_peer),
            (keys.client.as_ref(), limits.failures_per_client),
        ];
        for (i, (key, budget)) in budgets.into_iter().enumerate() {
            let Some(key) = key else { continue };
            let spent = match self.limiter.add(key, limits.window(), now).await {
                Ok(count) => {
                    if i == 0 {
                        charge.peer = true;
                    } else {
                        charge.client = true;
                    }
                    count
                }
                Err(StoreError::Full) => self.overflow_charge(limits, now),
            };
            if spent.count > budget {
                self.refund(keys, charge, limits, now).await;
                return Err(rate_limited(spent.resets_in));
            }
        }
        Ok(charge)
    }

    /// Gives back what `admit` charged: the attempt succeeded.
    pub async fn refund(
        &self,
        keys: &AttemptKeys,
        charge: Charge,
        limits: &ClientAuthSettings,
        now: UnixTime,
    ) {
        // Best effort: a lost refund only makes a budget stricter.
        if charge.peer {
            let _ = self
                .limiter
                .take_back(&keys.peer, limits.window(), now)
                .await;
        }
        if charge.client
            && let Some(client) = &keys.client
        {
            let _ = self.limiter.take_back(client, limits.window(), now).await;
        }
    }

    /// A key the full store cannot hold is charged to the one overflow counter, whose budget is
    /// a single client's: while the store is full, new keys together get that many attempts.
    fn overflow_charge(&self, limits: &ClientAuthSettings, now: UnixTime) -> WindowCount {
        self.warn_full(now);
        let window = limits.window();
        let start = window_start(now, window);
        let resets_in = (start.saturating_add(window as i64) - now).max(1) as u64;
        let Ok(mut overflow) = self.overflow.lock() else {
            return WindowCount {
                count: u64::MAX,
                resets_in,
            };
        };
        if overflow.0 != start {
            *overflow = (start, 0);
        }
        overflow.1 = overflow.1.saturating_add(1);
        // Compared with the client budget whichever budget asked.
        let count = if overflow.1 > limits.failures_per_client {
            u64::MAX
        } else {
            0
        };
        WindowCount { count, resets_in }
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

    #[tokio::test]
    async fn a_full_store_fails_closed_through_the_overflow_budget() {
        // Room for one key only: every other key goes to the overflow budget of 2.
        let t = FailureThrottle::new(Arc::new(MemoryRateLimiter::new(1)));
        let l = limits(2, 100);
        let peer = |i: u8| AttemptKeys::new(None, Some(IpAddr::from([10, 0, 0, i])));
        let _ = t.admit(&peer(0), &l, 600).await.unwrap();
        let _ = t.admit(&peer(1), &l, 600).await.unwrap();
        let _ = t.admit(&peer(2), &l, 600).await.unwrap();
        let refused = t.admit(&peer(3), &l, 600).await.unwrap_err();
        assert_eq!(refused.retry_after, Some(60));
        // The next window starts a new overflow budget.
        let _ = t.admit(&peer(4), &l, 660).await.unwrap();
    }

    #[tokio::test]
    async fn a_refusal_and_a_success_give_their_charge_back() {
        let t = FailureThrottle::new(Arc::new(MemoryRateLimiter::new(100)));
        let l = limits(100, 2);
        let keys = AttemptKeys::new(Some("c"), Some(IpAddr::from([10, 0, 0, 1])));
        let _ = t.admit(&keys, &l, 600).await.unwrap(); // a failure: kept
        let _ = t.admit(&keys, &l, 600).await.unwrap(); // a failure: kept
        for _ in 0..5 {
            // Refused ones do not pile up...
            assert!(t.admit(&keys, &l, 600).await.is_err());
        }
        // ...so one window later the budget is whole again, and a success is refunded.
        let ok = t.admit(&keys, &l, 660).await.unwrap();
        t.refund(&keys, ok, &l, 660).await;
        let _ = t.admit(&keys, &l, 660).await.unwrap();
        let _ = t.admit(&keys, &l, 660).await.unwrap();
        assert!(t.admit(&keys, &l, 660).await.is_err());
    }
}
