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
    let client_certificates = s.client_certificates_enabled();
    // RFC 8705 §3.3: binding needs a caller authenticated by certificate, which needs an
    // entry that validates certificates and a listener that asks for them.
    let mutual_tls = client_certificates
        && snap
            .trust
            .all()
            .any(|t| t.verifier.authenticates_certificates());
    let mut methods = vec![
        AuthMethod::PrivateKeyJwt.as_str(),
        AuthMethod::ClientSecretBasic.as_str(),
    ];
    for source in snap.trust.all() {
        let usable = !source.verifier.authenticates_certificates() || client_certificates;
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

/// Our JWT-SVID signing keys as a SPIFFE bundle (`use: jwt-svid`), for the bundle of a trust
/// domain whose workloads should accept the JWT-SVIDs we issue. `404` when no profile issues
/// JWT-SVIDs. These keys are not in `/jwks`, and `/jwks`'s keys are not here.
pub async fn spiffe_bundle(state: web::Data<AppState>) -> HttpResponse {
    let snap = state.snapshot();
    let Some(signer) = &snap.svid_signer else {
        return HttpResponse::NotFound().json(json!({"error": "no profile issues JWT-SVIDs"}));
    };
    let keys: Vec<serde_json::Value> = signer
        .jwks()
        .get("keys")
        .and_then(|k| k.as_array())
        .into_iter()
        .flatten()
        .map(|k| {
            let mut k = k.clone();
            k["use"] = json!("jwt-svid");
            k
        })
        .collect();
    HttpResponse::Ok()
        .insert_header(("cache-control", "max-age=300"))
        .json(json!({"keys": keys, "spiffe_refresh_hint": 300}))
}

/// Prometheus text format (0.0.4): the state of every trust entry's key source — loaded,
/// failed loads (the previous keys were kept each time), the installed SPIFFE bundle's
/// sequence — so an alert can fire on a bundle that stopped refreshing. Labels carry entry
/// names from the configuration, never a key or a token.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    use std::fmt::Write;
    let snap = state.snapshot();
    let sources: Vec<(&str, &crate::trust::KeyStore)> = snap
        .trust
        .all()
        .filter_map(|s| s.verifier.keys().map(|k| (&*s.name, k)))
        .collect();
    let mut out = String::new();
    let mut family = |name: &str,
                      kind: &str,
                      help: &str,
                      value: &dyn Fn(&crate::trust::KeyStore) -> Option<u64>| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (trust, keys) in &sources {
            if let Some(v) = value(keys) {
                let _ = writeln!(out, "{name}{{trust=\"{}\"}} {v}", label(trust));
            }
        }
    };
    family(
        "sts_trust_keys_loaded",
        "gauge",
        "Whether the trust entry's keys have loaded (0: its tokens fail closed).",
        &|k| Some(u64::from(k.is_loaded())),
    );
    family(
        "sts_trust_key_load_failures_total",
        "counter",
        "Key or bundle loads that failed; the previous keys were kept.",
        &|k| Some(k.failure_count()),
    );
    family(
        "sts_trust_bundle_sequence",
        "gauge",
        "spiffe_sequence of the installed SPIFFE bundle.",
        &|k| k.sequence(),
    );
    family(
        "sts_trust_refresh_interval_seconds",
        "gauge",
        "How often the keys are refetched (a bundle's refresh hint when it has one).",
        &|k| Some(k.refresh_interval().as_secs()),
    );
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(out)
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
