//! An in-memory store with the same semantics as the database backends. Use it as a fake in
//! tests, or for a single process that need not keep its data.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;
use uuid::Uuid;

use crate::domain::*;
use crate::error::{Error, Result};
use crate::handoff::{Handoff, HandoffSlot};
use crate::ports::*;

mod events;
mod ledger;
mod orders;
mod outbox;
mod products;
mod reservations;
mod retention;
mod transfer;
mod users;

#[derive(Default)]
struct State {
    users: HashMap<Uuid, User>,
    user_by_email: HashMap<Email, Uuid>,
    products: BTreeMap<ProductId, Product>,
    orders: BTreeMap<Uuid, Order>,
    order_by_key: HashMap<(Uuid, String), Uuid>,
    notifications: BTreeMap<Uuid, Notification>,
    notification_by_order: HashMap<Uuid, Uuid>,
    reservations: BTreeMap<Uuid, Reservation>,
    /// Each product's entries, oldest first.
    ledger: HashMap<ProductId, Vec<LedgerEntry>>,
    /// Events written and not fanned out yet, by id (oldest first).
    events: BTreeMap<Uuid, Event>,
    /// Deliveries by id.
    deliveries: BTreeMap<Uuid, Delivery>,
    /// Webhook endpoints by id.
    webhooks: BTreeMap<Uuid, WebhookEndpoint>,
    /// Low-stock thresholds by product.
    low_stock: HashMap<ProductId, u64>,
}

impl State {
    /// Writes a placed order and its confirmation (leased to the local dispatcher when `slot`
    /// is a free slot of it, then also returned to be handed over).
    fn record_order(
        &mut self,
        new: &NewOrder,
        slot: Option<&crate::handoff::Reservation>,
    ) -> (Order, Option<Notification>) {
        let order = new.order();
        let products = &self.products;
        let mut notification =
            new.notification(|id| products.get(id).map(|p| p.name.clone()).unwrap_or_default());
        let mut handed = None;
        if let Some(r) = slot {
            r.lease(&mut notification, new.now);
            handed = Some(notification.clone());
        }
        if let Some(key) = &order.idempotency_key {
            self.order_by_key.insert((new.user_id, key.clone()), new.id);
        }
        self.orders.insert(order.id, order.clone());
        self.emit(new.placed_event());
        self.notification_by_order.insert(order.id, notification.id);
        self.notifications.insert(notification.id, notification);
        (order, handed)
    }

    /// Moves each product's units of `demand` as `how` says (callers check the units are
    /// there first) and writes each change's ledger entry.
    #[allow(clippy::too_many_arguments)]
    fn shift(
        &mut self,
        demand: &BTreeMap<ProductId, u64>,
        how: StockMove,
        reason: StockReason,
        actor: &str,
        reference: Option<String>,
        now: DateTime<Utc>,
    ) {
        for (id, &units) in demand {
            let Some(p) = self.products.get_mut(id) else {
                continue;
            };
            let (available, reserved) = how.deltas(i64::try_from(units).unwrap_or(i64::MAX));
            let before = p.quantity;
            p.quantity = p.quantity.saturating_add_signed(available);
            let threshold = self.low_stock.get(id).copied();
            let trace = crate::trace::current();
            let low = Event::stock_low(id, threshold, (before, p.quantity), now, trace.as_ref());
            p.reserved = p.reserved.saturating_add_signed(reserved);
            p.updated_at = now;
            let entry = LedgerEntry::new(
                id.clone(),
                available,
                reserved,
                (p.quantity, p.reserved),
                reason,
                actor,
                reference.clone(),
                now,
            );
            self.ledger.entry(id.clone()).or_default().push(entry);
            if let Some(low) = low {
                self.events.insert(low.id, low);
            }
        }
    }

    /// Writes an event, to be fanned out.
    fn emit(&mut self, event: Event) {
        self.events.insert(event.id, event);
    }

    /// Writes the entry of a product's first stock (created or imported).
    fn open(&mut self, p: &Product, reason: StockReason, at: DateTime<Utc>) {
        let entry = LedgerEntry::opening(p, reason, at);
        self.ledger.entry(p.id.clone()).or_default().push(entry);
    }
}

/// The in-memory store. Every operation takes one lock, so each is atomic.
pub struct MemoryStore {
    state: Mutex<State>,
    signal: watch::Sender<u64>,
    handoff: HandoffSlot,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        MemoryStore {
            state: Mutex::new(State::default()),
            signal: watch::channel(0).0,
            handoff: HandoffSlot::default(),
        }
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut State) -> Result<T>) -> Result<T> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| Error::other("memory store lock poisoned"))?;
        f(&mut state)
    }
}

/// The window `page` of `items`, which come in their list's order: by cursor ascending, or
/// descending when `newest_first`.
fn page<T: Listed>(items: impl Iterator<Item = T>, page: Page, newest_first: bool) -> Vec<T> {
    let before_cursor = |item: &T| match page.after.as_deref() {
        None => false,
        Some(after) if newest_first => item.cursor().as_str() >= after,
        Some(after) => item.cursor().as_str() <= after,
    };
    items
        .skip_while(before_cursor)
        .skip(page.offset as usize)
        .take(page.limit as usize)
        .collect()
}

fn notification(state: &mut State, id: Uuid) -> Result<&mut Notification> {
    state
        .notifications
        .get_mut(&id)
        .ok_or_else(|| Error::NotFound(format!("notification {id}")))
}

impl MemoryStore {
    fn change_user(&self, email: &Email, change: impl FnOnce(&mut User)) -> Result<User> {
        self.with(|s| {
            let id = s
                .user_by_email
                .get(email)
                .ok_or_else(|| Error::NotFound(format!("user {email}")))?;
            let user = s
                .users
                .get_mut(id)
                .ok_or_else(|| Error::other("index out of sync"))?;
            change(user);
            Ok(user.clone())
        })
    }
}

#[async_trait]
impl Health for MemoryStore {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
