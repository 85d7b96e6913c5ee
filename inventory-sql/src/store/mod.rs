use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inventory_core::*;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::{db, map};
use crate::migrations::*;
use crate::rows::*;

#[cfg(feature = "postgres")]
use sqlx::postgres::PgPool;
#[cfg(feature = "sqlite")]
use sqlx::sqlite::SqlitePool;

/// The PostgreSQL channel raised when outbox work arrives.
#[cfg(feature = "postgres")]
const CHANNEL: &str = "inventory_outbox";

const KEY_TAKEN: &str = "an order with this idempotency key was placed concurrently";

/// Which SQL database a store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite (embedded).
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct SqlOptions {
    /// Run the embedded migrations on connect (default: true).
    pub migrate: bool,
    /// Largest pool size (PostgreSQL pool, SQLite read pool). Default 10.
    pub max_connections: u32,
    /// How long to wait for a free connection before failing with `Unavailable`. Default 5 s.
    pub acquire_timeout: Duration,
    /// PostgreSQL only: the schema to use (created if missing). Default: the server's
    /// `search_path`.
    pub schema: Option<String>,
}

impl Default for SqlOptions {
    fn default() -> Self {
        SqlOptions {
            migrate: true,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
            schema: None,
        }
    }
}

#[derive(Clone)]
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite {
        read: SqlitePool,
        write: SqlitePool,
        _keeper: Option<std::sync::Arc<std::sync::Mutex<sqlx::SqliteConnection>>>,
    },
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

/// Runs `$body` with `$pool` bound to the read or write pool of whichever database this is, and
/// `$d` to its [`SqlDialect`]. The body is compiled once per database.
macro_rules! with_pool {
    ($self:ident, $role:ident, |$pool:ident, $d:ident| $body:expr) => {
        match &$self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite { $role: $pool, .. } => {
                #[allow(dead_code)]
                type $d = SqliteDialect;
                $body
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres($pool) => {
                #[allow(dead_code)]
                type $d = PgDialect;
                $body
            }
        }
    };
}

/// A connection that comes back to the pool still inside a transaction (a COMMIT that failed
/// on a full disk leaves it so: every later BEGIN would fail) is closed instead of reused.
fn clean_connections<DB: sqlx::Database>(
    options: sqlx::pool::PoolOptions<DB>,
) -> sqlx::pool::PoolOptions<DB> {
    use sqlx::Connection as _;
    options.after_release(|conn, _| {
        let clean = !conn.is_in_transaction();
        if !clean {
            tracing::warn!("a database connection was left inside a transaction; closing it");
        }
        Box::pin(async move { Ok(clean) })
    })
}

mod connect;
mod dialect;
mod events;
mod ledger;
#[cfg(feature = "postgres")]
mod listen;
mod orders;
mod outbox;
mod products;
mod reservations;
mod retention;
mod transfer;
mod users;
mod writer;

use self::dialect::*;
#[cfg(feature = "postgres")]
use self::listen::*;

/// The listener task of a store: ends with it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The SQL store. Cheap to share behind an `Arc`; dropping it stops its listener task.
pub struct SqlStore {
    backend: Backend,
    writer: writer::WriteQueue,
    signal: watch::Sender<u64>,
    _listener: Option<AbortOnDrop>,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may hold a password: never print it.
        f.debug_struct("SqlStore")
            .field("dialect", &self.dialect())
            .finish_non_exhaustive()
    }
}

fn bump(signal: &watch::Sender<u64>) {
    signal.send_modify(|n| *n = n.wrapping_add(1));
}

fn config_err(e: impl std::fmt::Display) -> Error {
    Error::invalid("DATABASE_URL", e)
}

impl SqlStore {
    /// Connects with default [`SqlOptions`] (and migrates).
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, SqlOptions::default()).await
    }

    /// Connects to the database named by `url` (`sqlite:` or `postgres:`/`postgresql:`).
    pub async fn connect_with(url: &str, options: SqlOptions) -> Result<Self> {
        let scheme = url.split(':').next().unwrap_or_default();
        let store = match scheme {
            #[cfg(feature = "sqlite")]
            "sqlite" => Self::connect_sqlite(url, &options).await?,
            #[cfg(feature = "postgres")]
            "postgres" | "postgresql" => Self::connect_postgres(url, &options).await?,
            other => {
                return Err(config_err(format!(
                    "unsupported scheme {other:?} (this build supports: {})",
                    [
                        #[cfg(feature = "sqlite")]
                        "sqlite",
                        #[cfg(feature = "postgres")]
                        "postgres",
                    ]
                    .join(", ")
                )));
            }
        };
        Ok(store)
    }

    fn assemble(
        backend: Backend,
        signal: watch::Sender<u64>,
        listener: Option<AbortOnDrop>,
    ) -> Self {
        SqlStore {
            writer: writer::WriteQueue::start(backend.clone(), signal.clone()),
            backend,
            signal,
            _listener: listener,
        }
    }

    /// Runs the embedded migrations (idempotent). Migrations are additive (expand first,
    /// contract in a later release), so old and new servers can run side by side.
    pub async fn migrate(&self) -> Result<()> {
        migrate_result(match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite { write, .. } => SQLITE_MIGRATIONS.run(write).await,
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => PG_MIGRATIONS.run(pool).await,
        })
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite { .. } => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => Dialect::Postgres,
        }
    }

    /// The SQLite pool used for writes, for tools such as online backups.
    #[cfg(feature = "sqlite")]
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.backend {
            Backend::Sqlite { write, .. } => Some(write),
            #[cfg(feature = "postgres")]
            _ => None,
        }
    }

    /// SQLite only: writes an online, transactionally consistent copy of the database to
    /// `path` (`VACUUM INTO`), while readers and writers go on. The file must not exist.
    #[cfg(feature = "sqlite")]
    pub async fn backup_sqlite(&self, path: &std::path::Path) -> Result<()> {
        let Some(pool) = self.sqlite_pool() else {
            return Err(Error::invalid(
                "backup",
                "only SQLite stores have file backups; use the database's own tools",
            ));
        };
        if path.exists() {
            return Err(Error::AlreadyExists(format!(
                "{} already exists",
                path.display()
            )));
        }
        sqlx::query("VACUUM INTO $1")
            .bind(path.to_string_lossy().into_owned())
            .execute(pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// The PostgreSQL pool, for tools and tests.
    #[cfg(feature = "postgres")]
    pub fn pg_pool(&self) -> Option<&PgPool> {
        match &self.backend {
            Backend::Postgres(pool) => Some(pool),
            #[cfg(feature = "sqlite")]
            _ => None,
        }
    }

    /// Closes every connection.
    pub async fn close(&self) {
        match &self.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite { read, write, .. } => {
                read.close().await;
                write.close().await;
            }
            #[cfg(feature = "postgres")]
            Backend::Postgres(pool) => pool.close().await,
        }
    }
}

/// Which way a list runs by its key.
#[derive(Clone, Copy)]
enum Way {
    /// Ascending: the cursor is a lower bound.
    Up,
    /// Descending (newest first): the cursor is an upper bound.
    Down,
}

/// A page's limit, offset and cursor. Without a cursor the bound is one that every key passes
/// (`""` going up; `"~"` going down, above every UUID and every text id the API accepts), so
/// each list is one statement whose key range is always an index range.
fn page_args(page: Page, way: Way) -> (i64, i64, String) {
    let cursor = page.after.unwrap_or_else(|| match way {
        Way::Up => String::new(),
        Way::Down => "~".to_owned(),
    });
    (i64::from(page.limit), i64::from(page.offset), cursor)
}

#[async_trait]
impl Health for SqlStore {
    /// A read, and a small committed write: not ready while writes fail (a full disk), ready
    /// again as soon as they succeed.
    async fn ping(&self) -> Result<()> {
        with_pool!(self, read, |pool, D| {
            sqlx::query("SELECT 1").execute(pool).await.map_err(db)?;
        });
        with_pool!(self, write, |pool, D| {
            let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
            sqlx::query(D::WRITE_PROBE)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            sqlx::query("DELETE FROM write_probe")
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
        });
        Ok(())
    }
}
