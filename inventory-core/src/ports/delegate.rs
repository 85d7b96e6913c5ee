//! `delegate!`: ports implemented for a wrapper by handing every method to an inner value,
//! and the smart pointers that are ports wherever their pointee is.

use std::sync::Arc;

use super::*;

/// Implements ports for a wrapper by handing every method to an inner value: the delegation a
/// store decorator (metrics, caching, fault injection) needs for the ports it does not change.
/// Implement the port you change by hand, and let this write the others.
///
/// The form is `delegate!(impl[GENERICS] TYPE => |s| INNER; PORT, PORT, ...)`, where `INNER`
/// is an expression of `s` (the `&self` of each method) that reaches the inner value.
///
/// ```
/// use std::sync::Arc;
/// use std::sync::atomic::{AtomicU64, Ordering};
/// use inventory_core::*;
///
/// /// Counts orders; everything else is the inner store's.
/// struct Counting<S> {
///     inner: S,
///     orders: AtomicU64,
/// }
///
/// #[async_trait]
/// impl<S: OrderStore> OrderStore for Counting<S> {
///     async fn place_order(&self, order: &NewOrder) -> Result<Placed> {
///         self.orders.fetch_add(1, Ordering::Relaxed);
///         self.inner.place_order(order).await
///     }
///     async fn get_order(&self, id: Uuid) -> Result<Option<Order>> {
///         self.inner.get_order(id).await
///     }
///     async fn list_orders_for_user(&self, user_id: Uuid, page: Page) -> Result<Vec<Order>> {
///         self.inner.list_orders_for_user(user_id, page).await
///     }
///     async fn list_orders(&self, page: Page) -> Result<Vec<Order>> {
///         self.inner.list_orders(page).await
///     }
///     async fn cancel_order(&self, id: Uuid, actor: &str, now: DateTime<Utc>) -> Result<Order> {
///         self.inner.cancel_order(id, actor, now).await
///     }
/// }
///
/// inventory_core::delegate!(impl[S: Store] Counting<S> => |s| s.inner;
///     UserStore, ProductStore, ReservationStore, LedgerStore, RetentionStore, EventStore,
///     NotificationStore, Transfer, Health);
///
/// let store: Arc<dyn Store> = Arc::new(Counting { inner: MemoryStore::new(), orders: AtomicU64::new(0) });
/// # let _ = store;
/// ```
///
/// The expansion names every type by its full path, so it needs no imports at the call site,
/// and each generated impl forwards every method of its port, defaulted ones included (clippy's
/// `missing_trait_methods` is on for them, so a method added to a port cannot be forgotten):
///
/// ```
/// struct Wrapped(inventory_core::MemoryStore);
/// inventory_core::delegate!(impl[] Wrapped => |s| s.0;
///     UserStore, ProductStore, OrderStore, ReservationStore, LedgerStore, RetentionStore,
///     EventStore, NotificationStore, Transfer, Health);
/// fn takes(_: &dyn inventory_core::Store) {}
/// takes(&Wrapped(inventory_core::MemoryStore::new()));
/// ```
#[macro_export]
macro_rules! delegate {
    (impl $gen:tt $ty:ty => |$s:ident| $inner:expr; $($port:ident),+ $(,)?) => {
        $( $crate::delegate!(@port $port $gen $ty, $s, $inner); )+
    };
    (@port UserStore [$($gen:tt)*] $ty:ty, $s:ident, $inner:expr) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::UserStore for $ty {
                async fn create_user(&self, user: &$crate::User) -> $crate::Result<()> {
                    { let $s = self; &$inner }.create_user(user).await
                }
                async fn find_user_by_email(&self, email: &$crate::Email) -> $crate::Result<::core::option::Option<$crate::User>> {
                    { let $s = self; &$inner }.find_user_by_email(email).await
                }
                async fn get_user(&self, id: $crate::Uuid) -> $crate::Result<::core::option::Option<$crate::User>> {
                    { let $s = self; &$inner }.get_user(id).await
                }
                async fn set_role(&self, email: &$crate::Email, role: $crate::Role) -> $crate::Result<$crate::User> {
                    { let $s = self; &$inner }.set_role(email, role).await
                }
                async fn revoke_tokens(&self, email: &$crate::Email) -> $crate::Result<$crate::User> {
                    { let $s = self; &$inner }.revoke_tokens(email).await
                }
                async fn mark_email_verified(&self, email: &$crate::Email) -> $crate::Result<$crate::User> {
                    { let $s = self; &$inner }.mark_email_verified(email).await
                }
        }
    };
    (@port ProductStore [$($gen:tt)*] $ty:ty, $s:ident, $inner:expr) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::ProductStore for $ty {
                async fn create_product(&self, p: &$crate::NewProduct, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<$crate::Product> {
                    { let $s = self; &$inner }.create_product(p, now).await
                }
                async fn ensure_product(&self, p: &$crate::NewProduct, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<bool> {
                    { let $s = self; &$inner }.ensure_product(p, now).await
                }
                async fn get_product(&self, id: &$crate::ProductId) -> $crate::Result<::core::option::Option<$crate::Product>> {
                    { let $s = self; &$inner }.get_product(id).await
                }
                async fn list_products(&self, page: $crate::Page) -> $crate::Result<::std::vec::Vec<$crate::Product>> {
                    { let $s = self; &$inner }.list_products(page).await
                }
                async fn restock(&self, id: &$crate::ProductId, add: u64, actor: &str, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<$crate::Product> {
                    { let $s = self; &$inner }.restock(id, add, actor, now).await
                }
        }
    };
    (@port OrderStore [$($gen:tt)*] $ty:ty, $s:ident, $inner:expr) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::OrderStore for $ty {
                async fn place_order(&self, order: &$crate::NewOrder) -> $crate::Result<$crate::Placed> {
                    { let $s = self; &$inner }.place_order(order).await
                }
                async fn get_order(&self, id: $crate::Uuid) -> $crate::Result<::core::option::Option<$crate::Order>> {
                    { let $s = self; &$inner }.get_order(id).await
                }
                async fn list_orders_for_user(&self, user_id: $crate::Uuid, page: $crate::Page) -> $crate::Result<::std::vec::Vec<$crate::Order>> {
                    { let $s = self; &$inner }.list_orders_for_user(user_id, page).await
                }
                async fn list_orders(&self, page: $crate::Page) -> $crate::Result<::std::vec::Vec<$crate::Order>> {
                    { let $s = self; &$inner }.list_orders(page).await
                }
                async fn cancel_order(&self, id: $crate::Uuid, actor: &str, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<$crate::Order> {
                    { let $s = self; &$inner }.cancel_order(id, actor, now).await
                }
        }
    };
    (@port ReservationStore [$($gen:tt)*] $ty:ty, $s:ident, $inner:expr) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::ReservationStore for $ty {
                async fn reserve(&self, r: &$crate::NewReservation) -> $crate::Result<$crate::Reservation> {
                    { let $s = self; &$inner }.reserve(r).await
                }
                async fn get_reservation(&self, id: $crate::Uuid) -> $crate::Result<::core::option::Option<$crate::Reservation>> {
                    { let $s = self; &$inner }.get_reservation(id).await
                }
                async fn release_reservation(&self, id: $crate::Uuid, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<$crate::Reservation> {
                    { let $s = self; &$inner }.release_reservation(id, now).await
                }
                async fn checkout_reservation(&self, id: $crate::Uuid, order: &$crate::NewOrder) -> $crate::Result<$crate::Placed> {
                    { let $s = self; &$inner }.checkout_reservation(id, order).await
                }
                async fn expire_reservations(&self, now: $crate::DateTime<$crate::Utc>, limit: u32) -> $crate::Result<u64> {
                    { let $s = self; &$inner }.expire_reservations(now, limit).await
                }
        }
    };
    (@port LedgerStore [$($gen:tt)*] $ty:ty, $s:ident, $inner:expr) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::LedgerStore for $ty {
                async fn list_ledger(&self, product_id: &$crate::ProductId, page: $crate::Page) -> $crate::Result<Vec<$crate::LedgerEntry>> {
                    { let $s = self; &$inner }.list_ledger(product_id, page).await
                }
                async fn set_stock(&self, set: &$crate::StockSet) -> $crate::Result<$crate::Product> {
                    { let $s = self; &$inner }.set_stock(set).await
                }
                async fn ledger_balance(&self, product_id: &$crate::ProductId) -> $crate::Result<$crate::Balance> {
                    { let $s = self; &$inner }.ledger_balance(product_id).await
                }
                async fn repair_stock(&self, difference: &$crate::Difference, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<$crate::Product> {
                    { let $s = self; &$inner }.repair_stock(difference, now).await
                }
                async fn prune_ledger(&self, before: $crate::DateTime<$crate::Utc>, limit: u32) -> $crate::Result<u64> {
                    { let $s = self; &$inner }.prune_ledger(before, limit).await
                }
        }
    };
    (@port RetentionStore [$($gen:tt)*] $ty:ty, $s:ident, $inner:expr) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::RetentionStore for $ty {
                async fn expire_idempotency_keys(&self, before: $crate::DateTime<$crate::Utc>, limit: u32) -> $crate::Result<u64> {
                    { let $s = self; &$inner }.expire_idempotency_keys(before, limit).await
                }
                async fn prune_notifications(&self, before: $crate::DateTime<$crate::Utc>, limit: u32) -> $crate::Result<u64> {
                    { let $s = self; &$inner }.prune_notifications(before, limit).await
                }
                async fn prune_deliveries(&self, before: $crate::DateTime<$crate::Utc>, limit: u32) -> $crate::Result<u64> {
                    { let $s = self; &$inner }.prune_deliveries(before, limit).await
                }
                async fn remove_failed_notifications(&self, id: ::core::option::Option<$crate::Uuid>, limit: u32) -> $crate::Result<u64> {
                    { let $s = self; &$inner }.remove_failed_notifications(id, limit).await
                }
        }
    };
    (@port EventStore [$($gen:tt)*] $ty:ty, $s:ident, $inner:expr) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::EventStore for $ty {
                async fn create_webhook(&self, endpoint: &$crate::WebhookEndpoint) -> $crate::Result<()> {
                    { let $s = self; &$inner }.create_webhook(endpoint).await
                }
                async fn list_webhooks(&self) -> $crate::Result<::std::vec::Vec<$crate::WebhookEndpoint>> {
                    { let $s = self; &$inner }.list_webhooks().await
                }
                async fn update_webhook(&self, endpoint: &$crate::WebhookEndpoint) -> $crate::Result<()> {
                    { let $s = self; &$inner }.update_webhook(endpoint).await
                }
                async fn delete_webhook(&self, id: $crate::Uuid, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<()> {
                    { let $s = self; &$inner }.delete_webhook(id, now).await
                }
                async fn fan_out(&self, always: &[$crate::Destination], now: $crate::DateTime<$crate::Utc>, limit: u32) -> $crate::Result<u64> {
                    { let $s = self; &$inner }.fan_out(always, now, limit).await
                }
                async fn due_destinations(&self, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<::std::vec::Vec<$crate::Destination>> {
                    { let $s = self; &$inner }.due_destinations(now).await
                }
                async fn claim_deliveries(
                    &self,
                    destination: &$crate::Destination,
                    owner: &str,
                    now: $crate::DateTime<$crate::Utc>,
                    lease: ::std::time::Duration,
                    limit: u32,
                ) -> $crate::Result<::std::vec::Vec<$crate::Delivery>> {
                    { let $s = self; &$inner }.claim_deliveries(destination, owner, now, lease, limit).await
                }
                async fn finish_delivery(&self, id: $crate::Uuid, owner: &str, attempt: &$crate::Attempt, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<()> {
                    { let $s = self; &$inner }.finish_delivery(id, owner, attempt, now).await
                }
                async fn finish_deliveries(&self, owner: &str, attempts: &[($crate::Uuid, $crate::Attempt)], now: $crate::DateTime<$crate::Utc>) -> $crate::Result<::std::vec::Vec<$crate::Result<()>>> {
                    { let $s = self; &$inner }.finish_deliveries(owner, attempts, now).await
                }
                async fn list_deliveries(&self, status: $crate::DeliveryStatus, page: $crate::Page) -> $crate::Result<::std::vec::Vec<$crate::Delivery>> {
                    { let $s = self; &$inner }.list_deliveries(status, page).await
                }
                async fn replay_deliveries(&self, which: &$crate::Replay, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<u64> {
                    { let $s = self; &$inner }.replay_deliveries(which, now).await
                }
                async fn delivery_counts(&self) -> $crate::Result<::std::vec::Vec<($crate::Destination, $crate::DeliveryCounts)>> {
                    { let $s = self; &$inner }.delivery_counts().await
                }
                async fn set_low_stock_threshold(&self, product: &$crate::ProductId, threshold: ::core::option::Option<u64>) -> $crate::Result<()> {
                    { let $s = self; &$inner }.set_low_stock_threshold(product, threshold).await
                }
                async fn low_stock_threshold(&self, product: &$crate::ProductId) -> $crate::Result<::core::option::Option<u64>> {
                    { let $s = self; &$inner }.low_stock_threshold(product).await
                }
        }
    };
    (@port NotificationStore [$($gen:tt)*] $ty:ty, $s:ident, $inner:expr) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::NotificationStore for $ty {
                async fn claim_due(
                    &self,
                    owner: &str,
                    now: $crate::DateTime<$crate::Utc>,
                    lease: ::std::time::Duration,
                    limit: u32,
                ) -> $crate::Result<::std::vec::Vec<$crate::Notification>> {
                    { let $s = self; &$inner }.claim_due(owner, now, lease, limit).await
                }
                async fn extend_lease(&self, id: $crate::Uuid, owner: &str, until: $crate::DateTime<$crate::Utc>) -> $crate::Result<()> {
                    { let $s = self; &$inner }.extend_lease(id, owner, until).await
                }
                async fn mark_sent(&self, id: $crate::Uuid, owner: &str, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<()> {
                    { let $s = self; &$inner }.mark_sent(id, owner, now).await
                }
                async fn mark_failed(
                    &self,
                    id: $crate::Uuid,
                    owner: &str,
                    error: &str,
                    next_attempt_at: ::core::option::Option<$crate::DateTime<$crate::Utc>>,
                ) -> $crate::Result<()> {
                    { let $s = self; &$inner }.mark_failed(id, owner, error, next_attempt_at).await
                }
                async fn enqueue(&self, n: &$crate::Standalone) -> $crate::Result<()> {
                    { let $s = self; &$inner }.enqueue(n).await
                }
                async fn notification_for_order(&self, order_id: $crate::Uuid) -> $crate::Result<::core::option::Option<$crate::Notification>> {
                    { let $s = self; &$inner }.notification_for_order(order_id).await
                }
                async fn list_notifications(
                    &self,
                    status: $crate::NotificationStatus,
                    page: $crate::Page,
                ) -> $crate::Result<::std::vec::Vec<$crate::Notification>> {
                    { let $s = self; &$inner }.list_notifications(status, page).await
                }
                async fn notification_counts(&self) -> $crate::Result<$crate::NotificationCounts> {
                    { let $s = self; &$inner }.notification_counts().await
                }
                async fn retry_failed(&self, id: ::core::option::Option<$crate::Uuid>, now: $crate::DateTime<$crate::Utc>) -> $crate::Result<u64> {
                    { let $s = self; &$inner }.retry_failed(id, now).await
                }
                fn subscribe(&self) -> $crate::watch::Receiver<u64> {
                    { let $s = self; &$inner }.subscribe()
                }
                fn accept_handoff(&self, handoff: $crate::handoff::Handoff) -> bool {
                    { let $s = self; &$inner }.accept_handoff(handoff)
                }
        }
    };
    (@port Health [$($gen:tt)*] $ty:ty, $s:ident, $inner:expr) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::Health for $ty {
                async fn ping(&self) -> $crate::Result<()> {
                    { let $s = self; &$inner }.ping().await
                }
        }
    };
    (@port Transfer [$($gen:tt)*] $ty:ty, $s:ident, $inner:expr) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::Transfer for $ty {
                async fn list_users(&self, page: $crate::Page) -> $crate::Result<::std::vec::Vec<$crate::User>> {
                    { let $s = self; &$inner }.list_users(page).await
                }
                async fn import_product(&self, product: &$crate::Product) -> $crate::Result<()> {
                    { let $s = self; &$inner }.import_product(product).await
                }
                async fn import_order(&self, order: &$crate::Order) -> $crate::Result<()> {
                    { let $s = self; &$inner }.import_order(order).await
                }
                async fn import_notification(&self, notification: &$crate::Notification) -> $crate::Result<()> {
                    { let $s = self; &$inner }.import_notification(notification).await
                }
                async fn import_ledger_entry(&self, entry: &$crate::LedgerEntry) -> $crate::Result<()> {
                    { let $s = self; &$inner }.import_ledger_entry(entry).await
                }
                async fn list_reservations(&self, page: $crate::Page) -> $crate::Result<Vec<$crate::Reservation>> {
                    { let $s = self; &$inner }.list_reservations(page).await
                }
                async fn import_reservation(&self, reservation: &$crate::Reservation) -> $crate::Result<()> {
                    { let $s = self; &$inner }.import_reservation(reservation).await
                }
                async fn count_records(&self) -> $crate::Result<$crate::transfer::Counts> {
                    { let $s = self; &$inner }.count_records().await
                }
        }
    };
    (@port Mailer [$($gen:tt)*] $ty:ty, $s:ident, $inner:expr) => {
        #[$crate::async_trait]
        #[warn(clippy::missing_trait_methods)]
        impl<$($gen)*> $crate::Mailer for $ty {
                async fn send(&self, email: &$crate::OutgoingEmail) -> ::std::result::Result<(), $crate::MailError> {
                    { let $s = self; &$inner }.send(email).await
                }
        }
    };
}

// Smart pointers are ports wherever their pointee is: `Arc<MyStore>`, `Box<dyn Store>`.
delegate!(impl[T: UserStore + ?Sized] Arc<T> => |s| **s; UserStore);
delegate!(impl[T: ProductStore + ?Sized] Arc<T> => |s| **s; ProductStore);
delegate!(impl[T: OrderStore + ?Sized] Arc<T> => |s| **s; OrderStore);
delegate!(impl[T: ReservationStore + ?Sized] Arc<T> => |s| **s; ReservationStore);
delegate!(impl[T: LedgerStore + ?Sized] Arc<T> => |s| **s; LedgerStore);
delegate!(impl[T: RetentionStore + ?Sized] Arc<T> => |s| **s; RetentionStore);
delegate!(impl[T: EventStore + ?Sized] Arc<T> => |s| **s; EventStore);
delegate!(impl[T: NotificationStore + ?Sized] Arc<T> => |s| **s; NotificationStore);
delegate!(impl[T: Transfer + ?Sized] Arc<T> => |s| **s; Transfer);
delegate!(impl[T: Health + ?Sized] Arc<T> => |s| **s; Health);
delegate!(impl[T: Mailer + ?Sized] Arc<T> => |s| **s; Mailer);
delegate!(impl[T: UserStore + ?Sized] Box<T> => |s| **s; UserStore);
delegate!(impl[T: ProductStore + ?Sized] Box<T> => |s| **s; ProductStore);
delegate!(impl[T: OrderStore + ?Sized] Box<T> => |s| **s; OrderStore);
delegate!(impl[T: ReservationStore + ?Sized] Box<T> => |s| **s; ReservationStore);
delegate!(impl[T: LedgerStore + ?Sized] Box<T> => |s| **s; LedgerStore);
delegate!(impl[T: RetentionStore + ?Sized] Box<T> => |s| **s; RetentionStore);
delegate!(impl[T: EventStore + ?Sized] Box<T> => |s| **s; EventStore);
delegate!(impl[T: NotificationStore + ?Sized] Box<T> => |s| **s; NotificationStore);
delegate!(impl[T: Transfer + ?Sized] Box<T> => |s| **s; Transfer);
delegate!(impl[T: Health + ?Sized] Box<T> => |s| **s; Health);
delegate!(impl[T: Mailer + ?Sized] Box<T> => |s| **s; Mailer);
