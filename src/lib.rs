//! The inventory kit: a shopping inventory service as an embeddable library.
//!
//! This facade re-exports the crates of the workspace behind features and adds
//! [`connect`], which opens whichever store a URL names:
//!
//! | feature     | crate                   | URL                                   |
//! |-------------|-------------------------|---------------------------------------|
//! | (always)    | [`core`]                | `memory://`                           |
//! | `sqlite`    | `inventory-sql`         | `sqlite://inventory.db?mode=rwc`      |
//! | `postgres`  | `inventory-sql`         | `postgres://user@host/db`             |
//! | `firestore` | `inventory-firestore`   | `firestore://PROJECT_ID`              |
//! | `smtp`      | `inventory-mail`        |                                       |
//!
//! With the `settings` feature, [`Settings`] reads the whole environment contract (the
//! variables of the README's table) once; with `http` (a default feature), [`http`] offers the
//! HTTP API as an axum router, its layers and an accept loop, for the example server or for
//! an application that nests the API in its own.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), inventory_kit::core::Error> {
//! let store = inventory_kit::connect("memory://").await?;
//! store.ping().await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

/// The README's Rust examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

use std::sync::Arc;

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "settings")]
pub mod settings;
#[cfg(feature = "settings")]
pub use settings::{Settings, SettingsError};
#[cfg(feature = "otel")]
pub mod telemetry;

pub use inventory_core as core;
#[cfg(feature = "firestore")]
pub use inventory_firestore as firestore;
#[cfg(feature = "smtp")]
pub use inventory_mail as mail;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use inventory_sql as sql;

use inventory_core::{Error, Result, Store};

/// Options of [`connect_with`].
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// SQL backends: the largest pool.
    pub max_connections: u32,
    /// SQL backends: how long a request waits for a connection before failing with
    /// [`Error::Unavailable`] (HTTP 503).
    pub acquire_timeout: std::time::Duration,
}

/// The SQL store's own defaults (10 connections, 5 s): one place for them, whatever the entry
/// point (`connect`, `Settings`, or `SqlOptions` directly).
#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl Default for ConnectOptions {
    fn default() -> Self {
        let sql = inventory_sql::SqlOptions::default();
        ConnectOptions {
            max_connections: sql.max_connections,
            acquire_timeout: sql.acquire_timeout,
        }
    }
}

/// Without a SQL backend the options configure nothing; the values are those of
/// `inventory_sql::SqlOptions::default()`, should one be added.
#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            max_connections: 10,
            acquire_timeout: std::time::Duration::from_secs(5),
        }
    }
}

/// Opens the store named by `url` with default options, running migrations where the backend
/// has them.
///
/// Unknown schemes, and schemes whose feature this build lacks, are
/// [`Error::InvalidInput`] naming `DATABASE_URL`.
pub async fn connect(url: &str) -> Result<Arc<dyn Store>> {
    connect_with(url, ConnectOptions::default()).await
}

/// [`connect`] with options.
pub async fn connect_with(url: &str, options: ConnectOptions) -> Result<Arc<dyn Store>> {
    #[cfg(any(feature = "sqlite", feature = "postgres"))]
    let sql = inventory_sql::SqlOptions {
        max_connections: options.max_connections,
        acquire_timeout: options.acquire_timeout,
        ..Default::default()
    };
    #[cfg(not(any(feature = "sqlite", feature = "postgres")))]
    let _ = options;
    let scheme = url.split(':').next().unwrap_or_default();
    match scheme {
        "memory" => Ok(Arc::new(inventory_core::MemoryStore::new())),
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(Arc::new(
            inventory_sql::SqlStore::connect_with(url, sql).await?,
        )),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => Ok(Arc::new(
            inventory_sql::SqlStore::connect_with(url, sql).await?,
        )),
        #[cfg(feature = "firestore")]
        "firestore" => Ok(Arc::new(
            inventory_firestore::FirestoreStore::connect_url(url).await?,
        )),
        #[allow(unreachable_patterns)]
        "sqlite" | "postgres" | "postgresql" | "firestore" => Err(Error::invalid(
            "DATABASE_URL",
            format!("this build has no {scheme} support: enable the `{scheme}` feature"),
        )),
        _ => Err(Error::invalid(
            "DATABASE_URL",
            "expected sqlite://..., postgres://..., firestore://PROJECT or memory://",
        )),
    }
}
