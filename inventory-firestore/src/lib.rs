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
//! - `Users/{email}`: the original writes only `password` (a passlib argon2id PHC hash, which
//!   verifies here) under the address as typed. The email comes from the document id, the id
//!   is derived from the address (UUIDv5) and written as `user_id` at the first login (only that
//!   field), the role is customer. Lookups find the original's ids in any case. Ours add
//!   `email`, `user_id`, `role`, `created_at`, under the lower-cased address.
//! - `Products/{product_id}`: `product_name`, `quantity`, `status` (`in_stock` /
//!   `out_of_stock`, kept in step with the quantity). Writes touch only `quantity`, `status`
//!   and `updated_at` (field masks): fields of the operator's own (`price`, ...) survive.
//! - `Orders/{id}`: the original's have an automatic id and only `buyer_email` and
//!   `product_id`: status confirmed, quantity 1, times from the document; their id is packed
//!   losslessly into a UUIDv8, so they are addressable. Ours add `order_id`, `user_id`,
//!   `quantity`, `status`, `idempotency_key`, `created_at`, `updated_at`.
//! - Ours alone: `Notifications/{id}` (the outbox), `IdempotencyKeys/{user}:{key}`, and
//!   `OutboxBeacon/outbox`, the one document whose changes wake other processes' dispatchers.
//! - A product whose stock is sharded ([`FirestoreStore::shard_product`]) has `shards: N` and
//!   its units in `Products/{id}/stock/{0..N}` (`quantity` each); its own `quantity` and
//!   `status` are then a snapshot ([`FirestoreStore::sync_stock_snapshot`]), since orders write
//!   only a shard. Real Firestore sustains about one write per second per document: N shards
//!   sell about N orders per second.
//!
//! See `docs/migrating.md` for running beside the original service.
//!
//! Collection names are configurable ([`Collections`]). The composite indexes the queries need
//! on production Firestore are in `firestore.indexes.json` beside this crate.
//!
//! # Semantics
//!
//! Placing an order is one Firestore transaction (stock read, decrement, order, notification,
//! idempotency key). Transactions on one document contend badly on Firestore, so within a
//! process orders for the same product (for the same shard, when sharded) are serialised
//! before their transaction; across processes the transaction retries. A claimed notification's `next_attempt_at` is moved to
//! the end of its lease, so "due" is one range query. The outbox signal comes from Firestore's
//! real-time listen stream on the newest notification (a new one from any process replaces
//! it); the dispatcher's sweep remains the safety net should the stream stop.
#![deny(missing_docs)]

mod beacon;
mod docs;
mod shards;
mod store;
mod tx;

pub use shards::MAX_SHARDS;
pub use store::{Collections, FirestoreConfig, FirestoreStore};
