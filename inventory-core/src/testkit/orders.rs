//! Orders: placing (stock, atomicity, idempotency, concurrency), listing, cancelling.

use std::collections::HashSet;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::domain::*;
use crate::error::Error;

use super::*;

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
    assert_eq!((o.id, o.user_id), (new.id, u.id));
    assert_eq!(o.lines, new.lines);
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
    let Message::OrderConfirmation { order_id, lines } = &n.message else {
        panic!(
            "place_order enqueued {:?}, not an order confirmation",
            n.message
        );
    };
    assert_eq!(*order_id, o.id);
    let [line] = lines.as_slice() else {
        panic!("one line confirmed: {lines:?}");
    };
    assert_eq!(line.product_id, p);
    assert_eq!(line.product_name, "Product product-1");
    assert_eq!((line.quantity.get(), n.attempts), (2, 0));
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
        tokio::spawn(async move { store.cancel_order(id, SYSTEM_ACTOR, Utc::now()).await })
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
    let missing = store
        .cancel_order(Uuid::now_v7(), SYSTEM_ACTOR, Utc::now())
        .await;
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
