//! The embedded schema migrations, and what a database has of them.
//!
//! Migrations are expand-only (docs/operations.md): a release adds tables, columns with
//! defaults, indexes and idempotent data fixes, never renames or drops what an earlier release
//! still reads. [`migration_status`] reads a database without changing a byte of it, so an
//! operator can ask a new build what it would do before it does it.

use inventory_core::{Error, Result};

use crate::error::db;

/// The PostgreSQL migrations.
#[cfg(feature = "postgres")]
pub(crate) static PG_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// The SQLite migrations.
#[cfg(feature = "sqlite")]
pub(crate) static SQLITE_MIGRATIONS: sqlx::migrate::Migrator =
    sqlx::migrate!("./migrations/sqlite");

/// One migration this build carries, and whether a database has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationState {
    /// The migration's number (`0001_init.sql` is 1).
    pub version: i64,
    /// Its description (the file name without number and extension).
    pub description: String,
    /// Whether the database has it applied already.
    pub applied: bool,
}

pub(crate) fn migrate_result(
    result: std::result::Result<(), sqlx::migrate::MigrateError>,
) -> Result<()> {
    result.map_err(|e| match e {
        sqlx::migrate::MigrateError::Execute(e) => db(e),
        other => Error::other(other),
    })
}

const APPLIED: &str = "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version";

/// The schema version of the database at `url` and what [`SqlStore::migrate`] would apply:
/// every migration this build carries, in order, each with whether it is applied.
///
/// It opens one connection of its own and only reads: a SQLite file is opened read-only
/// (no journal mode switched, nothing created), a database without migrations is reported with
/// none applied. A database with migrations this build does not know (written by a newer
/// release) is an [`Error::InvalidInput`] naming them.
///
/// [`SqlStore::migrate`]: crate::SqlStore::migrate
pub async fn migration_status(url: &str) -> Result<Vec<MigrationState>> {
    use sqlx::Connection as _;
    // The applied versions, read on `$conn` (a database without the table has none).
    macro_rules! applied {
        ($conn:expr, $table_exists:expr) => {{
            let exists: bool = sqlx::query_scalar($table_exists)
                .fetch_one(&mut $conn)
                .await
                .map_err(db)?;
            let applied: Vec<i64> = if exists {
                sqlx::query_scalar(APPLIED)
                    .fetch_all(&mut $conn)
                    .await
                    .map_err(db)?
            } else {
                Vec::new()
            };
            let _ = $conn.close().await;
            applied
        }};
    }
    match url.split(':').next().unwrap_or_default() {
        #[cfg(feature = "sqlite")]
        "sqlite" => {
            let options = <sqlx::sqlite::SqliteConnectOptions as std::str::FromStr>::from_str(url)
                .map_err(|e| Error::invalid("DATABASE_URL", e))?
                .read_only(true)
                .create_if_missing(false);
            let mut conn = sqlx::SqliteConnection::connect_with(&options)
                .await
                .map_err(db)?;
            let applied = applied!(
                conn,
                "SELECT EXISTS (SELECT 1 FROM sqlite_master \
                 WHERE type = 'table' AND name = '_sqlx_migrations')"
            );
            states(&SQLITE_MIGRATIONS, &applied)
        }
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            let mut conn = sqlx::PgConnection::connect(url).await.map_err(db)?;
            let applied = applied!(conn, "SELECT to_regclass('_sqlx_migrations') IS NOT NULL");
            states(&PG_MIGRATIONS, &applied)
        }
        other => Err(Error::invalid(
            "DATABASE_URL",
            format!("{other:?} has no schema migrations"),
        )),
    }
}

/// Every migration of `migrator` with whether it is among `applied`.
fn states(migrator: &sqlx::migrate::Migrator, applied: &[i64]) -> Result<Vec<MigrationState>> {
    let unknown: Vec<String> = applied
        .iter()
        .filter(|v| !migrator.iter().any(|m| m.version == **v))
        .map(|v| v.to_string())
        .collect();
    if !unknown.is_empty() {
        return Err(Error::invalid(
            "database",
            format!(
                "it has migrations this build does not know ({}): it was written by a newer release",
                unknown.join(", ")
            ),
        ));
    }
    Ok(migrator
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| MigrationState {
            version: m.version,
            description: m.description.to_string(),
            applied: applied.contains(&m.version),
        })
        .collect())
}
