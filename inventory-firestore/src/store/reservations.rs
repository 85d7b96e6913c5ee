//! The holds port. A hold takes its units as an order does (from the product document, or
//! from the shards of a sharded product, in the same kind of transaction) but moves them to
//! reserved stock: the product document's `reserved`, or the `reserved` of the shards that gave
//! them. The hold document (`Reservations/{id}`) records where each unit came from, so that a
//! release, an expiry or a checkout ends exactly that claim. An active hold carries `due_at`
//! (its `expires_at`): the sweep finds due holds by that one field (a single-field index, which
//! Firestore keeps by default); every other status has none.

use std::time::SystemTime;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use inventory_core::*;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::orders::write_order;
use super::products::{Change, TakenDoc, end_hold, take_stock};
use super::*;

/// A hold as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ReservationDoc {
    pub(crate) reservation_id: String,
    pub(crate) user_id: String,
    pub(crate) buyer_email: String,
    pub(crate) lines: Vec<OrderLine>,
    pub(crate) status: ReservationStatus,
    pub(crate) expires_at: SystemTime,
    /// `expires_at` while active, absent otherwise: what the sweep's query ranges over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) due_at: Option<SystemTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) order_id: Option<String>,
    pub(crate) created_at: SystemTime,
    pub(crate) updated_at: SystemTime,
    /// Where the held units came from (empty once they went back or became an order's).
    #[serde(default)]
    pub(crate) taken: Vec<TakenDoc>,
}

impl ReservationDoc {
    /// The document of `r`, holding the units `taken` while active.
    pub(crate) fn new(r: &Reservation, taken: Vec<TakenDoc>) -> Self {
        let active = r.status == ReservationStatus::Active;
        ReservationDoc {
            reservation_id: r.id.to_string(),
            user_id: r.user_id.to_string(),
            buyer_email: r.buyer_email.to_string(),
            lines: r.lines.iter().cloned().collect(),
            status: r.status,
            expires_at: sys(r.expires_at),
            due_at: active.then(|| sys(r.expires_at)),
            order_id: r.order_id.map(|id| id.to_string()),
            created_at: sys(r.created_at),
            updated_at: sys(r.updated_at),
            taken: if active { taken } else { Vec::new() },
        }
    }

    pub(crate) fn into_reservation(self) -> Result<Reservation> {
        let id = |s: &str| Uuid::parse_str(s).map_err(|e| Error::other(format!("stored id: {e}")));
        Ok(Reservation {
            id: id(&self.reservation_id)?,
            user_id: id(&self.user_id)?,
            buyer_email: Email::parse(&self.buyer_email)
                .map_err(|e| Error::other(format!("stored email: {e}")))?,
            lines: Lines::new(self.lines)
                .map_err(|e| Error::other(format!("stored lines: {e}")))?,
            status: self.status,
            expires_at: utc(self.expires_at),
            order_id: self.order_id.as_deref().map(id).transpose()?,
            created_at: utc(self.created_at),
            updated_at: utc(self.updated_at),
        })
    }
}

impl FirestoreStore {
    /// Reads hold `id` in `tx` (the document and the domain value).
    async fn read_hold(
        db: &FirestoreDb,
        cols: &Collections,
        id: Uuid,
    ) -> TxResult<(ReservationDoc, Reservation)> {
        let Some(doc): Option<ReservationDoc> =
            read(db, cols.reservations.as_str(), id.to_string()).await?
        else {
            return abort(Error::NotFound(format!("reservation {id}")));
        };
        let hold = checked(doc.clone().into_reservation())?;
        Ok((doc, hold))
    }

    /// Closes an active hold (released or expired, as `close` decides; `reason` says which)
    /// and returns its units to available stock, in one transaction; `None` when `close` left
    /// it as it was.
    async fn close_hold<F>(
        &self,
        id: Uuid,
        now: DateTime<Utc>,
        reason: StockReason,
        close: F,
    ) -> Result<Option<Reservation>>
    where
        F: Fn(&mut Reservation) -> Result<bool> + Clone + Send + Sync + 'static,
    {
        // The products' in-process locks, so this process's orders wait here, not in Firestore.
        let Some(current) = self.get_reservation(id).await? else {
            return Err(Error::NotFound(format!("reservation {id}")));
        };
        let _guards = self
            .stock_guards(current.lines.iter().map(|l| &l.product_id))
            .await;
        let trace = inventory_core::trace::current();
        self.tx(
            (self.cols.clone(), close, trace),
            move |db, tx, (cols, close, trace)| {
                async move {
                    let (doc, mut hold) = Self::read_hold(&db, &cols, id).await?;
                    if !checked(close(&mut hold))? {
                        return Ok(None);
                    }
                    // A release is its buyer's (in its request's trace); an expiry the sweep's.
                    let (actor, kind, trace) = match reason {
                        StockReason::Release => (
                            hold.user_id.to_string(),
                            EventType::ReservationReleased,
                            trace,
                        ),
                        _ => (SYSTEM_ACTOR.to_owned(), EventType::ReservationExpired, None),
                    };
                    let event = Event::reservation(kind, &hold, now, trace.as_ref());
                    super::events::queue_event(&db, tx, &cols, &event)?;
                    let change = Change::new(reason, actor, Some(id), now);
                    end_hold(&db, tx, &cols, &doc.taken, true, &change).await?;
                    let doc = ReservationDoc::new(&hold, Vec::new());
                    write(
                        &db,
                        tx,
                        cols.reservations.as_str(),
                        id.to_string(),
                        &doc,
                        Precondition::Exists,
                        None,
                    )?;
                    Ok(Some(hold))
                }
                .boxed()
            },
        )
        .await
    }
}

#[async_trait]
impl ReservationStore for FirestoreStore {
    async fn reserve(&self, new: &NewReservation) -> Result<Reservation> {
        let demand = new.lines.demand();
        let (_guards, starts) = self.stock_guards(demand.keys()).await;
        let first: Vec<String> = demand
            .keys()
            .map(|id| self.path(&self.cols.products, &doc_id(id.as_str())))
            .collect();
        let hold = new.reservation();
        let ctx = (self.cols.clone(), hold.clone(), starts, new.created_event());
        let done = self
            .tx_reading(
                &first,
                ctx,
                move |db, tx, docs, (cols, hold, starts, event)| {
                    async move {
                        let demand = hold.lines.demand();
                        let products = docs
                            .iter()
                            .map(|d| d.as_ref().map(parse::<ProductDoc>).transpose())
                            .collect::<TxResult<Vec<_>>>()?;
                        let taken = match take_stock(
                            &db,
                            tx,
                            &cols,
                            &demand,
                            products,
                            &starts,
                            Take::Hold,
                            &Change::new(
                                StockReason::Hold,
                                hold.user_id,
                                Some(hold.id),
                                hold.created_at,
                            ),
                        )
                        .await?
                        {
                            Ok(taken) => taken,
                            Err(short) => return abort(Error::OutOfStock { short }),
                        };
                        let doc = ReservationDoc::new(&hold, taken.from);
                        super::events::queue_event(&db, tx, &cols, &event)?;
                        write(
                            &db,
                            tx,
                            cols.reservations.as_str(),
                            hold.id.to_string(),
                            &doc,
                            Precondition::Missing,
                            None,
                        )?;
                        Ok(taken.shards)
                    }
                    .boxed()
                },
            )
            .await;
        match done {
            Ok((shards, _)) => {
                for (product, count) in shards {
                    self.note_shards(&product, Some(count));
                }
                Ok(hold)
            }
            // A commit whose answer was lost and which was retried finds its own hold.
            Err(Error::Conflict(reason)) => match self.get_reservation(new.id).await? {
                Some(found) if found.user_id == new.user_id && found.lines == new.lines => {
                    Ok(found)
                }
                _ => Err(Error::Conflict(reason)),
            },
            Err(e) => Err(e),
        }
    }

    async fn get_reservation(&self, id: Uuid) -> Result<Option<Reservation>> {
        self.get::<ReservationDoc>(&self.cols.reservations, &id.to_string())
            .await?
            .map(ReservationDoc::into_reservation)
            .transpose()
    }

    async fn release_reservation(&self, id: Uuid, now: DateTime<Utc>) -> Result<Reservation> {
        let released = self
            .close_hold(id, now, StockReason::Release, move |hold| {
                hold.release(now).map(|_| true)
            })
            .await?;
        released.ok_or_else(|| Error::other("a release changed nothing"))
    }

    async fn checkout_reservation(&self, id: Uuid, order: &NewOrder) -> Result<Placed> {
        let Some(current) = self.get_reservation(id).await? else {
            return Err(Error::NotFound(format!("reservation {id}")));
        };
        let (_guards, starts) = self
            .stock_guards(current.lines.iter().map(|l| &l.product_id))
            .await;
        let ctx = (self.cols.clone(), order.clone(), starts);
        let placed = self
            .tx(ctx, move |db, tx, (cols, new, starts)| {
                async move {
                    let (doc, mut hold) = Self::read_hold(&db, &cols, id).await?;
                    let how = checked(hold.checkout(new.id, new.now))?;
                    let names = match how {
                        Checkout::Done(order_id) => {
                            let existing: Option<OrderDoc> =
                                read(&db, cols.orders.as_str(), order_id.to_string()).await?;
                            let Some(existing) = existing else {
                                return abort(Error::other(format!(
                                    "reservation {id} names a missing order"
                                )));
                            };
                            let order = checked(existing.into_order())?;
                            return Ok(Placed {
                                order,
                                replayed: true,
                            });
                        }
                        // The held units become the order's.
                        Checkout::FromHold => {
                            let change = Change::new(
                                StockReason::Checkout,
                                new.user_id,
                                Some(new.id),
                                new.now,
                            );
                            end_hold(&db, tx, &cols, &doc.taken, false, &change).await?
                        }
                        // Expired: the units are taken again, all or nothing.
                        Checkout::Retake => {
                            let demand = hold.lines.demand();
                            let mut products = Vec::with_capacity(demand.len());
                            for product in demand.keys() {
                                products.push(
                                    read(&db, cols.products.as_str(), doc_id(product.as_str()))
                                        .await?,
                                );
                            }
                            match take_stock(
                                &db,
                                tx,
                                &cols,
                                &demand,
                                products,
                                &starts,
                                Take::Sell,
                                &Change::new(
                                    StockReason::Checkout,
                                    new.user_id,
                                    Some(new.id),
                                    new.now,
                                ),
                            )
                            .await?
                            {
                                Ok(taken) => taken.names,
                                Err(_) => return abort(Error::ReservationExpired(id)),
                            }
                        }
                    };
                    let order = new.order();
                    let kind = EventType::ReservationCheckedOut;
                    let event = Event::reservation(kind, &hold, new.now, new.trace.as_ref());
                    super::events::queue_event(&db, tx, &cols, &event)?;
                    write_order(
                        &db,
                        tx,
                        &cols,
                        &order,
                        &new,
                        |p| names.get(p).cloned().unwrap_or_default(),
                        None,
                    )?;
                    let doc = ReservationDoc::new(&hold, Vec::new());
                    write(
                        &db,
                        tx,
                        cols.reservations.as_str(),
                        id.to_string(),
                        &doc,
                        Precondition::Exists,
                        None,
                    )?;
                    Ok(Placed {
                        order,
                        replayed: false,
                    })
                }
                .boxed()
            })
            .await?;
        if !placed.replayed {
            // A new confirmation is due: wake the dispatchers.
            self.bump();
        }
        Ok(placed)
    }

    async fn expire_reservations(&self, now: DateTime<Utc>, limit: u32) -> Result<u64> {
        let due: Vec<ReservationDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.reservations.as_str())
            .filter(|q| q.for_all([q.field("due_at").less_than_or_equal(sys(now))]))
            .order(|o| o.fields([o.field("due_at").asc()]))
            .limit(limit)
            .obj()
            .query()
            .await
            .map_err(map)?;
        let mut expired = 0;
        for doc in due {
            let id = Uuid::parse_str(&doc.reservation_id).map_err(Error::other)?;
            // Another sweeper may have expired it (or its buyer released or checked it out)
            // since the query: then nothing changes.
            let closed = self
                .close_hold(id, now, StockReason::Expire, move |hold| {
                    Ok(hold.expire(now).is_some())
                })
                .await?;
            expired += u64::from(closed.is_some());
        }
        Ok(expired)
    }
}
