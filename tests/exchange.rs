//! Token exchange behaviour (RFC 8693 §2, RFC 9068 output): targets, scope narrowing, lifetime
//! bounds, mappings and conditions. Every issued token is checked by jsonwebtoken against the
//! published JWKS, not by the minting code.

use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn issues_an_rfc9068_token_for_the_requested_audience() {
    let h = Harness::new().await;
    let app = h.app().await;
    let subject = h.idp.access_token(json!({"email": "alice@example.com"}));
    let r = post(
        &app,
        &Form::exchange(&subject).set("audience", "orders-api"),
    )
    .await;
    let token = r.expect_token();
    assert_eq!(r.json["expires_in"], 300);
    assert_eq!(r.json["scope"], "orders:read orders:write billing:pay");
    let jwks = get(&app, "/jwks").await.json;
    let c = verify_issued(&token, &jwks, "orders-api");
    assert_eq!(c["iss"], STS_ISSUER);
    assert_eq!(c["sub"], "alice");
    assert_eq!(c["aud"], "orders-api");
    assert_eq!(c["client_id"], "gateway");
    assert_eq!(c["iat"], NOW);
    assert_eq!(c["exp"], NOW + 300);
    assert_eq!(c["email"], "alice@example.com");
    assert_eq!(
        c["origin"],
        json!({"issuer": "https://idp.test", "caller": "gateway"})
    );
    assert!(c.get("act").is_none());
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
    assert_eq!(header.kid.as_deref(), Some(h.state.snapshot().signer.kid()));
}

#[actix_web::test]
async fn every_jti_is_unique() {
    let h = Harness::new().await;
    let app = h.app().await;
    let jwks = get(&app, "/jwks").await.json;
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let t = post(
            &app,
            &Form::exchange(&h.idp.access_token(json!({}))).set("audience", "orders-api"),
        )
        .await
        .expect_token();
        assert!(
            seen.insert(
                verify_issued(&t, &jwks, "orders-api")["jti"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            )
        );
    }
}

#[actix_web::test]
async fn audience_and_resource_select_targets_the_profile_allows() {
    let h = Harness::new().await;
    let app = h.app().await;
    let jwks = get(&app, "/jwks").await.json;
    // No target: the profile's default — but only when one profile can serve the caller.
    let by_resource = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({})))
            .set("resource", "https://orders.example.com/"),
    )
    .await;
    assert_eq!(
        verify_issued(
            &by_resource.expect_token(),
            &jwks,
            "https://orders.example.com/"
        )["aud"],
        "https://orders.example.com/"
    );
    let both = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({})))
            .set("audience", "orders-api")
            .set("resource", "https://orders.example.com/"),
    )
    .await;
    assert_eq!(
        verify_issued(&both.expect_token(), &jwks, "orders-api")["aud"],
        json!(["orders-api", "https://orders.example.com/"])
    );
    let none = post(&app, &Form::exchange(&h.idp.access_token(json!({})))).await;
    assert!(
        none.expect_error(400, "invalid_target")
            .contains("name one")
    );
    let other = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({}))).set("audience", "payroll-api"),
    )
    .await;
    other.expect_error(400, "invalid_target");
    let mixed = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({})))
            .set("audience", "orders-api")
            .set("audience", "payroll-api"),
    )
    .await;
    mixed.expect_error(400, "invalid_target");
}

#[actix_web::test]
async fn a_single_profile_for_the_caller_uses_its_default_audience() {
    let h = Harness::new().await;
    let app = h.app().await;
    // workload-a matches only user-access (spiffe://example.com/*).
    let a = client_assertion(&h, json!({}));
    let form = Form::exchange(&h.idp.access_token(json!({})))
        .no_auth()
        .set(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .set("client_assertion", &a);
    let t = post(&app, &form).await.expect_token();
    let c = verify_issued(&t, &get(&app, "/jwks").await.json, "orders-api");
    assert_eq!(c["client_id"], "spiffe://example.com/workload-a");
}

pub fn client_assertion(h: &Harness, overrides: serde_json::Value) -> String {
    let id = "spiffe://example.com/workload-a";
    let mut claims = json!({"iss": id, "sub": id, "aud": STS_ISSUER, "exp": NOW + 60, "iat": NOW, "jti": rand_id()});
    merge(&mut claims, overrides);
    h.workload.sign_with(
        json!({"alg": "ES256", "kid": "wl-1", "typ": "client-authentication+jwt"}),
        &claims,
    )
}

#[actix_web::test]
async fn scope_only_narrows() {
    let h = Harness::new().await;
    let app = h.app().await;
    let subject = || {
        h.idp
            .access_token(json!({"scope": "orders:read orders:write"}))
    };
    let narrowed = post(
        &app,
        &Form::exchange(&subject())
            .set("audience", "orders-api")
            .set("scope", "orders:read"),
    )
    .await;
    narrowed.expect_token();
    assert_eq!(narrowed.json["scope"], "orders:read");
    let wider = post(
        &app,
        &Form::exchange(&subject())
            .set("audience", "orders-api")
            .set("scope", "orders:read admin"),
    )
    .await;
    wider.expect_error(400, "invalid_scope");
    // The profile's own scope expression narrows further (billing scopes only).
    let billing = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({}))).set("audience", "billing-api"),
    )
    .await;
    billing.expect_token();
    assert_eq!(billing.json["scope"], "billing:pay");
    // A subject without scope yields a token without scope, and cannot ask for one.
    let unscoped = h.idp.access_token(json!({"scope": null}));
    let r = post(
        &app,
        &Form::exchange(&unscoped).set("audience", "orders-api"),
    )
    .await;
    r.expect_token();
    assert!(r.json.get("scope").is_none());
    let unscoped = h.idp.access_token(json!({"scope": null}));
    post(
        &app,
        &Form::exchange(&unscoped)
            .set("audience", "orders-api")
            .set("scope", "orders:read"),
    )
    .await
    .expect_error(400, "invalid_scope");
}

#[actix_web::test]
async fn a_profile_scope_that_would_widen_is_refused() {
    let widen = [(
        "w.yaml",
        "name: w\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: access-token, audiences: [x], lifetime: 1m, scope: \"'orders:read admin'\"}\n",
    )];
    let h = Harness::with(&widen, &[], "").await;
    let app = h.app().await;
    let r = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({}))).set("audience", "x"),
    )
    .await;
    assert_eq!(
        r.expect_error(400, "invalid_scope"),
        "the exchange profile's scope exceeds the subject_token's scope"
    );
}

#[actix_web::test]
async fn a_requested_scope_that_narrows_to_nothing_is_refused() {
    let p = [(
        "p.yaml",
        "name: p\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: access-token, audiences: [x], lifetime: 1m, scope: \"request.scope.split(' ').filter(s, s.startsWith('billing:')).join(' ')\"}\n",
    )];
    let h = Harness::with(&p, &[], "").await;
    let app = h.app().await;
    let form = Form::exchange(&h.idp.access_token(json!({})))
        .set("audience", "x")
        .set("scope", "orders:read");
    let r = post(&app, &form).await;
    assert!(
        r.expect_error(400, "invalid_scope")
            .contains("none of the requested scope")
    );
}

#[actix_web::test]
async fn lifetime_is_bounded_by_the_profile_and_the_subject() {
    let h = Harness::new().await;
    let app = h.app().await;
    let jwks = get(&app, "/jwks").await.json;
    let short = h.idp.access_token(json!({"exp": NOW + 42}));
    let r = post(&app, &Form::exchange(&short).set("audience", "orders-api")).await;
    let c = verify_issued(&r.expect_token(), &jwks, "orders-api");
    assert_eq!(c["exp"], NOW + 42);
    assert_eq!(r.json["expires_in"], 42);
    let long = h.idp.access_token(json!({"exp": NOW + 86_400}));
    let r = post(&app, &Form::exchange(&long).set("audience", "orders-api")).await;
    assert_eq!(
        verify_issued(&r.expect_token(), &jwks, "orders-api")["exp"],
        NOW + 300
    );
}

#[actix_web::test]
async fn may_outlive_subject_when_the_profile_says_so() {
    let p = [(
        "p.yaml",
        "name: p\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: access-token, audiences: [x], lifetime: 1h, may_outlive_subject: true}\n",
    )];
    let h = Harness::with(&p, &[], "").await;
    let app = h.app().await;
    let r = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({"exp": NOW + 30}))).set("audience", "x"),
    )
    .await;
    r.expect_token();
    assert_eq!(r.json["expires_in"], 3600);
}

#[actix_web::test]
async fn subjects_signed_with_rs256_and_eddsa_verify() {
    let h = Harness::new().await;
    let app = h.app().await;
    let rs = h.legacy.access_token(json!({}));
    post(&app, &Form::exchange(&rs).set("audience", "orders-api"))
        .await
        .expect_token();
    // mesh (EdDSA) is not a subject source of user-access: refused as untrusted for it.
    let ed = h.mesh.access_token(json!({}));
    let r = post(&app, &Form::exchange(&ed).set("audience", "orders-api")).await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("issuer is not trusted")
    );
}

#[actix_web::test]
async fn eddsa_and_rs256_output_are_selectable() {
    for alg in ["EdDSA", "RS256"] {
        let h = Harness::with(TEST_PROFILES, TEST_MAPPINGS, "").await;
        // Rebuild with another signing algorithm: a key of that type is generated and signs.
        let config = harness_config(h.dir.path(), "").replace("alg: ES256", &format!("alg: {alg}"));
        let app = rebuild(config, h.clock.clone()).await;
        let t = post(
            &app,
            &Form::exchange(&h.idp.access_token(json!({}))).set("audience", "orders-api"),
        )
        .await
        .expect_token();
        let jwks = get(&app, "/jwks").await.json;
        assert_eq!(
            format!("{:?}", jsonwebtoken::decode_header(&t).unwrap().alg),
            alg
        );
        assert_eq!(verify_issued(&t, &jwks, "orders-api")["sub"], "alice");
    }
}

#[actix_web::test]
async fn conditions_gate_the_profile() {
    let h = Harness::new().await;
    let app = h.app().await;
    let actor = h.mesh.access_token(json!({"sub": "svc-admin"}));
    let no_admin = h.idp.access_token(json!({}));
    let r = post(
        &app,
        &Form::exchange(&no_admin)
            .set("audience", "admin-api")
            .set("actor_token", &actor)
            .set("actor_token_type", ACCESS_TOKEN),
    )
    .await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("conditions")
    );
    let admin = h.idp.access_token(json!({"scope": "admin"}));
    let actor = h.mesh.access_token(json!({"sub": "svc-admin"}));
    post(
        &app,
        &Form::exchange(&admin)
            .set("audience", "admin-api")
            .set("actor_token", &actor)
            .set("actor_token_type", ACCESS_TOKEN),
    )
    .await
    .expect_token();
}

#[actix_web::test]
async fn a_mapping_needing_an_absent_claim_refuses_the_subject() {
    let m = [("m.yaml", "name: m\nclaims:\n  tenant: subject.tenant\n")];
    let p = [(
        "p.yaml",
        "name: p\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\nissue: {kind: access-token, audiences: [x], lifetime: 1m, claims: m}\n",
    )];
    let h = Harness::with(&p, &m, "").await;
    let app = h.app().await;
    let r = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({}))).set("audience", "x"),
    )
    .await;
    assert!(r.expect_error(400, "invalid_request").contains("mapping"));
    let r = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({"tenant": "acme"}))).set("audience", "x"),
    )
    .await;
    let c = verify_issued(&r.expect_token(), &get(&app, "/jwks").await.json, "x");
    assert_eq!(c["tenant"], "acme");
}

#[actix_web::test]
async fn requested_token_type_must_be_one_we_issue() {
    let h = Harness::new().await;
    let app = h.app().await;
    let ok = Form::exchange(&h.idp.access_token(json!({})))
        .set("audience", "orders-api")
        .set("requested_token_type", ACCESS_TOKEN);
    post(&app, &ok).await.expect_token();
    let other = Form::exchange(&h.idp.access_token(json!({})))
        .set("audience", "orders-api")
        .set(
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:saml2",
        );
    post(&app, &other)
        .await
        .expect_error(400, "invalid_request");
}

#[actix_web::test]
async fn metadata_jwks_and_health() {
    let h = Harness::new().await;
    let app = h.app().await;
    let m = get(&app, "/.well-known/oauth-authorization-server").await;
    assert_eq!(m.status, 200);
    assert_eq!(m.json["issuer"], STS_ISSUER);
    assert_eq!(m.json["token_endpoint"], format!("{STS_ISSUER}/token"));
    assert_eq!(m.json["jwks_uri"], format!("{STS_ISSUER}/jwks"));
    assert_eq!(m.json["grant_types_supported"], json!([TOKEN_EXCHANGE]));
    assert_eq!(
        m.json["token_endpoint_auth_methods_supported"],
        json!(["private_key_jwt", "client_secret_basic"])
    );
    assert_eq!(m.json["response_types_supported"], json!([]));
    assert!(!m.body.contains("\"none\""));
    let jwks = get(&app, "/jwks").await;
    let keys = jwks.json["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kid"], h.state.snapshot().signer.kid());
    assert!(
        keys[0].get("d").is_none(),
        "no private material is published"
    );
    assert_eq!(get(&app, "/healthz").await.status, 200);
    let ready = get(&app, "/readyz").await;
    assert_eq!(ready.status, 200, "{}", ready.body);
}
