//! Rate limits on the auth endpoints (governor's keyed GCRA limiters), and the client address
//! they are keyed on.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::{HeaderMap, request::Parts};

use super::ApiState;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use ipnet::IpNet;

use crate::settings::RateLimits;

/// The auth endpoints' rate limits: logins per client, logins per (account, client) and
/// registrations per client, each a per-minute quota with bursts of the same.
#[derive(Clone)]
pub struct LoginLimiter {
    /// Every login attempt from one client.
    by_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    /// Attempts on one account from one client: a client that guesses an account's password
    /// locks out only itself, never the owner at another address.
    by_account_and_ip: Arc<DefaultKeyedRateLimiter<(String, IpAddr)>>,
    /// Registrations from one client.
    registrations: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    checks: Arc<AtomicU64>,
}

impl std::fmt::Debug for LoginLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginLimiter").finish_non_exhaustive()
    }
}

impl LoginLimiter {
    /// Limiters with these quotas.
    pub fn new(limits: RateLimits) -> Self {
        LoginLimiter {
            by_ip: Arc::new(RateLimiter::keyed(Quota::per_minute(
                limits.login_per_client,
            ))),
            by_account_and_ip: Arc::new(RateLimiter::keyed(Quota::per_minute(
                limits.login_per_account_and_client,
            ))),
            registrations: Arc::new(RateLimiter::keyed(Quota::per_minute(
                limits.register_per_client,
            ))),
            checks: Arc::new(AtomicU64::new(0)),
        }
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
    pub fn check(&self, ip: IpAddr, account: &str) -> Result<(), u64> {
        self.forget_idle();
        let now = DefaultClock::default().now();
        let wait = |n: governor::NotUntil<_>| n.wait_time_from(now).as_secs().max(1);
        self.by_ip.check_key(&ip).map_err(wait)?;
        let account = inventory_core::Email::parse(account)
            .map(|e| e.to_string())
            .unwrap_or_else(|_| account.trim().to_lowercase());
        self.by_account_and_ip
            .check_key(&(account, ip))
            .map_err(wait)
    }

    /// A registration: `Err(seconds to wait)` when the client is over its quota.
    pub fn check_registration(&self, ip: IpAddr) -> Result<(), u64> {
        self.forget_idle();
        let now = DefaultClock::default().now();
        self.registrations
            .check_key(&ip)
            .map_err(|n| n.wait_time_from(now).as_secs().max(1))
    }
}

/// Proxies whose `X-Forwarded-For` is believed (none by default).
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts these networks.
    pub fn new(networks: Vec<IpNet>) -> Self {
        TrustedProxies(networks)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the
    /// right-most address of `X-Forwarded-For` that is not a trusted proxy (the entries
    /// left of it could be written by the client).
    pub fn client(&self, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
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

/// The client's address, for rate limits: the peer's ([`ConnectInfo`]), or the one its
/// trusted proxy names ([`TrustedProxies::client`]). Served without `ConnectInfo` (an
/// embedder's `axum::serve(listener, app)` without `into_make_service_with_connect_info`),
/// every client is `0.0.0.0`, so they share one quota: serve with connect info, or with
/// [`serve`](super::serve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<ApiState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(
            match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
                Some(ConnectInfo(peer)) => state.trusted_proxies.client(*peer, &parts.headers),
                None => IpAddr::from([0, 0, 0, 0]),
            },
        ))
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
