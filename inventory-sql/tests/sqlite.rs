//! The conformance suite on SQLite: a WAL file (the embedded default) and `:memory:`.

use std::sync::Arc;

use inventory_core::testkit::TestStore;
use inventory_sql::SqlStore;

async fn file_store() -> Option<TestStore> {
    // The directory lives for the whole test process; each test gets its own file.
    let dir = tempfile::tempdir().unwrap().keep();
    let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
    Some(Arc::new(SqlStore::connect(&url).await.expect("connect sqlite")) as TestStore)
}

mod file {
    inventory_core::store_conformance!(super::file_store());
    inventory_core::reservation_conformance!(super::file_store());
    inventory_core::ledger_conformance!(super::file_store());
    inventory_core::event_conformance!(super::file_store());
}

mod memory {
    use super::*;
    inventory_core::store_conformance!(async {
        Some(Arc::new(SqlStore::connect("sqlite::memory:").await.expect("connect")) as TestStore)
    });
}

#[tokio::test]
async fn migrations_are_idempotent_and_bad_urls_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("m.db").display());
    let store = SqlStore::connect(&url).await.unwrap();
    store.migrate().await.unwrap();
    drop(store);
    SqlStore::connect(&url)
        .await
        .expect("reopen an existing database");
    let err = SqlStore::connect("mysql://localhost/x").await.unwrap_err();
    assert!(err.to_string().contains("DATABASE_URL"), "{err}");
    assert_eq!(err.kind(), inventory_core::ErrorKind::InvalidInput);
}

/// Orders placed together are decided in the order they were handed to the store (first come,
/// first served), whether or not they share a transaction; and every commit is durable
/// (`synchronous=FULL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grouped_orders_are_first_come_first_served_and_durable() {
    use inventory_core::testkit::{order, product, user};
    use inventory_core::{Error, OrderStore as _};
    let store = file_store().await.unwrap();
    let p = product(&store, "hot", 5).await;
    let mut buyers = Vec::new();
    for i in 0..12 {
        buyers.push(user(&store, &format!("b{i}@example.com")).await);
    }
    // join_all polls the calls in this order, so each hands its order over in this order.
    let calls: Vec<_> = buyers.iter().map(|u| order(u, &p, 1)).collect();
    let results = futures::future::join_all(calls.iter().map(|o| store.place_order(o))).await;
    for (i, r) in results.iter().enumerate() {
        match (i < 5, r) {
            (true, Ok(placed)) => assert!(!placed.replayed),
            (false, Err(Error::OutOfStock { .. })) => {}
            (_, other) => panic!("buyer {i} of 12 for 5 units: {other:?}"),
        }
    }

    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("d.db").display());
    let sql = SqlStore::connect(&url).await.unwrap();
    let (synchronous,): (i64,) = sqlx::query_as("PRAGMA synchronous")
        .fetch_one(sql.sqlite_pool().unwrap())
        .await
        .unwrap();
    assert_eq!(synchronous, 2, "PRAGMA synchronous must be FULL (2)");
}

/// Orders waiting together share one transaction (group commit): 64 orders handed over at
/// once write fewer than 64 WAL frames, and every commit writes at least one frame, so they
/// took fewer than 64 commits (one at a time they wrote 652 frames).
#[tokio::test(flavor = "current_thread")]
async fn waiting_orders_share_one_commit() {
    use inventory_core::OrderStore as _;
    use inventory_core::testkit::{order, product, user};
    use sqlx::Connection as _;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("g.db").display());
    let store: TestStore = Arc::new(SqlStore::connect(&url).await.unwrap());
    let p = product(&store, "hot", 1_000).await;
    let u = user(&store, "g@example.com").await;
    let mut observer = sqlx::SqliteConnection::connect(&url).await.unwrap();
    // Empty the WAL, so its frame count afterwards is what the orders wrote.
    let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert_eq!(busy, 0, "the checkpoint must not be blocked");
    let calls: Vec<_> = (0..64).map(|_| order(&u, &p, 1)).collect();
    let results = futures::future::join_all(calls.iter().map(|o| store.place_order(o))).await;
    assert!(results.iter().all(|r| r.is_ok()), "{results:?}");
    let (_, frames, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(&mut observer)
        .await
        .unwrap();
    assert!(
        (1..64).contains(&frames),
        "64 waiting orders wrote {frames} WAL frames: they were not committed together"
    );
    let left = store.get_product(&p).await.unwrap().unwrap().quantity;
    assert_eq!(left, 1_000 - 64);
}

/// A stock changed by hand in the database file (an operator's `UPDATE`) is found by the
/// ledger's balance and repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_changed_by_hand_is_found_and_repaired() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("r.db").display());
    let store: TestStore = Arc::new(SqlStore::connect(&url).await.unwrap());
    inventory_core::testkit::a_stock_changed_by_hand_is_found_and_repaired(store, |p| async move {
        // Another connection, as the sqlite3 shell would be.
        let mut raw = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
            .await
            .unwrap();
        sqlx::query("UPDATE products SET quantity = 100 WHERE id = ?")
            .bind(p.as_str())
            .execute(&mut raw)
            .await
            .unwrap();
    })
    .await;
}
