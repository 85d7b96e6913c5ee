//! The holds port.

use super::*;

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
            s.emit(r.created_event());
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
            let trace = crate::trace::current();
            s.emit(Event::reservation(
                EventType::ReservationReleased,
                &hold,
                now,
                trace.as_ref(),
            ));
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
            s.emit(Event::reservation(
                EventType::ReservationCheckedOut,
                &hold,
                new.now,
                new.trace.as_ref(),
            ));
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
                    if let Some(hold) = s.reservations.get(&id) {
                        let event =
                            Event::reservation(EventType::ReservationExpired, hold, now, None);
                        s.emit(event);
                    }
                    expired += 1;
                }
            }
            Ok(expired)
        })
    }
}
