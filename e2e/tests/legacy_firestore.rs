//! Drop-in on the original service's real Firestore data: documents are seeded through the
//! emulator's REST API in exactly the shapes the original writes (never through our types),
//! then the whole API flow runs on them through the server process, configured the way the
//! original's compose file configures it (`GCP_PROJECT_ID`, `FIRESTORE_EMULATOR_HOST`,
//! `JWT_SECRET=dev-secret`, no `DATABASE_URL`). No response may be a 500.

use inventory_e2e as support;

use serde_json::{Value, json};
use support::{Client, Proc};

/// The emulator's host, or `None` (a notice) when it is not configured here.
fn emulator() -> Option<String> {
    match std::env::var("FIRESTORE_EMULATOR_HOST") {
        Ok(host) if !host.is_empty() => Some(host),
        _ => {
            assert!(
                std::env::var_os("INVENTORY_REQUIRE_BACKENDS").is_none(),
                "INVENTORY_REQUIRE_BACKENDS is set but FIRESTORE_EMULATOR_HOST is not"
            );
            eprintln!("SKIPPED: FIRESTORE_EMULATOR_HOST not set");
            None
        }
    }
}

/// `passlib.hash.argon2.hash("MySecurePass123")`, as the original stores it.
const PASSLIB_HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$eC8FwBijNMZ4zxnDmBOiVA$JChjeP4Qhxy4cNqxzL2eEYolEkJWZGf6OBf9QTSGJQo";
const PASSWORD: &str = "MySecurePass123";

/// The emulator's REST API, as any other client of the database sees it.
struct Rest {
    http: reqwest::Client,
    base: String,
}

impl Rest {
    fn new(host: &str, project: &str) -> Rest {
        Rest {
            http: reqwest::Client::new(),
            base: format!("http://{host}/v1/projects/{project}/databases/(default)/documents"),
        }
    }

    /// Creates a document; `id` `None` lets Firestore choose an automatic id, as the
    /// original's `collection.add()` does. Returns the id.
    async fn create(&self, col: &str, id: Option<&str>, fields: Value) -> String {
        let mut url = format!("{}/{col}", self.base);
        if let Some(id) = id {
            url = format!("{url}?documentId={}", urlencode(id));
        }
        let resp = self
            .http
            .post(url)
            .bearer_auth("owner")
            .json(&json!({ "fields": fields }))
            .send()
            .await
            .expect("emulator REST");
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert!(status.is_success(), "seeding {col}: {status} {body}");
        body["name"]
            .as_str()
            .unwrap()
            .rsplit('/')
            .next()
            .unwrap()
            .to_owned()
    }

    /// A document's fields in REST form.
    async fn fields(&self, col: &str, id: &str) -> Value {
        let resp = self
            .http
            .get(format!("{}/{col}/{}", self.base, urlencode(id)))
            .bearer_auth("owner")
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{col}/{id}: {}", resp.status());
        resp.json::<Value>().await.unwrap()["fields"].clone()
    }

    /// The documents of a collection (a path: `Products/hot/stock` for a subcollection), in
    /// REST form.
    async fn list(&self, col: &str) -> Vec<Value> {
        let resp = self
            .http
            .get(format!("{}/{col}?pageSize=1000", self.base))
            .bearer_auth("owner")
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "{col}: {}", resp.status());
        let list: Value = resp.json().await.unwrap();
        list["documents"].as_array().cloned().unwrap_or_default()
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn s(v: &str) -> Value {
    json!({ "stringValue": v })
}

fn int(v: i64) -> Value {
    json!({ "integerValue": v.to_string() })
}

/// Prints the server's logs when the test fails.
struct LogsOnPanic<'a>(&'a Proc);

impl Drop for LogsOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("server logs:\n{}", self.0.logs());
        }
    }
}

/// Every call of this test goes through here: no answer may be a 500.
async fn call(
    api: &Client,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let (status, body) = api.call(method.clone(), path, token, body).await;
    assert!(status < 500, "{method} {path} answered {status}: {body}");
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn the_originals_documents_serve_the_whole_api() {
    let host = emulator().expect("FIRESTORE_EMULATOR_HOST is set (the build script saw it)");
    let project = format!("legacy-{}", uuid::Uuid::now_v7().simple());
    let rest = Rest::new(&host, &project);

    // Exactly what the original writes.
    rest.create(
        "Users",
        Some("Bob.Mixed@Example.com"),
        json!({ "password": s(PASSLIB_HASH) }),
    )
    .await;
    rest.create(
        "Users",
        Some("legacy@example.com"),
        json!({ "password": s(PASSLIB_HASH) }),
    )
    .await;
    rest.create(
        "Products",
        Some("product-1"),
        json!({
            "product_name": s("Demo Product"), "quantity": int(5), "status": s("in_stock"),
            // Fields an operator added: they must survive every write of ours.
            "price": { "doubleValue": 9.99 }, "description": s("A demo"),
        }),
    )
    .await;
    rest.create(
        "Products",
        Some("product-2"),
        json!({ "product_name": s("Sold out"), "quantity": int(0), "status": s("out_of_stock") }),
    )
    .await;
    let mut bobs_orders = Vec::new();
    for _ in 0..3 {
        bobs_orders.push(
            rest.create(
                "Orders",
                None,
                json!({ "buyer_email": s("Bob.Mixed@Example.com"), "product_id": s("product-1") }),
            )
            .await,
        );
    }
    let legacys_order = rest
        .create(
            "Orders",
            None,
            json!({ "buyer_email": s("legacy@example.com"), "product_id": s("product-1") }),
        )
        .await;

    // Configured as the original's compose file does: no DATABASE_URL.
    let server = Proc::start(
        "server",
        &[
            ("GCP_PROJECT_ID", project.clone()),
            ("FIRESTORE_EMULATOR_HOST", host.clone()),
            ("APP_ENV", "dev".into()),
            ("JWT_SECRET", "dev-secret".into()),
            ("PASSWORD_MIN_LENGTH", "6".into()),
            ("SMTP_MODE", "mock".into()),
            ("ADMIN_EMAILS", "admin@example.com".into()),
            ("ADMIN_REQUIRES_VERIFIED_EMAIL", "false".into()),
        ],
    );
    assert!(
        server.logs().contains("backend=firestore"),
        "GCP_PROJECT_ID selects Firestore:\n{}",
        server.logs()
    );
    let _logs = LogsOnPanic(&server);
    let api = Client::new(&server.url);

    let (status, body) = call(&api, "GET", "/ready", None, None).await;
    assert_eq!(status, 200, "{body}");

    // The original's user, whatever case it is typed in.
    let login = |email: &'static str, password: &'static str| {
        let api = api.clone();
        async move {
            call(
                &api,
                "POST",
                "/auth/login",
                None,
                Some(json!({ "email": email, "password": password })),
            )
            .await
        }
    };
    let (status, body) = login("bob.mixed@example.com", PASSWORD).await;
    assert_eq!(status, 200, "{body}");
    let bob = body["access_token"].as_str().unwrap().to_owned();
    let (status, _) = login("Bob.Mixed@Example.com", PASSWORD).await;
    assert_eq!(status, 200);
    let (status, _) = login("bob.mixed@example.com", "wrong-password").await;
    assert_eq!(status, 401);
    let (status, _) = login("nobody@example.com", PASSWORD).await;
    assert_eq!(status, 401);
    // One account per address, across cases; the stored password is untouched.
    for email in [
        "bob.mixed@example.com",
        "BOB.MIXED@EXAMPLE.COM",
        "legacy@example.com",
    ] {
        let (status, body) = call(
            &api,
            "POST",
            "/auth/register",
            None,
            Some(json!({ "email": email, "password": "another-password" })),
        )
        .await;
        assert_eq!(status, 409, "{email}: {body}");
    }
    assert_eq!(
        rest.fields("Users", "Bob.Mixed@Example.com").await["password"]["stringValue"],
        PASSLIB_HASH
    );

    // The original's orders: listed for their buyer, readable by id, derived fields.
    let (status, list) = call(&api, "GET", "/orders", Some(&bob), None).await;
    assert_eq!(status, 200, "{list}");
    let listed = list.as_array().unwrap();
    assert_eq!(listed.len(), 3, "{list}");
    for o in listed {
        assert_eq!(o["status"], "confirmed");
        assert_eq!(o["quantity"], 1);
        assert_eq!(o["product_id"], "product-1");
    }
    let first = listed[0]["order_id"].as_str().unwrap().to_owned();
    let (status, one) = call(&api, "GET", &format!("/orders/{first}"), Some(&bob), None).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["order_id"], first.as_str());
    // Someone else's legacy order stays invisible.
    let legacy = {
        let (_, body) = login("legacy@example.com", PASSWORD).await;
        body["access_token"].as_str().unwrap().to_owned()
    };
    let (_, theirs) = call(&api, "GET", "/orders", Some(&legacy), None).await;
    assert_eq!(theirs.as_array().unwrap().len(), 1, "{theirs}");
    let theirs_id = theirs[0]["order_id"].as_str().unwrap().to_owned();
    let (status, _) = call(
        &api,
        "GET",
        &format!("/orders/{theirs_id}"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // Placing an order writes only our fields of the product.
    let (status, placed) = call(
        &api,
        "POST",
        "/orders/place",
        Some(&bob),
        Some(json!({ "buyer_email": "bob.mixed@example.com", "product_id": "product-1" })),
    )
    .await;
    assert_eq!(status, 200, "{placed}");
    let product = rest.fields("Products", "product-1").await;
    assert_eq!(product["quantity"]["integerValue"], "4");
    assert_eq!(product["status"]["stringValue"], "in_stock");
    assert_eq!(product["price"]["doubleValue"], 9.99, "{product}");
    assert_eq!(product["description"]["stringValue"], "A demo");
    let (_, list) = call(&api, "GET", "/orders", Some(&bob), None).await;
    assert_eq!(list.as_array().unwrap().len(), 4, "{list}");
    assert_eq!(list[0]["order_id"], placed["order_id"], "newest first");

    // Out of stock on the original's sold-out product is a 409, not a 500.
    let (status, _) = call(
        &api,
        "POST",
        "/orders/place",
        Some(&bob),
        Some(json!({ "product_id": "product-2" })),
    )
    .await;
    assert_eq!(status, 409);

    // A legacy order can be cancelled: its unit goes back, its fields stay.
    let (status, cancelled) = call(
        &api,
        "POST",
        &format!("/orders/{first}/cancel"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["status"], "cancelled");
    let (status, _) = call(
        &api,
        "POST",
        &format!("/orders/{first}/cancel"),
        Some(&bob),
        None,
    )
    .await;
    assert_eq!(status, 409, "cancelled once only");
    let product = rest.fields("Products", "product-1").await;
    assert_eq!(product["quantity"]["integerValue"], "5");
    assert_eq!(product["price"]["doubleValue"], 9.99);
    let cancelled_doc = bobs_orders
        .iter()
        .map(|id| (id, rest.fields("Orders", id)))
        .collect::<Vec<_>>();
    let mut found = 0;
    for (_, doc) in cancelled_doc {
        let doc = doc.await;
        assert_eq!(doc["buyer_email"]["stringValue"], "Bob.Mixed@Example.com");
        assert_eq!(doc["product_id"]["stringValue"], "product-1");
        if doc["status"]["stringValue"] == "cancelled" {
            found += 1;
        }
    }
    assert_eq!(
        found, 1,
        "exactly the cancelled legacy order carries the new status"
    );

    // The old runbook's flow: a 7-character password, with PASSWORD_MIN_LENGTH=6.
    let (status, body) = call(
        &api,
        "POST",
        "/auth/register",
        None,
        Some(json!({ "email": "test@example.com", "password": "test123" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = call(
        &api,
        "POST",
        "/auth/register",
        None,
        Some(json!({ "email": "short@example.com", "password": "12345" })),
    )
    .await;
    assert_eq!(status, 422, "below PASSWORD_MIN_LENGTH");

    // Admins see every order, the original's included; restock keeps unknown fields.
    let admin = api.token("admin@example.com", "admin-password").await;
    let (status, all) = call(
        &api,
        "GET",
        "/orders?all=true&limit=100",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{all}");
    let all_ids: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["order_id"].as_str().unwrap())
        .collect();
    assert_eq!(all_ids.len(), 5, "{all}");
    assert!(all_ids.contains(&theirs_id.as_str()));
    let (status, body) = call(
        &api,
        "POST",
        "/products/product-1/restock",
        Some(&admin),
        Some(json!({ "quantity": 10 })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let product = rest.fields("Products", "product-1").await;
    assert_eq!(product["quantity"]["integerValue"], "15");
    assert_eq!(product["description"]["stringValue"], "A demo");
    // Its ledger opened with the original's stock at our first change, and adds up.
    let (status, entries) = call(
        &api,
        "GET",
        "/products/product-1/ledger",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{entries}");
    let entries = entries.as_array().unwrap();
    let sum: i64 = entries.iter().map(|e| e["delta"].as_i64().unwrap()).sum();
    assert_eq!(sum, 15, "{entries:?}");
    assert_eq!(entries.last().unwrap()["reason"], "opening", "{entries:?}");
    assert_eq!(entries[0]["reason"], "restock");
    let (status, products) = call(&api, "GET", "/products", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(products.as_array().unwrap().len(), 2, "{products}");

    // The export writes every document, the original's included, and says so.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("export.jsonl");
    let (status, out) = Proc::run_to_exit_with_args(
        "admin",
        &["export", file.to_str().unwrap()],
        &[
            ("GCP_PROJECT_ID", project.clone()),
            ("FIRESTORE_EMULATOR_HOST", host.clone()),
        ],
    );
    assert!(status.success(), "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    let count = |kind: &str| {
        text.lines()
            .filter(|l| l.contains(&format!("\"type\":\"{kind}\"")))
            .count()
    };
    // bob, legacy, test, admin; 2 products; 4 legacy + 1 placed orders; 1 notification.
    assert_eq!(
        (
            count("user"),
            count("product"),
            count("order"),
            count("notification")
        ),
        (4, 2, 5, 1),
        "{out}"
    );
    assert!(
        out.contains("exported 4 users, 2 products, 5 orders"),
        "{out}"
    );
    let _ = legacys_order;
}

/// Sharding a product the original wrote (seeded and read through the emulator's REST API,
/// as the original and its clients see the document): its own fields stay, the API shows the
/// true total, the document keeps a snapshot for the original's clients, orders take from the
/// shards, restock and cancel put units back, and unsharding returns the stock to the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn sharding_a_product_of_the_original() {
    use inventory_core::testkit::{TestStore, order, user};
    use inventory_core::{Error, Page, ProductId, now};
    use inventory_kit::firestore::{FirestoreConfig, FirestoreStore};
    let host = emulator().expect("FIRESTORE_EMULATOR_HOST is set (the build script saw it)");
    let project = format!("shard-{}", uuid::Uuid::now_v7().simple());
    let rest = Rest::new(&host, &project);
    rest.create(
        "Products",
        Some("hot"),
        json!({
            "product_name": s("Hot"),
            "quantity": int(10),
            "status": s("in_stock"),
            "price": { "doubleValue": 9.5 },
        }),
    )
    .await;
    // (quantity, status, price) as the original's clients read them.
    let raw = || async {
        let f = rest.fields("Products", "hot").await;
        (
            f["quantity"]["integerValue"]
                .as_str()
                .unwrap()
                .parse::<i64>()
                .unwrap(),
            f["status"]["stringValue"].as_str().unwrap().to_owned(),
            f["price"]["doubleValue"].as_f64().unwrap(),
        )
    };
    let store = std::sync::Arc::new(
        FirestoreStore::connect(FirestoreConfig::new(&project))
            .await
            .unwrap(),
    );
    // The shard documents, counted through the REST API.
    let shard_docs = || async { rest.list("Products/hot/stock").await.len() };
    let id = ProductId::new("hot").unwrap();
    let sharded = store.shard_product(&id, 4, now()).await.unwrap();
    assert_eq!(sharded.quantity, 10);
    assert_eq!(shard_docs().await, 4, "four shard documents");
    assert_eq!(raw().await.2, 9.5, "the operator's field survives sharding");

    let shop: TestStore = store.clone();
    let u = user(&shop, "shard@example.com").await;
    // 7 units asked by one order: more than any one shard holds (2 or 3), so it takes from
    // several.
    let big = shop
        .place_order(&order(&u, &id, 7))
        .await
        .expect("7 of 10 units across shards");
    assert_eq!(shop.get_product(&id).await.unwrap().unwrap().quantity, 3);
    assert_eq!(
        raw().await.0,
        10,
        "orders do not write the product document"
    );
    assert!(matches!(
        shop.place_order(&order(&u, &id, 4)).await,
        Err(Error::OutOfStock { .. })
    ));
    // Reconcile sees the document's snapshot behind the shards (and nothing wrong with the
    // ledger, which opened when the product was sharded); --repair syncs the snapshot.
    let admin = |args: &[&str]| {
        let (status, out) = Proc::run_to_exit_with_args(
            "admin",
            args,
            &[
                ("DATABASE_URL", format!("firestore://{project}")),
                ("FIRESTORE_EMULATOR_HOST", host.clone()),
            ],
        );
        (status.success(), out)
    };
    let (ok, out) = admin(&["reconcile"]);
    assert!(
        !ok && out.contains("snapshot differs") && out.contains("hot"),
        "{out}"
    );
    assert_eq!(raw().await.0, 10, "reconcile alone writes nothing");
    let (ok, out) = admin(&["reconcile", "--repair"]);
    assert!(!ok && out.contains("snapshot synced"), "{out}");
    let (quantity, status, _) = raw().await;
    assert_eq!((quantity, status.as_str()), (3, "in_stock"));
    let (ok, out) = admin(&["reconcile"]);
    assert!(ok, "{out}");

    assert_eq!(
        shop.restock(&id, 5, inventory_kit::core::SYSTEM_ACTOR, now())
            .await
            .unwrap()
            .quantity,
        8
    );
    shop.cancel_order(big.order.id, inventory_kit::core::SYSTEM_ACTOR, now())
        .await
        .unwrap();
    assert_eq!(shop.get_product(&id).await.unwrap().unwrap().quantity, 15);
    let listed = shop.list_products(Page::default()).await.unwrap();
    assert_eq!(listed[0].quantity, 15, "the list shows the true total too");

    let back = store.unshard_product(&id, now()).await.unwrap();
    assert_eq!(back.quantity, 15);
    let (quantity, _, price) = raw().await;
    assert_eq!((quantity, price), (15, 9.5));
    assert_eq!(shard_docs().await, 0, "unsharding deletes the shards");
    shop.place_order(&order(&u, &id, 15))
        .await
        .expect("unsharded again: the document's stock");
    assert_eq!(raw().await.0, 0);
    // Every unit since the product met us is in its ledger.
    let balance = shop.ledger_balance(&id).await.unwrap();
    assert_eq!(balance.difference(), None, "{balance:?}");
    let entries = inventory_core::transfer::collect_all(|page| shop.list_ledger(&id, page))
        .await
        .unwrap();
    let opening = entries.last().unwrap();
    assert_eq!(
        (opening.reason, opening.delta),
        (inventory_core::StockReason::Opening, 10),
        "the original's stock opens the ledger"
    );
}

/// A commit whose answer is lost on the network: the server's connection to Firestore is
/// closed, by a proxy that reads the gRPC frames, just as the emulator answers the order's
/// commit (it has placed the order). The buyer must get that order, once: not an error for an
/// order that exists, and not a second order or a second unit taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn an_order_whose_commit_answer_is_lost_is_placed_once() {
    let host = emulator().expect("FIRESTORE_EMULATOR_HOST is set (the build script saw it)");
    let project = format!("lost-{}", uuid::Uuid::now_v7().simple());
    let rest = Rest::new(&host, &project);
    rest.create(
        "Products",
        Some("p"),
        json!({ "product_name": s("P"), "quantity": int(10), "status": s("in_stock") }),
    )
    .await;
    let proxy = support::grpc_proxy::GrpcProxy::start(host.clone()).await;
    let server = Proc::start(
        "server",
        &[
            ("GCP_PROJECT_ID", project.clone()),
            ("FIRESTORE_EMULATOR_HOST", proxy.addr.clone()),
            ("JWT_SECRET", support::JWT_SECRET.into()),
            ("SMTP_MODE", "mock".into()),
        ],
    );
    let _logs = LogsOnPanic(&server);
    let api = Client::new(&server.url);
    let buyer = "lost.answer@example.com";
    let token = api.token(buyer, "a long enough password").await;

    // Only the commit carries the buyer's address (in the order and its confirmation).
    proxy.lose_answer_to(buyer.as_bytes());
    let (status, placed) = api
        .post(
            "/orders/place",
            Some(&token),
            json!({ "buyer_email": buyer, "product_id": "p" }),
        )
        .await;
    assert_eq!(proxy.answers_lost(), 1, "the commit's answer was not lost");
    assert_eq!(status, 200, "{placed}");

    let orders: Vec<Value> = rest
        .list("Orders")
        .await
        .into_iter()
        .filter(|o| o["fields"]["buyer_email"]["stringValue"] == buyer)
        .collect();
    assert_eq!(orders.len(), 1, "one order placed: {orders:?}");
    assert_eq!(
        orders[0]["fields"]["order_id"]["stringValue"], placed["order_id"],
        "the answer is the order placed"
    );
    let product = rest.fields("Products", "p").await;
    assert_eq!(product["quantity"]["integerValue"], "9", "one unit taken");
}
