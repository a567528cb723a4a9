//! Our own public signing keys as a key source, for kinds that verify what this service issued
//! (a Txn-Token presented for replacement). The snapshot fills it from its signer once the
//! signer exists; until then (and in `sts check`) it holds no keys and lookups fail closed.
//!
//! It reads no file and makes no network call: the keys come from the signer in memory.

use std::sync::{Arc, OnceLock};

use super::{KeyDocument, KeyFetch};

/// The published JWKS of our signer, shared by the key sources that read it.
#[derive(Debug, Clone, Default)]
pub struct OwnKeys(Arc<OnceLock<Vec<u8>>>);

impl OwnKeys {
    /// No keys yet.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Sets the published JWKS (once; later calls are ignored).
    pub fn set(&self, jwks: &serde_json::Value) {
        let _ = self.0.set(jwks.to_string().into_bytes());
    }

    /// A key fetch that reads these keys.
    pub fn fetch(&self) -> Box<dyn KeyFetch> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl KeyFetch for OwnKeys {
    async fn fetch(&self) -> Result<KeyDocument, String> {
        let jwks = self
            .0
            .get()
            .cloned()
            .ok_or_else(|| "our signing keys are not loaded yet".to_owned())?;
        Ok(KeyDocument::jwks(jwks))
    }
}
