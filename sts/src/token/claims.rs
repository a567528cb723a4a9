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
            // an `exp` of i64::MAX or 1e300 is refused, never wrapped.
            Some(Value::Number(n)) => n
                .as_i64()
                .or_else(|| {
                    n.as_f64()
                        .filter(|f| f.is_finite() && f.abs() < 1e15)
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
