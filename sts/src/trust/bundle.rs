//! SPIFFE trust bundles as a key source (SPIFFE_Trust_Domain_and_Bundle.md §4): a JWK Set whose
//! keys say what they are for in `use` (`jwt-svid`, `x509-svid`, `wit-svid`). A verifier takes
//! only the keys of its own use; keys of another or unknown use are ignored, and a bundle with
//! none of its use yields no key, so that trust domain's credentials fail closed.
//!
//! The bundle comes from a file or an HTTPS bundle endpoint through the built-in fetch. This
//! module parses no credential and applies no policy.

use serde_json::{Value, json};

use super::{KeyDocument, KeyFetch};

/// Wraps a fetch of a SPIFFE bundle and hands on only the keys of one `use`.
#[derive(Debug)]
pub struct BundleKeys {
    inner: Box<dyn KeyFetch>,
    key_use: &'static str,
}

impl BundleKeys {
    pub fn new(inner: Box<dyn KeyFetch>, key_use: &'static str) -> Self {
        Self { inner, key_use }
    }
}

#[async_trait::async_trait]
impl KeyFetch for BundleKeys {
    async fn fetch(&self) -> Result<KeyDocument, String> {
        let doc = self.inner.fetch().await?;
        let bundle: Value = serde_json::from_slice(&doc.jwks)
            .map_err(|_| "SPIFFE bundle is not valid JSON".to_string())?;
        let keys = bundle
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("SPIFFE bundle has no `keys` array")?;
        let selected: Vec<Value> = keys
            .iter()
            .filter(|k| k.get("use").and_then(Value::as_str) == Some(self.key_use))
            .map(|k| {
                let mut k = k.clone();
                if let Some(o) = k.as_object_mut() {
                    // Its use is checked here; the key set reads signature keys.
                    o.remove("use");
                }
                k
            })
            .collect();
        Ok(KeyDocument {
            jwks: json!({ "keys": selected }).to_string().into_bytes(),
            algorithms: doc.algorithms,
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
            Ok(KeyDocument {
                jwks: self.0.as_bytes().to_vec(),
                algorithms: None,
            })
        }
    }

    #[tokio::test]
    async fn only_keys_of_the_wanted_use_pass() {
        let bundle = r#"{"spiffe_sequence": 3, "keys": [
            {"use": "x509-svid", "kty": "EC", "crv": "P-256", "x": "a", "y": "b"},
            {"use": "wit-svid", "kty": "OKP", "crv": "Ed25519", "x": "c", "kid": "w1"},
            {"use": "jwt-svid", "kty": "OKP", "crv": "Ed25519", "x": "d", "kid": "j1"},
            {"use": "future-svid", "kty": "OKP", "crv": "Ed25519", "x": "e"}
        ]}"#;
        let doc = BundleKeys::new(Box::new(Fixed(bundle)), "wit-svid")
            .fetch()
            .await
            .unwrap();
        let v: Value = serde_json::from_slice(&doc.jwks).unwrap();
        assert_eq!(
            v,
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "c", "kid": "w1"}]})
        );
        let none = BundleKeys::new(Box::new(Fixed(r#"{"keys": []}"#)), "wit-svid")
            .fetch()
            .await
            .unwrap();
        assert_eq!(none.jwks, br#"{"keys":[]}"#.to_vec());
        assert!(
            BundleKeys::new(Box::new(Fixed("[]")), "wit-svid")
                .fetch()
                .await
                .is_err()
        );
    }
}
