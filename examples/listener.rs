//! The orders listener on its own: delivers order confirmations from the outbox of the store
//! named by `DATABASE_URL`, for deployments that scale the HTTP servers separately
//! (`RUN_DISPATCHER=false` on the servers). Several listeners may share one database.
//!
//! ```sh
//! DATABASE_URL=postgres://postgres@127.0.0.1/test SMTP_HOST=127.0.0.1 SMTP_PORT=1025 \
//!   cargo run --release --example listener
//! ```
//!
//! It serves `/health`, `/ready` and `/metrics` on `PORT` (default 9090).

#[path = "common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use inventory_kit::core::{Dispatcher, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use common::parse_var;

#[derive(Clone)]
struct AppState {
    store: Arc<dyn Store>,
    metrics: PrometheusHandle,
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(state): State<AppState>) -> impl IntoResponse {
    match state.store.ping().await {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))),
        Err(e) => {
            tracing::warn!(error = %e, "store not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({"detail": "store unavailable"})),
            )
        }
    }
}

async fn render_metrics(State(state): State<AppState>) -> impl IntoResponse {
    common::record_backlog(state.store.as_ref()).await;
    state.metrics.render()
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    common::init_tracing()?;
    let mail = common::MailChoice::from_env()?;
    let config = common::dispatcher_config()?;
    let host: std::net::IpAddr = parse_var("HOST", std::net::IpAddr::from([0, 0, 0, 0]))?;
    let addr = SocketAddr::new(host, parse_var("PORT", 9090)?);
    let metrics = common::install_metrics();
    let store = common::open_store().await?;
    let mailer = mail.build()?;

    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::new(store.clone(), mailer, config).spawn(shutdown.clone());
    let app = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(render_metrics))
        .with_state(AppState { store, metrics });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(
        startup_ms = started.elapsed().as_millis() as u64,
        "listener running; listening on http://{}",
        listener.local_addr()?
    );
    let stop = shutdown.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            common::shutdown_signal().await;
            stop.cancel();
        })
        .await?;
    if tokio::time::timeout(Duration::from_secs(30), dispatcher)
        .await
        .is_err()
    {
        tracing::warn!("dispatcher did not stop within 30 s");
    }
    tracing::info!("bye");
    Ok(())
}

/// mimalloc returns freed memory to the system; glibc's allocator keeps the 19 MiB argon2
/// working sets of every blocking thread, which tripled the idle footprint.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    common::command_line(
        "listener",
        "The orders listener: sends order confirmations from the outbox.",
    );
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
