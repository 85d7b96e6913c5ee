//! The orders port: placing (stock, order, idempotency key and confirmation in one
//! transaction), listing ours and the original's, cancelling.

use super::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use firestore::errors::BackoffError;
use futures::FutureExt;
use uuid::Uuid;

/// The fields of an order that confirming it writes ([`ORDER_STATUS_FIELDS`]).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct OrderStatusDoc {
    pub(super) status: OrderStatus,
    pub(super) updated_at: std::time::SystemTime,
}

pub(super) fn idempotency_doc_id(user: Uuid, key: &str) -> String {
    doc_id(&format!("{user}:{key}"))
}

impl FirestoreStore {
    /// An order cursor as the place of its order in the merged list: (time, id).
    pub(super) async fn order_cursor(&self, page: &Page) -> Result<Option<(DateTime<Utc>, Uuid)>> {
        let Some(id) = page.after_order()? else {
            return Ok(None);
        };
        match self.get_order(id).await? {
            Some(order) => Ok(Some((order.created_at, order.id))),
            None => Err(Error::invalid(
                "after",
                format!("no order {id} to continue after"),
            )),
        }
    }

    /// A cursor after document `id` of `collection`, for a list ordered by document name.
    pub(super) fn after_doc(&self, collection: &str, id: &str) -> firestore::FirestoreQueryCursor {
        after_value(firestore::FirestoreReference(format!(
            "{}/{collection}/{id}",
            self.db.get_documents_path()
        )))
    }

    /// After an order's create was refused because the document exists: a commit whose answer
    /// was lost (a dropped connection, `UNAVAILABLE`) may have been applied, and its retry then
    /// finds its own order. That order, placed once, is the answer; anything else is the
    /// conflict it is.
    pub(super) async fn placed_before(&self, new: &NewOrder, reason: String) -> Result<Placed> {
        match self.get_order(new.id).await? {
            Some(order) if order.user_id == new.user_id && new.matches(&order) => {
                // Its confirmation is in the outbox: due, or leased here until the lease runs
                // out (the handover was lost with the answer).
                self.bump();
                Ok(Placed {
                    order,
                    replayed: false,
                })
            }
            _ => Err(Error::Conflict(reason)),
        }
    }
}

/// Queues an order and its confirmation (leased to the local dispatcher until `lease`'s time,
/// when given) in `tx`, both as new documents. Returns the confirmation as written.
pub(super) fn write_order(
    db: &FirestoreDb,
    tx: &mut Tx,
    cols: &Collections,
    order: &Order,
    new: &NewOrder,
    name_of: impl Fn(&ProductId) -> String,
    lease: Option<&(Arc<str>, DateTime<Utc>)>,
) -> TxResult<NotificationDoc> {
    let mut notification = new.notification(name_of);
    if let Some((owner, until)) = lease {
        notification.lease_to(owner, *until);
    }
    let mut notification = NotificationDoc::from(&notification);
    if let Some((_, until)) = lease {
        // While leased it is not due; when the lease runs out it is due again.
        notification.next_attempt_at = sys(*until);
    }
    write(
        db,
        tx,
        cols.orders.as_str(),
        order.id.to_string(),
        &OrderDoc::from_order(order),
        Precondition::Missing,
        None,
    )?;
    write(
        db,
        tx,
        cols.notifications.as_str(),
        new.notification_id.to_string(),
        &notification,
        Precondition::Missing,
        None,
    )?;
    super::events::queue_event(db, tx, cols, &new.placed_event())?;
    Ok(notification)
}

#[async_trait]
impl OrderStore for FirestoreStore {
    async fn place_order(&self, new: &NewOrder) -> Result<Placed> {
        let demand = new.lines.demand();
        let (_guards, starts) = self.stock_guards(demand.keys()).await;
        let order = new.order();
        // A free slot of the local dispatcher: the confirmation is written leased to it.
        let reservation = self.handoff.reserve();
        let lease = reservation.as_ref().map(|r| r.terms(new.now));
        let key_id = order
            .idempotency_key
            .as_deref()
            .map(|k| idempotency_doc_id(order.user_id, k));
        // Read by the call that begins the transaction: the products (in product id order),
        // and the key's record when a key was given.
        let mut first: Vec<String> = demand
            .keys()
            .map(|id| self.path(&self.cols.products, &doc_id(id.as_str())))
            .collect();
        first.extend(
            key_id
                .as_deref()
                .map(|k| self.path(&self.cols.idempotency_keys, k)),
        );
        let ctx = (self.cols.clone(), order, new.clone(), lease, key_id, starts);
        let placed = self
            .tx_reading(
                &first,
                ctx,
                move |db, tx, docs, (cols, order, new, lease, key_id, starts)| {
                    async move {
                        let demand = new.lines.demand();
                        let mut docs = docs.into_iter();
                        let products: Vec<Option<ProductDoc>> = demand
                            .keys()
                            .map(|_| docs.next().flatten().map(|d| parse::<ProductDoc>(&d)))
                            .map(Option::transpose)
                            .collect::<TxResult<_>>()?;
                        let seen = docs.next().flatten().map(|d| parse::<IdempotencyDoc>(&d));
                        // The key's record is read only when a key was given.
                        if let Some(seen) = seen.transpose()? {
                            let existing: Option<OrderDoc> =
                                read(&db, cols.orders.as_str(), seen.order_id.as_str()).await?;
                            let Some(existing) = existing else {
                                return abort(Error::other(
                                    "idempotency key points to a missing order",
                                ));
                            };
                            let existing = checked(existing.into_order())?;
                            if !new.matches(&existing) {
                                return abort(Error::IdempotencyKeyReused);
                            }
                            let replayed = Placed {
                                order: existing,
                                replayed: true,
                            };
                            return Ok((replayed, Vec::new(), None));
                        }
                        // Each product's units, from its shards or its document; a short one is
                        // noted and the rest still checked, so the refusal names every one.
                        let change =
                            Change::new(StockReason::Order, new.user_id, Some(new.id), new.now);
                        let taken = match take_stock(
                            &db,
                            tx,
                            &cols,
                            &demand,
                            products,
                            &starts,
                            Take::Sell,
                            &change,
                        )
                        .await?
                        {
                            Ok(taken) => taken,
                            // Nothing queued in this transaction is committed.
                            Err(short) => return abort(Error::OutOfStock { short }),
                        };
                        let Taken {
                            names,
                            shards: shard_counts,
                            ..
                        } = taken;
                        let notification = write_order(
                            &db,
                            tx,
                            &cols,
                            &order,
                            &new,
                            |id| names.get(id).cloned().unwrap_or_default(),
                            lease.as_ref(),
                        )?;
                        if let Some(key_id) = key_id {
                            write(
                                &db,
                                tx,
                                cols.idempotency_keys.as_str(),
                                key_id,
                                &IdempotencyDoc {
                                    order_id: order.id.to_string(),
                                    created_at: Some(sys(order.created_at)),
                                },
                                Precondition::Missing,
                                None,
                            )?;
                        }
                        let placed = Placed {
                            order,
                            replayed: false,
                        };
                        let handed = lease.is_some().then_some(notification);
                        Ok((placed, shard_counts, handed))
                    }
                    .boxed()
                },
            )
            .await;
        let ((placed, shards, handed), version) = match placed {
            Ok(done) => done,
            Err(Error::Conflict(reason)) => return self.placed_before(new, reason).await,
            Err(e) => return Err(e),
        };
        for (product, count) in shards {
            self.note_shards(&product, Some(count));
        }
        match (reservation, handed) {
            (Some(reservation), Some(doc)) => {
                self.leased
                    .remember(new.notification_id, doc.clone(), version);
                match doc.into_notification() {
                    Ok(n) => reservation.hand_over(n),
                    // Not expected (it was just built from the domain type); the lease runs
                    // out and it is claimed then.
                    Err(e) => tracing::warn!(error = %e, "a confirmation could not be handed over"),
                }
            }
            _ if !placed.replayed => self.bump(),
            _ => {}
        }
        Ok(placed)
    }

    async fn get_order(&self, id: Uuid) -> Result<Option<Order>> {
        self.get::<OrderDoc>(&self.cols.orders, &order_doc_id(id))
            .await?
            .map(OrderDoc::into_order)
            .transpose()
    }

    async fn list_orders_for_user(&self, user_id: Uuid, page: Page) -> Result<Vec<Order>> {
        // Our orders carry `user_id`; the original's carry only `buyer_email`. The page of the
        // merged list needs at most `offset + limit` of each.
        let wanted = page.offset.saturating_add(page.limit);
        let cursor = self.order_cursor(&page).await?;
        let ours: Vec<OrderDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.orders.as_str())
            .filter(|q| q.for_all([q.field("user_id").eq(user_id.to_string())]))
            .order(|o| o.fields([o.field("order_id").desc()]))
            .start_after(cursor.map(ours_after))
            .limit(wanted)
            .obj()
            .query()
            .await
            .map_err(map)?;
        let mut orders = ours
            .into_iter()
            .map(OrderDoc::into_order)
            .collect::<Result<Vec<_>>>()?;
        if let Some(user) = self.user_doc_by_id(user_id).await? {
            let mut emails = vec![user.doc_id().to_owned()];
            if let Some(e) = &user.email {
                emails.push(e.clone());
            }
            if let Ok(e) = Email::parse(user.doc_id()) {
                emails.push(e.to_string());
            }
            emails.sort();
            emails.dedup();
            let legacy: Vec<OrderDoc> = self
                .db
                .fluent()
                .select()
                .from(self.cols.orders.as_str())
                .filter(|q| q.for_all([q.field("buyer_email").is_in(emails.clone())]))
                .limit(LEGACY_ORDERS_PER_USER)
                .obj()
                .query()
                .await
                .map_err(map)?;
            for doc in legacy.into_iter().filter(OrderDoc::is_legacy) {
                orders.push(doc.into_order()?);
            }
        }
        // Newest first by (time, id); with a cursor, only what comes after it.
        orders.retain(|o| cursor.is_none_or(|c| (o.created_at, o.id) < c));
        orders.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.id)));
        Ok(orders
            .into_iter()
            .skip(page.offset as usize)
            .take(page.limit as usize)
            .collect())
    }

    async fn list_orders(&self, page: Page) -> Result<Vec<Order>> {
        // Ours by their time-ordered id; the original's (which a field order would drop) from
        // their index; merged newest first. The page needs at most `offset + limit` of each.
        let legacy = self.legacy_order_ids().await?;
        if legacy.is_empty() {
            // No orders of the original: a plain page of ours, after the cursor's id.
            let after = page.after_order()?.map(|id| after_value(id.to_string()));
            let docs: Vec<OrderDoc> = self
                .db
                .fluent()
                .select()
                .from(self.cols.orders.as_str())
                .order(|o| o.fields([o.field("order_id").desc()]))
                .start_after(after)
                .offset(page.offset)
                .limit(page.limit)
                .obj()
                .query()
                .await
                .map_err(map)?;
            return docs.into_iter().map(OrderDoc::into_order).collect();
        }
        let wanted = page.offset.saturating_add(page.limit);
        let cursor = self.order_cursor(&page).await?;
        let ours: Vec<OrderDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.orders.as_str())
            .order(|o| o.fields([o.field("order_id").desc()]))
            .start_after(cursor.map(ours_after))
            .limit(wanted)
            .obj()
            .query()
            .await
            .map_err(map)?;
        /// One entry of the merged list: an order of ours, read; one of the original's, by id.
        enum Entry {
            Ours(Box<Order>),
            Legacy(String),
        }
        let mut merged = ours
            .into_iter()
            .map(|d| {
                let o = d.into_order()?;
                Ok((o.created_at, Entry::Ours(Box::new(o))))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some((at, id)) = cursor {
            // Only what comes after the cursor, newest first.
            merged.retain(|(_, e)| match e {
                Entry::Ours(o) => (o.created_at, o.id) < (at, id),
                Entry::Legacy(_) => true,
            });
        }
        merged.extend(
            legacy
                .into_iter()
                .filter(|(at, _)| cursor.is_none_or(|(c, _)| *at < c))
                .take(wanted as usize)
                .map(|(at, id)| (at, Entry::Legacy(id))),
        );
        merged.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let mut page_orders = Vec::new();
        for (_, entry) in merged
            .into_iter()
            .skip(page.offset as usize)
            .take(page.limit as usize)
        {
            match entry {
                Entry::Ours(order) => page_orders.push(*order),
                // Deleted since the index was built: left out.
                Entry::Legacy(id) => {
                    if let Some(doc) = self.get::<OrderDoc>(&self.cols.orders, &id).await? {
                        page_orders.push(doc.into_order()?);
                    }
                }
            }
        }
        Ok(page_orders)
    }

    async fn cancel_order(&self, id: Uuid, actor: &str, now: DateTime<Utc>) -> Result<Order> {
        let doc_key = order_doc_id(id);
        let Some(current) = self.get_order(id).await? else {
            return Err(Error::NotFound(format!("order {id}")));
        };
        let (_guards, starts) = self
            .stock_guards(current.lines.iter().map(|l| &l.product_id))
            .await;
        let doc = self
            .tx(
                (
                    self.cols.clone(),
                    doc_key,
                    starts,
                    Change::new(StockReason::Cancel, actor, Some(id), now),
                    inventory_core::trace::current(),
                ),
                move |db, tx, (cols, doc_key, starts, change, trace)| {
                    async move {
                        let Some(mut order): Option<OrderDoc> =
                            read(&db, cols.orders.as_str(), doc_key.as_str()).await?
                        else {
                            return abort(Error::NotFound(format!("order {id}")));
                        };
                        // The domain's rule: units go back once, a cancelled order stays so.
                        let mut domain = checked(order.clone().into_order())?;
                        let returned = checked(domain.cancel(now))?;
                        // Its confirmation, read in the same transaction so that a concurrent
                        // `mark_sent` conflicts with this cancel. The original's orders have none.
                        let confirmation: Vec<NotificationDoc> = match &order.order_id {
                            Some(order_id) => db
                                .fluent()
                                .select()
                                .from(cols.notifications.as_str())
                                .filter(|q| q.for_all([q.field("order_id").eq(order_id.clone())]))
                                .limit(1)
                                .obj()
                                .query()
                                .await
                                .map_err(fs)?,
                            None => Vec::new(),
                        };
                        order.status = Some(domain.status);
                        order.updated_at = Some(sys(domain.updated_at));
                        let event =
                            Event::order(EventType::OrderCancelled, &domain, now, trace.as_ref());
                        super::events::queue_event(&db, tx, &cols, &event)?;
                        write(
                            &db,
                            tx,
                            cols.orders.as_str(),
                            doc_key.as_str(),
                            &order,
                            Precondition::Exists,
                            Some(&ORDER_STATUS_FIELDS),
                        )?;
                        // Every product's units back, in product id order, each with its entry.
                        for (id, units) in returned {
                            let key = doc_id(id.as_str());
                            let returned = i64::try_from(units).map_err(|e| {
                                BackoffError::permanent(TxError::Abort(Error::other(e)))
                            })?;
                            let product: Option<ProductDoc> =
                                read(&db, cols.products.as_str(), key.as_str()).await?;
                            if let Some(n) = product.as_ref().and_then(ProductDoc::shard_count) {
                                // Sharded: the units go back to one shard.
                                let shards = shards_of(&db, &cols, &key, n)?;
                                let k = starts.get(id.as_str()).copied().unwrap_or(0) % n;
                                let held = shards.read(k).await?;
                                let quantity = held.quantity + returned;
                                shards.write(tx, k, ShardDoc { quantity, ..held })?;
                                let entry = change.entry(&id, (returned, 0), None);
                                queue_entry(&db, tx, &cols, &entry)?;
                            } else if let Some(mut product) = product {
                                let before = (product.quantity, product.reserved);
                                open_ledger(&db, tx, &cols, &mut product, &id, before, now)?;
                                product.set_quantity(product.quantity + returned, now);
                                write_stock(&db, tx, &cols, &key, &product)?;
                                let after = Some((product.quantity, product.reserved));
                                queue_entry(
                                    &db,
                                    tx,
                                    &cols,
                                    &change.entry(&id, (returned, 0), after),
                                )?;
                            }
                        }
                        for doc in confirmation {
                            let mut n = checked(doc.into_notification())?;
                            if !n.cancel_with_order() {
                                continue;
                            }
                            let n = NotificationDoc::from(&n);
                            write(
                                &db,
                                tx,
                                cols.notifications.as_str(),
                                n.notification_id.clone(),
                                &n,
                                Precondition::Exists,
                                None,
                            )?;
                        }
                        Ok(order)
                    }
                    .boxed()
                },
            )
            .await?;
        doc.into_order()
    }
}
