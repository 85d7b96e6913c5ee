//! `JWT_*`, `ARGON2_*`, `PASSWORD_MIN_LENGTH`, `ADMIN_EMAILS`.

use std::collections::HashSet;
use std::time::Duration;

use inventory_core::{AuthConfig, Email, HashParams};

use super::*;

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

pub(super) fn auth(vars: &Vars<'_>, dev: bool, warnings: &mut Vec<String>) -> Result<AuthSettings> {
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
