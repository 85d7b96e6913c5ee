//! `/health`, `/ready` and `/metrics`, shared with the orders listener.

use super::*;

#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The process is up", body = StatusBody)))]
pub(crate) async fn health() -> Json<StatusBody> {
    Json(StatusBody { status: "ok" })
}

#[utoipa::path(get, path = "/ready", tag = "service",
    responses((status = 200, description = "The store answers", body = StatusBody),
              (status = 503, description = "The store does not answer", body = ErrorBody)))]
pub(crate) async fn ready(State(state): State<Ops>) -> ApiResult<Json<StatusBody>> {
    state.store.ping().await?;
    Ok(Json(StatusBody { status: "ready" }))
}

#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub(crate) async fn metrics(State(state): State<Ops>) -> ApiResult<impl IntoResponse> {
    let handle = state.metrics.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics are not enabled on this server",
        )
    })?;
    crate::http::metrics::record_backlog(state.store.as_ref()).await;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    ))
}

/// What the operational routes reach.
#[derive(Clone)]
pub(crate) struct Ops {
    pub(crate) store: std::sync::Arc<dyn inventory_core::Store>,
    pub(crate) metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
}

impl axum::extract::FromRef<ApiState> for Ops {
    fn from_ref(state: &ApiState) -> Ops {
        Ops {
            store: state.store.clone(),
            metrics: state.metrics.clone(),
        }
    }
}

/// `/health`, `/ready` and `/metrics`.
pub(crate) fn ops_routes<S: Clone + Send + Sync + 'static>() -> Router<S>
where
    Ops: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
}
