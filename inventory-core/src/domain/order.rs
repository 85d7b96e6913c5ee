//! Orders: quantities, idempotency keys, statuses and their transitions.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

use super::*;

/// How many units an order takes: 1 to [`QUANTITY_MAX`]. Like every quantity of the API
/// (stock, restock), it reads as a `u64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "u64")]
pub struct Quantity(u32);

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Quantity {
    /// One unit, the default of the original API.
    pub const ONE: Quantity = Quantity(1);

    /// Validates `n`: 1 to [`QUANTITY_MAX`].
    pub fn new(n: u64) -> Result<Self> {
        match u32::try_from(n) {
            Ok(0) => Err(Error::invalid("quantity", "must be at least 1")),
            Ok(n) if u64::from(n) <= QUANTITY_MAX => Ok(Quantity(n)),
            _ => Err(Error::invalid(
                "quantity",
                format!("must be at most {QUANTITY_MAX}"),
            )),
        }
    }

    /// The number of units.
    pub fn get(self) -> u64 {
        u64::from(self.0)
    }
}

/// Raw input (JSON, a database column): a negative number is [`Error::InvalidInput`].
impl TryFrom<i64> for Quantity {
    type Error = Error;
    fn try_from(n: i64) -> Result<Self> {
        let n = u64::try_from(n).map_err(|_| Error::invalid("quantity", "must be at least 1"))?;
        Quantity::new(n)
    }
}

impl From<Quantity> for u64 {
    fn from(q: Quantity) -> u64 {
        q.get()
    }
}

impl From<Quantity> for i64 {
    fn from(q: Quantity) -> i64 {
        i64::from(q.0)
    }
}

/// A client-chosen key that makes placing an order safe to retry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

impl fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl IdempotencyKey {
    /// Validates `raw`: 1 to 255 visible ASCII characters.
    pub fn new(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        if raw.is_empty()
            || raw.len() > IDEMPOTENCY_KEY_MAX_BYTES
            || !raw.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(Error::invalid(
                "Idempotency-Key",
                format!("must be 1 to {IDEMPOTENCY_KEY_MAX_BYTES} visible ASCII characters"),
            ));
        }
        Ok(IdempotencyKey(raw))
    }

    /// The key as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where an order is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderStatus {
    /// Placed; the confirmation email is not yet accepted by the mail server.
    Pending,
    /// The confirmation email was accepted by the mail server.
    Confirmed,
    /// Cancelled; its stock was returned.
    Cancelled,
}

text_enum!(OrderStatus, "status" { Pending => "pending", Confirmed => "confirmed", Cancelled => "cancelled" });

/// A placed order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// UUID v7: sorts by creation time.
    pub id: Uuid,
    /// The user who placed it.
    pub user_id: Uuid,
    /// Who receives the confirmation.
    pub buyer_email: Email,
    /// What was ordered.
    pub product_id: ProductId,
    /// How many units.
    pub quantity: Quantity,
    /// Where it is in its life.
    pub status: OrderStatus,
    /// The key it was placed with, if any.
    pub idempotency_key: Option<String>,
    /// When it was placed.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Order {
    /// Cancels it at `now` and returns the units that go back to stock;
    /// [`Error::AlreadyCancelled`] if it was cancelled already (units go back exactly once).
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<Quantity> {
        if self.status == OrderStatus::Cancelled {
            return Err(Error::AlreadyCancelled(self.id));
        }
        self.status = OrderStatus::Cancelled;
        self.updated_at = now;
        Ok(self.quantity)
    }

    /// What its confirmation being sent does: a pending order becomes confirmed; a confirmed
    /// or cancelled one stays as it is. Returns whether it changed.
    pub fn confirm(&mut self, now: DateTime<Utc>) -> bool {
        if self.status != OrderStatus::Pending {
            return false;
        }
        self.status = OrderStatus::Confirmed;
        self.updated_at = now;
        true
    }
}

/// An order to place: the input of [`OrderStore::place_order`](crate::OrderStore::place_order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOrder {
    /// Id of the new order (UUID v7).
    pub id: Uuid,
    /// Id of the confirmation notification enqueued with it.
    pub notification_id: Uuid,
    /// The user placing it.
    pub user_id: Uuid,
    /// Who receives the confirmation.
    pub buyer_email: Email,
    /// What is ordered.
    pub product_id: ProductId,
    /// How many units.
    pub quantity: Quantity,
    /// Makes the call safe to retry.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The time of placing.
    pub now: DateTime<Utc>,
}

impl NewOrder {
    /// An order with fresh ids, placed now.
    pub fn new(
        user_id: Uuid,
        buyer_email: Email,
        product_id: ProductId,
        quantity: Quantity,
    ) -> Self {
        NewOrder {
            id: Uuid::now_v7(),
            notification_id: Uuid::now_v7(),
            user_id,
            buyer_email,
            product_id,
            quantity,
            idempotency_key: None,
            now: now(),
        }
    }

    /// Sets the idempotency key.
    pub fn with_idempotency_key(mut self, key: IdempotencyKey) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// The pending order this creates.
    pub fn order(&self) -> Order {
        Order {
            id: self.id,
            user_id: self.user_id,
            buyer_email: self.buyer_email.clone(),
            product_id: self.product_id.clone(),
            quantity: self.quantity,
            status: OrderStatus::Pending,
            idempotency_key: self.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            created_at: self.now,
            updated_at: self.now,
        }
    }

    /// Its confirmation notification, due at once.
    pub fn notification(&self, product_name: impl Into<String>) -> Notification {
        Notification {
            id: self.notification_id,
            recipient: self.buyer_email.clone(),
            message: Message::OrderConfirmation {
                order_id: self.id,
                product_id: self.product_id.clone(),
                product_name: product_name.into(),
                quantity: self.quantity,
            },
            status: NotificationStatus::Pending,
            attempts: 0,
            next_attempt_at: self.now,
            lease_owner: None,
            lease_until: None,
            last_error: None,
            created_at: self.now,
            sent_at: None,
        }
    }

    /// Whether `existing` (found under the same key) was placed with the same contents.
    pub fn matches(&self, existing: &Order) -> bool {
        existing.buyer_email == self.buyer_email
            && existing.product_id == self.product_id
            && existing.quantity == self.quantity
    }
}

/// The result of placing an order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// The order.
    pub order: Order,
    /// True when the idempotency key matched an earlier order, which is returned unchanged.
    pub replayed: bool,
}
