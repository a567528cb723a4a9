//! The integration test binary: every file below is a module of it (design §8).
//! Test code may panic on unexpected states; request-path code may not (workspace lints).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

mod client_auth;
mod config_load;
mod delegation;
mod end_to_end;

mod errors;
mod exchange;
mod explain;
mod fuzz_seeds;
mod gateway_nginx;
mod key_sources;
mod kinds;
mod leaks;
mod negative_suite;
mod profiles_load;
mod properties;
mod replay;
mod spiffe;
mod telemetry;
mod txn_tokens;
mod wimse;
