//! Development mode (`dev: true`, the embedded default): a local identity provider key and a
//! client, so a newcomer can exchange a token in a minute.
//!
//! Adds trust entry `dev-idp` (issuer `https://dev-idp.sts.invalid`, keys from a JWKS file
//! written next to its private key) and client `dev-client` (client_secret_basic, the secret in
//! a 0600 file). Only allowed on a loopback listener (config validation). Never logs the
//! secret or the private key, only where they are.

use std::fs;
use std::path::Path;

use crate::auth::SecretHash;
use crate::config::{ClientSettings, Settings, TrustEntry};
use crate::jose::{Alg, b64_encode};
use crate::keys::{SigningKey, create_private_dir, pem_decode, pem_encode, write_private};

pub const DEV_IDP: &str = "dev-idp";
pub const DEV_IDP_ISSUER: &str = "https://dev-idp.sts.invalid";
pub const DEV_CLIENT: &str = "dev-client";

pub fn idp_key_path(settings: &Settings) -> std::path::PathBuf {
    settings.dev_dir.join("idp.pem")
}

/// Creates the development material if missing and adds the dev trust entry and client.
pub fn prepare(settings: &mut Settings) -> Result<(), String> {
    let dir = settings.dev_dir.clone();
    create_private_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let key_path = idp_key_path(settings);
    if !key_path.exists() {
        let der = SigningKey::generate_pkcs8(Alg::ES256).map_err(|e| e.to_string())?;
        write_private(&key_path, &pem_encode("PRIVATE KEY", &der))
            .map_err(|e| format!("{}: {e}", key_path.display()))?;
    }
    let key = read_idp_key(&key_path)?;
    let jwks_path = dir.join("idp-jwks.json");
    let jwks = serde_json::json!({ "keys": [key.public_jwk()] });
    fs::write(&jwks_path, jwks.to_string()).map_err(|e| format!("{}: {e}", jwks_path.display()))?;

    let secret_path = dir.join("client-secret");
    if !secret_path.exists() {
        let mut raw = [0u8; 24];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| "no randomness".to_string())?;
        write_private(&secret_path, &b64_encode(&raw))
            .map_err(|e| format!("{}: {e}", secret_path.display()))?;
    }
    let secret =
        fs::read_to_string(&secret_path).map_err(|e| format!("{}: {e}", secret_path.display()))?;
    let secret_hash = SecretHash::create(secret.trim(), 10_000)?;
    register(settings, &jwks_path, secret_hash);
    tracing::warn!(
        trust = DEV_IDP,
        idp_key = %key_path.display(),
        client = DEV_CLIENT,
        client_secret_file = %secret_path.display(),
        "DEVELOPMENT MODE: a local identity provider and client are trusted; never run this in production"
    );
    Ok(())
}

/// Adds the dev trust entry and client as `prepare` would, but creates and writes nothing:
/// for `sts check`, which validates the configuration without touching the disk.
pub fn register_for_check(settings: &mut Settings) -> Result<(), String> {
    let jwks_path = settings.dev_dir.join("idp-jwks.json");
    // Any well-formed hash: check looks at the shape of the client, never at its secret.
    let placeholder = SecretHash::create("sts-check-placeholder", 10_000)?;
    register(settings, &jwks_path, placeholder);
    Ok(())
}

fn register(settings: &mut Settings, jwks_path: &Path, secret_hash: String) {
    if !settings.trust.iter().any(|t| t.name == DEV_IDP) {
        let mut entry = TrustEntry::new(
            DEV_IDP,
            "oauth-jwt",
            serde_json::json!({
                "issuer": DEV_IDP_ISSUER,
                "algorithms": ["ES256"],
                "jwks": {"file": jwks_path},
            }),
        );
        entry.index = settings.trust.len();
        settings.trust.push(entry);
    }
    if !settings.clients.iter().any(|c| c.id == DEV_CLIENT) {
        settings.clients.push(ClientSettings {
            id: DEV_CLIENT.into(),
            secret_hash: Some(secret_hash),
            jwks: None,
            algorithms: None,
        });
    }
}

pub fn read_idp_key(path: &Path) -> Result<SigningKey, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let der = pem_decode("PRIVATE KEY", &text)
        .ok_or_else(|| format!("{}: not a PEM private key", path.display()))?;
    SigningKey::from_pkcs8(&der).ok_or_else(|| format!("{}: unreadable key", path.display()))
}
