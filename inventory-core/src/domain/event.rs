//! Events for other systems: what happened ([`Event`], a versioned JSON contract), where it
//! goes ([`Destination`]: a webhook endpoint or Pub/Sub; email keeps its own outbox) and each
//! destination's own delivery state ([`Delivery`]).
//!
//! A store writes an order's or a hold's event in the same atomic step as the change it
//! reports. A dispatcher then fans each event out to the destinations subscribed to its type
//! (one [`Delivery`] each) and delivers them, so a failing webhook never re-sends another
//! destination's delivery nor delays it.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::{Order, Reservation};
use crate::error::{Error, Result};
use crate::trace::TraceParent;

/// The version of the event body's contract ([`Event::body`]); raised on any change a
/// receiver could notice other than a new field or a new event type.
pub const EVENT_VERSION: u32 = 1;

/// What an event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EventType {
    /// An order was placed (directly, or by checking out a hold).
    OrderPlaced,
    /// An order's confirmation email was sent.
    OrderConfirmed,
    /// An order was cancelled and its units went back to stock.
    OrderCancelled,
    /// A hold took its units.
    ReservationCreated,
    /// A hold ran out and its units went back.
    ReservationExpired,
    /// A hold was released by its buyer and its units went back.
    ReservationReleased,
    /// A hold became an order.
    ReservationCheckedOut,
    /// A product's available stock fell to or below its low-stock threshold (from above it).
    StockLow,
}

text_enum!(EventType, "event" {
    OrderPlaced => "order.placed",
    OrderConfirmed => "order.confirmed",
    OrderCancelled => "order.cancelled",
    ReservationCreated => "reservation.created",
    ReservationExpired => "reservation.expired",
    ReservationReleased => "reservation.released",
    ReservationCheckedOut => "reservation.checked_out",
    StockLow => "stock.low",
});

impl EventType {
    /// Every type, in the order of the contract's documentation.
    pub const ALL: [EventType; 8] = [
        EventType::OrderPlaced,
        EventType::OrderConfirmed,
        EventType::OrderCancelled,
        EventType::ReservationCreated,
        EventType::ReservationExpired,
        EventType::ReservationReleased,
        EventType::ReservationCheckedOut,
        EventType::StockLow,
    ];
}

impl TryFrom<String> for EventType {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<EventType> for String {
    fn from(t: EventType) -> String {
        t.as_str().to_owned()
    }
}

/// One thing that happened, as other systems receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Stable id (UUID v7): every delivery of the event carries it, so a receiver
    /// deduplicates by it.
    pub id: Uuid,
    /// What happened.
    pub kind: EventType,
    /// What it is about: the order's id (a hold's events: the hold's id); Pub/Sub's ordering
    /// key, so the events of one order arrive in order.
    pub key: String,
    /// When it happened.
    pub occurred_at: DateTime<Utc>,
    /// The type's data (see docs/operations.md, "Events").
    pub data: serde_json::Value,
    /// The W3C `traceparent` of the request that caused it, if any: deliveries continue that
    /// trace.
    pub traceparent: Option<String>,
}

fn lines_json(lines: &super::Lines) -> serde_json::Value {
    lines
        .iter()
        .map(|l| json!({"product_id": l.product_id.as_str(), "quantity": l.quantity.get()}))
        .collect()
}

impl Event {
    fn new(
        kind: EventType,
        key: String,
        at: DateTime<Utc>,
        data: serde_json::Value,
        trace: Option<&TraceParent>,
    ) -> Event {
        Event {
            id: Uuid::now_v7(),
            kind,
            key,
            occurred_at: at,
            data,
            traceparent: trace.map(TraceParent::to_string),
        }
    }

    /// An order's event (`order.placed` or `order.cancelled`): its id, buyer, lines and
    /// status, as of `at`.
    pub fn order(
        kind: EventType,
        order: &Order,
        at: DateTime<Utc>,
        trace: Option<&TraceParent>,
    ) -> Event {
        let data = json!({
            "order_id": order.id,
            "user_id": order.user_id,
            "lines": lines_json(&order.lines),
            "status": order.status.as_str(),
            "created_at": order.created_at,
        });
        Event::new(kind, order.id.to_string(), at, data, trace)
    }

    /// `order.confirmed`: the order's confirmation email was sent at `at`.
    pub fn order_confirmed(order_id: Uuid, at: DateTime<Utc>) -> Event {
        let data = json!({"order_id": order_id, "confirmed_at": at});
        Event::new(
            EventType::OrderConfirmed,
            order_id.to_string(),
            at,
            data,
            None,
        )
    }

    /// A hold's event (`reservation.*`), as of `at`.
    pub fn reservation(
        kind: EventType,
        r: &Reservation,
        at: DateTime<Utc>,
        trace: Option<&TraceParent>,
    ) -> Event {
        let data = json!({
            "reservation_id": r.id,
            "user_id": r.user_id,
            "lines": lines_json(&r.lines),
            "status": r.status.as_str(),
            "expires_at": r.expires_at,
            "order_id": r.order_id,
        });
        Event::new(kind, r.id.to_string(), at, data, trace)
    }

    /// `stock.low` when a change took a product's available stock from `before`, above its
    /// `threshold`, to `after`, at or below it ([`crosses_low`]); `None` otherwise. The key is
    /// the product's id.
    pub fn stock_low(
        product: &super::ProductId,
        threshold: Option<u64>,
        (before, after): (u64, u64),
        at: DateTime<Utc>,
        trace: Option<&TraceParent>,
    ) -> Option<Event> {
        let threshold = threshold.filter(|t| crosses_low(*t, before, after))?;
        let data = json!({
            "product_id": product.as_str(),
            "threshold": threshold,
            "available": after,
            "previous": before,
        });
        Some(Event::new(
            EventType::StockLow,
            product.to_string(),
            at,
            data,
            trace,
        ))
    }

    /// The body every destination receives: `{"version", "type", "id", "occurred_at",
    /// "data"}` (compact JSON; a webhook's signature covers exactly these bytes).
    pub fn body(&self) -> String {
        json!({
            "version": EVENT_VERSION,
            "type": self.kind.as_str(),
            "id": self.id,
            "occurred_at": self.occurred_at,
            "data": self.data,
        })
        .to_string()
    }
}

/// Whether a change of available stock from `before` to `after` crosses `threshold`
/// downward: from above it to at or below it. Staying below, or going up, does not.
pub fn crosses_low(threshold: u64, before: u64, after: u64) -> bool {
    before > threshold && after <= threshold
}

/// Where events go, besides email.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Destination {
    /// A webhook endpoint ([`WebhookEndpoint`]), by id.
    Webhook(Uuid),
    /// The Google Pub/Sub topic of the deployment.
    PubSub,
}

impl fmt::Display for Destination {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Destination::Webhook(id) => write!(f, "webhook:{id}"),
            Destination::PubSub => f.write_str("pubsub"),
        }
    }
}

impl FromStr for Destination {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.split_once(':') {
            None if s == "pubsub" => Ok(Destination::PubSub),
            Some(("webhook", id)) => Uuid::parse_str(id)
                .map(Destination::Webhook)
                .map_err(|_| Error::invalid("destination", "webhook:<endpoint id>")),
            _ => Err(Error::invalid(
                "destination",
                format!("unknown destination {s:?}"),
            )),
        }
    }
}

/// Where a delivery is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    /// Not delivered yet: due at its next attempt.
    Pending,
    /// Accepted by the destination.
    Delivered,
    /// Refused for good, or out of attempts: listed, kept until replayed.
    Failed,
}

text_enum!(DeliveryStatus, "status" {
    Pending => "pending",
    Delivered => "delivered",
    Failed => "failed",
});

/// One event on its way to one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Id of this delivery (UUID v7).
    pub id: Uuid,
    /// The event.
    pub event: Event,
    /// Where it goes.
    pub destination: Destination,
    /// Where it is.
    pub status: DeliveryStatus,
    /// Attempts made (each claim counts one).
    pub attempts: u32,
    /// When the next attempt is due (pending deliveries).
    pub next_attempt_at: DateTime<Utc>,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the destination accepted it.
    pub delivered_at: Option<DateTime<Utc>>,
    /// When it was created (fanned out).
    pub created_at: DateTime<Utc>,
    /// Who is attempting it (a dispatcher's id), while leased.
    pub lease_owner: Option<String>,
    /// Until when that attempt holds it.
    pub lease_until: Option<DateTime<Utc>>,
}

impl Delivery {
    /// A new pending delivery of `event` to `destination`, due at `now`.
    pub fn new(event: Event, destination: Destination, now: DateTime<Utc>) -> Delivery {
        Delivery {
            id: Uuid::now_v7(),
            event,
            destination,
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            delivered_at: None,
            created_at: now,
            lease_owner: None,
            lease_until: None,
        }
    }

    /// Whether retention may delete it: delivered and written before `before`. Pending and
    /// failed ones are kept whatever their age.
    pub fn prunable(&self, before: DateTime<Utc>) -> bool {
        self.status == DeliveryStatus::Delivered && self.created_at < before
    }

    /// Whether a dispatcher may claim it at `now`: pending, due, and not leased.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.status == DeliveryStatus::Pending
            && self.next_attempt_at <= now
            && self.lease_until.is_none_or(|until| until <= now)
    }

    /// Leases it to `owner` until `until`, counting one attempt.
    pub fn lease_to(&mut self, owner: &str, until: DateTime<Utc>) {
        self.lease_owner = Some(owner.to_owned());
        self.lease_until = Some(until);
        self.attempts = self.attempts.saturating_add(1);
    }

    /// Records `owner`'s attempt and ends its lease ([`Error::LeaseLost`] when `owner` does
    /// not hold it, or it is no longer pending).
    pub fn finish(&mut self, owner: &str, attempt: &Attempt, now: DateTime<Utc>) -> Result<()> {
        if self.status != DeliveryStatus::Pending || self.lease_owner.as_deref() != Some(owner) {
            return Err(Error::LeaseLost(self.id));
        }
        self.lease_owner = None;
        self.lease_until = None;
        match attempt {
            Attempt::Delivered => {
                self.status = DeliveryStatus::Delivered;
                self.delivered_at = Some(now);
                self.last_error = None;
            }
            Attempt::Retry {
                error,
                at: Some(at),
            } => {
                self.next_attempt_at = *at;
                self.last_error = Some(error.clone());
            }
            Attempt::Retry { error, at: None } | Attempt::Refused { error } => {
                self.status = DeliveryStatus::Failed;
                self.last_error = Some(error.clone());
            }
        }
        Ok(())
    }

    /// Puts a failed delivery back to pending, due at `now`, attempts reset; whether it was
    /// failed.
    pub fn replay(&mut self, now: DateTime<Utc>) -> bool {
        if self.status != DeliveryStatus::Failed {
            return false;
        }
        self.status = DeliveryStatus::Pending;
        self.attempts = 0;
        self.next_attempt_at = now;
        self.lease_owner = None;
        self.lease_until = None;
        true
    }

    /// Whether [`Replay`] selects it (failed or not).
    pub fn selected_by(&self, which: &Replay) -> bool {
        match which {
            Replay::One(id) => self.id == *id,
            Replay::Destination(d) => &self.destination == d,
            Replay::Since(t) => self.created_at >= *t,
        }
    }
}

/// The text of a delivery failed because its endpoint was deleted.
pub const ENDPOINT_DELETED: &str = "endpoint deleted";

impl DeliveryCounts {
    /// Counts one delivery in.
    pub fn add(&mut self, d: &Delivery) {
        match d.status {
            DeliveryStatus::Pending if d.attempts == 0 => self.pending += 1,
            DeliveryStatus::Pending => self.retrying += 1,
            DeliveryStatus::Delivered => self.delivered += 1,
            DeliveryStatus::Failed => self.failed += 1,
        }
        if d.status == DeliveryStatus::Pending {
            self.oldest_pending = Some(
                self.oldest_pending
                    .map_or(d.created_at, |t| t.min(d.created_at)),
            );
        }
    }
}

impl super::Listed for Delivery {
    fn cursor(&self) -> String {
        self.id.to_string()
    }
}

/// What one attempt of a delivery came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// The destination accepted it.
    Delivered,
    /// It failed and is tried again at `at`; `None`: out of attempts, it is failed.
    Retry {
        /// Why it failed.
        error: String,
        /// When to try again.
        at: Option<DateTime<Utc>>,
    },
    /// The destination refused it for good (a webhook answering `410 Gone`, which also
    /// disables the endpoint): failed now.
    Refused {
        /// Why.
        error: String,
    },
}

/// Which failed deliveries to replay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay {
    /// One delivery.
    One(Uuid),
    /// Every failed delivery of a destination.
    Destination(Destination),
    /// Every failed delivery created at or after a time.
    Since(DateTime<Utc>),
}

/// A destination's deliveries, counted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DeliveryCounts {
    /// Pending, never tried.
    pub pending: u64,
    /// Pending after at least one failed attempt.
    pub retrying: u64,
    /// Delivered.
    pub delivered: u64,
    /// Failed for good.
    pub failed: u64,
    /// When the oldest pending delivery was created.
    pub oldest_pending: Option<DateTime<Utc>>,
}

/// A webhook signing secret: `whsec_` and the base64 of its key. Its `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(String);

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret(..)")
    }
}

impl WebhookSecret {
    /// The prefix of every secret (Standard Webhooks).
    pub const PREFIX: &'static str = "whsec_";

    /// A new random secret of 32 bytes.
    pub fn generate() -> WebhookSecret {
        use base64::Engine as _;
        let key: [u8; 32] = rand::random();
        WebhookSecret(format!(
            "{}{}",
            Self::PREFIX,
            base64::engine::general_purpose::STANDARD.encode(key)
        ))
    }

    /// Reads a stored secret: `whsec_` and base64 of at least 16 bytes.
    pub fn parse(s: &str) -> Result<WebhookSecret> {
        let secret = WebhookSecret(s.to_owned());
        match secret.key() {
            Some(k) if k.len() >= 16 => Ok(secret),
            _ => Err(Error::invalid(
                "secret",
                "must be whsec_ and the base64 of at least 16 bytes",
            )),
        }
    }

    /// The text form (`whsec_...`): show it once, store it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The key bytes the signature is computed with.
    pub fn key(&self) -> Option<Vec<u8>> {
        use base64::Engine as _;
        let b64 = self.0.strip_prefix(Self::PREFIX)?;
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    }
}

/// A receiver of events over HTTP, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpoint {
    /// Id (UUID v7).
    pub id: Uuid,
    /// Where events are POSTed (`http` or `https`).
    pub url: String,
    /// The types it receives (at least one).
    pub events: Vec<EventType>,
    /// Signing secrets, newest first: every delivery is signed with each (two during a
    /// rotation, until the older is dropped).
    pub secrets: Vec<WebhookSecret>,
    /// Why it is disabled (a `410 Gone` answer), when it is: no new deliveries are made.
    pub disabled: Option<String>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Longest webhook URL, in bytes.
pub const WEBHOOK_URL_MAX_BYTES: usize = 2048;

impl WebhookEndpoint {
    /// A new endpoint with a fresh secret: the URL must be `http(s)://host...` without
    /// credentials, and `events` name at least one type. Whether the host may be reached
    /// (private addresses) is the sender's check, made at creation and at every send.
    pub fn new(url: &str, events: Vec<EventType>, now: DateTime<Utc>) -> Result<WebhookEndpoint> {
        let url = url.trim();
        let bad = |why: &str| Error::invalid("url", why.to_owned());
        if url.len() > WEBHOOK_URL_MAX_BYTES {
            return Err(bad("is too long"));
        }
        let rest = url
            .strip_prefix("https://")
            .or_else(|| url.strip_prefix("http://"))
            .ok_or_else(|| bad("must be an http:// or https:// URL"))?;
        let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if authority.is_empty() {
            return Err(bad("must name a host"));
        }
        if authority.contains('@') {
            return Err(bad("must not carry credentials"));
        }
        if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain spaces or control characters"));
        }
        if events.is_empty() {
            return Err(Error::invalid("events", "name at least one event type"));
        }
        let mut events = events;
        events.sort();
        events.dedup();
        Ok(WebhookEndpoint {
            id: Uuid::now_v7(),
            url: url.to_owned(),
            events,
            secrets: vec![WebhookSecret::generate()],
            disabled: None,
            created_at: now,
        })
    }

    /// Whether it receives events of this type now.
    pub fn wants(&self, kind: EventType) -> bool {
        self.disabled.is_none() && self.events.contains(&kind)
    }

    /// Starts a secret rotation: a new secret signs first, the newest earlier one still
    /// signs until the next rotation (receivers switch in between). Returns the new secret.
    pub fn rotate(&mut self) -> WebhookSecret {
        let fresh = WebhookSecret::generate();
        self.secrets.insert(0, fresh.clone());
        self.secrets.truncate(2);
        fresh
    }
}

/// When failed deliveries are tried again: the delay before attempt 2, 3, ... The default is
/// the Standard Webhooks schedule (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h: about a day);
/// each delay gets up to 10 % of random jitter so that receivers back from an outage are not
/// hit by every retry at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule(Vec<Duration>);

impl Default for RetrySchedule {
    fn default() -> Self {
        let m = 60;
        let h = 3600;
        RetrySchedule(
            [5, 5 * m, 30 * m, 2 * h, 5 * h, 10 * h, 10 * h]
                .into_iter()
                .map(Duration::from_secs)
                .collect(),
        )
    }
}

impl RetrySchedule {
    /// A schedule of these delays (at most 50; empty: never retry).
    pub fn new(delays: Vec<Duration>) -> Result<RetrySchedule> {
        if delays.len() > 50 {
            return Err(Error::invalid("schedule", "at most 50 retries"));
        }
        Ok(RetrySchedule(delays))
    }

    /// Parses `5s,5m,30m,2h,5h,10h,10h` (units `ms`, `s`, `m`, `h`, `d`).
    pub fn parse(s: &str) -> Result<RetrySchedule> {
        let bad = || Error::invalid("schedule", format!("{s:?}: delays like 5s,5m,2h,1d"));
        let delays = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                let split = p.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
                let (n, unit) = p.split_at(split);
                let n: u64 = n.parse().map_err(|_| bad())?;
                let ms = match unit {
                    "ms" => 1,
                    "s" => 1_000,
                    "m" => 60_000,
                    "h" => 3_600_000,
                    "d" => 86_400_000,
                    _ => return Err(bad()),
                };
                Ok(Duration::from_millis(n.saturating_mul(ms)))
            })
            .collect::<Result<Vec<_>>>()?;
        RetrySchedule::new(delays)
    }

    /// The delays.
    pub fn delays(&self) -> &[Duration] {
        &self.0
    }

    /// When to try again after `attempts` failed attempts, or `None` when the schedule is
    /// spent. A destination's `Retry-After` (`at_least`) is honoured when longer. `jitter`
    /// in `[0, 1)` adds that fraction of 10 %.
    pub fn next(
        &self,
        attempts: u32,
        now: DateTime<Utc>,
        at_least: Option<Duration>,
        jitter: f64,
    ) -> Option<DateTime<Utc>> {
        let base = *self
            .0
            .get(usize::try_from(attempts.checked_sub(1)?).ok()?)?;
        let jittered = base.mul_f64(1.0 + 0.1 * jitter.clamp(0.0, 1.0));
        let delay = at_least.map_or(jittered, |min| min.max(jittered));
        Some(now + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX))
    }
}
