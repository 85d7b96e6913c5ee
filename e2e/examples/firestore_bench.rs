//! Firestore figures on the emulator: place-order throughput (16 concurrent buyers, one hot
//! product and 100 products) and write-to-wake-up latency of the listen stream (an order placed
//! through one client until another client's outbox signal fires).
//!
//! ```sh
//! FIRESTORE_EMULATOR_HOST=127.0.0.1:8086 cargo run --release --features firestore --example firestore_bench
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use inventory_core::testkit::{self, TestStore};
use inventory_core::*;
use inventory_firestore::{FirestoreConfig, FirestoreStore};

async fn throughput(store: &TestStore, products: usize, orders: usize) -> f64 {
    let mut ids = Vec::new();
    for i in 0..products {
        ids.push(testkit::product(store, &format!("bench-{products}-{i}"), 1_000_000).await);
    }
    let mut users = Vec::new();
    for i in 0..16 {
        users.push(testkit::user(store, &format!("b{products}-{i}@example.com")).await);
    }
    let start = Instant::now();
    let tasks: Vec<_> = users
        .into_iter()
        .enumerate()
        .map(|(c, u)| {
            let (store, ids) = (store.clone(), ids.clone());
            tokio::spawn(async move {
                for i in 0..orders / 16 {
                    let p = &ids[(c + i * 16) % ids.len()];
                    store
                        .place_order(&testkit::order(&u, p, 1))
                        .await
                        .expect("placed");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    (orders / 16 * 16) as f64 / start.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "set FIRESTORE_EMULATOR_HOST"
    );
    let project = format!("bench-{}", uuid::Uuid::now_v7().simple());
    let store: TestStore = Arc::new(
        FirestoreStore::connect(FirestoreConfig::new(&project))
            .await
            .unwrap(),
    );
    let hot = throughput(&store, 1, 320).await;
    let spread = throughput(&store, 100, 320).await;

    // Wake-up latency through the listen stream of a second client.
    let other = FirestoreStore::connect(FirestoreConfig::new(&project))
        .await
        .unwrap();
    let mut rx = other.subscribe();
    tokio::time::timeout(Duration::from_secs(10), rx.changed())
        .await
        .ok(); // initial sync
    let u = testkit::user(&store, "wake@example.com").await;
    let p = testkit::product(&store, "wake", 1000).await;
    let mut samples = Vec::new();
    let mut commits = Vec::new();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(30)).await; // let resets of the last write pass
        rx.borrow_and_update();
        let start = Instant::now();
        store.place_order(&testkit::order(&u, &p, 1)).await.unwrap();
        let committed = start.elapsed();
        tokio::time::timeout(Duration::from_secs(5), rx.changed())
            .await
            .expect("woken")
            .unwrap();
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
        commits.push(committed.as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    commits.sort_by(f64::total_cmp);
    println!("| Firestore emulator figure | value |");
    println!("|---|---|");
    println!("| place-order, 16 buyers, one hot product | {hot:.0} orders/s |");
    println!("| place-order, 16 buyers, 100 products | {spread:.0} orders/s |");
    let pct = |v: &[f64], p: usize| v[(v.len() - 1) * p / 100];
    println!(
        "| place-order call (transaction committed), 50 orders | p50 {:.1} ms, p99 {:.1} ms |",
        pct(&commits, 50),
        pct(&commits, 99)
    );
    println!(
        "| write start -> other client's listener wake-up, 50 orders | p50 {:.1} ms, p99 {:.1} ms |",
        pct(&samples, 50),
        pct(&samples, 99)
    );
}
