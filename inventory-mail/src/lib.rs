//! SMTP mailer of the inventory kit, over lettre's async SMTP connections.
//!
//! [`SmtpMailer`] implements [`inventory_core::Mailer`]: it renders the MIME message with
//! [`inventory_core::to_mime`] and sends it over a pooled `TCP_NODELAY` connection, the whole
//! conversation bounded by `SMTP_TIMEOUT_SECS`. Its errors say what
//! the dispatcher should do:
//!
//! - transient (retry later): connection refused, timeouts, TLS failures, 4xx replies, and
//!   authentication failures (a credentials problem is fixed by the operator, not by giving up
//!   on every order confirmation);
//! - permanent (mark failed, keep the server's reply): other 5xx replies such as
//!   `550 mailbox unavailable`.
//!
//! ```no_run
//! # fn demo() -> Result<(), inventory_mail::ConfigError> {
//! use inventory_mail::{SmtpConfig, SmtpMailer};
//! let mailer = SmtpMailer::new(SmtpConfig::from_url("smtp://127.0.0.1:1025")?)?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use inventory_core::mail::Mailbox;
use inventory_core::{MailError, Mailer, OutgoingEmail, to_mime};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, TlsParameters};
use lettre::transport::smtp::extension::ClientId;

#[cfg(feature = "test-server")]
pub mod testing;

/// A configuration value that cannot be used; the message names the variable or field.
#[derive(Debug, thiserror::Error)]
#[error("invalid {field}: {reason}")]
pub struct ConfigError {
    /// The variable or field at fault.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn config_error(field: &'static str, reason: impl fmt::Display) -> ConfigError {
    ConfigError {
        field,
        reason: reason.to_string(),
    }
}

/// How the connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plain text (a local relay or a test server such as MailHog).
    None,
    /// Upgrade with STARTTLS when the server offers it.
    Opportunistic,
    /// STARTTLS, required.
    StartTls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Implicit,
}

impl TlsMode {
    /// Parses `SMTP_USE_TLS`: `true`/`starttls`, `false`/`none`, `tls`/`implicit`/`smtps`,
    /// `opportunistic`.
    pub fn parse(raw: &str) -> Result<Self, ConfigError> {
        match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "starttls" => Ok(TlsMode::StartTls),
            "0" | "false" | "no" | "none" => Ok(TlsMode::None),
            "tls" | "implicit" | "smtps" | "ssl" => Ok(TlsMode::Implicit),
            "opportunistic" | "auto" => Ok(TlsMode::Opportunistic),
            other => Err(config_error(
                "SMTP_USE_TLS",
                format!("{other:?} is not one of true, false, starttls, tls, opportunistic"),
            )),
        }
    }
}

/// Where and how to send. `Debug` hides the password.
#[derive(Clone)]
pub struct SmtpConfig {
    /// Server host name.
    pub host: String,
    /// Server port.
    pub port: u16,
    /// User name, if the server wants authentication.
    pub user: Option<String>,
    password: Option<String>,
    /// Sender of the confirmations.
    pub from: Mailbox,
    /// Connection security.
    pub tls: TlsMode,
    /// PEM certificate(s) to trust besides the system roots (a private relay's CA).
    pub extra_root_pem: Option<Vec<u8>>,
    /// Bound on the whole SMTP conversation of one message (connect, greeting, TLS, auth,
    /// envelope, data and the final reply), `SMTP_TIMEOUT_SECS`. A send that exceeds it is a
    /// transient failure, retried later, and its connection is never reused.
    pub timeout: Duration,
    /// Pooled connections at most.
    pub pool_size: u32,
}

impl fmt::Debug for SmtpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("from", &self.from.to_string())
            .field("tls", &self.tls)
            .field("timeout", &self.timeout)
            .field("pool_size", &self.pool_size)
            .finish()
    }
}

impl SmtpConfig {
    /// Plain SMTP to `host:port`, no authentication, the default sender, 10 s timeout.
    pub fn new(host: impl Into<String>, port: u16) -> Self {
        SmtpConfig {
            host: host.into(),
            port,
            user: None,
            password: None,
            from: inventory_core::mail::default_from(),
            tls: TlsMode::None,
            extra_root_pem: None,
            timeout: Duration::from_secs(10),
            pool_size: 16,
        }
    }

    /// Sets the credentials.
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.user = Some(user.into());
        self.password = Some(password.into());
        self
    }

    /// Sets the connection security.
    pub fn with_tls(mut self, tls: TlsMode) -> Self {
        self.tls = tls;
        self
    }

    /// Sets the sender.
    pub fn with_from(mut self, from: Mailbox) -> Self {
        self.from = from;
        self
    }

    /// Parses `smtp://[user:password@]host[:port][?tls=none|starttls|opportunistic]` or
    /// `smtps://...` (implicit TLS, default port 465). The default port of `smtp://` is 587 with
    /// STARTTLS, 25 otherwise.
    pub fn from_url(raw: &str) -> Result<Self, ConfigError> {
        let url = url::Url::parse(raw).map_err(|e| config_error("SMTP_URL", e))?;
        let mut tls = match url.scheme() {
            "smtp" => TlsMode::Opportunistic,
            "smtps" => TlsMode::Implicit,
            other => {
                return Err(config_error(
                    "SMTP_URL",
                    format!("unsupported scheme {other:?}"),
                ));
            }
        };
        for (k, v) in url.query_pairs() {
            match k.as_ref() {
                "tls" => {
                    tls = TlsMode::parse(&v).map_err(|e| config_error("SMTP_URL", e.reason))?
                }
                other => {
                    return Err(config_error(
                        "SMTP_URL",
                        format!("unknown parameter {other:?}"),
                    ));
                }
            }
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| config_error("SMTP_URL", "missing host"))?;
        let port = url.port().unwrap_or(match tls {
            TlsMode::Implicit => 465,
            TlsMode::StartTls => 587,
            _ => 25,
        });
        let mut config = SmtpConfig::new(host, port).with_tls(tls);
        if !url.username().is_empty() {
            let decode = |s: &str| {
                url::form_urlencoded::parse(s.as_bytes())
                    .map(|(k, v)| {
                        if v.is_empty() {
                            k.into_owned()
                        } else {
                            format!("{k}={v}")
                        }
                    })
                    .collect::<String>()
            };
            config.user = Some(decode(url.username()));
            config.password = url.password().map(decode);
        }
        Ok(config)
    }

    /// Reads the original service's variables: `SMTP_HOST` (required), `SMTP_PORT` (default
    /// 25, or 465 for implicit TLS), `SMTP_USER`, `SMTP_PASSWORD`, `SMTP_FROM`, `SMTP_USE_TLS`
    /// (default `opportunistic`), plus `SMTP_TIMEOUT_SECS` and `SMTP_CA_FILE`.
    /// Returns `Ok(None)` when `SMTP_HOST` is not set.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// [`from_env`](Self::from_env) with any source of variables (for tests and config files).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let Some(host) = get("SMTP_HOST") else {
            return Ok(None);
        };
        let tls = get("SMTP_USE_TLS")
            .map(|v| TlsMode::parse(&v))
            .transpose()?
            .unwrap_or(TlsMode::Opportunistic);
        let port = match get("SMTP_PORT") {
            Some(p) => p
                .trim()
                .parse()
                .map_err(|_| config_error("SMTP_PORT", format!("{p:?} is not a port number")))?,
            None if tls == TlsMode::Implicit => 465,
            None => 25,
        };
        let mut config = SmtpConfig::new(host.trim(), port).with_tls(tls);
        match (get("SMTP_USER"), get("SMTP_PASSWORD")) {
            (Some(user), password) => {
                config.user = Some(user);
                config.password = password;
            }
            (None, Some(_)) => {
                return Err(config_error(
                    "SMTP_USER",
                    "SMTP_PASSWORD is set without SMTP_USER",
                ));
            }
            (None, None) => {}
        }
        if let Some(from) = get("SMTP_FROM") {
            config.from = from
                .parse()
                .map_err(|e| config_error("SMTP_FROM", format!("{from:?}: {e}")))?;
        }
        if let Some(secs) = get("SMTP_TIMEOUT_SECS") {
            let secs: u64 = secs
                .parse()
                .map_err(|_| config_error("SMTP_TIMEOUT_SECS", "not a whole number of seconds"))?;
            config.timeout = Duration::from_secs(secs.max(1));
        }
        if let Some(path) = get("SMTP_CA_FILE") {
            config.extra_root_pem = Some(
                std::fs::read(&path)
                    .map_err(|e| config_error("SMTP_CA_FILE", format!("{path}: {e}")))?,
            );
        }
        Ok(Some(config))
    }
}

/// An idle connection, kept for the next message.
struct Idle {
    conn: AsyncSmtpConnection,
    since: std::time::Instant,
}

/// Idle connections older than this are closed rather than reused (servers drop idle clients).
const IDLE_MAX: Duration = Duration::from_secs(30);

/// Sends messages over SMTP, keeping up to [`SmtpConfig::pool_size`] idle connections.
///
/// Connections are opened here with `TCP_NODELAY`: lettre writes a message and its final
/// `.` in two writes, and with Nagle's algorithm each message waited for the server's delayed
/// ACK (about 40 ms on Linux) (implicit TLS, port 465, goes through lettre's own connect and
/// keeps that wait). Each send is bounded as a whole by [`SmtpConfig::timeout`]: lettre bounds
/// only the TCP connect, and a server that accepts and then stays silent would hold a send
/// forever. A connection that timed out or failed is dropped, never reused.
#[derive(Clone)]
pub struct SmtpMailer {
    idle: Arc<std::sync::Mutex<Vec<Idle>>>,
    tls: Option<TlsParameters>,
    credentials: Option<Credentials>,
    config: Arc<SmtpConfig>,
    from: Mailbox,
    target: String,
}

impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("server", &self.target)
            .finish_non_exhaustive()
    }
}

type SmtpResult<T> = Result<T, Failure>;

impl SmtpMailer {
    /// Checks the configuration. Nothing is connected until the first send.
    pub fn new(config: SmtpConfig) -> Result<Self, ConfigError> {
        let tls = match config.tls {
            TlsMode::None => None,
            _ => {
                let mut builder = TlsParameters::builder(config.host.clone());
                if let Some(pem) = &config.extra_root_pem {
                    let cert =
                        Certificate::from_pem(pem).map_err(|e| config_error("SMTP_CA_FILE", e))?;
                    builder = builder.add_root_certificate(cert);
                }
                Some(
                    builder
                        .build_rustls()
                        .map_err(|e| config_error("SMTP_USE_TLS", e))?,
                )
            }
        };
        let credentials = match (&config.user, &config.password) {
            (Some(user), Some(password)) => Some(Credentials::new(user.clone(), password.clone())),
            _ => None,
        };
        Ok(SmtpMailer {
            idle: Arc::new(std::sync::Mutex::new(Vec::new())),
            tls,
            credentials,
            from: config.from.clone(),
            target: format!("{}:{}", config.host, config.port),
            config: Arc::new(config),
        })
    }

    /// Where it sends (`host:port`).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Opens a connection and says hello: succeeds when the server is reachable.
    pub async fn check(&self) -> Result<(), MailError> {
        let attempt = async {
            let mut conn = self.connect().await?;
            conn.quit().await.map(|_| ()).map_err(Failure::from)
        };
        match tokio::time::timeout(self.config.timeout, attempt).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.classify(&self.target)),
            Err(_) => Err(self.timed_out()),
        }
    }

    /// A new connection: TCP with `TCP_NODELAY`, greeting, EHLO, TLS as configured, login.
    async fn connect(&self) -> SmtpResult<AsyncSmtpConnection> {
        let hello = ClientId::default();
        let server = (self.config.host.as_str(), self.config.port);
        let mut conn = match (&self.config.tls, &self.tls) {
            (TlsMode::Implicit, Some(tls)) => {
                AsyncSmtpConnection::connect_tokio1(
                    server,
                    Some(self.config.timeout),
                    &hello,
                    Some(tls.clone()),
                    None,
                )
                .await?
            }
            _ => {
                let stream = tokio::net::TcpStream::connect(server)
                    .await
                    .map_err(Failure::Io)?;
                stream.set_nodelay(true).map_err(Failure::Io)?;
                AsyncSmtpConnection::connect_with_transport(Box::new(stream), &hello).await?
            }
        };
        match (&self.config.tls, &self.tls) {
            (TlsMode::StartTls, Some(tls)) => conn.starttls(tls.clone(), &hello).await?,
            (TlsMode::Opportunistic, Some(tls)) if conn.can_starttls() => {
                conn.starttls(tls.clone(), &hello).await?
            }
            _ => {}
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        Ok(conn)
    }

    /// An idle connection young enough to reuse.
    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(i) = idle.pop() {
            if i.since.elapsed() < IDLE_MAX {
                return Some(i.conn);
            }
        }
        None
    }

    fn put_back(&self, conn: AsyncSmtpConnection) {
        if conn.has_broken() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        if idle.len() < self.config.pool_size.max(1) as usize {
            idle.push(Idle {
                conn,
                since: std::time::Instant::now(),
            });
        }
    }

    async fn send_message(&self, envelope: &Envelope, bytes: &[u8]) -> SmtpResult<()> {
        if let Some(mut conn) = self.take_idle() {
            match conn.send(envelope, bytes).await {
                Ok(_) => {
                    self.put_back(conn);
                    return Ok(());
                }
                // The server answered: that is the message's result.
                Err(e) if e.status().is_some() => return Err(e.into()),
                // No answer on a reused connection: it went stale while idle. Once more on a
                // fresh one (if the server had in fact taken the message, the stable
                // Message-ID makes the copy recognisable).
                Err(_) => {}
            }
        }
        let mut conn = self.connect().await?;
        conn.send(envelope, bytes).await?;
        self.put_back(conn);
        Ok(())
    }

    fn timed_out(&self) -> MailError {
        tracing::warn!(
            server = %self.target,
            timeout_secs = self.config.timeout.as_secs_f64(),
            "SMTP server did not complete a send in time; its connection is dropped and the message will be retried"
        );
        MailError::Transient(format!(
            "{} did not complete the SMTP conversation within {:?}",
            self.target, self.config.timeout
        ))
    }
}

/// Why a send did not happen: the socket, or the SMTP conversation.
#[derive(Debug)]
enum Failure {
    Io(std::io::Error),
    Smtp(lettre::transport::smtp::Error),
}

impl From<lettre::transport::smtp::Error> for Failure {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        Failure::Smtp(e)
    }
}

impl Failure {
    fn classify(&self, target: &str) -> MailError {
        match self {
            // Refused, reset, unreachable: the server may be back later.
            Failure::Io(e) => MailError::Transient(format!("{target}: {e}")),
            Failure::Smtp(e) => classify(e),
        }
    }
}

/// Sorts a lettre error into retry-later or give-up.
pub fn classify(e: &lettre::transport::smtp::Error) -> MailError {
    let message = e.to_string();
    let code = e.status().map(|c| c.to_string());
    // 530/534/535/538: authentication problems are the operator's to fix, not the message's.
    let auth = matches!(code.as_deref(), Some("530" | "534" | "535" | "538"));
    if e.is_permanent() && !auth {
        MailError::Permanent(message)
    } else {
        MailError::Transient(message)
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, email: &OutgoingEmail) -> Result<(), MailError> {
        let message = to_mime(email, &self.from)?;
        let bytes = message.formatted();
        let envelope = message.envelope();
        match tokio::time::timeout(self.config.timeout, self.send_message(envelope, &bytes)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e.classify(&self.target)),
            Err(_) => Err(self.timed_out()),
        }
    }
}
