//! Test fixtures: identity providers that sign with raw aws-lc-rs (not the service's code), a
//! harness that builds the service exactly as `sts serve` does, and an independent verifier
//! (jsonwebtoken) for every token the service issues.

#![allow(dead_code)]

pub mod leaks;
pub mod pki;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sts::app::AppState;
use sts::clock::ManualClock;
use sts::config::Settings;

pub const NOW: i64 = 1_800_000_000;
pub const STS_ISSUER: &str = "https://sts.test";
pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
/// Our client id at the test OpenID provider (`aud` of its ID tokens).
pub const OIDC_CLIENT: &str = "sts-client";
pub const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
pub const GATEWAY_SECRET: &str = "gateway-secret-0123456789";

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

enum TestKey {
    Es256(EcdsaKeyPair),
    Es512(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

/// A test signer with its own key: an identity provider, or a client's assertion key.
pub struct Idp {
    pub issuer: String,
    pub kid: String,
    key: TestKey,
}

impl Idp {
    pub fn new(issuer: &str, kid: &str, alg: &str) -> Self {
        let rng = SystemRandom::new();
        let key = match alg {
            "ES256" => TestKey::Es256(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                        .unwrap()
                        .as_ref(),
                )
                .unwrap(),
            ),
            "ES512" => TestKey::Es512(
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P521_SHA512_FIXED_SIGNING, &rng)
                        .unwrap()
                        .as_ref(),
                )
                .unwrap(),
            ),
            "EdDSA" => TestKey::EdDsa(
                Ed25519KeyPair::from_pkcs8(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref())
                    .unwrap(),
            ),
            "RS256" => {
                let k = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
                TestKey::Rs256(RsaKeyPair::from_pkcs8(k.as_der().unwrap().as_ref()).unwrap())
            }
            other => panic!("no test key for {other}"),
        };
        Self {
            issuer: issuer.into(),
            kid: kid.into(),
            key,
        }
    }

    pub fn alg(&self) -> &'static str {
        match self.key {
            TestKey::Es256(_) => "ES256",
            TestKey::Es512(_) => "ES512",
            TestKey::EdDsa(_) => "EdDSA",
            TestKey::Rs256(_) => "RS256",
        }
    }

    pub fn jwk(&self) -> Value {
        let mut jwk = match &self.key {
            TestKey::Es256(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&p[1..33]), "y": b64(&p[33..65])})
            }
            TestKey::Es512(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-521", "x": b64(&p[1..67]), "y": b64(&p[67..133])})
            }
            TestKey::EdDsa(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
            TestKey::Rs256(k) => {
                let p = k.public_key();
                json!({"kty": "RSA", "n": b64(p.modulus().big_endian_without_leading_zero()),
                       "e": b64(p.exponent().big_endian_without_leading_zero())})
            }
        };
        jwk["kid"] = json!(self.kid);
        jwk["use"] = json!("sig");
        jwk
    }

    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk()]})
    }

    /// The public key bytes (for the HS256-with-public-key forgery).
    pub fn public_key_bytes(&self) -> Vec<u8> {
        match &self.key {
            TestKey::Es256(k) | TestKey::Es512(k) => k.public_key().as_ref().to_vec(),
            TestKey::EdDsa(k) => k.public_key().as_ref().to_vec(),
            TestKey::Rs256(k) => k.public_key().as_ref().to_vec(),
        }
    }

    /// Signs raw header and payload JSON text (so tests can send duplicate keys).
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        let input = format!(
            "{}.{}",
            b64(header_json.as_bytes()),
            b64(payload_json.as_bytes())
        );
        let rng = SystemRandom::new();
        let sig = match &self.key {
            TestKey::Es256(k) | TestKey::Es512(k) => {
                k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec()
            }
            TestKey::EdDsa(k) => k.sign(input.as_bytes()).as_ref().to_vec(),
            TestKey::Rs256(k) => {
                let mut s = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut s)
                    .unwrap();
                s
            }
        };
        format!("{input}.{}", b64(&sig))
    }

    /// A raw signature over `message` (an HTTP message signature base, RFC 9421).
    pub fn sign_bytes(&self, message: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match &self.key {
            TestKey::Es256(k) | TestKey::Es512(k) => {
                k.sign(&rng, message).unwrap().as_ref().to_vec()
            }
            TestKey::EdDsa(k) => k.sign(message).as_ref().to_vec(),
            TestKey::Rs256(k) => {
                let mut s = vec![0; k.public_modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut s)
                    .unwrap();
                s
            }
        }
    }

    pub fn sign_with(&self, header: Value, claims: &Value) -> String {
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    /// An RFC 9068 access token with `claims` over sensible defaults (`null` removes a claim).
    pub fn access_token(&self, overrides: Value) -> String {
        let header = json!({"alg": self.alg(), "typ": "at+jwt", "kid": self.kid});
        self.sign_with(header, &self.claims(overrides))
    }

    /// An OpenID Connect ID token for `OIDC_CLIENT` (no `typ`), with `overrides`.
    pub fn id_token(&self, overrides: Value) -> String {
        let header = json!({"alg": self.alg(), "kid": self.kid});
        self.sign_with(header, &self.id_claims(overrides))
    }

    pub fn id_claims(&self, overrides: Value) -> Value {
        let mut c = json!({
            "iss": self.issuer, "sub": "alice", "aud": OIDC_CLIENT, "iat": NOW - 10,
            "exp": NOW + 600, "email": "alice@example.com",
        });
        merge(&mut c, overrides);
        c
    }

    pub fn claims(&self, overrides: Value) -> Value {
        let mut c = json!({
            "iss": self.issuer, "sub": "alice", "aud": STS_ISSUER, "client_id": "web-app",
            "scope": "orders:read orders:write billing:pay", "iat": NOW - 10, "exp": NOW + 600,
            "jti": format!("jti-{}", rand_id()),
        });
        merge(&mut c, overrides);
        c
    }
}

pub fn merge(base: &mut Value, overrides: Value) {
    if let Value::Object(o) = overrides {
        for (k, v) in o {
            if v.is_null() {
                base.as_object_mut().unwrap().remove(&k);
            } else {
                base[k] = v;
            }
        }
    }
}

pub fn rand_id() -> String {
    let mut b = [0u8; 9];
    aws_lc_rs::rand::fill(&mut b).unwrap();
    b64(&b)
}

/// The in-process service with its fixtures.
pub struct Harness {
    pub dir: tempfile::TempDir,
    pub idp: Idp,
    pub legacy: Idp,
    pub mesh: Idp,
    pub workload: Idp,
    pub oidc: Idp,
    pub clock: Arc<ManualClock>,
    pub state: Arc<AppState>,
}

pub const TEST_PROFILES: &[(&str, &str)] = &[
    (
        "user-access.yaml",
        r#"
name: user-access
callers: [gateway, "spiffe://example.com/*"]
subject: {accept: [corp-idp, legacy-idp]}
issue:
  kind: access-token
  audiences: [orders-api, "https://orders.example.com/"]
  lifetime: 5m
  claims: user-claims
"#,
    ),
    (
        "delegated.yaml",
        r#"
name: delegated
callers: [gateway]
subject: {accept: [corp-idp]}
actor: {mode: optional, accept: [mesh-idp]}
issue:
  kind: access-token
  audiences: [billing-api]
  lifetime: 10m
  scope: "subject.scope.split(' ').filter(s, s.startsWith('billing:')).join(' ')"
"#,
    ),
    (
        "id-access.yaml",
        r#"
name: id-access
callers: [gateway]
subject: {accept: [corp-oidc]}
issue:
  kind: access-token
  audiences: [orders-api]
  lifetime: 5m
  claims: user-claims
"#,
    ),
    (
        "admin.yaml",
        r#"
name: admin
callers: [gateway]
subject: {accept: [corp-idp]}
actor: {mode: required, accept: [mesh-idp]}
when: "'admin' in subject.scope.split(' ')"
issue:
  kind: access-token
  audiences: [admin-api]
  lifetime: 1m
"#,
    ),
];

pub const TEST_MAPPINGS: &[(&str, &str)] = &[(
    "user-claims.yaml",
    r#"
name: user-claims
claims:
  email: "has(subject.email) ? subject.email : null"
  origin:
    issuer: subject.iss
    caller: caller.id
"#,
)];

impl Harness {
    pub async fn new() -> Self {
        Self::with(TEST_PROFILES, TEST_MAPPINGS, "").await
    }

    /// Builds the service with the given profile and mapping files and extra config YAML.
    pub async fn with(
        profiles: &[(&str, &str)],
        mappings: &[(&str, &str)],
        extra_config: &str,
    ) -> Self {
        sts::install_crypto_providers();
        let dir = tempfile::tempdir().unwrap();
        let idp = Idp::new("https://idp.test", "idp-1", "ES256");
        let legacy = Idp::new("https://legacy.test", "legacy-1", "RS256");
        let mesh = Idp::new("https://mesh.test", "mesh-1", "EdDSA");
        let workload = Idp::new("spiffe://example.com/workload-a", "wl-1", "ES256");
        let oidc = Idp::new("https://oidc.test", "oidc-1", "ES256");
        write_files(&dir.path().join("profiles"), profiles);
        write_files(&dir.path().join("mappings"), mappings);
        for (name, i) in [
            ("idp", &idp),
            ("legacy", &legacy),
            ("mesh", &mesh),
            ("workload", &workload),
            ("oidc", &oidc),
        ] {
            std::fs::write(
                dir.path().join(format!("{name}.json")),
                i.jwks().to_string(),
            )
            .unwrap();
        }
        let config = harness_config(dir.path(), extra_config);
        let settings = Settings::from_yaml(&config).unwrap();
        let clock = Arc::new(ManualClock::new(NOW));
        let state = AppState::build(settings, clock.clone()).await.unwrap();
        Self {
            dir,
            idp,
            legacy,
            mesh,
            workload,
            oidc,
            clock,
            state,
        }
    }

    pub async fn app(
        &self,
    ) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>
    {
        app_of(self.state.clone()).await
    }
}

/// The harness's configuration with one more trust entry (`entry`, a YAML flow mapping) first
/// in `trust`, and `profile` (file name, text) written beside the test profiles.
pub fn config_with_entry(h: &Harness, entry: &str, profile: (&str, &str)) -> String {
    write_files(&h.dir.path().join("profiles"), &[profile]);
    harness_config(h.dir.path(), "").replace("trust:\n", &format!("trust:\n  - {entry}\n"))
}

/// The service built from [`config_with_entry`].
pub async fn app_with_entry(
    h: &Harness,
    entry: &str,
    profile: (&str, &str),
) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error> + use<>
{
    rebuild(config_with_entry(h, entry, profile), h.clock.clone()).await
}

/// Builds another service from `config` (YAML) on `clock`, e.g. a harness's with changes.
pub async fn rebuild(
    config: String,
    clock: Arc<ManualClock>,
) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error> {
    let settings = Settings::from_yaml(&config).unwrap();
    app_of(AppState::build(settings, clock).await.unwrap()).await
}

/// The in-process service for `state`, configured exactly as `sts serve` configures it.
pub async fn app_of(
    state: Arc<AppState>,
) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error> {
    test::init_service(actix_web::App::new().configure(sts::http::configure(state))).await
}

pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

pub fn harness_config(dir: &Path, extra: &str) -> String {
    let d = dir.display();
    let gateway_hash = sts::auth::SecretHash::create(GATEWAY_SECRET, 10_000).unwrap();
    let lonely_hash = sts::auth::SecretHash::create("lonely-secret-0123456789", 10_000).unwrap();
    format!(
        r#"
issuer: {STS_ISSUER}
listen: 127.0.0.1:0
keys: {{dir: {d}/keys, alg: ES256}}
profiles: {d}/profiles
mappings: {d}/mappings
trust:
  - {{name: corp-idp, kind: oauth-jwt, issuer: "https://idp.test", jwks: {{file: {d}/idp.json}}}}
  - {{name: legacy-idp, kind: oauth-jwt, issuer: "https://legacy.test", allow_untyped: true, algorithms: [RS256], jwks: {{file: {d}/legacy.json}}}}
  - {{name: mesh-idp, kind: oauth-jwt, issuer: "https://mesh.test", jwks: {{file: {d}/mesh.json}}}}
  - {{name: corp-oidc, kind: oidc-id-token, issuer: "https://oidc.test", client_id: {OIDC_CLIENT}, jwks: {{file: {d}/oidc.json}}}}
clients:
  - {{id: gateway, secret_hash: "{gateway_hash}"}}
  - {{id: lonely, secret_hash: "{lonely_hash}"}}
  - {{id: "spiffe://example.com/workload-a", jwks: {{file: {d}/workload.json}}}}
{extra}
"#
    )
}

/// A token request under construction.
#[derive(Clone, Default)]
pub struct Form {
    pub pairs: Vec<(String, String)>,
    pub basic: Option<(String, String)>,
    pub content_type: Option<String>,
    /// Extra request headers.
    pub headers: Vec<(String, String)>,
    /// The TCP peer the request comes from (none by default).
    pub peer: Option<std::net::SocketAddr>,
}

impl Form {
    /// A token-exchange request from `gateway` with `subject` as an access token.
    pub fn exchange(subject: &str) -> Self {
        Form::default()
            .basic("gateway", GATEWAY_SECRET)
            .set("grant_type", TOKEN_EXCHANGE)
            .set("subject_token", subject)
            .set("subject_token_type", ACCESS_TOKEN)
    }

    pub fn set(mut self, k: &str, v: &str) -> Self {
        self.pairs.push((k.into(), v.into()));
        self
    }

    pub fn without(mut self, k: &str) -> Self {
        self.pairs.retain(|(n, _)| n != k);
        self
    }

    pub fn basic(mut self, id: &str, secret: &str) -> Self {
        self.basic = Some((id.into(), secret.into()));
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Sends the request from `ip` (port 40000).
    pub fn peer(mut self, ip: &str) -> Self {
        self.peer = Some(std::net::SocketAddr::new(ip.parse().unwrap(), 40000));
        self
    }

    pub fn no_auth(mut self) -> Self {
        self.basic = None;
        self
    }

    /// Every credential this request carries, and the token it was issued if any.
    pub fn credentials(&self, reply: &Reply) -> Vec<String> {
        let mut out: Vec<String> = self
            .pairs
            .iter()
            .filter(|(k, _)| {
                k.ends_with("_token") || k == "client_assertion" || k == "client_secret"
            })
            .map(|(_, v)| v.clone())
            .collect();
        if let Some((id, secret)) = &self.basic {
            out.push(secret.clone());
            // The header as sent, in case a log ever prints it.
            out.push(STANDARD.encode(format!("{id}:{secret}")));
        }
        // Percent-encoded forms, as a logged body or query would show them.
        let encoded: Vec<String> = out
            .iter()
            .map(|v| form_urlencoded::byte_serialize(v.as_bytes()).collect::<String>())
            .filter(|e| !out.contains(e))
            .collect();
        out.extend(encoded);
        out.extend(self.headers.iter().map(|(_, v)| v.clone()));
        if let Some(t) = reply.json.get("access_token").and_then(Value::as_str) {
            out.push(t.to_owned());
        }
        out
    }

    pub fn body(&self) -> String {
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(&self.pairs)
            .finish()
    }
}

/// A response, with everything tests look at.
pub struct Reply {
    pub status: u16,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: String,
    pub json: Value,
    /// What the service logged while handling the request (`post` only), text and JSON.
    pub logs: String,
}

pub async fn post<S>(app: &S, form: &Form) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    post_raw(app, form, form.body()).await
}

pub async fn post_raw<S>(app: &S, form: &Form, body: String) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let mut req = test::TestRequest::post().uri("/token").insert_header((
        "content-type",
        form.content_type
            .clone()
            .unwrap_or("application/x-www-form-urlencoded".into()),
    ));
    for (name, value) in &form.headers {
        req = req.append_header((name.as_str(), value.as_str()));
    }
    if let Some(peer) = form.peer {
        req = req.peer_addr(peer);
    }
    if let Some((id, secret)) = &form.basic {
        req = req.insert_header((
            "authorization",
            format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))),
        ));
    }
    // The request runs with its own log subscriber; what it logged is searched afterwards.
    use tracing::instrument::WithSubscriber;
    let logs = leaks::LogCapture::default();
    let response = test::call_service(app, req.set_payload(body).to_request())
        .with_subscriber(logs.subscriber())
        .await;
    let mut reply = Reply::read(response).await;
    let credentials = form.credentials(&reply);
    logs.assert_free_of(&credentials);
    // Nor does an answer ever echo what the request carried (the issued token is the last).
    for sent in
        &credentials[..credentials.len() - usize::from(reply.json.get("access_token").is_some())]
    {
        assert!(
            sent.len() < 10 || !reply.body.contains(sent.as_str()),
            "the response echoes a credential"
        );
    }
    reply.logs = logs.text();
    // Every token any test gets issued is checked by a verifier that is not the minting code.
    if let Some(token) = reply.json.get("access_token").and_then(Value::as_str) {
        let jwks = published_keys_for(app, token).await;
        verify_signature_type_and_issuer(token, &jwks);
    }
    reply
}

/// The keys an issued token must verify with: JWT-SVIDs (`typ: JWT`) with our SPIFFE bundle
/// (`/spiffe/bundle`, its `use` removed for jsonwebtoken), everything else with `/jwks`.
pub async fn published_keys_for<S>(app: &S, token: &str) -> Value
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let typ = jsonwebtoken::decode_header(token).ok().and_then(|h| h.typ);
    if typ.as_deref() != Some("JWT") {
        return get(app, "/jwks").await.json;
    }
    let mut bundle = get(app, "/spiffe/bundle").await.json;
    for key in bundle["keys"].as_array_mut().unwrap() {
        assert_eq!(key["use"], "jwt-svid");
        key.as_object_mut().unwrap().remove("use");
    }
    json!({ "keys": bundle["keys"] })
}

/// jsonwebtoken checks an issued token's signature against the published JWKS, its `typ` and
/// its `iss` (audience and time are checked by `verify_issued` where a test cares).
fn verify_signature_type_and_issuer(token: &str, jwks: &Value) {
    decode_issued(token, jwks, STS_ISSUER, None, false);
}
pub async fn get<S>(app: &S, uri: &str) -> Reply
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    Reply::read(test::call_service(app, test::TestRequest::get().uri(uri).to_request()).await).await
}

impl Reply {
    async fn read(resp: ServiceResponse) -> Reply {
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let bytes = test::read_body(resp).await;
        let body = String::from_utf8_lossy(&bytes).into_owned();
        let json = serde_json::from_str(&body).unwrap_or(Value::Null);
        Reply {
            status,
            headers,
            body,
            json,
            logs: String::new(),
        }
    }

    /// Asserts an RFC 6749 §5.2 error response with `code`, and returns its description.
    pub fn expect_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status, status, "status for {code}: {}", self.body);
        assert_eq!(self.json["error"], code, "body: {}", self.body);
        assert_eq!(self.headers.get("cache-control").unwrap(), "no-store");
        let d = self.json["error_description"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        assert!(d.bytes().all(|b| b == 0x20
            || b == 0x21
            || (0x23..=0x5b).contains(&b)
            || (0x5d..=0x7e).contains(&b)));
        d
    }

    /// Asserts a successful RFC 8693 §2.2.1 response and returns the issued token.
    pub fn expect_token(&self) -> String {
        assert_eq!(self.status, 200, "body: {}", self.body);
        assert_eq!(self.headers.get("cache-control").unwrap(), "no-store");
        assert_eq!(self.headers.get("pragma").unwrap(), "no-cache");
        // RFC 6749 §5.1: application/json (exactly, as the response is built by hand).
        assert_eq!(
            self.headers.get("content-type").unwrap(),
            "application/json"
        );
        assert_eq!(self.json["issued_token_type"], ACCESS_TOKEN);
        assert_eq!(self.json["token_type"], "Bearer");
        assert!(self.json["expires_in"].as_i64().unwrap() > 0);
        self.json["access_token"].as_str().unwrap().to_owned()
    }
}

/// Verifies an issued token with jsonwebtoken (not the minting code) against the published
/// JWKS, and returns its claims.
pub fn verify_issued(token: &str, jwks: &Value, audience: &str) -> Value {
    // The harness's fixed clock is in the future of the real one: `exp` is not checked here.
    let c = decode_issued(token, jwks, STS_ISSUER, Some(audience), false);
    assert!(c["jti"].as_str().is_some_and(|j| j.len() >= 16));
    assert!(c["client_id"].is_string());
    c
}

/// The one independent verifier (jsonwebtoken, not the minting code): `typ` is `at+jwt`, the
/// `kid` is published in `jwks`, the signature verifies, `iss` is `issuer`, and `aud` contains
/// `audience` when one is given. Returns the claims.
pub fn decode_issued(
    token: &str,
    jwks: &Value,
    issuer: &str,
    audience: Option<&str>,
    check_exp: bool,
) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    // The types we issue: RFC 9068 access tokens, WIMSE WITs, Txn-Tokens, JWT-SVIDs (`JWT`).
    assert!(
        matches!(
            header.typ.as_deref(),
            Some("at+jwt" | "wit+jwt" | "txntoken+jwt" | "JWT")
        ),
        "{:?}",
        header.typ
    );
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let jwk = set
        .find(header.kid.as_deref().unwrap())
        .expect("issued kid is published");
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[issuer]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
    match audience {
        Some(a) => v.set_audience(&[a]),
        None => v.validate_aud = false,
    }
    v.validate_exp = check_exp;
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .expect("issued token verifies with jsonwebtoken")
    .claims
}

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}
