//! The admin command against real stores: every subcommand, an export from SQLite imported
//! into PostgreSQL with identical contents, and a backup taken while orders are placed.

use inventory_e2e as support;

use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use inventory_core::testkit;
use inventory_core::*;
use inventory_sql::SqlStore;

fn admin(url: &str, args: &[&str], envs: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(support::example("admin"));
    cmd.env_clear().env("DATABASE_URL", url).args(args);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run admin");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn ok(url: &str, args: &[&str]) -> String {
    let (success, out) = admin(url, args, &[]);
    assert!(success, "admin {args:?} failed:\n{out}");
    out
}

fn sqlite_url(dir: &std::path::Path, name: &str) -> String {
    format!("sqlite://{}?mode=rwc", dir.join(name).display())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_subcommand_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "admin.db");
    assert!(ok(&url, &["migrate"]).contains("up to date"));
    let seed = dir.path().join("seed.json");
    std::fs::write(&seed, r#"[{"product_id":"product-1","product_name":"Demo Product","quantity":5},{"product_id":"p-2","product_name":"Two","quantity":0}]"#).unwrap();
    assert!(ok(&url, &["seed-products", seed.to_str().unwrap()]).contains("2 created"));
    assert!(
        ok(&url, &["seed-products", seed.to_str().unwrap()])
            .contains("0 created, 2 already present")
    );
    let list = ok(&url, &["products", "list"]);
    assert!(
        list.contains("product-1") && list.contains("out_of_stock"),
        "{list}"
    );
    assert!(ok(&url, &["products", "restock", "p-2", "7"]).contains("p-2: 7 in stock"));
    let (success, out) = admin(&url, &["products", "restock", "nope", "1"], &[]);
    assert!(!success && out.contains("not found"), "{out}");

    let (success, out) = admin(&url, &["create-admin", "boss@example.com"], &[]);
    assert!(!success && out.contains("ADMIN_PASSWORD"), "{out}");
    let (success, out) = admin(
        &url,
        &["create-admin", "boss@example.com"],
        &[("ADMIN_PASSWORD", "boss-password")],
    );
    assert!(success, "{out}");
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&url).await.unwrap());
    let boss = store
        .find_user_by_email(&Email::parse("boss@example.com").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(boss.role, Role::Admin);
    let hasher = PasswordHasher::new(HashParams::default(), 1).unwrap();
    assert!(
        hasher
            .verify("boss-password", &boss.password_hash)
            .await
            .unwrap()
    );
    let customer = testkit::user(&store, "cust@example.com").await;
    assert!(ok(&url, &["create-admin", "cust@example.com"]).contains("now admin"));

    // A failed notification, listed with its error and queued again.
    let p = ProductId::new("product-1").unwrap();
    let order = store
        .place_order(&testkit::order(&customer, &p, 1))
        .await
        .unwrap()
        .order;
    let claimed = store
        .claim_due("t", now(), Duration::from_secs(60), 10)
        .await
        .unwrap();
    store
        .mark_failed(claimed[0].id, "t", "550 5.1.1 no such user", None)
        .await
        .unwrap();
    assert!(ok(&url, &["notifications", "counts"]).contains("failed 1"));
    let failed = ok(&url, &["notifications", "failed"]);
    assert!(
        failed.contains("550 5.1.1 no such user") && failed.contains(&order.id.to_string()),
        "{failed}"
    );
    let (success, _) = admin(&url, &["notifications", "retry"], &[]);
    assert!(!success, "retry needs --id or --all");
    assert!(
        ok(
            &url,
            &["notifications", "retry", "--id", &claimed[0].id.to_string()]
        )
        .contains("1 notification")
    );
    assert!(ok(&url, &["notifications", "counts"]).contains("pending 1"));
    // Another order's confirmation, failed and given up on: removed, never sent.
    let lost = store
        .place_order(&testkit::order(&customer, &p, 1))
        .await
        .unwrap()
        .order;
    let lost_id = store
        .claim_due("t", now(), Duration::from_secs(60), 10)
        .await
        .unwrap()
        .into_iter()
        .find(|n| n.order_id() == Some(lost.id))
        .unwrap()
        .id;
    store
        .mark_failed(lost_id, "t", "550 5.1.1 no such user", None)
        .await
        .unwrap();
    let (success, _) = admin(&url, &["notifications", "remove"], &[]);
    assert!(!success, "remove needs --id or --all");
    let removed = ok(
        &url,
        &["notifications", "remove", "--id", &lost_id.to_string()],
    );
    assert!(
        removed.contains("1 failed notification(s) removed"),
        "{removed}"
    );
    assert!(
        store
            .notification_for_order(lost.id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(ok(&url, &["notifications", "counts"]).contains("failed 0"));

    // Users and orders, as aligned tables and as JSON.
    let users = ok(&url, &["users", "list"]);
    let boss_line = users
        .lines()
        .find(|l| l.contains("boss@example.com"))
        .unwrap();
    assert!(boss_line.contains("admin"), "{users}");
    let header = users.lines().next().unwrap();
    let column = |line: &str, word: &str| line.find(word).unwrap();
    assert_eq!(
        column(header, "role"),
        column(boss_line, "admin"),
        "aligned columns:\n{users}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&url, &["--json", "users", "list"])).unwrap();
    let roles: Vec<(&str, &str)> = json
        .as_array()
        .unwrap()
        .iter()
        .map(|u| (u["email"].as_str().unwrap(), u["role"].as_str().unwrap()))
        .collect();
    assert!(roles.contains(&("cust@example.com", "admin")), "{json}");
    assert!(ok(&url, &["users", "revoke-admin", "cust@example.com"]).contains("no longer admin"));
    assert!(ok(&url, &["users", "verify", "cust@example.com"]).contains("is verified"));
    assert!(
        store
            .find_user_by_email(&Email::parse("cust@example.com").unwrap())
            .await
            .unwrap()
            .unwrap()
            .email_verified
    );
    let json: serde_json::Value =
        serde_json::from_str(&ok(&url, &["users", "list", "--json"])).unwrap();
    assert!(
        json.as_array()
            .unwrap()
            .iter()
            .any(|u| u["email"] == "cust@example.com" && u["role"] == "customer")
    );
    let (success, out) = admin(&url, &["users", "grant-admin", "ghost@example.com"], &[]);
    assert!(!success && out.contains("ADMIN_PASSWORD"), "{out}");

    let listed = ok(&url, &["orders", "list", "--user", "cust@example.com"]);
    assert!(listed.contains(&order.id.to_string()), "{listed}");
    assert!(
        ok(&url, &["orders", "list", "--user", "boss@example.com"])
            .lines()
            .count()
            <= 1
    );
    let shown: serde_json::Value = serde_json::from_str(&ok(
        &url,
        &["--json", "orders", "show", &order.id.to_string()],
    ))
    .unwrap();
    assert_eq!(shown[0]["order_id"], order.id.to_string());
    assert_eq!(shown[0]["email"], "pending", "{shown}");
    let stock_before = store.get_product(&p).await.unwrap().unwrap().quantity;
    assert!(ok(&url, &["orders", "cancel", &order.id.to_string()]).contains("back in stock"));
    assert_eq!(
        store.get_product(&p).await.unwrap().unwrap().quantity,
        stock_before + 1
    );
    let (success, out) = admin(&url, &["orders", "cancel", &order.id.to_string()], &[]);
    assert!(!success && out.contains("already cancelled"), "{out}");
    let (success, out) = admin(
        &url,
        &["orders", "show", &uuid::Uuid::now_v7().to_string()],
        &[],
    );
    assert!(!success && out.contains("not found"), "{out}");
    let counts: serde_json::Value =
        serde_json::from_str(&ok(&url, &["--json", "notifications", "counts"])).unwrap();
    assert_eq!(counts["cancelled"], 1, "{counts}");

    let (success, out) = admin("mysql://x", &["migrate"], &[]);
    assert!(!success && out.contains("DATABASE_URL"), "{out}");
}

async fn populated(store: &Arc<dyn Store>) {
    let a = testkit::user(store, "a@example.com").await;
    let b = testkit::user(store, "b@example.com").await;
    let p1 = testkit::product(store, "product-1", 50).await;
    let p2 = testkit::product(store, "p-2", 5).await;
    for i in 0..10 {
        let u = if i % 2 == 0 { &a } else { &b };
        let p = if i % 3 == 0 { &p2 } else { &p1 };
        let mut o = testkit::order(u, p, 1);
        if i == 4 {
            o = o.with_idempotency_key(IdempotencyKey::new("k-4").unwrap());
        }
        store.place_order(&o).await.unwrap();
    }
    let claimed = store
        .claim_due("t", now(), Duration::from_secs(60), 3)
        .await
        .unwrap();
    store.mark_sent(claimed[0].id, "t", now()).await.unwrap();
    store
        .mark_failed(claimed[1].id, "t", "boom", None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn export_from_sqlite_import_into_postgres_is_identical() {
    let pg = inventory_sql::testing::postgres_url()
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    let dir = tempfile::tempdir().unwrap();
    let source = sqlite_url(dir.path(), "source.db");
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&source).await.unwrap());
    populated(&store).await;
    let first = dir.path().join("first.jsonl");
    let out = ok(&source, &["export", first.to_str().unwrap()]);
    assert!(
        out.contains("2 users, 2 products, 10 orders, 0 holds, 10 notifications"),
        "{out}"
    );

    let schema = inventory_sql::testing::fresh_schema(&pg).await;
    let target = inventory_sql::testing::url_with_schema(&pg, &schema);
    assert!(
        ok(&target, &["import", first.to_str().unwrap()])
            .contains("imported 2 users, 2 products, 10 orders, 0 holds, 10 notifications")
    );
    let second = dir.path().join("second.jsonl");
    ok(&target, &["export", second.to_str().unwrap()]);
    let lines = |p: &std::path::Path| {
        let mut v: Vec<String> = std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        lines(&first),
        lines(&second),
        "identical contents after the round trip"
    );
    let (success, out) = admin(&target, &["import", first.to_str().unwrap()], &[]);
    assert!(
        !success && out.contains("line 1") && out.contains("already"),
        "a second import conflicts: {out}"
    );
    let records = std::fs::read_to_string(&first).unwrap().lines().count();
    assert!(records > 24, "the ledger's entries are exported too");
    assert_eq!(
        out.matches("skipped line").count(),
        records,
        "every existing record is listed as skipped: {out}"
    );
    assert!(
        out.contains("a ledger entry with this id already exists"),
        "{out}"
    );
    let (success, out) = admin(
        &target,
        &["import", "--partial", first.to_str().unwrap()],
        &[],
    );
    assert!(
        success && out.contains("imported 0 users, 0 products, 0 orders, 0 holds, 0 notifications"),
        "--partial accepts the skips: {out}"
    );
    // The imported store works: the idempotency key still replays.
    let pg_store = SqlStore::connect(&target).await.unwrap();
    let counts = pg_store.notification_counts().await.unwrap();
    assert_eq!((counts.pending, counts.sent, counts.failed), (8, 1, 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_backup_while_orders_are_placed_is_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "live.db");
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&url).await.unwrap());
    let u = testkit::user(&store, "live@example.com").await;
    let p = testkit::product(&store, "product-1", 100_000).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (store, stop, u, p) = (store.clone(), stop.clone(), u.clone(), p.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                store.place_order(&testkit::order(&u, &p, 1)).await.unwrap();
                n += 1;
            }
            n
        })
    };
    // Let some orders in first, then back up while the writer keeps going.
    while store
        .list_orders(Page::new(0, 10).unwrap())
        .await
        .unwrap()
        .len()
        < 10
    {
        tokio::task::yield_now().await;
    }
    let backup = dir.path().join("backup.db");
    let out = tokio::task::spawn_blocking({
        let (url, backup) = (url.clone(), backup.clone());
        move || ok(&url, &["backup", backup.to_str().unwrap()])
    })
    .await
    .unwrap();
    assert!(out.contains("backup written"), "{out}");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let placed = writer.await.unwrap();
    let (success, again) = admin(&url, &["backup", backup.to_str().unwrap()], &[]);
    assert!(!success && again.contains("already exists"), "{again}");

    let copy = SqlStore::connect(&format!("sqlite://{}", backup.display()))
        .await
        .unwrap();
    let orders = copy
        .list_orders(Page::new(0, 1000).unwrap())
        .await
        .unwrap()
        .len() as u64;
    let mut all_orders = orders;
    let mut offset = 1000;
    while all_orders == offset as u64 {
        all_orders += copy
            .list_orders(Page::new(offset, 1000).unwrap())
            .await
            .unwrap()
            .len() as u64;
        offset += 1000;
    }
    let stock = copy.get_product(&p).await.unwrap().unwrap().quantity;
    let c = copy.notification_counts().await.unwrap();
    assert!(
        all_orders >= 10 && all_orders <= placed,
        "{all_orders} of {placed}"
    );
    assert_eq!(
        100_000 - stock,
        all_orders,
        "stock taken == orders in the copy"
    );
    assert_eq!(
        c.pending + c.sent + c.failed,
        all_orders,
        "one notification per order in the copy"
    );
}

#[tokio::test]
async fn exports_are_private_and_never_overwritten_read_only_commands_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path(), "private.db");
    let store: Arc<dyn Store> = Arc::new(SqlStore::connect(&url).await.unwrap());
    testkit::user(&store, "hash@example.com").await;
    let file = dir.path().join("export.jsonl");
    ok(&url, &["export", file.to_str().unwrap()]);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "the export holds password hashes");
    }
    let (success, out) = admin(&url, &["export", file.to_str().unwrap()], &[]);
    assert!(!success && out.contains("--force"), "{out}");
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    ok(&url, &["export", "--force", file.to_str().unwrap()]);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "a replaced export is private too");
    }

    // Retrying a notification that does not exist is an error.
    let unknown = uuid::Uuid::now_v7().to_string();
    let (success, out) = admin(&url, &["notifications", "retry", "--id", &unknown], &[]);
    assert!(
        !success && out.contains("does not exist or is not failed"),
        "{out}"
    );

    // Read-only commands on a database that does not exist create nothing.
    let missing = dir.path().join("missing.db");
    let missing_url = format!("sqlite://{}?mode=rwc", missing.display());
    for args in [
        &["notifications", "counts"][..],
        &["products", "list"][..],
        &["export", dir.path().join("x.jsonl").to_str().unwrap()][..],
    ] {
        let (success, out) = admin(&missing_url, args, &[]);
        assert!(!success, "{args:?}: {out}");
        assert!(!missing.exists(), "{args:?} created the database");
    }
}

/// `products shard|sync-stock|unshard` against the Firestore emulator, while the SQL stores
/// refuse them with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn sharding_commands_on_firestore() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sqlite_url(dir.path(), "shard.db");
    let (success, out) = admin(&sqlite, &["products", "shard", "p", "--shards", "4"], &[]);
    assert!(!success && out.contains("Firestore feature"), "{out}");

    let host = std::env::var("FIRESTORE_EMULATOR_HOST")
        .expect("FIRESTORE_EMULATOR_HOST is set (the build script saw it)");
    let project = format!("admin-{}", uuid::Uuid::now_v7().simple());
    let url = format!("firestore://{project}");
    let env = [("FIRESTORE_EMULATOR_HOST", host.as_str())];
    let seed = dir.path().join("seed.json");
    std::fs::write(
        &seed,
        r#"[{"product_id":"hot","product_name":"Hot","quantity":10}]"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        let (success, out) = admin(&url, args, &env);
        assert!(success, "admin {args:?} failed:\n{out}");
        out
    };
    run(&["seed-products", seed.to_str().unwrap()]);
    let out = run(&["--json", "products", "shard", "hot", "--shards", "4"]);
    assert!(out.contains(r#""quantity":10"#), "{out}");
    let (success, out) = admin(&url, &["products", "shard", "hot", "--shards", "0"], &env);
    assert!(!success && out.contains("shards"), "{out}");
    assert!(run(&["products", "restock", "hot", "2"]).contains("hot: 12 in stock"));
    assert!(run(&["products", "sync-stock", "hot"]).contains("hot: 12 in stock"));
    assert!(run(&["products", "unshard", "hot"]).contains("hot: 12 in stock"));
    assert!(run(&["products", "list"]).contains("12"));
}
