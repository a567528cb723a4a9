//! TLS for the listener (rustls, aws-lc-rs), and the client certificate a connection presented.
//!
//! With `tls.client_certificates` on, the handshake asks for a client certificate and checks
//! only that the client holds the leaf's private key (its handshake signature). It does **not**
//! decide whether anyone vouches for the chain: which authorities count depends on the trust
//! domain the certificate names, and those come from SPIFFE bundles that refresh while the
//! listener runs. The chain reaches the request as `RequestFacts.client_certificate`, and only
//! a trust entry that authenticates clients by certificate (`x509-svid`) may turn it into a
//! caller, after validating it against its own trust domain's authorities. Nothing else reads
//! it, so a certificate nobody vouches for authenticates nothing.

use std::any::Any;
use std::sync::Arc;

use actix_web::dev::Extensions;
use rustls::DigitallySignedStruct;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DistinguishedName, SignatureScheme};

use crate::config::{ClientCertificates, TlsSettings};
use crate::token::ClientCertificate;

/// The rustls configuration of the listener.
pub fn server_config(tls: &TlsSettings) -> Result<rustls::ServerConfig, String> {
    let shown = |p: &std::path::Path, e: &dyn std::fmt::Display| format!("{}: {e}", p.display());
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&tls.cert)
        .map_err(|e| shown(&tls.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| shown(&tls.cert, &e))?;
    if chain.is_empty() {
        return Err(shown(&tls.cert, &"no certificate"));
    }
    let key = PrivateKeyDer::from_pem_file(&tls.key).map_err(|e| shown(&tls.key, &e))?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match tls.client_certificates {
        ClientCertificates::Off => builder.with_no_client_auth(),
        mode => builder.with_client_cert_verifier(Arc::new(ProofOfPossessionOnly {
            mandatory: mode == ClientCertificates::Required,
            algorithms: provider.signature_verification_algorithms,
        })),
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate and key: {e}"))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Keeps the client certificate chain of a TLS connection with the connection's data, where
/// the request reads it (`HttpServer::on_connect`).
pub fn on_connect(connection: &dyn Any, data: &mut Extensions) {
    type Tls = actix_tls::accept::rustls_0_23::TlsStream<actix_web::rt::net::TcpStream>;
    let Some(tls) = connection.downcast_ref::<Tls>() else {
        return;
    };
    let (_, session) = tls.get_ref();
    if let Some(chain) = session.peer_certificates().filter(|c| !c.is_empty()) {
        let chain: Vec<Vec<u8>> = chain.iter().map(|c| c.as_ref().to_vec()).collect();
        data.insert(ClientCertificate(Arc::from(chain)));
    }
}

/// Asks for a client certificate and checks the handshake signature with its key; the chain
/// is judged later, per trust domain (see the module doc).
#[derive(Debug)]
struct ProofOfPossessionOnly {
    mandatory: bool,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for ProofOfPossessionOnly {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
