//! One hot product on the Firestore emulator, bought through two server processes at once:
//! unsharded and with 4, 16 and 64 stock shards, 16 and 64 concurrent buyers.
//!
//! Per case: orders/s, p50/p99 latency, answers other than 200 (5xx must be 0), and the
//! invariant (units taken == orders stored, never below zero). The servers run without their
//! dispatcher, so the figures are order placement only.
//!
//! ```sh
//! cargo build --release --features firestore,testkit --example server --example firestore_shards
//! FIRESTORE_EMULATOR_HOST=127.0.0.1:8086 ./target/release/examples/firestore_shards --seconds 5
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use inventory_core::*;
use inventory_firestore::{FirestoreConfig, FirestoreStore};
use serde_json::json;

use bench::Server;
use inventory_e2e::bench;

#[derive(Parser)]
struct Args {
    /// Seconds of load per case.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Shard counts to measure (0 = unsharded).
    #[arg(long, value_delimiter = ',', default_value = "0,4,16,64")]
    shards: Vec<u32>,
    /// Concurrent buyer counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "16,64")]
    buyers: Vec<usize>,
}

const STOCK: u64 = 1_000_000_000;
const SECRET: &str = "shard-bench-secret-of-at-least-32-bytes";

async fn start_server(project: &str) -> Server {
    bench::start_server(&[
        ("DATABASE_URL", format!("firestore://{project}")),
        ("JWT_SECRET", SECRET.to_owned()),
        ("SMTP_MODE", "mock".to_owned()),
        ("RUN_DISPATCHER", "false".to_owned()),
        ("RUST_LOG", "error".to_owned()),
        ("LOGIN_RATE_LIMIT", "off".to_owned()),
        ("REGISTER_RATE_LIMIT", "off".to_owned()),
    ])
    .await
    .0
}

struct Case {
    shards: u32,
    buyers: usize,
    ok: u64,
    other: u64,
    server_errors: u64,
    rps: f64,
    p50: f64,
    p99: f64,
    taken: u64,
    stored: u64,
}

async fn case(shards: u32, buyers: usize, seconds: u64) -> Case {
    let project = format!("shards-{}", Uuid::now_v7().simple());
    let mut config = FirestoreConfig::new(&project);
    config.listen = false;
    let store = FirestoreStore::connect(config).await.expect("emulator");
    let hot = ProductId::new("hot").unwrap();
    store
        .create_product(&NewProduct::new(hot.clone(), "Hot", STOCK).unwrap(), now())
        .await
        .unwrap();
    if shards > 0 {
        store.shard_product(&hot, shards, now()).await.unwrap();
    }
    let servers = [start_server(&project).await, start_server(&project).await];
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(buyers)
        .build()
        .unwrap();
    let mut tokens = Vec::new();
    for i in 0..buyers {
        tokens.push(bench::token(&client, &servers[0].url, &format!("b{i}@example.com")).await);
    }
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let tasks: Vec<_> = tokens
        .into_iter()
        .enumerate()
        .map(|(i, token)| {
            let url = format!("{}/orders/place", servers[i % 2].url);
            let client = client.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let (mut ok, mut other, mut server_errors) = (0u64, 0u64, 0u64);
                while Instant::now() < end {
                    let t = Instant::now();
                    let status = client
                        .post(&url)
                        .bearer_auth(&token)
                        .json(&json!({"product_id": "hot"}))
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .unwrap_or(0);
                    latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                    match status {
                        200 => ok += 1,
                        500..=599 | 0 => server_errors += 1,
                        _ => other += 1,
                    }
                }
                (latencies, ok, other, server_errors)
            })
        })
        .collect();
    let mut latencies = Vec::new();
    let (mut ok, mut other, mut server_errors) = (0, 0, 0);
    for t in tasks {
        let (l, o, x, e) = t.await.unwrap();
        latencies.extend(l);
        ok += o;
        other += x;
        server_errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    drop(servers);
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| bench::percentile(&latencies, p);
    let store = Arc::new(store);
    let left = store.get_product(&hot).await.unwrap().unwrap().quantity;
    let stored = transfer::collect_all(|page| store.list_orders(page))
        .await
        .unwrap()
        .len() as u64;
    Case {
        shards,
        buyers,
        ok,
        other,
        server_errors,
        rps: ok as f64 / elapsed,
        p50: pct(0.5),
        p99: pct(0.99),
        taken: STOCK - left,
        stored,
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    assert!(
        std::env::var("FIRESTORE_EMULATOR_HOST").is_ok(),
        "set FIRESTORE_EMULATOR_HOST"
    );
    println!(
        "| shards | buyers (2 servers) | orders/s | p50 | p99 | answered 5xx | other non-200 | oversold |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut sound = true;
    for &buyers in &args.buyers {
        for &shards in &args.shards {
            let c = case(shards, buyers, args.seconds).await;
            // Every unit taken belongs to a stored order; a 200 is a stored order.
            let oversold = c.taken.saturating_sub(c.stored);
            sound &= oversold == 0 && c.stored >= c.ok && c.server_errors == 0;
            println!(
                "| {} | {} | {:.0} | {:.1} ms | {:.1} ms | {} | {} | {} (taken {}, orders {}, 200s {}) |",
                if c.shards == 0 {
                    "none".to_owned()
                } else {
                    c.shards.to_string()
                },
                c.buyers,
                c.rps,
                c.p50,
                c.p99,
                c.server_errors,
                c.other,
                oversold,
                c.taken,
                c.stored,
                c.ok
            );
        }
    }
    if !sound {
        eprintln!("FAILED: a case oversold, lost a confirmed order or answered 5xx");
        std::process::exit(1);
    }
}
