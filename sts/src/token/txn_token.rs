//! Transaction Tokens (draft-ietf-oauth-transaction-tokens, editor's copy after -08): the
//! output kind `txn-token`, which mints them, and the input kind `txn-token`, which verifies
//! ours when one is presented for replacement (§4.8 of our digest).
//!
//! The minter owns every Txn-Token rule: `typ` `txntoken+jwt`; `aud` our trust domain; a new
//! unique `txn`; `scope` required and never wider than the subject's (a subject whose scope
//! cannot be determined is refused, draft §7.2 step 5); `req_wl` from the authenticated caller,
//! never from request input; `tctx`/`rctx` from the mapping; `token_type` `N_A`; the subject
//! token never copied in. Replacement keeps `txn`, `sub` and `aud`, only adds to `tctx` and
//! `rctx`, narrows `scope`, records the earlier requesters in the chain claim and bounds how
//! far and how often the lifetime may be extended.
//!
//! Neither kind applies profile policy beyond these rules, and neither does I/O.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::oauth_jwt::sample;
use super::{
    ClaimsExt, Draft, InputKind, JwsEntry, KindEnv, MintRequest, Minter, Presented, ProfileEnv,
    Rejection, TypRule, Verified, Verifier, VerifyContext, audience_contains, scope, types,
};
use crate::config::{ConfigError, JwksSettings, TrustEntry};
use crate::error::OAuthError;
use crate::exchange::ExchangeRequest;
use crate::jose::{Alg, Claims, media_type_eq};
use crate::trust::KeyStore;

/// The JOSE `typ` of a Txn-Token (draft §4.1).
pub const TXN_TYP: &str = "txntoken+jwt";
/// The name of both kinds.
const KIND: &str = "txn-token";
/// The longest lifetime a profile may give a Txn-Token: "minutes or less" (draft §9).
const MAX_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The claim that keeps the earlier requesting workloads across replacements, oldest first
/// (the draft requires the chain to be kept and defines no claim for it). One name for every
/// profile, so no profile can start a fresh chain.
pub const CHAIN_CLAIM: &str = "req_wl_chain";
/// The most replacements a profile may allow in one chain.
const MAX_REPLACEMENTS: usize = 16;

/// Claims the minter sets; a mapping may write `sub` (fresh tokens only), `tctx`, `rctx` and
/// claims of its own.
const RESERVED: &[&str] = &["txn", "req_wl", "scope", CHAIN_CLAIM];

/// `issue.options` of a profile that issues Txn-Tokens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    /// How far past the replaced token's `exp` a replacement may live (needs
    /// `may_outlive_subject: true`; default: not at all).
    #[serde(default, with = "humantime_serde")]
    max_extension: Duration,
    /// How many times one transaction's token may be replaced.
    #[serde(default = "default_max_replacements")]
    max_replacements: usize,
    /// The scope a subject token without a `scope` claim (an ID token, an unsigned subject)
    /// is deemed to hold: the admin is the trusted source the draft allows (§7.2 step 5).
    /// Absent: such subjects are refused.
    #[serde(default)]
    subject_scope: Option<String>,
}

fn default_max_replacements() -> usize {
    8
}

impl Default for Options {
    fn default() -> Self {
        Self {
            max_extension: Duration::ZERO,
            max_replacements: default_max_replacements(),
            subject_scope: None,
        }
    }
}

/// The `txn-token` output kind.
#[derive(Default)]
pub struct TxnTokenMinter {
    options: Options,
}

#[async_trait::async_trait(?Send)]
impl Minter for TxnTokenMinter {
    fn name(&self) -> &'static str {
        KIND
    }

    fn issued_token_type(&self) -> &'static str {
        types::TXN_TOKEN
    }

    fn typ(&self) -> &'static str {
        TXN_TYP
    }

    fn reserved_claims(&self) -> &'static [&'static str] {
        RESERVED
    }

    fn max_lifetime(&self) -> Duration {
        MAX_LIFETIME
    }

    fn configure(&self, p: &ProfileEnv<'_>) -> Result<Option<Arc<dyn Minter>>, Vec<String>> {
        let mut problems = Vec::new();
        // Draft §4.2: `aud` identifies the trust domain the token is valid in: ours.
        if p.audiences != [p.trust_domain] {
            problems.push(format!(
                "audiences: a Txn-Token's audience is this service's trust domain; write \
                 audiences: [{}]",
                p.trust_domain
            ));
        }
        // Draft §9: refresh tokens MUST NOT be used to request Txn-Tokens.
        if p.subject_types.contains(&types::REFRESH_TOKEN) {
            problems.push(
                "kind: Txn-Tokens are never issued for refresh tokens; remove the entry that \
                 takes them from subject.accept"
                    .to_owned(),
            );
        }
        let options = match p.options {
            None => Options::default(),
            Some(v) => match serde_path_to_error::deserialize::<_, Options>(v.clone()) {
                Ok(o) => o,
                Err(e) => {
                    let (message, field) = crate::yaml::humanize_serde(&e.inner().to_string());
                    // A flat block: the field the message names, else where it failed.
                    let key = field.unwrap_or_else(|| e.path().to_string());
                    problems.push(format!("options.{key}: {message}"));
                    Options::default()
                }
            },
        };
        if !(1..=MAX_REPLACEMENTS).contains(&options.max_replacements) {
            problems.push(format!(
                "options.max_replacements: between 1 and {MAX_REPLACEMENTS}"
            ));
        }
        if let Some(s) = &options.subject_scope
            && (s.trim().is_empty() || crate::exchange::check_scope(s).is_err())
        {
            problems
                .push("options.subject_scope: a space-separated list of scope values".to_owned());
        }
        if options.max_extension > MAX_LIFETIME {
            problems.push("options.max_extension: at most 10m".to_owned());
        }
        // Draft §7.2 step 5: the scope of a subject the caller asserts itself needs a trusted
        // ceiling. Without one every request would be refused; say so at load instead.
        if !p.caller_asserted_types.is_empty() && options.subject_scope.is_none() {
            problems.push(format!(
                "options.subject_scope: required when subject.accept takes tokens the caller \
                 asserts itself ({}): it is the most scope such a subject can hold",
                p.caller_asserted_types.join(", ")
            ));
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(p.options
            .is_some()
            .then(|| Arc::new(TxnTokenMinter { options }) as Arc<dyn Minter>))
    }

    fn check_request(&self, req: &ExchangeRequest) -> Result<(), OAuthError> {
        if req.subject.token_type == types::REFRESH_TOKEN {
            return Err(OAuthError::invalid_request(
                "a refresh token cannot be exchanged for a Txn-Token",
            ));
        }
        // Draft §4.3 (our digest): `scope` is REQUIRED in a Txn-Token request.
        if req.scope.is_none() {
            return Err(OAuthError::invalid_request(
                "scope is required when requesting a Txn-Token",
            ));
        }
        Ok(())
    }

    async fn prepare(&self, req: MintRequest<'_, '_>) -> Result<Draft, OAuthError> {
        let subject = &req.subject.claims;
        // Draft §4.4 step 5: the subject's scope must be known — from the token, or from the
        // profile for tokens that carry none — and is never taken as unconstrained.
        let held = self.held_scope(req.subject)?;
        let scope =
            scope::decide_within(req.profile, &held, req.request, req.vars)?.ok_or_else(|| {
                OAuthError::invalid_scope("none of the requested scope can be granted")
            })?;
        let mut mapped = req.claims;
        let replaced = (req.subject.kind == KIND).then_some(subject);
        let mut claims = Map::new();
        let (txn, sub, expires_at) = match replaced {
            None => (
                new_txn()?,
                mapped_sub(&mut mapped).unwrap_or_else(|| req.common.subject.clone()),
                req.common.expires_at,
            ),
            Some(input) => self.replacement(input, &mut mapped, req.common, &mut claims)?,
        };
        let tctx = merged_context("tctx", replaced, mapped.remove("tctx"))?;
        let rctx = merged_context("rctx", replaced, mapped.remove("rctx"))?;
        // The mapping's own claims first; the kind's and the engine's last.
        claims.extend(mapped);
        let r = req.common;
        claims.insert("iss".into(), r.issuer.clone().into());
        claims.insert("aud".into(), super::audience_value(&r.audience));
        claims.insert("iat".into(), r.issued_at.into());
        claims.insert("exp".into(), expires_at.into());
        claims.insert("txn".into(), txn.clone().into());
        claims.insert("sub".into(), sub.into());
        claims.insert("scope".into(), scope.clone().into());
        // Draft §4.4 step 8: the requesting workload, from authentication only.
        claims.insert("req_wl".into(), req.caller.id.clone().into());
        for (name, value) in [("tctx", tctx), ("rctx", rctx)] {
            if let Some(v) = value {
                claims.insert(name.into(), Value::Object(v));
            }
        }
        if let Some(act) = &r.act {
            claims.insert("act".into(), act.clone());
        }
        refuse_copied_token(&req.request.subject.token, &claims)?;
        self_check(&claims)?;
        Ok(Draft {
            claims,
            // Draft §4.3: `txn` identifies the transaction; a Txn-Token carries no `jti`.
            id: super::IssuedId {
                claim: "txn",
                value: txn,
            },
            expires_at,
            issued_token_type: types::TXN_TOKEN,
            // Draft §4.5: a Txn-Token is not an access token.
            token_type: "N_A",
            scope: Some(scope),
        })
    }
}

impl TxnTokenMinter {
    /// The scope the subject holds (draft §4.4 step 5): its `scope` claim when an issuer we
    /// trust vouches for it; the profile's `subject_scope` for subjects without one (ID
    /// tokens); and for subjects the caller asserts itself, at most the profile's
    /// `subject_scope`, which such profiles must set. Never "unconstrained".
    fn held_scope(&self, subject: &super::Verified) -> Result<String, OAuthError> {
        let unknown = || {
            OAuthError::invalid_request(
                "the subject_token's scope cannot be determined, so no Txn-Token scope can be granted",
            )
        };
        let claimed = match subject.claims.get("scope") {
            None => None,
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.as_str()),
            Some(_) => return Err(unknown()),
        };
        let ceiling = self.options.subject_scope.as_deref();
        match (claimed, ceiling, subject.asserted_by_caller) {
            (Some(c), _, false) => Ok(c.to_owned()),
            (None, Some(p), _) => Ok(p.to_owned()),
            (Some(c), Some(p), true) => {
                let allowed: Vec<&str> = p.split(' ').collect();
                Ok(c.split(' ')
                    .filter(|s| allowed.contains(s))
                    .collect::<Vec<_>>()
                    .join(" "))
            }
            (_, None, true) => Err(OAuthError::invalid_request(
                "the subject_token's scope is asserted by the caller; the exchange profile must set options.subject_scope",
            )),
            (None, None, false) => Err(unknown()),
        }
    }

    /// Draft §4.8 (our digest): the replacement keeps `txn`, `sub` and `aud`; the requester of
    /// the replaced token joins the chain; the lifetime extends at most `max_extension` past
    /// the replaced token's `exp`, and a transaction is replaced at most `max_replacements`
    /// times. Returns (txn, sub, exp) and writes the chain claim into `claims`.
    fn replacement(
        &self,
        input: &Claims,
        mapped: &mut Claims,
        common: &super::CommonClaims,
        claims: &mut Claims,
    ) -> Result<(String, String, i64), OAuthError> {
        let bad = |m: &'static str| OAuthError::invalid_request(m);
        let txn = input
            .str_claim("txn")
            .ok()
            .flatten()
            .ok_or_else(|| bad("the Txn-Token to replace has no txn"))?;
        let sub = input
            .str_claim("sub")
            .ok()
            .flatten()
            .ok_or_else(|| bad("the Txn-Token to replace has no sub"))?;
        if mapped_sub(mapped).is_some_and(|s| s != sub) {
            return Err(bad(
                "a replacement Txn-Token keeps the sub of the one it replaces",
            ));
        }
        if !same_audience(input.get("aud"), &common.audience) {
            return Err(bad(
                "a replacement Txn-Token keeps the aud of the one it replaces",
            ));
        }
        let mut chain: Vec<Value> = match input.get(CHAIN_CLAIM) {
            None => Vec::new(),
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.clone(),
            Some(_) => {
                return Err(bad(
                    "the Txn-Token to replace has a malformed requester chain",
                ));
            }
        };
        let previous = input
            .str_claim("req_wl")
            .ok()
            .flatten()
            .ok_or_else(|| bad("the Txn-Token to replace has no req_wl"))?;
        chain.push(previous.into());
        if chain.len() > self.options.max_replacements {
            return Err(bad(
                "this transaction's Txn-Token has been replaced too many times",
            ));
        }
        claims.insert(CHAIN_CLAIM.to_owned(), Value::Array(chain));
        let input_exp = input.time_claim("exp").ok().flatten().unwrap_or(0);
        let limit = input_exp.saturating_add(self.options.max_extension.as_secs() as i64);
        Ok((txn.to_owned(), sub.to_owned(), common.expires_at.min(limit)))
    }
}

/// The mapping's `sub`, when it wrote a non-empty string.
fn mapped_sub(mapped: &mut Claims) -> Option<String> {
    match mapped.remove("sub") {
        Some(Value::String(s)) if !s.is_empty() => Some(s),
        _ => None,
    }
}

/// Whether `aud` as the replaced token carries it is exactly `ours`.
fn same_audience(aud: Option<&Value>, ours: &[String]) -> bool {
    match aud {
        Some(Value::String(s)) => ours == [s.as_str()],
        Some(Value::Array(a)) => {
            a.len() == ours.len() && a.iter().zip(ours).all(|(v, o)| v.as_str() == Some(o))
        }
        _ => false,
    }
}

/// `tctx` or `rctx`: the mapping's object for a new token. For a replacement, the replaced
/// token's object with the mapping's members added; a member it already has may not change
/// (the context only narrows or grows, draft §4.8 of our digest) and none is dropped.
fn merged_context(
    name: &'static str,
    replaced: Option<&Claims>,
    mapped: Option<Value>,
) -> Result<Option<Map<String, Value>>, OAuthError> {
    let mapped = match mapped {
        None | Some(Value::Null) => None,
        Some(Value::Object(o)) => Some(o),
        Some(_) => {
            return Err(OAuthError::invalid_request(format!(
                "{name} must be a JSON object"
            )));
        }
    };
    let Some(input) = replaced else {
        return Ok(mapped);
    };
    let mut out = match input.get(name) {
        None => Map::new(),
        Some(Value::Object(o)) => o.clone(),
        Some(_) => {
            return Err(OAuthError::invalid_request(format!(
                "the Txn-Token to replace has a malformed {name}"
            )));
        }
    };
    for (k, v) in mapped.unwrap_or_default() {
        match out.get(&k) {
            Some(old) if *old != v => {
                return Err(OAuthError::invalid_request(format!(
                    "a replacement Txn-Token cannot change members of {name}"
                )));
            }
            _ => {
                out.insert(k, v);
            }
        }
    }
    Ok((!out.is_empty() || input.contains_key(name)).then_some(out))
}

/// Draft §4.4 step 7: the access token presented at the edge never travels inside the
/// Txn-Token, whichever claim a mapping or the request context would put it in.
fn refuse_copied_token(token: &crate::secret::Token, claims: &Claims) -> Result<(), OAuthError> {
    fn carries(v: &Value, token: &str) -> bool {
        match v {
            Value::String(s) => s.contains(token),
            Value::Array(a) => a.iter().any(|v| carries(v, token)),
            Value::Object(o) => o
                .iter()
                .any(|(k, v)| k.contains(token) || carries(v, token)),
            _ => false,
        }
    }
    let token = token.expose();
    if claims
        .iter()
        .any(|(k, v)| k.contains(token) || carries(v, token))
    {
        return Err(OAuthError::invalid_request(
            "the request context must not carry the subject_token",
        ));
    }
    Ok(())
}

/// A new transaction identifier: a random (version 4) UUID, RFC 9562 §5.4.
fn new_txn() -> Result<String, OAuthError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| OAuthError::server_error("no randomness"))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(36);
    for (i, x) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            out.push('-');
        }
        out.push(char::from(HEX[usize::from(x >> 4)]));
        out.push(char::from(HEX[usize::from(x & 0x0f)]));
    }
    Ok(out)
}

/// The Txn-Token must carry every REQUIRED claim (draft §4.2) before it leaves.
fn self_check(c: &Claims) -> Result<(), OAuthError> {
    let text = |n: &str| {
        c.get(n)
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let (Some(iat), Some(exp)) = (
        c.get("iat").and_then(Value::as_i64),
        c.get("exp").and_then(Value::as_i64),
    ) else {
        return Err(OAuthError::server_error(
            "issued token failed its self-check",
        ));
    };
    let lifetime_ok = exp > iat && exp - iat <= MAX_LIFETIME.as_secs() as i64;
    if !lifetime_ok
        || !["aud", "txn", "sub", "scope", "req_wl"]
            .iter()
            .all(|n| text(n))
    {
        return Err(OAuthError::server_error(
            "issued token failed its self-check",
        ));
    }
    Ok(())
}

/// The `txn-token` input kind: our own Txn-Tokens, presented for replacement.
pub struct TxnTokenKind;

/// A `txn-token` trust entry's block: only the algorithms (our keys are the key source).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Block {
    #[serde(default)]
    algorithms: Option<Vec<Alg>>,
}

impl InputKind for TxnTokenKind {
    fn name(&self) -> &'static str {
        KIND
    }

    fn token_types(&self) -> &'static [&'static str] {
        &[types::TXN_TOKEN]
    }

    fn sample_claims(&self) -> Claims {
        sample(json!({
            "aud": "example.com", "txn": "97053963-771d-49cc-a4e3-20aad399c312",
            "scope": "read", "req_wl": "sample-caller",
            "tctx": {"action": "BUY"}, "rctx": {"req_ip": "192.0.2.1"},
        }))
    }

    fn only_for_output(&self) -> Option<&'static str> {
        Some(KIND)
    }

    fn configure(
        &self,
        entry: &TrustEntry,
        env: &KindEnv<'_>,
    ) -> Result<Arc<dyn Verifier>, ConfigError> {
        let b: Block = entry.parse_block()?;
        let algorithms = super::driver::allowed_algorithms(entry, b.algorithms)?;
        if env.trust_domain.is_empty() {
            return Err(entry.error(
                "",
                "our trust domain is unknown: set trust_domain in the settings",
            ));
        }
        let name = format!("trust `{}`", entry.name);
        let keys = KeyStore::new(
            &name,
            env.own_keys.fetch(),
            &algorithms,
            &JwksSettings::default(),
        );
        Ok(Arc::new(TxnTokenVerifier {
            jws: JwsEntry {
                trust: Arc::from(entry.name.as_str()),
                issuer: env.our_issuer.to_owned(),
                algorithms,
                keys,
            },
            trust_domain: vec![env.trust_domain.to_owned()],
        }))
    }
}

/// Verifies Txn-Tokens we issued (draft §4.7 receiver rules, plus explicit typing).
#[derive(Debug)]
struct TxnTokenVerifier {
    jws: JwsEntry,
    trust_domain: Vec<String>,
}

#[async_trait::async_trait]
impl Verifier for TxnTokenVerifier {
    fn recognizes(&self, presented: &Presented<'_>) -> bool {
        presented.jws.as_ref().is_ok_and(|j| {
            j.header
                .typ
                .as_deref()
                .is_some_and(|t| media_type_eq(t, TXN_TYP))
        })
    }

    async fn verify(
        &self,
        presented: Presented<'_>,
        ctx: &VerifyContext<'_>,
    ) -> Result<Verified, Rejection> {
        let typ = TypRule {
            explicit: &[TXN_TYP],
            untyped_ok: false,
        };
        let claims = self.jws.verify(presented.jws?, typ, ctx).await?.claims;
        // We minted it: our issuer, our trust domain.
        if claims.required_str("iss")? != self.jws.issuer {
            return Err(Rejection::UntrustedIssuer);
        }
        if !audience_contains(claims.get("aud"), &self.trust_domain)? {
            return Err(Rejection::WrongAudience);
        }
        for name in ["txn", "sub", "scope", "req_wl"] {
            if claims.required_str(name)?.is_empty() {
                return Err(Rejection::BadClaim(name));
            }
        }
        for name in ["tctx", "rctx"] {
            if claims.get(name).is_some_and(|v| !v.is_object()) {
                return Err(Rejection::BadClaim(name));
            }
        }
        Ok(Verified {
            claims,
            trust: self.jws.trust.clone(),
            kind: KIND,
            proven_key: None,
            asserted_by_caller: false,
        })
    }

    fn issuer(&self) -> &str {
        &self.jws.issuer
    }

    fn keys(&self) -> Option<&KeyStore> {
        Some(&self.jws.keys)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Token;

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => Map::new(),
        }
    }

    fn env<'a>(
        options: Option<&'a Value>,
        audiences: &'a [String],
        types: &'a [&'a str],
    ) -> ProfileEnv<'a> {
        // As the profile loader says it: these two kinds' verifiers are caller-asserted.
        let asserted: &'a [&'a str] = match types {
            [.., t] if *t == types::SELF_SIGNED => &[types::SELF_SIGNED],
            [.., t] if *t == types::UNSIGNED_JSON => &[types::UNSIGNED_JSON],
            _ => &[],
        };
        ProfileEnv {
            options,
            audiences,
            subject_types: types,
            caller_asserted_types: asserted,
            trust_domain: "example.com",
        }
    }

    #[test]
    fn txn_values_are_random_version_4_uuids() {
        let a = new_txn().unwrap();
        let b = new_txn().unwrap();
        assert_ne!(a, b);
        for t in [&a, &b] {
            assert_eq!(t.len(), 36);
            let dashes: Vec<usize> = t.match_indices('-').map(|(i, _)| i).collect();
            assert_eq!(dashes, [8, 13, 18, 23]);
            assert_eq!(&t[14..15], "4");
            assert!("89ab".contains(&t[19..20]), "{t}");
            assert!(t.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit()));
            assert!(!t.bytes().any(|c| c.is_ascii_uppercase()));
        }
        // Only the version and variant bits are fixed: the digits beside them still vary.
        let many: Vec<String> = (0..64).map(|_| new_txn().unwrap()).collect();
        for at in [15, 20] {
            let first = &many[0][at..at + 1];
            assert!(
                many.iter().any(|t| &t[at..at + 1] != first),
                "position {at}"
            );
        }
    }

    #[test]
    fn contexts_of_new_tokens_are_the_mapped_objects() {
        assert_eq!(merged_context("tctx", None, None).unwrap(), None);
        assert_eq!(
            merged_context("tctx", None, Some(Value::Null)).unwrap(),
            None
        );
        let m = json!({"a": 1});
        assert_eq!(
            merged_context("tctx", None, Some(m.clone())).unwrap(),
            Some(obj(m))
        );
        let e = merged_context("rctx", None, Some(json!([1]))).unwrap_err();
        assert_eq!(e.description, "rctx must be a JSON object");
    }

    #[test]
    fn replacement_contexts_only_grow() {
        let input = obj(json!({"tctx": {"a": 1}, "rctx": {}}));
        let grown = merged_context("tctx", Some(&input), Some(json!({"b": 2}))).unwrap();
        assert_eq!(grown, Some(obj(json!({"a": 1, "b": 2}))));
        let same = merged_context("tctx", Some(&input), Some(json!({"a": 1}))).unwrap();
        assert_eq!(same, Some(obj(json!({"a": 1}))));
        let kept = merged_context("tctx", Some(&input), None).unwrap();
        assert_eq!(kept, Some(obj(json!({"a": 1}))));
        let e = merged_context("tctx", Some(&input), Some(json!({"a": 2}))).unwrap_err();
        assert_eq!(
            e.description,
            "a replacement Txn-Token cannot change members of tctx"
        );
        // An empty object the input had stays; one it lacked does not appear.
        assert_eq!(
            merged_context("rctx", Some(&input), None).unwrap(),
            Some(Map::new())
        );
        let bare = obj(json!({}));
        assert_eq!(merged_context("rctx", Some(&bare), None).unwrap(), None);
        let bad = obj(json!({"tctx": "x"}));
        let e = merged_context("tctx", Some(&bad), None).unwrap_err();
        assert_eq!(
            e.description,
            "the Txn-Token to replace has a malformed tctx"
        );
    }

    #[test]
    fn audiences_compare_exactly() {
        let ours = ["example.com".to_owned()];
        assert!(same_audience(Some(&json!("example.com")), &ours));
        assert!(!same_audience(Some(&json!("example.org")), &ours));
        assert!(same_audience(Some(&json!(["example.com"])), &ours));
        assert!(!same_audience(
            Some(&json!(["example.com", "example.org"])),
            &ours
        ));
        assert!(!same_audience(Some(&json!(["example.org"])), &ours));
        assert!(!same_audience(Some(&json!([])), &ours));
        assert!(!same_audience(None, &ours));
        assert!(!same_audience(Some(&json!(1)), &ours));
    }

    #[test]
    fn the_self_check_wants_every_required_claim_and_minutes() {
        let good = json!({"iat": 100, "exp": 700, "aud": "d", "txn": "t", "sub": "s",
                          "scope": "a", "req_wl": "w"});
        assert!(self_check(&obj(good.clone())).is_ok());
        for (k, v) in [
            ("exp", json!(100)),
            ("exp", json!(99)),
            ("exp", json!(701)),
            ("iat", json!("x")),
            ("txn", json!("")),
            ("sub", json!(1)),
            ("scope", Value::Null),
            ("req_wl", json!("")),
            ("aud", json!("")),
        ] {
            let mut c = good.clone();
            c[k] = v;
            assert!(self_check(&obj(c)).is_err(), "{k}");
        }
    }

    #[test]
    fn the_subject_token_is_found_anywhere_in_the_contexts() {
        let t = Token::new("eyJ.secret.sig");
        let clean = obj(json!({"a": "b", "n": [1, {"x": "y"}]}));
        assert!(refuse_copied_token(&t, &clean).is_ok());
        for bad in [
            json!({"a": "Bearer eyJ.secret.sig"}),
            json!({"a": ["x", {"b": "eyJ.secret.sig"}]}),
            json!({"eyJ.secret.sig": 1}),
            json!({"a": {"eyJ.secret.sig": 1}}),
        ] {
            assert!(refuse_copied_token(&t, &obj(bad)).is_err());
        }
    }

    #[test]
    fn profiles_must_name_our_trust_domain_and_refuse_refresh_tokens() {
        let m = TxnTokenMinter::default();
        let ours = ["example.com".to_owned()];
        assert!(
            m.configure(&env(None, &ours, &[types::ACCESS_TOKEN]))
                .unwrap()
                .is_none()
        );
        let other = ["orders-api".to_owned()];
        let e = m
            .configure(&env(None, &other, &[types::ACCESS_TOKEN]))
            .err()
            .unwrap();
        assert!(e[0].starts_with("audiences: "), "{e:?}");
        let two = ["example.com".to_owned(), "x".to_owned()];
        assert!(m.configure(&env(None, &two, &[])).is_err());
        let e = m
            .configure(&env(
                None,
                &ours,
                &[types::ACCESS_TOKEN, types::REFRESH_TOKEN],
            ))
            .err()
            .unwrap();
        assert!(e[0].starts_with("kind: Txn-Tokens are never issued for refresh tokens"));
    }

    #[test]
    fn caller_asserted_subjects_need_a_subject_scope_at_load() {
        let m = TxnTokenMinter::default();
        let ours = ["example.com".to_owned()];
        for asserted in [types::SELF_SIGNED, types::UNSIGNED_JSON] {
            for options in [None, Some(json!({"max_replacements": 2}))] {
                let e = m
                    .configure(&env(
                        options.as_ref(),
                        &ours,
                        &[types::ACCESS_TOKEN, asserted],
                    ))
                    .err()
                    .unwrap();
                assert_eq!(e.len(), 1, "{e:?}");
                assert!(e[0].starts_with("options.subject_scope: required"), "{e:?}");
                assert!(e[0].contains(asserted) && !e[0].contains(types::ACCESS_TOKEN));
            }
            let with = json!({"subject_scope": "a b"});
            assert_eq!(
                m.configure(&env(Some(&with), &ours, &[asserted]))
                    .map(|o| o.is_some()),
                Ok(true)
            );
        }
        // Issuer-vouched subjects and ID tokens load without it.
        for vouched in [types::ACCESS_TOKEN, types::ID_TOKEN, types::TXN_TOKEN] {
            assert!(m.configure(&env(None, &ours, &[vouched])).is_ok());
        }
    }

    #[test]
    fn options_are_checked() {
        let m = TxnTokenMinter::default();
        let defaults: Options = serde_json::from_value(json!({})).unwrap();
        assert_eq!(defaults.max_replacements, 8);
        assert_eq!(defaults.max_extension, Duration::ZERO);
        assert_eq!(defaults.subject_scope, None);
        assert_eq!(Options::default().max_replacements, 8);
        assert_eq!(m.name(), "txn-token");
        assert_eq!(m.typ(), "txntoken+jwt");
        assert_eq!(m.issued_token_type(), types::TXN_TOKEN);
        let e = m
            .configure(&env(
                Some(&json!({"max_extension": "soon"})),
                &["example.com".to_owned()],
                &[],
            ))
            .err()
            .unwrap();
        assert!(e[0].starts_with("options.max_extension: "), "{e:?}");
        let ours = ["example.com".to_owned()];
        let check = |v: Value| m.configure(&env(Some(&v), &ours, &[])).map(|o| o.is_some());
        assert_eq!(check(json!({})), Ok(true));
        assert_eq!(
            check(json!({"max_extension": "10m", "max_replacements": 16, "subject_scope": "a b"})),
            Ok(true)
        );
        for (bad, want) in [
            (
                json!({"max_extension": "11m"}),
                "options.max_extension: at most 10m",
            ),
            (json!({"max_replacements": 0}), "options.max_replacements"),
            (json!({"max_replacements": 17}), "options.max_replacements"),
            (json!({"chain_claim": "hops"}), "options.chain_claim"),
            (json!({"subject_scope": " "}), "options.subject_scope"),
            (json!({"subject_scope": "a\"b"}), "options.subject_scope"),
            (json!({"bogus": 1}), "options.bogus"),
        ] {
            let e = m.configure(&env(Some(&bad), &ours, &[])).err().unwrap();
            assert!(e[0].starts_with(want), "{bad}: {e:?}");
        }
        for reserved in [
            "txn",
            "req_wl",
            "req_wl_chain",
            "scope",
            "iss",
            "aud",
            "exp",
            "jti",
            "act",
        ] {
            assert!(!m.may_write(reserved), "{reserved}");
        }
        for free in ["sub", "tctx", "rctx", "tenant"] {
            assert!(m.may_write(free), "{free}");
        }
    }

    fn common(exp: i64) -> super::super::CommonClaims {
        super::super::CommonClaims {
            issuer: "https://sts".into(),
            subject: "alice".into(),
            audience: vec!["example.com".into()],
            issued_at: 1000,
            expires_at: exp,
            act: None,
        }
    }

    fn minter(options: Value) -> TxnTokenMinter {
        TxnTokenMinter {
            options: serde_json::from_value(options).unwrap(),
        }
    }

    #[test]
    fn a_replacement_keeps_txn_and_sub_and_extends_as_far_as_allowed() {
        let input = obj(json!({"txn": "t-1", "sub": "alice", "aud": "example.com",
                               "req_wl": "gw", "exp": 1100}));
        let m = minter(json!({"max_extension": "60s", "max_replacements": 2}));
        let mut claims = Map::new();
        let (txn, sub, exp) = m
            .replacement(&input, &mut Map::new(), &common(1300), &mut claims)
            .unwrap();
        assert_eq!((txn.as_str(), sub.as_str(), exp), ("t-1", "alice", 1160));
        assert_eq!(claims["req_wl_chain"], json!(["gw"]));
        // Within the extension, the engine's exp stands.
        let (_, _, exp) = m
            .replacement(&input, &mut Map::new(), &common(1150), &mut Map::new())
            .unwrap();
        assert_eq!(exp, 1150);
        let (_, _, exp) = minter(json!({}))
            .replacement(&input, &mut Map::new(), &common(1300), &mut Map::new())
            .unwrap();
        assert_eq!(exp, 1100, "no extension by default");
        // The chain grows by one per replacement, up to the limit.
        let mut chained = input.clone();
        chained.insert("req_wl_chain".into(), json!(["a"]));
        let mut claims = Map::new();
        m.replacement(&chained, &mut Map::new(), &common(1300), &mut claims)
            .unwrap();
        assert_eq!(claims["req_wl_chain"], json!(["a", "gw"]));
        chained.insert("req_wl_chain".into(), json!(["a", "b"]));
        let e = m
            .replacement(&chained, &mut Map::new(), &common(1300), &mut Map::new())
            .unwrap_err();
        assert_eq!(
            e.description,
            "this transaction's Txn-Token has been replaced too many times"
        );
    }

    #[test]
    fn a_replacement_refuses_what_would_change_the_transaction() {
        let m = minter(json!({}));
        let base = json!({"txn": "t-1", "sub": "alice", "aud": "example.com", "req_wl": "gw",
                          "exp": 1100});
        let run = |input: Value, mapped: Value| {
            m.replacement(
                &obj(input),
                &mut obj(mapped),
                &common(1300),
                &mut Map::new(),
            )
            .map(|_| ())
            .map_err(|e| e.description.into_owned())
        };
        assert_eq!(run(base.clone(), json!({"sub": "alice"})), Ok(()));
        assert_eq!(
            run(base.clone(), json!({"sub": "mallory"})).unwrap_err(),
            "a replacement Txn-Token keeps the sub of the one it replaces"
        );
        for (k, want) in [
            ("txn", "the Txn-Token to replace has no txn"),
            ("sub", "the Txn-Token to replace has no sub"),
            ("req_wl", "the Txn-Token to replace has no req_wl"),
            (
                "aud",
                "a replacement Txn-Token keeps the aud of the one it replaces",
            ),
        ] {
            let mut input = base.clone();
            input.as_object_mut().unwrap().remove(k);
            assert_eq!(run(input, json!({})).unwrap_err(), want, "{k}");
        }
        let mut other_aud = base.clone();
        other_aud["aud"] = json!("example.org");
        assert!(run(other_aud, json!({})).is_err());
        for chain in [json!("gw"), json!([1]), json!({"a": 1})] {
            let mut input = base.clone();
            input["req_wl_chain"] = chain;
            assert_eq!(
                run(input, json!({})).unwrap_err(),
                "the Txn-Token to replace has a malformed requester chain"
            );
        }
    }

    fn subject(claims: Value, asserted_by_caller: bool) -> super::super::Verified {
        super::super::Verified {
            claims: obj(claims),
            trust: Arc::from("t"),
            kind: "k",
            proven_key: None,
            asserted_by_caller,
        }
    }

    #[test]
    fn the_held_scope_is_the_issuers_or_the_profiles_never_unknown() {
        let plain = minter(json!({}));
        let stated = minter(json!({"subject_scope": "a b"}));
        let held = |m: &TxnTokenMinter, c: Value, asserted: bool| {
            m.held_scope(&subject(c, asserted))
                .map_err(|e| e.description.into_owned())
        };
        assert_eq!(
            held(&plain, json!({"scope": "x y"}), false),
            Ok("x y".into())
        );
        // An issuer's scope wins over the profile's statement.
        assert_eq!(held(&stated, json!({"scope": "x"}), false), Ok("x".into()));
        assert_eq!(held(&stated, json!({}), false), Ok("a b".into()));
        let unknown =
            "the subject_token's scope cannot be determined, so no Txn-Token scope can be granted";
        for c in [
            json!({}),
            json!({"scope": " "}),
            json!({"scope": ["a"]}),
            json!({"scope": ""}),
        ] {
            assert_eq!(held(&plain, c.clone(), false), Err(unknown.into()), "{c}");
        }
        assert_eq!(
            held(&stated, json!({"scope": 1}), false),
            Err(unknown.into())
        );
        // The caller's own word: cut to the profile's subject_scope, which must be set.
        assert_eq!(
            held(&stated, json!({"scope": "b c a"}), true),
            Ok("b a".into())
        );
        assert_eq!(
            held(&stated, json!({"scope": "c"}), true),
            Ok(String::new())
        );
        assert_eq!(held(&stated, json!({}), true), Ok("a b".into()));
        assert!(
            held(&plain, json!({"scope": "a"}), true)
                .unwrap_err()
                .starts_with("the subject_token's scope is asserted by the caller")
        );
    }

    #[test]
    fn requests_need_scope_and_never_carry_refresh_tokens() {
        use crate::exchange::{ExchangeRequest, FormParams};
        let limits = crate::config::Limits::default();
        let req = |body: &str| {
            ExchangeRequest::from_params(FormParams::parse(body.as_bytes(), 32).unwrap(), &limits)
                .unwrap()
        };
        let m = TxnTokenMinter::default();
        let ok = req("subject_token=a&subject_token_type=urn:x&scope=s");
        assert!(m.check_request(&ok).is_ok());
        let e = m
            .check_request(&req("subject_token=a&subject_token_type=urn:x"))
            .unwrap_err();
        assert_eq!(
            e.description,
            "scope is required when requesting a Txn-Token"
        );
        let refresh = format!(
            "subject_token=a&subject_token_type={}&scope=s",
            types::REFRESH_TOKEN
        );
        let e = m.check_request(&req(&refresh)).unwrap_err();
        assert_eq!(
            e.description,
            "a refresh token cannot be exchanged for a Txn-Token"
        );
    }
}
