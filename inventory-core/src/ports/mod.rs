//! The ports: storage traits a backend implements, and the [`Mailer`].
//!
//! Every method is atomic on its own. Times are passed in by the caller so behaviour that
//! depends on the clock (leases, retries) is deterministic in tests.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use crate::domain::*;
use crate::error::{MailError, Result};
use crate::handoff::Handoff;

/// Users and their credentials.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user. An email that exists already is [`Error::AlreadyExists`](crate::Error::AlreadyExists) and
    /// leaves the stored user (and password) untouched.
    async fn create_user(&self, user: &User) -> Result<()>;
    /// The user with this (normalised) email.
    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>>;
    /// The user with this id.
    async fn get_user(&self, id: Uuid) -> Result<Option<User>>;
    /// Changes a user's role and raises its `token_version` (tokens issued before carry the
    /// old role and stop working); [`Error::NotFound`](crate::Error::NotFound) for an unknown email.
    async fn set_role(&self, email: &Email, role: Role) -> Result<User>;
    /// Raises a user's `token_version`, ending every token issued before;
    /// [`Error::NotFound`](crate::Error::NotFound) for an unknown email.
    async fn revoke_tokens(&self, email: &Email) -> Result<User>;
    /// Records that the user receives mail at their address (`email_verified`), leaving
    /// everything else as it is; [`Error::NotFound`](crate::Error::NotFound) for an unknown email.
    async fn mark_email_verified(&self, email: &Email) -> Result<User>;
}

/// Products and their stock.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ProductStore: Send + Sync {
    /// Creates a product; an existing id is [`Error::AlreadyExists`](crate::Error::AlreadyExists).
    async fn create_product(&self, product: &NewProduct, now: DateTime<Utc>) -> Result<Product>;
    /// Creates the product unless its id exists; returns whether it was created.
    /// Seeding with this is idempotent and never resets stock.
    async fn ensure_product(&self, product: &NewProduct, now: DateTime<Utc>) -> Result<bool>;
    /// The product with this id.
    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>>;
    /// Products ordered by id.
    async fn list_products(&self, page: Page) -> Result<Vec<Product>>;
    /// Adds `add` units to the stock; a stock above [`STOCK_MAX`] is
    /// [`Error::InvalidInput`](crate::Error::InvalidInput) and changes nothing. `actor` (a
    /// user id, or [`SYSTEM_ACTOR`]) is recorded in the ledger entry.
    async fn restock(
        &self,
        id: &ProductId,
        add: u64,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Product>;
}

/// Orders.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Places an order in one atomic step: the product must exist
    /// ([`Error::NotFound`](crate::Error::NotFound)) and have `quantity` units
    /// ([`Error::OutOfStock`](crate::Error::OutOfStock)); the stock is decremented, the order written and
    /// its confirmation notification enqueued, all or nothing, and the outbox signal raised.
    ///
    /// With an idempotency key already used by the same user, the earlier order is returned
    /// with `replayed = true` and nothing changes; if its contents differ, it is a
    /// [`Error::IdempotencyKeyReused`](crate::Error::IdempotencyKeyReused). This holds under any concurrency.
    async fn place_order(&self, order: &NewOrder) -> Result<Placed>;
    /// The order with this id.
    async fn get_order(&self, id: Uuid) -> Result<Option<Order>>;
    /// A user's orders, newest first.
    async fn list_orders_for_user(&self, user_id: Uuid, page: Page) -> Result<Vec<Order>>;
    /// Every order, newest first.
    async fn list_orders(&self, page: Page) -> Result<Vec<Order>>;
    /// Cancels a pending or confirmed order and returns its units to stock, exactly once:
    /// cancelling a cancelled order is a [`Error::AlreadyCancelled`](crate::Error::AlreadyCancelled). In the same atomic
    /// step its confirmation, if still pending (even leased, mid-send), becomes
    /// [`NotificationStatus::Cancelled`]: it is never sent or retried afterwards, and a send in
    /// flight cannot mark it sent (its lease is gone). `actor` (who cancels: a user id, or
    /// [`SYSTEM_ACTOR`]) is recorded in the ledger entries.
    async fn cancel_order(&self, id: Uuid, actor: &str, now: DateTime<Utc>) -> Result<Order>;
}

/// The outbox of notifications.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Claims up to `limit` due notifications for `owner` until `now + lease`: pending ones whose
    /// next attempt time has come and whose lease (if any) has run out, oldest first. Each
    /// claim counts one attempt. Two concurrent callers never get the same notification.
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Notification>>;
    /// Extends `owner`'s lease on a pending notification until `until` (the dispatcher's
    /// heartbeat while a send is in progress), so leases can be short and a crashed
    /// dispatcher's work is retried within seconds. Fails with
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) if `owner` no longer holds the lease.
    async fn extend_lease(&self, id: Uuid, owner: &str, until: DateTime<Utc>) -> Result<()>;
    /// Marks a notification sent (clearing `last_error`) and its order confirmed. Fails with
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) if `owner` no longer holds the lease, which includes a
    /// notification cancelled with its order meanwhile.
    async fn mark_sent(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<()>;
    /// Releases the lease after a failed attempt: the notification stays pending until
    /// `next_attempt_at`, or becomes failed when that is `None`.
    /// Fails with [`Error::LeaseLost`](crate::Error::LeaseLost) if `owner` no longer holds the lease.
    async fn mark_failed(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<()>;
    /// Adds a message that belongs to no order (an address verification) to the outbox, due
    /// at its `next_attempt_at`, and raises the outbox signal; an existing id is
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists). Order confirmations are written
    /// by [`OrderStore::place_order`] only, which [`Standalone`] holds by its type.
    async fn enqueue(&self, notification: &Standalone) -> Result<()>;
    /// The notification of an order.
    async fn notification_for_order(&self, order_id: Uuid) -> Result<Option<Notification>>;
    /// Notifications with a status, oldest first.
    async fn list_notifications(
        &self,
        status: NotificationStatus,
        page: Page,
    ) -> Result<Vec<Notification>>;
    /// Counts by status.
    async fn notification_counts(&self) -> Result<NotificationCounts>;
    /// Puts failed notifications back to pending, due at `now`, with their attempt count reset.
    /// `None` retries every failed one. Returns how many were reset.
    async fn retry_failed(&self, id: Option<Uuid>, now: DateTime<Utc>) -> Result<u64>;
    /// A receiver whose value changes whenever new work may be due (an order placed here or,
    /// for shared databases, in another process). A hint only: the dispatcher also sweeps.
    fn subscribe(&self) -> watch::Receiver<u64>;
    /// Offers the store a dispatcher of this process to hand new order confirmations to as
    /// they are placed, already leased to it (see [`handoff`](crate::handoff)): the
    /// dispatcher then neither queries nor claims for them. Returns whether the store takes
    /// the offer; a store that does not (the default) leaves every confirmation to claims.
    fn accept_handoff(&self, handoff: Handoff) -> bool {
        let _ = handoff;
        false
    }
}

/// Holds on stock ([`Reservation`]): units moved from a product's available stock to its
/// reserved stock while a buyer checks out, until the hold is checked out, released or
/// expires. Every method is atomic on its own and safe under any concurrency: stock never goes
/// negative and a hold's units move back at most once.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ReservationStore: Send + Sync {
    /// Holds every line's units in one atomic step: each product must exist
    /// ([`Error::NotFound`](crate::Error::NotFound)) and have the lines' demand available
    /// ([`Error::OutOfStock`](crate::Error::OutOfStock), naming every short product); available
    /// stock goes down and reserved stock up by the demand and the hold is written, or nothing
    /// changes.
    async fn reserve(&self, reservation: &NewReservation) -> Result<Reservation>;
    /// The hold with this id.
    async fn get_reservation(&self, id: Uuid) -> Result<Option<Reservation>>;
    /// Releases an active hold ([`Reservation::release`]): its units go back to available
    /// stock, once. A hold that is not active is
    /// [`Error::ReservationClosed`](crate::Error::ReservationClosed), and an unknown one
    /// [`Error::NotFound`](crate::Error::NotFound).
    async fn release_reservation(&self, id: Uuid, now: DateTime<Utc>) -> Result<Reservation>;
    /// Checks out a hold as `order` ([`Reservation::order`]), in one atomic step with the order
    /// and its confirmation, as [`OrderStore::place_order`] writes them: an active hold's
    /// reserved units become the order's; an expired hold's units are taken again from
    /// available stock, all or nothing
    /// ([`Error::ReservationExpired`](crate::Error::ReservationExpired) when short); a hold
    /// checked out before answers its order with `replayed = true`; a released one is
    /// [`Error::ReservationClosed`](crate::Error::ReservationClosed).
    async fn checkout_reservation(&self, id: Uuid, order: &NewOrder) -> Result<Placed>;
    /// Expires up to `limit` holds that ran out by `now` ([`Reservation::expire`]), returning
    /// their units to available stock; returns how many. Several callers at once expire each
    /// hold once.
    async fn expire_reservations(&self, now: DateTime<Utc>, limit: u32) -> Result<u64>;
}

/// Liveness of the store.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Health: Send + Sync {
    /// Succeeds when the store answers.
    async fn ping(&self) -> Result<()>;
}

/// Moving whole data sets between stores (export and import, migrations between backends).
/// Imports write records as they are, ids and states included; an existing id is
/// [`Error::AlreadyExists`](crate::Error::AlreadyExists).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Transfer: Send + Sync {
    /// Users ordered by email.
    async fn list_users(&self, page: Page) -> Result<Vec<User>>;
    /// Writes a product as it is (stock and timestamps included), without a ledger entry:
    /// [`Transfer::import_ledger_entry`] writes its entries.
    async fn import_product(&self, product: &Product) -> Result<()>;
    /// Writes a stock ledger entry as it is (an existing id is
    /// [`Error::AlreadyExists`](crate::Error::AlreadyExists)); a store that keeps no ledger
    /// answers [`Error::Unsupported`](crate::Error::Unsupported).
    async fn import_ledger_entry(&self, entry: &LedgerEntry) -> Result<()>;
    /// Writes an order as it is, without touching stock.
    async fn import_order(&self, order: &Order) -> Result<()>;
    /// Writes a notification as it is.
    async fn import_notification(&self, notification: &Notification) -> Result<()>;
    /// Holds (reservations) in any state, ordered by id (oldest first: ids are UUID v7).
    async fn list_reservations(&self, page: Page) -> Result<Vec<Reservation>>;
    /// Writes a hold as it is, without touching stock (an active hold's units are in its
    /// products' imported `reserved`).
    async fn import_reservation(&self, reservation: &Reservation) -> Result<()>;
    /// How many users, products, orders, notifications and holds the store holds, so an
    /// export can prove it wrote every one.
    async fn count_records(&self) -> Result<crate::transfer::Counts>;
}

/// The stock ledger ([`LedgerEntry`]): every change of a product's stock leaves an entry,
/// written by the store in the same atomic step as the change (orders, cancels, restocks,
/// holds and their ends, imports, sets), and compare-and-set of the available quantity.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait LedgerStore: Send + Sync {
    /// A product's entries, newest first; the cursor is an entry's id. An unknown product is
    /// [`Error::NotFound`](crate::Error::NotFound).
    async fn list_ledger(&self, product_id: &ProductId, page: Page) -> Result<Vec<LedgerEntry>>;
    /// Sets a product's available quantity if it is still `set.expected`
    /// ([`StockSet::decide`]), with its `set` entry, in one atomic step; otherwise
    /// [`Error::StockChanged`](crate::Error::StockChanged) and nothing is written. Reserved
    /// units are not touched.
    async fn set_stock(&self, set: &StockSet) -> Result<Product>;
    /// A product's quantities and the sums of its entries, read in one atomic step (so a
    /// balance read while orders flow never shows a difference that is not there).
    async fn ledger_balance(&self, product_id: &ProductId) -> Result<Balance>;
    /// Repairs a [`Difference`] ([`Difference::repair`]): if the product still shows the
    /// quantities it names, they are set to what the ledger says, with the repair's entry, in
    /// one atomic step; otherwise [`Error::StockChanged`](crate::Error::StockChanged) (read
    /// the balance again).
    async fn repair_stock(&self, difference: &Difference, now: DateTime<Utc>) -> Result<Product>;
    /// Prunes up to `limit` entries older than `before` (checkpoints aside): each product's
    /// pruned entries (with its earlier checkpoint) are replaced by one [`checkpoint`] entry,
    /// so its entries still add up. One atomic step per call; touches no product row, so
    /// ordering never waits on it. Returns how many entries were pruned.
    async fn prune_ledger(&self, before: DateTime<Utc>, limit: u32) -> Result<u64>;
}

/// Events for other systems and their deliveries ([`Event`], [`Delivery`]): the stores write
/// events in the same atomic step as the changes they report ([`OrderStore::place_order`] and
/// [`OrderStore::cancel_order`], every [`ReservationStore`] change, and
/// [`NotificationStore::mark_sent`] for `order.confirmed`); this port fans them out to
/// destinations, hands deliveries to the event dispatcher and keeps their state, and stores
/// the webhook endpoints.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Stores a new endpoint.
    async fn create_webhook(&self, endpoint: &WebhookEndpoint) -> Result<()>;
    /// Every endpoint, oldest first.
    async fn list_webhooks(&self) -> Result<Vec<WebhookEndpoint>>;
    /// Replaces an endpoint's secrets and disabled state (rotation, `410 Gone`);
    /// [`Error::NotFound`](crate::Error::NotFound) for an unknown one.
    async fn update_webhook(&self, endpoint: &WebhookEndpoint) -> Result<()>;
    /// Deletes an endpoint; its pending deliveries fail ("endpoint deleted").
    /// [`Error::NotFound`](crate::Error::NotFound) for an unknown one.
    async fn delete_webhook(&self, id: Uuid, now: DateTime<Utc>) -> Result<()>;
    /// Fans out up to `limit` events not fanned out yet, oldest first: one pending
    /// [`Delivery`] per enabled endpoint that wants the event's type, and one per destination
    /// of `always` (destinations that take every event: Pub/Sub), due at `now`; each event
    /// once, under any concurrency. Returns how many events were fanned out.
    async fn fan_out(&self, always: &[Destination], now: DateTime<Utc>, limit: u32) -> Result<u64>;
    /// The destinations that have deliveries due at `now`.
    async fn due_destinations(&self, now: DateTime<Utc>) -> Result<Vec<Destination>>;
    /// Claims up to `limit` due deliveries of one destination for `owner` until
    /// `now + lease`, oldest event first; each claim counts one attempt. Two concurrent
    /// callers never get the same delivery.
    async fn claim_deliveries(
        &self,
        destination: &Destination,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>>;
    /// Records an attempt's outcome and ends `owner`'s lease;
    /// [`Error::LeaseLost`](crate::Error::LeaseLost) if `owner` no longer holds it.
    async fn finish_delivery(
        &self,
        id: Uuid,
        owner: &str,
        attempt: &Attempt,
        now: DateTime<Utc>,
    ) -> Result<()>;
    /// Records several of `owner`'s attempts, each as [`finish_delivery`](Self::finish_delivery)
    /// would, answering each; a store that can writes them in one transaction (one commit for
    /// a worker's whole batch instead of one per delivery).
    async fn finish_deliveries(
        &self,
        owner: &str,
        attempts: &[(Uuid, Attempt)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<()>>> {
        let mut out = Vec::with_capacity(attempts.len());
        for (id, attempt) in attempts {
            out.push(self.finish_delivery(*id, owner, attempt, now).await);
        }
        Ok(out)
    }
    /// Deliveries with a status, oldest first (cursor: the delivery's id).
    async fn list_deliveries(&self, status: DeliveryStatus, page: Page) -> Result<Vec<Delivery>>;
    /// Puts failed deliveries back to pending, due at `now`, with their attempts reset;
    /// returns how many. Deliveries to a deleted or disabled endpoint stay failed.
    async fn replay_deliveries(&self, which: &Replay, now: DateTime<Utc>) -> Result<u64>;
    /// Each destination's deliveries, counted.
    async fn delivery_counts(&self) -> Result<Vec<(Destination, DeliveryCounts)>>;
    /// Sets (or with `None` removes) a product's low-stock threshold: a change that takes
    /// its available stock from above the threshold to at or below it writes `stock.low`
    /// in its own atomic step. [`Error::NotFound`](crate::Error::NotFound) for an unknown
    /// product.
    async fn set_low_stock_threshold(
        &self,
        product: &ProductId,
        threshold: Option<u64>,
    ) -> Result<()>;
    /// A product's low-stock threshold ([`Error::NotFound`](crate::Error::NotFound) for an
    /// unknown product).
    async fn low_stock_threshold(&self, product: &ProductId) -> Result<Option<u64>>;
}

/// Retention of what is finished: idempotency keys expire, and the outbox's done rows (sent
/// or cancelled notifications, delivered event deliveries) are pruned, `limit` at a time, one
/// atomic step per call, so no call holds anything ordering needs for longer than one small
/// batch. Failed notifications and deliveries are never pruned: they wait for a retry or the
/// admin tool. Each method returns how many records it removed; a caller loops until one
/// returns less than `limit` ([`Retention`](crate::Retention) does).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait RetentionStore: Send + Sync {
    /// Forgets the idempotency keys of up to `limit` orders placed before `before`: a request
    /// that sends one of them again places a new order. The orders stay.
    async fn expire_idempotency_keys(&self, before: DateTime<Utc>, limit: u32) -> Result<u64>;
    /// Deletes up to `limit` notifications that are done (sent or cancelled) and were written
    /// before `before` ([`Notification::prunable`]).
    async fn prune_notifications(&self, before: DateTime<Utc>, limit: u32) -> Result<u64>;
    /// Deletes up to `limit` event deliveries that were delivered and written before `before`
    /// ([`Delivery::prunable`]).
    async fn prune_deliveries(&self, before: DateTime<Utc>, limit: u32) -> Result<u64>;
    /// Deletes failed notifications the operator gave up on (the admin tool's `notifications
    /// remove`): the one with `id` if it is failed, else (`None`) up to `limit` of them.
    async fn remove_failed_notifications(&self, id: Option<Uuid>, limit: u32) -> Result<u64>;
}

/// Everything a backend implements. Implemented automatically for any type with all the parts.
pub trait Store:
    UserStore
    + ProductStore
    + OrderStore
    + ReservationStore
    + LedgerStore
    + RetentionStore
    + EventStore
    + NotificationStore
    + Transfer
    + Health
{
}

impl<
    T: UserStore
        + ProductStore
        + OrderStore
        + ReservationStore
        + LedgerStore
        + RetentionStore
        + EventStore
        + NotificationStore
        + Transfer
        + Health,
> Store for T
{
}

/// A rendered email ready to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// `Message-ID` without angle brackets; stable per notification so that a redelivery can
    /// be recognised downstream.
    pub message_id: String,
    /// Recipient.
    pub to: Email,
    /// Subject line.
    pub subject: String,
    /// Plain-text body.
    pub text: String,
    /// HTML body (already escaped).
    pub html: String,
}

/// Sends one rendered message.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Mailer: Send + Sync {
    /// Hands the message to the mail system. `Ok` means it was accepted.
    async fn send(&self, email: &OutgoingEmail) -> std::result::Result<(), MailError>;
}

mod delegate;
