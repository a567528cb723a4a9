//! SPIFFE (issue #8): JWT-SVIDs as subject tokens and as client assertions (`jwt-spiffe`), the
//! JWT-SVID output kind, trust bundles from files and from a real HTTPS bundle endpoint
//! (`https_web`), and mutual TLS with X509-SVIDs against a real `sts serve` over a real TLS
//! socket. Certificates are made with rcgen, tokens signed with raw aws-lc-rs, issued tokens
//! checked with jsonwebtoken — never with the service's own code.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::dev::{Service, ServiceResponse};
use serde_json::{Value, json};
use sts::app::AppState;
use sts::config::Settings;

use crate::support::pki::{LeafSpec, TestCa};
use crate::support::*;

const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
const JWT_SPIFFE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";
const PROD_API: &str = "spiffe://example.org/ns/prod/sa/api";
const REPORTS: &str = "spiffe://example.org/reports";
/// The `aud` subject JWT-SVIDs carry for us (our SPIFFE ID); client assertions carry our issuer.
const SUBJECT_AUD: &str = "spiffe://sts.test/exchange";

/// Profiles of the SPIFFE tests, beside the harness's.
const SPIFFE_PROFILES: &[(&str, &str)] = &[
    (
        "svid-access.yaml",
        r#"
name: svid-access
description: A gateway exchanges a workload's JWT-SVID for an access token.
callers: [gateway]
subject: {accept: [org-svid, other-svid]}
issue:
  kind: access-token
  audiences: [reports-api]
  lifetime: 5m
"#,
    ),
    (
        "svid-out.yaml",
        r#"
name: svid-out
description: A prod workload gets a JWT-SVID for the reports service.
callers: ["spiffe://example.org/ns/prod/*"]
subject: {accept: [org-svid]}
issue:
  kind: jwt-svid
  audiences: ["spiffe://example.org/reports"]
  lifetime: 5m
  options: {trust_domains: [example.org]}
"#,
    ),
    (
        "svid-caller.yaml",
        r#"
name: svid-caller
description: A prod workload, authenticated by its SVID, exchanges a user's token.
callers: ["spiffe://example.org/ns/prod/*"]
subject: {accept: [corp-idp]}
issue:
  kind: access-token
  audiences: [reports-api]
  lifetime: 5m
"#,
    ),
    (
        "mtls-bound.yaml",
        r#"
name: mtls-bound
description: Certificate-bound tokens for prod workloads (RFC 8705).
callers: ["spiffe://example.org/ns/prod/*"]
subject: {accept: [corp-idp]}
issue:
  kind: access-token
  audiences: [mtls-api]
  lifetime: 5m
  options: {certificate_bound: true}
"#,
    ),
];

/// A SPIFFE bundle holding `keys` (each a JWK and its `use`).
fn bundle(keys: &[(Value, &str)], sequence: Option<u64>, hint: Option<u64>) -> Value {
    let keys: Vec<Value> = keys
        .iter()
        .map(|(jwk, key_use)| {
            let mut k = jwk.clone();
            k["use"] = json!(key_use);
            k
        })
        .collect();
    let mut b = json!({ "keys": keys });
    if let Some(s) = sequence {
        b["spiffe_sequence"] = json!(s);
    }
    if let Some(h) = hint {
        b["spiffe_refresh_hint"] = json!(h);
    }
    b
}

/// A JWT-SVID from `idp` (a trust domain's signing key) for `PROD_API`, audience us.
fn svid(idp: &Idp, overrides: Value) -> String {
    idp.sign_with(svid_header(idp), &svid_claims(overrides))
}

fn svid_header(idp: &Idp) -> Value {
    json!({"alg": idp.alg(), "kid": idp.kid, "typ": "JWT"})
}

fn svid_claims(overrides: Value) -> Value {
    let mut c = json!({"sub": PROD_API, "aud": [SUBJECT_AUD], "exp": NOW + 300, "iat": NOW - 5});
    merge(&mut c, overrides);
    c
}

/// A JWT-SVID made as a client assertion: `aud` is our issuer.
fn assertion(idp: &Idp, overrides: Value) -> String {
    let mut o = json!({ "aud": STS_ISSUER });
    merge(&mut o, overrides);
    svid(idp, o)
}

/// The harness plus two SPIFFE trust domains with bundle files: `example.org` (its JWT-SVID
/// entry also authenticates clients) and `other.org`.
struct Spiffe {
    h: Harness,
    org: Idp,
    other: Idp,
    /// A key in example.org's bundle with `use: wit-svid`.
    wit_key: Idp,
    state: Arc<AppState>,
}

impl Spiffe {
    async fn new() -> Self {
        let h = Harness::new().await;
        let org = Idp::new("spiffe://example.org", "org-1", "ES256");
        let other = Idp::new("spiffe://other.org", "other-1", "ES256");
        let wit_key = Idp::new("spiffe://example.org", "wit-1", "ES256");
        let d = h.dir.path();
        let org_bundle = bundle(
            &[
                (org.jwk(), "jwt-svid"),
                // A key of another use in the same bundle verifies no JWT-SVID.
                (wit_key.jwk(), "wit-svid"),
            ],
            Some(1),
            None,
        );
        std::fs::write(d.join("org-bundle.json"), org_bundle.to_string()).unwrap();
        let other_bundle = bundle(&[(other.jwk(), "jwt-svid")], Some(7), None);
        std::fs::write(d.join("other-bundle.json"), other_bundle.to_string()).unwrap();
        write_files(&d.join("profiles"), SPIFFE_PROFILES);
        let entries = spiffe_entries(d);
        let config = harness_config(d, "").replace("trust:\n", &entries);
        let settings = Settings::from_yaml(&config).unwrap();
        let state = AppState::build(settings, h.clock.clone()).await.unwrap();
        Self {
            h,
            org,
            other,
            wit_key,
            state,
        }
    }

    async fn app(
        &self,
    ) -> impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>
    {
        app_of(self.state.clone()).await
    }
}

/// The harness's `trust:` list headed by the two SPIFFE entries (bundle files in `d`).
fn spiffe_entries(d: &Path) -> String {
    format!(
        "trust:\n  - {{name: org-svid, kind: jwt-svid, trust_domain: example.org, \
         client_authentication: true, audience: [\"{SUBJECT_AUD}\"], bundle: {{file: \
         {0}/org-bundle.json}}}}\n  - {{name: other-svid, kind: jwt-svid, trust_domain: \
         other.org, audience: [\"{SUBJECT_AUD}\"], bundle: {{file: \
         {0}/other-bundle.json}}}}\n",
        d.display()
    )
}

/// The gateway exchanging a JWT-SVID for an access token to `reports-api`.
fn svid_exchange(token: &str) -> Form {
    Form::exchange(token)
        .without("subject_token_type")
        .set("subject_token_type", JWT)
        .set("audience", "reports-api")
}

/// A request authenticated by a JWT-SVID client assertion, exchanging a user's token.
fn svid_client(assertion: &str, user_token: &str, audience: &str) -> Form {
    Form::exchange(user_token)
        .no_auth()
        .set("audience", audience)
        .set("client_assertion_type", JWT_SPIFFE)
        .set("client_assertion", assertion)
}

async fn svid_refused(s: &Spiffe, token: &str, reason: &str) {
    let r = post(&s.app().await, &svid_exchange(token)).await;
    let d = r.expect_error(400, "invalid_request");
    assert!(d.contains(reason), "want `{reason}` in `{d}`");
    assert!(!r.body.contains(token), "the token is echoed");
}

// ---------------------------------------------------------------------------------------------
// The shared negative suite, for JWT-SVIDs as subject tokens and as client assertions.

/// JWT-SVIDs as subject tokens. A JWT-SVID has no issuer to trust: its trust domain (in `sub`)
/// picks the bundle, so the suite's "another issuer" case is a foreign trust domain.
struct SubjectSvids(Spiffe);

fn foreign_domain(mut overrides: Value) -> Value {
    if overrides.get("iss").is_some() {
        overrides.as_object_mut().unwrap().remove("iss");
        overrides["sub"] = json!("spiffe://evil.test/ns/prod/sa/api");
    }
    overrides
}

impl crate::negative_suite::JwsTarget for SubjectSvids {
    fn signer(&self) -> &Idp {
        &self.0.org
    }
    fn header(&self) -> Value {
        svid_header(&self.0.org)
    }
    fn claims(&self, overrides: Value) -> Value {
        svid_claims(foreign_domain(overrides))
    }
    fn wrong_typs(&self) -> Vec<Value> {
        vec![
            json!("at+jwt"),
            json!("txntoken+jwt"),
            json!("secevent+jwt"),
        ]
    }
    fn issuer_reason(&self) -> &'static str {
        "issuer is not trusted"
    }
    fn refusal(&self) -> (u16, &'static str) {
        (400, "invalid_request")
    }
    fn embedded_key_reason(&self) -> &'static str {
        "parameters other than alg, kid and typ"
    }
    async fn present(&self, token: &str) -> Reply {
        post(&self.0.app().await, &svid_exchange(token)).await
    }
}

/// JWT-SVIDs as client assertions (`jwt-spiffe`): `aud` is our issuer identifier alone.
struct AssertionSvids(Spiffe);

impl crate::negative_suite::JwsTarget for AssertionSvids {
    fn signer(&self) -> &Idp {
        &self.0.org
    }
    fn header(&self) -> Value {
        svid_header(&self.0.org)
    }
    fn claims(&self, overrides: Value) -> Value {
        {
            let mut c = svid_claims(json!({ "aud": STS_ISSUER }));
            merge(&mut c, foreign_domain(overrides));
            c
        }
    }
    fn wrong_typs(&self) -> Vec<Value> {
        vec![json!("at+jwt"), json!("client-authentication+jwt")]
    }
    fn issuer_reason(&self) -> &'static str {
        "not from a trust domain accepted"
    }
    fn refusal(&self) -> (u16, &'static str) {
        (401, "invalid_client")
    }
    fn expired_within_leeway_accepted(&self) -> bool {
        true
    }
    fn embedded_key_reason(&self) -> &'static str {
        "parameters other than alg, kid and typ"
    }
    async fn present(&self, token: &str) -> Reply {
        let user = self.0.h.idp.access_token(json!({}));
        post(
            &self.0.app().await,
            &svid_client(token, &user, "reports-api"),
        )
        .await
    }
}

#[actix_web::test]
async fn jwt_svid_subjects_pass_the_negative_suite() {
    crate::negative_suite::jws_negative_suite(&SubjectSvids(Spiffe::new().await)).await;
}

#[actix_web::test]
async fn jwt_svid_client_assertions_pass_the_negative_suite() {
    crate::negative_suite::jws_negative_suite(&AssertionSvids(Spiffe::new().await)).await;
}

// ---------------------------------------------------------------------------------------------
// JWT-SVID rules beyond the shared suite.

#[actix_web::test]
async fn a_jwt_svid_is_exchanged_and_every_svid_rule_holds() {
    let s = Spiffe::new().await;
    let app = s.app().await;
    for typ in [json!("JWT"), json!("JOSE"), Value::Null] {
        let mut header = svid_header(&s.org);
        match typ {
            Value::Null => {
                header.as_object_mut().unwrap().remove("typ");
            }
            t => header["typ"] = t,
        }
        let token = s.org.sign_with(header, &svid_claims(json!({})));
        let issued = post(&app, &svid_exchange(&token)).await.expect_token();
        let jwks = get(&app, "/jwks").await.json;
        let c = verify_issued(&issued, &jwks, "reports-api");
        assert_eq!(c["sub"], PROD_API);
    }
    // aud: one of several values naming us is enough for a subject; absent is refused.
    let multi = svid(
        &s.org,
        json!({"aud": ["spiffe://example.org/x", SUBJECT_AUD]}),
    );
    post(&app, &svid_exchange(&multi)).await.expect_token();
    svid_refused(&s, &svid(&s.org, json!({"aud": []})), "audience").await;
    svid_refused(&s, &svid(&s.org, json!({"aud": null})), "audience").await;
    // exp is required.
    svid_refused(&s, &svid(&s.org, json!({"exp": null})), "exp").await;
    // Delegation claims from an SVID are not taken.
    for claim in ["act", "may_act"] {
        let t = svid(&s.org, json!({ claim: {"sub": "spiffe://example.org/x"} }));
        svid_refused(&s, &t, "act or may_act").await;
    }
    // A JWT-SVID is a bearer token: one bound to a key is refused.
    let bound = svid(&s.org, json!({"cnf": {"x5t#S256": "abc"}}));
    svid_refused(&s, &bound, "sender-constrained").await;
    // All nine JWT-SVID algorithms are verified, ES512 (P-521) too.
    let es512 = Idp::new("spiffe://example.org", "org-512", "ES512");
    let ps = Idp::new("spiffe://example.org", "org-rsa", "RS256");
    let d = s.h.dir.path();
    let grown = bundle(
        &[
            (s.org.jwk(), "jwt-svid"),
            (es512.jwk(), "jwt-svid"),
            (ps.jwk(), "jwt-svid"),
        ],
        Some(2),
        None,
    );
    std::fs::write(d.join("org-bundle.json"), grown.to_string()).unwrap();
    let snap = s.state.snapshot();
    let keys = snap.trust.get("org-svid").unwrap().verifier.keys().unwrap();
    keys.load().await.unwrap();
    for signer in [&es512, &ps] {
        let t = svid(signer, json!({}));
        post(&app, &svid_exchange(&t)).await.expect_token();
    }
    // Only the JWT-SVID algorithms: an EdDSA key in the bundle never verifies one.
    let ed = Idp::new("spiffe://example.org", "org-1", "EdDSA");
    svid_refused(&s, &svid(&ed, json!({})), "algorithm is not accepted").await;
    // No header parameter but alg, kid and typ.
    for (name, value) in [
        ("x5u", json!("https://evil.test/cert")),
        ("jku", json!("https://evil.test/jwks")),
        ("cty", json!("JWT")),
        ("x5t", json!("abc")),
    ] {
        let mut header = svid_header(&s.org);
        header[name] = value;
        let token = s.org.sign_with(header, &svid_claims(json!({})));
        svid_refused(&s, &token, "parameters other than alg, kid and typ").await;
    }
    // A WIT-typed token of the trust domain is not a JWT-SVID.
    let mut header = svid_header(&s.org);
    header["typ"] = json!("wit+jwt");
    let token = s.org.sign_with(header, &svid_claims(json!({})));
    svid_refused(&s, &token, "not trusted").await;
}

#[actix_web::test]
async fn spiffe_ids_are_canonical_or_refused() {
    let s = Spiffe::new().await;
    let long = format!("spiffe://example.org/{}", "a".repeat(2048));
    for sub in [
        "spiffe://Example.org/ns/prod/sa/api",
        "SPIFFE://example.org/ns/prod/sa/api",
        "spiffe://example.org/ns//sa/api",
        "spiffe://example.org/ns/prod/sa/api/",
        "spiffe://example.org/ns/./sa/api",
        "spiffe://example.org/ns/%70rod/sa/api",
        "spiffe://example.org:443/ns/prod/sa/api",
        "spiffe://user@example.org/ns/prod/sa/api",
        "spiffe://example.org/ns/prod?x=1",
        "spiffe://example.org",
        "spiffe://example.org/",
        long.as_str(),
    ] {
        // Signed by the trust domain's own key: the identifier alone is refused.
        svid_refused(&s, &svid(&s.org, json!({ "sub": sub })), "not trusted").await;
    }
    // A trust domain of 256 bytes is never a bundle's.
    let td = format!("spiffe://{}/a", "a".repeat(256));
    svid_refused(&s, &svid(&s.org, json!({ "sub": td })), "not trusted").await;
}

#[actix_web::test]
async fn bundles_are_per_trust_domain_and_never_merged() {
    let s = Spiffe::new().await;
    let app = s.app().await;
    // Each domain's token verifies with its own bundle.
    let theirs = svid(&s.other, json!({"sub": "spiffe://other.org/billing"}));
    post(&app, &svid_exchange(&theirs)).await.expect_token();
    // other.org's key vouching for an example.org identity: example.org's bundle lacks it.
    let forged = s.other.sign_with(
        json!({"alg": "ES256", "kid": "other-1", "typ": "JWT"}),
        &svid_claims(json!({})),
    );
    svid_refused(&s, &forged, "key is unknown").await;
    // example.org's key, presenting other.org's kid, for an other.org identity.
    let forged = s.org.sign_with(
        json!({"alg": "ES256", "kid": "other-1", "typ": "JWT"}),
        &svid_claims(json!({"sub": "spiffe://other.org/billing"})),
    );
    svid_refused(&s, &forged, "signature is invalid").await;
    // example.org's key under its own kid for other.org: not in other.org's bundle.
    let forged = svid(&s.org, json!({"sub": "spiffe://other.org/billing"}));
    svid_refused(&s, &forged, "key is unknown").await;
    // The wit-svid key in example.org's bundle signs no JWT-SVID (keys of one use only).
    svid_refused(&s, &svid(&s.wit_key, json!({})), "key is unknown").await;
}

#[actix_web::test]
async fn a_spiffe_looking_sub_does_not_make_a_jwt_svid() {
    let s = Spiffe::new().await;
    // The corporate IdP's key signs a plain JWT whose sub is an example.org SPIFFE ID: it is
    // read as a JWT-SVID only by example.org's entry, whose bundle does not hold that key.
    let idp_signed = s.h.idp.sign_with(
        json!({"alg": "ES256", "kid": "idp-1", "typ": "JWT"}),
        &svid_claims(json!({"iss": "https://idp.test"})),
    );
    svid_refused(&s, &idp_signed, "key is unknown").await;
    // An access token (at+jwt) of the corporate IdP about an example.org workload, declared
    // as a JWT: example.org's entry reads it (by its sub) and refuses its type, whatever key
    // signed it.
    let at =
        s.h.idp
            .access_token(json!({"sub": PROD_API, "aud": SUBJECT_AUD}));
    svid_refused(&s, &at, "typ").await;
}

// ---------------------------------------------------------------------------------------------
// JWT-SVID client authentication (`spiffe_jwt`).

#[actix_web::test]
async fn jwt_svid_client_authentication_and_caller_patterns() {
    let s = Spiffe::new().await;
    let app = s.app().await;
    let user = s.h.idp.access_token(json!({}));
    // A prod workload, no registration: authorised by the profile's pattern.
    let a0 = assertion(&s.org, json!({}));
    let issued = post(&app, &svid_client(&a0, &user, "reports-api"))
        .await
        .expect_token();
    let c = verify_issued(&issued, &get(&app, "/jwks").await.json, "reports-api");
    assert_eq!(c["client_id"], PROD_API);
    // client_id, when sent, names the SVID's sub.
    let form = svid_client(&a0, &user, "reports-api").set("client_id", PROD_API);
    post(&app, &form).await.expect_token();
    let form = svid_client(&a0, &user, "reports-api")
        .set("client_id", "spiffe://example.org/ns/prod/sa/other");
    let d = post(&app, &form).await.expect_error(401, "invalid_client");
    assert!(d.contains("client_id differs"), "{d}");
    // aud: our issuer identifier alone — not the token endpoint, not among others.
    for aud in [
        json!(format!("{STS_ISSUER}/token")),
        json!([STS_ISSUER, "https://other.test"]),
        json!("spiffe://example.org/sts"),
        // A subject JWT-SVID (which a gateway sees) is never a client assertion.
        json!([SUBJECT_AUD]),
    ] {
        let a = svid(&s.org, json!({ "aud": aud }));
        let r = post(&app, &svid_client(&a, &user, "reports-api")).await;
        assert!(r.expect_error(401, "invalid_client").contains("audience"));
    }
    // A bare issuer string is fine too.
    let a = svid(&s.org, json!({ "aud": STS_ISSUER }));
    post(&app, &svid_client(&a, &user, "reports-api"))
        .await
        .expect_token();
    // An assertion valid for longer than 5 minutes (plus the 60 s leeway) is refused: it is
    // reusable until exp. The boundary itself is accepted.
    let edge = assertion(&s.org, json!({"exp": NOW + 360}));
    post(&app, &svid_client(&edge, &user, "reports-api"))
        .await
        .expect_token();
    for exp in [NOW + 361, NOW + 3600] {
        let long = assertion(&s.org, json!({ "exp": exp }));
        let d = post(&app, &svid_client(&long, &user, "reports-api"))
            .await
            .expect_error(401, "invalid_client");
        assert!(d.contains("at most 5 minutes"), "{d}");
    }
    // Our issuer as a one-element array is our issuer alone.
    let one = assertion(&s.org, json!({ "aud": [STS_ISSUER] }));
    post(&app, &svid_client(&one, &user, "reports-api"))
        .await
        .expect_token();
    // A client assertion (aud = our issuer) is never a subject token.
    svid_refused(&s, &a0, "audience").await;
    // other.org's entry does not authenticate clients.
    let theirs = assertion(&s.other, json!({"sub": "spiffe://other.org/ns/prod/x"}));
    let r = post(&app, &svid_client(&theirs, &user, "reports-api")).await;
    assert!(
        r.expect_error(401, "invalid_client")
            .contains("not from a trust domain accepted")
    );
    // `/*` patterns match whole segments only.
    for (sub, allowed) in [
        ("spiffe://example.org/ns/prod/a", true),
        ("spiffe://example.org/ns/prod/a/b/c", true),
        ("spiffe://example.org/ns/prod", false),
        ("spiffe://example.org/ns/production/a", false),
        ("spiffe://example.org/ns/pro", false),
        ("spiffe://example.org/ns/staging/a", false),
    ] {
        let a = assertion(&s.org, json!({ "sub": sub }));
        let r = post(&app, &svid_client(&a, &user, "reports-api")).await;
        if allowed {
            r.expect_token();
        } else {
            r.expect_error(400, "unauthorized_client");
        }
    }
}

#[actix_web::test]
async fn unknown_assertion_types_are_refused() {
    let s = Spiffe::new().await;
    let user = s.h.idp.access_token(json!({}));
    let form = svid_client(&assertion(&s.org, json!({})), &user, "reports-api")
        .without("client_assertion_type")
        .set(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:saml2-bearer",
        );
    let r = post(&s.app().await, &form).await;
    assert!(
        r.expect_error(401, "invalid_client")
            .contains("unsupported client_assertion_type")
    );
}

// ---------------------------------------------------------------------------------------------
// The JWT-SVID output kind.

#[actix_web::test]
async fn jwt_svids_are_issued_for_spiffe_targets() {
    let s = Spiffe::new().await;
    let app = s.app().await;
    let a = assertion(&s.org, json!({}));
    let subject = svid(&s.org, json!({"jti": "subject-1"}));
    let form = Form::default()
        .set("grant_type", TOKEN_EXCHANGE)
        .set("client_assertion_type", JWT_SPIFFE)
        .set("client_assertion", &a)
        .set("subject_token", &subject)
        .set("subject_token_type", JWT)
        .set("requested_token_type", JWT)
        .set("audience", REPORTS);
    let r = post(&app, &form).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["issued_token_type"], JWT);
    assert_eq!(r.json["token_type"], "Bearer");
    let token = r.json["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    // JWT-SVID.md §2: alg, kid and typ only.
    let raw: Value = serde_json::from_slice(
        &base64::Engine::decode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            token.split('.').next().unwrap(),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(raw.as_object().unwrap().len(), 3, "{raw}");
    // Signed with our JWT-SVID keys, published apart: the SPIFFE bundle holds them and
    // nothing else, `/jwks` does not hold them.
    let svid_keys = published_keys_for(&app, token).await;
    let c = decode_issued(token, &svid_keys, STS_ISSUER, Some(REPORTS), false);
    let kid = header.kid.clone().unwrap();
    let jwks = get(&app, "/jwks").await.json;
    let kids = |set: &Value| -> Vec<String> {
        set["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(!kids(&jwks).contains(&kid), "a JWT-SVID key is in /jwks");
    for token_kid in kids(&jwks) {
        assert!(
            !kids(&svid_keys).contains(&token_kid),
            "a /jwks key is in the SVID bundle"
        );
    }
    assert!(decode_issued_fails(token, &jwks));
    assert_eq!(c["sub"], PROD_API);
    assert!(c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap() <= 300);
    // Another audience than the profile's is not served.
    let other = form
        .clone()
        .without("audience")
        .set("audience", "spiffe://example.org/db");
    post(&app, &other).await.expect_error(400, "invalid_target");
}

/// Whether `token` fails to verify with `jwks` (no key of its kid, or a wrong signature).
fn decode_issued_fails(token: &str, jwks: &Value) -> bool {
    std::panic::catch_unwind(|| decode_issued(token, jwks, STS_ISSUER, None, false)).is_err()
}

#[actix_web::test]
async fn jwt_svid_subjects_outside_the_profile_domains_are_not_issued() {
    let s = Spiffe::new().await;
    let profile = (
        "svid-foreign.yaml",
        r#"
name: svid-foreign
callers: [gateway]
subject: {accept: [other-svid]}
issue:
  kind: jwt-svid
  audiences: ["spiffe://example.org/reports"]
  lifetime: 5m
  options: {trust_domains: [example.org]}
"#,
    );
    write_files(&s.h.dir.path().join("profiles"), &[profile]);
    let d = s.h.dir.path();
    let entries = spiffe_entries(d);
    let app = rebuild(
        harness_config(d, "").replace("trust:\n", &entries),
        s.h.clock.clone(),
    )
    .await;
    let theirs = svid(&s.other, json!({"sub": "spiffe://other.org/billing"}));
    let form = svid_exchange(&theirs)
        .without("audience")
        .set("audience", REPORTS)
        .set("requested_token_type", JWT);
    let d = post(&app, &form).await.expect_error(400, "invalid_target");
    assert!(d.contains("trust domain this profile issues for"), "{d}");
}

#[actix_web::test]
async fn certificate_bound_profiles_need_mutual_tls() {
    let s = Spiffe::new().await;
    let user = s.h.idp.access_token(json!({}));
    let form = svid_client(&assertion(&s.org, json!({})), &user, "mtls-api");
    let d = post(&s.app().await, &form)
        .await
        .expect_error(400, "invalid_request");
    assert!(d.contains("mutual TLS"), "{d}");
}

#[actix_web::test]
async fn metadata_advertises_spiffe_jwt() {
    let s = Spiffe::new().await;
    // The SPIFFE bundle of our JWT-SVID keys exists because a profile issues JWT-SVIDs; the
    // harness without SPIFFE profiles has none.
    let bundle = get(&s.app().await, "/spiffe/bundle").await;
    assert_eq!(bundle.status, 200);
    assert_eq!(bundle.json["keys"][0]["use"], "jwt-svid");
    assert_eq!(bundle.json["keys"][0]["alg"], "ES256");
    assert_eq!(get(&s.h.app().await, "/spiffe/bundle").await.status, 404);
    let m = get(&s.app().await, "/.well-known/oauth-authorization-server")
        .await
        .json;
    let methods = m["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(methods.contains(&json!("spiffe_jwt")), "{m}");
    // No TLS listener here: no X509-SVID authentication and no certificate binding.
    assert!(!methods.contains(&json!("spiffe_x509")), "{m}");
    assert_eq!(m["tls_client_certificate_bound_access_tokens"], false);
}

// ---------------------------------------------------------------------------------------------
// Bundles from a real HTTPS bundle endpoint (`https_web`).

/// An HTTPS server on loopback answering `GET /bundle` with what the test sets.
struct BundleEndpoint {
    reply: Arc<Mutex<(u16, String)>>,
    hits: Arc<AtomicU64>,
    url: String,
    handle: actix_web::dev::ServerHandle,
}

impl BundleEndpoint {
    /// With a Web PKI server certificate from `ca` (`https_web`).
    async fn start(ca: &TestCa, body: &Value) -> Self {
        Self::start_as(ca.leaf(&LeafSpec::server()), body).await
    }

    /// Presenting `leaf` as its TLS server certificate.
    async fn start_as(leaf: crate::support::pki::Leaf, body: &Value) -> Self {
        let chain = vec![rustls::pki_types::CertificateDer::from(leaf.der.clone())];
        let key =
            rustls::pki_types::pem::PemObject::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let tls = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
        Self::start_tls(tls, body).await
    }

    /// Showing `leaf`'s certificate while signing the handshake with `key`, another key (an
    /// endpoint that copied a certificate it has no key for), over `version` only.
    async fn start_impostor(
        leaf: &crate::support::pki::Leaf,
        key: &crate::support::pki::Leaf,
        version: &'static rustls::SupportedProtocolVersion,
        body: &Value,
    ) -> Self {
        #[derive(Debug)]
        struct Fixed(Arc<rustls::sign::CertifiedKey>);
        impl rustls::server::ResolvesServerCert for Fixed {
            fn resolve(
                &self,
                _: rustls::server::ClientHello<'_>,
            ) -> Option<Arc<rustls::sign::CertifiedKey>> {
                Some(self.0.clone())
            }
        }
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let der: rustls::pki_types::PrivateKeyDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(key.key_pem.as_bytes()).unwrap();
        let signing = provider.key_provider.load_private_key(der).unwrap();
        let chain = vec![rustls::pki_types::CertificateDer::from(leaf.der.clone())];
        let certified = rustls::sign::CertifiedKey::new(chain, signing);
        let tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version])
            .unwrap()
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Fixed(Arc::new(certified))));
        Self::start_tls(tls, body).await
    }

    async fn start_tls(tls: rustls::ServerConfig, body: &Value) -> Self {
        let reply = Arc::new(Mutex::new((200, body.to_string())));
        let hits = Arc::new(AtomicU64::new(0));
        let (r, h) = (reply.clone(), hits.clone());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = actix_web::HttpServer::new(move || {
            let (r, h) = (r.clone(), h.clone());
            actix_web::App::new().route(
                "/bundle",
                actix_web::web::get().to(move || {
                    let (r, h) = (r.clone(), h.clone());
                    async move {
                        h.fetch_add(1, Ordering::SeqCst);
                        let (status, body) = r.lock().unwrap().clone();
                        actix_web::HttpResponse::build(
                            actix_web::http::StatusCode::from_u16(status).unwrap(),
                        )
                        .content_type("application/json")
                        .body(body)
                    }
                }),
            )
        })
        .workers(1)
        .listen_rustls_0_23(listener, tls)
        .unwrap()
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Self {
            reply,
            hits,
            url: format!("https://127.0.0.1:{port}/bundle"),
            handle,
        }
    }

    fn set(&self, status: u16, body: &Value) {
        *self.reply.lock().unwrap() = (status, body.to_string());
    }
}

/// The harness's service with `org-svid` reading its bundle from `url` (and `other-svid`
/// from an endpoint that never answers), trusting `ca` for outbound HTTPS.
async fn endpoint_state(h: &Harness, ca: &TestCa, url: &str) -> Arc<AppState> {
    let d = h.dir.path();
    std::fs::write(d.join("outbound-ca.pem"), ca.pem()).unwrap();
    write_files(&d.join("profiles"), &SPIFFE_PROFILES[..1]);
    let dead = format!(
        "https://127.0.0.1:{}/bundle",
        crate::end_to_end::free_port()
    );
    let entries = format!(
        "trust:\n  - {{name: org-svid, kind: jwt-svid, trust_domain: example.org, audience: \
         [\"{SUBJECT_AUD}\"], bundle: {{uri: \"{url}\"}}}}\n  - {{name: other-svid, kind: \
         jwt-svid, trust_domain: other.org, audience: [\"{SUBJECT_AUD}\"], bundle: {{uri: \
         \"{dead}\"}}}}\n"
    );
    let extra = format!("outbound_ca_file: {}/outbound-ca.pem\n", d.display());
    let config = harness_config(d, &extra).replace("trust:\n", &entries);
    let settings = Settings::from_yaml(&config).unwrap();
    AppState::build(settings, h.clock.clone()).await.unwrap()
}

fn org_keys(state: &AppState) -> Arc<sts::app::Snapshot> {
    state.snapshot()
}

async fn load_org(state: &AppState) -> Result<(), String> {
    let snap = org_keys(state);
    let keys = snap.trust.get("org-svid").unwrap().verifier.keys().unwrap();
    keys.load().await
}

async fn metric(
    app: &impl Service<actix_http::Request, Response = ServiceResponse, Error = actix_web::Error>,
    name: &str,
    trust: &str,
) -> Option<u64> {
    let text = get(app, "/metrics").await.body;
    let prefix = format!("{name}{{trust=\"{trust}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map(|v| v.parse().unwrap())
}

#[actix_web::test]
async fn bundles_refresh_from_a_real_https_endpoint_and_fail_safe() {
    sts::install_crypto_providers();
    let h = Harness::new().await;
    let ca = TestCa::new("bundle endpoint CA");
    let old = Idp::new("spiffe://example.org", "org-1", "ES256");
    let new = Idp::new("spiffe://example.org", "org-2", "RS256");
    let endpoint =
        BundleEndpoint::start(&ca, &bundle(&[(old.jwk(), "jwt-svid")], Some(1), Some(60))).await;
    let state = endpoint_state(&h, &ca, &endpoint.url).await;
    let app = app_of(state.clone()).await;
    // Loaded at start over HTTPS, with the publisher's refresh hint and sequence.
    post(&app, &svid_exchange(&svid(&old, json!({}))))
        .await
        .expect_token();
    assert_eq!(
        metric(&app, "sts_trust_bundle_sequence", "org-svid").await,
        Some(1)
    );
    assert_eq!(
        metric(&app, "sts_trust_refresh_interval_seconds", "org-svid").await,
        Some(60)
    );
    assert_eq!(
        metric(&app, "sts_trust_keys_loaded", "org-svid").await,
        Some(1)
    );

    // Rotation: sequence 2 holds only the new key.
    endpoint.set(200, &bundle(&[(new.jwk(), "jwt-svid")], Some(2), Some(120)));
    load_org(&state).await.unwrap();
    post(&app, &svid_exchange(&svid(&new, json!({}))))
        .await
        .expect_token();
    let r = post(&app, &svid_exchange(&svid(&old, json!({})))).await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("key is unknown")
    );
    assert_eq!(
        metric(&app, "sts_trust_refresh_interval_seconds", "org-svid").await,
        Some(120)
    );

    // An older bundle (a stale replica) never replaces the installed one.
    endpoint.set(200, &bundle(&[(old.jwk(), "jwt-svid")], Some(1), None));
    let e = load_org(&state).await.unwrap_err();
    assert!(e.contains("older"), "{e}");
    post(&app, &svid_exchange(&svid(&new, json!({}))))
        .await
        .expect_token();

    // The endpoint fails: the last good bundle stays, and the failure is counted.
    let failures = metric(&app, "sts_trust_key_load_failures_total", "org-svid")
        .await
        .unwrap();
    for (status, body) in [
        (500, json!({"error": "down"})),
        (200, json!({"no": "keys"})),
    ] {
        endpoint.set(status, &body);
        assert!(load_org(&state).await.is_err());
        post(&app, &svid_exchange(&svid(&new, json!({}))))
            .await
            .expect_token();
    }
    assert_eq!(
        metric(&app, "sts_trust_key_load_failures_total", "org-svid").await,
        Some(failures + 2)
    );

    // Every key revoked (an empty key set): the trust domain's SVIDs are invalid.
    endpoint.set(200, &bundle(&[], Some(3), None));
    load_org(&state).await.unwrap();
    let r = post(&app, &svid_exchange(&svid(&new, json!({})))).await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("key is unknown")
    );

    // A trust domain whose bundle never loaded fails closed, as unavailable.
    let theirs = Idp::new("spiffe://other.org", "other-1", "ES256");
    let token = svid(&theirs, json!({"sub": "spiffe://other.org/billing"}));
    let r = post(&app, &svid_exchange(&token)).await;
    r.expect_error(503, "temporarily_unavailable");
    assert_eq!(
        metric(&app, "sts_trust_keys_loaded", "other-svid").await,
        Some(0)
    );
    endpoint.handle.stop(false).await;
}

// ---------------------------------------------------------------------------------------------
// Bundles from an `https_spiffe` bundle endpoint: the server is authenticated by its X509-SVID.

const ENDPOINT_ID: &str = "spiffe://example.org/spire/server";

/// The harness's service with `org-svid` (example.org, self-serving endpoint at `url`) and
/// `other-svid` (other.org's bundle, served by example.org's endpoint at `other_url`), both
/// `https_spiffe`; `initial` is example.org's initial bundle. No outbound CA: the Web PKI has
/// no part in it.
async fn spiffe_endpoint_state(
    h: &Harness,
    initial: &Value,
    url: &str,
    other_url: &str,
) -> Arc<AppState> {
    let d = h.dir.path();
    std::fs::write(d.join("initial.bundle"), initial.to_string()).unwrap();
    write_files(&d.join("profiles"), &SPIFFE_PROFILES[..1]);
    let spiffe = |url: &str| {
        format!(
            "{{uri: \"{url}\", profile: https_spiffe, endpoint_spiffe_id: \"{ENDPOINT_ID}\", \
             endpoint_bundle: {}/initial.bundle}}",
            d.display()
        )
    };
    let entries = format!(
        "trust:\n  - {{name: org-svid, kind: jwt-svid, trust_domain: example.org, audience: \
         [\"{SUBJECT_AUD}\"], bundle: {}}}\n  - {{name: other-svid, kind: jwt-svid, \
         trust_domain: other.org, audience: [\"{SUBJECT_AUD}\"], bundle: {}}}\n",
        spiffe(url),
        spiffe(other_url)
    );
    let config = harness_config(d, "").replace("trust:\n", &entries);
    let settings = Settings::from_yaml(&config).unwrap();
    AppState::build(settings, h.clock.clone()).await.unwrap()
}

async fn load_entry(state: &AppState, name: &str) -> Result<(), String> {
    let snap = state.snapshot();
    let keys = snap.trust.get(name).unwrap().verifier.keys().unwrap();
    keys.load().await
}

#[actix_web::test]
async fn an_https_spiffe_endpoint_is_authenticated_by_its_svid() {
    sts::install_crypto_providers();
    let h = Harness::new().await;
    let ca = TestCa::new("example.org X.509 authority");
    let key = Idp::new("spiffe://example.org", "org-1", "ES256");
    let theirs = Idp::new("spiffe://other.org", "other-1", "ES256");
    let initial = bundle(&[(ca.bundle_key(), "x509-svid")], Some(1), None);
    // Self-serving: example.org's endpoint serves example.org's bundle.
    let endpoint = BundleEndpoint::start_as(
        ca.leaf(&LeafSpec::svid(ENDPOINT_ID)),
        &bundle(
            &[(ca.bundle_key(), "x509-svid"), (key.jwk(), "jwt-svid")],
            Some(2),
            None,
        ),
    )
    .await;
    // Not self-serving: the same trust domain's endpoint serves other.org's bundle, and is
    // authenticated with example.org's bundle file whatever other.org's bundle says.
    let other_ca = TestCa::new("other.org X.509 authority");
    let other = BundleEndpoint::start_as(
        ca.leaf(&LeafSpec::svid(ENDPOINT_ID)),
        &bundle(
            &[
                (theirs.jwk(), "jwt-svid"),
                (other_ca.bundle_key(), "x509-svid"),
            ],
            Some(1),
            None,
        ),
    )
    .await;
    let state = spiffe_endpoint_state(&h, &initial, &endpoint.url, &other.url).await;
    let app = app_of(state.clone()).await;
    post(&app, &svid_exchange(&svid(&key, json!({}))))
        .await
        .expect_token();
    let token = svid(&theirs, json!({"sub": "spiffe://other.org/billing"}));
    post(&app, &svid_exchange(&token)).await.expect_token();
    // other.org's authorities never authenticate example.org's endpoint: the next fetches
    // still use example.org's bundle file.
    load_entry(&state, "other-svid").await.unwrap();
    load_entry(&state, "other-svid").await.unwrap();

    // Self-serving: the bundle fetched now authenticates the endpoint. A bundle whose only
    // authority is a new one no longer vouches for the certificate the endpoint still shows.
    let rotated = TestCa::new("example.org's next authority");
    endpoint.set(
        200,
        &bundle(
            &[(rotated.bundle_key(), "x509-svid"), (key.jwk(), "jwt-svid")],
            Some(3),
            None,
        ),
    );
    load_entry(&state, "org-svid").await.unwrap();
    let hits = endpoint.hits.load(Ordering::SeqCst);
    let e = load_entry(&state, "org-svid").await.unwrap_err();
    assert!(e.contains("does not chain"), "{e}");
    assert_eq!(
        endpoint.hits.load(Ordering::SeqCst),
        hits,
        "no request after the refusal"
    );
    // The keys of the last good bundle stay.
    post(&app, &svid_exchange(&svid(&key, json!({}))))
        .await
        .expect_token();
    endpoint.handle.stop(false).await;
    other.handle.stop(false).await;
}

#[actix_web::test]
async fn an_https_spiffe_endpoint_with_another_certificate_is_refused() {
    sts::install_crypto_providers();
    let ca = TestCa::new("example.org X.509 authority");
    let key = Idp::new("spiffe://example.org", "org-1", "ES256");
    let initial = bundle(&[(ca.bundle_key(), "x509-svid")], Some(1), None);
    let served = bundle(&[(key.jwk(), "jwt-svid")], Some(2), None);
    let stranger = TestCa::new("another authority");
    for (leaf, why) in [
        // Another workload of the same trust domain.
        (
            ca.leaf(&LeafSpec::svid("spiffe://example.org/spire/agent")),
            "is not endpoint_spiffe_id",
        ),
        // The configured SPIFFE ID, from an authority the bundle does not hold.
        (
            stranger.leaf(&LeafSpec::svid(ENDPOINT_ID)),
            "does not chain",
        ),
        // A Web PKI certificate of the right authority: no SPIFFE ID.
        (ca.leaf(&LeafSpec::server()), "exactly one URI SAN"),
        // An expired X509-SVID.
        (
            ca.leaf(&LeafSpec {
                expired: true,
                ..LeafSpec::svid(ENDPOINT_ID)
            }),
            "expired",
        ),
    ] {
        let h = Harness::new().await;
        let endpoint = BundleEndpoint::start_as(leaf, &served).await;
        let state = spiffe_endpoint_state(&h, &initial, &endpoint.url, &endpoint.url).await;
        let e = load_entry(&state, "org-svid").await.unwrap_err();
        assert!(e.contains(why), "want {why}: {e}");
        assert_eq!(endpoint.hits.load(Ordering::SeqCst), 0, "{why}");
        // Nothing loaded: the trust domain's SVIDs fail closed.
        let app = app_of(state.clone()).await;
        post(&app, &svid_exchange(&svid(&key, json!({}))))
            .await
            .expect_error(503, "temporarily_unavailable");
        endpoint.handle.stop(false).await;
    }
}

/// An endpoint that shows the right X509-SVID but cannot sign with its key (it copied the
/// certificate, which is public) fails the handshake, over TLS 1.3 and 1.2.
#[actix_web::test]
async fn an_https_spiffe_endpoint_must_hold_its_svids_key() {
    sts::install_crypto_providers();
    let ca = TestCa::new("example.org X.509 authority");
    let key = Idp::new("spiffe://example.org", "org-1", "ES256");
    let initial = bundle(&[(ca.bundle_key(), "x509-svid")], Some(1), None);
    let served = bundle(&[(key.jwk(), "jwt-svid")], Some(2), None);
    let genuine = ca.leaf(&LeafSpec::svid(ENDPOINT_ID));
    let stranger = TestCa::new("another authority").leaf(&LeafSpec::svid(ENDPOINT_ID));
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let h = Harness::new().await;
        let endpoint = BundleEndpoint::start_impostor(&genuine, &stranger, version, &served).await;
        let state = spiffe_endpoint_state(&h, &initial, &endpoint.url, &endpoint.url).await;
        let e = load_entry(&state, "org-svid").await.unwrap_err();
        assert!(e.contains("failed"), "{version:?}: {e}");
        assert_eq!(endpoint.hits.load(Ordering::SeqCst), 0, "{version:?}");
        endpoint.handle.stop(false).await;
    }
    // The same endpoint with its own key is accepted (the test's server is sound).
    let h = Harness::new().await;
    let endpoint =
        BundleEndpoint::start_impostor(&genuine, &genuine, &rustls::version::TLS12, &served).await;
    let state = spiffe_endpoint_state(&h, &initial, &endpoint.url, &endpoint.url).await;
    load_entry(&state, "org-svid").await.unwrap();
    endpoint.handle.stop(false).await;
}

#[actix_web::test]
async fn https_spiffe_settings_are_checked_at_load() {
    let h = Harness::new().await;
    let d = h.dir.path();
    let ca = TestCa::new("example.org X.509 authority");
    let good = d.join("good.bundle");
    std::fs::write(
        &good,
        bundle(&[(ca.bundle_key(), "x509-svid")], None, None).to_string(),
    )
    .unwrap();
    let no_roots = d.join("no-roots.bundle");
    std::fs::write(&no_roots, bundle(&[], None, None).to_string()).unwrap();
    // An x509-svid entry whose x5c is no certificate is no authority either.
    let junk = d.join("junk.bundle");
    let junk_key = json!({"use": "x509-svid", "kty": "EC", "x5c": ["bm90IGEgY2VydGlmaWNhdGU="]});
    std::fs::write(&junk, json!({"keys": [junk_key]}).to_string()).unwrap();
    let entry = |b: &str| {
        format!("{{name: x, kind: jwt-svid, trust_domain: example.org, bundle: {{{b}}}}}")
    };
    let (good, no_roots, junk) = (good.display(), no_roots.display(), junk.display());
    for (bundle_settings, want) in [
        (
            format!("uri: \"https://a.test/b\", profile: https_spiffe, endpoint_bundle: {good}"),
            "endpoint_spiffe_id",
        ),
        (
            format!(
                "uri: \"https://a.test/b\", profile: https_spiffe, endpoint_spiffe_id: \"spiffe://example.org\", endpoint_bundle: {good}"
            ),
            "endpoint_spiffe_id",
        ),
        (
            format!(
                "uri: \"https://a.test/b\", profile: https_spiffe, endpoint_spiffe_id: \"spiffe://Example.org/server\", endpoint_bundle: {good}"
            ),
            "endpoint_spiffe_id",
        ),
        (
            format!(
                "uri: \"https://a.test/b\", profile: https_spiffe, endpoint_spiffe_id: \"{ENDPOINT_ID}\""
            ),
            "endpoint_bundle",
        ),
        (
            format!(
                "uri: \"https://a.test/b\", profile: https_spiffe, endpoint_spiffe_id: \"{ENDPOINT_ID}\", endpoint_bundle: {good}.missing"
            ),
            "endpoint_bundle",
        ),
        (
            format!(
                "uri: \"https://a.test/b\", profile: https_spiffe, endpoint_spiffe_id: \"{ENDPOINT_ID}\", endpoint_bundle: {no_roots}"
            ),
            "no x509-svid authority",
        ),
        (
            format!(
                "uri: \"https://a.test/b\", profile: https_spiffe, endpoint_spiffe_id: \"{ENDPOINT_ID}\", endpoint_bundle: {junk}"
            ),
            "no x509-svid authority",
        ),
        (
            format!(
                "file: {good}, profile: https_spiffe, endpoint_spiffe_id: \"{ENDPOINT_ID}\", endpoint_bundle: {good}"
            ),
            "set uri, not file",
        ),
        (
            format!("uri: \"https://a.test/b\", endpoint_spiffe_id: \"{ENDPOINT_ID}\""),
            "only for a bundle endpoint with profile: https_spiffe",
        ),
        (
            "uri: \"https://a.test/b\", profile: https_spifee".to_string(),
            "use one of: https_web or https_spiffe",
        ),
        (
            format!("file: {good}, uri: \"https://a.test/b\""),
            "exactly one of file or uri",
        ),
        (
            "uri: \"https://a.test/b\", refresh: 999ms".to_string(),
            "bundle.refresh",
        ),
        (
            "uri: \"https://a.test/b\", refetch_cooldown: 0s".to_string(),
            "bundle.refetch_cooldown",
        ),
    ] {
        let config = harness_config(d, "").replace(
            "trust:\n",
            &format!("trust:\n  - {}\n", entry(&bundle_settings)),
        );
        let e = match Settings::from_yaml(&config) {
            Err(e) => e.to_string(),
            Ok(settings) => AppState::build(settings, h.clock.clone())
                .await
                .err()
                .unwrap()
                .to_string(),
        };
        assert!(e.contains(want), "{bundle_settings}: {e}");
    }
    // The bounds themselves are allowed.
    let config = harness_config(d, "").replace(
        "trust:\n",
        &format!(
            "trust:\n  - {}\n",
            entry("uri: \"https://a.test/b\", refresh: 1s, refetch_cooldown: 1s")
        ),
    );
    let settings = Settings::from_yaml(&config).unwrap();
    assert!(AppState::build(settings, h.clock.clone()).await.is_ok());
}

#[actix_web::test]
async fn the_background_refresh_follows_the_refresh_hint() {
    sts::install_crypto_providers();
    let h = Harness::new().await;
    let ca = TestCa::new("bundle endpoint CA");
    let key = Idp::new("spiffe://example.org", "org-1", "ES256");
    // A 1 s hint is raised to the 5 s floor; the configured default would be 5 minutes.
    let endpoint =
        BundleEndpoint::start(&ca, &bundle(&[(key.jwk(), "jwt-svid")], Some(1), Some(1))).await;
    let state = endpoint_state(&h, &ca, &endpoint.url).await;
    state.spawn_refresh();
    let app = app_of(state.clone()).await;
    assert_eq!(
        metric(&app, "sts_trust_refresh_interval_seconds", "org-svid").await,
        Some(5)
    );
    let rotated = Idp::new("spiffe://example.org", "org-9", "ES256");
    endpoint.set(
        200,
        &bundle(&[(rotated.jwk(), "jwt-svid")], Some(2), Some(1)),
    );
    let before = endpoint.hits.load(Ordering::SeqCst);
    let deadline = Instant::now() + Duration::from_secs(15);
    while metric(&app, "sts_trust_bundle_sequence", "org-svid").await != Some(2) {
        assert!(Instant::now() < deadline, "the bundle was not refreshed");
        actix_web::rt::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(endpoint.hits.load(Ordering::SeqCst) > before);
    post(&app, &svid_exchange(&svid(&rotated, json!({}))))
        .await
        .expect_token();
    endpoint.handle.stop(false).await;
}

#[actix_web::test]
async fn bundle_settings_are_checked_at_load() {
    let h = Harness::new().await;
    let d = h.dir.path();
    for (entry, want) in [
        (
            "{name: x, kind: jwt-svid, trust_domain: example.org, bundle: {uri: \"http://127.0.0.1:9/b\"}}",
            "https",
        ),
        (
            "{name: x, kind: jwt-svid, trust_domain: example.org, bundle: {discovery: true}}",
            "`discovery` is not a known key here",
        ),
        (
            "{name: x, kind: jwt-svid, trust_domain: Example.org, bundle: {uri: \"https://a.test/b\"}}",
            "trust_domain",
        ),
        (
            "{name: x, kind: jwt-svid, trust_domain: example.org, algorithms: [EdDSA], bundle: {uri: \"https://a.test/b\"}}",
            "not a JWT-SVID algorithm",
        ),
        (
            "{name: x, kind: x509-svid, trust_domain: example.org, bundle: {uri: \"https://a.test/b\"}, audience: [a]}",
            "audience",
        ),
        (
            "{name: x, kind: jwt-svid, trust_domain: example.org, algorithms: [], bundle: {uri: \"https://a.test/b\"}}",
            "no token could ever verify",
        ),
        // Subject JWT-SVIDs and client assertions must not share an audience.
        (
            "{name: x, kind: jwt-svid, trust_domain: example.org, client_authentication: true, bundle: {uri: \"https://a.test/b\"}}",
            "list the aud values that subject JWT-SVIDs carry",
        ),
        (
            "{name: x, kind: jwt-svid, trust_domain: example.org, client_authentication: true, audience: [\"https://sts.test\"], bundle: {uri: \"https://a.test/b\"}}",
            "must not contain our issuer",
        ),
        // A second entry for a trust domain whose entry takes client assertions: an assertion
        // could pass as a subject token there.
        (
            "{name: x, kind: jwt-svid, trust_domain: example.org, client_authentication: true, audience: [\"spiffe://sts.test/x\"], bundle: {uri: \"https://a.test/b\"}}\n  - {name: y, kind: jwt-svid, trust_domain: example.org, bundle: {uri: \"https://a.test/c\"}}",
            "use one entry",
        ),
        // Certificates are asked for only by a TLS listener.
        (
            "{name: x, kind: x509-svid, trust_domain: example.org, bundle: {uri: \"https://a.test/b\"}}",
            "listener asks for none",
        ),
    ] {
        let config = harness_config(d, "").replace("trust:\n", &format!("trust:\n  - {entry}\n"));
        let settings = Settings::from_yaml(&config).unwrap();
        let e = AppState::build(settings, h.clock.clone())
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains(want), "{entry}: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// Mutual TLS with X509-SVIDs, over a real TLS socket to the real binary.

const BIN: &str = env!("CARGO_BIN_EXE_sts");

/// `sts serve` in its own process, killed when dropped.
struct TlsServer {
    child: Child,
    base: String,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The files of a TLS deployment: our server certificate (from `server_ca`), example.org's
/// bundle with `org_ca` as its X.509 authority, the corporate IdP's keys, one profile.
fn tls_deployment(
    dir: &Path,
    port: u16,
    server_ca: &TestCa,
    org_ca: &TestCa,
    other_ca: &TestCa,
    idp: &Idp,
) -> std::path::PathBuf {
    let server = server_ca.leaf(&LeafSpec::server());
    std::fs::write(dir.join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.join("server.key"), &server.key_pem).unwrap();
    let org_bundle = json!({"spiffe_sequence": 1, "keys": [org_ca.bundle_key()]});
    std::fs::write(dir.join("org-bundle.json"), org_bundle.to_string()).unwrap();
    let other_bundle = json!({"keys": [other_ca.bundle_key()]});
    std::fs::write(dir.join("other-bundle.json"), other_bundle.to_string()).unwrap();
    std::fs::write(dir.join("idp.json"), idp.jwks().to_string()).unwrap();
    write_files(&dir.join("profiles"), &SPIFFE_PROFILES[3..]);
    write_files(&dir.join("mappings"), &[]);
    let d = dir.display();
    let config = format!(
        r#"
issuer: "https://127.0.0.1:{port}"
listen: "127.0.0.1:{port}"
workers: 1
keys: {{dir: {d}/keys, alg: ES256}}
profiles: {d}/profiles
mappings: {d}/mappings
tls: {{cert: {d}/server.pem, key: {d}/server.key, client_certificates: optional}}
trust:
  - {{name: corp-idp, kind: oauth-jwt, issuer: "https://idp.test", jwks: {{file: {d}/idp.json}}}}
  - {{name: org-x509, kind: x509-svid, trust_domain: example.org, bundle: {{file: {d}/org-bundle.json}}}}
  - {{name: other-x509, kind: x509-svid, trust_domain: other.org, bundle: {{file: {d}/other-bundle.json}}}}
"#
    );
    let path = dir.join("sts.yaml");
    std::fs::write(&path, config).unwrap();
    path
}

async fn start_tls(dir: &Path, config: &Path, port: u16, server_root: &str) -> TlsServer {
    let out = std::fs::File::create(dir.join("sts.out")).unwrap();
    let err = std::fs::File::create(dir.join("sts.err")).unwrap();
    let child = Command::new(BIN)
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("RUST_LOG", "debug,sts=trace")
        .current_dir(dir)
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap();
    let server = TlsServer {
        child,
        base: format!("https://127.0.0.1:{port}"),
    };
    let client = tls_client(server_root, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        let r = client.get(format!("{}/healthz", server.base)).send().await;
        if r.is_ok_and(|r| r.status().is_success()) {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "sts did not start: {}",
        std::fs::read_to_string(dir.join("sts.err")).unwrap_or_default()
    );
}

/// A client trusting only `server_root` (PEM), presenting `identity` (certificate and key PEM).
fn tls_client(server_root: &str, identity: Option<&[u8]>) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(server_root.as_bytes()).unwrap();
    let mut b = reqwest::Client::builder()
        .tls_certs_only([ca])
        .timeout(Duration::from_secs(10));
    if let Some(pem) = identity {
        b = b.identity(reqwest::Identity::from_pem(pem).unwrap());
    }
    b.build().unwrap()
}

async fn mtls_exchange(
    server: &TlsServer,
    server_ca: &str,
    identity: Option<&[u8]>,
    client_id: Option<&str>,
    user_token: &str,
) -> (u16, Value) {
    let mut form = vec![
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token", user_token),
        ("subject_token_type", ACCESS_TOKEN),
        ("audience", "mtls-api"),
    ];
    if let Some(id) = client_id {
        form.push(("client_id", id));
    }
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let r = tls_client(server_ca, identity)
        .post(format!("{}/token", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn mutual_tls_with_x509_svids_over_a_real_socket() {
    sts::install_crypto_providers();
    let dir = tempfile::tempdir().unwrap();
    let port = crate::end_to_end::free_port();
    let server_ca = TestCa::new("sts server CA");
    let org_ca = TestCa::new("example.org");
    let foreign_ca = TestCa::new("not example.org");
    let idp = Idp::new("https://idp.test", "idp-1", "ES256");
    let other_ca = TestCa::new("other.org");
    let config = tls_deployment(dir.path(), port, &server_ca, &org_ca, &other_ca, &idp);
    let server_root = server_ca.pem();
    let server = start_tls(dir.path(), &config, port, &server_root).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let user = idp.access_token(
        json!({"aud": format!("https://127.0.0.1:{port}"), "iat": now - 5, "exp": now + 300}),
    );

    // A good X509-SVID with client_id = its SPIFFE ID: a token bound to the certificate.
    let good = org_ca.leaf(&LeafSpec::svid(PROD_API));
    let (status, body) = mtls_exchange(
        &server,
        &server_root,
        Some(&good.identity_pem()),
        Some(PROD_API),
        &user,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let jwks: Value = tls_client(&server_root, None)
        .get(format!("{}/jwks", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claims = decode_issued(&token, &jwks, &server.base, Some("mtls-api"), true);
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &good.der);
    assert_eq!(claims["cnf"]["x5t#S256"], json!(b64(digest.as_ref())));
    assert_eq!(claims["client_id"], PROD_API);

    // Every refusal is invalid_client (401) and names its reason.
    let refused = |status: u16, body: &Value, reason: &str| {
        assert_eq!(status, 401, "{body}");
        assert_eq!(body["error"], "invalid_client", "{body}");
        let d = body["error_description"].as_str().unwrap();
        assert!(d.contains(reason), "want `{reason}` in `{d}`");
    };
    let id = Some(good.identity_pem());
    let (st, b) = mtls_exchange(&server, &server_root, id.as_deref(), None, &user).await;
    refused(st, &b, "needs client_id");
    let other_id = Some("spiffe://example.org/ns/prod/sa/other");
    let (st, b) = mtls_exchange(&server, &server_root, id.as_deref(), other_id, &user).await;
    refused(st, &b, "client_id differs");
    let cases = [
        (foreign_ca.leaf(&LeafSpec::svid(PROD_API)), "does not chain"),
        // other.org's authority is trusted — for other.org only: bundles are never merged.
        (other_ca.leaf(&LeafSpec::svid(PROD_API)), "does not chain"),
        (
            org_ca.leaf(&LeafSpec {
                expired: true,
                ..LeafSpec::svid(PROD_API)
            }),
            "expired",
        ),
        (
            org_ca.leaf(&LeafSpec {
                uris: vec![PROD_API.into(), "spiffe://example.org/ns/prod/sa/b".into()],
                ..LeafSpec::svid(PROD_API)
            }),
            "exactly one URI SAN",
        ),
        (
            org_ca.leaf(&LeafSpec {
                is_ca: true,
                ..LeafSpec::svid(PROD_API)
            }),
            "CA certificate",
        ),
        (
            org_ca.leaf(&LeafSpec {
                digital_signature: false,
                ..LeafSpec::svid(PROD_API)
            }),
            "digitalSignature",
        ),
        (
            org_ca.leaf(&LeafSpec::svid("spiffe://Example.org/ns/prod/sa/api")),
            "canonical SPIFFE ID",
        ),
        (
            org_ca.leaf(&LeafSpec::svid("spiffe://third.org/ns/prod/sa/api")),
            "not from a trust domain accepted",
        ),
    ];
    for (leaf, reason) in &cases {
        let (st, b) = mtls_exchange(
            &server,
            &server_root,
            Some(&leaf.identity_pem()),
            Some(PROD_API),
            &user,
        )
        .await;
        refused(st, &b, reason);
    }
    // No certificate at all.
    let (st, b) = mtls_exchange(&server, &server_root, None, Some(PROD_API), &user).await;
    refused(st, &b, "client authentication is required");

    // Metadata over TLS advertises X509-SVID authentication and certificate binding.
    let meta: Value = tls_client(&server_root, None)
        .get(format!(
            "{}/.well-known/oauth-authorization-server",
            server.base
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let methods = meta["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(methods.contains(&json!("spiffe_x509")), "{meta}");
    assert_eq!(meta["tls_client_certificate_bound_access_tokens"], true);
    drop(server);

    // Nothing secret reached the logs: tokens, private keys.
    let logs = ["sts.out", "sts.err"]
        .iter()
        .map(|f| std::fs::read_to_string(dir.path().join(f)).unwrap_or_default())
        .collect::<String>();
    assert!(logs.contains("listening (TLS)"), "{logs}");
    for secret in [user.as_str(), token.as_str(), good.key_pem.as_str()] {
        assert!(!logs.contains(secret), "a secret is in the logs");
    }
    for leaf in &cases {
        let key_body: String = leaf.0.key_pem.lines().skip(1).take(1).collect();
        assert!(!logs.contains(&key_body));
    }
}

/// The shell block of docs/spiffe.md "Test certificates for a local trust domain", verbatim.
fn documented_certificate_commands() -> String {
    let doc = std::fs::read_to_string(repo_root().join("docs/spiffe.md")).unwrap();
    let section = doc
        .split("## Test certificates for a local trust domain")
        .nth(1)
        .unwrap();
    let start = section.find("```sh\n").unwrap() + "```sh\n".len();
    let end = section[start..].find("```").unwrap();
    section[start..start + end].to_owned()
}

#[tokio::test]
async fn the_documented_test_certificates_authenticate_a_workload() {
    sts::install_crypto_providers();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = Command::new("bash")
        .args(["-euc", &documented_certificate_commands()])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = crate::end_to_end::free_port();
    let idp = Idp::new("https://idp.test", "idp-1", "ES256");
    std::fs::write(d.join("idp.json"), idp.jwks().to_string()).unwrap();
    write_files(&d.join("profiles"), &SPIFFE_PROFILES[3..]);
    write_files(&d.join("mappings"), &[]);
    let p = d.display();
    let config = format!(
        r#"
issuer: "https://127.0.0.1:{port}"
listen: "127.0.0.1:{port}"
workers: 1
keys: {{dir: {p}/keys}}
profiles: {p}/profiles
mappings: {p}/mappings
tls: {{cert: {p}/sts.pem, key: {p}/sts.key}}
trust:
  - {{name: corp-idp, kind: oauth-jwt, issuer: "https://idp.test", jwks: {{file: {p}/idp.json}}}}
  - {{name: org-x509, kind: x509-svid, trust_domain: example.org, bundle: {{file: {p}/bundle.json}}}}
"#
    );
    std::fs::write(d.join("sts.yaml"), config).unwrap();
    let server_root = std::fs::read_to_string(d.join("sts.pem")).unwrap();
    let server = start_tls(d, &d.join("sts.yaml"), port, &server_root).await;
    let mut identity = std::fs::read(d.join("api.pem")).unwrap();
    identity.extend(std::fs::read(d.join("api.key")).unwrap());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let user = idp.access_token(json!({"aud": server.base, "iat": now - 5, "exp": now + 300}));
    let (status, reply) = mtls_exchange(
        &server,
        &server_root,
        Some(&identity),
        Some(PROD_API),
        &user,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert!(reply["access_token"].is_string());
}
