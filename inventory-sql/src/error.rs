//! Mapping sqlx errors onto the core error kinds.

use inventory_core::Error;

/// Converts a sqlx error: connection trouble is retryable [`Error::Unavailable`]; a unique
/// violation is [`Error::AlreadyExists`] with `exists` as its message.
pub(crate) fn map(e: sqlx::Error, exists: &str) -> Error {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            Error::AlreadyExists(exists.into())
        }
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // PostgreSQL: class 08 (connection), 57P0x (shutdown), 53 (resources), 40001/40P01
            // (serialization, deadlock). SQLite: 5 / 6 (busy, locked).
            // SQLite 13 (full) and 10 / 10 + 256·n (I/O error): a full disk. Retryable, and
            // the connection is discarded (see the pools' release check).
            let disk = code == "13" || code.parse::<u32>().is_ok_and(|c| c & 0xff == 10);
            let transient = disk
                || code.starts_with("08")
                || code.starts_with("57P")
                || code.starts_with("53")
                || code == "40001"
                || code == "40P01"
                || code == "5"
                || code == "6"
                || code == "517";
            if transient {
                Error::unavailable(e)
            } else {
                Error::other(e)
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Protocol(_) => Error::unavailable(e),
        _ => Error::other(e),
    }
}

/// [`map`] for calls where a unique violation cannot happen.
pub(crate) fn db(e: sqlx::Error) -> Error {
    map(e, "conflicting write")
}
