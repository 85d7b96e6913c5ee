//! What one order costs the Firestore emulator, side by side with the original service's
//! transaction done by a plain Firestore client (the firestore crate, no kit), in the same run.
//!
//! One client places orders one after another for one product. Measured per phase: orders/s,
//! and the emulator's CPU time per order (user + system time of its processes, read from
//! `/proc`). The kit is measured twice: the order alone (no listener, no dispatcher), and the
//! whole service (the outbox listener on, a dispatcher delivering every confirmation to a
//! recording mailer), counted until every confirmation is sent.
//!
//! ```sh
//! FIRESTORE_EMULATOR_HOST=127.0.0.1:8086 cargo run --release --features firestore,testkit \
//!     --example firestore_cost -- --orders 500 --rounds 5 --warmup 4
//! ```
//! The emulator's processes are found by their command line (`cloud-firestore-emulator` or
//! `CloudFirestore`); set `FIRESTORE_EMULATOR_PID` to name one yourself.

use inventory_e2e::grpc_proxy;

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use firestore::{FirestoreDb, FirestoreDbOptions};
use inventory_core::testkit::{self, TestStore};
use inventory_core::*;
use inventory_firestore::{FirestoreConfig, FirestoreStore};
use serde::{Deserialize, Serialize};

#[derive(Parser)]
struct Args {
    /// Orders per phase.
    #[arg(long, default_value_t = 300)]
    orders: usize,
    /// Rounds of all phases; medians are reported.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Send every call through a proxy that counts them (gRPC calls opened by the clients,
    /// and bytes each way), and print the calls per order. The proxy's copy adds latency to
    /// every phase alike: time the phases without it.
    #[arg(long)]
    count_calls: bool,
    /// Rounds run first and not counted: the emulator's JIT takes several to warm up (on a
    /// fresh emulator the first round costs about five times the seventh).
    #[arg(long, default_value_t = 4)]
    warmup: usize,
}

/// The emulator's CPU time so far, in milliseconds.
fn emulator_cpu_ms() -> f64 {
    let named = std::env::var("FIRESTORE_EMULATOR_PID").ok();
    let tick = 100.0; // USER_HZ on Linux
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let ours = match &named {
            Some(named) => *named == pid,
            None => std::fs::read(entry.path().join("cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("java")
                        && (c.contains("cloud-firestore-emulator") || c.contains("CloudFirestore"))
                })
                .unwrap_or(false),
        };
        if !ours {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
            // Fields after the command name: utime and stime are the 12th and 13th.
            let after = stat.rsplit(')').next().unwrap_or_default();
            let f: Vec<&str> = after.split_whitespace().collect();
            let utime: f64 = f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            let stime: f64 = f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0.0);
            total += (utime + stime) / tick * 1000.0;
        }
    }
    total
}

struct Phase {
    name: &'static str,
    orders: usize,
    wall: Duration,
    cpu_ms: f64,
    /// Calls opened, bytes to the emulator, bytes from it (with `--count-calls`).
    traffic: [u64; 3],
}

/// The counting proxy, with `--count-calls`.
static PROXY: std::sync::OnceLock<grpc_proxy::GrpcProxy> = std::sync::OnceLock::new();

/// Calls opened, bytes to the emulator, bytes from it, so far (zeros without the proxy).
fn traffic() -> [u64; 3] {
    PROXY.get().map_or([0; 3], grpc_proxy::GrpcProxy::traffic)
}

/// Measures `run` (which places `orders` orders) against the emulator's CPU clock.
async fn phase<F: std::future::Future<Output = ()>>(
    name: &'static str,
    orders: usize,
    run: F,
) -> Phase {
    // Let the emulator settle (earlier phases' listeners and garbage collection).
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu = emulator_cpu_ms();
    let seen = traffic();
    let start = Instant::now();
    run.await;
    let wall = start.elapsed();
    let now = traffic();
    Phase {
        name,
        orders,
        wall,
        cpu_ms: emulator_cpu_ms() - cpu,
        traffic: [0, 1, 2].map(|i| now[i] - seen[i]),
    }
}

/// The original's product document.
#[derive(Serialize, Deserialize, Clone)]
struct LegacyProduct {
    product_name: String,
    quantity: i64,
    status: String,
}

/// The original's order document.
#[derive(Serialize, Deserialize)]
struct LegacyOrder {
    buyer_email: String,
    product_id: String,
}

/// The original service's transaction, as a plain client writes it: read the product, check
/// and take the stock (with its status), create the order.
async fn original(db: &FirestoreDb, orders: usize) {
    for _ in 0..orders {
        db.run_transaction(|db, tx| {
            Box::pin(async move {
                let product: LegacyProduct = db
                    .fluent()
                    .select()
                    .by_id_in("Products")
                    .obj()
                    .one("hot")
                    .await?
                    .expect("product");
                let quantity = product.quantity - 1;
                let updated = LegacyProduct {
                    quantity,
                    status: if quantity > 0 {
                        "in_stock"
                    } else {
                        "out_of_stock"
                    }
                    .into(),
                    ..product
                };
                db.fluent()
                    .update()
                    .fields(["quantity", "status"])
                    .in_col("Products")
                    .document_id("hot")
                    .object(&updated)
                    .add_to_transaction(tx)?;
                db.fluent()
                    .update()
                    .in_col("Orders")
                    .document_id(uuid::Uuid::new_v4().simple().to_string())
                    .object(&LegacyOrder {
                        buyer_email: "buyer@example.com".into(),
                        product_id: "hot".into(),
                    })
                    .add_to_transaction(tx)?;
                Ok(())
            })
        })
        .await
        .expect("the original's transaction");
    }
}

async fn ours(store: &TestStore, label: &str, orders: usize) {
    let p = testkit::product(store, &format!("hot-{label}"), 1_000_000_000).await;
    let u = testkit::user(store, &format!("{label}@example.com")).await;
    for _ in 0..orders {
        store
            .place_order(&testkit::order(&u, &p, 1))
            .await
            .expect("placed");
    }
}

async fn kit_store(listen: bool) -> TestStore {
    let project = format!("cost-{}", uuid::Uuid::now_v7().simple());
    let mut config = FirestoreConfig::new(&project);
    config.listen = listen;
    Arc::new(FirestoreStore::connect(config).await.expect("connect"))
}

/// Orders placed with a dispatcher delivering every confirmation to a recording mailer,
/// measured until the last one is sent.
async fn service(name: &'static str, listen: bool, n: usize) -> Phase {
    let store = kit_store(listen).await;
    let mailer = Arc::new(RecordingMailer::new());
    let shutdown = CancellationToken::new();
    let dispatcher = Dispatcher::new(store.clone(), mailer.clone(), DispatcherConfig::default())
        .spawn(shutdown.clone());
    ours(&store, "warm", 20).await;
    let measured = phase(name, n, async {
        let before = mailer.deliveries().len();
        ours(&store, "whole", n).await;
        let _ = tokio::time::timeout(Duration::from_secs(120), mailer.wait_for(before + n)).await;
        assert_eq!(
            mailer.deliveries().len(),
            before + n,
            "every confirmation sent"
        );
    })
    .await;
    shutdown.cancel();
    let _ = dispatcher.await;
    measured
}

fn main() {
    let args = Args::parse();
    let emulator = std::env::var("FIRESTORE_EMULATOR_HOST").expect("set FIRESTORE_EMULATOR_HOST");
    // The proxy's port is taken, and the clients pointed at it, before any thread starts.
    let proxy = args.count_calls.then(|| {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a proxy port");
        // SAFETY: no other thread runs yet (the runtime is built below).
        unsafe {
            std::env::set_var(
                "FIRESTORE_EMULATOR_HOST",
                listener.local_addr().expect("its address").to_string(),
            )
        };
        listener
    });
    tokio::runtime::Runtime::new()
        .expect("a runtime")
        .block_on(async move {
            if let Some(listener) = proxy {
                listener.set_nonblocking(true).expect("nonblocking");
                let listener = tokio::net::TcpListener::from_std(listener).expect("the proxy");
                let _ = PROXY.set(grpc_proxy::GrpcProxy::serve(listener, emulator));
            }
            run(args).await;
        });
}

async fn run(args: Args) {
    assert!(
        emulator_cpu_ms() > 0.0,
        "the emulator's process was not found"
    );
    let n = args.orders;

    // The original, on a project of its own.
    let project = format!("original-{}", uuid::Uuid::now_v7().simple());
    let db = FirestoreDb::with_options(FirestoreDbOptions::new(project))
        .await
        .expect("connect");
    db.fluent()
        .update()
        .in_col("Products")
        .document_id("hot")
        .object(&LegacyProduct {
            product_name: "Hot".into(),
            quantity: 1_000_000_000,
            status: "in_stock".into(),
        })
        .execute::<()>()
        .await
        .expect("seed");
    original(&db, 20).await; // warm-up

    // Rounds of every phase in turn, so the emulator's drift (its JIT warming up, its data
    // growing) falls on all of them alike; the medians are compared.
    let mut rounds: Vec<[Phase; 4]> = Vec::new();
    for _ in 0..args.warmup + args.rounds {
        let reference = phase("original's transaction, plain client", n, original(&db, n)).await;
        let bare = kit_store(false).await;
        ours(&bare, "warm", 20).await;
        let alone = phase(
            "kit: place_order alone (no listener, no dispatcher)",
            n,
            ours(&bare, "bare", n),
        )
        .await;
        let quiet = service(
            "kit: orders + dispatcher, no listener (until every email is sent)",
            false,
            n,
        )
        .await;
        let whole = service(
            "kit: whole service (listener + dispatcher, until every email is sent)",
            true,
            n,
        )
        .await;
        rounds.push([reference, alone, quiet, whole]);
    }
    rounds.drain(..args.warmup.min(rounds.len().saturating_sub(1)));

    let rate = |p: &Phase| p.orders as f64 / p.wall.as_secs_f64();
    let cpu = |p: &Phase| p.cpu_ms / p.orders as f64;
    let median = |i: usize, f: &dyn Fn(&Phase) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(|r| f(&r[i])).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "| one client, {n} orders, same emulator, median of {} rounds | orders/s | emulator CPU per order | x original (orders/s, CPU) |",
        rounds.len()
    );
    println!("|---|---|---|---|");
    for (i, p) in rounds[0].iter().enumerate() {
        println!(
            "| {} | {:.0} | {:.2} ms | {:.2}x, {:.2}x |",
            p.name,
            median(i, &rate),
            median(i, &cpu),
            median(i, &rate) / median(0, &rate),
            median(i, &cpu) / median(0, &cpu),
        );
    }
    if args.count_calls {
        println!(
            "\n| calls through the proxy, per order (median) | calls | bytes to the emulator | bytes from it |"
        );
        println!("|---|---|---|---|");
        for (i, p) in rounds[0].iter().enumerate() {
            let per = |k: usize| median(i, &|p: &Phase| p.traffic[k] as f64 / p.orders as f64);
            println!(
                "| {} | {:.2} | {:.0} | {:.0} |",
                p.name,
                per(0),
                per(1),
                per(2)
            );
        }
    }
    println!("\nevery round (orders/s / CPU ms per order):");
    for (r, phases) in rounds.iter().enumerate() {
        let cells: Vec<String> = phases
            .iter()
            .map(|p| format!("{:.0} / {:.2}", rate(p), cpu(p)))
            .collect();
        println!("round {}: {}", r + 1, cells.join(" | "));
    }
}
