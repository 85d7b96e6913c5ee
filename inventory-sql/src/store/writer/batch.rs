//! The statements of a group-committed batch, written once for both databases: reading the
//! products and keys, recording sends, claiming, and writing the decided orders.

use std::collections::{BTreeMap, HashMap};

use sqlx::QueryBuilder;

use super::*;

/// The batch's statements, written once for both databases.
pub(in crate::store) struct Batch<D>(std::marker::PhantomData<D>);

impl<D: SqlDialect> Batch<D>
where
    for<'c> &'c mut <D::Db as sqlx::Database>::Connection: sqlx::Executor<'c, Database = D::Db>,
    <D::Db as sqlx::Database>::Arguments: sqlx::IntoArguments<D::Db>,
    for<'q> &'q str: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    for<'q> String: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    for<'q> Option<String>: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    for<'q> Option<i64>: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    for<'q> i64: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    (String, String, i64): for<'r> sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
    (String, String, i64, i64, Option<i64>):
        for<'r> sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
    OrderRow: for<'r> sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
    (String, Option<String>): for<'r> sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
    NotificationRow: for<'r> sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
{
    /// The batch's products: id -> (name, stock), and id -> reserved units, read (and on
    /// PostgreSQL locked) in the transaction.
    #[allow(clippy::type_complexity)]
    pub(in crate::store) async fn read_stock(
        tx: &mut sqlx::Transaction<'static, D::Db>,
        orders: &[&NewOrder],
    ) -> Result<(
        BTreeMap<String, (String, i64)>,
        BTreeMap<String, i64>,
        BTreeMap<String, u64>,
    )> {
        let ids: std::collections::BTreeSet<&str> = orders
            .iter()
            .flat_map(|o| o.lines.iter().map(|l| l.product_id.as_str()))
            .collect();
        let mut q = QueryBuilder::<D::Db>::new(
            "SELECT id, name, quantity, reserved, low_stock_threshold FROM products WHERE id IN (",
        );
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id);
        }
        q.push(")");
        q.push(D::LOCK_PRODUCTS);
        let rows: Vec<(String, String, i64, i64, Option<i64>)> =
            q.build_query_as().fetch_all(&mut **tx).await.map_err(db)?;
        let reserved = rows
            .iter()
            .map(|(id, _, _, r, _)| (id.clone(), *r))
            .collect();
        let thresholds = rows
            .iter()
            .filter_map(|(id, _, _, _, t)| Some((id.clone(), u64::try_from((*t)?).ok()?)))
            .collect();
        let stock = rows
            .into_iter()
            .map(|(id, name, quantity, _, _)| (id, (name, quantity)))
            .collect();
        Ok((stock, reserved, thresholds))
    }

    /// The earlier orders holding the batch's idempotency keys, by (user, key). No query when
    /// no order of the batch has a key.
    pub(in crate::store) async fn read_keys(
        tx: &mut sqlx::Transaction<'static, D::Db>,
        orders: &[&NewOrder],
    ) -> Result<Keys> {
        let keyed: Vec<(String, &str)> = orders
            .iter()
            .filter_map(|o| Some((o.user_id.to_string(), o.idempotency_key.as_ref()?.as_str())))
            .collect();
        if keyed.is_empty() {
            return Ok(Keys::new());
        }
        // Both columns of the unique (user_id, idempotency_key) index, so the database seeks
        // each pair instead of reading every keyed order (the cross product of the two lists
        // may find an extra row; only exact pairs are looked up below).
        let mut q = QueryBuilder::<D::Db>::new(concat!(
            "SELECT ",
            order_columns!(),
            " FROM orders WHERE user_id IN ("
        ));
        let mut list = q.separated(", ");
        for (user, _) in &keyed {
            list.push_bind(user.clone());
        }
        q.push(") AND idempotency_key IN (");
        let mut list = q.separated(", ");
        for (_, key) in &keyed {
            list.push_bind(*key);
        }
        q.push(")");
        let rows: Vec<OrderRow> = q.build_query_as().fetch_all(&mut **tx).await.map_err(db)?;
        let mut keys = Keys::new();
        for row in rows {
            let order = Order::try_from(row)?;
            if let Some(key) = order.idempotency_key.clone() {
                keys.insert((order.user_id, key), order);
            }
        }
        Ok(keys)
    }

    /// Records delivered notifications as sent and confirms their orders, two statements
    /// for all of them. A mark whose lease is no longer its marker's writes nothing and is
    /// false.
    pub(in crate::store) async fn mark_sent(
        tx: &mut sqlx::Transaction<'static, D::Db>,
        marks: &[&Mark],
    ) -> Result<Vec<bool>> {
        if marks.is_empty() {
            return Ok(Vec::new());
        }
        let mut q = QueryBuilder::<D::Db>::new("WITH m (id, owner, at) AS (");
        q.push_values(marks, |mut row, mark| {
            row.push_bind(mark.id.to_string())
                .push_bind(mark.owner.as_str())
                .push_bind(ts(mark.now));
        });
        q.push(
            ") UPDATE notifications SET status = 'sent', \
             sent_at = (SELECT m.at FROM m WHERE m.id = notifications.id), \
             lease_owner = NULL, lease_until = NULL, last_error = NULL \
             WHERE status = 'pending' AND id IN (SELECT id FROM m) \
             AND lease_owner = (SELECT m.owner FROM m WHERE m.id = notifications.id) \
             RETURNING id, order_id",
        );
        let sent: Vec<(String, Option<String>)> =
            q.build_query_as().fetch_all(&mut **tx).await.map_err(db)?;
        // An order confirmation confirms its order; other messages have none.
        let at: HashMap<String, i64> = marks
            .iter()
            .map(|m| (m.id.to_string(), ts(m.now)))
            .collect();
        let confirmed: Vec<(&str, i64)> = sent
            .iter()
            .filter_map(|(id, order)| Some((order.as_deref()?, *at.get(id)?)))
            .collect();
        if !confirmed.is_empty() {
            let mut q = QueryBuilder::<D::Db>::new("WITH c (id, at) AS (");
            q.push_values(&confirmed, |mut row, (order, at)| {
                row.push_bind(*order).push_bind(*at);
            });
            q.push(
                ") UPDATE orders SET status = 'confirmed', \
                 updated_at = (SELECT c.at FROM c WHERE c.id = orders.id) \
                 WHERE status = 'pending' AND id IN (SELECT id FROM c)",
            );
            q.build().execute(&mut **tx).await.map_err(db)?;
            let events = confirmed
                .iter()
                .map(|(order, at)| {
                    let order = Uuid::parse_str(order).map_err(Error::other)?;
                    Ok(Event::order_confirmed(order, from_ts(*at)?))
                })
                .collect::<Result<Vec<_>>>()?;
            super::events::insert_events!(&mut **tx, D, &events);
        }
        let sent: std::collections::HashSet<&str> =
            sent.iter().map(|(id, _)| id.as_str()).collect();
        Ok(marks
            .iter()
            .map(|m| sent.contains(m.id.to_string().as_str()))
            .collect())
    }

    /// Leases due notifications (oldest due first) to a dispatcher.
    pub(in crate::store) async fn claim(
        tx: &mut sqlx::Transaction<'static, D::Db>,
        claim: &Claim,
    ) -> Result<Vec<Notification>> {
        let rows: Vec<NotificationRow> = sqlx::query_as(D::CLAIM)
            .bind(claim.owner.as_str())
            .bind(ts(claim.until))
            .bind(ts(claim.now))
            .bind(i64::from(claim.limit))
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        let mut claimed: Vec<Notification> = all(rows)?;
        claimed.sort_by_key(|n| (n.next_attempt_at, n.id));
        Ok(claimed)
    }

    /// The stock of every product that sold, as it stands after the batch (the rows are ours
    /// until commit: the write lock on SQLite, row locks on PostgreSQL), with the time of its
    /// last order: pushes `v (id, quantity, updated_at) AS (VALUES ...)` for a `WITH`.
    fn push_stock(
        q: &mut QueryBuilder<D::Db>,
        placed: &[&NewOrder],
        stock: &BTreeMap<String, (String, i64)>,
    ) {
        let mut touched: BTreeMap<&str, i64> = BTreeMap::new();
        for new in placed {
            for line in &new.lines {
                touched
                    .entry(line.product_id.as_str())
                    .and_modify(|t| *t = (*t).max(ts(new.now)))
                    .or_insert(ts(new.now));
            }
        }
        q.push("v (id, quantity, updated_at) AS (");
        q.push_values(touched, |mut row, (id, at)| {
            let left = stock.get(id).map(|(_, left)| *left).unwrap_or_default();
            row.push_bind(id).push_bind(left).push_bind(at);
        });
        q.push(")");
    }

    /// Pushes the `INSERT` of placed orders.
    fn push_orders(q: &mut QueryBuilder<D::Db>, placed: &[&NewOrder]) {
        q.push(
            "INSERT INTO orders (id, user_id, buyer_email, product_id, quantity, status, idempotency_key, created_at, updated_at, lines) ",
        );
        q.push_values(placed, |mut row, new| {
            let first = new.lines.first();
            row.push_bind(new.id.to_string())
                .push_bind(new.user_id.to_string())
                .push_bind(new.buyer_email.to_string())
                .push_bind(first.product_id.to_string())
                .push_bind(i64::from(first.quantity))
                .push("'pending'")
                .push_bind(new.idempotency_key.as_ref().map(|k| k.as_str().to_owned()))
                .push_bind(ts(new.now))
                .push_bind(ts(new.now))
                .push_bind(to_json(new.lines.stored_list()));
        });
    }

    /// Pushes the `INSERT` of placed orders' confirmations, each naming its lines' products
    /// from `stock` (id -> (name, available)) as they are now.
    fn push_confirmations(
        q: &mut QueryBuilder<D::Db>,
        placed: &[&NewOrder],
        stock: &BTreeMap<String, (String, i64)>,
    ) {
        q.push(
            "INSERT INTO notifications (id, order_id, recipient, product_id, product_name, quantity, status, attempts, next_attempt_at, created_at, lines) ",
        );
        q.push_values(placed, |mut row, new| {
            let n = new.notification(|id| {
                stock
                    .get(id.as_str())
                    .map(|(name, _)| name.clone())
                    .unwrap_or_default()
            });
            let m = MessageParts::from(&n.message);
            row.push_bind(new.notification_id.to_string())
                .push_bind(new.id.to_string())
                .push_bind(new.buyer_email.to_string())
                .push_bind(m.product_id)
                .push_bind(m.product_name)
                .push_bind(m.quantity)
                .push("'pending'")
                .push("0")
                .push_bind(ts(new.now))
                .push_bind(ts(new.now))
                .push_bind(to_json(m.lines.as_deref()));
        });
    }

    /// Writes a decided batch: the new stock of its products, its orders, their
    /// confirmations, ledger entries and events (`placed` events and the batch's `stock.low`
    /// ones), and the outbox signal. PostgreSQL: all of it in one statement, the batch's
    /// only round trip between reading the stock and the commit. SQLite: a statement per
    /// table (in process, no round trips to save).
    pub(in crate::store) async fn write_orders(
        tx: &mut sqlx::Transaction<'static, D::Db>,
        placed: &[&NewOrder],
        stock: &BTreeMap<String, (String, i64)>,
        entries: &[LedgerEntry],
        lows: &[Event],
    ) -> Result<()> {
        let mut events: Vec<Event> = placed.iter().map(|new| new.placed_event()).collect();
        events.extend_from_slice(lows);
        let mut q = QueryBuilder::<D::Db>::new("WITH ");
        Self::push_stock(&mut q, placed, stock);
        let stock_update = " UPDATE products SET quantity = (SELECT v.quantity FROM v WHERE v.id = products.id), \
             updated_at = (SELECT v.updated_at FROM v WHERE v.id = products.id) \
             WHERE id IN (SELECT id FROM v)";
        if D::WRITES_IN_WITH {
            q.push(", s AS (");
            q.push(stock_update);
            q.push("), o AS (");
            Self::push_orders(&mut q, placed);
            q.push("), n AS (");
            Self::push_confirmations(&mut q, placed, stock);
            if !entries.is_empty() {
                q.push("), l AS (");
                super::ledger::push_entries!(q, entries);
            }
            q.push("), e AS (");
            super::events::push_events!(q, &events);
            q.push(") ");
            q.push(D::NOTIFY.unwrap_or("SELECT 1"));
            q.build()
                .execute(&mut **tx)
                .await
                .map_err(|e| map(e, KEY_TAKEN))?;
            return Ok(());
        }
        q.push(stock_update);
        q.build().execute(&mut **tx).await.map_err(db)?;
        Self::insert_orders(tx, placed, stock).await?;
        super::ledger::insert_entries!(&mut **tx, D, entries);
        super::events::insert_events!(&mut **tx, D, lows);
        if let Some(notify) = D::NOTIFY {
            sqlx::query(notify).execute(&mut **tx).await.map_err(db)?;
        }
        Ok(())
    }

    /// Writes placed orders, their confirmations and `order.placed` events, one statement
    /// each, naming each line's product from `stock` (id -> (name, available)).
    pub(in crate::store) async fn insert_orders(
        tx: &mut sqlx::Transaction<'static, D::Db>,
        placed: &[&NewOrder],
        stock: &BTreeMap<String, (String, i64)>,
    ) -> Result<()> {
        let mut q = QueryBuilder::<D::Db>::new("");
        Self::push_orders(&mut q, placed);
        q.build()
            .execute(&mut **tx)
            .await
            .map_err(|e| map(e, KEY_TAKEN))?;
        let mut q = QueryBuilder::<D::Db>::new("");
        Self::push_confirmations(&mut q, placed, stock);
        q.build().execute(&mut **tx).await.map_err(db)?;
        let events: Vec<Event> = placed.iter().map(|new| new.placed_event()).collect();
        super::events::insert_events!(&mut **tx, D, &events);
        Ok(())
    }
}
