//! HTTP Message Signatures (RFC 9421) as the WIMSE proof of possession for a request
//! (draft-ietf-wimse-http-signature): the one `Signature-Input`/`Signature` pair, the covered
//! components the profile requires, its parameters (`created`, `expires`, `nonce`, `tag`,
//! `wimse-aud`; no `keyid`, no `alg`), the signature base, and the signature with the WIT's key.
//!
//! Pure functions over the request's parts: the caller supplies the method, the request
//! target, the header values and the key, and checks the nonce's single use. Only what the
//! WIMSE profile needs of RFC 8941 structured fields is parsed; anything else is refused.

use crate::jose::VerifyingKey;

/// The profile's `tag` (http-signature §3).
pub const TAG: &str = "wimse-workload-to-workload";

/// A request as the signature sees it.
pub struct SignedRequest<'a> {
    pub method: &'a str,
    /// Path and query, as sent (`@request-target`).
    pub target: &'a str,
    /// (lower-case name, value) of the request's header fields, all of them that the
    /// signature may cover.
    pub headers: &'a [(&'a str, &'a str)],
}

/// What the checks need besides the request.
pub struct Expect<'a> {
    pub now: i64,
    pub leeway: i64,
    /// The longest `expires - created` accepted.
    pub max_lifetime: i64,
    /// Our target URI without query (`wimse-aud`).
    pub audience: &'a str,
}

/// A signature that verified: what the caller still has to check.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub nonce: String,
    pub expires: i64,
}

/// Why a signature was refused (fixed texts, safe to return).
pub type Refusal = &'static str;

/// A parsed `label=("c1" "c2");p1=…;p2=…` member.
#[derive(Debug)]
struct Input<'a> {
    label: &'a str,
    /// The member's value as written: `("c1" …);params` — the `@signature-params` line.
    raw: &'a str,
    components: Vec<&'a str>,
    params: Vec<(&'a str, Param<'a>)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param<'a> {
    Int(i64),
    Str(&'a str),
    Bool(bool),
}

/// Verifies the request's signature for the WIMSE profile with `key`.
pub fn verify(
    req: &SignedRequest<'_>,
    key: &VerifyingKey,
    want: &Expect<'_>,
) -> Result<Verified, Refusal> {
    let one = |name: &str| -> Result<&str, Refusal> {
        let mut values = req.headers.iter().filter(|(n, _)| *n == name);
        match (values.next(), values.next()) {
            (Some((_, v)), None) => Ok(v),
            (None, _) => Err("the request has no HTTP message signature"),
            _ => Err("the request has more than one Signature or Signature-Input field"),
        }
    };
    let input = parse_input(one("signature-input")?)?;
    let signature = parse_signature(one("signature")?, input.label)?;
    check_components(&input, req)?;
    let v = check_params(&input, want)?;
    let base = signature_base(&input, req)?;
    key.verify(base.as_bytes(), &signature)
        .map_err(|()| "HTTP message signature does not verify with the WIT's key")?;
    Ok(v)
}

/// http-signature §3: `@method`, `@request-target` and the WIT always; `content-type`,
/// `content-digest`, `authorization`, `txn-token` whenever the request has them.
fn check_components(input: &Input<'_>, req: &SignedRequest<'_>) -> Result<(), Refusal> {
    for required in ["@method", "@request-target", "workload-identity-token"] {
        if !input.components.contains(&required) {
            return Err(
                "HTTP message signature does not cover @method, @request-target and the WIT",
            );
        }
    }
    for present in [
        "content-type",
        "content-digest",
        "authorization",
        "txn-token",
    ] {
        if req.headers.iter().any(|(n, _)| *n == present) && !input.components.contains(&present) {
            return Err("HTTP message signature does not cover every header the profile requires");
        }
    }
    Ok(())
}

fn check_params(input: &Input<'_>, want: &Expect<'_>) -> Result<Verified, Refusal> {
    let get = |name: &str| {
        input
            .params
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
    };
    // The key comes from the WIT and the algorithm from its cnf.jwk.alg, never the signature.
    if get("keyid").is_some() || get("alg").is_some() {
        return Err("HTTP message signature must not carry keyid or alg");
    }
    let (Some(Param::Int(created)), Some(Param::Int(expires))) = (get("created"), get("expires"))
    else {
        return Err("HTTP message signature lacks created or expires");
    };
    if created > want.now + want.leeway || expires <= created {
        return Err("HTTP message signature created/expires are not valid now");
    }
    if want.now >= expires + want.leeway {
        return Err("HTTP message signature is expired");
    }
    if expires - created > want.max_lifetime {
        return Err("HTTP message signature lifetime is too long");
    }
    if get("tag") != Some(Param::Str(TAG)) {
        return Err("HTTP message signature tag is not wimse-workload-to-workload");
    }
    if get("wimse-aud") != Some(Param::Str(want.audience)) {
        return Err("HTTP message signature wimse-aud is not this endpoint");
    }
    let Some(Param::Str(nonce)) = get("nonce") else {
        return Err("HTTP message signature lacks a nonce");
    };
    if nonce.is_empty() {
        return Err("HTTP message signature lacks a nonce");
    }
    Ok(Verified {
        nonce: nonce.to_owned(),
        expires,
    })
}

/// RFC 9421 §2.5: one line per covered component, then `"@signature-params": …`.
fn signature_base(input: &Input<'_>, req: &SignedRequest<'_>) -> Result<String, Refusal> {
    let mut base = String::new();
    for c in &input.components {
        let value = match *c {
            "@method" => req.method.to_owned(),
            "@request-target" => req.target.to_owned(),
            name if name.starts_with('@') => {
                return Err("HTTP message signature covers a component this profile does not use");
            }
            name => {
                let values: Vec<&str> = req
                    .headers
                    .iter()
                    .filter(|(n, _)| *n == name)
                    .map(|(_, v)| v.trim())
                    .collect();
                if values.is_empty() {
                    return Err("HTTP message signature covers a header the request lacks");
                }
                values.join(", ")
            }
        };
        base.push_str(&format!("\"{c}\": {value}\n"));
    }
    base.push_str(&format!("\"@signature-params\": {}", input.raw));
    Ok(base)
}

/// `label=("a" "b");k=v;…` — exactly one member.
fn parse_input(field: &str) -> Result<Input<'_>, Refusal> {
    let bad = "Signature-Input is not one well-formed signature";
    let (label, raw) = field.trim().split_once('=').ok_or(bad)?;
    if !is_key(label) {
        return Err(bad);
    }
    let rest = raw.strip_prefix('(').ok_or(bad)?;
    let close = rest.find(')').ok_or(bad)?;
    let (list, params) = (&rest[..close], &rest[close + 1..]);
    let mut components = Vec::new();
    for item in list.split(' ').filter(|s| !s.is_empty()) {
        // Component parameters (`;req`, `;sf`, …) are not used by the request profile.
        let name = item
            .strip_prefix('"')
            .and_then(|s| s.strip_suffix('"'))
            .ok_or(bad)?;
        if name.is_empty() || name.contains(['"', '\\']) {
            return Err(bad);
        }
        components.push(name);
    }
    let mut parsed = Vec::new();
    let mut p = params;
    while let Some(after) = p.strip_prefix(';') {
        let end_key = after.find(['=', ';']).unwrap_or(after.len());
        let key = &after[..end_key];
        if !is_key(key) {
            return Err(bad);
        }
        let after_key = &after[end_key..];
        let (value, next) = match after_key.strip_prefix('=') {
            None => (Param::Bool(true), after_key),
            Some(v) if v.starts_with('"') => {
                let body = &v[1..];
                let end = body.find('"').ok_or(bad)?;
                if body[..end].contains('\\') {
                    return Err(bad);
                }
                (Param::Str(&body[..end]), &body[end + 1..])
            }
            Some(v) if v.starts_with('?') => match v.get(..2) {
                Some("?1") => (Param::Bool(true), &v[2..]),
                Some("?0") => (Param::Bool(false), &v[2..]),
                _ => return Err(bad),
            },
            Some(v) => {
                let end = v.find(';').unwrap_or(v.len());
                let n: i64 = v[..end].parse().map_err(|_| bad)?;
                (Param::Int(n), &v[end..])
            }
        };
        if parsed.iter().any(|(k, _)| *k == key) {
            return Err(bad);
        }
        parsed.push((key, value));
        p = next;
    }
    if !p.is_empty() {
        return Err(bad);
    }
    Ok(Input {
        label,
        raw,
        components,
        params: parsed,
    })
}

/// `label=:base64:` for the label of the input.
fn parse_signature(field: &str, label: &str) -> Result<Vec<u8>, Refusal> {
    use base64::Engine;
    let bad = "Signature is not one well-formed signature for the Signature-Input";
    let (l, v) = field.trim().split_once('=').ok_or(bad)?;
    if l != label {
        return Err(bad);
    }
    let b64 = v
        .strip_prefix(':')
        .and_then(|s| s.strip_suffix(':'))
        .ok_or(bad)?;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad)
}

/// RFC 8941 key: lower-case letter or `*`, then lower-case letters, digits, `_-.*`.
fn is_key(k: &str) -> bool {
    let mut bytes = k.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'*'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::{Alg, parse_jwk_public};
    use serde_json::json;

    // E4.1 (svcA's public key) and E4.2, verbatim from the specification's examples.
    const WIT: &str = "eyJhbGciOiJFZERTQSIsImtpZCI6Imlzc3Vlci1rZXkiLCJ0eXAiOiJ3aXQrand0In0.eyJjbmYiOnsiandrIjp7ImFsZyI6IkVkRFNBIiwiY3J2IjoiRWQyNTUxOSIsImtpZCI6InN2Yy1hLWtleSIsImt0eSI6Ik9LUCIsIngiOiJaamxWVDRDT3NDa1FPOUhJbzZ0RFdBWGF5UTBNeW1vRlVLSlJJUTdTOFI4In19LCJleHAiOjE3ODUxNTYwOTcsImlhdCI6MTc4NTE1NTc5NywiaXNzIjoiaHR0cHM6Ly9leGFtcGxlLmNvbS9pc3N1ZXIiLCJqdGkiOiJ3aXQtMTc4NTE1NTc5NzIxNjU0NTcxOSIsInN1YiI6IndpbXNlOi8vZXhhbXBsZS5jb20vc3ZjQSJ9.BqJfcsbrYlS9GSQ7NpFBBVz4CeszShqleIyr2sSnd0Ic6l2HXX27giZcdAOGnXjtv_7h-9vV16GZbVcrQt6hCg";
    const SIG: &str = "wimse=:zSK+kx5EnoZct9FZ6LMYzfx0mk32oI/hHpB7y4rgHxkRDcAA72yBW5xgzA03nKviXLjL7nphq840Uwznp6IKAw==:";
    const INPUT: &str = r#"wimse=("@method" "@request-target" "workload-identity-token");created=1785155797;expires=1785156097;nonce="abcd1111";tag="wimse-workload-to-workload";wimse-aud="https://svcb.example.com/gimme-ice-cream";wimse-sign-response"#;

    fn key() -> VerifyingKey {
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": "ZjlVT4COsCkQO9HIo6tDWAXayQ0MymoFUKJRIQ7S8R8"});
        parse_jwk_public(&jwk, &[Alg::EdDSA]).unwrap().remove(0)
    }

    fn want(now: i64) -> Expect<'static> {
        Expect {
            now,
            leeway: 0,
            max_lifetime: 600,
            audience: "https://svcb.example.com/gimme-ice-cream",
        }
    }

    fn request<'a>(headers: &'a [(&'a str, &'a str)]) -> SignedRequest<'a> {
        SignedRequest {
            method: "GET",
            target: "/gimme-ice-cream?flavor=vanilla",
            headers,
        }
    }

    #[test]
    fn the_e4_request_signature_verifies_and_any_change_breaks_it() {
        let headers = [
            ("signature", SIG),
            ("signature-input", INPUT),
            ("workload-identity-token", WIT),
        ];
        let v = verify(&request(&headers), &key(), &want(1_785_155_800)).unwrap();
        assert_eq!(
            v,
            Verified {
                nonce: "abcd1111".into(),
                expires: 1_785_156_097
            }
        );
        // Another target, method or WIT: the signature base differs.
        let mut r = request(&headers);
        r.target = "/gimme-ice-cream?flavor=chocolate";
        assert_eq!(
            verify(&r, &key(), &want(1_785_155_800)),
            Err("HTTP message signature does not verify with the WIT's key")
        );
        let mut r = request(&headers);
        r.method = "POST";
        assert!(verify(&r, &key(), &want(1_785_155_800)).is_err());
        // After expires, for another audience, without the WIT covered.
        assert_eq!(
            verify(&request(&headers), &key(), &want(1_785_156_097)),
            Err("HTTP message signature is expired")
        );
        let mut other = want(1_785_155_800);
        other.audience = "https://sts.example.com/token";
        assert_eq!(
            verify(&request(&headers), &key(), &other),
            Err("HTTP message signature wimse-aud is not this endpoint")
        );
        let narrow = INPUT.replace(r#" "workload-identity-token""#, "");
        let headers2 = [
            ("signature", SIG),
            ("signature-input", narrow.as_str()),
            ("workload-identity-token", WIT),
        ];
        assert_eq!(
            verify(&request(&headers2), &key(), &want(1_785_155_800)),
            Err("HTTP message signature does not cover @method, @request-target and the WIT")
        );
        // A request with a body must cover its content headers.
        let headers3 = [
            ("signature", SIG),
            ("signature-input", INPUT),
            ("workload-identity-token", WIT),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        assert_eq!(
            verify(&request(&headers3), &key(), &want(1_785_155_800)),
            Err("HTTP message signature does not cover every header the profile requires")
        );
    }

    #[test]
    fn parameters_and_fields_are_checked_at_their_edges() {
        let params = |created: i64, expires: i64, extra: &str| {
            format!(
                r#"wimse=("@method" "@request-target" "workload-identity-token");created={created};expires={expires};nonce="n";tag="wimse-workload-to-workload";wimse-aud="https://svcb.example.com/gimme-ice-cream"{extra}"#
            )
        };
        let check = |input: String, now: i64| {
            let mut w = want(now);
            w.leeway = 5;
            check_params(&parse_input(&input).unwrap(), &w).map(|v| v.expires)
        };
        // created may be at most `leeway` ahead of now.
        assert_eq!(check(params(1005, 1100, ""), 1000), Ok(1100));
        assert_eq!(
            check(params(1006, 1100, ""), 1000),
            Err("HTTP message signature created/expires are not valid now")
        );
        // expires must be after created.
        assert_eq!(
            check(params(1000, 1000, ""), 1000),
            Err("HTTP message signature created/expires are not valid now")
        );
        // Expired once now reaches expires + leeway.
        assert_eq!(check(params(900, 1000, ""), 1004), Ok(1000));
        assert_eq!(
            check(params(900, 1000, ""), 1005),
            Err("HTTP message signature is expired")
        );
        // At most max_lifetime (600) between created and expires.
        assert_eq!(check(params(1000, 1600, ""), 1000), Ok(1600));
        assert_eq!(
            check(params(1000, 1601, ""), 1000),
            Err("HTTP message signature lifetime is too long")
        );
        // keyid or alg alone is refused.
        for extra in [r#";keyid="k""#, r#";alg="ed25519""#] {
            assert_eq!(
                check(params(1000, 1100, extra), 1000),
                Err("HTTP message signature must not carry keyid or alg"),
                "{extra}"
            );
        }
        // A derived component the profile does not use (e.g. @authority) is refused.
        let authority = INPUT.replace(r#""@method""#, r#""@method" "@authority""#);
        let headers = [
            ("signature", SIG),
            ("signature-input", authority.as_str()),
            ("workload-identity-token", WIT),
        ];
        assert_eq!(
            verify(&request(&headers), &key(), &want(1_785_155_800)),
            Err("HTTP message signature covers a component this profile does not use")
        );
        // No Signature field at all, or two.
        let headers = [("signature-input", INPUT), ("workload-identity-token", WIT)];
        assert_eq!(
            verify(&request(&headers), &key(), &want(1_785_155_800)),
            Err("the request has no HTTP message signature")
        );
        let headers = [
            ("signature", SIG),
            ("signature", SIG),
            ("signature-input", INPUT),
            ("workload-identity-token", WIT),
        ];
        assert_eq!(
            verify(&request(&headers), &key(), &want(1_785_155_800)),
            Err("the request has more than one Signature or Signature-Input field")
        );
    }

    #[test]
    fn malformed_inputs_are_refused() {
        for input in [
            "",
            "wimse",
            "wimse=(\"@method\"",
            "Wimse=(\"@method\")",
            "wimse=(\"@method\");created=abc",
            "wimse=(\"@method\");created=1;created=2",
            "wimse=(\"@method\");nonce=\"a\\\"b\"",
            "wimse=(@method)",
        ] {
            assert!(parse_input(input).is_err(), "{input}");
        }
        let i = parse_input(INPUT).unwrap();
        assert_eq!(
            i.components,
            vec!["@method", "@request-target", "workload-identity-token"]
        );
        assert_eq!(
            i.params
                .iter()
                .find(|(k, _)| *k == "wimse-sign-response")
                .map(|(_, v)| *v),
            Some(Param::Bool(true))
        );
        assert!(parse_signature("other=:AAAA:", "wimse").is_err());
        // Booleans (RFC 8941 §3.3.6) and bare flags.
        let flags = parse_input(r#"w=("@method");a=?1;b=?0;c"#).unwrap();
        assert_eq!(
            flags.params,
            vec![
                ("a", Param::Bool(true)),
                ("b", Param::Bool(false)),
                ("c", Param::Bool(true))
            ]
        );
        assert!(parse_input(r#"w=("@method");a=?x"#).is_err());
        // Empty component names, or names with quotes or backslashes.
        assert!(parse_input(r#"w=("")"#).is_err());
        assert!(parse_input(r#"w=("a\b")"#).is_err());
        assert!(parse_signature("wimse=AAAA", "wimse").is_err());
    }
}
