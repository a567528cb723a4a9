//! Input kind `wit`: WIMSE Workload Identity Tokens (draft-ietf-wimse-workload-creds), with
//! their proof of possession, a Workload Proof Token (draft-ietf-wimse-wpt), in the same
//! request. A WIT is never a bearer token (design invariant 5): without a valid WPT it is
//! refused, whether it is the subject or actor token or the client's credential.
//!
//! The entry names one trust domain and its trust anchors (a JWKS); the WIT's `sub` must be a
//! canonical `wimse://` or `spiffe://` workload identifier in that trust domain, checked
//! before any key lookup. The WPT is checked against the WIT's `cnf.jwk`, this token
//! endpoint's URL from configuration (never `Host`), the WIT's hash, the tokens the request
//! carries (`ath`, `tth`, `oth`), and the replay guard (`jti`). No profile policy here.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ClaimsExt, InputKind, KindEnv, Presented, ProvenKey, Rejection, RequestFacts, TypRule,
    Verified, Verifier, VerifyContext, http_sig, types,
};
use crate::config::{
    BundleSettings, ConfigError, DEFAULT_ALGS, EMPTY_ALGORITHMS, JwksSettings, TrustEntry,
};
use crate::jose::{Alg, Claims, UnverifiedJws, VerifyingKey, b64_encode, parse_jwk_public};
use crate::trust::{BundleUse, KeyLookupError, KeyStore, key_fetch};
use crate::workload_id::{Scheme, WorkloadId, check_trust_domain};

/// The WIT's JOSE `typ` (workload-creds §3.1).
pub const WIT_TYP: &str = "wit+jwt";
/// The WPT's JOSE `typ` (wpt §3).
pub const WPT_TYP: &str = "wpt+jwt";
const WIT_HEADER: &str = "workload-identity-token";
const WPT_HEADER: &str = "workload-proof-token";
/// Attestation-based client authentication (draft-ietf-oauth-attestation-based-client-auth
/// §6.1), which SPIFFE client authentication uses for WIT-SVIDs (`spiffe_wit`).
const ATTESTATION_HEADER: &str = "oauth-client-attestation";
const ATTESTATION_POP_HEADER: &str = "oauth-client-attestation-pop";
const ATTESTATION_POP_TYP: &str = "oauth-client-attestation-pop+jwt";
/// HTTP Message Signatures (draft-ietf-wimse-http-signature): the other proof a WIT may come with.
const SIGNATURE_HEADERS: [&str; 5] = [
    "signature",
    "signature-input",
    "content-type",
    "content-digest",
    "authorization",
];
const TXN_HEADER: &str = "txn-token";
const TXN_TOKEN_TYPE: &str = types::TXN_TOKEN;
/// WIT-SVID (SPIFFE WIT-SVID.md): the JWT-SVID algorithms.
use super::jwt_svid::{SVID_ALGS, bundle_store};

/// The `wit` kind.
pub struct WitKind;

/// A `wit` trust entry's block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    /// The trust domain whose workloads' WITs this entry verifies.
    trust_domain: String,
    /// The identifier scheme of its workloads: `wimse` (default) or `spiffe` (forced by
    /// `wit_svid`). The same trust-domain string under another scheme is another domain.
    #[serde(default)]
    scheme: Option<SchemeName>,
    /// The trust anchors: the Identity Server's public keys (a JWK Set) …
    #[serde(default)]
    jwks: Option<JwksSettings>,
    /// … or the trust domain's SPIFFE bundle (a file or a bundle endpoint), of which the
    /// `wit-svid` keys are used.
    #[serde(default)]
    bundle: Option<BundleSettings>,
    /// Accepted WIT `alg` values (default ES256, EdDSA, RS256, PS256).
    #[serde(default)]
    algorithms: Option<Vec<Alg>>,
    /// The `subject_token_type`/`actor_token_type` under which a WIT is presented.
    #[serde(default = "default_token_type")]
    token_type: String,
    /// Whether a WIT with its WPT in the request headers authenticates the workload as a client.
    #[serde(default)]
    client_authentication: bool,
    /// The longest a WPT may still be valid when we see it.
    #[serde(default = "default_max_proof", with = "humantime_serde")]
    max_proof_lifetime: Duration,
    /// The trust domain is a SPIFFE one issuing WIT-SVIDs: `kid` required, the nine RS/ES/PS
    /// algorithms only, no `aud`.
    #[serde(default)]
    wit_svid: bool,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum SchemeName {
    Wimse,
    Spiffe,
}

fn default_token_type() -> String {
    types::JWT.to_owned()
}

fn default_max_proof() -> Duration {
    Duration::from_secs(300)
}

impl InputKind for WitKind {
    fn name(&self) -> &'static str {
        "wit"
    }

    fn token_types(&self) -> &'static [&'static str] {
        &[types::JWT]
    }

    fn headers(&self) -> &'static [&'static str] {
        &[
            WIT_HEADER,
            WPT_HEADER,
            TXN_HEADER,
            ATTESTATION_HEADER,
            ATTESTATION_POP_HEADER,
            SIGNATURE_HEADERS[0],
            SIGNATURE_HEADERS[1],
            SIGNATURE_HEADERS[2],
            SIGNATURE_HEADERS[3],
            SIGNATURE_HEADERS[4],
        ]
    }

    fn sample_claims(&self) -> Claims {
        let c = json!({
            "sub": "spiffe://example.com/ns/sample/pod/sample-0", "iss": "https://issuer.example",
            "exp": 1_700_000_300, "iat": 1_700_000_000, "jti": "sample-jti",
            "cnf": {"jwk": {"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "x": "AAAA"}},
        });
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
        let scheme = match (b.scheme, b.wit_svid) {
            (Some(SchemeName::Wimse), true) => {
                return Err(entry.error("scheme", "a WIT-SVID's sub is a SPIFFE ID: use spiffe"));
            }
            (Some(SchemeName::Spiffe), _) | (None, true) => Scheme::Spiffe,
            (Some(SchemeName::Wimse), false) | (None, false) => Scheme::Wimse,
        };
        check_trust_domain(scheme, &b.trust_domain)
            .map_err(|e| entry.error("trust_domain", format!("the trust domain {e}")))?;
        check_token_type(&b.token_type).map_err(|m| entry.error("token_type", m))?;
        let max_proof = b.max_proof_lifetime;
        if !(Duration::from_secs(1)..=Duration::from_secs(3600)).contains(&max_proof) {
            return Err(entry.error("max_proof_lifetime", "between 1s and 1h"));
        }
        let algorithms = match b.algorithms {
            Some(list) if list.is_empty() => {
                return Err(entry.error("algorithms", EMPTY_ALGORITHMS));
            }
            Some(list) => list,
            None if b.wit_svid => vec![Alg::ES256, Alg::RS256, Alg::PS256],
            None => DEFAULT_ALGS.to_vec(),
        };
        if b.wit_svid
            && let Some(a) = algorithms.iter().find(|a| !SVID_ALGS.contains(a))
        {
            return Err(entry.error(
                "algorithms",
                format!("{} is not a WIT-SVID algorithm (RS/ES/PS only)", a.as_str()),
            ));
        }
        let keys = match (&b.jwks, &b.bundle) {
            (Some(jwks), None) => anchor_keys(entry, env, jwks, &algorithms)?,
            (None, Some(bundle)) => bundle_store(
                entry,
                env,
                // A WIMSE trust domain is not a SPIFFE one, whatever its spelling.
                if scheme == Scheme::Spiffe {
                    &b.trust_domain
                } else {
                    ""
                },
                bundle,
                BundleUse::WitSvid,
                &algorithms,
            )?,
            _ => {
                return Err(entry.error(
                    "",
                    "set exactly one of jwks (a JWK Set) or bundle (a SPIFFE bundle)",
                ));
            }
        };
        Ok(Arc::new(WitVerifier {
            our_issuer: env.our_issuer.to_owned(),
            trust: Arc::from(entry.name.as_str()),
            keys,
            algorithms,
            trust_domain: b.trust_domain,
            scheme,
            token_types: vec![b.token_type],
            client_authentication: b.client_authentication,
            max_proof_secs: max_proof.as_secs() as i64,
            wit_svid: b.wit_svid,
        }))
    }
}

/// The Identity Server's keys from a JWK Set (a file or a URL; never discovered).
fn anchor_keys(
    entry: &TrustEntry,
    env: &KindEnv<'_>,
    jwks: &JwksSettings,
    algorithms: &[Alg],
) -> Result<KeyStore, ConfigError> {
    if jwks.discovery {
        return Err(entry.error(
            "jwks.discovery",
            "WIT trust anchors are configured, not discovered: set file or uri",
        ));
    }
    jwks.validate("").map_err(|e| entry.error("jwks", e.0))?;
    let name = format!("trust `{}`", entry.name);
    let fetch = key_fetch(&name, "", jwks, env.http);
    Ok(KeyStore::new(&name, fetch, algorithms, jwks))
}

/// An absolute URI, and never a name we would be minting under `urn:ietf:` (design §2): of
/// those, only the registered generic JWT type.
fn check_token_type(t: &str) -> Result<(), String> {
    if url::Url::parse(t).is_err() {
        return Err(format!("`{t}` is not an absolute URI"));
    }
    if t.to_ascii_lowercase().starts_with("urn:ietf:") && t != types::JWT {
        return Err(format!(
            "`{t}` is not a registered token type for WITs; use {} or a URI of your own",
            types::JWT
        ));
    }
    Ok(())
}

/// One `wit` entry's verifier.
#[derive(Debug)]
struct WitVerifier {
    /// The `aud` of attestation proofs.
    our_issuer: String,
    trust: Arc<str>,
    trust_domain: String,
    scheme: Scheme,
    algorithms: Vec<Alg>,
    keys: KeyStore,
    token_types: Vec<String>,
    client_authentication: bool,
    max_proof_secs: i64,
    wit_svid: bool,
}

/// A WIT that checked out, and the key its presenter must prove.
struct CheckedWit {
    claims: Claims,
    sub: WorkloadId,
    pop_key: VerifyingKey,
    /// `cnf.jwk` with only the public members its `kty` defines, plus `alg` and `kid`.
    public_jwk: Value,
    exp: i64,
}

#[async_trait::async_trait]
impl Verifier for WitVerifier {
    fn recognizes(&self, presented: &Presented<'_>) -> bool {
        let Ok(jws) = &presented.jws else {
            return false;
        };
        jws.header.typ_is(WIT_TYP) && self.sub_in_domain(&jws.unverified_claims).is_ok()
    }

    async fn verify(
        &self,
        presented: Presented<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Verified, Rejection> {
        let wit = presented.token.expose();
        let checked = self.check_wit(presented.jws?, ctx).await?;
        // Invariant 5: the same request proves possession of the WIT's key — a WIT-SVID sent as
        // a client attestation by its attestation PoP, any other WIT by its WPT.
        if self.is_attestation(wit, ctx.facts) {
            self.check_attestation_pop(&checked, ctx).await?;
        } else if ctx.facts.header_count(WPT_HEADER) == 0
            && ctx.facts.header_count("signature-input") > 0
        {
            self.check_message_signature(wit, &checked, ctx).await?;
        } else {
            self.check_proof(wit, &checked, ctx).await?;
        }
        let proven_key = Some(ProvenKey {
            jwk: checked.public_jwk.clone(),
            until: checked.exp,
        });
        Ok(Verified {
            claims: checked.claims,
            trust: self.trust.clone(),
            kind: "wit",
            proven_key,
            asserted_by_caller: false,
        })
    }

    fn issuer(&self) -> &str {
        &self.trust_domain
    }

    fn keys(&self) -> Option<&KeyStore> {
        Some(&self.keys)
    }

    fn token_types(&self) -> Option<&[String]> {
        Some(&self.token_types)
    }

    fn client_credential<'f>(&self, facts: &'f RequestFacts) -> Option<&'f str> {
        let header = match (self.client_authentication, self.wit_svid) {
            (false, _) => return None,
            // spiffe-client-auth §3.3: a WIT-SVID as the client attestation.
            (true, true) => ATTESTATION_HEADER,
            (true, false) => WIT_HEADER,
        };
        // Exactly one field: two credentials are no credential.
        if facts.header_count(header) == 1 {
            facts.header(header)
        } else {
            None
        }
    }

    fn authenticates_clients(&self) -> bool {
        self.client_authentication
    }

    fn client_auth_method(&self) -> &'static str {
        if self.wit_svid {
            "spiffe_wit"
        } else {
            "wimse_wit_wpt"
        }
    }
}

impl WitVerifier {
    /// identifier §3.1: the `sub` is validated to canonical form, and its trust domain is this
    /// entry's, before any key is looked up.
    fn sub_in_domain(&self, claims: &Claims) -> Result<WorkloadId, Rejection> {
        let sub = claims.required_str("sub")?;
        let id = WorkloadId::parse(sub)
            .map_err(|_| Rejection::Kind("WIT sub is not a canonical workload identifier"))?;
        // identifier §3.1: a trust domain means something only with its scheme.
        if id.scheme() != self.scheme || id.trust_domain() != self.trust_domain {
            return Err(Rejection::Kind("WIT sub is not in this trust domain"));
        }
        Ok(id)
    }

    /// workload-creds §3: typ, trust domain, signature by the trust anchors, exp, cnf.jwk.
    async fn check_wit(
        &self,
        jws: UnverifiedJws<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<CheckedWit, Rejection> {
        TypRule {
            explicit: &[WIT_TYP],
            untyped_ok: false,
        }
        .check(&jws.header)?;
        let sub = self.sub_in_domain(&jws.unverified_claims)?;
        if self.wit_svid {
            if jws.header.kid.is_none() {
                return Err(Rejection::Kind("WIT-SVID lacks kid"));
            }
            if jws.unverified_claims.contains_key("aud") {
                return Err(Rejection::Kind("WIT-SVID must not carry aud"));
            }
        }
        let alg = jws.header.alg;
        if !self.algorithms.contains(&alg) {
            return Err(Rejection::AlgNotAllowed);
        }
        let kid = jws.header.kid.clone();
        let keys = self
            .keys
            .resolve(kid.as_deref(), alg)
            .await
            .map_err(|e| match e {
                KeyLookupError::UnknownKey => Rejection::UnknownKey,
                KeyLookupError::NotLoaded => Rejection::KeysUnavailable,
            })?;
        let key = keys
            .find(kid.as_deref(), alg)
            .ok_or(Rejection::UnknownKey)?;
        let claims = jws.verify(key)?;
        let exp = claims.check_times(ctx)?;
        let (pop_key, public_jwk) = confirmation_key(&claims)?;
        if self.wit_svid && !SVID_ALGS.contains(&pop_key.alg()) {
            return Err(Rejection::Kind(
                "WIT cnf.jwk.alg is not an accepted signature algorithm",
            ));
        }
        Ok(CheckedWit {
            claims,
            sub,
            pop_key,
            public_jwk,
            exp,
        })
    }

    /// wpt §4: the one Workload-Proof-Token of the request, checked against the WIT.
    async fn check_proof(
        &self,
        wit: &str,
        checked: &CheckedWit,
        ctx: &VerifyContext<'_>,
    ) -> Result<(), Rejection> {
        let facts = ctx.facts;
        match facts.header_count(WPT_HEADER) {
            0 => {
                return Err(Rejection::Kind(
                    "a WIT is accepted only with a Workload-Proof-Token in the same request",
                ));
            }
            1 => {}
            _ => return Err(Rejection::Kind("more than one Workload-Proof-Token header")),
        }
        let value = facts.header(WPT_HEADER).unwrap_or_default();
        let jws = UnverifiedJws::parse(value, ctx.max_token_bytes)
            .map_err(|_| Rejection::Kind("Workload-Proof-Token is not a compact JWS"))?;
        if !jws.header.typ_is(WPT_TYP) {
            return Err(Rejection::Kind("WPT typ is not wpt+jwt"));
        }
        // wpt §4 step 2: alg equals cnf.jwk.alg, and the signature is by cnf.jwk.
        if jws.header.alg != checked.pop_key.alg() {
            return Err(Rejection::Kind(
                "WPT alg differs from the WIT's cnf.jwk.alg",
            ));
        }
        let proof = jws
            .verify(&checked.pop_key)
            .map_err(|_| Rejection::Kind("WPT signature does not verify with the WIT's key"))?;
        // Step 4: aud is this token endpoint, from configuration, and nothing else (a proof
        // for several audiences could be spent again at another of them).
        let aud_ok = match proof.get("aud") {
            Some(Value::String(a)) => **a == *facts.endpoint,
            Some(Value::Array(a)) => a.len() == 1 && a[0].as_str() == Some(&facts.endpoint),
            _ => false,
        };
        if !aud_ok {
            return Err(Rejection::Kind("WPT aud is not this token endpoint alone"));
        }
        // Step 5: exp present, not passed, not far in the future.
        let exp = proof
            .check_times(ctx)
            .map_err(|_| Rejection::Kind("WPT is expired, not yet valid, or lacks exp"))?;
        if exp > ctx.now.saturating_add(self.max_proof_secs + ctx.leeway) {
            return Err(Rejection::Kind("WPT lifetime is too long"));
        }
        // Step 6: wth binds this WIT.
        if proof.str_claim("wth").ok().flatten() != Some(&token_hash(wit)) {
            return Err(Rejection::Kind("WPT wth does not match the WIT"));
        }
        check_bound_tokens(&proof, ctx)?;
        // Step 7: single use, across replicas when the store is shared.
        let jti = proof
            .str_claim("jti")
            .ok()
            .flatten()
            .filter(|j| !j.is_empty())
            .ok_or(Rejection::Kind("WPT lacks jti"))?;
        let key = format!("wpt\u{0}{}\u{0}{jti}", checked.sub);
        single_use(ctx, &key, exp + ctx.leeway, "WPT was already used").await
    }
}

impl WitVerifier {
    /// http-signature §3: the request is signed with the WIT's key, over the method, this
    /// endpoint's path, the WIT (which must be the one in `Workload-Identity-Token`) and the
    /// body's Content-Digest; the nonce is single use.
    async fn check_message_signature(
        &self,
        wit: &str,
        checked: &CheckedWit,
        ctx: &VerifyContext<'_>,
    ) -> Result<(), Rejection> {
        let facts = ctx.facts;
        if facts.header_count(WIT_HEADER) != 1 || facts.header(WIT_HEADER) != Some(wit) {
            return Err(Rejection::Kind(
                "a signed request carries its WIT in one Workload-Identity-Token header",
            ));
        }
        check_content_digest(facts)?;
        let headers: Vec<(&str, &str)> = facts
            .headers
            .iter()
            .map(|(n, v)| (*n, v.as_str()))
            .collect();
        let target = url::Url::parse(&facts.endpoint)
            .map(|u| u.path().to_owned())
            .unwrap_or_default();
        let request = http_sig::SignedRequest {
            method: facts.method.as_str(),
            target: &target,
            headers: &headers,
        };
        let want = http_sig::Expect {
            now: ctx.now,
            leeway: ctx.leeway,
            max_lifetime: self.max_proof_secs,
            audience: &facts.endpoint,
        };
        let v = http_sig::verify(&request, &checked.pop_key, &want).map_err(Rejection::Kind)?;
        let key = format!("http-signature\u{0}{}\u{0}{}", checked.sub, v.nonce);
        let replayed = "HTTP message signature nonce was already used";
        single_use(ctx, &key, v.expires + ctx.leeway, replayed).await
    }

    /// Whether `wit` is this request's client attestation (a WIT-SVID entry that authenticates
    /// clients): then its proof is the attestation PoP, not a WPT.
    fn is_attestation(&self, wit: &str, facts: &RequestFacts) -> bool {
        self.wit_svid
            && self.client_authentication
            && facts.header_count(ATTESTATION_HEADER) == 1
            && facts.header(ATTESTATION_HEADER) == Some(wit)
    }

    /// attestation-based-client-auth §5.2/§6: exactly one PoP, `typ`
    /// `oauth-client-attestation-pop+jwt`, signed with the attestation's `cnf` key (its
    /// `alg`), `aud` our issuer identifier alone, a fresh `iat`, and a single-use `jti`.
    async fn check_attestation_pop(
        &self,
        checked: &CheckedWit,
        ctx: &VerifyContext<'_>,
    ) -> Result<(), Rejection> {
        if ctx.facts.header_count(ATTESTATION_POP_HEADER) != 1 {
            return Err(Rejection::Kind(
                "a client attestation needs exactly one OAuth-Client-Attestation-PoP header",
            ));
        }
        let value = ctx.facts.header(ATTESTATION_POP_HEADER).unwrap_or_default();
        let jws = UnverifiedJws::parse(value, ctx.max_token_bytes)
            .map_err(|_| Rejection::Kind("client attestation PoP is not a compact JWS"))?;
        if !jws.header.typ_is(ATTESTATION_POP_TYP) {
            return Err(Rejection::Kind(
                "client attestation PoP typ is not oauth-client-attestation-pop+jwt",
            ));
        }
        if jws.header.alg != checked.pop_key.alg() {
            return Err(Rejection::Kind(
                "client attestation PoP alg differs from the attestation's cnf.jwk.alg",
            ));
        }
        let pop = jws.verify(&checked.pop_key).map_err(|_| {
            Rejection::Kind(
                "client attestation PoP signature does not verify with the attestation's key",
            )
        })?;
        let aud_ok = match pop.get("aud") {
            Some(Value::String(a)) => *a == self.our_issuer,
            Some(Value::Array(a)) => a.len() == 1 && a[0].as_str() == Some(&self.our_issuer),
            _ => false,
        };
        if !aud_ok {
            return Err(Rejection::Kind(
                "client attestation PoP aud must be our issuer identifier alone",
            ));
        }
        let iat = pop
            .time_claim("iat")
            .ok()
            .flatten()
            .ok_or(Rejection::Kind("client attestation PoP lacks iat"))?;
        if iat > ctx.now.saturating_add(ctx.leeway)
            || iat < ctx.now.saturating_sub(self.max_proof_secs + ctx.leeway)
        {
            return Err(Rejection::Kind("client attestation PoP iat is not recent"));
        }
        if pop.contains_key("exp") {
            pop.check_times(ctx)
                .map_err(|_| Rejection::Kind("client attestation PoP is expired"))?;
        }
        let jti = pop
            .str_claim("jti")
            .ok()
            .flatten()
            .filter(|j| !j.is_empty())
            .ok_or(Rejection::Kind("client attestation PoP lacks jti"))?;
        let key = format!("attestation-pop\u{0}{}\u{0}{jti}", checked.sub);
        let until = iat + self.max_proof_secs + 2 * ctx.leeway;
        single_use(ctx, &key, until, "client attestation PoP was already used").await
    }
}

/// workload-creds §3.1: `cnf.jwk` with an `alg` that is an accepted asymmetric signature
/// algorithm (our `Alg` has no `none`, MAC or encryption values), and a public key only.
fn confirmation_key(claims: &Claims) -> Result<(VerifyingKey, Value), Rejection> {
    let jwk = claims
        .get("cnf")
        .and_then(|c| c.get("jwk"))
        .filter(|j| j.is_object())
        .ok_or(Rejection::Kind("WIT lacks cnf.jwk"))?;
    let alg: Alg = jwk
        .get("alg")
        .and_then(Value::as_str)
        .ok_or(Rejection::Kind("WIT cnf.jwk lacks alg"))?
        .parse()
        .map_err(|()| Rejection::Kind("WIT cnf.jwk.alg is not an accepted signature algorithm"))?;
    let key = parse_jwk_public(jwk, &[alg])
        .ok()
        .and_then(|keys| keys.into_iter().next())
        .ok_or(Rejection::Kind("WIT cnf.jwk is not a usable public key"))?;
    // Only what this key type defines (RFC 7518 §6), so nothing else is ever bound onward.
    let members: &[&str] = match jwk.get("kty").and_then(Value::as_str) {
        Some("OKP") => &["kty", "crv", "x"],
        Some("EC") => &["kty", "crv", "x", "y"],
        Some("RSA") => &["kty", "n", "e"],
        _ => return Err(Rejection::Kind("WIT cnf.jwk is not a usable public key")),
    };
    let mut public = serde_json::Map::new();
    for m in members.iter().chain(&["alg", "kid"]) {
        if let Some(v) = jwk.get(*m) {
            public.insert((*m).to_owned(), v.clone());
        }
    }
    Ok((key, Value::Object(public)))
}

/// Records a proof's single-use identifier until `until`; a second use is `replayed`, and a
/// store that cannot answer decides nothing (503, invariant 12).
async fn single_use(
    ctx: &VerifyContext<'_>,
    key: &str,
    until: i64,
    replayed: &'static str,
) -> Result<(), Rejection> {
    match ctx.replay.first_use(key, until, ctx.now).await {
        Ok(true) => Ok(()),
        Ok(false) => Err(Rejection::Kind(replayed)),
        Err(_) => Err(Rejection::Upstream("replay store is unavailable")),
    }
}

/// RFC 9530: a request with a body sends `Content-Digest` with a `sha-256` member equal to
/// the body's digest (http-signature §3 makes it mandatory and signed).
fn check_content_digest(facts: &RequestFacts) -> Result<(), Rejection> {
    use base64::Engine;
    let missing = Rejection::Kind("a signed request needs a matching Content-Digest (sha-256)");
    if facts.header_count("content-digest") != 1 {
        return Err(missing);
    }
    let (Some(value), Some(body)) = (facts.header("content-digest"), facts.body_sha256) else {
        return Err(missing);
    };
    let ours = base64::engine::general_purpose::STANDARD.encode(body);
    let matches = value.split(',').any(|member| {
        member
            .trim()
            .strip_prefix("sha-256=:")
            .and_then(|v| v.strip_suffix(':'))
            == Some(ours.as_str())
    });
    if matches { Ok(()) } else { Err(missing) }
}

/// base64url(SHA-256(ASCII(token))) — wth, ath, tth, oth values (wpt §3).
fn token_hash(token: &str) -> String {
    b64_encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes()).as_ref())
}

/// wpt §4 steps 8–9: `ath` and `tth` match a token the request carries; every `oth` entry
/// names a header the request carries once, with a matching hash; anything else is refused.
fn check_bound_tokens(proof: &Claims, ctx: &VerifyContext<'_>) -> Result<(), Rejection> {
    let tokens_of = |token_type: &str| -> Vec<&str> {
        let Some(x) = ctx.exchange else {
            return Vec::new();
        };
        std::iter::once(&x.subject)
            .chain(x.actor.as_ref())
            .filter(|t| t.token_type == token_type)
            .map(|t| t.token.expose())
            .collect()
    };
    // wpt §3: `ath` (`tth`) MUST be present when the request carries an access token
    // (Txn-Token), and must match one; neither may name a token the request lacks. This binds
    // the form's tokens to the proof.
    let bound = |claim: &'static str, candidates: Vec<&str>| -> Result<(), Rejection> {
        match proof.get(claim) {
            None if candidates.is_empty() => Ok(()),
            None => Err(Rejection::Kind(
                "WPT lacks ath/tth for a token the request carries",
            )),
            Some(Value::String(h)) if candidates.iter().any(|t| token_hash(t) == *h) => Ok(()),
            Some(_) => Err(Rejection::Kind(
                "WPT ath/tth does not match a token the request carries",
            )),
        }
    };
    bound("ath", tokens_of(types::ACCESS_TOKEN))?;
    let mut txn = tokens_of(TXN_TOKEN_TYPE);
    if ctx.facts.header_count(TXN_HEADER) == 1 {
        txn.extend(ctx.facts.header(TXN_HEADER));
    }
    bound("tth", txn)?;
    let Some(oth) = proof.get("oth") else {
        return Ok(());
    };
    let oth = oth
        .as_object()
        .ok_or(Rejection::Kind("WPT oth is not an object"))?;
    for (name, hash) in oth {
        let carried = ctx.facts.header_count(name) == 1
            && name.bytes().all(|b| !b.is_ascii_uppercase())
            && ctx
                .facts
                .header(name)
                .is_some_and(|v| Some(token_hash(v.trim()).as_str()) == hash.as_str());
        if !carried {
            return Err(Rejection::Kind(
                "WPT oth names a token the request does not carry, or its hash differs",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_types_are_uris_and_never_invented_ietf_names() {
        assert!(check_token_type(types::JWT).is_ok());
        assert!(check_token_type("https://sts.example.com/token-type/wit").is_ok());
        assert!(check_token_type("urn:example:wit").is_ok());
        assert!(check_token_type("urn:ietf:params:oauth:token-type:wit").is_err());
        assert!(check_token_type("URN:IETF:params:oauth:token-type:wit").is_err());
        assert!(check_token_type("wit").is_err());
    }

    #[test]
    fn hashes_are_base64url_sha256() {
        // E13.1: the WPT's ath for the access token of E3.4.
        assert_eq!(
            token_hash("16_mAd0GiwaZokU26_0902100"),
            "CL4wjfpRmNf-bdYIbYLnV9d5rMARGwKYE10wUwzC0jI"
        );
    }
}
