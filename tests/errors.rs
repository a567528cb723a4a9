//! Every error code of the token endpoint (RFC 6749 §5.2, RFC 8693 §2.2.2), with its status and
//! headers, and proof that no error text contains a presented token.

use serde_json::json;

use crate::support::*;

#[actix_web::test]
async fn duplicated_parameters_except_audience_and_resource() {
    let h = Harness::new().await;
    let app = h.app().await;
    let subject = h.idp.access_token(json!({}));
    let base = Form::exchange(&subject).set("audience", "orders-api");
    for (dup, value) in [
        ("grant_type", TOKEN_EXCHANGE),
        ("subject_token_type", ACCESS_TOKEN),
        ("scope", "orders:read"),
        ("requested_token_type", ACCESS_TOKEN),
        ("client_id", "gateway"),
    ] {
        let once = if base.pairs.iter().any(|(k, _)| k == dup) {
            base.clone()
        } else {
            base.clone().set(dup, value)
        };
        let r = post(&app, &once.set(dup, value)).await;
        assert!(
            r.expect_error(400, "invalid_request").contains("repeated"),
            "{dup}"
        );
    }
    let r = post(&app, &base.clone().set("subject_token", &subject)).await;
    assert!(r.expect_error(400, "invalid_request").contains("repeated"));
    assert!(!r.body.contains(&subject));
    // audience may repeat (RFC 8693 §2.1).
    post(&app, &base.clone().set("audience", "orders-api"))
        .await
        .expect_token();
}

#[actix_web::test]
async fn token_and_token_type_go_together() {
    let h = Harness::new().await;
    let app = h.app().await;
    let subject = h.idp.access_token(json!({}));
    let r = post(
        &app,
        &Form::exchange(&subject)
            .without("subject_token_type")
            .set("audience", "orders-api"),
    )
    .await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("requires subject_token_type")
    );
    let r = post(
        &app,
        &Form::exchange(&subject)
            .without("subject_token")
            .set("audience", "orders-api"),
    )
    .await;
    r.expect_error(400, "invalid_request");
    let actor = h.mesh.access_token(json!({}));
    let r = post(
        &app,
        &Form::exchange(&subject)
            .set("audience", "billing-api")
            .set("actor_token", &actor),
    )
    .await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("requires actor_token_type")
    );
    let r = post(
        &app,
        &Form::exchange(&subject)
            .set("audience", "billing-api")
            .set("actor_token_type", ACCESS_TOKEN),
    )
    .await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("without actor_token")
    );
    let r = post(
        &app,
        &Form::exchange(&subject)
            .set("audience", "orders-api")
            .set("subject_token_type", "urn:example:unknown"),
    )
    .await;
    r.expect_error(400, "invalid_request");
}

#[actix_web::test]
async fn unsupported_subject_token_type() {
    let h = Harness::new().await;
    let app = h.app().await;
    let f = Form::exchange(&h.idp.access_token(json!({})))
        .without("subject_token_type")
        .set(
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:saml2",
        )
        .set("audience", "orders-api");
    assert!(
        post(&app, &f)
            .await
            .expect_error(400, "invalid_request")
            .contains("subject_token_type is not accepted")
    );
}

#[actix_web::test]
async fn wrong_content_type() {
    let h = Harness::new().await;
    let app = h.app().await;
    let mut f = Form::exchange(&h.idp.access_token(json!({}))).set("audience", "orders-api");
    f.content_type = Some("application/json".into());
    assert!(
        post(&app, &f)
            .await
            .expect_error(400, "invalid_request")
            .contains("content type")
    );
    f.content_type = Some("application/x-www-form-urlencoded; charset=UTF-8".into());
    post(&app, &f).await.expect_token();
}

#[actix_web::test]
async fn unsupported_and_missing_grant_type() {
    let h = Harness::new().await;
    let app = h.app().await;
    let f = Form::exchange(&h.idp.access_token(json!({}))).without("grant_type");
    post(&app, &f.clone().set("grant_type", "client_credentials"))
        .await
        .expect_error(400, "unsupported_grant_type");
    post(&app, &f).await.expect_error(400, "invalid_request");
}

#[actix_web::test]
async fn an_audience_we_will_not_serve_is_invalid_target() {
    let h = Harness::new().await;
    let app = h.app().await;
    let f = Form::exchange(&h.idp.access_token(json!({}))).set("audience", "https://bank.example");
    post(&app, &f).await.expect_error(400, "invalid_target");
    let f = Form::exchange(&h.idp.access_token(json!({}))).set("resource", "not a uri");
    post(&app, &f).await.expect_error(400, "invalid_target");
}

#[actix_web::test]
async fn failed_client_authentication_is_401_with_www_authenticate() {
    let h = Harness::new().await;
    let app = h.app().await;
    let subject = h.idp.access_token(json!({}));
    for f in [
        Form::exchange(&subject).basic("gateway", "wrong-secret"),
        Form::exchange(&subject).basic("nobody", GATEWAY_SECRET),
        Form::exchange(&subject).no_auth(),
        Form::exchange(&subject).basic("spiffe://example.com/workload-a", "x"),
    ] {
        let r = post(&app, &f.set("audience", "orders-api")).await;
        r.expect_error(401, "invalid_client");
        assert!(r.headers.get("www-authenticate").is_some());
        assert!(!r.body.contains(&subject));
    }
    let r = post(
        &app,
        &Form::exchange(&subject)
            .set("client_secret", GATEWAY_SECRET)
            .no_auth(),
    )
    .await;
    r.expect_error(401, "invalid_client");
    assert!(!r.body.contains(GATEWAY_SECRET));
}

#[actix_web::test]
async fn two_authentication_methods_at_once_are_refused() {
    let h = Harness::new().await;
    let app = h.app().await;
    let f = Form::exchange(&h.idp.access_token(json!({})))
        .set(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .set("client_assertion", "x.y.z");
    post(&app, &f).await.expect_error(400, "invalid_request");
}

#[actix_web::test]
async fn a_client_no_profile_allows_is_unauthorized_client() {
    let h = Harness::new().await;
    let app = h.app().await;
    let f = Form::exchange(&h.idp.access_token(json!({})))
        .basic("lonely", "lonely-secret-0123456789")
        .set("audience", "orders-api");
    post(&app, &f)
        .await
        .expect_error(400, "unauthorized_client");
}

#[actix_web::test]
async fn malformed_scope_is_invalid_scope() {
    let h = Harness::new().await;
    let app = h.app().await;
    let f = Form::exchange(&h.idp.access_token(json!({})))
        .set("audience", "orders-api")
        .set("scope", "orders:read\"x");
    post(&app, &f).await.expect_error(400, "invalid_scope");
}

#[actix_web::test]
async fn request_size_limits() {
    let h = Harness::new().await;
    let app = h.app().await;
    let f = Form::exchange(&h.idp.access_token(json!({}))).set("audience", "orders-api");
    let r = post_raw(
        &app,
        &f,
        format!("{}&pad={}", f.body(), "x".repeat(70 * 1024)),
    )
    .await;
    r.expect_error(413, "invalid_request");
    let many = (0..40).fold(f.clone(), |f, i| f.set(&format!("p{i}"), "v"));
    assert!(
        post(&app, &many)
            .await
            .expect_error(400, "invalid_request")
            .contains("too many")
    );
}

#[actix_web::test]
async fn keys_that_never_loaded_fail_closed_with_503() {
    let h = Harness::new().await;
    // Rebuild with the corp IdP's keys at an address where nothing listens: they never load.
    let app = rebuild(unreachable_idp_keys(&h), h.clock.clone()).await;
    let r = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({}))).set("audience", "orders-api"),
    )
    .await;
    r.expect_error(503, "temporarily_unavailable");
    let ready = get(&app, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json["trust_not_loaded"], json!(1));
    assert!(!ready.body.contains("corp-idp"), "no trust entry names");
}

#[actix_web::test]
async fn client_keys_that_never_loaded_fail_closed_with_503() {
    let h = Harness::new().await;
    std::fs::remove_file(h.dir.path().join("workload.json")).unwrap();
    let app = rebuild(harness_config(h.dir.path(), ""), h.clock.clone()).await;
    let ready = get(&app, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json["clients_not_loaded"], json!(1));
    assert!(
        !ready.body.contains("workload-a"),
        "no client id is shown to anonymous callers: {}",
        ready.body
    );
    let form = Form::exchange(&h.idp.access_token(json!({})))
        .no_auth()
        .set(
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        )
        .set(
            "client_assertion",
            &crate::exchange::client_assertion(&h, json!({})),
        );
    post(&app, &form)
        .await
        .expect_error(503, "temporarily_unavailable");
}

#[actix_web::test]
async fn a_form_that_is_not_utf8_is_refused_not_repaired() {
    let h = Harness::new().await;
    let app = h.app().await;
    let subject = h.idp.access_token(json!({}));
    let f = Form::exchange(&subject).set("audience", "orders-api");
    // %FF decodes to a byte that is not UTF-8; it is refused, not replaced by U+FFFD.
    for body in [
        format!("{}&scope=orders%FF", f.body()),
        format!("{}&x%C3=1", f.body()),
    ] {
        let r = post_raw(&app, &f, body).await;
        assert!(
            r.expect_error(400, "invalid_request")
                .contains("must be UTF-8")
        );
        assert!(!r.body.contains(&subject));
    }
    // Percent-encoding and '+' still decode: an encoded scope is honoured.
    post_raw(&app, &f, format!("{}&scope=orders%3Aread", f.body()))
        .await
        .expect_token();
}

#[actix_web::test]
async fn every_refusal_logs_one_info_line_with_its_code_and_reason() {
    let h = Harness::new().await;
    let app = h.app().await;
    let ok = Form::exchange(&h.idp.access_token(json!({}))).set("audience", "orders-api");
    let mut wrong_type = ok.clone();
    wrong_type.content_type = Some("application/json".into());
    let mut bad_basic = ok.clone().no_auth();
    bad_basic
        .headers
        .push(("authorization".into(), "Basic %%%".into()));
    let cases: Vec<(Form, Option<String>, u16, &str)> = vec![
        (wrong_type, None, 400, "content type"),
        (
            ok.clone(),
            Some(format!("{}&pad={}", ok.body(), "x".repeat(70 * 1024))),
            413,
            "too large",
        ),
        (
            ok.clone().set("scope", "a").set("scope", "b"),
            None,
            400,
            "repeated",
        ),
        (
            ok.clone()
                .without("grant_type")
                .set("grant_type", "password"),
            None,
            400,
            "grant_type",
        ),
        (bad_basic, None, 401, "Basic"),
        (
            ok.clone().basic("gateway", "wrong-secret"),
            None,
            401,
            "client authentication failed",
        ),
        (
            ok.clone().set("audience", "nowhere-api"),
            None,
            400,
            "target",
        ),
    ];
    for (form, body, status, reason) in cases {
        let r = match body {
            Some(b) => post_raw(&app, &form, b).await,
            None => post(&app, &form).await,
        };
        assert_eq!(r.status, status, "{}", r.body);
        let code = r.json["error"].as_str().unwrap().to_owned();
        let lines: Vec<&str> = r
            .logs
            .lines()
            .filter(|l| l.contains(" INFO ") && !l.trim_start().starts_with('{'))
            .collect();
        assert_eq!(lines.len(), 1, "one line for `{reason}`: {lines:?}");
        assert!(lines[0].contains(&format!("error={code}")), "{}", lines[0]);
        assert!(
            lines[0].to_lowercase().contains(&reason.to_lowercase()),
            "{reason}: {}",
            lines[0]
        );
    }
}

#[actix_web::test]
async fn other_methods_on_the_token_endpoint_get_405_with_allow_post() {
    let h = Harness::new().await;
    let app = h.app().await;
    for method in [
        actix_web::http::Method::GET,
        actix_web::http::Method::HEAD,
        actix_web::http::Method::PUT,
    ] {
        let req = actix_web::test::TestRequest::default()
            .method(method.clone())
            .uri("/token")
            .to_request();
        let resp = actix_web::test::call_service(&app, req).await;
        assert_eq!(resp.status().as_u16(), 405, "{method}");
        assert_eq!(resp.headers().get("allow").unwrap(), "POST");
        assert_eq!(resp.headers().get("cache-control").unwrap(), "no-store");
        if method != actix_web::http::Method::HEAD {
            let body = actix_web::test::read_body(resp).await;
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                json,
                json!({"error": "invalid_request",
                       "error_description": "the token endpoint takes POST only"})
            );
        }
    }
}

#[actix_web::test]
async fn a_refused_exchange_names_its_profile_and_the_false_condition() {
    let h = Harness::new().await;
    let app = h.app().await;
    let form = Form::exchange(&h.idp.access_token(json!({"scope": "orders:read"})))
        .set("audience", "admin-api")
        .set(
            "actor_token",
            &h.mesh.access_token(json!({"sub": "svc-admin"})),
        )
        .set("actor_token_type", ACCESS_TOKEN);
    let r = post(&app, &form).await;
    r.expect_error(400, "invalid_request");
    let line = r
        .logs
        .lines()
        .find(|l| l.contains("exchange refused") && !l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("{}", r.logs));
    assert!(line.contains("caller=\"gateway\""), "{line}");
    assert!(line.contains("profile=\"admin\""), "{line}");
    assert!(
        line.contains("admin.yaml:") && line.contains("'admin' in subject.scope.split(' ')"),
        "the condition that returned false, with its place: {line}"
    );
    // A refusal before any profile says so.
    let r = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({}))).set("audience", "nowhere-api"),
    )
    .await;
    let line = r
        .logs
        .lines()
        .find(|l| l.contains("exchange refused"))
        .unwrap();
    assert!(
        line.contains("profile=\"-\"") || line.contains("profile=-"),
        "{line}"
    );
}

/// Every `error_description` the code can send is listed in docs/errors.md: the fixed text of
/// each constructor call (up to its first `{…}` placeholder) must appear there.
#[test]
fn errors_md_lists_every_error_description() {
    const CALLS: &[&str] = &[
        "invalid_request(",
        "invalid_client(",
        "unauthorized_client(",
        "invalid_scope(",
        "invalid_target(",
        "server_error(",
        "unavailable(",
        "failed(",
        "OAuthError::new(",
    ];
    let docs = std::fs::read_to_string(repo_root().join("docs/errors.md")).unwrap();
    let mut missing = Vec::new();
    let mut found = 0;
    let mut stack = vec![repo_root().join("sts/src")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let code = std::fs::read_to_string(&path).unwrap();
            // Unit tests may construct errors of their own.
            let code = code.split("#[cfg(test)]").next().unwrap();
            for call in CALLS {
                for (at, _) in code.match_indices(call) {
                    let Some(text) = first_literal(&code[at + call.len()..]) else {
                        continue;
                    };
                    let fixed = text.split('{').next().unwrap().trim_end_matches([' ', ':']);
                    if fixed.len() < 8 {
                        continue;
                    }
                    found += 1;
                    if !docs.contains(fixed) {
                        missing.push(format!("{}: {fixed}", path.display()));
                    }
                }
            }
        }
    }
    assert!(found > 60, "the scan finds the descriptions ({found})");
    assert!(
        missing.is_empty(),
        "not in docs/errors.md:\n{}",
        missing.join("\n")
    );
}

/// The string literal that starts the arguments (after an optional `ErrorCode::X,` and an
/// optional `format!(`), if the call's first argument is one.
fn first_literal(args: &str) -> Option<&str> {
    let mut rest = args.trim_start();
    if let Some(r) = rest.strip_prefix("ErrorCode::") {
        rest = r.split_once(',')?.1.trim_start();
    }
    if let Some(r) = rest.strip_prefix("format!(") {
        rest = r.trim_start();
    }
    let rest = rest.strip_prefix('"')?;
    rest.split_once('"').map(|(t, _)| t)
}

#[actix_web::test]
async fn startup_says_which_keys_it_waits_for_instead_of_ready() {
    use tracing::instrument::WithSubscriber;
    let h = Harness::new().await;
    let settings = sts::config::Settings::from_yaml(&unreachable_idp_keys(&h)).unwrap();
    let logs = crate::support::leaks::LogCapture::default();
    sts::app::AppState::build(settings, h.clock.clone())
        .with_subscriber(logs.subscriber())
        .await
        .unwrap();
    let text = logs.text();
    assert!(
        text.contains(
            "not ready yet (/readyz answers 503): waiting for keys of: trust entry `corp-idp`"
        ),
        "{text}"
    );
    assert!(!text.contains("ready: every key source"), "{text}");
}

#[actix_web::test]
async fn scope_rules_say_what_happened() {
    const GUARDED: &str = "has(subject.scope) ? subject.scope.split(' ').filter(s, s.startsWith('orders:')).join(' ') : null";
    const UNGUARDED: &str = "subject.scope.split(' ').filter(s, s.startsWith('orders:')).join(' ')";
    let profile = |name: &str, audience: &str, scope: &str| {
        format!(
            "name: {name}\ncallers: [gateway]\nsubject: {{accept: [corp-idp]}}\n\
             issue: {{kind: access-token, audiences: [{audience}], lifetime: 5m, scope: \"{scope}\"}}\n"
        )
    };
    let guarded = profile("guarded", "guarded-api", GUARDED);
    let unguarded = profile("unguarded", "unguarded-api", UNGUARDED);
    let h = Harness::with(
        &[("guarded.yaml", &guarded), ("unguarded.yaml", &unguarded)],
        TEST_MAPPINGS,
        "",
    )
    .await;
    let app = h.app().await;
    let no_scope = h.idp.access_token(json!({"scope": null}));
    // The documented example works on a subject without scope: a token without scope.
    let r = post(
        &app,
        &Form::exchange(&no_scope).set("audience", "guarded-api"),
    )
    .await;
    let claims = verify_issued(
        &r.expect_token(),
        &get(&app, "/jwks").await.json,
        "guarded-api",
    );
    assert!(claims.get("scope").is_none(), "{claims}");
    // Without the guard, the missing claim is named like everywhere else.
    let r = post(
        &app,
        &Form::exchange(&no_scope).set("audience", "unguarded-api"),
    )
    .await;
    assert_eq!(
        r.expect_error(400, "invalid_request"),
        "subject_token lacks a claim the exchange profile's scope needs"
    );
    // An expression that ignores the requested scope: the message says so.
    let subject = h
        .idp
        .access_token(json!({"scope": "orders:read orders:write"}));
    let r = post(
        &app,
        &Form::exchange(&subject)
            .set("audience", "guarded-api")
            .set("scope", "orders:read"),
    )
    .await;
    assert_eq!(
        r.expect_error(400, "invalid_scope"),
        "the exchange profile's scope includes scope the request did not ask for"
    );
}

/// The harness configuration with the corp IdP's keys at a loopback port where nothing listens
/// (a missing local file is a configuration error instead).
fn unreachable_idp_keys(h: &Harness) -> String {
    let config = harness_config(h.dir.path(), "");
    let file = format!("{{file: {}/idp.json}}", h.dir.path().display());
    assert!(config.contains(&file));
    config.replace(&file, "{uri: \"http://127.0.0.1:9/idp.json\"}")
}
