//! SPIFFE trust bundles as a key source (SPIFFE_Trust_Domain_and_Bundle.md §4): one trust
//! domain's JWK Set, whose keys say what they are for in `use` (`jwt-svid`, `x509-svid`,
//! `wit-svid`). A verifier takes only the keys of its own use; keys of another or unknown use,
//! or without `kty`, are ignored (§4.2), and a bundle with none of its use yields an empty key
//! set, so that trust domain's credentials fail closed.
//!
//! The bundle's `spiffe_sequence` orders versions (an older one never replaces the installed
//! one) and `spiffe_refresh_hint` sets how often it is refetched (`KeyStore` applies both). A
//! bundle belongs to the trust domain its entry names: nothing here merges two domains' keys.
//! The bundle comes from a file or an HTTPS bundle endpoint: `https_web` through the built-in
//! fetch, `https_spiffe` through `spiffe_endpoint`. This module parses no credential and
//! applies no policy.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use super::{KeyDocument, KeyFetch};
use crate::jose::json::parse_object;

/// What a bundle key is for (its `use`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleUse {
    /// JWT-SVID signing keys (JWT-SVID.md): `kid` required.
    JwtSvid,
    /// WIT-SVID signing keys (WIT-SVID.md): `kid` required and unique in the bundle.
    WitSvid,
    /// X509-SVID authorities (X509-SVID.md): one CA certificate in `x5c`.
    X509Svid,
}

impl BundleUse {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::JwtSvid => "jwt-svid",
            Self::WitSvid => "wit-svid",
            Self::X509Svid => "x509-svid",
        }
    }
}

/// The parts of a SPIFFE bundle one verifier uses.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ParsedBundle {
    /// JWKs of the wanted use (without `use`), for a signature-key use.
    pub keys: Vec<Value>,
    /// DER CA certificates, for `x509-svid`.
    pub roots: Vec<Vec<u8>>,
    pub sequence: Option<u64>,
    pub refresh_hint: Option<Duration>,
    /// Why keys of the wanted use were left out (for the log).
    pub ignored: Vec<String>,
}

/// Parses a bundle document (strict JSON: duplicate members are refused) and keeps the keys
/// of `wanted`. A bundle without a `keys` array, or with a malformed `spiffe_sequence` or
/// `spiffe_refresh_hint`, is refused as a whole.
pub fn parse_bundle(document: &[u8], wanted: BundleUse) -> Result<ParsedBundle, String> {
    let bundle = parse_object(document).map_err(|e| format!("SPIFFE bundle: {e}"))?;
    let keys = bundle
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("SPIFFE bundle has no `keys` array")?;
    let integer = |name: &str| -> Result<Option<u64>, String> {
        match bundle.get(name) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| format!("SPIFFE bundle `{name}` is not a non-negative integer")),
        }
    };
    let mut out = ParsedBundle {
        sequence: integer("spiffe_sequence")?,
        refresh_hint: integer("spiffe_refresh_hint")?.map(Duration::from_secs),
        ..ParsedBundle::default()
    };
    fn kid_of(k: &Value) -> Option<&str> {
        k.get("kid").and_then(Value::as_str)
    }
    // WIT-SVID.md: a wit-svid key's kid is unique across all of the bundle's keys; count
    // every kid once.
    let mut kid_count: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    if wanted == BundleUse::WitSvid {
        for kid in keys.iter().filter_map(kid_of) {
            *kid_count.entry(kid).or_default() += 1;
        }
    }
    for (i, key) in keys.iter().enumerate() {
        // §4.2: `kty` and `use` are required; an element without them, or of another or
        // unknown use, is ignored as a whole.
        let (Some(_), Some(key_use)) = (
            key.get("kty").and_then(Value::as_str),
            key.get("use").and_then(Value::as_str),
        ) else {
            continue;
        };
        if key_use != wanted.as_str() {
            continue;
        }
        match wanted {
            BundleUse::X509Svid => match x509_root(key) {
                Some(der) => out.roots.push(der),
                None => out.ignored.push(format!(
                    "key #{i}: x509-svid without exactly one x5c certificate"
                )),
            },
            BundleUse::JwtSvid | BundleUse::WitSvid => {
                let Some(kid) = kid_of(key).filter(|k| !k.is_empty()) else {
                    out.ignored
                        .push(format!("key #{i}: {} without kid", wanted.as_str()));
                    continue;
                };
                if kid_count.get(kid).is_some_and(|n| *n > 1) {
                    out.ignored
                        .push(format!("key #{i}: kid `{kid}` is not unique"));
                    continue;
                }
                let mut key = key.clone();
                if let Some(o) = key.as_object_mut() {
                    // Its use is checked here; the key set reads signature keys.
                    o.remove("use");
                }
                out.keys.push(key);
            }
        }
    }
    Ok(out)
}

/// X509-SVID.md / bundle §4.2.1: the authority is the single certificate in `x5c` (base64 DER).
fn x509_root(key: &Value) -> Option<Vec<u8>> {
    match key.get("x5c").and_then(Value::as_array).map(Vec::as_slice) {
        Some([one]) => base64::engine::general_purpose::STANDARD
            .decode(one.as_str()?)
            .ok()
            .filter(|d| !d.is_empty()),
        _ => None,
    }
}

/// Wraps a fetch of a SPIFFE bundle and hands on only the keys of one `use`.
#[derive(Debug)]
pub struct BundleKeys {
    inner: Box<dyn KeyFetch>,
    wanted: BundleUse,
}

impl BundleKeys {
    pub fn new(inner: Box<dyn KeyFetch>, wanted: BundleUse) -> Self {
        Self { inner, wanted }
    }
}

#[async_trait::async_trait]
impl KeyFetch for BundleKeys {
    async fn fetch(&self) -> Result<KeyDocument, String> {
        let doc = self.inner.fetch().await?;
        let bundle = parse_bundle(&doc.jwks, self.wanted)?;
        for why in &bundle.ignored {
            tracing::warn!("SPIFFE bundle: ignored {why}");
        }
        Ok(KeyDocument {
            jwks: json!({ "keys": bundle.keys }).to_string().into_bytes(),
            algorithms: doc.algorithms,
            may_be_empty: true,
            sequence: bundle.sequence,
            refresh_hint: bundle.refresh_hint,
            roots: bundle.roots,
        })
    }

    fn local_file(&self) -> Option<&std::path::Path> {
        self.inner.local_file()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Fixed(&'static str);

    #[async_trait::async_trait]
    impl KeyFetch for Fixed {
        async fn fetch(&self) -> Result<KeyDocument, String> {
            Ok(KeyDocument::jwks(self.0.as_bytes().to_vec()))
        }
    }

    const BUNDLE: &str = r#"{"spiffe_sequence": 3, "spiffe_refresh_hint": 60, "keys": [
        {"use": "x509-svid", "kty": "EC", "crv": "P-256", "x": "a", "y": "b", "x5c": ["AQID"]},
        {"use": "wit-svid", "kty": "OKP", "crv": "Ed25519", "x": "c", "kid": "w1"},
        {"use": "jwt-svid", "kty": "OKP", "crv": "Ed25519", "x": "d", "kid": "j1"},
        {"use": "jwt-svid", "kty": "OKP", "crv": "Ed25519", "x": "e"},
        {"use": "jwt-svid", "crv": "Ed25519", "x": "f", "kid": "no-kty"},
        {"kty": "OKP", "crv": "Ed25519", "x": "g", "kid": "no-use"},
        {"use": "JWT-SVID", "kty": "OKP", "crv": "Ed25519", "x": "h", "kid": "case"},
        {"use": "future-svid", "kty": "OKP", "crv": "Ed25519", "x": "i"}
    ]}"#;

    #[tokio::test]
    async fn only_keys_of_the_wanted_use_pass() {
        let doc = BundleKeys::new(Box::new(Fixed(BUNDLE)), BundleUse::WitSvid)
            .fetch()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&doc.jwks).unwrap();
        assert_eq!(
            v,
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "c", "kid": "w1"}]})
        );
        assert_eq!(doc.sequence, Some(3));
        assert_eq!(doc.refresh_hint, Some(Duration::from_secs(60)));
        assert!(doc.may_be_empty && doc.roots.is_empty());
        let none = BundleKeys::new(Box::new(Fixed(r#"{"keys": []}"#)), BundleUse::WitSvid)
            .fetch()
            .await
            .unwrap();
        assert_eq!(none.jwks, br#"{"keys":[]}"#.to_vec());
        assert_eq!((none.sequence, none.refresh_hint), (None, None));
        assert!(
            BundleKeys::new(Box::new(Fixed("[]")), BundleUse::WitSvid)
                .fetch()
                .await
                .is_err()
        );
    }

    #[test]
    fn jwt_svid_keys_need_kid_kty_and_their_exact_use() {
        let b = parse_bundle(BUNDLE.as_bytes(), BundleUse::JwtSvid).unwrap();
        assert_eq!(
            b.keys,
            vec![json!({"kty": "OKP", "crv": "Ed25519", "x": "d", "kid": "j1"})]
        );
        assert_eq!(b.ignored.len(), 1, "{:?}", b.ignored);
    }

    #[test]
    fn x509_roots_come_from_a_single_x5c() {
        let b = parse_bundle(BUNDLE.as_bytes(), BundleUse::X509Svid).unwrap();
        assert_eq!(b.roots, vec![vec![1, 2, 3]]);
        assert!(b.keys.is_empty());
        let two = r#"{"keys": [{"use": "x509-svid", "kty": "EC", "x5c": ["AQID", "BAUG"]}]}"#;
        let b = parse_bundle(two.as_bytes(), BundleUse::X509Svid).unwrap();
        assert!(b.roots.is_empty());
        assert_eq!(b.ignored.len(), 1);
    }

    #[test]
    fn wit_svid_kids_must_be_unique_in_the_bundle() {
        let dup = r#"{"keys": [
            {"use": "wit-svid", "kty": "OKP", "crv": "Ed25519", "x": "a", "kid": "k"},
            {"use": "jwt-svid", "kty": "OKP", "crv": "Ed25519", "x": "b", "kid": "k"}
        ]}"#;
        assert!(
            parse_bundle(dup.as_bytes(), BundleUse::WitSvid)
                .unwrap()
                .keys
                .is_empty()
        );
        assert_eq!(
            parse_bundle(dup.as_bytes(), BundleUse::JwtSvid)
                .unwrap()
                .keys
                .len(),
            1
        );
    }

    #[test]
    fn malformed_bundles_are_refused_whole() {
        for bad in [
            r#"{"keys": {}}"#,
            r#"{"keys": [], "spiffe_sequence": -1}"#,
            r#"{"keys": [], "spiffe_sequence": "3"}"#,
            r#"{"keys": [], "spiffe_refresh_hint": 1.5}"#,
            r#"{"keys": [], "keys": []}"#,
            "not json",
        ] {
            assert!(
                parse_bundle(bad.as_bytes(), BundleUse::JwtSvid).is_err(),
                "{bad}"
            );
        }
    }
}
