//! The orders port: placing, listing, cancelling.

use super::*;

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
            let trace = crate::trace::current();
            s.emit(Event::order(
                EventType::OrderCancelled,
                &order,
                now,
                trace.as_ref(),
            ));
            Ok(order)
        })
    }
}
