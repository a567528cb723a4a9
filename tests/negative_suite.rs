//! The shared negative suite (design §8): one function, [`jws_negative_suite`], that every
//! JWS-based kind runs — RFC 9068 access tokens, OpenID Connect ID tokens and client
//! assertions. Every forged or broken token is refused with the kind's RFC error
//! (`invalid_request` for subject tokens, RFC 8693 §2.2.2; `invalid_client` for client
//! assertions, RFC 6749 §5.2), the reason is named, and the token is never echoed. The
//! kind-specific cases follow the suite.

use base64::Engine;
use serde_json::{Value, json};

use crate::support::*;

/// A JWS-based kind as the suite sees it.
pub(crate) trait JwsTarget {
    /// The trusted signer.
    fn signer(&self) -> &Idp;
    /// The header of a valid token.
    fn header(&self) -> Value;
    /// Valid claims, with `overrides` (`null` removes a claim).
    fn claims(&self, overrides: Value) -> Value;
    /// Explicit `typ` values the kind refuses (`null`: no `typ` at all).
    fn wrong_typs(&self) -> Vec<Value>;
    /// What a refusal for a wrong issuer says.
    fn issuer_reason(&self) -> &'static str;
    /// The refusal's status and error code.
    fn refusal(&self) -> (u16, &'static str);
    /// Whether a token whose `exp` passed less than the leeway ago is still accepted: client
    /// assertions yes; subject tokens no, since nothing is issued on an expired input.
    fn expired_within_leeway_accepted(&self) -> bool {
        false
    }
    /// What a refusal of a header with an embedded `jwk` says (the key is never used; a
    /// kind that allows no extra header parameter refuses the header itself).
    fn embedded_key_reason(&self) -> &'static str {
        "signature is invalid"
    }
    /// Presents `token` in a request that is otherwise valid.
    async fn present(&self, token: &str) -> Reply;
}

fn sign<T: JwsTarget>(t: &T, overrides: Value) -> String {
    t.signer().sign_with(t.header(), &t.claims(overrides))
}

async fn accepted<T: JwsTarget>(t: &T, token: &str) {
    let r = t.present(token).await;
    assert_eq!(r.status, 200, "expected success: {}", r.body);
}

async fn refused<T: JwsTarget>(t: &T, token: &str, reason: &str) {
    let r = t.present(token).await;
    let (status, code) = t.refusal();
    let d = r.expect_error(status, code);
    assert!(d.contains(reason), "want `{reason}` in `{d}`");
    assert!(!r.body.contains(token), "the token is echoed");
}

fn b64_decode(s: &str) -> Vec<u8> {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(s)
        .unwrap()
}

/// Every case of design §8, in one run.
pub(crate) async fn jws_negative_suite<T: JwsTarget>(t: &T) {
    // The baseline, and time checks with the 60 s leeway (RFC 7519 §4.1.4–4.1.6).
    accepted(t, &sign(t, json!({}))).await;
    refused(t, &sign(t, json!({"exp": NOW - 61})), "expired").await;
    for exp in [NOW - 30, NOW] {
        let just_expired = sign(t, json!({ "exp": exp }));
        if t.expired_within_leeway_accepted() {
            accepted(t, &just_expired).await;
        } else {
            refused(t, &just_expired, "expired").await;
        }
    }
    accepted(t, &sign(t, json!({"exp": NOW + 1}))).await;
    accepted(t, &sign(t, json!({"nbf": NOW + 59}))).await;
    refused(t, &sign(t, json!({"nbf": NOW + 300})), "not yet valid").await;
    refused(
        t,
        &sign(t, json!({"iat": NOW + 300})),
        "issued in the future",
    )
    .await;
    refused(t, &sign(t, json!({"exp": null})), "required claim: exp").await;
    refused(t, &sign(t, json!({"exp": "soon"})), "malformed: exp").await;
    refused(t, &sign(t, json!({"exp": 1e300})), "exp").await;
    refused(t, &sign(t, json!({"exp": i64::MAX})), "malformed: exp").await;
    refused(t, &sign(t, json!({"exp": -1})), "malformed: exp").await;
    refused(t, &sign(t, json!({"nbf": i64::MAX})), "malformed: nbf").await;
    accepted(t, &sign(t, json!({"nbf": 0}))).await;
    // Audience (RFC 7519 §4.1.3: a string or an array).
    for aud in [
        json!("https://someone-else.test"),
        json!(["https://a.test", "https://b.test"]),
        Value::Null,
    ] {
        refused(t, &sign(t, json!({"aud": aud})), "audience").await;
    }
    // Issuer: a trusted key cannot vouch for another issuer.
    refused(
        t,
        &sign(t, json!({"iss": "https://evil.test"})),
        t.issuer_reason(),
    )
    .await;
    // Signatures: a flipped bit, and another key presenting the trusted kid.
    let token = sign(t, json!({}));
    let (rest, sig) = token.rsplit_once('.').unwrap();
    let mut sig = b64_decode(sig);
    sig[10] ^= 0x01;
    refused(t, &format!("{rest}.{}", b64(&sig)), "signature is invalid").await;
    let kid = t.header()["kid"].as_str().unwrap().to_owned();
    let impostor = Idp::new(&t.signer().issuer, &kid, "ES256");
    refused(
        t,
        &impostor.sign_with(t.header(), &t.claims(json!({}))),
        "signature is invalid",
    )
    .await;
    // An unknown kid.
    let mut header = t.header();
    header["kid"] = json!("not-published");
    refused(
        t,
        &t.signer().sign_with(header, &t.claims(json!({}))),
        "key is unknown",
    )
    .await;
    // `alg: none` and HS256 keyed with the public key (RFC 8725 §3.1–3.2).
    let mut header = t.header();
    header["alg"] = json!("none");
    let none = format!(
        "{}.{}.",
        b64(header.to_string().as_bytes()),
        b64(t.claims(json!({})).to_string().as_bytes())
    );
    refused(t, &none, "algorithm is not accepted").await;
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.typ = t.header()["typ"].as_str().map(str::to_owned);
    hs.kid = Some(kid.clone());
    let key = jsonwebtoken::EncodingKey::from_secret(&t.signer().public_key_bytes());
    let forged = jsonwebtoken::encode(&hs, &t.claims(json!({})), &key).unwrap();
    refused(t, &forged, "algorithm is not accepted").await;
    // Explicit typing (RFC 8725 §3.11).
    for typ in t.wrong_typs() {
        let mut header = t.header();
        match typ {
            Value::Null => {
                header.as_object_mut().unwrap().remove("typ");
            }
            typ => header["typ"] = typ,
        }
        refused(
            t,
            &t.signer().sign_with(header, &t.claims(json!({}))),
            "typ",
        )
        .await;
    }
    // Oversized.
    refused(
        t,
        &sign(t, json!({"padding": "x".repeat(20_000)})),
        "too large",
    )
    .await;
    // Malformed compact serialization and JSON.
    let h = b64(t.header().to_string().as_bytes());
    refused(t, "not-a-jwt", "not a compact JWS").await;
    refused(t, "a.b.c.d.e", "encrypted").await;
    refused(t, &format!("{h}.!!!.sig"), "base64url").await;
    refused(
        t,
        &format!("{h}.{}.c2ln", b64(b"{not json")),
        "claims are invalid",
    )
    .await;
    refused(
        t,
        &format!("{}.{}.c2ln", b64(b"[1]"), b64(b"{}")),
        "header is invalid",
    )
    .await;
    refused(t, &format!("{h}=.{}.c2ln", b64(b"{}")), "base64url").await;
    // Duplicate JSON keys, even when signed (in the claims and in the header).
    let claims = t.claims(json!({}));
    let text = claims.to_string();
    let dup = format!("{{\"exp\":{},{}", NOW + 9999, &text[1..]);
    refused(
        t,
        &t.signer().sign_raw(&t.header().to_string(), &dup),
        "duplicate",
    )
    .await;
    let header_text = t.header().to_string();
    let dup_header = format!("{{\"alg\":\"none\",{}", &header_text[1..]);
    refused(t, &t.signer().sign_raw(&dup_header, &text), "duplicate").await;
    // `crit` is refused; a key embedded in the header is never used.
    let mut crit = t.header();
    crit["crit"] = json!(["exp"]);
    refused(t, &t.signer().sign_with(crit, &claims), "critical").await;
    let attacker = Idp::new(&t.signer().issuer, &kid, "ES256");
    let mut embedded = t.header();
    embedded["jwk"] = attacker.jwk();
    refused(
        t,
        &attacker.sign_with(embedded, &t.claims(json!({}))),
        t.embedded_key_reason(),
    )
    .await;
}

/// RFC 9068 access tokens as subject tokens.
struct AccessTokens(Harness);

impl JwsTarget for AccessTokens {
    fn signer(&self) -> &Idp {
        &self.0.idp
    }
    fn header(&self) -> Value {
        json!({"alg": "ES256", "typ": "at+jwt", "kid": "idp-1"})
    }
    fn claims(&self, overrides: Value) -> Value {
        self.0.idp.claims(overrides)
    }
    fn wrong_typs(&self) -> Vec<Value> {
        vec![
            json!("JWT"),
            json!("wit+jwt"),
            json!("txntoken+jwt"),
            Value::Null,
        ]
    }
    fn issuer_reason(&self) -> &'static str {
        "issuer is not trusted"
    }
    fn refusal(&self) -> (u16, &'static str) {
        (400, "invalid_request")
    }
    async fn present(&self, token: &str) -> Reply {
        let app = self.0.app().await;
        post(&app, &Form::exchange(token).set("audience", "orders-api")).await
    }
}

/// OpenID Connect ID tokens as subject tokens.
struct IdTokens(Harness);

impl JwsTarget for IdTokens {
    fn signer(&self) -> &Idp {
        &self.0.oidc
    }
    fn header(&self) -> Value {
        json!({"alg": "ES256", "kid": "oidc-1"})
    }
    fn claims(&self, overrides: Value) -> Value {
        self.0.oidc.id_claims(overrides)
    }
    fn wrong_typs(&self) -> Vec<Value> {
        vec![json!("at+jwt"), json!("wit+jwt"), json!("txntoken+jwt")]
    }
    fn issuer_reason(&self) -> &'static str {
        "issuer is not trusted"
    }
    fn refusal(&self) -> (u16, &'static str) {
        (400, "invalid_request")
    }
    async fn present(&self, token: &str) -> Reply {
        let app = self.0.app().await;
        let form = Form::exchange(token)
            .without("subject_token_type")
            .set("subject_token_type", ID_TOKEN)
            .set("audience", "orders-api");
        post(&app, &form).await
    }
}

/// RFC 7523 client assertions (`private_key_jwt`).
struct ClientAssertions(Harness);

impl JwsTarget for ClientAssertions {
    fn signer(&self) -> &Idp {
        &self.0.workload
    }
    fn header(&self) -> Value {
        json!({"alg": "ES256", "kid": "wl-1", "typ": "client-authentication+jwt"})
    }
    fn claims(&self, overrides: Value) -> Value {
        let id = "spiffe://example.com/workload-a";
        let mut c = json!({"iss": id, "sub": id, "aud": STS_ISSUER, "exp": NOW + 60, "iat": NOW, "jti": rand_id()});
        merge(&mut c, overrides);
        c
    }
    fn wrong_typs(&self) -> Vec<Value> {
        vec![json!("at+jwt"), json!("wit+jwt"), json!("secevent+jwt")]
    }
    fn issuer_reason(&self) -> &'static str {
        "disagree"
    }
    fn refusal(&self) -> (u16, &'static str) {
        (401, "invalid_client")
    }
    fn expired_within_leeway_accepted(&self) -> bool {
        true
    }
    async fn present(&self, token: &str) -> Reply {
        let app = self.0.app().await;
        let form = Form::exchange(&self.0.idp.access_token(json!({})))
            .no_auth()
            .set("audience", "orders-api")
            .set(
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            )
            .set("client_assertion", token);
        post(&app, &form).await
    }
}

#[actix_web::test]
async fn access_tokens_pass_the_negative_suite() {
    jws_negative_suite(&AccessTokens(Harness::new().await)).await;
}

#[actix_web::test]
async fn id_tokens_pass_the_negative_suite() {
    jws_negative_suite(&IdTokens(Harness::new().await)).await;
}

#[actix_web::test]
async fn client_assertions_pass_the_negative_suite() {
    jws_negative_suite(&ClientAssertions(Harness::new().await)).await;
}

/// A kind-specific refusal of a subject access token.
async fn refused_subject(h: &Harness, subject: &str, reason: &str) {
    let app = h.app().await;
    let r = post(&app, &Form::exchange(subject).set("audience", "orders-api")).await;
    let d = r.expect_error(400, "invalid_request");
    assert!(d.contains(reason), "want `{reason}` in `{d}`");
    assert!(!r.body.contains(subject), "the token is echoed");
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
async fn wrong_issuer() {
    let h = Harness::new().await;
    // Signed by a trusted key but claiming another issuer: the issuer picks no source.
    refused_subject(
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
    refused_subject(&h, &forged, "").await;
}

#[actix_web::test]
async fn alg_outside_the_entry_allowlist() {
    let h = Harness::new().await;
    // legacy-idp allows RS256 only; an EdDSA token claiming its issuer is refused before keys.
    let ed = Idp::new("https://legacy.test", "legacy-1", "EdDSA");
    refused_subject(&h, &ed.access_token(json!({})), "algorithm is not accepted").await;
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
