//! Client authentication: `private_key_jwt` (RFC 7523 §3 with 7523bis audience rules, single-use
//! `jti`) and `client_secret_basic` (RFC 6749 §2.3.1).

use serde_json::json;

use crate::exchange::client_assertion;
use crate::support::*;

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn with_assertion(h: &Harness, assertion: &str) -> Form {
    Form::exchange(&h.idp.access_token(json!({})))
        .no_auth()
        .set("audience", "orders-api")
        .set("client_assertion_type", ASSERTION_TYPE)
        .set("client_assertion", assertion)
}

#[actix_web::test]
async fn private_key_jwt_authenticates_and_is_single_use() {
    let h = Harness::new().await;
    let app = h.app().await;
    let a = client_assertion(&h, json!({}));
    post(&app, &with_assertion(&h, &a)).await.expect_token();
    let replay = post(&app, &with_assertion(&h, &a)).await;
    assert!(
        replay
            .expect_error(401, "invalid_client")
            .contains("already used")
    );
    assert!(!replay.body.contains(&a));
}

#[actix_web::test]
async fn assertion_audience_must_be_the_issuer_alone() {
    let h = Harness::new().await;
    let app = h.app().await;
    for aud in [
        json!(format!("{STS_ISSUER}/token")),
        json!([STS_ISSUER, "https://other.test"]),
        json!("https://other.test"),
    ] {
        let a = client_assertion(&h, json!({"aud": aud}));
        let r = post(&app, &with_assertion(&h, &a)).await;
        assert!(
            r.expect_error(401, "invalid_client").contains("audience"),
            "{aud}"
        );
    }
    let a = client_assertion(&h, json!({"aud": [STS_ISSUER]}));
    post(&app, &with_assertion(&h, &a)).await.expect_token();
}

#[actix_web::test]
async fn assertion_claims_and_keys_are_checked() {
    let h = Harness::new().await;
    let app = h.app().await;
    let cases = [
        (client_assertion(&h, json!({"jti": null})), "jti"),
        (client_assertion(&h, json!({"exp": NOW - 120})), "expired"),
        (client_assertion(&h, json!({"exp": NOW + 3600})), "too long"),
        (
            client_assertion(&h, json!({"sub": "spiffe://example.com/other"})),
            "disagree",
        ),
        (
            client_assertion(&h, json!({"iss": "gateway", "sub": "gateway"})),
            "not registered",
        ),
    ];
    for (a, why) in cases {
        let r = post(&app, &with_assertion(&h, &a)).await;
        assert!(
            r.expect_error(401, "invalid_client").contains(why),
            "{why}: {}",
            r.body
        );
    }
    let impostor = Idp::new("spiffe://example.com/workload-a", "wl-1", "ES256");
    let id = "spiffe://example.com/workload-a";
    let forged = impostor.sign_with(
        json!({"alg": "ES256", "kid": "wl-1"}),
        &json!({"iss": id, "sub": id, "aud": STS_ISSUER, "exp": NOW + 60, "jti": rand_id()}),
    );
    post(&app, &with_assertion(&h, &forged))
        .await
        .expect_error(401, "invalid_client");
    let wrong_typ = h.workload.sign_with(
        json!({"alg": "ES256", "kid": "wl-1", "typ": "at+jwt"}),
        &json!({"iss": id, "sub": id, "aud": STS_ISSUER, "exp": NOW + 60, "jti": rand_id()}),
    );
    assert!(
        post(&app, &with_assertion(&h, &wrong_typ))
            .await
            .expect_error(401, "invalid_client")
            .contains("typ")
    );
    let mismatched_id =
        with_assertion(&h, &client_assertion(&h, json!({}))).set("client_id", "gateway");
    post(&app, &mismatched_id)
        .await
        .expect_error(401, "invalid_client");
    let bad_type = Form::exchange(&h.idp.access_token(json!({})))
        .no_auth()
        .set("client_assertion_type", "urn:example:other")
        .set("client_assertion", &client_assertion(&h, json!({})));
    post(&app, &bad_type)
        .await
        .expect_error(401, "invalid_client");
}

#[actix_web::test]
async fn client_secret_basic_uses_form_urlencoded_credentials() {
    let h = Harness::new().await;
    let app = h.app().await;
    // RFC 6749 §2.3.1: id and secret are form-urlencoded before base64.
    let f = Form::exchange(&h.idp.access_token(json!({}))).set("audience", "orders-api");
    post(&app, &f).await.expect_token();
    let mut f2 = f.clone();
    f2.basic = Some(("gateway".into(), GATEWAY_SECRET.replace('-', "%2D")));
    post(&app, &f2).await.expect_token();
}
