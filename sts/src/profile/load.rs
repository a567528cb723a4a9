//! Reading `profiles/` and `mappings/`: YAML (serde-saphyr, typed, duplicate keys and alias
//! bombs refused) into compiled profiles, with every problem collected and reported together,
//! each with file and line.
//!
//! Checks: unknown keys, unknown trust entries, kinds and mappings, CEL that does not compile
//! or fails on a typed sample, reserved claims in mappings, and profiles that could match the
//! same request.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};
use serde_saphyr::Spanned;

use super::{ActorMode, CallerPattern, Catalog, Profile};
use crate::expr::{Expr, SourceLoc, Variables, is_missing_key};
use crate::mapping::{ClaimRule, Mapping, MappingError};
use crate::token::{ALWAYS_RESERVED, KindRegistry, ProfileEnv};
use crate::trust::{TrustRegistry, TrustSource};

/// Largest profile or mapping file read.
const MAX_FILE_BYTES: u64 = 256 * 1024;

/// One load problem, located.
#[derive(Debug, Clone)]
pub struct Problem {
    pub loc: SourceLoc,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.loc, self.message)
    }
}

/// Every problem found in one load.
#[derive(Debug, Clone)]
pub struct LoadErrors(pub Vec<Problem>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} problem(s) in profiles and mappings:", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for LoadErrors {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileFile {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    callers: Vec<Spanned<String>>,
    subject: SubjectFile,
    #[serde(default)]
    actor: ActorFile,
    when: Option<Spanned<String>>,
    issue: IssueFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SubjectFile {
    accept: Vec<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ActorFile {
    #[serde(default)]
    mode: ActorMode,
    #[serde(default)]
    accept: Vec<Spanned<String>>,
    /// Accept actor tokens that carry their own `act` chain (kept under `act.actor_act`).
    #[serde(default)]
    chained: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IssueFile {
    kind: Spanned<String>,
    audiences: Vec<Spanned<String>>,
    lifetime: Spanned<String>,
    scope: Option<Spanned<String>>,
    claims: Option<Spanned<String>>,
    #[serde(default)]
    may_outlive_subject: bool,
    /// The output kind's own settings (a mapping the kind parses).
    options: Option<Spanned<serde_json::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    name: Spanned<String>,
    #[serde(default)]
    #[allow(dead_code)]
    description: String,
    claims: BTreeMap<String, Spanned<ClaimNode>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ClaimNode {
    Expr(String),
    Object(BTreeMap<String, Spanned<ClaimNode>>),
}

/// Collects problems while loading.
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, file: &Path, line: u64, column: u64, message: impl Into<String>) {
        self.0.push(Problem {
            loc: SourceLoc {
                file: file.to_owned(),
                line,
                column,
            },
            message: message.into(),
        });
    }

    fn at<T>(&mut self, file: &Path, s: &Spanned<T>, message: impl Into<String>) {
        self.add(file, s.referenced.line(), s.referenced.column(), message);
    }
}

fn loc_of<T>(file: &Path, s: &Spanned<T>) -> SourceLoc {
    SourceLoc {
        file: file.to_owned(),
        line: s.referenced.line(),
        column: s.referenced.column(),
    }
}

/// Loads and checks every profile and mapping; all problems are returned together.
pub fn load(
    profiles_dir: &Path,
    mappings_dir: &Path,
    trust: &TrustRegistry,
    kinds: &KindRegistry,
    trust_domain: &str,
) -> Result<Catalog, LoadErrors> {
    let mut problems = Problems(Vec::new());
    let mapping_files = read_dir_yaml(mappings_dir, &mut problems);
    let profile_files = read_dir_yaml(profiles_dir, &mut problems);
    let env = Env {
        trust,
        kinds,
        trust_domain,
    };
    load_texts(&profile_files, &mapping_files, &env, problems)
}

/// Loads and checks profiles and mappings given as `(file name, text)` pairs: [`load`] without
/// the directory reading (the fuzz target and tools use it). All problems come together.
pub fn load_files(
    profile_files: &[(PathBuf, String)],
    mapping_files: &[(PathBuf, String)],
    trust: &TrustRegistry,
    kinds: &KindRegistry,
    trust_domain: &str,
) -> Result<Catalog, LoadErrors> {
    let env = Env {
        trust,
        kinds,
        trust_domain,
    };
    load_texts(profile_files, mapping_files, &env, Problems(Vec::new()))
}

/// What profiles are checked against: the trust entries, the kinds, our trust domain.
struct Env<'a> {
    trust: &'a TrustRegistry,
    kinds: &'a KindRegistry,
    trust_domain: &'a str,
}

fn load_texts(
    profile_files: &[(PathBuf, String)],
    mapping_files: &[(PathBuf, String)],
    env: &Env<'_>,
    mut problems: Problems,
) -> Result<Catalog, LoadErrors> {
    let mappings = load_mappings(mapping_files, env.kinds, &mut problems);
    let mut profiles = Vec::new();
    for (file, text) in profile_files {
        let (file, text) = (file.as_path(), text.as_str());
        match serde_saphyr::from_str::<ProfileFile>(text) {
            Ok(pf) => {
                if let Some(p) = compile_profile(file, pf, env, &mappings, &mut problems) {
                    profiles.push(Arc::new(p));
                }
            }
            Err(e) => yaml_problem(file, text, &e, &mut problems),
        }
    }
    check_unique_names(&profiles, &mut problems);
    check_overlaps(&profiles, &mut problems);
    if problems.0.is_empty() {
        Ok(Catalog {
            profiles,
            mappings: mappings.into_values().collect(),
        })
    } else {
        Err(LoadErrors(problems.0))
    }
}

fn read_dir_yaml(dir: &Path, problems: &mut Problems) -> Vec<(PathBuf, String)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            problems.add(dir, 0, 0, format!("cannot read directory: {e}"));
            return Vec::new();
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|f| {
            let too_big = std::fs::metadata(&f)
                .map(|m| m.len() > MAX_FILE_BYTES)
                .unwrap_or(false);
            if too_big {
                problems.add(
                    &f,
                    0,
                    0,
                    format!("file is larger than {MAX_FILE_BYTES} bytes"),
                );
                return None;
            }
            match std::fs::read_to_string(&f) {
                Ok(t) => Some((f, t)),
                Err(e) => {
                    problems.add(&f, 0, 0, format!("cannot read: {e}"));
                    None
                }
            }
        })
        .collect()
}

/// A parse or shape problem of one file, with the key path it is about when one is written at
/// that position.
fn yaml_problem(file: &Path, text: &str, e: &serde_saphyr::Error, problems: &mut Problems) {
    let (at, message) = crate::yaml::describe_error(e);
    let (line, col) = at.unwrap_or((0, 0));
    let message = match crate::yaml::path_at(text, line, col) {
        Some(path) if !message.starts_with(&format!("`{path}`")) => format!("{path}: {message}"),
        _ => message,
    };
    problems.add(file, line, col, message);
}

fn load_mappings(
    files: &[(PathBuf, String)],
    kinds: &KindRegistry,
    problems: &mut Problems,
) -> HashMap<String, Arc<Mapping>> {
    let mut out = HashMap::new();
    let mut first_at: HashMap<String, SourceLoc> = HashMap::new();
    for (file, text) in files {
        let (file, text) = (file.as_path(), text.as_str());
        let mf = match serde_saphyr::from_str::<MappingFile>(text) {
            Ok(m) => m,
            Err(e) => {
                yaml_problem(file, text, &e, problems);
                continue;
            }
        };
        let claims = compile_nodes(file, &mf.claims, 0, problems);
        for name in mf.claims.keys() {
            if ALWAYS_RESERVED.contains(&name.as_str()) {
                let s = &mf.claims[name];
                problems.at(
                    file,
                    s,
                    format!("claim `{name}` is reserved: the engine sets it"),
                );
            }
        }
        let mapping = Mapping {
            name: mf.name.value.clone(),
            claims,
        };
        check_mapping_sample(file, &mapping, kinds, problems);
        if let Some(first) = first_at.get(&mf.name.value) {
            problems.at(
                file,
                &mf.name,
                format!("mapping `{}` is also defined at {first}", mf.name.value),
            );
            continue;
        }
        first_at.insert(mf.name.value.clone(), loc_of(file, &mf.name));
        out.insert(mf.name.value, Arc::new(mapping));
    }
    out
}

fn compile_nodes(
    file: &Path,
    nodes: &BTreeMap<String, Spanned<ClaimNode>>,
    parent_line: u64,
    problems: &mut Problems,
) -> Vec<(String, ClaimRule)> {
    let mut out = Vec::new();
    for (name, node) in nodes {
        let mut loc = loc_of(file, node);
        if loc.line == 0 {
            loc.line = parent_line; // serde-saphyr loses positions inside untagged enums
        }
        if name.is_empty() {
            problems.add(file, loc.line, loc.column, "claim names cannot be empty");
            continue;
        }
        match &node.value {
            ClaimNode::Expr(src) => match Expr::compile(src, loc.clone()) {
                Ok(e) => out.push((name.clone(), ClaimRule::Expr(e))),
                Err(m) => problems.add(file, loc.line, loc.column, format!("claim `{name}`: {m}")),
            },
            ClaimNode::Object(children) => {
                out.push((
                    name.clone(),
                    ClaimRule::Object(compile_nodes(file, children, loc.line, problems)),
                ));
            }
        }
    }
    out
}

fn resolve_trust(
    file: &Path,
    names: &[Spanned<String>],
    trust: &TrustRegistry,
    problems: &mut Problems,
) -> Vec<Arc<TrustSource>> {
    names
        .iter()
        .filter_map(|n| match trust.get(&n.value) {
            Some(t) => Some(t.clone()),
            None => {
                let known: Vec<&str> = trust.names().collect();
                problems.at(
                    file,
                    n,
                    format!(
                        "unknown trust entry `{}` (configured: {})",
                        n.value,
                        known.join(", ")
                    ),
                );
                None
            }
        })
        .collect()
}

fn compile_expr(
    file: &Path,
    s: &Option<Spanned<String>>,
    what: &str,
    problems: &mut Problems,
) -> Option<Expr> {
    let s = s.as_ref()?;
    match Expr::compile(&s.value, loc_of(file, s)) {
        Ok(e) => Some(e),
        Err(m) => {
            problems.at(file, s, format!("{what}: {m}"));
            None
        }
    }
}

fn compile_profile(
    file: &Path,
    pf: ProfileFile,
    env: &Env<'_>,
    mappings: &HashMap<String, Arc<Mapping>>,
    problems: &mut Problems,
) -> Option<Profile> {
    let (trust, kinds) = (env.trust, env.kinds);
    let before = problems.0.len();
    let callers: Vec<CallerPattern> = pf
        .callers
        .iter()
        .filter_map(|c| {
            CallerPattern::parse(&c.value)
                .map_err(|m| problems.at(file, c, m))
                .ok()
        })
        .collect();
    if pf.callers.is_empty() {
        problems.at(file, &pf.name, "callers: at least one caller is required");
    }
    let subject_sources = resolve_trust(file, &pf.subject.accept, trust, problems);
    if pf.subject.accept.is_empty() {
        problems.at(
            file,
            &pf.name,
            "subject.accept: at least one trust entry is required",
        );
    }
    let actor_sources = resolve_trust(file, &pf.actor.accept, trust, problems);
    // A catch-all entry (introspection) takes every token no other entry recognizes: a second
    // one in the same list would never be reached, and its tokens would go to the first.
    for (list, sources) in [
        (&pf.subject.accept, &subject_sources),
        (&pf.actor.accept, &actor_sources),
    ] {
        if sources.iter().filter(|s| s.verifier.is_fallback()).count() > 1
            && let Some(first) = list.first()
        {
            problems.at(
                file,
                first,
                "at most one oauth-introspection entry may be accepted per list: the second would never be asked",
            );
        }
    }
    match (pf.actor.mode, pf.actor.accept.is_empty()) {
        (ActorMode::Forbidden, false) => problems.at(
            file,
            &pf.actor.accept[0],
            "actor.accept is set but actor.mode is forbidden",
        ),
        (ActorMode::Optional | ActorMode::Required, true) => problems.at(
            file,
            &pf.name,
            "actor.accept: a profile that takes actors must name their trust entries",
        ),
        _ => {}
    }
    let kind = kinds.output(&pf.issue.kind.value).cloned();
    if kind.is_none() {
        problems.at(
            file,
            &pf.issue.kind,
            format!(
                "unknown kind `{}` (issue.kind must be one of: {})",
                pf.issue.kind.value,
                kinds.output_names().join(", ")
            ),
        );
    }
    let max_lifetime = kind
        .as_ref()
        .map_or(Duration::from_secs(24 * 3600), |k| k.max_lifetime());
    let audiences: Vec<String> = pf.issue.audiences.iter().map(|a| a.value.clone()).collect();
    if audiences.is_empty() || audiences.iter().any(String::is_empty) {
        problems.at(
            file,
            &pf.issue.kind,
            "issue.audiences: at least one non-empty target is required",
        );
    }
    let lifetime = match humantime::parse_duration(&pf.issue.lifetime.value) {
        Ok(d) if d >= Duration::from_secs(1) && d <= max_lifetime => d,
        Ok(_) => {
            problems.at(
                file,
                &pf.issue.lifetime,
                format!(
                    "issue.lifetime must be between 1s and {} for kind {}",
                    short_duration(max_lifetime),
                    pf.issue.kind.value
                ),
            );
            Duration::ZERO
        }
        Err(e) => {
            problems.at(file, &pf.issue.lifetime, format!("issue.lifetime: {e}"));
            Duration::ZERO
        }
    };
    let when = compile_expr(file, &pf.when, "when", problems);
    let scope = compile_expr(file, &pf.issue.scope, "issue.scope", problems);
    let mapping = pf
        .issue
        .claims
        .as_ref()
        .and_then(|m| match mappings.get(&m.value) {
            Some(found) => Some(found.clone()),
            None => {
                problems.at(file, m, format!("unknown mapping `{}`", m.value));
                None
            }
        });
    let mut kind = kind?;
    // Kinds whose tokens mean something for one output only (our Txn-Tokens, subjects a
    // caller asserts) feed that output alone, and never as actors.
    for (at, source) in pf
        .subject
        .accept
        .iter()
        .filter_map(|n| Some((n, trust.get(&n.value)?)))
    {
        if let Some(only) = source.kind.only_for_output()
            && only != kind.name()
        {
            problems.at(
                file,
                at,
                format!(
                    "trust entry `{}` (kind {}) can only be the subject of an issue.kind {only} profile",
                    source.name,
                    source.kind.name()
                ),
            );
        }
    }
    for (at, source) in pf
        .actor
        .accept
        .iter()
        .filter_map(|n| Some((n, trust.get(&n.value)?)))
    {
        if source.kind.only_for_output().is_some() {
            problems.at(
                file,
                at,
                format!(
                    "trust entry `{}` (kind {}) cannot be an actor",
                    source.name,
                    source.kind.name()
                ),
            );
        }
    }
    let subject_types: Vec<&str> = subject_sources.iter().flat_map(|s| s.types()).collect();
    let caller_asserted_types: Vec<&str> = subject_sources
        .iter()
        .filter(|s| s.verifier.caller_asserted())
        .flat_map(|s| s.types())
        .collect();
    let kind_env = ProfileEnv {
        options: pf.issue.options.as_ref().map(|o| &o.value),
        audiences: &audiences,
        subject_types: &subject_types,
        caller_asserted_types: &caller_asserted_types,
        trust_domain: env.trust_domain,
    };
    match kind.configure(&kind_env) {
        Ok(Some(configured)) => kind = configured,
        Ok(None) => {}
        Err(messages) => {
            for m in messages {
                match &pf.issue.options {
                    Some(o) => problems.at(file, o, format!("issue.{m}")),
                    None => problems.at(file, &pf.issue.kind, format!("issue.{m}")),
                }
            }
            return None;
        }
    }
    if let Some(m) = &mapping {
        for claim in m.claim_names().filter(|c| !kind.may_write(c)) {
            problems.at(
                file,
                pf.issue.claims.as_ref()?,
                format!(
                    "mapping `{}` writes `{claim}`, which kind {} reserves",
                    m.name,
                    kind.name()
                ),
            );
        }
    }
    let profile = Profile {
        at: loc_of(file, &pf.name),
        name: pf.name.value.clone(),
        description: pf.description,
        file: file.to_owned(),
        callers,
        subject_sources,
        actor_mode: pf.actor.mode,
        chained_actors: pf.actor.chained,
        actor_sources,
        when,
        kind,
        audiences,
        lifetime_secs: lifetime.as_secs() as i64,
        scope,
        mapping,
        may_outlive_subject: pf.issue.may_outlive_subject,
    };
    check_against_sample(&profile, problems);
    (problems.0.len() == before).then_some(profile)
}

/// `24h`, `5m` or `90s`: a duration as an admin writes it.
fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s.is_multiple_of(3600) => format!("{}h", s / 3600),
        _ if s.is_multiple_of(60) => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

/// The typed sample every expression is evaluated against at load: the input kind's typical
/// claims (also used as the actor's), caller, request, now.
struct Sample {
    claims: Value,
    caller: Value,
    request: Value,
    now: i64,
}

impl Sample {
    fn new(claims: crate::jose::Claims, subject_type: &str) -> Self {
        let now = claims
            .get("iat")
            .and_then(Value::as_i64)
            .unwrap_or(1_700_000_000);
        Self {
            claims: Value::Object(claims),
            caller: json!({"id": "sample-caller", "method": "private_key_jwt"}),
            request: json!({
                "audience": ["sample-audience"], "resource": [], "scope": "read",
                "requested_token_type": "", "subject_token_type": subject_type,
                "actor_token_type": "",
                "request_context": {"req_ip": "192.0.2.1", "authn": "pwd"},
                "request_details": {"action": "BUY", "ticker": "MSFT"}
            }),
            now,
        }
    }

    fn vars<'a>(&'a self, actor: &'a Value) -> Variables<'a> {
        Variables::new(&self.claims, actor, &self.caller, &self.request, self.now)
    }
}

/// Evaluates a mapping on its own (with an actor) against every input kind's sample, so a
/// mapping no profile uses yet is checked too.
/// A mapping that fails on the sample of every input kind can never work. One that fails only
/// for some kinds is judged with the profiles that use it (`check_against_sample`), on the
/// samples of the kinds those profiles accept.
fn check_mapping_sample(file: &Path, m: &Mapping, kinds: &KindRegistry, problems: &mut Problems) {
    let mut first_failure = None;
    for name in kinds.input_names() {
        let Some(kind) = kinds.input(name) else {
            continue;
        };
        let ty = kind.token_types().first().copied().unwrap_or("");
        let sample = Sample::new(kind.sample_claims(), ty);
        match m.apply(&sample.vars(&sample.claims)) {
            Err(MappingError::Failed { at, why }) => {
                first_failure.get_or_insert((at, why, name));
            }
            _ => return,
        }
    }
    if let Some((at, why, name)) = first_failure {
        problems.add(
            file,
            0,
            0,
            format!(
                "mapping `{}` fails at {at}: {why} (on a sample {name} request)",
                m.name
            ),
        );
    }
}

/// Evaluates the profile's CEL against typed samples, once per actor shape the profile allows,
/// so type errors, unknown variables and wrong result types surface at load (stack.md: the CEL
/// crate has no type checker).
fn check_against_sample(p: &Profile, problems: &mut Problems) {
    let shapes: &[bool] = match p.actor_mode {
        ActorMode::Forbidden => &[false],
        ActorMode::Required => &[true],
        ActorMode::Optional => &[false, true],
    };
    // One sample per distinct subject kind the profile accepts.
    let mut seen: Vec<&str> = Vec::new();
    for source in &p.subject_sources {
        if seen.contains(&source.kind.name()) {
            continue;
        }
        seen.push(source.kind.name());
        let ty = source.kind.token_types().first().copied().unwrap_or("");
        let sample = Sample::new(source.kind.sample_claims(), ty);
        check_shapes(p, &sample, shapes, problems);
    }
}

fn check_shapes(p: &Profile, sample: &Sample, shapes: &[bool], problems: &mut Problems) {
    for &with_actor in shapes {
        let actor = if with_actor {
            sample.claims.clone()
        } else {
            Value::Null
        };
        let vars = sample.vars(&actor);
        let shape = if with_actor {
            "with an actor"
        } else {
            "without an actor"
        };
        let mut report = |e: &Expr, m: String| {
            problems.add(
                &e.loc.file,
                e.loc.line,
                e.loc.column,
                format!("{m} (on a sample request {shape})"),
            )
        };
        if let Some(w) = &p.when {
            match w.eval(&vars) {
                Ok(cel::Value::Bool(_)) => {}
                Ok(other) => report(w, format!("when must be a bool, got {:?}", other.type_of())),
                Err(e) if is_missing_key(&e) => {}
                Err(e) => report(w, format!("when fails: {e}")),
            }
        }
        if let Some(s) = &p.scope {
            match s.eval(&vars) {
                Ok(cel::Value::String(_) | cel::Value::Null) => {}
                Ok(other) => report(
                    s,
                    format!("issue.scope must be a string, got {:?}", other.type_of()),
                ),
                Err(e) if is_missing_key(&e) => {}
                Err(e) => report(s, format!("issue.scope fails: {e}")),
            }
        }
        if let Some(m) = &p.mapping
            && let Err(MappingError::Failed { at, why }) = m.apply(&vars)
        {
            problems.add(
                &p.file,
                0,
                0,
                format!(
                    "mapping `{}` fails at {at}: {why} (on a sample request {shape})",
                    m.name
                ),
            );
        }
    }
}

fn check_unique_names(profiles: &[Arc<Profile>], problems: &mut Problems) {
    let mut seen: HashMap<&str, &SourceLoc> = HashMap::new();
    for p in profiles {
        if let Some(first) = seen.insert(&p.name, &p.at) {
            problems.add(
                &p.file,
                p.at.line,
                p.at.column,
                format!("profile `{}` is also defined at {first}", p.name),
            );
        }
    }
}

/// Two profiles that could both match one request make selection ambiguous (design §4).
fn check_overlaps(profiles: &[Arc<Profile>], problems: &mut Problems) {
    for (i, a) in profiles.iter().enumerate() {
        for b in &profiles[i + 1..] {
            // A second definition of one name is reported as such, never as an overlap.
            if a.name == b.name {
                continue;
            }
            // Different output kinds, or subject token types neither accepts in common, never
            // compete for one request.
            if a.kind.name() != b.kind.name()
                || !a.subject_types().any(|t| b.accepts_subject_type(t))
            {
                continue;
            }
            let caller = a
                .callers
                .iter()
                .find(|x| b.callers.iter().any(|y| x.overlaps(y)));
            let target = a.audiences.iter().find(|t| b.audiences.contains(t));
            if let (Some(c), Some(t)) = (caller, target) {
                problems.add(&b.file, b.at.line, b.at.column, format!(
                    "profile `{}` overlaps profile `{}` (at {}): both match caller `{c}` asking for `{t}`",
                    b.name, a.name, a.at
                ));
            }
        }
    }
}
