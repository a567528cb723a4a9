//! Property tests over the real service (proptest, with shrinking): whatever the subject's
//! scope, the requested scope and the profile, the issued scope stays within the subject's and
//! the request's; whatever the inputs' expiry, the issued `exp` is at most every input's `exp`
//! and the profile's lifetime, and an expired input is refused even inside the leeway.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::{Value, json};

use crate::support::*;

const VOCABULARY: [&str; 5] = ["a", "b", "c", "ba", "bb"];

const PROFILES: &[(&str, &str)] = &[
    (
        "plain.yaml",
        "name: plain\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\n\
         actor: {mode: optional, accept: [mesh-idp]}\n\
         issue: {kind: access-token, audiences: [plain-api], lifetime: 10m}\n",
    ),
    (
        "narrowing.yaml",
        "name: narrowing\ncallers: [gateway]\nsubject: {accept: [corp-idp]}\n\
         issue: {kind: access-token, audiences: [narrow-api], lifetime: 1m, \
         scope: \"subject.scope.split(' ').filter(s, s.startsWith('b')).join(' ')\"}\n",
    ),
];

fn words(mask: &[bool]) -> Vec<&'static str> {
    VOCABULARY
        .iter()
        .zip(mask)
        .filter(|(_, on)| **on)
        .map(|(w, _)| *w)
        .collect()
}

fn mask() -> impl Strategy<Value = Vec<bool>> {
    prop::collection::vec(any::<bool>(), VOCABULARY.len())
}

/// Runs `cases` property cases against one in-process service.
fn run<S, F>(cases: u32, strategy: S, check: F)
where
    S: Strategy,
    F: Fn(&Harness, &dyn Fn(Form) -> Reply, S::Value) -> Result<(), TestCaseError>,
{
    let system = actix_web::rt::System::new();
    let h = system.block_on(Harness::with(PROFILES, TEST_MAPPINGS, ""));
    let app = system.block_on(app_of(h.state.clone()));
    let issued = std::cell::Cell::new(0u32);
    let send = |form: Form| {
        let reply = system.block_on(post(&app, &form));
        issued.set(issued.get() + u32::from(reply.status == 200));
        reply
    };
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&strategy, |value| check(&h, &send, value));
    if let Err(e) = result {
        panic!("{e}");
    }
    // Not vacuous: a good share of the cases were issued a token.
    assert!(
        issued.get() >= cases / 4,
        "only {} of {cases} cases issued",
        issued.get()
    );
}

/// The issued token's claims (its signature was already checked by `post`).
fn issued_claims(reply: &Reply) -> Value {
    let token = reply.json["access_token"].as_str().unwrap_or_default();
    let payload = token.split('.').nth(1).unwrap_or_default();
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
        .unwrap_or_default();
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

#[test]
fn issued_scope_is_within_subject_and_requested_scope() {
    let strategy = (mask(), prop::option::of(mask()), any::<bool>());
    run(96, strategy, |h, send, (held, requested, narrowing)| {
        let held = words(&held);
        // RFC 6749 §3.1: an empty `scope` is as if it were absent.
        let requested = requested.map(|m| words(&m)).filter(|r| !r.is_empty());
        let audience = if narrowing { "narrow-api" } else { "plain-api" };
        let subject = h.idp.access_token(json!({"scope": held.join(" ")}));
        let mut form = Form::exchange(&subject).set("audience", audience);
        if let Some(r) = &requested {
            form = form.set("scope", &r.join(" "));
        }
        let reply = send(form);
        let asked_too_much = requested
            .as_ref()
            .is_some_and(|r| r.iter().any(|s| !held.contains(s)));
        if asked_too_much {
            prop_assert_eq!(reply.status, 400);
            prop_assert_eq!(&reply.json["error"], "invalid_scope");
            return Ok(());
        }
        if reply.status != 200 {
            // Refusing is always allowed (e.g. nothing left to grant), but only as invalid_scope.
            prop_assert_eq!(&reply.json["error"], "invalid_scope", "{}", reply.body);
            return Ok(());
        }
        let claims = issued_claims(&reply);
        let granted = claims["scope"].as_str().unwrap_or("");
        for s in granted.split(' ').filter(|s| !s.is_empty()) {
            prop_assert!(held.contains(&s), "{s} not held: {granted}");
            if let Some(r) = &requested {
                prop_assert!(r.contains(&s), "{s} not requested: {granted}");
            }
            if narrowing {
                prop_assert!(
                    s.starts_with('b'),
                    "the profile's narrowing holds: {granted}"
                );
            }
        }
        Ok(())
    });
}

#[test]
fn issued_exp_is_at_most_every_input_exp() {
    // Offsets from NOW; the leeway is 60s, so -59..=0 validates but has expired.
    let strategy = (-90i64..1500, prop::option::of(-90i64..1500));
    run(96, strategy, |h, send, (subject_exp, actor_exp)| {
        let subject = h
            .idp
            .access_token(json!({"exp": NOW + subject_exp, "iat": NOW - 100}));
        let mut form = Form::exchange(&subject).set("audience", "plain-api");
        if let Some(a) = actor_exp {
            let actor = h
                .mesh
                .access_token(json!({"sub": "svc", "exp": NOW + a, "iat": NOW - 100}));
            form = form
                .set("actor_token", &actor)
                .set("actor_token_type", ACCESS_TOKEN);
        }
        let reply = send(form);
        let inputs: Vec<i64> = std::iter::once(subject_exp).chain(actor_exp).collect();
        if inputs.iter().any(|e| *e <= 0) {
            prop_assert_eq!(
                reply.status,
                400,
                "an expired input is refused: {}",
                reply.body
            );
            prop_assert_eq!(&reply.json["error"], "invalid_request");
            return Ok(());
        }
        prop_assert_eq!(reply.status, 200, "{}", reply.body);
        let exp = issued_claims(&reply)["exp"].as_i64().unwrap_or(i64::MAX);
        for e in &inputs {
            prop_assert!(exp <= NOW + e, "exp {exp} outlives an input ({})", NOW + e);
        }
        prop_assert!(exp <= NOW + 600, "the profile's lifetime bounds it");
        prop_assert_eq!(
            reply.json["expires_in"].as_i64(),
            Some(exp - NOW),
            "expires_in agrees"
        );
        Ok(())
    });
}
