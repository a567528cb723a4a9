//! HTTP: routes, request extraction, the error → RFC 6749 JSON mapping, metadata, JWKS and
//! health. The only module that knows actix-web.
//!
//! Handlers read `now` once, turn the request into typed values and hand them to `exchange`;
//! they make no policy decisions of their own.

mod busy_poll;
mod error;
mod gateway;
mod meta;
mod tls;
mod token;

use std::sync::Arc;

use actix_web::web;

pub use error::ApiError;

use crate::app::AppState;

/// The tracing span of a request to `route` (`sts::telemetry`), a child of the caller's span
/// when the request carries `traceparent`; a disabled span when tracing is off. A method
/// outside RFC 9110's is named `_OTHER` (OpenTelemetry HTTP conventions), so a caller cannot
/// write the span's name.
fn request_span(route: &str, req: &actix_web::HttpRequest) -> tracing::Span {
    use actix_web::http::Method;
    if !crate::telemetry::enabled() {
        return tracing::Span::none();
    }
    let method = req.method();
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::CONNECT,
        Method::OPTIONS,
        Method::TRACE,
        Method::PATCH,
    ];
    let method = if known.contains(method) {
        method.as_str()
    } else {
        "_OTHER"
    };
    let traceparent = req
        .headers()
        .get("traceparent")
        .and_then(|v| v.to_str().ok());
    crate::telemetry::request_span(method, route, traceparent)
}

/// Registers every route; `main` and the tests use this same function.
pub fn configure(state: Arc<AppState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let gateway = state.snapshot().settings.gateway.path.clone();
        if !gateway.is_empty() {
            cfg.route(&gateway, web::route().to(gateway::txn_token));
        }
        cfg.app_data(web::Data::from(state))
            .service(
                web::resource("/token")
                    .route(web::post().to(token::token))
                    .default_service(web::to(token::wrong_method)),
            )
            .route(
                "/.well-known/oauth-authorization-server",
                web::get().to(meta::metadata),
            )
            .route("/jwks", web::get().to(meta::jwks))
            .route("/spiffe/bundle", web::get().to(meta::spiffe_bundle))
            .route("/metrics", web::get().to(meta::metrics))
            .route("/healthz", web::get().to(meta::healthz))
            .route("/readyz", web::get().to(meta::readyz));
    }
}

/// Runs the HTTP server until it is stopped.
pub async fn serve(state: Arc<AppState>) -> std::io::Result<()> {
    let snap = state.snapshot();
    let addr = snap.settings.listen_addr().map_err(std::io::Error::other)?;
    let workers = snap.settings.workers;
    let busy_poll = snap.settings.busy_poll;
    let tls = snap
        .settings
        .tls
        .as_ref()
        .map(tls::server_config)
        .transpose()
        .map_err(std::io::Error::other)?;
    drop(snap);
    state.spawn_refresh();
    let server = actix_web::HttpServer::new(move || {
        // Runs on each worker thread as it starts.
        busy_poll::start(busy_poll);
        actix_web::App::new()
            .wrap_fn(|req, service| {
                use actix_web::dev::Service;
                busy_poll::touch();
                let response = service.call(req);
                async move {
                    let response = response.await;
                    // The window runs from the end of the request too: a slow request
                    // (a JWKS fetch, a secret check) does not leave the worker asleep.
                    busy_poll::touch();
                    response
                }
            })
            .configure(configure(state.clone()))
    })
    .on_connect(tls::on_connect);
    let mut server = match tls {
        Some(config) => {
            tracing::info!(%addr, "listening (TLS)");
            server.bind_rustls_0_23(addr, config)?
        }
        None => {
            tracing::info!(%addr, "listening");
            server.bind(addr)?
        }
    };
    if workers > 0 {
        server = server.workers(workers);
    }
    server.run().await
}
