//! Typed reads of JWT claims and the time and audience rules shared by every kind
//! (RFC 7519 §4.1).

use serde_json::Value;

use super::{Rejection, VerifyContext};
use crate::clock::UnixTime;
use crate::jose::Claims;

/// 9999-12-31T23:59:59Z: the latest NumericDate accepted.
pub const MAX_NUMERIC_DATE: i64 = 253_402_300_799;

pub trait ClaimsExt {
    fn str_claim(&self, name: &'static str) -> Result<Option<&str>, Rejection>;
    fn time_claim(&self, name: &'static str) -> Result<Option<i64>, Rejection>;
    fn required_str(&self, name: &'static str) -> Result<&str, Rejection>;
    /// `exp` (required), `nbf`, `iat` against `now` with the leeway (RFC 7519 §4.1.4–4.1.6).
    fn check_times(&self, ctx: &VerifyContext<'_>) -> Result<i64, Rejection> {
        self.check_times_at(ctx.now, ctx.leeway)
    }
    /// [`check_times`](Self::check_times) with an explicit `now` and leeway (seconds).
    fn check_times_at(&self, now: UnixTime, leeway: i64) -> Result<i64, Rejection>;
}

impl ClaimsExt for Claims {
    fn str_claim(&self, name: &'static str) -> Result<Option<&str>, Rejection> {
        match self.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(Rejection::BadClaim(name)),
        }
    }

    fn time_claim(&self, name: &'static str) -> Result<Option<i64>, Rejection> {
        match self.get(name) {
            None => Ok(None),
            // NumericDate (RFC 7519 §2) may be fractional; whole seconds are enough for every
            // comparison here. Dates outside years 1970–9999 are malformed, not "far future":
            // an `exp` of i64::MAX or 1e300 is refused, never wrapped (`as` saturates, and the
            // range check below refuses the saturated value).
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && *f >= 0.0)
                        .map(|f| f as i64)
                })
                .filter(|t| (0..=MAX_NUMERIC_DATE).contains(t))
                .map(Some)
                .ok_or(Rejection::BadClaim(name)),
            Some(_) => Err(Rejection::BadClaim(name)),
        }
    }

    fn required_str(&self, name: &'static str) -> Result<&str, Rejection> {
        self.str_claim(name)?.ok_or(Rejection::MissingClaim(name))
    }

    fn check_times_at(&self, now: UnixTime, leeway: i64) -> Result<i64, Rejection> {
        let exp = self
            .time_claim("exp")?
            .ok_or(Rejection::MissingClaim("exp"))?;
        // Saturating: an absurd `exp` or `nbf` must neither wrap nor panic.
        if now >= exp.saturating_add(leeway) {
            return Err(Rejection::Expired);
        }
        if let Some(nbf) = self.time_claim("nbf")?
            && now.saturating_add(leeway) < nbf
        {
            return Err(Rejection::NotYetValid);
        }
        if let Some(iat) = self.time_claim("iat")?
            && iat > now.saturating_add(leeway)
        {
            return Err(Rejection::IssuedInFuture);
        }
        Ok(exp)
    }
}

/// Whether `aud` (a string or an array of strings, RFC 7519 §4.1.3) contains one of `ours`.
pub fn audience_contains(aud: Option<&Value>, ours: &[String]) -> Result<bool, Rejection> {
    match aud {
        None => Ok(false),
        Some(Value::String(s)) => Ok(ours.iter().any(|o| o == s)),
        Some(Value::Array(items)) => {
            let mut found = false;
            for item in items {
                let s = item.as_str().ok_or(Rejection::BadClaim("aud"))?;
                found |= ours.iter().any(|o| o == s);
            }
            Ok(found)
        }
        Some(_) => Err(Rejection::BadClaim("aud")),
    }
}

/// A JSON object as claims (anything else: no claims). For claim sets written with `json!`.
pub fn object(v: Value) -> crate::jose::Claims {
    match v {
        Value::Object(m) => m,
        _ => crate::jose::Claims::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NOW: UnixTime = 1_800_000_000;

    fn claims(v: Value) -> Claims {
        object(v)
    }

    fn times(v: Value, leeway: i64) -> Result<i64, Rejection> {
        claims(v).check_times_at(NOW, leeway)
    }

    /// RFC 7519 §4.1.4: the token must not be accepted on or after `exp` (plus the leeway).
    #[test]
    fn exp_boundary_with_and_without_leeway() {
        assert_eq!(times(json!({"exp": NOW + 1}), 0), Ok(NOW + 1));
        assert_eq!(times(json!({"exp": NOW}), 0), Err(Rejection::Expired));
        assert_eq!(times(json!({"exp": NOW - 29}), 30), Ok(NOW - 29));
        assert_eq!(times(json!({"exp": NOW - 30}), 30), Err(Rejection::Expired));
        assert_eq!(
            times(json!({"iat": NOW}), 0),
            Err(Rejection::MissingClaim("exp"))
        );
    }

    /// RFC 7519 §4.1.5 and §4.1.6: not before `nbf`, and no `iat` later than now (each with
    /// the leeway).
    #[test]
    fn nbf_and_iat_boundaries() {
        let exp = NOW + 600;
        for (claim, refusal) in [
            ("nbf", Rejection::NotYetValid),
            ("iat", Rejection::IssuedInFuture),
        ] {
            let with = |t: UnixTime| json!({"exp": exp, claim: t});
            assert_eq!(times(with(NOW), 0), Ok(exp), "{claim}");
            assert_eq!(times(with(NOW + 1), 0), Err(refusal.clone()), "{claim}");
            assert_eq!(times(with(NOW + 5), 5), Ok(exp), "{claim}");
            assert_eq!(times(with(NOW + 6), 5), Err(refusal), "{claim}");
        }
    }

    /// The time claims are checked in the order exp, nbf, iat: an expired token is refused as
    /// expired before a later claim is read, and a malformed claim is named.
    #[test]
    fn time_claims_are_checked_in_order() {
        let bad = json!("soon");
        assert_eq!(
            times(json!({"exp": NOW, "nbf": bad, "iat": bad}), 0),
            Err(Rejection::Expired)
        );
        assert_eq!(
            times(json!({"exp": NOW + 600, "nbf": bad, "iat": bad}), 0),
            Err(Rejection::BadClaim("nbf"))
        );
        assert_eq!(
            times(json!({"exp": NOW + 600, "nbf": NOW + 1, "iat": bad}), 0),
            Err(Rejection::NotYetValid)
        );
    }

    /// A malformed time claim is refused as malformed, not as expired.
    #[test]
    fn malformed_time_claims_are_named() {
        for (claim, bad) in [
            ("exp", json!("soon")),
            ("nbf", json!(true)),
            ("iat", json!([1])),
        ] {
            let mut c = json!({"exp": NOW + 600});
            c[claim] = bad;
            assert_eq!(times(c, 0), Err(Rejection::BadClaim(claim)), "{claim}");
        }
    }

    /// NumericDate (RFC 7519 §2): whole or fractional seconds from 1970 to 9999; anything
    /// outside is malformed, never wrapped or saturated into "far future".
    #[test]
    fn numeric_date_range() {
        let t = |v: Value| claims(json!({ "t": v })).time_claim("t");
        assert_eq!(t(json!(0)), Ok(Some(0)));
        assert_eq!(t(json!(MAX_NUMERIC_DATE)), Ok(Some(MAX_NUMERIC_DATE)));
        assert_eq!(
            t(json!(MAX_NUMERIC_DATE + 1)),
            Err(Rejection::BadClaim("t"))
        );
        assert_eq!(t(json!(-1)), Err(Rejection::BadClaim("t")));
        assert_eq!(t(json!(i64::MAX)), Err(Rejection::BadClaim("t")));
        assert_eq!(t(json!(u64::MAX)), Err(Rejection::BadClaim("t")));
        assert_eq!(t(json!(1_800_000_000.9)), Ok(Some(1_800_000_000)));
        assert_eq!(t(json!(253_402_300_799.5)), Ok(Some(MAX_NUMERIC_DATE)));
        assert_eq!(t(json!(253_402_300_800.0)), Err(Rejection::BadClaim("t")));
        assert_eq!(t(json!(-1.5)), Err(Rejection::BadClaim("t")));
        // Just before 1970 is before 1970, even when the cast would round it to zero.
        assert_eq!(t(json!(-0.5)), Err(Rejection::BadClaim("t")));
        assert_eq!(t(json!(0.0)), Ok(Some(0)));
        assert_eq!(t(json!(0.5)), Ok(Some(0)));
        assert_eq!(t(json!(1e300)), Err(Rejection::BadClaim("t")));
        assert_eq!(t(json!(-1e300)), Err(Rejection::BadClaim("t")));
        assert_eq!(claims(json!({})).time_claim("t"), Ok(None));
    }

    /// An absurd leeway or date neither wraps nor panics.
    #[test]
    fn saturating_time_arithmetic() {
        let c = claims(json!({"exp": MAX_NUMERIC_DATE, "nbf": MAX_NUMERIC_DATE, "iat": 0}));
        assert_eq!(c.check_times_at(NOW, i64::MAX), Ok(MAX_NUMERIC_DATE));
        assert_eq!(
            c.check_times_at(i64::MAX, 0),
            Err(Rejection::Expired),
            "now beyond every date"
        );
    }

    #[test]
    fn string_claims() {
        let c = claims(json!({"sub": "alice", "n": 1}));
        assert_eq!(c.str_claim("sub"), Ok(Some("alice")));
        assert_eq!(c.str_claim("none"), Ok(None));
        assert_eq!(c.str_claim("n"), Err(Rejection::BadClaim("n")));
        assert_eq!(c.required_str("sub"), Ok("alice"));
        assert_eq!(c.required_str("none"), Err(Rejection::MissingClaim("none")));
        assert_eq!(c.required_str("n"), Err(Rejection::BadClaim("n")));
    }

    /// RFC 7519 §4.1.3: `aud` is a string or an array of strings; one of ours must appear.
    #[test]
    fn audience_single_and_multi_valued() {
        let ours = ["https://sts.example".to_owned(), "example.com".to_owned()];
        let has = |v: Value| audience_contains(Some(&v), &ours);
        assert_eq!(audience_contains(None, &ours), Ok(false));
        assert_eq!(has(json!("example.com")), Ok(true));
        assert_eq!(has(json!("https://sts.example")), Ok(true));
        assert_eq!(has(json!("example.com/")), Ok(false), "exact match only");
        assert_eq!(has(json!("EXAMPLE.COM")), Ok(false), "case-sensitive");
        assert_eq!(
            has(json!(["other", "example.com"])),
            Ok(true),
            "last of many"
        );
        assert_eq!(
            has(json!(["example.com", "other"])),
            Ok(true),
            "first of many"
        );
        assert_eq!(has(json!(["other", "another"])), Ok(false));
        assert_eq!(has(json!([])), Ok(false));
        assert_eq!(
            audience_contains(Some(&json!("example.com")), &[]),
            Ok(false)
        );
        // A malformed member spoils the claim even when another member matches.
        assert_eq!(
            has(json!(["example.com", 7])),
            Err(Rejection::BadClaim("aud"))
        );
        assert_eq!(
            has(json!([7, "example.com"])),
            Err(Rejection::BadClaim("aud"))
        );
        assert_eq!(
            has(json!({"aud": "example.com"})),
            Err(Rejection::BadClaim("aud"))
        );
        assert_eq!(has(json!(null)), Err(Rejection::BadClaim("aud")));
    }

    #[test]
    fn object_takes_only_objects() {
        assert_eq!(object(json!({"a": 1})).len(), 1);
        assert!(object(json!([1, 2])).is_empty());
        assert!(object(json!("x")).is_empty());
    }
}
