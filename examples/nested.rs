//! The inventory API inside an application of your own: your routes at the root, the kit's
//! API (with its OpenAPI document and Swagger UI) under `/shop`, one server.
//!
//! ```sh
//! APP_ENV=dev cargo run --example nested
//! curl localhost:3000/            # yours
//! curl localhost:3000/shop/products
//! open http://localhost:3000/shop/docs
//! ```
//!
//! Configuration is the kit's environment contract ([`inventory_kit::Settings`]; `PORT`
//! defaults to 3000 here). The confirmation dispatcher runs in-process.

use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use inventory_kit::Settings;
use inventory_kit::http::{self, ApiState};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();
    let settings = Settings::from_env()?;
    let store = settings.open_store().await?;
    inventory_kit::settings::SeedProduct::ensure_all(&settings.seed, store.as_ref()).await?;
    let auth = settings.auth(store.clone())?;
    let shutdown = CancellationToken::new();
    let dispatcher = settings.dispatcher(store.clone())?.spawn(shutdown.clone());

    // The kit's parts, taken one by one: its routes with rate limits from the settings, its
    // docs told where they are mounted. Metrics and the standard layers are left out here.
    let shop =
        http::router(ApiState::from_settings(store, auth, &settings)).merge(http::docs("/shop"));
    let app = Router::new()
        .route(
            "/",
            get(|| async { "my application; the shop is under /shop" }),
        )
        .nest("/shop", shop);

    let listener = tokio::net::TcpListener::bind(settings.http.addr(3000)).await?;
    tracing::info!("listening on http://{}", listener.local_addr()?);
    // With connect info, so that the login limits see each client's address.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    shutdown.cancel();
    dispatcher.await?;
    Ok(())
}
