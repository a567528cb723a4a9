//! `sts explain`: candidates and why, every condition's value, the claims that would be issued
//! or the refusal — through the library and through the binary, which writes and signs nothing.

use std::process::Command;

use serde_json::{Value, json};
use sts::explain::{Input, Outcome, Request, explain};
use sts::secret::Token;

use crate::support::*;

const BIN: &str = env!("CARGO_BIN_EXE_sts");

fn request(subject: Input, actor: Option<Input>, params: &[(&str, &str)]) -> Request {
    let mut p: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    p.push(("subject_token_type".into(), ACCESS_TOKEN.into()));
    if actor.is_some() {
        p.push(("actor_token_type".into(), ACCESS_TOKEN.into()));
    }
    Request {
        client_id: "gateway".into(),
        params: p,
        subject,
        actor,
        now: NOW,
    }
}

#[actix_web::test]
async fn a_granted_request_shows_the_choice_the_verified_claims_and_what_would_be_issued() {
    let h = Harness::new().await;
    let snap = h.state.snapshot();
    let token = h
        .idp
        .access_token(json!({"sub": "alice", "email": "a@x.test"}));
    let ex = explain(
        &snap,
        request(
            Input::Token(Token::new(token.clone())),
            None,
            &[("audience", "orders-api")],
        ),
    )
    .await;
    let reasons: Vec<(String, bool, String)> = ex
        .profiles
        .iter()
        .map(|c| (c.profile.clone(), c.chosen, c.reason.clone()))
        .collect();
    assert_eq!(
        reasons,
        vec![
            ("admin".into(), false, "issues for admin-api, not for orders-api".into()),
            ("delegated".into(), false, "issues for billing-api, not for orders-api".into()),
            (
                "id-access".into(),
                false,
                "subject.accept takes subject_token_type urn:ietf:params:oauth:token-type:id_token, not urn:ietf:params:oauth:token-type:access_token".into()
            ),
            ("user-access".into(), true, "matches: client, token types and target".into()),
        ]
    );
    let subject = ex.subject.as_ref().unwrap();
    assert!(subject.verified);
    assert_eq!(subject.trust, "corp-idp");
    assert_eq!(subject.claims["email"], "a@x.test");
    let Outcome::Issued {
        claims,
        issued_token_type,
        expires_in,
        ..
    } = &ex.outcome
    else {
        panic!("{:?}", ex.outcome);
    };
    assert_eq!(*issued_token_type, ACCESS_TOKEN);
    assert_eq!(*expires_in, 300);
    assert_eq!(claims["aud"], "orders-api");
    assert_eq!(claims["email"], "a@x.test");
    assert_eq!(
        claims["origin"],
        json!({"issuer": "https://idp.test", "caller": "gateway"})
    );
    let text = ex.to_text();
    assert!(text.contains("  user-access ["), "{text}");
    assert!(
        text.contains("subject_token: verified by trust entry `corp-idp` (kind oauth-jwt)\n"),
        "{text}"
    );
    assert!(text.contains("result: would issue urn:ietf:params:oauth:token-type:access_token, expires_in 300 (not signed)\n"), "{text}");
    assert!(!text.contains(&token), "the token is never printed");
}

#[actix_web::test]
async fn a_refused_condition_shows_each_part_with_its_value() {
    let when = "'admin' in subject.scope.split(' ') && subject.sub == 'root'";
    let profile = format!(
        "name: admin2\ncallers: [gateway]\nsubject: {{accept: [corp-idp]}}\nwhen: \"{when}\"\n\
         issue: {{kind: access-token, audiences: [ops-api], lifetime: 1m, scope: \"subject.scope\"}}\n"
    );
    let mut profiles = TEST_PROFILES.to_vec();
    profiles.push(("admin2.yaml", &profile));
    let h = Harness::with(&profiles, TEST_MAPPINGS, "").await;
    let snap = h.state.snapshot();
    let claims = json!({"iss": "https://idp.test", "sub": "alice", "scope": "admin orders:read", "exp": NOW + 60});
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    let ex = explain(
        &snap,
        request(Input::Claims(claims), None, &[("audience", "ops-api")]),
    )
    .await;
    let file = h
        .dir
        .path()
        .join("profiles/admin2.yaml")
        .display()
        .to_string();
    let conditions: Vec<(String, String, String, Option<Value>)> = ex
        .conditions
        .iter()
        .map(|c| {
            (
                c.role.to_string(),
                c.at.clone(),
                c.expression.clone(),
                c.value.clone(),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        vec![
            (
                "when".into(),
                format!("{file}:4:7"),
                when.into(),
                Some(json!(false))
            ),
            (
                "when (part)".into(),
                format!("{file}:4:7"),
                "'admin' in subject.scope.split(' ')".into(),
                Some(json!(true))
            ),
            (
                "when (part)".into(),
                format!("{file}:4:7"),
                "subject.sub == 'root'".into(),
                Some(json!(false))
            ),
            (
                "issue.scope".into(),
                format!("{file}:5:72"),
                "subject.scope".into(),
                Some(json!("admin orders:read"))
            ),
        ]
    );
    let subject = ex.subject.as_ref().unwrap();
    assert!(
        !subject.verified,
        "claims given as JSON are reported as unverified"
    );
    let text = ex.to_text().replace(&file, "{f}");
    assert!(
        text.contains("subject_token: claims given as JSON, NOT verified; would be checked by trust entry `corp-idp` (kind oauth-jwt)\n"),
        "{text}"
    );
    assert!(
        text.ends_with(
            "conditions:\n  \
             when [{f}:4:7] 'admin' in subject.scope.split(' ') && subject.sub == 'root' => false\n  \
             when (part) [{f}:4:7] 'admin' in subject.scope.split(' ') => true\n  \
             when (part) [{f}:4:7] subject.sub == 'root' => false\n  \
             issue.scope [{f}:5:72] subject.scope => \"admin orders:read\"\n\
             result: refused: invalid_request: subject_token does not meet the exchange profile's conditions\n"
        ),
        "{text}"
    );
}

#[actix_web::test]
async fn refusals_before_and_at_verification_are_explained() {
    let h = Harness::new().await;
    let snap = h.state.snapshot();
    // A forged token: the signature is checked, not assumed.
    let forged = Idp::new("https://idp.test", "idp-1", "ES256").access_token(json!({}));
    let ex = explain(
        &snap,
        request(
            Input::Token(Token::new(forged)),
            None,
            &[("audience", "orders-api")],
        ),
    )
    .await;
    let Outcome::Refused {
        error,
        error_description,
    } = &ex.outcome
    else {
        panic!()
    };
    assert_eq!(
        (error.as_str(), error_description.as_str()),
        (
            "invalid_request",
            "subject_token rejected: token signature is invalid"
        )
    );
    // No profile serves the target: every candidate says why.
    let token = h.idp.access_token(json!({}));
    let ex = explain(
        &snap,
        request(
            Input::Token(Token::new(token)),
            None,
            &[("audience", "nowhere")],
        ),
    )
    .await;
    assert!(ex.profiles.iter().all(|c| !c.chosen));
    let Outcome::Refused {
        error,
        error_description,
    } = &ex.outcome
    else {
        panic!()
    };
    assert_eq!(
        (error.as_str(), error_description.as_str()),
        (
            "invalid_target",
            "no profile issues tokens for the requested audience or resource"
        )
    );
    // An unknown client.
    let mut r = request(Input::Claims(Default::default()), None, &[]);
    r.client_id = "stranger".into();
    let ex = explain(&snap, r).await;
    assert_eq!(ex.client.method, None);
    assert!(
        ex.profiles
            .iter()
            .all(|c| c.reason == "callers does not include `stranger`")
    );
    assert!(
        ex.to_text()
            .starts_with("client: stranger (no such client is configured)\n")
    );
}

#[actix_web::test]
async fn the_binary_explains_as_json_and_writes_nothing() {
    let h = Harness::new().await;
    let fresh = tempfile::tempdir().unwrap();
    let d = h.dir.path().display().to_string();
    let config = harness_config(h.dir.path(), "").replace(
        &format!("dir: {d}/keys"),
        &format!("dir: {}/keys", fresh.path().display()),
    );
    let file = fresh.path().join("sts.yaml");
    std::fs::write(&file, config).unwrap();
    let token_file = fresh.path().join("subject.jwt");
    let token = h.idp.access_token(json!({"sub": "bob"}));
    std::fs::write(&token_file, &token).unwrap();
    let out = Command::new(BIN)
        .args(["explain", "--config"])
        .arg(&file)
        .args([
            "--client-id",
            "gateway",
            "-p",
            "audience=orders-api",
            "--json",
        ])
        .args(["--at", &NOW.to_string()])
        .arg(format!("--subject-token=@{}", token_file.display()))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["outcome"]["result"], "issued");
    assert_eq!(report["outcome"]["claims"]["sub"], "bob");
    assert_eq!(report["subject"]["verified"], true);
    assert!(!stdout.contains(&token) && !stderr.contains(&token));
    let listing: Vec<_> = std::fs::read_dir(fresh.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(listing.len(), 2, "only the test's own files: {listing:?}");
    // A refusal exits 1; bad arguments exit 2.
    let out = Command::new(BIN)
        .args(["explain", "--config"])
        .arg(&file)
        .args([
            "--client-id",
            "gateway",
            "-p",
            "audience=admin-api",
            "--at",
            &NOW.to_string(),
        ])
        .args([
            "--subject-claims",
            r#"{"iss":"https://idp.test","sub":"x","exp":1800000060}"#,
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.ends_with(
            "result: refused: invalid_request: this exchange profile requires an actor_token\n"
        ),
        "{stdout}"
    );
    let out = Command::new(BIN)
        .args(["explain", "--config"])
        .arg(&file)
        .args(["--client-id", "gateway", "--subject-claims", "[1]"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("claims must be a JSON object"));
}
