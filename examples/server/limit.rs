//! Rate limits on the auth endpoints (governor's keyed GCRA limiters), and the client address
//! they are keyed on.

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::HeaderMap;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::common::{ConfigError, parse_var, var};

/// The limiters; `None` when `LOGIN_RATE_LIMIT=off`.
#[derive(Clone)]
pub(crate) struct LoginLimiter {
    /// Every login attempt from one client.
    by_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// Attempts on one account from one client: a client that guesses an account's password
    /// locks out only itself, never the owner at another address.
    by_account_and_ip: Arc<DefaultKeyedRateLimiter<(String, IpAddr)>>,
    /// Registrations from one client.
    registrations: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    checks: Arc<AtomicU64>,
}

impl LoginLimiter {
    /// `LOGIN_RATE_LIMIT=off` disables every auth limit; otherwise per minute, with bursts of
    /// the same: `LOGIN_RATE_LIMIT_PER_IP` (default 60) logins from one client,
    /// `LOGIN_RATE_LIMIT_PER_ACCOUNT` (default 10) logins on one account from one client, and
    /// `REGISTER_RATE_LIMIT_PER_IP` (default 20) registrations from one client.
    pub(crate) fn from_env() -> Result<Option<Self>, ConfigError> {
        match var("LOGIN_RATE_LIMIT")
            .map(|v| v.to_ascii_lowercase())
            .as_deref()
        {
            Some("off" | "false" | "0") => return Ok(None),
            Some("on" | "true" | "1") | None => {}
            Some(other) => {
                return Err(ConfigError(format!(
                    "invalid LOGIN_RATE_LIMIT: {other:?} is not on or off"
                )));
            }
        }
        let quota = |name: &str, default: u32| -> Result<Quota, ConfigError> {
            let n: u32 = parse_var(name, default)?;
            NonZeroU32::new(n)
                .map(Quota::per_minute)
                .ok_or_else(|| ConfigError(format!("invalid {name}: must be at least 1")))
        };
        Ok(Some(LoginLimiter {
            by_ip: Arc::new(RateLimiter::keyed(quota("LOGIN_RATE_LIMIT_PER_IP", 60)?)),
            by_account_and_ip: Arc::new(RateLimiter::keyed(quota(
                "LOGIN_RATE_LIMIT_PER_ACCOUNT",
                10,
            )?)),
            registrations: Arc::new(RateLimiter::keyed(quota("REGISTER_RATE_LIMIT_PER_IP", 20)?)),
            checks: Arc::new(AtomicU64::new(0)),
        }))
    }

    fn forget_idle(&self) {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1024)
        {
            // Forget idle keys so the maps stay small.
            self.by_ip.retain_recent();
            self.by_account_and_ip.retain_recent();
            self.registrations.retain_recent();
        }
    }

    /// A login attempt: `Err(seconds to wait)` when the client, or this client on this
    /// account, is over its quota.
    pub(crate) fn check(&self, ip: IpAddr, account: &str) -> Result<(), u64> {
        self.forget_idle();
        let now = DefaultClock::default().now();
        let wait = |n: governor::NotUntil<_>| n.wait_time_from(now).as_secs().max(1);
        self.by_ip.check_key(&ip).map_err(wait)?;
        let account = inventory_kit::core::Email::parse(account)
            .map(|e| e.to_string())
            .unwrap_or_else(|_| account.trim().to_lowercase());
        self.by_account_and_ip
            .check_key(&(account, ip))
            .map_err(wait)
    }

    /// A registration: `Err(seconds to wait)` when the client is over its quota.
    pub(crate) fn check_registration(&self, ip: IpAddr) -> Result<(), u64> {
        self.forget_idle();
        let now = DefaultClock::default().now();
        self.registrations
            .check_key(&ip)
            .map_err(|n| n.wait_time_from(now).as_secs().max(1))
    }
}

/// Proxies whose `X-Forwarded-For` is believed (`TRUSTED_PROXIES`, CIDRs; none by default).
#[derive(Debug, Clone, Default)]
pub(crate) struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses `TRUSTED_PROXIES`: comma-separated CIDRs or addresses (`10.0.0.0/8, ::1`).
    pub(crate) fn from_env() -> Result<Self, ConfigError> {
        let Some(raw) = var("TRUSTED_PROXIES") else {
            return Ok(TrustedProxies::default());
        };
        raw.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| {
                        ConfigError(format!(
                            "invalid TRUSTED_PROXIES: {s:?} is not an address or CIDR"
                        ))
                    })
            })
            .collect::<Result<_, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the
    /// right-most address of `X-Forwarded-For` that is not a trusted proxy (the entries
    /// left of it could be written by the client).
    pub(crate) fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer.ip();
        if !self.trusts(client) {
            return client;
        }
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            let Ok(ip) = hop.parse::<IpAddr>() else {
                break; // garbage: stop at the last address we could read
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_is_the_right_most_untrusted_hop() {
        let proxies = TrustedProxies(vec!["10.0.0.0/8".parse().unwrap()]);
        let peer: SocketAddr = "10.1.2.3:4000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            "6.6.6.6, 203.0.113.9, 10.9.9.9".parse().unwrap(),
        );
        assert_eq!(
            proxies.client(peer, &h),
            "203.0.113.9".parse::<IpAddr>().unwrap()
        );
        // An untrusted peer's header is ignored.
        let outside: SocketAddr = "198.51.100.7:1".parse().unwrap();
        assert_eq!(proxies.client(outside, &h), outside.ip());
        // Off by default.
        assert_eq!(TrustedProxies::default().client(peer, &h), peer.ip());
        // Without the header, the peer.
        assert_eq!(proxies.client(peer, &HeaderMap::new()), peer.ip());
    }
}
