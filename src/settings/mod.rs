//! The environment contract of the service, parsed once into one typed value.
//!
//! Every program of the kit (the example server, the listener, the admin tool) reads its
//! configuration through [`Settings`]; an embedder can too, or build one by hand. Parsing
//! never reads a file except `SEED_PRODUCTS` and `SMTP_CA_FILE`, never creates one, and every
//! error names its variable and says what would be accepted.
//!
//! ```
//! let settings = inventory_kit::Settings::from_vars([
//!     ("APP_ENV", "dev"),
//!     ("DATABASE_URL", "memory://"),
//!     ("PORT", "9000"),
//! ])?;
//! assert_eq!(settings.http.addr(8080).port(), 9000);
//! assert_eq!(settings.database.url, "memory://");
//!
//! let err = inventory_kit::Settings::from_vars([("PORT", "eighty")]).unwrap_err();
//! assert_eq!(err.var, "PORT");
//! # Ok::<(), inventory_kit::SettingsError>(())
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use inventory_core::{
    Auth, Dispatcher, DispatcherConfig, Reservations, RetentionPolicy, Store, Templates,
};

/// A configuration error: the variable at fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SettingsError {
    /// The environment variable at fault (`JWT_SECRET`, `PORT`, ...).
    pub var: &'static str,
    /// A sentence naming the variable, the value's problem and the fix.
    pub message: String,
}

impl SettingsError {
    /// An error about `var` with a message of its own (which should name the variable).
    pub fn new(var: &'static str, message: impl Into<String>) -> Self {
        SettingsError {
            var,
            message: message.into(),
        }
    }

    /// `invalid VAR: why`.
    fn invalid(var: &'static str, why: impl std::fmt::Display) -> Self {
        SettingsError::new(var, format!("invalid {var}: {why}"))
    }
}

type Result<T, E = SettingsError> = std::result::Result<T, E>;

/// The database of the service when neither `DATABASE_URL` nor `GCP_PROJECT_ID` is set: a
/// SQLite file in the working folder, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://inventory.db?mode=rwc";

/// The original service's seed: `product-1`, "Demo Product", 5 units (used with `APP_ENV=dev`
/// when `SEED_PRODUCTS` is unset).
pub const DEFAULT_SEED: &str = include_str!("../../seed/products.json");

/// The whole configuration. Build it with [`Settings::from_env`] (or [`Settings::from_vars`]
/// in tests); every field is public, so an embedder may also adjust it before use.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Settings {
    /// `APP_ENV=dev` (or `development`, `local`): a random JWT secret when none is set, short
    /// secrets accepted with a warning, the demo product seeded.
    pub dev: bool,
    /// Where the data lives.
    pub database: DatabaseSettings,
    /// Tokens, password hashing and administrators.
    pub auth: AuthSettings,
    /// Where confirmations go.
    pub mail: MailChoice,
    /// The confirmation email's wording: `MAIL_TEMPLATE_DIR` (a folder with `subject.txt`,
    /// `body.txt`, `body.html`; see [`Templates`]), else the kit's own.
    pub templates: Templates,
    /// The outbox dispatcher (`DISPATCHER_*`).
    pub dispatcher: DispatcherConfig,
    /// `RUN_DISPATCHER` (default true): the server sends confirmations itself; false when
    /// separate listeners do.
    pub run_dispatcher: bool,
    /// `RESERVATION_TTL_MAX_SECS` (default 3600): the longest hold a client may ask for
    /// (`ttl_seconds` of `POST /reservations`; 900 when it names none).
    pub reservation_ttl_max: Duration,
    /// How long finished records are kept, applied by the process that runs the dispatcher:
    /// `IDEMPOTENCY_KEY_TTL_HOURS` (default 24: a request repeating an older key places a new
    /// order), `OUTBOX_RETENTION_DAYS` (default 30: sent and cancelled notifications, delivered
    /// event deliveries; failed ones are kept) and `LEDGER_RETENTION_DAYS` (default unset,
    /// entries kept forever: stock ledger entries older than this are pruned into one
    /// checkpoint per product).
    pub retention: RetentionPolicy,
    /// Products created at start-up unless they exist (`SEED_PRODUCTS`).
    pub seed: Vec<SeedProduct>,
    /// The HTTP server: address, limits, CORS, rate limits.
    pub http: HttpSettings,
    /// Events to other systems: webhooks and Pub/Sub.
    pub events: EventSettings,
    /// `LOG_FORMAT`: `text` (default) or `json` (Cloud Logging's structured lines).
    pub log_format: LogFormat,
    /// Things worth a warning in the log (a short dev secret, a weak password minimum): the
    /// programs log them once logging is set up.
    pub warnings: Vec<String>,
}

mod auth;
mod database;
mod events;
mod http;
mod mail;
mod seed;

use auth::auth;
pub use auth::*;
use database::database;
pub use database::*;
use events::events;
pub use events::*;
use http::http;
pub use http::*;
pub use mail::*;
use mail::{dispatcher, mail};
use seed::seed;
pub use seed::*;

/// Reads variables from a lookup function; empty counts as unset.
struct Vars<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Vars<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, name: &'static str, default: T) -> Result<T>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| SettingsError::invalid(name, format!("{raw:?}: {e}"))),
        }
    }

    fn flag(&self, name: &'static str, default: bool) -> Result<bool> {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) if ["1", "true", "yes", "on"].contains(&v.as_str()) => Ok(true),
            Some(v) if ["0", "false", "no", "off"].contains(&v.as_str()) => Ok(false),
            Some(v) => Err(SettingsError::invalid(
                name,
                format!("{v:?} is not a boolean (true/false, on/off, 1/0)"),
            )),
        }
    }

    fn secs(&self, name: &'static str, default: u64) -> Result<Duration> {
        Ok(Duration::from_secs(self.parse(name, default)?))
    }

    fn millis(&self, name: &'static str, default: Duration) -> Result<Duration> {
        Ok(Duration::from_millis(
            self.parse(name, default.as_millis() as u64)?,
        ))
    }

    fn per_minute(&self, name: &'static str, default: u32) -> Result<std::num::NonZeroU32> {
        std::num::NonZeroU32::new(self.parse(name, default)?)
            .ok_or_else(|| SettingsError::invalid(name, "must be at least 1"))
    }
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(&|name| std::env::var(name).ok())
    }

    /// Reads these variables only (the process environment is ignored): for tests, and for
    /// configuration that comes from elsewhere.
    pub fn from_vars<K: Into<String>, V: Into<String>>(
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self> {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self::from_lookup(&|name| map.get(name).cloned())
    }

    /// Reads variables through `lookup`.
    pub fn from_lookup(lookup: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let vars = Vars(lookup);
        let mut warnings = Vec::new();
        let dev = match vars
            .get("APP_ENV")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            Some("dev" | "development" | "local") => true,
            Some("prod" | "production" | "staging" | "test") | None => false,
            Some(other) => {
                return Err(SettingsError::invalid(
                    "APP_ENV",
                    format!("{other:?} is not one of dev, test, staging, production"),
                ));
            }
        };
        let log_format = match vars
            .get("LOG_FORMAT")
            .map(|f| f.to_ascii_lowercase())
            .as_deref()
        {
            Some("json") => LogFormat::Json,
            Some("text") | None => LogFormat::Text,
            Some(other) => {
                return Err(SettingsError::invalid(
                    "LOG_FORMAT",
                    format!("{other:?} is not json or text"),
                ));
            }
        };
        Ok(Settings {
            dev,
            database: database(&vars)?,
            auth: auth(&vars, dev, &mut warnings)?,
            mail: mail(&vars)?,
            templates: match vars.get("MAIL_TEMPLATE_DIR") {
                Some(dir) => Templates::from_dir(std::path::Path::new(dir.trim()))
                    .map_err(|e| SettingsError::invalid("MAIL_TEMPLATE_DIR", e))?,
                None => Templates::default(),
            },
            dispatcher: dispatcher(&vars)?,
            run_dispatcher: vars.flag("RUN_DISPATCHER", true)?,
            reservation_ttl_max: match vars.secs("RESERVATION_TTL_MAX_SECS", 3600)? {
                d if d.is_zero() => {
                    return Err(SettingsError::invalid(
                        "RESERVATION_TTL_MAX_SECS",
                        "must be at least 1",
                    ));
                }
                d => d,
            },
            retention: retention(&vars)?,
            seed: seed(&vars, dev)?,
            http: http(&vars)?,
            events: events(&vars)?,
            log_format,
            warnings,
        })
    }

    /// Opens the store of [`DatabaseSettings::url`] (running migrations), with the pool
    /// settings; start-up errors name `DATABASE_URL` and the fix.
    pub async fn open_store(&self) -> inventory_core::Result<Arc<dyn Store>> {
        self.open_store_at(&self.database.url).await
    }

    /// [`open_store`](Self::open_store) for a command that only reads: never creates a
    /// SQLite file.
    pub async fn open_store_read_only(&self) -> inventory_core::Result<Arc<dyn Store>> {
        self.open_store_at(&self.database.read_only_url()).await
    }

    /// The Firestore store itself, for what only Firestore has (sharded stock), when
    /// `DATABASE_URL` names Firestore; `None` for another database.
    #[cfg(feature = "firestore")]
    pub async fn open_firestore(
        &self,
    ) -> inventory_core::Result<Option<inventory_firestore::FirestoreStore>> {
        if self.database.scheme() != "firestore" {
            return Ok(None);
        }
        Ok(Some(
            inventory_firestore::FirestoreStore::connect_url(&self.database.url).await?,
        ))
    }

    async fn open_store_at(&self, url: &str) -> inventory_core::Result<Arc<dyn Store>> {
        let options = crate::ConnectOptions {
            max_connections: self.database.max_connections,
            acquire_timeout: self.database.acquire_timeout,
        };
        let store = crate::connect_with(url, options).await?;
        tracing::info!(backend = %self.database.scheme(), "store connected");
        Ok(store)
    }

    /// The confirmation dispatcher over `store`: the mailer, the `DISPATCHER_*` settings and
    /// the templates.
    pub fn dispatcher(&self, store: Arc<dyn Store>) -> Result<Dispatcher> {
        Ok(
            Dispatcher::new(store, self.mail.build()?, self.dispatcher.clone())
                .with_templates(self.templates.clone()),
        )
    }

    /// The event dispatcher over `store`: webhooks with `WEBHOOK_*`, Pub/Sub with
    /// `PUBSUB_TOPIC` (checked to exist: a missing topic fails here, naming it).
    pub async fn event_dispatcher(
        &self,
        store: Arc<dyn Store>,
    ) -> Result<inventory_core::EventDispatcher> {
        let sender = self.events.webhook_sender()?;
        let publisher = self.events.publisher().await?;
        let config = inventory_core::EventConfig {
            per_endpoint: self.events.per_endpoint,
            schedule: self.events.schedule.clone(),
            lease: self.events.timeout * inventory_core::events::WEBHOOK_ROUNDS
                + Duration::from_secs(15),
            ..inventory_core::EventConfig::default()
        };
        Ok(inventory_core::EventDispatcher::new(
            store,
            Some(Arc::new(sender)),
            publisher.map(|p| Arc::new(p) as Arc<dyn inventory_core::Publisher>),
            config,
        ))
    }

    /// The holds service over `store`, with `RESERVATION_TTL_MAX_SECS` and
    /// `REQUIRE_VERIFIED_EMAIL`.
    pub fn reservations(&self, store: Arc<dyn Store>) -> Reservations {
        Reservations::new(store)
            .max_ttl(self.reservation_ttl_max)
            .require_verified_email(self.auth.require_verified_email)
    }

    /// The background sweeps of the process that runs the dispatcher, until `shutdown`: expired
    /// holds released every `hold_every`, and what [`Settings::retention`] lets go pruned every
    /// minute. One handle for both.
    pub fn spawn_sweeps(
        &self,
        store: Arc<dyn Store>,
        hold_every: Duration,
        shutdown: inventory_core::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let holds = self
            .reservations(store.clone())
            .spawn_sweeper(hold_every, shutdown.clone());
        let retention = inventory_core::Retention::new(store, self.retention)
            .spawn(inventory_core::retention::PRUNE_EVERY, shutdown);
        tokio::spawn(async move {
            let _ = holds.await;
            let _ = retention.await;
        })
    }

    /// The auth service over `store`; needs `JWT_SECRET` (or dev mode).
    pub fn auth(&self, store: Arc<dyn Store>) -> Result<Auth> {
        Auth::new(store, self.auth.config()?)
            .map_err(|e| SettingsError::new("JWT_SECRET", e.to_string()))
    }
}

/// `IDEMPOTENCY_KEY_TTL_HOURS`, `OUTBOX_RETENTION_DAYS`, `LEDGER_RETENTION_DAYS`: each at least
/// 1 when set.
fn retention(vars: &Vars) -> Result<RetentionPolicy> {
    const HOUR: u64 = 3_600;
    // `None` when unset, else the duration of that many units; 0 is refused.
    let window = |name: &'static str, unit: u64, zero: &str| -> Result<Option<Duration>> {
        match vars.parse::<u64>(name, 0)? {
            0 if vars.get(name).is_some() => Err(SettingsError::invalid(name, zero)),
            0 => Ok(None),
            n => Ok(Some(Duration::from_secs(n.saturating_mul(unit)))),
        }
    };
    let defaults = RetentionPolicy::default();
    Ok(RetentionPolicy::new(
        window("IDEMPOTENCY_KEY_TTL_HOURS", HOUR, "must be at least 1")?
            .unwrap_or(defaults.idempotency_keys),
        window("OUTBOX_RETENTION_DAYS", 24 * HOUR, "must be at least 1")?
            .unwrap_or(defaults.outbox),
        window(
            "LEDGER_RETENTION_DAYS",
            24 * HOUR,
            "must be at least 1 (leave it unset to keep every entry)",
        )?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_any_variable_need_a_jwt_secret_to_issue_tokens() {
        let s = Settings::from_vars::<&str, &str>([]).unwrap();
        assert_eq!(s.auth.config().unwrap_err().var, "JWT_SECRET");
        let s = Settings::from_vars([("JWT_SECRET", "x".repeat(32))]).unwrap();
        assert_eq!(s.database.url, DEFAULT_DATABASE_URL);
        assert_eq!(s.http.addr(8080).port(), 8080);
        assert!(s.seed.is_empty());
        assert!(s.run_dispatcher);
        assert!(matches!(s.mail, MailChoice::Files { .. }));
        assert!(s.http.rate_limits.is_some());
    }

    #[test]
    fn every_error_names_its_variable() {
        let secret = ("JWT_SECRET", "s".repeat(40));
        for (var, value) in [
            ("PORT", "http"),
            ("APP_ENV", "prd"),
            ("JWT_EXPIRES_MINUTES", "0"),
            ("JWT_ALGORITHM", "RS256"),
            ("JWT_SECRET", "short"),
            ("PASSWORD_MIN_LENGTH", "0"),
            ("ARGON2_MEMORY_KIB", "1"),
            ("ADMIN_EMAILS", "not-an-address"),
            ("SMTP_MODE", "pigeon"),
            ("SMTP_FROM", "<<>>"),
            ("SEED_PRODUCTS", "[{\"product_id\":\"\"}]"),
            ("SEED_PRODUCTS", "/nonexistent/seed.json"),
            ("TRUSTED_PROXIES", "10.0.0.0/33"),
            ("LOGIN_RATE_LIMIT", "maybe"),
            ("LOGIN_RATE_LIMIT_PER_IP", "0"),
            ("RUN_DISPATCHER", "perhaps"),
            ("RESERVATION_TTL_MAX_SECS", "0"),
            ("LEDGER_RETENTION_DAYS", "0"),
            ("LEDGER_RETENTION_DAYS", "a year"),
            ("REQUIRE_VERIFIED_EMAIL", "sometimes"),
            ("ARGON2_CONCURRENCY", "0"),
            ("DATABASE_MAX_CONNECTIONS", "-1"),
            ("LOG_FORMAT", "xml"),
            ("CORS_ORIGINS", "shop.example"),
            ("MAIL_TEMPLATE_DIR", "/nonexistent/templates"),
            ("WEBHOOK_ALLOW_PRIVATE", "maybe"),
            ("WEBHOOK_RETRY_SCHEDULE", "5 parsecs"),
            ("WEBHOOK_TIMEOUT_SECS", "0"),
            ("WEBHOOK_CONCURRENCY", "0"),
            ("PUBSUB_TOPIC", "orders"),
        ] {
            let err = Settings::from_vars([secret.clone(), (var, value.to_owned())]).unwrap_err();
            assert_eq!(err.var, var, "{var}={value}: {err}");
            assert!(err.message.contains(var), "{var}={value}: {err}");
        }
    }

    #[test]
    fn dev_mode_seeds_and_tolerates_a_short_secret_with_a_warning() {
        let s = Settings::from_vars([("APP_ENV", "dev"), ("JWT_SECRET", "dev-secret")]).unwrap();
        assert!(s.dev);
        assert_eq!(s.seed.len(), 1);
        assert_eq!(s.warnings.len(), 1, "{:?}", s.warnings);
        assert!(
            !format!("{s:?}").contains("dev-secret"),
            "the secret is not in Debug"
        );
        s.auth.config().unwrap();
    }

    #[test]
    fn read_only_urls_never_create_a_sqlite_file() {
        let s = Settings::from_vars([
            ("JWT_SECRET", "x".repeat(32)),
            ("DATABASE_URL", "sqlite://a.db?mode=rwc".to_owned()),
        ])
        .unwrap();
        assert_eq!(s.database.read_only_url(), "sqlite://a.db");
    }
}
