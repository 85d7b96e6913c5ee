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

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use inventory_core::{
    Auth, AuthConfig, Dispatcher, DispatcherConfig, Email, FileMailer, HashParams, LogMailer,
    Mailer, NewProduct, ProductId, Store, Templates,
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
pub const DEFAULT_SEED: &str = include_str!("../seed/products.json");

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
    /// Products created at start-up unless they exist (`SEED_PRODUCTS`).
    pub seed: Vec<SeedProduct>,
    /// The HTTP server: address, limits, CORS, rate limits.
    pub http: HttpSettings,
    /// `LOG_FORMAT`: `text` (default) or `json` (Cloud Logging's structured lines).
    pub log_format: LogFormat,
    /// Things worth a warning in the log (a short dev secret, a weak password minimum): the
    /// programs log them once logging is set up.
    pub warnings: Vec<String>,
}

/// `DATABASE_*` and `GCP_PROJECT_ID`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// `DATABASE_URL`; else `firestore://$GCP_PROJECT_ID` as the original deployment sets it;
    /// else [`DEFAULT_DATABASE_URL`].
    pub url: String,
    /// `DATABASE_MAX_CONNECTIONS` (default 10): SQL pool size.
    pub max_connections: u32,
    /// `DATABASE_ACQUIRE_TIMEOUT_MS` (default 5000): a request waits this long for a pooled
    /// connection, then gets 503.
    pub acquire_timeout: Duration,
}

impl DatabaseSettings {
    /// The URL's scheme (`sqlite`, `postgres`, `firestore`, `memory`).
    pub fn scheme(&self) -> &str {
        self.url.split(':').next().unwrap_or_default()
    }

    /// The URL for a command that only reads: a SQLite file is never created (`mode=rwc`
    /// dropped), so a wrong path is an error naming it instead of a new empty database.
    pub fn read_only_url(&self) -> String {
        if self.scheme() != "sqlite" {
            return self.url.clone();
        }
        self.url
            .replace("?mode=rwc&", "?")
            .replace("?mode=rwc", "")
            .replace("&mode=rwc", "")
    }
}

/// `JWT_*`, `ARGON2_*`, `PASSWORD_MIN_LENGTH`, `ADMIN_EMAILS`.
#[derive(Clone)]
pub struct AuthSettings {
    jwt_secret: Option<Vec<u8>>,
    /// `JWT_EXPIRES_MINUTES` (default 60).
    pub token_ttl: Duration,
    /// `ARGON2_MEMORY_KIB`, `ARGON2_ITERATIONS`, `ARGON2_PARALLELISM`.
    pub hash: HashParams,
    /// `ARGON2_CONCURRENCY` (default: the number of cores − 1, at least 1): password hashes
    /// run at once.
    pub hash_concurrency: usize,
    /// `PASSWORD_MIN_LENGTH` (default 8; the original accepted 6).
    pub password_min: usize,
    /// `ADMIN_EMAILS`: addresses that are admin at every login (comma-separated).
    pub admins: HashSet<Email>,
    /// `ADMIN_REQUIRES_VERIFIED_EMAIL` (default true): an `ADMIN_EMAILS` address makes its
    /// user admin only once the user verified it, so registering it first gains nothing.
    pub admins_need_verified_email: bool,
    /// `REQUIRE_VERIFIED_EMAIL` (default false, as the original's clients know no
    /// verification): only users with a verified address may order, and registration sends
    /// the verification email at once.
    pub require_verified_email: bool,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field(
                "jwt_secret",
                &self
                    .jwt_secret
                    .as_ref()
                    .map(|s| format!("<{} bytes>", s.len())),
            )
            .field("token_ttl", &self.token_ttl)
            .field("hash", &self.hash)
            .field("hash_concurrency", &self.hash_concurrency)
            .field("password_min", &self.password_min)
            .field("admins", &self.admins)
            .field(
                "admins_need_verified_email",
                &self.admins_need_verified_email,
            )
            .field("require_verified_email", &self.require_verified_email)
            .finish()
    }
}

impl AuthSettings {
    /// The token service's configuration. Without `JWT_SECRET` (and not in dev mode) this is
    /// the error: programs that issue no tokens (the listener, the admin tool) never ask.
    pub fn config(&self) -> Result<AuthConfig> {
        const MIN: usize = inventory_core::auth::JWT_SECRET_MIN_BYTES;
        let secret = self.jwt_secret.clone().ok_or_else(|| {
            SettingsError::new(
                "JWT_SECRET",
                format!("JWT_SECRET is required (at least {MIN} bytes) unless APP_ENV=dev"),
            )
        })?;
        // A secret shorter than the minimum only got here with APP_ENV=dev.
        let config = if secret.len() >= MIN {
            AuthConfig::new(secret)
        } else {
            AuthConfig::new_insecure(secret)
        };
        config
            .and_then(|c| {
                c.with_token_ttl(self.token_ttl)
                    .with_hash_params(self.hash)
                    .with_max_concurrent_hashes(self.hash_concurrency)
                    .with_admins(self.admins.clone())
                    .with_admins_needing_verified_email(self.admins_need_verified_email)
                    .with_password_min_bytes(self.password_min)
            })
            .map_err(|e| SettingsError::new("JWT_SECRET", e.to_string()))
    }
}

/// Where confirmations go (`SMTP_MODE`, `SMTP_*`, `MAIL_DIR`).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum MailChoice {
    /// A real SMTP server (`SMTP_HOST` set).
    #[cfg(feature = "smtp")]
    Smtp(inventory_mail::SmtpConfig),
    /// Logged, not sent (`SMTP_MODE=mock`).
    Log,
    /// `.eml` files in a folder (`MAIL_DIR`, default `./outbox`), from `SMTP_FROM`: the
    /// embedded default, no server needed.
    Files {
        /// The folder.
        dir: PathBuf,
        /// The sender.
        from: inventory_core::mail::Mailbox,
    },
}

impl MailChoice {
    /// Builds the mailer (creating the `.eml` folder if that is the choice) and says in the
    /// log where email goes.
    pub fn build(&self) -> Result<Arc<dyn Mailer>> {
        Ok(match self {
            #[cfg(feature = "smtp")]
            MailChoice::Smtp(config) => {
                tracing::info!(host = %config.host, port = config.port, tls = ?config.tls, "mail: SMTP");
                Arc::new(
                    inventory_mail::SmtpMailer::new(config.clone())
                        .map_err(|e| SettingsError::new("SMTP_HOST", e.to_string()))?,
                )
            }
            MailChoice::Log => {
                tracing::warn!("mail: SMTP_MODE=mock, confirmations are logged and NOT sent");
                Arc::new(LogMailer)
            }
            MailChoice::Files { dir, from } => {
                let mailer = FileMailer::new(dir, from.clone()).map_err(|e| {
                    SettingsError::invalid("MAIL_DIR", format!("{}: {e}", dir.display()))
                })?;
                let shown = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.clone());
                tracing::warn!(dir = %shown.display(), "mail: no SMTP_HOST configured, confirmations are written as .eml files into this folder");
                Arc::new(mailer)
            }
        })
    }
}

/// A product to seed, in the original's field names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedProduct {
    /// Id.
    pub product_id: String,
    /// Name.
    pub product_name: String,
    /// Initial stock.
    pub quantity: u64,
}

impl SeedProduct {
    /// Parses a JSON array of seed products, checking every id and name.
    pub fn parse_list(json: &str) -> inventory_core::Result<Vec<SeedProduct>> {
        let products: Vec<SeedProduct> = serde_json::from_str(json)
            .map_err(|e| inventory_core::Error::invalid("products", e.to_string()))?;
        for p in &products {
            p.to_new()?;
        }
        Ok(products)
    }

    fn to_new(&self) -> inventory_core::Result<NewProduct> {
        NewProduct::new(
            ProductId::new(self.product_id.clone())?,
            self.product_name.clone(),
            self.quantity,
        )
    }

    /// Creates the products that do not exist yet (never resets stock); returns how many
    /// were created.
    pub async fn ensure_all(
        products: &[SeedProduct],
        store: &dyn Store,
    ) -> inventory_core::Result<usize> {
        let mut created = 0;
        for p in products {
            if store
                .ensure_product(&p.to_new()?, inventory_core::now())
                .await?
            {
                created += 1;
            }
        }
        Ok(created)
    }
}

/// The HTTP server's settings.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `HOST` (default `0.0.0.0`).
    pub host: IpAddr,
    /// `PORT`; each program has its own default (server 8080, listener 9090).
    pub port: Option<u16>,
    /// `BODY_LIMIT_BYTES` (default 64 KiB): larger bodies get 413.
    pub body_limit: usize,
    /// `REQUEST_TIMEOUT_SECS` (default 30): a slower request gets 408.
    pub request_timeout: Duration,
    /// `CORS_ORIGINS` (comma-separated); unset allows any origin.
    pub cors_origins: Option<Vec<String>>,
    /// `MAX_CONNECTIONS` (default 512): connections served at once.
    pub max_connections: usize,
    /// `HEADER_READ_TIMEOUT_SECS` (default 10): time to send a request's headers.
    pub header_read_timeout: Duration,
    /// `KEEP_ALIVE_TIMEOUT_SECS` (default 75): an idle keep-alive connection is kept this long.
    pub keep_alive: Duration,
    /// `TRUSTED_PROXIES` (CIDRs or addresses, comma-separated; none by default): peers whose
    /// `X-Forwarded-For` names the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The auth rate limits; `None` with `LOGIN_RATE_LIMIT=off`.
    pub rate_limits: Option<RateLimits>,
}

impl HttpSettings {
    /// The address to listen on, with the program's default port.
    pub fn addr(&self, default_port: u16) -> SocketAddr {
        SocketAddr::new(self.host, self.port.unwrap_or(default_port))
    }
}

/// Per-minute quotas of the auth endpoints (each also the burst).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// `LOGIN_RATE_LIMIT_PER_IP` (default 60): logins from one client.
    pub login_per_client: std::num::NonZeroU32,
    /// `LOGIN_RATE_LIMIT_PER_ACCOUNT` (default 10): logins on one account from one client.
    pub login_per_account_and_client: std::num::NonZeroU32,
    /// `REGISTER_RATE_LIMIT_PER_IP` (default 20): registrations from one client.
    pub register_per_client: std::num::NonZeroU32,
}

/// `LOG_FORMAT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// JSON lines with `severity` (Google Cloud Logging's structured format).
    Json,
}

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
            seed: seed(&vars, dev)?,
            http: http(&vars)?,
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

    /// The auth service over `store`; needs `JWT_SECRET` (or dev mode).
    pub fn auth(&self, store: Arc<dyn Store>) -> Result<Auth> {
        Auth::new(store, self.auth.config()?)
            .map_err(|e| SettingsError::new("JWT_SECRET", e.to_string()))
    }
}

fn database(vars: &Vars<'_>) -> Result<DatabaseSettings> {
    let url = match (vars.get("DATABASE_URL"), vars.get("GCP_PROJECT_ID")) {
        (Some(url), _) => url.trim().to_owned(),
        (None, Some(project)) if cfg!(feature = "firestore") => {
            format!("firestore://{}", project.trim())
        }
        (None, Some(_)) => {
            return Err(SettingsError::new(
                "GCP_PROJECT_ID",
                "GCP_PROJECT_ID is set but this build has no Firestore support: rebuild with \
                 `--features firestore`, or set DATABASE_URL to choose another database",
            ));
        }
        (None, None) => DEFAULT_DATABASE_URL.to_owned(),
    };
    Ok(DatabaseSettings {
        url,
        max_connections: vars.parse("DATABASE_MAX_CONNECTIONS", 10)?,
        acquire_timeout: vars.millis("DATABASE_ACQUIRE_TIMEOUT_MS", Duration::from_secs(5))?,
    })
}

fn auth(vars: &Vars<'_>, dev: bool, warnings: &mut Vec<String>) -> Result<AuthSettings> {
    const MIN: usize = inventory_core::auth::JWT_SECRET_MIN_BYTES;
    let jwt_secret = match vars.get("JWT_SECRET") {
        Some(s) if s.len() >= MIN => Some(s.into_bytes()),
        Some(s) if dev => {
            warnings.push(format!(
                "APP_ENV=dev: accepting a JWT_SECRET of {} bytes (< {MIN}); tokens signed with it \
                 can be forged, never use it in production",
                s.len()
            ));
            Some(s.into_bytes())
        }
        Some(_) => {
            return Err(SettingsError::new(
                "JWT_SECRET",
                format!(
                    "invalid JWT_SECRET: must be at least {MIN} bytes (a shorter one is accepted \
                     only with APP_ENV=dev)"
                ),
            ));
        }
        None if dev => {
            warnings.push(
                "APP_ENV=dev and no JWT_SECRET: using a random secret; tokens will not survive \
                 a restart"
                    .into(),
            );
            let bytes: [u8; 32] = rand::random();
            Some(
                bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
                    .into_bytes(),
            )
        }
        None => None,
    };
    if let Some(alg) = vars.get("JWT_ALGORITHM")
        && alg.trim() != "HS256"
    {
        return Err(SettingsError::invalid(
            "JWT_ALGORITHM",
            format!("{alg:?}; only HS256 is supported"),
        ));
    }
    let minutes: u64 = vars.parse("JWT_EXPIRES_MINUTES", 60)?;
    if minutes == 0 {
        return Err(SettingsError::invalid(
            "JWT_EXPIRES_MINUTES",
            "must be at least 1",
        ));
    }
    let d = HashParams::default();
    let password_min: usize = vars.parse(
        "PASSWORD_MIN_LENGTH",
        inventory_core::domain::PASSWORD_MIN_BYTES,
    )?;
    if password_min == 0 || password_min > inventory_core::domain::PASSWORD_MAX_BYTES {
        return Err(SettingsError::invalid(
            "PASSWORD_MIN_LENGTH",
            format!(
                "must be 1 to {} bytes",
                inventory_core::domain::PASSWORD_MAX_BYTES
            ),
        ));
    }
    if password_min < inventory_core::domain::PASSWORD_MIN_BYTES {
        warnings.push(format!(
            "PASSWORD_MIN_LENGTH={password_min} (< 8): accepted for the original service's \
             clients, weaker against guessing"
        ));
    }
    let admins = vars
        .get("ADMIN_EMAILS")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| Email::parse(s).map_err(|e| SettingsError::invalid("ADMIN_EMAILS", e)))
        .collect::<Result<_>>()?;
    let hash = HashParams {
        memory_kib: vars.parse("ARGON2_MEMORY_KIB", d.memory_kib)?,
        iterations: vars.parse("ARGON2_ITERATIONS", d.iterations)?,
        parallelism: vars.parse("ARGON2_PARALLELISM", d.parallelism)?,
    };
    inventory_core::PasswordHasher::new(hash, 1)
        .map_err(|e| SettingsError::invalid("ARGON2_MEMORY_KIB", e))?;
    Ok(AuthSettings {
        jwt_secret,
        token_ttl: Duration::from_secs(minutes * 60),
        hash,
        hash_concurrency: match vars.parse::<usize>(
            "ARGON2_CONCURRENCY",
            // One core kept for cheap requests: /health and page loads stay fast in a login
            // flood (BENCHMARKS.md: p99 5.2 -> 3.9 ms at -23 % logins on 2 cores).
            std::thread::available_parallelism().map_or(1, |n| n.get().saturating_sub(1).max(1)),
        )? {
            0 => {
                return Err(SettingsError::invalid(
                    "ARGON2_CONCURRENCY",
                    "must be at least 1",
                ));
            }
            n => n,
        },
        password_min,
        admins,
        admins_need_verified_email: vars.flag("ADMIN_REQUIRES_VERIFIED_EMAIL", true)?,
        require_verified_email: vars.flag("REQUIRE_VERIFIED_EMAIL", false)?,
    })
}

fn mail(vars: &Vars<'_>) -> Result<MailChoice> {
    let mode = vars.get("SMTP_MODE").map(|m| m.trim().to_ascii_lowercase());
    match mode.as_deref() {
        Some("mock") => return Ok(MailChoice::Log),
        Some("files") => {}
        Some("smtp") | None => {
            #[cfg(feature = "smtp")]
            if let Some(config) = inventory_mail::SmtpConfig::from_lookup(|k| vars.get(k))
                .map_err(|e| SettingsError::new("SMTP_HOST", e.to_string()))?
            {
                return Ok(MailChoice::Smtp(config));
            }
            #[cfg(not(feature = "smtp"))]
            if vars.get("SMTP_HOST").is_some() {
                return Err(SettingsError::new(
                    "SMTP_HOST",
                    "SMTP_HOST is set but this build has no SMTP support: enable the `smtp` \
                     feature, or unset it to write .eml files",
                ));
            }
            if mode.is_some() {
                return Err(SettingsError::invalid(
                    "SMTP_HOST",
                    "SMTP_MODE=smtp needs SMTP_HOST",
                ));
            }
        }
        Some(other) => {
            return Err(SettingsError::invalid(
                "SMTP_MODE",
                format!("{other:?} is not one of smtp, mock, files"),
            ));
        }
    }
    let from = match vars.get("SMTP_FROM") {
        Some(f) => f
            .trim()
            .parse()
            .map_err(|e| SettingsError::invalid("SMTP_FROM", e))?,
        None => inventory_core::mail::default_from(),
    };
    Ok(MailChoice::Files {
        dir: PathBuf::from(vars.get("MAIL_DIR").unwrap_or_else(|| "outbox".into())),
        from,
    })
}

fn dispatcher(vars: &Vars<'_>) -> Result<DispatcherConfig> {
    let d = DispatcherConfig::default();
    Ok(DispatcherConfig {
        batch_size: vars.parse("DISPATCHER_BATCH_SIZE", d.batch_size)?,
        concurrency: vars.parse("DISPATCHER_CONCURRENCY", d.concurrency)?,
        max_attempts: vars.parse("DISPATCHER_MAX_ATTEMPTS", d.max_attempts)?,
        lease: vars.secs("DISPATCHER_LEASE_SECS", d.lease.as_secs())?,
        retry_base: vars.millis("DISPATCHER_RETRY_BASE_MS", d.retry_base)?,
        retry_max: vars.secs("DISPATCHER_RETRY_MAX_SECS", d.retry_max.as_secs())?,
        sweep_interval: vars.millis("DISPATCHER_SWEEP_MS", d.sweep_interval)?,
        ..d
    })
}

fn seed(vars: &Vars<'_>, dev: bool) -> Result<Vec<SeedProduct>> {
    let raw = match vars.get("SEED_PRODUCTS") {
        Some(v) if v.trim_start().starts_with('[') => v,
        Some(path) => std::fs::read_to_string(path.trim()).map_err(|e| {
            SettingsError::invalid("SEED_PRODUCTS", format!("{}: {e}", path.trim()))
        })?,
        None if dev => DEFAULT_SEED.to_owned(),
        None => return Ok(Vec::new()),
    };
    SeedProduct::parse_list(&raw).map_err(|e| SettingsError::invalid("SEED_PRODUCTS", e))
}

fn http(vars: &Vars<'_>) -> Result<HttpSettings> {
    let rate_limits = match vars
        .get("LOGIN_RATE_LIMIT")
        .map(|v| v.trim().to_ascii_lowercase())
        .as_deref()
    {
        Some("off" | "false" | "0") => None,
        Some("on" | "true" | "1") | None => Some(RateLimits {
            login_per_client: vars.per_minute("LOGIN_RATE_LIMIT_PER_IP", 60)?,
            login_per_account_and_client: vars.per_minute("LOGIN_RATE_LIMIT_PER_ACCOUNT", 10)?,
            register_per_client: vars.per_minute("REGISTER_RATE_LIMIT_PER_IP", 20)?,
        }),
        Some(other) => {
            return Err(SettingsError::invalid(
                "LOGIN_RATE_LIMIT",
                format!("{other:?} is not on or off"),
            ));
        }
    };
    let trusted_proxies = vars
        .get("TRUSTED_PROXIES")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| {
                    SettingsError::invalid(
                        "TRUSTED_PROXIES",
                        format!("{s:?} is not an address or CIDR"),
                    )
                })
        })
        .collect::<Result<_>>()?;
    let cors_origins = vars
        .get("CORS_ORIGINS")
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|origin| {
                    let scheme = origin.starts_with("http://") || origin.starts_with("https://");
                    if scheme && origin.chars().all(|c| c.is_ascii_graphic()) {
                        Ok(origin.to_owned())
                    } else {
                        Err(SettingsError::invalid(
                            "CORS_ORIGINS",
                            format!("{origin:?} is not an origin like https://shop.example"),
                        ))
                    }
                })
                .collect::<Result<Vec<_>>>()
        })
        .transpose()?;
    Ok(HttpSettings {
        host: vars.parse("HOST", IpAddr::from([0, 0, 0, 0]))?,
        port: vars
            .get("PORT")
            .map(|p| {
                p.trim().parse().map_err(|_| {
                    SettingsError::invalid("PORT", format!("{p:?} is not a port number"))
                })
            })
            .transpose()?,
        body_limit: vars.parse("BODY_LIMIT_BYTES", 64 * 1024)?,
        request_timeout: vars.secs("REQUEST_TIMEOUT_SECS", 30)?,
        cors_origins,
        max_connections: vars.parse::<usize>("MAX_CONNECTIONS", 512)?.max(1),
        header_read_timeout: vars
            .secs("HEADER_READ_TIMEOUT_SECS", 10)?
            .max(Duration::from_secs(1)),
        keep_alive: vars
            .secs("KEEP_ALIVE_TIMEOUT_SECS", 75)?
            .max(Duration::from_secs(1)),
        trusted_proxies,
        rate_limits,
    })
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
            ("REQUIRE_VERIFIED_EMAIL", "sometimes"),
            ("ARGON2_CONCURRENCY", "0"),
            ("DATABASE_MAX_CONNECTIONS", "-1"),
            ("LOG_FORMAT", "xml"),
            ("CORS_ORIGINS", "shop.example"),
            ("MAIL_TEMPLATE_DIR", "/nonexistent/templates"),
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
