//! The `sts` binary over a real socket: the embedded default with `STS__*` overrides, the
//! repository's example profiles and mappings, the CLI helpers, key persistence across a
//! restart, startup refusal on bad configuration — and a scan of everything the processes
//! printed for the tokens and secrets the flows used.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_sts");

pub(crate) struct Server {
    child: Child,
    pub(crate) base: String,
}

impl Drop for Server {
    /// Stops the server as an operator would (SIGTERM, graceful), so it flushes its logs; kills
    /// it if it has not exited after 10 s.
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn env_for(dir: &Path, port: u16) -> Vec<(String, String)> {
    let root = repo_root();
    [
        ("STS__LISTEN", format!("127.0.0.1:{port}")),
        ("STS__ISSUER", format!("http://127.0.0.1:{port}")),
        ("STS__KEYS__DIR", dir.join("keys").display().to_string()),
        ("STS__DEV_DIR", dir.join("dev").display().to_string()),
        ("STS__PROFILES", root.join("profiles").display().to_string()),
        ("STS__MAPPINGS", root.join("mappings").display().to_string()),
        ("STS__WORKERS", "1".into()),
        ("STS__CLIENT_AUTH__FAILURES_PER_PEER", "4".into()),
        ("RUST_LOG", "debug,sts=trace".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn command(dir: &Path, port: u16, log: &str, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(args).envs(env_for(dir, port)).current_dir(dir);
    let out = std::fs::File::create(dir.join(format!("{log}.out"))).unwrap();
    let err = std::fs::File::create(dir.join(format!("{log}.err"))).unwrap();
    c.stdout(Stdio::from(out)).stderr(Stdio::from(err));
    c
}

pub(crate) async fn start(dir: &Path, port: u16, log: &str) -> Server {
    start_with(dir, port, log, &[]).await
}

/// [`start`] with further environment variables.
pub(crate) async fn start_with(dir: &Path, port: u16, log: &str, env: &[(&str, &str)]) -> Server {
    let mut command = command(dir, port, log, &["serve"]);
    command.envs(env.iter().copied());
    // Wrapped at once so every path (including the panic below) kills and waits for it.
    let server = Server {
        child: command.spawn().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let client = reqwest::Client::new();
    while Instant::now() < deadline {
        let health = client.get(format!("{}/healthz", server.base)).send().await;
        if health.is_ok_and(|r| r.status().is_success()) {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = std::fs::read_to_string(dir.join(format!("{log}.err"))).unwrap_or_default();
    panic!("sts did not start: {log}");
}

/// Runs a CLI helper and returns its standard output (its logs go to the scanned files too).
pub(crate) fn cli(dir: &Path, port: u16, log: &str, args: &[&str]) -> String {
    let mut c = Command::new(BIN);
    c.args(args).envs(env_for(dir, port)).current_dir(dir);
    let out = c.output().unwrap();
    std::fs::write(dir.join(format!("{log}.err")), &out.stderr).unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// POSTs a token exchange of `subject` (and `actor`) for `audience` as `dev-client`.
async fn exchange(
    base: &str,
    secret: &str,
    subject: &str,
    actor: Option<&str>,
    audience: &str,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", subject),
        ("subject_token_type", ACCESS_TOKEN),
        ("audience", audience),
    ];
    if let Some(actor) = actor {
        form.extend([("actor_token", actor), ("actor_token_type", ACCESS_TOKEN)]);
    }
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(&form)
        .finish();
    let r = reqwest::Client::new()
        .post(format!("{base}/token"))
        .basic_auth("dev-client", Some(secret))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

/// A token from the development IdP, via `sts token dev-subject ARGS`.
pub(crate) fn dev_token(dir: &Path, port: u16, log: &str, args: &[&str]) -> String {
    let mut all = vec!["token", "dev-subject"];
    all.extend_from_slice(args);
    cli(dir, port, log, &all).trim().to_owned()
}

pub(crate) async fn get_json(http: &reqwest::Client, url: &str) -> Value {
    http.get(url).send().await.unwrap().json().await.unwrap()
}

#[actix_web::test]
async fn the_binary_serves_the_examples_and_leaks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let server = start(d, port, "serve1").await;
    let base = server.base.clone();
    let http = reqwest::Client::new();

    let meta = get_json(
        &http,
        &format!("{base}/.well-known/oauth-authorization-server"),
    )
    .await;
    assert_eq!(meta["token_endpoint"], format!("{base}/token"));
    let jwks = get_json(&http, &format!("{base}/jwks")).await;
    let secret = std::fs::read_to_string(d.join("dev/client-secret")).unwrap();
    let mut used: Vec<String> = vec![secret.clone()];

    // profiles/orders-access.yaml + mappings/user-claims.yaml
    let subject = dev_token(
        d,
        port,
        "cli1",
        &[
            "--sub",
            "alice",
            "--scope",
            "orders:read orders:write billing:pay",
        ],
    );
    let (status, body) = exchange(&base, &secret, &subject, None, "orders-api").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["scope"], "orders:read orders:write",
        "the profile keeps order scopes only"
    );
    let issued = body["access_token"].as_str().unwrap().to_owned();
    let c = decode_issued(&issued, &jwks, &base, Some("orders-api"), true);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["origin"]["issuer"], "https://dev-idp.sts.invalid");
    used.extend([subject, issued]);

    // profiles/billing-delegation.yaml + mappings/delegated-claims.yaml, with may_act.
    let subject = dev_token(
        d,
        port,
        "cli2",
        &[
            "--sub",
            "bob",
            "--scope",
            "billing:pay orders:read",
            "--may-act",
            "svc-billing",
        ],
    );
    let actor = dev_token(
        d,
        port,
        "cli3",
        &["--sub", "svc-billing", "--scope", "billing:pay"],
    );
    let (status, body) = exchange(&base, &secret, &subject, Some(&actor), "billing-api").await;
    assert_eq!(status, 200, "{body}");
    let issued = body["access_token"].as_str().unwrap().to_owned();
    let c = decode_issued(&issued, &jwks, &base, Some("billing-api"), true);
    assert_eq!(
        c["act"],
        json!({"sub": "svc-billing", "iss": "https://dev-idp.sts.invalid"})
    );
    assert_eq!(c["acting_service"], "svc-billing");
    assert_eq!(c["scope"], "billing:pay");
    used.extend([subject.clone(), actor, issued]);

    // Refusals: the wrong actor for may_act, a tampered subject, a wrong secret.
    let other = dev_token(d, port, "cli4", &["--sub", "svc-other"]);
    let (status, body) = exchange(&base, &secret, &subject, Some(&other), "billing-api").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let tampered = format!("{}x", &subject[..subject.len() - 1]);
    let (status, body) = exchange(&base, &secret, &tampered, None, "orders-api").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    let (status, _) = exchange(&base, "not-the-secret", &subject, None, "orders-api").await;
    assert_eq!(status, 401);
    used.extend([other, tampered]);
    // Requests refused before any policy: each still carries the subject and the secret.
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", "client_credentials"),
            ("subject_token", subject.as_str()),
        ])
        .finish();
    for (content_type, body, want) in [
        ("application/x-www-form-urlencoded", body.clone(), 400),
        ("application/json", body.clone(), 400),
        (
            "application/x-www-form-urlencoded",
            format!("{body}&pad={}", "a".repeat(70_000)),
            413,
        ),
    ] {
        let r = http
            .post(format!("{base}/token"))
            .basic_auth("dev-client", Some(&secret))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), want);
    }
    // Wrong secrets until the address's budget (4 in this run) is spent: 429.
    let guesses: Vec<String> = (0..4).map(|i| format!("wrong-secret-guess-{i}")).collect();
    for g in &guesses[1..] {
        let (status, _) = exchange(&base, g, &subject, None, "orders-api").await;
        assert_eq!(status, 401);
    }
    let (status, body) = exchange(&base, &guesses[0], &subject, None, "orders-api").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (429, Some("temporarily_unavailable"))
    );
    // The real secret, already checked by this process, is not held back.
    let fresh = dev_token(
        d,
        port,
        "cli5",
        &["--sub", "carol", "--scope", "orders:read"],
    );
    let (status, body) = exchange(&base, &secret, &fresh, None, "orders-api").await;
    used.push(fresh);
    assert_eq!(status, 200, "{body}");
    used.extend(guesses);
    used.push(body["access_token"].as_str().unwrap().to_owned());

    // A restart keeps the signing key.
    drop(server);
    let server = start(d, port, "serve2").await;
    let again = get_json(&http, &format!("{}/jwks", server.base)).await;
    assert_eq!(again["keys"][0]["kid"], jwks["keys"][0]["kid"]);
    drop(server);

    // Private keys: ours and the development IdP's, as their PEM body lines.
    let before = used.len();
    for pem in ["keys", "dev"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(d.join(sub)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
    {
        let text = std::fs::read_to_string(&pem).unwrap();
        used.extend(
            text.lines()
                .filter(|l| !l.starts_with("-----") && l.len() >= 16)
                .map(str::to_owned),
        );
    }
    assert!(used.len() >= before + 2, "both private keys were found");
    // Nothing any process printed contains a token, a token's signature, a secret or a key.
    let mut output = String::new();
    for entry in std::fs::read_dir(d).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "out" || e == "err") {
            output.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    assert!(
        output.contains("token exchanged"),
        "debug logs were captured"
    );
    assert!(
        output.contains("ready: every key source has loaded"),
        "startup says it is ready only once keys have loaded"
    );
    assert!(
        output.contains("accept thread stopped"),
        "a graceful stop flushed the log buffer"
    );
    assert!(!output.contains("PRIVATE KEY"));
    // Tracing is off here: no request span exists, so none shows in any line.
    assert!(
        !output.contains("sts.request") && !output.contains("sts.caller"),
        "a request span reached the logs"
    );
    for t in &used {
        let sig = t.rsplit('.').next().unwrap();
        assert!(
            !output.contains(t.as_str()) && !output.contains(sig),
            "a secret reached the logs"
        );
    }
}

/// CPU time (user + system, in clock ticks) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the command name (which is in parentheses): utime is the 12th, stime the 13th.
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// `busy_poll`: after a request the worker keeps its core busy for the window, then sleeps.
/// Without it, the same server uses no CPU after a request.
#[actix_web::test]
async fn busy_poll_polls_for_the_window_then_sleeps() {
    let dir = tempfile::tempdir().unwrap();
    for (window, polls) in [("50ms", true), ("0s", false)] {
        let env = [("STS__BUSY_POLL", window), ("RUST_LOG", "warn")];
        let server = start_with(dir.path(), free_port(), "busy", &env).await;
        let client = reqwest::Client::new();
        tokio::time::sleep(Duration::from_millis(600)).await;
        let pid = server.child.id();
        // Idle past the window: asleep.
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let idle = cpu_ticks(pid) - before;
        assert!(idle <= 10, "{window}: {idle} ticks while idle");
        // A request every 25 ms for a second, each within the window of the last: the worker
        // polls throughout (up to 100 ticks; a loaded test machine may give it less of the
        // core), while without busy_poll such light traffic costs almost nothing.
        let before = cpu_ticks(pid);
        for _ in 0..40 {
            let r = client.get(format!("{}/healthz", server.base)).send().await;
            assert!(r.unwrap().status().is_success());
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let busy = cpu_ticks(pid) - before;
        if polls {
            assert!(busy >= 25, "{window}: {busy} ticks under light traffic");
        } else {
            assert!(busy <= 10, "{window}: {busy} ticks under light traffic");
        }
        // And asleep again once the window has passed.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let before = cpu_ticks(pid);
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let idle = cpu_ticks(pid) - before;
        assert!(idle <= 10, "{window}: {idle} ticks after the window");
    }
}

#[test]
fn bad_configuration_stops_startup_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("sts.yaml");
    std::fs::write(&cfg, "issuer: https://sts.test\nlisten: 127.0.0.1:1\nkeys: {dir: k}\nprofiles: p\nmappings: m\ncolour: blue\n").unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--config", cfg.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("colour"));
    // An environment override with a bad value is named too.
    std::fs::write(
        &cfg,
        "issuer: https://sts.test\nlisten: 127.0.0.1:1\nkeys: {dir: k}\nprofiles: p\nmappings: m\n",
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["check", "--config", cfg.to_str().unwrap()])
        .env("STS__LEEWAY", "1h")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("leeway"));
    let out = Command::new(BIN)
        .args(["check", "--config", cfg.to_str().unwrap()])
        .env("STS__BUSY_POLL", "51ms")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("busy_poll: at most 50ms"));
    // Lists cannot come from the environment: said plainly, not as a type error.
    for (var, list) in [("STS__CLIENTS__0__ID", "clients"), ("STS__TRUST", "trust")] {
        let out = Command::new(BIN)
            .args(["check", "--config", cfg.to_str().unwrap()])
            .env(var, "x")
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!(
                "{list}: entries cannot be set from the environment"
            )),
            "{err}"
        );
    }
}

#[test]
fn check_validates_offline_and_fails_on_problems() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let ok = cli(dir.path(), port, "check", &["check"]);
    assert!(ok.contains("profile(s)"), "{ok}");
    // check writes nothing: no development key or secret, no signing key.
    let written: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy() != "check.err")
        .collect();
    assert!(written.is_empty(), "sts check wrote {written:?}");
    let bad = dir.path().join("bad");
    write_files(
        &bad,
        &[(
            "x.yaml",
            "name: x\ncallers: [dev-client]\nsubject: {accept: [nope]}\nissue: {kind: access-token, audiences: [x], lifetime: 1m}\n",
        )],
    );
    let out = Command::new(BIN)
        .arg("check")
        .envs(env_for(dir.path(), port))
        .env("STS__PROFILES", &bad)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("x.yaml:3:20: unknown trust entry `nope`")
    );
}

#[test]
fn hash_secret_makes_a_usable_hash() {
    let out = Command::new(BIN).arg("hash-secret").output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let secret = text
        .lines()
        .find_map(|l| l.strip_prefix("client_secret: "))
        .unwrap();
    let hash = text
        .lines()
        .find_map(|l| l.strip_prefix("secret_hash: "))
        .unwrap();
    let parsed = sts::auth::SecretHash::parse(hash).unwrap();
    assert!(parsed.verify(&sts::secret::ClientSecret::new(secret)));
}
