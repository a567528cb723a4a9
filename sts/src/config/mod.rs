//! Process settings: the embedded default or a YAML file, layered with `STS__SECTION__KEY`
//! environment overrides through the `config` crate, then validated.
//!
//! Unknown keys and bad values stop startup with a message naming the key. Only operator-owned
//! files come through here (the `config` YAML backend has no alias budget, see stack.md);
//! profiles and mappings are parsed by `profile/` with serde-saphyr. This module does no
//! network I/O and must not log secrets (client secret hashes are not secrets, but stay out of
//! logs anyway).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::jose::Alg;

mod load;
mod trust;

pub use trust::{Position, TrustEntry};

/// The embedded default configuration (a laptop setup, `dev: true`).
pub const DEFAULT_YAML: &str = include_str!("default.yaml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Our issuer identifier (RFC 8414 §2): `iss` of what we mint, `aud` of client assertions.
    pub issuer: String,
    /// Listener address, e.g. `127.0.0.1:8080`.
    pub listen: String,
    /// HTTP worker threads; 0 means one per core.
    #[serde(default)]
    pub workers: usize,
    /// How long an HTTP worker keeps polling its sockets after a request instead of sleeping
    /// (0, the default: it sleeps at once). Trades idle CPU for latency where waking a
    /// sleeping core is slow (virtual machines); at most 50ms. Read at start only.
    #[serde(default, with = "humantime_serde")]
    pub busy_poll: Duration,
    pub keys: KeySettings,
    /// Where replay state lives: `memory://` (per process) or `redis://…` / `rediss://…`
    /// (shared by every replica).
    #[serde(default = "default_store")]
    pub store: StoreSetting,
    /// How long connecting to a Redis store may take.
    #[serde(default = "default_store_connect", with = "humantime_serde")]
    pub store_connect_timeout: Duration,
    /// How long one Redis command may take.
    #[serde(default = "default_store_response", with = "humantime_serde")]
    pub store_response_timeout: Duration,
    pub profiles: PathBuf,
    pub mappings: PathBuf,
    /// Clock skew tolerated on `exp`, `nbf` and `iat` of incoming tokens (max 5m).
    #[serde(default = "default_leeway", with = "humantime_serde")]
    pub leeway: Duration,
    #[serde(default)]
    pub limits: Limits,
    /// Failed client authentication: budgets and the secret-check pool.
    #[serde(default)]
    pub client_auth: ClientAuthSettings,
    /// Trust entries as written; parsed one by one into `trust` so that every entry's problems
    /// are reported.
    #[serde(default, rename = "trust")]
    trust_raw: Vec<serde_json::Value>,
    /// Trust entries: `name` and `kind`, and a block the kind parses (`token/`).
    #[serde(skip)]
    pub trust: Vec<TrustEntry>,
    #[serde(default, rename = "clients")]
    clients_raw: Vec<serde_json::Value>,
    #[serde(skip)]
    pub clients: Vec<ClientSettings>,
    /// Development mode: adds the `dev-idp` trust entry and `dev-client` (loopback only).
    #[serde(default, deserialize_with = "strict_bool")]
    pub dev: bool,
    /// Directory for development material (dev IdP key, dev client secret).
    #[serde(default = "default_dev_dir")]
    pub dev_dir: PathBuf,
    /// Our own trust domain: the `aud` of the Txn-Tokens we issue and accept (Txn-Token draft
    /// §4.2). Empty: the host of `issuer`.
    #[serde(default)]
    pub trust_domain: String,
    /// The verified-subject cache (ingress path).
    #[serde(default)]
    pub subject_cache: SubjectCacheSettings,
    /// The gateway adapter: an endpoint for a gateway's auth sub-request.
    #[serde(default)]
    pub gateway: GatewaySettings,
    /// TLS for the listener, with optional client certificates (absent: plain HTTP, e.g.
    /// behind a TLS-terminating proxy).
    #[serde(default)]
    pub tls: Option<TlsSettings>,
    /// Extra trust anchors (a PEM file of CA certificates) for outbound HTTPS — JWKS,
    /// discovery, introspection, SPIFFE bundle endpoints — added to the system's.
    #[serde(default)]
    pub outbound_ca_file: Option<PathBuf>,
    /// Distributed tracing (OpenTelemetry): off unless `telemetry.otlp_endpoint` is set. Read
    /// at start only.
    #[serde(default)]
    pub telemetry: TelemetrySettings,
}

/// Where request spans go (OTLP over HTTP, JSON encoding) and how many are recorded.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    /// The collector's OTLP/HTTP base URL (`/v1/traces` is appended), e.g.
    /// `http://127.0.0.1:4318`; empty: no tracing.
    pub otlp_endpoint: String,
    /// `service.name` of the exported spans.
    pub service_name: String,
    /// Share of new traces recorded, 0.0 to 1.0.
    pub sample_ratio: f64,
    /// Whether a request's `traceparent` is followed: its span joins the caller's trace and
    /// the caller's sampling flag decides whether it is recorded. Any caller can send one;
    /// `false` starts every request's trace here, sampled at `sample_ratio`.
    #[serde(deserialize_with = "strict_bool")]
    pub trust_caller_trace: bool,
}

impl Default for TelemetrySettings {
    fn default() -> Self {
        Self {
            otlp_endpoint: String::new(),
            service_name: "sts".into(),
            sample_ratio: 1.0,
            trust_caller_trace: true,
        }
    }
}

impl TelemetrySettings {
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if !self.otlp_endpoint.is_empty() {
            let ok = url::Url::parse(&self.otlp_endpoint).is_ok_and(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.username().is_empty()
                    && u.password().is_none()
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && !u.path().trim_end_matches('/').ends_with("/v1/traces")
            });
            if !ok {
                out.push((
                    "otlp_endpoint",
                    "the collector's base URL (`/v1/traces` is added): http or https, with a \
                     host and no user information, query or fragment (e.g. \
                     http://127.0.0.1:4318)"
                        .to_owned(),
                ));
            }
        }
        if self.service_name.trim().is_empty() {
            out.push(("service_name", "must not be empty".to_owned()));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            out.push(("sample_ratio", "between 0.0 and 1.0".to_owned()));
        }
        out
    }
}

/// The listener's TLS: our certificate chain and key (PEM files), and whether clients are
/// asked for a certificate (mutual TLS, RFC 8705).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// Our certificate chain, PEM, leaf first.
    pub cert: PathBuf,
    /// Its private key, PEM (PKCS#8, SEC1 or PKCS#1).
    pub key: PathBuf,
    /// `off`, `optional` (default: a client may present one) or `required`.
    #[serde(default)]
    pub client_certificates: ClientCertificates,
}

/// Whether the TLS listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientCertificates {
    Off,
    #[default]
    Optional,
    Required,
}

/// Verified subject tokens remembered so that a gateway re-exchanging the same user token
/// pays only for signing. Only kinds whose verification depends on nothing but the token,
/// its keys and the time are cached.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SubjectCacheSettings {
    /// Most verified tokens remembered (least recently used go first); 0 turns the cache off.
    pub capacity: u64,
}

/// The largest `subject_cache.capacity` accepted (its table is allocated at start).
pub const MAX_SUBJECT_CACHE: u64 = 1_000_000;

impl Default for SubjectCacheSettings {
    fn default() -> Self {
        Self { capacity: 10_000 }
    }
}

/// The gateway adapter (`docs/ingress.md`): a gateway's auth sub-request (nginx
/// `auth_request`, Envoy `ext_authz` HTTP mode) carries the user's `Authorization: Bearer`;
/// the answer is `200` with a `Txn-Token` header, or `401`/`403`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// The adapter's path; empty (the default) turns it off.
    pub path: String,
    /// The header carrying the gateway's own client credentials (`Basic`, RFC 6749 §2.3.1),
    /// since `Authorization` carries the user's token.
    pub client_header: String,
    /// The header naming the transaction's scope (e.g. set per location by the gateway).
    pub scope_header: String,
    /// The scope when the request has no scope header; empty: the header is required.
    pub default_scope: String,
    /// `subject_token_type` of the bearer token.
    pub subject_token_type: String,
    /// `request_context` members, each read from a header the gateway sets
    /// (member → header name).
    pub context_headers: std::collections::BTreeMap<String, String>,
    /// `request_details` members, each read from a header the gateway sets.
    pub details_headers: std::collections::BTreeMap<String, String>,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        let headers = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(m, h)| ((*m).to_owned(), (*h).to_owned()))
                .collect()
        };
        Self {
            path: String::new(),
            client_header: "gateway-authorization".into(),
            scope_header: "txn-scope".into(),
            default_scope: String::new(),
            subject_token_type: "urn:ietf:params:oauth:token-type:access_token".into(),
            context_headers: headers(&[("req_ip", "x-real-ip")]),
            details_headers: headers(&[
                ("method", "x-original-method"),
                ("path", "x-original-uri"),
            ]),
        }
    }
}

impl GatewaySettings {
    /// Broken rules as (key, message).
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.path.is_empty() {
            let reserved = [
                "/token",
                "/jwks",
                "/healthz",
                "/readyz",
                "/metrics",
                "/spiffe/bundle",
                "/.well-known/oauth-authorization-server",
            ];
            if !self.path.starts_with('/') || reserved.contains(&self.path.as_str()) {
                out.push((
                    "path".into(),
                    "must start with / and not be a path the service already serves".into(),
                ));
            }
        }
        let token_char = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
        let mut names = vec![("client_header".to_owned(), &self.client_header)];
        names.push(("scope_header".into(), &self.scope_header));
        for (m, h) in self.context_headers.iter() {
            names.push((format!("context_headers.{m}"), h));
        }
        for (m, h) in self.details_headers.iter() {
            names.push((format!("details_headers.{m}"), h));
        }
        let mut seen: Vec<String> = Vec::new();
        for (key, h) in names {
            let lower = h.to_ascii_lowercase();
            if h.is_empty() || !h.chars().all(token_char) {
                out.push((key, "must be an HTTP header name".into()));
            } else if lower == "authorization" {
                out.push((
                    key,
                    "must not be Authorization (it carries the user's token)".into(),
                ));
            } else if seen.contains(&lower) {
                out.push((
                    key,
                    format!("`{h}` is already used by another gateway setting"),
                ));
            }
            seen.push(lower);
        }
        // The bearer token is declared by this type: only types of tokens users present.
        let user_types = [
            "urn:ietf:params:oauth:token-type:access_token",
            "urn:ietf:params:oauth:token-type:jwt",
            "urn:ietf:params:oauth:token-type:id_token",
        ];
        if !user_types.contains(&self.subject_token_type.as_str()) {
            out.push((
                "subject_token_type".into(),
                format!("one of: {}", user_types.join(", ")),
            ));
        }
        out
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeySettings {
    pub dir: PathBuf,
    #[serde(default = "default_alg")]
    pub alg: Alg,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted request body, bytes.
    pub max_body_bytes: usize,
    /// Largest accepted token (subject, actor, client assertion), bytes.
    pub max_token_bytes: usize,
    /// Most form parameters accepted in one request.
    pub max_params: usize,
    /// Largest `request_context` / `request_details` JSON text, bytes.
    pub max_context_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            max_token_bytes: 16 * 1024,
            max_params: 32,
            max_context_bytes: 4096,
        }
    }
}

/// Failed client authentication is counted per presented `client_id` and per peer address in
/// fixed windows; a spent budget answers `429` until the window ends. PBKDF2 secret checks run
/// on a bounded pool off the HTTP workers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientAuthSettings {
    /// Failed `client_secret_basic` attempts one presented `client_id` may have in a window.
    pub failures_per_client: u64,
    /// Failed attempts one peer address (an IPv6 /64) may have in a window.
    pub failures_per_peer: u64,
    /// The window length.
    #[serde(with = "humantime_serde")]
    pub failure_window: Duration,
    /// Threads that run PBKDF2 checks at once.
    pub secret_check_threads: usize,
    /// PBKDF2 checks that may wait for a thread; more are refused with `503`.
    pub secret_check_queue: usize,
}

impl Default for ClientAuthSettings {
    fn default() -> Self {
        Self {
            failures_per_client: 20,
            failures_per_peer: 50,
            failure_window: Duration::from_secs(300),
            secret_check_threads: 2,
            secret_check_queue: 64,
        }
    }
}

impl ClientAuthSettings {
    /// The window length in seconds.
    pub fn window(&self) -> u64 {
        self.failure_window.as_secs()
    }

    /// Broken rules as (key, message).
    fn problems(&self) -> Vec<(&'static str, &'static str)> {
        let mut out = Vec::new();
        if self.failures_per_client == 0 {
            out.push(("failures_per_client", "at least 1"));
        }
        if self.failures_per_peer == 0 {
            out.push(("failures_per_peer", "at least 1"));
        }
        if !(Duration::from_secs(1)..=Duration::from_secs(86_400)).contains(&self.failure_window) {
            out.push(("failure_window", "between 1s and 24h"));
        }
        if !(1..=64).contains(&self.secret_check_threads) {
            out.push(("secret_check_threads", "between 1 and 64"));
        }
        if self.secret_check_queue > 100_000 {
            out.push(("secret_check_queue", "at most 100000"));
        }
        out
    }
}

/// Where a trust entry's (or client's) public keys come from: exactly one member.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwksSettings {
    pub file: Option<PathBuf>,
    pub uri: Option<String>,
    /// Fetch RFC 8414 (then OpenID) metadata under the issuer and use its `jwks_uri`.
    #[serde(default, deserialize_with = "strict_bool")]
    pub discovery: bool,
    /// How often remote keys are refetched.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh: Duration,
    /// After a refetch, an unknown `kid` does not trigger another one for this long.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub refetch_cooldown: Duration,
}

impl Default for JwksSettings {
    fn default() -> Self {
        Self {
            file: None,
            uri: None,
            discovery: false,
            refresh: default_refresh(),
            refetch_cooldown: default_cooldown(),
        }
    }
}

/// Where a SPIFFE trust entry's bundle comes from (SPIFFE federation §5): a file, or a bundle
/// endpoint of the `https_web` profile (a Web PKI server certificate) or the `https_spiffe`
/// profile (the server's X509-SVID, with `endpoint_spiffe_id` and `endpoint_bundle`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleSettings {
    pub file: Option<PathBuf>,
    /// The bundle endpoint's URL (`https`).
    pub uri: Option<String>,
    /// The bundle endpoint's profile (federation §5.2).
    #[serde(default)]
    pub profile: EndpointProfile,
    /// `https_spiffe`: the SPIFFE ID the endpoint's server must present, byte for byte.
    pub endpoint_spiffe_id: Option<String>,
    /// `https_spiffe`: a bundle file whose `x509-svid` authorities authenticate the endpoint.
    /// For a self-serving endpoint (`endpoint_spiffe_id` in this entry's trust domain) it is
    /// the initial bundle, replaced by each bundle fetched; for any other, the bundle of the
    /// endpoint's own trust domain, read at every fetch.
    pub endpoint_bundle: Option<PathBuf>,
    /// How often the bundle is refetched when it carries no `spiffe_refresh_hint`.
    #[serde(default = "default_refresh", with = "humantime_serde")]
    pub refresh: Duration,
    /// After a refetch, an unknown `kid` does not trigger another one for this long.
    #[serde(default = "default_cooldown", with = "humantime_serde")]
    pub refetch_cooldown: Duration,
}

/// A bundle endpoint profile (SPIFFE federation §5.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndpointProfile {
    /// The server certificate is checked against the Web PKI and the URL's host name.
    #[default]
    HttpsWeb,
    /// The server presents an X509-SVID with the configured SPIFFE ID.
    HttpsSpiffe,
}

impl BundleSettings {
    /// The rules of one bundle source; an error names the key (under `bundle`) and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let bad = |key, why: &str| Err((key, why.to_owned()));
        if self.file.is_some() == self.uri.is_some() {
            return bad(
                "bundle",
                "set exactly one of file or uri (a bundle endpoint)",
            );
        }
        if let Some(uri) = &self.uri {
            // Federation §5.2: both profiles are https.
            if !uri.starts_with("https://") {
                return bad("bundle.uri", "a bundle endpoint is an https URL");
            }
            check_url("", uri).map_err(|e| ("bundle.uri", e.0))?;
        }
        for (key, d) in [
            ("bundle.refresh", self.refresh),
            ("bundle.refetch_cooldown", self.refetch_cooldown),
        ] {
            if d < Duration::from_secs(1) {
                return bad(key, "at least 1s");
            }
        }
        let spiffe_only = [
            (
                "bundle.endpoint_spiffe_id",
                self.endpoint_spiffe_id.is_some(),
            ),
            ("bundle.endpoint_bundle", self.endpoint_bundle.is_some()),
        ];
        match self.profile {
            EndpointProfile::HttpsWeb => {
                if let Some((key, _)) = spiffe_only.iter().find(|(_, set)| *set) {
                    return bad(key, "only for a bundle endpoint with profile: https_spiffe");
                }
            }
            EndpointProfile::HttpsSpiffe => {
                if self.uri.is_none() {
                    return bad(
                        "bundle.profile",
                        "https_spiffe is the profile of a bundle endpoint: set uri, not file",
                    );
                }
                let id = self.endpoint_spiffe_id.as_deref().unwrap_or_default();
                let canonical = crate::workload_id::WorkloadId::parse(id)
                    .is_ok_and(|w| w.scheme() == crate::workload_id::Scheme::Spiffe);
                if !canonical {
                    return bad(
                        "bundle.endpoint_spiffe_id",
                        "the SPIFFE ID the endpoint's server presents: a canonical SPIFFE ID \
                         with a path (e.g. spiffe://example.org/spire/server)",
                    );
                }
                if self.endpoint_bundle.is_none() {
                    return bad(
                        "bundle.endpoint_bundle",
                        "a bundle file with the X.509 authorities of the endpoint's trust \
                         domain (for a self-serving endpoint, this trust domain's initial bundle)",
                    );
                }
            }
        }
        Ok(())
    }

    /// The trust domain of a self-serving endpoint: whether `endpoint_spiffe_id` belongs to
    /// `trust_domain`.
    pub fn self_serving(&self, trust_domain: &str) -> bool {
        self.endpoint_spiffe_id
            .as_deref()
            .and_then(|id| crate::workload_id::WorkloadId::parse(id).ok())
            .is_some_and(|id| id.trust_domain() == trust_domain)
    }

    /// The key-source settings of the file or `https_web` endpoint.
    pub fn jwks(&self) -> JwksSettings {
        JwksSettings {
            file: self.file.clone(),
            uri: self.uri.clone(),
            discovery: false,
            refresh: self.refresh,
            refetch_cooldown: self.refetch_cooldown,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientSettings {
    /// The client_id; also the caller identity profiles match.
    pub id: String,
    /// `client_secret_basic`: a PBKDF2 hash made by `sts hash-secret`.
    pub secret_hash: Option<String>,
    /// `private_key_jwt`: the client's public keys.
    pub jwks: Option<JwksSettings>,
    /// Accepted client assertion algorithms (absent: ES256, EdDSA, RS256, PS256).
    #[serde(default)]
    pub algorithms: Option<Vec<Alg>>,
}

/// `true` or `false` and nothing else: YAML 1.1's `yes`/`on`, `1` or the string `"true"` are
/// refused (the `config` crate would otherwise convert them).
fn strict_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    struct Strict;
    impl serde::de::Visitor<'_> for Strict {
        type Value = bool;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("true or false")
        }
        fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
    }
    d.deserialize_any(Strict)
}

fn default_store() -> StoreSetting {
    StoreSetting("memory://".into())
}

/// The `store` URL as written. It may hold a Redis password, so `Debug` shows its scheme only.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(transparent)]
pub struct StoreSetting(pub String);

impl std::fmt::Debug for StoreSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.0.split("://").next().unwrap_or("?");
        write!(f, "StoreSetting({scheme}://…)")
    }
}
fn default_store_connect() -> Duration {
    Duration::from_secs(1)
}
fn default_store_response() -> Duration {
    Duration::from_millis(500)
}
fn default_leeway() -> Duration {
    Duration::from_secs(60)
}
fn default_alg() -> Alg {
    Alg::ES256
}
fn default_dev_dir() -> PathBuf {
    PathBuf::from(".sts/dev")
}
fn default_refresh() -> Duration {
    Duration::from_secs(300)
}
fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}

/// The algorithms accepted when a trust entry or client names none.
pub const DEFAULT_ALGS: [Alg; 4] = [Alg::ES256, Alg::EdDSA, Alg::RS256, Alg::PS256];

/// The largest configuration file accepted.
const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// Runs the text through serde-saphyr, whose budgets refuse alias bombs and deep nesting and
/// which refuses duplicate keys, before the `config` crate's YAML backend (which has no alias
/// budget, stack.md) ever sees it.
fn check_yaml(source: &str, text: &str) -> Result<(), ConfigError> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(ConfigError(format!(
            "{source}: larger than {MAX_CONFIG_BYTES} bytes"
        )));
    }
    serde_saphyr::from_str::<serde::de::IgnoredAny>(text)
        .map(|_| ())
        .map_err(|e| {
            let (at, message) = crate::yaml::describe_error(&e);
            match at {
                Some((line, column)) => ConfigError(format!("{source}:{line}:{column}: {message}")),
                None => ConfigError(format!("{source}: {message}")),
            }
        })
}

/// A configuration problem, naming the key it is about (and where it was written, when known).
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

/// Every problem found in the settings at once.
#[derive(Debug)]
pub struct ConfigProblems(pub Vec<ConfigError>);

impl std::fmt::Display for ConfigProblems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_slice() {
            [one] => write!(f, "{one}"),
            many => {
                write!(f, "configuration: {} problems:", many.len())?;
                for p in many {
                    write!(f, "\n  {}", p.0)?;
                }
                Ok(())
            }
        }
    }
}

impl std::error::Error for ConfigProblems {}

impl From<ConfigError> for ConfigProblems {
    fn from(e: ConfigError) -> Self {
        Self(vec![e])
    }
}

/// Where the keys of one configuration text were written, and whether the environment
/// overrides them: turns a key path into `file:line:col: key: message`.
pub struct Locator {
    source: String,
    positions: std::collections::BTreeMap<String, (u64, u64)>,
    from_env: bool,
}

impl Locator {
    pub fn new(source: &str, text: &str, from_env: bool) -> Self {
        Self {
            source: source.to_owned(),
            positions: crate::yaml::key_positions(text),
            from_env,
        }
    }

    /// Where `key` (or, failing that, its nearest parent) was written.
    pub fn position(&self, key: &str) -> Option<trust::Position> {
        let mut k = key;
        loop {
            if let Some((line, column)) = self.positions.get(k) {
                return Some(trust::Position {
                    file: self.source.clone(),
                    line: *line,
                    column: *column,
                });
            }
            k = &k[..k.rfind(['.', '['])?];
        }
    }

    /// Positions of the keys under `prefix` (`trust[0]`), keyed by the rest of their path.
    pub fn positions_under<'a>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (&'a str, trust::Position)> + 'a {
        self.positions
            .iter()
            .filter_map(move |(k, (line, column))| {
                let rest = k.strip_prefix(prefix)?.strip_prefix('.')?;
                Some((
                    rest,
                    trust::Position {
                        file: self.source.clone(),
                        line: *line,
                        column: *column,
                    },
                ))
            })
    }

    /// A problem about `key`: the environment variable that set it, else its position in the
    /// file, else the file.
    pub fn problem(&self, key: &str, message: impl std::fmt::Display) -> ConfigError {
        let var = format!("STS__{}", key.replace('.', "__").to_ascii_uppercase());
        // The `config` crate matches variable names case-insensitively.
        let set_by_env = self.from_env
            && !key.contains('[')
            && std::env::vars_os().any(|(k, _)| k.eq_ignore_ascii_case(&var));
        let at = if set_by_env {
            format!("environment {var}")
        } else if let Some(p) = self.position(key) {
            p.to_string()
        } else {
            self.source.clone()
        };
        if key.is_empty() {
            ConfigError(format!("{at}: {message}"))
        } else {
            ConfigError(format!("{at}: {key}: {message}"))
        }
    }
}

impl Settings {
    /// Reads `file` (or the embedded default) plus `STS__*` environment overrides, then
    /// validates; every problem is reported, each with where it was written.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigProblems> {
        match Self::load_all(file) {
            (Some(s), problems) if problems.is_empty() => Ok(s),
            (_, problems) => Err(ConfigProblems(problems)),
        }
    }

    /// Like [`load`](Self::load), but also returns the settings read despite problems (bad
    /// values replaced by defaults) so that later checks can add theirs to the same report.
    pub fn load_all(file: Option<&Path>) -> (Option<Self>, Vec<ConfigError>) {
        use config::{Config, Environment, File, FileFormat};
        let (source, text) = match file {
            Some(p) => match std::fs::read_to_string(p) {
                Ok(text) => (p.display().to_string(), text),
                Err(e) => return (None, vec![ConfigError(format!("{}: {e}", p.display()))]),
            },
            None => ("(embedded default)".to_owned(), DEFAULT_YAML.to_owned()),
        };
        if let Err(e) = check_yaml(&source, &text).and_then(|()| refuse_env_lists()) {
            return (None, vec![e]);
        }
        let env = Environment::with_prefix("STS")
            .prefix_separator("__")
            .separator("__")
            .try_parsing(true);
        let merged = Config::builder()
            .add_source(File::from_str(&text, FileFormat::Yaml))
            .add_source(env)
            .build()
            .and_then(Config::try_deserialize::<serde_json::Value>);
        match merged {
            Ok(v) => Self::from_value(v, &Locator::new(&source, &text, true)),
            Err(e) => (None, vec![ConfigError(format!("{source}: {e}"))]),
        }
    }

    /// Parses settings from YAML text (no environment), then validates. For tests and tools.
    pub fn from_yaml(text: &str) -> Result<Self, ConfigProblems> {
        use config::{Config, File, FileFormat};
        let source = "(configuration)";
        check_yaml(source, text)?;
        let merged: serde_json::Value = Config::builder()
            .add_source(File::from_str(text, FileFormat::Yaml))
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|e| ConfigError(format!("{source}: {e}")))?;
        match Self::from_value(merged, &Locator::new(source, text, false)) {
            (Some(s), problems) if problems.is_empty() => Ok(s),
            (_, problems) => Err(ConfigProblems(problems)),
        }
    }

    /// Deserializes and validates the merged settings, collecting every problem.
    fn from_value(value: serde_json::Value, at: &Locator) -> (Option<Self>, Vec<ConfigError>) {
        let mut problems = Vec::new();
        let settings = load::deserialize_all(value, at, &mut problems).map(|mut s| {
            s.trust = load::trust_entries(&s.trust_raw, at, &mut problems);
            s.clients = load::clients(&s.clients_raw, at, &mut problems);
            s.check(at, &mut problems);
            s
        });
        (settings, problems)
    }

    /// Whether the listener asks clients for TLS certificates (mutual TLS can happen).
    pub fn client_certificates_enabled(&self) -> bool {
        self.tls
            .as_ref()
            .is_some_and(|t| t.client_certificates != ClientCertificates::Off)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        self.listen.parse().map_err(|_| {
            ConfigError(format!(
                "listen: `{}` is not an IP address and port (write e.g. 127.0.0.1:8080 or \
                     [::1]:8080; host names are not resolved)",
                self.listen
            ))
        })
    }

    /// The replay store the settings name (validated at load).
    pub fn store_url(&self) -> crate::store::StoreUrl {
        crate::store::StoreUrl::parse(&self.store.0).unwrap_or(crate::store::StoreUrl::Memory)
    }

    /// Our trust domain: `trust_domain`, else the host of `issuer`.
    pub fn trust_domain(&self) -> String {
        if !self.trust_domain.is_empty() {
            return self.trust_domain.clone();
        }
        url::Url::parse(&self.issuer)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Our token endpoint URL.
    pub fn token_endpoint(&self) -> String {
        format!("{}/token", self.issuer.trim_end_matches('/'))
    }

    /// Checks the values again (settings changed in code, e.g. by development mode).
    pub fn validate(&self) -> Result<(), ConfigProblems> {
        let mut problems = Vec::new();
        self.check(&Locator::new("(configuration)", "", false), &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigProblems(problems))
        }
    }

    /// Every value rule, each broken one a problem with its position.
    fn check(&self, at: &Locator, problems: &mut Vec<ConfigError>) {
        let mut bad = |key: &str, m: String| problems.push(at.problem(key, m));
        if let Err(e) = check_url("", &self.issuer) {
            bad("issuer", e.0);
        }
        let addr = self.listen.parse::<SocketAddr>().ok();
        if addr.is_none() {
            bad(
                "listen",
                format!(
                    "`{}` is not an IP address and port (write e.g. 127.0.0.1:8080 or \
                     [::1]:8080; host names are not resolved)",
                    self.listen
                ),
            );
        }
        if !crate::keys::SIGNING_ALGS.contains(&self.keys.alg) {
            bad(
                "keys.alg",
                "one of ES256, EdDSA, RS256 (the algorithms our own keys can sign with)".into(),
            );
        }
        if self.leeway > Duration::from_secs(300) {
            bad("leeway", "at most 5m".into());
        }
        if self.busy_poll > Duration::from_millis(50) {
            bad("busy_poll", "at most 50ms".into());
        }
        if let Err(why) = crate::store::StoreUrl::parse(&self.store.0) {
            // The URL may hold a password: never quote it.
            bad("store", why);
        }
        for (key, d) in [
            ("store_connect_timeout", self.store_connect_timeout),
            ("store_response_timeout", self.store_response_timeout),
        ] {
            if !(Duration::from_millis(10)..=Duration::from_secs(30)).contains(&d) {
                bad(key, "between 10ms and 30s".into());
            }
        }
        if self.limits.max_params == 0 {
            bad("limits.max_params", "at least 1".into());
        }
        if self.limits.max_token_bytes < 512 {
            bad("limits.max_token_bytes", "at least 512".into());
        }
        if self.limits.max_body_bytes < self.limits.max_token_bytes {
            bad(
                "limits.max_body_bytes",
                format!(
                    "must be at least max_token_bytes ({})",
                    self.limits.max_token_bytes
                ),
            );
        }
        for (key, m) in self.client_auth.problems() {
            bad(&format!("client_auth.{key}"), m.into());
        }
        for (key, m) in self.gateway.problems() {
            bad(&format!("gateway.{key}"), m);
        }
        for (key, m) in self.telemetry.problems() {
            bad(&format!("telemetry.{key}"), m);
        }
        if self.subject_cache.capacity > MAX_SUBJECT_CACHE {
            bad(
                "subject_cache.capacity",
                format!("at most {MAX_SUBJECT_CACHE}"),
            );
        }
        if self.limits.max_context_bytes == 0
            || self.limits.max_context_bytes > self.limits.max_body_bytes
        {
            bad(
                "limits.max_context_bytes",
                "between 1 and max_body_bytes".into(),
            );
        }
        if !self.trust_domain.is_empty() && !is_trust_domain(&self.trust_domain) {
            bad(
                "trust_domain",
                "must be a DNS name: lower-case letters, digits, `-` and `.`".into(),
            );
        }
        if let Some(tls) = &self.tls {
            for (key, path) in [("tls.cert", &tls.cert), ("tls.key", &tls.key)] {
                if !path.is_file() {
                    bad(key, format!("`{}` is not a readable file", path.display()));
                }
            }
        }
        if let Some(ca) = &self.outbound_ca_file
            && !ca.is_file()
        {
            bad(
                "outbound_ca_file",
                format!("`{}` is not a readable file", ca.display()),
            );
        }
        if self.dev && addr.is_some_and(|a| !a.ip().is_loopback()) {
            bad(
                "dev",
                "development mode only listens on a loopback address".into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        for t in &self.trust {
            if !names.insert(t.name.as_str()) {
                problems.push(t.error("name", format!("`{}` is defined twice", t.name)));
            }
        }
        let mut ids = std::collections::HashSet::new();
        for (i, c) in self.clients.iter().enumerate() {
            let key = format!("clients[{i}]");
            if !ids.insert(c.id.as_str()) {
                problems
                    .push(at.problem(&format!("{key}.id"), format!("`{}` is defined twice", c.id)));
            }
            for (k, m) in c.problems() {
                let k = if k.is_empty() {
                    key.clone()
                } else {
                    format!("{key}.{k}")
                };
                problems.push(at.problem(&k, m));
            }
        }
    }
}

/// A trust domain name as SPIFFE and WIMSE write them: lower-case letters, digits, `-`, `.`
/// and `_`, at most 255 bytes.
fn is_trust_domain(s: &str) -> bool {
    s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
}

/// `STS__TRUST…` and `STS__CLIENTS…` would replace lists the environment cannot express.
fn refuse_env_lists() -> Result<(), ConfigError> {
    for list in ["TRUST", "CLIENTS"] {
        let var = format!("STS__{list}");
        let set = std::env::vars().any(|(k, _)| {
            let k = k.to_ascii_uppercase();
            k == var || k.starts_with(&format!("{var}__"))
        });
        if set {
            return Err(ConfigError(format!(
                "{}: entries cannot be set from the environment ({var}…); write them in the \
                 configuration file",
                list.to_ascii_lowercase()
            )));
        }
    }
    Ok(())
}

impl ClientSettings {
    /// What is wrong with this client, as (key under the client, message).
    fn problems(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        if self.id.is_empty() {
            out.push(("id", "must not be empty".to_owned()));
        }
        match (&self.secret_hash, &self.jwks) {
            (Some(h), None) => {
                if let Err(m) = crate::auth::SecretHash::parse(h) {
                    out.push(("secret_hash", m));
                }
            }
            (None, Some(j)) => {
                if j.discovery {
                    out.push(("jwks", "discovery is not available for clients".to_owned()));
                } else if let Err(e) = j.validate("") {
                    out.push(("jwks", e.0));
                }
            }
            _ => out.push((
                "",
                "set exactly one of secret_hash (client_secret_basic) or jwks (private_key_jwt)"
                    .to_owned(),
            )),
        }
        if self.algorithms.as_ref().is_some_and(Vec::is_empty) {
            out.push(("algorithms", EMPTY_ALGORITHMS.to_owned()));
        }
        out
    }
}

/// The message for `algorithms: []`: an empty allowlist would accept nothing.
pub const EMPTY_ALGORITHMS: &str = "the list is empty, so no token could ever verify; list algorithms or remove the key for the \
     default (ES256, EdDSA, RS256, PS256)";

impl JwksSettings {
    /// Exactly one source, and a URL that passes [`check_url`].
    pub fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let set = [self.file.is_some(), self.uri.is_some(), self.discovery];
        if set.iter().filter(|b| **b).count() != 1 {
            return Err(ConfigError(format!(
                "{}set exactly one of file, uri or discovery: true",
                prefix(key)
            )));
        }
        if let Some(uri) = &self.uri {
            let key = if key.is_empty() {
                "uri".to_owned()
            } else {
                format!("{key}.uri")
            };
            check_url(&key, uri)?;
        }
        for (name, d) in [
            ("refresh", self.refresh),
            ("refetch_cooldown", self.refetch_cooldown),
        ] {
            if d < Duration::from_secs(1) {
                return Err(ConfigError(format!("{}{name}: at least 1s", prefix(key))));
            }
        }
        Ok(())
    }
}

/// `key: ` before a message, or nothing for an empty key.
fn prefix(key: &str) -> String {
    if key.is_empty() {
        String::new()
    } else {
        format!("{key}: ")
    }
}

/// An issuer or key URL, checked on its parsed form (WHATWG URL parsing): `https`, or `http`
/// to a loopback host (development and tests only); no user information, query or fragment.
pub fn check_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let bad = |why: &str| Err(ConfigError(format!("{}`{url}` {why}", prefix(key))));
    let Ok(parsed) = url::Url::parse(url) else {
        return bad("is not an absolute URL");
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return bad("must not contain user information (user@host)");
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return bad("must not contain a query or fragment");
    }
    let Some(host) = parsed.host() else {
        return bad("has no host");
    };
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&host) => Ok(()),
        "http" => bad("must use https (http is allowed for loopback hosts only)"),
        _ => bad("must be an https URL"),
    }
}

fn is_loopback(host: &url::Host<&str>) -> bool {
    match host {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_is_valid() {
        let s = Settings::from_yaml(DEFAULT_YAML).unwrap();
        assert!(s.dev);
        assert_eq!(s.token_endpoint(), "http://127.0.0.1:8080/token");
    }

    #[test]
    fn url_rules() {
        assert!(check_url("k", "https://idp.example.com").is_ok());
        assert!(check_url("k", "http://127.0.0.1:9000/x").is_ok());
        assert!(check_url("k", "http://[::1]:9000").is_ok());
        assert!(check_url("k", "http://idp.example.com").is_err());
        assert!(check_url("k", "https://idp.example.com/?a").is_err());
        assert!(check_url("k", "ftp://x").is_err());
        assert!(check_url("k", "http://127.0.0.1:80@evil.example/").is_err());
        assert!(check_url("k", "http://localhost.evil.example/").is_err());
    }
}
