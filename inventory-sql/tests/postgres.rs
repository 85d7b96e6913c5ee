//! The conformance suite and multi-process behaviour on a real PostgreSQL server.
//!
//! Set `INVENTORY_TEST_POSTGRES_URL` (for example `postgres://postgres@127.0.0.1:5432/test`).
//! Without it these tests print a notice and pass, unless `INVENTORY_REQUIRE_BACKENDS=1` (as in
//! CI), where a missing or unreachable server fails them.
//! Each test works in a schema of its own (see `inventory_sql::testing`).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use inventory_core::testkit::{self, TestStore};
use inventory_core::*;
use inventory_sql::{SqlOptions, SqlStore};

fn url() -> Option<String> {
    inventory_sql::testing::postgres_url()
}

async fn fresh_schema(url: &str) -> String {
    inventory_sql::testing::fresh_schema(url).await
}

async fn connect(url: &str, schema: &str) -> SqlStore {
    let options = SqlOptions {
        schema: Some(schema.to_owned()),
        ..SqlOptions::default()
    };
    SqlStore::connect_with(url, options)
        .await
        .expect("connect PostgreSQL")
}

async fn store() -> Option<TestStore> {
    let url = url()?;
    let schema = fresh_schema(&url).await;
    Some(Arc::new(connect(&url, &schema).await) as TestStore)
}

mod conformance {
    inventory_core::store_conformance!(
        super::store(),
        #[cfg_attr(
            inventory_no_postgres,
            ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
        )]
    );
    inventory_core::reservation_conformance!(
        super::store(),
        #[cfg_attr(
            inventory_no_postgres,
            ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
        )]
    );
    inventory_core::ledger_conformance!(
        super::store(),
        #[cfg_attr(
            inventory_no_postgres,
            ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
        )]
    );
    inventory_core::event_conformance!(
        super::store(),
        #[cfg_attr(
            inventory_no_postgres,
            ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
        )]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn two_dispatchers_with_separate_pools_deliver_each_of_500_once() {
    let url = url().expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    let schema = fresh_schema(&url).await;
    let a: TestStore = Arc::new(connect(&url, &schema).await);
    let b: TestStore = Arc::new(connect(&url, &schema).await);
    let u = testkit::user(&a, "pg@example.com").await;
    let p = testkit::product(&a, "pg-product", 500).await;
    for _ in 0..500 {
        a.place_order(&testkit::order(&u, &p, 1)).await.unwrap();
    }
    let mailers = [
        Arc::new(RecordingMailer::new()),
        Arc::new(RecordingMailer::new()),
    ];
    let runs = [a.clone(), b.clone()]
        .into_iter()
        .zip(mailers.iter().cloned())
        .enumerate()
        .map(|(i, (store, mailer))| {
            let d = Dispatcher::new(
                store,
                mailer,
                DispatcherConfig {
                    owner: format!("pg-{i}"),
                    batch_size: 20,
                    ..Default::default()
                },
            );
            tokio::spawn(async move { while d.run_once().await.expect("cycle").claimed > 0 {} })
        });
    for r in futures::future::join_all(runs).await {
        r.unwrap();
    }
    let mut ids = HashSet::new();
    for m in &mailers {
        for e in m.deliveries() {
            assert!(ids.insert(e.message_id), "delivered twice");
        }
    }
    assert_eq!(ids.len(), 500);
    assert!(
        mailers.iter().all(|m| !m.deliveries().is_empty()),
        "both dispatchers took work"
    );
    assert_eq!(b.notification_counts().await.unwrap().sent, 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn listen_notify_wakes_another_connection_and_survives_a_reconnect() {
    let url = url().expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    let schema = fresh_schema(&url).await;
    let writer: TestStore = Arc::new(connect(&url, &schema).await);
    // The listener's connections carry a name of their own, so that cutting them below ends
    // this test's LISTEN and no other test's running at the same time.
    let name = format!("listen_{schema}");
    let sep = if url.contains('?') { '&' } else { '?' };
    let listener = connect(&format!("{url}{sep}application_name={name}"), &schema).await;
    let mut rx = listener.subscribe();
    // Wait until the listener has connected (it raises the signal once it listens).
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .unwrap()
        .unwrap();
    rx.borrow_and_update();
    let u = testkit::user(&writer, "notify@example.com").await;
    let p = testkit::product(&writer, "notified", 5).await;
    writer
        .place_order(&testkit::order(&u, &p, 1))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .expect("NOTIFY from another pool arrives")
        .unwrap();

    // Cut the listening connection from the server side: the store reconnects and signals.
    rx.borrow_and_update();
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE query ILIKE 'LISTEN%' AND application_name = $1",
    )
    .bind(&name)
    .fetch_all(&admin)
    .await
    .unwrap();
    assert!(
        !cut.is_empty(),
        "the listener's LISTEN connection was found"
    );
    tokio::time::timeout(Duration::from_secs(20), rx.changed())
        .await
        .expect("signal after reconnect")
        .unwrap();
    rx.borrow_and_update();
    writer
        .place_order(&testkit::order(&u, &p, 1))
        .await
        .unwrap();
    tokio::time::timeout(Duration::from_secs(20), rx.changed())
        .await
        .expect("NOTIFY after reconnect")
        .unwrap();
}

/// A stock changed by hand through psql (an operator's `UPDATE`) is found by the ledger's
/// balance and repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn a_stock_changed_by_hand_is_found_and_repaired() {
    let url = url().expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    let schema = fresh_schema(&url).await;
    let store: TestStore = Arc::new(connect(&url, &schema).await);
    testkit::a_stock_changed_by_hand_is_found_and_repaired(store, |p| async move {
        let in_schema = inventory_sql::testing::url_with_schema(&url, &schema);
        let mut raw = <sqlx::PgConnection as sqlx::Connection>::connect(&in_schema)
            .await
            .unwrap();
        sqlx::query("UPDATE products SET quantity = 100 WHERE id = $1")
            .bind(p.as_str())
            .execute(&mut raw)
            .await
            .unwrap();
    })
    .await;
}
