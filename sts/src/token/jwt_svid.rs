//! Input kind `jwt-svid`: SPIFFE JWT-SVIDs (JWT-SVID.md) of one trust domain, as subject or
//! actor tokens (`urn:ietf:params:oauth:token-type:jwt`) and, when the entry says so, as client
//! assertions (`client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-spiffe`,
//! draft-ietf-oauth-spiffe-client-auth §3.1).
//!
//! A token is read as a JWT-SVID because a profile accepts this entry and the token's `sub` is
//! a canonical SPIFFE ID of the entry's trust domain — never because a `sub` merely looks like
//! a SPIFFE ID: the keys are only the `jwt-svid` keys of this trust domain's own bundle
//! (bundle §4; never merged with another domain's). The JWT-SVID rules: the nine RS/ES/PS
//! algorithms, no header parameter but `alg`, `kid` and
//! `typ` (`JWT` or `JOSE` when present), `exp` and `aud` required, `aud` naming us. No profile
//! policy here.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    ClaimsExt, InputKind, JwsRules, KindEnv, Presented, Rejection, TypRule, Verified, Verifier,
    VerifyContext, audience_contains,
    oauth_jwt::{check_actor_claims, refuse_sender_constrained},
    types, verify_jws,
};
use crate::config::{BundleSettings, ConfigError, EMPTY_ALGORITHMS, EndpointProfile, TrustEntry};
use crate::jose::{Alg, Claims, JoseHeader};
use crate::trust::{BundleKeys, BundleUse, KeyStore, SpiffeEndpointFetch, key_fetch};
use crate::workload_id::{Scheme, WorkloadId, check_trust_domain};

/// JWT-SVID.md §3: RS256/384/512, ES256/384/512, PS256/384/512.
pub(super) const SVID_ALGS: [Alg; 9] = [
    Alg::RS256,
    Alg::RS384,
    Alg::RS512,
    Alg::ES256,
    Alg::ES384,
    Alg::ES512,
    Alg::PS256,
    Alg::PS384,
    Alg::PS512,
];

/// spiffe-client-auth §3.1.
pub const JWT_SPIFFE_ASSERTION: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe";

/// JWT-SVID.md §2.3: `typ`, when present, is `JWT` or `JOSE`.
const SVID_TYP: TypRule = TypRule {
    explicit: &["JOSE"],
    untyped_ok: true,
};

/// The `jwt-svid` kind.
pub struct JwtSvidKind;

/// A `jwt-svid` trust entry's block.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    /// The trust domain whose workloads' JWT-SVIDs this entry verifies (e.g. `example.org`).
    trust_domain: String,
    /// Its SPIFFE bundle: a file or a bundle endpoint.
    bundle: BundleSettings,
    /// `aud` values that name us; a token must carry one. Defaults to our issuer.
    #[serde(default)]
    audience: Vec<String>,
    /// Accepted `alg` values (default: all nine RS/ES/PS algorithms).
    #[serde(default)]
    algorithms: Option<Vec<Alg>>,
    /// Whether a JWT-SVID client assertion (`jwt-spiffe`) authenticates the workload.
    #[serde(default)]
    client_authentication: bool,
}

impl InputKind for JwtSvidKind {
    fn name(&self) -> &'static str {
        "jwt-svid"
    }

    fn token_types(&self) -> &'static [&'static str] {
        &[types::JWT]
    }

    fn sample_claims(&self) -> Claims {
        super::claims::object(json!({
            "sub": "spiffe://example.org/ns/sample/sa/sample", "aud": ["https://sts.example"],
            "exp": 1_700_000_300, "iat": 1_700_000_000,
        }))
    }

    fn configure(
        &self,
        entry: &TrustEntry,
        env: &KindEnv<'_>,
    ) -> Result<Arc<dyn Verifier>, ConfigError> {
        let b: Block = entry.parse_block()?;
        check_trust_domain(Scheme::Spiffe, &b.trust_domain)
            .map_err(|e| entry.error("trust_domain", format!("the trust domain {e}")))?;
        let algorithms = svid_algorithms(entry, b.algorithms)?;
        let keys = bundle_store(
            entry,
            env,
            &b.trust_domain,
            &b.bundle,
            BundleUse::JwtSvid,
            &algorithms,
        )?;
        // A JWT-SVID made for us as a client assertion (`aud` = our issuer) must never pass as
        // a subject token, nor a subject JWT-SVID (which a gateway or another hop may see) as a
        // client assertion: with client authentication on, subject tokens name us otherwise.
        let audience = match (b.audience.is_empty(), b.client_authentication) {
            (true, false) => vec![env.our_issuer.to_owned()],
            (true, true) => {
                return Err(entry.error(
                    "audience",
                    "with client_authentication, list the aud values that subject JWT-SVIDs \
                     carry for us (e.g. our SPIFFE ID); client assertions use our issuer, and \
                     the two must differ so that one cannot be replayed as the other",
                ));
            }
            (false, _) => b.audience,
        };
        if b.client_authentication && audience.iter().any(|a| a == env.our_issuer) {
            return Err(entry.error(
                "audience",
                "must not contain our issuer when client_authentication is on: client \
                 assertions carry it, and a subject token must not be usable as one",
            ));
        }
        Ok(Arc::new(JwtSvidVerifier {
            trust: Arc::from(entry.name.as_str()),
            trust_domain: b.trust_domain,
            our_issuer: env.our_issuer.to_owned(),
            audience,
            algorithms,
            keys,
            client_authentication: b.client_authentication,
        }))
    }
}

/// The entry's `algorithms`, all of them JWT-SVID algorithms (default: every supported one).
fn svid_algorithms(entry: &TrustEntry, written: Option<Vec<Alg>>) -> Result<Vec<Alg>, ConfigError> {
    match written {
        None => Ok(SVID_ALGS.to_vec()),
        Some(list) if list.is_empty() => Err(entry.error("algorithms", EMPTY_ALGORITHMS)),
        Some(list) => match list.iter().find(|a| !SVID_ALGS.contains(a)) {
            Some(a) => Err(entry.error(
                "algorithms",
                format!("{} is not a JWT-SVID algorithm (RS/ES/PS only)", a.as_str()),
            )),
            None => Ok(list),
        },
    }
}

/// The key source of a SPIFFE entry: the bundle of `trust_domain` from a file or a bundle
/// endpoint (federation §5.2: `https_web`, or `https_spiffe` authenticated by the endpoint's
/// X509-SVID), keeping the keys of `wanted`. `trust_domain` is the SPIFFE trust domain the
/// bundle is for (an `https_spiffe` endpoint whose SPIFFE ID is in it is self-serving); empty
/// for an entry whose identifiers are not SPIFFE IDs, so that no endpoint is.
pub(super) fn bundle_store(
    entry: &TrustEntry,
    env: &KindEnv<'_>,
    trust_domain: &str,
    bundle: &BundleSettings,
    wanted: BundleUse,
    algorithms: &[Alg],
) -> Result<KeyStore, ConfigError> {
    bundle
        .validate()
        .map_err(|(key, why)| entry.error(key, why))?;
    let name = format!("trust `{}`", entry.name);
    let jwks = bundle.jwks();
    let source = match bundle.profile {
        EndpointProfile::HttpsSpiffe => {
            // `validate` made sure all three are set.
            let (Some(uri), Some(endpoint_id), Some(endpoint_bundle)) = (
                &bundle.uri,
                &bundle.endpoint_spiffe_id,
                bundle.endpoint_bundle.clone(),
            ) else {
                return Err(entry.error(
                    "bundle",
                    "https_spiffe needs uri, endpoint_spiffe_id and endpoint_bundle",
                ));
            };
            SpiffeEndpointFetch::check_file(&endpoint_bundle).map_err(|why| {
                entry.error(
                    "bundle.endpoint_bundle",
                    format!("{}: {why}", endpoint_bundle.display()),
                )
            })?;
            Box::new(SpiffeEndpointFetch::new(
                uri,
                endpoint_id,
                endpoint_bundle,
                bundle.self_serving(trust_domain),
                env.http,
            )) as Box<dyn crate::trust::KeyFetch>
        }
        EndpointProfile::HttpsWeb => key_fetch(&name, "", &jwks, env.http),
    };
    let fetch = Box::new(BundleKeys::new(source, wanted));
    Ok(KeyStore::new(&name, fetch, algorithms, &jwks))
}

/// One `jwt-svid` entry's verifier.
#[derive(Debug)]
struct JwtSvidVerifier {
    trust: Arc<str>,
    trust_domain: String,
    our_issuer: String,
    audience: Vec<String>,
    algorithms: Vec<Alg>,
    keys: KeyStore,
    client_authentication: bool,
}

impl JwtSvidVerifier {
    /// SPIFFE-ID.md: `sub` is a canonical SPIFFE ID (with a path) of this trust domain.
    fn sub_in_domain(&self, claims: &Claims) -> Result<WorkloadId, Rejection> {
        let not_ours = Rejection::Kind("JWT-SVID sub is not a SPIFFE ID of this trust domain");
        let sub = claims
            .get("sub")
            .and_then(Value::as_str)
            .ok_or(Rejection::MissingClaim("sub"))?;
        let id = WorkloadId::parse(sub).map_err(|_| not_ours.clone())?;
        if id.scheme() != Scheme::Spiffe || id.trust_domain() != self.trust_domain {
            return Err(not_ours);
        }
        Ok(id)
    }
}

/// The longest a JWT-SVID client assertion may still be valid when we see it. JWT-SVIDs are
/// reusable until `exp` (their `jti` is not tracked), so this bounds what a leaked one is worth.
const MAX_ASSERTION_LIFETIME: i64 = 300;

fn check_assertion_lifetime(claims: &Claims, ctx: &VerifyContext<'_>) -> Result<(), Rejection> {
    let exp = claims
        .time_claim("exp")?
        .ok_or(Rejection::MissingClaim("exp"))?;
    if exp > ctx.now.saturating_add(MAX_ASSERTION_LIFETIME + ctx.leeway) {
        return Err(Rejection::Kind(
            "a JWT-SVID client assertion may be valid for at most 5 minutes",
        ));
    }
    Ok(())
}

/// JWT-SVID.md §2: no header parameter but `alg`, `kid` and `typ`.
fn only_svid_header_members(header: &JoseHeader) -> Result<(), Rejection> {
    let known = 1 + usize::from(header.kid.is_some()) + usize::from(header.typ.is_some());
    if header.member_count == known {
        Ok(())
    } else {
        Err(Rejection::Kind(
            "JWT-SVID header has parameters other than alg, kid and typ",
        ))
    }
}

#[async_trait::async_trait]
impl Verifier for JwtSvidVerifier {
    fn recognizes(&self, presented: &Presented<'_>) -> bool {
        let Ok(jws) = &presented.jws else {
            return false;
        };
        // A WIT of the same trust domain is a `wit` entry's; any other `typ` is ours to refuse
        // by name in `verify`.
        !jws.header.typ_is(super::WIT_TYP) && self.sub_in_domain(&jws.unverified_claims).is_ok()
    }

    async fn verify(
        &self,
        presented: Presented<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Verified, Rejection> {
        let as_client = presented.token_type == types::CLIENT_CREDENTIAL;
        let jws = presented.jws?;
        only_svid_header_members(&jws.header)?;
        // Checked before any key lookup: the trust domain picks the bundle.
        self.sub_in_domain(&jws.unverified_claims)?;
        let rules = JwsRules {
            typ: SVID_TYP,
            algorithms: &self.algorithms,
            keys: &self.keys,
        };
        // Signature by this trust domain's jwt-svid keys; `exp` required and not passed.
        let claims = verify_jws(jws, rules, ctx).await?.claims;
        // JWT-SVID.md §3: `aud` present, one of its values ours. As a client assertion
        // (spiffe-client-auth §3.1, RFC 7523bis): our issuer identifier as the sole value.
        let aud = claims.get("aud");
        let aud_ok = if as_client {
            match aud {
                Some(Value::String(a)) => *a == self.our_issuer,
                Some(Value::Array(a)) => a.len() == 1 && a[0].as_str() == Some(&self.our_issuer),
                _ => false,
            }
        } else {
            audience_contains(aud, &self.audience)?
        };
        if !aud_ok {
            return Err(Rejection::WrongAudience);
        }
        if as_client {
            check_assertion_lifetime(&claims, ctx)?;
        }
        // SPIFFE-ID.md §3: other claims are the issuing trust domain's assertions only; a
        // delegation chain from an SVID is not taken (an actor is its own token).
        if claims.contains_key("act") || claims.contains_key("may_act") {
            return Err(Rejection::Kind(
                "JWT-SVIDs carrying act or may_act are not accepted",
            ));
        }
        check_actor_claims(&claims)?;
        // A JWT-SVID is a bearer token; one bound to a key is something else.
        refuse_sender_constrained(&claims)?;
        Ok(Verified {
            claims,
            trust: self.trust.clone(),
            kind: "jwt-svid",
            proven_key: None,
            asserted_by_caller: false,
        })
    }

    fn issuer(&self) -> &str {
        &self.trust_domain
    }

    fn keys(&self) -> Option<&KeyStore> {
        Some(&self.keys)
    }

    /// Signature, trust domain, audience and times: nothing from the request.
    fn cacheable(&self) -> bool {
        true
    }

    fn authenticates_clients(&self) -> bool {
        self.client_authentication
    }

    fn client_auth_method(&self) -> &'static str {
        "spiffe_jwt"
    }

    fn client_assertion_type(&self) -> Option<&'static str> {
        self.client_authentication.then_some(JWT_SPIFFE_ASSERTION)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::UnverifiedJws;

    fn header(json: &str) -> JoseHeader {
        use base64::Engine;
        let enc = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        let token = format!("{}.{}.{}", enc(json), enc("{}"), enc("sig"));
        UnverifiedJws::parse(&token, 10_000).unwrap().header
    }

    #[test]
    fn header_parameters_beyond_alg_kid_typ_are_refused() {
        assert!(only_svid_header_members(&header(r#"{"alg":"ES256"}"#)).is_ok());
        assert!(
            only_svid_header_members(&header(r#"{"alg":"ES256","kid":"k","typ":"JWT"}"#)).is_ok()
        );
        for extra in [
            r#"{"alg":"ES256","kid":"k","x5u":"https://a.example"}"#,
            r#"{"alg":"ES256","jku":"https://a.example"}"#,
            r#"{"alg":"ES256","typ":"JWT","cty":"JWT"}"#,
        ] {
            assert!(only_svid_header_members(&header(extra)).is_err(), "{extra}");
        }
    }

    #[test]
    fn typ_is_absent_jwt_or_jose() {
        for ok in [
            r#"{"alg":"ES256"}"#,
            r#"{"alg":"ES256","typ":"JWT"}"#,
            r#"{"alg":"ES256","typ":"JOSE"}"#,
        ] {
            assert!(SVID_TYP.check(&header(ok)).is_ok(), "{ok}");
        }
        for bad in [
            r#"{"alg":"ES256","typ":"at+jwt"}"#,
            r#"{"alg":"ES256","typ":"wit+jwt"}"#,
        ] {
            assert!(SVID_TYP.check(&header(bad)).is_err(), "{bad}");
        }
    }
}
