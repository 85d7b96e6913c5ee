//! The backend conformance suite (feature `testkit`).
//!
//! Every function here is a test of one storage behaviour against a fresh, empty store.
//! A backend proves itself with [`store_conformance!`](crate::store_conformance), which expands
//! to one `#[tokio::test]` per function:
//!
//! ```ignore
//! inventory_core::store_conformance!(async {
//!     Some(std::sync::Arc::new(MyStore::connect(..).await.unwrap()) as TestStore)
//! });
//! ```
//!
//! The functions are public so a backend can also call them one by one. They are test code:
//! they panic on failure and are not part of the stable API.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::dispatcher::{Dispatcher, DispatcherConfig};
use crate::domain::*;
use crate::error::Error;
use crate::mail::RecordingMailer;
use crate::ports::*;

/// A store under test.
pub type TestStore = Arc<dyn Store>;

/// Expands to one `#[tokio::test]` per conformance case. The argument is an expression that
/// evaluates to a future yielding `Option<TestStore>`: a fresh, empty store, or `None` when
/// the backend is not configured here. It is evaluated once per test. Attributes written
/// after it are put on every case: mark a suite whose backend is missing as ignored, so it
/// shows as ignored rather than passed, e.g.
/// `store_conformance!(factory, #[cfg_attr(no_backend, ignore = "BACKEND_URL not set")])` with
/// `no_backend` set by the crate's build script.
#[macro_export]
macro_rules! store_conformance {
    ($factory:expr $(, #[$attr:meta])* $(,)?) => {
        $crate::__store_conformance_cases!([$(#[$attr])*] $factory;
            users_email_is_unique_and_password_kept,
            users_lookup_and_roles,
            products_create_list_restock,
            place_order_unknown_product_is_not_found,
            place_order_out_of_stock_changes_nothing,
            place_order_success_takes_stock_and_enqueues,
            concurrent_buyers_never_oversell,
            idempotency_replay_under_concurrency,
            idempotency_key_is_per_user,
            cancel_restores_stock_exactly_once,
            lease_claim_expiry_and_reclaim,
            mark_sent_and_mark_failed,
            retry_failed_puts_back_to_pending,
            two_dispatchers_deliver_each_exactly_once,
            orders_list_newest_first_with_pagination,
            placing_an_order_raises_the_signal,
            place_order_is_atomic_when_callers_give_up,
            health_ping_answers,
            restock_refuses_stock_above_the_maximum,
            export_writes_every_record,
            cancel_cancels_the_pending_confirmation,
            sent_clears_the_last_error,
            extend_lease_keeps_a_claim,
            one_account_per_address_across_forms,
            revoking_tokens_raises_the_version,
            claim_due_respects_its_limit_and_order,
            verification_emails_share_the_outbox,
            concurrent_orders_each_stand_alone,
            lists_continue_after_a_cursor,
        );
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_cases {
    ($attrs:tt $factory:expr; $($case:ident),+ $(,)?) => {
        $( $crate::__store_conformance_case!($attrs $factory; $case); )+
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __store_conformance_case {
    ([$(#[$attr:meta])*] $factory:expr; $case:ident) => {
        #[::tokio::test(flavor = "multi_thread", worker_threads = 4)]
        $(#[$attr])*
        async fn $case() {
            let store: ::core::option::Option<$crate::testkit::TestStore> = $factory.await;
            match store {
                Some(store) => $crate::testkit::$case(store).await,
                None => eprintln!("SKIPPED {}: backend not configured", stringify!($case)),
            }
        }
    };
}

fn t0() -> DateTime<Utc> {
    Utc::now()
}

/// Creates a user with this email (and a placeholder hash).
pub async fn user(store: &TestStore, email: &str) -> User {
    let user = User {
        id: Uuid::now_v7(),
        email: Email::parse(email).expect("valid email"),
        password_hash: "$argon2id$placeholder".into(),
        role: Role::Customer,
        created_at: now(),
        token_version: 0,
        email_verified: false,
    };
    store.create_user(&user).await.expect("create user");
    user
}

/// Creates a product with this id and stock.
pub async fn product(store: &TestStore, id: &str, quantity: u64) -> ProductId {
    let id = ProductId::new(id).expect("valid id");
    let p = NewProduct::new(id.clone(), format!("Product {id}"), quantity).expect("valid");
    store
        .create_product(&p, t0())
        .await
        .expect("create product");
    id
}

/// An order of `quantity` units of `product` for `user`.
pub fn order(user: &User, product: &ProductId, quantity: u64) -> NewOrder {
    NewOrder::new(
        user.id,
        user.email.clone(),
        product.clone(),
        Quantity::new(quantity).expect("valid quantity"),
    )
}

async fn stock(store: &TestStore, id: &ProductId) -> u64 {
    store
        .get_product(id)
        .await
        .unwrap()
        .expect("product exists")
        .quantity
}

/// A second registration of an email is a conflict and never replaces the stored password;
/// the uniqueness holds for concurrent registrations too.
pub async fn users_email_is_unique_and_password_kept(store: TestStore) {
    let first = user(&store, "ann@example.com").await;
    let mut second = first.clone();
    second.id = Uuid::now_v7();
    second.password_hash = "$argon2id$other".into();
    let err = store.create_user(&second).await.unwrap_err();
    assert!(
        matches!(err, Error::AlreadyExists(_)),
        "a second user with a taken email must be AlreadyExists, got {err:?}"
    );
    let stored = store
        .find_user_by_email(&first.email)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.password_hash, first.password_hash);
    assert_eq!(stored.id, first.id);

    let email = Email::parse("race@example.com").unwrap();
    let attempts = (0..10).map(|i| {
        let store = store.clone();
        let email = email.clone();
        tokio::spawn(async move {
            let u = User {
                id: Uuid::now_v7(),
                email,
                password_hash: format!("hash-{i}"),
                role: Role::Customer,
                created_at: Utc::now(),
                token_version: 0,
                email_verified: false,
            };
            store.create_user(&u).await
        })
    });
    let results = futures::future::join_all(attempts).await;
    let ok = results.iter().filter(|r| matches!(r, Ok(Ok(())))).count();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Ok(Err(Error::AlreadyExists(_)))))
        .count();
    assert_eq!((ok, conflicts), (1, 9));
}

/// Users are found by normalised email and by id; roles can change.
pub async fn users_lookup_and_roles(store: TestStore) {
    let u = user(&store, "Bob@Example.com").await;
    let found = store
        .find_user_by_email(&Email::parse("  BOB@example.COM").unwrap())
        .await
        .unwrap()
        .expect("found by normalised email");
    assert_eq!(found, u);
    assert_eq!(store.get_user(u.id).await.unwrap(), Some(u.clone()));
    assert_eq!(store.get_user(Uuid::now_v7()).await.unwrap(), None);
    assert_eq!(
        store
            .find_user_by_email(&Email::parse("nobody@example.com").unwrap())
            .await
            .unwrap(),
        None
    );
    let admin = store.set_role(&u.email, Role::Admin).await.unwrap();
    assert_eq!(admin.role, Role::Admin);
    assert_eq!(
        store.get_user(u.id).await.unwrap().unwrap().role,
        Role::Admin
    );
    let missing = store
        .set_role(&Email::parse("x@example.com").unwrap(), Role::Admin)
        .await;
    assert!(matches!(missing, Err(Error::NotFound(_))));
}

/// Address verification: `mark_email_verified` sets the flag only (tokens survive); a
/// verification email is enqueued, claimed, sent and exported like a confirmation, touches
/// no order, and an order confirmation cannot be enqueued on its own.
pub async fn verification_emails_share_the_outbox(store: TestStore) {
    let u = user(&store, "vera@example.com").await;
    assert!(!u.email_verified);
    let verified = store.mark_email_verified(&u.email).await.unwrap();
    assert!(
        verified.email_verified && verified.token_version == u.token_version,
        "mark_email_verified must set the flag and nothing else, got {verified:?}"
    );
    assert!(store.get_user(u.id).await.unwrap().unwrap().email_verified);
    let missing = store
        .mark_email_verified(&Email::parse("nobody@example.com").unwrap())
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound(_))),
        "mark_email_verified of an unknown address must be NotFound, got {missing:?}"
    );

    let mut signal = store.subscribe();
    signal.borrow_and_update();
    let n = Notification::email_verification(&u, "signed.code.here".into(), t0());
    store.enqueue(&n).await.expect("enqueue");
    assert!(
        signal.has_changed().unwrap_or(false),
        "enqueue must raise the outbox signal"
    );
    let again = store.enqueue(&n).await;
    assert!(
        matches!(again, Err(Error::AlreadyExists(_))),
        "enqueueing an existing id must be AlreadyExists, got {again:?}"
    );
    let p = product(&store, "product-1", 5).await;
    let order = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let confirmation = store
        .notification_for_order(order.id)
        .await
        .unwrap()
        .unwrap();
    let refused = store.enqueue(&confirmation).await;
    assert!(
        matches!(refused, Err(Error::InvalidInput { .. })),
        "an order confirmation enqueued on its own must be InvalidInput, got {refused:?}"
    );

    let lease = Duration::from_secs(30);
    let claimed = store.claim_due("w", t0(), lease, 10).await.unwrap();
    let mine = claimed
        .iter()
        .find(|c| c.id == n.id)
        .expect("the verification email is claimed like a confirmation");
    assert_eq!(
        mine.message, n.message,
        "the message comes back as it was stored"
    );
    assert_eq!(mine.order_id(), None);
    store.mark_sent(n.id, "w", t0()).await.unwrap();
    assert_eq!(
        store.get_order(order.id).await.unwrap().unwrap().status,
        OrderStatus::Pending,
        "sending a verification email confirmed an order"
    );

    let mut out = Vec::new();
    let report = crate::transfer::export(store.as_ref(), &mut out)
        .await
        .unwrap();
    assert!(report.is_complete(), "{:?}", report.skipped);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("\"kind\":\"email_verification\"")
            && text.contains("\"email_verified\":true"),
        "the export keeps verification emails and flags: {text}"
    );
}

/// Products: create, duplicate conflict, idempotent ensure, ordered pages, restock.
pub async fn products_create_list_restock(store: TestStore) {
    let ids: Vec<ProductId> = futures::future::join_all(
        ["p-3", "p-1", "p-2"]
            .map(|id| product(&store, id, 5))
            .into_iter()
            .map(Box::pin),
    )
    .await;
    let dup = NewProduct::new(ids[0].clone(), "Other", 99).unwrap();
    let created = store.create_product(&dup, t0()).await;
    assert!(
        matches!(created, Err(Error::AlreadyExists(_))),
        "creating a product with a taken id must be AlreadyExists, got {created:?}"
    );
    assert!(
        !store.ensure_product(&dup, t0()).await.unwrap(),
        "existing id is not created"
    );
    assert_eq!(stock(&store, &ids[0]).await, 5, "ensure never resets stock");
    let fresh = NewProduct::new(ProductId::new("p-4").unwrap(), "Four", 0).unwrap();
    assert!(store.ensure_product(&fresh, t0()).await.unwrap());
    assert!(!store.ensure_product(&fresh, t0()).await.unwrap());

    let all = store.list_products(Page::default()).await.unwrap();
    let names: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(names, ["p-1", "p-2", "p-3", "p-4"]);
    assert_eq!(all[3].status(), ProductStatus::OutOfStock);
    let second_page = store.list_products(Page::new(2, 1).unwrap()).await.unwrap();
    assert_eq!(second_page.len(), 1);
    assert_eq!(second_page[0].id.as_str(), "p-3");

    let restocked = store.restock(&fresh.id, 7, t0()).await.unwrap();
    assert_eq!(restocked.quantity, 7);
    assert_eq!(restocked.status(), ProductStatus::InStock);
    let missing = store
        .restock(&ProductId::new("nope").unwrap(), 1, t0())
        .await;
    assert!(matches!(missing, Err(Error::NotFound(_))));
    let odd = ProductId::new("../'; DROP TABLE products; --\"é").unwrap();
    let weird = NewProduct::new(odd.clone(), "Robert'); DROP TABLE orders;--", 1).unwrap();
    store.create_product(&weird, t0()).await.unwrap();
    let back = store
        .get_product(&odd)
        .await
        .unwrap()
        .expect("stored verbatim");
    assert_eq!(back.name, weird.name);
}

/// Ordering a product that does not exist is not-found and changes nothing.
pub async fn place_order_unknown_product_is_not_found(store: TestStore) {
    let u = user(&store, "c@example.com").await;
    let missing = ProductId::new("no-such-product").unwrap();
    let err = store
        .place_order(&order(&u, &missing, 1))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "got {err:?}");
    assert!(store.list_orders(Page::default()).await.unwrap().is_empty());
    assert_eq!(
        store.notification_counts().await.unwrap(),
        NotificationCounts::default()
    );
}

/// Asking for more than the stock is out-of-stock and changes nothing.
pub async fn place_order_out_of_stock_changes_nothing(store: TestStore) {
    let u = user(&store, "d@example.com").await;
    let p = product(&store, "scarce", 2).await;
    let err = store.place_order(&order(&u, &p, 3)).await.unwrap_err();
    assert!(matches!(err, Error::OutOfStock { .. }), "got {err:?}");
    assert_eq!(stock(&store, &p).await, 2);
    assert!(store.list_orders(Page::default()).await.unwrap().is_empty());
    assert_eq!(store.notification_counts().await.unwrap().pending, 0);
    store
        .place_order(&order(&u, &p, 2))
        .await
        .expect("exact stock is fine");
    let err = store.place_order(&order(&u, &p, 1)).await.unwrap_err();
    assert!(matches!(err, Error::OutOfStock { .. }), "got {err:?}");
}

/// A successful order takes the stock, is pending, and enqueues its notification.
pub async fn place_order_success_takes_stock_and_enqueues(store: TestStore) {
    let u = user(&store, "e@example.com").await;
    let p = product(&store, "product-1", 5).await;
    let new = order(&u, &p, 2);
    let placed = store.place_order(&new).await.unwrap();
    assert!(!placed.replayed);
    let o = &placed.order;
    assert_eq!((o.id, o.user_id, o.quantity.get()), (new.id, u.id, 2));
    assert_eq!(o.status, OrderStatus::Pending);
    assert_eq!(o.buyer_email, u.email);
    assert_eq!(stock(&store, &p).await, 3);
    assert_eq!(store.get_order(o.id).await.unwrap().as_ref(), Some(o));
    let n = store
        .notification_for_order(o.id)
        .await
        .unwrap()
        .expect("enqueued");
    assert_eq!(n.id, new.notification_id);
    assert_eq!(n.status, NotificationStatus::Pending);
    assert_eq!(n.recipient, u.email);
    let Message::OrderConfirmation {
        order_id,
        product_name,
        quantity,
        ..
    } = &n.message
    else {
        panic!(
            "place_order enqueued {:?}, not an order confirmation",
            n.message
        );
    };
    assert_eq!(*order_id, o.id);
    assert_eq!(product_name, "Product product-1");
    assert_eq!((quantity.get(), n.attempts), (2, 0));
    assert_eq!(store.notification_counts().await.unwrap().pending, 1);
}

/// 200 concurrent buyers of a product with stock 50: exactly 50 orders, stock 0,
/// 50 notifications, 150 out-of-stock refusals.
pub async fn concurrent_buyers_never_oversell(store: TestStore) {
    let p = product(&store, "hot", 50).await;
    let mut buyers = Vec::new();
    for i in 0..200 {
        buyers.push(user(&store, &format!("buyer{i}@example.com")).await);
    }
    let tasks = buyers.into_iter().map(|u| {
        let store = store.clone();
        let p = p.clone();
        tokio::spawn(async move { store.place_order(&order(&u, &p, 1)).await })
    });
    let results = futures::future::join_all(tasks).await;
    let mut ok = 0;
    let mut out_of_stock = 0;
    for r in results {
        match r.expect("task") {
            Ok(_) => ok += 1,
            Err(Error::OutOfStock { .. }) => out_of_stock += 1,
            Err(e) => panic!("unexpected error: {e:?}"),
        }
    }
    assert_eq!((ok, out_of_stock), (50, 150));
    assert_eq!(stock(&store, &p).await, 0);
    assert_eq!(
        store
            .list_orders(Page::new(0, 1000).unwrap())
            .await
            .unwrap()
            .len(),
        50
    );
    assert_eq!(store.notification_counts().await.unwrap().pending, 50);
}

/// The same idempotency key sent 20 times at once places one order; every reply is that order.
/// The key with other contents is a conflict.
pub async fn idempotency_replay_under_concurrency(store: TestStore) {
    let u = user(&store, "idem@example.com").await;
    let p = product(&store, "idem-product", 100).await;
    let key = IdempotencyKey::new("key-123").unwrap();
    let tasks = (0..20).map(|_| {
        let store = store.clone();
        let new = order(&u, &p, 1).with_idempotency_key(key.clone());
        tokio::spawn(async move { store.place_order(&new).await })
    });
    let results: Vec<Placed> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("task").expect("placed or replayed"))
        .collect();
    let ids: HashSet<Uuid> = results.iter().map(|p| p.order.id).collect();
    assert_eq!(ids.len(), 1, "one order for one key");
    assert_eq!(results.iter().filter(|p| !p.replayed).count(), 1);
    assert_eq!(stock(&store, &p).await, 99);
    assert_eq!(store.notification_counts().await.unwrap().pending, 1);
    let different = order(&u, &p, 2).with_idempotency_key(key);
    let err = store.place_order(&different).await.unwrap_err();
    assert!(
        matches!(err, Error::IdempotencyKeyReused),
        "a key reused with other contents must be IdempotencyKeyReused, got {err:?}"
    );
    assert_eq!(stock(&store, &p).await, 99);
}

/// Two users may use the same key independently.
pub async fn idempotency_key_is_per_user(store: TestStore) {
    let a = user(&store, "a@example.com").await;
    let b = user(&store, "b@example.com").await;
    let p = product(&store, "shared", 10).await;
    let key = IdempotencyKey::new("same").unwrap();
    let pa = store
        .place_order(&order(&a, &p, 1).with_idempotency_key(key.clone()))
        .await
        .unwrap();
    let pb = store
        .place_order(&order(&b, &p, 1).with_idempotency_key(key))
        .await
        .unwrap();
    assert!(!pa.replayed && !pb.replayed);
    assert_ne!(pa.order.id, pb.order.id);
    assert_eq!(stock(&store, &p).await, 8);
}

/// Cancelling returns the stock once, even when ten cancels race.
pub async fn cancel_restores_stock_exactly_once(store: TestStore) {
    let u = user(&store, "cancel@example.com").await;
    let p = product(&store, "returnable", 10).await;
    let placed = store.place_order(&order(&u, &p, 4)).await.unwrap();
    assert_eq!(stock(&store, &p).await, 6);
    let tasks = (0..10).map(|_| {
        let store = store.clone();
        let id = placed.order.id;
        tokio::spawn(async move { store.cancel_order(id, Utc::now()).await })
    });
    let results = futures::future::join_all(tasks).await;
    let ok: Vec<Order> = results
        .iter()
        .filter_map(|r| r.as_ref().unwrap().as_ref().ok().cloned())
        .collect();
    assert_eq!(ok.len(), 1);
    assert_eq!(ok[0].status, OrderStatus::Cancelled);
    for r in results {
        if let Err(e) = r.unwrap() {
            assert!(
                matches!(e, Error::AlreadyCancelled(_)),
                "a second cancel must be AlreadyCancelled, got {e:?}"
            );
        }
    }
    assert_eq!(stock(&store, &p).await, 10);
    let missing = store.cancel_order(Uuid::now_v7(), Utc::now()).await;
    assert!(matches!(missing, Err(Error::NotFound(_))));
    // The confirmation of a cancelled order is never sent (see
    // `cancel_cancels_the_pending_confirmation`).
    let n = store
        .claim_due("w", Utc::now(), Duration::from_secs(30), 10)
        .await
        .unwrap();
    assert!(n.is_empty(), "a cancelled order's confirmation was claimed");
    let order = store.get_order(placed.order.id).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
}

/// A claim holds a notification until its lease runs out; then another owner can claim it,
/// and the first owner can no longer record a result.
pub async fn lease_claim_expiry_and_reclaim(store: TestStore) {
    let u = user(&store, "lease@example.com").await;
    let p = product(&store, "leased", 10).await;
    let placed = store.place_order(&order(&u, &p, 1)).await.unwrap();
    let now = Utc::now() + chrono::Duration::seconds(1);
    let lease = Duration::from_secs(30);
    let first = store.claim_due("a", now, lease, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].order_id(), Some(placed.order.id));
    assert_eq!(first[0].lease_owner.as_deref(), Some("a"));
    assert_eq!(first[0].attempts, 1);
    let during = store
        .claim_due("b", now + chrono::Duration::seconds(10), lease, 10)
        .await
        .unwrap();
    assert!(during.is_empty(), "leased work is not claimed twice");
    let after = now + chrono::Duration::seconds(31);
    let second = store.claim_due("b", after, lease, 10).await.unwrap();
    assert_eq!(second.len(), 1, "expired lease is claimable");
    assert_eq!(second[0].lease_owner.as_deref(), Some("b"));
    assert_eq!(second[0].attempts, 2);
    let stale = store.mark_sent(first[0].id, "a", after).await;
    assert!(
        matches!(stale, Err(Error::LeaseLost(_))),
        "mark_sent by the owner of an expired, re-claimed lease must be LeaseLost, got {stale:?}"
    );
    store.mark_sent(second[0].id, "b", after).await.unwrap();
    assert!(
        store
            .claim_due("c", after + chrono::Duration::days(1), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Marking sent confirms the order; marking failed with a time reschedules, without one gives up.
pub async fn mark_sent_and_mark_failed(store: TestStore) {
    let u = user(&store, "mark@example.com").await;
    let p = product(&store, "markable", 10).await;
    let o1 = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let o2 = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let now = Utc::now() + chrono::Duration::seconds(1);
    let lease = Duration::from_secs(60);
    let claimed = store.claim_due("w", now, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let n1 = claimed
        .iter()
        .find(|n| n.order_id() == Some(o1.id))
        .unwrap();
    let n2 = claimed
        .iter()
        .find(|n| n.order_id() == Some(o2.id))
        .unwrap();

    store.mark_sent(n1.id, "w", now).await.unwrap();
    assert_eq!(
        store.get_order(o1.id).await.unwrap().unwrap().status,
        OrderStatus::Confirmed
    );
    let sent = store.notification_for_order(o1.id).await.unwrap().unwrap();
    assert_eq!(sent.status, NotificationStatus::Sent);
    assert!(sent.sent_at.is_some());
    let again = store.mark_sent(n1.id, "w", now).await;
    assert!(
        matches!(again, Err(Error::LeaseLost(_))),
        "marking a sent notification sent again must be LeaseLost, got {again:?}"
    );

    let retry_at = now + chrono::Duration::seconds(100);
    store
        .mark_failed(n2.id, "w", "421 try later", Some(retry_at))
        .await
        .unwrap();
    let pending = store.notification_for_order(o2.id).await.unwrap().unwrap();
    assert_eq!(pending.status, NotificationStatus::Pending);
    assert_eq!(pending.last_error.as_deref(), Some("421 try later"));
    assert_eq!(pending.lease_owner, None);
    assert!(
        store
            .claim_due("w", now + chrono::Duration::seconds(99), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store.claim_due("w", retry_at, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    store
        .mark_failed(n2.id, "w", "550 no such user", None)
        .await
        .unwrap();
    let failed = store.notification_for_order(o2.id).await.unwrap().unwrap();
    assert_eq!(failed.status, NotificationStatus::Failed);
    assert_eq!(failed.last_error.as_deref(), Some("550 no such user"));
    assert_eq!(
        store.get_order(o2.id).await.unwrap().unwrap().status,
        OrderStatus::Pending
    );
    assert!(
        store
            .claim_due("w", retry_at + chrono::Duration::days(1), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.notification_counts().await.unwrap(),
        NotificationCounts {
            pending: 0,
            sent: 1,
            failed: 1,
            cancelled: 0,
        }
    );
    let listed = store
        .list_notifications(NotificationStatus::Failed, Page::default())
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|n| n.id).collect::<Vec<_>>(), [n2.id]);
}

/// Failed notifications go back to pending, one or all.
pub async fn retry_failed_puts_back_to_pending(store: TestStore) {
    let u = user(&store, "retry@example.com").await;
    let p = product(&store, "retryable", 10).await;
    for _ in 0..3 {
        store.place_order(&order(&u, &p, 1)).await.unwrap();
    }
    let now = Utc::now() + chrono::Duration::seconds(1);
    let claimed = store
        .claim_due("w", now, Duration::from_secs(60), 10)
        .await
        .unwrap();
    for n in &claimed {
        store.mark_failed(n.id, "w", "boom", None).await.unwrap();
    }
    assert_eq!(store.notification_counts().await.unwrap().failed, 3);
    assert_eq!(
        store.retry_failed(Some(claimed[0].id), now).await.unwrap(),
        1
    );
    assert_eq!(
        store.retry_failed(Some(Uuid::now_v7()), now).await.unwrap(),
        0
    );
    assert_eq!(store.retry_failed(None, now).await.unwrap(), 2);
    let c = store.notification_counts().await.unwrap();
    assert_eq!((c.pending, c.failed), (3, 0));
    let again = store
        .claim_due("w", now, Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|n| n.attempts == 1), "attempts reset");
}

/// Two dispatchers draining 500 notifications at once deliver each exactly once.
pub async fn two_dispatchers_deliver_each_exactly_once(store: TestStore) {
    let u = user(&store, "bulk@example.com").await;
    let p = product(&store, "bulk", 500).await;
    let mut expected = HashSet::new();
    for chunk in 0..10 {
        let tasks = (0..50).map(|_| {
            let store = store.clone();
            let new = order(&u, &p, 1);
            tokio::spawn(async move { store.place_order(&new).await })
        });
        for r in futures::future::join_all(tasks).await {
            expected.insert(r.unwrap().unwrap().order.id);
        }
        assert_eq!(expected.len(), (chunk + 1) * 50);
    }
    let mailers = [
        Arc::new(RecordingMailer::new()),
        Arc::new(RecordingMailer::new()),
    ];
    let runs = mailers.iter().enumerate().map(|(i, mailer)| {
        let d = Dispatcher::new(
            store.clone(),
            mailer.clone(),
            DispatcherConfig {
                owner: format!("dispatcher-{i}"),
                batch_size: 25,
                ..DispatcherConfig::default()
            },
        );
        tokio::spawn(async move {
            loop {
                let report = d.run_once().await.expect("cycle");
                assert_eq!(report.sent, report.claimed);
                if report.claimed == 0 {
                    break;
                }
            }
        })
    });
    for r in futures::future::join_all(runs).await {
        r.unwrap();
    }
    let mut seen = HashSet::new();
    for mailer in &mailers {
        for email in mailer.deliveries() {
            assert!(
                seen.insert(email.message_id.clone()),
                "delivered twice: {}",
                email.message_id
            );
        }
    }
    assert_eq!(seen.len(), 500);
    assert_eq!(store.notification_counts().await.unwrap().sent, 500);
    let confirmed = store
        .list_orders(Page::new(0, 1000).unwrap())
        .await
        .unwrap();
    assert!(confirmed.iter().all(|o| o.status == OrderStatus::Confirmed));
    assert_eq!(
        confirmed.iter().map(|o| o.id).collect::<HashSet<_>>(),
        expected
    );
}

/// Orders are listed newest first, per user, in pages.
pub async fn orders_list_newest_first_with_pagination(store: TestStore) {
    let a = user(&store, "lista@example.com").await;
    let b = user(&store, "listb@example.com").await;
    let p = product(&store, "listed", 100).await;
    let mut mine = Vec::new();
    for i in 0..7 {
        mine.push(store.place_order(&order(&a, &p, 1)).await.unwrap().order.id);
        if i % 2 == 0 {
            store.place_order(&order(&b, &p, 1)).await.unwrap();
        }
    }
    mine.reverse();
    let listed: Vec<Uuid> = store
        .list_orders_for_user(a.id, Page::default())
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(listed, mine);
    let page: Vec<Uuid> = store
        .list_orders_for_user(a.id, Page::new(2, 3).unwrap())
        .await
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    assert_eq!(page, mine[2..5]);
    assert_eq!(store.list_orders(Page::default()).await.unwrap().len(), 11);
    assert!(
        store
            .list_orders_for_user(Uuid::now_v7(), Page::default())
            .await
            .unwrap()
            .is_empty()
    );
}

/// A placed order changes the value of the outbox signal.
pub async fn placing_an_order_raises_the_signal(store: TestStore) {
    let u = user(&store, "signal@example.com").await;
    let p = product(&store, "signalled", 3).await;
    let mut rx = store.subscribe();
    rx.borrow_and_update();
    store.place_order(&order(&u, &p, 1)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("place_order did not raise the outbox signal within 10 s")
        .expect(
            "the store dropped the sender of its outbox signal (subscribe() must return a \
             receiver of a sender the store keeps)",
        );
}

/// Callers that give up mid-call (a dropped future: a client that disconnected, a timeout)
/// never leave stock taken without its order and notification.
pub async fn place_order_is_atomic_when_callers_give_up(store: TestStore) {
    let u = user(&store, "impatient@example.com").await;
    let p = product(&store, "contended", 1_000_000).await;
    let tasks = (0..16u64).map(|t| {
        let (store, u, p) = (store.clone(), u.clone(), p.clone());
        tokio::spawn(async move {
            for i in 0..40u64 {
                // Deadlines from 0 to 3 ms: many calls are abandoned at some await point.
                let deadline = Duration::from_micros((t * 7919 + i * 104_729) % 3000);
                let _ = tokio::time::timeout(deadline, store.place_order(&order(&u, &p, 1))).await;
            }
        })
    });
    for t in futures::future::join_all(tasks).await {
        t.unwrap();
    }
    // Abandoned calls may still complete in the background: wait until the store is quiet.
    let mut last = None;
    loop {
        let taken = 1_000_000 - stock(&store, &p).await;
        let mut orders = 0u64;
        let mut offset = 0;
        loop {
            let page = store
                .list_orders(Page::new(offset, 1000).unwrap())
                .await
                .unwrap();
            orders += page.len() as u64;
            if page.len() < 1000 {
                break;
            }
            offset += 1000;
        }
        let notifications = store.notification_counts().await.unwrap().pending;
        if last == Some((taken, orders, notifications)) {
            assert_eq!(taken, orders, "stock taken == orders");
            assert_eq!(orders, notifications, "one notification per order");
            break;
        }
        last = Some((taken, orders, notifications));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The store still works afterwards.
    store
        .place_order(&order(&u, &p, 1))
        .await
        .expect("store usable after abandoned calls");
}

/// `ping` (behind `/ready`) answers on an empty store and on one with data.
pub async fn health_ping_answers(store: TestStore) {
    store
        .ping()
        .await
        .expect("ping of an empty store must succeed (is it reading a reserved id?)");
    product(&store, "product-1", 1).await;
    store.ping().await.expect("ping with data must succeed");
}

/// Restocking past [`STOCK_MAX`] is refused as invalid input and changes nothing.
pub async fn restock_refuses_stock_above_the_maximum(store: TestStore) {
    let p = product(&store, "product-1", 5).await;
    let result = store.restock(&p, STOCK_MAX, t0()).await;
    assert!(
        matches!(result, Err(crate::Error::InvalidInput { .. })),
        "restock above STOCK_MAX must be InvalidInput, the backend returned {result:?}"
    );
    assert_eq!(
        stock(&store, &p).await,
        5,
        "a refused restock changed the stock"
    );
    let ok = store
        .restock(&p, STOCK_MAX - 5, t0())
        .await
        .expect("up to STOCK_MAX is fine");
    assert_eq!(ok.quantity, STOCK_MAX);
}

/// An export writes every record the store holds and reports itself complete; importing it
/// into the same store skips every record as existing, and says so.
pub async fn export_writes_every_record(store: TestStore) {
    let a = user(&store, "a@example.com").await;
    let b = user(&store, "b@example.com").await;
    let p = product(&store, "product-1", 10).await;
    product(&store, "product-2", 0).await;
    let mut placed = Vec::new();
    for u in [&a, &b, &a] {
        placed.push(
            store
                .place_order(&order(u, &p, 1))
                .await
                .expect("order")
                .order,
        );
    }
    // Every notification status is exported, cancelled ones too.
    store
        .cancel_order(placed[2].id, t0())
        .await
        .expect("cancel");
    let mut out = Vec::new();
    let report = crate::transfer::export(store.as_ref(), &mut out)
        .await
        .expect("export");
    let held = store.count_records().await.expect("count_records");
    assert_eq!(
        (held.users, held.products, held.orders, held.notifications),
        (2, 2, 3, 3),
        "count_records does not count what the store holds"
    );
    assert_eq!(report.written, held, "export did not write every record");
    assert!(report.is_complete(), "{:?}", report.skipped);
    let lines = String::from_utf8(out).unwrap().lines().count();
    assert_eq!(lines, 10);

    let mut again = Vec::new();
    crate::transfer::export(store.as_ref(), &mut again)
        .await
        .unwrap();
    let report = crate::transfer::import(store.as_ref(), again.as_slice())
        .await
        .expect("import");
    assert_eq!(report.written, crate::transfer::Counts::default());
    assert_eq!(
        report.skipped.len(),
        10,
        "every existing record is reported as skipped"
    );
}

/// Cancelling an order cancels its pending confirmation in the same step: it is never claimed,
/// never retried, and a send already in flight cannot mark it sent or confirm the order.
pub async fn cancel_cancels_the_pending_confirmation(store: TestStore) {
    let u = user(&store, "c@example.com").await;
    let p = product(&store, "product-1", 5).await;
    let owner = "dispatcher-a";
    let lease = std::time::Duration::from_secs(60);

    // Not yet claimed.
    let queued = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    store.cancel_order(queued.id, t0()).await.unwrap();
    let n = store
        .notification_for_order(queued.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        n.status,
        NotificationStatus::Cancelled,
        "cancel_order left the pending confirmation {:?}",
        n.status
    );
    assert!(
        store
            .claim_due(owner, t0(), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "a cancelled order's confirmation was claimed for sending"
    );

    // Claimed, mid-send, when the order is cancelled.
    let in_flight = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let claimed = store.claim_due(owner, t0(), lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store.cancel_order(in_flight.id, t0()).await.unwrap();
    let result = store.mark_sent(claimed[0].id, owner, t0()).await;
    assert!(
        matches!(result, Err(crate::Error::LeaseLost(_))),
        "mark_sent after the order was cancelled must be LeaseLost, got {result:?}"
    );
    let o = store.get_order(in_flight.id).await.unwrap().unwrap();
    assert_eq!(
        o.status,
        OrderStatus::Cancelled,
        "a cancelled order was confirmed"
    );
    let n = store
        .notification_for_order(in_flight.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.status, NotificationStatus::Cancelled);

    // Never put back by a retry of failed ones.
    assert_eq!(store.retry_failed(None, t0()).await.unwrap(), 0);
    let counts = store.notification_counts().await.unwrap();
    assert_eq!(
        (counts.pending, counts.sent, counts.failed, counts.cancelled),
        (0, 0, 0, 2),
        "notification_counts must count cancelled confirmations"
    );
    assert_eq!(stock(&store, &p).await, 5, "both units returned");
}

/// A notification sent after a failed attempt keeps no `last_error`.
pub async fn sent_clears_the_last_error(store: TestStore) {
    let u = user(&store, "l@example.com").await;
    let p = product(&store, "product-1", 5).await;
    let placed = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let owner = "dispatcher-a";
    let lease = std::time::Duration::from_secs(60);
    let first = store.claim_due(owner, t0(), lease, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    store
        .mark_failed(first[0].id, owner, "451 try again later", Some(t0()))
        .await
        .unwrap();
    let second = store
        .claim_due(owner, t0() + chrono::Duration::seconds(1), lease, 10)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    store.mark_sent(second[0].id, owner, t0()).await.unwrap();
    let n = store
        .notification_for_order(placed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.status, NotificationStatus::Sent);
    assert_eq!(
        n.last_error, None,
        "a sent notification still shows the error of an earlier attempt"
    );
}

/// `extend_lease` keeps a claim from expiring for its owner only, and fails once the lease
/// is lost (here: the order was cancelled).
pub async fn extend_lease_keeps_a_claim(store: TestStore) {
    let u = user(&store, "hb@example.com").await;
    let p = product(&store, "product-1", 5).await;
    let placed = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let start = t0();
    let short = std::time::Duration::from_secs(1);
    let claimed = store.claim_due("a", start, short, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let id = claimed[0].id;
    store
        .extend_lease(id, "a", start + chrono::Duration::seconds(60))
        .await
        .expect("the owner extends its lease");
    let later = start + chrono::Duration::seconds(5);
    assert!(
        store
            .claim_due("b", later, short, 10)
            .await
            .unwrap()
            .is_empty(),
        "a claim whose lease was extended was taken by another dispatcher"
    );
    let wrong = store
        .extend_lease(id, "b", later + chrono::Duration::seconds(60))
        .await;
    assert!(
        matches!(wrong, Err(crate::Error::LeaseLost(_))),
        "extend_lease by a non-owner must be LeaseLost, got {wrong:?}"
    );
    store.cancel_order(placed.id, later).await.unwrap();
    let lost = store
        .extend_lease(id, "a", later + chrono::Duration::seconds(60))
        .await;
    assert!(
        matches!(lost, Err(crate::Error::LeaseLost(_))),
        "extend_lease of a cancelled notification must be LeaseLost, got {lost:?}"
    );
    let missing = store.extend_lease(Uuid::now_v7(), "a", later).await;
    assert!(
        matches!(missing, Err(crate::Error::NotFound(_))),
        "extend_lease of an unknown notification must be NotFound, got {missing:?}"
    );
}

/// Every written form of one address is one account: case, Unicode composition (NFC/NFD) and
/// a Unicode or punycode domain.
pub async fn one_account_per_address_across_forms(store: TestStore) {
    let forms = [
        "Jos\u{e9}@B\u{fc}cher.example",     // composed, Unicode domain
        "jose\u{301}@bu\u{308}cher.example", // decomposed
        "JOS\u{c9}@xn--bcher-kva.example",   // upper case, punycode domain
    ];
    let first = user(&store, forms[0]).await;
    for form in &forms[1..] {
        let email = Email::parse(form).expect("valid");
        assert_eq!(email, first.email, "{form:?} normalises differently");
        let again = User {
            id: Uuid::now_v7(),
            email: email.clone(),
            password_hash: "$argon2id$other".into(),
            role: Role::Customer,
            created_at: now(),
            token_version: 0,
            email_verified: false,
        };
        let result = store.create_user(&again).await;
        assert!(
            matches!(result, Err(crate::Error::AlreadyExists(_))),
            "a second account for {form:?} must be AlreadyExists, got {result:?}"
        );
        let found = store.find_user_by_email(&email).await.unwrap();
        assert_eq!(found.map(|u| u.id), Some(first.id), "{form:?} not found");
    }
}

/// `revoke_tokens` and `set_role` raise a user's `token_version`; it is stored and read back.
pub async fn revoking_tokens_raises_the_version(store: TestStore) {
    let u = user(&store, "ver@example.com").await;
    assert_eq!(u.token_version, 0);
    let after = store.revoke_tokens(&u.email).await.expect("revoke_tokens");
    assert_eq!(
        after.token_version, 1,
        "revoke_tokens must raise token_version"
    );
    let after = store.set_role(&u.email, Role::Admin).await.unwrap();
    assert_eq!(
        (after.token_version, after.role),
        (2, Role::Admin),
        "set_role must raise token_version"
    );
    let stored = store.get_user(u.id).await.unwrap().expect("user");
    assert_eq!(stored.token_version, 2, "token_version is not stored");
    let by_email = store.find_user_by_email(&u.email).await.unwrap().unwrap();
    assert_eq!(by_email.token_version, 2);
    let missing = store
        .revoke_tokens(&Email::parse("nobody@example.com").unwrap())
        .await;
    assert!(
        matches!(missing, Err(crate::Error::NotFound(_))),
        "revoke_tokens of an unknown email must be NotFound, got {missing:?}"
    );
}

/// `claim_due` returns at most `limit` notifications, the oldest due first, and never one
/// that is not due yet.
pub async fn claim_due_respects_its_limit_and_order(store: TestStore) {
    let u = user(&store, "limit@example.com").await;
    let p = product(&store, "product-1", 100).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let placed = store.place_order(&order(&u, &p, 1)).await.unwrap();
        ids.push(placed.order.id);
    }
    let lease = Duration::from_secs(60);
    let before = store
        .claim_due("early", Utc::now() - chrono::Duration::hours(1), lease, 10)
        .await
        .unwrap();
    assert!(
        before.is_empty(),
        "claim_due returned {} notifications not due yet",
        before.len()
    );
    let now = Utc::now() + chrono::Duration::seconds(1);
    let first = store.claim_due("a", now, lease, 2).await.unwrap();
    assert_eq!(
        first.len(),
        2,
        "claim_due with limit 2 returned {} notifications",
        first.len()
    );
    let rest = store.claim_due("b", now, lease, 10).await.unwrap();
    assert_eq!(rest.len(), 3, "the other three were not claimable");
    let claimed: Vec<Uuid> = first
        .iter()
        .chain(&rest)
        .filter_map(|n| n.order_id())
        .collect();
    assert_eq!(
        &claimed[..2],
        &ids[..2],
        "claim_due must hand out the oldest due notifications first"
    );
}

/// Orders placed at the same moment (which a store may group into one transaction) each get
/// their own outcome: successes, shortages, a missing product, replays and a reused key mixed
/// together never fail one another, and only the successes write anything.
pub async fn concurrent_orders_each_stand_alone(store: TestStore) {
    let u = user(&store, "mixed@example.com").await;
    let scarce = product(&store, "scarce", 4).await;
    let plenty = product(&store, "plenty", 100).await;
    let missing = ProductId::new("missing").unwrap();
    let earlier_key = IdempotencyKey::new("earlier").unwrap();
    let earlier = store
        .place_order(&order(&u, &scarce, 1).with_idempotency_key(earlier_key.clone()))
        .await
        .expect("the earlier order");
    let twin_key = IdempotencyKey::new("twin").unwrap();

    let mut calls: Vec<(&str, NewOrder)> = Vec::new();
    for _ in 0..5 {
        calls.push(("scarce", order(&u, &scarce, 1)));
    }
    calls.push(("too many", order(&u, &scarce, 10)));
    calls.push(("missing", order(&u, &missing, 1)));
    calls.push((
        "replay",
        order(&u, &scarce, 1).with_idempotency_key(earlier_key.clone()),
    ));
    calls.push((
        "reused",
        order(&u, &scarce, 3).with_idempotency_key(earlier_key),
    ));
    for _ in 0..2 {
        calls.push((
            "twin",
            order(&u, &plenty, 2).with_idempotency_key(twin_key.clone()),
        ));
    }
    let results =
        futures::future::join_all(calls.iter().map(|(_, new)| store.place_order(new))).await;

    let mut scarce_placed = 0;
    let mut twins = Vec::new();
    for ((what, _), result) in calls.iter().zip(results) {
        match (*what, result) {
            ("scarce", Ok(p)) if !p.replayed => scarce_placed += 1,
            ("scarce", Err(Error::OutOfStock { .. })) => {}
            ("too many", Err(Error::OutOfStock { .. })) => {}
            ("missing", Err(Error::NotFound(_))) => {}
            ("replay", Ok(p)) => assert!(
                p.replayed && p.order.id == earlier.order.id,
                "a replay must return the earlier order, got {p:?}"
            ),
            ("reused", Err(Error::IdempotencyKeyReused)) => {}
            ("twin", Ok(p)) => twins.push(p),
            (what, other) => panic!("the {what:?} order got an outcome it must not: {other:?}"),
        }
    }
    assert_eq!(
        scarce_placed, 3,
        "3 units were left for 5 one-unit buyers: exactly 3 must be placed"
    );
    assert_eq!(
        stock(&store, &scarce).await,
        0,
        "the scarce product sold out"
    );
    assert_eq!(
        twins.iter().filter(|p| !p.replayed).count(),
        1,
        "two calls with one key place one order: {twins:?}"
    );
    assert_eq!(
        twins[0].order.id, twins[1].order.id,
        "both calls with one key answer the same order"
    );
    assert_eq!(
        stock(&store, &plenty).await,
        98,
        "the twin key took its units once"
    );
    let orders = store.list_orders(Page::new(0, 100).unwrap()).await.unwrap();
    assert_eq!(
        orders.len(),
        5,
        "the earlier order, 3 scarce ones and one twin"
    );
    assert_eq!(
        store.notification_counts().await.unwrap().pending,
        5,
        "one confirmation per order written"
    );
}

/// Every list pages by cursor: pages of 2 read after the last item of the page before give each
/// item once, in the list's order, and an item added before the cursor between two pages does
/// not shift the next one (as an offset would).
pub async fn lists_continue_after_a_cursor(store: TestStore) {
    async fn walk<T: Listed, F, Fut>(fetch: F) -> Vec<String>
    where
        F: Fn(Page) -> Fut,
        Fut: std::future::Future<Output = crate::error::Result<Vec<T>>>,
    {
        let mut seen = Vec::new();
        let mut page = Page::first(2).unwrap();
        loop {
            let items = fetch(page.clone()).await.expect("list a page");
            assert!(items.len() <= 2, "a page of 2 returned {}", items.len());
            let done = items.len() < 2;
            seen.extend(items.iter().map(Listed::cursor));
            match items.last() {
                Some(last) if !done => page = Page::first(2).unwrap().after(last.cursor()),
                _ => return seen,
            }
        }
    }
    let a = user(&store, "cursor-a@example.com").await;
    let b = user(&store, "cursor-b@example.com").await;
    let mut products = Vec::new();
    for id in ["c-1", "c-2", "c-3", "c-4", "c-5"] {
        products.push(product(&store, id, 100).await.to_string());
    }
    let mut a_orders = Vec::new();
    let mut all_orders = Vec::new();
    for id in &products {
        let p = ProductId::new(id).unwrap();
        let placed = store.place_order(&order(&a, &p, 1)).await.unwrap();
        a_orders.push(placed.order.id.to_string());
        all_orders.push(placed.order.id.to_string());
        let placed = store.place_order(&order(&b, &p, 1)).await.unwrap();
        all_orders.push(placed.order.id.to_string());
    }
    a_orders.reverse();
    all_orders.reverse();

    assert_eq!(
        walk(|p| store.list_products(p)).await,
        products,
        "products by id, each once"
    );
    assert_eq!(
        walk(|p| store.list_orders_for_user(a.id, p)).await,
        a_orders,
        "a user's orders newest first, each once"
    );
    assert_eq!(
        walk(|p| store.list_orders(p)).await,
        all_orders,
        "every order newest first, each once"
    );
    let mut emails = vec![a.email.to_string(), b.email.to_string()];
    emails.sort();
    assert_eq!(
        walk(|p| store.list_users(p)).await,
        emails,
        "users by address, each once"
    );
    let mut pending: Vec<String> = store
        .list_notifications(NotificationStatus::Pending, Page::first(100).unwrap())
        .await
        .unwrap()
        .iter()
        .map(Listed::cursor)
        .collect();
    pending.sort();
    assert_eq!(
        walk(|p| store.list_notifications(NotificationStatus::Pending, p)).await,
        pending,
        "pending notifications by id, each once"
    );

    // A product added before the cursor between two pages does not shift the next page.
    let first = store.list_products(Page::first(2).unwrap()).await.unwrap();
    product(&store, "c-0", 1).await;
    let next = store
        .list_products(Page::first(2).unwrap().after(first[1].cursor()))
        .await
        .unwrap();
    let next: Vec<String> = next.iter().map(Listed::cursor).collect();
    assert_eq!(
        next,
        ["c-3", "c-4"],
        "the page after c-2 is c-3, c-4 whatever was added before"
    );
}

/// A store that takes a dispatcher's [`Handoff`](crate::handoff::Handoff) writes each new
/// confirmation leased to it in the order's own step and hands it over: no claim takes it
/// meanwhile, its send is recorded (and confirms the order), and a cancel still stops it. With
/// no free send slot, or once the dispatcher is gone, confirmations are written due, for claims.
///
/// Not part of [`store_conformance!`](crate::store_conformance): call it for a store whose
/// [`NotificationStore::accept_handoff`] takes the offer.
pub async fn handoff_leases_confirmations_to_the_local_dispatcher(store: TestStore) {
    use crate::handoff::Handoff;
    let u = user(&store, "handed@example.com").await;
    let p = product(&store, "handed", 10).await;
    let lease = Duration::from_secs(60);
    let slots = Arc::new(tokio::sync::Semaphore::new(1));
    let (handoff, mut handed) = Handoff::new("local", lease, slots.clone());
    assert!(
        store.accept_handoff(handoff),
        "the store refused the handoff"
    );

    // Handed over leased, exactly as placed; nobody else can claim it.
    let new = order(&u, &p, 1);
    let placed = store.place_order(&new).await.unwrap().order;
    let first = handed.try_recv().expect("the confirmation was handed over");
    let n = first.notification.clone();
    assert_eq!((n.id, n.order_id()), (new.notification_id, Some(placed.id)));
    assert_eq!(n.lease_owner.as_deref(), Some("local"));
    assert_eq!(n.lease_until, Some(new.now + chrono::Duration::seconds(60)));
    assert_eq!((n.attempts, n.status), (1, NotificationStatus::Pending));
    let stored = store
        .notification_for_order(placed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.lease_owner.as_deref(), stored.attempts),
        (Some("local"), 1)
    );
    assert!(
        store
            .claim_due("other", t0(), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "a confirmation leased at placement was claimed by another dispatcher"
    );
    // Busy: the only slot is held by the first send; the next order is left to claims.
    let busy = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    assert!(
        handed.try_recv().is_err(),
        "handed over without a free slot"
    );
    let claimed = store.claim_due("other", t0(), lease, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|n| n.order_id()).collect::<Vec<_>>(),
        [Some(busy.id)]
    );
    store.mark_sent(claimed[0].id, "other", t0()).await.unwrap();

    store.mark_sent(n.id, "local", t0()).await.unwrap();
    drop(first);
    let sent = store
        .notification_for_order(placed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent.status, NotificationStatus::Sent);
    assert_eq!(sent.lease_owner, None);
    let o = store.get_order(placed.id).await.unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Confirmed);

    // Cancelled after the handover: the send cannot be recorded, the order stays cancelled.
    let cancelled = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let second = handed
        .try_recv()
        .expect("handed over once the slot was free");
    store.cancel_order(cancelled.id, t0()).await.unwrap();
    let result = store.mark_sent(second.notification.id, "local", t0()).await;
    assert!(
        matches!(result, Err(Error::LeaseLost(_))),
        "mark_sent after a cancel must be LeaseLost, got {result:?}"
    );
    let o = store.get_order(cancelled.id).await.unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Cancelled);
    drop(second);

    // A failed send of a handed confirmation is retried like any other.
    let retried = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let third = handed.try_recv().expect("handed over");
    let again = t0();
    store
        .mark_failed(third.notification.id, "local", "451 try later", Some(again))
        .await
        .unwrap();
    drop(third);
    let claimed = store.claim_due("other", again, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].order_id(), claimed[0].attempts),
        (Some(retried.id), 2)
    );
    store
        .mark_sent(claimed[0].id, "other", again)
        .await
        .unwrap();

    // The dispatcher is gone: the next confirmation is due at once, for any claimer.
    drop(handed);
    let orphan = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let claimed = store.claim_due("other", t0(), lease, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|n| n.order_id()).collect::<Vec<_>>(),
        [Some(orphan.id)]
    );
    assert_eq!(slots.available_permits(), 1, "every slot was given back");
}
