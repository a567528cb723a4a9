//! The integration test binary: every file below is a module of it (design §8).

mod support;

mod client_auth;
mod config_load;
mod delegation;

mod errors;
mod exchange;
mod key_sources;
mod negative_suite;
mod profiles_load;
