//! Configuration, logging, metrics and wiring shared by the example programs.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use inventory_kit::core::{Email, FileMailer, LogMailer, Mailer, NewProduct, ProductId, Store};
use inventory_kit::mail::{SmtpConfig, SmtpMailer};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Parses the command line of an example program. Configuration is the environment, so the
/// only options are `--help` and `--version`: both print and exit before anything is opened
/// or created; anything else is a usage error (exit 2).
pub fn command_line(name: &'static str, about: &'static str) {
    clap::Command::new(name)
        .version(env!("CARGO_PKG_VERSION"))
        .about(about)
        .after_help(
            "Configuration is read from environment variables (DATABASE_URL, JWT_SECRET, \
             SMTP_HOST, ...): see the README's configuration table.",
        )
        .get_matches();
}

/// A start-up error that names the variable at fault.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

fn bad(var: &str, why: impl std::fmt::Display) -> ConfigError {
    ConfigError(format!("invalid {var}: {why}"))
}

/// Reads a variable; empty counts as unset.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Reads and parses a variable, or returns the default.
pub fn parse_var<T: std::str::FromStr>(name: &str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match var(name) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse()
            .map_err(|e| bad(name, format!("{raw:?}: {e}"))),
    }
}

/// Reads a boolean variable (`true/false/1/0/yes/no/on/off`).
pub fn bool_var(name: &str, default: bool) -> Result<bool, ConfigError> {
    match var(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
        Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
        Some(v) => Err(bad(name, format!("{v:?} is not a boolean"))),
    }
}

/// The database of the examples when `DATABASE_URL` is unset: a SQLite file here.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://inventory.db?mode=rwc";

/// Where confirmations go.
#[derive(Debug, Clone)]
pub enum MailChoice {
    /// A real SMTP server (`SMTP_HOST` set).
    Smtp(SmtpConfig),
    /// Logged, not sent (`SMTP_MODE=mock`).
    Log,
    /// `.eml` files in a folder (`MAIL_DIR`, default `./outbox`): the embedded default.
    Files(PathBuf),
}

impl MailChoice {
    /// Reads `SMTP_MODE`, `SMTP_*` and `MAIL_DIR`.
    pub fn from_env() -> Result<Self, ConfigError> {
        match var("SMTP_MODE").map(|m| m.to_ascii_lowercase()).as_deref() {
            Some("mock") => return Ok(MailChoice::Log),
            Some("files") => {}
            Some("smtp") | None => {
                if let Some(config) =
                    SmtpConfig::from_env().map_err(|e| ConfigError(e.to_string()))?
                {
                    return Ok(MailChoice::Smtp(config));
                }
                if var("SMTP_MODE").is_some() {
                    return Err(bad("SMTP_HOST", "SMTP_MODE=smtp needs SMTP_HOST"));
                }
            }
            Some(other) => {
                return Err(bad(
                    "SMTP_MODE",
                    format!("{other:?} is not one of smtp, mock, files"),
                ));
            }
        }
        Ok(MailChoice::Files(PathBuf::from(
            var("MAIL_DIR").unwrap_or_else(|| "outbox".into()),
        )))
    }

    /// Builds the mailer and says in the log where email goes.
    pub fn build(&self) -> Result<Arc<dyn Mailer>, ConfigError> {
        Ok(match self {
            MailChoice::Smtp(config) => {
                tracing::info!(host = %config.host, port = config.port, tls = ?config.tls, "mail: SMTP");
                Arc::new(SmtpMailer::new(config.clone()).map_err(|e| ConfigError(e.to_string()))?)
            }
            MailChoice::Log => {
                tracing::warn!("mail: SMTP_MODE=mock, confirmations are logged and NOT sent");
                Arc::new(LogMailer)
            }
            MailChoice::Files(dir) => {
                let from = match var("SMTP_FROM") {
                    Some(f) => f.parse().map_err(|e| bad("SMTP_FROM", e))?,
                    None => inventory_kit::core::mail::default_from(),
                };
                let mailer = FileMailer::new(dir, from)
                    .map_err(|e| bad("MAIL_DIR", format!("{}: {e}", dir.display())))?;
                let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
                tracing::warn!(dir = %shown.display(), "mail: no SMTP_HOST configured, confirmations are written as .eml files into this folder");
                Arc::new(mailer)
            }
        })
    }
}

/// A product to seed, in the original's field names.
#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedProduct {
    /// Id.
    pub product_id: String,
    /// Name.
    pub product_name: String,
    /// Initial stock.
    pub quantity: u64,
}

/// The original service's seed: `product-1`, "Demo Product", 5 units.
pub const DEFAULT_SEED: &str = include_str!("../../seed/products.json");

/// Parses `SEED_PRODUCTS`: a path to a JSON file, or the JSON array itself.
pub fn seed_from_env(default: Option<&str>) -> Result<Vec<SeedProduct>, ConfigError> {
    let raw = match var("SEED_PRODUCTS") {
        Some(v) if v.trim_start().starts_with('[') => v,
        Some(path) => std::fs::read_to_string(&path)
            .map_err(|e| bad("SEED_PRODUCTS", format!("{path}: {e}")))?,
        None => match default {
            Some(d) => d.to_owned(),
            None => return Ok(Vec::new()),
        },
    };
    let products: Vec<SeedProduct> =
        serde_json::from_str(&raw).map_err(|e| bad("SEED_PRODUCTS", e))?;
    for p in &products {
        ProductId::new(p.product_id.clone()).map_err(|e| bad("SEED_PRODUCTS", e))?;
    }
    Ok(products)
}

/// Creates the seed products that do not exist yet (never resets stock).
pub async fn seed(
    store: &dyn Store,
    products: &[SeedProduct],
) -> inventory_kit::core::Result<usize> {
    let mut created = 0;
    for p in products {
        let new = NewProduct::new(
            ProductId::new(p.product_id.clone())?,
            p.product_name.clone(),
            p.quantity,
        )?;
        if store
            .ensure_product(&new, inventory_kit::core::now())
            .await?
        {
            created += 1;
        }
    }
    Ok(created)
}

/// Parses `ADMIN_EMAILS` (comma-separated).
pub fn admin_emails() -> Result<HashSet<Email>, ConfigError> {
    var("ADMIN_EMAILS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Email::parse(s).map_err(|e| bad("ADMIN_EMAILS", e)))
        .collect()
}

/// Starts logging: JSON lines with `severity` (Cloud Logging's structured format) when
/// `LOG_FORMAT=json`, text otherwise;
/// the level from `RUST_LOG` (default `info`).
pub fn init_tracing() -> Result<(), ConfigError> {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    match var("LOG_FORMAT").map(|f| f.to_ascii_lowercase()).as_deref() {
        Some("json") => {
            // Google Cloud Logging's structured format: `severity`, `time`, `message`, spans.
            use tracing_subscriber::prelude::*;
            tracing_subscriber::registry()
                .with(filter)
                .with(tracing_stackdriver::layer())
                .init()
        }
        Some("text") | None => tracing_subscriber::fmt().with_env_filter(filter).init(),
        Some(other) => return Err(bad("LOG_FORMAT", format!("{other:?} is not json or text"))),
    }
    Ok(())
}

/// Installs the Prometheus recorder; latency metrics become histograms.
pub fn install_metrics() -> PrometheusHandle {
    PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("duration_seconds".into()),
            &[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ],
        )
        .expect("static buckets are valid")
        .install_recorder()
        .expect("metrics recorder installed once")
}

/// Publishes the outbox counts as gauges (called before each scrape).
pub async fn record_backlog(store: &dyn Store) {
    if let Ok(c) = store.notification_counts().await {
        metrics::gauge!("inventory_notifications", "status" => "pending").set(c.pending as f64);
        metrics::gauge!("inventory_notifications", "status" => "sent").set(c.sent as f64);
        metrics::gauge!("inventory_notifications", "status" => "failed").set(c.failed as f64);
        metrics::gauge!("inventory_notifications", "status" => "cancelled").set(c.cancelled as f64);
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested");
}

/// Dispatcher settings from `DISPATCHER_*` variables.
pub fn dispatcher_config() -> Result<inventory_kit::core::DispatcherConfig, ConfigError> {
    let d = inventory_kit::core::DispatcherConfig::default();
    Ok(inventory_kit::core::DispatcherConfig {
        batch_size: parse_var("DISPATCHER_BATCH_SIZE", d.batch_size)?,
        concurrency: parse_var("DISPATCHER_CONCURRENCY", d.concurrency)?,
        max_attempts: parse_var("DISPATCHER_MAX_ATTEMPTS", d.max_attempts)?,
        lease: Duration::from_secs(parse_var("DISPATCHER_LEASE_SECS", d.lease.as_secs())?),
        retry_base: Duration::from_millis(parse_var(
            "DISPATCHER_RETRY_BASE_MS",
            d.retry_base.as_millis() as u64,
        )?),
        retry_max: Duration::from_secs(parse_var(
            "DISPATCHER_RETRY_MAX_SECS",
            d.retry_max.as_secs(),
        )?),
        sweep_interval: Duration::from_millis(parse_var(
            "DISPATCHER_SWEEP_MS",
            d.sweep_interval.as_millis() as u64,
        )?),
        ..d
    })
}

/// The database URL: `DATABASE_URL`; else, as the original service's deployment sets it,
/// `GCP_PROJECT_ID` selects Firestore (an error in a build without the `firestore` feature);
/// else [`DEFAULT_DATABASE_URL`].
pub fn database_url() -> Result<String, ConfigError> {
    if let Some(url) = var("DATABASE_URL") {
        return Ok(url);
    }
    match var("GCP_PROJECT_ID") {
        Some(project) if cfg!(feature = "firestore") => {
            Ok(format!("firestore://{}", project.trim()))
        }
        Some(_) => Err(ConfigError(
            "GCP_PROJECT_ID is set but this build has no Firestore support: rebuild with \
             `--features firestore`, or set DATABASE_URL to choose another database"
                .into(),
        )),
        None => Ok(DEFAULT_DATABASE_URL.to_owned()),
    }
}

/// Opens the store of [`database_url`].
pub async fn open_store() -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    let url = database_url()?;
    let scheme = url.split(':').next().unwrap_or_default().to_owned();
    let options = inventory_kit::ConnectOptions {
        max_connections: parse_var("DATABASE_MAX_CONNECTIONS", 10)?,
        acquire_timeout: Duration::from_millis(parse_var("DATABASE_ACQUIRE_TIMEOUT_MS", 5000)?),
    };
    let store = inventory_kit::connect_with(&url, options).await?;
    tracing::info!(backend = %scheme, "store connected");
    Ok(store)
}
