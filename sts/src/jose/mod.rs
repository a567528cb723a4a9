//! JOSE primitives: algorithms, strict JSON, compact JWS parsing and verification, JWK sets.
//!
//! This is the layer that turns bytes into checked claims. It knows nothing about token kinds,
//! issuers, audiences or policy (that is `token/` and `trust/`), and it never chooses a key from
//! the token itself: the caller hands in the key set bound to the expected issuer
//! (RFC 8725 §3.1, §3.10). Keys are parsed once, when the key set is loaded.

mod alg;
pub mod json;
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

/// [`b64_encode`] appended to `out`, without an intermediate string.
pub fn b64_encode_into(bytes: &[u8], out: &mut String) {
    URL_SAFE_NO_PAD.encode_string(bytes, out);
}

/// The length of [`b64_encode`]'s output for `n` bytes (a capacity hint: 0 if it would
/// overflow).
pub fn b64_len(n: usize) -> usize {
    base64::encoded_len(n, false).unwrap_or(0)
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Encoding round-trips.
        #[test]
        fn round_trip(bytes in prop::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(b64_decode(&b64_encode(&bytes)), Some(bytes));
        }

        /// Canonical only: whatever decodes re-encodes to the very same text, so two spellings
        /// of one value (non-zero trailing bits) cannot both pass.
        #[test]
        fn only_canonical_text_decodes(s in "[A-Za-z0-9_=+/-]{0,12}") {
            if let Some(bytes) = b64_decode(&s) {
                prop_assert_eq!(b64_encode(&bytes), s);
            }
        }

        /// Padding and the standard alphabet's `+` and `/` are refused.
        #[test]
        fn padding_and_standard_alphabet_are_refused(s in "[A-Za-z0-9_-]{0,8}[=+/][A-Za-z0-9_=-]{0,4}") {
            prop_assert_eq!(b64_decode(&s), None);
        }
    }
}
