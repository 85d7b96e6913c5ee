//! The stock ledger and compare-and-set stock over HTTP, against the server process (SQLite
//! and PostgreSQL), and through the admin tool on the same database.

use inventory_e2e as support;

use std::process::Command;

use inventory_mail::testing::SmtpSink;
use serde_json::{Value, json};
use support::{Client, Proc};

async fn ledger(api: &Client, admin: &str, path: &str) -> (u16, Value) {
    api.get(&format!("/products/product-1/ledger{path}"), Some(admin))
        .await
}

async fn ledger_over_http(env: Vec<(&'static str, String)>) {
    let server = Proc::start("server", &env);
    let api = Client::new(&server.url);
    let ann = api.token("ann@example.com", "MySecurePass123").await;
    let admin = api.token("admin@example.com", "MySecurePass123").await;

    // An order, a hold released, a restock, then a set against a stale and a fresh quantity.
    let (status, placed) = api
        .post(
            "/orders",
            Some(&ann),
            json!({"lines": [{"product_id": "product-1", "quantity": 2}]}),
        )
        .await;
    assert_eq!(status, 200, "{placed}");
    let (status, held) = api
        .post(
            "/reservations",
            Some(&ann),
            json!({"lines": [{"product_id": "product-1", "quantity": 1}]}),
        )
        .await;
    assert_eq!(status, 201, "{held}");
    let hold_id = held["reservation_id"].as_str().unwrap().to_owned();
    let (status, _) = api
        .delete(&format!("/reservations/{hold_id}"), Some(&ann))
        .await;
    assert_eq!(status, 200);
    let (status, body) = api
        .post(
            "/products/product-1/restock",
            Some(&admin),
            json!({"quantity": 4}),
        )
        .await;
    assert_eq!((status, &body["quantity"]), (200, &json!(7)), "{body}");

    let set = |quantity: u64, expected: u64| json!({"quantity": quantity, "expected": expected, "reason": "count", "reference": "sheet-12"});
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            "/products/product-1/stock",
            Some(&admin),
            Some(set(10, 5)),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        (&body["code"], &body["current"], &body["expected"]),
        (&json!("stock_changed"), &json!(7), &json!(5)),
        "{body}"
    );
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            "/products/product-1/stock",
            Some(&ann),
            Some(set(10, 7)),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = api
        .call(
            reqwest::Method::PUT,
            "/products/product-1/stock",
            Some(&admin),
            Some(set(10, 7)),
        )
        .await;
    assert_eq!((status, &body["quantity"]), (200, &json!(10)), "{body}");

    // Newest first: set, restock, release, hold, order, opening.
    let (status, entries) = ledger(&api, &admin, "").await;
    assert_eq!(status, 200, "{entries}");
    let reasons: Vec<&str> = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["set", "restock", "release", "hold", "order", "opening"],
        "{entries}"
    );
    let set_entry = &entries[0];
    assert_eq!(
        (
            &set_entry["delta"],
            &set_entry["quantity"],
            &set_entry["reference"]
        ),
        (&json!(3), &json!(10), &json!("count: sheet-12"))
    );
    let order_entry = &entries[4];
    assert_eq!(order_entry["delta"], json!(-2));
    assert_eq!(order_entry["reference"], placed["order_id"]);
    assert_eq!(entries[2]["reference"], json!(hold_id));
    let sum: i64 = entries
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["delta"].as_i64().unwrap())
        .sum();
    assert_eq!(sum, 10, "the entries add up to the stock");

    // Pages by cursor, with a Link to the next one.
    let reply = api
        .send(
            reqwest::Method::GET,
            "/products/product-1/ledger?limit=2",
            &[],
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(reply.status, 200);
    let link = reply.headers["link"].to_str().unwrap().to_owned();
    assert!(link.contains("after="), "{link}");
    let (_, second) = ledger(
        &api,
        &admin,
        &format!("?limit=2&after={}", entries[1]["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(second[0]["reason"], json!("release"));

    let (status, _) = ledger(&api, &ann, "").await;
    assert_eq!(status, 403);
    let (status, _) = api.get("/products/nope/ledger", Some(&admin)).await;
    assert_eq!(status, 404);

    // The admin tool on the same database: a stale set exits 1 and changes nothing, the
    // ledger lists the set entry.
    let url = env
        .iter()
        .find(|(k, _)| *k == "DATABASE_URL")
        .unwrap()
        .1
        .clone();
    let admin_tool = |args: &[&str]| {
        let out = Command::new(support::example("admin"))
            .env_clear()
            .env("DATABASE_URL", &url)
            .args(args)
            .output()
            .expect("run admin");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, text) = admin_tool(&["products", "set-stock", "product-1", "3", "--expected", "9"]);
    assert!(!ok && text.contains("is 10"), "{text}");
    let (ok, text) = admin_tool(&[
        "products",
        "set-stock",
        "product-1",
        "3",
        "--expected",
        "10",
        "--reference",
        "PO-7",
    ]);
    assert!(ok, "{text}");
    let (ok, text) = admin_tool(&["--json", "products", "ledger", "product-1", "--limit", "1"]);
    assert!(
        ok && text.contains("PO-7") && text.contains("\"set\""),
        "{text}"
    );
    let (_, body) = api.get("/products/product-1", None).await;
    assert_eq!(body["quantity"], json!(3));

    // Reconcile with the server running: nothing to find; then an operator's UPDATE behind
    // the service's back is found (exit 1, the product named) and repaired.
    let (ok, text) = admin_tool(&["reconcile"]);
    assert!(ok, "{text}");
    corrupt(&url).await;
    let (ok, text) = admin_tool(&["--json", "reconcile"]);
    assert!(!ok, "{text}");
    assert!(
        text.contains("\"product_id\": \"product-1\"")
            && text.contains("\"ledger_quantity\": 3")
            && text.contains("\"quantity\": 100"),
        "{text}"
    );
    let (_, body) = api.get("/products/product-1", None).await;
    assert_eq!(
        body["quantity"],
        json!(100),
        "reconcile without --repair changes nothing"
    );
    let (ok, text) = admin_tool(&["reconcile", "--repair"]);
    assert!(!ok && text.contains("repaired"), "{text}");
    let (_, body) = api.get("/products/product-1", None).await;
    assert_eq!(body["quantity"], json!(3));
    let (ok, text) = admin_tool(&["reconcile", "--product", "product-1"]);
    assert!(ok, "{text}");
}

/// Sets product-1's available quantity to 100 with a plain SQL `UPDATE`, as an operator at
/// the database's shell would.
async fn corrupt(url: &str) {
    let update = "UPDATE products SET quantity = 100 WHERE id = 'product-1'";
    if url.starts_with("sqlite:") {
        let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query(update).execute(&mut c).await.unwrap();
    } else {
        let mut c = <sqlx::PgConnection as sqlx::Connection>::connect(url)
            .await
            .unwrap();
        sqlx::query(update).execute(&mut c).await.unwrap();
    }
}

#[tokio::test]
async fn ledger_on_sqlite_over_http() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    ledger_over_http(support::sqlite_env(dir.path(), sink.addr().port())).await;
}

#[tokio::test]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn ledger_on_postgres_over_http() {
    let sink = SmtpSink::start().unwrap();
    let env = support::postgres_env(sink.addr().port())
        .await
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    ledger_over_http(env).await;
}
