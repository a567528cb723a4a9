//! `sts token verify`: checks one token (and the proof headers that go with it) against the
//! configured trust at a given time, and says which trust entry verified it and its claims, or
//! the precise reason each candidate entry refused it — the tool an admin reaches for when a
//! workload is refused.
//!
//! It runs each trust entry's own verifier, with a scratch replay guard so that checking a
//! proof never uses it up. It fetches remote keys like the service would, and writes nothing.
//! It prints claims and reasons, never the token.

use serde::Serialize;

use crate::app::Snapshot;
use crate::clock::UnixTime;
use crate::jose::Claims;
use crate::secret::Token;
use crate::store::MemoryReplayGuard;
use crate::token::{KindRegistry, Presented, RequestFacts, VerifyContext};

/// What to check.
pub struct Check {
    pub token: Token,
    /// The declared type (`subject_token_type`); `None`: every entry is tried.
    pub token_type: Option<String>,
    /// Request headers that go with it (lower-case names), e.g. `workload-proof-token`.
    pub headers: Vec<(String, String)>,
    pub now: UnixTime,
}

/// One trust entry's verdict.
#[derive(Debug, Serialize)]
pub struct Attempt {
    pub trust: String,
    pub kind: &'static str,
    /// `verified`, `refused` or `not this entry's token`.
    pub outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub now: UnixTime,
    pub attempts: Vec<Attempt>,
    /// The verified claims, when an entry verified the token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<Claims>,
}

impl Report {
    pub fn verified(&self) -> bool {
        self.claims.is_some()
    }
}

/// Tries the token against every trust entry that takes its type and recognizes it.
pub async fn verify(snap: &Snapshot, kinds: &KindRegistry, check: Check) -> Report {
    let mut facts = RequestFacts::post(&snap.endpoint);
    for (name, value) in &check.headers {
        // Only names some kind declares reach a verifier, as in the service.
        if let Some(declared) = kinds
            .headers()
            .iter()
            .find(|h| h.eq_ignore_ascii_case(name))
        {
            facts.headers.push((declared, value.clone()));
        }
    }
    let scratch = MemoryReplayGuard::new(64);
    let ctx = VerifyContext {
        now: check.now,
        leeway: snap.settings.leeway.as_secs() as i64,
        max_token_bytes: snap.settings.limits.max_token_bytes,
        facts: &facts,
        replay: &scratch,
        exchange: None,
        caller: None,
    };
    let mut report = Report {
        now: check.now,
        attempts: Vec::new(),
        claims: None,
    };
    for source in snap.trust.all() {
        let declared = match &check.token_type {
            Some(t) if !source.accepts_type(t) => continue,
            Some(t) => t.clone(),
            None => source
                .types()
                .first()
                .map(|t| (*t).to_owned())
                .unwrap_or_default(),
        };
        let presented = Presented::new(&check.token, &declared, ctx.max_token_bytes);
        let mut attempt = Attempt {
            trust: source.name.to_string(),
            kind: source.kind.name(),
            outcome: "not this entry's token",
            reason: None,
        };
        if !source.verifier.recognizes(&presented) {
            attempt.reason = Some(match &presented.jws {
                Err(e) => e.to_string(),
                Ok(_) => format!(
                    "its issuer, typ or trust domain is not this entry's ({})",
                    source.verifier.issuer()
                ),
            });
            report.attempts.push(attempt);
            continue;
        }
        match source.verifier.verify(presented, &ctx).await {
            Ok(v) => {
                attempt.outcome = "verified";
                report.attempts.push(attempt);
                report.claims = Some(v.claims);
                return report;
            }
            Err(r) => {
                attempt.outcome = "refused";
                attempt.reason = Some(r.to_string());
                report.attempts.push(attempt);
            }
        }
    }
    report
}

impl Report {
    /// The report as text for a terminal.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(out, "time: {}", self.now);
        if self.attempts.is_empty() {
            let _ = writeln!(out, "no trust entry takes this token type");
        }
        for a in &self.attempts {
            match &a.reason {
                Some(r) => {
                    let _ = writeln!(
                        out,
                        "trust entry `{}` ({}): {}: {r}",
                        a.trust, a.kind, a.outcome
                    );
                }
                None => {
                    let _ = writeln!(out, "trust entry `{}` ({}): {}", a.trust, a.kind, a.outcome);
                }
            }
        }
        match &self.claims {
            Some(c) => {
                let _ = writeln!(
                    out,
                    "{}",
                    serde_json::to_string_pretty(c).unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(out, "result: refused");
            }
        }
        out
    }
}
