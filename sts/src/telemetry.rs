//! Distributed tracing (OpenTelemetry): one span per token request (`POST /token`, the gateway
//! adapter), exported over OTLP/HTTP with JSON encoding to `telemetry.otlp_endpoint`, and joined
//! to the caller's trace when the request carries a W3C `traceparent`.
//!
//! A span carries identifiers only: its name, the HTTP status, the OAuth error code, the
//! authenticated client id, the profile and the issued token's `jti`/`txn` (design invariant
//! 10). Never a token, a secret, a header value or a claim beyond those. The spans have a
//! target of their own ([`TARGET`]) that only the OpenTelemetry layer sees, so log lines are the
//! same with tracing on or off; with tracing off no span is created at all. This module knows
//! nothing about HTTP frameworks and decides nothing.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider, Tracer};
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

/// The running exporter. Dropping it sends the spans not yet exported (at shutdown).
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Drop for Exporter {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        if let Err(e) = self.provider.shutdown() {
            eprintln!("sts: telemetry: the last spans could not be exported: {e}");
        }
    }
}

/// Starts the exporter that `settings` asks for (`None` when tracing is off) and the tracer the
/// subscriber's OpenTelemetry layer writes through.
pub fn start(settings: &TelemetrySettings) -> Result<Option<(Exporter, Tracer)>, String> {
    if settings.otlp_endpoint.is_empty() {
        return Ok(None);
    }
    let endpoint = format!("{}/v1/traces", settings.otlp_endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(endpoint)
        .build()
        .map_err(|e| format!("telemetry.otlp_endpoint: {e}"))?;
    // A caller's sampling decision (the `traceparent` flag) wins; new traces are sampled at the
    // configured ratio.
    let sampler = Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(settings.sample_ratio)));
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
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

/// Whether request spans are being recorded.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The span of one request named `name` (e.g. `POST /token`): a child of the caller's span
/// when `traceparent` (with its `tracestate`) is valid, else a new trace. A disabled span when
/// tracing is off.
pub fn request_span(
    name: &'static str,
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "request",
        otel.name = name,
        otel.kind = "server",
        otel.status_code = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
        sts.caller = Empty,
        sts.profile = Empty,
        sts.issued_id = Empty,
    );
    if let Some(tp) = traceparent {
        let mut carrier = HashMap::with_capacity(2);
        carrier.insert("traceparent".to_owned(), tp.to_owned());
        if let Some(ts) = tracestate {
            carrier.insert("tracestate".to_owned(), ts.to_owned());
        }
        let parent = TraceContextPropagator::new().extract(&carrier);
        // An invalid `traceparent` gives an empty context: the span starts a new trace.
        let _ = span.set_parent(parent);
    }
    span
}

/// Records one of the [`field`]s on the current request span (nothing when tracing is off).
pub fn record(field: &'static str, value: &str) {
    if enabled() {
        Span::current().record(field, value);
    }
}

/// Records how the request ended: its HTTP status and, for a refusal, the OAuth error code.
/// A server-side failure (5xx) marks the span as an error (OpenTelemetry HTTP conventions).
pub fn finish(span: &Span, status: u16, error: Option<&str>) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", i64::from(status));
    if let Some(code) = error {
        span.record("error.type", code);
    }
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}
