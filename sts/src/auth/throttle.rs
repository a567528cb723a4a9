//! Failed client authentication is slow for the attacker: failures are counted per presented
//! `client_id` and per peer address, and a spent budget is answered `429` with `Retry-After`
//! before any secret or signature is checked.
//!
//! A client that authenticated from an address recently is not held back there by its
//! `client_id`'s spent budget, so a flood of wrong secrets for a client's id from elsewhere does
//! not lock the real client out; that address's own peer budget still applies. Counters live
//! behind the [`RateLimiter`] trait (memory now, Redis later). This module never sees a secret
//! or an assertion: only the presented id, hashed, and the peer address.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use crate::clock::UnixTime;
use crate::config::ClientAuthSettings;
use crate::error::{ErrorCode, OAuthError};
use crate::store::{RateLimiter, StoreError, WindowCount};

/// The limiter keys of one attempt.
#[derive(Debug)]
pub struct AttemptKeys {
    peer: String,
    client: Option<String>,
    pair: Option<String>,
}

impl AttemptKeys {
    /// Keys for an attempt by `client_id` (as presented, if any) from `peer`. The id is hashed
    /// so a long or hostile id costs the store a fixed size.
    pub fn new(client_id: Option<&str>, peer: Option<IpAddr>) -> Self {
        let peer = peer_key(peer);
        let id = client_id.map(|id| crate::secret::digest_b64(id.as_bytes()));
        Self {
            client: id.as_ref().map(|id| format!("auth-fail:client:{id}")),
            pair: id.as_ref().map(|id| format!("auth-ok:{id}:{peer}")),
            peer: format!("auth-fail:peer:{peer}"),
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
    /// When the last "store full" warning was logged (at most one a minute).
    last_full_warning: AtomicI64,
}

fn rate_limited(retry_after: u64) -> OAuthError {
    OAuthError::new(
        ErrorCode::TemporarilyUnavailable,
        "too many failed client authentication attempts",
    )
    .retry_after(retry_after)
}

impl FailureThrottle {
    pub fn new(limiter: Arc<dyn RateLimiter>) -> Self {
        Self {
            limiter,
            last_full_warning: AtomicI64::new(i64::MIN),
        }
    }

    /// Charges the attempt to its peer and its client id before any check, and refuses it with
    /// `429` when the peer's budget is spent, or the client id's budget is spent and this client
    /// has not recently authenticated from this address. Charging first means concurrent
    /// attempts cannot all slip under a budget; [`settle`](Self::settle) gives the charge back
    /// when the attempt succeeds.
    pub async fn admit(
        &self,
        keys: &AttemptKeys,
        limits: &ClientAuthSettings,
        now: UnixTime,
    ) -> Result<(), OAuthError> {
        let window = limits.failure_window.as_secs();
        let Some(peer) = self.charge(&keys.peer, window, now).await else {
            return Ok(());
        };
        if peer.count > limits.failures_per_peer {
            return Err(rate_limited(peer.resets_in));
        }
        if let (Some(client), Some(pair)) = (&keys.client, &keys.pair)
            && let Some(spent) = self.charge(client, window, now).await
            && spent.count > limits.failures_per_client
            && !self.limiter.is_marked(pair, now).await.unwrap_or(false)
        {
            return Err(rate_limited(spent.resets_in));
        }
        Ok(())
    }

    /// After the check: a success gives the charges back and remembers the client at this
    /// address; `invalid_client` keeps them. Any other outcome (a dependency was unavailable)
    /// is not the client's fault and gives them back too.
    pub async fn settle(
        &self,
        keys: &AttemptKeys,
        outcome: Result<(), &OAuthError>,
        limits: &ClientAuthSettings,
        now: UnixTime,
    ) {
        if outcome.is_err_and(|e| e.code == ErrorCode::InvalidClient) {
            return;
        }
        let window = limits.failure_window.as_secs();
        // Giving back is best effort: a lost refund only makes a budget stricter.
        let _ = self.limiter.take_back(&keys.peer, window, now).await;
        if let Some(client) = &keys.client {
            let _ = self.limiter.take_back(client, window, now).await;
        }
        if outcome.is_ok()
            && let Some(pair) = &keys.pair
        {
            let until = now.saturating_add(limits.remember_success.as_secs() as i64);
            if self.limiter.mark(pair, until, now).await.is_err() {
                self.warn_full(now);
            }
        }
    }

    /// Adds one to `key`; `None` when the store cannot count it (full), which is logged.
    async fn charge(&self, key: &str, window: u64, now: UnixTime) -> Option<WindowCount> {
        match self.limiter.add(key, window, now).await {
            Ok(c) => Some(c),
            Err(StoreError::Full) => {
                self.warn_full(now);
                None
            }
        }
    }

    /// A full store cannot count new keys: their attempts go ahead to the secret check, which
    /// the secret-check pool still bounds. Said once a minute.
    fn warn_full(&self, now: UnixTime) {
        let last = self.last_full_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 60
            && self
                .last_full_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                "the rate limiter is full: failed client authentications are not all counted"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
