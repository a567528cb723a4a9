//! sts: an RFC 8693 Security Token Service for workloads.
//!
//! Module map (design §3): `http` is the only actix-web code; `exchange` runs the pipeline;
//! `profile` and `mapping` hold the admin's policy; `token` the token kinds; `trust` others'
//! keys; `keys` ours; `auth` client authentication; `store` replay state; `jose` the JWS
//! primitives; `expr` CEL; `config`, `clock`, `secret`, `error` the shared basics.

pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod dev;
pub mod error;
pub mod exchange;
pub mod explain;
pub mod expr;
pub mod fuzzing;
pub mod http;
pub mod inspect;
pub mod jose;
pub mod keys;
pub mod log_format;
pub mod logs;
pub mod mapping;
pub mod profile;
pub mod secret;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod trust;
pub mod workload_id;
pub mod yaml;

/// Installs aws-lc-rs as the one crypto provider for rustls and jsonwebtoken (stack.md), so no
/// transitive feature can switch them. Safe to call more than once.
pub fn install_crypto_providers() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let _ = jsonwebtoken::crypto::aws_lc::DEFAULT_PROVIDER.install_default();
}
