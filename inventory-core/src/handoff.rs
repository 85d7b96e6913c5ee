//! Handing a new order confirmation straight to a dispatcher in the same process.
//!
//! Without a handoff, a confirmation is written pending and a dispatcher finds it by claiming:
//! a query and a write per batch. On a store where each of those is a network round trip
//! (Firestore), that costs more than placing the order. With a handoff, the store writes the
//! confirmation already leased to the local dispatcher (one attempt counted, as a claim would)
//! in the order's own atomic step, and hands it over in memory once that step has committed.
//!
//! Nothing is lost when the handoff fails: the confirmation is in the store, leased for
//! [`DispatcherConfig::lease`](crate::DispatcherConfig), and any dispatcher claims it once that
//! lease runs out (a stopped dispatcher, a handover after shutdown began, a crash).
//!
//! A confirmation is only handed over when the dispatcher has a free send slot, reserved at
//! placement: under a backlog (a slow mail server) new confirmations are written pending and
//! wait their turn in the outbox like any other, so the handoff never queues work in memory.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use crate::domain::Notification;

/// A dispatcher's offer to take confirmations as they are placed: its lease owner name, its
/// lease, and its free send slots. Made by [`Dispatcher::run`](crate::Dispatcher::run) and given
/// to [`NotificationStore::accept_handoff`](crate::NotificationStore::accept_handoff).
#[derive(Debug, Clone)]
pub struct Handoff {
    owner: Arc<str>,
    lease: Duration,
    slots: Arc<Semaphore>,
    to: mpsc::UnboundedSender<Handed>,
}

/// A confirmation handed over, with the send slot reserved for it (freed when this is dropped).
#[derive(Debug)]
pub struct Handed {
    /// The confirmation as stored: pending, leased to the dispatcher, one attempt counted.
    pub notification: Notification,
    /// The reserved send slot.
    pub slot: OwnedSemaphorePermit,
}

/// A send slot reserved for one order being placed. Dropping it (the order failed) frees the
/// slot; [`Reservation::hand_over`] gives the committed confirmation to the dispatcher.
#[derive(Debug)]
pub struct Reservation {
    handoff: Handoff,
    slot: OwnedSemaphorePermit,
}

impl Handoff {
    /// An offer for the dispatcher `owner`, whose sends hold one permit of `slots` each, and
    /// the receiving end the dispatcher takes handed confirmations from.
    pub fn new(
        owner: &str,
        lease: Duration,
        slots: Arc<Semaphore>,
    ) -> (Handoff, mpsc::UnboundedReceiver<Handed>) {
        let (to, from) = mpsc::unbounded_channel();
        let handoff = Handoff {
            owner: owner.into(),
            lease,
            slots,
            to,
        };
        (handoff, from)
    }

    /// The dispatcher's lease owner name.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// Whether the dispatcher still takes confirmations.
    pub fn is_open(&self) -> bool {
        !self.to.is_closed()
    }

    /// Reserves a free send slot, or `None` when the dispatcher is busy or gone (the
    /// confirmation is then written pending, for a claim).
    pub fn reserve(&self) -> Option<Reservation> {
        if !self.is_open() {
            return None;
        }
        let slot = self.slots.clone().try_acquire_owned().ok()?;
        Some(Reservation {
            handoff: self.clone(),
            slot,
        })
    }
}

impl Reservation {
    /// The lease of a confirmation placed at `now`: the dispatcher's owner name, and when the
    /// lease runs out.
    pub fn terms(&self, now: DateTime<Utc>) -> (Arc<str>, DateTime<Utc>) {
        let until = now + chrono::Duration::from_std(self.handoff.lease).unwrap_or_default();
        (self.handoff.owner.clone(), until)
    }

    /// Leases `notification` to the dispatcher from `now` for its lease, counting one attempt,
    /// exactly as a claim does; returns when the lease runs out.
    pub fn lease(&self, notification: &mut Notification, now: DateTime<Utc>) -> DateTime<Utc> {
        let (owner, until) = self.terms(now);
        notification.lease_to(&owner, until);
        until
    }

    /// Gives the committed, leased confirmation to the dispatcher. If it has stopped meanwhile,
    /// the confirmation waits in the store until its lease runs out and is claimed then.
    pub fn hand_over(self, notification: Notification) {
        let handed = Handed {
            notification,
            slot: self.slot,
        };
        if self.handoff.to.send(handed).is_err() {
            tracing::debug!(
                "the dispatcher stopped before a confirmation was handed over; it will be claimed when its lease runs out"
            );
        }
    }
}

/// Where a store keeps the handoff it accepted: the part of
/// [`NotificationStore::accept_handoff`](crate::NotificationStore::accept_handoff) every backend
/// shares.
#[derive(Debug, Default)]
pub struct HandoffSlot(Mutex<Option<Handoff>>);

impl HandoffSlot {
    /// Keeps `handoff` unless an open one is kept already (the first dispatcher of a process
    /// takes its confirmations; another one claims). Returns whether it was kept.
    pub fn accept(&self, handoff: Handoff) -> bool {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.as_ref().is_some_and(Handoff::is_open) {
            return false;
        }
        *slot = Some(handoff);
        true
    }

    /// A send slot of the kept dispatcher, if there is one with a slot free.
    pub fn reserve(&self) -> Option<Reservation> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()?
            .reserve()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Email, Lines, NewOrder, ProductId, Quantity};
    use uuid::Uuid;

    fn confirmation() -> Notification {
        let order = NewOrder::new(
            Uuid::now_v7(),
            Email::parse("ann@example.com").unwrap(),
            Lines::one(ProductId::new("p").unwrap(), Quantity::ONE),
        );
        order.notification(|_| "P".into())
    }

    #[test]
    fn a_reservation_holds_a_slot_until_the_send_ends() {
        let slots = Arc::new(Semaphore::new(1));
        let (handoff, mut from) = Handoff::new("d", Duration::from_secs(10), slots.clone());
        let reservation = handoff.reserve().expect("a free slot");
        assert!(handoff.reserve().is_none(), "the only slot is taken");
        let mut n = confirmation();
        let now = Utc::now();
        let until = reservation.lease(&mut n, now);
        assert_eq!(until, now + chrono::Duration::seconds(10));
        assert_eq!(n.lease_owner.as_deref(), Some("d"));
        assert_eq!((n.lease_until, n.attempts), (Some(until), 1));
        reservation.hand_over(n.clone());
        let handed = from.try_recv().expect("handed over");
        assert_eq!(handed.notification, n);
        assert!(handoff.reserve().is_none(), "the send holds the slot");
        drop(handed);
        assert!(handoff.reserve().is_some(), "the slot is free again");
    }

    #[test]
    fn a_stopped_dispatcher_takes_nothing_and_a_failed_order_frees_its_slot() {
        let slots = Arc::new(Semaphore::new(1));
        let (handoff, from) = Handoff::new("d", Duration::from_secs(10), slots.clone());
        let keep = HandoffSlot::default();
        assert!(keep.accept(handoff.clone()));
        let (other, _other_from) = Handoff::new("e", Duration::from_secs(10), slots.clone());
        assert!(!keep.accept(other), "an open handoff is kept");
        drop(keep.reserve().expect("a free slot"));
        assert_eq!(
            slots.available_permits(),
            1,
            "a dropped reservation frees its slot"
        );
        drop(from);
        assert!(keep.reserve().is_none(), "the dispatcher is gone");
        let (next, _next_from) = Handoff::new("f", Duration::from_secs(10), slots);
        assert!(keep.accept(next), "a closed handoff is replaced");
        assert_eq!(keep.reserve().unwrap().handoff.owner(), "f");
    }
}
