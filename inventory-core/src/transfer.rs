//! Export and import of a whole store as JSON lines, to move data between backends (for
//! example the original service's Firestore data into PostgreSQL) and for logical backups.
//!
//! Each line is one [`Record`], tagged by `type`. Export writes users, products (each followed
//! by its stock ledger, oldest entry first), orders, holds and notifications in that order,
//! which is also the order import needs. A product imported without ledger entries (an export
//! made before the ledger, or from a store that keeps none) gets an `import` entry of its
//! stock, so its ledger adds up on the importing store. Export pages through
//! the store; for an exact snapshot, stop writers first (or use a backend's own backup).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncWrite, AsyncWriteExt};
use uuid::Uuid;

use crate::domain::*;
use crate::error::{Error, Result};
use crate::ports::Store;

/// One exported record.
/// `Debug` output hides users' password hashes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Record {
    /// A user.
    User {
        /// Id.
        id: Uuid,
        /// Email.
        email: Email,
        /// PHC hash.
        password_hash: String,
        /// Role.
        role: Role,
        /// Registration time.
        created_at: DateTime<Utc>,
        /// Version carried by the user's tokens (0 in exports made before it existed).
        #[serde(default)]
        token_version: u32,
        /// Whether the address was verified (false in exports made before it existed).
        #[serde(default)]
        email_verified: bool,
    },
    /// A product.
    Product {
        /// Id.
        product_id: ProductId,
        /// Name.
        product_name: String,
        /// Available units.
        quantity: u64,
        /// Units held by active holds (exported with the holds; exports made before holds
        /// have none, and counted held units as available).
        #[serde(default)]
        reserved: u64,
        /// Creation time.
        created_at: DateTime<Utc>,
        /// Last change.
        updated_at: DateTime<Utc>,
    },
    /// An order.
    Order {
        /// Id.
        id: Uuid,
        /// Who placed it.
        user_id: Uuid,
        /// Who is emailed.
        buyer_email: Email,
        /// The first line's product (the only one of a one-line order).
        product_id: ProductId,
        /// The first line's units.
        quantity: Quantity,
        /// Every line, when there is more than one (exports before baskets have none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<Vec<OrderLine>>,
        /// State.
        status: OrderStatus,
        /// Idempotency key.
        idempotency_key: Option<String>,
        /// Placing time.
        created_at: DateTime<Utc>,
        /// Last change.
        updated_at: DateTime<Utc>,
    },
    /// One entry of a product's stock ledger.
    LedgerEntry(LedgerEntry),
    /// A hold (reservation), in any state.
    Reservation {
        /// Id.
        id: Uuid,
        /// Who holds it.
        user_id: Uuid,
        /// Who receives its order's confirmation.
        buyer_email: Email,
        /// What it holds.
        lines: Vec<OrderLine>,
        /// State.
        status: ReservationStatus,
        /// When an active hold runs out.
        expires_at: DateTime<Utc>,
        /// The order it became.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order_id: Option<Uuid>,
        /// Holding time.
        created_at: DateTime<Utc>,
        /// Last change.
        updated_at: DateTime<Utc>,
    },
    /// A notification: an order confirmation (`order_id`, `product_*`, `quantity`; no `kind`,
    /// as exports before verification emails wrote it) or `kind: "email_verification"` with
    /// `user_id` and `code`.
    Notification {
        /// Id.
        id: Uuid,
        /// `email_verification`; absent for an order confirmation.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        kind: Option<String>,
        /// Order (confirmations).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        order_id: Option<Uuid>,
        /// Recipient.
        recipient: Email,
        /// The first line's product (confirmations).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product_id: Option<String>,
        /// The first line's product name (confirmations).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        product_name: Option<String>,
        /// The first line's units (confirmations).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quantity: Option<i64>,
        /// Every line, when there is more than one (confirmations).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lines: Option<Vec<ConfirmedLine>>,
        /// User (verifications).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        user_id: Option<Uuid>,
        /// Code (verifications).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        code: Option<String>,
        /// Delivery state.
        status: NotificationStatus,
        /// Attempts so far.
        attempts: u32,
        /// Next attempt.
        next_attempt_at: DateTime<Utc>,
        /// Lease holder.
        lease_owner: Option<String>,
        /// Lease end.
        lease_until: Option<DateTime<Utc>>,
        /// Last error.
        last_error: Option<String>,
        /// Enqueue time.
        created_at: DateTime<Utc>,
        /// Delivery time.
        sent_at: Option<DateTime<Utc>>,
    },
}

/// How many records of each kind were moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Users.
    pub users: u64,
    /// Products.
    pub products: u64,
    /// Orders.
    pub orders: u64,
    /// Notifications.
    pub notifications: u64,
    /// Holds (reservations).
    pub reservations: u64,
    /// Stock ledger entries.
    pub ledger_entries: u64,
}

impl Counts {
    /// Records of every kind together.
    pub fn total(&self) -> u64 {
        self.users
            + self.products
            + self.orders
            + self.notifications
            + self.reservations
            + self.ledger_entries
    }
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Record::User {
                id, email, role, ..
            } => f
                .debug_struct("User")
                .field("id", id)
                .field("email", email)
                .field("password_hash", &"***")
                .field("role", role)
                .finish_non_exhaustive(),
            Record::Product {
                product_id,
                quantity,
                ..
            } => f
                .debug_struct("Product")
                .field("product_id", product_id)
                .field("quantity", quantity)
                .finish_non_exhaustive(),
            Record::Order { id, status, .. } => f
                .debug_struct("Order")
                .field("id", id)
                .field("status", status)
                .finish_non_exhaustive(),
            Record::LedgerEntry(e) => e.fmt(f),
            Record::Reservation { id, status, .. } => f
                .debug_struct("Reservation")
                .field("id", id)
                .field("status", status)
                .finish_non_exhaustive(),
            Record::Notification { id, status, .. } => f
                .debug_struct("Notification")
                .field("id", id)
                .field("status", status)
                .finish_non_exhaustive(),
        }
    }
}

impl Record {
    /// The record of a notification: its message as [`MessageParts`], the way stores keep it.
    pub fn from_notification(n: Notification) -> Record {
        let MessageParts {
            kind,
            order_id,
            product_id,
            product_name,
            quantity,
            lines,
            user_id,
            code,
        } = MessageParts::from(&n.message);
        Record::Notification {
            id: n.id,
            kind,
            order_id,
            recipient: n.recipient,
            product_id,
            product_name,
            quantity,
            lines,
            user_id,
            code,
            status: n.status,
            attempts: n.attempts,
            next_attempt_at: n.next_attempt_at,
            lease_owner: n.lease_owner,
            lease_until: n.lease_until,
            last_error: n.last_error,
            created_at: n.created_at,
            sent_at: n.sent_at,
        }
    }

    /// The notification of a notification record; a record missing the fields of its kind
    /// is [`Error::InvalidInput`]. Other records are too.
    pub fn into_notification(self) -> Result<Notification> {
        let Record::Notification {
            id,
            kind,
            order_id,
            recipient,
            product_id,
            product_name,
            quantity,
            lines,
            user_id,
            code,
            status,
            attempts,
            next_attempt_at,
            lease_owner,
            lease_until,
            last_error,
            created_at,
            sent_at,
        } = self
        else {
            return Err(Error::invalid("record", "not a notification"));
        };
        let message = Message::try_from(MessageParts {
            kind,
            order_id,
            product_id,
            product_name,
            quantity,
            lines,
            user_id,
            code,
        })?;
        Ok(Notification {
            id,
            recipient,
            message,
            status,
            attempts,
            next_attempt_at,
            lease_owner,
            lease_until,
            last_error,
            created_at,
            sent_at,
        })
    }
}

/// A record that was not written, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Skipped {
    /// Which record (a line number and id on import, a kind and count on export).
    pub what: String,
    /// Why it was not written.
    pub reason: String,
}

/// The outcome of an [`export`] or [`import`]: what was written and what was not.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Records written.
    pub written: Counts,
    /// Records not written, each with its reason. Empty when the transfer is complete.
    pub skipped: Vec<Skipped>,
}

impl Report {
    /// Whether every record was written.
    pub fn is_complete(&self) -> bool {
        self.skipped.is_empty()
    }
}

const PAGE: u32 = 500;

async fn write_line(out: &mut (impl AsyncWrite + Unpin), record: &Record) -> Result<()> {
    let mut line = serde_json::to_vec(record).map_err(Error::other)?;
    line.push(b'\n');
    out.write_all(&line).await.map_err(Error::other)
}

/// Pages through `fetch` by cursor (each page starts after the last item of the one before, so
/// rows added or removed meanwhile never shift a page) until a short page.
macro_rules! each_page {
    (|$page:ident| $fetch:expr, |$item:ident| $body:expr) => {{
        let mut after: Option<String> = None;
        loop {
            let mut $page = Page::first(PAGE)?;
            $page.after = after.take();
            let items = $fetch;
            let n = items.len() as u32;
            after = items.last().map(Listed::cursor);
            for $item in items {
                $body;
            }
            if n < PAGE {
                break;
            }
        }
    }};
}

/// Every item of a paged list, read page by page by cursor.
///
/// ```
/// # async fn demo(store: &dyn inventory_core::Store) -> inventory_core::Result<()> {
/// let products = inventory_core::transfer::collect_all(|page| store.list_products(page)).await?;
/// # Ok(()) }
/// ```
pub async fn collect_all<T, F, Fut>(fetch: F) -> Result<Vec<T>>
where
    T: Listed,
    F: Fn(Page) -> Fut,
    Fut: std::future::Future<Output = Result<Vec<T>>>,
{
    let mut all = Vec::new();
    each_page!(|page| fetch(page).await?, |item| all.push(item));
    Ok(all)
}

/// Writes every record of `store` to `out`.
pub async fn export(store: &dyn Store, out: &mut (impl AsyncWrite + Unpin)) -> Result<Report> {
    export_with_progress(store, out, &mut || {}).await
}

/// [`export`], calling `on_record` after each record written (for a progress bar: the total
/// is [`Transfer::count_records`](crate::Transfer::count_records)).
pub async fn export_with_progress(
    store: &dyn Store,
    out: &mut (impl AsyncWrite + Unpin),
    on_record: &mut (dyn FnMut() + Send),
) -> Result<Report> {
    let mut counts = Counts::default();
    each_page!(|page| store.list_users(page).await?, |u| {
        write_line(
            out,
            &Record::User {
                id: u.id,
                email: u.email,
                password_hash: u.password_hash,
                role: u.role,
                created_at: u.created_at,
                token_version: u.token_version,
                email_verified: u.email_verified,
            },
        )
        .await?;
        counts.users += 1;
        on_record();
    });
    each_page!(|page| store.list_products(page).await?, |p| {
        let id = p.id.clone();
        write_line(
            out,
            &Record::Product {
                product_id: p.id,
                product_name: p.name,
                quantity: p.quantity,
                reserved: p.reserved,
                created_at: p.created_at,
                updated_at: p.updated_at,
            },
        )
        .await?;
        counts.products += 1;
        on_record();
        // Its ledger, oldest first (a store that keeps none has none to write).
        let entries = match collect_all(|page| store.list_ledger(&id, page)).await {
            Ok(entries) => entries,
            Err(Error::Unsupported(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        for e in entries.into_iter().rev() {
            write_line(out, &Record::LedgerEntry(e)).await?;
            counts.ledger_entries += 1;
            on_record();
        }
    });
    let orders = collect_all(|page| store.list_orders(page)).await?;
    // Oldest first, so a partial import is a prefix in time.
    for o in orders.into_iter().rev() {
        write_line(
            out,
            &Record::Order {
                id: o.id,
                user_id: o.user_id,
                buyer_email: o.buyer_email,
                product_id: o.lines.first().product_id.clone(),
                quantity: o.lines.first().quantity,
                lines: o.lines.stored_list().map(<[OrderLine]>::to_vec),
                status: o.status,
                idempotency_key: o.idempotency_key,
                created_at: o.created_at,
                updated_at: o.updated_at,
            },
        )
        .await?;
        counts.orders += 1;
        on_record();
    }
    each_page!(|page| store.list_reservations(page).await?, |r| {
        write_line(
            out,
            &Record::Reservation {
                id: r.id,
                user_id: r.user_id,
                buyer_email: r.buyer_email,
                lines: r.lines.iter().cloned().collect(),
                status: r.status,
                expires_at: r.expires_at,
                order_id: r.order_id,
                created_at: r.created_at,
                updated_at: r.updated_at,
            },
        )
        .await?;
        counts.reservations += 1;
        on_record();
    });
    for status in [
        NotificationStatus::Pending,
        NotificationStatus::Sent,
        NotificationStatus::Failed,
        NotificationStatus::Cancelled,
    ] {
        each_page!(|page| store.list_notifications(status, page).await?, |n| {
            write_line(out, &Record::from_notification(n)).await?;
            counts.notifications += 1;
            on_record();
        });
    }
    out.flush().await.map_err(Error::other)?;
    // Prove nothing was left out: the store's own counts against what was written.
    let held = store.count_records().await?;
    let mut skipped = Vec::new();
    for (kind, held, written) in [
        ("users", held.users, counts.users),
        ("products", held.products, counts.products),
        ("orders", held.orders, counts.orders),
        ("notifications", held.notifications, counts.notifications),
        ("holds", held.reservations, counts.reservations),
        ("ledger entries", held.ledger_entries, counts.ledger_entries),
    ] {
        if held > written {
            skipped.push(Skipped {
                what: format!("{} of {held} {kind}", held - written),
                reason: "held by the store but not returned by its listing (written while the \
                         export ran, or stored in a shape the backend cannot read)"
                    .into(),
            });
        }
    }
    Ok(Report {
        written: counts,
        skipped,
    })
}

/// Writes every record read from `input` into `store`. A record that exists already is
/// skipped and listed in the report with its line; a malformed line or any other store error
/// stops the import (what was written so far stays).
pub async fn import(store: &dyn Store, input: impl AsyncBufRead + Unpin) -> Result<Report> {
    import_with_progress(store, input, &mut |_| {}).await
}

/// [`import`], calling `on_line` with the bytes of each line read, its newline included (for
/// a progress bar over the file's size).
pub async fn import_with_progress(
    store: &dyn Store,
    input: impl AsyncBufRead + Unpin,
    on_line: &mut (dyn FnMut(u64) + Send),
) -> Result<Report> {
    let mut counts = Counts::default();
    let mut skipped = Vec::new();
    // Products imported here, until their first ledger entry is read: those that get none
    // open their ledger with an `import` entry at the end.
    let mut unopened: std::collections::BTreeMap<ProductId, Product> = Default::default();
    let mut lines = input.lines();
    let mut number = 0u64;
    while let Some(line) = lines.next_line().await.map_err(Error::other)? {
        number += 1;
        on_line(line.len() as u64 + 1);
        if line.trim().is_empty() {
            continue;
        }
        let record: Record = serde_json::from_str(&line)
            .map_err(|e| Error::invalid("import", format!("line {number}: {e}")))?;
        // A record that exists already is skipped and reported; any other error stops the
        // import (what was written so far stays, and a rerun skips it).
        let mut outcome = |result: Result<()>, count: &mut u64| match result {
            Ok(()) => {
                *count += 1;
                Ok(())
            }
            Err(Error::AlreadyExists(reason)) => {
                skipped.push(Skipped {
                    what: format!("line {number}"),
                    reason,
                });
                Ok(())
            }
            Err(e) => Err(e),
        };
        match record {
            Record::User {
                id,
                email,
                password_hash,
                role,
                created_at,
                token_version,
                email_verified,
            } => {
                let result = store
                    .create_user(&User {
                        id,
                        email,
                        password_hash,
                        role,
                        created_at,
                        token_version,
                        email_verified,
                    })
                    .await;
                outcome(result, &mut counts.users)?;
            }
            Record::Product {
                product_id,
                product_name,
                quantity,
                reserved,
                created_at,
                updated_at,
            } => {
                let p = Product {
                    id: product_id,
                    name: product_name,
                    quantity,
                    reserved,
                    created_at,
                    updated_at,
                };
                let before = counts.products;
                outcome(store.import_product(&p).await, &mut counts.products)?;
                if counts.products > before {
                    unopened.insert(p.id.clone(), p);
                }
            }
            Record::LedgerEntry(e) => {
                unopened.remove(&e.product_id);
                outcome(
                    store.import_ledger_entry(&e).await,
                    &mut counts.ledger_entries,
                )?;
            }
            Record::Order {
                id,
                user_id,
                buyer_email,
                product_id,
                quantity,
                lines,
                status,
                idempotency_key,
                created_at,
                updated_at,
            } => {
                let lines = Lines::from_stored(product_id, quantity, lines)
                    .map_err(|e| Error::invalid("import", format!("line {number}: {e}")))?;
                let o = Order {
                    id,
                    user_id,
                    buyer_email,
                    lines,
                    status,
                    idempotency_key,
                    created_at,
                    updated_at,
                };
                outcome(store.import_order(&o).await, &mut counts.orders)?;
            }
            Record::Reservation {
                id,
                user_id,
                buyer_email,
                lines,
                status,
                expires_at,
                order_id,
                created_at,
                updated_at,
            } => {
                let lines = Lines::new(lines)
                    .map_err(|e| Error::invalid("import", format!("line {number}: {e}")))?;
                let r = Reservation {
                    id,
                    user_id,
                    buyer_email,
                    lines,
                    status,
                    expires_at,
                    order_id,
                    created_at,
                    updated_at,
                };
                outcome(store.import_reservation(&r).await, &mut counts.reservations)?;
            }
            record @ Record::Notification { .. } => {
                let n = record
                    .into_notification()
                    .map_err(|e| Error::invalid("import", format!("line {number}: {e}")))?;
                outcome(
                    store.import_notification(&n).await,
                    &mut counts.notifications,
                )?;
            }
        }
    }
    for p in unopened.into_values() {
        let entry = LedgerEntry::opening(&p, StockReason::Import, p.updated_at);
        match store.import_ledger_entry(&entry).await {
            Ok(()) => counts.ledger_entries += 1,
            Err(Error::Unsupported(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Report {
        written: counts,
        skipped,
    })
}
