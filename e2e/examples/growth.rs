//! What a database of millions of orders costs: fills a fresh SQLite file or PostgreSQL schema
//! to each size with a bulk loader (SQL `INSERT ... SELECT` over a generated series: orders,
//! their sent confirmations and ledger entries, the buyers; not the API), then measures at that
//! size, through the store (in process):
//!
//! - cold start: connecting (migrations checked) and the first read;
//! - disk: the database's size, per million orders;
//! - flash sale: 16 buyers ordering one hot product for `--seconds`: orders/s and p99;
//! - a buyer with 10,000 orders: their list's p99, first page and after a deep cursor (the
//!   9,000th order);
//! - the outbox claim's time with every confirmation in the table (before pruning) and after
//!   retention pruned the sent ones, and the pruning's rate;
//! - `admin export` (and `admin backup` on SQLite, `pg_dump` on PostgreSQL): seconds per
//!   million rows.
//!
//! `cargo build --release --example admin && cargo run --release -p inventory-e2e --example
//! growth -- --backend sqlite --sizes 1000000,10000000` (PostgreSQL: `--backend postgres`,
//! with `INVENTORY_TEST_POSTGRES_URL`). Prints one Markdown row per size.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use inventory_core::testkit;
use inventory_core::*;
use inventory_sql::{SqlOptions, SqlStore};

#[derive(Parser)]
struct Args {
    /// `sqlite` or `postgres`.
    #[arg(long, default_value = "sqlite")]
    backend: String,
    /// Orders to load, one database per size.
    #[arg(long, value_delimiter = ',', default_value = "1000000")]
    sizes: Vec<u64>,
    /// Seconds of the flash sale.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Where SQLite files and exports go (default: a temporary directory).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The admin tool (`cargo build --release --example admin`).
    #[arg(long, default_value = "target/release/examples/admin")]
    admin: PathBuf,
}

/// The buyer with many orders, and how many.
const HEAVY_ORDERS: u64 = 10_000;
const PRODUCTS: u64 = 100;
/// Rows per loader statement.
const CHUNK: u64 = 500_000;

struct Db {
    url: String,
    /// PostgreSQL: the schema.
    schema: Option<String>,
    file: Option<PathBuf>,
}

impl Db {
    fn postgres(&self) -> bool {
        self.schema.is_some()
    }

    async fn connect(&self) -> SqlStore {
        let options = SqlOptions {
            schema: self.schema.clone(),
            ..SqlOptions::default()
        };
        SqlStore::connect_with(&self.url, options)
            .await
            .expect("connect")
    }

    /// Runs one loader statement on a connection of its own.
    async fn exec(&self, sql: &str) {
        use sqlx::Connection;
        if self.postgres() {
            let url =
                inventory_sql::testing::url_with_schema(&self.url, self.schema.as_ref().unwrap());
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned()))
                .execute(&mut c)
                .await
                .unwrap_or_else(|e| panic!("{e}: {sql}"));
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "PRAGMA synchronous=OFF; {sql}"
            )))
            .execute(&mut c)
            .await
            .unwrap_or_else(|e| panic!("{e}: {sql}"));
        }
    }

    async fn scalar(&self, sql: &str) -> i64 {
        use sqlx::Connection;
        if self.postgres() {
            let url =
                inventory_sql::testing::url_with_schema(&self.url, self.schema.as_ref().unwrap());
            let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&mut c)
                .await
                .unwrap()
        } else {
            let mut c = sqlx::SqliteConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
                .fetch_one(&mut c)
                .await
                .unwrap()
        }
    }

    /// `expr` (an integer) as 12 lowercase hex digits.
    fn hex12(&self, expr: &str) -> String {
        if self.postgres() {
            format!("lpad(to_hex({expr}), 12, '0')")
        } else {
            format!("printf('%012x', {expr})")
        }
    }

    /// A time-ordered UUID (version 7 layout) of millisecond `ms` and serial `i`; `tag` tells
    /// tables apart.
    fn uuid(&self, ms: &str, i: &str, tag: &str) -> String {
        let h = self.hex12(ms);
        format!(
            "substr({h}, 1, 8) || '-' || substr({h}, 9, 4) || '-7{tag}-8000-' || {}",
            self.hex12(i)
        )
    }

    /// `INSERT ... SELECT` of `select` (which reads `i`) for `i` in `start..end`.
    fn series(&self, insert: &str, select: &str, start: u64, end: u64) -> String {
        if self.postgres() {
            format!(
                "{insert} {select} FROM generate_series({start}::bigint, {}::bigint) AS s(i)",
                end - 1
            )
        } else {
            format!(
                "WITH RECURSIVE s(i) AS (SELECT {start} UNION ALL SELECT i + 1 FROM s WHERE i + 1 < {end}) \
                 {insert} {select} FROM s"
            )
        }
    }
}

/// The buyers' ids: `u(j)`.
fn user_id(db: &Db, j: &str) -> String {
    format!("'00000000-0000-4000-8000-' || {}", db.hex12(j))
}

/// Loads `size` orders (the first `HEAVY_ORDERS` the heavy buyer's, the others spread over
/// `size / 10` buyers and `PRODUCTS` products), each with its sent confirmation and its ledger
/// entry, all 90 to 60 days old. Returns the seconds it took.
async fn load(db: &Db, size: u64, base_ms: i64) -> f64 {
    let started = Instant::now();
    let users = (size / 10).max(1000);
    let mut start = 0;
    while start < users {
        let end = (start + CHUNK).min(users);
        let id = user_id(db, "i");
        db.exec(&db.series(
            "INSERT INTO users (id, email, password_hash, role, created_at)",
            &format!(
                "SELECT {id}, 'u' || i || '@example.com', '$argon2id$placeholder', 'customer', {}",
                base_ms * 1000
            ),
            start,
            end,
        ))
        .await;
        start = end;
    }
    // Each order its millisecond: 1M orders span 17 minutes, 10M under 3 hours.
    let ms = format!("({base_ms} + i)");
    let order = db.uuid(&ms, "i", "000");
    let buyer = user_id(
        db,
        &format!(
            "CASE WHEN i < {HEAVY_ORDERS} THEN 0 ELSE 1 + i % {} END",
            users - 1
        ),
    );
    let product = format!("'p' || (i % {PRODUCTS})");
    let at = format!("({ms} * 1000)");
    let mut start = 0;
    while start < size {
        let end = (start + CHUNK).min(size);
        let notification = db.uuid(&ms, "i", "001");
        let entry = db.uuid(&ms, "i", "002");
        for (insert, select) in [
            (
                "INSERT INTO orders (id, user_id, buyer_email, product_id, quantity, status, created_at, updated_at)",
                format!(
                    "SELECT {order}, {buyer}, 'buyer@example.com', {product}, 1, 'confirmed', {at}, {at}"
                ),
            ),
            (
                "INSERT INTO notifications (id, order_id, recipient, product_id, product_name, quantity, status, attempts, next_attempt_at, created_at, sent_at)",
                format!(
                    "SELECT {notification}, {order}, 'buyer@example.com', {product}, 'Product', 1, 'sent', 1, {at}, {at}, {at}"
                ),
            ),
            (
                "INSERT INTO stock_ledger (product_id, id, delta, reserved_delta, quantity, reserved, reason, actor, reference, at)",
                format!(
                    "SELECT {product}, {entry}, -1, 0, NULL, NULL, 'order', 'bulk', {order}, {at}"
                ),
            ),
        ] {
            db.exec(&db.series(insert, &select, start, end)).await;
        }
        start = end;
        eprint!(
            "\r  loaded {end} of {size} orders ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!();
    // Statistics as an operator's `ANALYZE` (or PostgreSQL's autovacuum) leaves them; with
    // `GROWTH_NO_ANALYZE` set, none (SQLite plans without statistics then).
    let analyze = if std::env::var_os("GROWTH_NO_ANALYZE").is_some() {
        ""
    } else {
        "ANALYZE;"
    };
    if db.postgres() {
        db.exec(&format!("{analyze} SELECT 1")).await;
    } else {
        db.exec(&format!("{analyze} PRAGMA wal_checkpoint(TRUNCATE)"))
            .await;
    }
    started.elapsed().as_secs_f64()
}

fn p(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

/// `n` calls of `f`, their p50 and p99 in ms.
async fn timed<F, Fut>(n: usize, mut f: F) -> (f64, f64)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut t = Vec::with_capacity(n);
    for _ in 0..n {
        let s = Instant::now();
        f().await;
        t.push(s.elapsed());
    }
    t.sort();
    (p(&t, 0.5), p(&t, 0.99))
}

async fn flash_sale(
    store: Arc<dyn Store>,
    buyers: Vec<User>,
    hot: ProductId,
    seconds: u64,
) -> (f64, f64) {
    let until = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = buyers
        .into_iter()
        .map(|u| {
            let store = store.clone();
            let hot = hot.clone();
            tokio::spawn(async move {
                let mut t = Vec::new();
                while Instant::now() < until {
                    let s = Instant::now();
                    store
                        .place_order(&testkit::order(&u, &hot, 1))
                        .await
                        .expect("order");
                    t.push(s.elapsed());
                }
                t
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    all.sort();
    (all.len() as f64 / seconds as f64, p(&all, 0.99))
}

/// 50 outbox claims of 64 (leased for ten minutes, so each takes new ones): p50 and p99 in ms.
async fn claims(store: &Arc<dyn Store>) -> (f64, f64) {
    timed(50, || {
        let store = store.clone();
        async move {
            store
                .claim_due("growth", Utc::now(), Duration::from_secs(600), 64)
                .await
                .unwrap();
        }
    })
    .await
}

/// Runs the admin tool on `db`; returns the seconds it took.
fn admin(args: &Args, db: &Db, command: &[&str]) -> f64 {
    let url = match &db.schema {
        Some(schema) => inventory_sql::testing::url_with_schema(&db.url, schema),
        None => db.url.clone(),
    };
    let started = Instant::now();
    let out = std::process::Command::new(&args.admin)
        .args(command)
        .env("DATABASE_URL", url)
        .env("JWT_SECRET", "growth-benchmark-secret-of-at-least-32-bytes")
        .output()
        .expect("run the admin tool (cargo build --release --example admin)");
    assert!(
        out.status.success(),
        "admin {command:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let tmp = tempfile::tempdir().unwrap();
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir).unwrap();
    println!(
        "| backend | orders | load s | disk MB per M orders | cold start ms | flash sale orders/s | p99 ms | list first page p50/p99 ms | list deep cursor p50/p99 ms | claim p50/p99 ms before pruning | pruned rows/s | claim p50/p99 ms after | export s per M rows | backup s per M rows |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &size in &args.sizes {
        let db = match args.backend.as_str() {
            "postgres" => {
                let url =
                    inventory_sql::testing::postgres_url().expect("INVENTORY_TEST_POSTGRES_URL");
                let schema = inventory_sql::testing::fresh_schema(&url).await;
                Db {
                    url,
                    schema: Some(schema),
                    file: None,
                }
            }
            _ => {
                let file = dir.join(format!("growth-{size}.db"));
                let _ = std::fs::remove_file(&file);
                Db {
                    url: format!("sqlite://{}?mode=rwc", file.display()),
                    schema: None,
                    file: Some(file),
                }
            }
        };
        let store: Arc<dyn Store> = Arc::new(db.connect().await);
        for k in 0..PRODUCTS {
            testkit::product(&(store.clone()), &format!("p{k}"), 1_000_000).await;
        }
        let hot = testkit::product(&store, "hot", 100_000_000).await;
        drop(store);
        let base_ms = (Utc::now() - chrono::Duration::days(90)).timestamp_millis();
        eprintln!("{} {size}: loading", args.backend);
        let load_s = load(&db, size, base_ms).await;

        // Cold start: connect (migrations checked) and the first read, three times.
        let mut cold = Vec::new();
        for _ in 0..3 {
            let s = Instant::now();
            let store = db.connect().await;
            store.get_product(&hot).await.unwrap();
            cold.push(s.elapsed());
            drop(store);
        }
        cold.sort();
        let store: Arc<dyn Store> = Arc::new(db.connect().await);

        let bytes = match &db.file {
            Some(file) => std::fs::metadata(file).unwrap().len() as f64,
            None => {
                db.scalar(&format!(
                    "SELECT sum(pg_total_relation_size(c.oid))::bigint FROM pg_class c \
                     JOIN pg_namespace n ON n.oid = c.relnamespace \
                     WHERE n.nspname = '{}' AND c.relkind = 'r'",
                    db.schema.as_ref().unwrap()
                ))
                .await as f64
            }
        };
        let per_million = size as f64 / 1e6;

        let mut buyers = Vec::new();
        for k in 0..16 {
            buyers.push(testkit::user(&store, &format!("flash{k}@example.com")).await);
        }
        let (rate, p99) = flash_sale(store.clone(), buyers, hot.clone(), args.seconds).await;

        let heavy = uuid::Uuid::parse_str("00000000-0000-4000-8000-000000000000").unwrap();
        let first = timed(200, || {
            let store = store.clone();
            async move {
                let page = store
                    .list_orders_for_user(heavy, Page::first(20).unwrap())
                    .await
                    .unwrap();
                assert_eq!(page.len(), 20);
            }
        })
        .await;
        // The 9,000th newest order of the heavy buyer: order 999 of the load.
        let mut cursor = None;
        let mut page = Page::first(1000).unwrap();
        for _ in 0..9 {
            let orders = store
                .list_orders_for_user(heavy, page.clone())
                .await
                .unwrap();
            cursor = orders.last().map(|o| o.id.to_string());
            page = Page::first(1000).unwrap().after(cursor.clone().unwrap());
        }
        let cursor = cursor.unwrap();
        let deep = timed(200, || {
            let store = store.clone();
            let cursor = cursor.clone();
            async move {
                let page = store
                    .list_orders_for_user(heavy, Page::first(20).unwrap().after(cursor))
                    .await
                    .unwrap();
                assert_eq!(page.len(), 20);
            }
        })
        .await;

        // The claim, with the flash sale's confirmations pending among every sent one.
        let claim_before = claims(&store).await;

        let rows = store.count_records().await.unwrap();
        let rows_m = rows.total() as f64 / 1e6;
        let export_file = dir.join(format!("export-{size}.jsonl"));
        let _ = std::fs::remove_file(&export_file);
        let export_s = admin(
            &args,
            &db,
            &["export", export_file.to_str().unwrap(), "--force"],
        );
        let _ = std::fs::remove_file(&export_file);
        let backup_s = match &db.file {
            Some(_) => {
                let backup = dir.join(format!("backup-{size}.db"));
                let _ = std::fs::remove_file(&backup);
                let s = admin(&args, &db, &["backup", backup.to_str().unwrap()]);
                let _ = std::fs::remove_file(&backup);
                s
            }
            None => {
                let dump = dir.join(format!("dump-{size}.pgc"));
                let started = Instant::now();
                let status = std::process::Command::new("pg_dump")
                    .args(["-Fc", "-n", db.schema.as_ref().unwrap(), "-f"])
                    .arg(&dump)
                    .arg(&db.url)
                    .status()
                    .expect("pg_dump");
                assert!(status.success());
                let _ = std::fs::remove_file(&dump);
                started.elapsed().as_secs_f64()
            }
        };

        // Retention: every loaded confirmation is sent and 60 days old or more.
        let started = Instant::now();
        let retention = Retention::new(store.clone(), RetentionPolicy::default());
        let pruned = retention
            .prune_due(Utc::now(), retention::PRUNE_BATCH)
            .await
            .unwrap();
        let prune_rate = pruned.notifications as f64 / started.elapsed().as_secs_f64();
        let claim_after = claims(&store).await;

        println!(
            "| {} | {} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} | {:.2}/{:.2} | {:.2}/{:.2} | {:.2}/{:.2} | {:.0} | {:.2}/{:.2} | {:.1} | {:.1} |",
            args.backend,
            size,
            load_s,
            bytes / 1e6 / per_million,
            cold[1].as_secs_f64() * 1000.0,
            rate,
            p99,
            first.0,
            first.1,
            deep.0,
            deep.1,
            claim_before.0,
            claim_before.1,
            prune_rate,
            claim_after.0,
            claim_after.1,
            export_s / rows_m,
            backup_s / rows_m,
        );
        drop(store);
        if std::env::var_os("GROWTH_KEEP").is_some() {
            continue;
        }
        if let Some(file) = &db.file {
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", file.display()));
            }
        } else {
            db.exec(&format!(
                "DROP SCHEMA \"{}\" CASCADE",
                db.schema.as_ref().unwrap()
            ))
            .await;
        }
    }
}
