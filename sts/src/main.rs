//! The `sts` command line: `serve`, `check`, `hash-secret`, and `token` client helpers.
//!
//! Only argument handling and process concerns (logging, exit codes) live here; everything the
//! service does is in the library, built by `AppState::build` exactly as the tests build it.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sts::app::AppState;
use sts::auth::SecretHash;
use sts::clock::{Clock, SystemClock};
use sts::config::Settings;

/// mimalloc for every Rust allocation: glibc's malloc/free had been ≈7% of a loaded server's CPU
/// (docs/benchmarks.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "sts",
    version,
    about = "Security-boundary token exchange service (RFC 8693)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (the embedded development default without --config).
    Serve {
        #[arg(long, env = "STS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Validate settings, profiles and mappings offline; exit non-zero on any problem.
    Check {
        #[arg(long, env = "STS_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Dry-run one token request: which profile, why, each condition's value, and the claims
    /// that would be issued or the refusal. Verifies given tokens; never signs.
    Explain(ExplainArgs),
    /// Make a stored client secret (secret_hash) for client_secret_basic.
    HashSecret {
        /// Read the secret from standard input instead of generating one.
        #[arg(long)]
        stdin: bool,
    },
    /// Client helpers.
    Token {
        #[command(subcommand)]
        helper: TokenHelper,
    },
}

#[derive(clap::Args)]
struct ExplainArgs {
    #[arg(long, env = "STS_CONFIG")]
    config: Option<PathBuf>,
    /// The calling client's id (its authentication is assumed to succeed).
    #[arg(long)]
    client_id: String,
    /// A form field, `name=value` (repeatable): subject_token_type, actor_token_type,
    /// audience, resource, scope, requested_token_type. subject_token_type defaults to the
    /// access_token type.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// The subject token (verified with the configured keys); `@FILE` reads a file, `-`
    /// standard input (prefer these: a token in the arguments shows in `ps` and shell history).
    #[arg(
        long,
        conflicts_with = "subject_claims",
        required_unless_present = "subject_claims"
    )]
    subject_token: Option<String>,
    /// Instead of a token: its claims as a JSON object (or `@FILE`), taken as given.
    #[arg(long)]
    subject_claims: Option<String>,
    /// The actor token (verified); `@FILE` or `-` as for the subject.
    #[arg(long, conflicts_with = "actor_claims")]
    actor_token: Option<String>,
    /// Instead of an actor token: its claims as JSON (or `@FILE`), taken as given.
    #[arg(long)]
    actor_claims: Option<String>,
    /// Evaluate at this time: Unix seconds or RFC 3339 (default: now).
    #[arg(long)]
    at: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Subcommand)]
enum TokenHelper {
    /// Check a token (and its proof headers) against the configured trust, offline: prints
    /// the verified claims, or why each trust entry refused it. Exit 0 verified, 1 refused.
    Verify(VerifyArgs),
    /// Print an access token from the development identity provider (dev mode only).
    DevSubject(DevSubjectArgs),
}

#[derive(clap::Args)]
struct DevSubjectArgs {
    #[arg(long, env = "STS_CONFIG")]
    config: Option<PathBuf>,
    /// The token's subject.
    #[arg(long, default_value = "alice")]
    sub: String,
    /// Space-separated scopes.
    #[arg(long, default_value = "orders:read orders:write")]
    scope: String,
    /// Lifetime, e.g. 10m.
    #[arg(long, default_value = "10m")]
    lifetime: humantime::Duration,
    /// Add `may_act: {sub: …}` naming the only actor allowed to exchange it.
    #[arg(long)]
    may_act: Option<String>,
}

fn main() -> ExitCode {
    sts::install_crypto_providers();
    let cli = Cli::parse();
    // Tracing is for the service only. Its settings are read before logging starts; a broken
    // configuration is then reported by `serve` itself, with tracing off.
    let service = match &cli.command {
        Command::Serve { config } => Settings::load(config.as_deref()).ok(),
        _ => None,
    };
    let (log_guard, exporter) = match init_logging(service.as_ref()) {
        Ok(started) => started,
        Err(e) => {
            eprintln!("sts: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Check { config } => check(config),
        Command::Explain(args) => return explain(args),
        Command::HashSecret { stdin } => hash_secret(stdin),
        Command::Token {
            helper: TokenHelper::Verify(args),
        } => {
            return match token_verify(args) {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("sts: {e}");
                    ExitCode::from(2)
                }
            };
        }
        Command::Token {
            helper: TokenHelper::DevSubject(args),
        } => dev_subject(args),
    };
    // The spans not yet exported are sent now, before the last log lines.
    drop(exporter);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            drop(log_guard); // the log lines before the error message
            eprintln!("sts: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to standard error through a shared buffer flushed every 200 ms (`sts::logs`); the
/// returned guard flushes what is left when `main` returns. With `telemetry` set, request
/// spans are exported too (`sts::telemetry`), and the returned exporter sends the last ones
/// when dropped.
fn init_logging(
    service: Option<&Settings>,
) -> Result<(sts::logs::FlushOnDrop, Option<sts::telemetry::Exporter>), String> {
    use std::io::IsTerminal;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::io::stderr().is_terminal();
    let (writer, guard) = sts::logs::buffered_stderr();
    let json = std::env::var("STS_LOG_FORMAT").is_ok_and(|v| v == "json");
    if let Some((exporter, tracer)) = service.map(start_tracing).transpose()?.flatten() {
        init_with_tracing(filter, ansi, json, writer, tracer)?;
        return Ok((guard, Some(exporter)));
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer);
    if json {
        builder.json().init();
    } else if ansi {
        builder.init();
    } else {
        // The same text, with the timestamp and the common fields written without `core::fmt`.
        builder
            .fmt_fields(sts::log_format::PlainFields)
            .with_timer(sts::log_format::Rfc3339Micros)
            .init();
    }
    Ok((guard, None))
}

/// The exporter `settings.telemetry` asks for, trusting `outbound_ca_file` as outbound calls do.
fn start_tracing(
    settings: &Settings,
) -> Result<Option<(sts::telemetry::Exporter, opentelemetry_sdk::trace::Tracer)>, String> {
    let roots = match &settings.outbound_ca_file {
        Some(path) if !settings.telemetry.otlp_endpoint.is_empty() => Some(
            std::fs::read(path).map_err(|e| format!("outbound_ca_file {}: {e}", path.display()))?,
        ),
        _ => None,
    };
    sts::telemetry::start(&settings.telemetry, roots.as_deref())
}

/// The same logs as [`init_logging`] without tracing, plus the OpenTelemetry layer: each layer
/// has its own filter, so the logs never see request spans and the exporter sees nothing else.
fn init_with_tracing(
    filter: tracing_subscriber::EnvFilter,
    ansi: bool,
    json: bool,
    writer: sts::logs::LogWriter,
    tracer: opentelemetry_sdk::trace::Tracer,
) -> Result<(), String> {
    use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
    use tracing_subscriber::{Layer, Registry, layer::SubscriberExt, util::SubscriberInitExt};
    let logs = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(writer);
    let logs: Box<dyn Layer<Registry> + Send + Sync> = if json {
        logs.json().boxed()
    } else if ansi {
        logs.boxed()
    } else {
        logs.fmt_fields(sts::log_format::PlainFields)
            .with_timer(sts::log_format::Rfc3339Micros)
            .boxed()
    };
    // Not through the EnvFilter alone: a span-name directive in RUST_LOG would override it.
    let no_spans = filter_fn(|meta| meta.target() != sts::telemetry::TARGET);
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_tracked_inactivity(false)
        .with_filter(Targets::new().with_target(sts::telemetry::TARGET, tracing::Level::INFO));
    tracing_subscriber::registry()
        .with(logs.with_filter(filter.and(no_spans)))
        .with(spans)
        .try_init()
        .map_err(|e| format!("logging: {e}"))
}

fn serve(config: Option<PathBuf>) -> Result<(), String> {
    actix_web::rt::System::new().block_on(async move {
        let kinds = sts::token::KindRegistry::builtin();
        // Every settings problem at once; `build_with` checks the rest before writing anything.
        let settings = sts::app::Snapshot::load_config(config.as_deref(), &kinds)
            .map_err(|e| e.to_string())?;
        let state = AppState::build_with(settings, Arc::new(SystemClock), kinds)
            .await
            .map_err(|e| e.to_string())?;
        sts::http::serve(state)
            .await
            .map_err(|e| format!("server: {e}"))
    })
}

fn check(config: Option<PathBuf>) -> Result<(), String> {
    let kinds = sts::token::KindRegistry::builtin();
    let (settings, catalog) = actix_web::rt::System::new()
        .block_on(sts::app::Snapshot::check_config(config.as_deref(), &kinds))
        .map_err(|e| e.to_string())?;
    let dev = usize::from(settings.dev);
    println!(
        "ok: {} profile(s), {} mapping(s), {} trust entr(ies), {} client(s)",
        catalog.profiles.len(),
        catalog.mappings.len(),
        settings.trust.len() + dev,
        settings.clients.len() + dev
    );
    Ok(())
}

/// Prints the explanation; exits 0 when the request would be granted, 1 when refused, 2 when
/// the explanation itself could not run.
fn explain(args: ExplainArgs) -> ExitCode {
    match run_explain(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("sts: {e}");
            ExitCode::from(2)
        }
    }
}

fn run_explain(args: ExplainArgs) -> Result<bool, String> {
    use sts::explain::{Input, Outcome, Request};
    let settings = Settings::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    let now = match &args.at {
        None => SystemClock.now(),
        Some(t) => parse_time(t)?,
    };
    let mut params = Vec::new();
    for (i, p) in args.params.iter().enumerate() {
        let (k, v) = name_value("--param", i, p)?;
        params.push((k.to_owned(), v.to_owned()));
    }
    if args.subject_token.as_deref() == Some("-") && args.actor_token.as_deref() == Some("-") {
        return Err("only one of --subject-token and --actor-token can read standard input".into());
    }
    let mut default_type = |name: &str| {
        if !params.iter().any(|(k, _)| k == name) {
            params.push((name.to_owned(), sts::token::types::ACCESS_TOKEN.to_owned()));
        }
    };
    default_type("subject_token_type");
    let actor = match (&args.actor_token, &args.actor_claims) {
        (Some(t), _) => Some(Input::Token(sts::secret::Token::new(read_arg(t)?))),
        (None, Some(c)) => Some(Input::Claims(read_claims(c)?)),
        (None, None) => None,
    };
    if actor.is_some() {
        default_type("actor_token_type");
    }
    let subject = match (&args.subject_token, &args.subject_claims) {
        (Some(t), _) => Input::Token(sts::secret::Token::new(read_arg(t)?)),
        (None, Some(c)) => Input::Claims(read_claims(c)?),
        (None, None) => return Err("give --subject-token or --subject-claims".into()),
    };
    let request = Request {
        client_id: args.client_id,
        params,
        subject,
        actor,
        now,
    };
    let kinds = sts::token::KindRegistry::builtin();
    let report = actix_web::rt::System::new().block_on(async {
        let snap = sts::app::Snapshot::for_dry_run(&settings, &kinds).map_err(|e| e.to_string())?;
        snap.load_keys().await;
        Ok::<_, String>(sts::explain::explain(&snap, request).await)
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", report.to_text());
    }
    Ok(matches!(report.outcome, Outcome::Issued { .. }))
}

/// `name=value` of the `i`-th `flag`; the value is never echoed (it may be a token).
fn name_value<'a>(flag: &str, i: usize, arg: &'a str) -> Result<(&'a str, &'a str), String> {
    arg.split_once('=')
        .ok_or_else(|| format!("{flag} #{}: write name=value", i + 1))
}

/// `@FILE` → the file's text, `-` → standard input, else the argument itself (trimmed).
fn read_arg(arg: &str) -> Result<String, String> {
    let text = if arg == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| e.to_string())?;
        s
    } else if let Some(path) = arg.strip_prefix('@') {
        std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?
    } else {
        arg.to_owned()
    };
    Ok(text.trim().to_owned())
}

fn read_claims(arg: &str) -> Result<sts::jose::Claims, String> {
    serde_json::from_str(&read_arg(arg)?).map_err(|e| format!("claims must be a JSON object: {e}"))
}

fn parse_time(t: &str) -> Result<sts::clock::UnixTime, String> {
    if let Ok(n) = t.parse::<i64>() {
        return Ok(n);
    }
    let st = humantime::parse_rfc3339_weak(t)
        .map_err(|e| format!("--at `{t}`: not Unix seconds or an RFC 3339 time ({e})"))?;
    st.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .map_err(|_| format!("--at `{t}`: before 1970"))
}

#[derive(clap::Args)]
struct VerifyArgs {
    #[arg(long, env = "STS_CONFIG")]
    config: Option<PathBuf>,
    /// The token; `@FILE` reads a file, `-` standard input.
    #[arg(long)]
    token: String,
    /// Its declared type (`subject_token_type`); default: every trust entry is tried.
    #[arg(long = "type")]
    token_type: Option<String>,
    /// A Workload-Proof-Token that goes with a WIT; `@FILE` reads a file.
    #[arg(long)]
    proof: Option<String>,
    /// Another request header, `name=value` (repeatable), e.g. `txn-token=…`.
    #[arg(long = "header", value_name = "NAME=VALUE")]
    headers: Vec<String>,
    /// Check at this time: Unix seconds or RFC 3339 (default: now).
    #[arg(long)]
    at: Option<String>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn token_verify(args: VerifyArgs) -> Result<bool, String> {
    let settings = Settings::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    let now = match &args.at {
        None => SystemClock.now(),
        Some(t) => parse_time(t)?,
    };
    let mut headers = Vec::new();
    if let Some(p) = &args.proof {
        headers.push(("workload-proof-token".to_owned(), read_arg(p)?));
    }
    for (i, h) in args.headers.iter().enumerate() {
        let (k, v) = name_value("--header", i, h)?;
        headers.push((k.to_ascii_lowercase(), read_arg(v)?));
    }
    let check = sts::inspect::Check {
        token: sts::secret::Token::new(read_arg(&args.token)?),
        token_type: args.token_type,
        headers,
        now,
    };
    let kinds = sts::token::KindRegistry::builtin();
    let report = actix_web::rt::System::new().block_on(async {
        let snap = sts::app::Snapshot::for_dry_run(&settings, &kinds).map_err(|e| e.to_string())?;
        snap.load_keys().await;
        Ok::<_, String>(sts::inspect::verify(&snap, &kinds, check).await)
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
        );
    } else {
        print!("{}", report.to_text());
    }
    Ok(report.verified())
}

fn hash_secret(stdin: bool) -> Result<(), String> {
    let secret = if stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| e.to_string())?;
        s.trim_end_matches(['\r', '\n']).to_owned()
    } else {
        let mut raw = [0u8; 32];
        aws_lc_rs::rand::fill(&mut raw).map_err(|_| "no randomness")?;
        let s = sts::jose::b64_encode(&raw);
        println!("client_secret: {s}");
        s
    };
    if secret.len() < 16 {
        return Err("a client secret must be at least 16 characters".into());
    }
    println!(
        "secret_hash: {}",
        SecretHash::create(&secret, sts::auth::secret_hash::DEFAULT_ITERATIONS)?
    );
    Ok(())
}

fn dev_subject(args: DevSubjectArgs) -> Result<(), String> {
    let DevSubjectArgs {
        config,
        sub,
        scope,
        lifetime,
        may_act,
    } = args;
    let settings = Settings::load(config.as_deref()).map_err(|e| e.to_string())?;
    if !settings.dev {
        return Err("token dev-subject needs development mode (dev: true)".into());
    }
    let path = sts::dev::idp_key_path(&settings);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e} (start `sts serve` once to create it)",
            path.display()
        )
    })?;
    let der = sts::keys::pem_decode("PRIVATE KEY", &text).ok_or("dev IdP key is not PEM")?;
    let key = sts::dev::read_idp_key(&path)?;
    let now = SystemClock.now();
    let mut claims = serde_json::json!({
        "iss": sts::dev::DEV_IDP_ISSUER,
        "sub": sub,
        "aud": settings.issuer,
        "client_id": "dev-app",
        "scope": scope,
        "iat": now,
        "exp": now + lifetime.as_secs() as i64,
        "jti": sts::jose::b64_encode(&now.to_be_bytes()) + &sts::secret::fingerprint(sub.as_bytes()),
    });
    if let Some(actor) = may_act {
        claims["may_act"] = serde_json::json!({"sub": actor});
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("at+jwt".into());
    header.kid = Some(key.kid().to_owned());
    let encoding = jsonwebtoken::EncodingKey::from_ec_der(&der);
    let token = jsonwebtoken::encode(&header, &claims, &encoding).map_err(|e| e.to_string())?;
    println!("{token}");
    Ok(())
}
