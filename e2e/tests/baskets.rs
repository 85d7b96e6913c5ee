//! Orders of several lines over HTTP, against the server process, with a real SMTP server
//! receiving the confirmation: `POST /orders`, its refusals, cancel, and the original's
//! one-line `POST /orders/place` beside it.

use inventory_e2e as support;

use std::time::Duration;

use inventory_mail::testing::SmtpSink;
use serde_json::{Value, json};
use support::{Client, Proc};

const WAIT: Duration = Duration::from_secs(15);

async fn stock(api: &Client, id: &str) -> Value {
    let (status, body) = api.get(&format!("/products/{id}"), None).await;
    assert_eq!(status, 200, "{body}");
    body["quantity"].clone()
}

async fn baskets(env: Vec<(&'static str, String)>, sink: &SmtpSink) {
    let server = Proc::start("server", &env);
    let api = Client::new(&server.url);
    let token = api.token("basket@example.com", "MySecurePass123").await;
    let admin = api.token("admin@example.com", "MySecurePass123").await;
    let (status, body) = api
        .post(
            "/products",
            Some(&admin),
            json!({"product_id": "cup", "product_name": "Cup <blue>", "quantity": 10}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    // Short on one line: nothing taken, every short product named with what is there.
    let (status, body) = api
        .post(
            "/orders",
            Some(&token),
            json!({"lines": [
                {"product_id": "cup", "quantity": 2},
                {"product_id": "scarce", "quantity": 1},
                {"product_id": "scarce", "quantity": 1}
            ]}),
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["code"], "out_of_stock");
    assert_eq!(
        body["short"],
        json!([{"product_id": "scarce", "requested": 2, "available": 1}])
    );
    assert_eq!(stock(&api, "cup").await, 10);
    assert_eq!(stock(&api, "scarce").await, 1);

    // Bad baskets are refused naming the field.
    for (bad, field) in [
        (json!({"lines": []}), "lines"),
        (
            json!({"lines": (0..101).map(|_| json!({"product_id": "cup"})).collect::<Vec<_>>()}),
            "lines",
        ),
        (
            json!({"lines": [{"product_id": "cup", "quantity": 0}]}),
            "quantity",
        ),
    ] {
        let (status, body) = api.post("/orders", Some(&token), bad).await;
        assert_eq!(status, 422, "{body}");
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(field),
            "{field}: {body}"
        );
    }
    let (status, body) = api
        .post(
            "/orders",
            Some(&token),
            json!({"lines": [{"product_id": "cup"}, {"product_id": "nothing-here"}]}),
        )
        .await;
    assert_eq!((status, body["code"].clone()), (404, json!("not_found")));

    // A basket that fits: every line taken, the lines answered in the buyer's order.
    let (status, order) = api
        .post(
            "/orders",
            Some(&token),
            json!({"lines": [
                {"product_id": "cup", "quantity": 3},
                {"product_id": "product-1", "quantity": 2},
                {"product_id": "cup"}
            ]}),
        )
        .await;
    assert_eq!(status, 200, "{order}");
    assert_eq!(order["status"], "pending");
    assert_eq!(
        order["lines"],
        json!([
            {"product_id": "cup", "quantity": 3},
            {"product_id": "product-1", "quantity": 2},
            {"product_id": "cup", "quantity": 1}
        ])
    );
    assert_eq!(stock(&api, "cup").await, 6);
    assert_eq!(stock(&api, "product-1").await, 3);
    let id = order["order_id"].as_str().unwrap().to_owned();

    // One email listing every line, received by the SMTP server.
    assert_eq!(sink.wait_for(1, WAIT).await, 1, "one confirmation");
    let mail = &sink.messages()[0];
    assert_eq!(mail.to, ["basket@example.com"]);
    // Lines of the message as the SMTP server received them (CRLF).
    let text = mail.text().replace("\r\n", "\n");
    for wanted in [
        "Cup <blue> (cup)\nQuantity: 3",
        "Demo Product (product-1)\nQuantity: 2",
        "Cup <blue> (cup)\nQuantity: 1",
        &id,
    ] {
        assert!(text.contains(wanted), "{wanted:?} in:\n{text}");
    }
    let confirmed = api
        .wait_until(&format!("/orders/{id}"), Some(&token), |b| {
            b["status"] == "confirmed"
        })
        .await;
    assert_eq!(confirmed["lines"], order["lines"]);

    // Cancelled: every line's units back, once.
    let (status, body) = api
        .post(&format!("/orders/{id}/cancel"), Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(stock(&api, "cup").await, 10);
    assert_eq!(stock(&api, "product-1").await, 5);
    let (status, body) = api
        .post(&format!("/orders/{id}/cancel"), Some(&token), json!({}))
        .await;
    assert_eq!(
        (status, body["code"].clone()),
        (409, json!("already_cancelled"))
    );
    assert_eq!(stock(&api, "cup").await, 10);

    // The original's one-line order, unchanged, now with its one line listed.
    let (status, one) = api
        .post(
            "/orders/place",
            Some(&token),
            json!({"product_id": "product-1", "quantity": 2}),
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(
        (one["product_id"].clone(), one["quantity"].clone()),
        (json!("product-1"), json!(2))
    );
    assert_eq!(
        one["lines"],
        json!([{"product_id": "product-1", "quantity": 2}])
    );
    let (status, body) = api
        .post(
            "/orders/place",
            Some(&token),
            json!({"product_id": "scarce", "quantity": 2}),
        )
        .await;
    assert_eq!(
        (status, body["detail"].clone()),
        (409, json!("out of stock"))
    );
    assert_eq!(sink.wait_for(2, WAIT).await, 2);
}

#[tokio::test]
async fn baskets_on_sqlite_over_http() {
    let sink = SmtpSink::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    baskets(support::sqlite_env(dir.path(), sink.addr().port()), &sink).await;
}

#[tokio::test]
#[cfg_attr(
    inventory_no_postgres,
    ignore = "INVENTORY_TEST_POSTGRES_URL is not set"
)]
async fn baskets_on_postgres_over_http() {
    let sink = SmtpSink::start().unwrap();
    let env = support::postgres_env(sink.addr().port())
        .await
        .expect("INVENTORY_TEST_POSTGRES_URL is set (the build script saw it)");
    baskets(env, &sink).await;
}
