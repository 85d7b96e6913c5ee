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

/// Users and their credentials.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a new user. An email that exists already is [`Error::Conflict`](crate::Error) and
    /// leaves the stored user (and password) untouched.
    async fn create_user(&self, user: &User) -> Result<()>;
    /// The user with this (normalised) email.
    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>>;
    /// The user with this id.
    async fn get_user(&self, id: Uuid) -> Result<Option<User>>;
    /// Changes a user's role and raises its `token_version` (tokens issued before carry the
    /// old role and stop working); [`Error::NotFound`](crate::Error) for an unknown email.
    async fn set_role(&self, email: &Email, role: Role) -> Result<User>;
    /// Raises a user's `token_version`, ending every token issued before;
    /// [`Error::NotFound`](crate::Error) for an unknown email.
    async fn revoke_tokens(&self, email: &Email) -> Result<User>;
}

/// Products and their stock.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait ProductStore: Send + Sync {
    /// Creates a product; an existing id is [`Error::Conflict`](crate::Error).
    async fn create_product(&self, product: &NewProduct, now: DateTime<Utc>) -> Result<Product>;
    /// Creates the product unless its id exists; returns whether it was created.
    /// Seeding with this is idempotent and never resets stock.
    async fn ensure_product(&self, product: &NewProduct, now: DateTime<Utc>) -> Result<bool>;
    /// The product with this id.
    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>>;
    /// Products ordered by id.
    async fn list_products(&self, page: Page) -> Result<Vec<Product>>;
    /// Adds `add` units to the stock; a stock above [`STOCK_MAX`] is
    /// [`Error::InvalidInput`](crate::Error) and changes nothing.
    async fn restock(&self, id: &ProductId, add: u64, now: DateTime<Utc>) -> Result<Product>;
}

/// Orders.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait OrderStore: Send + Sync {
    /// Places an order in one atomic step: the product must exist
    /// ([`Error::NotFound`](crate::Error)) and have `quantity` units
    /// ([`Error::OutOfStock`](crate::Error)); the stock is decremented, the order written and
    /// its confirmation notification enqueued, all or nothing, and the outbox signal raised.
    ///
    /// With an idempotency key already used by the same user, the earlier order is returned
    /// with `replayed = true` and nothing changes; if its contents differ, it is a
    /// [`Error::Conflict`](crate::Error). This holds under any concurrency.
    async fn place_order(&self, order: &NewOrder) -> Result<Placed>;
    /// The order with this id.
    async fn get_order(&self, id: Uuid) -> Result<Option<Order>>;
    /// A user's orders, newest first.
    async fn list_orders_for_user(&self, user_id: Uuid, page: Page) -> Result<Vec<Order>>;
    /// Every order, newest first.
    async fn list_orders(&self, page: Page) -> Result<Vec<Order>>;
    /// Cancels a pending or confirmed order and returns its units to stock, exactly once:
    /// cancelling a cancelled order is a [`Error::Conflict`](crate::Error). In the same atomic
    /// step its confirmation, if still pending (even leased, mid-send), becomes
    /// [`NotificationStatus::Cancelled`]: it is never sent or retried afterwards, and a send in
    /// flight cannot mark it sent (its lease is gone).
    async fn cancel_order(&self, id: Uuid, now: DateTime<Utc>) -> Result<Order>;
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
    /// [`Error::Conflict`](crate::Error) if `owner` no longer holds the lease.
    async fn extend_lease(&self, id: Uuid, owner: &str, until: DateTime<Utc>) -> Result<()>;
    /// Marks a notification sent (clearing `last_error`) and its order confirmed. Fails with
    /// [`Error::Conflict`](crate::Error) if `owner` no longer holds the lease, which includes a
    /// notification cancelled with its order meanwhile.
    async fn mark_sent(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<()>;
    /// Releases the lease after a failed attempt: the notification stays pending until
    /// `next_attempt_at`, or becomes failed when that is `None`.
    /// Fails with [`Error::Conflict`](crate::Error) if `owner` no longer holds the lease.
    async fn mark_failed(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<()>;
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
/// [`Error::Conflict`](crate::Error).
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Transfer: Send + Sync {
    /// Users ordered by email.
    async fn list_users(&self, page: Page) -> Result<Vec<User>>;
    /// Writes a product as it is (stock and timestamps included).
    async fn import_product(&self, product: &Product) -> Result<()>;
    /// Writes an order as it is, without touching stock.
    async fn import_order(&self, order: &Order) -> Result<()>;
    /// Writes a notification as it is.
    async fn import_notification(&self, notification: &Notification) -> Result<()>;
    /// How many users, products, orders and notifications the store holds, so an export can
    /// prove it wrote every one.
    async fn count_records(&self) -> Result<crate::transfer::Counts>;
}

/// Everything a backend implements. Implemented automatically for any type with all the parts.
pub trait Store:
    UserStore + ProductStore + OrderStore + NotificationStore + Transfer + Health
{
}

impl<T: UserStore + ProductStore + OrderStore + NotificationStore + Transfer + Health> Store for T {}

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

/// Implements the ports for a smart pointer by delegating every method to the pointee, so an
/// `Arc<MyStore>` or `Box<dyn Store>` is a store wherever one is expected. Every method is
/// listed once here: a port that gains a method fails to compile until it is added.
macro_rules! delegate_ports {
    ($($ptr:ident),+) => {$(
        #[async_trait]
        impl<T: UserStore + ?Sized> UserStore for $ptr<T> {
            async fn create_user(&self, user: &User) -> Result<()> {
                (**self).create_user(user).await
            }
            async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>> {
                (**self).find_user_by_email(email).await
            }
            async fn get_user(&self, id: Uuid) -> Result<Option<User>> {
                (**self).get_user(id).await
            }
            async fn set_role(&self, email: &Email, role: Role) -> Result<User> {
                (**self).set_role(email, role).await
            }
            async fn revoke_tokens(&self, email: &Email) -> Result<User> {
                (**self).revoke_tokens(email).await
            }
        }

        #[async_trait]
        impl<T: ProductStore + ?Sized> ProductStore for $ptr<T> {
            async fn create_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<Product> {
                (**self).create_product(p, now).await
            }
            async fn ensure_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<bool> {
                (**self).ensure_product(p, now).await
            }
            async fn get_product(&self, id: &ProductId) -> Result<Option<Product>> {
                (**self).get_product(id).await
            }
            async fn list_products(&self, page: Page) -> Result<Vec<Product>> {
                (**self).list_products(page).await
            }
            async fn restock(&self, id: &ProductId, add: u64, now: DateTime<Utc>) -> Result<Product> {
                (**self).restock(id, add, now).await
            }
        }

        #[async_trait]
        impl<T: OrderStore + ?Sized> OrderStore for $ptr<T> {
            async fn place_order(&self, order: &NewOrder) -> Result<Placed> {
                (**self).place_order(order).await
            }
            async fn get_order(&self, id: Uuid) -> Result<Option<Order>> {
                (**self).get_order(id).await
            }
            async fn list_orders_for_user(&self, user_id: Uuid, page: Page) -> Result<Vec<Order>> {
                (**self).list_orders_for_user(user_id, page).await
            }
            async fn list_orders(&self, page: Page) -> Result<Vec<Order>> {
                (**self).list_orders(page).await
            }
            async fn cancel_order(&self, id: Uuid, now: DateTime<Utc>) -> Result<Order> {
                (**self).cancel_order(id, now).await
            }
        }

        #[async_trait]
        impl<T: NotificationStore + ?Sized> NotificationStore for $ptr<T> {
            async fn claim_due(
                &self,
                owner: &str,
                now: DateTime<Utc>,
                lease: Duration,
                limit: u32,
            ) -> Result<Vec<Notification>> {
                (**self).claim_due(owner, now, lease, limit).await
            }
            async fn extend_lease(&self, id: Uuid, owner: &str, until: DateTime<Utc>) -> Result<()> {
                (**self).extend_lease(id, owner, until).await
            }
            async fn mark_sent(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<()> {
                (**self).mark_sent(id, owner, now).await
            }
            async fn mark_failed(
                &self,
                id: Uuid,
                owner: &str,
                error: &str,
                next_attempt_at: Option<DateTime<Utc>>,
            ) -> Result<()> {
                (**self).mark_failed(id, owner, error, next_attempt_at).await
            }
            async fn notification_for_order(&self, order_id: Uuid) -> Result<Option<Notification>> {
                (**self).notification_for_order(order_id).await
            }
            async fn list_notifications(
                &self,
                status: NotificationStatus,
                page: Page,
            ) -> Result<Vec<Notification>> {
                (**self).list_notifications(status, page).await
            }
            async fn notification_counts(&self) -> Result<NotificationCounts> {
                (**self).notification_counts().await
            }
            async fn retry_failed(&self, id: Option<Uuid>, now: DateTime<Utc>) -> Result<u64> {
                (**self).retry_failed(id, now).await
            }
            fn subscribe(&self) -> watch::Receiver<u64> {
                (**self).subscribe()
            }
        }

        #[async_trait]
        impl<T: Health + ?Sized> Health for $ptr<T> {
            async fn ping(&self) -> Result<()> {
                (**self).ping().await
            }
        }

        #[async_trait]
        impl<T: Transfer + ?Sized> Transfer for $ptr<T> {
            async fn list_users(&self, page: Page) -> Result<Vec<User>> {
                (**self).list_users(page).await
            }
            async fn import_product(&self, product: &Product) -> Result<()> {
                (**self).import_product(product).await
            }
            async fn import_order(&self, order: &Order) -> Result<()> {
                (**self).import_order(order).await
            }
            async fn import_notification(&self, notification: &Notification) -> Result<()> {
                (**self).import_notification(notification).await
            }
            async fn count_records(&self) -> Result<crate::transfer::Counts> {
                (**self).count_records().await
            }
        }

        #[async_trait]
        impl<T: Mailer + ?Sized> Mailer for $ptr<T> {
            async fn send(&self, email: &OutgoingEmail) -> std::result::Result<(), MailError> {
                (**self).send(email).await
            }
        }
    )+};
}

use std::sync::Arc;
delegate_ports!(Arc, Box);
