//! The `--events` destinations: a webhook receiver in this process and a topic on the
//! Pub/Sub emulator.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::Value;

/// A webhook receiver: when each order's `order.placed` first arrived, and how many requests.
#[derive(Clone, Default)]
pub(crate) struct Hooks {
    pub(crate) placed: Arc<std::sync::Mutex<std::collections::HashMap<String, Instant>>>,
    pub(crate) requests: Arc<AtomicU64>,
}

pub(crate) async fn receive(
    axum::extract::State(hooks): axum::extract::State<Hooks>,
    body: axum::body::Bytes,
) -> &'static str {
    let at = Instant::now();
    hooks.requests.fetch_add(1, Ordering::Relaxed);
    let event: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if event["type"] == "order.placed"
        && let Some(order) = event["data"]["order_id"].as_str()
    {
        hooks
            .placed
            .lock()
            .unwrap()
            .entry(order.to_owned())
            .or_insert(at);
    }
    "ok"
}

/// Starts the receiver; returns its URL.
pub(crate) async fn webhook_receiver(hooks: Hooks) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(receive))
        .with_state(hooks);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/hook")
}

/// A new topic on the Pub/Sub emulator; its name.
pub(crate) async fn pubsub_topic(client: &reqwest::Client) -> (String, String) {
    let host = std::env::var("PUBSUB_EMULATOR_HOST").expect("--events needs PUBSUB_EMULATOR_HOST");
    let topic = format!(
        "projects/load-test/topics/events-{}",
        uuid::Uuid::now_v7().simple()
    );
    let r = client
        .put(format!("http://{host}/v1/{topic}"))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "create topic: {}", r.status());
    (topic, host)
}
