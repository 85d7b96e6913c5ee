//! Upgrades in place: the current service started on databases written by earlier releases.
//!
//! Each folder of `tests/fixtures/upgrade/` holds what one released build wrote, through its own
//! HTTP API (`scripts/make_upgrade_fixture.py` made them by running that build): a SQLite file,
//! a `pg_dump` of PostgreSQL, and a manifest of what that release answered. For each, on the
//! first start of the current code, in one process: every user logs in with the old password,
//! orders keep their statuses, stock is unchanged, pending confirmations are delivered once,
//! sent and cancelled ones are never sent again, and a new order works.

use inventory_e2e as support;

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
    let app = App::start(&env_for(url.clone(), &sink)).await;
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
        let path = format!("/orders/{id}");
        // Delivered since: a pending order becomes confirmed once its send is recorded (just
        // after the mail server's answer, so wait for it); every other keeps its status.
        let body = if due.contains(&id) {
            api.wait_until(&path, Some(token), |b| b["status"] == "confirmed")
                .await
        } else {
            let (status, body) = api.get(&path, Some(token)).await;
            assert_eq!(status, 200, "{label}: order {id}: {body}");
            assert_eq!(
                body["status"], o["status"],
                "{label}: status of {id}: {body}"
            );
            body
        };
        assert_eq!(body["product_id"], o["product_id"], "{label}: {id}");
        assert_eq!(body["quantity"], o["quantity"], "{label}: {id}");
        // Every order of an earlier release is a one-line order (migration 0007 adds `lines`).
        assert_eq!(
            body["lines"],
            json!([{"product_id": o["product_id"], "quantity": o["quantity"]}]),
            "{label}: lines of {id}"
        );
        let (status, list) = api.get("/orders?limit=100", Some(token)).await;
        assert_eq!(status, 200, "{label}: {list}");
        assert!(
            list.as_array().unwrap().iter().any(|l| l["order_id"] == id),
            "{label}: order {id} missing from its owner's list: {list}"
        );
    }

    let buyer = m["users"][0]["email"].as_str().unwrap();
    // A new order, of two lines: written into the migrated schema's `lines`.
    let (status, placed) = api
        .post(
            "/orders",
            Some(&tokens[buyer]),
            json!({"lines": [
                {"product_id": "product-1", "quantity": 1},
                {"product_id": "product-2", "quantity": 1}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{label}: a new order: {placed}");
    let new_id = placed["order_id"].as_str().unwrap().to_owned();
    let (_, read) = api
        .get(&format!("/orders/{new_id}"), Some(&tokens[buyer]))
        .await;
    assert_eq!(read["lines"], placed["lines"], "{label}: {read}");
    for (product, before) in m["products"].as_object().unwrap() {
        let (_, now) = api.get(&format!("/products/{product}"), None).await;
        assert_eq!(
            now["quantity"].as_u64(),
            before.as_u64().map(|n| n - 1),
            "{label}: one unit of {product} taken by the new basket"
        );
    }
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

    // The ledger began with the upgrade: every product opens with its stock as found, then
    // the new basket's entry, and every product adds up.
    let (ok, out) = admin(&url, &["reconcile"]);
    assert!(ok, "{label}: reconcile after the upgrade: {out}");
    for (product, before) in m["products"].as_object().unwrap() {
        let (ok, out) = admin(&url, &["--json", "products", "ledger", product]);
        assert!(ok, "{label}: {out}");
        let entries: Value = serde_json::from_str(out.trim())
            .unwrap_or_else(|e| panic!("{label}: ledger of {product} is not JSON ({e}): {out}"));
        let reasons: Vec<&str> = entries
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["reason"].as_str().unwrap())
            .collect();
        assert_eq!(reasons, ["order", "opening"], "{label}: {product}: {out}");
        assert_eq!(
            entries[1]["delta"], *before,
            "{label}: {product} opens with its stock"
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
    let admin_url = inventory_sql::testing::postgres_url()
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    for dir in fixtures() {
        let label = format!("PostgreSQL {}", dir.file_name().unwrap().to_string_lossy());
        let dump = std::fs::read_to_string(dir.join("postgres.sql")).expect("postgres.sql");
        let (name, url) = restored(&admin_url, &dump).await;
        check_first_start(url, &manifest(&dir, "postgres"), &label).await;
        drop_database(&admin_url, &name).await;
    }
}

/// Runs the admin command on `url` and returns (success, stdout + stderr).
fn admin(url: &str, args: &[&str]) -> (bool, String) {
    let (status, out) =
        support::Proc::run_to_exit_with_args("admin", args, &[("DATABASE_URL", url.to_owned())]);
    (status.success(), out)
}

/// `admin migrate --status` and `--dry-run` on a database of the first release say what an
/// upgrade would do and change nothing; `admin migrate` then applies exactly that; a database
/// of a newer release (a migration this build does not know) is refused by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_migrate_shows_then_applies_the_pending_migrations() {
    let first = fixtures().into_iter().next().unwrap();
    let m = manifest(&first, "sqlite");
    let old_version = m["schema_version"].as_i64().expect("schema_version");
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("inventory.db");
    std::fs::copy(first.join("sqlite.db"), &db).expect("copy the fixture");
    let before = std::fs::read(&db).unwrap();
    let url = format!("sqlite://{}", db.display());

    for flag in ["--status", "--dry-run"] {
        let (success, out) = admin(&url, &["--json", "migrate", flag]);
        assert!(success, "migrate {flag}: {out}");
        let v: Value = serde_json::from_str(&out).expect("JSON");
        assert_eq!(v["schema_version"], old_version, "migrate {flag}: {out}");
        let pending: Vec<i64> = v["pending"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_i64().unwrap())
            .collect();
        let newest = v["migrations"].as_array().unwrap().len() as i64;
        assert_eq!(
            pending,
            ((old_version + 1)..=newest).collect::<Vec<_>>(),
            "migrate {flag}: {out}"
        );
        assert_eq!(v["applied_now"], false);
        assert!(
            std::fs::read(&db).unwrap() == before,
            "migrate {flag} wrote to the database"
        );
    }
    let (success, out) = admin(&url, &["migrate", "--dry-run"]);
    assert!(
        success
            && out.contains(&format!("schema version {old_version}"))
            && out.contains("back up first"),
        "{out}"
    );

    let (success, out) = admin(&url, &["--json", "migrate"]);
    assert!(success, "migrate: {out}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["applied_now"], true, "{out}");
    let (success, out) = admin(&url, &["--json", "migrate", "--status"]);
    assert!(success, "{out}");
    let v: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(v["pending"], json!([]), "{out}");

    // A newer release: sqlx's migrator runs our migrations and one more, as that release
    // would. This build must not run on its database, and says why.
    {
        use sqlx::Connection as _;
        let ours = Path::new(env!("CARGO_MANIFEST_DIR")).join("../inventory-sql/migrations/sqlite");
        let newer = tmp.path().join("newer-release");
        std::fs::create_dir(&newer).unwrap();
        for file in std::fs::read_dir(&ours).unwrap() {
            let file = file.unwrap();
            std::fs::copy(file.path(), newer.join(file.file_name())).unwrap();
        }
        std::fs::write(
            newer.join("9999_from_a_newer_release.sql"),
            "CREATE TABLE from_a_newer_release (id INTEGER PRIMARY KEY);",
        )
        .unwrap();
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::migrate::Migrator::new(newer.as_path())
            .await
            .expect("the newer release's migrations")
            .run(&mut conn)
            .await
            .expect("the newer release migrates");
        conn.close().await.unwrap();
    }
    let (success, out) = admin(&url, &["migrate", "--status"]);
    assert!(
        !success && out.contains("9999") && out.contains("newer release"),
        "{out}"
    );
}

/// The SQL a running replica of the previous release sends (captured from its query log by
/// `scripts/make_upgrade_fixture.py --statements`), for one backend.
fn previous_statements(backend: &str) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/previous-release");
    let path = dir.join(format!("{backend}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let v: Value = serde_json::from_str(&text).expect("statements JSON");
    let all: Vec<String> = v["statements"]
        .as_array()
        .expect("statements")
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect();
    assert!(all.len() >= 10, "{}: too few statements", path.display());
    all
}

/// Prepares each statement on `conn` (both databases resolve every table, column and type at
/// prepare), and lists the ones the schema no longer accepts.
///
/// The log has no parameter types: PostgreSQL then infers `text` for the parameters of a
/// `VALUES` list and refuses it against a `bigint` column (SQLSTATE 42804). That error comes
/// after every name resolved, which is what this checks; the release itself binds typed values.
async fn unpreparable<C>(conn: &mut C, statements: &[String]) -> Vec<String>
where
    for<'c> &'c mut C: sqlx::Executor<'c>,
{
    use sqlx::SqlSafeStr as _;
    let mut failed = Vec::new();
    for sql in statements {
        let prepared =
            sqlx::Executor::prepare(&mut *conn, sqlx::AssertSqlSafe(sql.clone()).into_sql_str())
                .await;
        if let Err(e) = prepared {
            // See above: an untyped `VALUES` parameter, after every name resolved.
            let untyped = sql.contains("AS (VALUES")
                && e.as_database_error()
                    .and_then(|d| d.code())
                    .is_some_and(|code| code == "42804");
            if !untyped {
                failed.push(format!("{sql}\n  -> {e}"));
            }
        }
    }
    failed
}

/// A replica of the previous release keeps serving while the current one migrates beside it:
/// every statement it sends still prepares on the migrated SQLite schema (a process that has
/// the file open through a rollout: `admin` or a listener left running).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previous_release_statements_run_on_the_new_sqlite_schema() {
    use sqlx::Connection as _;
    let tmp = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", tmp.path().join("new.db").display());
    inventory_sql::SqlStore::connect(&url)
        .await
        .expect("current migrations")
        .close()
        .await;
    let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
    let failed = unpreparable(&mut conn, &previous_statements("sqlite")).await;
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}

/// The same on PostgreSQL, where old and new instances do run side by side in a rolling update.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn previous_release_statements_run_on_the_new_postgres_schema() {
    use sqlx::Connection as _;
    let admin_url = inventory_sql::testing::postgres_url()
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    let schema = inventory_sql::testing::fresh_schema(&admin_url).await;
    let url = inventory_sql::testing::url_with_schema(&admin_url, &schema);
    inventory_sql::SqlStore::connect(&url)
        .await
        .expect("current migrations")
        .close()
        .await;
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    let failed = unpreparable(&mut conn, &previous_statements("postgres")).await;
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
