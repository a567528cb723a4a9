//! Token kinds as plugins: the interfaces every input and output kind implements, the facts of
//! a request a kind may read, and the registry that lists the kinds.
//!
//! An **input kind** ([`InputKind`]) is one file: it names the `kind:` of its trust entries,
//! the token types it verifies and the request headers it reads, parses its own configuration
//! block, and builds a [`Verifier`] per trust entry (with the entry's key source and the kind's
//! claim rules). An **output kind** ([`Minter`]) is one file too: it owns its reserved claims,
//! `typ`, `issued_token_type`/`token_type`, lifetime bound and the claims a mapping may write,
//! and mints asynchronously (it may call out). Adding a kind is that file, its `mod` line and
//! one line in [`KindRegistry::builtin`]; nothing in `exchange/`, `profile/`, `http/` or
//! `store/` changes.
//!
//! JWS-based kinds verify through the one driver in `driver` (parse → typ → alg allowlist → key
//! lookup → signature → time checks). This module applies no profile policy.

mod access_token;
mod claims;
mod driver;
pub mod http_sig;
mod introspection;
mod issued_jwt_svid;
mod issued_wit;
mod jwt_svid;
mod oauth_jwt;
mod oidc_id_token;
pub mod scope;
mod self_signed;
mod txn_token;
mod unsigned_json;
mod wit;
mod x509_svid;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

pub use access_token::{AccessTokenMinter, audience_value};
pub use claims::{ClaimsExt, audience_contains};
pub use driver::{CheckedJws, JwsEntry, JwsRules, TypRule, verify_jws};
pub use introspection::IntrospectionKind;
pub use issued_jwt_svid::JwtSvidMinter;
pub use issued_wit::WitMinter;
pub use jwt_svid::{JWT_SPIFFE_ASSERTION, JwtSvidKind};
pub use oauth_jwt::OauthJwtKind;
pub use oidc_id_token::OidcIdTokenKind;
pub use self_signed::SelfSignedKind;
pub use txn_token::{CHAIN_CLAIM, TXN_TYP, TxnTokenKind, TxnTokenMinter};
pub use unsigned_json::UnsignedJsonKind;
pub use wit::{WIT_TYP, WPT_TYP, WitKind};
pub use x509_svid::{X509SvidKind, validate_endpoint_svid};

use crate::auth::Caller;
use crate::clock::UnixTime;
use crate::config::{ConfigError, TrustEntry};
use crate::error::OAuthError;
use crate::exchange::ExchangeRequest;
use crate::expr::Variables;
use crate::jose::{Claims, JoseError, UnverifiedJws};
use crate::keys::Signer;
use crate::profile::Profile;
use crate::secret::Token;
use crate::store::ReplayGuard;
use crate::trust::{HttpFetcher, KeyStore, OwnKeys};

/// RFC 8693 §3 token type identifiers used by the built-in kinds.
pub mod types {
    pub const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
    pub const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
    pub const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
    pub const REFRESH_TOKEN: &str = "urn:ietf:params:oauth:token-type:refresh_token";
    /// Txn-Token draft §4.3 / §10.
    pub const TXN_TOKEN: &str = "urn:ietf:params:oauth:token-type:txn_token";
    pub const SELF_SIGNED: &str = "urn:ietf:params:oauth:token-type:self_signed";
    pub const UNSIGNED_JSON: &str = "urn:ietf:params:oauth:token-type:unsigned_json";
    /// Not a token type: the label under which a client credential (a header credential or a
    /// `client_assertion`) is offered to its entry's verifier, so that the kind applies the
    /// rules of client authentication (e.g. `aud` is our issuer identifier alone).
    pub const CLIENT_CREDENTIAL: &str = "(client credential)";
}

/// Why an input token was refused. Every message is safe to return to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    #[error("{0}")]
    Jose(#[from] JoseError),
    #[error("token issuer is not trusted for this exchange")]
    UntrustedIssuer,
    #[error("token type (typ) is not accepted")]
    WrongType,
    #[error("token algorithm is not accepted")]
    AlgNotAllowed,
    #[error("token signing key is unknown")]
    UnknownKey,
    #[error("token issuer keys are unavailable")]
    KeysUnavailable,
    #[error("token is expired")]
    Expired,
    #[error("token is not yet valid")]
    NotYetValid,
    #[error("token was issued in the future")]
    IssuedInFuture,
    #[error("token audience does not include this service")]
    WrongAudience,
    #[error("token lacks a required claim: {0}")]
    MissingClaim(&'static str),
    #[error("token claim is malformed: {0}")]
    BadClaim(&'static str),
    #[error("token is not active")]
    Inactive,
    #[error("token was issued to another client (azp)")]
    WrongAuthorizedParty,
    /// An upstream service (introspection endpoint) failed; the token was not judged.
    #[error("{0}")]
    Upstream(&'static str),
    /// RFC 9449 / RFC 8705: the token is bound to a key (`cnf`) and this kind does not check
    /// the binding, so it must not be exchanged as a bearer token.
    #[error("sender-constrained tokens (cnf) are not accepted")]
    SenderConstrained,
    /// A kind-specific refusal, with safe, fixed text.
    #[error("{0}")]
    Kind(&'static str),
    /// The token may be fine, but not from this caller (who may present it, with which key):
    /// a refusal of the caller, not of the token.
    #[error("{0}")]
    Caller(&'static str),
}

impl Rejection {
    /// Whether the refusal is about our upstream, not the token (answered
    /// `temporarily_unavailable`, design invariant 12).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::KeysUnavailable | Self::Upstream(_))
    }

    /// Whether the refusal is about the caller rather than the token.
    pub fn is_about_caller(&self) -> bool {
        matches!(self, Self::Caller(_))
    }
}

/// The TLS client certificate chain of a request (DER, the leaf first), when the listener
/// asked for one. The TLS layer checked only that the client holds the leaf's private key;
/// whether anyone vouches for the chain is for the entry that reads it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate(pub Arc<[Vec<u8>]>);

impl ClientCertificate {
    /// The leaf (end-entity) certificate.
    pub fn leaf(&self) -> Option<&[u8]> {
        self.0.first().map(Vec::as_slice)
    }

    /// RFC 8705 §3.1: base64url SHA-256 of the leaf's DER (`cnf.x5t#S256`).
    pub fn thumbprint(&self) -> Option<String> {
        let leaf = self.leaf()?;
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, leaf);
        Some(crate::jose::b64_encode(digest.as_ref()))
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClientCertificate({} certificates)", self.0.len())
    }
}

/// What proofs of possession need to know about the HTTP request. The endpoint URL comes from
/// configuration, never from `Host` or forwarded headers; only the headers some registered kind
/// declares are copied. Header values may be tokens: `Debug` shows their names and
/// fingerprints only.
#[derive(Clone)]
pub struct RequestFacts {
    pub method: http::Method,
    /// This token endpoint's URL, from configuration.
    pub endpoint: Arc<str>,
    /// The declared headers the request carried: (lower-case name, value).
    pub headers: Vec<(&'static str, String)>,
    pub client_certificate: Option<ClientCertificate>,
    /// The TCP peer's address (not a forwarded header): for failure budgets.
    pub peer: Option<std::net::IpAddr>,
    /// SHA-256 of the request body, when the request carries a `Content-Digest` to check.
    pub body_sha256: Option<[u8; 32]>,
}

impl fmt::Debug for RequestFacts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(n, v)| format!("{n}: sha256:{}", crate::secret::fingerprint(v.as_bytes())))
            .collect();
        f.debug_struct("RequestFacts")
            .field("method", &self.method)
            .field("endpoint", &self.endpoint)
            .field("headers", &headers)
            .field("client_certificate", &self.client_certificate)
            .field("peer", &self.peer)
            .finish()
    }
}

impl RequestFacts {
    /// A POST to `endpoint` with no headers and no certificate (tools and tests).
    pub fn post(endpoint: &str) -> Self {
        Self {
            method: http::Method::POST,
            endpoint: Arc::from(endpoint),
            headers: Vec::new(),
            client_certificate: None,
            peer: None,
            body_sha256: None,
        }
    }

    /// The value of declared header `name` (case-insensitive), if the request had it.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// How many fields of declared header `name` the request had.
    pub fn header_count(&self, name: &str) -> usize {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .count()
    }
}

/// What every verifier needs besides the token.
#[derive(Clone, Copy)]
pub struct VerifyContext<'a> {
    pub now: UnixTime,
    /// Tolerated clock skew, seconds.
    pub leeway: i64,
    pub max_token_bytes: usize,
    pub facts: &'a RequestFacts,
    /// Single-use identifiers of proofs (a WPT's `jti`), shared by replicas when Redis is set.
    pub replay: &'a dyn ReplayGuard,
    /// The token-exchange parameters, when the request is one (a proof may bind its tokens).
    pub exchange: Option<&'a ExchangeRequest>,
    /// The authenticated client, once there is one: a kind may bind a token to it (a
    /// `self_signed` token is verified with the key the caller proved).
    pub caller: Option<&'a Caller>,
}

impl fmt::Debug for VerifyContext<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyContext")
            .field("now", &self.now)
            .field("leeway", &self.leeway)
            .field("facts", self.facts)
            .finish_non_exhaustive()
    }
}

/// A presented subject or actor token as the engine hands it to the kinds: parsed once as a
/// compact JWS (nothing in it is trusted yet), or the reason it is not one.
pub struct Presented<'a> {
    pub token: &'a Token,
    pub token_type: &'a str,
    pub jws: Result<UnverifiedJws<'a>, JoseError>,
}

impl<'a> Presented<'a> {
    pub fn new(token: &'a Token, token_type: &'a str, max_token_bytes: usize) -> Self {
        Self {
            token,
            token_type,
            jws: UnverifiedJws::parse(token.expose(), max_token_bytes),
        }
    }

    /// The unverified `iss` of a JWS token: only for choosing among configured trust entries.
    pub fn unverified_iss(&self) -> Option<&str> {
        self.jws
            .as_ref()
            .ok()?
            .unverified_claims
            .get("iss")?
            .as_str()
    }
}

impl fmt::Debug for Presented<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presented")
            .field("token", self.token)
            .field("token_type", &self.token_type)
            .finish_non_exhaustive()
    }
}

/// A token that passed every check of its kind.
#[derive(Debug, Clone)]
pub struct Verified {
    pub claims: Claims,
    /// The trust entry that vouched for it.
    pub trust: Arc<str>,
    /// Its input kind.
    pub kind: &'static str,
    /// The key whose possession this request proved for the token (a WIT's `cnf.jwk`, proven
    /// by its WPT): an output kind may bind what it issues to it.
    pub proven_key: Option<ProvenKey>,
    /// Whether its claims are asserted by the caller itself (an unsigned or self-signed
    /// subject) rather than by an issuer we trust: an output kind must then not take its
    /// `scope` as a ceiling on its own word.
    pub asserted_by_caller: bool,
}

/// A public key the request proved it holds, and until when the credential that binds it to
/// its holder is valid: nothing bound to it may outlive that (workload-creds §3: a key MUST NOT
/// be used after its credential expires).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenKey {
    pub jwk: serde_json::Value,
    pub until: UnixTime,
}

/// One trust entry's verifier: the kind's rules bound to the entry's configuration and keys.
#[async_trait::async_trait]
pub trait Verifier: Send + Sync + fmt::Debug {
    /// A cheap look at unverified data (no crypto, no I/O): is this token for this entry? JWS
    /// kinds compare the unverified `iss` with the configured issuer.
    fn recognizes(&self, presented: &Presented<'_>) -> bool;

    /// Whether this entry takes any token it is offered (e.g. opaque tokens checked by
    /// introspection). The engine offers a token to such an entry only when no other accepted
    /// entry recognizes it, whatever the profile's order.
    fn is_fallback(&self) -> bool {
        false
    }

    /// Whether a successful verification depends only on the token, this entry's keys and
    /// the time — not on the request, the caller or an upstream's answer — so that the engine
    /// may remember it (keyed by the token's hash, until its `exp`, dropped when the keys
    /// change).
    fn cacheable(&self) -> bool {
        false
    }

    /// Whether what it verifies is the caller's own word, vouched for by no issuer (its
    /// `Verified` has `asserted_by_caller`). Output kinds may require a ceiling for such
    /// subjects when a profile loads (the `txn-token` kind's `subject_scope`).
    fn caller_asserted(&self) -> bool {
        false
    }

    /// Whether it accepts JWTs without an explicit type of its own (`typ` absent or `JWT`).
    /// Two such entries of different kinds may not share an issuer: nothing would keep one
    /// kind's tokens from passing as the other's (RFC 8725 §3.12).
    fn accepts_untyped(&self) -> bool {
        false
    }

    /// Signature (or introspection), issuer, audience, lifetime and the kind's claim rules. No
    /// profile policy.
    async fn verify(
        &self,
        presented: Presented<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Verified, Rejection>;

    /// The issuer this entry vouches for (logs, samples).
    fn issuer(&self) -> &str;

    /// The entry's key source, if it has one: loaded at start, refreshed in the background and
    /// counted by readiness.
    fn keys(&self) -> Option<&KeyStore> {
        None
    }

    /// The `subject_token_type`/`actor_token_type` values this entry takes, when its
    /// configuration sets them (`None`: the kind's `token_types`).
    fn token_types(&self) -> Option<&[String]> {
        None
    }

    /// A client credential this entry reads from the request's declared headers (e.g. a WIT
    /// with its proof), when the entry authenticates clients and the request carries one. The
    /// engine then calls [`verify`](Self::verify) on it and the verified `sub` is the caller.
    fn client_credential<'f>(&self, _facts: &'f RequestFacts) -> Option<&'f str> {
        None
    }

    /// Whether this entry authenticates clients (its method is then advertised in metadata).
    fn authenticates_clients(&self) -> bool {
        false
    }

    /// The client authentication method name for callers this entry authenticates.
    fn client_auth_method(&self) -> &'static str {
        "none"
    }

    /// The `client_assertion_type` this entry authenticates clients by, when it does: a form
    /// `client_assertion` of this type is offered to [`verify`](Self::verify) (declared as
    /// [`types::CLIENT_CREDENTIAL`]) and the verified `sub` is the caller.
    fn client_assertion_type(&self) -> Option<&'static str> {
        None
    }

    /// Whether this entry authenticates clients by their TLS client certificate (RFC 8705).
    fn authenticates_certificates(&self) -> bool {
        false
    }

    /// Verifies a request's TLS client certificate chain as a client credential: `None` when
    /// the certificate is not this entry's to judge (another trust domain), else the verified
    /// identity (`sub`) or why it was refused.
    async fn verify_certificate(
        &self,
        _certificate: &ClientCertificate,
        _ctx: &VerifyContext<'_>,
    ) -> Option<Result<Verified, Rejection>> {
        None
    }
}

/// What a kind may use while it configures a trust entry.
#[derive(Debug, Clone, Copy)]
pub struct KindEnv<'a> {
    /// Our issuer identifier: the default audience incoming tokens must name.
    pub our_issuer: &'a str,
    /// Our trust domain (the `aud` of our Txn-Tokens).
    pub trust_domain: &'a str,
    /// Our own public signing keys (for kinds that verify what we issued).
    pub own_keys: &'a OwnKeys,
    /// Outbound HTTP with our timeouts, size limit and no redirects.
    pub http: &'a HttpFetcher,
}

/// An input kind: a `kind:` of trust entry.
pub trait InputKind: Send + Sync + 'static {
    /// The `kind:` value of its trust entries, e.g. `oauth-jwt`.
    fn name(&self) -> &'static str;
    /// The RFC 8693 `subject_token_type` / `actor_token_type` values it verifies.
    fn token_types(&self) -> &'static [&'static str];
    /// Request headers it reads (lower case); only these reach [`RequestFacts`], every value
    /// when a header is repeated.
    fn headers(&self) -> &'static [&'static str] {
        &[]
    }
    /// Typical verified claims, for evaluating profile CEL at load.
    fn sample_claims(&self) -> Claims;
    /// The only output kind (`issue.kind`) its tokens may be the subject of, when the kind's
    /// tokens are meaningful for one output only (our own Txn-Tokens, subjects a caller
    /// asserts); such entries are never accepted as actors either. Checked when profiles load.
    fn only_for_output(&self) -> Option<&'static str> {
        None
    }
    /// Parses and validates this kind's block of `entry` (unknown keys are errors) and builds
    /// the entry's verifier. No network I/O: keys load later.
    fn configure(
        &self,
        entry: &TrustEntry,
        env: &KindEnv<'_>,
    ) -> Result<Arc<dyn Verifier>, ConfigError>;
}

/// The claims the engine decides for every output kind; a minter writes them last, over
/// whatever the mapping produced.
#[derive(Debug, Clone)]
pub struct CommonClaims {
    pub issuer: String,
    pub subject: String,
    pub audience: Vec<String>,
    pub issued_at: UnixTime,
    pub expires_at: UnixTime,
    pub act: Option<serde_json::Value>,
}

/// The claim that identifies an issued token and its value (`jti`, or a Txn-Token's `txn`),
/// for the exchange's log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedId {
    pub claim: &'static str,
    pub value: String,
}

impl IssuedId {
    /// A fresh `jti` (RFC 7519 §4.1.7): 144 random bits, base64url.
    pub fn new_jti() -> Result<Self, OAuthError> {
        let mut bytes = [0u8; 18];
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| OAuthError::server_error("no randomness"))?;
        Ok(Self {
            claim: "jti",
            value: crate::jose::b64_encode(&bytes),
        })
    }

    /// A fresh `jti`, set in `claims`.
    pub fn insert_new_jti(claims: &mut Claims) -> Result<Self, OAuthError> {
        let id = Self::new_jti()?;
        claims.insert("jti".into(), id.value.clone().into());
        Ok(id)
    }
}

/// Everything a minter may read: the mapped claims, the engine's decisions, the verified
/// inputs, the caller, the request, the profile and its CEL variables. Not our keys: preparing
/// a token never signs.
pub struct MintRequest<'a, 'v> {
    pub claims: Claims,
    pub common: &'a CommonClaims,
    pub subject: &'a Verified,
    pub actor: Option<&'a Verified>,
    pub caller: &'a Caller,
    pub request: &'a ExchangeRequest,
    pub profile: &'a Profile,
    pub vars: &'a Variables<'v>,
}

/// The claims an output kind would issue, before signing: what `sts explain` shows and what
/// [`Minter::seal`] signs.
#[derive(Debug, Clone)]
pub struct Draft {
    pub claims: Claims,
    /// The claim that identifies the token, as set in `claims`.
    pub id: IssuedId,
    /// Its `exp`: the engine's, or earlier when the kind must shorten it (never later).
    pub expires_at: UnixTime,
    pub issued_token_type: &'static str,
    pub token_type: &'static str,
    /// The response's `scope`, when the kind has one.
    pub scope: Option<String>,
}

/// A signed token and how to describe it in the RFC 8693 §2.2.1 response.
#[derive(Debug)]
pub struct Minted {
    pub token: Token,
    pub id: IssuedId,
    pub issued_token_type: &'static str,
    pub token_type: &'static str,
    /// The response's `scope`, when the kind has one.
    pub scope: Option<String>,
}

/// What an output kind may check of a profile that issues it, when profiles load.
#[derive(Debug, Clone, Copy)]
pub struct ProfileEnv<'a> {
    /// `issue.options` as written (a YAML mapping), if any.
    pub options: Option<&'a serde_json::Value>,
    /// `issue.audiences`.
    pub audiences: &'a [String],
    /// Token types the profile's subject trust entries take.
    pub subject_types: &'a [&'a str],
    /// Of those, the types taken by entries whose subjects are the caller's own word
    /// (`Verifier::caller_asserted`).
    pub caller_asserted_types: &'a [&'a str],
    /// Our trust domain.
    pub trust_domain: &'a str,
}

/// Which of our signing keys an output kind signs with. Each purpose has keys of its own,
/// published apart, so that a verifier trusting one kind's keys can never accept another
/// kind's tokens (design invariant 3: a key set serves one kind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyPurpose {
    /// Our tokens published at `/jwks`: access tokens, WITs, Txn-Tokens.
    Tokens,
    /// JWT-SVIDs, whose keys go into a SPIFFE trust domain's bundle (`/spiffe/bundle`).
    JwtSvid,
}

/// Claims no mapping may write, whatever the kind (design §4).
pub const ALWAYS_RESERVED: &[&str] = &[
    "iss", "aud", "exp", "iat", "nbf", "jti", "cnf", "act", "may_act",
];

/// An output kind, named by `issue.kind` in a profile.
#[async_trait::async_trait(?Send)]
pub trait Minter: Send + Sync + 'static {
    /// The `issue.kind` value, e.g. `access-token`.
    fn name(&self) -> &'static str;
    /// RFC 8693 §2.2.1 `issued_token_type`.
    fn issued_token_type(&self) -> &'static str;
    /// The JOSE `typ` of what it mints.
    fn typ(&self) -> &'static str;
    /// Claims of this kind the engine or minter sets, beyond [`ALWAYS_RESERVED`].
    fn reserved_claims(&self) -> &'static [&'static str];
    /// The longest `issue.lifetime` a profile may ask for.
    fn max_lifetime(&self) -> Duration;
    /// Binds a profile's `issue.options` (and checks what the kind requires of the profile)
    /// when the profile loads: returns the minter that profile uses, or the problems (each a
    /// message about a key under `issue`). The default takes no options.
    fn configure(&self, profile: &ProfileEnv<'_>) -> Result<Option<Arc<dyn Minter>>, Vec<String>> {
        match profile.options {
            None => Ok(None),
            Some(_) => Err(vec![format!(
                "options: kind {} takes no options",
                self.name()
            )]),
        }
    }
    /// Cheap checks of the request's shape for this kind, before any token is verified (no
    /// crypto, no I/O): e.g. parameters the kind requires, token types it refuses.
    fn check_request(&self, _req: &ExchangeRequest) -> Result<(), OAuthError> {
        Ok(())
    }
    /// Whether a mapping may write `claim` (checked when profiles load).
    fn may_write(&self, claim: &str) -> bool {
        !ALWAYS_RESERVED.contains(&claim) && !self.reserved_claims().contains(&claim)
    }
    /// Decides the claims: the mapped ones, then the kind's and the engine's reserved claims
    /// last; self-checks the result. Signs nothing and calls nothing that changes state
    /// (`sts explain` runs it as a dry run).
    async fn prepare(&self, req: MintRequest<'_, '_>) -> Result<Draft, OAuthError>;

    /// Which of our key sets signs this kind's tokens; the engine hands [`seal`](Self::seal)
    /// that set's signer.
    fn key_purpose(&self) -> KeyPurpose {
        KeyPurpose::Tokens
    }

    /// Signs a prepared token. The default signs a JWS with our active key and this kind's
    /// `typ`; a kind that issues differently overrides it.
    fn seal(&self, draft: Draft, signer: &Signer) -> Result<Minted, OAuthError> {
        seal_jws(self.typ(), draft, signer)
    }
}

/// Signs `draft` as a compact JWS with our active key and JOSE `typ` (header: `alg`, `kid`,
/// `typ`): the default [`Minter::seal`].
pub fn seal_jws(typ: &str, draft: Draft, signer: &Signer) -> Result<Minted, OAuthError> {
    // The identifier a kind reports is the one its claims carry (every minting test checks).
    debug_assert_eq!(
        draft
            .claims
            .get(draft.id.claim)
            .and_then(serde_json::Value::as_str),
        Some(draft.id.value.as_str())
    );
    let jws = signer
        .sign_jws(typ, &draft.claims)
        .map_err(|_| OAuthError::server_error("token signing failed"))?;
    Ok(Minted {
        token: Token::new(jws),
        id: draft.id,
        issued_token_type: draft.issued_token_type,
        token_type: draft.token_type,
        scope: draft.scope,
    })
}

/// The registered input and output kinds. Built once; the request path only reads it.
#[derive(Clone)]
pub struct KindRegistry {
    inputs: Vec<Arc<dyn InputKind>>,
    outputs: Vec<Arc<dyn Minter>>,
    headers: Vec<&'static str>,
}

impl fmt::Debug for KindRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KindRegistry")
            .field("inputs", &self.input_names())
            .field("outputs", &self.output_names())
            .finish()
    }
}

impl Default for KindRegistry {
    fn default() -> Self {
        Self::builtin()
    }
}

impl KindRegistry {
    /// The built-in kinds: one line each, naming the kind by its file (module). A new kind is
    /// its file, that file's `mod` line above, and its line here; the `pub use` above is only
    /// for kinds that code outside this module builds registries with.
    pub fn builtin() -> Self {
        Self::empty()
            .with_input(Arc::new(oauth_jwt::OauthJwtKind))
            .with_input(Arc::new(oidc_id_token::OidcIdTokenKind))
            .with_input(Arc::new(introspection::IntrospectionKind))
            .with_input(Arc::new(wit::WitKind))
            .with_input(Arc::new(txn_token::TxnTokenKind))
            .with_input(Arc::new(self_signed::SelfSignedKind))
            .with_input(Arc::new(unsigned_json::UnsignedJsonKind))
            .with_input(Arc::new(jwt_svid::JwtSvidKind))
            .with_input(Arc::new(x509_svid::X509SvidKind))
            .with_output(Arc::new(access_token::AccessTokenMinter::default()))
            .with_output(Arc::new(issued_wit::WitMinter))
            .with_output(Arc::new(txn_token::TxnTokenMinter::default()))
            .with_output(Arc::new(issued_jwt_svid::JwtSvidMinter::default()))
    }

    pub fn empty() -> Self {
        Self {
            inputs: Vec::new(),
            outputs: Vec::new(),
            headers: Vec::new(),
        }
    }

    /// Registers an input kind (replacing one of the same name).
    pub fn with_input(mut self, kind: Arc<dyn InputKind>) -> Self {
        self.inputs.retain(|k| k.name() != kind.name());
        for h in kind.headers() {
            if !self.headers.contains(h) {
                self.headers.push(h);
            }
        }
        self.inputs.push(kind);
        self
    }

    /// Registers an output kind (replacing one of the same name).
    pub fn with_output(mut self, kind: Arc<dyn Minter>) -> Self {
        self.outputs.retain(|k| k.name() != kind.name());
        self.outputs.push(kind);
        self
    }

    pub fn input(&self, name: &str) -> Option<&Arc<dyn InputKind>> {
        self.inputs.iter().find(|k| k.name() == name)
    }

    pub fn output(&self, name: &str) -> Option<&Arc<dyn Minter>> {
        self.outputs.iter().find(|k| k.name() == name)
    }

    pub fn input_names(&self) -> Vec<&'static str> {
        self.inputs.iter().map(|k| k.name()).collect()
    }

    pub fn output_names(&self) -> Vec<&'static str> {
        self.outputs.iter().map(|k| k.name()).collect()
    }

    /// Every request header some input kind reads (lower case).
    pub fn headers(&self) -> &[&'static str] {
        &self.headers
    }
}
