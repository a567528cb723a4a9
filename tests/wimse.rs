//! WIMSE: Workload Identity Tokens with their Workload Proof Tokens — the specification's
//! vectors (E2, E3) with an injected clock, a WIT as client authentication and as subject
//! token through the real service, and the refusals: no proof, replayed proof, another
//! audience, another WIT, wrong `typ`, `alg` mismatch, expiry, tampering, `oth` entries,
//! non-canonical identifiers.

use std::sync::Arc;

use serde_json::{Value, json};
use sts::config::TrustEntry;
use sts::exchange::{ExchangeRequest, FormParams};
use sts::secret::Token;
use sts::store::MemoryReplayGuard;
use sts::token::{InputKind, KindEnv, Presented, RequestFacts, VerifyContext, WitKind};

use crate::support::*;

const JWT_TYPE: &str = "urn:ietf:params:oauth:token-type:jwt";
const ENDPOINT: &str = "https://sts.test/token";

// E2.1, E2.5, E3.1 and the access token of E3.4 (examples.md), verbatim.
const E2_WIT: &str = "eyJhbGciOiJFUzI1NiIsImtpZCI6Ikp1bmUgNSIsInR5cCI6IndpdCtqd3QifQ.eyJjbmYiOnsiandrIjp7ImFsZyI6IkVkRFNBIiwiY3J2IjoiRWQyNTUxOSIsImt0eSI6Ik9LUCIsIngiOiIxQ1hYdmZsTl9MVlZzSXNZWHNVdkIwM0ptbEdXZUNIcVFWdW91Q0Y5MmJnIn19LCJleHAiOjE3NDU1MTI1MTAsImlhdCI6MTc0NTUwODkxMCwianRpIjoieC1fMUNUTDJjY2EzQ1NFNGN3Yl9sIiwic3ViIjoid2ltc2U6Ly9leGFtcGxlLmNvbS9zcGVjaWZpYy13b3JrbG9hZCJ9.6KraSQUxWdl9dxFQ3Fj6dPY0Vi88OkwFwZpAIOhLeq6AbXAnLLQgOp8U9UDGcBuYF3KiNv6oKQD1ZWAzrMZOJw";
const E2_ISSUER_KEY: &str = r#"{"kty":"EC","kid":"June 5","crv":"P-256","x":"kXqnA2Op7hgd4zRMbw0iFcc_hDxUxhojxOFVGjE2gks","y":"n__VndPMR021-59UAs0b9qDTFT-EZtT6xSNs_xFskLo"}"#;
const E3_WPT: &str = "eyJhbGciOiJFZERTQSIsInR5cCI6IndwdCtqd3QifQ.eyJhdGgiOiJDTDR3amZwUm1OZi1iZFlJYllMblY5ZDVyTUFSR3dLWUUxMHdVd3pDMGpJIiwiYXVkIjoiaHR0cHM6Ly93b3JrbG9hZC5leGFtcGxlLmNvbS9wYXRoIiwiZXhwIjoxNzQ1NTEwMDE2LCJqdGkiOiJfX2J3YzRFU0MzYWNjMkxUQzEtX3giLCJ3dGgiOiJBYVlVZkMzNEQxZGkyRnhRTHBpSUpKN1NnOFZaNm84T0Nkd1NmOUlUb0xnIn0.PI7d9AcYhLoEgPgbJvcM132lkBKnM1NXU-5hZUzVTIyj2dRJaTLFs6e5NYv5gg6AqcV7NvkYCwfgMgWasWQzCA";
const E3_ACCESS_TOKEN: &str = "16_mAd0GiwaZokU26_0902100";
/// Between the E2 WIT's iat (1745508910) and the E3 WPT's exp (1745510016).
const E_NOW: i64 = 1_745_510_000;

fn hash(token: &str) -> String {
    b64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

/// A `wit` entry for the E2 trust domain, its keys loaded from a file.
async fn e2_verifier(dir: &std::path::Path) -> Arc<dyn sts::token::Verifier> {
    let jwks = dir.join("e2.json");
    std::fs::write(&jwks, format!(r#"{{"keys":[{E2_ISSUER_KEY}]}}"#)).unwrap();
    let entry = TrustEntry::new(
        "e2",
        "wit",
        json!({"trust_domain": "example.com", "jwks": {"file": jwks}, "algorithms": ["ES256"]}),
    );
    let http = sts::trust::HttpFetcher::new(std::time::Duration::from_secs(1)).unwrap();
    let env = KindEnv {
        our_issuer: STS_ISSUER,
        trust_domain: "example.com",
        own_keys: &sts::trust::OwnKeys::empty(),
        http: &http,
    };
    let v = WitKind.configure(&entry, &env).unwrap();
    v.keys().unwrap().load().await.unwrap();
    v
}

fn request_with_access_token(token: &str) -> ExchangeRequest {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("subject_token", token),
            ("subject_token_type", ACCESS_TOKEN),
        ])
        .finish();
    ExchangeRequest::from_params(
        FormParams::parse(body.as_bytes(), 32).unwrap(),
        &sts::config::Limits::default(),
    )
    .unwrap()
}

#[actix_web::test]
async fn the_specification_vectors_verify_with_an_injected_clock() {
    let dir = tempfile::tempdir().unwrap();
    let v = e2_verifier(dir.path()).await;
    // E13.1: the bindings, recomputed.
    assert_eq!(hash(E2_WIT), "AaYUfC34D1di2FxQLpiIJJ7Sg8VZ6o8OCdwSf9IToLg");
    assert_eq!(
        hash(E3_ACCESS_TOKEN),
        "CL4wjfpRmNf-bdYIbYLnV9d5rMARGwKYE10wUwzC0jI"
    );
    // E3.4: the WPT is for https://workload.example.com/path and binds the access token.
    let mut facts = RequestFacts::post("https://workload.example.com/path");
    facts.headers.push(("workload-proof-token", E3_WPT.into()));
    let exchange = request_with_access_token(E3_ACCESS_TOKEN);
    let replay = MemoryReplayGuard::new(16);
    let ctx = VerifyContext {
        now: E_NOW,
        leeway: 0,
        max_token_bytes: 16 * 1024,
        facts: &facts,
        replay: &replay,
        exchange: Some(&exchange),
        caller: None,
    };
    let wit = Token::new(E2_WIT);
    let presented = Presented::new(&wit, JWT_TYPE, 16 * 1024);
    assert!(v.recognizes(&presented));
    let verified = v.verify(presented, &ctx).await.unwrap();
    assert_eq!(
        verified.claims["sub"],
        "wimse://example.com/specific-workload"
    );
    assert_eq!(verified.claims["cnf"]["jwk"]["alg"], "EdDSA");
    // The same proof again is a replay.
    let again = v
        .verify(Presented::new(&wit, JWT_TYPE, 16 * 1024), &ctx)
        .await
        .unwrap_err();
    assert_eq!(again.to_string(), "WPT was already used");
    // After the WPT's exp (1745510016), and after the WIT's (1745512510).
    for (now, why) in [
        (1_745_510_017, "WPT is expired, not yet valid, or lacks exp"),
        (1_745_512_511, "token is expired"),
    ] {
        let replay = MemoryReplayGuard::new(16);
        let ctx = VerifyContext {
            now,
            replay: &replay,
            ..ctx
        };
        let e = v
            .verify(Presented::new(&wit, JWT_TYPE, 16 * 1024), &ctx)
            .await
            .unwrap_err();
        assert_eq!(e.to_string(), why, "at {now}");
    }
    // The WPT binds the E3.4 access token: another one in the request does not match.
    let other = request_with_access_token("another-access-token");
    let replay = MemoryReplayGuard::new(16);
    let ctx = VerifyContext {
        replay: &replay,
        exchange: Some(&other),
        caller: None,
        ..ctx
    };
    let e = v
        .verify(Presented::new(&wit, JWT_TYPE, 16 * 1024), &ctx)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "WPT ath/tth does not match a token the request carries"
    );
    // The WPT is for another audience than this endpoint.
    let mut ours = RequestFacts::post(ENDPOINT);
    ours.headers.push(("workload-proof-token", E3_WPT.into()));
    let replay = MemoryReplayGuard::new(16);
    let ctx = VerifyContext {
        facts: &ours,
        replay: &replay,
        exchange: Some(&exchange),
        caller: None,
        ..ctx
    };
    let e = v
        .verify(Presented::new(&wit, JWT_TYPE, 16 * 1024), &ctx)
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "WPT aud is not this token endpoint alone");
}

/// A WIT issuer, a workload key, and the service with a `wit` trust entry for example.com.
struct Mesh {
    h: Harness,
    issuer: Idp,
    workload: Idp,
    /// The access token the workload exchanges (its WPTs bind it with `ath`).
    subject: String,
}

impl Mesh {
    async fn new() -> Self {
        let h = Harness::new().await;
        let issuer = Idp::new("https://wit-issuer.test", "wit-1", "ES256");
        std::fs::write(
            h.dir.path().join("wit-issuer.json"),
            issuer.jwks().to_string(),
        )
        .unwrap();
        let workload = Idp::new("wl", "wl-key", "EdDSA");
        let subject = h.idp.access_token(json!({}));
        Self {
            h,
            issuer,
            workload,
            subject,
        }
    }

    async fn app(
        &self,
        client_authentication: bool,
    ) -> impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    > + use<> {
        // One trust domain string under two schemes: two trust domains, two entries.
        let entry = format!(
            "{{name: mesh-wit, kind: wit, trust_domain: example.com, client_authentication: {client_authentication}, jwks: {{file: {d}/wit-issuer.json}}}}\n  - {{name: mesh-spiffe, kind: wit, scheme: spiffe, trust_domain: example.com, jwks: {{file: {d}/wit-issuer.json}}}}",
            d = self.h.dir.path().display()
        );
        let profiles = [
            (
                "wit-callers.yaml",
                "name: wit-callers\ncallers: [\"wimse://example.com/service/*\"]\nsubject: {accept: [corp-idp]}\nissue: {kind: access-token, audiences: [payments-api], lifetime: 1m}\n",
            ),
            (
                "wit-actor.yaml",
                "name: wit-actor\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nactor: {mode: required, accept: [mesh-wit]}\nissue: {kind: access-token, audiences: [actor-api], lifetime: 1m}\n",
            ),
            (
                "wit-self.yaml",
                "name: wit-self\ncallers: [\"wimse://example.com/service/*\"]\nsubject: {accept: [mesh-wit]}\nissue: {kind: access-token, audiences: [self-api], lifetime: 1m}\n",
            ),
            (
                "wit-subjects.yaml",
                "name: wit-subjects\ncallers: [gateway]\nsubject: {accept: [mesh-wit]}\nissue: {kind: access-token, audiences: [mesh-api], lifetime: 1m}\n",
            ),
        ];
        write_files(&self.h.dir.path().join("profiles"), &profiles[1..]);
        let config = config_with_entry(&self.h, &entry, profiles[0]);
        rebuild(config, self.h.clock.clone()).await
    }

    fn wit(&self, overrides: Value) -> String {
        let mut jwk = self.workload.jwk();
        jwk["alg"] = json!("EdDSA");
        let mut claims = json!({
            "sub": "wimse://example.com/service/payments", "iss": "https://wit-issuer.test",
            "iat": NOW - 10, "exp": NOW + 3600, "jti": rand_id(), "cnf": {"jwk": jwk},
        });
        merge(&mut claims, overrides);
        self.issuer.sign_with(
            json!({"alg": "ES256", "kid": "wit-1", "typ": "wit+jwt"}),
            &claims,
        )
    }

    /// A WPT for `wit` that binds the workload's access token (`ath`; `null` removes it).
    fn wpt(&self, wit: &str, overrides: Value) -> String {
        let mut claims = json!({
            "aud": ENDPOINT, "exp": NOW + 60, "jti": rand_id(), "wth": hash(wit),
            "ath": hash(&self.subject),
        });
        merge(&mut claims, overrides);
        self.workload
            .sign_with(json!({"alg": "EdDSA", "typ": "wpt+jwt"}), &claims)
    }
}

/// A request authenticated by `wit` and `wpt` (no Basic), exchanging an access token.
fn as_workload(m: &Mesh, wit: &str, wpt: &str) -> Form {
    Form::exchange(&m.subject)
        .no_auth()
        .set("audience", "payments-api")
        .header("Workload-Identity-Token", wit)
        .header("Workload-Proof-Token", wpt)
}

#[actix_web::test]
async fn a_wit_with_its_proof_authenticates_the_workload_by_its_identifier() {
    let m = Mesh::new().await;
    let app = m.app(true).await;
    let wit = m.wit(json!({}));
    let wpt = m.wpt(&wit, json!({}));
    let token = post(&app, &as_workload(&m, &wit, &wpt))
        .await
        .expect_token();
    let claims = verify_issued(
        &token,
        &m.h.state.snapshot().signer.jwks().clone(),
        "payments-api",
    );
    assert_eq!(claims["client_id"], "wimse://example.com/service/payments");
    // The same WIT as client credential and as subject token: one WPT proves both.
    let own = m.wit(json!({}));
    let form = Form::exchange(&own)
        .no_auth()
        .without("subject_token_type")
        .set("subject_token_type", JWT_TYPE)
        .set("audience", "self-api")
        .header("Workload-Identity-Token", &own)
        .header("Workload-Proof-Token", &m.wpt(&own, json!({"ath": null})));
    let token = post(&app, &form).await.expect_token();
    let claims = verify_issued(
        &token,
        &m.h.state.snapshot().signer.jwks().clone(),
        "self-api",
    );
    assert_eq!(claims["sub"], "wimse://example.com/service/payments");
    // The same proof again: refused, at the client authentication step.
    let r = post(&app, &as_workload(&m, &wit, &wpt)).await;
    assert_eq!(
        r.expect_error(401, "invalid_client"),
        "workload credential rejected: WPT was already used"
    );
    // No proof: the WIT is not a bearer token.
    let form = Form::exchange(&m.h.idp.access_token(json!({})))
        .no_auth()
        .set("audience", "payments-api")
        .header("Workload-Identity-Token", &wit);
    assert_eq!(
        post(&app, &form).await.expect_error(401, "invalid_client"),
        "workload credential rejected: a WIT is accepted only with a Workload-Proof-Token in the same request"
    );
    // An entry that does not authenticate clients leaves the request unauthenticated.
    let app = m.app(false).await;
    let wpt = m.wpt(&wit, json!({}));
    assert_eq!(
        post(&app, &as_workload(&m, &wit, &wpt))
            .await
            .expect_error(401, "invalid_client"),
        "client authentication is required"
    );
}

#[actix_web::test]
async fn every_broken_proof_or_wit_is_refused_with_its_reason() {
    let m = Mesh::new().await;
    let app = m.app(true).await;
    let wit = m.wit(json!({}));
    let other_wit = m.wit(json!({"jti": "another"}));
    let stranger = Idp::new("x", "x", "EdDSA");
    let tamper = |t: &str| {
        let mut parts: Vec<String> = t.split('.').map(str::to_owned).collect();
        let mut claims: Value =
            serde_json::from_slice(&sts::jose::b64_decode(&parts[1]).unwrap()).unwrap();
        claims["sub"] = json!("wimse://example.com/service/admin");
        parts[1] = b64(claims.to_string().as_bytes());
        parts.join(".")
    };
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "WPT for another audience",
            wit.clone(),
            m.wpt(&wit, json!({"aud": "https://elsewhere.test/token"})),
            "WPT aud is not this token endpoint alone",
        ),
        (
            "WPT bound to another WIT",
            wit.clone(),
            m.wpt(&other_wit, json!({})),
            "WPT wth does not match the WIT",
        ),
        (
            "WPT with the wrong typ",
            wit.clone(),
            m.workload.sign_with(
                json!({"alg": "EdDSA", "typ": "JWT"}),
                &json!({"aud": ENDPOINT, "exp": NOW + 60, "jti": rand_id(), "wth": hash(&wit)}),
            ),
            "WPT typ is not wpt+jwt",
        ),
        (
            "WPT signed by another key",
            wit.clone(),
            stranger.sign_with(
                json!({"alg": "EdDSA", "typ": "wpt+jwt"}),
                &json!({"aud": ENDPOINT, "exp": NOW + 60, "jti": rand_id(), "wth": hash(&wit)}),
            ),
            "WPT signature does not verify with the WIT's key",
        ),
        (
            "WPT alg differs from cnf.jwk.alg",
            wit.clone(),
            m.h.idp.sign_with(
                json!({"alg": "ES256", "typ": "wpt+jwt"}),
                &json!({"aud": ENDPOINT, "exp": NOW + 60, "jti": rand_id(), "wth": hash(&wit)}),
            ),
            "WPT alg differs from the WIT's cnf.jwk.alg",
        ),
        (
            "expired WPT",
            wit.clone(),
            m.wpt(&wit, json!({"exp": NOW - 120})),
            "WPT is expired, not yet valid, or lacks exp",
        ),
        (
            "overlong WPT",
            wit.clone(),
            m.wpt(&wit, json!({"exp": NOW + 3600})),
            "WPT lifetime is too long",
        ),
        (
            "WPT without jti",
            wit.clone(),
            m.wpt(&wit, json!({"jti": null})),
            "WPT lacks jti",
        ),
        (
            "tampered WPT",
            wit.clone(),
            tamper(&m.wpt(&wit, json!({}))),
            "WPT signature does not verify with the WIT's key",
        ),
        (
            "WPT for this endpoint and another",
            wit.clone(),
            m.wpt(
                &wit,
                json!({"aud": [ENDPOINT, "https://elsewhere.test/token"]}),
            ),
            "WPT aud is not this token endpoint alone",
        ),
        (
            "WPT whose oth names a header the request lacks",
            wit.clone(),
            m.wpt(&wit, json!({"oth": {"x-other-token": hash("t")}})),
            "WPT oth names a token the request does not carry, or its hash differs",
        ),
        (
            "WPT whose tth names a Txn-Token the request lacks",
            wit.clone(),
            m.wpt(&wit, json!({"tth": hash("t")})),
            "WPT ath/tth does not match a token the request carries",
        ),
        (
            "expired WIT",
            m.wit(json!({"exp": NOW - 120})),
            String::new(),
            "token is expired",
        ),
        (
            "tampered WIT",
            tamper(&wit),
            String::new(),
            "token signature is invalid",
        ),
        (
            "WIT without cnf.jwk.alg",
            m.wit(json!({"cnf": {"jwk": m.workload.jwk()}})),
            String::new(),
            "WIT cnf.jwk lacks alg",
        ),
    ];
    for (what, wit, wpt, why) in cases {
        let wpt = if wpt.is_empty() {
            m.wpt(&wit, json!({}))
        } else {
            wpt
        };
        let r = post(&app, &as_workload(&m, &wit, &wpt)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(
            r.expect_error(401, "invalid_client"),
            format!("workload credential rejected: {why}"),
            "{what}"
        );
    }
    // A WIT with the wrong typ, or a non-canonical identifier, is not this entry's at all.
    for (what, bad) in [
        ("wrong WIT typ", {
            let mut jwk = m.workload.jwk();
            jwk["alg"] = json!("EdDSA");
            m.issuer.sign_with(
                json!({"alg": "ES256", "kid": "wit-1", "typ": "JWT"}),
                &json!({"sub": "wimse://example.com/service/payments", "exp": NOW + 60, "cnf": {"jwk": jwk}}),
            )
        }),
        (
            "%70ayment",
            m.wit(json!({"sub": "wimse://example.com/service/%70ayment"})),
        ),
        (
            "trailing slash",
            m.wit(json!({"sub": "wimse://example.com/service/payments/"})),
        ),
        (
            "uppercase trust domain",
            m.wit(json!({"sub": "wimse://Example.com/service/payments"})),
        ),
        (
            "another trust domain",
            m.wit(json!({"sub": "wimse://example.org/service/payments"})),
        ),
        (
            "the same trust domain under another scheme",
            m.wit(json!({"sub": "spiffe://example.com/service/payments"})),
        ),
    ] {
        let wpt = m.wpt(&bad, json!({}));
        let r = post(&app, &as_workload(&m, &bad, &wpt)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(
            r.expect_error(401, "invalid_client"),
            "client authentication is required",
            "{what}"
        );
    }
    // Two proofs in one request.
    let form = as_workload(&m, &wit, &m.wpt(&wit, json!({})))
        .header("Workload-Proof-Token", &m.wpt(&wit, json!({})));
    assert_eq!(
        post(&app, &form).await.expect_error(401, "invalid_client"),
        "workload credential rejected: more than one Workload-Proof-Token header"
    );
    // An oth entry for a header that is carried, with its hash: accepted.
    let form = as_workload(
        &m,
        &wit,
        &m.wpt(
            &wit,
            json!({"oth": {"content-type": hash("application/x-www-form-urlencoded")}}),
        ),
    );
    post(&app, &form).await.expect_token();
    // The access token is in the request: a WPT without ath does not bind it, and is refused.
    let form = as_workload(&m, &wit, &m.wpt(&wit, json!({"ath": null})));
    assert_eq!(
        post(&app, &form).await.expect_error(401, "invalid_client"),
        "workload credential rejected: WPT lacks ath/tth for a token the request carries"
    );
    // A Txn-Token header needs tth.
    let form = as_workload(&m, &wit, &m.wpt(&wit, json!({}))).header("Txn-Token", "a-txn-token");
    assert_eq!(
        post(&app, &form).await.expect_error(401, "invalid_client"),
        "workload credential rejected: WPT lacks ath/tth for a token the request carries"
    );
    let form = as_workload(&m, &wit, &m.wpt(&wit, json!({"tth": hash("a-txn-token")})))
        .header("Txn-Token", "a-txn-token");
    post(&app, &form).await.expect_token();
}

#[actix_web::test]
async fn a_wit_as_subject_token_needs_its_proof_in_the_same_request() {
    let m = Mesh::new().await;
    let app = m.app(false).await;
    let wit = m.wit(json!({}));
    let exchange = |wpt: Option<&str>| {
        let mut f = Form::exchange(&wit)
            .without("subject_token_type")
            .set("subject_token_type", JWT_TYPE)
            .set("audience", "mesh-api");
        if let Some(p) = wpt {
            f = f.header("Workload-Proof-Token", p);
        }
        f
    };
    let token = post(&app, &exchange(Some(&m.wpt(&wit, json!({"ath": null})))))
        .await
        .expect_token();
    let claims = verify_issued(
        &token,
        &m.h.state.snapshot().signer.jwks().clone(),
        "mesh-api",
    );
    assert_eq!(claims["sub"], "wimse://example.com/service/payments");
    assert_eq!(
        post(&app, &exchange(None))
            .await
            .expect_error(400, "invalid_request"),
        "subject_token rejected: a WIT is accepted only with a Workload-Proof-Token in the same request"
    );
    // A WIT as actor token: the workload acts for the user; its WPT binds the user's token.
    let actor = m.wit(json!({}));
    let form = Form::exchange(&m.subject)
        .set("audience", "actor-api")
        .set("actor_token", &actor)
        .set("actor_token_type", JWT_TYPE)
        .header("Workload-Proof-Token", &m.wpt(&actor, json!({})));
    let token = post(&app, &form).await.expect_token();
    let claims = verify_issued(
        &token,
        &m.h.state.snapshot().signer.jwks().clone(),
        "actor-api",
    );
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["act"]["sub"], "wimse://example.com/service/payments");
    let form = Form::exchange(&m.subject)
        .set("audience", "actor-api")
        .set("actor_token", &actor)
        .set("actor_token_type", JWT_TYPE);
    assert_eq!(
        post(&app, &form).await.expect_error(400, "invalid_request"),
        "actor_token rejected: a WIT is accepted only with a Workload-Proof-Token in the same request"
    );
}

/// Decodes a WIT we issued with jsonwebtoken (not our code) against our published keys.
fn decode_wit(token: &str, jwks: &Value) -> Value {
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("wit+jwt"));
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.clone()).unwrap();
    let jwk = set.find(header.kid.as_deref().unwrap()).unwrap();
    let mut v = jsonwebtoken::Validation::new(header.alg);
    v.set_issuer(&[STS_ISSUER]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "sub"]);
    v.validate_aud = false;
    v.validate_exp = false; // the harness clock is in the real clock's future
    jsonwebtoken::decode::<Value>(
        token,
        &jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap(),
        &v,
    )
    .unwrap()
    .claims
}

#[actix_web::test]
async fn egress_identity_generalization_issues_a_service_wit_bound_to_the_proven_key() {
    let m = Mesh::new().await;
    write_files(
        &m.h.dir.path().join("mappings"),
        &[
            (
                "generalize.yaml",
                "name: generalize\nclaims:\n  sub: \"'wimse://example.com/service/' + subject.sub.split('/')[4]\"\n",
            ),
            (
                "caller-identity.yaml",
                "name: caller-identity\nclaims:\n  sub: caller.id\n",
            ),
        ],
    );
    write_files(
        &m.h.dir.path().join("profiles"),
        &[
            (
                "generalize.yaml",
                "name: generalize\ncallers: [gateway]\nsubject: {accept: [mesh-spiffe]}\nissue: {kind: wit, audiences: [\"wimse://example.com\"], lifetime: 1h, claims: generalize}\n",
            ),
            (
                "own-wit.yaml",
                "name: own-wit\ncallers: [\"wimse://example.com/service/*\"]\nsubject: {accept: [corp-idp]}\nissue: {kind: wit, audiences: [\"wimse://example.com\"], lifetime: 1h, claims: caller-identity}\n",
            ),
            (
                "unbound.yaml",
                "name: unbound\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: wit, audiences: [\"wimse://example.com\"], lifetime: 1h}\n",
            ),
        ],
    );
    let app = m.app(false).await;
    let instance = m.wit(json!({"sub": "spiffe://example.com/ns/x/pod/abc-123"}));
    let form = Form::exchange(&instance)
        .without("subject_token_type")
        .set("subject_token_type", JWT_TYPE)
        .set("audience", "wimse://example.com")
        .header(
            "Workload-Proof-Token",
            &m.wpt(&instance, json!({"ath": null})),
        );
    let r = post(&app, &form).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["issued_token_type"], JWT_TYPE);
    assert_eq!(r.json["token_type"], "N_A");
    let jwks = m.h.state.snapshot().signer.jwks().clone();
    let claims = decode_wit(r.json["access_token"].as_str().unwrap(), &jwks);
    assert_eq!(claims["sub"], "wimse://example.com/service/x");
    let mut key = m.workload.jwk();
    key["alg"] = json!("EdDSA");
    key.as_object_mut().unwrap().remove("use");
    assert_eq!(
        claims["cnf"]["jwk"], key,
        "bound to the key proven in this request"
    );
    assert!(claims.get("aud").is_none());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    // A workload authenticated by a WIT that ends in 2 minutes gets a WIT that ends with it,
    // though the profile and the subject would allow longer.
    let app = m.app(true).await;
    let short = m.wit(json!({"exp": NOW + 120}));
    let form = as_workload(&m, &short, &m.wpt(&short, json!({})))
        .without("audience")
        .set("audience", "wimse://example.com");
    let r = post(&app, &form).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json["expires_in"], 120);
    let claims = decode_wit(r.json["access_token"].as_str().unwrap(), &jwks);
    assert_eq!(claims["exp"], NOW + 120);
    assert_eq!(claims["sub"], "wimse://example.com/service/payments");
    // Nothing proven in the request (a bearer access token as subject): no WIT.
    let form =
        Form::exchange(&m.h.idp.access_token(json!({}))).set("audience", "wimse://example.com");
    assert_eq!(
        post(&app, &form).await.expect_error(400, "invalid_request"),
        "a WIT is issued only for a key the caller proves in this request"
    );
}

#[actix_web::test]
async fn sts_token_verify_says_which_entry_verified_or_why_each_refused() {
    let m = Mesh::new().await;
    let _app = m.app(true).await; // writes the profiles the configuration needs
    let entry = format!(
        "{{name: mesh-wit, kind: wit, trust_domain: example.com, jwks: {{file: {}/wit-issuer.json}}}}",
        m.h.dir.path().display()
    );
    let config =
        harness_config(m.h.dir.path(), "").replace("trust:\n", &format!("trust:\n  - {entry}\n"));
    let file = m.h.dir.path().join("verify.yaml");
    std::fs::write(&file, config).unwrap();
    let wit = m.wit(json!({}));
    let wit_file = m.h.dir.path().join("wit.jwt");
    std::fs::write(&wit_file, &wit).unwrap();
    let wpt_file = m.h.dir.path().join("wpt.jwt");
    std::fs::write(&wpt_file, m.wpt(&wit, json!({"ath": null}))).unwrap();
    let run = |extra: &[&str], at: i64| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sts"))
            .args(["token", "verify", "--config"])
            .arg(&file)
            .arg(format!("--token=@{}", wit_file.display()))
            .args(["--at", &at.to_string()])
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!text.contains(&wit), "the token is never printed");
        (out.status.code(), text)
    };
    let proof = format!("--proof=@{}", wpt_file.display());
    let (code, text) = run(&[&proof, "--type", JWT_TYPE, "--json"], NOW);
    assert_eq!(code, Some(0), "{text}");
    let report: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        report["claims"]["sub"],
        "wimse://example.com/service/payments"
    );
    assert_eq!(
        report["attempts"],
        json!([{"trust": "mesh-wit", "kind": "wit", "outcome": "verified"}])
    );
    // The proof is not used up by checking it: the same command verifies again.
    assert_eq!(run(&[&proof, "--type", JWT_TYPE], NOW).0, Some(0));
    let (code, text) = run(&["--type", JWT_TYPE], NOW);
    assert_eq!(code, Some(1));
    assert!(
        text.contains("trust entry `mesh-wit` (wit): refused: a WIT is accepted only with a Workload-Proof-Token in the same request\n"),
        "{text}"
    );
    let (code, text) = run(&[&proof], NOW + 7200);
    assert_eq!(code, Some(1));
    assert!(
        text.contains("trust entry `mesh-wit` (wit): refused: token is expired\n"),
        "{text}"
    );
    assert!(
        text.contains("trust entry `corp-idp` (oauth-jwt): not this entry's token: its issuer, typ or trust domain is not this entry's (https://idp.test)\n"),
        "{text}"
    );
}

#[actix_web::test]
async fn a_wit_svid_client_attestation_with_its_pop_authenticates_the_spiffe_workload() {
    let m = Mesh::new().await;
    // The trust domain's SPIFFE bundle: its wit-svid key is the WIT issuer's; a jwt-svid key
    // of the same bundle must not verify WIT-SVIDs.
    let jwt_svid_signer = Idp::new("jwt-svid", "jwt-1", "ES256");
    let mut wit_key = m.issuer.jwk();
    wit_key["use"] = json!("wit-svid");
    let mut jwt_key = jwt_svid_signer.jwk();
    jwt_key["use"] = json!("jwt-svid");
    std::fs::write(
        m.h.dir.path().join("example.org.bundle"),
        json!({"spiffe_sequence": 7, "keys": [jwt_key, wit_key]}).to_string(),
    )
    .unwrap();
    let entry = format!(
        "{{name: spiffe-wit, kind: wit, trust_domain: example.org, wit_svid: true, client_authentication: true, algorithms: [ES256], bundle: {{file: {}/example.org.bundle}}}}",
        m.h.dir.path().display()
    );
    let profile = (
        "spiffe-callers.yaml",
        "name: spiffe-callers\ncallers: [\"spiffe://example.org/*\"]\nsubject: {accept: [corp-idp]}\nissue: {kind: access-token, audiences: [svid-api], lifetime: 1m}\n",
    );
    let app = rebuild(config_with_entry(&m.h, &entry, profile), m.h.clock.clone()).await;
    // WIT-SVIDs use the RS/ES/PS algorithms, for their cnf keys too.
    let holder = Idp::new("svid", "svid-key", "ES256");
    let svid = |overrides: Value| {
        let mut jwk = holder.jwk();
        jwk["alg"] = json!("ES256");
        let mut claims = json!({
            "sub": "spiffe://example.org/my-oauth-client", "iat": NOW - 10, "exp": NOW + 600,
            "cnf": {"jwk": jwk},
        });
        merge(&mut claims, overrides);
        m.issuer.sign_with(
            json!({"alg": "ES256", "kid": "wit-1", "typ": "wit+jwt"}),
            &claims,
        )
    };
    let pop = |overrides: Value| {
        let mut claims = json!({"aud": STS_ISSUER, "iat": NOW, "jti": rand_id()});
        merge(&mut claims, overrides);
        holder.sign_with(
            json!({"alg": "ES256", "typ": "oauth-client-attestation-pop+jwt"}),
            &claims,
        )
    };
    let form = |attestation: &str, pop: &str| {
        Form::exchange(&m.h.idp.access_token(json!({})))
            .no_auth()
            .set("audience", "svid-api")
            .header("OAuth-Client-Attestation", attestation)
            .header("OAuth-Client-Attestation-PoP", pop)
    };
    let meta = get(&app, "/.well-known/oauth-authorization-server")
        .await
        .json;
    assert!(
        meta["token_endpoint_auth_methods_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("spiffe_wit"))
    );
    let attestation = svid(json!({}));
    let once = pop(json!({}));
    let token = post(&app, &form(&attestation, &once)).await.expect_token();
    let claims = verify_issued(
        &token,
        &m.h.state.snapshot().signer.jwks().clone(),
        "svid-api",
    );
    assert_eq!(claims["client_id"], "spiffe://example.org/my-oauth-client");
    // client_id, when sent, must be the attestation's sub.
    let r = post(
        &app,
        &form(&attestation, &pop(json!({}))).set("client_id", "spiffe://example.org/other"),
    )
    .await;
    assert_eq!(
        r.expect_error(401, "invalid_client"),
        "client_id differs from the workload credential's sub"
    );
    for (what, attestation, proof, why) in [
        (
            "replayed PoP",
            attestation.clone(),
            once.clone(),
            "client attestation PoP was already used",
        ),
        (
            "PoP for another audience",
            attestation.clone(),
            pop(json!({"aud": "https://elsewhere.test"})),
            "client attestation PoP aud must be our issuer identifier alone",
        ),
        (
            "stale PoP",
            attestation.clone(),
            pop(json!({"iat": NOW - 3600})),
            "client attestation PoP iat is not recent",
        ),
        (
            "PoP with the wrong typ",
            attestation.clone(),
            holder.sign_with(
                json!({"alg": "ES256", "typ": "wpt+jwt"}),
                &json!({"aud": STS_ISSUER, "iat": NOW, "jti": rand_id()}),
            ),
            "client attestation PoP typ is not oauth-client-attestation-pop+jwt",
        ),
        (
            "WIT-SVID without kid",
            {
                let mut jwk = m.workload.jwk();
                jwk["alg"] = json!("EdDSA");
                m.issuer.sign_with(
                json!({"alg": "ES256", "typ": "wit+jwt"}),
                &json!({"sub": "spiffe://example.org/my-oauth-client", "exp": NOW + 600, "cnf": {"jwk": jwk}}),
            )
            },
            pop(json!({})),
            "WIT-SVID lacks kid",
        ),
        (
            "WIT-SVID with aud",
            svid(json!({"aud": STS_ISSUER})),
            pop(json!({})),
            "WIT-SVID must not carry aud",
        ),
        (
            "WIT-SVID signed with the bundle's jwt-svid key",
            {
                let mut jwk = holder.jwk();
                jwk["alg"] = json!("ES256");
                jwt_svid_signer.sign_with(
                json!({"alg": "ES256", "kid": "jwt-1", "typ": "wit+jwt"}),
                &json!({"sub": "spiffe://example.org/my-oauth-client", "exp": NOW + 600, "cnf": {"jwk": jwk}}),
            )
            },
            pop(json!({})),
            "token signing key is unknown",
        ),
    ] {
        let r = post(&app, &form(&attestation, &proof)).await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        assert_eq!(
            r.expect_error(401, "invalid_client"),
            format!("workload credential rejected: {why}"),
            "{what}"
        );
    }
    // An attestation without its PoP.
    let form = Form::exchange(&m.h.idp.access_token(json!({})))
        .no_auth()
        .set("audience", "svid-api")
        .header("OAuth-Client-Attestation", &attestation);
    assert_eq!(
        post(&app, &form).await.expect_error(401, "invalid_client"),
        "workload credential rejected: a client attestation needs exactly one OAuth-Client-Attestation-PoP header"
    );
}

/// A token request signed with the WIT's key (draft-ietf-wimse-http-signature) instead of a WPT.
fn signed_request(m: &Mesh, wit: &str, params: &str, nonce: &str, body: &str) -> Form {
    use base64::Engine;
    let std64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let digest = format!(
        "sha-256=:{}:",
        std64(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, body.as_bytes()).as_ref())
    );
    let components = r#"("@method" "@request-target" "workload-identity-token" "content-type" "content-digest")"#;
    let input = format!("{components}{params};nonce=\"{nonce}\"");
    let base = format!(
        "\"@method\": POST\n\"@request-target\": /token\n\"workload-identity-token\": {wit}\n\
         \"content-type\": application/x-www-form-urlencoded\n\"content-digest\": {digest}\n\
         \"@signature-params\": {input}"
    );
    let signature = std64(&m.workload.sign_bytes(base.as_bytes()));
    Form::default()
        .header("Workload-Identity-Token", wit)
        .header("Content-Digest", &digest)
        .header("Signature-Input", &format!("wimse={input}"))
        .header("Signature", &format!("wimse=:{signature}:"))
}

#[actix_web::test]
async fn a_request_signed_with_the_wit_key_proves_possession() {
    let m = Mesh::new().await;
    let app = m.app(true).await;
    let wit = m.wit(json!({}));
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", m.subject.as_str()),
            ("subject_token_type", ACCESS_TOKEN),
            ("audience", "payments-api"),
        ])
        .finish();
    let good = format!(
        ";created={NOW};expires={};tag=\"wimse-workload-to-workload\";wimse-aud=\"{ENDPOINT}\"",
        NOW + 60
    );
    let form = signed_request(&m, &wit, &good, "n-1", &body);
    let r = post_raw(&app, &form, body.clone()).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // The same nonce again, a changed body, another audience, an overlong signature.
    let cases = [
        (
            form.clone(),
            body.clone(),
            "HTTP message signature nonce was already used",
        ),
        (
            signed_request(&m, &wit, &good, "n-2", &body),
            body.replace("payments-api", "other-api"),
            "a signed request needs a matching Content-Digest (sha-256)",
        ),
        (
            signed_request(
                &m,
                &wit,
                &good.replace(ENDPOINT, "https://elsewhere.test/token"),
                "n-3",
                &body,
            ),
            body.clone(),
            "HTTP message signature wimse-aud is not this endpoint",
        ),
        (
            signed_request(
                &m,
                &wit,
                &good.replace(
                    &format!("expires={}", NOW + 60),
                    &format!("expires={}", NOW + 3600),
                ),
                "n-4",
                &body,
            ),
            body.clone(),
            "HTTP message signature lifetime is too long",
        ),
    ];
    for (form, sent, why) in cases {
        let r = post_raw(&app, &form, sent).await;
        assert_eq!(
            r.expect_error(401, "invalid_client"),
            format!("workload credential rejected: {why}")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Txn-Token draft: a `self_signed` subject, verified with the key the WIT-authenticated caller
// proved in the same request.

const SELF_SIGNED: &str = "urn:ietf:params:oauth:token-type:self_signed";
const TXN_TYPE: &str = "urn:ietf:params:oauth:token-type:txn_token";

#[actix_web::test]
async fn a_self_signed_subject_verifies_only_with_the_callers_proven_key() {
    let m = Mesh::new().await;
    write_files(
        &m.h.dir.path().join("profiles"),
        &[(
            "self-txn.yaml",
            "name: self-txn\ncallers: [\"wimse://example.com/service/*\", gateway]\n\
             subject: {accept: [own-claims]}\n\
             issue: {kind: txn-token, audiences: [example.com], lifetime: 1m, \
             options: {subject_scope: \"orders:read orders:write\"}}\n",
        )],
    );
    let entry = format!(
        "{{name: mesh-wit, kind: wit, trust_domain: example.com, client_authentication: true, jwks: {{file: {}/wit-issuer.json}}}}\n  - {{name: own-claims, kind: self-signed}}",
        m.h.dir.path().display()
    );
    let config = config_with_entry(&m.h, &entry, ("empty.yaml", "# none\n"))
        .replace("profiles:", "trust_domain: example.com\nprofiles:");
    std::fs::remove_file(m.h.dir.path().join("profiles/empty.yaml")).unwrap();
    let app = rebuild(config, m.h.clock.clone()).await;
    let caller = "wimse://example.com/service/payments";
    let claims = |overrides: Value| {
        let mut c = json!({"iss": caller, "sub": "user-42", "aud": STS_ISSUER, "iat": NOW - 5,
                           "exp": NOW + 60, "scope": "orders:read orders:write"});
        merge(&mut c, overrides);
        c
    };
    let signed = |c: &Value| {
        m.workload
            .sign_with(json!({"alg": "EdDSA", "typ": "JWT"}), c)
    };
    let request = |subject: &str| {
        let wit = m.wit(json!({}));
        let wpt = m.wpt(&wit, json!({"ath": null}));
        Form::exchange(subject)
            .no_auth()
            .without("subject_token_type")
            .set("subject_token_type", SELF_SIGNED)
            .set("requested_token_type", TXN_TYPE)
            .set("audience", "example.com")
            .set("scope", "orders:read")
            .header("Workload-Identity-Token", &wit)
            .header("Workload-Proof-Token", &wpt)
    };
    let r = post(&app, &request(&signed(&claims(json!({}))))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    let token = r.json["access_token"].as_str().unwrap();
    let c = decode_issued(
        token,
        &jwks_of(&app).await,
        STS_ISSUER,
        Some("example.com"),
        false,
    );
    assert_eq!(c["sub"], "user-42");
    assert_eq!(c["req_wl"], caller);
    // Exactly max_age old (5 minutes, the default) is still accepted.
    let r = post(&app, &request(&signed(&claims(json!({"iat": NOW - 300}))))).await;
    assert_eq!(r.status, 200, "{}", r.body);
    // Signed by another key, issued by someone else, for another audience, too old, expired.
    let other = Idp::new("x", "other", "EdDSA");
    for (subject, want) in [
        (
            other.sign_with(json!({"alg": "EdDSA"}), &claims(json!({}))),
            "token signature is invalid",
        ),
        (
            signed(&claims(json!({"iss": "wimse://example.com/service/other"}))),
            "a self_signed token's iss must be the authenticated caller",
        ),
        (
            signed(&claims(json!({"aud": "https://elsewhere.test"}))),
            "token audience does not include this service",
        ),
        (
            signed(&claims(json!({"iat": NOW - 301}))),
            "the self_signed token is too old (iat)",
        ),
        (
            signed(&claims(json!({"exp": NOW - 3600}))),
            "token is expired",
        ),
        (
            signed(&claims(json!({"exp": null}))),
            "token lacks a required claim: exp",
        ),
        (
            m.workload
                .sign_with(json!({"alg": "EdDSA", "typ": "at+jwt"}), &claims(json!({}))),
            "token type (typ) is not accepted",
        ),
        // Not a JWS at all.
        ("no-jws-here".to_owned(), "token is not a compact JWS"),
    ] {
        let d = post(&app, &request(&subject))
            .await
            .expect_error(400, "invalid_request");
        assert_eq!(d, format!("subject_token rejected: {want}"));
    }
    // A caller that proved no key (a client secret) cannot present one at all.
    let form = Form::exchange(&signed(&claims(json!({"iss": "gateway"}))))
        .without("subject_token_type")
        .set("subject_token_type", SELF_SIGNED)
        .set("requested_token_type", TXN_TYPE)
        .set("audience", "example.com")
        .set("scope", "orders:read");
    let d = post(&app, &form).await.expect_error(400, "invalid_request");
    assert_eq!(
        d,
        "subject_token rejected: a self_signed token is accepted only from a caller that proved a key in this request"
    );
}

async fn jwks_of<S>(app: &S) -> Value
where
    S: actix_web::dev::Service<
            actix_http::Request,
            Response = actix_web::dev::ServiceResponse,
            Error = actix_web::Error,
        >,
{
    get(app, "/jwks").await.json
}
