//! Routes, request and response bodies, and the OpenAPI document.

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

#[derive(Serialize, ToSchema)]
pub(super) struct StatusBody {
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub(super) struct ErrorBody {
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
pub(super) struct ShortageBody {
    product_id: String,
    /// Units asked, the order's lines of this product summed.
    requested: u64,
    /// Units available when the order was decided.
    available: u64,
}

#[derive(Deserialize, ToSchema)]
pub(super) struct Credentials {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct RegisterResponse {
    message: &'static str,
    access_token: String,
    token_type: &'static str,
}

#[derive(Serialize, ToSchema)]
pub(super) struct LoginResponse {
    access_token: String,
    token_type: &'static str,
    expires_in: u64,
}

#[derive(Deserialize, ToSchema)]
pub(super) struct PlaceOrderBody {
    /// Defaults to the caller's email; only admins may name someone else.
    buyer_email: Option<String>,
    product_id: String,
    /// Units, default 1.
    quantity: Option<i64>,
}

/// An order of one or more lines.
#[derive(Deserialize, ToSchema)]
pub(super) struct PlaceBasketBody {
    /// Defaults to the caller's email; only admins may name someone else.
    buyer_email: Option<String>,
    /// 1 to 100 lines; lines naming the same product are one demand (summed).
    lines: Vec<LineBody>,
}

/// One line of an order to place.
#[derive(Deserialize, ToSchema)]
pub(super) struct LineBody {
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
pub(super) struct LineResponse {
    product_id: String,
    quantity: u64,
}

/// A hold to make.
#[derive(Deserialize, ToSchema)]
pub(super) struct ReserveBody {
    /// Defaults to the caller's email; only admins may name someone else.
    buyer_email: Option<String>,
    /// 1 to 100 lines; lines naming the same product are one demand (summed).
    lines: Vec<LineBody>,
    /// How long to hold, in seconds (default 900, at most `RESERVATION_TTL_MAX_SECS`).
    ttl_seconds: Option<u64>,
}

/// A hold on stock.
#[derive(Serialize, ToSchema)]
pub(super) struct ReservationResponse {
    reservation_id: Uuid,
    /// `active`, `checked_out`, `released` or `expired`.
    status: String,
    buyer_email: String,
    lines: Vec<LineResponse>,
    expires_at: DateTime<Utc>,
    /// The order it became, once checked out.
    #[serde(skip_serializing_if = "Option::is_none")]
    order_id: Option<Uuid>,
    created_at: DateTime<Utc>,
}

impl From<inventory_core::Reservation> for ReservationResponse {
    fn from(r: inventory_core::Reservation) -> Self {
        ReservationResponse {
            reservation_id: r.id,
            status: r.status.to_string(),
            buyer_email: r.buyer_email.to_string(),
            lines: lines_of(&r.lines),
            expires_at: r.expires_at,
            order_id: r.order_id,
            created_at: r.created_at,
        }
    }
}

fn lines_of(lines: &inventory_core::Lines) -> Vec<LineResponse> {
    lines
        .iter()
        .map(|l| LineResponse {
            product_id: l.product_id.to_string(),
            quantity: l.quantity.get(),
        })
        .collect()
}

#[derive(Serialize, ToSchema)]
pub(super) struct OrderResponse {
    order_id: Uuid,
    status: String,
    buyer_email: String,
    /// The first line's product: the whole order for a one-line order (the original's field).
    product_id: String,
    /// The first line's units.
    quantity: u64,
    /// Every line, in the order given.
    lines: Vec<LineResponse>,
    created_at: DateTime<Utc>,
    #[serde(skip_serializing_if = "Option::is_none")]
    notification: Option<NotificationResponse>,
}

#[derive(Serialize, ToSchema)]
pub(super) struct NotificationResponse {
    status: String,
    attempts: u32,
    last_error: Option<String>,
    sent_at: Option<DateTime<Utc>>,
}

impl OrderResponse {
    fn new(o: Order, n: Option<Notification>) -> Self {
        OrderResponse {
            order_id: o.id,
            status: o.status.to_string(),
            buyer_email: o.buyer_email.to_string(),
            product_id: o.lines.first().product_id.to_string(),
            quantity: o.lines.first().quantity.get(),
            lines: lines_of(&o.lines),
            created_at: o.created_at,
            notification: n.map(|n| NotificationResponse {
                status: n.status.to_string(),
                attempts: n.attempts,
                last_error: n.last_error,
                sent_at: n.sent_at,
            }),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub(super) struct ProductResponse {
    product_id: String,
    product_name: String,
    /// Units available to order (the original's field).
    quantity: u64,
    /// Units held by active holds: neither available nor sold.
    reserved: u64,
    status: String,
}

impl From<Product> for ProductResponse {
    fn from(p: Product) -> Self {
        ProductResponse {
            status: p.status().to_string(),
            product_id: p.id.to_string(),
            product_name: p.name,
            quantity: p.quantity,
            reserved: p.reserved,
        }
    }
}

#[derive(Deserialize, ToSchema)]
pub(super) struct NewProductBody {
    product_id: String,
    product_name: String,
    quantity: u64,
}

#[derive(Deserialize, ToSchema)]
pub(super) struct RestockBody {
    /// Units to add (at least 1).
    quantity: u64,
}

#[derive(Deserialize, IntoParams)]
pub(super) struct PageQuery {
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

#[utoipa::path(get, path = "/health", tag = "service",
    responses((status = 200, description = "The process is up", body = StatusBody)))]
async fn health() -> Json<StatusBody> {
    Json(StatusBody { status: "ok" })
}

#[utoipa::path(get, path = "/ready", tag = "service",
    responses((status = 200, description = "The store answers", body = StatusBody),
              (status = 503, description = "The store does not answer", body = ErrorBody)))]
async fn ready(State(state): State<Ops>) -> ApiResult<Json<StatusBody>> {
    state.store.ping().await?;
    Ok(Json(StatusBody { status: "ready" }))
}

/// A limiter's verdict as the API answers it: 429 with `Retry-After`, counted in `counter`.
fn rate_limited(
    verdict: Result<(), u64>,
    counter: &'static str,
    detail: &'static str,
) -> Result<(), ApiError> {
    verdict.map_err(|wait| {
        metrics::counter!(counter).increment(1);
        ApiError::new(StatusCode::TOO_MANY_REQUESTS, detail).with_retry_after(wait)
    })
}

#[utoipa::path(post, path = "/auth/register", tag = "auth", request_body = Credentials,
    responses((status = 200, description = "Registered", body = RegisterResponse),
              (status = 409, description = "Email already registered", body = ErrorBody),
              (status = 422, description = "Invalid email or password", body = ErrorBody),
              (status = 429, description = "Too many registrations from this address", body = ErrorBody)))]
async fn register(
    State(state): State<ApiState>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<RegisterResponse>> {
    if let Some(limiter) = &state.login_limiter {
        rate_limited(
            limiter.check_registration(client),
            "inventory_register_rate_limited_total",
            "too many registrations from this address, retry later",
        )?;
    }
    let (user, token) = state.auth.register(&body.email, &body.password).await?;
    if state.require_verified_email
        && let Err(e) = state
            .auth
            .request_verification(state.store.as_ref(), &user)
            .await
    {
        // The account exists; the user can ask again (POST /auth/verify/request).
        tracing::warn!(error = %e, "verification email not queued at registration");
    }
    Ok(Json(RegisterResponse {
        message: "user created",
        access_token: token.access_token,
        token_type: "bearer",
    }))
}

#[utoipa::path(post, path = "/auth/login", tag = "auth", request_body = Credentials,
    responses((status = 200, description = "Logged in", body = LoginResponse),
              (status = 401, description = "Wrong email or password", body = ErrorBody),
              (status = 429, description = "Too many attempts from this address or for this account", body = ErrorBody)))]
async fn login(
    State(state): State<ApiState>,
    ClientIp(client): ClientIp,
    ApiJson(body): ApiJson<Credentials>,
) -> ApiResult<Json<LoginResponse>> {
    if let Some(limiter) = &state.login_limiter {
        rate_limited(
            limiter.check(client, &body.email),
            "inventory_login_rate_limited_total",
            "too many login attempts, retry later",
        )?;
    }
    let (_, token) = state.auth.login(&body.email, &body.password).await?;
    Ok(Json(LoginResponse {
        access_token: token.access_token,
        token_type: "bearer",
        expires_in: token.expires_in,
    }))
}

#[derive(Deserialize, ToSchema)]
pub(super) struct VerifyBody {
    /// The code of the verification email.
    code: String,
}

#[derive(Serialize, ToSchema)]
pub(super) struct MessageResponse {
    message: &'static str,
}

#[utoipa::path(post, path = "/auth/verify", tag = "auth", request_body = VerifyBody,
    responses((status = 200, description = "The address is verified", body = MessageResponse),
              (status = 422, description = "Invalid or expired code", body = ErrorBody)))]
async fn verify_email(
    State(state): State<ApiState>,
    ApiJson(body): ApiJson<VerifyBody>,
) -> ApiResult<Json<MessageResponse>> {
    state.auth.verify_email(&body.code).await?;
    Ok(Json(MessageResponse {
        message: "email verified",
    }))
}

#[utoipa::path(post, path = "/auth/verify/request", tag = "auth", security(("bearer" = [])),
    responses((status = 202, description = "A verification email is on its way to the caller's address", body = MessageResponse),
              (status = 200, description = "The address is verified already", body = MessageResponse),
              (status = 401, description = "Not authenticated", body = ErrorBody),
              (status = 429, description = "Too many requests from this address", body = ErrorBody)))]
async fn request_verification(
    State(state): State<ApiState>,
    Caller(who): Caller,
    ClientIp(client): ClientIp,
) -> ApiResult<(StatusCode, Json<MessageResponse>)> {
    if who.email_verified {
        return Ok((
            StatusCode::OK,
            Json(MessageResponse {
                message: "email already verified",
            }),
        ));
    }
    // Each request sends an email: limited like registrations.
    if let Some(limiter) = &state.login_limiter {
        rate_limited(
            limiter.check_registration(client),
            "inventory_verification_rate_limited_total",
            "too many verification requests, retry later",
        )?;
    }
    let user =
        state.store.get_user(who.user_id).await?.ok_or_else(|| {
            ApiError::new(StatusCode::UNAUTHORIZED, "the account no longer exists")
        })?;
    state
        .auth
        .request_verification(state.store.as_ref(), &user)
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(MessageResponse {
            message: "verification email queued",
        }),
    ))
}

#[utoipa::path(post, path = "/orders/place", tag = "orders", request_body = PlaceOrderBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    security(("bearer" = [])),
    responses((status = 200, description = "Order placed (or replayed for a known key)", body = OrderResponse),
              (status = 401, description = "Not authenticated", body = ErrorBody),
              (status = 403, description = "Ordering for another buyer, or (REQUIRE_VERIFIED_EMAIL) an unverified address", body = ErrorBody),
              (status = 404, description = "No such product", body = ErrorBody),
              (status = 409, description = "Out of stock, or key reused", body = ErrorBody),
              (status = 422, description = "Invalid input", body = ErrorBody)))]
async fn place_order(
    State(state): State<ApiState>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PlaceOrderBody>,
) -> ApiResult<Json<OrderResponse>> {
    let line = LineBody {
        product_id: body.product_id,
        quantity: body.quantity,
    };
    place(&state, &who, &headers, body.buyer_email, vec![line]).await
}

#[utoipa::path(post, path = "/orders", tag = "orders", request_body = PlaceBasketBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    security(("bearer" = [])),
    responses((status = 200, description = "Order placed (or replayed for a known key): every line's stock taken, or none", body = OrderResponse),
              (status = 401, description = "Not authenticated", body = ErrorBody),
              (status = 403, description = "Ordering for another buyer, or (REQUIRE_VERIFIED_EMAIL) an unverified address", body = ErrorBody),
              (status = 404, description = "A line names no product", body = ErrorBody),
              (status = 409, description = "Out of stock (`short` names every short product), or key reused", body = ErrorBody),
              (status = 422, description = "Invalid input (no lines, more than 100, a bad quantity)", body = ErrorBody)))]
async fn place_basket(
    State(state): State<ApiState>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PlaceBasketBody>,
) -> ApiResult<Json<OrderResponse>> {
    place(&state, &who, &headers, body.buyer_email, body.lines).await
}

/// Places an order of `lines` with the request's `Idempotency-Key`.
async fn place(
    state: &ApiState,
    who: &inventory_core::Principal,
    headers: &HeaderMap,
    buyer_email: Option<String>,
    lines: Vec<LineBody>,
) -> ApiResult<Json<OrderResponse>> {
    let idempotency_key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| Error::invalid("Idempotency-Key", "must be visible ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    let lines = lines
        .into_iter()
        .map(LineBody::request)
        .collect::<Result<_, _>>()?;
    let placed = state
        .orders
        .place(
            who,
            PlaceOrderRequest {
                buyer_email,
                lines,
                idempotency_key,
            },
        )
        .await?;
    Ok(Json(OrderResponse::new(placed.order, None)))
}

#[utoipa::path(post, path = "/reservations", tag = "reservations", request_body = ReserveBody,
    security(("bearer" = [])),
    responses((status = 201, description = "Held: every line's units moved from available to reserved", body = ReservationResponse),
              (status = 401, description = "Not authenticated", body = ErrorBody),
              (status = 403, description = "Holding for another buyer, or (REQUIRE_VERIFIED_EMAIL) an unverified address", body = ErrorBody),
              (status = 404, description = "A line names no product", body = ErrorBody),
              (status = 409, description = "Out of stock (`short` names every short product)", body = ErrorBody),
              (status = 422, description = "Invalid input (lines, quantity, ttl_seconds)", body = ErrorBody),
              (status = 501, description = "Not offered by this backend (Firestore)", body = ErrorBody)))]
async fn reserve(
    State(state): State<ApiState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<ReserveBody>,
) -> ApiResult<(StatusCode, Json<ReservationResponse>)> {
    let lines = body
        .lines
        .into_iter()
        .map(LineBody::request)
        .collect::<Result<_, _>>()?;
    let held = state
        .reservations
        .reserve(
            &who,
            inventory_core::ReserveRequest {
                buyer_email: body.buyer_email,
                lines,
                ttl_seconds: body.ttl_seconds,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(held.into())))
}

fn reservation_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!("reservation {raw} not found"),
        )
    })
}

#[utoipa::path(get, path = "/reservations/{id}", tag = "reservations", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reservation id")),
    responses((status = 200, description = "The hold", body = ReservationResponse),
              (status = 404, description = "No such hold of yours", body = ErrorBody)))]
async fn get_reservation(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ReservationResponse>> {
    let held = state.reservations.get(&who, reservation_id(&id)?).await?;
    Ok(Json(held.into()))
}

#[utoipa::path(delete, path = "/reservations/{id}", tag = "reservations", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reservation id")),
    responses((status = 200, description = "Released: its units are available again", body = ReservationResponse),
              (status = 404, description = "No such hold of yours", body = ErrorBody),
              (status = 409, description = "Not active (checked out, released or expired): `reservation_closed`", body = ErrorBody)))]
async fn release_reservation(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ReservationResponse>> {
    let released = state
        .reservations
        .release(&who, reservation_id(&id)?)
        .await?;
    Ok(Json(released.into()))
}

#[utoipa::path(post, path = "/reservations/{id}/checkout", tag = "reservations", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reservation id")),
    responses((status = 200, description = "The order: the held units are its own, its confirmation queued (the same order again for a hold checked out before)", body = OrderResponse),
              (status = 404, description = "No such hold of yours", body = ErrorBody),
              (status = 409, description = "Expired and its stock taken meanwhile (`reservation_expired`), or released (`reservation_closed`)", body = ErrorBody)))]
async fn checkout_reservation(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderResponse>> {
    let placed = state
        .reservations
        .checkout(&who, reservation_id(&id)?)
        .await?;
    Ok(Json(OrderResponse::new(placed.order, None)))
}

#[utoipa::path(get, path = "/orders", tag = "orders", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, description = "The caller's orders, newest first", body = [OrderResponse])))]
async fn list_orders(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let orders = state
        .orders
        .list(
            &who,
            if q.all.unwrap_or(false) {
                inventory_core::ListScope::All
            } else {
                inventory_core::ListScope::Mine
            },
            q.page()?,
        )
        .await?;
    Ok(q.answer(orders, |o| OrderResponse::new(o, None)))
}

fn order_id(raw: &str) -> Result<Uuid, ApiError> {
    // An id that cannot exist is simply not found.
    Uuid::parse_str(raw)
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, format!("order {raw} not found")))
}

#[utoipa::path(get, path = "/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "The order and its confirmation email", body = OrderResponse),
              (status = 404, description = "No such order of yours", body = ErrorBody)))]
async fn get_order(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderResponse>> {
    let view = state.orders.get(&who, order_id(&id)?).await?;
    Ok(Json(OrderResponse::new(view.order, view.notification)))
}

#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "Cancelled; stock returned", body = OrderResponse),
              (status = 404, description = "No such order of yours", body = ErrorBody),
              (status = 409, description = "Already cancelled", body = ErrorBody)))]
async fn cancel_order(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderResponse>> {
    let order = state.orders.cancel(&who, order_id(&id)?).await?;
    Ok(Json(OrderResponse::new(order, None)))
}

#[utoipa::path(get, path = "/products", tag = "products", params(PageQuery),
    responses((status = 200, description = "Products by id", body = [ProductResponse])))]
async fn list_products(
    State(state): State<ApiState>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    let products = state.store.list_products(q.page()?).await?;
    Ok(q.answer(products, ProductResponse::from))
}

#[utoipa::path(get, path = "/products/{id}", tag = "products",
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, description = "The product", body = ProductResponse),
              (status = 404, description = "No such product", body = ErrorBody)))]
async fn get_product(
    State(state): State<ApiState>,
    Path(id): Path<String>,
) -> ApiResult<Json<ProductResponse>> {
    let not_found = || ApiError::new(StatusCode::NOT_FOUND, format!("product {id} not found"));
    let pid = ProductId::new(id.clone()).map_err(|_| not_found())?;
    let product = state.store.get_product(&pid).await?.ok_or_else(not_found)?;
    Ok(Json(product.into()))
}

fn require_admin(who: &inventory_core::Principal) -> Result<(), ApiError> {
    if who.is_admin() {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "admins only"))
    }
}

#[utoipa::path(post, path = "/products", tag = "products", request_body = NewProductBody, security(("bearer" = [])),
    responses((status = 201, description = "Created", body = ProductResponse),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 409, description = "Id taken", body = ErrorBody)))]
async fn create_product(
    State(state): State<ApiState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<NewProductBody>,
) -> ApiResult<impl IntoResponse> {
    require_admin(&who)?;
    let new = NewProduct::new(
        ProductId::new(body.product_id)?,
        body.product_name,
        body.quantity,
    )?;
    let product = state
        .store
        .create_product(&new, inventory_core::now())
        .await?;
    Ok((StatusCode::CREATED, Json(ProductResponse::from(product))))
}

#[utoipa::path(post, path = "/products/{id}/restock", tag = "products", request_body = RestockBody, security(("bearer" = [])),
    params(("id" = String, Path, description = "Product id")),
    responses((status = 200, description = "Restocked", body = ProductResponse),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 404, description = "No such product", body = ErrorBody)))]
async fn restock(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RestockBody>,
) -> ApiResult<Json<ProductResponse>> {
    require_admin(&who)?;
    if body.quantity == 0 {
        return Err(Error::invalid("quantity", "must be at least 1").into());
    }
    let product = state
        .store
        .restock(&ProductId::new(id)?, body.quantity, inventory_core::now())
        .await?;
    Ok(Json(product.into()))
}

#[utoipa::path(get, path = "/metrics", tag = "service",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<Ops>) -> ApiResult<impl IntoResponse> {
    let handle = state.metrics.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "metrics are not enabled on this server",
        )
    })?;
    super::metrics::record_backlog(state.store.as_ref()).await;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        handle.render(),
    ))
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
          list_products, get_product, create_product, restock, metrics),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Every route of the API with its state, without middleware.
/// What the operational routes reach.
#[derive(Clone)]
pub(super) struct Ops {
    pub(super) store: std::sync::Arc<dyn inventory_core::Store>,
    pub(super) metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
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
pub(super) fn ops_routes<S: Clone + Send + Sync + 'static>() -> Router<S>
where
    Ops: axum::extract::FromRef<S>,
{
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
}

/// Every route, with its state.
pub(super) fn routes(state: ApiState) -> Router {
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
        .with_state(state)
}
