//! Trust-source keys over real HTTP: a `jwks_uri`, RFC 8414 discovery, an unknown `kid`
//! causing one coalesced refetch per cooldown, and a lying metadata document refused.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::support::*;

const RFC8414: &str = "/.well-known/oauth-authorization-server";
const OIDC: &str = "/.well-known/openid-configuration";

/// A tiny identity provider over HTTP: metadata and a JWKS it can change, counting fetches.
struct IdpServer {
    base: String,
    jwks: Arc<RwLock<Value>>,
    jwks_hits: Arc<AtomicUsize>,
}

fn start_idp_server(metadata_issuer: Option<String>, metadata_path: &'static str) -> IdpServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let jwks = Arc::new(RwLock::new(json!({"keys": []})));
    let hits = Arc::new(AtomicUsize::new(0));
    let (j, hc, b) = (jwks.clone(), hits.clone(), base.clone());
    let issuer = metadata_issuer.unwrap_or(base.clone());
    let server = HttpServer::new(move || {
        let (j, hc, b, issuer) = (j.clone(), hc.clone(), b.clone(), issuer.clone());
        App::new()
            .route(
                "/keys",
                web::get().to(move || {
                    let (j, hc) = (j.clone(), hc.clone());
                    async move {
                        hc.fetch_add(1, Ordering::SeqCst);
                        let body = j.read().unwrap().clone();
                        HttpResponse::Ok().json(body)
                    }
                }),
            )
            .route(
                metadata_path,
                web::get().to(move || {
                    let (b, issuer) = (b.clone(), issuer.clone());
                    async move {
                        HttpResponse::Ok()
                            .json(json!({"issuer": issuer, "jwks_uri": format!("{b}/keys")}))
                    }
                }),
            )
    })
    .workers(1)
    .listen(listener)
    .unwrap()
    .run();
    actix_web::rt::spawn(server);
    IdpServer {
        base,
        jwks,
        jwks_hits: hits,
    }
}

/// The service with one more trust entry, `remote-idp`, and a profile accepting it.
async fn app_with_remote(
    h: &Harness,
    entry: &str,
) -> impl actix_web::dev::Service<
    actix_http::Request,
    Response = actix_web::dev::ServiceResponse,
    Error = actix_web::Error,
> + use<> {
    let profile = (
        "remote.yaml",
        "name: remote\ncallers: [gateway]\nsubject: {accept: [remote-idp]}\nissue: {kind: access-token, audiences: [remote-api], lifetime: 1m}\n",
    );
    app_with_entry(h, entry, profile).await
}

/// An IdP server publishing one key `k1`, and that key.
fn idp_with_one_key(
    metadata_issuer: Option<String>,
    metadata_path: &'static str,
) -> (IdpServer, Idp) {
    let srv = start_idp_server(metadata_issuer, metadata_path);
    let k1 = Idp::new(&srv.base, "k1", "ES256");
    *srv.jwks.write().unwrap() = json!({"keys": [k1.jwk()]});
    (srv, k1)
}

#[actix_web::test]
async fn jwks_uri_with_one_coalesced_refetch_per_cooldown() {
    let h = Harness::new().await;
    let (srv, k1) = idp_with_one_key(None, RFC8414);
    let k2 = Idp::new(&srv.base, "k2", "ES256");
    let entry = format!(
        "{{name: remote-idp, kind: oauth-jwt, issuer: \"{}\", jwks: {{uri: \"{}/keys\", refetch_cooldown: 60s}}}}",
        srv.base, srv.base
    );
    let app = app_with_remote(&h, &entry).await;
    assert_eq!(
        srv.jwks_hits.load(Ordering::SeqCst),
        1,
        "loaded once at start"
    );
    post(
        &app,
        &Form::exchange(&k1.access_token(json!({}))).set("audience", "remote-api"),
    )
    .await
    .expect_token();
    assert_eq!(
        srv.jwks_hits.load(Ordering::SeqCst),
        1,
        "a known kid fetches nothing"
    );

    // The IdP rotates: eight concurrent requests with the new kid cause exactly one refetch.
    *srv.jwks.write().unwrap() = json!({"keys": [k1.jwk(), k2.jwk()]});
    let forms: Vec<Form> = (0..8)
        .map(|_| Form::exchange(&k2.access_token(json!({}))).set("audience", "remote-api"))
        .collect();
    let replies = futures_util::future::join_all(forms.iter().map(|f| post(&app, f))).await;
    for r in &replies {
        r.expect_token();
    }
    assert_eq!(
        srv.jwks_hits.load(Ordering::SeqCst),
        2,
        "one refetch, coalesced"
    );

    // A kid nobody publishes: refused, and no new fetch within the cooldown.
    let k3 = Idp::new(&srv.base, "k3", "ES256");
    for _ in 0..3 {
        let r = post(
            &app,
            &Form::exchange(&k3.access_token(json!({}))).set("audience", "remote-api"),
        )
        .await;
        assert!(
            r.expect_error(400, "invalid_request")
                .contains("signing key is unknown")
        );
    }
    assert_eq!(srv.jwks_hits.load(Ordering::SeqCst), 2, "cooldown holds");
}

#[actix_web::test]
async fn discovery_finds_the_jwks_uri() {
    let h = Harness::new().await;
    let (srv, k1) = idp_with_one_key(None, RFC8414);
    let entry = format!(
        "{{name: remote-idp, kind: oauth-jwt, issuer: \"{}\", jwks: {{discovery: true}}}}",
        srv.base
    );
    let app = app_with_remote(&h, &entry).await;
    post(
        &app,
        &Form::exchange(&k1.access_token(json!({}))).set("audience", "remote-api"),
    )
    .await
    .expect_token();
}

#[actix_web::test]
async fn discovery_falls_back_to_openid_configuration() {
    let h = Harness::new().await;
    let (srv, k1) = idp_with_one_key(None, OIDC);
    let entry = format!(
        "{{name: remote-idp, kind: oauth-jwt, issuer: \"{}\", jwks: {{discovery: true}}}}",
        srv.base
    );
    let app = app_with_remote(&h, &entry).await;
    let form = Form::exchange(&k1.access_token(json!({}))).set("audience", "remote-api");
    post(&app, &form).await.expect_token();
}

#[actix_web::test]
async fn metadata_naming_another_issuer_is_refused_and_fails_closed() {
    let h = Harness::new().await;
    let (srv, k1) = idp_with_one_key(Some("https://impostor.test".into()), RFC8414);
    let entry = format!(
        "{{name: remote-idp, kind: oauth-jwt, issuer: \"{}\", jwks: {{discovery: true}}}}",
        srv.base
    );
    let app = app_with_remote(&h, &entry).await;
    let r = post(
        &app,
        &Form::exchange(&k1.access_token(json!({}))).set("audience", "remote-api"),
    )
    .await;
    r.expect_error(503, "temporarily_unavailable");
    assert_eq!(
        srv.jwks_hits.load(Ordering::SeqCst),
        0,
        "the lying document's jwks_uri is never used"
    );
}

#[actix_web::test]
async fn jwks_with_private_or_unusable_keys() {
    let mut set = sts::jose::KeySet::default();
    assert!(set.is_empty());
    let k = Idp::new("https://x", "k", "ES256");
    let mut private = k.jwk();
    private["d"] = json!("AAAA");
    let doc = json!({"keys": [private, {"kty": "oct", "k": "c2VjcmV0"}, k.jwk()]}).to_string();
    let (parsed, skipped) =
        sts::jose::KeySet::from_jwks(doc.as_bytes(), &[sts::jose::Alg::ES256]).unwrap();
    assert_eq!(parsed.len(), 1);
    assert_eq!(skipped.len(), 2);
    assert!(skipped[0].contains("private"));
    let only_bad = json!({"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}).to_string();
    assert!(sts::jose::KeySet::from_jwks(only_bad.as_bytes(), &[sts::jose::Alg::ES256]).is_err());
    set = parsed;
    assert!(set.has_kid("k"));
}

/// Issue #7: a key removed from a client's or an issuer's published set stops working within
/// one refresh interval, without any token naming an unknown `kid`.
#[actix_web::test]
async fn removed_keys_stop_working_within_one_refresh() {
    let h = Harness::new().await;
    let (srv, k1) = idp_with_one_key(None, RFC8414);
    let client = "spiffe://example.com/rotating";
    let client_key = Idp::new(client, "c1", "ES256");
    // One server publishes both sets: the client's key and the issuer's key.
    *srv.jwks.write().unwrap() = json!({"keys": [k1.jwk(), client_key.jwk()]});
    let config = harness_config(h.dir.path(), "")
        .replace(
            "trust:\n",
            &format!(
                "trust:\n  - {{name: remote-idp, kind: oauth-jwt, issuer: \"{}\", jwks: {{uri: \"{}/keys\", refresh: 1s}}}}\n",
                srv.base, srv.base
            ),
        )
        .replace(
            "clients:\n",
            &format!("clients:\n  - {{id: \"{client}\", jwks: {{uri: \"{}/keys\", refresh: 1s}}}}\n", srv.base),
        );
    write_files(
        &h.dir.path().join("profiles"),
        &[(
            "remote.yaml",
            "name: remote\ncallers: [\"spiffe://example.com/rotating\", gateway]\nsubject: {accept: [remote-idp]}\n\
             issue: {kind: access-token, audiences: [remote-api], lifetime: 1m}\n",
        )],
    );
    let settings = sts::config::Settings::from_yaml(&config).unwrap();
    let state = sts::app::AppState::build(settings, h.clock.clone())
        .await
        .unwrap();
    state.spawn_refresh();
    let app = app_of(state).await;
    let form = || {
        let assertion = client_key.sign_with(
            json!({"alg": "ES256", "kid": "c1"}),
            &json!({"iss": client, "sub": client, "aud": STS_ISSUER, "exp": NOW + 60,
                    "iat": NOW, "jti": rand_id()}),
        );
        Form::exchange(&k1.access_token(json!({})))
            .no_auth()
            .set("audience", "remote-api")
            .set(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .set("client_assertion", &assertion)
    };
    post(&app, &form()).await.expect_token();
    // Both keys are withdrawn; the attacker holding them never sends an unknown kid.
    *srv.jwks.write().unwrap() = json!({"keys": [Idp::new(&srv.base, "k9", "ES256").jwk()]});
    let mut refused = None;
    for _ in 0..40 {
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
        let r = post(&app, &form()).await;
        if r.status != 200 {
            refused = Some(r);
            break;
        }
    }
    let r = refused.expect("a withdrawn client key still works after 4 s (refresh: 1s)");
    assert!(
        r.expect_error(401, "invalid_client")
            .contains("key is unknown")
    );
    // The issuer's withdrawn key is refused too, for a client that still authenticates.
    let by_gateway = Form::exchange(&k1.access_token(json!({}))).set("audience", "remote-api");
    let d = post(&app, &by_gateway)
        .await
        .expect_error(400, "invalid_request");
    assert!(d.contains("key is unknown"), "{d}");
}

/// Startup says it is waiting while a remote key set has no usable key, then logs "ready" once
/// the background refresh loads one — and `/readyz` follows.
#[actix_web::test]
async fn ready_is_logged_once_remote_keys_load() {
    let h = Harness::new().await;
    let srv = start_idp_server(None, RFC8414);
    let k1 = Idp::new(&srv.base, "k1", "ES256");
    let entry = format!(
        "{{name: remote-idp, kind: oauth-jwt, issuer: \"{}\", jwks: {{uri: \"{}/keys\", refresh: 1s}}}}",
        srv.base, srv.base
    );
    let profile = (
        "remote.yaml",
        "name: remote\ncallers: [gateway]\nsubject: {accept: [remote-idp]}\nissue: {kind: access-token, audiences: [remote-api], lifetime: 1m}\n",
    );
    let config = config_with_entry(&h, &entry, profile);
    let settings = sts::config::Settings::from_yaml(&config).unwrap();
    let logs = crate::support::leaks::LogCapture::default();
    let _guard = tracing::subscriber::set_default(logs.subscriber());
    let state = sts::app::AppState::build(settings, h.clock.clone())
        .await
        .unwrap();
    assert!(
        logs.text().contains(
            "not ready yet (/readyz answers 503): waiting for keys of: trust entry `remote-idp`"
        ),
        "{}",
        logs.text()
    );
    let app = app_of(state.clone()).await;
    assert_eq!(get(&app, "/readyz").await.status, 503);
    *srv.jwks.write().unwrap() = json!({"keys": [k1.jwk()]});
    state.spawn_refresh();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !logs.text().contains("ready: every key source has loaded") {
        assert!(std::time::Instant::now() < deadline, "{}", logs.text());
        actix_web::rt::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(get(&app, "/readyz").await.status, 200);
    let text_lines = logs
        .text()
        .lines()
        .filter(|l| !l.starts_with('{') && l.contains("ready: every key source has loaded"))
        .count();
    assert_eq!(
        text_lines, 1,
        "said once (the capture also holds JSON lines)"
    );
}
