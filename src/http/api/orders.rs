//! Orders: placing (one line or a basket), listing, reading, cancelling.

use super::*;

#[derive(Deserialize, ToSchema)]
pub(crate) struct PlaceOrderBody {
    /// Defaults to the caller's email; only admins may name someone else.
    buyer_email: Option<String>,
    product_id: String,
    /// Units, default 1.
    quantity: Option<i64>,
}

/// An order of one or more lines.
#[derive(Deserialize, ToSchema)]
pub(crate) struct PlaceBasketBody {
    /// Defaults to the caller's email; only admins may name someone else.
    buyer_email: Option<String>,
    /// 1 to 100 lines; lines naming the same product are one demand (summed).
    lines: Vec<LineBody>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct OrderResponse {
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
pub(crate) struct NotificationResponse {
    status: String,
    attempts: u32,
    last_error: Option<String>,
    sent_at: Option<DateTime<Utc>>,
}

impl OrderResponse {
    pub(crate) fn new(o: Order, n: Option<Notification>) -> Self {
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

#[utoipa::path(post, path = "/orders/place", tag = "orders", request_body = PlaceOrderBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Makes the request safe to retry")),
    security(("bearer" = [])),
    responses((status = 200, description = "Order placed (or replayed for a known key)", body = OrderResponse),
              (status = 401, description = "Not authenticated", body = ErrorBody),
              (status = 403, description = "Ordering for another buyer, or (REQUIRE_VERIFIED_EMAIL) an unverified address", body = ErrorBody),
              (status = 404, description = "No such product", body = ErrorBody),
              (status = 409, description = "Out of stock, or key reused", body = ErrorBody),
              (status = 422, description = "Invalid input", body = ErrorBody)))]
pub(crate) async fn place_order(
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
pub(crate) async fn place_basket(
    State(state): State<ApiState>,
    Caller(who): Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<PlaceBasketBody>,
) -> ApiResult<Json<OrderResponse>> {
    place(&state, &who, &headers, body.buyer_email, body.lines).await
}

/// Places an order of `lines` with the request's `Idempotency-Key`.
pub(crate) async fn place(
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

#[utoipa::path(get, path = "/orders", tag = "orders", params(PageQuery), security(("bearer" = [])),
    responses((status = 200, description = "The caller's orders, newest first", body = [OrderResponse])))]
pub(crate) async fn list_orders(
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

#[utoipa::path(get, path = "/orders/{id}", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "The order and its confirmation email", body = OrderResponse),
              (status = 404, description = "No such order of yours", body = ErrorBody)))]
pub(crate) async fn get_order(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderResponse>> {
    let view = state.orders.get(&who, path_id("order", &id)?).await?;
    Ok(Json(OrderResponse::new(view.order, view.notification)))
}

#[utoipa::path(post, path = "/orders/{id}/cancel", tag = "orders", security(("bearer" = [])),
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, description = "Cancelled; stock returned", body = OrderResponse),
              (status = 404, description = "No such order of yours", body = ErrorBody),
              (status = 409, description = "Already cancelled", body = ErrorBody)))]
pub(crate) async fn cancel_order(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderResponse>> {
    let order = state.orders.cancel(&who, path_id("order", &id)?).await?;
    Ok(Json(OrderResponse::new(order, None)))
}
