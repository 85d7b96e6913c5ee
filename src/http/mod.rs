//! The HTTP API as a library part (feature `http`): the original service's routes and more,
//! as an [`axum::Router`] to serve on its own or to nest in an application.
//!
//! - [`router`]: every route over an [`ApiState`], answering errors as
//!   `{"detail": "...", "code": "..."}` ([`ApiError`]), with request metrics and `/metrics`
//!   when the state has a Prometheus handle, and login/registration limits when it has a
//!   [`LoginLimiter`].
//! - [`docs`]: the OpenAPI document (`/openapi.json`) and Swagger UI (`/docs`).
//! - [`with_standard_layers`]: request ids, tracing, panics as 500, request timeout, CORS and
//!   the body limit, as the example server uses them; take them or use your own.
//! - [`Service`]: all of it wired from [`Settings`], as the example server
//!   runs it.
//! - [`serve`]: an accept loop with a connection limit and a header-read deadline.
//!
//! Nesting the API under `/shop` of your own application:
//!
//! ```
//! use std::sync::Arc;
//! use inventory_kit::core::{Auth, AuthConfig, MemoryStore, Store};
//! use inventory_kit::http::{self, ApiState};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
//! let auth = Auth::new(store.clone(), AuthConfig::new(vec![7; 32])?)?;
//! let api = http::router(ApiState::new(store, auth)).merge(http::docs("/shop"));
//! let app = axum::Router::new()
//!     .route("/", axum::routing::get(|| async { "my shop" }))
//!     .nest("/shop", api);
//!
//! // Served as usual (with connect info, so rate limits see client addresses):
//! // axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
//! use tower::ServiceExt;
//! let request = axum::http::Request::get("/shop/health").body(axum::body::Body::empty())?;
//! assert_eq!(app.oneshot(request).await?.status(), 200);
//! # Ok(()) }
//! ```

mod api;
mod error;
mod limit;
mod metrics;
mod serve;
mod service;

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderName, StatusCode};
use axum::middleware;
use inventory_core::{Auth, Orders, Store};
use metrics_exporter_prometheus::PrometheusHandle;
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::cors::{AllowOrigin, Any, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;

pub use api::ApiDoc;
pub use error::{ApiError, ApiJson, Caller, json_errors};
pub use limit::{ClientIp, LoginLimiter, TrustedProxies};
pub use metrics::{install_recorder, record_backlog, track_metrics};
pub use serve::{ServeLimits, serve};
pub use service::{HOLD_SWEEP, Service, StartError};

use crate::settings::{HttpSettings, Settings, SettingsError};

/// What every handler reaches: the store, the services, and the optional parts.
#[derive(Clone)]
pub struct ApiState {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) auth: Auth,
    pub(crate) orders: Orders,
    pub(crate) reservations: inventory_core::Reservations,
    pub(crate) metrics: Option<PrometheusHandle>,
    pub(crate) login_limiter: Option<LoginLimiter>,
    pub(crate) trusted_proxies: TrustedProxies,
    pub(crate) require_verified_email: bool,
    /// Checks webhook URLs at creation (the address policy of `WEBHOOK_ALLOW_PRIVATE`).
    pub(crate) webhooks: Option<inventory_events::HttpWebhookSender>,
}

impl std::fmt::Debug for ApiState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiState")
            .field("metrics", &self.metrics.is_some())
            .field("login_limiter", &self.login_limiter.is_some())
            .field("trusted_proxies", &self.trusted_proxies)
            .finish_non_exhaustive()
    }
}

impl ApiState {
    /// The API over `store` with these credentials: no metrics, no rate limits, no trusted
    /// proxies.
    pub fn new(store: Arc<dyn Store>, auth: Auth) -> Self {
        ApiState {
            orders: Orders::new(store.clone(), store.clone()),
            reservations: inventory_core::Reservations::new(store.clone()),
            store,
            auth,
            metrics: None,
            login_limiter: None,
            trusted_proxies: TrustedProxies::default(),
            require_verified_email: false,
            webhooks: inventory_events::HttpWebhookSender::new(Default::default()).ok(),
        }
    }

    /// The API as the settings describe it: their rate limits, trusted proxies and
    /// `REQUIRE_VERIFIED_EMAIL`.
    pub fn from_settings(store: Arc<dyn Store>, auth: Auth, settings: &Settings) -> Self {
        let http = &settings.http;
        let mut state = ApiState::new(store.clone(), auth);
        state.reservations = settings.reservations(store);
        state.webhooks = settings.events.webhook_sender().ok();
        let state = state
            .with_trusted_proxies(TrustedProxies::new(http.trusted_proxies.clone()))
            .with_verified_email_required(settings.auth.require_verified_email);
        match http.rate_limits {
            Some(limits) => state.with_rate_limits(LoginLimiter::new(limits)),
            None => state,
        }
    }

    /// Counts requests ([`track_metrics`]) and serves `/metrics` from this handle (see
    /// [`install_recorder`]).
    pub fn with_metrics(mut self, handle: PrometheusHandle) -> Self {
        self.metrics = Some(handle);
        self
    }

    /// Limits logins and registrations (429 with `Retry-After`).
    pub fn with_rate_limits(mut self, limiter: LoginLimiter) -> Self {
        self.login_limiter = Some(limiter);
        self
    }

    /// Only users with a verified address may order, and registration sends the
    /// verification email at once ([`Orders::require_verified_email`]).
    pub fn with_verified_email_required(mut self, required: bool) -> Self {
        self.orders = self.orders.require_verified_email(required);
        self.reservations = self.reservations.clone().require_verified_email(required);
        self.require_verified_email = required;
        self
    }

    /// Believes these proxies' `X-Forwarded-For` for the client address.
    pub fn with_trusted_proxies(mut self, proxies: TrustedProxies) -> Self {
        self.trusted_proxies = proxies;
        self
    }
}

/// Every route of the API. Errors of any layer inside (unknown route, wrong method) are
/// JSON, also when the router is nested under a prefix of another; with metrics in the
/// state, requests are counted and `/metrics` answers.
pub fn router(state: ApiState) -> Router {
    let metrics = state.metrics.is_some();
    let router =
        api::routes(state).fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "Not Found") });
    let router = if metrics {
        router.route_layer(middleware::from_fn(track_metrics))
    } else {
        router
    };
    router.layer(middleware::from_fn(json_errors))
}

/// The operational routes alone, for a process that serves no API (the orders listener):
/// `/health`, `/ready` (the store answers) and, with a handle, `/metrics` (requests counted).
pub fn ops_router(store: Arc<dyn Store>, metrics: Option<PrometheusHandle>) -> Router {
    let counted = metrics.is_some();
    let router = api::ops_routes().with_state(api::Ops { store, metrics });
    let router = if counted {
        router.route_layer(middleware::from_fn(track_metrics))
    } else {
        router
    };
    router.layer(middleware::from_fn(json_errors))
}

/// The OpenAPI document at `/openapi.json` and Swagger UI at `/docs`. `prefix` is where the
/// router is nested (`""` at the root, `"/shop"` under `/shop`), so the UI finds the document.
pub fn docs(prefix: &str) -> Router {
    let spec = format!("{}/openapi.json", prefix.trim_end_matches('/'));
    Router::new()
        .route(
            "/openapi.json",
            axum::routing::get(|| async { axum::Json(ApiDoc::openapi()) }),
        )
        .merge(
            utoipa_swagger_ui::SwaggerUi::new("/docs")
                .config(utoipa_swagger_ui::Config::new([spec])),
        )
}

/// The example server's middleware around `router`: a request id (`x-request-id`, kept or
/// made), a tracing span per request, a panic answered as a JSON 500, the request timeout
/// (408), CORS, and the body limit (413). Errors of these layers are JSON too.
pub fn with_standard_layers(router: Router, http: &HttpSettings) -> Result<Router, SettingsError> {
    let request_id = HeaderName::from_static("x-request-id");
    Ok(router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(request_id.clone(), MakeRequestUuid))
            .layer(
                TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                    let id = req
                        .headers()
                        .get("x-request-id")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or_default();
                    let span = tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id, trace_id = tracing::field::Empty);
                    // Before the span starts: an exporter (`otel`) takes its parent only then.
                    if let Some(parent) = caller_trace(req.headers()) {
                        inventory_core::trace::adopt(&span, &parent);
                    }
                    span
                }),
            )
            .layer(middleware::from_fn(trace_context))
            .layer(PropagateRequestIdLayer::new(request_id))
            .layer(middleware::from_fn(json_errors))
            .layer(CatchPanicLayer::new())
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                http.request_timeout,
            ))
            .layer(cors(&http.cors_origins)?)
            .layer(RequestBodyLimitLayer::new(http.body_limit)),
    ))
}

/// The caller's `traceparent`, when it sent a valid one.
fn caller_trace(headers: &axum::http::HeaderMap) -> Option<inventory_core::TraceParent> {
    headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| inventory_core::TraceParent::parse(v).ok())
}

/// W3C Trace Context: the request continues the caller's trace (`traceparent`), or starts
/// one; the events it writes carry it, so each delivery joins the same trace. The trace id is
/// on the request's log span.
async fn trace_context(
    req: axum::extract::Request,
    next: middleware::Next,
) -> axum::response::Response {
    let span = tracing::Span::current();
    let trace = match caller_trace(req.headers()) {
        Some(parent) => inventory_core::trace::adopt(&span, &parent),
        None => inventory_core::trace::start(&span),
    };
    span.record("trace_id", trace.trace_id_hex());
    inventory_core::trace::in_scope(trace, next.run(req)).await
}

fn cors(origins: &Option<Vec<String>>) -> Result<CorsLayer, SettingsError> {
    let layer = CorsLayer::new().allow_methods(Any).allow_headers(Any);
    Ok(match origins {
        None => layer.allow_origin(Any),
        Some(list) => {
            let parsed = list
                .iter()
                .map(|o| {
                    o.parse().map_err(|_| {
                        SettingsError::new("CORS_ORIGINS", format!("invalid CORS_ORIGINS: {o:?}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            layer.allow_origin(AllowOrigin::list(parsed))
        }
    })
}
