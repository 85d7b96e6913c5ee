//! Row types shared by both dialects, and their conversion into domain types.

use chrono::{DateTime, TimeZone, Utc};
use inventory_core::{
    Email, Error, LedgerEntry, Lines, Message, MessageParts, Notification, Order, Product,
    ProductId, Quantity, Reservation, Result, User,
};
use uuid::Uuid;

/// Microseconds since the epoch: how times are stored.
pub(crate) fn ts(t: DateTime<Utc>) -> i64 {
    t.timestamp_micros()
}

pub(crate) fn from_ts(micros: i64) -> Result<DateTime<Utc>> {
    Utc.timestamp_micros(micros)
        .single()
        .ok_or_else(|| Error::other(format!("stored time out of range: {micros}")))
}

fn uuid(s: &str) -> Result<Uuid> {
    Uuid::parse_str(s).map_err(|e| Error::other(format!("stored id {s:?} is not a UUID: {e}")))
}

fn quantity(n: i64) -> Result<Quantity> {
    Quantity::try_from(n).map_err(|e| Error::other(format!("stored quantity: {e}")))
}

fn stored<T>(what: &str, r: Result<T>) -> Result<T> {
    r.map_err(|e| Error::other(format!("stored {what} is invalid: {e}")))
}

// Every statement names its columns (these macros) instead of `*`: a prepared statement's
// result then never changes when a migration adds a column. SQLite prepares against the schema
// a connection last read, then re-prepares silently at the first step when the schema changed
// since: sqlx keeps the first column list, and a `SELECT *` whose table gained columns in between
// returned rows longer than that list (a panic in sqlx's worker). PostgreSQL refuses such a
// cached plan ("cached plan must not change result type"), which an older replica would hit in
// a rolling update.

/// The columns of [`UserRow`], for `SELECT` and `RETURNING` lists.
macro_rules! user_columns {
    () => {
        "id, email, password_hash, role, created_at, token_version, email_verified"
    };
}
pub(crate) use user_columns;

/// The columns of [`ProductRow`].
macro_rules! product_columns {
    () => {
        "id, name, quantity, reserved, created_at, updated_at"
    };
}
pub(crate) use product_columns;

/// The columns of [`OrderRow`].
macro_rules! order_columns {
    () => {
        "id, user_id, buyer_email, product_id, quantity, lines, status, idempotency_key, created_at, updated_at"
    };
}
pub(crate) use order_columns;

/// The columns of [`NotificationRow`].
macro_rules! notification_columns {
    () => {
        "id, kind, order_id, recipient, product_id, product_name, quantity, lines, user_id, code, \
         status, attempts, next_attempt_at, lease_owner, lease_until, last_error, created_at, sent_at"
    };
}
pub(crate) use notification_columns;

/// The columns of [`ReservationRow`].
macro_rules! reservation_columns {
    () => {
        "id, user_id, buyer_email, lines, status, expires_at, order_id, created_at, updated_at"
    };
}
pub(crate) use reservation_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct UserRow {
    id: String,
    email: String,
    password_hash: String,
    role: String,
    created_at: i64,
    token_version: i64,
    email_verified: i64,
}

impl TryFrom<UserRow> for User {
    type Error = Error;
    fn try_from(r: UserRow) -> Result<User> {
        Ok(User {
            id: uuid(&r.id)?,
            email: stored("email", Email::parse(&r.email))?,
            password_hash: r.password_hash,
            role: stored("role", r.role.parse())?,
            created_at: from_ts(r.created_at)?,
            token_version: stored(
                "token_version",
                u32::try_from(r.token_version).map_err(|e| Error::other(e.to_string())),
            )?,
            email_verified: r.email_verified != 0,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ProductRow {
    id: String,
    name: String,
    quantity: i64,
    reserved: i64,
    created_at: i64,
    updated_at: i64,
}

/// A product with the sums of its ledger entries.
#[derive(sqlx::FromRow)]
pub(crate) struct BalanceRow {
    #[sqlx(flatten)]
    product: ProductRow,
    ledger_quantity: i64,
    ledger_reserved: i64,
}

impl TryFrom<BalanceRow> for inventory_core::Balance {
    type Error = Error;
    fn try_from(r: BalanceRow) -> Result<inventory_core::Balance> {
        Ok(inventory_core::Balance {
            product: r.product.try_into()?,
            ledger_quantity: r.ledger_quantity,
            ledger_reserved: r.ledger_reserved,
        })
    }
}

impl TryFrom<ProductRow> for Product {
    type Error = Error;
    fn try_from(r: ProductRow) -> Result<Product> {
        Ok(Product {
            id: stored("product id", ProductId::new(r.id))?,
            name: r.name,
            quantity: u64::try_from(r.quantity).map_err(Error::other)?,
            reserved: u64::try_from(r.reserved).map_err(Error::other)?,
            created_at: from_ts(r.created_at)?,
            updated_at: from_ts(r.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OrderRow {
    id: String,
    user_id: String,
    buyer_email: String,
    product_id: String,
    quantity: i64,
    lines: Option<String>,
    status: String,
    idempotency_key: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<OrderRow> for Order {
    type Error = Error;
    fn try_from(r: OrderRow) -> Result<Order> {
        Ok(Order {
            id: uuid(&r.id)?,
            user_id: uuid(&r.user_id)?,
            buyer_email: stored("email", Email::parse(&r.buyer_email))?,
            lines: stored(
                "order lines",
                Lines::from_stored(
                    stored("product id", ProductId::new(r.product_id))?,
                    quantity(r.quantity)?,
                    from_json(r.lines.as_deref())?,
                ),
            )?,
            status: stored("status", r.status.parse())?,
            idempotency_key: r.idempotency_key,
            created_at: from_ts(r.created_at)?,
            updated_at: from_ts(r.updated_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct NotificationRow {
    id: String,
    kind: String,
    order_id: Option<String>,
    recipient: String,
    product_id: Option<String>,
    product_name: Option<String>,
    quantity: Option<i64>,
    lines: Option<String>,
    user_id: Option<String>,
    code: Option<String>,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    lease_owner: Option<String>,
    lease_until: Option<i64>,
    last_error: Option<String>,
    created_at: i64,
    sent_at: Option<i64>,
}

impl TryFrom<NotificationRow> for Notification {
    type Error = Error;
    fn try_from(r: NotificationRow) -> Result<Notification> {
        let parts = MessageParts {
            kind: Some(r.kind.clone()),
            order_id: r.order_id.as_deref().map(uuid).transpose()?,
            product_id: r.product_id.clone(),
            product_name: r.product_name.clone(),
            quantity: r.quantity,
            lines: from_json(r.lines.as_deref())?,
            user_id: r.user_id.as_deref().map(uuid).transpose()?,
            code: r.code.clone(),
        };
        let message = stored("notification", Message::try_from(parts))?;
        Ok(Notification {
            id: uuid(&r.id)?,
            recipient: stored("email", Email::parse(&r.recipient))?,
            message,
            status: stored("status", r.status.parse())?,
            attempts: u32::try_from(r.attempts).map_err(Error::other)?,
            next_attempt_at: from_ts(r.next_attempt_at)?,
            lease_owner: r.lease_owner,
            lease_until: r.lease_until.map(from_ts).transpose()?,
            last_error: r.last_error,
            created_at: from_ts(r.created_at)?,
            sent_at: r.sent_at.map(from_ts).transpose()?,
        })
    }
}

/// The columns of [`LedgerRow`].
macro_rules! ledger_columns {
    () => {
        "product_id, id, delta, reserved_delta, quantity, reserved, reason, actor, reference, at"
    };
}
pub(crate) use ledger_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct LedgerRow {
    product_id: String,
    id: String,
    delta: i64,
    reserved_delta: i64,
    quantity: Option<i64>,
    reserved: Option<i64>,
    reason: String,
    actor: String,
    reference: Option<String>,
    at: i64,
}

impl TryFrom<LedgerRow> for LedgerEntry {
    type Error = Error;
    fn try_from(r: LedgerRow) -> Result<LedgerEntry> {
        Ok(LedgerEntry {
            id: uuid(&r.id)?,
            product_id: stored("product id", ProductId::new(r.product_id))?,
            delta: r.delta,
            reserved_delta: r.reserved_delta,
            quantity: r
                .quantity
                .map(|q| stored("quantity", u64::try_from(q).map_err(Error::other)))
                .transpose()?,
            reserved: r
                .reserved
                .map(|q| stored("reserved", u64::try_from(q).map_err(Error::other)))
                .transpose()?,
            reason: stored("reason", r.reason.parse())?,
            actor: r.actor,
            reference: r.reference,
            at: from_ts(r.at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct ReservationRow {
    id: String,
    user_id: String,
    buyer_email: String,
    lines: String,
    status: String,
    expires_at: i64,
    order_id: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<ReservationRow> for Reservation {
    type Error = Error;
    fn try_from(r: ReservationRow) -> Result<Reservation> {
        Ok(Reservation {
            id: uuid(&r.id)?,
            user_id: uuid(&r.user_id)?,
            buyer_email: stored("email", Email::parse(&r.buyer_email))?,
            lines: from_json(Some(&r.lines))?
                .ok_or_else(|| Error::other("stored hold without lines"))?,
            status: stored("status", r.status.parse())?,
            expires_at: from_ts(r.expires_at)?,
            order_id: r.order_id.as_deref().map(uuid).transpose()?,
            created_at: from_ts(r.created_at)?,
            updated_at: from_ts(r.updated_at)?,
        })
    }
}

/// The `lines` column: JSON, or NULL for one line.
pub(crate) fn from_json<T: serde::de::DeserializeOwned>(text: Option<&str>) -> Result<Option<T>> {
    text.map(|t| {
        serde_json::from_str(t).map_err(|e| Error::other(format!("stored lines are invalid: {e}")))
    })
    .transpose()
}

/// A `lines` column's value: JSON of `lines`, NULL (`None`) when there are none to store.
pub(crate) fn to_json<T: serde::Serialize + ?Sized>(lines: Option<&T>) -> Option<String> {
    // Serialising plain data (strings and numbers) cannot fail.
    lines.and_then(|l| serde_json::to_string(l).ok())
}

/// Converts every row of a result.
pub(crate) fn all<R, T: TryFrom<R, Error = Error>>(rows: Vec<R>) -> Result<Vec<T>> {
    rows.into_iter().map(T::try_from).collect()
}

/// The columns of [`EventRow`].
macro_rules! event_columns {
    () => {
        "id, type, event_key, occurred_at, data, traceparent"
    };
}
pub(crate) use event_columns;

/// The columns of [`DeliveryRow`].
macro_rules! delivery_columns {
    () => {
        "id, event_id, type, event_key, occurred_at, data, traceparent, destination, status, \
         attempts, next_attempt_at, last_error, delivered_at, created_at, lease_owner, lease_until"
    };
}
pub(crate) use delivery_columns;

/// The columns of [`WebhookRow`].
macro_rules! webhook_columns {
    () => {
        "id, url, events, secrets, disabled, created_at"
    };
}
pub(crate) use webhook_columns;

#[derive(sqlx::FromRow)]
pub(crate) struct EventRow {
    id: String,
    #[sqlx(rename = "type")]
    kind: String,
    event_key: String,
    occurred_at: i64,
    data: String,
    traceparent: Option<String>,
}

impl TryFrom<EventRow> for inventory_core::Event {
    type Error = Error;
    fn try_from(r: EventRow) -> Result<inventory_core::Event> {
        Ok(inventory_core::Event {
            id: uuid(&r.id)?,
            kind: stored("event type", r.kind.parse())?,
            key: r.event_key,
            occurred_at: from_ts(r.occurred_at)?,
            data: serde_json::from_str(&r.data)
                .map_err(|e| Error::other(format!("stored event data: {e}")))?,
            traceparent: r.traceparent,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DeliveryRow {
    id: String,
    event_id: String,
    #[sqlx(rename = "type")]
    kind: String,
    event_key: String,
    occurred_at: i64,
    data: String,
    traceparent: Option<String>,
    destination: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    delivered_at: Option<i64>,
    created_at: i64,
    lease_owner: Option<String>,
    lease_until: Option<i64>,
}

impl TryFrom<DeliveryRow> for inventory_core::Delivery {
    type Error = Error;
    fn try_from(r: DeliveryRow) -> Result<inventory_core::Delivery> {
        Ok(inventory_core::Delivery {
            id: uuid(&r.id)?,
            event: EventRow {
                id: r.event_id,
                kind: r.kind,
                event_key: r.event_key,
                occurred_at: r.occurred_at,
                data: r.data,
                traceparent: r.traceparent,
            }
            .try_into()?,
            destination: stored("destination", r.destination.parse())?,
            status: stored("status", r.status.parse())?,
            attempts: u32::try_from(r.attempts).map_err(Error::other)?,
            next_attempt_at: from_ts(r.next_attempt_at)?,
            last_error: r.last_error,
            delivered_at: r.delivered_at.map(from_ts).transpose()?,
            created_at: from_ts(r.created_at)?,
            lease_owner: r.lease_owner,
            lease_until: r.lease_until.map(from_ts).transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct WebhookRow {
    id: String,
    url: String,
    events: String,
    secrets: String,
    disabled: Option<String>,
    created_at: i64,
}

impl TryFrom<WebhookRow> for inventory_core::WebhookEndpoint {
    type Error = Error;
    fn try_from(r: WebhookRow) -> Result<inventory_core::WebhookEndpoint> {
        Ok(inventory_core::WebhookEndpoint {
            id: uuid(&r.id)?,
            url: r.url,
            events: r
                .events
                .split(',')
                .map(|t| stored("event type", t.parse()))
                .collect::<Result<_>>()?,
            secrets: r
                .secrets
                .split(' ')
                .map(|s| stored("secret", inventory_core::WebhookSecret::parse(s)))
                .collect::<Result<_>>()?,
            disabled: r.disabled,
            created_at: from_ts(r.created_at)?,
        })
    }
}
