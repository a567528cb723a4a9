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

// ---------------------------------------------------------------------------------------------
// Failed authentication: same cost and text for unknown ids, budgets, the secret-check pool.

/// A harness service with small failure budgets, and its state.
async fn throttled(
    h: &Harness,
    per_client: u64,
    per_peer: u64,
) -> (
    std::sync::Arc<sts::app::AppState>,
    impl actix_web::dev::Service<
        actix_http::Request,
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
    >,
) {
    let extra = format!(
        "client_auth: {{failures_per_client: {per_client}, failures_per_peer: {per_peer}, \
         failure_window: 60s}}"
    );
    let settings = sts::config::Settings::from_yaml(&harness_config(h.dir.path(), &extra)).unwrap();
    let state = sts::app::AppState::build(settings, h.clock.clone())
        .await
        .unwrap();
    (state.clone(), app_of(state).await)
}

fn exchange_as(h: &Harness, id: &str, secret: &str, peer: &str) -> Form {
    Form::exchange(&h.idp.access_token(json!({})))
        .set("audience", "orders-api")
        .basic(id, secret)
        .peer(peer)
}

#[actix_web::test]
async fn unknown_client_and_wrong_secret_cost_and_read_the_same() {
    let h = Harness::new().await;
    let app = h.app().await;
    let checks = || h.state.secret_checks.checks_run();
    let mut answers = Vec::new();
    for (id, secret) in [
        ("gateway", "wrong-secret"),
        ("nobody", "wrong-secret"),
        // Registered, but for private_key_jwt: no hint that the id exists.
        ("spiffe://example.com/workload-a", "wrong-secret"),
    ] {
        let before = checks();
        let r = post(&app, &exchange_as(&h, id, secret, "10.0.0.7")).await;
        assert_eq!(
            checks(),
            before + 1,
            "{id}: one PBKDF2 check, like any other"
        );
        answers.push((r.status, r.body.clone()));
        assert!(!r.body.contains(secret));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "one status and text for all: {answers:?}"
    );
    assert!(answers[0].1.contains("client authentication failed"));
    // The correct secret runs PBKDF2 once, then the remembered digest answers.
    post(
        &app,
        &exchange_as(&h, "gateway", GATEWAY_SECRET, "10.0.0.7"),
    )
    .await
    .expect_token();
    let after_first = checks();
    post(
        &app,
        &exchange_as(&h, "gateway", GATEWAY_SECRET, "10.0.0.7"),
    )
    .await
    .expect_token();
    assert_eq!(checks(), after_first, "a known-good secret costs no PBKDF2");
}

#[actix_web::test]
async fn failed_attempts_are_limited_per_peer_with_retry_after() {
    let h = Harness::new().await;
    let (_, app) = throttled(&h, 100, 3).await;
    for _ in 0..3 {
        post(&app, &exchange_as(&h, "nobody", "x", "10.0.0.66"))
            .await
            .expect_error(401, "invalid_client");
    }
    // The peer's budget is spent: refused before any check, even with the right secret (not
    // yet checked on this process).
    let r = post(
        &app,
        &exchange_as(&h, "gateway", GATEWAY_SECRET, "10.0.0.66"),
    )
    .await;
    assert!(
        r.expect_error(429, "temporarily_unavailable")
            .contains("too many failed")
    );
    // NOW is aligned so the 60s window ends 60 - NOW % 60 seconds later.
    let retry: i64 = r
        .headers
        .get("retry-after")
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(retry, 60 - NOW.rem_euclid(60));
    assert!(!r.headers.contains_key("www-authenticate"));
    // Refusals do not pile up: the window's end frees the peer however often it retried.
    for _ in 0..5 {
        post(&app, &exchange_as(&h, "nobody", "x", "10.0.0.66"))
            .await
            .expect_error(429, "temporarily_unavailable");
    }
    // Another address is not affected; the same /64 of IPv6 is one peer.
    post(
        &app,
        &exchange_as(&h, "gateway", GATEWAY_SECRET, "10.0.0.67"),
    )
    .await
    .expect_token();
    for _ in 0..3 {
        post(&app, &exchange_as(&h, "nobody", "x", "2001:db8:0:1::1"))
            .await
            .expect_error(401, "invalid_client");
    }
    post(&app, &exchange_as(&h, "nobody", "x", "2001:db8:0:1::ffff"))
        .await
        .expect_error(429, "temporarily_unavailable");
    // A secret already checked on this process is answered at once, whatever the budgets.
    post(
        &app,
        &exchange_as(&h, "gateway", GATEWAY_SECRET, "10.0.0.66"),
    )
    .await
    .expect_token();
    // The window ends: the peer may try again.
    h.clock.set(NOW + retry);
    post(&app, &exchange_as(&h, "nobody", "x", "10.0.0.66"))
        .await
        .expect_error(401, "invalid_client");
    h.clock.set(NOW);
}

#[actix_web::test]
async fn failed_attempts_are_limited_per_client_id_across_peers() {
    let h = Harness::new().await;
    let (_, app) = throttled(&h, 3, 100).await;
    // The gateway authenticated before the attack; `lonely` did not.
    post(
        &app,
        &exchange_as(&h, "gateway", GATEWAY_SECRET, "10.0.0.1"),
    )
    .await
    .expect_token();
    // Three wrong secrets for each id, each from a different address.
    for id in ["gateway", "lonely"] {
        for i in 0..3 {
            post(&app, &exchange_as(&h, id, "guess", &format!("10.9.0.{i}")))
                .await
                .expect_error(401, "invalid_client");
        }
    }
    // Any further attempt at either id is refused before a check, from any address...
    for id in ["gateway", "lonely"] {
        post(&app, &exchange_as(&h, id, "guess", "10.9.1.1"))
            .await
            .expect_error(429, "temporarily_unavailable");
    }
    // ...including lonely's right secret, never checked on this process;
    post(
        &app,
        &exchange_as(&h, "lonely", "lonely-secret-0123456789", "10.9.1.2"),
    )
    .await
    .expect_error(429, "temporarily_unavailable");
    // but the gateway's secret, already checked, keeps working from anywhere.
    for peer in ["10.0.0.1", "10.7.7.7"] {
        post(&app, &exchange_as(&h, "gateway", GATEWAY_SECRET, peer))
            .await
            .expect_token();
    }
    // Client assertions are charged to the peer only: an id written in a form costs nothing
    // to write, so it cannot spend a client's budget.
    for _ in 0..5 {
        let form = Form::exchange(&h.idp.access_token(json!({})))
            .no_auth()
            .set("audience", "orders-api")
            .set("client_assertion_type", "urn:example:other")
            .set("client_assertion", "a.b.c")
            .set("client_id", "spiffe://example.com/workload-a")
            .peer("10.9.2.1");
        post(&app, &form).await.expect_error(401, "invalid_client");
    }
    let a = crate::exchange::client_assertion(&h, json!({}));
    post(&app, &with_assertion(&h, &a).peer("10.9.2.2"))
        .await
        .expect_token();
}

#[actix_web::test]
async fn a_flood_of_wrong_secrets_leaves_a_correct_client_flowing() {
    let h = Harness::new().await;
    let (state, app) = throttled(&h, 10, 20).await;
    post(
        &app,
        &exchange_as(&h, "gateway", GATEWAY_SECRET, "10.0.0.1"),
    )
    .await
    .expect_token();
    let before = state.secret_checks.checks_run();
    let app = &app;
    let mut last_wave = Vec::new();
    // Four waves of 100 wrong secrets at once from 5 addresses, for the gateway's id and for
    // made-up ids, each wave interleaved with 20 of the gateway's own exchanges.
    for wave in 0..4 {
        let attack: Vec<Form> = (0..100)
            .map(|i| {
                let id = if i % 2 == 0 {
                    "gateway".to_owned()
                } else {
                    format!("guess-{wave}-{i}")
                };
                exchange_as(
                    &h,
                    &id,
                    &format!("wrong-{i}"),
                    &format!("10.66.0.{}", i % 5),
                )
            })
            .collect();
        let legit: Vec<Form> = (0..20)
            .map(|_| exchange_as(&h, "gateway", GATEWAY_SECRET, "10.0.0.1"))
            .collect();
        let attack_replies = futures_util::future::join_all(
            attack.iter().map(|f| async move { post(app, f).await }),
        );
        let legit_replies =
            futures_util::future::join_all(legit.iter().map(|f| async move { post(app, f).await }));
        let (attack_replies, legit_replies) =
            futures_util::future::join(attack_replies, legit_replies).await;
        for r in &legit_replies {
            assert_eq!(
                r.status, 200,
                "the real client is never held back: {}",
                r.body
            );
        }
        for r in &attack_replies {
            // 401: checked and wrong; 429: a budget is spent; 503: more attempts were waiting
            // for a PBKDF2 thread than the queue holds.
            assert!([401, 429, 503].contains(&r.status), "{}", r.body);
        }
        last_wave = attack_replies.iter().map(|r| r.status).collect();
    }
    // By the last wave every attacking address has spent its budget.
    assert!(last_wave.iter().all(|s| *s == 429), "{last_wave:?}");
    // The PBKDF2 work bought by 400 attempts is bounded by the budgets (5 addresses x 20)
    // plus what one wave can have in the pool at once (2 threads + 64 queued).
    let work = state.secret_checks.checks_run() - before;
    assert!(work <= 5 * 20 + 66, "{work} PBKDF2 checks");
}
