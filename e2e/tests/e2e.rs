//! End-to-end: the service (in-process through its router, or the example server as a real
//! process where the process is what is tested), a real SMTP server, SQLite and PostgreSQL.

use inventory_e2e as support;

use std::time::Duration;

use inventory_mail::testing::SmtpSink;
use serde_json::json;
use support::{App, Client, Proc};

const WAIT: Duration = Duration::from_secs(15);

/// Register, login, order; the email arrives with the right recipient and product, and the
/// order becomes confirmed.
async fn happy_path(env: Vec<(&'static str, String)>, sink: &SmtpSink) {
    let app = App::start(&env).await;
    let api = app.api.clone();
    assert_eq!(
        api.get("/health", None).await,
        (200, json!({"status": "ok"}))
    );
    assert_eq!(api.get("/ready", None).await.0, 200);

    let creds = json!({"email": "Buyer@Example.com", "password": "MySecurePass123"});
    let (status, body) = api.post("/auth/register", None, creds.clone()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["message"], "user created");
    assert_eq!(body["token_type"], "bearer");
    let (status, body) = api.post("/auth/login", None, creds).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap().to_owned();

    let (status, order) = api
        .post(
            "/orders/place",
            Some(&token),
            json!({"buyer_email": "buyer@example.com", "product_id": "product-1"}),
        )
        .await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["status"], "pending");
    assert_eq!(order["buyer_email"], "buyer@example.com");
    assert_eq!(order["product_id"], "product-1");
    assert_eq!(order["quantity"], 1);
    let order_id = order["order_id"].as_str().unwrap().to_owned();

    assert_eq!(
        sink.wait_for(1, WAIT).await,
        1,
        "confirmation email arrives"
    );
    let mail = &sink.messages()[0];
    assert_eq!(mail.to, ["buyer@example.com"]);
    assert!(mail.text().contains("Demo Product") && mail.text().contains(&order_id));
    assert_eq!(
        mail.header("From").as_deref(),
        Some("Shop <shop@example.com>")
    );

    let confirmed = api
        .wait_until(&format!("/orders/{order_id}"), Some(&token), |b| {
            b["status"] == "confirmed"
        })
        .await;
    assert_eq!(confirmed["notification"]["status"], "sent");
    let (_, product) = api.get("/products/product-1", None).await;
    assert_eq!(
        product,
        json!({"product_id": "product-1", "product_name": "Demo Product", "quantity": 4, "reserved": 0, "status": "in_stock"})
    );
    let (_, mine) = api.get("/orders", Some(&token)).await;
    assert_eq!(mine.as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn order_flow_on_sqlite_with_smtp() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    happy_path(support::sqlite_env(dir.path(), sink.addr().port()), &sink).await;
}

#[tokio::test]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn order_flow_on_postgres_with_smtp() {
    let sink = SmtpSink::start().unwrap();
    let env = support::postgres_env(sink.addr().port())
        .await
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    happy_path(env, &sink).await;
}

/// The error answers of a test, checked together against the contract: each has its status,
/// its stable machine `code`, and a `detail` that says what went wrong in words (not empty,
/// not the code again), which the original's clients show.
#[derive(Default)]
struct Contract(Vec<(String, u16, &'static str, (u16, serde_json::Value))>);

impl Contract {
    fn expect(
        &mut self,
        what: impl Into<String>,
        status: u16,
        code: &'static str,
        answer: (u16, serde_json::Value),
    ) {
        self.0.push((what.into(), status, code, answer));
    }

    fn check(self) {
        assert!(!self.0.is_empty());
        for (what, status, code, (got, body)) in self.0 {
            assert_eq!(got, status, "{what}: {body}");
            assert_eq!(body["code"], code, "{what}: {body}");
            let detail = body["detail"].as_str().unwrap_or_default();
            assert!(
                detail.len() >= 8 && detail != code && detail.contains(' '),
                "{what}: the detail says nothing: {body}"
            );
        }
    }
}

/// Every error of the API contract, in one table: registration, login, ordering, someone
/// else's order, admin endpoints, transport errors, idempotency and cancellation.
#[tokio::test]
async fn every_error_of_the_contract() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::sqlite_env(dir.path(), sink.addr().port());
    env.push(("BODY_LIMIT_BYTES", "4096".into()));
    let app = App::start(&env).await;
    let api = app.api.clone();
    let ann = api.token("ann@example.com", "ann-password").await;
    let bob = api.token("bob@example.com", "bob-password").await;
    let admin = api.token("admin@example.com", "admin-password").await;
    let mut errors = Contract::default();

    // Registration.
    let (s, b) = api
        .post(
            "/auth/register",
            None,
            json!({"email": "ann@example.com", "password": "other-password"}),
        )
        .await;
    errors.expect("registering a taken address", 409, "already_exists", (s, b));
    assert_eq!(
        api.post(
            "/auth/login",
            None,
            json!({"email": "ann@example.com", "password": "ann-password"})
        )
        .await
        .0,
        200,
        "old password kept"
    );
    for bad in [
        json!({"email": "nope", "password": "long-enough"}),
        json!({"email": "x@example.com", "password": "short"}),
        json!({"email": "x@example.com"}),
    ] {
        let (s, b) = api.post("/auth/register", None, bad.clone()).await;
        errors.expect(format!("registering {bad}"), 422, "invalid_input", (s, b));
    }
    // Login.
    let (s, b) = api
        .post(
            "/auth/login",
            None,
            json!({"email": "ann@example.com", "password": "wrong-password"}),
        )
        .await;
    errors.expect("a wrong password", 401, "unauthorized", (s, b));
    errors.expect(
        "an unknown address",
        401,
        "unauthorized",
        api.post(
            "/auth/login",
            None,
            json!({"email": "ghost@example.com", "password": "whatever1"}),
        )
        .await,
    );

    // Orders.
    let place = |t: Option<String>, body: serde_json::Value| {
        let api = api.clone();
        async move { api.post("/orders/place", t.as_deref(), body).await }
    };
    errors.expect(
        "ordering without a token",
        401,
        "unauthorized",
        place(None, json!({"product_id": "product-1"})).await,
    );
    errors.expect(
        "ordering with a garbage token",
        401,
        "unauthorized",
        place(Some("garbage".into()), json!({"product_id": "product-1"})).await,
    );
    let (s, b) = place(
        Some(ann.clone()),
        json!({"buyer_email": "bob@example.com", "product_id": "product-1"}),
    )
    .await;
    errors.expect("ordering for someone else", 403, "forbidden", (s, b));
    let (s, b) = place(Some(ann.clone()), json!({"product_id": "no-such-product"})).await;
    errors.expect("ordering an unknown product", 404, "not_found", (s, b));
    for odd in [
        "../etc/passwd",
        "'; DROP TABLE products; --",
        "ünïcödé",
        "\"quoted\"",
    ] {
        errors.expect(
            format!("product id {odd}"),
            404,
            "not_found",
            place(Some(ann.clone()), json!({"product_id": odd})).await,
        );
    }
    for q in [
        json!(0),
        json!(-1),
        json!(10_000_000_000u64),
        json!("two"),
        json!(1.5),
    ] {
        let (s, b) = place(
            Some(ann.clone()),
            json!({"product_id": "product-1", "quantity": q}),
        )
        .await;
        errors.expect(format!("quantity {q}"), 422, "invalid_input", (s, b));
    }
    let (s, first) = place(Some(ann.clone()), json!({"product_id": "scarce"})).await;
    assert_eq!(s, 200);
    let (s, b) = place(Some(bob.clone()), json!({"product_id": "scarce"})).await;
    errors.expect("out of stock", 409, "out_of_stock", (s, b));
    let (s, _) = place(
        Some(admin.clone()),
        json!({"buyer_email": "bob@example.com", "product_id": "product-1"}),
    )
    .await;
    assert_eq!(s, 200, "admins may order for others");

    // Someone else's order is not found, not forbidden.
    let ann_order = first["order_id"].as_str().unwrap();
    errors.expect(
        "someone else's order",
        404,
        "not_found",
        api.get(&format!("/orders/{ann_order}"), Some(&bob)).await,
    );
    errors.expect(
        "an order id that is no UUID",
        404,
        "not_found",
        api.get("/orders/not-a-uuid", Some(&bob)).await,
    );
    assert_eq!(
        api.get(&format!("/orders/{ann_order}"), Some(&admin))
            .await
            .0,
        200
    );
    errors.expect(
        "cancelling someone else's order",
        404,
        "not_found",
        api.post(
            &format!("/orders/{ann_order}/cancel"),
            Some(&bob),
            json!({}),
        )
        .await,
    );
    assert_eq!(
        api.post(
            &format!("/orders/{ann_order}/cancel"),
            Some(&ann),
            json!({})
        )
        .await
        .0,
        200
    );
    errors.expect(
        "cancelling a cancelled order",
        409,
        "already_cancelled",
        api.post(
            &format!("/orders/{ann_order}/cancel"),
            Some(&ann),
            json!({}),
        )
        .await,
    );
    assert_eq!(
        api.get("/products/scarce", None).await.1["quantity"],
        1,
        "stock returned"
    );

    // Admin endpoints.
    let new_product = json!({"product_id": "p-new", "product_name": "New", "quantity": 3});
    errors.expect(
        "a buyer creating a product",
        403,
        "forbidden",
        api.post("/products", Some(&ann), new_product.clone()).await,
    );
    assert_eq!(
        api.post("/products", Some(&admin), new_product.clone())
            .await
            .0,
        201
    );
    errors.expect(
        "creating an existing product",
        409,
        "already_exists",
        api.post("/products", Some(&admin), new_product).await,
    );
    errors.expect(
        "a buyer restocking",
        403,
        "forbidden",
        api.post(
            "/products/p-new/restock",
            Some(&ann),
            json!({"quantity": 2}),
        )
        .await,
    );
    let (s, b) = api
        .post(
            "/products/p-new/restock",
            Some(&admin),
            json!({"quantity": 2}),
        )
        .await;
    assert_eq!((s, b["quantity"].as_u64()), (200, Some(5)));
    errors.expect(
        "a buyer listing every order",
        403,
        "forbidden",
        api.get("/orders?all=true", Some(&ann)).await,
    );
    errors.expect(
        "a page of zero",
        422,
        "invalid_input",
        api.get("/orders?limit=0", Some(&ann)).await,
    );

    // Transport-level errors are JSON too.
    let raw = |body: Vec<u8>, ctype: &'static str| {
        let api = api.clone();
        async move {
            let r = api
                .request(
                    reqwest::Method::POST,
                    "/auth/login",
                    &[("content-type", ctype)],
                    body,
                )
                .await;
            let json: serde_json::Value = serde_json::from_str(&r.text).expect("JSON body");
            (r.status, json)
        }
    };
    let (s, b) = raw(vec![b'x'; 10_000], "application/json").await;
    errors.expect("a body over the limit", 413, "payload_too_large", (s, b));
    let (s, b) = raw(b"{\"email\": ".to_vec(), "application/json").await;
    errors.expect("malformed JSON", 422, "invalid_input", (s, b));
    let (s, b) = raw(
        b"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".repeat(40),
        "application/json",
    )
    .await;
    assert!((400..500).contains(&s), "deep nesting: {s} {b}");
    let code = if s == 422 {
        "invalid_input"
    } else {
        "bad_request"
    };
    errors.expect("deep nesting", s, code, (s, b));
    let (s, b) = raw(b"email=a".to_vec(), "application/x-www-form-urlencoded").await;
    errors.expect(
        "a form instead of JSON",
        415,
        "unsupported_media_type",
        (s, b),
    );
    errors.expect(
        "an unknown route",
        404,
        "not_found",
        api.get("/no/such/route", None).await,
    );
    errors.expect(
        "GET on a POST route",
        405,
        "method_not_allowed",
        api.get("/orders/place", None).await,
    );
    errors.expect(
        "DELETE on /health",
        405,
        "method_not_allowed",
        api.call(reqwest::Method::DELETE, "/health", None, None)
            .await,
    );

    // Idempotency keys and cancellation.
    let keyed = |quantity: u32| {
        let (api, token) = (api.clone(), ann.clone());
        async move {
            let r = api
                .send(
                    reqwest::Method::POST,
                    "/orders/place",
                    &[("idempotency-key", "contract-1")],
                    Some(&token),
                    Some(json!({"product_id": "product-1", "quantity": quantity})),
                )
                .await;
            (r.status, r.json())
        }
    };
    let (s, first) = keyed(1).await;
    assert_eq!(s, 200, "{first}");
    errors.expect(
        "a key reused with other contents",
        409,
        "idempotency_key_reused",
        keyed(2).await,
    );
    let cancel = format!("/orders/{}/cancel", first["order_id"].as_str().unwrap());
    assert_eq!(api.post(&cancel, Some(&ann), json!({})).await.0, 200);
    errors.expect(
        "cancelling twice",
        409,
        "already_cancelled",
        api.post(&cancel, Some(&ann), json!({})).await,
    );
    errors.check();
}

#[tokio::test]
async fn idempotency_key_over_http() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&support::sqlite_env(dir.path(), sink.addr().port())).await;
    let api = app.api.clone();
    let token = api.token("idem@example.com", "idem-password").await;
    let send = |quantity: u32| {
        let api = api.clone();
        let token = token.clone();
        async move {
            let r = api
                .send(
                    reqwest::Method::POST,
                    "/orders/place",
                    &[("idempotency-key", "order-42")],
                    Some(&token),
                    Some(json!({"product_id": "product-1", "quantity": quantity})),
                )
                .await;
            (r.status, r.json())
        }
    };
    let (a, b) = tokio::join!(send(2), send(2));
    assert_eq!((a.0, b.0), (200, 200));
    assert_eq!(a.1["order_id"], b.1["order_id"], "one order for one key");
    assert_eq!(send(3).await.0, 409, "same key, other contents");
    assert_eq!(api.get("/products/product-1", None).await.1["quantity"], 3);
    assert_eq!(sink.wait_for(1, WAIT).await, 1);
}

#[tokio::test]
async fn docs_metrics_and_graceful_shutdown() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Proc::start(
        "server",
        &support::sqlite_env(dir.path(), sink.addr().port()),
    );
    let api = Client::new(&server.url);
    let token = api.token("m@example.com", "metrics-password").await;
    assert_eq!(
        api.post(
            "/orders/place",
            Some(&token),
            json!({"product_id": "product-1"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        api.post(
            "/orders/place",
            Some(&token),
            json!({"product_id": "product-1", "quantity": 99})
        )
        .await
        .0,
        409
    );
    sink.wait_for(1, WAIT).await;

    let (s, spec) = api.get("/openapi.json", None).await;
    assert_eq!(s, 200);
    for path in [
        "/auth/register",
        "/auth/login",
        "/orders/place",
        "/orders/{id}",
        "/products",
        "/health",
        "/ready",
    ] {
        assert!(spec["paths"][path].is_object(), "{path} documented");
    }
    let docs = api
        .http
        .get(format!("{}/docs/", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status().as_u16(), 200);
    assert!(docs.text().await.unwrap().contains("swagger-ui"));

    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for needle in [
        "http_requests_total{method=\"POST\",route=\"/orders/place\",status=\"200\"}",
        "http_request_duration_seconds_bucket",
        "inventory_orders_placed_total 1",
        "inventory_orders_out_of_stock_total 1",
        "inventory_notifications{status=\"pending\"}",
    ] {
        assert!(metrics.contains(needle), "{needle} missing in:\n{metrics}");
    }
    let resp = api
        .http
        .get(format!("{}/health", api.base))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().contains_key("x-request-id"));

    let status = server.terminate();
    assert!(
        status.success(),
        "clean exit on SIGTERM: {status:?}\n{}",
        server.logs()
    );
    let logs = server.logs();
    assert!(
        logs.contains("dispatcher stopped") && logs.contains("bye"),
        "{logs}"
    );
}

#[tokio::test]
async fn bad_configuration_fails_at_start_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], "JWT_SECRET"),
        (&[("JWT_SECRET", "too-short")], "JWT_SECRET"),
        (
            &[("JWT_SECRET", support::JWT_SECRET), ("LOG_FORMAT", "xml")],
            "LOG_FORMAT",
        ),
        (
            &[
                ("JWT_SECRET", support::JWT_SECRET),
                ("DATABASE_URL", "mysql://x"),
            ],
            "DATABASE_URL",
        ),
        (
            &[
                ("JWT_SECRET", support::JWT_SECRET),
                ("SMTP_HOST", "h"),
                ("SMTP_PORT", "many"),
            ],
            "SMTP_PORT",
        ),
    ];
    for (vars, name) in cases {
        let env: Vec<(&str, String)> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
        let (status, out) = Proc::run_to_exit("server", &env);
        assert!(!status.success(), "{vars:?} should fail");
        assert!(
            out.contains(name),
            "{vars:?}: output should name {name}:\n{out}"
        );
    }
}

#[tokio::test]
#[cfg_attr(inventory_no_chromium, ignore = "INVENTORY_TEST_CHROMIUM is not set")]
async fn swagger_ui_lists_the_operations_in_headless_chromium() {
    let chromium = std::env::var("INVENTORY_TEST_CHROMIUM")
        .expect("INVENTORY_TEST_CHROMIUM is set (the build script saw it)");
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Proc::start(
        "server",
        &support::sqlite_env(dir.path(), sink.addr().port()),
    );
    let profile = tempfile::tempdir().unwrap();
    let url = format!("{}/docs/", server.url);
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--virtual-time-budget=20000",
                "--dump-dom",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg(url)
            .output()
            .expect("run chromium")
    })
    .await
    .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    for op in [
        "/auth/register",
        "/auth/login",
        "/orders/place",
        "/products/{id}/restock",
    ] {
        assert!(
            dom.contains(&format!("data-path=\"{op}\"")),
            "operation {op} not rendered by Swagger UI; stderr:\n{}\nDOM:\n{}",
            String::from_utf8_lossy(&out.stderr),
            &dom[..dom.len().min(3000)]
        );
    }
}

#[tokio::test]
async fn the_embed_example_prints_the_email() {
    let (status, out) = Proc::run_to_exit("embed", &[]);
    assert!(status.success(), "{out}");
    assert!(
        out.contains("To: ann@example.com") && out.contains("order is now confirmed"),
        "{out}"
    );
}

/// A server without a dispatcher and a separate listener process on one database.
async fn separate_listener(mut env: Vec<(&'static str, String)>, sink: &SmtpSink, sweep_ms: &str) {
    env.push(("DISPATCHER_SWEEP_MS", sweep_ms.to_owned()));
    let mut server_env = env.clone();
    server_env.push(("RUN_DISPATCHER", "false".into()));
    let server = Proc::start("server", &server_env);
    let listener_env: Vec<(&str, String)> = env
        .iter()
        .filter(|(k, _)| *k != "SEED_PRODUCTS")
        .cloned()
        .collect();
    let mut listener = Proc::start("listener", &listener_env);
    let api = Client::new(&server.url);
    let token = api.token("split@example.com", "split-password").await;
    let (s, order) = api
        .post(
            "/orders/place",
            Some(&token),
            json!({"product_id": "product-1"}),
        )
        .await;
    assert_eq!(s, 200, "{order}");
    assert_eq!(
        sink.wait_for(1, WAIT).await,
        1,
        "the listener process delivered it"
    );
    assert_eq!(sink.messages()[0].to, ["split@example.com"]);
    // The first order may have been found by the listener's first cycle; now it is idle, so the
    // second arrives only through its wake-up (NOTIFY) or its sweep.
    let (s, order) = api
        .post(
            "/orders/place",
            Some(&token),
            json!({"product_id": "product-1"}),
        )
        .await;
    assert_eq!(s, 200, "{order}");
    assert_eq!(
        sink.wait_for(2, WAIT).await,
        2,
        "the second order delivered"
    );
    assert!(
        !server.logs().contains("email sent"),
        "the server did not send it"
    );
    let health = Client::new(&listener.url);
    assert_eq!(health.get("/health", None).await.0, 200);
    assert_eq!(health.get("/ready", None).await.0, 200);
    // The email is out before the listener records it: wait for the counter (bounded).
    let deadline = tokio::time::Instant::now() + WAIT;
    while support::metric(&health, "inventory_notifications_sent_total").await < 2.0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "sent counter never reached 2"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(listener.terminate().success());
}

#[tokio::test]
async fn separate_listener_on_sqlite_sweeps() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    separate_listener(
        support::sqlite_env(dir.path(), sink.addr().port()),
        &sink,
        "100",
    )
    .await;
}

#[tokio::test]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn separate_listener_on_postgres_is_woken_by_notify() {
    let sink = SmtpSink::start().unwrap();
    let env = support::postgres_env(sink.addr().port())
        .await
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    // A one-hour sweep: only LISTEN/NOTIFY can wake the listener in time.
    separate_listener(env, &sink, "3600000").await;
}

#[test]
fn help_and_version_print_and_exit_without_touching_files() {
    for program in ["server", "listener"] {
        for flag in ["--help", "--version"] {
            let dir = tempfile::tempdir().unwrap();
            let mut child = std::process::Command::new(support::example(program))
                .arg(flag)
                .current_dir(dir.path())
                .env_clear()
                .env("APP_ENV", "dev")
                .env("PORT", "0")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            // A program that ignored the flag would start serving: fail, do not hang.
            let started = std::time::Instant::now();
            while child.try_wait().unwrap().is_none() {
                if started.elapsed() > std::time::Duration::from_secs(10) {
                    let _ = child.kill();
                    panic!("{program} {flag} did not exit: it started instead of printing");
                }
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{program} {flag}: {out:?}");
            assert!(
                text.contains(program) || text.contains("Usage"),
                "{program} {flag} printed {text:?}"
            );
            let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
            assert!(left.is_empty(), "{program} {flag} created {left:?}");
        }
        let out = std::process::Command::new(support::example(program))
            .arg("--no-such-option")
            .env_clear()
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "a usage error");
    }
}

#[tokio::test]
async fn database_start_up_errors_name_the_variable_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing_folder = format!(
        "sqlite://{}/no/such/folder/x.db?mode=rwc",
        dir.path().display()
    );
    let missing_file = format!("sqlite://{}/absent.db", dir.path().display());
    let refused = format!(
        "postgres://postgres:s3cret@127.0.0.1:{}/test",
        support::closed_port()
    );
    let mut cases = vec![
        (missing_folder, "does not exist: create it"),
        (missing_file, "add ?mode=rwc"),
        (refused, "connection refused"),
    ];
    if let Some(url) = inventory_sql::testing::postgres_url() {
        let base = url.rsplit_once('/').unwrap().0.to_owned();
        cases.push((
            format!("{base}/no_such_database_here"),
            "createdb no_such_database_here",
        ));
    }
    for (url, fix) in cases {
        let started = std::time::Instant::now();
        let (status, out) = Proc::run_to_exit(
            "server",
            &[
                ("JWT_SECRET", support::JWT_SECRET.to_owned()),
                ("DATABASE_URL", url.clone()),
            ],
        );
        assert!(!status.success(), "{url}");
        assert!(
            out.contains("DATABASE_URL"),
            "{url}: names the variable:\n{out}"
        );
        assert!(out.contains(fix), "{url}: says the fix ({fix}):\n{out}");
        assert!(!out.contains("internal error"), "{url}:\n{out}");
        assert!(
            !out.contains("s3cret"),
            "the password is never printed:\n{out}"
        );
        // Fails at once, not after the pool's timeout (5 s).
        assert!(
            started.elapsed() < std::time::Duration::from_secs(4),
            "{url} took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn the_nested_example_serves_the_api_under_a_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let server = Proc::start(
        "nested",
        &[
            ("APP_ENV", "dev".to_owned()),
            ("SMTP_MODE", "mock".to_owned()),
            (
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("n.db").display()),
            ),
        ],
    );
    let api = Client::new(&server.url);
    let root = api.get("/", None).await;
    assert_eq!(root.0, 200);
    assert!(root.1.as_str().unwrap().contains("my application"));
    let (status, products) = api.get("/shop/products", None).await;
    assert_eq!(status, 200);
    assert_eq!(products[0]["product_id"], "product-1", "{products}");
    let (status, registered) = api
        .post(
            "/shop/auth/register",
            None,
            json!({"email": "nested@example.com", "password": "nested-password"}),
        )
        .await;
    assert_eq!(status, 200, "{registered}");
    let token = registered["access_token"].as_str().unwrap();
    let (status, order) = api
        .post(
            "/shop/orders/place",
            Some(token),
            json!({"product_id": "product-1"}),
        )
        .await;
    assert_eq!(status, 200, "{order}");
    let (status, spec) = api.get("/shop/openapi.json", None).await;
    assert_eq!(status, 200);
    assert!(spec["paths"]["/orders/place"].is_object());
    let ui = api
        .request(
            reqwest::Method::GET,
            "/shop/docs/swagger-initializer.js",
            &[],
            Vec::new(),
        )
        .await;
    assert_eq!(ui.status, 200);
    assert!(
        ui.text.contains("/shop/openapi.json"),
        "the UI loads the document from under the prefix: {}",
        ui.text
    );
    let (status, body) = api.get("/shop/no-such-route", None).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn mail_templates_from_a_folder_word_the_confirmation() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut env = support::sqlite_env(dir.path(), sink.addr().port());
    let original = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/templates/original");
    support::set(&mut env, "MAIL_TEMPLATE_DIR", original);
    let app = App::start(&env).await;
    let api = app.api.clone();
    let token = api.token("words@example.com", "words-password").await;
    let (status, order) = api
        .post(
            "/orders/place",
            Some(&token),
            json!({"product_id": "product-1"}),
        )
        .await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(sink.wait_for(1, WAIT).await, 1);
    let mail = &sink.messages()[0];
    assert_eq!(
        mail.header("Subject").as_deref(),
        Some("New order for product Demo Product")
    );
    assert!(
        mail.text().contains("Buyer:    words@example.com"),
        "{}",
        mail.text()
    );
    app.stop().await;

    // A broken template stops the start, naming the variable.
    std::fs::write(dir.path().join("subject.txt"), "{{ product_nme }}").unwrap();
    support::set(
        &mut env,
        "MAIL_TEMPLATE_DIR",
        dir.path().display().to_string(),
    );
    let err = inventory_kit::Settings::from_vars(env.iter().cloned()).unwrap_err();
    assert_eq!(err.var, "MAIL_TEMPLATE_DIR");
    assert!(err.message.contains("subject.txt"), "{err}");
}

/// Lists page by cursor over HTTP: `?after=` continues after an item, a full page links to
/// the next one (`Link: <?after=...>; rel="next"`, relative so it holds under a prefix), the
/// last page has no link, and a cursor that cannot be an order id is refused with its field.
#[tokio::test]
async fn lists_page_by_cursor_with_a_next_link() {
    let dir = tempfile::tempdir().unwrap();
    let app = App::start(&support::sqlite_env(dir.path(), support::closed_port())).await;
    let api = app.api.clone();
    let admin = api.token("admin@example.com", "admin-password").await;
    for id in ["a b/c", "zz-1", "zz-2"] {
        let (status, _) = api
            .post(
                "/products",
                Some(&admin),
                json!({"product_id": id, "product_name": id, "quantity": 9}),
            )
            .await;
        assert_eq!(status, 201, "create {id}");
    }
    // Follow the links from the first page: every product once, in id order.
    let mut seen = Vec::new();
    let mut next = Some("?limit=2".to_owned());
    while let Some(query) = next.take() {
        let reply = api
            .send(
                reqwest::Method::GET,
                &format!("/products{query}"),
                &[],
                None,
                None,
            )
            .await;
        assert_eq!(reply.status, 200, "{}", reply.text);
        let page = reply.json();
        seen.extend(
            page.as_array()
                .unwrap()
                .iter()
                .map(|p| p["product_id"].as_str().unwrap().to_owned()),
        );
        next = reply.headers.get("link").map(|l| {
            let l = l.to_str().unwrap();
            assert!(l.ends_with(">; rel=\"next\""), "{l}");
            l.trim_start_matches('<')
                .split('>')
                .next()
                .unwrap()
                .to_owned()
        });
    }
    assert_eq!(seen, ["a b/c", "product-1", "scarce", "zz-1", "zz-2"]);

    // Orders: newest first, continuing after an order id.
    let token = api.token("pager@example.com", "pager-password").await;
    let mut placed = Vec::new();
    for _ in 0..3 {
        let (status, body) = api
            .post("/orders/place", Some(&token), json!({"product_id": "zz-1"}))
            .await;
        assert_eq!(status, 200);
        placed.push(body["order_id"].as_str().unwrap().to_owned());
    }
    let (status, page) = api
        .get(&format!("/orders?after={}", placed[2]), Some(&token))
        .await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = page
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [placed[1].as_str(), placed[0].as_str()]);
    let (status, body) = api.get("/orders?after=not-an-order", Some(&token)).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["detail"].as_str().unwrap().contains("after"), "{body}");
    app.stop().await;
}
