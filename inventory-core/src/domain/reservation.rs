//! Holds (reservations): units moved from a product's available stock to its reserved stock
//! while a buyer checks out, until the hold is checked out, released or expires.
//!
//! ```text
//! active --checkout--> checked_out (its units are the order's)
//!    |----release----> released    (its units back to available)
//!    +--expires_at---> expired     (its units back to available, by a sweep)
//! expired --checkout--> checked_out, when the stock is there to take again
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

use super::*;

/// Where a hold is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationStatus {
    /// Holding its units until `expires_at`.
    Active,
    /// Turned into an order (`order_id`), which took its units.
    CheckedOut,
    /// Released by its buyer; its units went back.
    Released,
    /// Expired before checkout; its units went back.
    Expired,
}

text_enum!(ReservationStatus, "status" {
    Active => "active", CheckedOut => "checked_out", Released => "released", Expired => "expired"
});

/// A hold on stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// UUID v7.
    pub id: Uuid,
    /// The user who holds it.
    pub user_id: Uuid,
    /// Who receives the confirmation of its order.
    pub buyer_email: Email,
    /// What it holds.
    pub lines: Lines,
    /// Where it is in its life.
    pub status: ReservationStatus,
    /// When an active hold runs out.
    pub expires_at: DateTime<Utc>,
    /// The order it became, once checked out.
    pub order_id: Option<Uuid>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

/// What checking out a hold does to stock ([`Reservation::checkout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checkout {
    /// The held units become the order's: reserved stock goes down, available is unchanged.
    FromHold,
    /// The hold expired and its units went back: the order takes them from available stock
    /// again, all or nothing ([`Error::ReservationExpired`] when short).
    Retake,
    /// Checked out before: the answer is that order, unchanged.
    Done(Uuid),
}

impl Reservation {
    /// Whether an active hold has run out at `now` (a sweep releases it).
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.status == ReservationStatus::Active && self.expires_at <= now
    }

    /// Releases an active hold at `now` and returns the units that go back to available stock;
    /// [`Error::ReservationClosed`] for a hold that is not active.
    pub fn release(&mut self, now: DateTime<Utc>) -> Result<BTreeMap<ProductId, u64>> {
        self.close(ReservationStatus::Released, now)
    }

    /// Expires a hold that has run out at `now`, returning its units; `None` (nothing changes)
    /// for one that is not due.
    pub fn expire(&mut self, now: DateTime<Utc>) -> Option<BTreeMap<ProductId, u64>> {
        if !self.is_due(now) {
            return None;
        }
        self.close(ReservationStatus::Expired, now).ok()
    }

    fn close(
        &mut self,
        status: ReservationStatus,
        now: DateTime<Utc>,
    ) -> Result<BTreeMap<ProductId, u64>> {
        if self.status != ReservationStatus::Active {
            return Err(Error::ReservationClosed {
                id: self.id,
                status: self.status.as_str(),
            });
        }
        self.status = status;
        self.updated_at = now;
        Ok(self.lines.demand())
    }

    /// Checks out the hold as order `order_id` at `now` and says what that does to stock. An
    /// active hold (even one past `expires_at` that no sweep has released yet: its units are
    /// still held) gives its units; an expired one takes them again; a released one is
    /// [`Error::ReservationClosed`]; one checked out before is [`Checkout::Done`] with its
    /// order, unchanged.
    pub fn checkout(&mut self, order_id: Uuid, now: DateTime<Utc>) -> Result<Checkout> {
        let how = match (self.status, self.order_id) {
            (ReservationStatus::CheckedOut, Some(done)) => return Ok(Checkout::Done(done)),
            (ReservationStatus::Active, _) => Checkout::FromHold,
            (ReservationStatus::Expired, _) => Checkout::Retake,
            (status, _) => {
                return Err(Error::ReservationClosed {
                    id: self.id,
                    status: status.as_str(),
                });
            }
        };
        self.status = ReservationStatus::CheckedOut;
        self.order_id = Some(order_id);
        self.updated_at = now;
        Ok(how)
    }

    /// The order a checkout places: the hold's lines for its buyer, with fresh ids, at `now`.
    pub fn order(&self, now: DateTime<Utc>) -> NewOrder {
        let mut order = NewOrder::new(self.user_id, self.buyer_email.clone(), self.lines.clone());
        order.now = now;
        order
    }
}

/// A hold to make: the input of
/// [`ReservationStore::reserve`](crate::ReservationStore::reserve).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewReservation {
    /// Id of the new hold (UUID v7).
    pub id: Uuid,
    /// The user holding.
    pub user_id: Uuid,
    /// Who receives the confirmation of its order.
    pub buyer_email: Email,
    /// What to hold.
    pub lines: Lines,
    /// When it runs out.
    pub expires_at: DateTime<Utc>,
    /// The time of holding.
    pub now: DateTime<Utc>,
    /// The trace of the request holding (its events carry it).
    pub trace: Option<crate::trace::TraceParent>,
    /// Id of its `reservation.created` event, fixed before any attempt.
    pub event_id: Uuid,
}

impl NewReservation {
    /// A hold of `lines` for `ttl`, made now with a fresh id.
    pub fn new(user_id: Uuid, buyer_email: Email, lines: Lines, ttl: std::time::Duration) -> Self {
        let now = now();
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        NewReservation {
            id: Uuid::now_v7(),
            user_id,
            buyer_email,
            lines,
            expires_at: now
                .checked_add_signed(ttl)
                .unwrap_or(DateTime::<Utc>::MAX_UTC),
            now,
            trace: crate::trace::current(),
            event_id: Uuid::now_v7(),
        }
    }

    /// The event that holding writes with the hold: `reservation.created`.
    pub fn created_event(&self) -> Event {
        let mut event = Event::reservation(
            EventType::ReservationCreated,
            &self.reservation(),
            self.now,
            self.trace.as_ref(),
        );
        event.id = self.event_id;
        event
    }

    /// The active hold this creates.
    pub fn reservation(&self) -> Reservation {
        Reservation {
            id: self.id,
            user_id: self.user_id,
            buyer_email: self.buyer_email.clone(),
            lines: self.lines.clone(),
            status: ReservationStatus::Active,
            expires_at: self.expires_at,
            order_id: None,
            created_at: self.now,
            updated_at: self.now,
        }
    }
}
