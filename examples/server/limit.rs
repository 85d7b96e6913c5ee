//! Login rate limiting per client address and per account (governor's keyed GCRA limiters).

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::common::{ConfigError, parse_var, var};

/// Both limiters; `None` when `LOGIN_RATE_LIMIT=off`.
#[derive(Clone)]
pub(crate) struct LoginLimiter {
    by_ip: Arc<DefaultKeyedRateLimiter<IpAddr>>,
    by_account: Arc<DefaultKeyedRateLimiter<String>>,
    checks: Arc<AtomicU64>,
}

impl LoginLimiter {
    /// `LOGIN_RATE_LIMIT=off` disables; otherwise `LOGIN_RATE_LIMIT_PER_IP` (default 60) and
    /// `LOGIN_RATE_LIMIT_PER_ACCOUNT` (default 10) attempts per minute, with bursts of the same.
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
            by_account: Arc::new(RateLimiter::keyed(quota(
                "LOGIN_RATE_LIMIT_PER_ACCOUNT",
                10,
            )?)),
            checks: Arc::new(AtomicU64::new(0)),
        }))
    }

    /// `Err(seconds to wait)` when the address or the account is over its quota.
    pub(crate) fn check(&self, ip: IpAddr, account: &str) -> Result<(), u64> {
        if self
            .checks
            .fetch_add(1, Ordering::Relaxed)
            .is_multiple_of(1024)
        {
            // Forget idle keys so the maps stay small.
            self.by_ip.retain_recent();
            self.by_account.retain_recent();
        }
        let now = DefaultClock::default().now();
        let wait = |n: governor::NotUntil<_>| n.wait_time_from(now).as_secs().max(1);
        self.by_ip.check_key(&ip).map_err(wait)?;
        self.by_account
            .check_key(&account.trim().to_lowercase())
            .map_err(wait)
    }
}
