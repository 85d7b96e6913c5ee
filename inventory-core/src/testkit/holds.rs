//! Conformance cases of holds (reservations). Run by
//! [`reservation_conformance!`](crate::reservation_conformance) on the stores that hold stock.

use std::time::Duration;

use super::*;
use crate::error::Error;

/// A hold of `lines` for `user`, running out after `ttl`.
pub fn hold(user: &User, lines: &[(&ProductId, u64)], ttl: Duration) -> NewReservation {
    let order = basket(user, lines);
    NewReservation::new(user.id, user.email.clone(), order.lines, ttl)
}

async fn quantities(store: &TestStore, id: &ProductId) -> (u64, u64) {
    let p = store.get_product(id).await.unwrap().expect("product");
    (p.quantity, p.reserved)
}

/// A hold moves units from available to reserved, all or nothing; releasing it moves them
/// back once; a released hold cannot be released or checked out again.
pub async fn a_hold_reserves_all_or_nothing_and_releases_once(store: TestStore) {
    let u = user(&store, "holder@example.com").await;
    let a = product(&store, "hold-a", 5).await;
    let b = product(&store, "hold-b", 1).await;
    let err = store
        .reserve(&hold(&u, &[(&a, 2), (&b, 2)], Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::OutOfStock { .. }), "got {err:?}");
    assert_eq!(quantities(&store, &a).await, (5, 0), "nothing held");
    let held = store
        .reserve(&hold(
            &u,
            &[(&a, 2), (&b, 1), (&a, 1)],
            Duration::from_secs(60),
        ))
        .await
        .expect("held");
    assert_eq!(held.status, ReservationStatus::Active);
    assert_eq!(quantities(&store, &a).await, (2, 3));
    assert_eq!(quantities(&store, &b).await, (0, 1));
    assert_eq!(
        store.get_reservation(held.id).await.unwrap().as_ref(),
        Some(&held)
    );
    let released = store.release_reservation(held.id, now()).await.unwrap();
    assert_eq!(released.status, ReservationStatus::Released);
    assert_eq!(quantities(&store, &a).await, (5, 0));
    assert_eq!(quantities(&store, &b).await, (1, 0));
    let again = store.release_reservation(held.id, now()).await.unwrap_err();
    assert!(
        matches!(again, Error::ReservationClosed { .. }),
        "got {again:?}"
    );
    let checkout = store
        .checkout_reservation(held.id, &released.order(now()))
        .await
        .unwrap_err();
    assert!(
        matches!(checkout, Error::ReservationClosed { .. }),
        "got {checkout:?}"
    );
    assert_eq!(quantities(&store, &a).await, (5, 0));
    let missing = store
        .release_reservation(Uuid::now_v7(), now())
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::NotFound(_)), "got {missing:?}");
}

/// Checking out an active hold turns its reserved units into the order's (available stock
/// does not move) and writes the order with its confirmation; a second checkout answers the
/// same order.
pub async fn checkout_turns_a_hold_into_an_order(store: TestStore) {
    let u = user(&store, "checkout@example.com").await;
    let a = product(&store, "co-a", 5).await;
    let b = product(&store, "co-b", 5).await;
    let held = store
        .reserve(&hold(&u, &[(&a, 2), (&b, 1)], Duration::from_secs(60)))
        .await
        .unwrap();
    let new = held.order(now());
    let placed = store.checkout_reservation(held.id, &new).await.unwrap();
    assert!(!placed.replayed);
    assert_eq!(placed.order.lines, held.lines);
    assert_eq!(placed.order.status, OrderStatus::Pending);
    assert_eq!(quantities(&store, &a).await, (3, 0));
    assert_eq!(quantities(&store, &b).await, (4, 0));
    let read = store.get_reservation(held.id).await.unwrap().unwrap();
    assert_eq!(
        (read.status, read.order_id),
        (ReservationStatus::CheckedOut, Some(new.id))
    );
    let n = store
        .notification_for_order(new.id)
        .await
        .unwrap()
        .expect("its confirmation");
    assert_eq!(n.status, NotificationStatus::Pending);
    let again = store
        .checkout_reservation(held.id, &held.order(now()))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.order.id, new.id);
    assert_eq!(quantities(&store, &a).await, (3, 0));
    // Cancelled like any order: its units go back to available.
    store
        .cancel_order(new.id, SYSTEM_ACTOR, now())
        .await
        .unwrap();
    assert_eq!(quantities(&store, &a).await, (5, 0));
}

/// A hold that ran out is released by the sweep exactly once, even with two sweeps at once;
/// checked out afterwards, it takes its units again if they are there, and is
/// `ReservationExpired` when they are not.
pub async fn expired_holds_are_released_once(store: TestStore) {
    let u = user(&store, "expire@example.com").await;
    let p = product(&store, "exp", 4).await;
    let t = now();
    let mut holds = Vec::new();
    for _ in 0..2 {
        let mut h = hold(&u, &[(&p, 2)], Duration::from_secs(1));
        h.expires_at = t;
        holds.push(store.reserve(&h).await.unwrap());
    }
    assert_eq!(quantities(&store, &p).await, (0, 4));
    assert_eq!(
        store
            .expire_reservations(t - chrono::Duration::seconds(1), 10)
            .await
            .unwrap(),
        0,
        "not due yet"
    );
    let later = t + chrono::Duration::seconds(1);
    let (x, y) = tokio::join!(
        store.expire_reservations(later, 10),
        store.expire_reservations(later, 10)
    );
    assert_eq!(x.unwrap() + y.unwrap(), 2, "each hold expired once");
    assert_eq!(quantities(&store, &p).await, (4, 0));
    assert_eq!(store.expire_reservations(later, 10).await.unwrap(), 0);
    // The first expired hold is checked out: its units are still there, taken again.
    let first = store
        .checkout_reservation(holds[0].id, &holds[0].order(now()))
        .await
        .expect("stock still there");
    assert!(!first.replayed);
    assert_eq!(quantities(&store, &p).await, (2, 0));
    // Someone buys the rest; the second expired hold finds nothing to take.
    store.place_order(&order(&u, &p, 2)).await.unwrap();
    let err = store
        .checkout_reservation(holds[1].id, &holds[1].order(now()))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::ReservationExpired(_)), "got {err:?}");
    assert_eq!(quantities(&store, &p).await, (0, 0));
    let read = store.get_reservation(holds[1].id).await.unwrap().unwrap();
    assert_eq!(read.status, ReservationStatus::Expired, "nothing changed");
}

/// A hold running out while its checkout runs ends as an order or as expired, never both:
/// units are counted once either way.
pub async fn a_hold_expiring_during_checkout_ends_once(store: TestStore) {
    let u = user(&store, "race@example.com").await;
    let p = product(&store, "race", 40).await;
    let t = now();
    let mut holds = Vec::new();
    for _ in 0..20 {
        let mut h = hold(&u, &[(&p, 1)], Duration::from_secs(1));
        h.expires_at = t;
        holds.push(store.reserve(&h).await.unwrap());
    }
    let later = t + chrono::Duration::seconds(1);
    let sweeper = {
        let store = store.clone();
        tokio::spawn(async move {
            let mut n = 0;
            for _ in 0..20 {
                n += store.expire_reservations(later, 1).await.unwrap();
            }
            n
        })
    };
    let checkouts = holds.iter().map(|h| {
        let store = store.clone();
        let (id, order) = (h.id, h.order(now()));
        tokio::spawn(async move { store.checkout_reservation(id, &order).await })
    });
    let results = futures::future::join_all(checkouts).await;
    let _ = sweeper.await.unwrap();
    let sold = results.iter().filter(|r| matches!(r, Ok(Ok(_)))).count() as u64;
    for r in results {
        match r.unwrap() {
            Ok(_) | Err(Error::ReservationExpired(_)) => {}
            Err(e) => panic!("a checkout failed otherwise: {e:?}"),
        }
    }
    // Whatever the interleaving: every hold is closed, and the units add up.
    store.expire_reservations(later, 100).await.unwrap();
    let (available, reserved) = quantities(&store, &p).await;
    assert_eq!(reserved, 0, "no hold left active");
    assert_eq!(available + sold, 40, "{available} available, {sold} sold");
    for h in &holds {
        let read = store.get_reservation(h.id).await.unwrap().unwrap();
        assert!(
            matches!(
                read.status,
                ReservationStatus::CheckedOut | ReservationStatus::Expired
            ),
            "{:?}",
            read.status
        );
    }
}

/// 100 buyers at once over five products, each with a basket of up to three lines: some
/// order it, some hold it and then check out, release or leave the hold to expire, and some
/// cancel their order. At the end, for every product, initial stock == available + reserved +
/// sold (the lines of orders that stand), and reserved is what the active holds keep.
pub async fn baskets_and_holds_together_account_for_every_unit(store: TestStore) {
    const INITIAL: u64 = 20;
    let mut products = Vec::new();
    for i in 0..5 {
        products.push(product(&store, &format!("mix-{i}"), INITIAL).await);
    }
    let mut buyers = Vec::new();
    for i in 0..100 {
        buyers.push(user(&store, &format!("mix{i}@example.com")).await);
    }
    let tasks = buyers.into_iter().enumerate().map(|(i, u)| {
        let store = store.clone();
        let mut x = (i as u64)
            .wrapping_mul(2862933555777941757)
            .wrapping_add(3037000493);
        let mut next = move |n: u64| {
            x = x.wrapping_mul(2862933555777941757).wrapping_add(3037000493);
            (x >> 33) % n
        };
        let lines: Vec<(ProductId, u64)> = (0..1 + next(3))
            .map(|_| (products[next(5) as usize].clone(), 1 + next(2)))
            .collect();
        let what = next(5);
        tokio::spawn(async move {
            let refs: Vec<(&ProductId, u64)> = lines.iter().map(|(p, q)| (p, *q)).collect();
            let result = match what {
                0 => store.place_order(&basket(&u, &refs)).await.map(|_| ()),
                1 => match store.place_order(&basket(&u, &refs)).await {
                    Ok(p) => store
                        .cancel_order(p.order.id, SYSTEM_ACTOR, now())
                        .await
                        .map(|_| ()),
                    Err(e) => Err(e),
                },
                _ => match store
                    .reserve(&hold(&u, &refs, Duration::from_secs(600)))
                    .await
                {
                    Ok(h) if what == 2 => store
                        .checkout_reservation(h.id, &h.order(now()))
                        .await
                        .map(|_| ()),
                    Ok(h) if what == 3 => store.release_reservation(h.id, now()).await.map(|_| ()),
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                },
            };
            match result {
                Ok(()) | Err(Error::OutOfStock { .. }) => {}
                Err(e) => panic!("buyer {i}: {e:?}"),
            }
        })
    });
    for t in futures::future::join_all(tasks).await {
        t.expect("task");
    }
    let check = |label: &'static str| {
        let store = store.clone();
        let products = products.clone();
        async move {
            let orders = store
                .list_orders(Page::new(0, 1000).unwrap())
                .await
                .unwrap();
            for p in &products {
                let sold: u64 = orders
                    .iter()
                    .filter(|o| o.status != OrderStatus::Cancelled)
                    .filter_map(|o| o.lines.demand().get(p).copied())
                    .sum();
                let (available, reserved) = quantities(&store, p).await;
                assert_eq!(
                    available + reserved + sold,
                    INITIAL,
                    "{label}, {p}: {available} available, {reserved} reserved, {sold} sold"
                );
            }
        }
    };
    check("with holds left").await;
    // The holds left run out: every unit is available or sold.
    store
        .expire_reservations(now() + chrono::Duration::hours(1), 1000)
        .await
        .unwrap();
    check("after expiry").await;
    for p in &products {
        assert_eq!(quantities(&store, p).await.1, 0, "{p}: nothing reserved");
    }
}

/// Holds go through an export and an import as they are, and with them the products' reserved
/// units: an active hold moved either way still releases exactly its units where it lands.
pub async fn holds_survive_export_and_import(store: TestStore) {
    let u = user(&store, "moved-holder@example.com").await;
    let a = product(&store, "moved-hold-a", 6).await;
    let b = product(&store, "moved-hold-b", 6).await;
    let active = store
        .reserve(&hold(
            &u,
            &[(&a, 2), (&b, 1), (&a, 1)],
            Duration::from_secs(600),
        ))
        .await
        .unwrap();
    let released = store
        .reserve(&hold(&u, &[(&b, 2)], Duration::from_secs(600)))
        .await
        .unwrap();
    let released = store.release_reservation(released.id, now()).await.unwrap();
    assert_eq!(quantities(&store, &a).await, (3, 3));

    // Out of this store, into memory.
    let mut out = Vec::new();
    let report = crate::transfer::export(store.as_ref(), &mut out)
        .await
        .expect("export");
    assert!(report.is_complete(), "{:?}", report.skipped);
    assert_eq!(report.written.reservations, 2);
    let memory: TestStore = Arc::new(crate::MemoryStore::new());
    let report = crate::transfer::import(memory.as_ref(), out.as_slice())
        .await
        .expect("import into memory");
    assert!(report.is_complete(), "{:?}", report.skipped);
    assert_eq!(report.written.reservations, 2);
    for held in [&active, &released] {
        assert_eq!(
            memory.get_reservation(held.id).await.unwrap().as_ref(),
            Some(held)
        );
    }
    assert_eq!(quantities(&memory, &a).await, (3, 3));
    assert_eq!(quantities(&memory, &b).await, (5, 1));
    memory.release_reservation(active.id, now()).await.unwrap();
    assert_eq!(quantities(&memory, &a).await, (6, 0));
    assert_eq!(quantities(&memory, &b).await, (6, 0));

    // Into this store: an active hold of another store, then released here.
    let other: TestStore = Arc::new(crate::MemoryStore::new());
    let v = user(&other, "imported-holder@example.com").await;
    let c = product(&other, "imported-hold-c", 4).await;
    let theirs = other
        .reserve(&hold(&v, &[(&c, 3)], Duration::from_secs(600)))
        .await
        .unwrap();
    let mut out = Vec::new();
    crate::transfer::export(other.as_ref(), &mut out)
        .await
        .unwrap();
    let report = crate::transfer::import(store.as_ref(), out.as_slice())
        .await
        .expect("import here");
    assert!(report.is_complete(), "{:?}", report.skipped);
    assert_eq!(
        store.get_reservation(theirs.id).await.unwrap().as_ref(),
        Some(&theirs)
    );
    assert_eq!(quantities(&store, &c).await, (1, 3));
    store.release_reservation(theirs.id, now()).await.unwrap();
    assert_eq!(quantities(&store, &c).await, (4, 0));
}
