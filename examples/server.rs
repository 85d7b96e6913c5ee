//! The example server: the original Shopping Inventory Service's HTTP API (and more) over
//! any backend of the kit, with the orders listener running in-process by default.
//!
//! ```sh
//! APP_ENV=dev cargo run --release --example server
//! ```
//!
//! Configuration is read from the environment ([`inventory_kit::Settings`]); see the
//! README's table. Everything here is library parts: settings, [`http::Service`],
//! [`http::serve`].

#[path = "common/mod.rs"]
mod common;

use std::process::ExitCode;
use std::time::Instant;

use inventory_kit::Settings;
use inventory_kit::http::{self, Service};

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    let settings = Settings::from_env()?;
    let _tracing = common::init_tracing(&settings);
    let metrics = http::install_recorder()?;
    let service = Service::start(&settings, Some(metrics)).await?;
    let addr = settings.http.addr(8080);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| format!("cannot listen on {addr} (PORT/HOST): {e}"))?;
    tracing::info!(
        startup_ms = started.elapsed().as_millis() as u64,
        dev = settings.dev,
        "listening on http://{}",
        listener.local_addr()?
    );
    let limits = http::ServeLimits::from(&settings.http);
    http::serve(
        listener,
        service.router.clone(),
        limits,
        common::shutdown_signal(),
    )
    .await;
    tracing::info!("HTTP server drained; stopping the dispatcher");
    service.stop().await;
    tracing::info!("bye");
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    common::command_line(
        "server",
        "The inventory HTTP API (the original service's, and more), with the orders listener in-process.",
    );
    common::exit("server", run().await)
}
