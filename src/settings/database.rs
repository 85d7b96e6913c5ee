//! `DATABASE_URL`, `GCP_PROJECT_ID` and the pool.

use std::time::Duration;

use super::*;

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

pub(super) fn database(vars: &Vars<'_>) -> Result<DatabaseSettings> {
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
    let pool = crate::ConnectOptions::default();
    Ok(DatabaseSettings {
        url,
        max_connections: vars.parse("DATABASE_MAX_CONNECTIONS", pool.max_connections)?,
        acquire_timeout: vars.millis("DATABASE_ACQUIRE_TIMEOUT_MS", pool.acquire_timeout)?,
    })
}
