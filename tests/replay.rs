//! The replay guard: one suite run against the in-memory store and against a real
//! `redis-server` started on a free loopback port; the Redis entry's lifetime; failing closed
//! while Redis is away and recovering when it returns; and two `sts` processes sharing one
//! Redis, where a client assertion used at one is refused at the other.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use sts::store::{MemoryReplayGuard, RedisReplayGuard, RedisTimeouts, ReplayGuard, StoreError};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_sts");

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A `redis-server` of the test's own, on loopback, keeping nothing on disk.
pub struct RedisServer {
    child: Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_on(free_port())
    }

    pub fn start_on(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "redis-server could not start ({e}); tests/run.sh installs it \
                     (apt-get install redis-server)"
                )
            });
        let server = Self {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !server.pings() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer PING"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn pings(&self) -> bool {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const TIMEOUTS: RedisTimeouts = RedisTimeouts {
    connect: Duration::from_millis(500),
    response: Duration::from_millis(500),
};

/// What every replay guard must do, with injected time.
async fn behaves_as_a_replay_guard(g: Arc<dyn ReplayGuard>) {
    let k = format!("client-assertion\u{0}c\u{0}{}", rand_id());
    assert_eq!(g.first_use(&k, NOW + 60, NOW).await, Ok(true), "first use");
    assert_eq!(
        g.first_use(&k, NOW + 60, NOW + 1).await,
        Ok(false),
        "replay"
    );
    assert_eq!(
        g.first_use(&k, NOW + 600, NOW + 2).await,
        Ok(false),
        "a replay with a later expiry is still a replay"
    );
    // Keys that differ only after a NUL, or only in case, are different keys.
    let (a, b) = (format!("{k}\u{0}x"), format!("{k}\u{0}X"));
    assert_eq!(g.first_use(&a, NOW + 60, NOW).await, Ok(true));
    assert_eq!(g.first_use(&b, NOW + 60, NOW).await, Ok(true));
    // A long, attacker-sized key.
    let long = "j".repeat(16 * 1024) + &rand_id();
    assert_eq!(g.first_use(&long, NOW + 60, NOW).await, Ok(true));
    assert_eq!(g.first_use(&long, NOW + 60, NOW).await, Ok(false));
    // Fifty concurrent first uses of one fresh key: exactly one wins.
    let race = format!("race-{}", rand_id());
    let tries = (0..50).map(|_| {
        let (g, race) = (g.clone(), race.clone());
        async move { g.first_use(&race, NOW + 60, NOW).await }
    });
    let results = futures_util::future::join_all(tries).await;
    assert_eq!(results.iter().filter(|r| **r == Ok(true)).count(), 1);
    assert_eq!(results.iter().filter(|r| **r == Ok(false)).count(), 49);
}

#[actix_web::test]
async fn the_in_memory_guard_passes_the_suite() {
    behaves_as_a_replay_guard(Arc::new(MemoryReplayGuard::new(10_000))).await;
}

#[actix_web::test]
async fn the_redis_guard_passes_the_suite_and_keeps_entries_until_expiry() {
    let server = RedisServer::start();
    let g = Arc::new(RedisReplayGuard::new(&server.url(), TIMEOUTS).unwrap());
    behaves_as_a_replay_guard(g.clone()).await;
    // TTL = expires_at - now (callers pass exp + leeway), and keys are digests, not the jti.
    let client = redis::Client::open(server.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await.unwrap();
    let jti = format!("visible-jti-{}", rand_id());
    assert_eq!(g.first_use(&jti, NOW + 90, NOW).await, Ok(true));
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].starts_with("sts:replay:") && !keys[0].contains("visible-jti"));
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&keys[0])
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!((89_000..=90_000).contains(&pttl), "PTTL {pttl}");
}

#[actix_web::test]
async fn an_unreachable_redis_fails_closed_then_recovers() {
    let port = free_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    let g = RedisReplayGuard::new(&url, TIMEOUTS).unwrap();
    let started = Instant::now();
    assert_eq!(
        g.first_use("k1", NOW + 60, NOW).await,
        Err(StoreError::Unavailable)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "bounded by the timeouts: {:?}",
        started.elapsed()
    );
    let server = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match g.first_use("k1", NOW + 60, NOW).await {
            Ok(first) => {
                assert!(first, "nothing was remembered while Redis was away");
                break;
            }
            Err(e) => assert!(Instant::now() < deadline, "no recovery: {e}"),
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(g.first_use("k1", NOW + 60, NOW).await, Ok(false));
    drop(server);
    assert_eq!(
        g.first_use("k2", NOW + 60, NOW).await,
        Err(StoreError::Unavailable),
        "Redis gone again: closed again"
    );
}

struct Sts {
    child: Child,
    base: String,
}

impl Drop for Sts {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_sts(dir: &Path, name: &str, config: &str) -> Sts {
    let port = free_port();
    let d = dir.display().to_string();
    let text = config
        .replace("listen: 127.0.0.1:0", &format!("listen: 127.0.0.1:{port}"))
        .replace(&format!("dir: {d}/keys"), &format!("dir: {d}/keys-{name}"));
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, text).unwrap();
    let err = std::fs::File::create(dir.join(format!("{name}.err"))).unwrap();
    let child = Command::new(BIN)
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap();
    let sts = Sts {
        child,
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = reqwest::Client::new();
    while Instant::now() < deadline {
        let health = client.get(format!("{}/healthz", sts.base)).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            return sts;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.join(format!("{name}.err"))).unwrap_or_default();
    panic!("sts {name} did not start: {log}");
}

/// A token exchange by the `private_key_jwt` client with `assertion`.
async fn exchange_with(sts: &Sts, subject: &str, assertion: &str) -> (u16, serde_json::Value) {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject),
            ("subject_token_type", ACCESS_TOKEN),
            ("audience", "orders-api"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .finish();
    let r = reqwest::Client::new()
        .post(format!("{}/token", sts.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or_default())
}

#[actix_web::test]
async fn two_processes_sharing_redis_refuse_each_others_replays_and_fail_closed_without_it() {
    let h = Harness::new().await;
    let redis = RedisServer::start();
    let port = redis.port;
    let config = harness_config(h.dir.path(), &format!("store: {}\n", redis.url()));
    let a = start_sts(h.dir.path(), "a", &config).await;
    let b = start_sts(h.dir.path(), "b", &config).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let subject = || {
        h.idp
            .access_token(json!({"iat": now - 10, "exp": now + 600}))
    };
    let assertion = || crate::exchange::client_assertion(&h, json!({"iat": now, "exp": now + 60}));

    let used_once = assertion();
    let (status, body) = exchange_with(&a, &subject(), &used_once).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = exchange_with(&b, &subject(), &used_once).await;
    assert_eq!(
        (
            status,
            body["error"].as_str(),
            body["error_description"].as_str()
        ),
        (
            401,
            Some("invalid_client"),
            Some("client assertion was already used")
        ),
        "the replay is refused at the other process: {body}"
    );
    let (status, _) = exchange_with(&b, &subject(), &assertion()).await;
    assert_eq!(status, 200, "a fresh assertion works at b");

    let ready: serde_json::Value = reqwest::get(format!("{}/readyz", a.base))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["store_reachable"], true, "{ready}");

    // Redis away: nothing is issued, the error says to come back later; not ready.
    drop(redis);
    // Readiness asks Redis at most once a second.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let r = reqwest::get(format!("{}/readyz", a.base)).await.unwrap();
        if r.status().as_u16() == 503 {
            let ready: serde_json::Value = r.json().await.unwrap();
            assert_eq!(ready["store_reachable"], false, "{ready}");
            break;
        }
        assert!(Instant::now() < deadline, "readiness never saw Redis go");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, body) = exchange_with(&a, &subject(), &assertion()).await;
    assert_eq!(
        (
            status,
            body["error"].as_str(),
            body["error_description"].as_str()
        ),
        (
            503,
            Some("temporarily_unavailable"),
            Some("replay store is unavailable")
        ),
        "{body}"
    );
    assert!(body.get("access_token").is_none());
    // Redis back on the same port: the service recovers by itself.
    let _redis = RedisServer::start_on(port);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (status, body) = exchange_with(&a, &subject(), &assertion()).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 503, "{body}");
        assert!(Instant::now() < deadline, "no recovery: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
