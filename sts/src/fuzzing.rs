//! The entry points of the fuzz targets (`sts/fuzz/`), shared with the regression test that
//! replays their seeds and past crashes on every CI run (`tests/fuzz_seeds.rs`).
//!
//! Each takes arbitrary bytes, runs one untrusted-input parser exactly as the service does,
//! and returns normally whatever the input: a panic, an abort or a hang is the bug the fuzzer
//! looks for. Nothing here has logic of its own, and nothing here touches the network or disk.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use crate::config::{Limits, Settings};
use crate::exchange::{FormParams, Grant, parse_basic};
use crate::jose::{UnverifiedJws, json};
use crate::token::{KindEnv, KindRegistry};
use crate::trust::{HttpFetcher, TrustRegistry};

/// The compact JWS parser (RFC 7515 §7.1) with the strict JSON parser behind it.
pub fn jws(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = UnverifiedJws::parse(text, 16 * 1024);
    }
    let _ = json::parse_object(data);
}

/// The token endpoint's form parser, grant parser and Basic credential parser. The first line
/// is the `Authorization` value, the rest the body.
pub fn form(data: &[u8]) {
    let (header, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (&[][..], data),
    };
    if let Ok(h) = std::str::from_utf8(header) {
        let _ = parse_basic(h);
    }
    let limits = Limits::default();
    if let Ok(params) = FormParams::parse(body, limits.max_params) {
        let _ = Grant::parse(params, &limits);
    }
}

/// The profile and mapping loader: the text before the first NUL byte is a profile file, the
/// rest a mapping file, against fixed trust entries.
pub fn profiles(data: &[u8]) {
    let Some(trust) = fixture_trust() else {
        return;
    };
    let (profile, mapping) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let profiles = [(PathBuf::from("fuzz-profile.yaml"), text(profile))];
    let mappings = [(PathBuf::from("fuzz-mapping.yaml"), text(mapping))];
    let _ = crate::profile::load_files(&profiles, &mappings, &trust.0, &trust.1, "example.com");
}

/// The process configuration loader (YAML through the `config` crate, then validation).
pub fn config(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Settings::from_yaml(text);
    }
}

/// The trust entries profiles are loaded against.
const FIXTURE: &str = r#"
issuer: https://sts.test
listen: 127.0.0.1:0
keys: {dir: /nonexistent/keys}
profiles: /nonexistent/profiles
mappings: /nonexistent/mappings
trust:
  - {name: corp-idp, kind: oauth-jwt, issuer: "https://idp.test", jwks: {file: /nonexistent/idp.json}}
  - {name: mesh-idp, kind: oauth-jwt, issuer: "https://mesh.test", jwks: {file: /nonexistent/mesh.json}}
  - {name: corp-oidc, kind: oidc-id-token, issuer: "https://oidc.test", client_id: sts, jwks: {file: /nonexistent/oidc.json}}
clients:
  - {id: gateway, jwks: {file: /nonexistent/gateway.json}}
"#;

fn fixture_trust() -> Option<&'static (TrustRegistry, KindRegistry)> {
    static TRUST: OnceLock<Option<(TrustRegistry, KindRegistry)>> = OnceLock::new();
    TRUST
        .get_or_init(|| {
            let settings = Settings::from_yaml(FIXTURE).ok()?;
            let http = HttpFetcher::new(Duration::from_secs(1)).ok()?;
            let kinds = KindRegistry::builtin();
            let env = KindEnv {
                our_issuer: &settings.issuer,
                trust_domain: "example.com",
                own_keys: &crate::trust::OwnKeys::empty(),
                http: &http,
            };
            let trust = TrustRegistry::build(&settings.trust, &kinds, &env).ok()?;
            Some((trust, kinds))
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fixture_builds() {
        assert!(super::fixture_trust().is_some());
    }
}
