//! Public JWKs (RFC 7517) turned into pre-parsed verification keys, and key sets looked up by
//! `kid`.
//!
//! Each key is bound to the algorithms it may verify: its own `alg` if the JWK names one, else
//! the trust entry's allowlist filtered to the key's family (RFC 8725 §3.1). A JWK carrying
//! private members is refused rather than used. This module does no I/O.

use std::collections::HashMap;
use std::fmt;

use aws_lc_rs::signature::ParsedPublicKey;
use serde::Deserialize;

use super::alg::KeyFamily;
use super::{Alg, b64_decode};

/// A public key ready to verify one algorithm's signatures.
pub struct VerifyingKey {
    alg: Alg,
    kid: Option<String>,
    key: ParsedPublicKey,
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    pub fn alg(&self) -> Alg {
        self.alg
    }

    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }

    pub(crate) fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), ()> {
        self.key.verify_sig(message, signature).map_err(|_| ())
    }
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    crv: Option<String>,
    x: Option<String>,
    y: Option<String>,
    n: Option<String>,
    e: Option<String>,
    d: Option<String>,
    kid: Option<String>,
    alg: Option<String>,
    #[serde(rename = "use")]
    use_: Option<String>,
}

/// Parses one public JWK into a verification key per algorithm it may be used with.
pub fn parse_jwk_public(
    jwk: &serde_json::Value,
    allowed: &[Alg],
) -> Result<Vec<VerifyingKey>, String> {
    let raw: RawJwk = serde_json::from_value(jwk.clone()).map_err(|e| format!("not a JWK: {e}"))?;
    if raw.d.is_some() {
        return Err("JWK contains private key material".into());
    }
    if raw.use_.as_deref().is_some_and(|u| u != "sig") {
        return Err("JWK is not for signatures (use != sig)".into());
    }
    let family = key_family(&raw)?;
    let algs: Vec<Alg> = match &raw.alg {
        Some(a) => {
            let a: Alg = a
                .parse()
                .map_err(|()| format!("JWK alg `{a}` is not supported"))?;
            if a.family() != family {
                return Err(format!("JWK alg `{a}` does not fit its key type"));
            }
            if allowed.contains(&a) {
                vec![a]
            } else {
                vec![]
            }
        }
        None => allowed
            .iter()
            .copied()
            .filter(|a| a.family() == family)
            .collect(),
    };
    let bytes = public_key_bytes(&raw, family)?;
    algs.into_iter()
        .map(|alg| {
            let key = ParsedPublicKey::new(alg.verification(), &bytes)
                .map_err(|_| "JWK public key is invalid".to_string())?;
            Ok(VerifyingKey {
                alg,
                kid: raw.kid.clone(),
                key,
            })
        })
        .collect()
}

fn key_family(raw: &RawJwk) -> Result<KeyFamily, String> {
    match (raw.kty.as_str(), raw.crv.as_deref()) {
        ("EC", Some("P-256")) => Ok(KeyFamily::P256),
        ("EC", Some("P-384")) => Ok(KeyFamily::P384),
        ("EC", Some("P-521")) => Ok(KeyFamily::P521),
        ("OKP", Some("Ed25519")) => Ok(KeyFamily::Ed25519),
        ("RSA", _) => Ok(KeyFamily::Rsa),
        (kty, crv) => Err(format!("unsupported key type {kty}/{}", crv.unwrap_or("-"))),
    }
}

fn member(v: &Option<String>, name: &str) -> Result<Vec<u8>, String> {
    v.as_deref()
        .and_then(b64_decode)
        .ok_or_else(|| format!("JWK member `{name}` is missing or not base64url"))
}

/// The public key in the form aws-lc-rs parses: an uncompressed EC point, the raw Ed25519 key,
/// or a PKCS#1 `RSAPublicKey` DER.
fn public_key_bytes(raw: &RawJwk, family: KeyFamily) -> Result<Vec<u8>, String> {
    match family {
        KeyFamily::P256 | KeyFamily::P384 | KeyFamily::P521 => {
            let (x, y) = (member(&raw.x, "x")?, member(&raw.y, "y")?);
            // RFC 7518 §6.2.1.2: each coordinate is the full field size.
            let len = match family {
                KeyFamily::P256 => 32,
                KeyFamily::P384 => 48,
                _ => 66,
            };
            if x.len() != len || y.len() != len {
                return Err("EC JWK coordinates have the wrong length".into());
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            Ok(point)
        }
        KeyFamily::Ed25519 => member(&raw.x, "x"),
        KeyFamily::Rsa => Ok(rsa_public_key_der(
            &member(&raw.n, "n")?,
            &member(&raw.e, "e")?,
        )),
    }
}

/// DER of `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }` (RFC 8017).
pub(crate) fn rsa_public_key_der(n: &[u8], e: &[u8]) -> Vec<u8> {
    let mut body = der_unsigned_integer(n);
    body.extend(der_unsigned_integer(e));
    let mut out = vec![0x30];
    out.extend(der_len(body.len()));
    out.extend(body);
    out
}

fn der_unsigned_integer(bytes: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = {
        let start = bytes
            .iter()
            .position(|&b| b != 0)
            .unwrap_or(bytes.len().saturating_sub(1));
        &bytes[start.min(bytes.len())..]
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed.first().is_some_and(|&b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    let mut out = vec![0x02];
    out.extend(der_len(content.len()));
    out.extend(content);
    out
}

fn der_len(len: usize) -> Vec<u8> {
    if len < 0x80 {
        return vec![len as u8];
    }
    let bytes = len.to_be_bytes();
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len() - 1);
    let mut out = vec![0x80 | (bytes.len() - start) as u8];
    out.extend_from_slice(&bytes[start..]);
    out
}

/// The verification keys of one trust source, by `kid`.
#[derive(Debug, Default)]
pub struct KeySet {
    keys: Vec<VerifyingKey>,
    by_kid: HashMap<String, Vec<usize>>,
}

impl KeySet {
    /// Parses a JWK Set document. Keys that cannot be used are skipped and reported in the
    /// second value; a document with no usable key at all is an error.
    pub fn from_jwks(document: &[u8], allowed: &[Alg]) -> Result<(KeySet, Vec<String>), String> {
        let (set, skipped) = Self::from_jwks_allow_empty(document, allowed)?;
        if set.keys.is_empty() {
            return Err(format!(
                "JWK Set has no key usable with the allowed algorithms ({})",
                skipped.join("; ")
            ));
        }
        Ok((set, skipped))
    }

    /// Like [`from_jwks`](Self::from_jwks), but a set with no usable key is an empty set,
    /// not an error (a SPIFFE bundle whose keys were all revoked).
    pub fn from_jwks_allow_empty(
        document: &[u8],
        allowed: &[Alg],
    ) -> Result<(KeySet, Vec<String>), String> {
        let doc: serde_json::Value = serde_json::from_slice(document)
            .map_err(|_| "JWK Set is not valid JSON".to_string())?;
        let Some(list) = doc.get("keys").and_then(|k| k.as_array()) else {
            return Err("JWK Set has no `keys` array".into());
        };
        let mut set = KeySet::default();
        let mut skipped = Vec::new();
        for (i, jwk) in list.iter().enumerate() {
            match parse_jwk_public(jwk, allowed) {
                Ok(keys) => keys.into_iter().for_each(|k| set.insert(k)),
                Err(why) => skipped.push(format!("key #{i}: {why}")),
            }
        }
        Ok((set, skipped))
    }

    pub fn insert(&mut self, key: VerifyingKey) {
        if let Some(kid) = &key.kid {
            self.by_kid
                .entry(kid.clone())
                .or_default()
                .push(self.keys.len());
        }
        self.keys.push(key);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The key for `kid` and `alg`. Without a `kid`, only a set holding exactly one key for
    /// `alg` can answer, so an attacker cannot make us try keys until one fits.
    pub fn find(&self, kid: Option<&str>, alg: Alg) -> Option<&VerifyingKey> {
        match kid {
            Some(kid) => self
                .by_kid
                .get(kid)?
                .iter()
                .map(|&i| &self.keys[i])
                .find(|k| k.alg == alg),
            None => {
                let mut it = self.keys.iter().filter(|k| k.alg == alg);
                match (it.next(), it.next()) {
                    (Some(k), None) => Some(k),
                    _ => None,
                }
            }
        }
    }

    /// Whether any key carries `kid` (whatever its algorithm).
    pub fn has_kid(&self, kid: &str) -> bool {
        self.by_kid.contains_key(kid)
    }
}
