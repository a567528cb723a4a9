//! Micro-benchmarks of the exchange pipeline's steps, in process (no HTTP, no kernel):
//! `cargo bench -p sts --bench pipeline`. Figures are recorded in docs/benchmarks.md.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::json;
use sts::app::AppState;
use sts::auth::{AuthMethod, Caller};
use sts::clock::{Clock, SystemClock};
use sts::config::Settings;
use sts::exchange::{ExchangeRequest, FormParams};
use sts::jose::{Alg, KeySet, UnverifiedJws};
use sts::keys::{Signer, SigningKey};

struct Fixture {
    state: Arc<AppState>,
    idp: Signer,
    jwks: serde_json::Value,
    rt: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    sts::install_crypto_providers();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let idp_key = SigningKey::from_pkcs8(&SigningKey::generate_pkcs8(Alg::ES256).unwrap()).unwrap();
    let jwks = json!({"keys": [idp_key.public_jwk()]});
    std::fs::write(dir.path().join("idp.json"), jwks.to_string()).unwrap();
    std::fs::create_dir_all(dir.path().join("p")).unwrap();
    std::fs::create_dir_all(dir.path().join("m")).unwrap();
    std::fs::write(
        dir.path().join("p/bench.yaml"),
        "name: bench\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\n\
         when: \"'orders:read' in subject.scope.split(' ')\"\n\
         issue:\n  kind: access-token\n  audiences: [orders-api]\n  lifetime: 5m\n\
         \x20 scope: \"subject.scope.split(' ').filter(s, s.startsWith('orders:')).join(' ')\"\n\
         \x20 claims: bench-claims\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("m/bench.yaml"),
        "name: bench-claims\nclaims:\n  email: \"has(subject.email) ? subject.email : null\"\n\
         \x20 origin:\n    issuer: subject.iss\n    client: subject.client_id\n",
    )
    .unwrap();
    let config = format!(
        "issuer: https://sts.bench\nlisten: 127.0.0.1:0\nsubject_cache: {{capacity: 0}}\nkeys: {{dir: {d}/keys}}\nprofiles: {d}/p\nmappings: {d}/m\n\
         trust:\n  - {{name: corp-idp, kind: oauth-jwt, issuer: \"https://idp.bench\", jwks: {{file: {d}/idp.json}}}}\n"
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let settings = Settings::from_yaml(&config).unwrap();
    let state = rt
        .block_on(AppState::build(settings, Arc::new(SystemClock)))
        .unwrap();
    Fixture {
        state,
        idp: Signer::new(idp_key, &[]),
        jwks,
        rt,
        _dir: dir,
    }
}

fn subject(f: &Fixture, i: u64) -> String {
    let now = SystemClock.now();
    let serde_json::Value::Object(c) = json!({
        "iss": "https://idp.bench", "sub": format!("user-{i}"), "aud": "https://sts.bench",
        "client_id": "web-app", "scope": "orders:read orders:write profile",
        "email": format!("user-{i}@example.com"), "iat": now, "exp": now + 3600, "jti": format!("j{i}"),
    }) else {
        unreachable!()
    };
    f.idp.sign_jws("at+jwt", &c).unwrap()
}

fn body(token: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair(
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        )
        .append_pair("subject_token", token)
        .append_pair(
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        )
        .append_pair("audience", "orders-api")
        .finish()
}

/// One full exchange in process: form parsing to signed response.
fn run_exchange(f: &Fixture, caller: &Caller, body: &str) -> sts::exchange::TokenResponse {
    let limits = sts::config::Limits::default();
    let req =
        ExchangeRequest::from_params(FormParams::parse(body.as_bytes(), 32).unwrap(), &limits)
            .unwrap();
    let snap = f.state.snapshot();
    let facts = sts::token::RequestFacts::post(&snap.endpoint);
    let ctx =
        sts::exchange::verify_context(&snap, &facts, f.state.replay.as_ref(), SystemClock.now());
    f.rt.block_on(sts::exchange::token_exchange(
        &snap,
        &f.state.subjects,
        caller,
        &req,
        ctx,
        &mut sts::exchange::Trace::default(),
    ))
    .unwrap()
}

fn gateway() -> Caller {
    Caller {
        id: "gateway".into(),
        method: AuthMethod::ClientSecretBasic,
        proven_key: None,
        certificate_thumbprint: None,
    }
}

fn benches(c: &mut Criterion) {
    let f = fixture();
    let token = subject(&f, 1);
    let caller = gateway();
    let (keys, _) = KeySet::from_jwks(f.jwks.to_string().as_bytes(), &[Alg::ES256]).unwrap();
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), "alice".into());

    c.bench_function("jws_parse", |b| {
        b.iter(|| UnverifiedJws::parse(black_box(&token), 16384).unwrap())
    });
    c.bench_function("jws_parse_and_verify_es256", |b| {
        b.iter(|| {
            let jws = UnverifiedJws::parse(black_box(&token), 16384).unwrap();
            let key = keys
                .find(jws.header.kid.as_deref(), jws.header.alg)
                .unwrap();
            jws.verify(key).unwrap()
        })
    });
    c.bench_function("sign_jws_es256", |b| {
        b.iter(|| {
            f.state
                .snapshot()
                .signer
                .sign_jws("at+jwt", black_box(&claims))
                .unwrap()
        })
    });
    c.bench_function("form_parse", |b| {
        let body = body(&token);
        b.iter(|| {
            ExchangeRequest::from_params(
                FormParams::parse(black_box(body.as_bytes()), 32).unwrap(),
                &sts::config::Limits::default(),
            )
            .unwrap()
        })
    });
    let subject_claims = UnverifiedJws::parse(&token, 16384)
        .unwrap()
        .unverified_claims;
    let caller_v = json!({"id": "gateway", "method": "client_secret_basic"});
    let request_v = json!({"audience": ["orders-api"], "resource": [], "scope": "", "requested_token_type": "",
        "subject_token_type": "urn:ietf:params:oauth:token-type:access_token", "actor_token_type": ""});
    c.bench_function("cel_variables", |b| {
        b.iter(|| {
            sts::expr::Variables::from_claims(
                black_box(&subject_claims),
                None,
                &caller_v,
                &request_v,
                1,
            )
        })
    });
    let profile = f.state.snapshot().catalog.by_name("bench").unwrap().clone();
    let vars = sts::expr::Variables::from_claims(&subject_claims, None, &caller_v, &request_v, 1);
    c.bench_function("cel_condition_scope_mapping", |b| {
        b.iter(|| {
            profile.when.as_ref().unwrap().eval(&vars).unwrap();
            profile.scope.as_ref().unwrap().eval(&vars).unwrap();
            profile.mapping.as_ref().unwrap().apply(&vars).unwrap()
        })
    });
    c.bench_function("exchange_end_to_end_in_process", |b| {
        let body = body(&token);
        b.iter(|| run_exchange(&f, &caller, &body))
    });
}

/// The same exchange with the production log format enabled at `info`, written to a sink: the
/// cost of the per-exchange log line.
fn with_logging(c: &mut Criterion) {
    let f = fixture();
    let token = subject(&f, 2);
    let caller = gateway();
    let body = body(&token);
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(std::io::sink)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        c.bench_function("exchange_end_to_end_in_process_logging_info", |b| {
            b.iter(|| run_exchange(&f, &caller, &body))
        });
    });
}

/// The exchange with a different subject token each time (as in the load test), to show what
/// a larger working set costs compared with repeating one token.
fn distinct_tokens(c: &mut Criterion) {
    let f = fixture();
    let caller = gateway();
    let bodies: Vec<String> = (0..10_000).map(|i| body(&subject(&f, i))).collect();
    let mut i = 0;
    c.bench_function("exchange_end_to_end_in_process_distinct_tokens", |b| {
        b.iter(|| {
            i = (i + 1) % bodies.len();
            run_exchange(&f, &caller, &bodies[i])
        })
    });
}

criterion_group!(pipeline, benches, with_logging, distinct_tokens);
criterion_main!(pipeline);
