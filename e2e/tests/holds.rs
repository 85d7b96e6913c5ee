//! Holds over HTTP, against the server process with a real SMTP server: hold, read, check
//! out (the confirmation arrives), release, and a hold that runs out released by the server's
//! own sweep.

use inventory_e2e as support;

use std::time::Duration;

use inventory_mail::testing::SmtpSink;
use serde_json::{Value, json};
use support::{Client, Proc};

const WAIT: Duration = Duration::from_secs(15);

/// (available, reserved) of a product.
async fn stock(api: &Client, id: &str) -> (Value, Value) {
    let (status, body) = api.get(&format!("/products/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    (body["quantity"].clone(), body["reserved"].clone())
}

async fn holds(env: Vec<(&'static str, String)>, sink: &SmtpSink) {
    let server = Proc::start("server", &env);
    let api = Client::new(&server.url);
    let ann = api.token("ann@example.com", "MySecurePass123").await;
    let bob = api.token("bob@example.com", "MySecurePass123").await;

    let (status, held) = api
        .post(
            "/reservations",
            Some(&ann),
            json!({"lines": [{"product_id": "product-1", "quantity": 2}, {"product_id": "scarce"}],
                   "ttl_seconds": 600}),
        )
        .await;
    assert_eq!(status, 201, "{held}");
    assert_eq!(held["status"], "active");
    assert!(held["expires_at"].is_string(), "{held}");
    assert_eq!(stock(&api, "product-1").await, (json!(3), json!(2)));
    assert_eq!(stock(&api, "scarce").await, (json!(0), json!(1)));
    let id = held["reservation_id"].as_str().unwrap().to_owned();
    let path = format!("/reservations/{id}");

    // Someone else's hold is not found; the held units are not for sale meanwhile.
    assert_eq!(api.get(&path, Some(&bob)).await.0, 404);
    let (status, body) = api
        .post(
            "/orders",
            Some(&bob),
            json!({"lines": [{"product_id": "scarce"}]}),
        )
        .await;
    assert_eq!((status, body["code"].clone()), (409, json!("out_of_stock")));
    let (status, body) = api
        .post(&format!("{path}/checkout"), Some(&bob), json!({}))
        .await;
    assert_eq!(status, 404, "{body}");

    // Checked out: the held units are the order's, its confirmation goes out.
    let (status, order) = api
        .post(&format!("{path}/checkout"), Some(&ann), json!({}))
        .await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["lines"], held["lines"]);
    assert_eq!(stock(&api, "product-1").await, (json!(3), json!(0)));
    assert_eq!(stock(&api, "scarce").await, (json!(0), json!(0)));
    assert_eq!(sink.wait_for(1, WAIT).await, 1, "the confirmation arrives");
    let text = sink.messages()[0].text();
    assert!(text.contains(order["order_id"].as_str().unwrap()), "{text}");
    let (_, again) = api
        .post(&format!("{path}/checkout"), Some(&ann), json!({}))
        .await;
    assert_eq!(again["order_id"], order["order_id"], "the same order again");
    let (_, read) = api.get(&path, Some(&ann)).await;
    assert_eq!(
        (read["status"].clone(), read["order_id"].clone()),
        (json!("checked_out"), order["order_id"].clone())
    );

    // Released: the units are back, once.
    let (_, second) = api
        .post(
            "/reservations",
            Some(&ann),
            json!({"lines": [{"product_id": "product-1"}]}),
        )
        .await;
    let second_path = format!(
        "/reservations/{}",
        second["reservation_id"].as_str().unwrap()
    );
    assert_eq!(stock(&api, "product-1").await, (json!(2), json!(1)));
    let (status, released) = api.delete(&second_path, Some(&ann)).await;
    assert_eq!(
        (status, released["status"].clone()),
        (200, json!("released"))
    );
    assert_eq!(stock(&api, "product-1").await, (json!(3), json!(0)));
    let (status, body) = api.delete(&second_path, Some(&ann)).await;
    assert_eq!(
        (status, body["code"].clone()),
        (409, json!("reservation_closed"))
    );

    // A hold that runs out is released by the server's sweep, without anyone asking.
    let (_, short) = api
        .post(
            "/reservations",
            Some(&ann),
            json!({"lines": [{"product_id": "product-1", "quantity": 3}], "ttl_seconds": 1}),
        )
        .await;
    assert_eq!(stock(&api, "product-1").await, (json!(0), json!(3)));
    let short_path = format!(
        "/reservations/{}",
        short["reservation_id"].as_str().unwrap()
    );
    api.wait_until(&short_path, Some(&ann), |b| b["status"] == "expired")
        .await;
    assert_eq!(stock(&api, "product-1").await, (json!(3), json!(0)));

    // Bad holds are refused naming the field.
    for (bad, field) in [
        (
            json!({"lines": [{"product_id": "product-1"}], "ttl_seconds": 0}),
            "ttl_seconds",
        ),
        (
            json!({"lines": [{"product_id": "product-1"}], "ttl_seconds": 3601}),
            "ttl_seconds",
        ),
        (json!({"lines": []}), "lines"),
    ] {
        let (status, body) = api.post("/reservations", Some(&ann), bad).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(field),
            "{field}: {body}"
        );
    }
    assert_eq!(stock(&api, "product-1").await, (json!(3), json!(0)));
}

#[tokio::test]
async fn holds_on_sqlite_over_http() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    holds(support::sqlite_env(dir.path(), sink.addr().port()), &sink).await;
}

#[tokio::test]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn holds_on_postgres_over_http() {
    let sink = SmtpSink::start().unwrap();
    let env = support::postgres_env(sink.addr().port())
        .await
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    holds(env, &sink).await;
}

#[tokio::test]
#[cfg_attr(inventory_no_firestore, ignore = "FIRESTORE_EMULATOR_HOST is not set")]
async fn holds_on_firestore_over_http() {
    let sink = SmtpSink::start().unwrap();
    let env = support::firestore_env(sink.addr().port())
        .expect("FIRESTORE_EMULATOR_HOST is set (the build script saw it)");
    holds(env, &sink).await;
}
