//! Prometheus metrics: a request-counting middleware with bounded labels, the recorder, and
//! the outbox gauges.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::middleware::Next;
use axum::response::Response;
use inventory_core::Store;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// Counts requests (`http_requests_total`) and their latency
/// (`http_request_duration_seconds`) by method, route and status. Add it with
/// `router.route_layer(axum::middleware::from_fn(track_metrics))` so the route template is
/// known. Labels are bounded whatever clients send: unknown methods are `other`, unmatched
/// paths `unmatched`.
pub async fn track_metrics(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = match req.method().as_str() {
        m @ ("GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    let labels = [("method", method), ("route", route), ("status", status)];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// Installs a Prometheus recorder as the process's global one (latency metrics become
/// histograms) and returns the handle that renders it. Later calls return the same handle.
/// Fails if another recorder is installed already: an embedder with their own Prometheus
/// recorder passes its handle to [`ApiState::with_metrics`](super::ApiState::with_metrics).
pub fn install_recorder() -> Result<PrometheusHandle, crate::SettingsError> {
    static HANDLE: std::sync::OnceLock<Result<PrometheusHandle, String>> =
        std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Suffix("duration_seconds".into()),
                    &[
                        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                        5.0,
                    ],
                )
                .and_then(PrometheusBuilder::install_recorder)
                .map_err(|e| e.to_string())
        })
        .clone()
        .map_err(|e| crate::SettingsError::new("metrics", format!("metrics recorder: {e}")))
}

/// Publishes the outbox counts as the `inventory_notifications{status}` gauges (called before
/// each scrape).
pub async fn record_backlog(store: &dyn Store) {
    if let Ok(c) = store.notification_counts().await {
        for (status, n) in [
            ("pending", c.pending),
            ("sent", c.sent),
            ("failed", c.failed),
            ("cancelled", c.cancelled),
        ] {
            metrics::gauge!("inventory_notifications", "status" => status).set(n as f64);
        }
    }
}
