//! Every statement of the ordering and dispatch paths is served by an index, on SQLite and on
//! PostgreSQL, whatever the size of the tables: the paths run against a real database, and the
//! plan of each statement they ran is checked for a full scan of a table that grows with the
//! orders.
//!
//! SQLite: the statements are captured as the store runs them (sqlx's statement log), then
//! explained (`EXPLAIN QUERY PLAN`); its planner picks an index whenever one serves, so a plain
//! `SCAN table` means none does. PostgreSQL: the store's own sessions load `auto_explain`,
//! which sends the plan of every statement as it runs (with the real parameter types) to the
//! client, with sequential scans priced out (`enable_seqscan = off`): a `Seq Scan` left in a
//! plan means no index could serve it, not that the table was small (loading `auto_explain`
//! in a session needs a superuser, as the test databases here and in CI are).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use inventory_core::testkit::{self, TestStore};
use inventory_core::*;
use inventory_sql::SqlStore;
use tracing_subscriber::layer::SubscriberExt;

/// Tables that stay small whatever the traffic: scanning them is the right plan.
const SMALL: &[&str] = &["webhook_endpoints", "write_probe", "_sqlx_migrations"];

/// Statements (by their start) that read a whole table or index on purpose, with why.
const WHOLE_ON_PURPOSE: &[(&str, &str)] = &[
    (
        "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT",
        "the fan-out takes the oldest events of a queue that it empties: the first rows in id order",
    ),
    (
        "SELECT id FROM products ORDER BY id",
        "ledger pruning walks the catalogue, which grows with products, not orders",
    ),
    (
        "SELECT status, COUNT(*) FROM notifications GROUP BY status",
        "the outbox gauges count by status (the status index, never the rows): retention bounds it",
    ),
];

fn on_purpose(sql: &str) -> bool {
    WHOLE_ON_PURPOSE
        .iter()
        .any(|(start, _)| sql.starts_with(start))
}

/// Statements captured while `RECORDING` is on.
static SEEN: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());
/// PostgreSQL's `auto_explain` plans captured while `RECORDING` is on.
static PLANS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// The capture is global: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
static RECORDING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Records the SQL of every `sqlx::query` event.
struct Capture;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let target = event.metadata().target();
        if !RECORDING.load(std::sync::atomic::Ordering::SeqCst)
            || !matches!(target, "sqlx::query" | "sqlx::postgres::notice")
        {
            return;
        }
        #[derive(Default)]
        struct Fields {
            summary: String,
            statement: String,
            message: String,
        }
        impl tracing::field::Visit for Fields {
            fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
                match field.name() {
                    "summary" => self.summary = value.to_owned(),
                    "db.statement" => self.statement = value.to_owned(),
                    "message" => self.message = value.to_owned(),
                    _ => {}
                }
            }
            fn record_debug(&mut self, _: &tracing::field::Field, _: &dyn std::fmt::Debug) {}
        }
        let mut f = Fields::default();
        event.record(&mut f);
        if target == "sqlx::postgres::notice" {
            if f.message.contains("\"Query Text\"") {
                PLANS.lock().unwrap().push(f.message);
            }
            return;
        }
        // The whole statement is `db.statement` when the summary shortened it.
        let sql = if f.statement.trim().is_empty() {
            f.summary
        } else {
            f.statement
        };
        SEEN.lock().unwrap().insert(sql.trim().to_owned());
    }
}

fn install() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
    });
}

/// The ordering and dispatch paths, once each: orders (one line, a basket, a key and its
/// replay, a refusal), a cancel, holds (checked out, released, expired), the outbox (claim,
/// heartbeat, sent, failed), events (fan-out, claim, outcomes), a buyer's order list (first
/// page and after a cursor), retention. Returns the statements they ran.
async fn run_paths(store: TestStore) -> BTreeSet<String> {
    let u = testkit::user(&store, "plans@example.com").await;
    let a = testkit::product(&store, "plan-a", 100).await;
    let b = testkit::product(&store, "plan-b", 100).await;
    store.set_low_stock_threshold(&a, Some(5)).await.unwrap();
    let hook = WebhookEndpoint::new(
        "https://hooks.example.com/in",
        EventType::ALL.to_vec(),
        now(),
    )
    .unwrap();
    store.create_webhook(&hook).await.unwrap();
    SEEN.lock().unwrap().clear();
    PLANS.lock().unwrap().clear();
    RECORDING.store(true, std::sync::atomic::Ordering::SeqCst);

    let one = store.place_order(&testkit::order(&u, &a, 1)).await.unwrap();
    store
        .place_order(&testkit::basket(&u, &[(&a, 1), (&b, 2)]))
        .await
        .unwrap();
    let keyed = testkit::order(&u, &b, 1).with_idempotency_key(IdempotencyKey::new("k").unwrap());
    store.place_order(&keyed).await.unwrap();
    assert!(store.place_order(&keyed).await.unwrap().replayed);
    store
        .place_order(&testkit::order(&u, &a, 1000))
        .await
        .unwrap_err();
    // Concurrent orders, so the group-commit writer batches several.
    let many: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            let new = testkit::order(&u, &b, 1);
            async move { store.place_order(&new).await }
        })
        .collect();
    for r in futures::future::join_all(many).await {
        r.unwrap();
    }
    store
        .cancel_order(one.order.id, "plans", now())
        .await
        .unwrap();
    let ttl = Duration::from_secs(60);
    let held = store
        .reserve(&testkit::hold(&u, &[(&a, 1)], ttl))
        .await
        .unwrap();
    store
        .checkout_reservation(held.id, &held.order(now()))
        .await
        .unwrap();
    let released = store
        .reserve(&testkit::hold(&u, &[(&b, 1)], ttl))
        .await
        .unwrap();
    store.release_reservation(released.id, now()).await.unwrap();
    store
        .reserve(&testkit::hold(&u, &[(&b, 1)], ttl))
        .await
        .unwrap();
    store
        .expire_reservations(now() + chrono::Duration::minutes(5), 10)
        .await
        .unwrap();

    let lease = Duration::from_secs(30);
    let claimed = store.claim_due("plans", now(), lease, 10).await.unwrap();
    assert!(
        claimed.len() >= 2,
        "confirmations to send: {}",
        claimed.len()
    );
    store
        .extend_lease(
            claimed[0].id,
            "plans",
            now() + chrono::Duration::seconds(30),
        )
        .await
        .unwrap();
    store
        .mark_sent(claimed[0].id, "plans", now())
        .await
        .unwrap();
    store
        .mark_failed(claimed[1].id, "plans", "421 later", Some(now()))
        .await
        .unwrap();
    store.notification_for_order(one.order.id).await.unwrap();
    store.notification_counts().await.unwrap();

    store
        .fan_out(&[Destination::PubSub], now(), 100)
        .await
        .unwrap();
    for destination in store.due_destinations(now()).await.unwrap() {
        let mine = store
            .claim_deliveries(&destination, "plans", now(), lease, 10)
            .await
            .unwrap();
        let outcomes: Vec<(Uuid, Attempt)> =
            mine.iter().map(|d| (d.id, Attempt::Delivered)).collect();
        store
            .finish_deliveries("plans", &outcomes, now())
            .await
            .unwrap();
    }

    let first = store
        .list_orders_for_user(u.id, Page::first(3).unwrap())
        .await
        .unwrap();
    let cursor = first.last().unwrap().id.to_string();
    store
        .list_orders_for_user(u.id, Page::first(3).unwrap().after(cursor))
        .await
        .unwrap();
    store.get_order(one.order.id).await.unwrap();
    store.get_product(&a).await.unwrap();

    let later = now() + chrono::Duration::days(60);
    store.expire_idempotency_keys(later, 10).await.unwrap();
    store.prune_notifications(later, 10).await.unwrap();
    store.prune_deliveries(later, 10).await.unwrap();
    store.prune_ledger(later, 10).await.unwrap();
    store.remove_failed_notifications(None, 10).await.unwrap();

    RECORDING.store(false, std::sync::atomic::Ordering::SeqCst);
    let seen = std::mem::take(&mut *SEEN.lock().unwrap());
    // Never a pass on nothing: the paths above ran these.
    for needle in [
        "INSERT INTO orders",
        "FROM notifications",
        "event_deliveries",
        "reservations",
        "stock_ledger",
    ] {
        assert!(
            seen.iter().any(|s| s.contains(needle)),
            "no statement with {needle:?} captured: {seen:#?}"
        );
    }
    seen
}

/// Statements a planner has nothing to say about.
fn plannable(sql: &str) -> bool {
    let head = sql
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    matches!(
        head.as_str(),
        "SELECT" | "INSERT" | "UPDATE" | "DELETE" | "WITH"
    ) && !sql.trim_end_matches(';').contains(';')
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_ordering_and_dispatch_use_indexes() {
    let _serial = SERIAL.lock().await;
    install();
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "sqlite://{}?mode=rwc",
        dir.path().join("plans.db").display()
    );
    let store = Arc::new(SqlStore::connect(&url).await.unwrap());
    let seen = run_paths(store.clone() as TestStore).await;
    drop(store);

    use sqlx::{Connection, Row};
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let tables: Vec<String> = sqlx::query("SELECT name FROM sqlite_master WHERE type = 'table'")
        .fetch_all(&mut conn)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect();
    let mut scans = Vec::new();
    let mut explained = 0;
    for sql in seen.iter().filter(|s| plannable(s)) {
        let plan = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .fetch_all(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("explain {sql}: {e}"));
        explained += 1;
        for row in plan {
            let detail: String = row.get("detail");
            // `SEARCH t USING INDEX i (a=?)` seeks; `SCAN t` reads the whole table, and
            // `SCAN t USING INDEX i` the whole index.
            let Some(rest) = detail.strip_prefix("SCAN ") else {
                continue;
            };
            let table = rest.split_whitespace().next().unwrap_or_default();
            // Any `SCAN` of a growing table reads all of it (through an index or not).
            if tables.iter().any(|t| t == table) && !SMALL.contains(&table) && !on_purpose(sql) {
                scans.push(format!("{detail}\n    in: {sql}"));
            }
        }
    }
    assert!(explained >= 20, "only {explained} statements explained");
    assert!(scans.is_empty(), "full table scans:\n{}", scans.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_postgres, ignore = "INVENTORY_TEST_POSTGRES_URL not set")]
async fn postgres_ordering_and_dispatch_use_indexes() {
    let _serial = SERIAL.lock().await;
    install();
    let url = inventory_sql::testing::postgres_url().expect("INVENTORY_TEST_POSTGRES_URL");
    let schema = inventory_sql::testing::fresh_schema(&url).await;
    // Every session of the store explains what it runs, to this client.
    let url = format!(
        "{}&options=-c%20session_preload_libraries%3Dauto_explain\
         %20-c%20auto_explain.log_min_duration%3D0\
         %20-c%20auto_explain.log_level%3Dnotice%20-c%20auto_explain.log_format%3Djson\
         %20-c%20enable_seqscan%3Doff",
        inventory_sql::testing::url_with_schema(&url, &schema)
    );
    let store = Arc::new(SqlStore::connect(&url).await.unwrap());
    let seen = run_paths(store.clone() as TestStore).await;
    drop(store);
    let plans = std::mem::take(&mut *PLANS.lock().unwrap());

    // The queues' partial indexes hold only the work in flight (pending notifications and
    // deliveries, active holds), never the history: walking one is bounded by the backlog.
    use sqlx::Connection as _;
    let mut conn = sqlx::PgConnection::connect(&inventory_sql::testing::url_with_schema(
        &inventory_sql::testing::postgres_url().unwrap(),
        &schema,
    ))
    .await
    .unwrap();
    let queues: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE schemaname = $1 \
         AND (indexdef LIKE '%WHERE (status = ''pending''%' OR indexdef LIKE '%WHERE (status = ''active''%')",
    )
    .bind(&schema)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert!(queues.len() >= 3, "the queue indexes: {queues:?}");
    let mut scans = Vec::new();
    let mut explained = BTreeSet::new();
    for plan in &plans {
        let json = &plan[plan.find('{').expect("a JSON plan")..];
        let plan: serde_json::Value = serde_json::from_str(json).expect("auto_explain's JSON");
        let text = plan["Query Text"]
            .as_str()
            .unwrap_or_default()
            .trim()
            .to_owned();
        explained.insert(text.clone());
        if on_purpose(&text) {
            continue;
        }
        let mut nodes = vec![&plan["Plan"]];
        while let Some(node) = nodes.pop() {
            nodes.extend(node["Plans"].as_array().into_iter().flatten());
            let Some(table) = node["Relation Name"].as_str() else {
                continue;
            };
            let kind = node["Node Type"].as_str().unwrap_or_default();
            // A seek has a condition on an index; a scan without one reads the whole table
            // (`Seq Scan`, priced out here, so no index could serve) or the whole index, which
            // is fine only for a queue's index.
            let cond = node["Index Cond"]
                .as_str()
                .or(node["Recheck Cond"].as_str())
                .unwrap_or_default();
            let filter = node["Filter"].as_str().unwrap_or_default();
            // A range seek that filters on an equality walks a range for rows an index on
            // that column would find directly (a buyer's orders found through the primary
            // key, say): a missing index, as bad as a scan once the range is the table.
            let seeks = !cond.is_empty() && (cond.contains(" = ") || !filter.contains(" = "));
            let queue = node["Index Name"]
                .as_str()
                .is_some_and(|i| queues.iter().any(|q| q == i));
            if kind.ends_with("Scan") && !SMALL.contains(&table) && !seeks && !queue {
                scans.push(format!("{kind} on {table} ({node})\n    in: {text}"));
            }
        }
    }
    // Each statement the paths ran came with its plan.
    let unexplained: Vec<&String> = seen
        .iter()
        .filter(|s| plannable(s) && !explained.contains(s.as_str()))
        .collect();
    assert!(
        explained.len() >= 20,
        "only {} plans: {plans:#?}",
        explained.len()
    );
    assert!(
        unexplained.is_empty(),
        "statements without a plan: {unexplained:#?}"
    );
    assert!(
        scans.is_empty(),
        "whole-table reads:\n{}",
        scans.join("\n\n")
    );
}
