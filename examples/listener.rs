//! The orders listener on its own: delivers order confirmations and events (webhooks,
//! Pub/Sub) from the outbox of the store
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

use std::process::ExitCode;
use std::time::Instant;

use inventory_kit::Settings;
use inventory_kit::http;
use tokio_util::sync::CancellationToken;

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let settings = Settings::from_env()?;
    let _tracing = common::init_tracing(&settings);
    let metrics = http::install_recorder()?;
    let store = settings.open_store().await?;
    let shutdown = CancellationToken::new();
    let dispatcher = settings.dispatcher(store.clone())?.spawn(shutdown.clone());
    // Events to webhooks and Pub/Sub, from any number of listeners.
    let events = settings
        .event_dispatcher(store.clone())
        .await?
        .spawn(store.subscribe(), shutdown.clone());
    // Expired holds are released by the listener too (by any number of them), and old ledger
    // entries pruned with LEDGER_RETENTION_DAYS.
    let sweeper = settings.spawn_sweeps(store.clone(), http::HOLD_SWEEP, shutdown.clone());
    let addr = settings.http.addr(9090);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (PORT/HOST): {e}"))?;
    tracing::info!(
        startup_ms = started.elapsed().as_millis() as u64,
        "listener running; listening on http://{}",
        listener.local_addr()?
    );
    http::serve(
        listener,
        http::ops_router(store, Some(metrics)),
        http::ServeLimits::from(&settings.http),
        common::shutdown_signal(),
    )
    .await;
    shutdown.cancel();
    common::stop_dispatcher(dispatcher).await;
    common::stop_dispatcher(events).await;
    let _ = sweeper.await;
    tracing::info!("bye");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    common::command_line(
        "listener",
        "The orders listener: sends order confirmations from the outbox.",
    );
    common::exit("listener", run().await)
}
