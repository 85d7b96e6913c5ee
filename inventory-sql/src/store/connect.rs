//! Opening a store: the SQLite pools (one writer, readers opened after the migrations) and
//! the PostgreSQL pool, with errors that say what to fix.

use std::str::FromStr;
#[cfg(feature = "sqlite")]
use std::time::Duration;

use inventory_core::*;
use tokio::sync::watch;
#[cfg(feature = "sqlite")]
use uuid::Uuid;

use crate::error::db;
use crate::migrations::*;

#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::*;

/// A SQLite file that cannot be opened, explained before sqlx says "code 14".
#[cfg(feature = "sqlite")]
pub(super) fn check_sqlite_path(url: &str, opts: &SqliteConnectOptions) -> Result<()> {
    let path = opts.get_filename();
    let shown = path.display();
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(config_err(format!(
            "the folder {} of the database file {shown} does not exist: create it",
            dir.display()
        )));
    }
    let creates = url.contains("mode=rwc") || url.contains("mode=memory");
    if !path.exists() && !creates {
        return Err(config_err(format!(
            "the database file {shown} does not exist: add ?mode=rwc to the URL to create it"
        )));
    }
    Ok(())
}

/// `host:port/database` of a PostgreSQL URL, without the user's password.
#[cfg(feature = "postgres")]
pub(super) fn pg_target(c: &PgConnectOptions) -> String {
    format!(
        "PostgreSQL at {}:{}/{}",
        c.get_host(),
        c.get_port(),
        c.get_database().unwrap_or("(default database)")
    )
}

/// A PostgreSQL start-up failure as a configuration error that names the fix.
#[cfg(feature = "postgres")]
pub(super) fn pg_start_error(c: &PgConnectOptions, e: sqlx::Error) -> Error {
    let target = pg_target(c);
    let code = match &e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    let why = match (&e, code.as_deref()) {
        (sqlx::Error::Io(io), _) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused: is PostgreSQL running and listening there?".to_owned()
        }
        (sqlx::Error::Io(io), _) => format!("cannot connect ({io})"),
        (_, Some("3D000")) => format!(
            "the database does not exist: create it (createdb {})",
            c.get_database().unwrap_or("...")
        ),
        (_, Some("28P01" | "28000")) => format!(
            "authentication failed for user {:?}: check the user and password",
            c.get_username()
        ),
        _ => e.to_string(),
    };
    config_err(format!("{target}: {why}"))
}

impl SqlStore {
    #[cfg(feature = "sqlite")]
    pub(super) async fn connect_sqlite(url: &str, options: &SqlOptions) -> Result<Self> {
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let base = if in_memory {
            // A named, shared-cache in-memory database: a connection that sqlx replaces (after a
            // caller gave up mid-query, say) finds the same data, not a new empty database.
            SqliteConnectOptions::new()
                .filename(format!("file:inventory-{}", Uuid::now_v7().simple()))
                .in_memory(true)
                .shared_cache(true)
        } else {
            let opts = SqliteConnectOptions::from_str(url).map_err(config_err)?;
            check_sqlite_path(url, &opts)?;
            opts.journal_mode(SqliteJournalMode::Wal)
                // FULL: a commit is on disk before the 200 (NORMAL in WAL mode can lose the last
                // transactions on power loss).
                .synchronous(SqliteSynchronous::Full)
        }
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
        .pragma("temp_store", "memory");
        // The in-memory database lives while one connection is open: keep one aside.
        let keeper = if in_memory {
            use sqlx::Connection as _;
            Some(std::sync::Arc::new(std::sync::Mutex::new(
                sqlx::SqliteConnection::connect_with(&base)
                    .await
                    .map_err(db)?,
            )))
        } else {
            None
        };
        let write = clean_connections(SqlitePoolOptions::new())
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(options.acquire_timeout.max(Duration::from_secs(30)))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(base.clone())
            .await
            .map_err(db)?;
        // Migrate before any other connection opens: a connection reads the schema when it
        // opens, and one opened before the migrations would prepare its first statements
        // against the old tables (see `rows.rs` on naming columns).
        if options.migrate {
            migrate_result(SQLITE_MIGRATIONS.run(&write).await)?;
        }
        let read = if in_memory {
            // Every in-memory connection is its own database: share the one.
            write.clone()
        } else {
            clean_connections(SqlitePoolOptions::new())
                .max_connections(options.max_connections.max(1))
                .acquire_timeout(options.acquire_timeout)
                .connect_with(base.read_only(true))
                .await
                .map_err(db)?
        };
        let backend = Backend::Sqlite {
            read,
            write,
            _keeper: keeper,
        };
        Ok(Self::assemble(backend, watch::channel(0).0, None))
    }

    #[cfg(feature = "postgres")]
    pub(super) async fn connect_postgres(url: &str, options: &SqlOptions) -> Result<Self> {
        let mut connect = PgConnectOptions::from_str(url).map_err(config_err)?;
        if let Some(schema) = &options.schema {
            if schema.is_empty()
                || !schema
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(Error::invalid(
                    "schema",
                    "must be letters, digits and underscores",
                ));
            }
            let admin = PgPoolOptions::new()
                .max_connections(1)
                .acquire_timeout(options.acquire_timeout)
                .connect_with(connect.clone())
                .await
                .map_err(db)?;
            sqlx::query(sqlx::AssertSqlSafe(format!(
                "CREATE SCHEMA IF NOT EXISTS \"{schema}\""
            )))
            .execute(&admin)
            .await
            .map_err(db)?;
            admin.close().await;
            connect = connect.options([("search_path", schema.as_str())]);
        }
        // One connection first: a refused connection or a missing database fails now, with
        // the cause, not after the pool's acquire timeout. It also runs the migrations, and
        // the pool opens its connections when they are first needed: each new connection may
        // cost a TLS handshake (about 100 ms on a small machine), and a start that opened
        // three of them one after another took 450 ms.
        use sqlx::Connection as _;
        let mut first = tokio::time::timeout(
            options.acquire_timeout,
            sqlx::PgConnection::connect_with(&connect),
        )
        .await
        .map_err(|_| {
            config_err(format!(
                "{} did not answer within {:?}",
                pg_target(&connect),
                options.acquire_timeout
            ))
        })?
        .map_err(|e| pg_start_error(&connect, e))?;
        if options.migrate {
            migrate_result(PG_MIGRATIONS.run(&mut first).await)?;
        }
        let _ = first.close().await;
        // Warming a pool connection during the migrations measured slower (245-334 ms against
        // 150-210 ms): on two cores the two handshakes compete for the same CPU.
        let pool = clean_connections(PgPoolOptions::new())
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_lazy_with(connect);
        let signal = watch::channel(0).0;
        let listener = tokio::spawn(listen(pool.clone(), signal.clone()));
        let listener = Some(AbortOnDrop(listener));
        Ok(Self::assemble(Backend::Postgres(pool), signal, listener))
    }
}
