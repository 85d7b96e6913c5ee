//! The example server: the original Shopping Inventory Service's HTTP API (and more) over
//! any backend of the kit, with the orders listener running in-process by default.
//!
//! ```sh
//! APP_ENV=dev cargo run --release --example server
//! ```
//!
//! Configuration is read from the environment; see the README's table.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod http;
mod limit;
mod serve;

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::http::{HeaderName, StatusCode};
use axum::middleware;
use inventory_kit::core::{Auth, AuthConfig, Dispatcher, HashParams, Orders};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use common::{ConfigError, bool_var, parse_var, var};

struct Settings {
    dev: bool,
    jwt_secret: Vec<u8>,
    password_min: usize,
    jwt_ttl: Duration,
    hash: HashParams,
    addr: SocketAddr,
    run_dispatcher: bool,
    body_limit: usize,
    request_timeout: Duration,
    cors: Option<Vec<String>>,
    serve: serve::ServeLimits,
}

impl Settings {
    fn from_env() -> Result<Self, ConfigError> {
        let dev = match var("APP_ENV").map(|v| v.to_ascii_lowercase()).as_deref() {
            Some("dev" | "development" | "local") => true,
            Some("prod" | "production" | "staging" | "test") | None => false,
            Some(other) => {
                return Err(ConfigError(format!(
                    "invalid APP_ENV: {other:?} is not one of dev, test, staging, production"
                )));
            }
        };
        let jwt_secret = match var("JWT_SECRET") {
            Some(s) if s.len() >= inventory_kit::core::auth::JWT_SECRET_MIN_BYTES => s.into_bytes(),
            Some(s) if dev => {
                tracing::warn!(
                    bytes = s.len(),
                    "APP_ENV=dev: accepting a JWT_SECRET shorter than 32 bytes; tokens signed with it can be forged, never use it in production"
                );
                s.into_bytes()
            }
            Some(_) => {
                return Err(ConfigError(
                    "invalid JWT_SECRET: must be at least 32 bytes (a shorter one is accepted only with APP_ENV=dev)".into(),
                ));
            }
            None if dev => {
                tracing::warn!(
                    "APP_ENV=dev and no JWT_SECRET: using a random secret; tokens will not survive a restart"
                );
                let bytes: [u8; 32] = rand::random();
                bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into_bytes()
            }
            None => {
                return Err(ConfigError(
                    "JWT_SECRET is required (at least 32 bytes) unless APP_ENV=dev".into(),
                ));
            }
        };
        if let Some(alg) = var("JWT_ALGORITHM")
            && alg != "HS256"
        {
            return Err(ConfigError(format!(
                "invalid JWT_ALGORITHM: {alg:?}; only HS256 is supported"
            )));
        }
        let minutes: u64 = parse_var("JWT_EXPIRES_MINUTES", 60)?;
        if minutes == 0 {
            return Err(ConfigError(
                "invalid JWT_EXPIRES_MINUTES: must be at least 1".into(),
            ));
        }
        let d = HashParams::default();
        let hash = HashParams {
            memory_kib: parse_var("ARGON2_MEMORY_KIB", d.memory_kib)?,
            iterations: parse_var("ARGON2_ITERATIONS", d.iterations)?,
            parallelism: parse_var("ARGON2_PARALLELISM", d.parallelism)?,
        };
        let password_min: usize = parse_var(
            "PASSWORD_MIN_LENGTH",
            inventory_kit::core::domain::PASSWORD_MIN_BYTES,
        )?;
        if password_min < inventory_kit::core::domain::PASSWORD_MIN_BYTES {
            tracing::warn!(
                password_min,
                "PASSWORD_MIN_LENGTH below 8: accepted for the original service's clients, weaker against guessing"
            );
        }
        let host: std::net::IpAddr = parse_var("HOST", std::net::IpAddr::from([0, 0, 0, 0]))?;
        let port: u16 = parse_var("PORT", 8080)?;
        Ok(Settings {
            dev,
            jwt_secret,
            password_min,
            jwt_ttl: Duration::from_secs(minutes * 60),
            hash,
            addr: SocketAddr::new(host, port),
            run_dispatcher: bool_var("RUN_DISPATCHER", true)?,
            body_limit: parse_var("BODY_LIMIT_BYTES", 64 * 1024)?,
            request_timeout: Duration::from_secs(parse_var("REQUEST_TIMEOUT_SECS", 30)?),
            cors: var("CORS_ORIGINS").map(|v| v.split(',').map(|s| s.trim().to_owned()).collect()),
            serve: serve::ServeLimits {
                max_connections: parse_var("MAX_CONNECTIONS", 512)?,
                header_read_timeout: Duration::from_secs(
                    parse_var::<u64>("HEADER_READ_TIMEOUT_SECS", 10)?.max(1),
                ),
                keep_alive: Duration::from_secs(
                    parse_var::<u64>("KEEP_ALIVE_TIMEOUT_SECS", 75)?.max(1),
                ),
                drain: Duration::from_secs(30),
            },
        })
    }
}

fn cors(origins: &Option<Vec<String>>) -> Result<CorsLayer, ConfigError> {
    let layer = CorsLayer::new().allow_methods(Any).allow_headers(Any);
    Ok(match origins {
        None => layer.allow_origin(Any),
        Some(list) => {
            let parsed = list
                .iter()
                .map(|o| {
                    o.parse()
                        .map_err(|_| ConfigError(format!("invalid CORS_ORIGINS: {o:?}")))
                })
                .collect::<Result<Vec<_>, _>>()?;
            layer.allow_origin(AllowOrigin::list(parsed))
        }
    })
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    common::init_tracing()?;
    let settings = Settings::from_env()?;
    let mail = common::MailChoice::from_env()?;
    let seed = common::seed_from_env(settings.dev.then_some(common::DEFAULT_SEED))?;
    let admins = common::admin_emails()?;
    let dispatcher_config = common::dispatcher_config()?;
    let login_limiter = limit::LoginLimiter::from_env()?;
    let trusted_proxies = limit::TrustedProxies::from_env()?;
    let metrics = common::install_metrics();

    let store = common::open_store().await?;
    let created = common::seed(store.as_ref(), &seed).await?;
    if !seed.is_empty() {
        tracing::info!(products = seed.len(), created, "seed products ensured");
    }
    let auth = Auth::new(
        store.clone(),
        if settings.jwt_secret.len() >= inventory_kit::core::auth::JWT_SECRET_MIN_BYTES {
            AuthConfig::new(settings.jwt_secret.clone())?
        } else {
            AuthConfig::new_insecure(settings.jwt_secret.clone())?
        }
        .with_token_ttl(settings.jwt_ttl)
        .with_hash_params(settings.hash)
        .with_admins(admins)
        .with_password_min_bytes(settings.password_min)?,
    )?;
    let orders = Orders::new(store.clone(), store.clone());

    let shutdown = CancellationToken::new();
    let dispatcher = if settings.run_dispatcher {
        let mailer = mail.build()?;
        Some(Dispatcher::new(store.clone(), mailer, dispatcher_config).spawn(shutdown.clone()))
    } else {
        tracing::info!("RUN_DISPATCHER=false: run the listener example to send confirmations");
        None
    };

    let state = api::AppState {
        store: store.clone(),
        auth,
        orders,
        metrics,
        login_limiter,
        trusted_proxies,
    };
    let request_id = HeaderName::from_static("x-request-id");
    let app = api::routes(state)
        .route_layer(middleware::from_fn(http::track_metrics))
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
                .layer(TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
                }))
                .layer(PropagateRequestIdLayer::new(request_id))
                .layer(middleware::from_fn(http::json_errors))
                .layer(CatchPanicLayer::new())
                .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, settings.request_timeout))
                .layer(cors(&settings.cors)?)
                .layer(RequestBodyLimitLayer::new(settings.body_limit)),
        );

    let listener = tokio::net::TcpListener::bind(settings.addr)
        .await
        .map_err(|e| {
            ConfigError(format!(
                "cannot listen on {} (PORT/HOST): {e}",
                settings.addr
            ))
        })?;
    let addr = listener.local_addr()?;
    tracing::info!(
        startup_ms = started.elapsed().as_millis() as u64,
        dev = settings.dev,
        "listening on http://{addr}"
    );
    serve::serve(listener, app, settings.serve, common::shutdown_signal()).await;
    tracing::info!("HTTP server drained; stopping the dispatcher");
    shutdown.cancel();
    if let Some(handle) = dispatcher
        && tokio::time::timeout(Duration::from_secs(30), handle)
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
        "server",
        "The inventory HTTP API (the original service's, and more), with the orders listener in-process.",
    );
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}
