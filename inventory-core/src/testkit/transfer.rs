//! Export, import and health.

use super::*;

/// `ping` (behind `/ready`) answers on an empty store and on one with data.
pub async fn health_ping_answers(store: TestStore) {
    store
        .ping()
        .await
        .expect("ping of an empty store must succeed (is it reading a reserved id?)");
    product(&store, "product-1", 1).await;
    store.ping().await.expect("ping with data must succeed");
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
        .cancel_order(placed[2].id, SYSTEM_ACTOR, t0())
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
    // Ledger entries: product-1's opening, three orders and a cancel, product-2's opening;
    // none from a store that keeps no ledger.
    let keeps_ledger = !matches!(
        store.list_ledger(&p, Page::first(1).unwrap()).await,
        Err(crate::Error::Unsupported(_))
    );
    let ledger = if keeps_ledger { 6 } else { 0 };
    assert_eq!(held.ledger_entries, ledger);
    assert_eq!(report.written, held, "export did not write every record");
    assert!(report.is_complete(), "{:?}", report.skipped);
    let lines = String::from_utf8(out).unwrap().lines().count();
    assert_eq!(lines as u64, 10 + ledger);

    let mut again = Vec::new();
    crate::transfer::export(store.as_ref(), &mut again)
        .await
        .unwrap();
    let report = crate::transfer::import(store.as_ref(), again.as_slice())
        .await
        .expect("import");
    assert_eq!(report.written, crate::transfer::Counts::default());
    assert_eq!(
        report.skipped.len() as u64,
        10 + ledger,
        "every existing record is reported as skipped"
    );
}

/// A basket and its confirmation go through an export and an import with every line: this
/// store's export read into a memory store, and a memory store's export imported here.
pub async fn baskets_survive_export_and_import(store: TestStore) {
    let u = user(&store, "moved@example.com").await;
    let a = product(&store, "moved-a", 5).await;
    let b = product(&store, "moved-b", 5).await;
    let new = basket(&u, &[(&a, 2), (&b, 1), (&a, 1)]);
    let placed = store.place_order(&new).await.expect("basket").order;
    let confirmation = store
        .notification_for_order(placed.id)
        .await
        .unwrap()
        .expect("confirmation");

    // Out of this store.
    let mut out = Vec::new();
    crate::transfer::export(store.as_ref(), &mut out)
        .await
        .expect("export");
    let memory: TestStore = Arc::new(crate::MemoryStore::new());
    let report = crate::transfer::import(memory.as_ref(), out.as_slice())
        .await
        .expect("import into memory");
    assert!(report.is_complete(), "{:?}", report.skipped);
    assert_eq!(
        memory.get_order(placed.id).await.unwrap(),
        Some(placed.clone())
    );
    assert_eq!(
        memory.notification_for_order(placed.id).await.unwrap(),
        Some(confirmation.clone())
    );

    // Into this store: a basket of another store, written as it is.
    let other: TestStore = Arc::new(crate::MemoryStore::new());
    let v = user(&other, "imported@example.com").await;
    let c = product(&other, "imported-c", 5).await;
    let d = product(&other, "imported-d", 5).await;
    let theirs = other
        .place_order(&basket(&v, &[(&d, 1), (&c, 3)]))
        .await
        .unwrap()
        .order;
    let mut out = Vec::new();
    crate::transfer::export(other.as_ref(), &mut out)
        .await
        .unwrap();
    let report = crate::transfer::import(store.as_ref(), out.as_slice())
        .await
        .expect("import here");
    assert!(report.is_complete(), "{:?}", report.skipped);
    assert_eq!(
        store.get_order(theirs.id).await.unwrap(),
        Some(theirs.clone())
    );
    let n = store
        .notification_for_order(theirs.id)
        .await
        .unwrap()
        .expect("its confirmation");
    let Message::OrderConfirmation { lines, .. } = &n.message else {
        panic!("{:?}", n.message);
    };
    assert_eq!(lines.len(), 2);
}
