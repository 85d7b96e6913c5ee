//! Firestore backend of the inventory kit, compatible with the original service's data.
//!
//! [`FirestoreStore`] implements every storage port of `inventory-core` over the `firestore`
//! crate. It connects to Google Cloud with application default credentials, or to the emulator
//! when `FIRESTORE_EMULATOR_HOST` is set.
//!
//! # Data layout
//!
//! The original service's collections are used as they are, so a team can point this backend
//! at its existing database:
//!
//! - `Users/{email}`: `email`, `password` (the PHC hash; hashes written by passlib verify);
//!   ours: `user_id`, `role`, `created_at`. Users written by the original service have no
//!   `user_id`: theirs is derived from the email (UUID v5), stable across logins.
//! - `Products/{product_id}`: `product_id`, `product_name`, `quantity`, `status`
//!   (`in_stock` / `out_of_stock`, kept in step with the quantity); ours: timestamps.
//! - `Orders/{order_id}`: `buyer_email`, `product_id`, `status`, `created_at`; ours:
//!   `order_id`, `user_id`, `quantity`, `idempotency_key`, `updated_at`.
//! - Ours alone: `Notifications/{id}` (the outbox) and `IdempotencyKeys/{user}:{key}`.
//!
//! Collection names are configurable ([`Collections`]). The composite indexes the queries need
//! on production Firestore are in `firestore.indexes.json` beside this crate.
//!
//! # Semantics
//!
//! Placing an order is one Firestore transaction (stock read, decrement, order, notification,
//! idempotency key). Transactions on one document contend badly on Firestore, so within a
//! process orders for the same product are serialised before their transaction; across
//! processes the transaction retries. A claimed notification's `next_attempt_at` is moved to
//! the end of its lease, so "due" is one range query. The outbox signal comes from Firestore's
//! real-time listen stream on pending notifications; the dispatcher's sweep remains the safety
//! net should the stream stop.
#![deny(missing_docs)]

mod docs;
mod store;

pub use store::{Collections, FirestoreConfig, FirestoreStore};
