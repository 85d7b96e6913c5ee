//! Upgrades in place: the current service started on databases written by earlier releases.
//!
//! Each folder of `tests/fixtures/upgrade/` holds what one released build wrote, through its own
//! HTTP API (`scripts/make_upgrade_fixture.py` made them by running that build): a SQLite file,
//! a `pg_dump` of PostgreSQL, and a manifest of what that release answered. For each, on the
//! first start of the current code, in one process: every user logs in with the old password,
//! orders keep their statuses, stock is unchanged, pending confirmations are delivered once,
//! sent and cancelled ones are never sent again, and a new order works.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use inventory_mail::testing::SmtpSink;
use serde_json::{Value, json};
use support::App;

const WAIT: Duration = Duration::from_secs(20);

/// The fixture folders, oldest release first.
fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/upgrade");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/fixtures/upgrade")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    assert!(
        !dirs.is_empty(),
        "no upgrade fixtures in {}",
        root.display()
    );
    dirs
}

fn manifest(dir: &Path, backend: &str) -> Value {
    let path = dir.join(format!("{backend}.manifest.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("manifest JSON")
}

fn env_for(url: String, sink: &SmtpSink) -> Vec<(&'static str, String)> {
    let mut env = support::sqlite_env(Path::new("/nonexistent"), sink.addr().port());
    env[0].1 = url;
    // The products of the fixture are the data under test: seed nothing over them.
    support::set(&mut env, "SEED_PRODUCTS", "[]");
    env
}

/// Starts the current service on the upgraded database and checks the manifest's story.
async fn check_first_start(url: String, m: &Value, label: &str) {
    let sink = SmtpSink::start().expect("smtp sink");
    let app = App::start(&env_for(url, &sink)).await;
    let api = app.api.clone();

    // Every user logs in with the password the earlier release stored.
    let mut tokens = std::collections::HashMap::new();
    for u in m["users"].as_array().unwrap() {
        let email = u["email"].as_str().unwrap();
        let (status, body) = api.post("/auth/login", None, u.clone()).await;
        assert_eq!(status, 200, "{label}: login of {email}: {body}");
        tokens.insert(
            email.to_owned(),
            body["access_token"].as_str().unwrap().to_owned(),
        );
    }

    // Stock as the earlier release left it.
    for (id, quantity) in m["products"].as_object().unwrap() {
        let (status, body) = api.get(&format!("/products/{id}"), None).await;
        assert_eq!(status, 200, "{label}: product {id}: {body}");
        assert_eq!(&body["quantity"], quantity, "{label}: stock of {id}");
    }

    // The pending confirmations are delivered; a new order works and its email follows.
    let due: Vec<&str> = m["deliver_after_upgrade"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(
        !due.is_empty(),
        "{label}: the fixture has pending confirmations"
    );
    assert_eq!(
        sink.wait_for(due.len(), WAIT).await,
        due.len(),
        "{label}: pending emails"
    );

    // Orders with their statuses, each listed to its owner.
    for o in m["orders"].as_array().unwrap() {
        let id = o["order_id"].as_str().unwrap();
        let token = &tokens[o["owner"].as_str().unwrap()];
        let (status, body) = api.get(&format!("/orders/{id}"), Some(token)).await;
        assert_eq!(status, 200, "{label}: order {id}: {body}");
        // Delivered since: a pending order is confirmed now; every other keeps its status.
        let want = if due.contains(&id) {
            json!("confirmed")
        } else {
            o["status"].clone()
        };
        assert_eq!(body["status"], want, "{label}: status of {id}: {body}");
        assert_eq!(body["product_id"], o["product_id"], "{label}: {id}");
        assert_eq!(body["quantity"], o["quantity"], "{label}: {id}");
        let (status, list) = api.get("/orders?limit=100", Some(token)).await;
        assert_eq!(status, 200, "{label}: {list}");
        assert!(
            list.as_array().unwrap().iter().any(|l| l["order_id"] == id),
            "{label}: order {id} missing from its owner's list: {list}"
        );
    }

    let buyer = m["users"][0]["email"].as_str().unwrap();
    let (status, placed) = api
        .post(
            "/orders/place",
            Some(&tokens[buyer]),
            json!({"product_id": "product-1", "quantity": 1}),
        )
        .await;
    assert_eq!(status, 200, "{label}: a new order: {placed}");
    let new_id = placed["order_id"].as_str().unwrap().to_owned();
    let want = due.len() + 1;
    assert_eq!(sink.wait_for(want, WAIT).await, want, "{label}: emails");
    app.stop().await;

    // Exactly those, once each: no email for a sent confirmation or a cancelled order.
    let texts: Vec<String> = sink.messages().iter().map(|r| r.text()).collect();
    assert_eq!(
        texts.len(),
        want,
        "{label}: no email beyond the pending ones"
    );
    for id in due.iter().copied().chain([new_id.as_str()]) {
        let n = texts.iter().filter(|t| t.contains(id)).count();
        assert_eq!(n, 1, "{label}: confirmation of {id} sent {n} times");
    }
    for id in m["never_send"].as_array().unwrap() {
        let id = id.as_str().unwrap();
        assert!(
            !texts.iter().any(|t| t.contains(id)),
            "{label}: {id} (sent before, or cancelled) was sent again"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_databases_of_every_release_upgrade_on_the_first_start() {
    for dir in fixtures() {
        let label = format!("SQLite {}", dir.file_name().unwrap().to_string_lossy());
        let tmp = tempfile::tempdir().unwrap();
        let db = tmp.path().join("inventory.db");
        std::fs::copy(dir.join("sqlite.db"), &db).expect("copy the fixture");
        let url = format!("sqlite://{}", db.display());
        check_first_start(url, &manifest(&dir, "sqlite"), &label).await;
    }
}

/// A database of its own, restored from a release's `pg_dump`.
async fn restored(admin_url: &str, dump: &str) -> (String, String) {
    use sqlx::Connection as _;
    let name = format!("inv_up_{}", uuid::Uuid::now_v7().simple());
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create database");
    let url = database_url(admin_url, &name);
    let mut conn = sqlx::PgConnection::connect(&url)
        .await
        .expect("new database");
    // The dump creates the `public` schema itself.
    sqlx::raw_sql("DROP SCHEMA public CASCADE")
        .execute(&mut conn)
        .await
        .expect("drop public");
    // psql meta-commands (`\restrict`) are not SQL; the rest is pg_dump's plain output.
    let sql: String = dump
        .lines()
        .filter(|l| !l.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("restore the dump");
    conn.close().await.ok();
    (name, url)
}

fn database_url(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let root = base.rsplit_once('/').map_or(base, |(r, _)| r);
    match query {
        Some(q) => format!("{root}/{name}?{q}"),
        None => format!("{root}/{name}"),
    }
}

async fn drop_database(admin_url: &str, name: &str) {
    use sqlx::Connection as _;
    let mut admin = sqlx::PgConnection::connect(admin_url)
        .await
        .expect("PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop database");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_databases_of_every_release_upgrade_on_the_first_start() {
    let Some(admin_url) = inventory_sql::testing::postgres_url() else {
        return;
    };
    for dir in fixtures() {
        let label = format!("PostgreSQL {}", dir.file_name().unwrap().to_string_lossy());
        let dump = std::fs::read_to_string(dir.join("postgres.sql")).expect("postgres.sql");
        let (name, url) = restored(&admin_url, &dump).await;
        check_first_start(url, &manifest(&dir, "postgres"), &label).await;
        drop_database(&admin_url, &name).await;
    }
}
