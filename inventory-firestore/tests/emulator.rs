//! The conformance suite and compatibility with the original service's data, on the Firestore
//! emulator. `FIRESTORE_EMULATOR_HOST` must point at it (scripts/test.sh starts one); without
//! it these tests print a notice and pass, unless `INVENTORY_REQUIRE_BACKENDS` is set (CI).
//! Each test uses a project id of its own, which isolates its data in the emulator.

use std::sync::Arc;
use std::time::SystemTime;

use inventory_core::testkit::TestStore;
use inventory_core::*;
use inventory_firestore::{FirestoreConfig, FirestoreStore};
use serde::{Deserialize, Serialize};

fn emulator() -> bool {
    if std::env::var("FIRESTORE_EMULATOR_HOST").is_ok_and(|v| !v.is_empty()) {
        return true;
    }
    assert!(
        std::env::var_os("INVENTORY_REQUIRE_BACKENDS").is_none(),
        "INVENTORY_REQUIRE_BACKENDS is set but FIRESTORE_EMULATOR_HOST is not"
    );
    eprintln!("notice: FIRESTORE_EMULATOR_HOST not set, skipping a Firestore test");
    false
}

async fn connect() -> Option<FirestoreStore> {
    if !emulator() {
        return None;
    }
    let project = format!("test-{}", uuid::Uuid::now_v7().simple());
    Some(
        FirestoreStore::connect(FirestoreConfig::new(project))
            .await
            .expect("connect to the emulator"),
    )
}

mod conformance {
    inventory_core::store_conformance!(
        async {
            super::connect()
                .await
                .map(|s| std::sync::Arc::new(s) as super::TestStore)
        },
        #[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
    );
    inventory_core::reservation_conformance!(
        async {
            super::connect()
                .await
                .map(|s| std::sync::Arc::new(s) as super::TestStore)
        },
        #[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
    );
    inventory_core::ledger_conformance!(
        async {
            super::connect()
                .await
                .map(|s| std::sync::Arc::new(s) as super::TestStore)
        },
        #[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
    );
    inventory_core::event_conformance!(
        async {
            super::connect()
                .await
                .map(|s| std::sync::Arc::new(s) as super::TestStore)
        },
        #[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
    );
}

/// A product's `quantity` set by hand in the console (a plain document write, as an
/// operator's mistake would be) is found by the ledger's balance and repaired.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn a_stock_changed_by_hand_is_found_and_repaired() {
    let store = Arc::new(
        connect()
            .await
            .expect("FIRESTORE_EMULATOR_HOST is set (the build script saw it)"),
    );
    let db = store.db().clone();
    inventory_core::testkit::a_stock_changed_by_hand_is_found_and_repaired(
        store.clone() as TestStore,
        |p| async move {
            #[derive(Serialize, Deserialize)]
            struct Quantity {
                quantity: i64,
            }
            db.fluent()
                .update()
                .fields(["quantity"])
                .in_col("Products")
                .document_id(p.as_str())
                .object(&Quantity { quantity: 100 })
                .execute::<Quantity>()
                .await
                .unwrap();
        },
    )
    .await;
}

/// The ledger of a sharded product: orders, holds and cancels from two instances write one
/// entry document each (no shared counter), entries of changes that read only some shards
/// leave the totals out, and the balance (every shard and every entry, read together) adds up,
/// also across a re-sharding and a compare-and-set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn the_ledger_of_a_sharded_product_adds_up() {
    use inventory_core::testkit::{hold, order, product, user};
    assert!(
        emulator(),
        "FIRESTORE_EMULATOR_HOST is set (the build script saw it)"
    );
    let (first, a, b) = two_instances().await;
    let p = product(&a, "ledger-sharded", 50).await;
    first.shard_product(&p, 4, now()).await.unwrap();
    let mut buyers = Vec::new();
    for i in 0..20 {
        buyers.push(user(&a, &format!("ls{i}@example.com")).await);
    }
    let tasks = buyers.iter().enumerate().map(|(i, u)| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let (new, held) = (
            order(u, &p, 1),
            hold(u, &[(&p, 1)], std::time::Duration::from_secs(600)),
        );
        tokio::spawn(async move {
            let placed = store.place_order(&new).await?;
            if i % 3 == 0 {
                store
                    .cancel_order(placed.order.id, SYSTEM_ACTOR, Utc::now())
                    .await?;
            }
            if i % 4 == 0 {
                store.reserve(&held).await?;
            }
            Ok::<_, Error>(())
        })
    });
    for r in futures::future::join_all(tasks).await {
        r.unwrap().expect("stock for every step");
    }
    first.restock(&p, 5, SYSTEM_ACTOR, now()).await.unwrap();
    let balance = a.ledger_balance(&p).await.unwrap();
    assert_eq!(balance.difference(), None, "{balance:?}");
    assert_eq!(balance.product.reserved, 5);
    let entries = inventory_core::transfer::collect_all(|page| a.list_ledger(&p, page))
        .await
        .unwrap();
    // Opening, 20 orders, 7 cancels, 5 holds, a restock.
    assert_eq!(entries.len(), 34, "{entries:#?}");
    let order_entry = entries
        .iter()
        .find(|e| e.reason == StockReason::Order)
        .unwrap();
    assert_eq!((order_entry.delta, order_entry.quantity), (-1, None));
    let restock = entries
        .iter()
        .find(|e| e.reason == StockReason::Restock)
        .unwrap();
    assert_eq!(restock.quantity, Some(balance.product.quantity));
    // Re-sharded, then set: still adding up.
    first.shard_product(&p, 2, now()).await.unwrap();
    let current = a.get_product(&p).await.unwrap().unwrap().quantity;
    let set = StockSet::new(p.clone(), 40, current, None, "admin").unwrap();
    let done = a.set_stock(&set).await.unwrap();
    assert_eq!((done.quantity, done.reserved), (40, 5));
    assert_eq!(a.ledger_balance(&p).await.unwrap().difference(), None);
}

/// The documents exactly as the original Python service wrote them.
#[derive(Serialize, Deserialize)]
struct OriginalUser {
    email: String,
    password: String,
}

#[derive(Serialize, Deserialize)]
struct OriginalProduct {
    product_id: String,
    product_name: String,
    quantity: i64,
    status: String,
}

#[derive(Serialize, Deserialize)]
struct OriginalOrder {
    buyer_email: String,
    product_id: String,
    status: String,
    created_at: SystemTime,
}

const PASSLIB_HASH: &str = "$argon2id$v=19$m=65536,t=3,p=4$eC8FwBijNMZ4zxnDmBOiVA$JChjeP4Qhxy4cNqxzL2eEYolEkJWZGf6OBf9QTSGJQo";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn data_written_by_the_original_service_works() {
    let store = connect()
        .await
        .expect("FIRESTORE_EMULATOR_HOST is set (the build script saw it)");
    let db = store.db().clone();
    db.fluent()
        .insert()
        .into("Users")
        .document_id("legacy@example.com")
        .object(&OriginalUser {
            email: "legacy@example.com".into(),
            password: PASSLIB_HASH.into(),
        })
        .execute::<OriginalUser>()
        .await
        .unwrap();
    db.fluent()
        .insert()
        .into("Products")
        .document_id("product-1")
        .object(&OriginalProduct {
            product_id: "product-1".into(),
            product_name: "Demo Product".into(),
            quantity: 5,
            status: "in_stock".into(),
        })
        .execute::<OriginalProduct>()
        .await
        .unwrap();

    let store = Arc::new(store);
    let auth = Auth::new(
        store.clone(),
        AuthConfig::new("firestore-test-secret-of-32-bytes!!").unwrap(),
    )
    .unwrap();
    let (user, token) = auth
        .login("Legacy@Example.com", "MySecurePass123")
        .await
        .expect("passlib hash verifies");
    assert_eq!(user.role, Role::Customer);
    let (again, _) = auth
        .login("legacy@example.com", "MySecurePass123")
        .await
        .unwrap();
    assert_eq!(again.id, user.id, "a legacy user's id is stable");
    assert!(
        auth.login("legacy@example.com", "wrong-password")
            .await
            .is_err()
    );

    let me = auth.verify(&token.access_token).unwrap();
    let orders = Orders::new(store.clone(), store.clone());
    let req = || PlaceOrderRequest::one("product-1", Some(2));
    let first = orders.place(&me, req()).await.unwrap();
    orders.place(&me, req()).await.unwrap();
    let product = store
        .get_product(&ProductId::new("product-1").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(product.quantity, 1);
    let err = orders.place(&me, req()).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutOfStock);

    // The order documents keep the original's fields, so its tools still read them.
    let raw: OriginalOrder = db
        .fluent()
        .select()
        .by_id_in("Orders")
        .obj()
        .one(first.order.id.to_string())
        .await
        .unwrap()
        .expect("order document");
    assert_eq!(
        (
            raw.buyer_email.as_str(),
            raw.product_id.as_str(),
            raw.status.as_str()
        ),
        ("legacy@example.com", "product-1", "pending")
    );
    orders
        .place(&me, PlaceOrderRequest::one("product-1", Some(1)))
        .await
        .unwrap();
    let raw: OriginalProduct = db
        .fluent()
        .select()
        .by_id_in("Products")
        .obj()
        .one("product-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (raw.quantity, raw.status.as_str()),
        (0, "out_of_stock"),
        "status kept in step"
    );

    // The dispatcher delivers from this store too.
    let mailer = Arc::new(RecordingMailer::new());
    let report = Dispatcher::new(store.clone(), mailer.clone(), DispatcherConfig::default())
        .run_once()
        .await
        .unwrap();
    assert_eq!(report.sent, 3);
    assert_eq!(
        store
            .get_order(first.order.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        OrderStatus::Confirmed
    );
    store.close().await;
}

/// One unreadable notification document in a claimed batch: the others are claimed and sent,
/// it is parked as failed with the reason, and retrying every failed one pages through them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn a_bad_notification_never_costs_the_others_and_retry_pages() {
    assert!(
        emulator(),
        "FIRESTORE_EMULATOR_HOST is set (the build script saw it)"
    );
    let project = format!("test-{}", uuid::Uuid::now_v7().simple());
    let mut config = FirestoreConfig::new(project.clone());
    config.page_size = 2;
    let store: TestStore = Arc::new(FirestoreStore::connect(config).await.unwrap());
    let u = inventory_core::testkit::user(&store, "batch@example.com").await;
    let p = inventory_core::testkit::product(&store, "product-1", 100).await;
    let mut good = Vec::new();
    for _ in 0..5 {
        let placed = store
            .place_order(&inventory_core::testkit::order(&u, &p, 1))
            .await
            .unwrap();
        good.push(placed.order.id);
    }
    // Written as another writer might: due, pending, but not a notification we can read.
    let host = std::env::var("FIRESTORE_EMULATOR_HOST").unwrap();
    let url = format!(
        "http://{host}/v1/projects/{}/databases/(default)/documents/Notifications?documentId=broken",
        project
    );
    let resp = reqwest::Client::new()
        .post(url)
        .bearer_auth("owner")
        .json(&serde_json::json!({ "fields": {
            "status": { "stringValue": "pending" },
            "next_attempt_at": { "timestampValue": "2020-01-01T00:00:00Z" },
            "recipient": { "stringValue": "not an address" },
        }}))
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());

    let claimed = store
        .claim_due(
            "a",
            chrono::Utc::now(),
            std::time::Duration::from_secs(60),
            10,
        )
        .await
        .expect("a bad document must not fail the claim");
    assert_eq!(claimed.len(), 5, "every good notification claimed");
    let failed = store
        .list_notifications(NotificationStatus::Failed, Page::default())
        .await;
    // The broken one is failed now; it cannot be listed as a notification, so count it.
    assert!(failed.is_err() || failed.unwrap().is_empty());
    assert_eq!(store.notification_counts().await.unwrap().failed, 1);

    // Fail the five, then retry all: pages of 2 reach every one (the broken one stays failed).
    for n in &claimed {
        store.mark_failed(n.id, "a", "550 no", None).await.unwrap();
    }
    assert_eq!(store.notification_counts().await.unwrap().failed, 6);
    let reset = store.retry_failed(None, chrono::Utc::now()).await.unwrap();
    assert_eq!(reset, 5, "every readable failed notification put back");
    let counts = store.notification_counts().await.unwrap();
    assert_eq!((counts.pending, counts.failed), (5, 1));
}

/// Two clients of one fresh project, as two server instances (no listen streams): the first
/// as itself (for its admin calls) and as a store, and the second.
async fn two_instances() -> (Arc<FirestoreStore>, TestStore, TestStore) {
    let project = format!("test-{}", uuid::Uuid::now_v7().simple());
    let mut config = FirestoreConfig::new(&project);
    config.listen = false;
    let first = Arc::new(FirestoreStore::connect(config.clone()).await.unwrap());
    let a: TestStore = first.clone();
    let b: TestStore = Arc::new(FirestoreStore::connect(config).await.unwrap());
    (first, a, b)
}

/// Two stores (two clients, as two server instances) on one project, 200 buyers for 50 units
/// of one product: never oversold, every buyer answered (placed or out of stock), unsharded
/// and sharded alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn two_instances_never_oversell_sharded_or_not() {
    assert!(
        emulator(),
        "FIRESTORE_EMULATOR_HOST is set (the build script saw it)"
    );
    let (first, a, b) = two_instances().await;
    let mut buyers = Vec::new();
    for i in 0..200 {
        buyers.push(inventory_core::testkit::user(&a, &format!("buyer{i}@example.com")).await);
    }
    for (id, shards) in [("plain", 0), ("sharded", 4)] {
        let p = inventory_core::testkit::product(&a, id, 50).await;
        if shards > 0 {
            first.shard_product(&p, shards, now()).await.unwrap();
        }
        let tasks = buyers.iter().enumerate().map(|(i, u)| {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            let new = inventory_core::testkit::order(u, &p, 1);
            tokio::spawn(async move { store.place_order(&new).await })
        });
        let (mut ok, mut short) = (0, 0);
        for r in futures::future::join_all(tasks).await {
            match r.unwrap() {
                Ok(_) => ok += 1,
                Err(Error::OutOfStock { .. }) => short += 1,
                Err(e) => panic!("{id}: a buyer got {e:?}"),
            }
        }
        assert_eq!((ok, short), (50, 150), "{id}: 50 units for 200 buyers");
        let left = a.get_product(&p).await.unwrap().unwrap().quantity;
        assert_eq!(left, 0, "{id}: sold out, never below zero");
    }
}

/// Baskets naming a sharded and a plain product, from two instances at once, some naming
/// them in the other order, some cancelled: neither product ever sells more than its stock,
/// a short basket takes nothing from the other product, and a cancel returns both products'
/// units.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn baskets_with_a_sharded_product_never_oversell() {
    use inventory_core::testkit::{basket, product, user};
    assert!(
        emulator(),
        "FIRESTORE_EMULATOR_HOST is set (the build script saw it)"
    );
    let (first, a, b) = two_instances().await;
    let sharded = product(&a, "basket-sharded", 30).await;
    first.shard_product(&sharded, 4, now()).await.unwrap();
    let plain = product(&a, "basket-plain", 40).await;
    let mut buyers = Vec::new();
    for i in 0..60 {
        buyers.push(user(&a, &format!("bb{i}@example.com")).await);
    }
    let tasks = buyers.iter().enumerate().map(|(i, u)| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let new = if i % 3 == 0 {
            basket(u, &[(&plain, 1), (&sharded, 1)])
        } else {
            basket(u, &[(&sharded, 1), (&plain, 1)])
        };
        let cancel = i % 5 == 0;
        tokio::spawn(async move {
            let placed = store.place_order(&new).await?;
            if cancel {
                store
                    .cancel_order(placed.order.id, SYSTEM_ACTOR, Utc::now())
                    .await?;
            }
            Ok::<_, Error>(cancel)
        })
    });
    let (mut kept, mut short) = (0u64, 0);
    for r in futures::future::join_all(tasks).await {
        match r.unwrap() {
            Ok(false) => kept += 1,
            Ok(true) => {}
            Err(Error::OutOfStock { .. }) => short += 1,
            Err(e) => panic!("a basket got {e:?}"),
        }
    }
    let left = |p: ProductId| {
        let a = a.clone();
        async move { a.get_product(&p).await.unwrap().unwrap().quantity }
    };
    let (s, p) = (left(sharded.clone()).await, left(plain.clone()).await);
    assert_eq!(s + kept, 30, "sharded: {s} left, {kept} sold");
    assert_eq!(p + kept, 40, "plain: {p} left, {kept} sold");
    assert!(short > 0, "60 baskets for 30 units: some are short");
    // Short on the sharded product alone: the plain product keeps its units.
    let u = user(&a, "short-basket@example.com").await;
    let err = a
        .place_order(&basket(&u, &[(&plain, 1), (&sharded, s + 1)]))
        .await
        .unwrap_err();
    let Error::OutOfStock { short } = err else {
        panic!("out of stock expected, got {err:?}");
    };
    assert_eq!(
        (short.len(), short[0].available),
        (1, s),
        "what the shards hold"
    );
    assert_eq!(left(plain.clone()).await, p);
}

/// Holds on a sharded and a plain product from two instances at once: held, released,
/// checked out and left to expire, with both instances sweeping together. Every unit stays
/// accounted for (available + reserved + sold = initial) on both products, the shards'
/// reserved units come back to zero once every hold has ended, and a hold survives a
/// re-sharding of its product (its units return to the new layout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn holds_on_sharded_products_account_for_every_unit() {
    use inventory_core::testkit::{hold, product, user};
    use std::time::Duration;
    assert!(
        emulator(),
        "FIRESTORE_EMULATOR_HOST is set (the build script saw it)"
    );
    let (first, a, b) = two_instances().await;
    let sharded = product(&a, "hold-sharded", 60).await;
    first.shard_product(&sharded, 4, now()).await.unwrap();
    let plain = product(&a, "hold-plain", 80).await;
    let mut buyers = Vec::new();
    for i in 0..40 {
        buyers.push(user(&a, &format!("hb{i}@example.com")).await);
    }
    // Each buyer: hold 1 of each (in either order) for a short or a long time, then release,
    // check out or leave it.
    let tasks = buyers.iter().enumerate().map(|(i, u)| {
        let store = if i % 2 == 0 { a.clone() } else { b.clone() };
        let lines = if i % 3 == 0 {
            [(&plain, 1), (&sharded, 1)]
        } else {
            [(&sharded, 1), (&plain, 1)]
        };
        let ttl = Duration::from_secs(if i % 4 == 3 { 1 } else { 600 });
        let new = hold(u, &lines, ttl);
        tokio::spawn(async move {
            let held = store.reserve(&new).await?;
            match i % 4 {
                0 => {
                    store.release_reservation(held.id, Utc::now()).await?;
                    Ok::<u64, Error>(0)
                }
                1 => {
                    store
                        .checkout_reservation(held.id, &held.order(Utc::now()))
                        .await?;
                    Ok(1)
                }
                _ => Ok(0),
            }
        })
    });
    let mut sold = 0u64;
    for r in futures::future::join_all(tasks).await {
        match r.unwrap() {
            Ok(n) => sold += n,
            Err(e) => panic!("a hold got {e:?} (there is stock for every one)"),
        }
    }
    let quantities = |p: ProductId| {
        let a = a.clone();
        async move {
            let p = a.get_product(&p).await.unwrap().unwrap();
            (p.quantity, p.reserved)
        }
    };
    for (p, initial) in [(&sharded, 60), (&plain, 80)] {
        let (available, reserved) = quantities(p.clone()).await;
        assert_eq!(
            available + reserved + sold,
            initial,
            "{p}: {available} + {reserved} + {sold}"
        );
        assert!(reserved > 0, "{p}: the long holds still hold");
    }
    // Re-sharded while units are held: the held units move with the stock.
    first.shard_product(&sharded, 2, now()).await.unwrap();
    let (available, reserved) = quantities(sharded.clone()).await;
    assert_eq!(available + reserved + sold, 60, "after re-sharding");
    // Everything that is left runs out now; both instances sweep at once.
    let later = Utc::now() + chrono::Duration::hours(1);
    let (x, y) = tokio::join!(
        a.expire_reservations(later, 100),
        b.expire_reservations(later, 100)
    );
    let expired = x.unwrap() + y.unwrap();
    assert_eq!(
        expired, 20,
        "the 10 short and the 10 long holds left expire, each once"
    );
    assert_eq!(sold, 10);
    for (p, initial) in [(&sharded, 60), (&plain, 80)] {
        assert_eq!(
            quantities(p.clone()).await,
            (initial - sold, 0),
            "{p} after the sweep"
        );
    }
    // Back into the document: nothing held, nothing lost.
    first.unshard_product(&sharded, now()).await.unwrap();
    assert_eq!(quantities(sharded.clone()).await, (60 - sold, 0));
}

/// The handoff to a local dispatcher: confirmations leased at placement, outcomes recorded
/// with one commit whose precondition is the version written at placement.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn handoff_leases_confirmations_to_the_local_dispatcher() {
    let store = connect()
        .await
        .expect("FIRESTORE_EMULATOR_HOST is set (the build script saw it)");
    inventory_core::testkit::handoff_leases_confirmations_to_the_local_dispatcher(Arc::new(store))
        .await;
}

/// A send recorded without a read cannot overwrite what another process did meanwhile: an
/// order cancelled through a second client after its confirmation was handed over stays
/// cancelled, and the send is reported as having lost its lease. The same for an order whose
/// lease ran out and was claimed by another process's dispatcher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn a_send_recorded_without_a_read_never_overwrites_another_process() {
    use inventory_core::handoff::Handoff;
    assert!(
        emulator(),
        "FIRESTORE_EMULATOR_HOST is set (the build script saw it)"
    );
    let project = format!("test-{}", uuid::Uuid::now_v7().simple());
    let here: TestStore = Arc::new(
        FirestoreStore::connect(FirestoreConfig::new(&project))
            .await
            .unwrap(),
    );
    let there = FirestoreStore::connect(FirestoreConfig::new(&project))
        .await
        .unwrap();
    let user = inventory_core::testkit::user(&here, "raced@example.com").await;
    let product = inventory_core::testkit::product(&here, "raced", 10).await;
    let lease = std::time::Duration::from_secs(60);
    let (handoff, mut handed) =
        Handoff::new("here", lease, Arc::new(tokio::sync::Semaphore::new(4)));
    assert!(here.accept_handoff(handoff));

    let new = inventory_core::testkit::order(&user, &product, 1);
    here.place_order(&new).await.unwrap();
    let first = handed.try_recv().expect("handed over");
    there
        .cancel_order(new.id, SYSTEM_ACTOR, Utc::now())
        .await
        .unwrap();
    let result = here
        .mark_sent(first.notification.id, "here", Utc::now())
        .await;
    assert!(
        matches!(result, Err(Error::LeaseLost(_))),
        "recorded over a cancel made by another process: {result:?}"
    );
    let order = there.get_order(new.id).await.unwrap().unwrap();
    assert_eq!(order.status, OrderStatus::Cancelled);
    let n = there.notification_for_order(new.id).await.unwrap().unwrap();
    assert_eq!(n.status, NotificationStatus::Cancelled);

    // Leased at placement until a time already past (a stalled process): another process
    // claims it, and the stalled send cannot record over that claim.
    let mut late = inventory_core::testkit::order(&user, &product, 1);
    late.now = Utc::now() - chrono::Duration::seconds(120);
    here.place_order(&late).await.unwrap();
    let second = handed.try_recv().expect("handed over");
    let claimed = there
        .claim_due("there", Utc::now(), lease, 10)
        .await
        .unwrap();
    assert_eq!(
        claimed.iter().map(|n| n.id).collect::<Vec<_>>(),
        [second.notification.id]
    );
    let result = here
        .mark_sent(second.notification.id, "here", Utc::now())
        .await;
    assert!(
        matches!(result, Err(Error::LeaseLost(_))),
        "recorded over another process's claim: {result:?}"
    );
    there
        .mark_sent(claimed[0].id, "there", Utc::now())
        .await
        .unwrap();
    let n = there
        .notification_for_order(late.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((n.status, n.attempts), (NotificationStatus::Sent, 2));
}

/// An order placed by a process without a dispatcher (an API-only server) wakes another
/// process's dispatcher through the beacon document, long before its sweep would find it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn an_order_placed_elsewhere_wakes_the_dispatcher_through_the_beacon() {
    assert!(
        emulator(),
        "FIRESTORE_EMULATOR_HOST is set (the build script saw it)"
    );
    let project = format!("test-{}", uuid::Uuid::now_v7().simple());
    let mut api_only = FirestoreConfig::new(&project);
    api_only.listen = false;
    let api: TestStore = Arc::new(FirestoreStore::connect(api_only).await.unwrap());
    let worker: TestStore = Arc::new(
        FirestoreStore::connect(FirestoreConfig::new(&project))
            .await
            .unwrap(),
    );
    let mailer = Arc::new(RecordingMailer::new());
    let config = DispatcherConfig {
        sweep_interval: std::time::Duration::from_secs(3600),
        ..DispatcherConfig::default()
    };
    let shutdown = CancellationToken::new();
    let dispatcher =
        Dispatcher::new(worker.clone(), mailer.clone(), config).spawn(shutdown.clone());
    let user = inventory_core::testkit::user(&api, "far@example.com").await;
    let product = inventory_core::testkit::product(&api, "far", 10).await;
    // The first may be found by the dispatcher's first claim; once it is sent the dispatcher
    // is idle, and only the beacon can wake it within the hour.
    for n in 1..=2 {
        api.place_order(&inventory_core::testkit::order(&user, &product, 1))
            .await
            .unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(20), mailer.wait_for(n))
            .await
            .unwrap_or_else(|_| {
                panic!("order {n} was not delivered: the beacon did not wake the dispatcher")
            });
    }
    shutdown.cancel();
    dispatcher.await.unwrap();
}

/// A commit whose answer is lost (a dropped connection) is retried by the transaction runner;
/// the retry finds the order the first attempt placed. Replayed here by placing the same order
/// (same ids) again: the order is the answer, placed once, its stock taken once; an order that
/// only shares the id is still a conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn a_retried_commit_finds_its_own_order() {
    let store = connect()
        .await
        .expect("FIRESTORE_EMULATOR_HOST is set (the build script saw it)");
    let store: TestStore = Arc::new(store);
    let user = inventory_core::testkit::user(&store, "lost@example.com").await;
    let product = inventory_core::testkit::product(&store, "lost", 10).await;
    let new = inventory_core::testkit::order(&user, &product, 2);
    let first = store.place_order(&new).await.unwrap();
    let again = store.place_order(&new).await.unwrap();
    assert_eq!((again.order.id, again.replayed), (first.order.id, false));
    let stock = store.get_product(&product).await.unwrap().unwrap().quantity;
    assert_eq!(stock, 8, "the stock was taken once");
    assert_eq!(store.notification_counts().await.unwrap().pending, 1);

    let mut other = inventory_core::testkit::order(&user, &product, 1);
    other.id = new.id;
    let result = store.place_order(&other).await;
    let Err(Error::Conflict(detail)) = &result else {
        panic!("another order under a taken id must stay a conflict: {result:?}");
    };
    assert!(
        !detail.contains("partition") && !detail.contains("/Orders/"),
        "a conflict's detail (answered to clients) names internals: {detail}"
    );
    assert_eq!(
        store.get_product(&product).await.unwrap().unwrap().quantity,
        8
    );
}
