//! The `https_spiffe` bundle endpoint profile (SPIFFE federation §5.2.2): a trust domain's
//! bundle fetched from an endpoint whose TLS server certificate is an X509-SVID.
//!
//! The server is authenticated by its SPIFFE ID — the configured `endpoint_spiffe_id`, byte for
//! byte — and by a chain, for server authentication, to the `x509-svid` authorities of the
//! endpoint's own trust domain; neither the Web PKI nor the URL's host name plays a part. A
//! self-serving endpoint (its SPIFFE ID in the trust domain being fetched) is authenticated
//! with the configured initial bundle until a bundle has been fetched, and from then on with
//! the latest bundle fetched (an older `spiffe_sequence` never replaces it, and a bundle
//! without X.509 authorities never empties it). Any other endpoint is authenticated with the
//! bundle file of its trust domain, read at every fetch so that rotating that file needs no
//! restart. This module judges the connection only: the bundle's keys are parsed by `bundle`
//! and ordered by `KeyStore` like those of any other source. It follows no redirect.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::bundle::{BundleUse, parse_bundle};
use super::fetch::HttpFetcher;
use super::keystore::{KeyDocument, KeyFetch, read_key_file};

/// The X.509 authorities of a bundle, with its `spiffe_sequence`.
#[derive(Debug, Clone)]
struct Authorities {
    sequence: Option<u64>,
    roots: Vec<Vec<u8>>,
}

/// Fetches one trust entry's bundle from an `https_spiffe` endpoint.
#[derive(Debug)]
pub struct SpiffeEndpointFetch {
    url: String,
    endpoint_id: String,
    /// The initial bundle (self-serving) or the endpoint's trust domain's bundle (otherwise).
    endpoint_bundle: PathBuf,
    self_serving: bool,
    http: HttpFetcher,
    /// Self-serving: the authorities of the latest bundle fetched.
    latest: Mutex<Option<Authorities>>,
}

impl SpiffeEndpointFetch {
    /// `self_serving`: whether `endpoint_id` is in the trust domain the bundle is for.
    pub fn new(
        url: &str,
        endpoint_id: &str,
        endpoint_bundle: PathBuf,
        self_serving: bool,
        http: &HttpFetcher,
    ) -> Self {
        Self {
            url: url.to_owned(),
            endpoint_id: endpoint_id.to_owned(),
            endpoint_bundle,
            self_serving,
            http: http.clone(),
            latest: Mutex::new(None),
        }
    }

    /// The authorities that authenticate the endpoint on this connection.
    async fn roots(&self) -> Result<Vec<Vec<u8>>, String> {
        if self.self_serving
            && let Some(latest) = &*self.latest.lock().unwrap_or_else(PoisonError::into_inner)
        {
            return Ok(latest.roots.clone());
        }
        let document = read_key_file(&self.endpoint_bundle).await?;
        endpoint_authorities(&document)
            .map(|a| a.roots)
            .map_err(|e| format!("{}: {e}", self.endpoint_bundle.display()))
    }

    /// Self-serving: the authorities of a bundle just fetched authenticate the next connection,
    /// unless it is older than the one installed or has none.
    fn remember(&self, document: &[u8]) {
        if !self.self_serving {
            return;
        }
        let Ok(fetched) = endpoint_authorities(document) else {
            return;
        };
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let older = match (latest.as_ref().and_then(|a| a.sequence), fetched.sequence) {
            (Some(installed), Some(new)) => new < installed,
            _ => false,
        };
        if !older {
            *latest = Some(fetched);
        }
    }
}

/// The `x509-svid` authorities of a bundle document; none is an error.
fn endpoint_authorities(document: &[u8]) -> Result<Authorities, String> {
    let bundle = parse_bundle(document, BundleUse::X509Svid)?;
    if bundle.roots.is_empty() {
        return Err("the bundle has no x509-svid authority to authenticate the endpoint".into());
    }
    Ok(Authorities {
        sequence: bundle.sequence,
        roots: bundle.roots,
    })
}

#[async_trait::async_trait]
impl KeyFetch for SpiffeEndpointFetch {
    async fn fetch(&self) -> Result<KeyDocument, String> {
        let roots = self.roots().await?;
        let verifier = Arc::new(SvidServerVerifier::new(roots, &self.endpoint_id));
        let tls = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        let client = HttpFetcher::with_tls(self.http.timeout(), tls)?;
        let document = client.get(&self.url).await.map_err(|e| {
            // The handshake's reason, which the HTTP error does not carry.
            match verifier.refusal() {
                Some(why) => format!("{e}: {why}"),
                None => e,
            }
        })?;
        self.remember(&document);
        Ok(KeyDocument::jwks(document))
    }
}

/// Authenticates the endpoint's server by its X509-SVID (no host name check: the SPIFFE ID
/// is the name), and remembers why it refused one.
#[derive(Debug)]
struct SvidServerVerifier {
    roots: Vec<Vec<u8>>,
    endpoint_id: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
    refused: Mutex<Option<&'static str>>,
}

impl SvidServerVerifier {
    fn new(roots: Vec<Vec<u8>>, endpoint_id: &str) -> Self {
        Self {
            roots,
            endpoint_id: endpoint_id.to_owned(),
            provider: Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
            refused: Mutex::new(None),
        }
    }

    fn refusal(&self) -> Option<&'static str> {
        *self.refused.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn algorithms(&self) -> &WebPkiSupportedAlgorithms {
        &self.provider.signature_verification_algorithms
    }
}

impl ServerCertVerifier for SvidServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let chain: Vec<Vec<u8>> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.to_vec())
            .collect();
        let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
        match crate::token::validate_endpoint_svid(&chain, &self.roots, &self.endpoint_id, now) {
            Ok(()) => Ok(ServerCertVerified::assertion()),
            Err(e) => {
                let why = match e {
                    crate::token::Rejection::Kind(m) => m,
                    crate::token::Rejection::Expired => "the bundle endpoint's X509-SVID expired",
                    crate::token::Rejection::NotYetValid => {
                        "the bundle endpoint's X509-SVID is not valid yet"
                    }
                    _ => "the bundle endpoint's X509-SVID was refused",
                };
                *self.refused.lock().unwrap_or_else(PoisonError::into_inner) = Some(why);
                Err(rustls::Error::InvalidCertificate(
                    rustls::CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, self.algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, self.algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms().supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(sequence: u64, root: &[u8]) -> Vec<u8> {
        use base64::Engine;
        let x5c = base64::engine::general_purpose::STANDARD.encode(root);
        serde_json::json!({
            "spiffe_sequence": sequence,
            "keys": [{"use": "x509-svid", "kty": "EC", "crv": "P-256",
                      "x": "x", "y": "y", "x5c": [x5c]}],
        })
        .to_string()
        .into_bytes()
    }

    fn fetcher(self_serving: bool) -> SpiffeEndpointFetch {
        let http = HttpFetcher::new(std::time::Duration::from_secs(1)).unwrap();
        SpiffeEndpointFetch::new(
            "https://127.0.0.1:1/bundle",
            "spiffe://example.org/spire/server",
            PathBuf::from("/nonexistent"),
            self_serving,
            &http,
        )
    }

    fn latest(f: &SpiffeEndpointFetch) -> Option<(Option<u64>, Vec<Vec<u8>>)> {
        f.latest
            .lock()
            .unwrap()
            .as_ref()
            .map(|a| (a.sequence, a.roots.clone()))
    }

    #[test]
    fn a_self_serving_endpoint_is_authenticated_by_the_latest_bundle_only() {
        let f = fetcher(true);
        f.remember(&bundle(5, b"root-5"));
        assert_eq!(latest(&f), Some((Some(5), vec![b"root-5".to_vec()])));
        // An older bundle does not roll the authorities back; the same sequence and newer do
        // move them on.
        f.remember(&bundle(4, b"root-4"));
        assert_eq!(latest(&f), Some((Some(5), vec![b"root-5".to_vec()])));
        f.remember(&bundle(5, b"root-5b"));
        assert_eq!(latest(&f), Some((Some(5), vec![b"root-5b".to_vec()])));
        f.remember(&bundle(6, b"root-6"));
        assert_eq!(latest(&f), Some((Some(6), vec![b"root-6".to_vec()])));
        // A bundle without X.509 authorities, or not a bundle, never empties them.
        f.remember(br#"{"spiffe_sequence": 7, "keys": []}"#);
        f.remember(b"not json");
        assert_eq!(latest(&f), Some((Some(6), vec![b"root-6".to_vec()])));
    }

    #[test]
    fn another_domains_endpoint_keeps_using_its_domains_bundle_file() {
        let f = fetcher(false);
        f.remember(&bundle(5, b"root-5"));
        assert_eq!(latest(&f), None);
    }
}
