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
            p.quantity = p.quantity.saturating_add_signed(available);
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
        }
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
impl UserStore for MemoryStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        self.with(|s| {
            if s.user_by_email.contains_key(&user.email) {
                return Err(Error::AlreadyExists("email already registered".into()));
            }
            s.user_by_email.insert(user.email.clone(), user.id);
            s.users.insert(user.id, user.clone());
            Ok(())
        })
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        self.with(|s| {
            Ok(s.user_by_email
                .get(email)
                .and_then(|id| s.users.get(id))
                .cloned())
        })
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<User>> {
        self.with(|s| Ok(s.users.get(&id).cloned()))
    }

    async fn set_role(&self, email: &Email, role: Role) -> Result<User> {
        self.change_user(email, |user| {
            user.role = role;
            user.token_version += 1;
        })
    }

    async fn revoke_tokens(&self, email: &Email) -> Result<User> {
        self.change_user(email, |user| user.token_version += 1)
    }

    async fn mark_email_verified(&self, email: &Email) -> Result<User> {
        self.change_user(email, |user| user.email_verified = true)
    }
}

#[async_trait]
impl ProductStore for MemoryStore {
    async fn create_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<Product> {
        self.with(|s| {
            if s.products.contains_key(&p.id) {
                return Err(Error::AlreadyExists(format!(
                    "product {} already exists",
                    p.id
                )));
            }
            let product = Product {
                id: p.id.clone(),
                name: p.name.clone(),
                quantity: p.quantity,
                reserved: 0,
                created_at: now,
                updated_at: now,
            };
            s.open(&product, StockReason::Opening, now);
            s.products.insert(p.id.clone(), product.clone());
            Ok(product)
        })
    }

    async fn ensure_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<bool> {
        match self.create_product(p, now).await {
            Ok(_) => Ok(true),
            Err(Error::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>> {
        self.with(|s| Ok(s.products.get(id).cloned()))
    }

    async fn list_products(&self, p: Page) -> Result<Vec<Product>> {
        self.with(|s| Ok(page(s.products.values().cloned(), p, false)))
    }

    async fn restock(
        &self,
        id: &ProductId,
        add: u64,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Product> {
        self.with(|s| {
            let product = s
                .products
                .get(id)
                .ok_or_else(|| Error::NotFound(format!("product {id}")))?;
            product
                .quantity
                .checked_add(add)
                .filter(|q| *q <= STOCK_MAX)
                .ok_or_else(|| {
                    Error::invalid("quantity", format!("stock would exceed {STOCK_MAX}"))
                })?;
            let demand = BTreeMap::from([(id.clone(), add)]);
            s.shift(
                &demand,
                StockMove::Give,
                StockReason::Restock,
                actor,
                None,
                now,
            );
            Ok(s.products[id].clone())
        })
    }
}

#[async_trait]
impl OrderStore for MemoryStore {
    async fn place_order(&self, new: &NewOrder) -> Result<Placed> {
        let reservation = self.handoff.reserve();
        let mut handed = None;
        let placed = self.with(|s| {
            if let Some(key) = &new.idempotency_key
                && let Some(id) = s.order_by_key.get(&(new.user_id, key.as_str().to_owned()))
            {
                let order = s.orders[id].clone();
                if !new.matches(&order) {
                    return Err(Error::IdempotencyKeyReused);
                }
                return Ok(Placed {
                    order,
                    replayed: true,
                });
            }
            let demand = new
                .lines
                .check_stock(|id| s.products.get(id).map(|p| p.quantity))?;
            let actor = new.user_id.to_string();
            let reference = Some(new.id.to_string());
            s.shift(
                &demand,
                StockMove::Take,
                StockReason::Order,
                &actor,
                reference,
                new.now,
            );
            let (order, leased) = s.record_order(new, reservation.as_ref());
            handed = leased;
            Ok(Placed {
                order,
                replayed: false,
            })
        })?;
        match (reservation, handed) {
            (Some(r), Some(n)) => r.hand_over(n),
            _ if !placed.replayed => self.signal.send_modify(|n| *n = n.wrapping_add(1)),
            _ => {}
        }
        Ok(placed)
    }

    async fn get_order(&self, id: Uuid) -> Result<Option<Order>> {
        self.with(|s| Ok(s.orders.get(&id).cloned()))
    }

    async fn list_orders_for_user(&self, user_id: Uuid, p: Page) -> Result<Vec<Order>> {
        self.with(|s| {
            Ok(page(
                s.orders
                    .values()
                    .rev()
                    .filter(|o| o.user_id == user_id)
                    .cloned(),
                p,
                true,
            ))
        })
    }

    async fn list_orders(&self, p: Page) -> Result<Vec<Order>> {
        self.with(|s| Ok(page(s.orders.values().rev().cloned(), p, true)))
    }

    async fn cancel_order(&self, id: Uuid, actor: &str, now: DateTime<Utc>) -> Result<Order> {
        self.with(|s| {
            let order = s
                .orders
                .get_mut(&id)
                .ok_or_else(|| Error::NotFound(format!("order {id}")))?;
            let returned = order.cancel(now)?;
            let order = order.clone();
            let reference = Some(order.id.to_string());
            s.shift(
                &returned,
                StockMove::Give,
                StockReason::Cancel,
                actor,
                reference,
                now,
            );
            if let Some(n) = s
                .notification_by_order
                .get(&id)
                .and_then(|nid| s.notifications.get_mut(nid))
            {
                n.cancel_with_order();
            }
            Ok(order)
        })
    }
}

#[async_trait]
impl ReservationStore for MemoryStore {
    async fn reserve(&self, r: &NewReservation) -> Result<Reservation> {
        self.with(|s| {
            if s.reservations.contains_key(&r.id) {
                return Err(Error::AlreadyExists(format!(
                    "reservation {} already exists",
                    r.id
                )));
            }
            let demand = r
                .lines
                .check_stock(|id| s.products.get(id).map(|p| p.quantity))?;
            let (actor, reference) = (r.user_id.to_string(), Some(r.id.to_string()));
            s.shift(
                &demand,
                StockMove::Hold,
                StockReason::Hold,
                &actor,
                reference,
                r.now,
            );
            let hold = r.reservation();
            s.reservations.insert(hold.id, hold.clone());
            Ok(hold)
        })
    }

    async fn get_reservation(&self, id: Uuid) -> Result<Option<Reservation>> {
        self.with(|s| Ok(s.reservations.get(&id).cloned()))
    }

    async fn release_reservation(&self, id: Uuid, now: DateTime<Utc>) -> Result<Reservation> {
        self.with(|s| {
            let hold = s
                .reservations
                .get_mut(&id)
                .ok_or_else(|| Error::NotFound(format!("reservation {id}")))?;
            let back = hold.release(now)?;
            let hold = hold.clone();
            let (actor, reference) = (hold.user_id.to_string(), Some(id.to_string()));
            s.shift(
                &back,
                StockMove::Unhold,
                StockReason::Release,
                &actor,
                reference,
                now,
            );
            Ok(hold)
        })
    }

    async fn checkout_reservation(&self, id: Uuid, new: &NewOrder) -> Result<Placed> {
        let slot = self.handoff.reserve();
        let mut handed = None;
        let placed = self.with(|s| {
            let mut hold = s
                .reservations
                .get(&id)
                .cloned()
                .ok_or_else(|| Error::NotFound(format!("reservation {id}")))?;
            match hold.checkout(new.id, new.now)? {
                Checkout::Done(order) => {
                    let order = s
                        .orders
                        .get(&order)
                        .cloned()
                        .ok_or_else(|| Error::other("a checked-out hold's order is missing"))?;
                    return Ok(Placed {
                        order,
                        replayed: true,
                    });
                }
                // The held units are the order's now: reserved goes down, available stays.
                Checkout::FromHold => {
                    let (actor, reference) = (new.user_id.to_string(), Some(new.id.to_string()));
                    let demand = hold.lines.demand();
                    let how = StockMove::Commit;
                    s.shift(
                        &demand,
                        how,
                        StockReason::Checkout,
                        &actor,
                        reference,
                        new.now,
                    );
                }
                Checkout::Retake => {
                    let demand = hold
                        .lines
                        .check_stock(|pid| s.products.get(pid).map(|p| p.quantity))
                        .map_err(|e| match e {
                            Error::OutOfStock { .. } => Error::ReservationExpired(id),
                            other => other,
                        })?;
                    let (actor, reference) = (new.user_id.to_string(), Some(new.id.to_string()));
                    let how = StockMove::Take;
                    s.shift(
                        &demand,
                        how,
                        StockReason::Checkout,
                        &actor,
                        reference,
                        new.now,
                    );
                }
            }
            s.reservations.insert(id, hold);
            let (order, leased) = s.record_order(new, slot.as_ref());
            handed = leased;
            Ok(Placed {
                order,
                replayed: false,
            })
        })?;
        match (slot, handed) {
            (Some(r), Some(n)) => r.hand_over(n),
            _ if !placed.replayed => self.signal.send_modify(|n| *n = n.wrapping_add(1)),
            _ => {}
        }
        Ok(placed)
    }

    async fn expire_reservations(&self, now: DateTime<Utc>, limit: u32) -> Result<u64> {
        self.with(|s| {
            let mut due: Vec<Uuid> = s
                .reservations
                .values()
                .filter(|r| r.is_due(now))
                .map(|r| r.id)
                .collect();
            due.truncate(limit as usize);
            let mut expired = 0;
            for id in due {
                let back = s.reservations.get_mut(&id).and_then(|r| r.expire(now));
                if let Some(back) = back {
                    let reference = Some(id.to_string());
                    let how = StockMove::Unhold;
                    s.shift(
                        &back,
                        how,
                        StockReason::Expire,
                        SYSTEM_ACTOR,
                        reference,
                        now,
                    );
                    expired += 1;
                }
            }
            Ok(expired)
        })
    }
}

#[async_trait]
impl LedgerStore for MemoryStore {
    async fn list_ledger(&self, id: &ProductId, p: Page) -> Result<Vec<LedgerEntry>> {
        self.with(|s| {
            if !s.products.contains_key(id) {
                return Err(Error::NotFound(format!("product {id}")));
            }
            let entries = s.ledger.get(id).map(Vec::as_slice).unwrap_or_default();
            Ok(page(entries.iter().rev().cloned(), p, true))
        })
    }

    async fn set_stock(&self, set: &StockSet) -> Result<Product> {
        self.with(|s| {
            let p = s
                .products
                .get_mut(&set.product_id)
                .ok_or_else(|| Error::NotFound(format!("product {}", set.product_id)))?;
            let entry = set.decide(p.quantity, p.reserved)?;
            p.quantity = set.quantity;
            p.updated_at = set.now;
            let product = p.clone();
            s.ledger
                .entry(set.product_id.clone())
                .or_default()
                .push(entry);
            Ok(product)
        })
    }

    async fn ledger_balance(&self, id: &ProductId) -> Result<Balance> {
        self.with(|s| {
            let p = s
                .products
                .get(id)
                .ok_or_else(|| Error::NotFound(format!("product {id}")))?;
            let entries = s.ledger.get(id).map(Vec::as_slice).unwrap_or_default();
            Ok(Balance::of(p.clone(), entries))
        })
    }

    async fn prune_ledger(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        self.with(|s| {
            let mut left = limit as usize;
            let mut pruned = 0;
            for entries in s.ledger.values_mut() {
                if left == 0 {
                    break;
                }
                // Oldest first (kept in id order); the checkpoint, if any, is the first.
                let earlier = entries
                    .first()
                    .filter(|e| e.reason == StockReason::Checkpoint)
                    .cloned();
                let skip = usize::from(earlier.is_some());
                let old: Vec<LedgerEntry> = entries[skip..]
                    .iter()
                    .take_while(|e| e.at < before)
                    .take(left)
                    .cloned()
                    .collect();
                let Some(point) = checkpoint(&old, earlier.as_ref()) else {
                    continue;
                };
                entries.drain(..skip + old.len());
                entries.insert(0, point);
                left -= old.len();
                pruned += old.len() as u64;
            }
            Ok(pruned)
        })
    }

    async fn repair_stock(&self, d: &Difference, now: DateTime<Utc>) -> Result<Product> {
        let entry = d.repair(now)?;
        self.with(|s| {
            let p = s
                .products
                .get_mut(&d.product_id)
                .ok_or_else(|| Error::NotFound(format!("product {}", d.product_id)))?;
            if (p.quantity, p.reserved) != (d.quantity, d.reserved) {
                return Err(Error::StockChanged {
                    product_id: d.product_id.to_string(),
                    expected: d.quantity,
                    current: p.quantity,
                });
            }
            p.quantity = entry.quantity.unwrap_or(p.quantity);
            p.reserved = entry.reserved.unwrap_or(p.reserved);
            p.updated_at = now;
            let product = p.clone();
            s.ledger
                .entry(d.product_id.clone())
                .or_default()
                .push(entry);
            Ok(product)
        })
    }
}

#[async_trait]
impl NotificationStore for MemoryStore {
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let lease_until = now + chrono::Duration::from_std(lease).map_err(Error::other)?;
        self.with(|s| {
            let mut due: Vec<&mut Notification> = s
                .notifications
                .values_mut()
                .filter(|n| n.is_due(now))
                .collect();
            due.sort_by_key(|n| (n.next_attempt_at, n.id));
            Ok(due
                .into_iter()
                .take(limit as usize)
                .map(|n| {
                    n.lease_to(owner, lease_until);
                    n.clone()
                })
                .collect())
        })
    }

    async fn extend_lease(&self, id: Uuid, owner: &str, until: DateTime<Utc>) -> Result<()> {
        self.with(|s| notification(s, id)?.extend_lease(owner, until))
    }

    async fn mark_sent(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<()> {
        self.with(|s| {
            let n = notification(s, id)?;
            n.mark_sent(owner, now)?;
            if let Some(order) = n.order_id().and_then(|o| s.orders.get_mut(&o)) {
                order.confirm(now);
            }
            Ok(())
        })
    }

    async fn mark_failed(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.with(|s| notification(s, id)?.mark_failed(owner, error, next_attempt_at))
    }

    async fn enqueue(&self, n: &Standalone) -> Result<()> {
        self.with(|s| {
            if s.notifications.contains_key(&n.id) {
                return Err(Error::AlreadyExists(format!(
                    "notification {} already exists",
                    n.id
                )));
            }
            s.notifications.insert(n.id, (**n).clone());
            Ok(())
        })?;
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    async fn notification_for_order(&self, order_id: Uuid) -> Result<Option<Notification>> {
        self.with(|s| {
            Ok(s.notification_by_order
                .get(&order_id)
                .and_then(|id| s.notifications.get(id))
                .cloned())
        })
    }

    async fn list_notifications(
        &self,
        status: NotificationStatus,
        p: Page,
    ) -> Result<Vec<Notification>> {
        self.with(|s| {
            Ok(page(
                s.notifications
                    .values()
                    .filter(|n| n.status == status)
                    .cloned(),
                p,
                false,
            ))
        })
    }

    async fn notification_counts(&self) -> Result<NotificationCounts> {
        self.with(|s| {
            let mut c = NotificationCounts::default();
            for n in s.notifications.values() {
                match n.status {
                    NotificationStatus::Pending => c.pending += 1,
                    NotificationStatus::Sent => c.sent += 1,
                    NotificationStatus::Failed => c.failed += 1,
                    NotificationStatus::Cancelled => c.cancelled += 1,
                }
            }
            Ok(c)
        })
    }

    async fn retry_failed(&self, id: Option<Uuid>, now: DateTime<Utc>) -> Result<u64> {
        let count = self.with(|s| {
            let mut count = 0;
            for n in s.notifications.values_mut() {
                if id.is_none_or(|id| id == n.id) && n.retry(now) {
                    count += 1;
                }
            }
            Ok(count)
        })?;
        if count > 0 {
            self.signal.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(count)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }

    fn accept_handoff(&self, handoff: Handoff) -> bool {
        self.handoff.accept(handoff)
    }
}

#[async_trait]
impl Transfer for MemoryStore {
    async fn list_users(&self, p: Page) -> Result<Vec<User>> {
        self.with(|s| {
            let mut users: Vec<&User> = s.users.values().collect();
            users.sort_by(|a, b| a.email.cmp(&b.email));
            Ok(page(users.into_iter().cloned(), p, false))
        })
    }

    async fn import_product(&self, product: &Product) -> Result<()> {
        self.with(|s| {
            if s.products.contains_key(&product.id) {
                return Err(Error::AlreadyExists(format!(
                    "product {} already exists",
                    product.id
                )));
            }
            s.products.insert(product.id.clone(), product.clone());
            Ok(())
        })
    }

    async fn import_order(&self, order: &Order) -> Result<()> {
        self.with(|s| {
            if s.orders.contains_key(&order.id) {
                return Err(Error::AlreadyExists(format!(
                    "order {} already exists",
                    order.id
                )));
            }
            if let Some(key) = &order.idempotency_key {
                s.order_by_key
                    .insert((order.user_id, key.clone()), order.id);
            }
            s.orders.insert(order.id, order.clone());
            Ok(())
        })
    }

    async fn import_notification(&self, n: &Notification) -> Result<()> {
        self.with(|s| {
            if s.notifications.contains_key(&n.id) {
                return Err(Error::AlreadyExists(format!(
                    "notification {} already exists",
                    n.id
                )));
            }
            if let Some(order_id) = n.order_id() {
                s.notification_by_order.insert(order_id, n.id);
            }
            s.notifications.insert(n.id, n.clone());
            Ok(())
        })
    }

    async fn import_ledger_entry(&self, e: &LedgerEntry) -> Result<()> {
        self.with(|s| {
            let entries = s.ledger.entry(e.product_id.clone()).or_default();
            if entries.iter().any(|x| x.id == e.id) {
                return Err(Error::AlreadyExists(format!("ledger entry {}", e.id)));
            }
            // Kept in id order (entries are listed by id).
            let at = entries.partition_point(|x| x.id < e.id);
            entries.insert(at, e.clone());
            Ok(())
        })
    }

    async fn list_reservations(&self, p: Page) -> Result<Vec<Reservation>> {
        // Keyed by id (UUID v7): already in the list's order.
        self.with(|s| Ok(page(s.reservations.values().cloned(), p, false)))
    }

    async fn import_reservation(&self, r: &Reservation) -> Result<()> {
        self.with(|s| {
            if s.reservations.contains_key(&r.id) {
                return Err(Error::AlreadyExists(format!(
                    "reservation {} already exists",
                    r.id
                )));
            }
            s.reservations.insert(r.id, r.clone());
            Ok(())
        })
    }

    async fn count_records(&self) -> Result<crate::transfer::Counts> {
        self.with(|s| {
            Ok(crate::transfer::Counts {
                users: s.users.len() as u64,
                products: s.products.len() as u64,
                orders: s.orders.len() as u64,
                notifications: s.notifications.len() as u64,
                reservations: s.reservations.len() as u64,
                ledger_entries: s.ledger.values().map(Vec::len).sum::<usize>() as u64,
            })
        })
    }
}

#[async_trait]
impl Health for MemoryStore {
    async fn ping(&self) -> Result<()> {
        Ok(())
    }
}
