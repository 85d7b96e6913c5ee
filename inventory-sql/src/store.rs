use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inventory_core::*;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::error::{db, map};
use crate::migrations::*;
use crate::rows::*;

#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

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
    /// How long to wait for a free connection before failing with `Unavailable`. Default 10 s.
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
            acquire_timeout: Duration::from_secs(10),
            schema: None,
        }
    }
}

/// SQL written once and run on either database. Each dialect supplies only what differs.
trait SqlDialect {
    /// The sqlx database.
    type Db: sqlx::Database;
    /// Appended to the select of a batch's products: PostgreSQL locks them (in id order, so
    /// two batches never deadlock), SQLite already holds the write lock.
    const LOCK_PRODUCTS: &'static str;
    /// Starts a write transaction.
    const BEGIN: &'static str;
    /// Claims due notifications: $1 owner, $2 lease until, $3 now, $4 limit.
    const CLAIM: &'static str;
    /// Raises the cross-process outbox signal inside a transaction, if the database has one.
    const NOTIFY: Option<&'static str>;
    /// The readiness probe's write: a 4 KiB row (deleted again in the same transaction).
    const WRITE_PROBE: &'static str;
}

/// The claim statement; SQLite names the due index (without statistics its planner preferred
/// the status index and sorted every pending row on each claim: with a backlog of 18,000
/// the dispatcher fell further behind with every claim), PostgreSQL adds row locking to the
/// inner select.
macro_rules! claim_sql {
    ($index:literal, $lock:literal) => {
        concat!(
            "UPDATE notifications SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 ",
            "WHERE id IN (SELECT id FROM notifications",
            $index,
            " WHERE status = 'pending' AND next_attempt_at <= $3 ",
            "AND (lease_until IS NULL OR lease_until < $3) ORDER BY next_attempt_at, id LIMIT $4",
            $lock,
            ") RETURNING ",
            $crate::rows::notification_columns!()
        )
    };
}

#[cfg(feature = "sqlite")]
struct SqliteDialect;
#[cfg(feature = "sqlite")]
impl SqlDialect for SqliteDialect {
    type Db = sqlx::Sqlite;
    const LOCK_PRODUCTS: &'static str = "";
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const CLAIM: &'static str = claim_sql!(" INDEXED BY notifications_due", "");
    const NOTIFY: Option<&'static str> = None;
    const WRITE_PROBE: &'static str =
        "INSERT INTO write_probe (id, pad) VALUES (1, zeroblob(4096))";
}

#[cfg(feature = "postgres")]
struct PgDialect;
#[cfg(feature = "postgres")]
impl SqlDialect for PgDialect {
    type Db = sqlx::Postgres;
    const LOCK_PRODUCTS: &'static str = " ORDER BY id FOR UPDATE";
    const BEGIN: &'static str = "BEGIN";
    const CLAIM: &'static str = claim_sql!("", " FOR UPDATE SKIP LOCKED");
    const NOTIFY: Option<&'static str> = Some("SELECT pg_notify('inventory_outbox', '')");
    const WRITE_PROBE: &'static str =
        "INSERT INTO write_probe (id, pad) VALUES (1, decode(repeat('00', 4096), 'hex'))";
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

mod orders;

struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The SQL store. Cheap to share behind an `Arc`; dropping it stops its listener task.
pub struct SqlStore {
    backend: Backend,
    writer: orders::WriteQueue,
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

/// A SQLite file that cannot be opened, explained before sqlx says "code 14".
#[cfg(feature = "sqlite")]
fn check_sqlite_path(url: &str, opts: &SqliteConnectOptions) -> Result<()> {
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
fn pg_target(c: &PgConnectOptions) -> String {
    format!(
        "PostgreSQL at {}:{}/{}",
        c.get_host(),
        c.get_port(),
        c.get_database().unwrap_or("(default database)")
    )
}

/// A PostgreSQL start-up failure as a configuration error that names the fix.
#[cfg(feature = "postgres")]
fn pg_start_error(c: &PgConnectOptions, e: sqlx::Error) -> Error {
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

    #[cfg(feature = "sqlite")]
    async fn connect_sqlite(url: &str, options: &SqlOptions) -> Result<Self> {
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
    async fn connect_postgres(url: &str, options: &SqlOptions) -> Result<Self> {
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

    fn assemble(
        backend: Backend,
        signal: watch::Sender<u64>,
        listener: Option<AbortOnDrop>,
    ) -> Self {
        SqlStore {
            writer: orders::WriteQueue::start(backend.clone(), signal.clone()),
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

/// Keeps a LISTEN connection open and raises the signal on every notification and after every
/// (re)connect.
#[cfg(feature = "postgres")]
async fn listen(pool: PgPool, signal: watch::Sender<u64>) {
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match connected {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "outbox listener cannot connect; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        bump(&signal);
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => bump(&signal),
                // Connection lost: the next call reconnects; anything sent meanwhile is lost,
                // so wake the dispatcher to re-check the table.
                Ok(None) => bump(&signal),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox listener lost its connection; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
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
impl UserStore for SqlStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        with_pool!(self, write, |pool, D| {
            sqlx::query(
                "INSERT INTO users (id, email, password_hash, role, created_at, token_version, email_verified) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(user.id.to_string())
            .bind(user.email.as_str())
            .bind(&user.password_hash)
            .bind(user.role.as_str())
            .bind(ts(user.created_at))
            .bind(i64::from(user.token_version))
            .bind(i64::from(user.email_verified))
            .execute(pool)
            .await
            .map_err(|e| map(e, "email already registered"))?;
        });
        Ok(())
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        let row: Option<UserRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE email = $1"
            ))
            .bind(email.as_str())
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(User::try_from).transpose()
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<User>> {
        let row: Option<UserRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE id = $1"
            ))
            .bind(id.to_string())
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(User::try_from).transpose()
    }

    async fn set_role(&self, email: &Email, role: Role) -> Result<User> {
        self.update_user(
            concat!(
                "UPDATE users SET role = $2, token_version = token_version + 1 ",
                "WHERE email = $1 RETURNING ",
                user_columns!()
            ),
            email,
            Some(role.as_str()),
        )
        .await
    }

    async fn revoke_tokens(&self, email: &Email) -> Result<User> {
        self.update_user(
            concat!(
                "UPDATE users SET token_version = token_version + 1 WHERE email = $1 RETURNING ",
                user_columns!()
            ),
            email,
            None,
        )
        .await
    }

    async fn mark_email_verified(&self, email: &Email) -> Result<User> {
        self.update_user(
            concat!(
                "UPDATE users SET email_verified = 1 WHERE email = $1 RETURNING ",
                user_columns!()
            ),
            email,
            None,
        )
        .await
    }
}

impl SqlStore {
    /// Writes a notification as it is (import, and [`NotificationStore::enqueue`]).
    async fn insert_notification(&self, n: &Notification) -> Result<()> {
        let m = MessageParts::from(&n.message);
        with_pool!(self, write, |pool, D| {
            sqlx::query(
                "INSERT INTO notifications (id, kind, order_id, recipient, product_id, product_name, quantity, \
                 user_id, code, status, attempts, next_attempt_at, lease_owner, lease_until, last_error, created_at, sent_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            )
            .bind(n.id.to_string())
            .bind(n.message.kind())
            .bind(m.order_id.map(|id| id.to_string()))
            .bind(n.recipient.as_str())
            .bind(m.product_id.as_deref())
            .bind(m.product_name.as_deref())
            .bind(m.quantity)
            .bind(m.user_id.map(|id| id.to_string()))
            .bind(m.code.as_deref())
            .bind(n.status.as_str())
            .bind(i64::from(n.attempts))
            .bind(ts(n.next_attempt_at))
            .bind(n.lease_owner.as_deref())
            .bind(n.lease_until.map(ts))
            .bind(n.last_error.as_deref())
            .bind(ts(n.created_at))
            .bind(n.sent_at.map(ts))
            .execute(pool)
            .await
            .map_err(|e| map(e, &format!("notification {} already exists", n.id)))?;
        });
        Ok(())
    }

    /// Runs a `UPDATE users ... WHERE email = $1 RETURNING <the user columns>` (with `$2` when given).
    async fn update_user(
        &self,
        sql: &'static str,
        email: &Email,
        arg: Option<&str>,
    ) -> Result<User> {
        let row: Option<UserRow> = with_pool!(self, write, |pool, D| {
            let query = sqlx::query_as(sql).bind(email.as_str());
            let query = match arg {
                Some(a) => query.bind(a),
                None => query,
            };
            query.fetch_optional(pool).await.map_err(db)?
        });
        row.map(User::try_from)
            .transpose()?
            .ok_or_else(|| Error::NotFound(format!("user {email}")))
    }
}

#[async_trait]
impl ProductStore for SqlStore {
    async fn create_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<Product> {
        let row: ProductRow = with_pool!(self, write, |pool, D| {
            sqlx::query_as(
                concat!("INSERT INTO products (id, name, quantity, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING ", product_columns!()),
            )
            .bind(p.id.as_str())
            .bind(&p.name)
            .bind(p.quantity as i64)
            .bind(ts(now))
            .fetch_one(pool)
            .await
            .map_err(|e| map(e, &format!("product {} already exists", p.id)))?
        });
        row.try_into()
    }

    async fn ensure_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<bool> {
        let done = with_pool!(self, write, |pool, D| {
            sqlx::query(
                "INSERT INTO products (id, name, quantity, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(p.id.as_str())
            .bind(&p.name)
            .bind(p.quantity as i64)
            .bind(ts(now))
            .execute(pool)
            .await
            .map_err(db)?
            .rows_affected()
        });
        Ok(done == 1)
    }

    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>> {
        let row: Option<ProductRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE id = $1"
            ))
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(Product::try_from).transpose()
    }

    async fn list_products(&self, page: Page) -> Result<Vec<Product>> {
        let (limit, offset, after) = page_args(page, Way::Up);
        let rows: Vec<ProductRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE id > $3 ORDER BY id LIMIT $1 OFFSET $2"
            ))
            .bind(limit)
            .bind(offset)
            .bind(&after)
            .fetch_all(pool)
            .await
            .map_err(db)?
        });
        all(rows)
    }

    async fn restock(&self, id: &ProductId, add: u64, now: DateTime<Utc>) -> Result<Product> {
        let too_much = || Error::invalid("quantity", format!("stock would exceed {STOCK_MAX}"));
        let add = i64::try_from(add)
            .ok()
            .filter(|a| *a as u64 <= STOCK_MAX)
            .ok_or_else(too_much)?;
        let row: Option<ProductRow> = with_pool!(self, write, |pool, D| {
            sqlx::query_as(
                concat!("UPDATE products SET quantity = quantity + $1, updated_at = $2 WHERE id = $3 AND quantity + $1 <= $4 RETURNING ", product_columns!()),
            )
            .bind(add)
            .bind(ts(now))
            .bind(id.as_str())
            .bind(STOCK_MAX as i64)
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        match row {
            Some(row) => row.try_into(),
            None if self.get_product(id).await?.is_some() => Err(too_much()),
            None => Err(Error::NotFound(format!("product {id}"))),
        }
    }
}

#[async_trait]
impl OrderStore for SqlStore {
    async fn place_order(&self, new: &NewOrder) -> Result<Placed> {
        self.writer.place(new).await
    }

    async fn get_order(&self, id: Uuid) -> Result<Option<Order>> {
        let row: Option<OrderRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE id = $1"
            ))
            .bind(id.to_string())
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(Order::try_from).transpose()
    }

    async fn list_orders_for_user(&self, user_id: Uuid, page: Page) -> Result<Vec<Order>> {
        let (limit, offset, after) = page_args(page, Way::Down);
        let rows: Vec<OrderRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE user_id = $1 AND id < $4 ORDER BY id DESC LIMIT $2 OFFSET $3"
            ))
            .bind(user_id.to_string())
            .bind(limit)
            .bind(offset)
            .bind(&after)
            .fetch_all(pool)
            .await
            .map_err(db)?
        });
        all(rows)
    }

    async fn list_orders(&self, page: Page) -> Result<Vec<Order>> {
        let (limit, offset, after) = page_args(page, Way::Down);
        let rows: Vec<OrderRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE id < $3 ORDER BY id DESC LIMIT $1 OFFSET $2"
            ))
            .bind(limit)
            .bind(offset)
            .bind(&after)
            .fetch_all(pool)
            .await
            .map_err(db)?
        });
        all(rows)
    }

    async fn cancel_order(&self, id: Uuid, now: DateTime<Utc>) -> Result<Order> {
        let row: OrderRow = with_pool!(self, write, |pool, D| {
            async {
            let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
            let row: Option<OrderRow> = sqlx::query_as(
                concat!("UPDATE orders SET status = 'cancelled', updated_at = $1 WHERE id = $2 AND status <> 'cancelled' RETURNING ", order_columns!()),
            )
            .bind(ts(now))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            let Some(row) = row else {
                let exists: Option<(String,)> = sqlx::query_as("SELECT status FROM orders WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                return Err(match exists {
                    Some(_) => Error::AlreadyCancelled(id),
                    None => Error::NotFound(format!("order {id}")),
                });
            };
            sqlx::query("UPDATE products SET quantity = quantity + (SELECT quantity FROM orders WHERE id = $1), updated_at = $2 \
                         WHERE id = (SELECT product_id FROM orders WHERE id = $1)")
                .bind(id.to_string())
                .bind(ts(now))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            // Its confirmation is never sent; a send in flight loses its lease.
            sqlx::query("UPDATE notifications SET status = 'cancelled', lease_owner = NULL, lease_until = NULL \
                         WHERE order_id = $1 AND status = 'pending'")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            Ok::<_, Error>(row)
        }
        .await
        })?;
        row.try_into()
    }
}

#[async_trait]
impl NotificationStore for SqlStore {
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let until = now + chrono::Duration::from_std(lease).map_err(Error::other)?;
        self.writer.claim(owner, now, until, limit).await
    }

    async fn extend_lease(&self, id: Uuid, owner: &str, until: DateTime<Utc>) -> Result<()> {
        let updated = with_pool!(self, write, |pool, D| {
            sqlx::query(
                "UPDATE notifications SET lease_until = $1 \
                 WHERE id = $2 AND lease_owner = $3 AND status = 'pending'",
            )
            .bind(ts(until))
            .bind(id.to_string())
            .bind(owner)
            .execute(pool)
            .await
            .map_err(db)?
            .rows_affected()
        });
        match updated {
            0 => Err(self.lease_error(id).await),
            _ => Ok(()),
        }
    }

    async fn mark_sent(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<()> {
        if self.writer.mark_sent(id, owner, now).await? {
            Ok(())
        } else {
            Err(self.lease_error(id).await)
        }
    }

    async fn mark_failed(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let error: String = error.chars().take(2000).collect();
        let updated = with_pool!(self, write, |pool, D| {
            sqlx::query(
                "UPDATE notifications SET last_error = $1, lease_owner = NULL, lease_until = NULL, \
                 next_attempt_at = COALESCE($2, next_attempt_at), \
                 status = CASE WHEN $2 IS NULL THEN 'failed' ELSE 'pending' END \
                 WHERE id = $3 AND lease_owner = $4 AND status = 'pending'",
            )
            .bind(error)
            .bind(next_attempt_at.map(ts))
            .bind(id.to_string())
            .bind(owner)
            .execute(pool)
            .await
            .map_err(db)?
            .rows_affected()
        });
        if updated == 1 {
            Ok(())
        } else {
            Err(self.lease_error(id).await)
        }
    }

    async fn enqueue(&self, n: &Notification) -> Result<()> {
        inventory_core::check_enqueued(n)?;
        self.insert_notification(n).await?;
        // Wake listeners in other processes too (PostgreSQL), and this process's dispatcher.
        with_pool!(self, write, |pool, D| {
            if let Some(notify) = D::NOTIFY {
                sqlx::query(notify).execute(pool).await.map_err(db)?;
            }
        });
        bump(&self.signal);
        Ok(())
    }

    async fn notification_for_order(&self, order_id: Uuid) -> Result<Option<Notification>> {
        let row: Option<NotificationRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                notification_columns!(),
                " FROM notifications WHERE order_id = $1"
            ))
            .bind(order_id.to_string())
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(Notification::try_from).transpose()
    }

    async fn list_notifications(
        &self,
        status: NotificationStatus,
        page: Page,
    ) -> Result<Vec<Notification>> {
        let (limit, offset, after) = page_args(page, Way::Up);
        let rows: Vec<NotificationRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                notification_columns!(),
                " FROM notifications WHERE status = $1 AND id > $4 ORDER BY id LIMIT $2 OFFSET $3"
            ))
            .bind(status.as_str())
            .bind(limit)
            .bind(offset)
            .bind(&after)
            .fetch_all(pool)
            .await
            .map_err(db)?
        });
        all(rows)
    }

    async fn notification_counts(&self) -> Result<NotificationCounts> {
        let rows: Vec<(String, i64)> = with_pool!(self, read, |pool, D| {
            sqlx::query_as("SELECT status, COUNT(*) FROM notifications GROUP BY status")
                .fetch_all(pool)
                .await
                .map_err(db)?
        });
        let mut counts = NotificationCounts::default();
        for (status, n) in rows {
            let n = n as u64;
            match status.parse::<NotificationStatus>()? {
                NotificationStatus::Pending => counts.pending = n,
                NotificationStatus::Sent => counts.sent = n,
                NotificationStatus::Failed => counts.failed = n,
                NotificationStatus::Cancelled => counts.cancelled = n,
            }
        }
        Ok(counts)
    }

    async fn retry_failed(&self, id: Option<Uuid>, now: DateTime<Utc>) -> Result<u64> {
        let updated = with_pool!(self, write, |pool, D| async {
            let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
            let n = sqlx::query(
                "UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = $1 \
                 WHERE status = 'failed' AND ($2 IS NULL OR id = $2)",
            )
            .bind(ts(now))
            .bind(id.map(|id| id.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if let (Some(notify), true) = (D::NOTIFY, n > 0) {
                sqlx::query(notify).execute(&mut *tx).await.map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            Ok::<_, Error>(n)
        }
        .await)?;
        if updated > 0 {
            bump(&self.signal);
        }
        Ok(updated)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }
}

impl SqlStore {
    async fn lease_error(&self, id: Uuid) -> Error {
        match self.notification_exists(id).await {
            Ok(true) => Error::LeaseLost(id),
            Ok(false) => Error::NotFound(format!("notification {id}")),
            Err(e) => e,
        }
    }

    async fn notification_exists(&self, id: Uuid) -> Result<bool> {
        let row: Option<(String,)> = with_pool!(self, write, |pool, D| {
            sqlx::query_as("SELECT id FROM notifications WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await
                .map_err(db)?
        });
        Ok(row.is_some())
    }
}

#[async_trait]
impl Transfer for SqlStore {
    async fn list_users(&self, page: Page) -> Result<Vec<User>> {
        let (limit, offset, after) = page_args(page, Way::Up);
        let rows: Vec<UserRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE email > $3 ORDER BY email LIMIT $1 OFFSET $2"
            ))
            .bind(limit)
            .bind(offset)
            .bind(&after)
            .fetch_all(pool)
            .await
            .map_err(db)?
        });
        all(rows)
    }

    async fn import_product(&self, p: &Product) -> Result<()> {
        with_pool!(self, write, |pool, D| {
            sqlx::query("INSERT INTO products (id, name, quantity, created_at, updated_at) VALUES ($1, $2, $3, $4, $5)")
                .bind(p.id.as_str())
                .bind(&p.name)
                .bind(p.quantity as i64)
                .bind(ts(p.created_at))
                .bind(ts(p.updated_at))
                .execute(pool)
                .await
                .map_err(|e| map(e, &format!("product {} already exists", p.id)))?;
        });
        Ok(())
    }

    async fn import_order(&self, o: &Order) -> Result<()> {
        with_pool!(self, write, |pool, D| {
            sqlx::query(
                "INSERT INTO orders (id, user_id, buyer_email, product_id, quantity, status, idempotency_key, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            )
            .bind(o.id.to_string())
            .bind(o.user_id.to_string())
            .bind(o.buyer_email.as_str())
            .bind(o.product_id.as_str())
            .bind(i64::from(o.quantity))
            .bind(o.status.as_str())
            .bind(o.idempotency_key.as_deref())
            .bind(ts(o.created_at))
            .bind(ts(o.updated_at))
            .execute(pool)
            .await
            .map_err(|e| map(e, &format!("order {} already exists", o.id)))?;
        });
        Ok(())
    }

    async fn import_notification(&self, n: &Notification) -> Result<()> {
        self.insert_notification(n).await
    }

    async fn count_records(&self) -> Result<inventory_core::transfer::Counts> {
        let (users, products, orders, notifications): (i64, i64, i64, i64) =
            with_pool!(self, read, |pool, D| {
                sqlx::query_as(
                    "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM products), \
                     (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM notifications)",
                )
                .fetch_one(pool)
                .await
                .map_err(db)?
            });
        Ok(inventory_core::transfer::Counts {
            users: users as u64,
            products: products as u64,
            orders: orders as u64,
            notifications: notifications as u64,
        })
    }
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
