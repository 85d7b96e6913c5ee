//! Email delivery under faults of the mail server and the database, with the real server
//! process, a real SMTP peer over TCP and real databases. Each test prints one line
//! `FAULT <name>: ...` with emails lost (must be 0), duplicates and time to recover; run
//! `cargo test --all-features --test faults -- --nocapture` to see them.

use inventory_e2e as support;

use std::time::{Duration, Instant};

use inventory_mail::testing::SmtpSink;
use serde_json::json;
use support::{App, Client, Proc, set};

const WAIT: Duration = Duration::from_secs(60);

/// A server on SQLite mailing to `port`, with fast retries and a short SMTP timeout.
fn fast_env(dir: &std::path::Path, port: u16) -> Vec<(&'static str, String)> {
    let mut env = support::sqlite_env(dir, port);
    set(
        &mut env,
        "SEED_PRODUCTS",
        r#"[{"product_id":"product-1","product_name":"Demo Product","quantity":100000}]"#,
    );
    set(&mut env, "SMTP_TIMEOUT_SECS", "1");
    set(&mut env, "DISPATCHER_RETRY_BASE_MS", "200");
    set(&mut env, "DISPATCHER_RETRY_MAX_SECS", "1");
    set(&mut env, "DISPATCHER_MAX_ATTEMPTS", "1000");
    set(&mut env, "DISPATCHER_LEASE_SECS", "2");
    set(&mut env, "DISPATCHER_SWEEP_MS", "200");
    env
}

async fn place(api: &Client, token: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        let (s, b) = api
            .post(
                "/orders/place",
                Some(token),
                json!({"product_id": "product-1"}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        ids.push(b["order_id"].as_str().unwrap().to_owned());
    }
    ids
}

/// Waits until the sink holds `n` distinct messages; returns how long that took.
async fn delivered(sink: &SmtpSink, n: usize) -> Duration {
    let start = Instant::now();
    while sink.distinct_and_duplicates().0 < n {
        assert!(
            start.elapsed() < WAIT,
            "only {} of {n} emails arrived",
            sink.distinct_and_duplicates().0
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Waits until the mail-flow gauge shows the failures (mail is visibly not flowing).
async fn until_failing(api: &Client) {
    let start = Instant::now();
    while support::metric(api, "inventory_mail_consecutive_failures").await < 3.0 {
        assert!(start.elapsed() < WAIT, "the failures never showed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A TCP server on `port` that accepts and then says only `greeting` (maybe nothing).
/// Dropping the handle closes it and every connection it holds.
struct Silent(tokio::task::JoinHandle<()>);

impl Silent {
    async fn start(port: u16, greeting: &'static [u8]) -> Silent {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        Silent(tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((mut socket, _)) = listener.accept().await {
                let _ = socket.write_all(greeting).await;
                held.push(socket);
            }
        }))
    }

    async fn stop(self) {
        self.0.abort();
        let _ = self.0.await;
    }
}

async fn silent_then_recovery(name: &str, greeting: &'static [u8]) {
    let dir = tempfile::tempdir().unwrap();
    let port = support::closed_port();
    let silent = Silent::start(port, greeting).await;
    let app = App::start(&fast_env(dir.path(), port)).await;
    let api = app.api.clone();
    let token = api.token("silent@example.com", "reliable-password").await;
    place(&api, &token, 20).await;
    until_failing(&api).await;
    silent.stop().await;
    let sink = SmtpSink::start_on(
        std::net::TcpListener::bind(("127.0.0.1", port)).unwrap(),
        None,
    )
    .unwrap();
    let recovered = delivered(&sink, 20).await;
    let (distinct, duplicates) = sink.distinct_and_duplicates();
    assert_eq!(distinct, 20, "no email lost");
    assert_eq!(duplicates, 0, "a silent server never took a message");
    eprintln!(
        "FAULT {name}: 20 orders, lost 0, duplicates {duplicates}, delivered {:.1} s after the server came back",
        recovered.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_server_that_accepts_and_never_answers() {
    silent_then_recovery("accepts and never answers", b"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_server_that_stalls_after_its_banner() {
    silent_then_recovery("stalls after the banner", b"220 stalled.example ESMTP\r\n").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_server_that_stalls_after_data() {
    let sink = SmtpSink::start().unwrap();
    sink.set_delay(Duration::from_secs(3));
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&fast_env(dir.path(), sink.addr().port())).await;
    let api = app.api.clone();
    let token = api.token("stall@example.com", "reliable-password").await;
    place(&api, &token, 20).await;
    until_failing(&api).await;
    sink.set_delay(Duration::ZERO);
    let recovered = delivered(&sink, 20).await;
    let (distinct, duplicates) = sink.distinct_and_duplicates();
    assert_eq!(distinct, 20, "no email lost");
    // The server took each stalled message in the end, after our timeout gave up on it: those
    // arrive twice, recognisable by their Message-ID. A copy needs an attempt that timed out,
    // so there are at most as many duplicates as attempts given up on (retried or failed).
    let given_up = support::metric(&api, "inventory_notifications_retried_total").await
        + support::metric(&api, "inventory_notifications_failed_total").await;
    assert!(
        given_up >= 3.0,
        "the stall made attempts time out ({given_up})"
    );
    assert!(
        duplicates as f64 <= given_up,
        "{duplicates} duplicates from {given_up} attempts given up on"
    );
    eprintln!(
        "FAULT stalls after DATA: 20 orders, lost 0, duplicates {duplicates} (stalled sends the server completed after our timeout), all delivered {:.1} s after the stall ended",
        recovered.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_refusals_for_30_seconds_then_recovery() {
    let sink = SmtpSink::start().unwrap();
    sink.set_tempfail(true);
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&fast_env(dir.path(), sink.addr().port())).await;
    let api = app.api.clone();
    let token = api.token("later@example.com", "reliable-password").await;
    place(&api, &token, 20).await;
    until_failing(&api).await;
    // The outage lasts 30 seconds (its length, not a wait for something to happen).
    tokio::time::sleep(Duration::from_secs(30)).await;
    sink.set_tempfail(false);
    let recovered = delivered(&sink, 20).await;
    let (distinct, duplicates) = sink.distinct_and_duplicates();
    assert_eq!((distinct, duplicates), (20, 0), "all delivered, none twice");
    let (_, order) = api.get("/orders?limit=1", Some(&token)).await;
    let id = order[0]["order_id"].as_str().unwrap().to_owned();
    let view = api
        .wait_until(&format!("/orders/{id}"), Some(&token), |b| {
            b["notification"]["status"] == "sent"
        })
        .await;
    assert_eq!(view["status"], "confirmed");
    assert!(
        view["notification"]["last_error"].is_null(),
        "the 451 is not kept on a sent notification: {view}"
    );
    eprintln!(
        "FAULT 451 for 30 s: 20 orders, lost 0, duplicates 0, all delivered {:.1} s after the refusals ended",
        recovered.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_refusal_fails_only_that_message() {
    let sink = SmtpSink::start().unwrap();
    sink.reject("refused@example.com");
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&fast_env(dir.path(), sink.addr().port())).await;
    let api = app.api.clone();
    let refused = api.token("refused@example.com", "reliable-password").await;
    let welcome = api.token("welcome@example.com", "reliable-password").await;
    let bad = place(&api, &refused, 5).await;
    place(&api, &welcome, 5).await;
    delivered(&sink, 5).await;
    for id in &bad {
        let view = api
            .wait_until(&format!("/orders/{id}"), Some(&refused), |b| {
                b["notification"]["status"] == "failed"
            })
            .await;
        assert_eq!(
            view["status"], "pending",
            "an order whose email failed is not confirmed"
        );
        assert!(
            view["notification"]["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("550")),
            "{view}"
        );
        assert_eq!(view["notification"]["attempts"], 1, "a 550 is not retried");
    }
    let (distinct, duplicates) = sink.distinct_and_duplicates();
    assert_eq!((distinct, duplicates), (5, 0));
    eprintln!(
        "FAULT 550: 10 orders, 5 delivered, 5 failed after 1 attempt with the reply kept, lost 0, duplicates 0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_killed_mid_burst() {
    let sink = SmtpSink::start().unwrap();
    sink.set_delay(Duration::from_millis(20));
    let dir = tempfile::tempdir().unwrap();
    let env = fast_env(dir.path(), sink.addr().port());
    let mut server = Proc::start("server", &env);
    let api = Client::new(&server.url);
    let token = api.token("burst@example.com", "reliable-password").await;
    let placed = {
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (api, token) = (api.clone(), token.clone());
                tokio::spawn(async move { place(&api, &token, 50).await.len() })
            })
            .collect();
        let mut n = 0;
        for t in tasks {
            n += t.await.unwrap();
        }
        n
    };
    assert_eq!(placed, 200);
    let start = Instant::now();
    while sink.messages().len() < 10 {
        assert!(start.elapsed() < WAIT);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.kill(); // SIGKILL, with sends in flight
    let at_kill = sink.distinct_and_duplicates().0;
    assert!(at_kill < 200, "killed before the end ({at_kill})");
    let restarted = Instant::now();
    let _again = Proc::start("server", &env);
    delivered(&sink, 200).await;
    let recovered = restarted.elapsed();
    let (distinct, duplicates) = sink.distinct_and_duplicates();
    assert_eq!(distinct, 200, "no email lost");
    // Only sends in flight at the kill can repeat: at most DISPATCHER_CONCURRENCY (16).
    assert!(duplicates <= 16, "{duplicates} duplicates");
    eprintln!(
        "FAULT SIGKILL mid-burst: 200 orders, {at_kill} delivered before the kill, lost 0, duplicates {duplicates}, all delivered {:.1} s after the restart (lease 2 s)",
        recovered.as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn postgres_outage_under_load() {
    let sink = SmtpSink::start().unwrap();
    let (mut env, proxy) = support::proxied_postgres_env(sink.addr().port())
        .await
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    set(&mut env, "DATABASE_ACQUIRE_TIMEOUT_MS", "500");
    set(
        &mut env,
        "SEED_PRODUCTS",
        r#"[{"product_id":"product-1","product_name":"Demo Product","quantity":100000}]"#,
    );
    set(&mut env, "DISPATCHER_LEASE_SECS", "2");
    set(&mut env, "DISPATCHER_SWEEP_MS", "200");
    let app = App::start(&env).await;
    let api = app.api.clone();
    let token = api.token("pg@example.com", "reliable-password").await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (api, token, stop) = (api.clone(), token.clone(), stop.clone());
            tokio::spawn(async move {
                let (mut ok, mut refused) = (0usize, 0usize);
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    let (s, _) = api
                        .post(
                            "/orders/place",
                            Some(&token),
                            json!({"product_id": "product-1"}),
                        )
                        .await;
                    match s {
                        200 => ok += 1,
                        503 => refused += 1,
                        other => panic!("unexpected {other} during the outage"),
                    }
                }
                (ok, refused)
            })
        })
        .collect();
    sink.wait_for(50, WAIT).await;
    proxy.cut();
    // The outage lasts 3 seconds (its length, not a wait for something to happen).
    tokio::time::sleep(Duration::from_secs(3)).await;
    proxy.restore();
    let restored = Instant::now();
    api.wait_until("/ready", None, |b| b["status"] == "ready")
        .await;
    let before = sink.distinct_and_duplicates().0;
    // Load continues until mail flows again after the outage.
    let start = Instant::now();
    while sink.distinct_and_duplicates().0 < before + 50 {
        assert!(start.elapsed() < WAIT, "mail did not resume");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (mut accepted, mut refused) = (0, 0);
    for t in load {
        let (ok, no) = t.await.unwrap();
        accepted += ok;
        refused += no;
    }
    // Every order the database holds gets its email (an order can commit without its 200
    // reaching the client when the connection is cut, so count the store).
    let admin = api.token("admin@example.com", "admin-password").await;
    let (_, all) = api.get("/orders?all=true&limit=1000", Some(&admin)).await;
    let mut orders = all.as_array().unwrap().len();
    let mut offset = 1000;
    while orders == offset {
        let (_, more) = api
            .get(
                &format!("/orders?all=true&limit=1000&offset={offset}"),
                Some(&admin),
            )
            .await;
        orders += more.as_array().unwrap().len();
        offset += 1000;
    }
    assert!(orders >= accepted, "every accepted order is stored");
    delivered(&sink, orders).await;
    let recovered = restored.elapsed();
    let (distinct, duplicates) = sink.distinct_and_duplicates();
    assert_eq!(distinct, orders, "no email lost");
    eprintln!(
        "FAULT PostgreSQL outage (3 s) under load: {orders} orders ({accepted} answered 200, {refused} answered 503), lost 0, duplicates {duplicates}, every email out {:.1} s after the database returned",
        recovered.as_secs_f64()
    );
}

/// What a login, a registration and a token check answer while the store cannot answer.
async fn auth_answers(api: &Client, token: &str) -> Vec<(&'static str, support::Reply)> {
    let login = json!({"email": "outage@example.com", "password": "outage-password"});
    let fresh = json!({"email": "new-user@example.com", "password": "new-user-password"});
    vec![
        (
            "login",
            api.send(reqwest::Method::POST, "/auth/login", &[], None, Some(login))
                .await,
        ),
        (
            "register",
            api.send(
                reqwest::Method::POST,
                "/auth/register",
                &[],
                None,
                Some(fresh),
            )
            .await,
        ),
        (
            "token check",
            api.send(reqwest::Method::GET, "/orders", &[], Some(token), None)
                .await,
        ),
    ]
}

/// A store failure during authentication is the service's fault, so it is a retryable 503
/// with `Retry-After`: never a 401 that sends a user to reset a good password, nor a 409 that
/// says an unregistered address is taken. (The upgrade bug of issue 29 answered 401.)
fn assert_unavailable(answers: Vec<(&'static str, support::Reply)>, label: &str) {
    for (what, reply) in answers {
        assert_eq!(
            reply.status, 503,
            "{label}: {what} while the store fails: {}",
            reply.text
        );
        assert_eq!(reply.json()["code"], "unavailable", "{label}: {what}");
        assert!(
            reply.headers.contains_key("retry-after"),
            "{label}: {what} has no Retry-After"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn postgres_cut_during_login_is_503_not_401() {
    let sink = SmtpSink::start().unwrap();
    let (mut env, proxy) = support::proxied_postgres_env(sink.addr().port())
        .await
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    set(&mut env, "DATABASE_ACQUIRE_TIMEOUT_MS", "500");
    let app = App::start(&env).await;
    let api = app.api.clone();
    let token = api.token("outage@example.com", "outage-password").await;
    proxy.cut();
    assert_unavailable(auth_answers(&api, &token).await, "PostgreSQL cut");
    proxy.restore();
    api.wait_until("/ready", None, |b| b["status"] == "ready")
        .await;
    let (status, _) = api
        .post(
            "/auth/login",
            None,
            json!({"email": "outage@example.com", "password": "outage-password"}),
        )
        .await;
    assert_eq!(status, 200, "login once the database is back");
    let (status, _) = api.get("/orders", Some(&token)).await;
    assert_eq!(
        status, 200,
        "the token still works once the database is back"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_users_table_unreadable_during_login_is_503_not_401() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = fast_env(dir.path(), sink.addr().port());
    let app = App::start(&env).await;
    let api = app.api.clone();
    let token = api.token("outage@example.com", "outage-password").await;
    // Another writer (an operator's sqlite3, a half-applied manual change) moves the table away:
    // every statement on `users` now fails inside SQLite.
    let db = dir.path().join("e2e.db");
    run_sql(&db, "ALTER TABLE users RENAME TO users_moved").await;
    assert_unavailable(auth_answers(&api, &token).await, "SQLite table moved");
    run_sql(&db, "ALTER TABLE users_moved RENAME TO users").await;
    let (status, body) = api
        .post(
            "/auth/login",
            None,
            json!({"email": "outage@example.com", "password": "outage-password"}),
        )
        .await;
    assert_eq!(status, 200, "login once the table is back: {body}");
    app.stop().await;
}

/// Runs one statement on the SQLite file through a connection of its own (not the service's).
async fn run_sql(db: &std::path::Path, sql: &'static str) {
    use sqlx::Connection as _;
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the database file");
    sqlx::query(sql).execute(&mut conn).await.expect(sql);
    conn.close().await.expect("close");
}
