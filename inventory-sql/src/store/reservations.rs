//! The holds port: each call one transaction of its own on the write pool. Rows are locked in
//! one order everywhere: the hold (or order) first, then its products by id, as placing locks
//! them, so no two transactions wait on each other in a cycle.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inventory_core::*;
use sqlx::QueryBuilder;
use uuid::Uuid;

use crate::error::{db, map};
use crate::rows::*;

use super::events::insert_events;
use super::ledger::{insert_entries, move_units};
use super::writer::Batch;
use super::*;

/// Reads (and on PostgreSQL locks, in id order) the products of `demand`: id -> (name, available).
macro_rules! lock_products {
    ($tx:expr, $d:ty, $demand:expr) => {{
        let mut q = QueryBuilder::<<$d as SqlDialect>::Db>::new(
            "SELECT id, name, quantity, low_stock_threshold FROM products WHERE id IN (",
        );
        let mut list = q.separated(", ");
        for id in $demand.keys() {
            list.push_bind(id.as_str());
        }
        q.push(")");
        q.push(<$d as SqlDialect>::LOCK_PRODUCTS);
        let rows: Vec<(String, String, i64, Option<i64>)> =
            q.build_query_as().fetch_all(&mut *$tx).await.map_err(db)?;
        let thresholds: BTreeMap<String, u64> = rows
            .iter()
            .filter_map(|(id, _, _, t)| Some((id.clone(), t.and_then(|t| u64::try_from(t).ok())?)))
            .collect();
        let stock = rows
            .into_iter()
            .map(|(id, name, quantity, _)| (id, (name, quantity)))
            .collect::<BTreeMap<String, (String, i64)>>();
        (stock, thresholds)
    }};
}

/// The hold `id`, locked on PostgreSQL until the transaction ends.
macro_rules! lock_reservation {
    ($tx:expr, $d:ty, $id:expr) => {{
        let mut q = QueryBuilder::<<$d as SqlDialect>::Db>::new(concat!(
            "SELECT ",
            reservation_columns!(),
            " FROM reservations WHERE id = "
        ));
        q.push_bind($id.to_string());
        q.push(<$d as SqlDialect>::LOCK_PRODUCTS);
        let row: Option<ReservationRow> = q
            .build_query_as()
            .fetch_optional(&mut *$tx)
            .await
            .map_err(db)?;
        match row {
            Some(row) => Reservation::try_from(row)?,
            None => return Err(Error::NotFound(format!("reservation {}", $id))),
        }
    }};
}

/// Inserts `hold` as it is (an existing id is `AlreadyExists`).
macro_rules! insert_hold {
    ($executor:expr, $hold:expr) => {{
        let hold: &Reservation = $hold;
        sqlx::query(concat!(
            "INSERT INTO reservations (",
            reservation_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(hold.id.to_string())
        .bind(hold.user_id.to_string())
        .bind(hold.buyer_email.as_str())
        .bind(to_json(Some(&hold.lines)))
        .bind(hold.status.as_str())
        .bind(ts(hold.expires_at))
        .bind(hold.order_id.map(|id| id.to_string()))
        .bind(ts(hold.created_at))
        .bind(ts(hold.updated_at))
        .execute($executor)
        .await
        .map_err(|e| map(e, &format!("reservation {} already exists", hold.id)))?;
    }};
}
pub(super) use insert_hold;

/// Writes a hold's status as changed by the domain.
macro_rules! write_status {
    ($tx:expr, $hold:expr) => {{
        sqlx::query(
            "UPDATE reservations SET status = $1, order_id = $2, updated_at = $3 WHERE id = $4",
        )
        .bind($hold.status.as_str())
        .bind($hold.order_id.map(|id| id.to_string()))
        .bind(ts($hold.updated_at))
        .bind($hold.id.to_string())
        .execute(&mut *$tx)
        .await
        .map_err(db)?;
    }};
}

#[async_trait]
impl ReservationStore for SqlStore {
    async fn reserve(&self, r: &NewReservation) -> Result<Reservation> {
        let hold = r.reservation();
        with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                let demand = r.lines.demand();
                let (stock, thresholds) = lock_products!(tx, D, demand);
                let demand = r.lines.check_stock(|id| {
                    stock
                        .get(id.as_str())
                        .map(|(_, left)| u64::try_from(*left).unwrap_or(0))
                })?;
                let (actor, reference) = (r.user_id.to_string(), Some(r.id.to_string()));
                move_units!(
                    tx,
                    D,
                    &demand,
                    StockMove::Hold,
                    StockReason::Hold,
                    actor.as_str(),
                    reference,
                    r.now
                );
                insert_hold!(&mut *tx, &hold);
                let mut events = vec![r.created_event()];
                events.extend(super::events::take_low_stock_events(
                    &demand,
                    &stock,
                    &thresholds,
                    r.now,
                    r.trace.as_ref(),
                ));
                insert_events!(&mut *tx, D, &events);
                tx.commit().await.map_err(db)?;
                Ok::<_, Error>(())
            }
            .await
        })?;
        Ok(hold)
    }

    async fn get_reservation(&self, id: Uuid) -> Result<Option<Reservation>> {
        let row: Option<ReservationRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                reservation_columns!(),
                " FROM reservations WHERE id = $1"
            ))
            .bind(id.to_string())
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(Reservation::try_from).transpose()
    }

    async fn release_reservation(&self, id: Uuid, now: DateTime<Utc>) -> Result<Reservation> {
        with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                let mut hold = lock_reservation!(tx, D, id);
                let back = hold.release(now)?;
                write_status!(tx, hold);
                let (actor, reference) = (hold.user_id.to_string(), Some(id.to_string()));
                move_units!(
                    tx,
                    D,
                    &back,
                    StockMove::Unhold,
                    StockReason::Release,
                    actor.as_str(),
                    reference,
                    now
                );
                let trace = inventory_core::trace::current();
                let kind = EventType::ReservationReleased;
                insert_events!(
                    &mut *tx,
                    D,
                    &[Event::reservation(kind, &hold, now, trace.as_ref())]
                );
                tx.commit().await.map_err(db)?;
                Ok::<_, Error>(hold)
            }
            .await
        })
    }

    async fn checkout_reservation(&self, id: Uuid, new: &NewOrder) -> Result<Placed> {
        let placed = with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                let mut hold = lock_reservation!(tx, D, id);
                let how = hold.checkout(new.id, new.now)?;
                let demand = hold.lines.demand();
                let (actor, reference) = (new.user_id.to_string(), Some(new.id.to_string()));
                let stock = match how {
                    Checkout::Done(order) => {
                        let row: Option<OrderRow> = sqlx::query_as(concat!(
                            "SELECT ",
                            order_columns!(),
                            " FROM orders WHERE id = $1"
                        ))
                        .bind(order.to_string())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db)?;
                        let order = row
                            .ok_or_else(|| Error::other("a checked-out hold's order is missing"))?
                            .try_into()?;
                        return Ok(Placed {
                            order,
                            replayed: true,
                        });
                    }
                    Checkout::FromHold => {
                        let (stock, _) = lock_products!(tx, D, demand);
                        // The held units are the order's: reserved goes down, available stays.
                        move_units!(
                            tx,
                            D,
                            &demand,
                            StockMove::Commit,
                            StockReason::Checkout,
                            actor.as_str(),
                            reference,
                            new.now
                        );
                        stock
                    }
                    Checkout::Retake => {
                        let (stock, thresholds) = lock_products!(tx, D, demand);
                        let lows = super::events::take_low_stock_events(
                            &demand,
                            &stock,
                            &thresholds,
                            new.now,
                            new.trace.as_ref(),
                        );
                        insert_events!(&mut *tx, D, &lows);
                        hold.lines
                            .check_stock(|pid| {
                                stock
                                    .get(pid.as_str())
                                    .map(|(_, left)| u64::try_from(*left).unwrap_or(0))
                            })
                            .map_err(|e| match e {
                                Error::OutOfStock { .. } => Error::ReservationExpired(id),
                                other => other,
                            })?;
                        move_units!(
                            tx,
                            D,
                            &demand,
                            StockMove::Take,
                            StockReason::Checkout,
                            actor.as_str(),
                            reference,
                            new.now
                        );
                        stock
                    }
                };
                write_status!(tx, hold);
                let kind = EventType::ReservationCheckedOut;
                let event = Event::reservation(kind, &hold, new.now, new.trace.as_ref());
                insert_events!(&mut *tx, D, &[event]);
                Batch::<D>::insert_orders(&mut tx, &[new], &stock).await?;
                if let Some(notify) = D::NOTIFY {
                    sqlx::query(notify).execute(&mut *tx).await.map_err(db)?;
                }
                tx.commit().await.map_err(db)?;
                Ok::<_, Error>(Placed {
                    order: new.order(),
                    replayed: false,
                })
            }
            .await
        })?;
        if !placed.replayed {
            bump(&self.signal);
        }
        Ok(placed)
    }

    async fn expire_reservations(&self, now: DateTime<Utc>, limit: u32) -> Result<u64> {
        // The sweep runs every second in every process: without a due hold it stays on the
        // read pool and never takes the write lock (SQLite) or a write transaction.
        let due: Option<(String,)> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(
                "SELECT id FROM reservations WHERE status = 'active' AND expires_at <= $1 LIMIT 1",
            )
            .bind(ts(now))
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        if due.is_none() {
            return Ok(0);
        }
        with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                let rows: Vec<ReservationRow> = sqlx::query_as(D::DUE_RESERVATIONS)
                    .bind(ts(now))
                    .bind(i64::from(limit))
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db)?;
                let mut back: BTreeMap<ProductId, u64> = BTreeMap::new();
                let mut holds = Vec::new();
                let mut events = Vec::new();
                for row in rows {
                    let mut hold = Reservation::try_from(row)?;
                    let Some(units) = hold.expire(now) else {
                        continue;
                    };
                    write_status!(tx, hold);
                    for (product, n) in &units {
                        *back.entry(product.clone()).or_default() += n;
                    }
                    holds.push((hold.id, units));
                    events.push(Event::reservation(EventType::ReservationExpired, &hold, now, None));
                }
                let expired = holds.len() as u64;
                if expired > 0 {
                    // One update per product, in id order (as every transaction locks them),
                    // and one entry per hold and product.
                    let mut entries = Vec::new();
                    for (product, total) in &back {
                        let total = i64::try_from(*total).map_err(Error::other)?;
                        let after: Option<(i64, i64)> = sqlx::query_as(
                            "UPDATE products SET quantity = quantity + $1, reserved = reserved - $1, \
                             updated_at = $2 WHERE id = $3 RETURNING quantity, reserved",
                        )
                        .bind(total)
                        .bind(ts(now))
                        .bind(product.as_str())
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(db)?;
                        let Some((mut quantity, mut reserved)) = after else {
                            continue;
                        };
                        (quantity, reserved) = (quantity - total, reserved + total);
                        for (id, units) in &holds {
                            let Some(&n) = units.get(product) else {
                                continue;
                            };
                            let n = i64::try_from(n).map_err(Error::other)?;
                            (quantity, reserved) = (quantity + n, reserved - n);
                            entries.push(LedgerEntry::new(
                                product.clone(),
                                n,
                                -n,
                                (quantity.max(0).unsigned_abs(), reserved.max(0).unsigned_abs()),
                                StockReason::Expire,
                                SYSTEM_ACTOR,
                                Some(id.to_string()),
                                now,
                            ));
                        }
                    }
                    insert_entries!(&mut *tx, D, &entries);
                    insert_events!(&mut *tx, D, &events);
                    tx.commit().await.map_err(db)?;
                } else {
                    tx.rollback().await.map_err(db)?;
                }
                Ok::<_, Error>(expired)
            }
            .await
        })
    }
}
