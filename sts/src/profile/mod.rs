//! Exchange profiles: who may call, which input tokens from which trust sources they accept,
//! under which conditions, and what they issue. Loaded with their mappings from YAML, compiled
//! and cross-checked up front; `Catalog::select` picks the one profile for a request.
//!
//! Nothing is allowed unless a profile allows it (design invariant 1). This module does not
//! verify tokens or sign anything; at request time it only matches and selects.

mod caller;
mod load;

use std::path::PathBuf;
use std::sync::Arc;

pub use caller::CallerPattern;
pub use load::{LoadErrors, Problem, load, load_files};

use crate::error::OAuthError;
use crate::expr::Expr;
use crate::mapping::Mapping;
use crate::token::Minter;
use crate::trust::TrustSource;

/// Whether a profile takes an `actor_token` (RFC 8693 §2.1, delegation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorMode {
    #[default]
    Forbidden,
    Optional,
    Required,
}

/// A compiled profile.
pub struct Profile {
    pub name: String,
    /// Where its `name` is written.
    pub at: crate::expr::SourceLoc,
    pub description: String,
    pub file: PathBuf,
    pub callers: Vec<CallerPattern>,
    pub subject_sources: Vec<Arc<TrustSource>>,
    pub actor_mode: ActorMode,
    /// Whether an actor token that carries its own `act` chain is accepted.
    pub chained_actors: bool,
    pub actor_sources: Vec<Arc<TrustSource>>,
    pub when: Option<Expr>,
    /// The output kind (`issue.kind`).
    pub kind: Arc<dyn Minter>,
    /// Targets this profile issues for (`audience` or `resource` values); the first is the
    /// default when a request names none.
    pub audiences: Vec<String>,
    pub lifetime_secs: i64,
    pub scope: Option<Expr>,
    pub mapping: Option<Arc<Mapping>>,
    pub may_outlive_subject: bool,
}

impl std::fmt::Debug for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Profile")
            .field("name", &self.name)
            .field("file", &self.file)
            .field("kind", &self.kind.name())
            .field("audiences", &self.audiences)
            .finish_non_exhaustive()
    }
}

impl Profile {
    /// Whether one of the subject's trust entries takes tokens declared as `token_type`.
    pub fn accepts_subject_type(&self, token_type: &str) -> bool {
        self.subject_sources
            .iter()
            .any(|s| s.accepts_type(token_type))
    }

    /// The subject token types this profile accepts.
    pub fn subject_types(&self) -> impl Iterator<Item = &str> + '_ {
        self.subject_sources.iter().flat_map(|s| s.types())
    }

    pub fn admits_caller(&self, id: &str) -> bool {
        self.callers.iter().any(|p| p.matches(id))
    }

    /// Whether this profile can issue for every requested target (none requested: yes, to its
    /// default).
    pub fn serves(&self, targets: &[String]) -> bool {
        targets.iter().all(|t| self.audiences.contains(t))
    }

    /// The `aud` of the issued token: the requested targets, or the default.
    pub fn audience_for(&self, targets: &[String]) -> Vec<String> {
        if targets.is_empty() {
            return self.audiences.iter().take(1).cloned().collect();
        }
        let mut out: Vec<String> = Vec::with_capacity(targets.len());
        for t in targets {
            if !out.contains(t) {
                out.push(t.clone());
            }
        }
        out
    }
}

/// All loaded profiles.
#[derive(Debug, Default)]
pub struct Catalog {
    pub profiles: Vec<Arc<Profile>>,
    pub mappings: Vec<Arc<Mapping>>,
}

/// The first selection stage a profile fails for a request (design §3 step 2), in the order
/// the stages are checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Miss {
    /// `callers` does not admit the client.
    Caller,
    /// It issues another token type than `requested_token_type`.
    RequestedType,
    /// None of its subject trust entries takes the `subject_token_type`.
    SubjectType,
    /// It does not issue for every requested `audience`/`resource`.
    Target,
}

/// What a request asks of selection.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    pub caller_id: &'a str,
    pub subject_type: &'a str,
    pub requested_type: Option<&'a str>,
    pub targets: &'a [String],
}

impl Profile {
    /// The first stage at which this profile does not serve `q`, or `None` when it matches.
    pub fn miss(&self, q: &Query<'_>) -> Option<Miss> {
        if !self.admits_caller(q.caller_id) {
            Some(Miss::Caller)
        } else if q
            .requested_type
            .is_some_and(|t| t != self.kind.issued_token_type())
        {
            Some(Miss::RequestedType)
        } else if !self.accepts_subject_type(q.subject_type) {
            Some(Miss::SubjectType)
        } else if !self.serves(q.targets) {
            Some(Miss::Target)
        } else {
            None
        }
    }
}

impl Catalog {
    /// The one profile for (caller, subject token type, requested token type, targets) —
    /// design §3 step 2. When none matches, the error names the furthest stage any profile
    /// reached.
    pub fn select(
        &self,
        caller_id: &str,
        subject_type: &str,
        requested_type: Option<&str>,
        targets: &[String],
    ) -> Result<&Arc<Profile>, OAuthError> {
        let q = Query {
            caller_id,
            subject_type,
            requested_type,
            targets,
        };
        let mut furthest = None;
        let mut found: Option<&Arc<Profile>> = None;
        for p in &self.profiles {
            match p.miss(&q) {
                None if found.is_some() => {
                    return Err(OAuthError::invalid_target(
                        "several targets are possible: name one with audience or resource",
                    ));
                }
                None => found = Some(p),
                Some(m) => furthest = furthest.max(Some(m)),
            }
        }
        found.ok_or_else(|| match furthest {
            None | Some(Miss::Caller) => {
                OAuthError::unauthorized_client("no exchange profile allows this client")
            }
            Some(Miss::RequestedType) => {
                OAuthError::invalid_request("requested_token_type is not issued to this client")
            }
            Some(Miss::SubjectType) => OAuthError::invalid_request(
                "subject_token_type is not accepted by this exchange profile",
            ),
            Some(Miss::Target) => OAuthError::invalid_target(
                "no profile issues tokens for the requested audience or resource",
            ),
        })
    }

    pub fn by_name(&self, name: &str) -> Option<&Arc<Profile>> {
        self.profiles.iter().find(|p| p.name == name)
    }
}
