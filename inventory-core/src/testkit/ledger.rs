//! Conformance cases of the stock ledger and of compare-and-set stock.

use std::time::Duration;

use super::*;
use crate::error::Error;

/// Every entry of a product, oldest first, read page by page (newest first, by cursor).
async fn entries(store: &TestStore, id: &ProductId) -> Vec<LedgerEntry> {
    let mut all = crate::transfer::collect_all(|page| store.list_ledger(id, page))
        .await
        .expect("list_ledger");
    all.reverse();
    all
}

/// Two sets expecting the same quantity at once: exactly one wins, the other is
/// `StockChanged` naming what it found; a set expecting the quantity before an order is
/// refused (it never overwrites the sale); an unknown product is `NotFound`.
pub async fn compare_and_set_stock_refuses_a_stale_expectation(store: TestStore) {
    let u = user(&store, "cas@example.com").await;
    let p = product(&store, "cas", 10).await;
    let set = |quantity, expected| {
        StockSet::new(p.clone(), quantity, expected, Some("PO-1".into()), "admin").unwrap()
    };
    let (a, b) = (set(5, 10), set(7, 10));
    let (x, y) = tokio::join!(store.set_stock(&a), store.set_stock(&b));
    let (won, lost) = match (x, y) {
        (Ok(won), Err(lost)) | (Err(lost), Ok(won)) => (won, lost),
        other => panic!("exactly one set must win: {other:?}"),
    };
    assert!(won.quantity == 5 || won.quantity == 7, "{won:?}");
    let Error::StockChanged {
        current, expected, ..
    } = lost
    else {
        panic!("stock_changed expected, got {lost:?}");
    };
    assert_eq!((current, expected), (won.quantity, 10));
    assert_eq!(stock(&store, &p).await, won.quantity);

    // An order between the read and the set: the set is refused, the sale stays.
    let seen = won.quantity;
    store.place_order(&order(&u, &p, 2)).await.expect("order");
    let err = store.set_stock(&set(100, seen)).await.unwrap_err();
    assert!(
        matches!(err, Error::StockChanged { current, .. } if current == seen - 2),
        "got {err:?}"
    );
    assert_eq!(stock(&store, &p).await, seen - 2);
    let done = store.set_stock(&set(100, seen - 2)).await.expect("set");
    assert_eq!(done.quantity, 100);

    let missing = StockSet::new(ProductId::new("no-such").unwrap(), 1, 0, None, "a").unwrap();
    let err = store.set_stock(&missing).await.unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "got {err:?}");
}

/// After 200 concurrent buyers ordering and cancelling baskets, restocks, sets and holds that are
/// released, checked out and left to expire, each product's entries add up to exactly its
/// available and reserved stock; each entry's quantities are the product's after it; the
/// entries name their reasons, actors and references and list newest first by cursor.
pub async fn the_ledger_explains_every_unit(store: TestStore) {
    let a = product(&store, "ledger-a", 400).await;
    let b = product(&store, "ledger-b", 400).await;
    let mut buyers = Vec::new();
    for i in 0..200 {
        buyers.push(user(&store, &format!("ledger{i}@example.com")).await);
    }
    let tasks = buyers.iter().enumerate().map(|(i, u)| {
        let store = store.clone();
        let (a, b, u) = (a.clone(), b.clone(), u.clone());
        tokio::spawn(async move {
            match i % 5 {
                0 | 1 => {
                    let placed = store.place_order(&basket(&u, &[(&a, 1), (&b, 2)])).await?;
                    if i % 5 == 0 {
                        store
                            .cancel_order(placed.order.id, SYSTEM_ACTOR, now())
                            .await?;
                    }
                }
                2 => {
                    let held = store
                        .reserve(&hold(&u, &[(&b, 1), (&a, 1)], Duration::from_secs(600)))
                        .await?;
                    store
                        .checkout_reservation(held.id, &held.order(now()))
                        .await?;
                }
                3 => {
                    let held = store
                        .reserve(&hold(&u, &[(&a, 2)], Duration::from_secs(600)))
                        .await?;
                    store.release_reservation(held.id, now()).await?;
                }
                _ => {
                    store
                        .reserve(&hold(&u, &[(&a, 1), (&b, 1)], Duration::from_secs(600)))
                        .await?;
                    store.restock(&b, 3, SYSTEM_ACTOR, now()).await?;
                }
            }
            Ok::<_, Error>(())
        })
    });
    for r in futures::future::join_all(tasks).await {
        r.unwrap().expect("every step has stock");
    }
    let current = store.get_product(&a).await.unwrap().unwrap().quantity;
    let set = StockSet::new(
        a.clone(),
        current + 5,
        current,
        Some("count #7".into()),
        "admin",
    );
    store.set_stock(&set.unwrap()).await.expect("set");
    // The holds left run out.
    assert_eq!(
        store
            .expire_reservations(now() + chrono::Duration::hours(1), 100)
            .await
            .unwrap(),
        40
    );
    for id in [&a, &b] {
        let p = store.get_product(id).await.unwrap().unwrap();
        let all = entries(&store, id).await;
        assert_eq!(crate::reconcile(&p, &all), None, "{id}: {all:#?}");
        // Each entry's quantities are the running sums up to it (these products are not
        // sharded: every store knows them).
        let (mut q, mut r) = (0i64, 0i64);
        for e in &all {
            (q, r) = (q + e.delta, r + e.reserved_delta);
            assert_eq!(
                (e.quantity.map(|q| q as i64), e.reserved.map(|r| r as i64)),
                (Some(q), Some(r)),
                "{id}: {e:?}"
            );
        }
        let reasons: std::collections::BTreeSet<&str> =
            all.iter().map(|e| e.reason.as_str()).collect();
        for reason in ["opening", "order", "cancel", "hold", "checkout", "expire"] {
            assert!(
                reasons.contains(reason),
                "{id}: no {reason} entry in {reasons:?}"
            );
        }
        let first = &all[0];
        assert_eq!((first.reason, first.delta), (StockReason::Opening, 400));
        let order = all.iter().find(|e| e.reason == StockReason::Order).unwrap();
        assert!(order.actor.parse::<uuid::Uuid>().is_ok(), "{order:?}");
        assert!(order.reference.is_some(), "{order:?}");
    }
    let a_reasons: Vec<StockReason> = entries(&store, &a).await.iter().map(|e| e.reason).collect();
    assert!(a_reasons.contains(&StockReason::Release));
    let last = entries(&store, &a).await.pop().unwrap();
    assert_ne!(
        last.reason,
        StockReason::Set,
        "the expiries came after the set"
    );
    let set_entry = entries(&store, &a)
        .await
        .into_iter()
        .find(|e| e.reason == StockReason::Set)
        .expect("the set's entry");
    assert_eq!((set_entry.delta, set_entry.actor.as_str()), (5, "admin"));
    assert_eq!(set_entry.reference.as_deref(), Some("count #7"));
    let b_reasons: Vec<StockReason> = entries(&store, &b).await.iter().map(|e| e.reason).collect();
    assert!(b_reasons.contains(&StockReason::Restock));

    // Newest first, page by page, with no entry twice.
    let first = store
        .list_ledger(&a, Page::first(3).unwrap())
        .await
        .unwrap();
    assert_eq!(first.len(), 3);
    assert!(first[0].id > first[1].id && first[1].id > first[2].id);
    let next = store
        .list_ledger(&a, Page::first(3).unwrap().after(first[2].cursor()))
        .await
        .unwrap();
    assert!(next.iter().all(|e| e.id < first[2].id));
    let err = store
        .list_ledger(&ProductId::new("no-such").unwrap(), Page::first(3).unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "got {err:?}");
}

/// A product's ledger goes through an export and an import entry for entry (a memory store's
/// export imported here), and a product imported without entries (an export made before the
/// ledger) opens its ledger with an `import` entry of its stock: both add up afterwards.
pub async fn ledgers_survive_export_and_import(store: TestStore) {
    let other: TestStore = std::sync::Arc::new(crate::MemoryStore::new());
    let u = user(&other, "exported-ledger@example.com").await;
    let p = product(&other, "exported-ledger", 9).await;
    other.place_order(&order(&u, &p, 2)).await.unwrap();
    other.restock(&p, 4, SYSTEM_ACTOR, now()).await.unwrap();
    let mut out = Vec::new();
    let report = crate::transfer::export(other.as_ref(), &mut out)
        .await
        .unwrap();
    assert_eq!(report.written.ledger_entries, 3);
    // An older export's product: no `reserved`, no entries.
    out.extend_from_slice(
        br#"{"type":"product","product_id":"old-export","product_name":"Old","quantity":7,"created_at":"2025-01-01T00:00:00Z","updated_at":"2025-01-02T00:00:00Z"}"#,
    );
    out.push(b'\n');
    let report = crate::transfer::import(store.as_ref(), out.as_slice())
        .await
        .expect("import");
    assert!(report.is_complete(), "{:?}", report.skipped);
    assert_eq!(report.written.ledger_entries, 4);
    let theirs = entries(&other, &p).await;
    assert_eq!(entries(&store, &p).await, theirs);
    assert_eq!(store.ledger_balance(&p).await.unwrap().difference(), None);
    let old = ProductId::new("old-export").unwrap();
    let opened = entries(&store, &old).await;
    assert_eq!(opened.len(), 1, "{opened:?}");
    assert_eq!(
        (opened[0].reason, opened[0].delta),
        (StockReason::Import, 7)
    );
    assert_eq!(store.ledger_balance(&old).await.unwrap().difference(), None);

    // Out of this store: the entries come along.
    let mut out = Vec::new();
    let report = crate::transfer::export(store.as_ref(), &mut out)
        .await
        .unwrap();
    assert!(report.is_complete(), "{:?}", report.skipped);
    let memory: TestStore = std::sync::Arc::new(crate::MemoryStore::new());
    crate::transfer::import(memory.as_ref(), out.as_slice())
        .await
        .unwrap();
    assert_eq!(entries(&memory, &p).await, theirs);
    assert_eq!(entries(&memory, &old).await, opened);
}

/// Balances read while orders flow never show a difference that is not there (the product and
/// its entries are read together); a repair of a difference the product no longer shows is
/// refused, and one the ledger cannot explain (a negative sum) is refused naming the ledger.
pub async fn balances_agree_while_orders_flow(store: TestStore) {
    let p = product(&store, "balance", 200).await;
    let mut buyers = Vec::new();
    for i in 0..40 {
        buyers.push(user(&store, &format!("balance{i}@example.com")).await);
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let orders = async {
        let placed = futures::future::join_all(buyers.iter().map(|u| {
            let (store, new) = (store.clone(), order(u, &p, 1));
            tokio::spawn(async move { store.place_order(&new).await })
        }))
        .await;
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        placed
    };
    // Balances read for as long as the orders run (and once after), each consistent.
    let reads = async {
        let mut seen = std::collections::BTreeSet::new();
        loop {
            let last = done.load(std::sync::atomic::Ordering::SeqCst);
            let balance = store.ledger_balance(&p).await.expect("balance");
            assert_eq!(balance.difference(), None, "{balance:?}");
            seen.insert(balance.product.quantity);
            if last {
                return seen;
            }
            // A store that answers without awaiting (memory) must let the orders run.
            tokio::task::yield_now().await;
        }
    };
    let (placed, seen) = tokio::join!(orders, reads);
    assert!(
        seen.contains(&160),
        "the last read follows every order: {seen:?}"
    );
    for r in placed {
        r.unwrap().expect("stock for every buyer");
    }
    let balance = store.ledger_balance(&p).await.unwrap();
    assert_eq!(
        (balance.product.quantity, balance.ledger_quantity),
        (160, 160)
    );

    // A difference that is not (or no longer) there is not repaired.
    let stale = Difference {
        product_id: p.clone(),
        quantity: 999,
        ledger_quantity: 160,
        reserved: 0,
        ledger_reserved: 0,
    };
    let err = store.repair_stock(&stale, now()).await.unwrap_err();
    assert!(
        matches!(err, Error::StockChanged { current: 160, .. }),
        "got {err:?}"
    );
    let negative = Difference {
        ledger_quantity: -1,
        quantity: 160,
        ..stale
    };
    let err = store.repair_stock(&negative, now()).await.unwrap_err();
    assert!(err.to_string().contains("by hand"), "got {err}");
    assert_eq!(stock(&store, &p).await, 160);
    let err = store
        .ledger_balance(&ProductId::new("no-such").unwrap())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)), "got {err:?}");
}

/// A product whose stock was changed behind the store's back (`corrupt` sets its available
/// quantity to 100 through the database itself, as an operator's mistake would) is found by
/// its balance and repaired: its quantity back to what the ledger says, with a `set` entry
/// naming what was found. Not in a suite macro: each backend's suite passes its own
/// `corrupt`.
pub async fn a_stock_changed_by_hand_is_found_and_repaired<F, Fut>(store: TestStore, corrupt: F)
where
    F: FnOnce(ProductId) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let u = user(&store, "corrupt@example.com").await;
    let p = product(&store, "corrupted", 10).await;
    store.place_order(&order(&u, &p, 3)).await.expect("order");
    assert_eq!(store.ledger_balance(&p).await.unwrap().difference(), None);
    corrupt(p.clone()).await;
    let balance = store.ledger_balance(&p).await.unwrap();
    let difference = balance.difference().expect("the hand-made change is found");
    assert_eq!((difference.quantity, difference.ledger_quantity), (100, 7));
    let repaired = store
        .repair_stock(&difference, now())
        .await
        .expect("repair");
    assert_eq!((repaired.quantity, repaired.reserved), (7, 0));
    assert_eq!(store.ledger_balance(&p).await.unwrap().difference(), None);
    let newest = store
        .list_ledger(&p, Page::first(1).unwrap())
        .await
        .unwrap();
    let entry = &newest[0];
    assert_eq!(
        (
            entry.reason,
            entry.delta,
            entry.quantity.unwrap_or_default()
        ),
        (StockReason::Set, 0, 7)
    );
    assert!(
        entry
            .reference
            .as_deref()
            .unwrap_or_default()
            .contains("found 100"),
        "{entry:?}"
    );
    // Repaired once: the same difference again is refused.
    let err = store.repair_stock(&difference, now()).await.unwrap_err();
    assert!(matches!(err, Error::StockChanged { .. }), "got {err:?}");
}

/// Retention: entries older than a time are pruned in batches into one checkpoint per
/// product (itself folded into the next one), entries at or after that time are kept, and
/// every product's entries add up after every batch.
pub async fn pruning_keeps_every_product_adding_up(store: TestStore) {
    let u = user(&store, "pruned@example.com").await;
    let a = product(&store, "pruned-a", 30).await;
    let b = product(&store, "pruned-b", 30).await;
    for _ in 0..4 {
        store
            .place_order(&basket(&u, &[(&a, 1), (&b, 2)]))
            .await
            .unwrap();
    }
    store.restock(&a, 5, SYSTEM_ACTOR, now()).await.unwrap();
    // Everything written so far is "old"; what follows is kept.
    let cut = entries(&store, &a).await.last().unwrap().at + chrono::Duration::microseconds(1);
    let later = store.place_order(&order(&u, &a, 3)).await.unwrap().order;
    let kept_before = entries(&store, &a).await.len();
    assert_eq!(
        kept_before, 7,
        "opening, 4 orders, a restock, the later order"
    );

    let mut rounds = 0;
    loop {
        let n = store.prune_ledger(cut, 3).await.expect("prune");
        assert!(n <= 3, "a batch is bounded: {n}");
        for id in [&a, &b] {
            let balance = store.ledger_balance(id).await.unwrap();
            assert_eq!(balance.difference(), None, "{id} after {rounds} rounds");
        }
        if n == 0 {
            break;
        }
        rounds += 1;
        assert!(rounds < 20, "pruning never ends");
    }
    assert!(rounds >= 2, "{rounds}");
    let left = entries(&store, &a).await;
    assert_eq!(left.len(), 2, "{left:#?}");
    assert_eq!(left[0].reason, StockReason::Checkpoint);
    assert_eq!((left[0].delta, left[0].quantity), (31, Some(31)));
    assert_eq!(left[1].reference, Some(later.id.to_string()));
    let b_left = entries(&store, &b).await;
    assert_eq!(b_left.len(), 1);
    assert_eq!(
        (b_left[0].reason, b_left[0].delta),
        (StockReason::Checkpoint, 22)
    );
    // Nothing more to prune before the same time.
    assert_eq!(store.prune_ledger(cut, 3).await.unwrap(), 0);
}
