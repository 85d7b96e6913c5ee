//! Routes, request and response bodies, and the OpenAPI document: one module per resource
//! (auth, orders, reservations, products, ops), what they share here.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use inventory_core::{
    Error, LineRequest, Listed, NewProduct, Notification, Order, Page, PlaceOrderRequest, Product,
    ProductId,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, OpenApi, ToSchema};
use uuid::Uuid;

use super::ApiState;
use super::error::{ApiError, ApiJson, Caller};
use super::limit::ClientIp;

type ApiResult<T> = Result<T, ApiError>;

mod auth;
mod events;
mod ops;
mod orders;
mod products;
mod reservations;

use auth::*;
use events::*;
use ops::*;
pub(super) use ops::{Ops, ops_routes};
use orders::*;
use products::*;
use reservations::*;

#[derive(Serialize, ToSchema)]
pub(crate) struct StatusBody {
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, for people (the original service's field).
    detail: String,
    /// A stable machine code: `unauthorized`, `forbidden`, `not_found`, `already_exists`,
    /// `already_cancelled`, `idempotency_key_reused`, `out_of_stock`, `conflict`,
    /// `invalid_input`, `rate_limited`, `payload_too_large`, `unavailable`, `internal`, ...
    code: String,
    /// With `out_of_stock` only: every product the order asks more of than is available.
    #[serde(skip_serializing_if = "Option::is_none")]
    short: Option<Vec<ShortageBody>>,
}

/// A product an order asks more of than is available.
#[derive(Serialize, ToSchema)]
pub(crate) struct ShortageBody {
    product_id: String,
    /// Units asked, the order's lines of this product summed.
    requested: u64,
    /// Units available when the order was decided.
    available: u64,
}

/// One line of an order to place.
#[derive(Deserialize, ToSchema)]
pub(crate) struct LineBody {
    product_id: String,
    /// Units, default 1.
    quantity: Option<i64>,
}

impl LineBody {
    fn request(self) -> Result<LineRequest, Error> {
        Ok(LineRequest {
            product_id: self.product_id,
            quantity: self
                .quantity
                .map(|q| {
                    u64::try_from(q).map_err(|_| Error::invalid("quantity", "must be at least 1"))
                })
                .transpose()?,
        })
    }
}

/// One line of an order.
#[derive(Serialize, ToSchema)]
pub(crate) struct LineResponse {
    product_id: String,
    quantity: u64,
}

/// The id of a `what` in a path: one that cannot be an id is simply not found.
pub(crate) fn path_id(what: &str, raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("{what} {raw} not found")))
}

pub(crate) fn lines_of(lines: &inventory_core::Lines) -> Vec<LineResponse> {
    lines
        .iter()
        .map(|l| LineResponse {
            product_id: l.product_id.to_string(),
            quantity: l.quantity.get(),
        })
        .collect()
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct PageQuery {
    /// Continue after this item (keyset pagination): the id of the last product or order of
    /// the previous page. A full page answers with a `Link: <?after=...>; rel="next"` header.
    after: Option<String>,
    /// Items to skip (default 0; after `after` when both are given). Prefer `after`: an
    /// offset costs more on every page, and pages shift when items are added meanwhile.
    offset: Option<u32>,
    /// Items to return, 1 to 1000 (default 100).
    limit: Option<u32>,
    /// Admins only: every user's orders.
    all: Option<bool>,
}

impl PageQuery {
    fn page(&self) -> Result<Page, Error> {
        let mut page = Page::new(self.offset.unwrap_or(0), self.limit.unwrap_or(100))?;
        page.after = self.after.clone();
        Ok(page)
    }

    /// The list as JSON, with a `Link` to the next page when this one is full (a short page
    /// is the last). The link is relative (a query only), so it holds under any prefix.
    fn answer<T: Listed, R: Serialize>(&self, items: Vec<T>, view: impl Fn(T) -> R) -> Response {
        let limit = self.limit.unwrap_or(100);
        let next = (items.len() as u32 >= limit)
            .then(|| items.last().map(Listed::cursor))
            .flatten()
            .and_then(|after| {
                let mut query = vec![("after", after), ("limit", limit.to_string())];
                if self.all == Some(true) {
                    query.push(("all", "true".to_owned()));
                }
                serde_urlencoded::to_string(query).ok()
            });
        let body = Json(items.into_iter().map(view).collect::<Vec<_>>());
        match next {
            Some(query) => {
                ([(header::LINK, format!("<?{query}>; rel=\"next\""))], body).into_response()
            }
            None => body.into_response(),
        }
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI 3 document of the API: `ApiDoc::openapi()` (served at `/openapi.json` by
/// [`docs`](super::docs)).
#[derive(OpenApi)]
#[openapi(
    info(title = "Shopping Inventory Service", description = "Orders with stock and e-mailed confirmations. Drop-in compatible with the original FastAPI service."),
    paths(health, ready, register, login, verify_email, request_verification, place_order, place_basket, list_orders, get_order, cancel_order,
          reserve, get_reservation, release_reservation, checkout_reservation,
          list_products, get_product, create_product, restock, set_stock, product_ledger, set_low_stock, metrics,
          create_webhook, list_webhooks, delete_webhook, rotate_webhook, list_deliveries, retry_delivery,
          retry_deliveries, delivery_counts),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Every route, with its state.
pub(crate) fn routes(state: ApiState) -> Router {
    ops_routes()
        .route("/auth/register", post(register))
        .route("/auth/login", post(login))
        .route("/auth/verify", post(verify_email))
        .route("/auth/verify/request", post(request_verification))
        .route("/orders/place", post(place_order))
        .route("/orders", get(list_orders).post(place_basket))
        .route("/orders/{id}", get(get_order))
        .route("/orders/{id}/cancel", post(cancel_order))
        .route("/reservations", post(reserve))
        .route(
            "/reservations/{id}",
            get(get_reservation).delete(release_reservation),
        )
        .route("/reservations/{id}/checkout", post(checkout_reservation))
        .route("/products", get(list_products).post(create_product))
        .route("/products/{id}", get(get_product))
        .route("/products/{id}/restock", post(restock))
        .route("/products/{id}/stock", axum::routing::put(set_stock))
        .route("/products/{id}/ledger", get(product_ledger))
        .route(
            "/products/{id}/low-stock",
            axum::routing::put(set_low_stock),
        )
        .route("/admin/webhooks", get(list_webhooks).post(create_webhook))
        .route(
            "/admin/webhooks/{id}",
            axum::routing::delete(delete_webhook),
        )
        .route("/admin/webhooks/{id}/rotate", post(rotate_webhook))
        .route("/admin/deliveries", get(list_deliveries))
        .route("/admin/deliveries/counts", get(delivery_counts))
        .route("/admin/deliveries/retry", post(retry_deliveries))
        .route("/admin/deliveries/{id}/retry", post(retry_delivery))
        .with_state(state)
}
