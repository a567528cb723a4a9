//! Stored client secrets: `pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64url parts).
//!
//! The slow PBKDF2 check runs once per secret; its success is remembered as a SHA-256 digest so
//! a gateway's next requests cost one hash and a constant-time comparison. Only a secret that
//! matched the stored hash is ever remembered.

use std::num::NonZeroU32;
use std::sync::RwLock;

use aws_lc_rs::{constant_time, digest, pbkdf2, rand};

use crate::jose::{b64_decode, b64_encode};
use crate::secret::ClientSecret;

const PREFIX: &str = "pbkdf2-sha256";
/// Iterations for newly made hashes.
pub const DEFAULT_ITERATIONS: u32 = 210_000;

pub struct SecretHash {
    iterations: NonZeroU32,
    salt: Vec<u8>,
    hash: Vec<u8>,
    verified_digest: RwLock<Option<Vec<u8>>>,
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(redacted)")
    }
}

impl SecretHash {
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad =
            || format!("expected {PREFIX}$<iterations>$<salt>$<hash> as made by `sts hash-secret`");
        let parts: Vec<&str> = s.split('$').collect();
        let [PREFIX, iterations, salt, hash] = parts.as_slice() else {
            return Err(bad());
        };
        let iterations = iterations
            .parse::<u32>()
            .ok()
            .and_then(NonZeroU32::new)
            .ok_or_else(bad)?;
        if iterations.get() < 10_000 {
            return Err("iterations must be at least 10000".into());
        }
        let salt = b64_decode(salt).filter(|s| s.len() >= 16).ok_or_else(bad)?;
        let hash = b64_decode(hash).filter(|h| h.len() == 32).ok_or_else(bad)?;
        Ok(Self {
            iterations,
            salt,
            hash,
            verified_digest: RwLock::new(None),
        })
    }

    /// Makes a new stored form of `secret`.
    pub fn create(secret: &str, iterations: u32) -> Result<String, String> {
        let iterations = NonZeroU32::new(iterations).ok_or("iterations must be positive")?;
        let mut salt = [0u8; 16];
        rand::fill(&mut salt).map_err(|_| "no randomness")?;
        let mut out = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            secret.as_bytes(),
            &mut out,
        );
        Ok(format!(
            "{PREFIX}${iterations}${}${}",
            b64_encode(&salt),
            b64_encode(&out)
        ))
    }

    /// Whether `presented` is the secret, in constant time with respect to its content.
    pub fn verify(&self, presented: &ClientSecret) -> bool {
        let d = digest::digest(&digest::SHA256, presented.expose().as_bytes());
        if let Ok(g) = self.verified_digest.read()
            && let Some(known) = g.as_ref()
            && constant_time::verify_slices_are_equal(known, d.as_ref()).is_ok()
        {
            return true;
        }
        let ok = pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            presented.expose().as_bytes(),
            &self.hash,
        )
        .is_ok();
        if ok && let Ok(mut g) = self.verified_digest.write() {
            *g = Some(d.as_ref().to_vec());
        }
        ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_refusal() {
        let stored = SecretHash::create("s3cret-value", 10_000).unwrap();
        let h = SecretHash::parse(&stored).unwrap();
        assert!(!h.verify(&ClientSecret::new("wrong")));
        assert!(h.verify(&ClientSecret::new("s3cret-value")));
        assert!(h.verify(&ClientSecret::new("s3cret-value")), "cached path");
        assert!(
            !h.verify(&ClientSecret::new("wrong")),
            "cache does not widen"
        );
        assert!(SecretHash::parse("plain-text").is_err());
        assert!(SecretHash::parse("pbkdf2-sha256$5$AAAAAAAAAAAAAAAAAAAAAA$x").is_err());
    }
}
