//! The JWS algorithms this service can verify or sign with, and their aws-lc-rs counterparts.
//!
//! Only asymmetric algorithms exist here: `none` and the HMAC family cannot be named, so a
//! token declaring them fails to parse (RFC 8725 §3.1–3.2).

use std::fmt;
use std::str::FromStr;

use aws_lc_rs::signature::{self, VerificationAlgorithm};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Alg {
    ES256,
    ES384,
    ES512,
    EdDSA,
    RS256,
    RS384,
    RS512,
    PS256,
    PS384,
    PS512,
}

/// The key family an algorithm needs; a key of one family never verifies another's signatures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    P256,
    P384,
    P521,
    Ed25519,
    Rsa,
}

impl Alg {
    pub const ALL: [Alg; 10] = [
        Alg::ES256,
        Alg::ES384,
        Alg::ES512,
        Alg::EdDSA,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::PS384,
        Alg::PS512,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::ES512 => "ES512",
            Alg::EdDSA => "EdDSA",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::PS384 => "PS384",
            Alg::PS512 => "PS512",
        }
    }

    pub fn family(self) -> KeyFamily {
        match self {
            Alg::ES256 => KeyFamily::P256,
            Alg::ES384 => KeyFamily::P384,
            Alg::ES512 => KeyFamily::P521,
            Alg::EdDSA => KeyFamily::Ed25519,
            _ => KeyFamily::Rsa,
        }
    }

    pub(crate) fn verification(self) -> &'static dyn VerificationAlgorithm {
        match self {
            Alg::ES256 => &signature::ECDSA_P256_SHA256_FIXED,
            Alg::ES384 => &signature::ECDSA_P384_SHA384_FIXED,
            // RFC 7518 §3.4: P-521 with SHA-512, 66-byte r and s.
            Alg::ES512 => &signature::ECDSA_P521_SHA512_FIXED,
            Alg::EdDSA => &signature::ED25519,
            Alg::RS256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Alg::RS384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Alg::RS512 => &signature::RSA_PKCS1_2048_8192_SHA512,
            Alg::PS256 => &signature::RSA_PSS_2048_8192_SHA256,
            Alg::PS384 => &signature::RSA_PSS_2048_8192_SHA384,
            Alg::PS512 => &signature::RSA_PSS_2048_8192_SHA512,
        }
    }
}

impl FromStr for Alg {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "ES256" => Ok(Alg::ES256),
            "ES384" => Ok(Alg::ES384),
            "ES512" => Ok(Alg::ES512),
            // RFC 9864 fully-specified name for the same Ed25519 signatures.
            "EdDSA" | "Ed25519" => Ok(Alg::EdDSA),
            "RS256" => Ok(Alg::RS256),
            "RS384" => Ok(Alg::RS384),
            "RS512" => Ok(Alg::RS512),
            "PS256" => Ok(Alg::PS256),
            "PS384" => Ok(Alg::PS384),
            "PS512" => Ok(Alg::PS512),
            _ => Err(()),
        }
    }
}

impl fmt::Display for Alg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Alg {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Alg {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(|()| {
            serde::de::Error::custom(format!(
                "unsupported algorithm `{s}` (expected one of ES256, ES384, ES512, EdDSA, RS256, \
                 RS384, RS512, PS256, PS384, PS512)"
            ))
        })
    }
}
