//! Faults and scale-out, with real processes, a real SMTP server and real databases:
//! nothing accepted is lost, nothing is oversold, no email goes out twice outside a crash.

use inventory_e2e as support;

use std::collections::HashSet;
use std::time::Duration;

use inventory_mail::testing::SmtpSink;
use serde_json::json;
use support::{App, Client, Proc, set};

const WAIT: Duration = Duration::from_secs(60);

async fn tokens(api: &Client, n: usize, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(
            api.token(&format!("{prefix}{i}@example.com"), "reliable-password")
                .await,
        );
    }
    out
}

/// All orders, as an admin sees them.
async fn all_orders(api: &Client, admin: &str) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    for offset in (0..).step_by(1000) {
        let (s, page) = api
            .get(
                &format!("/orders?all=true&limit=1000&offset={offset}"),
                Some(admin),
            )
            .await;
        assert_eq!(s, 200, "{page}");
        let page = page.as_array().unwrap().clone();
        let done = page.len() < 1000;
        out.extend(page);
        if done {
            break;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn smtp_outage_then_recovery_delivers_everything_once() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::closed_port();
    let mut env = support::sqlite_env(dir.path(), port);
    set(
        &mut env,
        "SEED_PRODUCTS",
        r#"[{"product_id":"product-1","product_name":"Demo Product","quantity":100}]"#,
    );
    set(&mut env, "DISPATCHER_RETRY_BASE_MS", "200");
    set(&mut env, "DISPATCHER_RETRY_MAX_SECS", "1");
    set(&mut env, "DISPATCHER_MAX_ATTEMPTS", "100");
    let app = App::start(&env).await;
    let api = app.api.clone();
    let users = tokens(&api, 5, "outage").await;
    let admin = api.token("admin@example.com", "admin-password").await;
    for i in 0..50 {
        let (s, b) = api
            .post(
                "/orders/place",
                Some(&users[i % 5]),
                json!({"product_id": "product-1"}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
    }
    // The retry window has begun: sends failed and were rescheduled.
    let deadline = tokio::time::Instant::now() + WAIT;
    while support::metric(&api, "inventory_notifications_retried_total").await < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "no retry scheduled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let sink = SmtpSink::start_on(
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
        None,
    )
    .unwrap();
    assert_eq!(sink.wait_for(50, WAIT).await, 50, "all 50 emails arrive");
    let orders = api
        .wait_until("/orders?all=true&limit=1000", Some(&admin), |b| {
            b.as_array()
                .is_some_and(|o| o.len() == 50 && o.iter().all(|o| o["status"] == "confirmed"))
        })
        .await;
    assert_eq!(orders.as_array().unwrap().len(), 50);
    let (distinct, duplicates) = sink.distinct_and_duplicates();
    assert_eq!((distinct, duplicates), (50, 0), "none twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_listener_killed_mid_batch_loses_nothing() {
    let sink = SmtpSink::start().unwrap();
    sink.set_delay(Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::sqlite_env(dir.path(), sink.addr().port());
    set(
        &mut env,
        "SEED_PRODUCTS",
        r#"[{"product_id":"product-1","product_name":"Demo Product","quantity":1000}]"#,
    );
    set(&mut env, "DISPATCHER_LEASE_SECS", "2");
    set(&mut env, "DISPATCHER_SWEEP_MS", "100");
    let mut server_env = env.clone();
    set(&mut server_env, "RUN_DISPATCHER", "false");
    let server = Proc::start("server", &server_env);
    let api = Client::new(&server.url);
    let users = tokens(&api, 4, "crash").await;
    for i in 0..120 {
        let (s, _) = api
            .post(
                "/orders/place",
                Some(&users[i % 4]),
                json!({"product_id": "product-1"}),
            )
            .await;
        assert_eq!(s, 200);
    }
    let listener_env: Vec<_> = env
        .iter()
        .filter(|(k, _)| *k != "SEED_PRODUCTS")
        .cloned()
        .collect();
    let mut first = Proc::start("listener", &listener_env);
    assert!(sink.wait_for(10, WAIT).await >= 10);
    first.kill(); // SIGKILL, mid-batch
    let at_crash = sink.messages().len();
    assert!(
        at_crash < 120,
        "the crash happened before the end ({at_crash})"
    );
    let _second = Proc::start("listener", &listener_env);
    let deadline = tokio::time::Instant::now() + WAIT;
    while sink.distinct_and_duplicates().0 < 120 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not every notification was delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (distinct, duplicates) = sink.distinct_and_duplicates();
    assert_eq!(distinct, 120, "every notification delivered");
    // Only sends in flight at the crash can repeat: at most one batch's concurrency.
    assert!(duplicates <= 16, "{duplicates} duplicates");
    eprintln!("listener crash: 120 delivered, {duplicates} duplicates (in flight at the crash)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn scale_out_on_postgres_two_servers_three_listeners() {
    let sink = SmtpSink::start().unwrap();
    let mut env = support::postgres_env(sink.addr().port())
        .await
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    let products: Vec<_> = (0..100)
        .map(|i| json!({"product_id": format!("p-{i}"), "product_name": format!("P{i}"), "quantity": 10}))
        .collect();
    set(
        &mut env,
        "SEED_PRODUCTS",
        serde_json::Value::Array(products).to_string(),
    );
    set(&mut env, "LOGIN_RATE_LIMIT", "off");
    // Five processes share 2 cores here: let a send that times out be retried within the wait.
    set(&mut env, "DISPATCHER_MAX_ATTEMPTS", "50");
    set(&mut env, "DISPATCHER_LEASE_SECS", "15");
    let mut server_env = env.clone();
    set(&mut server_env, "RUN_DISPATCHER", "false");
    let servers = [
        Proc::start("server", &server_env),
        Proc::start("server", &server_env),
    ];
    let listener_env: Vec<_> = env
        .iter()
        .filter(|(k, _)| *k != "SEED_PRODUCTS")
        .cloned()
        .collect();
    let _listeners: Vec<Proc> = (0..3)
        .map(|_| Proc::start("listener", &listener_env))
        .collect();
    let apis: Vec<Client> = servers.iter().map(|s| Client::new(&s.url)).collect();
    let users = tokens(&apis[0], 32, "scale").await;

    // 1,100 attempts, exactly 11 per product with 10 in stock: 1,000 must succeed.
    let tasks = users.iter().enumerate().map(|(c, token)| {
        let api = apis[c % 2].clone();
        let token = token.clone();
        tokio::spawn(async move {
            let (mut ok, mut refused) = (0, 0);
            for i in 0..1100 / 32 + 1 {
                let n = c + i * 32;
                if n >= 1100 {
                    break;
                }
                let (s, b) = api
                    .post(
                        "/orders/place",
                        Some(&token),
                        json!({"product_id": format!("p-{}", n % 100)}),
                    )
                    .await;
                match s {
                    200 => ok += 1,
                    409 => refused += 1,
                    other => panic!("unexpected {other}: {b}"),
                }
            }
            (ok, refused)
        })
    });
    let (mut ok, mut refused) = (0, 0);
    for t in futures::future::join_all(tasks).await {
        let (o, r) = t.unwrap();
        ok += o;
        refused += r;
    }
    assert_eq!((ok, refused), (1000, 100), "no oversell");
    let (_, products) = apis[1].get("/products?limit=1000", None).await;
    assert!(
        products
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["quantity"] == 0 && p["status"] == "out_of_stock")
    );
    let delivered = sink.wait_for(1000, WAIT).await;
    if delivered != 1000 {
        let warnings: Vec<String> = _listeners
            .iter()
            .flat_map(|l| {
                l.logs()
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .take(40)
            .collect();
        panic!(
            "{delivered} of 1000 emails delivered; listener warnings:\n{}",
            warnings.join("\n")
        );
    }
    let (distinct, duplicates) = sink.distinct_and_duplicates();
    assert_eq!((distinct, duplicates), (1000, 0), "no email twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn postgres_outage_gives_503_and_recovers_by_itself() {
    let sink = SmtpSink::start().unwrap();
    let (mut env, proxy) = support::proxied_postgres_env(sink.addr().port())
        .await
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    set(&mut env, "DATABASE_ACQUIRE_TIMEOUT_MS", "1000");
    let app = App::start(&env).await;
    let api = app.api.clone();
    let token = api.token("outage@example.com", "outage-password").await;
    let (s, _) = api
        .post(
            "/orders/place",
            Some(&token),
            json!({"product_id": "product-1"}),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(sink.wait_for(1, WAIT).await, 1);

    proxy.cut();
    for _ in 0..3 {
        let (s, b) = api
            .post(
                "/orders/place",
                Some(&token),
                json!({"product_id": "product-1"}),
            )
            .await;
        assert_eq!(s, 503, "{b}");
        assert!(b["detail"].is_string());
    }
    assert_eq!(api.get("/ready", None).await.0, 503);
    assert_eq!(
        api.get("/health", None).await.0,
        200,
        "the process itself is fine"
    );

    proxy.restore();
    api.wait_until("/ready", None, |b| b["status"] == "ready")
        .await;
    let (s, b) = api
        .post(
            "/orders/place",
            Some(&token),
            json!({"product_id": "product-1"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        sink.wait_for(2, WAIT).await,
        2,
        "the dispatcher recovered too"
    );
    // Nothing half-written: stock taken equals orders accepted.
    let (_, p) = api.get("/products/product-1", None).await;
    assert_eq!(p["quantity"], 3);
    let (_, mine) = api.get("/orders", Some(&token)).await;
    assert_eq!(mine.as_array().unwrap().len(), 2);
}

async fn restart_keeps_accepted_orders(env: Vec<(&'static str, String)>) {
    let mut env = env;
    set(
        &mut env,
        "SEED_PRODUCTS",
        r#"[{"product_id":"product-1","product_name":"Demo Product","quantity":1000}]"#,
    );
    let mut server = Proc::start("server", &env);
    let api = Client::new(&server.url);
    let users = tokens(&api, 8, "durable").await;
    let tasks = (0..80).map(|i| {
        let api = api.clone();
        let token = users[i % 8].clone();
        tokio::spawn(async move {
            api.post(
                "/orders/place",
                Some(&token),
                json!({"product_id": "product-1"}),
            )
            .await
        })
    });
    let mut accepted = HashSet::new();
    for t in futures::future::join_all(tasks).await {
        let (s, b) = t.unwrap();
        assert_eq!(s, 200);
        accepted.insert(b["order_id"].as_str().unwrap().to_owned());
    }
    server.kill(); // SIGKILL: no graceful anything
    let app = App::start(&env).await;
    let api = app.api.clone();
    let admin = api.token("admin@example.com", "admin-password").await;
    let ids: HashSet<String> = all_orders(&api, &admin)
        .await
        .iter()
        .map(|o| o["order_id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        accepted.is_subset(&ids),
        "{} accepted orders missing",
        accepted.difference(&ids).count()
    );
    let (_, p) = api.get("/products/product-1", None).await;
    assert_eq!(p["quantity"].as_u64().unwrap(), 1000 - ids.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn restart_after_sigkill_keeps_orders_on_sqlite() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    restart_keeps_accepted_orders(support::sqlite_env(dir.path(), sink.addr().port())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn restart_after_sigkill_keeps_orders_on_postgres() {
    let sink = SmtpSink::start().unwrap();
    let env = support::postgres_env(sink.addr().port())
        .await
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    restart_keeps_accepted_orders(env).await;
}
