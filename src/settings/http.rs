//! The HTTP server: address, limits, CORS, proxies, logs.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::*;

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

pub(super) fn http(vars: &Vars<'_>) -> Result<HttpSettings> {
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
