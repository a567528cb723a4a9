//! The Redis replay guard: `SET key 1 NX PX ttl`, where a nil reply means the key was already
//! there (a replay). Every replica naming the same server shares it.
//!
//! The connection is made lazily and remade after I/O errors (the `redis` crate's
//! `ConnectionManager`); every call is bounded by the connect and response timeouts. Any
//! failure is `StoreError::Unavailable`: the caller fails closed, nothing is remembered or
//! guessed. Keys are SHA-256 digests of the caller's key (the `jti` is attacker-chosen), and
//! the URL, which may hold a password, never reaches a log: only its host and port do.

use std::time::Duration;

use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{ReplayGuard, StoreError};
use crate::clock::UnixTime;

/// Key prefix of every replay entry.
const PREFIX: &str = "sts:replay:";

/// How long a connection attempt and a command may take.
#[derive(Debug, Clone, Copy)]
pub struct RedisTimeouts {
    pub connect: Duration,
    pub response: Duration,
}

pub struct RedisReplayGuard {
    conn: ConnectionManager,
    /// The last readiness answer and when it was taken: `/readyz` is anonymous, so Redis is
    /// asked at most once a second.
    last_ping: std::sync::Mutex<Option<(std::time::Instant, bool)>>,
    /// `host:port`, for logs.
    target: String,
    timeouts: RedisTimeouts,
}

impl std::fmt::Debug for RedisReplayGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplayGuard")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl RedisReplayGuard {
    /// A guard for `url` (`redis://` or `rediss://`); connects on first use.
    pub fn new(url: &str, timeouts: RedisTimeouts) -> Result<Self, String> {
        let target = url::Url::parse(url)
            .ok()
            .map(|u| {
                format!(
                    "{}:{}",
                    u.host_str().unwrap_or("?"),
                    u.port().unwrap_or(6379)
                )
            })
            .unwrap_or_else(|| "?".into());
        // The crate's messages may quote the URL: say only which server.
        let client = redis::Client::open(url)
            .map_err(|_| format!("store: cannot use the Redis URL for {target}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeouts.connect))
            .set_response_timeout(Some(timeouts.response))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(200));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|_| format!("store: cannot set up the Redis connection to {target}"))?;
        Ok(Self {
            conn,
            last_ping: std::sync::Mutex::new(None),
            target,
            timeouts,
        })
    }
}

#[async_trait]
impl ReplayGuard for RedisReplayGuard {
    async fn first_use(
        &self,
        key: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool, StoreError> {
        let ttl_ms = (expires_at - now).max(1).saturating_mul(1000);
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, key.as_bytes());
        let redis_key = format!("{PREFIX}{}", crate::jose::b64_encode(digest.as_ref()));
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(&redis_key).arg(1).arg("NX").arg("PX").arg(ttl_ms);
        let set = cmd.query_async::<Option<String>>(&mut conn);
        // A reconnect may be under way: the whole call gets one connect plus one response.
        let cap = self.timeouts.connect + self.timeouts.response;
        match tokio::time::timeout(cap, set).await {
            Ok(Ok(reply)) => Ok(reply.is_some()),
            Ok(Err(e)) => {
                tracing::warn!(store = %self.target, kind = ?e.kind(), "replay store refused or failed");
                Err(StoreError::Unavailable)
            }
            Err(_) => {
                tracing::warn!(store = %self.target, "replay store did not answer in time");
                Err(StoreError::Unavailable)
            }
        }
    }

    async fn reachable(&self) -> bool {
        let fresh = |at: std::time::Instant| at.elapsed() < Duration::from_secs(1);
        if let Ok(g) = self.last_ping.lock()
            && let Some((at, ok)) = *g
            && fresh(at)
        {
            return ok;
        }
        let mut conn = self.conn.clone();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        let cap = self.timeouts.connect + self.timeouts.response;
        let ok = matches!(tokio::time::timeout(cap, ping).await, Ok(Ok(_)));
        if let Ok(mut g) = self.last_ping.lock() {
            *g = Some((std::time::Instant::now(), ok));
        }
        ok
    }
}
