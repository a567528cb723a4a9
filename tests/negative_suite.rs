//! The shared negative suite (design §8) for the RFC 9068 access-token verifier: every forged
//! or broken subject token is refused with `invalid_request` (RFC 8693 §2.2.2), the reason is
//! named, and the token is never echoed.

use serde_json::json;

use crate::support::*;

async fn refused(h: &Harness, subject: &str, reason: &str) {
    let app = h.app().await;
    let r = post(&app, &Form::exchange(subject).set("audience", "orders-api")).await;
    let d = r.expect_error(400, "invalid_request");
    assert!(d.contains(reason), "want `{reason}` in `{d}`");
    assert!(!r.body.contains(subject), "the token is echoed");
}

#[actix_web::test]
async fn a_valid_token_is_the_baseline() {
    let h = Harness::new().await;
    let app = h.app().await;
    let r = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({}))).set("audience", "orders-api"),
    )
    .await;
    r.expect_token();
}

#[actix_web::test]
async fn expired_beyond_leeway() {
    let h = Harness::new().await;
    refused(&h, &h.idp.access_token(json!({"exp": NOW - 61})), "expired").await;
    // Within the 60 s leeway it still passes.
    let app = h.app().await;
    post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({"exp": NOW - 30})))
            .set("audience", "orders-api"),
    )
    .await
    .expect_token();
}

#[actix_web::test]
async fn expiry_follows_the_injected_clock() {
    let h = Harness::new().await;
    let token = h.idp.access_token(json!({"exp": NOW + 100}));
    let app = h.app().await;
    post(&app, &Form::exchange(&token).set("audience", "orders-api"))
        .await
        .expect_token();
    h.clock.advance(200);
    let r = post(&app, &Form::exchange(&token).set("audience", "orders-api")).await;
    assert!(r.expect_error(400, "invalid_request").contains("expired"));
}

#[actix_web::test]
async fn not_yet_valid_and_issued_in_the_future() {
    let h = Harness::new().await;
    refused(
        &h,
        &h.idp.access_token(json!({"nbf": NOW + 300})),
        "not yet valid",
    )
    .await;
    refused(
        &h,
        &h.idp.access_token(json!({"iat": NOW + 300})),
        "issued in the future",
    )
    .await;
}

#[actix_web::test]
async fn missing_or_malformed_required_claims() {
    let h = Harness::new().await;
    refused(
        &h,
        &h.idp.access_token(json!({"exp": null})),
        "required claim: exp",
    )
    .await;
    refused(
        &h,
        &h.idp.access_token(json!({"sub": null})),
        "required claim: sub",
    )
    .await;
    refused(
        &h,
        &h.idp.access_token(json!({"exp": "soon"})),
        "malformed: exp",
    )
    .await;
    refused(
        &h,
        &h.idp.access_token(json!({"act": "svc"})),
        "malformed: act",
    )
    .await;
}

#[actix_web::test]
async fn wrong_audience() {
    let h = Harness::new().await;
    refused(
        &h,
        &h.idp
            .access_token(json!({"aud": "https://someone-else.test"})),
        "audience",
    )
    .await;
    refused(
        &h,
        &h.idp
            .access_token(json!({"aud": ["https://a.test", "https://b.test"]})),
        "audience",
    )
    .await;
    refused(&h, &h.idp.access_token(json!({"aud": null})), "audience").await;
}

#[actix_web::test]
async fn wrong_issuer() {
    let h = Harness::new().await;
    // Signed by a trusted key but claiming another issuer: the issuer picks no source.
    refused(
        &h,
        &h.idp.access_token(json!({"iss": "https://evil.test"})),
        "issuer",
    )
    .await;
    // Signed by the mesh key but claiming the corp issuer: the corp keys do not verify it.
    let forged = h.mesh.sign_with(
        json!({"alg": "EdDSA", "typ": "at+jwt", "kid": "idp-1"}),
        &h.idp.claims(json!({})),
    );
    refused(&h, &forged, "").await;
}

#[actix_web::test]
async fn bad_signature() {
    let h = Harness::new().await;
    let token = h.idp.access_token(json!({}));
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut sig = URL_SAFE_NO_PAD_DECODE(sig);
    sig[10] ^= 0x01;
    refused(&h, &format!("{rest}.{}", b64(&sig)), "signature is invalid").await;
    // A signature from another key of the same type, with the trusted kid.
    let other = Idp::new("https://idp.test", "idp-1", "ES256");
    refused(&h, &other.access_token(json!({})), "signature is invalid").await;
}

#[allow(non_snake_case)]
fn URL_SAFE_NO_PAD_DECODE(s: &str) -> Vec<u8> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

#[actix_web::test]
async fn unknown_kid() {
    let h = Harness::new().await;
    let other = Idp::new("https://idp.test", "not-published", "ES256");
    refused(&h, &other.access_token(json!({})), "signing key is unknown").await;
}

#[actix_web::test]
async fn alg_none() {
    let h = Harness::new().await;
    let claims = h.idp.claims(json!({}));
    let token = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "at+jwt"})
            .to_string()
            .as_bytes()),
        b64(claims.to_string().as_bytes())
    );
    refused(&h, &token, "algorithm is not accepted").await;
}

#[actix_web::test]
async fn hs256_signed_with_the_public_key() {
    let h = Harness::new().await;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.typ = Some("at+jwt".into());
    header.kid = Some("idp-1".into());
    let key = jsonwebtoken::EncodingKey::from_secret(&h.idp.public_key_bytes());
    let token = jsonwebtoken::encode(&header, &h.idp.claims(json!({})), &key).unwrap();
    refused(&h, &token, "algorithm is not accepted").await;
}

#[actix_web::test]
async fn alg_outside_the_entry_allowlist() {
    let h = Harness::new().await;
    // legacy-idp allows RS256 only; an EdDSA token claiming its issuer is refused before keys.
    let ed = Idp::new("https://legacy.test", "legacy-1", "EdDSA");
    refused(&h, &ed.access_token(json!({})), "algorithm is not accepted").await;
}

#[actix_web::test]
async fn wrong_typ() {
    let h = Harness::new().await;
    for typ in [
        json!("JWT"),
        json!("wit+jwt"),
        json!("txntoken+jwt"),
        serde_json::Value::Null,
    ] {
        let mut header = json!({"alg": "ES256", "kid": "idp-1"});
        if !typ.is_null() {
            header["typ"] = typ;
        }
        refused(
            &h,
            &h.idp.sign_with(header, &h.idp.claims(json!({}))),
            "typ",
        )
        .await;
    }
    // `application/at+jwt` is the same type (RFC 7515 §4.1.9).
    let ok = h.idp.sign_with(
        json!({"alg": "ES256", "kid": "idp-1", "typ": "application/AT+JWT"}),
        &h.idp.claims(json!({})),
    );
    let app = h.app().await;
    post(&app, &Form::exchange(&ok).set("audience", "orders-api"))
        .await
        .expect_token();
}

#[actix_web::test]
async fn legacy_untyped_tokens_only_where_allowed() {
    let h = Harness::new().await;
    let app = h.app().await;
    let untyped = h.legacy.sign_with(
        json!({"alg": "RS256", "typ": "JWT", "kid": "legacy-1"}),
        &h.legacy.claims(json!({})),
    );
    post(
        &app,
        &Form::exchange(&untyped).set("audience", "orders-api"),
    )
    .await
    .expect_token();
}

#[actix_web::test]
async fn oversized() {
    let h = Harness::new().await;
    let big = h.idp.access_token(json!({"padding": "x".repeat(20_000)}));
    let app = h.app().await;
    let r = post(&app, &Form::exchange(&big).set("audience", "orders-api")).await;
    assert!(r.expect_error(400, "invalid_request").contains("too large"));
    assert!(!r.body.contains(&big));
}

#[actix_web::test]
async fn malformed_compact_serialization() {
    let h = Harness::new().await;
    let header = b64(br#"{"alg":"ES256","typ":"at+jwt","kid":"idp-1"}"#);
    refused(&h, "not-a-jwt", "not a compact JWS").await;
    refused(&h, "a.b.c.d.e", "encrypted").await;
    refused(&h, &format!("{header}.!!!.sig"), "base64url").await;
    refused(
        &h,
        &format!("{header}.{}.c2ln", b64(b"{not json")),
        "claims are invalid",
    )
    .await;
    refused(
        &h,
        &format!("{}.{}.c2ln", b64(b"[1]"), b64(b"{}")),
        "header is invalid",
    )
    .await;
    refused(&h, &format!("{header}=.{}.c2ln", b64(b"{}")), "base64url").await;
}

#[actix_web::test]
async fn duplicate_json_keys_even_when_signed() {
    let h = Harness::new().await;
    let c = h.idp.claims(json!({}));
    let payload = format!(
        r#"{{"iss":"https://idp.test","sub":"alice","sub":"admin","aud":"{STS_ISSUER}","exp":{},"iat":{}}}"#,
        c["exp"], c["iat"]
    );
    let token = h
        .idp
        .sign_raw(r#"{"alg":"ES256","typ":"at+jwt","kid":"idp-1"}"#, &payload);
    refused(&h, &token, "duplicate").await;
    let dup_header = h.idp.sign_raw(
        r#"{"alg":"ES256","alg":"none","typ":"at+jwt","kid":"idp-1"}"#,
        &c.to_string(),
    );
    refused(&h, &dup_header, "duplicate").await;
}

#[actix_web::test]
async fn crit_headers_and_embedded_keys_are_not_honoured() {
    let h = Harness::new().await;
    let claims = h.idp.claims(json!({}));
    let crit = h.idp.sign_with(
        json!({"alg": "ES256", "typ": "at+jwt", "kid": "idp-1", "crit": ["exp"]}),
        &claims,
    );
    refused(&h, &crit, "critical").await;
    // A token carrying its own key (jwk header) signed by that key: the embedded key is ignored.
    let attacker = Idp::new("https://idp.test", "idp-1", "ES256");
    let t = attacker.sign_with(
        json!({"alg": "ES256", "typ": "at+jwt", "kid": "idp-1", "jwk": attacker.jwk()}),
        &claims,
    );
    refused(&h, &t, "signature is invalid").await;
}
