//! Transaction Tokens (draft-ietf-oauth-transaction-tokens, our digest §4): issuance at
//! ingress from access tokens, ID tokens and unsigned subjects; replacement; the gateway
//! adapter in process; the verified-subject cache. Every issued Txn-Token is checked with
//! jsonwebtoken against the published JWKS, not with the minting code.

use std::sync::Arc;

use actix_web::dev::{Service, ServiceResponse};
use actix_web::test;
use serde_json::{Value, json};
use sts::app::AppState;
use sts::config::Settings;

use crate::support::*;

const TXN: &str = "urn:ietf:params:oauth:token-type:txn_token";
const UNSIGNED: &str = "urn:ietf:params:oauth:token-type:unsigned_json";
const REFRESH: &str = "urn:ietf:params:oauth:token-type:refresh_token";
const DOMAIN: &str = "example.com";

const PROFILES: &[(&str, &str)] = &[
    (
        "ingress.yaml",
        r#"
name: ingress
callers: [gateway, lonely]
subject: {accept: [corp-idp]}
issue:
  kind: txn-token
  audiences: [example.com]
  lifetime: 5m
  claims: txn-claims
"#,
    ),
    (
        "ingress-oidc.yaml",
        r#"
name: ingress-oidc
callers: [gateway, lonely]
subject: {accept: [corp-oidc, edge-json]}
issue:
  kind: txn-token
  audiences: [example.com]
  lifetime: 5m
  claims: txn-claims
  options: {subject_scope: "openid orders:read reports"}
"#,
    ),
    (
        "replace.yaml",
        r#"
name: replace
callers: [gateway, lonely]
subject: {accept: [our-txn]}
issue:
  kind: txn-token
  audiences: [example.com]
  lifetime: 5m
  may_outlive_subject: true
  claims: replace-claims
  options: {max_extension: 2m, max_replacements: 2}
"#,
    ),
];

const MAPPINGS: &[(&str, &str)] = &[
    (
        "txn-claims.yaml",
        r#"
name: txn-claims
claims:
  sub: subject.sub
  tctx: request.request_details
  rctx: request.request_context
"#,
    ),
    (
        "replace-claims.yaml",
        r#"
name: replace-claims
claims:
  sub: "request.request_details != null && 'sub' in request.request_details ? request.request_details.sub : subject.sub"
  tctx: request.request_details
"#,
    ),
];

/// The harness's service with the Txn-Token profiles, our trust domain, a `txn-token` entry
/// for replacements and an `unsigned-json` entry for `gateway` only.
struct Txn {
    h: Harness,
    state: Arc<AppState>,
}

impl Txn {
    async fn new() -> Self {
        Self::with_extra("").await
    }

    async fn with_extra(extra: &str) -> Self {
        let h = Harness::with(&[], TEST_MAPPINGS, "").await;
        write_files(&h.dir.path().join("profiles"), PROFILES);
        write_files(&h.dir.path().join("mappings"), MAPPINGS);
        let config = harness_config(h.dir.path(), &format!("trust_domain: {DOMAIN}\ngateway: {{path: /gateway/txn-token}}\n{extra}"))
            .replace(
                "trust:\n",
                "trust:\n  - {name: our-txn, kind: txn-token}\n  - {name: edge-json, kind: unsigned-json, callers: [gateway]}\n",
            );
        let settings = Settings::from_yaml(&config).unwrap();
        let state = AppState::build(settings, h.clock.clone()).await.unwrap();
        Self { h, state }
    }

    async fn app(
        &self,
    ) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>
    {
        app_of(self.state.clone()).await
    }

    fn jwks(&self) -> Value {
        self.state.snapshot().signer.jwks().clone()
    }
}

/// Why the service refuses to start with `profile` (and `mapping`, if any) beside the harness's
/// configuration, our trust domain set, `trust` entries added first and `kinds` registered.
async fn start_error(
    profile: &str,
    mapping: Option<(&str, &str)>,
    trust: &str,
    kinds: sts::token::KindRegistry,
) -> String {
    let h = Harness::with(&[], TEST_MAPPINGS, "").await;
    write_files(&h.dir.path().join("profiles"), &[("p.yaml", profile)]);
    if let Some(m) = mapping {
        write_files(&h.dir.path().join("mappings"), &[m]);
    }
    let config = harness_config(h.dir.path(), "trust_domain: example.com")
        .replace("trust:\n", &format!("trust:\n{trust}"));
    match AppState::build_with(
        Settings::from_yaml(&config).unwrap(),
        h.clock.clone(),
        kinds,
    )
    .await
    {
        Ok(_) => panic!("the service started"),
        Err(e) => e.to_string(),
    }
}

/// A Txn-Token request from `gateway` for `subject` (an access token) with `scope`.
fn txn_request(subject: &str, scope: &str) -> Form {
    Form::exchange(subject)
        .set("requested_token_type", TXN)
        .set("audience", DOMAIN)
        .set("scope", scope)
}

/// Asserts a Txn-Token response (draft §4.5) and returns the token's verified claims.
fn expect_txn(r: &Reply, jwks: &Value) -> (String, Value) {
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.headers.get("cache-control").unwrap(), "no-store");
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(r.json["token_type"], "N_A");
    assert_eq!(r.json["issued_token_type"], TXN);
    assert!(r.json.get("refresh_token").is_none());
    let token = r.json["access_token"].as_str().unwrap().to_owned();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("txntoken+jwt"));
    assert!(header.kid.is_some());
    let claims = decode_issued(&token, jwks, STS_ISSUER, Some(DOMAIN), false);
    (token, claims)
}

#[actix_web::test]
async fn an_access_token_becomes_a_txn_token_with_the_e6_request() {
    let t = Txn::new().await;
    let app = t.app().await;
    let subject =
        t.h.idp
            .access_token(json!({"sub": "d084sdrt234fsaw34tr23t"}));
    // The E6.5 request's JSON parameters, exactly as the draft's example encodes them.
    let body = format!(
        "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange\
         &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Atxn_token\
         &audience=example.com&scope=orders%3Aread&subject_token={subject}\
         &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
         &request_context=%7B%0A%20%20%20%20%20%20%22req_ip%22%3A%20%2269.151.72.123%22%2C%20%0A%20%20%20%20%20%20%22authn%22%3A%20%22face%22%0A%7D\
         &request_details=%7B%0A%20%20%20%20%20%20%22action%22%3A%20%22BUY%22%2C%0A%20%20%20%20%20%20%22ticker%22%3A%20%22MSFT%22%2C%0A%20%20%20%20%20%20%22quantity%22%3A%20%22100%22%0A%7D"
    );
    let form = Form::default().basic("gateway", GATEWAY_SECRET);
    let r = post_raw(&app, &form, body).await;
    let (token, c) = expect_txn(&r, &t.jwks());
    assert_eq!(r.json["scope"], "orders:read");
    assert_eq!(c["aud"], DOMAIN);
    assert_eq!(c["sub"], "d084sdrt234fsaw34tr23t");
    assert_eq!(c["scope"], "orders:read");
    assert_eq!(
        c["req_wl"], "gateway",
        "the authenticated caller, never input"
    );
    assert_eq!(
        c["rctx"],
        json!({"req_ip": "69.151.72.123", "authn": "face"})
    );
    assert_eq!(
        c["tctx"],
        json!({"action": "BUY", "ticker": "MSFT", "quantity": "100"})
    );
    let txn = c["txn"].as_str().unwrap();
    assert_eq!(txn.len(), 36, "a UUID: {txn}");
    assert_eq!(&txn[14..15], "4");
    assert_eq!(c["iat"], NOW);
    assert!(c["exp"].as_i64().unwrap() <= NOW + 300);
    assert_eq!(r.json["expires_in"], c["exp"].as_i64().unwrap() - NOW);
    assert!(
        !token.contains(&subject) && !c.to_string().contains(&subject),
        "the access token is never copied in"
    );
    // A new transaction each time; the log line names it by `txn` (a Txn-Token has no `jti`).
    let again = post(&app, &txn_request(&subject, "orders:read")).await;
    let (_, c2) = expect_txn(&again, &t.jwks());
    assert_ne!(c2["txn"], c["txn"]);
    assert!(c2.get("jti").is_none());
    let logged = format!(
        "issued_claim=\"txn\" issued_id=\"{}\"",
        c2["txn"].as_str().unwrap()
    );
    assert!(again.logs.contains(&logged), "{}", again.logs);
    assert!(c2.get("tctx").is_none() && c2.get("rctx").is_none());
}

#[actix_web::test]
async fn the_txn_token_lives_minutes_and_never_past_the_subject() {
    let t = Txn::new().await;
    let app = t.app().await;
    let short = t.h.idp.access_token(json!({"exp": NOW + 40}));
    let (_, c) = expect_txn(
        &post(&app, &txn_request(&short, "orders:read")).await,
        &t.jwks(),
    );
    assert_eq!(c["exp"], NOW + 40);
    // A profile cannot ask for more than 10 minutes.
    let err = start_error(
        "name: long\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: txn-token, audiences: [example.com], lifetime: 1h}\n",
        None,
        "",
        sts::token::KindRegistry::builtin(),
    )
    .await;
    assert!(
        err.contains("issue.lifetime must be between 1s and 10m for kind txn-token"),
        "{err}"
    );
}

#[actix_web::test]
async fn scope_is_required_and_only_narrows() {
    let t = Txn::new().await;
    let app = t.app().await;
    let subject =
        t.h.idp
            .access_token(json!({"scope": "orders:read orders:write"}));
    let d = post(&app, &txn_request(&subject, "orders:read").without("scope"))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(d, "scope is required when requesting a Txn-Token");
    for wider in [
        "orders:read admin",
        "billing:pay",
        "orders:read orders:write admin",
    ] {
        let d = post(&app, &txn_request(&subject, wider))
            .await
            .expect_error(400, "invalid_scope");
        assert_eq!(
            d, "requested scope exceeds the subject_token's scope",
            "{wider}"
        );
    }
    // A subject without any scope: unknown is never unconstrained (draft §4.4 step 5).
    let unscoped = t.h.idp.access_token(json!({"scope": null}));
    let d = post(&app, &txn_request(&unscoped, "orders:read"))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(
        d,
        "the subject_token's scope cannot be determined, so no Txn-Token scope can be granted"
    );
    let blank = t.h.idp.access_token(json!({"scope": " "}));
    post(&app, &txn_request(&blank, "orders:read"))
        .await
        .expect_error(400, "invalid_request");
}

#[actix_web::test]
async fn id_tokens_take_the_profiles_subject_scope() {
    let t = Txn::new().await;
    let app = t.app().await;
    let id = t.h.oidc.id_token(json!({}));
    let form = |scope: &str| {
        txn_request(&id, scope)
            .without("subject_token_type")
            .set("subject_token_type", ID_TOKEN)
    };
    let (_, c) = expect_txn(&post(&app, &form("orders:read")).await, &t.jwks());
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["scope"], "orders:read");
    post(&app, &form("orders:write"))
        .await
        .expect_error(400, "invalid_scope");
}

#[actix_web::test]
async fn refresh_tokens_are_refused_at_request_and_at_load() {
    let t = Txn::new().await;
    let app = t.app().await;
    let subject = t.h.idp.access_token(json!({}));
    let r = post(
        &app,
        &txn_request(&subject, "orders:read")
            .without("subject_token_type")
            .set("subject_token_type", REFRESH),
    )
    .await;
    r.expect_error(400, "invalid_request");
    // A profile cannot even accept an entry whose kind takes refresh tokens.
    let err = start_error(
        "name: r\ncallers: [gateway]\nsubject: {accept: [refreshing]}\nissue: {kind: txn-token, audiences: [example.com], lifetime: 1m}\n",
        None,
        "  - {name: refreshing, kind: refresh}\n",
        sts::token::KindRegistry::builtin().with_input(Arc::new(RefreshKind)),
    )
    .await;
    assert!(
        err.contains("issue.kind: Txn-Tokens are never issued for refresh tokens"),
        "{err}"
    );
}

/// A kind that takes refresh tokens (some deployments have one); it never verifies anything.
struct RefreshKind;

#[derive(Debug)]
struct RefreshVerifier;

impl sts::token::InputKind for RefreshKind {
    fn name(&self) -> &'static str {
        "refresh"
    }
    fn token_types(&self) -> &'static [&'static str] {
        &[REFRESH]
    }
    fn sample_claims(&self) -> sts::jose::Claims {
        json!({"sub": "s", "scope": "read", "exp": NOW})
            .as_object()
            .unwrap()
            .clone()
    }
    fn configure(
        &self,
        _entry: &sts::config::TrustEntry,
        _env: &sts::token::KindEnv<'_>,
    ) -> Result<Arc<dyn sts::token::Verifier>, sts::config::ConfigError> {
        Ok(Arc::new(RefreshVerifier))
    }
}

#[async_trait::async_trait]
impl sts::token::Verifier for RefreshVerifier {
    fn recognizes(&self, _p: &sts::token::Presented<'_>) -> bool {
        true
    }
    async fn verify(
        &self,
        _p: sts::token::Presented<'_>,
        _ctx: &sts::token::VerifyContext<'_>,
    ) -> Result<sts::token::Verified, sts::token::Rejection> {
        Err(sts::token::Rejection::Inactive)
    }
    fn issuer(&self) -> &str {
        "urn:refresh"
    }
}

#[actix_web::test]
async fn the_audience_must_be_our_trust_domain() {
    let t = Txn::new().await;
    let app = t.app().await;
    let subject = t.h.idp.access_token(json!({}));
    let r = post(
        &app,
        &txn_request(&subject, "orders:read")
            .without("audience")
            .set("audience", "other.example"),
    )
    .await;
    r.expect_error(400, "invalid_target");
    // A profile for another audience does not load.
    let err = start_error(
        "name: a\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: txn-token, audiences: [orders-api], lifetime: 1m}\n",
        None,
        "",
        sts::token::KindRegistry::builtin(),
    )
    .await;
    assert!(
        err.contains("issue.audiences: a Txn-Token's audience is this service's trust domain; write audiences: [example.com]"),
        "{err}"
    );
}

#[actix_web::test]
async fn request_context_and_details_must_be_small_json_objects() {
    let t = Txn::new().await;
    let app = t.app().await;
    let subject = t.h.idp.access_token(json!({}));
    let big = format!("{{\"pad\": \"{}\"}}", "x".repeat(5000));
    for (name, value, want) in [
        (
            "request_context",
            "[1, 2]",
            "request_context must be a JSON object",
        ),
        (
            "request_details",
            "\"text\"",
            "request_details must be a JSON object",
        ),
        (
            "request_context",
            "{\"a\": 1,",
            "request_context is not a valid JSON object: malformed JSON",
        ),
        (
            "request_details",
            "{\"a\": 1, \"a\": 2}",
            "request_details is not a valid JSON object: duplicate JSON member name",
        ),
        (
            "request_context",
            "eyJhIjoxfQ",
            "request_context is not a valid JSON object: malformed JSON",
        ),
        (
            "request_details",
            big.as_str(),
            "request_details is larger than 4096 bytes",
        ),
    ] {
        let d = post(&app, &txn_request(&subject, "orders:read").set(name, value))
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(d, want);
    }
    let deep = format!("{}1{}", "{\"a\":".repeat(20), "}".repeat(20));
    let d = post(
        &app,
        &txn_request(&subject, "orders:read").set("request_details", &deep),
    )
    .await
    .expect_error(400, "invalid_request");
    assert_eq!(
        d,
        "request_details is not a valid JSON object: JSON nested too deeply"
    );
    // The gateway cannot smuggle the access token into the Txn-Token.
    let smuggled = json!({"auth": format!("Bearer {subject}")}).to_string();
    let d = post(
        &app,
        &txn_request(&subject, "orders:read").set("request_context", &smuggled),
    )
    .await
    .expect_error(400, "invalid_request");
    assert_eq!(d, "the request context must not carry the subject_token");
}

#[actix_web::test]
async fn unsigned_json_subjects_only_from_the_callers_the_entry_names() {
    let t = Txn::new().await;
    let app = t.app().await;
    let subject = json!({"sub": "batch-user-7", "scope": "orders:read reports"}).to_string();
    let form = |id: &str, secret: &str| {
        txn_request(&subject, "reports")
            .basic(id, secret)
            .without("subject_token_type")
            .set("subject_token_type", UNSIGNED)
    };
    let (_, c) = expect_txn(
        &post(&app, &form("gateway", GATEWAY_SECRET)).await,
        &t.jwks(),
    );
    assert_eq!(c["sub"], "batch-user-7");
    assert_eq!(c["scope"], "reports");
    assert_eq!(c["exp"], NOW + 60, "no exp: the entry's lifetime");
    // A subject of exactly limits.max_token_bytes (16 KiB) is within the limit.
    let head =
        json!({"sub": "batch-user-7", "scope": "orders:read reports", "pad": ""}).to_string();
    let padded = head.replace(
        "\"pad\":\"\"",
        &format!("\"pad\":\"{}\"", "x".repeat(16 * 1024 - head.len())),
    );
    assert_eq!(padded.len(), 16 * 1024);
    let r = post(
        &app,
        &form("gateway", GATEWAY_SECRET)
            .without("subject_token")
            .set("subject_token", &padded),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.body);
    let d = post(&app, &form("lonely", "lonely-secret-0123456789"))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(
        d,
        "subject_token rejected: this caller may not present unsigned_json subject tokens"
    );
    for (bad, want) in [
        (
            json!({"scope": "reports"}).to_string(),
            "token lacks a required claim: sub",
        ),
        (
            "{\"sub\": \"a\", \"sub\": \"b\", \"scope\": \"reports\"}".to_owned(),
            "duplicate JSON member name",
        ),
        (
            json!({"sub": "a", "scope": "reports", "exp": NOW - 3600}).to_string(),
            "token is expired",
        ),
        (
            json!({"sub": "", "scope": "reports"}).to_string(),
            "token claim is malformed: sub",
        ),
        // Delegation and key binding cannot be asserted by the caller.
        (
            json!({"sub": "a", "scope": "reports", "act": {"sub": "x"}}).to_string(),
            "token claim is malformed: act",
        ),
        (
            json!({"sub": "a", "scope": "reports", "may_act": {"sub": "x"}}).to_string(),
            "token claim is malformed: may_act",
        ),
        (
            json!({"sub": "a", "scope": "reports", "cnf": {"jkt": "x"}}).to_string(),
            "token claim is malformed: cnf",
        ),
    ] {
        let d = post(
            &app,
            &form("gateway", GATEWAY_SECRET)
                .without("subject_token")
                .set("subject_token", &bad),
        )
        .await
        .expect_error(400, "invalid_request");
        assert!(d.contains(want), "{bad}: {d}");
    }
}

/// Issues a Txn-Token at ingress and returns it with its claims.
async fn ingress<S>(t: &Txn, app: &S, scope: &str, details: Option<Value>) -> (String, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let subject =
        t.h.idp
            .access_token(json!({"scope": "orders:read orders:write"}));
    let mut form = txn_request(&subject, scope);
    if let Some(d) = details {
        form = form.set("request_details", &d.to_string());
    }
    expect_txn(&post(app, &form).await, &t.jwks())
}

/// A replacement request from `lonely` for `txn`.
fn replace(txn: &str, scope: &str) -> Form {
    txn_request(txn, scope)
        .basic("lonely", "lonely-secret-0123456789")
        .without("subject_token_type")
        .set("subject_token_type", TXN)
}

#[actix_web::test]
async fn a_replacement_keeps_txn_sub_and_aud_and_records_the_chain() {
    let t = Txn::new().await;
    let app = t.app().await;
    let (first, c1) = ingress(
        &t,
        &app,
        "orders:read orders:write",
        Some(json!({"action": "BUY"})),
    )
    .await;
    let r = post(
        &app,
        &replace(&first, "orders:read").set("request_details", r#"{"ticker": "MSFT"}"#),
    )
    .await;
    let (second, c2) = expect_txn(&r, &t.jwks());
    assert_eq!(c2["txn"], c1["txn"]);
    assert_eq!(c2["sub"], c1["sub"]);
    assert_eq!(c2["aud"], c1["aud"]);
    assert_eq!(c2["scope"], "orders:read");
    assert_eq!(c2["req_wl"], "lonely");
    assert_eq!(c2["req_wl_chain"], json!(["gateway"]));
    assert_eq!(c2["tctx"], json!({"action": "BUY", "ticker": "MSFT"}));
    // Without may_outlive_subject extension: at most 2 minutes past the replaced token.
    assert!(c2["exp"].as_i64().unwrap() <= c1["exp"].as_i64().unwrap() + 120);
    // The chain grows; the third replacement is one too many (max_replacements: 2).
    let r = post(&app, &replace(&second, "orders:read")).await;
    let (third, c3) = expect_txn(&r, &t.jwks());
    assert_eq!(c3["req_wl_chain"], json!(["gateway", "lonely"]));
    assert_eq!(c3["txn"], c1["txn"]);
    let d = post(&app, &replace(&third, "orders:read"))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(
        d,
        "this transaction's Txn-Token has been replaced too many times"
    );
}

#[actix_web::test]
async fn a_replacement_cannot_widen_change_or_outlive() {
    let t = Txn::new().await;
    let app = t.app().await;
    let (first, c1) = ingress(&t, &app, "orders:read", Some(json!({"action": "BUY"}))).await;
    // Scope only narrows.
    post(&app, &replace(&first, "orders:read orders:write"))
        .await
        .expect_error(400, "invalid_scope");
    // tctx members are immutable; sub is kept.
    let d = post(
        &app,
        &replace(&first, "orders:read").set("request_details", r#"{"action": "SELL"}"#),
    )
    .await
    .expect_error(400, "invalid_request");
    assert_eq!(d, "a replacement Txn-Token cannot change members of tctx");
    let d = post(
        &app,
        &replace(&first, "orders:read").set("request_details", r#"{"sub": "mallory"}"#),
    )
    .await
    .expect_error(400, "invalid_request");
    assert_eq!(
        d,
        "a replacement Txn-Token keeps the sub of the one it replaces"
    );
    // aud: only our trust domain is served.
    post(
        &app,
        &replace(&first, "orders:read")
            .without("audience")
            .set("audience", "elsewhere.example"),
    )
    .await
    .expect_error(400, "invalid_target");
    // An expired Txn-Token is never replaced, even within the clock-skew leeway.
    let exp = c1["exp"].as_i64().unwrap();
    t.h.clock.set(exp);
    let d = post(&app, &replace(&first, "orders:read"))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(d, "subject_token rejected: token is expired");
    t.h.clock.set(exp + 3600);
    post(&app, &replace(&first, "orders:read"))
        .await
        .expect_error(400, "invalid_request");
}

#[actix_web::test]
async fn only_our_own_txn_tokens_are_replaced() {
    let t = Txn::new().await;
    let app = t.app().await;
    let (_, c1) = ingress(&t, &app, "orders:read", None).await;
    // Same claims, signed by someone else (with our kid), or typed as an access token.
    let forger = Idp::new(STS_ISSUER, t.state.snapshot().signer.kid(), "ES256");
    let forged = forger.sign_with(
        json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": t.state.snapshot().signer.kid()}),
        &c1,
    );
    let d = post(&app, &replace(&forged, "orders:read"))
        .await
        .expect_error(400, "invalid_request");
    assert_eq!(d, "subject_token rejected: token signature is invalid");
    let mut other_aud = c1.clone();
    other_aud["aud"] = json!("other.example");
    let access_token =
        t.h.idp
            .access_token(json!({"txn": "x", "req_wl": "gateway"}));
    for token in [
        forger.sign_with(json!({"alg": "ES256", "typ": "at+jwt"}), &c1),
        access_token,
    ] {
        post(&app, &replace(&token, "orders:read"))
            .await
            .expect_error(400, "invalid_request");
    }
}

// ---------------------------------------------------------------------------------------------
// The gateway adapter, in process.

async fn gateway<S>(
    app: &S,
    headers: &[(&str, &str)],
) -> (u16, actix_web::http::header::HeaderMap, Value)
where
    S: Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
{
    let mut req = test::TestRequest::get().uri("/gateway/txn-token");
    for (n, v) in headers {
        req = req.insert_header((*n, *v));
    }
    // What the service logs while it answers holds none of the credentials sent or issued.
    use tracing::instrument::WithSubscriber;
    let logs = crate::support::leaks::LogCapture::default();
    let resp = test::call_service(app, req.to_request())
        .with_subscriber(logs.subscriber())
        .await;
    let status = resp.status().as_u16();
    let response_headers = resp.headers().clone();
    let body = test::read_body(resp).await;
    let mut sent: Vec<String> = headers
        .iter()
        .filter(|(n, _)| n.contains("authorization"))
        .map(|(_, v)| v.split_once(' ').map_or(*v, |(_, t)| t).to_owned())
        .collect();
    if let Some(t) = response_headers.get("txn-token") {
        sent.push(t.to_str().unwrap().to_owned());
    }
    logs.assert_free_of(&sent);
    let text = String::from_utf8_lossy(&body);
    for s in &sent {
        assert!(
            s.len() < 10 || !text.contains(s.as_str()),
            "the answer echoes a credential"
        );
    }
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    (status, response_headers, json)
}

fn gateway_basic() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("gateway:{GATEWAY_SECRET}"))
    )
}

#[actix_web::test]
async fn the_gateway_adapter_answers_with_a_txn_token_header_or_401_403() {
    let t = Txn::new().await;
    let app = t.app().await;
    let subject =
        t.h.idp
            .access_token(json!({"scope": "orders:read orders:write"}));
    let bearer = format!("Bearer {subject}");
    let basic = gateway_basic();
    let ok = [
        ("authorization", bearer.as_str()),
        ("gateway-authorization", basic.as_str()),
        ("txn-scope", "orders:read"),
        ("x-real-ip", "192.0.2.7"),
        ("x-original-method", "POST"),
        ("x-original-uri", "/orders?id=7"),
    ];
    let (status, headers, _) = gateway(&app, &ok).await;
    assert_eq!(status, 200);
    assert_eq!(headers.get("cache-control").unwrap(), "no-store");
    let token = headers.get("txn-token").unwrap().to_str().unwrap();
    let c = decode_issued(token, &t.jwks(), STS_ISSUER, Some(DOMAIN), false);
    assert_eq!(c["req_wl"], "gateway");
    assert_eq!(c["rctx"], json!({"req_ip": "192.0.2.7"}));
    assert_eq!(c["tctx"], json!({"method": "POST", "path": "/orders?id=7"}));

    // No token, or not a Bearer one: 401 without an error code (RFC 6750 §3.1).
    for auth in [None, Some("Basic Zm9vOmJhcg=="), Some("Bearer ")] {
        let mut h: Vec<(&str, &str)> = ok[1..].to_vec();
        if let Some(a) = auth {
            h.push(("authorization", a));
        }
        let (status, headers, body) = gateway(&app, &h).await;
        assert_eq!(status, 401, "{auth:?}");
        assert_eq!(
            headers.get("www-authenticate").unwrap(),
            "Bearer realm=\"sts\""
        );
        assert!(headers.get("txn-token").is_none());
        assert_eq!(body["error"], "invalid_request");
    }
    // A forged or expired token: 401 invalid_token.
    let expired = format!("Bearer {}", t.h.idp.access_token(json!({"exp": NOW - 120})));
    let forged = format!(
        "Bearer {}",
        Idp::new("https://idp.test", "idp-1", "ES256").access_token(json!({}))
    );
    for bad in [expired.as_str(), forged.as_str(), "Bearer not-a-jwt"] {
        let mut h = ok.to_vec();
        h[0] = ("authorization", bad);
        let (status, headers, _) = gateway(&app, &h).await;
        assert_eq!(status, 401, "{bad}");
        let challenge = headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"sts\", error=\"invalid_token\""),
            "{challenge}"
        );
        assert!(!challenge.contains(&bad[7..]));
    }
    // Policy: a scope the user lacks is 403 insufficient_scope; no scope at all is 403.
    let mut h = ok.to_vec();
    h[2] = ("txn-scope", "admin");
    let (status, headers, body) = gateway(&app, &h).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"], "invalid_scope");
    assert!(
        headers
            .get("www-authenticate")
            .unwrap()
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );
    let (status, _, body) = gateway(&app, &[ok[0], ok[1]]).await;
    assert_eq!(status, 403);
    assert_eq!(
        body["error_description"],
        "the gateway sent no transaction scope"
    );
    // The gateway's own credentials are wrong: a deployment fault, 500 (never the user's 401).
    let mut h = ok.to_vec();
    h[1] = ("gateway-authorization", "Basic Z2F0ZXdheTp3cm9uZw==");
    let (status, _, body) = gateway(&app, &h).await;
    assert_eq!(status, 500);
    assert_eq!(body["error"], "invalid_client");
    // A context header sent twice is refused, never chosen from.
    let mut h = ok.to_vec();
    h.push(("x-real-ip", "203.0.113.9"));
    let mut req = test::TestRequest::get().uri("/gateway/txn-token");
    for (n, v) in &h {
        req = req.append_header((*n, *v));
    }
    let resp = test::call_service(&app, req.to_request()).await;
    assert_eq!(resp.status().as_u16(), 403);
}

#[actix_web::test]
async fn the_verified_subject_cache_pays_once_and_never_outlives_exp_or_keys() {
    let t = Txn::new().await;
    let app = t.app().await;
    let subject = t.h.idp.access_token(json!({"exp": NOW + 300}));
    let form = txn_request(&subject, "orders:read");
    expect_txn(&post(&app, &form).await, &t.jwks());
    assert_eq!(t.state.subjects.len(), 0, "seen once: only noted");
    expect_txn(&post(&app, &form).await, &t.jwks());
    assert_eq!(t.state.subjects.len(), 1, "seen twice: remembered");
    // The same token again: answered from the cache (another new txn each time).
    let (_, a) = expect_txn(&post(&app, &form).await, &t.jwks());
    let (_, b) = expect_txn(&post(&app, &form).await, &t.jwks());
    assert_ne!(a["txn"], b["txn"]);
    assert_eq!(t.state.subjects.len(), 1);
    // Policy still runs on a cached subject: a wider scope is refused.
    post(&app, &txn_request(&subject, "admin"))
        .await
        .expect_error(400, "invalid_scope");
    // Past exp the cache is not used: the verifier refuses it (exp + leeway).
    t.h.clock.set(NOW + 300 + 61);
    let d = post(&app, &form).await.expect_error(400, "invalid_request");
    assert_eq!(d, "subject_token rejected: token is expired");
    t.h.clock.set(NOW);
    // The trust entry's keys change (the IdP rotated): the cached verification is dropped
    // and the old token no longer verifies.
    let rotated = Idp::new("https://idp.test", "idp-2", "ES256");
    std::fs::write(t.h.dir.path().join("idp.json"), rotated.jwks().to_string()).unwrap();
    let snap = t.state.snapshot();
    let corp = snap.trust.get("corp-idp").unwrap();
    corp.verifier.keys().unwrap().load().await.unwrap();
    let d = post(&app, &form).await.expect_error(400, "invalid_request");
    assert_eq!(d, "subject_token rejected: token signing key is unknown");
    let fresh = rotated.access_token(json!({}));
    expect_txn(
        &post(&app, &txn_request(&fresh, "orders:read")).await,
        &t.jwks(),
    );
}

#[actix_web::test]
async fn the_cache_can_be_turned_off_and_never_serves_another_profiles_sources() {
    let t = Txn::with_extra("subject_cache: {capacity: 0}").await;
    let app = t.app().await;
    let subject = t.h.idp.access_token(json!({}));
    expect_txn(
        &post(&app, &txn_request(&subject, "orders:read")).await,
        &t.jwks(),
    );
    expect_txn(
        &post(&app, &txn_request(&subject, "orders:read")).await,
        &t.jwks(),
    );
    assert_eq!(t.state.subjects.len(), 0);
    // With the cache on: a token cached through `ingress` (corp-idp) presented as a Txn-Token
    // for replacement is verified by `our-txn`, not taken from the cache.
    let t = Txn::new().await;
    let app = t.app().await;
    let subject = t.h.idp.access_token(json!({}));
    expect_txn(
        &post(&app, &txn_request(&subject, "orders:read")).await,
        &t.jwks(),
    );
    post(&app, &replace(&subject, "orders:read"))
        .await
        .expect_error(400, "invalid_request");
}

#[actix_web::test]
async fn a_replacement_extends_the_lifetime_no_further_than_max_extension() {
    let t = Txn::new().await;
    let app = t.app().await;
    let subject =
        t.h.idp
            .access_token(json!({"exp": NOW + 40, "scope": "orders:read"}));
    let (first, c1) = expect_txn(
        &post(&app, &txn_request(&subject, "orders:read")).await,
        &t.jwks(),
    );
    assert_eq!(c1["exp"], NOW + 40);
    // The replace profile: lifetime 5m, may_outlive_subject, max_extension 2m.
    let (_, c2) = expect_txn(
        &post(&app, &replace(&first, "orders:read")).await,
        &t.jwks(),
    );
    assert_eq!(c2["exp"], NOW + 40 + 120);
    // A mapping cannot write the reserved claims of the kind (txn, req_wl, scope, the chain).
    let err = start_error(
        "name: w\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: txn-token, audiences: [example.com], lifetime: 1m, claims: sets-txn}\n",
        Some((
            "sets-txn.yaml",
            "name: sets-txn\nclaims:\n  txn: \"'fixed'\"\n  req_wl_chain: \"['x']\"\n",
        )),
        "",
        sts::token::KindRegistry::builtin(),
    )
    .await;
    assert!(
        err.contains("mapping `sets-txn` writes `txn`, which kind txn-token reserves"),
        "{err}"
    );
    assert!(
        err.contains("mapping `sets-txn` writes `req_wl_chain`, which kind txn-token reserves"),
        "{err}"
    );
}

#[actix_web::test]
async fn txn_tokens_and_caller_asserted_subjects_feed_txn_tokens_only() {
    for (profile, want) in [
        (
            "name: p\ncallers: [gateway]\nsubject: {accept: [our-txn]}\nissue: {kind: access-token, audiences: [api], lifetime: 1m}\n",
            "trust entry `our-txn` (kind txn-token) can only be the subject of an issue.kind txn-token profile",
        ),
        (
            "name: p\ncallers: [gateway]\nsubject: {accept: [edge-json]}\nissue: {kind: access-token, audiences: [api], lifetime: 1m}\n",
            "trust entry `edge-json` (kind unsigned-json) can only be the subject of an issue.kind txn-token profile",
        ),
        (
            "name: p\ncallers: [gateway]\nsubject: {accept: [self-jwt]}\nissue: {kind: access-token, audiences: [api], lifetime: 1m}\n",
            "trust entry `self-jwt` (kind self-signed) can only be the subject of an issue.kind txn-token profile",
        ),
        (
            "name: p\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nactor: {mode: optional, accept: [our-txn]}\nissue: {kind: access-token, audiences: [api], lifetime: 1m}\n",
            "trust entry `our-txn` (kind txn-token) cannot be an actor",
        ),
        (
            "name: p\ncallers: [gateway]\nsubject: {accept: [edge-json]}\nissue: {kind: txn-token, audiences: [example.com], lifetime: 1m}\n",
            // The caller's word needs a ceiling: refused at load, not on every request.
            "options.subject_scope: required when subject.accept takes tokens the caller asserts \
             itself (urn:ietf:params:oauth:token-type:unsigned_json)",
        ),
        (
            "name: p\ncallers: [gateway]\nsubject: {accept: [corp-idp, self-jwt]}\nissue: {kind: txn-token, audiences: [example.com], lifetime: 1m}\n",
            "options.subject_scope: required when subject.accept takes tokens the caller asserts \
             itself (urn:ietf:params:oauth:token-type:self_signed)",
        ),
    ] {
        let h = Harness::with(&[], TEST_MAPPINGS, "").await;
        write_files(&h.dir.path().join("profiles"), &[("p.yaml", profile)]);
        let config = harness_config(h.dir.path(), "trust_domain: example.com").replace(
            "trust:\n",
            "trust:\n  - {name: our-txn, kind: txn-token}\n  - {name: edge-json, kind: unsigned-json, callers: [gateway]}\n  - {name: self-jwt, kind: self-signed}\n",
        );
        let e = AppState::build(Settings::from_yaml(&config).unwrap(), h.clock.clone())
            .await
            .err()
            .unwrap_or_else(|| panic!("loaded, expected: {want}"));
        assert!(e.to_string().contains(want), "{e}");
    }
}

/// The caller-asserted kinds bound their time settings — a `self-signed` entry's `max_age`
/// between 1 s and 1 h, an `unsigned-json` entry's `lifetime` between 1 s and 10 min, bounds
/// included — and check a profile's condition at load against their typed samples (a string
/// `iss` and `scope`), so a type error is found then, not on the first request.
#[actix_web::test]
async fn caller_asserted_entries_bound_their_times_and_check_conditions_at_load() {
    let profile = |when: &str| {
        format!(
            "name: p\ncallers: [gateway]\nsubject: {{accept: [asserted]}}\nwhen: \"{when}\"\nissue: {{kind: txn-token, audiences: [example.com], lifetime: 1m, options: {{subject_scope: \"orders:read\"}}}}\n"
        )
    };
    let build = |entry: String, when: &'static str| async move {
        let h = Harness::with(&[], TEST_MAPPINGS, "").await;
        write_files(
            &h.dir.path().join("profiles"),
            &[("p.yaml", &profile(when))],
        );
        let config = harness_config(h.dir.path(), "trust_domain: example.com").replace(
            "trust:\n",
            &format!("trust:\n  - {{name: asserted, {entry}}}\n"),
        );
        AppState::build(Settings::from_yaml(&config).unwrap(), h.clock.clone())
            .await
            .err()
            .map(|e| e.to_string())
    };
    let self_signed = |v: &str| format!("kind: self-signed, max_age: {v}");
    let unsigned = |v: &str| format!("kind: unsigned-json, callers: [gateway], lifetime: {v}");
    let cases = [
        (self_signed("999ms"), false),
        (self_signed("1s"), true),
        (self_signed("1h"), true),
        (self_signed("3601s"), false),
        (unsigned("999ms"), false),
        (unsigned("1s"), true),
        (unsigned("10m"), true),
        (unsigned("601s"), false),
    ];
    for (entry, ok) in cases {
        match build(entry.clone(), "subject.scope != ''").await {
            None => assert!(ok, "{entry} was accepted"),
            Some(e) => {
                assert!(!ok, "{entry}: {e}");
                assert!(
                    e.contains("max_age (entry `asserted`, kind self-signed): between 1s and 1h")
                        || e.contains(
                            "lifetime (entry `asserted`, kind unsigned-json): between 1s and 10m"
                        ),
                    "{e}"
                );
            }
        }
    }
    for (entry, when) in [
        (self_signed("5m"), "subject.iss + 1 == 2"),
        (unsigned("1m"), "subject.scope + 1 == 2"),
    ] {
        let e = build(entry.clone(), when).await.unwrap_or_default();
        assert!(
            e.contains("when fails: Unsupported binary operator"),
            "{entry}: {e}"
        );
    }
}

#[actix_web::test]
async fn gateway_settings_refuse_caller_asserted_types_and_shared_headers() {
    let h = Harness::with(&[], TEST_MAPPINGS, "").await;
    for (gateway, want) in [
        (
            "{path: /g, subject_token_type: \"urn:ietf:params:oauth:token-type:unsigned_json\"}",
            "gateway.subject_token_type: one of: urn:ietf:params:oauth:token-type:access_token",
        ),
        (
            "{path: /g, scope_header: gateway-authorization}",
            "gateway.scope_header: `gateway-authorization` is already used by another gateway setting",
        ),
        (
            "{path: /g, context_headers: {req_ip: Authorization}}",
            "gateway.context_headers.req_ip: must not be Authorization",
        ),
        ("{path: token}", "gateway.path: must start with /"),
        ("{path: /jwks}", "gateway.path: must start with /"),
    ] {
        let config = harness_config(h.dir.path(), &format!("gateway: {gateway}"));
        let err = Settings::from_yaml(&config).unwrap_err().to_string();
        assert!(err.contains(want), "{gateway}: {err}");
    }
    // Off unless a path is set.
    let app = h.app().await;
    let r = get(&app, "/gateway/txn-token").await;
    assert_eq!(r.status, 404);
}

#[actix_web::test]
async fn explain_shows_the_txn_token_that_would_be_issued_and_signs_nothing() {
    use sts::explain::{Input, Outcome, Request, explain};
    let t = Txn::new().await;
    let subject =
        t.h.idp
            .access_token(json!({"scope": "orders:read orders:write"}));
    let params = |scope: &str| -> Vec<(String, String)> {
        [
            ("subject_token_type", ACCESS_TOKEN),
            ("requested_token_type", TXN),
            ("audience", DOMAIN),
            ("scope", scope),
            ("request_details", r#"{"action": "BUY"}"#),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    };
    let snap = t.state.snapshot();
    let req = |scope: &str| Request {
        client_id: "gateway".into(),
        params: params(scope),
        subject: Input::Token(sts::secret::Token::new(subject.clone())),
        actor: None,
        now: NOW,
    };
    let ex = explain(&snap, req("orders:read")).await;
    let Outcome::Issued {
        claims,
        issued_token_type,
        ..
    } = &ex.outcome
    else {
        panic!("{:?}", ex.outcome);
    };
    assert_eq!(*issued_token_type, TXN);
    assert_eq!(claims["aud"], DOMAIN);
    assert_eq!(claims["req_wl"], "gateway");
    assert_eq!(claims["scope"], "orders:read");
    assert_eq!(claims["tctx"], json!({"action": "BUY"}));
    let text = ex.to_text();
    assert!(text.contains("  ingress ["), "{text}");
    assert!(!text.contains(&subject), "the token is never printed");
    let ex = explain(&snap, req("admin")).await;
    assert!(
        ex.to_text()
            .contains("refused: invalid_scope: requested scope exceeds the subject_token's scope"),
        "{}",
        ex.to_text()
    );
}
