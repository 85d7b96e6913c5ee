//! Events to other systems (admins): webhook endpoints and the deliveries of every
//! destination, failed ones listed and replayed.

use super::*;
use inventory_core::{Delivery, DeliveryStatus, Destination, EventType, Replay, WebhookEndpoint};

#[derive(Deserialize, ToSchema)]
pub(crate) struct NewWebhookBody {
    /// Where events are POSTed: `https://...` (or `http://`); private, loopback and
    /// link-local addresses are refused unless the server allows them.
    url: String,
    /// Event types it receives: `order.placed`, `order.confirmed`, `order.cancelled`,
    /// `reservation.created`, `reservation.expired`, `reservation.released`,
    /// `reservation.checked_out`.
    events: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub(crate) struct WebhookResponse {
    id: String,
    url: String,
    events: Vec<String>,
    /// Why it stopped receiving (a `410 Gone` answer), when it did.
    disabled: Option<String>,
    created_at: String,
    /// The signing secret (`whsec_...`): in the answer that creates or rotates it only.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

impl WebhookResponse {
    fn of(w: &WebhookEndpoint, secret: Option<String>) -> Self {
        WebhookResponse {
            id: w.id.to_string(),
            url: w.url.clone(),
            events: w.events.iter().map(|e| e.to_string()).collect(),
            disabled: w.disabled.clone(),
            created_at: w
                .created_at
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
            secret,
        }
    }
}

#[utoipa::path(post, path = "/admin/webhooks", tag = "events", request_body = NewWebhookBody, security(("bearer" = [])),
    responses((status = 201, description = "Created; the secret is shown this once", body = WebhookResponse),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 422, description = "A bad or internal URL (`field: url`), an unknown event type", body = ErrorBody)))]
pub(crate) async fn create_webhook(
    State(state): State<ApiState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<NewWebhookBody>,
) -> ApiResult<(StatusCode, Json<WebhookResponse>)> {
    require_admin(&who)?;
    let events = body
        .events
        .iter()
        .map(|e| {
            e.parse::<EventType>()
                .map_err(|_| Error::invalid("events", format!("unknown event type {e:?}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let endpoint = WebhookEndpoint::new(&body.url, events, inventory_core::now())?;
    let check = state
        .webhooks
        .as_ref()
        .ok_or_else(|| Error::Unsupported("webhooks are not available".into()))?;
    check
        .check_url(&endpoint.url)
        .await
        .map_err(|e| Error::invalid("url", e.to_string()))?;
    state.store.create_webhook(&endpoint).await?;
    let secret = endpoint.secrets.first().map(|s| s.expose().to_owned());
    Ok((
        StatusCode::CREATED,
        Json(WebhookResponse::of(&endpoint, secret)),
    ))
}

#[utoipa::path(get, path = "/admin/webhooks", tag = "events", security(("bearer" = [])),
    responses((status = 200, description = "Every endpoint, oldest first (no secrets)", body = [WebhookResponse]),
              (status = 403, description = "Admins only", body = ErrorBody)))]
pub(crate) async fn list_webhooks(
    State(state): State<ApiState>,
    Caller(who): Caller,
) -> ApiResult<Json<Vec<WebhookResponse>>> {
    require_admin(&who)?;
    let hooks = state.store.list_webhooks().await?;
    Ok(Json(
        hooks.iter().map(|w| WebhookResponse::of(w, None)).collect(),
    ))
}

async fn find_webhook(state: &ApiState, raw: &str) -> ApiResult<WebhookEndpoint> {
    let id = path_id("webhook", raw)?;
    state
        .store
        .list_webhooks()
        .await?
        .into_iter()
        .find(|w| w.id == id)
        .ok_or_else(|| Error::NotFound(format!("webhook {id}")).into())
}

#[utoipa::path(delete, path = "/admin/webhooks/{id}", tag = "events", params(("id" = String, Path, description = "Endpoint id")), security(("bearer" = [])),
    responses((status = 204, description = "Deleted; its pending deliveries fail"),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 404, description = "No such endpoint", body = ErrorBody)))]
pub(crate) async fn delete_webhook(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    require_admin(&who)?;
    let id = path_id("webhook", &id)?;
    state
        .store
        .delete_webhook(id, inventory_core::now())
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/admin/webhooks/{id}/rotate", tag = "events", params(("id" = String, Path, description = "Endpoint id")), security(("bearer" = [])),
    responses((status = 200, description = "A new secret (shown this once); the previous one still signs until the next rotation", body = WebhookResponse),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 404, description = "No such endpoint", body = ErrorBody)))]
pub(crate) async fn rotate_webhook(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookResponse>> {
    require_admin(&who)?;
    let mut endpoint = find_webhook(&state, &id).await?;
    let fresh = endpoint.rotate();
    state.store.update_webhook(&endpoint).await?;
    Ok(Json(WebhookResponse::of(
        &endpoint,
        Some(fresh.expose().to_owned()),
    )))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DeliveryResponse {
    id: String,
    /// `webhook:<endpoint id>` or `pubsub`.
    destination: String,
    status: String,
    attempts: u32,
    next_attempt_at: String,
    last_error: Option<String>,
    delivered_at: Option<String>,
    created_at: String,
    event_id: String,
    event_type: String,
    /// The order's (or hold's) id.
    event_key: String,
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

impl From<Delivery> for DeliveryResponse {
    fn from(d: Delivery) -> Self {
        DeliveryResponse {
            id: d.id.to_string(),
            destination: d.destination.to_string(),
            status: d.status.to_string(),
            attempts: d.attempts,
            next_attempt_at: rfc3339(d.next_attempt_at),
            last_error: d.last_error,
            delivered_at: d.delivered_at.map(rfc3339),
            created_at: rfc3339(d.created_at),
            event_id: d.event.id.to_string(),
            event_type: d.event.kind.to_string(),
            event_key: d.event.key,
        }
    }
}

#[derive(Deserialize, IntoParams)]
pub(crate) struct DeliveryQuery {
    /// `pending`, `delivered` or `failed` (default `failed`).
    status: Option<String>,
}

#[utoipa::path(get, path = "/admin/deliveries", tag = "events", params(DeliveryQuery, PageQuery), security(("bearer" = [])),
    responses((status = 200, description = "Deliveries with the status, oldest first (`Link` to the next page)", body = [DeliveryResponse]),
              (status = 403, description = "Admins only", body = ErrorBody)))]
pub(crate) async fn list_deliveries(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Query(d): Query<DeliveryQuery>,
    Query(q): Query<PageQuery>,
) -> ApiResult<Response> {
    require_admin(&who)?;
    let status: DeliveryStatus = d.status.as_deref().unwrap_or("failed").parse()?;
    let deliveries = state.store.list_deliveries(status, q.page()?).await?;
    Ok(q.answer(deliveries, DeliveryResponse::from))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct ReplayedResponse {
    /// Failed deliveries put back to pending.
    replayed: u64,
}

#[utoipa::path(post, path = "/admin/deliveries/{id}/retry", tag = "events", params(("id" = String, Path, description = "Delivery id")), security(("bearer" = [])),
    responses((status = 200, description = "Pending again, due now", body = ReplayedResponse),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 404, description = "No failed delivery with this id (or its endpoint is gone)", body = ErrorBody)))]
pub(crate) async fn retry_delivery(
    State(state): State<ApiState>,
    Caller(who): Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<ReplayedResponse>> {
    require_admin(&who)?;
    let id = path_id("delivery", &id)?;
    let replayed = state
        .store
        .replay_deliveries(&Replay::One(id), inventory_core::now())
        .await?;
    if replayed == 0 {
        return Err(
            Error::NotFound(format!("failed delivery {id} (to a live destination)")).into(),
        );
    }
    Ok(Json(ReplayedResponse { replayed }))
}

#[derive(Deserialize, ToSchema)]
pub(crate) struct ReplayBody {
    /// Every failed delivery of this destination (`webhook:<id>` or `pubsub`).
    destination: Option<String>,
    /// Every failed delivery created at or after this time (RFC 3339).
    since: Option<DateTime<Utc>>,
}

#[utoipa::path(post, path = "/admin/deliveries/retry", tag = "events", request_body = ReplayBody, security(("bearer" = [])),
    responses((status = 200, description = "Failed deliveries put back to pending", body = ReplayedResponse),
              (status = 403, description = "Admins only", body = ErrorBody),
              (status = 422, description = "Neither or both of destination and since", body = ErrorBody)))]
pub(crate) async fn retry_deliveries(
    State(state): State<ApiState>,
    Caller(who): Caller,
    ApiJson(body): ApiJson<ReplayBody>,
) -> ApiResult<Json<ReplayedResponse>> {
    require_admin(&who)?;
    let which = match (body.destination, body.since) {
        (Some(d), None) => Replay::Destination(d.parse::<Destination>()?),
        (None, Some(t)) => Replay::Since(t),
        _ => {
            return Err(Error::invalid("destination", "give either destination or since").into());
        }
    };
    let replayed = state
        .store
        .replay_deliveries(&which, inventory_core::now())
        .await?;
    Ok(Json(ReplayedResponse { replayed }))
}

#[derive(Serialize, ToSchema)]
pub(crate) struct DestinationCounts {
    destination: String,
    pending: u64,
    retrying: u64,
    delivered: u64,
    failed: u64,
    /// When the oldest undelivered delivery was created.
    oldest_pending: Option<String>,
}

#[utoipa::path(get, path = "/admin/deliveries/counts", tag = "events", security(("bearer" = [])),
    responses((status = 200, description = "Each destination's deliveries, counted", body = [DestinationCounts]),
              (status = 403, description = "Admins only", body = ErrorBody)))]
pub(crate) async fn delivery_counts(
    State(state): State<ApiState>,
    Caller(who): Caller,
) -> ApiResult<Json<Vec<DestinationCounts>>> {
    require_admin(&who)?;
    let counts = state.store.delivery_counts().await?;
    Ok(Json(
        counts
            .into_iter()
            .map(|(d, c)| DestinationCounts {
                destination: d.to_string(),
                pending: c.pending,
                retrying: c.retrying,
                delivered: c.delivered,
                failed: c.failed,
                oldest_pending: c.oldest_pending.map(rfc3339),
            })
            .collect(),
    ))
}
