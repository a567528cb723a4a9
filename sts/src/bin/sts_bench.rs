//! `sts-bench`: prepares a reproducible load test of `POST /token` and measures the crypto floor
//! it is compared with (see docs/benchmarks.md).
//!
//! `sts-bench prepare --dir D --port P --count N` writes into D: a config for one worker, an
//! identity provider's JWKS, a profile (by default a realistic one with a condition, a scope
//! expression and a mapping; `--profile plain` for audience and lifetime only), N request bodies
//! each carrying a distinct ES256 subject token, and the wrk Lua script that sends them in order.
//!
//! `--profile txn` prepares Txn-Token requests at ingress instead (ES256 access token in, ES256
//! Txn-Token out) and also writes `gateway.lua`, which sends the same tokens as
//! `Authorization: Bearer` to a gateway. `--tokens N --zipf S` draws the requests from N live
//! user tokens with Zipf-distributed reuse (rank k has weight 1/k^S) instead of one per request.
//!
//! `sts-bench floor` times raw aws-lc-rs ES256 verify and sign on the current core, so a load
//! test run on this noisy VM can be set against the floor measured minutes apart.
//!
//! `sts-bench rate` sends the prepared requests open-loop at a fixed rate over keep-alive
//! connections and prints latency percentiles measured from each request's scheduled time (so
//! a stalled server is not hidden by a waiting client).
//! It is a tool, not part of the service.

use std::fs;
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use clap::{Parser, Subcommand};
use sts::auth::SecretHash;
use sts::jose::Alg;
use sts::keys::{Signer, SigningKey};

#[derive(Parser)]
#[command(
    name = "sts-bench",
    about = "Prepare a load test of the sts token endpoint"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Write config, profile, mapping, request bodies and the wrk script into --dir.
    Prepare {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 18080)]
        port: u16,
        /// How many distinct subject tokens (one per request).
        #[arg(long, default_value_t = 250_000)]
        count: usize,
        /// Signing algorithm of the issued tokens (ES256, EdDSA, RS256).
        #[arg(long, default_value = "ES256")]
        alg: String,
        /// `mapped`: CEL condition, scope expression and claim mapping; `plain`: none of them;
        /// `txn`: Txn-Tokens at ingress (condition, mapping with tctx/rctx).
        #[arg(long, default_value = "mapped")]
        profile: String,
        /// Live user tokens the requests are drawn from (0: a distinct token per request).
        #[arg(long, default_value_t = 0)]
        tokens: usize,
        /// Zipf exponent of token reuse when --tokens is set.
        #[arg(long, default_value_t = 1.1)]
        zipf: f64,
    },
    /// A minimal upstream for the gateway runs: answers every HTTP/1.1 request with `200 ok`
    /// (one write per response, keep-alive) until killed.
    Upstream {
        #[arg(long)]
        port: u16,
    },
    /// Send the prepared requests open-loop at --rate per second for --seconds and print
    /// latency percentiles.
    Rate {
        #[arg(long)]
        dir: PathBuf,
        /// `token`: POST the bodies to /token; `gateway`: GET with each token as Bearer.
        #[arg(long, default_value = "token")]
        mode: String,
        #[arg(long)]
        url: String,
        #[arg(long)]
        rate: f64,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        #[arg(long, default_value_t = 64)]
        connections: usize,
    },
    /// Time raw ES256 verify and sign (aws-lc-rs, pre-parsed keys) for --seconds; print the
    /// floor in exchanges/s (one verify plus one sign each).
    Floor {
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

const CLIENT_SECRET: &str = "bench-gateway-secret-0123456789";

fn main() -> Result<(), String> {
    sts::install_crypto_providers();
    match Cli::parse().command {
        Cmd::Prepare {
            dir,
            port,
            count,
            alg,
            profile,
            tokens,
            zipf,
        } => prepare(dir, port, count, &alg, &profile, Reuse { tokens, zipf }),
        Cmd::Floor { seconds } => floor(seconds),
        Cmd::Upstream { port } => upstream(port),
        Cmd::Rate {
            dir,
            mode,
            url,
            rate,
            seconds,
            connections,
        } => open_loop(&dir, &mode, &url, rate, seconds, connections),
    }
}

/// The two bench profiles: `mapped` (realistic: condition, scope expression, claim mapping)
/// and `plain` (audience and lifetime only).
const MAPPED_PROFILE: &str = "name: bench\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\n\
     when: \"'orders:read' in subject.scope.split(' ')\"\n\
     issue:\n  kind: access-token\n  audiences: [orders-api]\n  lifetime: 5m\n\
     \x20 scope: \"subject.scope.split(' ').filter(s, s.startsWith('orders:')).join(' ')\"\n\
     \x20 claims: bench-claims\n";
const MAPPED_CLAIMS: &str = "name: bench-claims\nclaims:\n  email: \"has(subject.email) ? subject.email : null\"\n\
     \x20 origin:\n    issuer: subject.iss\n    client: subject.client_id\n";
const TXN_PROFILE: &str = "name: bench\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\n\
     when: \"'orders:read' in subject.scope.split(' ')\"\n\
     issue:\n  kind: txn-token\n  audiences: [bench.example]\n  lifetime: 2m\n  claims: bench-claims\n";
const TXN_CLAIMS: &str = "name: bench-claims\nclaims:\n  sub: subject.sub\n\
     \x20 tctx: request.request_details\n  rctx: request.request_context\n";
const PLAIN_PROFILE: &str = "name: bench\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\n\
     issue:\n  kind: access-token\n  audiences: [orders-api]\n  lifetime: 5m\n";

fn floor(seconds: f64) -> Result<(), String> {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{
        ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair,
        ParsedPublicKey,
    };
    use std::time::{Duration, Instant};
    let rng = SystemRandom::new();
    let der = SigningKey::generate_pkcs8(Alg::ES256).map_err(|e| e.to_string())?;
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der)
        .map_err(|e| e.to_string())?;
    let public = ParsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, pair.public_key().as_ref())
        .map_err(|e| e.to_string())?;
    // About the size of a JWS signing input of a subject token.
    let message = vec![b'e'; 600];
    let signature = pair.sign(&rng, &message).map_err(|e| e.to_string())?;
    let budget = Duration::from_secs_f64(seconds / 2.0);
    let time = |op: &mut dyn FnMut() -> bool| -> Result<f64, String> {
        let (start, mut n) = (Instant::now(), 0u32);
        while start.elapsed() < budget {
            if !op() {
                return Err("crypto operation failed".into());
            }
            n += 1;
        }
        Ok(start.elapsed().as_secs_f64() * 1e6 / f64::from(n))
    };
    let verify_us = time(&mut || public.verify_sig(&message, signature.as_ref()).is_ok())?;
    let sign_us = time(&mut || pair.sign(&rng, &message).is_ok())?;
    println!(
        "floor: ES256 verify {verify_us:.1} µs + sign {sign_us:.1} µs = {:.0} exchanges/s",
        1e6 / (verify_us + sign_us)
    );
    Ok(())
}

/// How requests reuse user tokens.
#[derive(Clone, Copy)]
struct Reuse {
    /// Live tokens (0: one per request).
    tokens: usize,
    zipf: f64,
}

fn prepare(
    dir: PathBuf,
    port: u16,
    count: usize,
    alg: &str,
    profile: &str,
    reuse: Reuse,
) -> Result<(), String> {
    let alg: Alg = alg.parse().map_err(|()| format!("unsupported alg {alg}"))?;
    let (profile_yaml, mapping_yaml) = match profile {
        "mapped" => (MAPPED_PROFILE, Some(MAPPED_CLAIMS)),
        "plain" => (PLAIN_PROFILE, None),
        "txn" => (TXN_PROFILE, Some(TXN_CLAIMS)),
        other => return Err(format!("unknown profile {other} (mapped, plain or txn)")),
    };
    let txn = profile == "txn";
    let io = |e: std::io::Error| e.to_string();
    fs::create_dir_all(dir.join("profiles")).map_err(io)?;
    fs::create_dir_all(dir.join("mappings")).map_err(io)?;
    let dir = fs::canonicalize(&dir).map_err(io)?;
    let d = dir.display();
    let issuer = format!("http://127.0.0.1:{port}");

    let idp_der = SigningKey::generate_pkcs8(Alg::ES256).map_err(|e| e.to_string())?;
    let idp_key = SigningKey::from_pkcs8(&idp_der).ok_or("key")?;
    let jwks = serde_json::json!({"keys": [idp_key.public_jwk()]});
    fs::write(dir.join("idp-jwks.json"), jwks.to_string()).map_err(io)?;
    let idp = Signer::new(idp_key, &[]);

    let hash = SecretHash::create(CLIENT_SECRET, 10_000)?;
    fs::write(
        dir.join("sts.yaml"),
        format!(
            "issuer: {issuer}\nlisten: 127.0.0.1:{port}\nworkers: 1\ntrust_domain: bench.example\ngateway: {{path: /gateway/txn-token}}\nkeys: {{dir: {d}/keys, alg: {alg}}}\n\
             profiles: {d}/profiles\nmappings: {d}/mappings\ntrust:\n  - {{name: corp-idp, kind: oauth-jwt, \
             issuer: \"https://idp.bench\", algorithms: [ES256], jwks: {{file: {d}/idp-jwks.json}}}}\n\
             clients:\n  - {{id: gateway, secret_hash: \"{hash}\"}}\n"
        ),
    )
    .map_err(io)?;
    fs::write(dir.join("profiles/bench.yaml"), profile_yaml).map_err(io)?;
    let claims_file = dir.join("mappings/bench-claims.yaml");
    match mapping_yaml {
        Some(m) => fs::write(&claims_file, m).map_err(io)?,
        None if claims_file.exists() => fs::remove_file(&claims_file).map_err(io)?,
        None => {}
    }

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs() as i64;
    let distinct = if reuse.tokens == 0 {
        count
    } else {
        reuse.tokens
    };
    let tokens: Vec<String> = (0..distinct)
        .map(|i| {
            let claims = serde_json::json!({
                "iss": "https://idp.bench", "sub": format!("user-{i}"), "aud": issuer,
                "client_id": "web-app", "scope": "orders:read orders:write profile",
                "email": format!("user-{i}@example.com"), "iat": now, "exp": now + 3600,
                "jti": format!("bench-{i}"),
            });
            let serde_json::Value::Object(claims) = claims else {
                unreachable!()
            };
            idp.sign_jws("at+jwt", &claims).map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    let order: Vec<usize> = if reuse.tokens == 0 {
        (0..count).collect()
    } else {
        zipf_draws(reuse.tokens, reuse.zipf, count)
    };
    let mut bodies = BufWriter::new(fs::File::create(dir.join("bodies.txt")).map_err(io)?);
    let mut bearer = BufWriter::new(fs::File::create(dir.join("tokens.txt")).map_err(io)?);
    for (n, &i) in order.iter().enumerate() {
        let token = &tokens[i];
        let mut form = form_urlencoded::Serializer::new(String::new());
        form.append_pair(
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        )
        .append_pair("subject_token", token)
        .append_pair(
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        );
        if txn {
            form.append_pair(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:txn_token",
            )
            .append_pair("audience", "bench.example")
            .append_pair("scope", "orders:read")
            .append_pair(
                "request_context",
                &format!("{{\"req_ip\":\"192.0.2.{}\"}}", n % 250),
            )
            .append_pair(
                "request_details",
                &format!("{{\"action\":\"BUY\",\"order\":\"{n}\"}}"),
            );
        } else {
            form.append_pair("audience", "orders-api");
        }
        writeln!(bodies, "{}", form.finish()).map_err(io)?;
        writeln!(bearer, "{token}").map_err(io)?;
    }
    bodies.flush().map_err(io)?;
    bearer.flush().map_err(io)?;

    let auth = STANDARD.encode(format!("gateway:{CLIENT_SECRET}"));
    fs::write(
        dir.join("load.lua"),
        format!(
            "-- Sends each pre-generated body once, in order (distinct subject token per request).\n\
             local bodies = {{}}\n\
             for line in io.lines(\"{d}/bodies.txt\") do bodies[#bodies + 1] = line end\n\
             -- START (environment): where to begin, so that runs on one server need not\n\
             -- repeat each other's tokens.\n\
             local i = tonumber(os.getenv(\"START\") or \"0\")\n\
             wrapped = 0\n\
             wrk.method = \"POST\"\n\
             wrk.headers[\"Content-Type\"] = \"application/x-www-form-urlencoded\"\n\
             wrk.headers[\"Authorization\"] = \"Basic {auth}\"\n\
             request = function()\n\
             \x20 i = i + 1\n\
             \x20 if i > #bodies then i = 1; wrapped = wrapped + 1 end\n\
             \x20 return wrk.format(nil, \"/token\", nil, bodies[i])\n\
             end\n"
        ),
    )
    .map_err(io)?;
    fs::write(
        dir.join("gateway.lua"),
        format!(
            "-- Sends each prepared user token once, in order, as a Bearer token to a gateway.\n\
             local tokens = {{}}\n\
             for line in io.lines(\"{d}/tokens.txt\") do tokens[#tokens + 1] = line end\n\
             local i = tonumber(os.getenv(\"START\") or \"0\")\n\
             request = function()\n\
             \x20 i = i + 1\n\
             \x20 if i > #tokens then i = 1 end\n\
             \x20 return wrk.format(\"GET\", \"/orders/1\", {{[\"Authorization\"] = \"Bearer \" .. tokens[i]}})\n\
             end\n"
        ),
    )
    .map_err(io)?;
    fs::write(dir.join("gateway-basic.txt"), &auth).map_err(io)?;
    println!("prepared {count} requests over {distinct} user tokens in {d}");
    Ok(())
}

/// `count` ranks in 0..n drawn with probability ∝ 1/(rank+1)^s, from a fixed seed (the same
/// files every time).
fn zipf_draws(n: usize, s: f64, count: usize) -> Vec<usize> {
    let mut cdf = Vec::with_capacity(n);
    let mut total = 0.0;
    for k in 1..=n {
        total += 1.0 / (k as f64).powf(s);
        cdf.push(total);
    }
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    (0..count)
        .map(|_| {
            // xorshift64*: enough for drawing a benchmark's request order.
            state ^= state >> 12;
            state ^= state << 25;
            state ^= state >> 27;
            let u = (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64;
            cdf.partition_point(|&c| c < u * total).min(n - 1)
        })
        .collect()
}

/// Open-loop load: `connections` workers share `rate` requests per second; request k of
/// worker w is due at start + (k·connections + w)/rate, and its latency counts from then when
/// its connection was still busy at that time. Each
/// worker keeps one HTTP/1.1 connection and writes pre-built requests on it, so the sender
/// costs a few microseconds per request and does not distort what it measures.
fn open_loop(
    dir: &std::path::Path,
    mode: &str,
    url: &str,
    rate: f64,
    seconds: f64,
    connections: usize,
) -> Result<(), String> {
    use std::time::{Duration, Instant};
    let file = if mode == "gateway" {
        "tokens.txt"
    } else {
        "bodies.txt"
    };
    let basic = fs::read_to_string(dir.join("gateway-basic.txt")).map_err(|e| e.to_string())?;
    let (addr, path) = url
        .strip_prefix("http://")
        .and_then(|rest| rest.split_once('/'))
        .map(|(a, p)| (a.to_owned(), format!("/{p}")))
        .ok_or("url must be http://host:port/path")?;
    // Every request, ready to write.
    let requests: Vec<Vec<u8>> = fs::read_to_string(dir.join(file))
        .map_err(|e| e.to_string())?
        .lines()
        .map(|line| {
            if mode == "gateway" {
                format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {line}\r\n\r\n")
            } else {
                format!(
                    "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Basic {basic}\r\n\
                     Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{line}",
                    line.len()
                )
            }
            .into_bytes()
        })
        .collect();
    let requests = std::sync::Arc::new(requests);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let total = (rate * seconds) as usize;
    let (lat, failed) = rt.block_on(async {
        let start = Instant::now() + Duration::from_millis(200);
        let mut tasks = Vec::new();
        for w in 0..connections {
            let (requests, addr) = (requests.clone(), addr.clone());
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut failed = 0usize;
                let Ok(mut conn) = Conn::open(&addr).await else {
                    return (lat, total / connections);
                };
                let mut k = w;
                let mut free_at = start;
                while k < total {
                    let due = start + Duration::from_secs_f64(k as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                    // Latency counts from when the request was due if the connection was still
                    // busy then (the server's backlog), else from when it was sent (the
                    // timer's millisecond granularity is the sender's, not the server's).
                    let from = if free_at > due { due } else { Instant::now() };
                    if conn.closing {
                        match Conn::open(&addr).await {
                            Ok(c) => conn = c,
                            Err(_) => break,
                        }
                    }
                    let result = conn.call(&requests[k % requests.len()]).await;
                    free_at = Instant::now();
                    match result {
                        Ok(200) => lat.push((
                            due.duration_since(start).as_millis() as u64,
                            from.elapsed().as_micros() as u64,
                        )),
                        Ok(_) => failed += 1,
                        Err(_) => {
                            failed += 1;
                            match Conn::open(&addr).await {
                                Ok(c) => conn = c,
                                Err(_) => break,
                            }
                        }
                    }
                    k += connections;
                }
                (lat, failed)
            }));
        }
        let mut all = Vec::new();
        let mut failed = 0;
        for t in tasks {
            if let Ok((l, f)) = t.await {
                all.extend(l);
                failed += f;
            }
        }
        (all, failed)
    });
    // The worst latency of each 500 ms of the schedule: shows whether a tail is steady or
    // comes from stalls.
    let mut worst = vec![0u64; (seconds * 2.0).ceil() as usize + 1];
    for &(at, l) in &lat {
        let slot = (at / 500) as usize;
        if let Some(w) = worst.get_mut(slot) {
            *w = (*w).max(l);
        }
    }
    let mut lat: Vec<u64> = lat.into_iter().map(|(_, l)| l).collect();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0) as f64
            / 1000.0
    };
    println!(
        "open loop {rate:.0}/s for {seconds:.0}s: {} ok, {failed} failed; latency p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        lat.len(),
        pct(0.50),
        pct(0.90),
        pct(0.99),
        lat.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    if std::env::var_os("STS_BENCH_TIMELINE").is_some() {
        let shown: Vec<String> = worst
            .iter()
            .map(|w| format!("{:.1}", *w as f64 / 1000.0))
            .collect();
        println!("worst latency per 500 ms (ms): {}", shown.join(" "));
    }
    Ok(())
}

/// One keep-alive HTTP/1.1 connection of the open-loop sender.
struct Conn {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    line: String,
    /// The server said `Connection: close`: open a new connection before the next request.
    closing: bool,
}

impl Conn {
    async fn open(addr: &str) -> std::io::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: tokio::io::BufReader::new(stream),
            line: String::new(),
            closing: false,
        })
    }

    /// Writes one request and reads its response; returns the status.
    async fn call(&mut self, request: &[u8]) -> std::io::Result<u16> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        self.stream.get_mut().write_all(request).await?;
        let bad = || std::io::Error::other("malformed response");
        self.line.clear();
        self.stream.read_line(&mut self.line).await?;
        let status: u16 = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            if self.stream.read_line(&mut self.line).await? == 0 {
                return Err(bad());
            }
            let header = self.line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().map_err(|_| bad())?;
                } else if name.eq_ignore_ascii_case("connection")
                    && value.trim().eq_ignore_ascii_case("close")
                {
                    self.closing = true;
                }
            }
        }
        let mut body = vec![0u8; length];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}

/// Answers every request on every connection with `200 ok`: reads up to the end of the headers
/// (the gateway runs send no bodies) and writes the whole response at once.
fn upstream(port: u16) -> Result<(), String> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|e| e.to_string())?;
        loop {
            let (stream, _) = listener.accept().await.map_err(|e| e.to_string())?;
            tokio::spawn(async move {
                let _ = stream.set_nodelay(true);
                let mut stream = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    match stream.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) if line == "\r\n" => {
                            let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                            if stream.get_mut().write_all(reply).await.is_err() {
                                return;
                            }
                        }
                        Ok(_) => {}
                    }
                }
            });
        }
    })
}
