//! Process settings: unknown keys and bad values stop startup with a message naming the key.

use crate::support::*;

/// The first problem in `yaml`: in the settings, or in a trust entry as its kind reads it.
fn err(yaml: &str) -> String {
    let settings = match sts::config::Settings::from_yaml(yaml) {
        Ok(s) => s,
        Err(e) => return e.to_string(),
    };
    let http = sts::trust::HttpFetcher::new(std::time::Duration::from_secs(1)).unwrap();
    let env = sts::token::KindEnv {
        our_issuer: &settings.issuer,
        trust_domain: "example.com",
        own_keys: &sts::trust::OwnKeys::empty(),
        http: &http,
    };
    let kinds = sts::token::KindRegistry::builtin();
    sts::trust::TrustRegistry::build(&settings.trust, &kinds, &env)
        .unwrap_err()
        .to_string()
}

const BASE: &str =
    "issuer: https://sts.test\nlisten: 127.0.0.1:8080\nkeys: {dir: k}\nprofiles: p\nmappings: m\n";

#[test]
fn unknown_keys_are_named() {
    assert!(err(&format!("{BASE}colour: blue\n")).contains("colour"));
    assert!(err(&format!("{BASE}limits: {{max_bodybytes: 1}}\n")).contains("max_bodybytes"));
    let t = format!(
        "{BASE}trust:\n  - {{name: a, kind: oauth-jwt, issuer: \"https://a\", jwks: {{file: x}}, algs: [ES256]}}\n"
    );
    assert!(err(&t).contains("algs"));
}

#[test]
fn bad_values_are_named() {
    assert!(err(&BASE.replace("https://sts.test", "http://sts.example.com")).contains("issuer"));
    assert!(err(&format!("{BASE}leeway: 10m\n")).contains("leeway"));
    assert!(err(&BASE.replace("127.0.0.1:8080", "nowhere")).contains("listen"));
    assert!(err(&BASE.replace("keys: {dir: k}", "keys: {dir: k, alg: HS256}")).contains("HS256"));
    // Algorithms we verify but cannot sign with are refused by the check, before `serve`
    // writes a key directory or development material.
    for alg in ["PS256", "ES384", "RS512"] {
        let e = err(&BASE.replace("keys: {dir: k}", &format!("keys: {{dir: k, alg: {alg}}}")));
        assert!(
            e.contains("keys.alg: one of ES256, EdDSA, RS256"),
            "{alg}: {e}"
        );
    }
    for alg in ["ES256", "EdDSA", "RS256"] {
        let yaml = BASE.replace("keys: {dir: k}", &format!("keys: {{dir: k, alg: {alg}}}"));
        assert!(sts::config::Settings::from_yaml(&yaml).is_ok(), "{alg}");
    }
    assert!(err(&format!("{BASE}dev: true\n").replace("127.0.0.1", "0.0.0.0")).contains("dev"));
    let t = format!(
        "{BASE}trust:\n  - {{name: a, kind: oauth-jwt, issuer: \"https://a\", jwks: {{file: x, uri: \"https://a/jwks\"}}}}\n"
    );
    assert!(err(&t).contains("trust[0].jwks"));
    let t = format!(
        "{BASE}trust:\n  - {{name: a, kind: saml, issuer: \"https://a\", jwks: {{file: x}}}}\n"
    );
    assert!(err(&t).contains("saml"));
    let c = format!("{BASE}clients:\n  - {{id: a, secret_hash: plain}}\n");
    assert!(err(&c).contains("clients[0].secret_hash"));
    let c = format!("{BASE}clients:\n  - {{id: a}}\n");
    assert!(err(&c).contains("clients[0]"));
    for (telemetry, key) in [
        (
            "{otlp_endpoint: \"ftp://collector:4318\"}",
            "telemetry.otlp_endpoint",
        ),
        (
            "{otlp_endpoint: \"http://user:pw@collector:4318\"}",
            "telemetry.otlp_endpoint",
        ),
        (
            "{otlp_endpoint: \"http://collector:4318/?k=v\"}",
            "telemetry.otlp_endpoint",
        ),
        ("{otlp_endpoint: collector}", "telemetry.otlp_endpoint"),
        ("{sample_ratio: 1.5}", "telemetry.sample_ratio"),
        ("{sample_ratio: -0.1}", "telemetry.sample_ratio"),
        ("{service_name: \" \"}", "telemetry.service_name"),
        (
            "{otlp_endpoint: \"http://collector:4318/v1/traces\"}",
            "telemetry.otlp_endpoint",
        ),
        ("{trust_caller_trace: yes}", "telemetry.trust_caller_trace"),
        (
            "{endpoint: \"http://collector:4318\"}",
            "`endpoint` is not a known key",
        ),
    ] {
        let e = err(&format!("{BASE}telemetry: {telemetry}\n"));
        assert!(e.contains(key), "{telemetry}: {e}");
    }
    let ok = format!(
        "{BASE}telemetry: {{otlp_endpoint: \"http://collector:4318\", sample_ratio: 0.25}}\n"
    );
    let s = sts::config::Settings::from_yaml(&ok).unwrap();
    assert_eq!(s.telemetry.otlp_endpoint, "http://collector:4318");
    assert_eq!(s.telemetry.service_name, "sts");
    assert!(
        s.telemetry.trust_caller_trace,
        "callers' trace context is followed by default"
    );
    let off = format!("{BASE}telemetry: {{trust_caller_trace: false}}\n");
    assert!(
        !sts::config::Settings::from_yaml(&off)
            .unwrap()
            .telemetry
            .trust_caller_trace
    );
    assert_eq!(
        sts::config::Settings::from_yaml(BASE)
            .unwrap()
            .telemetry
            .sample_ratio,
        1.0
    );
}

#[test]
fn the_embedded_default_is_a_loopback_dev_setup() {
    let s = sts::config::Settings::from_yaml(sts::config::DEFAULT_YAML).unwrap();
    assert!(s.dev);
    assert!(s.listen_addr().unwrap().ip().is_loopback());
    assert_eq!(s.store.0, "memory://");
    assert_eq!(
        format!(
            "{:?}",
            sts::config::StoreSetting("redis://:hunter2@r:6379/0".into())
        ),
        "StoreSetting(redis://…)"
    );
    let _ = STS_ISSUER;
}

#[test]
fn alias_bombs_duplicate_keys_and_huge_files_are_refused_before_the_config_crate() {
    // Nine levels of nine aliases: 387M nodes if expanded.
    let mut bomb = String::from("a: &a [x,x,x,x,x,x,x,x,x]\n");
    for (prev, name) in ["a", "b", "c", "d", "e", "f", "g", "h"]
        .iter()
        .zip(["b", "c", "d", "e", "f", "g", "h", "i"])
    {
        let refs = vec![format!("*{prev}"); 9].join(",");
        bomb.push_str(&format!("{name}: &{name} [{refs}]\n"));
    }
    let e = err(&format!("{BASE}{bomb}"));
    assert!(
        e.starts_with("configuration: (configuration):")
            && e.ends_with(
                "the document is too large or too deeply nested, or expands aliases too far (YAML \
                 size budget)"
            ),
        "{e}"
    );
    let e = err(&format!("{BASE}issuer: https://other.test\n"));
    assert_eq!(
        e,
        "configuration: (configuration):6:1: `issuer` is written twice in the same mapping"
    );
    let e = err(&format!("{BASE}#{}\n", "x".repeat(2 * 1024 * 1024)));
    assert!(e.contains("larger than"), "{e}");
}

#[test]
fn client_auth_budgets_are_checked() {
    for (yaml, key) in [
        (
            "client_auth: {failures_per_client: 0}",
            "failures_per_client",
        ),
        ("client_auth: {failures_per_peer: 0}", "failures_per_peer"),
        ("client_auth: {failure_window: 0s}", "failure_window"),
        ("client_auth: {failure_window: 2d}", "failure_window"),
        (
            "client_auth: {secret_check_threads: 0}",
            "secret_check_threads",
        ),
        (
            "client_auth: {secret_check_queue: 1000000}",
            "secret_check_queue",
        ),
    ] {
        let e = err(&format!("{BASE}{yaml}\n"));
        assert!(e.contains(&format!("client_auth.{key}")), "{yaml}: {e}");
    }
}

#[test]
fn booleans_are_true_or_false_only() {
    for v in ["1", "yes", "on", "\"true\"", "Yes"] {
        let e = err(&format!("{BASE}dev: {v}\n"));
        assert!(e.contains("expected true or false"), "dev: {v}: {e}");
    }
    let e = err(&format!(
        "{BASE}clients:\n  - {{id: a, jwks: {{file: x, discovery: yes}}}}\n"
    ));
    assert!(e.contains("expected true or false"), "{e}");
    assert!(sts::config::Settings::from_yaml(&format!("{BASE}dev: false\n")).is_ok());
}

#[test]
fn listen_must_be_an_ip_and_max_params_at_least_one() {
    let e = err(&BASE.replace("127.0.0.1:8080", "localhost:8080"));
    assert!(
        e.contains(
            "listen: `localhost:8080` is not an IP address and port (write e.g. 127.0.0.1:8080"
        ),
        "{e}"
    );
    let e = err(&format!("{BASE}limits: {{max_params: 0}}\n"));
    assert_eq!(
        e,
        "configuration: (configuration):6:10: limits.max_params: at least 1"
    );
}

#[test]
fn every_settings_problem_is_reported_together_with_its_position() {
    let yaml = "issuer: https://sts.test\nlisten: localhost:8080\nkeys: {dir: k, alg: HS256}\n\
                mappings: m\nlimits: {max_params: x, bogus: 1, max_token_bytes: 100}\n\
                client_auth: {failures_per_client: 0}\ndev: yes\nleeway: 10m\n\
                clients:\n  - {id: a}\n  - {id: b, jwks: {file: f}, algorithms: []}\n";
    let e = err(yaml);
    assert_eq!(
        e,
        "configuration: 11 problems:
  (configuration):7:1: dev: found the text \"yes\", expected true or false
  (configuration):3:16: keys.alg: unsupported algorithm `HS256` (expected one of ES256, ES384, ES512, EdDSA, RS256, RS384, RS512, PS256, PS384, PS512)
  (configuration):5:25: limits.bogus: `bogus` is not a known key here; known keys: max_body_bytes, max_token_bytes, max_params, max_context_bytes
  (configuration):5:10: limits.max_params: found the text \"x\", expected a whole number (0 or more)
  (configuration): profiles: `profiles` is required
  (configuration):2:1: listen: `localhost:8080` is not an IP address and port (write e.g. 127.0.0.1:8080 or [::1]:8080; host names are not resolved)
  (configuration):8:1: leeway: at most 5m
  (configuration):5:35: limits.max_token_bytes: at least 512
  (configuration):6:15: client_auth.failures_per_client: at least 1
  (configuration):10:5: clients[0]: set exactly one of secret_hash (client_secret_basic) or jwks (private_key_jwt)
  (configuration):11:30: clients[1].algorithms: the list is empty, so no token could ever verify; list algorithms or remove the key for the default (ES256, EdDSA, RS256, PS256)"
    );
    // A structure where a mapping belongs, and a list entry that is not a mapping.
    let e = err(&format!("{BASE}limits: 5\ntrust: [oops]\n"));
    assert_eq!(
        e,
        "configuration: 2 problems:
  (configuration):6:1: limits: found the number 5, expected a mapping (key: value pairs)
  (configuration):7:9: trust[0]: each trust entry must be a mapping of keys"
    );
    let e = err(&format!("{BASE}trust:\n  - {{kind: oauth-jwt}}\n"));
    assert_eq!(
        e,
        "configuration: (configuration):7:5: trust[0].name: a non-empty text is required"
    );
}

#[actix_web::test]
async fn key_files_are_checked_before_start() {
    let h = Harness::new().await;
    let d = h.dir.path().display().to_string();
    std::fs::remove_file(h.dir.path().join("legacy.json")).unwrap();
    std::fs::write(
        h.dir.path().join("mesh.json"),
        r#"{"keys":[{"kty":"oct","k":"AAAA"}]}"#,
    )
    .unwrap();
    let settings = sts::config::Settings::from_yaml(&harness_config(h.dir.path(), "")).unwrap();
    let kinds = sts::token::KindRegistry::builtin();
    let e = sts::app::Snapshot::check(&settings, &kinds)
        .await
        .unwrap_err()
        .to_string()
        .replace(&d, "{d}");
    assert_eq!(
        e,
        "configuration: 2 problems:
  (configuration):9:121: trust[1].jwks.file (entry `legacy-idp`, kind oauth-jwt): {d}/legacy.json: No such file or directory (os error 2)
  (configuration):10:75: trust[2].jwks.file (entry `mesh-idp`, kind oauth-jwt): JWK Set has no key usable with the allowed algorithms (key #0: unsupported key type oct/-)"
    );
    // A directory (or FIFO, device) where a key file belongs is refused, not read.
    std::fs::remove_file(h.dir.path().join("legacy.json")).unwrap_or(());
    std::fs::create_dir(h.dir.path().join("legacy.json")).unwrap();
    let e = sts::app::Snapshot::check(&settings, &kinds)
        .await
        .unwrap_err()
        .to_string()
        .replace(&d, "{d}");
    assert!(
        e.contains("trust[1].jwks.file (entry `legacy-idp`, kind oauth-jwt): {d}/legacy.json: not a regular file"),
        "{e}"
    );
    // The service refuses to start on the same problems.
    let e = sts::app::AppState::build(settings, h.clock.clone())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("trust[1].jwks.file"), "{e}");
}

#[actix_web::test]
async fn nothing_is_written_until_everything_is_valid() {
    let h = Harness::new().await;
    let fresh = tempfile::tempdir().unwrap();
    let f = fresh.path().display();
    std::fs::create_dir(fresh.path().join("profiles")).unwrap();
    std::fs::write(
        fresh.path().join("profiles/broken.yaml"),
        "name: broken\ncallers: [gateway]\nsubject: {accept: [nowhere]}\nissue: {kind: access-token, audiences: [x], lifetime: 1m}\n",
    )
    .unwrap();
    let d = h.dir.path().display().to_string();
    let config = harness_config(h.dir.path(), &format!("dev: true\ndev_dir: {f}/dev\n"))
        .replace(&format!("dir: {d}/keys"), &format!("dir: {f}/keys"))
        .replace(
            &format!("profiles: {d}/profiles"),
            &format!("profiles: {f}/profiles"),
        );
    let settings = sts::config::Settings::from_yaml(&config).unwrap();
    let e = sts::app::AppState::build(settings, h.clock.clone())
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        e.replace(&f.to_string(), "{f}"),
        "1 problem(s) in profiles and mappings:\n  {f}/profiles/broken.yaml:3:20: unknown trust \
         entry `nowhere` (configured: corp-idp, legacy-idp, mesh-idp, corp-oidc, dev-idp)\n"
    );
    assert!(
        !fresh.path().join("keys").exists(),
        "no signing key written"
    );
    assert!(
        !fresh.path().join("dev").exists(),
        "no development material written"
    );
}

/// The configuration docker-compose.yml mounts is valid and uses the shared Redis store.
#[test]
fn the_compose_configuration_is_valid_and_shares_redis() {
    let text = std::fs::read_to_string(repo_root().join("sts/deploy/compose-sts.yaml")).unwrap();
    let settings = sts::config::Settings::from_yaml(&text).unwrap();
    assert_eq!(settings.store.0, "redis://redis:6379");
    assert_eq!(settings.telemetry.otlp_endpoint, "http://jaeger:4318");
    let compose = std::fs::read_to_string(repo_root().join("docker-compose.yml")).unwrap();
    assert_eq!(compose.matches("- sts-keys:/var/lib/sts").count(), 2);
}
