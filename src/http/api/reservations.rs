//! Holds on stock: hold, read, release, check out.

use super::*;

/// A hold to make.
#[derive(Deserialize, ToSchema)]
pub(crate) struct ReserveBody {
    /// Defaults to the caller's email; only admins may name someone else.
    buyer_email: Option<String>,
    /// 1 to 100 lines; lines naming the same product are one demand (summed).
    lines: Vec<LineBody>,
    /// How long to hold, in seconds (default 900, at most `RESERVATION_TTL_MAX_SECS`).
    ttl_seconds: Option<u64>,
}

/// A hold on stock.
#[derive(Serialize, ToSchema)]
pub(crate) struct ReservationResponse {
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

#[utoipa::path(post, path = "/reservations", tag = "reservations", request_body = ReserveBody,
    security(("bearer" = [])),
    responses((status = 201, description = "Held: every line's units moved from available to reserved", body = ReservationResponse),
              (status = 401, description = "Not authenticated", body = ErrorBody),
              (status = 403, description = "Holding for another buyer, or (REQUIRE_VERIFIED_EMAIL) an unverified address", body = ErrorBody),
              (status = 404, description = "A line names no product", body = ErrorBody),
              (status = 409, description = "Out of stock (`short` names every short product)", body = ErrorBody),
              (status = 422, description = "Invalid input (lines, quantity, ttl_seconds)", body = ErrorBody),
              (status = 501, description = "Not offered by this backend (a custom store without holds)", body = ErrorBody)))]
pub(crate) async fn reserve(
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

#[utoipa::path(get, path = "/reservations/{id}", tag = "reservations", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reservation id")),
    responses((status = 200, description = "The hold", body = ReservationResponse),
              (status = 404, description = "No such hold of yours", body = ErrorBody)))]
pub(crate) async fn get_reservation(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ReservationResponse>> {
    let held = state
        .reservations
        .get(&who, path_id("reservation", &id)?)
        .await?;
    Ok(Json(held.into()))
}

#[utoipa::path(delete, path = "/reservations/{id}", tag = "reservations", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reservation id")),
    responses((status = 200, description = "Released: its units are available again", body = ReservationResponse),
              (status = 404, description = "No such hold of yours", body = ErrorBody),
              (status = 409, description = "Not active (checked out, released or expired): `reservation_closed`", body = ErrorBody)))]
pub(crate) async fn release_reservation(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ReservationResponse>> {
    let released = state
        .reservations
        .release(&who, path_id("reservation", &id)?)
        .await?;
    Ok(Json(released.into()))
}

#[utoipa::path(post, path = "/reservations/{id}/checkout", tag = "reservations", security(("bearer" = [])),
    params(("id" = String, Path, description = "Reservation id")),
    responses((status = 200, description = "The order: the held units are its own, its confirmation queued (the same order again for a hold checked out before)", body = OrderResponse),
              (status = 404, description = "No such hold of yours", body = ErrorBody),
              (status = 409, description = "Expired and its stock taken meanwhile (`reservation_expired`), or released (`reservation_closed`)", body = ErrorBody)))]
pub(crate) async fn checkout_reservation(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<OrderResponse>> {
    let placed = state
        .reservations
        .checkout(&who, path_id("reservation", &id)?)
        .await?;
    Ok(Json(OrderResponse::new(placed.order, None)))
}
