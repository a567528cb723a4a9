//! RFC 8414 metadata, our JWKS, liveness and readiness.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::app::AppState;
use crate::auth::AuthMethod;
use crate::exchange::GRANT_TYPES;
use crate::jose::Alg;

pub async fn metadata(state: web::Data<AppState>) -> HttpResponse {
    let snap = state.snapshot();
    let s = &snap.settings;
    let issuer = s.issuer.trim_end_matches('/');
    let signing: Vec<&str> = [Alg::ES256, Alg::EdDSA, Alg::RS256, Alg::PS256]
        .iter()
        .map(|a| a.as_str())
        .collect();
    // Methods of trust entries that authenticate clients (a WIT with its WPT, a JWT-SVID,
    // an X509-SVID when the listener asks for client certificates), once each.
    let mutual_tls = s.client_certificates_enabled();
    let mut methods = vec![
        AuthMethod::PrivateKeyJwt.as_str(),
        AuthMethod::ClientSecretBasic.as_str(),
    ];
    for source in snap.trust.all() {
        let usable = !source.verifier.authenticates_certificates() || mutual_tls;
        if source.verifier.authenticates_clients() && usable {
            let m = source.verifier.client_auth_method();
            if !methods.contains(&m) {
                methods.push(m);
            }
        }
    }
    HttpResponse::Ok()
        .insert_header(("cache-control", "max-age=300"))
        .json(json!({
            "issuer": s.issuer,
            "token_endpoint": s.token_endpoint(),
            "jwks_uri": format!("{issuer}/jwks"),
            "grant_types_supported": GRANT_TYPES.iter().map(|g| g.uri).collect::<Vec<_>>(),
            "token_endpoint_auth_methods_supported": methods,
            // RFC 8414 §2: `none` MUST NOT be listed.
            "token_endpoint_auth_signing_alg_values_supported": signing,
            // RFC 8414 requires the member; there is no authorization endpoint.
            "response_types_supported": [],
            // RFC 8705 §3.3: access tokens can be bound to the client's TLS certificate.
            "tls_client_certificate_bound_access_tokens": mutual_tls,
        }))
}

pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("cache-control", "max-age=300"))
        .content_type("application/jwk-set+json")
        .json(state.snapshot().signer.jwks())
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// Ready when our keys and profiles are loaded (they are, or we would not be running) and
/// every trust source and every `private_key_jwt` client has loaded its keys at least once.
/// Anyone may ask, so the answer carries counts only: no client id and no trust entry name
/// (the log names them).
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let snap = state.snapshot();
    let waiting = |loaded: Vec<(&str, bool)>| loaded.iter().filter(|(_, ok)| !ok).count();
    let trust_waiting = waiting(snap.trust_ready());
    let clients_waiting = waiting(snap.clients.keys_loaded());
    let store_reachable = state.replay.reachable().await;
    let ready = trust_waiting == 0 && clients_waiting == 0 && store_reachable;
    let body = json!({
        "status": if ready { "ready" } else { "waiting" },
        "signing_kid": snap.signer.kid(),
        "profiles": snap.catalog.profiles.len(),
        "trust_not_loaded": trust_waiting,
        "clients_not_loaded": clients_waiting,
        "store_reachable": store_reachable,
    });
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}
