//! Input kind `x509-svid`: client authentication by an X509-SVID presented as the TLS client
//! certificate (draft-ietf-oauth-spiffe-client-auth §3.2, RFC 8705 `spiffe_x509`). It verifies
//! no token: its entries authenticate clients only.
//!
//! The TLS layer checked only that the client holds the leaf's private key. Here the chain is
//! validated (RFC 5280, `clientAuth` usage when an EKU is present) against the `x509-svid`
//! authorities of the trust domain named by the leaf's SPIFFE ID, from that trust domain's
//! bundle — never the system store, never another domain's bundle. The leaf rules of
//! X509-SVID.md §4–5: exactly one URI SAN, a canonical SPIFFE ID with a path, not a CA, key
//! usage present with `digitalSignature` and without `keyCertSign`/`cRLSign`. No profile
//! policy here; `client_id` is compared by the client-authentication path.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::{CertificateDer, UnixTime as TlsTime};
use serde::Deserialize;
use serde_json::{Value, json};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::jwt_svid::{SVID_ALGS, bundle_store};
use super::{
    ClientCertificate, InputKind, KindEnv, Presented, Rejection, Verified, Verifier, VerifyContext,
};
use crate::config::{ConfigError, JwksSettings, TrustEntry};
use crate::jose::Claims;
use crate::trust::{BundleUse, KeyStore};
use crate::workload_id::{Scheme, WorkloadId, check_trust_domain};

/// The `x509-svid` kind.
pub struct X509SvidKind;

/// An `x509-svid` trust entry's block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    /// The trust domain whose workloads' X509-SVIDs this entry verifies.
    trust_domain: String,
    /// Its SPIFFE bundle (the `x509-svid` authorities are used): a file or an `https_web`
    /// bundle endpoint.
    bundle: JwksSettings,
}

impl InputKind for X509SvidKind {
    fn name(&self) -> &'static str {
        "x509-svid"
    }

    /// None: a certificate is a client credential, never an exchanged token.
    fn token_types(&self) -> &'static [&'static str] {
        &[]
    }

    fn sample_claims(&self) -> Claims {
        let c = json!({"sub": "spiffe://example.org/ns/sample/sa/sample", "exp": 1_700_000_300});
        match c {
            Value::Object(m) => m,
            _ => Claims::new(),
        }
    }

    fn configure(
        &self,
        entry: &TrustEntry,
        env: &KindEnv<'_>,
    ) -> Result<Arc<dyn Verifier>, ConfigError> {
        let b: Block = entry.parse_block()?;
        check_trust_domain(Scheme::Spiffe, &b.trust_domain)
            .map_err(|e| entry.error("trust_domain", format!("the trust domain {e}")))?;
        let keys = bundle_store(entry, env, &b.bundle, BundleUse::X509Svid, &SVID_ALGS)?;
        Ok(Arc::new(X509SvidVerifier {
            trust: Arc::from(entry.name.as_str()),
            trust_domain: b.trust_domain,
            keys,
        }))
    }
}

/// One `x509-svid` entry's verifier.
#[derive(Debug)]
struct X509SvidVerifier {
    trust: Arc<str>,
    trust_domain: String,
    keys: KeyStore,
}

/// The leaf's SPIFFE ID and expiry, after the X509-SVID leaf rules.
fn check_leaf(leaf: &[u8]) -> Result<(WorkloadId, i64), Rejection> {
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|_| Rejection::Kind("client certificate is not a valid X.509 certificate"))?;
    let malformed = || Rejection::Kind("client certificate has malformed extensions");
    // X509-SVID.md §2: exactly one URI SAN; more is refused, never chosen from.
    let san = cert.subject_alternative_name().map_err(|_| malformed())?;
    let uris: Vec<&str> = san
        .iter()
        .flat_map(|s| s.value.general_names.iter())
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else {
        return Err(Rejection::Kind("an X509-SVID has exactly one URI SAN"));
    };
    let id = WorkloadId::parse(uri)
        .ok()
        .filter(|id| id.scheme() == Scheme::Spiffe)
        .ok_or(Rejection::Kind(
            "client certificate URI SAN is not a canonical SPIFFE ID with a path",
        ))?;
    // §4.1: a leaf is not a CA.
    let constraints = cert.basic_constraints().map_err(|_| malformed())?;
    if constraints.is_some_and(|c| c.value.ca) {
        return Err(Rejection::Kind("client certificate is a CA certificate"));
    }
    // §4.3: key usage present, digitalSignature set, keyCertSign and cRLSign not.
    let usage = cert
        .key_usage()
        .map_err(|_| malformed())?
        .ok_or(Rejection::Kind(
            "client certificate lacks the key usage extension",
        ))?;
    if !usage.value.digital_signature() || usage.value.key_cert_sign() || usage.value.crl_sign() {
        return Err(Rejection::Kind(
            "client certificate key usage is not digitalSignature for a leaf",
        ));
    }
    Ok((id, cert.validity().not_after.timestamp()))
}

/// RFC 5280 path validation of `chain` (leaf first) against `roots` at `now`, for client
/// authentication (an EKU, when present, must allow `clientAuth`).
fn validate_path(chain: &[Vec<u8>], roots: &[Vec<u8>], now: i64) -> Result<(), Rejection> {
    let leaf = CertificateDer::from(chain.first().map(Vec::as_slice).unwrap_or_default());
    let end = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|_| Rejection::Kind("client certificate is not a valid X.509 certificate"))?;
    let root_ders: Vec<CertificateDer<'_>> = roots
        .iter()
        .map(|r| CertificateDer::from(r.as_slice()))
        .collect();
    let anchors: Vec<_> = root_ders
        .iter()
        .filter_map(|r| webpki::anchor_from_trusted_cert(r).ok())
        .collect();
    let intermediates: Vec<CertificateDer<'_>> = chain
        .iter()
        .skip(1)
        .map(|c| CertificateDer::from(c.as_slice()))
        .collect();
    let time = TlsTime::since_unix_epoch(Duration::from_secs(u64::try_from(now).unwrap_or(0)));
    let algorithms = rustls::crypto::aws_lc_rs::default_provider()
        .signature_verification_algorithms
        .all;
    end.verify_for_usage(
        algorithms,
        &anchors,
        &intermediates,
        time,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| match e {
        webpki::Error::CertExpired { .. } => Rejection::Expired,
        webpki::Error::CertNotValidYet { .. } => Rejection::NotYetValid,
        _ => Rejection::Kind(
            "client certificate does not chain to the X.509 authorities of its trust domain",
        ),
    })
}

#[async_trait::async_trait]
impl Verifier for X509SvidVerifier {
    /// Takes no tokens.
    fn recognizes(&self, _presented: &Presented<'_>) -> bool {
        false
    }

    async fn verify(
        &self,
        _presented: Presented<'_>,
        _ctx: &VerifyContext<'_>,
    ) -> Result<Verified, Rejection> {
        Err(Rejection::Kind(
            "an x509-svid entry verifies certificates, not tokens",
        ))
    }

    fn issuer(&self) -> &str {
        &self.trust_domain
    }

    fn keys(&self) -> Option<&KeyStore> {
        Some(&self.keys)
    }

    fn authenticates_clients(&self) -> bool {
        true
    }

    fn client_auth_method(&self) -> &'static str {
        "spiffe_x509"
    }

    fn authenticates_certificates(&self) -> bool {
        true
    }

    async fn verify_certificate(
        &self,
        certificate: &ClientCertificate,
        ctx: &VerifyContext<'_>,
    ) -> Option<Result<Verified, Rejection>> {
        let leaf = certificate.leaf()?;
        let (id, not_after) = match check_leaf(leaf) {
            // Another trust domain's certificate is that domain's entry's to judge.
            Ok((id, _)) if id.trust_domain() != self.trust_domain => return None,
            Ok(found) => found,
            Err(e) => return Some(Err(e)),
        };
        // Bundle §4: only this trust domain's authorities; none loaded yet fails closed.
        if !self.keys.is_loaded() {
            return Some(Err(Rejection::KeysUnavailable));
        }
        let roots = self.keys.roots();
        if let Err(e) = validate_path(&certificate.0, &roots, ctx.now) {
            return Some(Err(e));
        }
        let claims = json!({"sub": id.as_str(), "exp": not_after});
        Some(Ok(Verified {
            claims: match claims {
                Value::Object(m) => m,
                _ => Claims::new(),
            },
            trust: self.trust.clone(),
            kind: "x509-svid",
            proven_key: None,
            asserted_by_caller: false,
        }))
    }
}
