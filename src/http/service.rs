//! The whole service wired from [`Settings`]: what the example server runs, and what tests run
//! in-process.

use std::sync::Arc;

use axum::Router;
use inventory_core::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::{ApiState, docs, router, with_standard_layers};
use crate::settings::{SeedProduct, Settings, SettingsError};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A setting is wrong (names the variable).
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// The store could not be opened, migrated or seeded (start-up store errors name
    /// `DATABASE_URL` and the fix).
    #[error(transparent)]
    Store(#[from] inventory_core::Error),
}

/// How often expired holds are looked for: a hold is released within about a second of its
/// `expires_at`.
pub const HOLD_SWEEP: std::time::Duration = std::time::Duration::from_secs(1);

/// The store opened and seeded, the dispatcher running (unless `RUN_DISPATCHER=false`), and
/// the API with its docs and standard layers, ready to [`serve`](super::serve) or to call
/// in-process (`tower::ServiceExt::oneshot`).
pub struct Service {
    /// The store.
    pub store: Arc<dyn Store>,
    /// The API: [`router`] + [`docs`] + [`with_standard_layers`].
    pub router: Router,
    dispatcher: Option<JoinHandle<()>>,
    events: Option<JoinHandle<()>>,
    sweeper: Option<JoinHandle<()>>,
    shutdown: CancellationToken,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("dispatcher", &self.dispatcher.is_some())
            .finish_non_exhaustive()
    }
}

impl Service {
    /// Starts the service the settings describe. With a metrics handle, requests are counted
    /// and `/metrics` answers.
    pub async fn start(
        settings: &Settings,
        metrics: Option<PrometheusHandle>,
    ) -> Result<Service, StartError> {
        let store = settings.open_store().await?;
        let created = SeedProduct::ensure_all(&settings.seed, store.as_ref()).await?;
        if !settings.seed.is_empty() {
            tracing::info!(
                products = settings.seed.len(),
                created,
                "seed products ensured"
            );
        }
        let auth = settings.auth(store.clone())?;
        let shutdown = CancellationToken::new();
        let (dispatcher, events, sweeper) = if settings.run_dispatcher {
            let events = settings.event_dispatcher(store.clone()).await?;
            (
                Some(settings.dispatcher(store.clone())?.spawn(shutdown.clone())),
                // Events to webhooks and Pub/Sub: its own workers, never in email's way.
                Some(events.spawn(store.subscribe(), shutdown.clone())),
                // Expired holds are released by whoever runs the dispatcher.
                // And old ledger entries pruned, with LEDGER_RETENTION_DAYS.
                Some(settings.spawn_sweeps(store.clone(), HOLD_SWEEP, shutdown.clone())),
            )
        } else {
            tracing::info!(
                "RUN_DISPATCHER=false: run the listener to send confirmations and release expired holds"
            );
            (None, None, None)
        };
        let mut state = ApiState::from_settings(store.clone(), auth, settings);
        if let Some(handle) = metrics {
            state = state.with_metrics(handle);
        }
        let router = with_standard_layers(router(state).merge(docs("")), &settings.http)?;
        Ok(Service {
            store,
            router,
            dispatcher,
            events,
            sweeper,
            shutdown,
        })
    }

    /// Stops the dispatcher after its in-flight sends (waiting at most 30 s).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.dispatcher.take()
            && tokio::time::timeout(std::time::Duration::from_secs(30), handle)
                .await
                .is_err()
        {
            tracing::warn!("dispatcher did not stop within 30 s");
        }
        if let Some(handle) = self.events.take()
            && tokio::time::timeout(std::time::Duration::from_secs(30), handle)
                .await
                .is_err()
        {
            tracing::warn!("event dispatcher did not stop within 30 s");
        }
        if let Some(handle) = self.sweeper.take() {
            // Between sweeps it holds nothing: it ends at once.
            let _ = handle.await;
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
