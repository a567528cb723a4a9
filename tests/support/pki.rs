//! Test certificates made with rcgen (not the service's code): a CA per trust domain, X509-SVID
//! leaves (good, expired, several URI SANs, a CA as leaf, no digitalSignature), and TLS server
//! certificates for loopback.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, date_time_ymd,
};

/// A certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate with its private key, PEM and DER.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Leaf {
    /// Certificate then key, as reqwest's `Identity::from_pem` takes them.
    pub fn identity_pem(&self) -> Vec<u8> {
        format!("{}{}", self.cert_pem, self.key_pem).into_bytes()
    }
}

/// What to put in a leaf.
#[derive(Clone)]
pub struct LeafSpec {
    pub uris: Vec<String>,
    pub dns: Vec<String>,
    pub ips: Vec<std::net::IpAddr>,
    pub expired: bool,
    pub is_ca: bool,
    pub digital_signature: bool,
}

impl LeafSpec {
    /// An X509-SVID for `spiffe_id`.
    pub fn svid(spiffe_id: &str) -> Self {
        Self {
            uris: vec![spiffe_id.to_owned()],
            dns: Vec::new(),
            ips: Vec::new(),
            expired: false,
            is_ca: false,
            digital_signature: true,
        }
    }

    /// A TLS server certificate for 127.0.0.1 and localhost.
    pub fn server() -> Self {
        Self {
            uris: Vec::new(),
            dns: vec!["localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap()],
            expired: false,
            is_ca: false,
            digital_signature: true,
        }
    }
}

impl TestCa {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2099, 1, 1);
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// The CA as a SPIFFE bundle key (`use: x509-svid`, its certificate in `x5c`).
    pub fn bundle_key(&self) -> serde_json::Value {
        use base64::Engine;
        serde_json::json!({
            "use": "x509-svid", "kty": "EC", "crv": "P-256",
            "x5c": [base64::engine::general_purpose::STANDARD.encode(self.der())],
        })
    }

    pub fn leaf(&self, spec: &LeafSpec) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "test leaf");
        for uri in &spec.uris {
            params
                .subject_alt_names
                .push(SanType::URI(uri.as_str().try_into().unwrap()));
        }
        for dns in &spec.dns {
            params
                .subject_alt_names
                .push(SanType::DnsName(dns.as_str().try_into().unwrap()));
        }
        for ip in &spec.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.is_ca = if spec.is_ca {
            IsCa::Ca(BasicConstraints::Unconstrained)
        } else {
            IsCa::ExplicitNoCa
        };
        params.key_usages = if spec.digital_signature {
            vec![KeyUsagePurpose::DigitalSignature]
        } else {
            vec![KeyUsagePurpose::KeyEncipherment]
        };
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        if spec.expired {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2021, 1, 1);
        } else {
            params.not_before = date_time_ymd(2020, 1, 1);
            params.not_after = date_time_ymd(2099, 1, 1);
        }
        let key = KeyPair::generate().unwrap();
        let issuer: &Issuer<'_, KeyPair> = &self.issuer;
        let cert = params.signed_by(&key, issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}
