//! Criterion benchmarks of the library's hot paths.
//!
//! ```sh
//! INVENTORY_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench --bench core
//! ```
//!
//! Place-order is measured with 16 concurrent buyers (`iter_custom`), so the reported
//! throughput is orders per second of the whole store, not of one caller.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use inventory_core::testkit::{self, TestStore};
use inventory_core::*;
use tokio::runtime::Runtime;

const CLIENTS: u64 = 16;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

struct Fixture {
    store: TestStore,
    users: Vec<User>,
    products: Vec<ProductId>,
}

async fn fixture(store: TestStore, products: usize) -> Fixture {
    let mut users = Vec::new();
    for i in 0..CLIENTS {
        users.push(
            testkit::user(
                &store,
                &format!("bench{i}-{}@example.com", uuid::Uuid::now_v7().simple()),
            )
            .await,
        );
    }
    let mut ids = Vec::new();
    for i in 0..products {
        let id = format!("bench-{i}-{}", uuid::Uuid::now_v7().simple());
        ids.push(testkit::product(&store, &id, u32::MAX as u64).await);
    }
    Fixture {
        store,
        users,
        products: ids,
    }
}

/// `iters` orders spread over 16 concurrent buyers.
async fn place_concurrently(f: &Fixture, iters: u64) -> Duration {
    let start = Instant::now();
    let per_client = iters.div_ceil(CLIENTS);
    let tasks: Vec<_> = f
        .users
        .iter()
        .enumerate()
        .map(|(c, user)| {
            let store = f.store.clone();
            let user = user.clone();
            let products = f.products.clone();
            tokio::spawn(async move {
                for i in 0..per_client {
                    let p = &products[(c + i as usize * 7) % products.len()];
                    store
                        .place_order(&testkit::order(&user, p, 1))
                        .await
                        .expect("placed");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

async fn stores() -> Vec<(&'static str, TestStore)> {
    let dir = tempfile::tempdir().unwrap().keep();
    let sqlite = format!("sqlite://{}?mode=rwc", dir.join("bench.db").display());
    let mut stores: Vec<(&'static str, TestStore)> = vec![
        ("memory", Arc::new(MemoryStore::new())),
        (
            "sqlite",
            Arc::new(inventory_sql::SqlStore::connect(&sqlite).await.unwrap()),
        ),
    ];
    if let Ok(url) = std::env::var("INVENTORY_TEST_POSTGRES_URL") {
        let schema = inventory_sql::testing::fresh_schema(&url).await;
        let options = inventory_sql::SqlOptions {
            schema: Some(schema),
            max_connections: 20,
            ..Default::default()
        };
        stores.push((
            "postgres",
            Arc::new(
                inventory_sql::SqlStore::connect_with(&url, options)
                    .await
                    .unwrap(),
            ),
        ));
    } else {
        eprintln!("INVENTORY_TEST_POSTGRES_URL not set: PostgreSQL not benchmarked");
    }
    stores
}

fn place_order(c: &mut Criterion) {
    let rt = runtime();
    let stores = rt.block_on(stores());
    let mut group = c.benchmark_group("place_order_16_clients");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(8));
    for (name, store) in stores {
        for products in [1usize, 100] {
            let f = rt.block_on(fixture(store.clone(), products));
            let label = format!(
                "{name}/{}",
                if products == 1 {
                    "one_product"
                } else {
                    "100_products"
                }
            );
            group.bench_function(label, |b| {
                b.to_async(&rt).iter_custom(|iters| {
                    let f = &f;
                    async move { place_concurrently(f, iters).await }
                })
            });
        }
    }
    group.finish();
}

fn tokens(c: &mut Criterion) {
    let rt = runtime();
    let store = Arc::new(MemoryStore::new());
    let auth = Auth::new(
        store,
        AuthConfig::new("bench-secret-of-at-least-32-bytes!!").unwrap(),
    )
    .unwrap();
    let user = User {
        id: uuid::Uuid::now_v7(),
        email: Email::parse("bench@example.com").unwrap(),
        password_hash: String::new(),
        role: Role::Customer,
        created_at: now(),
        token_version: 0,
        email_verified: false,
    };
    let token = auth.issue(&user).unwrap().access_token;
    let _guard = rt.enter();
    c.bench_function("jwt/issue", |b| b.iter(|| auth.issue(&user).unwrap()));
    c.bench_function("jwt/verify", |b| b.iter(|| auth.verify(&token).unwrap()));
}

fn password_hash(c: &mut Criterion) {
    let rt = runtime();
    let hasher = PasswordHasher::new(HashParams::default(), 1).unwrap();
    let password = Password::new("correct horse battery staple").unwrap();
    let hash = rt.block_on(hasher.hash(&password)).unwrap();
    let mut group = c.benchmark_group("argon2id_owasp");
    group.sample_size(20);
    group.bench_function("hash", |b| b.to_async(&rt).iter(|| hasher.hash(&password)));
    group.bench_function("verify", |b| {
        b.to_async(&rt)
            .iter(|| hasher.verify("correct horse battery staple", &hash))
    });
    group.finish();
}

fn dispatcher_cycle(c: &mut Criterion) {
    let rt = runtime();
    let mut group = c.benchmark_group("dispatcher_cycle_64");
    group.throughput(Throughput::Elements(64));
    for (name, store) in rt.block_on(stores()) {
        let f = rt.block_on(fixture(store.clone(), 1));
        let mailer = Arc::new(RecordingMailer::new());
        let dispatcher = Dispatcher::new(
            store.clone(),
            mailer,
            DispatcherConfig {
                batch_size: 64,
                ..Default::default()
            },
        );
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (f, dispatcher) = (&f, &dispatcher);
                async move {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        for i in 0..64 {
                            let user = &f.users[i % f.users.len()];
                            f.store
                                .place_order(&testkit::order(user, &f.products[0], 1))
                                .await
                                .unwrap();
                        }
                        let start = Instant::now();
                        let report = dispatcher.run_once().await.unwrap();
                        total += start.elapsed();
                        assert_eq!(report.sent, 64);
                    }
                    total
                }
            })
        });
    }
    group.finish();
}

criterion_group!(
    benches,
    place_order,
    dispatcher_cycle,
    tokens,
    password_hash
);
criterion_main!(benches);
