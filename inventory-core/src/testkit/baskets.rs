//! Conformance cases of orders with several lines (baskets).

use std::collections::BTreeMap;

use super::*;
use crate::error::{Error, Shortage};

/// Every product's stock, by id.
async fn stocks(store: &TestStore, ids: &[ProductId]) -> Vec<u64> {
    let mut out = Vec::new();
    for id in ids {
        out.push(stock(store, id).await);
    }
    out
}

/// A basket is all or nothing: one short line refuses the whole order, naming every short
/// product with what was asked and what is there, and takes nothing; a basket that fits takes
/// every line and writes one confirmation listing every line with its product's name.
pub async fn a_basket_takes_every_line_or_nothing(store: TestStore) {
    let u = user(&store, "basket@example.com").await;
    let a = product(&store, "basket-a", 5).await;
    let b = product(&store, "basket-b", 1).await;
    let c = product(&store, "basket-c", 0).await;

    let err = store
        .place_order(&basket(&u, &[(&a, 2), (&c, 3), (&b, 2)]))
        .await
        .unwrap_err();
    let Error::OutOfStock { short } = &err else {
        panic!("a short basket is out of stock, got {err:?}");
    };
    assert_eq!(
        short,
        &vec![
            Shortage {
                product_id: "basket-b".into(),
                requested: 2,
                available: 1,
            },
            Shortage {
                product_id: "basket-c".into(),
                requested: 3,
                available: 0,
            },
        ],
        "every short product, by id"
    );
    assert_eq!(stocks(&store, &[a.clone(), b.clone()]).await, vec![5, 1]);
    let missing = ProductId::new("basket-missing").unwrap();
    let err = store
        .place_order(&basket(&u, &[(&a, 1), (&missing, 1)]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "got {err:?}");
    assert_eq!(stocks(&store, &[a.clone(), b.clone()]).await, vec![5, 1]);
    assert_eq!(store.notification_counts().await.unwrap().pending, 0);
    assert!(
        store
            .list_orders(Page::new(0, 10).unwrap())
            .await
            .unwrap()
            .is_empty(),
        "a refused basket writes no order"
    );

    let new = basket(&u, &[(&b, 1), (&a, 2)]);
    let placed = store.place_order(&new).await.expect("the basket fits");
    assert_eq!(
        placed.order.lines, new.lines,
        "lines kept in the buyer's order"
    );
    assert_eq!(stocks(&store, &[a.clone(), b.clone()]).await, vec![3, 0]);
    let read = store.get_order(new.id).await.unwrap().expect("stored");
    assert_eq!(read, placed.order);
    let n = store
        .notification_for_order(new.id)
        .await
        .unwrap()
        .expect("one confirmation");
    let Message::OrderConfirmation { lines, .. } = &n.message else {
        panic!("{:?}", n.message);
    };
    let seen: Vec<(&str, &str, u64)> = lines
        .iter()
        .map(|l| {
            (
                l.product_id.as_str(),
                l.product_name.as_str(),
                l.quantity.get(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("basket-b", "Product basket-b", 1),
            ("basket-a", "Product basket-a", 2)
        ]
    );
    assert_eq!(store.notification_counts().await.unwrap().pending, 1);

    // Replayed with its key: the same lines are the same order; other lines are not.
    let key = IdempotencyKey::new("basket-key").unwrap();
    let first = store
        .place_order(&basket(&u, &[(&a, 1), (&a, 1)]).with_idempotency_key(key.clone()))
        .await
        .unwrap();
    let again = store
        .place_order(&basket(&u, &[(&a, 1), (&a, 1)]).with_idempotency_key(key.clone()))
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.order.id, first.order.id);
    let other = store
        .place_order(&basket(&u, &[(&a, 1), (&b, 1)]).with_idempotency_key(key))
        .await
        .unwrap_err();
    assert!(
        matches!(other, Error::IdempotencyKeyReused),
        "got {other:?}"
    );
    assert_eq!(stock(&store, &a).await, 1);
}

/// The same product on two lines is one demand: the lines' sum must be there.
pub async fn a_basket_naming_a_product_twice_is_one_demand(store: TestStore) {
    let u = user(&store, "twice@example.com").await;
    let p = product(&store, "twice", 3).await;
    let err = store
        .place_order(&basket(&u, &[(&p, 2), (&p, 2)]))
        .await
        .unwrap_err();
    let Error::OutOfStock { short } = &err else {
        panic!("2 + 2 of 3 is out of stock, got {err:?}");
    };
    assert_eq!((short[0].requested, short[0].available), (4, 3));
    assert_eq!(stock(&store, &p).await, 3);
    store
        .place_order(&basket(&u, &[(&p, 1), (&p, 2)]))
        .await
        .expect("1 + 2 of 3 fits");
    assert_eq!(stock(&store, &p).await, 0);
}

/// Cancelling a basket returns every line's units, the lines of one product summed, once.
pub async fn cancel_returns_every_line_once(store: TestStore) {
    let u = user(&store, "cancel-basket@example.com").await;
    let a = product(&store, "cb-a", 10).await;
    let b = product(&store, "cb-b", 10).await;
    let placed = store
        .place_order(&basket(&u, &[(&a, 2), (&b, 3), (&a, 1)]))
        .await
        .unwrap();
    assert_eq!(stocks(&store, &[a.clone(), b.clone()]).await, vec![7, 7]);
    let cancelled = store
        .cancel_order(placed.order.id, SYSTEM_ACTOR, now())
        .await
        .unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(cancelled.lines, placed.order.lines);
    assert_eq!(stocks(&store, &[a.clone(), b.clone()]).await, vec![10, 10]);
    let again = store
        .cancel_order(placed.order.id, SYSTEM_ACTOR, now())
        .await
        .unwrap_err();
    assert!(matches!(again, Error::AlreadyCancelled(_)), "got {again:?}");
    assert_eq!(stocks(&store, &[a, b]).await, vec![10, 10]);
}

/// 200 buyers at once, each with a basket of up to four lines over five products (half of them
/// naming the products in ascending order, half descending, so that backends locking rows in
/// the order given would deadlock), and some cancelling: no product ever sells more than its
/// stock, and at the end each product's stock is its initial stock less what the orders that
/// stand took.
pub async fn concurrent_baskets_never_oversell(store: TestStore) {
    const INITIAL: u64 = 30;
    let mut products = Vec::new();
    for i in 0..5 {
        products.push(product(&store, &format!("bk-{i}"), INITIAL).await);
    }
    let mut buyers = Vec::new();
    for i in 0..200 {
        buyers.push(user(&store, &format!("bk{i}@example.com")).await);
    }
    let tasks = buyers.into_iter().enumerate().map(|(i, u)| {
        let store = store.clone();
        // A fixed pseudo-random basket per buyer (the same in every run).
        let mut x = (i as u64)
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut next = move |n: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % n
        };
        let size = 1 + next(4) as usize;
        let mut lines: Vec<(ProductId, u64)> = (0..size)
            .map(|_| (products[next(5) as usize].clone(), 1 + next(3)))
            .collect();
        lines.sort_by(|l, r| l.0.cmp(&r.0));
        if i % 2 == 1 {
            lines.reverse();
        }
        let cancel = i % 7 == 0;
        tokio::spawn(async move {
            let refs: Vec<(&ProductId, u64)> = lines.iter().map(|(p, q)| (p, *q)).collect();
            let placed = store.place_order(&basket(&u, &refs)).await;
            match placed {
                Ok(p) if cancel => store
                    .cancel_order(p.order.id, SYSTEM_ACTOR, now())
                    .await
                    .map(|_| ()),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        })
    });
    let mut placed = 0;
    for r in futures::future::join_all(tasks).await {
        match r.expect("task") {
            Ok(()) => placed += 1,
            Err(Error::OutOfStock { .. }) => {}
            Err(e) => panic!("a basket failed otherwise than out of stock: {e:?}"),
        }
    }
    assert!(placed > 0, "some baskets fit");
    let orders = store
        .list_orders(Page::new(0, 1000).unwrap())
        .await
        .unwrap();
    let mut sold: BTreeMap<ProductId, u64> = BTreeMap::new();
    for o in orders.iter().filter(|o| o.status != OrderStatus::Cancelled) {
        for (id, units) in o.lines.demand() {
            *sold.entry(id).or_default() += units;
        }
    }
    for p in &products {
        let left = stock(&store, p).await;
        let sold = sold.get(p).copied().unwrap_or(0);
        assert_eq!(left + sold, INITIAL, "{p}: {left} left, {sold} sold");
    }
    let counts = store.notification_counts().await.unwrap();
    assert_eq!(
        counts.pending + counts.cancelled,
        orders.len() as u64,
        "one confirmation per order"
    );
}
