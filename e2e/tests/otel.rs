//! OpenTelemetry (feature `otel`): the request's span continues its caller's trace, and the
//! webhook delivery of the order's event is an exported child of that request span, whose
//! ids the receiver gets in `traceparent`. One test: it installs the process's subscriber.

use inventory_e2e as support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::json;
use tracing_subscriber::prelude::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_is_an_exported_child_of_the_request_span() {
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(exporter.clone())
        .build();
    tracing_subscriber::registry()
        .with(inventory_kit::telemetry::layer(&provider))
        .init();

    // A receiver that keeps each request's traceparent.
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post({
            let seen = seen.clone();
            move |headers: axum::http::HeaderMap| async move {
                let t = headers.get("traceparent").and_then(|v| v.to_str().ok());
                seen.lock().unwrap().push(t.unwrap_or_default().to_owned());
                "ok"
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut env = support::sqlite_env(dir.path(), support::closed_port());
    support::set(&mut env, "WEBHOOK_ALLOW_PRIVATE", "true");
    let service = support::App::start(&env).await;
    let api = &service.api;
    let admin = api.token("admin@example.com", "MySecurePass123").await;
    let ann = api.token("ann@example.com", "MySecurePass123").await;
    let url = format!("http://127.0.0.1:{port}/hook");
    let (status, body) = api
        .post(
            "/admin/webhooks",
            Some(&admin),
            json!({"url": url, "events": ["order.placed"]}),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let incoming = format!("00-{caller_trace}-{caller_span}-01");
    let bearer = format!("Bearer {ann}");
    let reply = api
        .request(
            reqwest::Method::POST,
            "/orders/place",
            &[
                ("content-type", "application/json"),
                ("authorization", &bearer),
                ("traceparent", &incoming),
            ],
            json!({"product_id": "product-1"}).to_string().into_bytes(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text);

    // The delivery arrives, and its span (closed once the answer is in) is exported.
    let deadline = Instant::now() + Duration::from_secs(10);
    let (request, delivery, header) = loop {
        assert!(
            Instant::now() < deadline,
            "spans: {:?}",
            exporter.get_finished_spans()
        );
        let spans = exporter.get_finished_spans().unwrap_or_default();
        let header = seen.lock().unwrap().first().cloned();
        let request = spans
            .iter()
            .find(|s| s.name == "request" && s.span_context.trace_id().to_string() == caller_trace);
        let delivery = spans.iter().find(|s| s.name == "webhook delivery");
        if let (Some(r), Some(d), Some(h)) = (request, delivery, header) {
            break (r.clone(), d.clone(), h);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        request.parent_span_id.to_string(),
        caller_span,
        "the caller's span is the request's parent"
    );
    assert_eq!(
        delivery.span_context.trace_id().to_string(),
        caller_trace,
        "one trace"
    );
    assert_eq!(
        delivery.parent_span_id,
        request.span_context.span_id(),
        "the delivery is the request span's child"
    );
    assert_eq!(
        header,
        format!("00-{caller_trace}-{}-01", delivery.span_context.span_id()),
        "the receiver joins the trace at the delivery's span"
    );
    service.stop().await;
    let _ = provider.shutdown();
}
