//! Orders: quantities, idempotency keys, statuses and their transitions.

use std::collections::BTreeMap;
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

/// One line of an order: a product and how many of its units.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderLine {
    /// The product.
    pub product_id: ProductId,
    /// How many units.
    pub quantity: Quantity,
}

/// Most lines one order may have.
pub const ORDER_LINES_MAX: usize = 100;

/// The lines of an order: 1 to [`ORDER_LINES_MAX`], in the order the buyer gave them. The
/// same product may appear on several lines; what the order takes of a product is the sum
/// ([`Lines::demand`]).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "Vec<OrderLine>", into = "Vec<OrderLine>")]
pub struct Lines(Vec<OrderLine>);

impl Lines {
    /// Validates `lines`: 1 to [`ORDER_LINES_MAX`] of them.
    pub fn new(lines: Vec<OrderLine>) -> Result<Lines> {
        match lines.len() {
            0 => Err(Error::invalid("lines", "an order needs at least one line")),
            n if n > ORDER_LINES_MAX => Err(Error::invalid(
                "lines",
                format!("at most {ORDER_LINES_MAX} lines per order"),
            )),
            _ => Ok(Lines(lines)),
        }
    }

    /// One line: what the original API's orders are.
    pub fn one(product_id: ProductId, quantity: Quantity) -> Lines {
        Lines(vec![OrderLine {
            product_id,
            quantity,
        }])
    }

    /// The first line: the whole of a one-line order. Stores keep it in the columns (fields)
    /// that the original and our first releases read.
    pub fn first(&self) -> &OrderLine {
        // Never empty: every constructor checks.
        &self.0[0]
    }

    /// The lines, in the buyer's order.
    pub fn iter(&self) -> std::slice::Iter<'_, OrderLine> {
        self.0.iter()
    }

    /// How many lines.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: an order has a line at least. (For `clippy::len_without_is_empty`.)
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// What the order takes of each product, lines of one product summed, by product id (the
    /// order in which backends that lock rows take their locks, so that two baskets never
    /// wait on each other in a cycle).
    pub fn demand(&self) -> BTreeMap<ProductId, u64> {
        let mut demand = BTreeMap::new();
        for line in &self.0 {
            *demand.entry(line.product_id.clone()).or_insert(0) += line.quantity.get();
        }
        demand
    }

    /// Decides the order against the stock: `available` gives a product's available units, or
    /// `None` when there is no such product. Returns the demand per product
    /// ([`Lines::demand`]) when every product has enough; otherwise the first missing product
    /// is [`Error::NotFound`], and short products are one [`Error::OutOfStock`] naming each.
    pub fn check_stock(
        &self,
        mut available: impl FnMut(&ProductId) -> Option<u64>,
    ) -> Result<BTreeMap<ProductId, u64>> {
        let demand = self.demand();
        let mut short = Vec::new();
        for (id, &requested) in &demand {
            let Some(there) = available(id) else {
                return Err(Error::NotFound(format!("product {id}")));
            };
            if there < requested {
                short.push(crate::error::Shortage {
                    product_id: id.to_string(),
                    requested,
                    available: there,
                });
            }
        }
        if short.is_empty() {
            Ok(demand)
        } else {
            Err(Error::OutOfStock { short })
        }
    }

    /// The lines beyond a one-line order's: `None` for one line (stored in the first line's
    /// columns alone, as every release has), all of them otherwise.
    pub fn stored_list(&self) -> Option<&[OrderLine]> {
        (self.0.len() > 1).then_some(self.0.as_slice())
    }

    /// Lines as a store keeps them: the first line's columns, and the full list when there is
    /// more than one line (see [`Lines::stored_list`]).
    pub fn from_stored(
        product_id: ProductId,
        quantity: Quantity,
        list: Option<Vec<OrderLine>>,
    ) -> Result<Lines> {
        match list {
            Some(list) if !list.is_empty() => Lines::new(list),
            _ => Ok(Lines::one(product_id, quantity)),
        }
    }
}

impl TryFrom<Vec<OrderLine>> for Lines {
    type Error = Error;
    fn try_from(lines: Vec<OrderLine>) -> Result<Lines> {
        Lines::new(lines)
    }
}

impl From<Lines> for Vec<OrderLine> {
    fn from(lines: Lines) -> Vec<OrderLine> {
        lines.0
    }
}

impl<'a> IntoIterator for &'a Lines {
    type Item = &'a OrderLine;
    type IntoIter = std::slice::Iter<'a, OrderLine>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
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
    /// What was ordered: 1 to [`ORDER_LINES_MAX`] lines (the original's orders have one).
    pub lines: Lines,
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
    /// Cancels it at `now` and returns the units that go back to stock, per product
    /// ([`Lines::demand`]); [`Error::AlreadyCancelled`] if it was cancelled already (units go
    /// back exactly once).
    pub fn cancel(&mut self, now: DateTime<Utc>) -> Result<BTreeMap<ProductId, u64>> {
        if self.status == OrderStatus::Cancelled {
            return Err(Error::AlreadyCancelled(self.id));
        }
        self.status = OrderStatus::Cancelled;
        self.updated_at = now;
        Ok(self.lines.demand())
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
    pub lines: Lines,
    /// Makes the call safe to retry.
    pub idempotency_key: Option<IdempotencyKey>,
    /// The time of placing.
    pub now: DateTime<Utc>,
    /// The trace of the request placing it (its events carry it).
    pub trace: Option<crate::trace::TraceParent>,
    /// Id of its `order.placed` event: fixed before any attempt, so a retried write is the
    /// same event.
    pub event_id: Uuid,
}

impl NewOrder {
    /// An order of `lines` with fresh ids, placed now.
    pub fn new(user_id: Uuid, buyer_email: Email, lines: Lines) -> Self {
        NewOrder {
            id: Uuid::now_v7(),
            notification_id: Uuid::now_v7(),
            user_id,
            buyer_email,
            lines,
            idempotency_key: None,
            now: now(),
            trace: crate::trace::current(),
            event_id: Uuid::now_v7(),
        }
    }

    /// The event that placing it writes with the order: `order.placed`.
    pub fn placed_event(&self) -> Event {
        let mut event = Event::order(
            EventType::OrderPlaced,
            &self.order(),
            self.now,
            self.trace.as_ref(),
        );
        event.id = self.event_id;
        event
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
            lines: self.lines.clone(),
            status: OrderStatus::Pending,
            idempotency_key: self.idempotency_key.as_ref().map(|k| k.as_str().to_owned()),
            created_at: self.now,
            updated_at: self.now,
        }
    }

    /// Its confirmation notification, due at once, naming each line's product by `name_of`
    /// (the products' names at the time of ordering).
    pub fn notification(&self, name_of: impl Fn(&ProductId) -> String) -> Notification {
        Notification {
            id: self.notification_id,
            recipient: self.buyer_email.clone(),
            message: Message::OrderConfirmation {
                order_id: self.id,
                lines: self
                    .lines
                    .iter()
                    .map(|l| ConfirmedLine {
                        product_name: name_of(&l.product_id),
                        product_id: l.product_id.clone(),
                        quantity: l.quantity,
                    })
                    .collect(),
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
        existing.buyer_email == self.buyer_email && existing.lines == self.lines
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
