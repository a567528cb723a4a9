//! The leak corpus's own checks: the per-request log capture really sees the service's log
//! lines, and it really fails when a credential is in them. (The scan itself runs on every
//! request the suite sends: `support::leaks`.)

use crate::support::leaks::LogCapture;
use crate::support::*;
use serde_json::json;

#[actix_web::test]
async fn the_capture_sees_refusals_and_exchanges_at_trace_level() {
    let h = Harness::new().await;
    let app = h.app().await;
    let subject = h.idp.access_token(json!({}));
    let form = Form::exchange(&subject).set("audience", "orders-api");
    let ok = post(&app, &form).await;
    let issued = ok.expect_token();
    assert!(ok.logs.contains("token exchanged"), "{}", ok.logs);
    // The line names the issued token by its `jti`, never by the token.
    let claims = verify_issued(&issued, &get(&app, "/jwks").await.json, "orders-api");
    let jti = claims["jti"].as_str().unwrap().to_owned();
    let logged = format!("issued_claim=\"jti\" issued_id=\"{jti}\"");
    assert!(ok.logs.contains(&logged), "{}", ok.logs);
    assert!(
        ok.logs.contains("\"level\":\"INFO\""),
        "the JSON format is captured too"
    );
    let wrong = form.clone().basic("gateway", "wrong-secret-value");
    let refused = post(&app, &wrong).await;
    refused.expect_error(401, "invalid_client");
    assert!(
        refused.logs.contains("client authentication failed"),
        "{}",
        refused.logs
    );
}

#[test]
#[should_panic(expected = "a credential reached the output")]
fn a_token_in_the_logs_fails_the_scan() {
    let logs = LogCapture::default();
    let token = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVzLWhlcmU";
    tracing::subscriber::with_default(logs.subscriber(), || {
        tracing::info!(reason = "oops", "refused {}", &token[..token.len() - 1]);
        tracing::debug!(sig = "c2lnbmF0dXJlLWJ5dGVzLWhlcmU", "signature only");
    });
    logs.assert_free_of(&[token.to_owned()]);
}

#[test]
#[should_panic(expected = "private key material")]
fn a_private_key_in_the_logs_fails_the_scan() {
    let logs = LogCapture::default();
    tracing::subscriber::with_default(logs.subscriber(), || {
        tracing::warn!("-----BEGIN PRIVATE KEY-----");
    });
    logs.assert_free_of(&[]);
}
