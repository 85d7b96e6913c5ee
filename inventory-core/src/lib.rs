//! The core of the inventory kit: users, products with stock, orders and their confirmation
//! emails, behind storage and mailer ports that backends implement.
//!
//! ```
//! use std::sync::Arc;
//! use inventory_core::{
//!     Auth, AuthConfig, Dispatcher, DispatcherConfig, HashParams, MemoryStore, NewProduct,
//!     Orders, PlaceOrderRequest, ProductId, ProductStore, RecordingMailer, Store,
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), inventory_core::Error> {
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let product = NewProduct::new(ProductId::new("product-1")?, "Demo Product", 5)?;
//! store.ensure_product(&product, chrono::Utc::now()).await?;
//!
//! let auth = Auth::new(
//!     store.clone(),
//!     AuthConfig::new("a secret of at least thirty-two bytes!")?
//!         .with_hash_params(HashParams::INSECURE_FAST), // tests only
//! )?;
//! let (_user, token) = auth.register("ann@example.com", "correct horse battery").await?;
//! let me = auth.verify(&token.access_token)?;
//!
//! let orders = Orders::new(store.clone(), store.clone());
//! let placed = orders.place(&me, PlaceOrderRequest::one("product-1", Some(2))).await?;
//!
//! let mailer = Arc::new(RecordingMailer::new());
//! let dispatcher = Dispatcher::new(store.clone(), mailer.clone(), DispatcherConfig::default());
//! dispatcher.run_once().await?;
//! let email = &mailer.deliveries()[0];
//! assert_eq!(email.to.as_str(), "ann@example.com");
//! assert!(email.text.contains(&placed.order.id.to_string()));
//! # Ok(())
//! # }
//! ```
//!
//! # Parts
//!
//! - [`domain`]: validated types ([`Email`], [`Password`], [`ProductId`], [`Quantity`], ...).
//! - [`ports`]: [`UserStore`], [`ProductStore`], [`OrderStore`], [`NotificationStore`],
//!   [`Health`] (together: [`Store`]) and [`Mailer`]. With the `mock` feature, mockall mocks
//!   (`MockUserStore`, `MockMailer`, ...) are generated for each.
//! - Services: [`Auth`] (argon2id + HS256 tokens), [`Orders`], [`Dispatcher`] (the orders
//!   listener that sends confirmations from the outbox).
//! - [`MemoryStore`]: a complete in-memory backend; [`mail`]: mailers that need no server.
//! - `testkit` (feature `testkit`): the conformance suite every backend passes.
//!
//! Errors are one enum, [`Error`], whose [`kind`](Error::kind) maps to an HTTP status.
#![deny(missing_docs)]

pub mod auth;
pub mod dispatcher;
pub mod domain;
pub mod error;
pub mod events;
pub mod handoff;
pub mod mail;
pub mod memory;
pub mod orders;
mod periodic;
pub mod ports;
pub mod reservations;
pub mod retention;
pub mod templates;
#[cfg(feature = "testkit")]
pub mod testkit;
pub mod trace;
pub mod transfer;

pub use auth::{Auth, AuthConfig, Claims, HashParams, PasswordHasher, Principal, Token};
pub use dispatcher::{CycleReport, Dispatcher, DispatcherConfig};
pub use domain::*;
pub use error::{BoxError, Error, ErrorKind, MailError, Result, Shortage};
pub use events::{EventConfig, EventDispatcher, EventReport, Publisher, SendError, WebhookSender};
pub use mail::{FileMailer, LogMailer, RecordingMailer, render_confirmation, to_mime};
pub use memory::MemoryStore;
pub use orders::{LineRequest, ListScope, OrderView, Orders, PlaceOrderRequest};
pub use ports::*;
pub use reservations::{Reservations, ReserveRequest};
pub use retention::{Pruned, Retention, RetentionPolicy};
pub use templates::Templates;
pub use trace::TraceParent;

// Types of other crates that appear in the public API, so that an embedder needs no
// dependency of their own (and no guess at a compatible version) to name them. Implement the
// ports with `#[async_trait]`; see [`delegate!`] for a decorator.
pub use async_trait::async_trait;
pub use chrono::{DateTime, Utc};
pub use tokio::sync::watch;
pub use tokio_util::sync::CancellationToken;
pub use uuid::Uuid;
