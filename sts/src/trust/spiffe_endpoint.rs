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

    /// At load (and by `sts check`): `endpoint_bundle` is a regular file that holds at least
    /// one `x509-svid` certificate able to anchor a path, as a fetch will need.
    pub fn check_file(path: &std::path::Path) -> Result<(), String> {
        let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
        if !meta.is_file() {
            return Err("not a regular file".into());
        }
        if meta.len() > super::fetch::MAX_DOCUMENT_BYTES as u64 {
            return Err("the file is too large for a bundle".into());
        }
        let document = std::fs::read(path).map_err(|e| e.to_string())?;
        endpoint_authorities(&document).map(|_| ())
    }

    /// The authorities that authenticate the endpoint on this connection: for a
    /// self-serving endpoint the latest bundle's once one was fetched, else the file's.
    async fn current(&self) -> Result<Authorities, String> {
        if self.self_serving
            && let Some(latest) = &*self.latest.lock().unwrap_or_else(PoisonError::into_inner)
        {
            return Ok(latest.clone());
        }
        let document = read_key_file(&self.endpoint_bundle).await?;
        endpoint_authorities(&document)
            .map_err(|e| format!("{}: {e}", self.endpoint_bundle.display()))
    }

    /// Self-serving: a bundle just fetched from the endpoint that `current` authenticated.
    /// It may not be older than `current` (a lower `spiffe_sequence`, or none after a
    /// numbered one), and its X.509 authorities, when it has any, authenticate the next
    /// connection; one without keeps `current`'s.
    fn advance(&self, current: &Authorities, document: &[u8]) -> Result<(), String> {
        let bundle = parse_bundle(document, BundleUse::X509Svid)?;
        match (current.sequence, bundle.sequence) {
            (Some(installed), Some(new)) if new < installed => {
                return Err(format!(
                    "the endpoint served spiffe_sequence {new}, older than the {installed} of \
                     the bundle that authenticated it"
                ));
            }
            (Some(installed), None) => {
                return Err(format!(
                    "the endpoint served a bundle without spiffe_sequence after sequence \
                     {installed}"
                ));
            }
            _ => {}
        }
        let roots = anchors(bundle.roots);
        let next = if roots.is_empty() {
            tracing::warn!(
                endpoint = self.url.as_str(),
                "the bundle endpoint's own bundle has no x509-svid authority; the previous \
                 ones keep authenticating it"
            );
            current.roots.clone()
        } else {
            report_change(&self.url, &current.roots, &roots);
            roots
        };
        *self.latest.lock().unwrap_or_else(PoisonError::into_inner) = Some(Authorities {
            sequence: bundle.sequence,
            roots: next,
        });
        Ok(())
    }
}

/// The `x509-svid` authorities of a bundle document that can anchor a path; none is an
/// error.
fn endpoint_authorities(document: &[u8]) -> Result<Authorities, String> {
    let bundle = parse_bundle(document, BundleUse::X509Svid)?;
    let roots = anchors(bundle.roots);
    if roots.is_empty() {
        return Err("the bundle has no x509-svid authority to authenticate the endpoint".into());
    }
    Ok(Authorities {
        sequence: bundle.sequence,
        roots,
    })
}

/// Only certificates that can anchor a path count as authorities.
fn anchors(roots: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    roots
        .into_iter()
        .filter(|der| {
            webpki::anchor_from_trusted_cert(&CertificateDer::from(der.as_slice())).is_ok()
        })
        .collect()
}

/// How a self-serving endpoint's authorities changed with a fetched bundle.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    Same,
    /// At least one authority stayed: a rotation as publishers do it.
    Rotated,
    /// None stayed.
    Replaced,
}

fn change(before: &[Vec<u8>], after: &[Vec<u8>]) -> Change {
    if before == after {
        Change::Same
    } else if before.iter().any(|r| after.contains(r)) {
        Change::Rotated
    } else {
        Change::Replaced
    }
}

/// Logs a change of the authorities that authenticate a self-serving endpoint, by SHA-256
/// fingerprint; a set that shares none with the previous one is a `warn` (a publisher adds a
/// new authority to its bundle before using it, so a normal rotation overlaps).
fn report_change(url: &str, before: &[Vec<u8>], after: &[Vec<u8>]) {
    let fingerprints = |roots: &[Vec<u8>]| -> String {
        roots
            .iter()
            .map(|der| crate::secret::fingerprint(der))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (before_fp, after_fp) = (fingerprints(before), fingerprints(after));
    match change(before, after) {
        Change::Same => {}
        Change::Rotated => tracing::info!(
            endpoint = url,
            before = before_fp.as_str(),
            after = after_fp.as_str(),
            "the bundle endpoint's X.509 authorities changed"
        ),
        Change::Replaced => tracing::warn!(
            endpoint = url,
            before = before_fp.as_str(),
            after = after_fp.as_str(),
            "the bundle endpoint's X.509 authorities were all replaced (no overlap with the \
             previous ones)"
        ),
    }
}

/// The reason, for the fetch's error, that the endpoint's X509-SVID was refused.
fn refusal_text(e: crate::token::Rejection) -> &'static str {
    match e {
        crate::token::Rejection::Kind(m) => m,
        crate::token::Rejection::Expired => "the bundle endpoint's X509-SVID expired",
        crate::token::Rejection::NotYetValid => "the bundle endpoint's X509-SVID is not valid yet",
        _ => "the bundle endpoint's X509-SVID was refused",
    }
}

#[async_trait::async_trait]
impl KeyFetch for SpiffeEndpointFetch {
    async fn fetch(&self) -> Result<KeyDocument, String> {
        let current = self.current().await?;
        let verifier = Arc::new(SvidServerVerifier::new(
            current.roots.clone(),
            &self.endpoint_id,
        ));
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
        if self.self_serving {
            self.advance(&current, &document)?;
        }
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
                let why = refusal_text(e);
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

    /// A self-signed CA certificate (DER).
    fn ca() -> Vec<u8> {
        let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        p.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
        let key = rcgen::KeyPair::generate().unwrap();
        p.self_signed(&key).unwrap().der().to_vec()
    }

    fn bundle(sequence: Option<u64>, roots: &[&[u8]]) -> Vec<u8> {
        use base64::Engine;
        let keys: Vec<serde_json::Value> = roots
            .iter()
            .map(|der| {
                let x5c = base64::engine::general_purpose::STANDARD.encode(der);
                serde_json::json!({"use": "x509-svid", "kty": "EC", "x5c": [x5c]})
            })
            .collect();
        let mut b = serde_json::json!({ "keys": keys });
        if let Some(s) = sequence {
            b["spiffe_sequence"] = s.into();
        }
        b.to_string().into_bytes()
    }

    fn fetcher() -> SpiffeEndpointFetch {
        let http = HttpFetcher::new(std::time::Duration::from_secs(1)).unwrap();
        SpiffeEndpointFetch::new(
            "https://127.0.0.1:1/bundle",
            "spiffe://example.org/spire/server",
            PathBuf::from("/nonexistent"),
            true,
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

    fn authorities(sequence: Option<u64>, roots: &[&[u8]]) -> Authorities {
        Authorities {
            sequence,
            roots: roots.iter().map(|r| r.to_vec()).collect(),
        }
    }

    #[test]
    fn a_bundle_older_than_the_one_that_authenticated_the_endpoint_is_refused() {
        let f = fetcher();
        let (a, b) = (ca(), ca());
        let current = authorities(Some(5), &[&a]);
        let e = f.advance(&current, &bundle(Some(4), &[&b])).unwrap_err();
        assert!(e.contains("older"), "{e}");
        let e = f.advance(&current, &bundle(None, &[&b])).unwrap_err();
        assert!(e.contains("without spiffe_sequence"), "{e}");
        assert!(f.advance(&current, b"not json").is_err());
        assert_eq!(latest(&f), None, "nothing refused is remembered");
        // The same sequence and newer ones move the authorities on.
        f.advance(&current, &bundle(Some(5), &[&b])).unwrap();
        assert_eq!(latest(&f), Some((Some(5), vec![b.clone()])));
        f.advance(&authorities(Some(5), &[&b]), &bundle(Some(6), &[&a, &b]))
            .unwrap();
        assert_eq!(latest(&f), Some((Some(6), vec![a.clone(), b.clone()])));
        // Before any numbered bundle, any bundle is newer.
        f.advance(&authorities(None, &[&a]), &bundle(None, &[&b]))
            .unwrap();
        assert_eq!(latest(&f), Some((None, vec![b.clone()])));
    }

    #[test]
    fn authority_changes_are_told_apart() {
        let (a, b) = (vec![1u8], vec![2u8]);
        let (a, b) = (a.as_slice(), b.as_slice());
        let set = |r: &[&[u8]]| r.iter().map(|x| x.to_vec()).collect::<Vec<_>>();
        assert_eq!(change(&set(&[a]), &set(&[a])), Change::Same);
        assert_eq!(change(&set(&[a]), &set(&[a, b])), Change::Rotated);
        assert_eq!(change(&set(&[a, b]), &set(&[b])), Change::Rotated);
        assert_eq!(change(&set(&[a]), &set(&[b])), Change::Replaced);
    }

    #[test]
    fn refusals_say_why() {
        use crate::token::Rejection;
        assert_eq!(refusal_text(Rejection::Kind("because")), "because");
        assert!(refusal_text(Rejection::Expired).ends_with("expired"));
        assert!(refusal_text(Rejection::NotYetValid).ends_with("not valid yet"));
        assert!(refusal_text(Rejection::WrongType).ends_with("was refused"));
    }

    #[test]
    fn a_bundle_without_usable_authorities_keeps_the_previous_ones() {
        let f = fetcher();
        let a = ca();
        let current = authorities(Some(6), &[&a]);
        f.advance(&current, &bundle(Some(7), &[])).unwrap();
        assert_eq!(latest(&f), Some((Some(7), vec![a.clone()])));
        // Bytes that are no certificate are not an authority.
        f.advance(&current, &bundle(Some(8), &[b"not a certificate"]))
            .unwrap();
        assert_eq!(latest(&f), Some((Some(8), vec![a.clone()])));
        assert!(endpoint_authorities(&bundle(Some(1), &[b"not a certificate"])).is_err());
        assert!(endpoint_authorities(&bundle(Some(1), &[])).is_err());
        let found = endpoint_authorities(&bundle(Some(1), &[&a, b"junk"])).unwrap();
        assert_eq!((found.sequence, found.roots), (Some(1), vec![a]));
    }
}
