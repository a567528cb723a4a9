//! Delegation (RFC 8693 §1.1, §4.1, §4.4) as the engine enforces it: actors accepted or refused
//! per profile, `act` nested, `may_act` binding, and no route that drops an incoming `act`.

use serde_json::json;

use crate::support::*;

fn with_actor(subject: &str, actor: &str, audience: &str) -> Form {
    Form::exchange(subject)
        .set("audience", audience)
        .set("actor_token", actor)
        .set("actor_token_type", ACCESS_TOKEN)
}

#[actix_web::test]
async fn an_accepted_actor_yields_act() {
    let h = Harness::new().await;
    let app = h.app().await;
    let actor = h.mesh.access_token(json!({"sub": "svc-billing"}));
    let r = post(
        &app,
        &with_actor(&h.idp.access_token(json!({})), &actor, "billing-api"),
    )
    .await;
    let c = verify_issued(
        &r.expect_token(),
        &get(&app, "/jwks").await.json,
        "billing-api",
    );
    assert_eq!(c["sub"], "alice");
    assert_eq!(
        c["act"],
        json!({"sub": "svc-billing", "iss": "https://mesh.test"})
    );
}

#[actix_web::test]
async fn a_prior_act_chain_is_nested_inside_the_new_actor() {
    let h = Harness::new().await;
    let app = h.app().await;
    let prior = json!({"sub": "svc-edge", "act": {"sub": "svc-origin"}});
    let subject = h.idp.access_token(json!({"act": prior}));
    let actor = h.mesh.access_token(json!({"sub": "svc-billing"}));
    let r = post(&app, &with_actor(&subject, &actor, "billing-api")).await;
    let c = verify_issued(
        &r.expect_token(),
        &get(&app, "/jwks").await.json,
        "billing-api",
    );
    assert_eq!(
        c["act"],
        json!({"sub": "svc-billing", "iss": "https://mesh.test", "act": {"sub": "svc-edge", "act": {"sub": "svc-origin"}}})
    );
}

#[actix_web::test]
async fn no_route_drops_an_incoming_act() {
    let h = Harness::new().await;
    let app = h.app().await;
    let jwks = get(&app, "/jwks").await.json;
    let act = json!({"sub": "svc-edge"});
    // Actor-less profile (forbidden) and optional profile without an actor: act survives both.
    for aud in ["orders-api", "billing-api"] {
        let r = post(
            &app,
            &Form::exchange(&h.idp.access_token(json!({"act": act}))).set("audience", aud),
        )
        .await;
        assert_eq!(
            verify_issued(&r.expect_token(), &jwks, aud)["act"],
            act,
            "{aud}"
        );
    }
    // A mapping cannot write act (reserved) — checked at load in profiles_load.
}

#[actix_web::test]
async fn actors_are_refused_where_the_profile_forbids_them() {
    let h = Harness::new().await;
    let app = h.app().await;
    let actor = h.mesh.access_token(json!({}));
    let r = post(
        &app,
        &with_actor(&h.idp.access_token(json!({})), &actor, "orders-api"),
    )
    .await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("actor_token is not accepted")
    );
}

#[actix_web::test]
async fn a_required_actor_must_be_present() {
    let h = Harness::new().await;
    let app = h.app().await;
    let r = post(
        &app,
        &Form::exchange(&h.idp.access_token(json!({"scope": "admin"})))
            .set("audience", "admin-api"),
    )
    .await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("requires an actor_token")
    );
}

#[actix_web::test]
async fn actor_tokens_are_verified_like_subjects() {
    let h = Harness::new().await;
    let app = h.app().await;
    let subject = h.idp.access_token(json!({}));
    let expired = h.mesh.access_token(json!({"exp": NOW - 3600}));
    let r = post(&app, &with_actor(&subject, &expired, "billing-api")).await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("actor_token rejected: token is expired")
    );
    // An actor from a source the profile does not accept for actors.
    let wrong_source = h.idp.access_token(json!({"sub": "svc"}));
    let r = post(
        &app,
        &with_actor(&h.idp.access_token(json!({})), &wrong_source, "billing-api"),
    )
    .await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("actor_token rejected")
    );
}

#[actix_web::test]
async fn may_act_binds_the_exchange_to_the_named_actor() {
    let h = Harness::new().await;
    let app = h.app().await;
    let may_act = json!({"sub": "svc-billing", "iss": "https://mesh.test"});
    let subject = || h.idp.access_token(json!({"may_act": may_act}));
    let right = h.mesh.access_token(json!({"sub": "svc-billing"}));
    let r = post(&app, &with_actor(&subject(), &right, "billing-api")).await;
    let c = verify_issued(
        &r.expect_token(),
        &get(&app, "/jwks").await.json,
        "billing-api",
    );
    assert_eq!(c["act"]["sub"], "svc-billing");
    assert!(
        c.get("may_act").is_none(),
        "may_act is consumed, not copied"
    );
    let wrong = h.mesh.access_token(json!({"sub": "svc-other"}));
    let r = post(&app, &with_actor(&subject(), &wrong, "billing-api")).await;
    assert!(r.expect_error(400, "invalid_request").contains("may_act"));
    // RFC 8693 §4.4: a may_act without iss names an actor of the subject's issuer; the same
    // `sub` from another issuer is someone else.
    let same_name_elsewhere = h
        .idp
        .access_token(json!({"may_act": {"sub": "svc-billing"}}));
    let r = post(
        &app,
        &with_actor(&same_name_elsewhere, &right, "billing-api"),
    )
    .await;
    assert!(r.expect_error(400, "invalid_request").contains("may_act"));
    // Without any actor, through a profile that takes none, a may_act subject is refused.
    let r = post(
        &app,
        &Form::exchange(&subject()).set("audience", "orders-api"),
    )
    .await;
    assert!(r.expect_error(400, "invalid_request").contains("may_act"));
}

#[actix_web::test]
async fn actor_rules_are_checked_before_any_signature() {
    let h = Harness::new().await;
    let app = h.app().await;
    // The subject is garbage: the refusal names the actor rule, so no verification ran first.
    let r = post(
        &app,
        &with_actor("not-a-token", "also-not-a-token", "orders-api"),
    )
    .await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("actor_token is not accepted")
    );
    let r = post(
        &app,
        &Form::exchange("not-a-token").set("audience", "admin-api"),
    )
    .await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("requires an actor_token")
    );
}

#[actix_web::test]
async fn an_actor_with_its_own_act_chain_is_refused_unless_the_profile_allows_it() {
    let h = Harness::new().await;
    let app = h.app().await;
    let subject = h.idp.access_token(json!({"act": {"sub": "svc-edge"}}));
    let chained = h
        .mesh
        .access_token(json!({"sub": "svc-billing", "act": {"sub": "svc-batch"}}));
    let r = post(&app, &with_actor(&subject, &chained, "billing-api")).await;
    assert!(
        r.expect_error(400, "invalid_request")
            .contains("actor_token carries its own act chain"),
        "{}",
        r.body
    );
    // A profile that allows chained actors keeps that chain under act.actor_act, beside the
    // subject's prior chain in act.act.
    let profile = r#"
name: delegated
callers: [gateway]
subject: {accept: [corp-idp]}
actor: {mode: optional, accept: [mesh-idp], chained: true}
issue:
  kind: access-token
  audiences: [billing-api]
  lifetime: 10m
  scope: "subject.scope.split(' ').filter(s, s.startsWith('billing:')).join(' ')"
"#;
    write_files(
        &h.dir.path().join("profiles"),
        &[("delegated.yaml", profile)],
    );
    let app = rebuild(harness_config(h.dir.path(), ""), h.clock.clone()).await;
    let r = post(&app, &with_actor(&subject, &chained, "billing-api")).await;
    let c = verify_issued(
        &r.expect_token(),
        &get(&app, "/jwks").await.json,
        "billing-api",
    );
    assert_eq!(
        c["act"],
        json!({
            "sub": "svc-billing", "iss": "https://mesh.test",
            "actor_act": {"sub": "svc-batch"},
            "act": {"sub": "svc-edge"}
        })
    );
}
