//! Token kinds as plugins: a toy kind registered through the public interface only; OpenID
//! Connect ID tokens discovered from a real local provider; opaque tokens checked against a
//! real local RFC 7662 introspection endpoint.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde::Deserialize;
use serde_json::{Value, json};
use sts::config::{ConfigError, Settings, TrustEntry};
use sts::jose::Claims;
use sts::token::{
    InputKind, KindEnv, KindRegistry, Presented, Rejection, Verified, Verifier, VerifyContext,
};

use crate::support::*;

// ---------------------------------------------------------------------------------------------
// A toy kind, written against the public plugin interface alone.

const TOY_TYPE: &str = "urn:example:params:token-type:toy";

/// Tokens `toy:<subject>`, valid only with the proof header carrying the entry's secret word,
/// on a POST to our configured endpoint.
struct ToyKind;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ToyBlock {
    secret_word: String,
}

#[derive(Debug)]
struct ToyVerifier {
    trust: Arc<str>,
    word: String,
}

impl InputKind for ToyKind {
    fn name(&self) -> &'static str {
        "toy"
    }
    fn token_types(&self) -> &'static [&'static str] {
        &[TOY_TYPE]
    }
    fn headers(&self) -> &'static [&'static str] {
        &["x-toy-proof"]
    }
    fn sample_claims(&self) -> Claims {
        json!({"iss": "urn:toy", "sub": "toy", "colour": "blue", "exp": 1_700_000_300})
            .as_object()
            .unwrap()
            .clone()
    }
    fn configure(
        &self,
        entry: &TrustEntry,
        _env: &KindEnv<'_>,
    ) -> Result<Arc<dyn Verifier>, ConfigError> {
        let b: ToyBlock = entry.parse_block()?;
        Ok(Arc::new(ToyVerifier {
            trust: Arc::from(entry.name.as_str()),
            word: b.secret_word,
        }))
    }
}

#[async_trait::async_trait]
impl Verifier for ToyVerifier {
    fn recognizes(&self, presented: &Presented<'_>) -> bool {
        presented.token.expose().starts_with("toy:")
    }
    async fn verify(
        &self,
        presented: Presented<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Verified, Rejection> {
        let facts = ctx.facts;
        if facts.header("X-Toy-Proof") != Some(self.word.as_str()) {
            return Err(Rejection::Kind("toy proof is missing"));
        }
        // The endpoint comes from configuration, whatever Host the request named.
        if facts.method != http::Method::POST || &*facts.endpoint != "https://sts.test/token" {
            return Err(Rejection::Kind("toy proof is for another endpoint"));
        }
        let sub = presented.token.expose().trim_start_matches("toy:");
        let mut claims =
            json!({"iss": "urn:toy", "sub": sub, "colour": "blue", "exp": ctx.now + 60});
        // A careless kind that gives its tokens no expiry.
        if sub == "forever" {
            claims.as_object_mut().unwrap().remove("exp");
        }
        Ok(Verified {
            claims: claims.as_object().unwrap().clone(),
            trust: self.trust.clone(),
            kind: "toy",
            proven_key: None,
            asserted_by_caller: false,
        })
    }
    fn issuer(&self) -> &str {
        "urn:toy"
    }
}

const TOY_PROFILE: (&str, &str) = (
    "toy.yaml",
    "name: toy\ncallers: [gateway]\nsubject: {accept: [toys]}\nwhen: \"subject.colour == 'blue'\"\n\
     issue: {kind: access-token, audiences: [orders-api], lifetime: 1m}\n",
);

fn toy_config(h: &Harness, block: &str) -> String {
    harness_config(h.dir.path(), "").replace(
        "trust:\n",
        &format!("trust:\n  - {{name: toys, kind: toy, {block}}}\n"),
    )
}

#[actix_web::test]
async fn a_toy_kind_needs_no_change_elsewhere() {
    let h = Harness::new().await;
    write_files(&h.dir.path().join("profiles"), &[TOY_PROFILE]);
    let settings = Settings::from_yaml(&toy_config(&h, "secret_word: abracadabra")).unwrap();
    let kinds = KindRegistry::builtin().with_input(Arc::new(ToyKind));
    let state = sts::app::AppState::build_with(settings, h.clock.clone(), kinds)
        .await
        .unwrap();
    let app = app_of(state).await;
    // Same caller and target as the access-token profile: a different kind is no overlap.
    let form = Form::exchange("toy:bob")
        .without("subject_token_type")
        .set("subject_token_type", TOY_TYPE)
        .set("audience", "orders-api");
    let ok = post(
        &app,
        &form
            .clone()
            .header("X-Toy-Proof", "abracadabra")
            .header("Host", "evil.example")
            .header("X-Forwarded-Host", "evil.example"),
    )
    .await;
    let token = ok.expect_token();
    let claims = verify_issued(&token, &get(&app, "/jwks").await.json, "orders-api");
    assert_eq!(claims["sub"], "bob");
    // The engine bounds every issued token by its input's expiry, whatever the kind.
    let forever = Form::exchange("toy:forever")
        .without("subject_token_type")
        .set("subject_token_type", TOY_TYPE)
        .set("audience", "orders-api")
        .header("X-Toy-Proof", "abracadabra");
    let d = post(&app, &forever)
        .await
        .expect_error(400, "invalid_request");
    assert!(d.contains("lacks a required claim: exp"), "{d}");
    let refused = post(&app, &form.header("X-Toy-Proof", "wrong")).await;
    assert!(
        refused
            .expect_error(400, "invalid_request")
            .contains("toy proof is missing")
    );
    // Access tokens still go to their own profile.
    post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({}))).set("audience", "orders-api"),
    )
    .await
    .expect_token();
}

#[actix_web::test]
async fn a_kinds_block_is_its_own_and_unknown_kinds_are_named() {
    let h = Harness::new().await;
    write_files(&h.dir.path().join("profiles"), &[TOY_PROFILE]);
    let kinds = KindRegistry::builtin().with_input(Arc::new(ToyKind));
    let settings = Settings::from_yaml(&toy_config(&h, "secret_wrd: x")).unwrap();
    let err = sts::app::AppState::build_with(settings, h.clock.clone(), kinds)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(
            "(configuration):8:29: trust[0].secret_wrd (entry `toys`, kind toy): `secret_wrd` is \
             not a known key here; known keys: secret_word"
        ),
        "{err}"
    );
    assert!(err.contains("(configuration):"), "no position in: {err}");
    // Without the registry line the kind does not exist.
    let settings = Settings::from_yaml(&toy_config(&h, "secret_word: x")).unwrap();
    let err = sts::app::AppState::build(settings, h.clock.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("unknown kind `toy` (kind must be one of: oauth-jwt, oidc-id-token, oauth-introspection, wit, txn-token, self-signed, unsigned-json, jwt-svid, x509-svid)"),
        "{err}"
    );
}

#[actix_web::test]
async fn metadata_lists_the_grant_registry() {
    let h = Harness::new().await;
    let app = h.app().await;
    let meta = get(&app, "/.well-known/oauth-authorization-server")
        .await
        .json;
    let grants: Vec<&str> = sts::exchange::GRANT_TYPES.iter().map(|g| g.uri).collect();
    assert_eq!(meta["grant_types_supported"], json!(grants));
    assert_eq!(grants, [TOKEN_EXCHANGE]);
}

// ---------------------------------------------------------------------------------------------
// OpenID Connect ID tokens from a provider found by discovery.

struct Provider {
    base: String,
    jwks: Arc<std::sync::RwLock<Value>>,
}

/// An OpenID provider over HTTP: discovery metadata (advertising `algs`) and a JWKS it can
/// change.
fn start_provider(algs: Value, claimed_issuer: Option<&str>) -> Provider {
    let jwks = Arc::new(std::sync::RwLock::new(json!({"keys": []})));
    let shared = jwks.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let issuer = claimed_issuer.map_or(base.clone(), str::to_owned);
    let meta = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{base}/authorize"),
        "jwks_uri": format!("{base}/keys"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
    });
    let server = HttpServer::new(move || {
        let (meta, jwks) = (meta.clone(), shared.clone());
        App::new()
            .route(
                "/.well-known/openid-configuration",
                web::get().to(move || {
                    let meta = meta.clone();
                    async move { HttpResponse::Ok().json(meta) }
                }),
            )
            .route(
                "/keys",
                web::get().to(move || {
                    let jwks = jwks.read().unwrap().clone();
                    async move { HttpResponse::Ok().json(jwks) }
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    Provider { base, jwks }
}

async fn app_with_provider(
    h: &Harness,
    entry: &str,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse,
    Error = actix_web::Error,
> + use<> {
    let profile = (
        "remote-oidc.yaml",
        "name: remote-oidc\ncallers: [gateway]\nsubject: {accept: [remote-oidc]}\n\
         issue: {kind: access-token, audiences: [remote-api], lifetime: 1m}\n",
    );
    app_with_entry(h, entry, profile).await
}

fn id_form(token: &str) -> Form {
    Form::exchange(token)
        .without("subject_token_type")
        .set("subject_token_type", ID_TOKEN)
        .set("audience", "remote-api")
}

#[actix_web::test]
async fn id_tokens_from_a_discovered_provider() {
    let h = Harness::new().await;
    // Keys are published for ES256 and EdDSA, but the provider advertises ES256 only.
    let p = start_provider(json!(["ES256"]), None);
    let es = Idp::new(&p.base, "es-1", "ES256");
    let ed = Idp::new(&p.base, "ed-1", "EdDSA");
    *p.jwks.write().unwrap() = json!({"keys": [es.jwk(), ed.jwk()]});
    let entry = format!(
        "{{name: remote-oidc, kind: oidc-id-token, issuer: \"{}\", client_id: {OIDC_CLIENT}, trusted_audiences: [\"https://portal.test\"]}}",
        p.base
    );
    let app = app_with_provider(&h, &entry).await;
    let token = post(&app, &id_form(&es.id_token(json!({}))))
        .await
        .expect_token();
    let claims = verify_issued(&token, &get(&app, "/jwks").await.json, "remote-api");
    assert_eq!(claims["sub"], "alice");
    // An algorithm the provider does not advertise has no usable key.
    let r = post(&app, &id_form(&ed.id_token(json!({})))).await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("key is unknown")
    );
    // OpenID Connect Core §3.1.3.7: other audiences must be trusted; with several, `azp` must
    // be present and name us.
    for (claims, reason) in [
        (
            json!({"aud": [OIDC_CLIENT, "https://stranger.test"], "azp": OIDC_CLIENT}),
            "audience",
        ),
        (json!({"aud": [OIDC_CLIENT, "https://portal.test"]}), "azp"),
        (
            json!({"aud": [OIDC_CLIENT, "https://portal.test"], "azp": "https://portal.test"}),
            "azp",
        ),
        (json!({"aud": OIDC_CLIENT, "azp": "someone-else"}), "azp"),
        (json!({"aud": "someone-else"}), "audience"),
    ] {
        let r = post(&app, &id_form(&es.id_token(claims.clone()))).await;
        let d = r.expect_error(400, "invalid_request");
        assert!(d.contains(reason), "{claims}: want `{reason}` in `{d}`");
    }
    let bound = es.id_token(json!({"cnf": {"jkt": "abc"}}));
    let d = post(&app, &id_form(&bound))
        .await
        .expect_error(400, "invalid_request");
    assert!(d.contains("sender-constrained"), "{d}");
    let both = json!({"aud": [OIDC_CLIENT, "https://portal.test"], "azp": OIDC_CLIENT});
    post(&app, &id_form(&es.id_token(both)))
        .await
        .expect_token();
    // An access token is not an ID token: wrong declared type for this profile.
    let r = post(
        &app,
        &id_form(&es.access_token(json!({"aud": OIDC_CLIENT}))),
    )
    .await;
    assert!(r.expect_error(400, "invalid_request").contains("typ"));
}

#[actix_web::test]
async fn a_provider_naming_another_issuer_fails_closed() {
    let h = Harness::new().await;
    let p = start_provider(json!(["ES256"]), Some("https://impostor.test"));
    let es = Idp::new(&p.base, "es-1", "ES256");
    *p.jwks.write().unwrap() = es.jwks();
    let entry = format!(
        "{{name: remote-oidc, kind: oidc-id-token, issuer: \"{}\", client_id: {OIDC_CLIENT}}}",
        p.base
    );
    let app = app_with_provider(&h, &entry).await;
    let r = post(&app, &id_form(&es.id_token(json!({})))).await;
    r.expect_error(503, "temporarily_unavailable");
    let ready = get(&app, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json["trust_not_loaded"], json!(1));
}

// ---------------------------------------------------------------------------------------------
// Opaque tokens through RFC 7662 introspection.

const INTROSPECTOR: &str = "sts-introspector";
const INTROSPECTOR_SECRET: &str = "intro secret/0123456789";

/// An introspection endpoint that answers by token, and counts calls per token.
struct Introspector {
    base: String,
    calls: Arc<Mutex<HashMap<String, usize>>>,
}

impl Introspector {
    fn calls(&self, token: &str) -> usize {
        self.calls.lock().unwrap().get(token).copied().unwrap_or(0)
    }
}

fn active(exp: i64) -> Value {
    json!({"active": true, "sub": "alice", "scope": "orders:read orders:write",
           "client_id": "web-app", "iss": "https://as.test", "exp": exp, "iat": NOW - 10,
           "aud": STS_ISSUER, "token_type": "Bearer", "department": "sales"})
}

async fn introspect(
    req: HttpRequest,
    form: web::Form<HashMap<String, String>>,
    calls: web::Data<Mutex<HashMap<String, usize>>>,
) -> HttpResponse {
    // RFC 7662 §2.1: the caller authenticates (RFC 6749 §2.3.1 encoding of id and secret).
    use base64::Engine;
    let want = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{INTROSPECTOR}:{}",
            form_urlencoded::byte_serialize(INTROSPECTOR_SECRET.as_bytes()).collect::<String>()
        ))
    );
    if req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        != Some(&want)
    {
        return HttpResponse::Unauthorized().json(json!({"error": "invalid_client"}));
    }
    // RFC 7662 §2.1: we ask about access tokens, and say so.
    if form.get("token_type_hint").map(String::as_str) != Some("access_token") {
        return HttpResponse::BadRequest().json(json!({"error": "invalid_request"}));
    }
    let token = form.get("token").cloned().unwrap_or_default();
    *calls.lock().unwrap().entry(token.clone()).or_default() += 1;
    match token.as_str() {
        "opaque-active" | "opaque-cached" | "opaque-a" | "opaque-b" | "opaque-c" => {
            HttpResponse::Ok().json(active(NOW + 600))
        }
        "opaque-other-iss" => {
            let mut a = active(NOW + 600);
            a["iss"] = json!("https://other-as.test");
            HttpResponse::Ok().json(a)
        }
        "opaque-short" => HttpResponse::Ok().json(active(NOW + 30)),
        "opaque-no-exp" => {
            let mut a = active(0);
            a.as_object_mut().unwrap().remove("exp");
            HttpResponse::Ok().json(a)
        }
        "opaque-inactive" => HttpResponse::Ok().json(json!({"active": false})),
        "opaque-other-aud" => {
            let mut a = active(NOW + 600);
            a["aud"] = json!("https://other-api.test");
            HttpResponse::Ok().json(a)
        }
        "opaque-refresh" => {
            let mut a = active(NOW + 600);
            a["token_type"] = json!("refresh_token");
            HttpResponse::Ok().json(a)
        }
        "opaque-bound" => {
            let mut a = active(NOW + 600);
            a["cnf"] = json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"});
            HttpResponse::Ok().json(a)
        }
        "opaque-no-active" => HttpResponse::Ok().json(json!({"sub": "alice", "exp": NOW + 600})),
        "opaque-5xx" => HttpResponse::ServiceUnavailable().finish(),
        "opaque-slow" => {
            actix_web::rt::time::sleep(Duration::from_secs(3)).await;
            HttpResponse::Ok().json(active(NOW + 600))
        }
        "opaque-malformed" => HttpResponse::Ok()
            .content_type("application/json")
            .body("{\"active\": tru"),
        "opaque-html" => HttpResponse::Ok()
            .content_type("text/html")
            .body(active(NOW + 600).to_string()),
        _ => HttpResponse::Ok().json(json!({"active": false})),
    }
}

fn start_introspector() -> Introspector {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let calls = web::Data::new(Mutex::new(HashMap::new()));
    let shared = calls.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(shared.clone())
            .route("/introspect", web::post().to(introspect))
    })
    .workers(2)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    Introspector {
        base,
        calls: calls.into_inner(),
    }
}

async fn app_with_introspection(
    h: &Harness,
    endpoint: &str,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse,
    Error = actix_web::Error,
> {
    app_with_introspection_entry(h, endpoint, "cache_max: 5m, timeout: 500ms").await
}

/// The service with an introspection entry `corp-introspect` (with `options`) and a profile.
async fn app_with_introspection_entry(
    h: &Harness,
    endpoint: &str,
    options: &str,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse,
    Error = actix_web::Error,
> + use<> {
    let config = introspection_config(h, endpoint, options);
    rebuild(config, h.clock.clone()).await
}

fn introspection_config(h: &Harness, endpoint: &str, options: &str) -> String {
    let d = h.dir.path().display();
    std::fs::write(
        h.dir.path().join("intro-secret"),
        format!("{INTROSPECTOR_SECRET}\n"),
    )
    .unwrap();
    let entry = format!(
        "{{name: corp-introspect, kind: oauth-introspection, issuer: \"https://as.test\", \
         endpoint: \"{endpoint}/introspect\", client_id: {INTROSPECTOR}, \
         client_secret_file: {d}/intro-secret, {options}}}"
    );
    let profile = (
        "opaque.yaml",
        "name: opaque\ncallers: [gateway]\nsubject: {accept: [corp-introspect, corp-idp]}\n\
         when: \"subject.department == 'sales'\"\n\
         issue: {kind: access-token, audiences: [opaque-api], lifetime: 5m, claims: user-claims}\n",
    );
    config_with_entry(h, &entry, profile)
}

fn opaque(token: &str) -> Form {
    Form::exchange(token).set("audience", "opaque-api")
}

#[actix_web::test]
async fn introspection_active_tokens_are_exchanged_and_cached_until_the_limit() {
    let h = Harness::new().await;
    let srv = start_introspector();
    let app = app_with_introspection(&h, &srv.base).await;
    let r = post(&app, &opaque("opaque-active")).await;
    let token = r.expect_token();
    let claims = verify_issued(&token, &get(&app, "/jwks").await.json, "opaque-api");
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scope"], "orders:read orders:write");
    assert_eq!(claims["origin"]["issuer"], "https://as.test");
    assert_eq!(claims["exp"], NOW + 300);
    assert_eq!(srv.calls("opaque-active"), 1);
    // The cache is per token: another token is asked about, and refused when inactive.
    let d = post(&app, &opaque("opaque-inactive"))
        .await
        .expect_error(400, "invalid_request");
    assert!(d.contains("not active"), "{d}");
    // Reused from the cache ...
    h.clock.advance(299);
    post(&app, &opaque("opaque-active")).await.expect_token();
    assert_eq!(srv.calls("opaque-active"), 1);
    // ... until cache_max (5m) has passed.
    h.clock.advance(2);
    post(&app, &opaque("opaque-active")).await.expect_token();
    assert_eq!(srv.calls("opaque-active"), 2);
}

#[actix_web::test]
async fn a_jwt_goes_to_its_issuer_even_when_introspection_is_listed_first() {
    let h = Harness::new().await;
    let srv = start_introspector();
    let app = app_with_introspection(&h, &srv.base).await;
    let jwt = h.idp.access_token(json!({"department": "sales"}));
    post(&app, &opaque(&jwt)).await.expect_token();
    assert_eq!(
        srv.calls(&jwt),
        0,
        "a recognized JWT is never sent to the introspection endpoint"
    );
    // A JWT carrying a confirmation key (RFC 9449 / RFC 8705) is not a bearer token.
    let bound = h
        .idp
        .access_token(json!({"department": "sales", "cnf": {"jkt": "abc"}}));
    let d = post(&app, &opaque(&bound))
        .await
        .expect_error(400, "invalid_request");
    assert!(d.contains("sender-constrained"), "{d}");
}

#[actix_web::test]
async fn untyped_kinds_may_not_share_an_issuer() {
    let h = Harness::new().await;
    let d = h.dir.path().display();
    let entry = format!(
        "{{name: corp-oidc-too, kind: oidc-id-token, issuer: \"https://legacy.test\", client_id: c, jwks: {{file: {d}/legacy.json}}}}"
    );
    let config =
        harness_config(h.dir.path(), "").replace("clients:\n", &format!("  - {entry}\nclients:\n"));
    let settings = Settings::from_yaml(&config).unwrap();
    let err = sts::app::AppState::build(settings, h.clock.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("entry `legacy-idp` (oauth-jwt) also accepts untyped tokens from issuer `https://legacy.test`"),
        "{err}"
    );
}

#[actix_web::test]
async fn introspection_results_are_never_reused_past_exp() {
    let h = Harness::new().await;
    let srv = start_introspector();
    let app = app_with_introspection(&h, &srv.base).await;
    let r = post(&app, &opaque("opaque-short")).await;
    assert_eq!(r.json["expires_in"], 30, "bounded by the input's exp");
    h.clock.advance(29);
    post(&app, &opaque("opaque-short")).await.expect_token();
    assert_eq!(srv.calls("opaque-short"), 1);
    // At exp the cached result is gone: the endpoint is asked again.
    h.clock.advance(1);
    let _ = post(&app, &opaque("opaque-short")).await;
    assert_eq!(srv.calls("opaque-short"), 2);
}

#[actix_web::test]
async fn introspection_refusals_and_upstream_trouble() {
    let h = Harness::new().await;
    let srv = start_introspector();
    let app = app_with_introspection(&h, &srv.base).await;
    let r = post(&app, &opaque("opaque-inactive")).await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("not active")
    );
    let r = post(&app, &opaque("opaque-no-exp")).await;
    assert!(r.expect_error(400, "invalid_request").contains("exp"));
    for (token, reason) in [
        ("opaque-other-aud", "audience"),
        ("opaque-refresh", "not a bearer access token"),
        ("opaque-bound", "sender-constrained"),
        ("opaque-other-iss", "issuer is not trusted"),
    ] {
        let d = post(&app, &opaque(token))
            .await
            .expect_error(400, "invalid_request");
        assert!(d.contains(reason), "{token}: want `{reason}` in `{d}`");
    }
    for token in [
        "opaque-no-active",
        "opaque-5xx",
        "opaque-malformed",
        "opaque-html",
        "opaque-slow",
    ] {
        let started = std::time::Instant::now();
        let r = post(&app, &opaque(token)).await;
        let d = r.expect_error(503, "temporarily_unavailable");
        assert!(
            d.contains("introspection endpoint is unavailable"),
            "{token}: {d}"
        );
        assert!(!r.body.contains(token));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{token} waited for the upstream"
        );
    }
    // Refusals are not cached: each is asked again.
    let _ = post(&app, &opaque("opaque-inactive")).await;
    assert_eq!(srv.calls("opaque-inactive"), 2);
}

#[actix_web::test]
async fn introspection_with_an_endpoint_that_is_down() {
    let h = Harness::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let endpoint = format!("http://127.0.0.1:{port}");
    let app = app_with_introspection(&h, &endpoint).await;
    let r = post(&app, &opaque("opaque-active")).await;
    r.expect_error(503, "temporarily_unavailable");
}

// ---------------------------------------------------------------------------------------------
// Live state: one snapshot, swapped atomically.

#[actix_web::test]
async fn a_swapped_snapshot_serves_the_next_request() {
    let h = Harness::new().await;
    let app = h.app().await;
    let form = Form::exchange(&h.idp.access_token(json!({}))).set("audience", "new-api");
    post(&app, &form).await.expect_error(400, "invalid_target");
    let before = h.state.snapshot();
    // The same settings with one more profile, built as a reload would build it.
    write_files(
        &h.dir.path().join("profiles"),
        &[(
            "new.yaml",
            "name: new\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\n\
             issue: {kind: access-token, audiences: [new-api], lifetime: 1m}\n",
        )],
    );
    let next = sts::app::Snapshot::build(before.settings.clone(), &h.state.kinds).unwrap();
    next.load_keys().await;
    h.state.swap(next);
    post(&app, &form).await.expect_token();
    // A request that took the old snapshot keeps it.
    assert!(before.catalog.by_name("new").is_none());
    assert!(h.state.snapshot().catalog.by_name("new").is_some());
}

#[actix_web::test]
async fn introspection_defaults_bounds_and_cache_size() {
    let h = Harness::new().await;
    let srv = start_introspector();
    // Defaults: cache_max 60s, timeout 2s.
    let app = app_with_introspection_entry(&h, &srv.base, "audience: [\"https://sts.test\"]").await;
    post(&app, &opaque("opaque-active")).await.expect_token();
    h.clock.advance(59);
    post(&app, &opaque("opaque-active")).await.expect_token();
    assert_eq!(srv.calls("opaque-active"), 1, "cached for the default 60 s");
    h.clock.advance(1);
    post(&app, &opaque("opaque-active")).await.expect_token();
    assert_eq!(srv.calls("opaque-active"), 2);
    // A cache of two entries: a third live entry starts it over.
    let app = app_with_introspection_entry(&h, &srv.base, "cache_entries: 2").await;
    for t in ["opaque-a", "opaque-b", "opaque-a"] {
        post(&app, &opaque(t)).await.expect_token();
    }
    assert_eq!((srv.calls("opaque-a"), srv.calls("opaque-b")), (1, 1));
    post(&app, &opaque("opaque-c")).await.expect_token();
    post(&app, &opaque("opaque-a")).await.expect_token();
    assert_eq!(srv.calls("opaque-a"), 2, "the full cache was started over");
    // any_audience accepts a reply naming another API.
    let app = app_with_introspection_entry(&h, &srv.base, "any_audience: true").await;
    post(&app, &opaque("opaque-other-aud")).await.expect_token();
    // Bounds on the entry's settings.
    for (options, ok) in [
        ("timeout: 10ms", true),
        ("timeout: 9ms", false),
        ("timeout: 30s", true),
        ("timeout: 31s", false),
        ("cache_max: 1h", true),
        ("cache_max: 3601s", false),
        ("cache_entries: 0", false),
        ("any_audience: true, audience: [x]", false),
    ] {
        let config = introspection_config(&h, &srv.base, options);
        let settings = Settings::from_yaml(&config).unwrap();
        let built = sts::app::AppState::build(settings, h.clock.clone()).await;
        assert_eq!(built.is_ok(), ok, "{options}: {:?}", built.err());
    }
}

#[actix_web::test]
async fn introspection_profiles_are_checked_against_the_kinds_sample() {
    let h = Harness::new().await;
    let srv = start_introspector();
    let config = introspection_config(&h, &srv.base, "");
    // `scope` is a string in an introspection reply: comparing it with a number is a load error.
    write_files(
        &h.dir.path().join("profiles"),
        &[(
            "opaque.yaml",
            "name: opaque\ncallers: [gateway]\nsubject: {accept: [corp-introspect]}\n\
             when: \"subject.scope > 1\"\n\
             issue: {kind: access-token, audiences: [opaque-api], lifetime: 5m}\n",
        )],
    );
    let settings = Settings::from_yaml(&config).unwrap();
    let err = sts::app::AppState::build(settings, h.clock.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("when fails"), "{err}");
}

#[actix_web::test]
async fn the_introspection_secret_never_shows_in_debug_output() {
    let h = Harness::new().await;
    let srv = start_introspector();
    let config = introspection_config(&h, &srv.base, "");
    let settings = Settings::from_yaml(&config).unwrap();
    let state = sts::app::AppState::build(settings, h.clock.clone())
        .await
        .unwrap();
    let shown = format!("{:?}", state.snapshot().trust);
    assert!(
        shown.contains("IntrospectionVerifier") && shown.contains("corp-introspect"),
        "{shown}"
    );
    assert!(!shown.contains(INTROSPECTOR_SECRET));
}

#[actix_web::test]
async fn id_token_profiles_are_checked_against_the_kinds_sample() {
    let h = Harness::new().await;
    // `email_verified` is a boolean in an ID token: adding a number to it is a load error.
    write_files(
        &h.dir.path().join("profiles"),
        &[(
            "by-id.yaml",
            "name: by-id\ncallers: [gateway]\nsubject: {accept: [corp-oidc]}\n\
             when: \"subject.email_verified + 1 == 2\"\n\
             issue: {kind: access-token, audiences: [id-api], lifetime: 5m}\n",
        )],
    );
    let settings = Settings::from_yaml(&harness_config(h.dir.path(), "")).unwrap();
    let err = sts::app::AppState::build(settings, h.clock.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("when fails"), "{err}");
}

#[actix_web::test]
async fn one_introspection_entry_per_list() {
    let h = Harness::new().await;
    let srv = start_introspector();
    let config = introspection_config(&h, &srv.base, "");
    let d = h.dir.path().display();
    let second = format!(
        "  - {{name: other-introspect, kind: oauth-introspection, issuer: \"https://as2.test\", \
         endpoint: \"{}/introspect\", client_id: x, client_secret_file: {d}/intro-secret}}\n",
        srv.base
    );
    let config = config.replace("clients:\n", &format!("{second}clients:\n"));
    write_files(
        &h.dir.path().join("profiles"),
        &[(
            "opaque.yaml",
            "name: opaque\ncallers: [gateway]\nsubject: {accept: [corp-introspect, other-introspect]}\n\
             issue: {kind: access-token, audiences: [opaque-api], lifetime: 5m}\n",
        )],
    );
    let settings = Settings::from_yaml(&config).unwrap();
    let err = sts::app::AppState::build(settings, h.clock.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("at most one oauth-introspection entry"),
        "{err}"
    );
}

#[actix_web::test]
async fn opaque_access_tokens_become_txn_tokens_and_inactive_ones_never_do() {
    let h = Harness::new().await;
    let srv = start_introspector();
    write_files(
        &h.dir.path().join("profiles"),
        &[(
            "opaque-txn.yaml",
            "name: opaque-txn\ncallers: [gateway]\nsubject: {accept: [corp-introspect]}\n\
             issue: {kind: txn-token, audiences: [sts.test], lifetime: 1m}\n",
        )],
    );
    let config = introspection_config(&h, &srv.base, "cache_max: 5m, timeout: 500ms");
    let app = rebuild(config, h.clock.clone()).await;
    let txn = |token: &str| {
        Form::exchange(token)
            .set(
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:txn_token",
            )
            .set("audience", "sts.test")
            .set("scope", "orders:read")
    };
    let r = post(&app, &txn("opaque-active")).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["token_type"], "N_A");
    let jwks = get(&app, "/jwks").await.json;
    let c = decode_issued(
        r.json["access_token"].as_str().unwrap(),
        &jwks,
        STS_ISSUER,
        Some("sts.test"),
        false,
    );
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["scope"], "orders:read");
    let d = post(&app, &txn("opaque-inactive"))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(d, "subject_token rejected: token is not active");
    assert_eq!(srv.calls("opaque-inactive"), 1);
}
