//! Distributed tracing (OpenTelemetry): one span per token request (`POST /token`, the gateway
//! adapter), exported over OTLP/HTTP with JSON encoding to `telemetry.otlp_endpoint`, and joined
//! to the caller's trace when the request carries a W3C `traceparent`.
//!
//! A span carries identifiers only: its method and route, the HTTP status, the OAuth error
//! code, the authenticated client id, the profile and the issued token's `jti`/`txn` (design
//! invariant 10). Never a token, a secret, a claim beyond those, or a header value: of the
//! caller's trace context only the parsed trace and span ids are used (`tracestate` is not
//! read, so nothing the caller writes is exported). The spans have a target of their own
//! ([`TARGET`]) that only the OpenTelemetry layer sees, so log lines are the same with tracing
//! on or off; with tracing off no span is created at all. This module knows nothing about HTTP
//! frameworks and decides nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Tracer};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::config::TelemetrySettings;

/// The target of request spans: the OpenTelemetry layer takes only this, the log layer never.
pub const TARGET: &str = "sts::trace";

/// The span fields that [`record`] may fill.
pub mod field {
    pub const CALLER: &str = "sts.caller";
    pub const PROFILE: &str = "sts.profile";
    pub const ISSUED_ID: &str = "sts.issued_id";
}

static ENABLED: AtomicBool = AtomicBool::new(false);
/// `telemetry.trust_caller_trace`: whether a request's `traceparent` is followed.
static TRUST_CALLER_TRACE: AtomicBool = AtomicBool::new(false);

/// How long one export may take: the SDK gives the last export at shutdown 5 s in all.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);

/// The running exporter. Dropping it sends the spans not yet exported (at shutdown, within 5 s).
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            tracing::warn!(error = %e, "the last trace spans could not be exported");
        }
    }
}

/// Starts the exporter that `settings` asks for (`None` when tracing is off) and the tracer the
/// subscriber's OpenTelemetry layer writes through. Call it outside any async runtime (the
/// exporter's HTTP client runs its own). `extra_roots`: the PEM of `outbound_ca_file`.
pub fn start(
    settings: &TelemetrySettings,
    extra_roots: Option<&[u8]>,
) -> Result<Option<(Exporter, Tracer)>, String> {
    if settings.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let endpoint = format!("{}/v1/traces", settings.otlp_endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(http_client(extra_roots)?)
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(endpoint.as_str())
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .map_err(|e| format!("telemetry: {e}"))?;
    // A followed `traceparent` decides; a trace that starts here (with our own random id, so
    // no caller picks it) is sampled at the configured ratio.
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
    TRUST_CALLER_TRACE.store(settings.trust_caller_trace, Ordering::Relaxed);
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(ReportingExporter::new(exporter, endpoint))
        .with_sampler(sampler)
        .with_resource(
            Resource::builder_empty()
                .with_service_name(settings.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("sts");
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some((Exporter { provider }, tracer)))
}

/// An exporter that says in the logs when exporting starts failing and when it works again:
/// one `warn` line at the first failed batch (the spans of failed batches are dropped) and one
/// `info` line at the first success after failures, not a line per batch.
#[derive(Debug)]
struct ReportingExporter<E> {
    inner: E,
    /// The collector's URL, for the log lines (validated: no user information).
    endpoint: String,
    failing: AtomicBool,
}

impl<E> ReportingExporter<E> {
    fn new(inner: E, endpoint: String) -> Self {
        Self {
            inner,
            endpoint,
            failing: AtomicBool::new(false),
        }
    }

    /// Logs a change between working and failing; returns whether this result changed it.
    fn observe(&self, result: &OTelSdkResult, spans: usize) -> bool {
        let failed = result.is_err();
        if self.failing.swap(failed, Ordering::Relaxed) == failed {
            return false;
        }
        match result {
            Err(e) => tracing::warn!(
                endpoint = self.endpoint.as_str(),
                error = %e,
                spans,
                "trace export failed; spans are dropped until the collector accepts them again"
            ),
            Ok(()) => tracing::info!(
                endpoint = self.endpoint.as_str(),
                "trace export works again"
            ),
        }
        true
    }
}

impl<E: SpanExporter> SpanExporter for ReportingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let spans = batch.len();
        let result = self.inner.export(batch).await;
        self.observe(&result, spans);
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The exporter's HTTP client: no redirects, no proxy from the environment (the collector is
/// addressed directly), the system's roots plus `outbound_ca_file`.
fn http_client(extra_roots: Option<&[u8]>) -> Result<reqwest::blocking::Client, String> {
    let mut builder = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(EXPORT_TIMEOUT)
        .user_agent(concat!("sts/", env!("CARGO_PKG_VERSION")));
    if let Some(pem) = extra_roots {
        builder = builder.tls_certs_merge(crate::trust::extra_roots(pem)?);
    }
    builder
        .build()
        .map_err(|e| format!("telemetry: HTTP client: {e}"))
}

/// Whether request spans are being recorded.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The caller's `traceparent`, the only member of its trace context that is read.
struct TraceParent<'a>(&'a str);

impl Extractor for TraceParent<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The server span of one request (`method` and `route` as the service names them, never the
/// request's raw target): a child of the caller's span when `traceparent` is valid and the
/// settings trust callers' trace context, else a new trace. A disabled span when tracing is
/// off.
pub fn request_span(method: &str, route: &str, traceparent: Option<&str>) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "sts.request",
        otel.name = format!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        http.route = route,
        http.response.status_code = Empty,
        error.type = Empty,
        sts.oauth_error = Empty,
        sts.caller = Empty,
        sts.profile = Empty,
        sts.issued_id = Empty,
    );
    if let Some(tp) = traceparent.filter(|_| TRUST_CALLER_TRACE.load(Ordering::Relaxed)) {
        let parent = TraceContextPropagator::new().extract(&TraceParent(tp));
        // An invalid `traceparent` gives an empty context: the span starts a new trace.
        let _ = span.set_parent(parent);
    }
    span
}

/// Records one of the [`field`]s on the current span, which must be the request span (an
/// inner span would take the value instead); nothing when tracing is off.
pub fn record(field: &'static str, value: &str) {
    if enabled() {
        Span::current().record(field, value);
    }
}

/// Records how the request ended: its HTTP status and, for a refusal, the OAuth error code
/// (`sts.oauth_error`). Only a server-side failure (5xx) is an error of the span, with
/// `error.type` (OpenTelemetry HTTP server conventions): a refused request was still served.
pub fn finish(span: &Span, status: u16, oauth_error: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status));
    if let Some(code) = oauth_error {
        span.record("sts.oauth_error", code);
    }
    if status >= 500 {
        span.record("error.type", oauth_error.unwrap_or("server_error"));
        span.record("otel.status_code", "ERROR");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_sdk::error::OTelSdkError;

    #[test]
    fn export_results_are_reported_only_when_they_change() {
        let exporter = ReportingExporter::new((), "http://collector/v1/traces".into());
        let failed = || Err(OTelSdkError::InternalFailure("refused".into()));
        assert!(!exporter.observe(&Ok(()), 1), "working from the start");
        assert!(exporter.observe(&failed(), 1), "the first failure");
        assert!(!exporter.observe(&failed(), 1), "still failing");
        assert!(exporter.observe(&Ok(()), 1), "working again");
        assert!(!exporter.observe(&Ok(()), 1), "still working");
        assert!(exporter.observe(&failed(), 1), "failing again");
    }
}
