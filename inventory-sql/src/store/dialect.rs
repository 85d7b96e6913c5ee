//! What differs between SQLite and PostgreSQL: each dialect supplies only that, and the
//! SQL of the ports is written once.

/// SQL written once and run on either database. Each dialect supplies only what differs.
pub(super) trait SqlDialect {
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
    /// Whether one statement may write several tables (data-modifying `WITH` clauses, as
    /// PostgreSQL has): a group-committed batch is then written by one statement, one round
    /// trip under the products' row locks instead of one per table.
    const WRITES_IN_WITH: bool;
    /// The holds that ran out: $1 now, $2 limit (PostgreSQL skips holds another sweep has
    /// locked, so sweepers share the work instead of waiting on each other).
    const DUE_RESERVATIONS: &'static str;
    /// The readiness probe's write: a 4 KiB row (deleted again in the same transaction).
    const WRITE_PROBE: &'static str;
    /// Appended to a queue's inner select: PostgreSQL skips rows another transaction has
    /// locked (two dispatchers share the work); SQLite has one writer.
    const SKIP_LOCKED: &'static str;
    /// Claims a destination's due event deliveries (see `claim_deliveries_sql`).
    const CLAIM_DELIVERIES: &'static str;
}

/// The claim statement; SQLite names the due index (without statistics its planner preferred
/// the status index and sorted every pending row on each claim: with a backlog of 18,000
/// the dispatcher fell further behind with every claim), PostgreSQL adds row locking to the
/// inner select.
macro_rules! due_reservations_sql {
    ($lock:literal) => {
        concat!(
            "SELECT ",
            $crate::rows::reservation_columns!(),
            " FROM reservations WHERE status = 'active' AND expires_at <= $1 ",
            "ORDER BY expires_at, id LIMIT $2",
            $lock
        )
    };
}

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
pub(super) struct SqliteDialect;
#[cfg(feature = "sqlite")]
impl SqlDialect for SqliteDialect {
    type Db = sqlx::Sqlite;
    const LOCK_PRODUCTS: &'static str = "";
    const BEGIN: &'static str = "BEGIN IMMEDIATE";
    const CLAIM: &'static str = claim_sql!(" INDEXED BY notifications_due", "");
    const DUE_RESERVATIONS: &'static str = due_reservations_sql!("");
    const NOTIFY: Option<&'static str> = None;
    const WRITES_IN_WITH: bool = false;
    const SKIP_LOCKED: &'static str = "";
    const CLAIM_DELIVERIES: &'static str = super::events::claim_deliveries_sql!("");
    const WRITE_PROBE: &'static str =
        "INSERT INTO write_probe (id, pad) VALUES (1, zeroblob(4096))";
}

#[cfg(feature = "postgres")]
pub(super) struct PgDialect;
#[cfg(feature = "postgres")]
impl SqlDialect for PgDialect {
    type Db = sqlx::Postgres;
    const LOCK_PRODUCTS: &'static str = " ORDER BY id FOR UPDATE";
    const BEGIN: &'static str = "BEGIN";
    const CLAIM: &'static str = claim_sql!("", " FOR UPDATE SKIP LOCKED");
    const DUE_RESERVATIONS: &'static str = due_reservations_sql!(" FOR UPDATE SKIP LOCKED");
    const NOTIFY: Option<&'static str> = Some("SELECT pg_notify('inventory_outbox', '')");
    const WRITES_IN_WITH: bool = true;
    const SKIP_LOCKED: &'static str = " FOR UPDATE SKIP LOCKED";
    const CLAIM_DELIVERIES: &'static str =
        super::events::claim_deliveries_sql!(" FOR UPDATE SKIP LOCKED");
    const WRITE_PROBE: &'static str =
        "INSERT INTO write_probe (id, pad) VALUES (1, decode(repeat('00', 4096), 'hex'))";
}
