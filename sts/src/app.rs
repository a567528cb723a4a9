//! The running service's state, built once at start by the same function for `sts serve` and
//! for the tests: settings, clock, signing keys, trust sources, clients, profiles, replay store.
//!
//! Building loads keys and profiles and makes the first key fetches; after that the request
//! path reads this state without I/O except what a profile requires. This module does not know
//! HTTP routes (that is `http`).

use std::sync::Arc;
use std::time::Duration;

use crate::auth::ClientRegistry;
use crate::clock::Clock;
use crate::config::Settings;
use crate::dev;
use crate::keys::Signer;
use crate::profile::{self, Catalog, LoadErrors};
use crate::store::ReplayGuard;
use crate::trust::{HttpFetcher, TrustRegistry};

/// Capacity of the in-memory replay store.
const REPLAY_CAPACITY: usize = 1_000_000;
/// Timeout of every outbound call.
const OUTBOUND_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("signing keys: {0}")]
    Keys(#[from] crate::keys::KeyError),
    #[error("{0}")]
    Profiles(#[from] LoadErrors),
    #[error("{0}")]
    Other(String),
}

pub struct AppState {
    pub settings: Settings,
    pub clock: Arc<dyn Clock>,
    pub signer: Signer,
    pub trust: TrustRegistry,
    pub clients: ClientRegistry,
    pub catalog: Catalog,
    pub replay: ReplayGuard,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("issuer", &self.settings.issuer)
            .field("profiles", &self.catalog.profiles.len())
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// Builds the whole service state from settings: the one function `main` and tests use.
    pub async fn build(
        mut settings: Settings,
        clock: Arc<dyn Clock>,
    ) -> Result<Arc<Self>, StartError> {
        if settings.dev {
            dev::prepare(&mut settings).map_err(StartError::Other)?;
        }
        settings.validate()?;
        let signer = Signer::load_or_generate(&settings.keys.dir, settings.keys.alg)?;
        let http = HttpFetcher::new(OUTBOUND_TIMEOUT).map_err(StartError::Other)?;
        let trust = TrustRegistry::from_settings(&settings, &http);
        let clients = ClientRegistry::from_settings(&settings, &http).map_err(StartError::Other)?;
        let catalog = profile::load(&settings.profiles, &settings.mappings, &trust)?;
        for source in trust.all() {
            if let Err(e) = source.keys.load().await {
                tracing::warn!(trust = %source.name, "keys not loaded yet (requests fail closed until they are): {e}");
            }
        }
        clients.load_keys().await;
        tracing::info!(
            issuer = %settings.issuer,
            kid = %signer.kid(),
            alg = %signer.alg(),
            profiles = catalog.profiles.len(),
            trust = trust.all().count(),
            "sts ready to serve"
        );
        Ok(Arc::new(Self {
            settings,
            clock,
            signer,
            trust,
            clients,
            catalog,
            replay: ReplayGuard::memory(REPLAY_CAPACITY),
        }))
    }

    /// Whether every trust source has loaded keys at least once.
    pub fn trust_ready(&self) -> Vec<(&str, bool)> {
        self.trust
            .all()
            .map(|s| (s.name.as_str(), s.keys.is_loaded()))
            .collect()
    }

    /// Starts the periodic key refresh of remote trust sources.
    pub fn spawn_refresh(self: &Arc<Self>) {
        for source in self.trust.all().filter(|s| s.keys.is_remote()) {
            let source = source.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(source.keys.refresh_interval());
                tick.tick().await;
                loop {
                    tick.tick().await;
                    if let Err(e) = source.keys.load().await {
                        tracing::warn!(trust = %source.name, "key refresh failed, keeping the previous keys: {e}");
                    }
                }
            });
        }
    }
}
