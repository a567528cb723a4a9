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
use serde_json::json;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

use super::jwt_svid::{SVID_ALGS, bundle_store};
use super::{
    ClientCertificate, InputKind, KindEnv, Presented, Rejection, Verified, Verifier, VerifyContext,
};
use crate::config::{BundleSettings, ConfigError, TrustEntry};
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
    /// Its SPIFFE bundle (the `x509-svid` authorities are used): a file or a bundle endpoint.
    bundle: BundleSettings,
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
        super::claims::object(
            json!({"sub": "spiffe://example.org/ns/sample/sa/sample", "exp": 1_700_000_300}),
        )
    }

    fn configure(
        &self,
        entry: &TrustEntry,
        env: &KindEnv<'_>,
    ) -> Result<Arc<dyn Verifier>, ConfigError> {
        let b: Block = entry.parse_block()?;
        check_trust_domain(Scheme::Spiffe, &b.trust_domain)
            .map_err(|e| entry.error("trust_domain", format!("the trust domain {e}")))?;
        let keys = bundle_store(
            entry,
            env,
            &b.trust_domain,
            &b.bundle,
            BundleUse::X509Svid,
            &SVID_ALGS,
        )?;
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
        .map_err(|_| Rejection::Kind("the X509-SVID is not a valid X.509 certificate"))?;
    let malformed = || Rejection::Kind("the X509-SVID has malformed extensions");
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
            "the X509-SVID URI SAN is not a canonical SPIFFE ID with a path",
        ))?;
    // §4.1: a leaf is not a CA.
    let constraints = cert.basic_constraints().map_err(|_| malformed())?;
    if constraints.is_some_and(|c| c.value.ca) {
        return Err(Rejection::Kind("the X509-SVID leaf is a CA certificate"));
    }
    // §4.3: key usage present, digitalSignature set, keyCertSign and cRLSign not.
    let usage = cert
        .key_usage()
        .map_err(|_| malformed())?
        .ok_or(Rejection::Kind(
            "the X509-SVID lacks the key usage extension",
        ))?;
    if !usage.critical {
        return Err(Rejection::Kind(
            "the X509-SVID key usage extension is not critical",
        ));
    }
    if !usage.value.digital_signature() || usage.value.key_cert_sign() || usage.value.crl_sign() {
        return Err(Rejection::Kind(
            "the X509-SVID key usage is not digitalSignature for a leaf",
        ));
    }
    Ok((id, cert.validity().not_after.timestamp()))
}

/// X509-SVID.md §4.1–4.3: every certificate the client sent above its leaf is a signing
/// certificate — a CA with `keyCertSign` — whose SPIFFE ID, if it has one, is the leaf's trust
/// domain itself (no path): an authority of another trust domain, even one that chains to a
/// root this domain shares, cannot vouch for this domain's workloads.
fn check_signing_certificates(certs: &[Vec<u8>], trust_domain: &str) -> Result<(), Rejection> {
    let bad = Rejection::Kind(
        "the X509-SVID chain has an intermediate that is not a signing certificate of its trust \
         domain",
    );
    let domain_id = format!("spiffe://{trust_domain}");
    for der in certs {
        let (_, cert) = X509Certificate::from_der(der).map_err(|_| bad.clone())?;
        let is_ca = cert
            .basic_constraints()
            .map_err(|_| bad.clone())?
            .is_some_and(|c| c.value.ca);
        let signs = cert
            .key_usage()
            .map_err(|_| bad.clone())?
            .is_some_and(|u| u.value.key_cert_sign());
        let san = cert.subject_alternative_name().map_err(|_| bad.clone())?;
        let foreign_id = san.iter().flat_map(|s| s.value.general_names.iter()).any(
            |n| matches!(n, GeneralName::URI(u) if u.starts_with("spiffe://") && *u != domain_id),
        );
        if !is_ca || !signs || foreign_id {
            return Err(bad);
        }
    }
    Ok(())
}

/// RFC 5280 path validation of `chain` (leaf first) against `roots` at `now`, for `usage`
/// (client certificates: an EKU, when present, must allow `clientAuth`; a bundle endpoint's
/// server certificate: `serverAuth`).
fn validate_path(
    chain: &[Vec<u8>],
    roots: &[Vec<u8>],
    now: i64,
    usage: webpki::KeyUsage,
) -> Result<(), Rejection> {
    let leaf = CertificateDer::from(chain.first().map(Vec::as_slice).unwrap_or_default());
    let end = webpki::EndEntityCert::try_from(&leaf)
        .map_err(|_| Rejection::Kind("the X509-SVID is not a valid X.509 certificate"))?;
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
        usage,
        None,
        None,
    )
    .map(|_| ())
    .map_err(|e| match e {
        webpki::Error::CertExpired { .. } => Rejection::Expired,
        webpki::Error::CertNotValidYet { .. } => Rejection::NotYetValid,
        webpki::Error::RequiredEkuNotFoundContext(_) => {
            Rejection::Kind("the X509-SVID does not allow this use (extended key usage)")
        }
        _ => Rejection::Kind(
            "the X509-SVID does not chain to the X.509 authorities of its trust domain",
        ),
    })
}

/// SPIFFE federation §5.2.2 (`https_spiffe`): the TLS server certificate chain of a bundle
/// endpoint (leaf first) is an X509-SVID whose SPIFFE ID is `endpoint_id`, byte for byte, and
/// which chains, for server authentication, to `roots`: the X.509 authorities of the
/// endpoint's trust domain. The same leaf and intermediate rules as a client's X509-SVID.
pub fn validate_endpoint_svid(
    chain: &[Vec<u8>],
    roots: &[Vec<u8>],
    endpoint_id: &str,
    now: i64,
) -> Result<(), Rejection> {
    let leaf = chain.first().ok_or(Rejection::Kind(
        "the bundle endpoint presented no certificate",
    ))?;
    let (id, _) = check_leaf(leaf)?;
    if id.as_str() != endpoint_id {
        return Err(Rejection::Kind(
            "the bundle endpoint's X509-SVID is not endpoint_spiffe_id",
        ));
    }
    check_signing_certificates(&chain[1..], id.trust_domain())?;
    validate_path(chain, roots, now, webpki::KeyUsage::server_auth())
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
        if let Err(e) = check_signing_certificates(&certificate.0[1..], &self.trust_domain) {
            return Some(Err(e));
        }
        let roots = self.keys.roots();
        if let Err(e) = validate_path(
            &certificate.0,
            &roots,
            ctx.now,
            webpki::KeyUsage::client_auth(),
        ) {
            return Some(Err(e));
        }
        let claims = json!({"sub": id.as_str(), "exp": not_after});
        Some(Ok(Verified {
            claims: super::claims::object(claims),
            trust: self.trust.clone(),
            kind: "x509-svid",
            proven_key: None,
            asserted_by_caller: false,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, KeyUsagePurpose,
        SanType, date_time_ymd,
    };

    const NOW: i64 = 1_800_000_000;

    fn params(uri: Option<&str>, ca: bool, usages: Vec<KeyUsagePurpose>) -> CertificateParams {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        if let Some(u) = uri {
            p.subject_alt_names
                .push(SanType::URI(u.try_into().unwrap()));
        }
        p.is_ca = if ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        p.key_usages = usages;
        p.not_before = date_time_ymd(2020, 1, 1);
        p.not_after = date_time_ymd(2099, 1, 1);
        p
    }

    fn ca(uri: Option<&str>) -> CertifiedIssuer<'static, KeyPair> {
        let usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        CertifiedIssuer::self_signed(params(uri, true, usages), KeyPair::generate().unwrap())
            .unwrap()
    }

    fn signed(
        p: CertificateParams,
        by: &CertifiedIssuer<'static, KeyPair>,
    ) -> CertifiedIssuer<'static, KeyPair> {
        CertifiedIssuer::signed_by(p, KeyPair::generate().unwrap(), by).unwrap()
    }

    fn leaf(uri: &str, by: &CertifiedIssuer<'static, KeyPair>) -> Vec<u8> {
        let p = params(Some(uri), false, vec![KeyUsagePurpose::DigitalSignature]);
        signed(p, by).der().to_vec()
    }

    #[test]
    fn a_chain_through_an_intermediate_of_the_trust_domain_validates() {
        let root = ca(Some("spiffe://example.org"));
        let usages = vec![KeyUsagePurpose::KeyCertSign];
        let mid = signed(params(Some("spiffe://example.org"), true, usages), &root);
        let chain = vec![leaf("spiffe://example.org/a", &mid), mid.der().to_vec()];
        assert!(check_signing_certificates(&chain[1..], "example.org").is_ok());
        assert!(
            validate_path(
                &chain,
                &[root.der().to_vec()],
                NOW,
                webpki::KeyUsage::client_auth()
            )
            .is_ok()
        );
        // Without the intermediate the leaf does not chain.
        let r = validate_path(
            &chain[..1],
            &[root.der().to_vec()],
            NOW,
            webpki::KeyUsage::client_auth(),
        );
        assert!(matches!(r, Err(Rejection::Kind(_))), "{r:?}");
        // Expiry and not-yet-valid are told apart.
        let late = NOW + 100 * 365 * 86_400;
        let r = validate_path(
            &chain,
            &[root.der().to_vec()],
            late,
            webpki::KeyUsage::client_auth(),
        );
        assert_eq!(r, Err(Rejection::Expired));
        let r = validate_path(
            &chain,
            &[root.der().to_vec()],
            1_000_000_000,
            webpki::KeyUsage::client_auth(),
        );
        assert_eq!(r, Err(Rejection::NotYetValid));
    }

    #[test]
    fn a_bundle_endpoint_presents_its_configured_svid_for_server_authentication() {
        const ENDPOINT: &str = "spiffe://example.org/spire/server";
        let root = ca(Some("spiffe://example.org"));
        let roots = [root.der().to_vec()];
        let svid = leaf(ENDPOINT, &root);
        assert_eq!(
            validate_endpoint_svid(std::slice::from_ref(&svid), &roots, ENDPOINT, NOW),
            Ok(())
        );
        let refused = |chain: &[Vec<u8>], roots: &[Vec<u8>], id: &str| {
            let r = validate_endpoint_svid(chain, roots, id, NOW);
            assert!(matches!(r, Err(Rejection::Kind(_))), "{r:?}");
        };
        // Another SPIFFE ID, even of the same trust domain, or one that only starts the same.
        refused(
            std::slice::from_ref(&svid),
            &roots,
            "spiffe://example.org/spire/other",
        );
        refused(
            std::slice::from_ref(&svid),
            &roots,
            "spiffe://example.org/spire",
        );
        // Another trust domain's authorities.
        let other = ca(Some("spiffe://other.org"));
        refused(
            std::slice::from_ref(&svid),
            &[other.der().to_vec()],
            ENDPOINT,
        );
        // No certificate at all.
        refused(&[], &roots, ENDPOINT);
        // An X509-SVID limited to client authentication is no server certificate.
        let mut p = params(
            Some(ENDPOINT),
            false,
            vec![KeyUsagePurpose::DigitalSignature],
        );
        p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        let client_only = signed(p, &root).der().to_vec();
        let r = validate_endpoint_svid(std::slice::from_ref(&client_only), &roots, ENDPOINT, NOW);
        assert_eq!(
            r,
            Err(Rejection::Kind(
                "the X509-SVID does not allow this use (extended key usage)"
            ))
        );
        let as_client = validate_path(
            std::slice::from_ref(&client_only),
            &roots,
            NOW,
            webpki::KeyUsage::client_auth(),
        );
        assert_eq!(as_client, Ok(()));
        // Intermediates are signing certificates of the endpoint's trust domain: one of
        // another trust domain (under the same root) cannot vouch for it.
        let foreign = signed(
            params(
                Some("spiffe://other.org"),
                true,
                vec![KeyUsagePurpose::KeyCertSign],
            ),
            &root,
        );
        let own = signed(
            params(
                Some("spiffe://example.org"),
                true,
                vec![KeyUsagePurpose::KeyCertSign],
            ),
            &root,
        );
        for (mid, ok) in [(&own, true), (&foreign, false)] {
            let chain = [leaf(ENDPOINT, mid), mid.der().to_vec()];
            let r = validate_endpoint_svid(&chain, &roots, ENDPOINT, NOW);
            assert_eq!(r.is_ok(), ok, "{r:?}");
        }
        // The leaf rules hold for the endpoint too: a CA certificate is refused.
        let ca_leaf = signed(
            params(
                Some(ENDPOINT),
                true,
                vec![KeyUsagePurpose::DigitalSignature],
            ),
            &root,
        );
        refused(&[ca_leaf.der().to_vec()], &roots, ENDPOINT);
    }

    #[test]
    fn intermediates_of_another_domain_or_without_signing_rights_are_refused() {
        let root = ca(None);
        for (uri, ca_flag, usages) in [
            // Another trust domain's authority under a shared root.
            (
                Some("spiffe://other.org"),
                true,
                vec![KeyUsagePurpose::KeyCertSign],
            ),
            // An authority with a workload path.
            (
                Some("spiffe://example.org/ns/x"),
                true,
                vec![KeyUsagePurpose::KeyCertSign],
            ),
            // Not a CA, or a CA without keyCertSign.
            (None, false, vec![KeyUsagePurpose::DigitalSignature]),
            (None, true, vec![KeyUsagePurpose::DigitalSignature]),
        ] {
            let mid = signed(params(uri, ca_flag, usages), &root);
            let r = check_signing_certificates(&[mid.der().to_vec()], "example.org");
            assert!(r.is_err(), "{uri:?} {ca_flag}");
        }
    }

    #[test]
    fn leaf_rules() {
        let root = ca(None);
        let (id, _) = check_leaf(&leaf("spiffe://example.org/ns/a", &root)).unwrap();
        assert_eq!(id.as_str(), "spiffe://example.org/ns/a");
        let refused = |p: CertificateParams, why: &str| {
            let der = signed(p, &root).der().to_vec();
            match check_leaf(&der) {
                Err(Rejection::Kind(m)) => assert!(m.contains(why), "{m} (want {why})"),
                other => panic!("{other:?} (want {why})"),
            }
        };
        let ds = || vec![KeyUsagePurpose::DigitalSignature];
        // No key usage extension at all.
        refused(
            params(Some("spiffe://example.org/a"), false, vec![]),
            "lacks the key usage",
        );
        refused(
            params(
                Some("spiffe://example.org/a"),
                false,
                vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyCertSign,
                ],
            ),
            "not digitalSignature",
        );
        refused(
            params(Some("spiffe://example.org/a"), true, ds()),
            "CA certificate",
        );
        refused(
            params(Some("spiffe://example.org"), false, ds()),
            "canonical",
        );
        refused(
            params(Some("https://example.org/a"), false, ds()),
            "canonical",
        );
        refused(params(None, false, ds()), "exactly one URI SAN");
        let mut two = params(Some("spiffe://example.org/a"), false, ds());
        two.subject_alt_names
            .push(SanType::URI("spiffe://example.org/b".try_into().unwrap()));
        refused(two, "exactly one URI SAN");
        assert!(check_leaf(b"not a certificate").is_err());
    }
}
