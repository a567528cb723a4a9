//! Distributed tracing: the `sts` binary exports one span per token request over OTLP/HTTP
//! (JSON) to a real receiver on loopback, joined to the caller's `traceparent`, with identifiers
//! only — the test scans every exported byte for the tokens and secrets its requests carried.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;

use crate::end_to_end::{dev_token, free_port, start_with};
use crate::support::*;

/// What the receiver got: (path, content type, body) per export.
type Received = Arc<Mutex<Vec<(String, String, String)>>>;

/// How the receiver answers: `refuse` makes it answer 503 (an unavailable collector);
/// `attempts` counts every export it was sent, refused or not.
#[derive(Clone, Default)]
struct Behaviour {
    refuse: Arc<AtomicBool>,
    attempts: Arc<AtomicUsize>,
}

async fn collect(
    req: HttpRequest,
    body: web::Bytes,
    got: web::Data<Received>,
    behaviour: web::Data<Behaviour>,
) -> HttpResponse {
    behaviour.attempts.fetch_add(1, Ordering::SeqCst);
    if behaviour.refuse.load(Ordering::SeqCst) {
        return HttpResponse::ServiceUnavailable().finish();
    }
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    got.lock().unwrap().push((
        req.path().to_owned(),
        content_type,
        String::from_utf8_lossy(&body).into_owned(),
    ));
    HttpResponse::Ok()
        .content_type("application/json")
        .body("{}")
}

/// An OTLP/HTTP receiver on a free loopback port: its base URL and what it receives.
fn receiver() -> (String, Received) {
    receiver_with(Behaviour::default())
}

fn receiver_with(behaviour: Behaviour) -> (String, Received) {
    let got: Received = Arc::default();
    let data = web::Data::new(got.clone());
    let behaviour = web::Data::new(behaviour);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(behaviour.clone())
            .app_data(web::PayloadConfig::new(16 << 20))
            .default_service(web::to(collect))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .unwrap();
    let port = server.addrs()[0].port();
    actix_web::rt::spawn(server.run());
    (format!("http://127.0.0.1:{port}"), got)
}

/// Every exported span, flattened.
fn spans(got: &Received) -> Vec<Value> {
    got.lock()
        .unwrap()
        .iter()
        .flat_map(|(_, _, body)| {
            let v: Value = serde_json::from_str(body).unwrap();
            let mut out = Vec::new();
            for rs in v["resourceSpans"].as_array().unwrap() {
                assert_eq!(
                    rs["resource"]["attributes"][0],
                    serde_json::json!({"key": "service.name", "value": {"stringValue": "sts-test"}})
                );
                for ss in rs["scopeSpans"].as_array().unwrap() {
                    out.extend(ss["spans"].as_array().unwrap().iter().cloned());
                }
            }
            out
        })
        .collect()
}

fn attribute<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["key"] == key)
        .map(|a| &a["value"])
}

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// A value a caller put in `tracestate`, searched for in everything exported.
const CALLER_STATE: &str = "caller-chosen-state-0123456789";
const PARENT_ID: &str = "00f067aa0ba902b7";

#[actix_web::test]
async fn request_spans_reach_a_collector_with_identifiers_only() {
    let (endpoint, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let server = start_with(
        d,
        port,
        "otel",
        &[
            ("STS__TELEMETRY__OTLP_ENDPOINT", &endpoint),
            ("STS__TELEMETRY__SERVICE_NAME", "sts-test"),
            // A span directive must not bring the request span into the logs.
            ("RUST_LOG", "debug,sts=trace,[sts.request]=trace"),
        ],
    )
    .await;
    let base = server.base.clone();
    let secret = std::fs::read_to_string(d.join("dev/client-secret")).unwrap();
    let subject = dev_token(
        d,
        port,
        "otel-cli",
        &["--sub", "alice", "--scope", "orders:read"],
    );
    let http = reqwest::Client::new();
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", TOKEN_EXCHANGE),
            ("subject_token", subject.as_str()),
            ("subject_token_type", ACCESS_TOKEN),
            ("audience", "orders-api"),
        ])
        .finish();
    let post = |secret: &str, traceparent: Option<String>| {
        let mut r = http
            .post(format!("{base}/token"))
            .basic_auth("dev-client", Some(secret))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone());
        if let Some(tp) = traceparent {
            // The caller's tracestate is its own words: never exported.
            r = r
                .header("traceparent", tp)
                .header("tracestate", format!("vendor={CALLER_STATE}"));
        }
        r.send()
    };

    // Granted, inside the caller's trace.
    let r = post(&secret, Some(format!("00-{TRACE_ID}-{PARENT_ID}-01")))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let issued: Value = r.json().await.unwrap();
    let issued = issued["access_token"].as_str().unwrap().to_owned();
    // Refused: the wrong secret, no traceparent (a new trace).
    let r = post("not-the-secret", None).await.unwrap();
    assert_eq!(r.status(), 401);
    // The token endpoint with the wrong method: refused, and still one span.
    let r = http.get(format!("{base}/token")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    // The gateway adapter: once without a user token and with a method of the caller's
    // invention (refused; the span names it `_OTHER`), once granted with a malformed
    // traceparent (ignored: a new trace).
    let r = http
        .request(
            reqwest::Method::from_bytes(b"SECRETMETHOD").unwrap(),
            format!("{base}/gateway/txn-token"),
        )
        .header("txn-scope", "orders:read")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(format!("{base}/gateway/txn-token"))
        .header("authorization", format!("Bearer {subject}"))
        .header(
            "gateway-authorization",
            format!("Basic {}", base64_standard(&format!("dev-client:{secret}"))),
        )
        .header("txn-scope", "orders:read")
        .header("traceparent", "00-zz-not-a-trace")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let txn = r.headers()["txn-token"].to_str().unwrap().to_owned();

    // Stopping the server sends the spans it still holds.
    drop(server);
    let logs = std::fs::read_to_string(d.join("otel.err")).unwrap();
    assert!(logs.contains("token exchanged"), "{logs}");
    assert!(
        !logs.contains("sts.request") && !logs.contains("sts.caller"),
        "{logs}"
    );
    let all = spans(&got);
    for (path, content_type, _) in got.lock().unwrap().iter() {
        assert_eq!(path, "/v1/traces");
        assert_eq!(content_type, "application/json");
    }
    let named = |name: &str| -> Vec<&Value> { all.iter().filter(|s| s["name"] == name).collect() };
    let token_spans = named("POST /token");
    assert_eq!(token_spans.len(), 2, "{all:#?}");
    let granted = token_spans
        .iter()
        .find(|s| s["traceId"] == TRACE_ID)
        .expect("the granted request joins the caller's trace");
    assert_eq!(granted["parentSpanId"], PARENT_ID);
    assert_eq!(granted["kind"], 2, "a server span");
    let text = |s: &Value, k: &str| attribute(s, k).map(|v| v["stringValue"].clone());
    assert_eq!(granted["traceState"], "");
    // Exactly the documented attributes (docs/operations.md, Tracing).
    let keys = |s: &Value| -> Vec<String> {
        let mut k: Vec<String> = s["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["key"].as_str().unwrap().to_owned())
            .collect();
        k.sort();
        k
    };
    assert_eq!(
        keys(granted),
        [
            "http.request.method",
            "http.response.status_code",
            "http.route",
            "sts.caller",
            "sts.issued_id",
            "sts.profile"
        ]
    );
    assert_eq!(text(granted, "http.request.method").unwrap(), "POST");
    assert_eq!(text(granted, "http.route").unwrap(), "/token");
    assert_eq!(
        attribute(granted, "http.response.status_code").unwrap()["intValue"],
        "200"
    );
    assert_eq!(text(granted, "sts.caller").unwrap(), "dev-client");
    assert_eq!(text(granted, "sts.profile").unwrap(), "orders-access");
    let jti = decode_payload(&issued)["jti"].clone();
    assert_eq!(text(granted, "sts.issued_id").unwrap(), jti);
    assert_eq!(attribute(granted, "error.type"), None);

    let refused = token_spans
        .iter()
        .find(|s| s["traceId"] != TRACE_ID)
        .unwrap();
    assert_eq!(refused["parentSpanId"], "", "a new trace");
    assert_eq!(
        attribute(refused, "http.response.status_code").unwrap()["intValue"],
        "401"
    );
    assert_eq!(text(refused, "sts.oauth_error").unwrap(), "invalid_client");
    // A refusal was served: not an error of the span (only 5xx are).
    assert_eq!(attribute(refused, "error.type"), None);
    assert_eq!(refused["status"]["code"], 0);
    assert_eq!(text(refused, "sts.caller"), None);

    let wrong_method = named("GET /token");
    assert_eq!(wrong_method.len(), 1, "{all:#?}");
    assert_eq!(
        attribute(wrong_method[0], "http.response.status_code").unwrap()["intValue"],
        "405"
    );
    assert_eq!(
        text(wrong_method[0], "sts.oauth_error").unwrap(),
        "invalid_request"
    );

    let gateway = named("GET /gateway/txn-token");
    assert_eq!(gateway.len(), 1, "{all:#?}");
    let other = named("_OTHER /gateway/txn-token");
    assert_eq!(other.len(), 1, "{all:#?}");
    assert_eq!(text(other[0], "http.request.method").unwrap(), "_OTHER");
    let issued_txn = gateway
        .iter()
        .find(|s| attribute(s, "http.response.status_code").unwrap()["intValue"] == "200")
        .unwrap();
    assert_eq!(issued_txn["parentSpanId"], "");
    assert_eq!(text(issued_txn, "sts.profile").unwrap(), "gateway-ingress");
    assert_eq!(
        text(issued_txn, "sts.issued_id").unwrap(),
        decode_payload(&txn)["txn"]
    );
    let no_token = other[0];
    assert_eq!(
        attribute(no_token, "http.response.status_code").unwrap()["intValue"],
        "401"
    );
    assert_eq!(
        text(no_token, "sts.oauth_error").unwrap(),
        "invalid_request"
    );
    // Nothing but the spans' own fields: no log events, no code locations.
    for s in &all {
        assert_eq!(s["events"], serde_json::json!([]));
        assert!(
            attribute(s, "code.file.path").is_none() && attribute(s, "code.filepath").is_none()
        );
    }

    let exported: String = got
        .lock()
        .unwrap()
        .iter()
        .map(|(_, _, b)| b.as_str())
        .collect();
    crate::support::leaks::assert_text_free_of(
        &exported,
        &[
            subject,
            issued,
            txn,
            secret,
            CALLER_STATE.to_owned(),
            "SECRETMETHOD".to_owned(),
        ],
    );
}

fn base64_standard(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// The claims of a compact JWS (unverified: the test only reads what it was issued).
fn decode_payload(jws: &str) -> Value {
    let payload = jws.split('.').nth(1).unwrap();
    serde_json::from_slice(&sts::jose::b64_decode(payload).unwrap()).unwrap()
}

/// With `trust_caller_trace: false` a caller's `traceparent` is ignored: the span starts a
/// trace of the service's own, so no caller picks the trace id or the sampling decision.
#[actix_web::test]
async fn untrusted_callers_cannot_choose_the_trace() {
    let (endpoint, got) = receiver();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let server = start_with(
        d,
        port,
        "otel-untrusted",
        &[
            ("STS__TELEMETRY__OTLP_ENDPOINT", &endpoint),
            ("STS__TELEMETRY__SERVICE_NAME", "sts-test"),
            ("STS__TELEMETRY__TRUST_CALLER_TRACE", "false"),
        ],
    )
    .await;
    let r = reqwest::Client::new()
        .post(format!("{}/token", server.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
        .body("grant_type=client_credentials")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    drop(server);
    let all = spans(&got);
    assert_eq!(all.len(), 1, "{all:#?}");
    assert_ne!(all[0]["traceId"], TRACE_ID);
    assert_eq!(all[0]["parentSpanId"], "");
}

/// Waits up to 20 s for `done`.
async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The server's logs so far (both streams).
fn logs(dir: &std::path::Path, name: &str) -> String {
    ["out", "err"]
        .iter()
        .map(|ext| std::fs::read_to_string(dir.join(format!("{name}.{ext}"))).unwrap_or_default())
        .collect()
}

/// A collector that refuses exports is reported in the logs while the service runs: one line
/// when exporting starts failing (not one per batch), one when it works again.
#[actix_web::test]
async fn export_failures_are_logged_when_they_start_and_end() {
    let behaviour = Behaviour::default();
    behaviour.refuse.store(true, Ordering::SeqCst);
    let (endpoint, got) = receiver_with(behaviour.clone());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let port = free_port();
    let server = start_with(
        d,
        port,
        "otel-failing",
        &[
            ("STS__TELEMETRY__OTLP_ENDPOINT", &endpoint),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let http = reqwest::Client::new();
    let request = || {
        http.post(format!("{}/token", server.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body("grant_type=client_credentials")
            .send()
    };
    const FAILED: &str = "trace export failed";
    const AGAIN: &str = "trace export works again";
    // Two refused exports, one line.
    for sent in 1..=2 {
        assert_eq!(request().await.unwrap().status(), 400);
        wait_for("a refused export", || {
            behaviour.attempts.load(Ordering::SeqCst) >= sent
        })
        .await;
    }
    wait_for("the failure line", || {
        logs(d, "otel-failing").contains(FAILED)
    })
    .await;
    let log = logs(d, "otel-failing");
    assert_eq!(log.matches(FAILED).count(), 1, "{log}");
    assert!(log.contains(&format!("{endpoint}/v1/traces")), "{log}");
    assert!(log.contains("503"), "{log}");
    assert!(!log.contains(AGAIN), "{log}");
    // The collector is back: the next span arrives and one line says so.
    behaviour.refuse.store(false, Ordering::SeqCst);
    for _ in 0..2 {
        assert_eq!(request().await.unwrap().status(), 400);
    }
    wait_for("an accepted export", || !got.lock().unwrap().is_empty()).await;
    wait_for("the recovery line", || {
        logs(d, "otel-failing").contains(AGAIN)
    })
    .await;
    drop(server);
    let log = logs(d, "otel-failing");
    assert_eq!(log.matches(FAILED).count(), 1, "{log}");
    assert_eq!(log.matches(AGAIN).count(), 1, "{log}");
}
