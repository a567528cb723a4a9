//! Stored client secrets: `pbkdf2-sha256$<iterations>$<salt>$<hash>` (base64url parts).
//!
//! The slow PBKDF2 check runs once per secret; its success is remembered as an HMAC-SHA256 (with
//! a random per-process key) so a gateway's next requests cost one MAC and a constant-time
//! comparison. Only a secret that
//! matched the stored hash is ever remembered.

use std::num::NonZeroU32;
use std::sync::RwLock;

use aws_lc_rs::{constant_time, hmac, pbkdf2, rand};

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
    /// Keys the remembered digest (HMAC-SHA256 with a random key of this process), so a
    /// memory dump does not hold a fast hash of the secret.
    remember_key: hmac::Key,
}

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash(redacted)")
    }
}

/// A fresh random HMAC key. If randomness fails the key is all zeros: the remembered digest is
/// then an unkeyed-strength hash, still never the secret.
fn remember_key() -> hmac::Key {
    let mut k = [0u8; 32];
    let _ = rand::fill(&mut k);
    hmac::Key::new(hmac::HMAC_SHA256, &k)
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
            remember_key: remember_key(),
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

    /// A stand-in for an unknown or non-secret client: checking a secret against it costs
    /// the same PBKDF2 work as a wrong secret for a real client, and never succeeds.
    pub fn decoy(iterations: u32) -> Self {
        let mut salt = vec![0u8; 16];
        let mut hash = vec![0u8; 32];
        // Random salt and hash: no secret derives to it. If randomness fails the zero hash
        // still matches nothing a client can present with overwhelming probability.
        let _ = rand::fill(&mut salt);
        let _ = rand::fill(&mut hash);
        Self {
            iterations: NonZeroU32::new(iterations.max(10_000)).unwrap_or(NonZeroU32::MIN),
            salt,
            hash,
            verified_digest: RwLock::new(None),
            remember_key: remember_key(),
        }
    }

    pub fn iterations(&self) -> u32 {
        self.iterations.get()
    }

    /// The cheap check: whether `presented` is the secret that last passed [`verify_slow`]
    /// (one HMAC-SHA256 and a constant-time comparison). `false` says nothing either way.
    ///
    /// [`verify_slow`]: Self::verify_slow
    pub fn matches_remembered(&self, presented: &ClientSecret) -> bool {
        let d = hmac::sign(&self.remember_key, presented.expose().as_bytes());
        self.verified_digest.read().is_ok_and(|g| {
            g.as_ref().is_some_and(|known| {
                constant_time::verify_slices_are_equal(known, d.as_ref()).is_ok()
            })
        })
    }

    /// The PBKDF2 check, constant time with respect to the content; remembers a match. Slow
    /// by design: run it off the HTTP workers (`SecretCheckPool`).
    pub fn verify_slow(&self, presented: &ClientSecret) -> bool {
        let ok = pbkdf2::verify(
            pbkdf2::PBKDF2_HMAC_SHA256,
            self.iterations,
            &self.salt,
            presented.expose().as_bytes(),
            &self.hash,
        )
        .is_ok();
        if ok && let Ok(mut g) = self.verified_digest.write() {
            let d = hmac::sign(&self.remember_key, presented.expose().as_bytes());
            *g = Some(d.as_ref().to_vec());
        }
        ok
    }

    /// `iterations` of PBKDF2 whose result is thrown away: pads a cheaper check to the cost of
    /// the dearest, so the time taken does not tell which hash was checked.
    pub fn burn(iterations: u32) {
        if let Some(n) = NonZeroU32::new(iterations) {
            let mut out = [0u8; 32];
            pbkdf2::derive(
                pbkdf2::PBKDF2_HMAC_SHA256,
                n,
                b"sts-padding-salt",
                b"",
                &mut out,
            );
        }
    }

    /// Both checks in order, on the calling thread (tools and tests).
    pub fn verify(&self, presented: &ClientSecret) -> bool {
        self.matches_remembered(presented) || self.verify_slow(presented)
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
        let decoy = SecretHash::decoy(10_000);
        assert!(!decoy.verify(&ClientSecret::new("")));
        assert!(!decoy.verify(&ClientSecret::new("s3cret-value")));
        assert_eq!(SecretHash::decoy(5).iterations(), 10_000);
        assert!(SecretHash::parse("pbkdf2-sha256$5$AAAAAAAAAAAAAAAAAAAAAA$x").is_err());
    }
}
