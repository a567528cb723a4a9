//! JOSE primitives: algorithms, strict JSON, compact JWS parsing and verification, JWK sets.
//!
//! This is the layer that turns bytes into checked claims. It knows nothing about token kinds,
//! issuers, audiences or policy (that is `token/` and `trust/`), and it never chooses a key from
//! the token itself: the caller hands in the key set bound to the expected issuer
//! (RFC 8725 §3.1, §3.10). Keys are parsed once, when the key set is loaded.

mod alg;
mod json;
mod jwk;
mod jws;

pub use alg::Alg;
pub use json::{Claims, StrictJsonError, parse_object};
pub use jwk::{KeySet, VerifyingKey, parse_jwk_public};
pub use jws::{JoseError, JoseHeader, UnverifiedJws, media_type_eq};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// base64url without padding (RFC 7515 §2); rejects padding and non-canonical trailing bits.
pub fn b64_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

pub fn b64_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}
