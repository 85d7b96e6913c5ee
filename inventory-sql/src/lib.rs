//! SQLite and PostgreSQL backend of the inventory kit.
//!
//! One store type, [`SqlStore`], implements every storage port of `inventory-core` over sqlx.
//! The database is chosen by URL:
//!
//! - `sqlite://inventory.db?mode=rwc` (a file, created if missing), `sqlite::memory:`;
//! - `postgres://user@host/db`.
//!
//! Migrations are embedded and run on connect (see [`SqlOptions::migrate`]) or by
//! [`SqlStore::migrate`]. Queries are checked at run time, so building needs no database.
//!
//! ```no_run
//! # async fn demo() -> Result<(), inventory_core::Error> {
//! use inventory_sql::SqlStore;
//! let store = SqlStore::connect("sqlite://inventory.db?mode=rwc").await?;
//! # Ok(()) }
//! ```
//!
//! # Semantics
//!
//! - Orders are placed by group commit: one writer task per store takes every order waiting at
//!   that moment (up to 256) into one transaction, reads the products (locked on PostgreSQL,
//!   under the write lock on SQLite) and the idempotency keys once, decides the orders in the
//!   order they arrived (first come, first served), and writes the stock, the orders and their
//!   confirmations with one statement each. Every order is still all-or-nothing on its own: a
//!   short, unknown or replayed order in a batch does not fail the others, and a batch whose
//!   transaction fails is placed again order by order. Concurrent buyers can never oversell.
//!   The dispatcher's "sent" marks ride in the same transactions, so delivering a confirmation
//!   does not cost a commit of its own.
//! - SQLite runs in WAL mode with `synchronous=FULL` (an order answered is on disk; the shared
//!   commit makes the `fsync` cheap), a busy timeout and foreign keys on; all writes of a process
//!   go through one connection (`BEGIN IMMEDIATE`), so concurrent buyers queue instead of
//!   failing with `database is locked`. Reads use a separate pool.
//! - PostgreSQL claims due notifications with `FOR UPDATE SKIP LOCKED`, and the outbox signal is
//!   `LISTEN/NOTIFY` (sent inside the placing transaction, so it fires on commit). The listening
//!   connection reconnects by itself and raises the signal after every reconnect, since
//!   notifications may have been missed meanwhile.
#![deny(missing_docs)]

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("inventory-sql needs the `sqlite` or the `postgres` feature");

mod error;
mod migrations;
mod rows;
mod store;
#[cfg(feature = "testkit")]
pub mod testing;

pub use migrations::{MigrationState, migration_status};
pub use store::{Dialect, SqlOptions, SqlStore};
