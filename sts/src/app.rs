//! The running service's state, built by the same functions for `sts serve`, `sts check` and
//! the tests.
//!
//! Everything reload or rotation replaces — settings, signing keys, trust sources, clients,
//! profiles and mappings — lives in one [`Snapshot`], swapped atomically (`arc-swap`). A request
//! takes the snapshot once at its start and uses only that one. What outlives snapshots (the
//! clock, the replay store, the registered kinds) sits beside it in [`AppState`]. Background
//! tasks hold a weak reference to the state and read the current snapshot on every tick:
//! nothing else is captured by a task. This module does not know HTTP routes.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::auth::{ClientRegistry, FailureThrottle, SecretCheckPool};
use crate::clock::Clock;
use crate::config::{ConfigError, ConfigProblems, Settings};
use crate::dev;
use crate::jose::Alg;
use crate::keys::Signer;
use crate::profile::{self, Catalog, LoadErrors};
use crate::store::{MemoryRateLimiter, RedisTimeouts, ReplayGuard};
use crate::token::{KeyPurpose, KindEnv, KindRegistry};
use crate::trust::{HttpFetcher, KeyStore, OwnKeys, TrustRegistry};

/// Where our JWT-SVID signing keys live, inside `keys.dir`.
const SVID_KEY_DIR: &str = "jwt-svid";
/// Capacity of the in-memory replay store.
const REPLAY_CAPACITY: usize = 1_000_000;
/// Capacity of the in-memory rate limiter (failure counters).
const LIMITER_CAPACITY: usize = 200_000;
/// Timeout of every outbound call.
const OUTBOUND_TIMEOUT: Duration = Duration::from_secs(5);
/// How often the background task looks for key sources due for a refresh.
const REFRESH_TICK: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] ConfigProblems),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("{0}")]
    Profiles(#[from] LoadErrors),
    #[error("{0}\n{1}")]
    ConfigAndProfiles(ConfigProblems, LoadErrors),
    #[error("{0}")]
    Other(String),
}

impl From<ConfigError> for StartError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e.into())
    }
}

/// Our outbound HTTP client: the timeout, and the extra CA certificates of
/// `outbound_ca_file`.
fn outbound_http(settings: &Settings) -> Result<HttpFetcher, StartError> {
    let pem = match &settings.outbound_ca_file {
        Some(path) => Some(std::fs::read(path).map_err(|e| {
            StartError::Other(format!("outbound_ca_file `{}`: {e}", path.display()))
        })?),
        None => None,
    };
    HttpFetcher::with_extra_roots(OUTBOUND_TIMEOUT, pem.as_deref()).map_err(StartError::Other)
}

/// Everything a reload or key rotation replaces, as one value.
pub struct Snapshot {
    pub settings: Settings,
    pub signer: Signer,
    /// Our JWT-SVID signing keys (`keys.dir/jwt-svid/`), when a profile issues JWT-SVIDs:
    /// apart from `signer`, so that a trust domain's bundle holding them verifies nothing else.
    pub svid_signer: Option<Signer>,
    pub trust: TrustRegistry,
    pub clients: ClientRegistry,
    pub catalog: Catalog,
    /// This token endpoint's URL, from configuration (shared by every request's facts).
    pub endpoint: Arc<str>,
    /// Our trust domain (`trust_domain`, else the issuer's host).
    pub trust_domain: Arc<str>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("issuer", &self.settings.issuer)
            .field("profiles", &self.catalog.profiles.len())
            .finish_non_exhaustive()
    }
}

impl Snapshot {
    /// Builds a snapshot from validated settings: trust entries through their kinds, clients,
    /// profiles, and our signing keys. Makes no network call (keys load in
    /// [`load_keys`](Self::load_keys)).
    pub fn build(settings: Settings, kinds: &KindRegistry) -> Result<Self, StartError> {
        let http = outbound_http(&settings)?;
        let signer = Signer::load_or_generate(&settings.keys.dir, settings.keys.alg)?;
        let own = OwnKeys::empty();
        own.set(signer.jwks());
        let (trust, clients, catalog) = Self::policy(&settings, kinds, &http, &own)?;
        let endpoint = Arc::from(settings.token_endpoint());
        let issues_svids = catalog
            .profiles
            .iter()
            .any(|p| p.kind.key_purpose() == KeyPurpose::JwtSvid);
        let svid_signer = if issues_svids {
            Some(Signer::load_or_generate(
                &settings.keys.dir.join(SVID_KEY_DIR),
                Alg::ES256,
            )?)
        } else {
            None
        };
        Ok(Self {
            svid_signer,
            endpoint,
            trust_domain: Arc::from(settings.trust_domain()),
            settings,
            signer,
            trust,
            clients,
            catalog,
        })
    }

    /// Trust entries, clients and profiles from settings: what `sts check` validates.
    pub fn policy(
        settings: &Settings,
        kinds: &KindRegistry,
        http: &HttpFetcher,
        own_keys: &OwnKeys,
    ) -> Result<(TrustRegistry, ClientRegistry, Catalog), StartError> {
        let trust_domain = settings.trust_domain();
        let env = KindEnv {
            our_issuer: &settings.issuer,
            trust_domain: &trust_domain,
            own_keys,
            http,
        };
        let trust = TrustRegistry::build(&settings.trust, kinds, &env)?;
        let clients = ClientRegistry::from_settings(settings, http).map_err(StartError::Other)?;
        let catalog = profile::load(
            &settings.profiles,
            &settings.mappings,
            &trust,
            kinds,
            &trust_domain,
        )?;
        Ok((trust, clients, catalog))
    }

    /// A snapshot for a dry run (`sts explain`): everything `check` validates, with an
    /// in-memory signing key that is never used or written. Development mode's entries point
    /// at the files `serve` made, and nothing is created.
    pub fn for_dry_run(settings: &Settings, kinds: &KindRegistry) -> Result<Self, StartError> {
        let mut settings = settings.clone();
        if settings.dev {
            dev::register_for_check(&mut settings).map_err(StartError::Other)?;
        }
        let http = outbound_http(&settings)?;
        let der = crate::keys::SigningKey::generate_pkcs8(settings.keys.alg)?;
        let key = crate::keys::SigningKey::from_pkcs8(&der)
            .ok_or_else(|| StartError::Other("in-memory key".into()))?;
        let signer = Signer::new(key, &[]);
        // Our published keys, when `serve` has made them: a dry run verifies our own tokens
        // (a Txn-Token for replacement) with them, read-only.
        let own = OwnKeys::empty();
        if let Ok(Some(published)) = Signer::load_existing(&settings.keys.dir) {
            own.set(published.jwks());
        }
        let (trust, clients, catalog) = Self::policy(&settings, kinds, &http, &own)?;
        Ok(Self {
            // A dry run signs nothing.
            svid_signer: None,
            endpoint: Arc::from(settings.token_endpoint()),
            trust_domain: Arc::from(settings.trust_domain()),
            signer,
            settings,
            trust,
            clients,
            catalog,
        })
    }

    /// Reads the configuration `serve` would use and checks all of it — settings, trust
    /// entries, clients, local key files, profiles — reporting every problem at once and
    /// creating or writing nothing.
    pub async fn check_config(
        file: Option<&std::path::Path>,
        kinds: &KindRegistry,
    ) -> Result<(Settings, Catalog), StartError> {
        let settings = Self::load_config(file, kinds)?;
        let catalog = Self::check(&settings, kinds).await?;
        Ok((settings, catalog))
    }

    /// Reads the settings; when they have problems, the trust entries' own problems are added
    /// to the same report.
    pub fn load_config(
        file: Option<&std::path::Path>,
        kinds: &KindRegistry,
    ) -> Result<Settings, StartError> {
        let (settings, mut problems) = Settings::load_all(file);
        let Some(settings) = settings else {
            return Err(ConfigProblems(problems).into());
        };
        if problems.is_empty() {
            return Ok(settings);
        }
        let http = outbound_http(&settings)?;
        let trust_domain = settings.trust_domain();
        let own = OwnKeys::empty();
        let env = KindEnv {
            our_issuer: &settings.issuer,
            trust_domain: &trust_domain,
            own_keys: &own,
            http: &http,
        };
        if let Err(more) = TrustRegistry::build(&settings.trust, kinds, &env) {
            problems.extend(more.0);
        }
        Err(ConfigProblems(problems).into())
    }

    /// Validates settings, trust entries, clients, local key files and profiles without
    /// creating or writing anything (`sts check`, and `serve` before it writes keys).
    /// Development mode's entries are checked for shape only: their files are made later.
    pub async fn check(settings: &Settings, kinds: &KindRegistry) -> Result<Catalog, StartError> {
        let mut settings = settings.clone();
        if settings.dev {
            dev::register_for_check(&mut settings).map_err(StartError::Other)?;
        }
        let http = outbound_http(&settings)?;
        let trust_domain = settings.trust_domain();
        let own = OwnKeys::empty();
        let env = KindEnv {
            our_issuer: &settings.issuer,
            trust_domain: &trust_domain,
            own_keys: &own,
            http: &http,
        };
        let trust = TrustRegistry::build(&settings.trust, kinds, &env)?;
        // Development mode's key file is made by `serve`; nothing else is skipped.
        let dev_made: &[&str] = if settings.dev { &[dev::DEV_IDP] } else { &[] };
        let mut keys = trust.check_local_keys(&settings.trust, dev_made).await;
        // An entry that authenticates clients by certificate needs a listener that asks.
        if !settings.client_certificates_enabled() {
            for source in trust.all() {
                if source.verifier.authenticates_certificates() {
                    keys.push(ConfigError(format!(
                        "trust entry `{}`: authenticates clients by TLS certificate, but the \
                         listener asks for none: set tls with client_certificates optional or \
                         required",
                        source.name
                    )));
                }
            }
        }
        ClientRegistry::from_settings(&settings, &http).map_err(StartError::Other)?;
        let catalog = profile::load(
            &settings.profiles,
            &settings.mappings,
            &trust,
            kinds,
            &trust_domain,
        );
        match (keys.is_empty(), catalog) {
            (true, catalog) => Ok(catalog?),
            (false, Ok(_)) => Err(ConfigProblems(keys).into()),
            (false, Err(profiles)) => Err(StartError::ConfigAndProfiles(
                ConfigProblems(keys),
                profiles,
            )),
        }
    }

    /// The signer of a key purpose: our token keys, or our JWT-SVID keys (made at start when a
    /// profile issues JWT-SVIDs).
    pub fn signer_for(&self, purpose: KeyPurpose) -> Option<&Signer> {
        match purpose {
            KeyPurpose::Tokens => Some(&self.signer),
            KeyPurpose::JwtSvid => self.svid_signer.as_ref(),
        }
    }

    /// Every key source of this snapshot: trust entries' and `private_key_jwt` clients'.
    pub fn key_stores(&self) -> impl Iterator<Item = &KeyStore> {
        self.trust
            .all()
            .filter_map(|s| s.verifier.keys())
            .chain(self.clients.key_stores())
    }

    /// Loads every key source once; a failure is logged and requests fail closed until the
    /// keys load.
    pub async fn load_keys(&self) {
        for source in self.trust.all() {
            if let Some(keys) = source.verifier.keys() {
                // A failure is logged by `load`: requests fail closed until the keys load.
                let _ = keys.load().await;
            }
        }
        self.clients.load_keys().await;
    }

    /// The trust entries and clients whose keys have never loaded (for the log, never for
    /// anonymous callers).
    pub fn waiting_for_keys(&self) -> Vec<String> {
        let trust = self
            .trust_ready()
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| format!("trust entry `{n}`"));
        let clients = self
            .clients
            .keys_loaded()
            .into_iter()
            .filter(|(_, ok)| !ok)
            .map(|(n, _)| format!("client `{n}`"));
        trust.chain(clients).collect()
    }

    /// `(trust entry, keys loaded)` for every trust entry that has keys.
    pub fn trust_ready(&self) -> Vec<(&str, bool)> {
        self.trust
            .all()
            .filter_map(|s| s.verifier.keys().map(|k| (&*s.name, k.is_loaded())))
            .collect()
    }
}

/// The service: the live snapshot and what outlives it.
pub struct AppState {
    pub clock: Arc<dyn Clock>,
    pub replay: Arc<dyn ReplayGuard>,
    pub kinds: KindRegistry,
    /// Failed client authentication budgets.
    pub throttle: FailureThrottle,
    /// Runs PBKDF2 secret checks off the HTTP workers (sized at start).
    pub secret_checks: SecretCheckPool,
    /// Verified subject tokens (ingress path), sized at start.
    pub subjects: crate::exchange::SubjectCache,
    /// Whether "ready" has been logged.
    announced_ready: AtomicBool,
    live: ArcSwap<Snapshot>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("live", &self.live.load())
            .field("kinds", &self.kinds)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the whole service with the built-in kinds: the one function `main` and tests use.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StartError> {
        Self::build_with(settings, clock, KindRegistry::builtin()).await
    }

    /// Builds the service with the given kinds (a test registers a toy kind this way).
    pub async fn build_with(
        mut settings: Settings,
        clock: Arc<dyn Clock>,
        kinds: KindRegistry,
    ) -> Result<Arc<Self>, StartError> {
        // Everything is validated before anything is generated or written (development
        // material, our signing key).
        settings.validate()?;
        Snapshot::check(&settings, &kinds).await?;
        if settings.dev {
            dev::prepare(&mut settings).map_err(StartError::Other)?;
        }
        let snapshot = Snapshot::build(settings, &kinds)?;
        snapshot.load_keys().await;
        let waiting = snapshot.waiting_for_keys();
        if waiting.is_empty() {
            tracing::info!(
                issuer = %snapshot.settings.issuer,
                kid = %snapshot.signer.kid(),
                alg = %snapshot.signer.alg(),
                profiles = snapshot.catalog.profiles.len(),
                trust = snapshot.trust.all().count(),
                "ready: every key source has loaded"
            );
        } else {
            tracing::info!(
                issuer = %snapshot.settings.issuer,
                kid = %snapshot.signer.kid(),
                "not ready yet (/readyz answers 503): waiting for keys of: {}",
                waiting.join(", ")
            );
        }
        let s = &snapshot.settings;
        let timeouts = RedisTimeouts {
            connect: s.store_connect_timeout,
            response: s.store_response_timeout,
        };
        let replay = crate::store::replay_guard(&s.store_url(), timeouts, REPLAY_CAPACITY)
            .map_err(StartError::Other)?;
        let pool = &snapshot.settings.client_auth;
        let secret_checks =
            SecretCheckPool::new(pool.secret_check_threads, pool.secret_check_queue);
        let subjects = crate::exchange::SubjectCache::new(snapshot.settings.subject_cache.capacity);
        Ok(Arc::new(Self {
            subjects,
            clock,
            replay,
            kinds,
            throttle: FailureThrottle::new(Arc::new(MemoryRateLimiter::new(LIMITER_CAPACITY))),
            secret_checks,
            announced_ready: AtomicBool::new(waiting.is_empty()),
            live: ArcSwap::from_pointee(snapshot),
        }))
    }

    /// The live snapshot: a request takes it once, at its start.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.live.load_full()
    }

    /// Replaces the live snapshot atomically; requests already running keep the one they took.
    pub fn swap(&self, snapshot: Snapshot) {
        self.live.store(Arc::new(snapshot));
    }

    /// Starts the background refresh of every key source (trust entries and clients), each on
    /// its own interval, always on the current snapshot.
    pub fn spawn_refresh(self: &Arc<Self>) {
        let weak: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REFRESH_TICK).await;
                let Some(state) = weak.upgrade() else {
                    return;
                };
                let snap = state.snapshot();
                drop(state);
                for keys in snap.key_stores().filter(|k| k.refresh_due()) {
                    // A failure is logged (and counted) by `load`; the previous keys stay.
                    let _ = keys.load().await;
                }
                let Some(state) = weak.upgrade() else {
                    return;
                };
                if !state.announced_ready.load(Ordering::Relaxed)
                    && snap.waiting_for_keys().is_empty()
                {
                    state.announced_ready.store(true, Ordering::Relaxed);
                    tracing::info!("ready: every key source has loaded");
                }
            }
        });
    }
}
