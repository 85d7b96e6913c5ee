//! Placing orders: group commit.
//!
//! Every `place_order` call of a store hands its order to one writer task. The writer takes
//! every order waiting at that moment (up to [`MAX_BATCH`]) into one transaction: it reads the
//! products (and the idempotency keys given) once, decides each order in arrival order (first
//! come, first served) and writes the stock, the orders and their confirmations with one
//! statement each, then commits once. Each order is still all-or-nothing on its own: an order
//! that is short, names a missing product or replays a key is answered without writing, and the
//! others go on. The commit, the one `fsync`, is shared by the whole batch, which is what makes
//! `synchronous=FULL` affordable on SQLite.
//!
//! Should the batch's transaction fail (a full disk, a key taken by another process meanwhile,
//! a lost connection), nothing of it was written and each of its orders is placed again on its
//! own, so one order's failure is never another's.

use std::collections::{BTreeMap, HashMap};

use sqlx::QueryBuilder;
use tokio::sync::{mpsc, oneshot};

use super::*;

/// The most orders one transaction takes. Bounds the statement size (about 2,300 bound
/// parameters at most) and the time a batch holds the write lock.
pub(super) const MAX_BATCH: usize = 256;

/// One `place_order` call waiting for the writer.
pub(super) struct Job {
    new: NewOrder,
    reply: oneshot::Sender<Result<Placed>>,
}

/// The sending side kept by the store; dropping it ends the writer.
pub(super) struct OrderQueue {
    jobs: mpsc::Sender<Job>,
    _writer: AbortOnDrop,
}

impl OrderQueue {
    /// Starts the writer task for this backend.
    pub(super) fn start(backend: Backend, signal: watch::Sender<u64>) -> Self {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        let writer = OrderWriter { backend, signal };
        OrderQueue {
            jobs,
            _writer: AbortOnDrop(tokio::spawn(writer.run(rx))),
        }
    }

    /// Places one order through the writer. A caller that gives up after handing its order
    /// over does not take it back: the order is placed (or not) as a whole either way, and a
    /// retry with the same idempotency key finds it.
    pub(super) async fn place(&self, new: &NewOrder) -> Result<Placed> {
        let (reply, answer) = oneshot::channel();
        let job = Job {
            new: new.clone(),
            reply,
        };
        let closed = || Error::Unavailable("the store's order writer has stopped".into());
        self.jobs.send(job).await.map_err(|_| closed())?;
        answer.await.unwrap_or_else(|_| Err(closed()))
    }
}

/// The writer task's handle on the database.
struct OrderWriter {
    backend: Backend,
    signal: watch::Sender<u64>,
}

/// Earlier orders by (user, idempotency key).
type Keys = HashMap<(Uuid, String), Order>;

impl OrderWriter {
    async fn run(self, mut rx: mpsc::Receiver<Job>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        while rx.recv_many(&mut jobs, MAX_BATCH).await > 0 {
            // A caller that went away before its turn never reached the database: skip it.
            jobs.retain(|job| !job.reply.is_closed());
            self.place_batch(std::mem::take(&mut jobs)).await;
        }
    }

    async fn place_batch(&self, jobs: Vec<Job>) {
        if jobs.is_empty() {
            return;
        }
        let orders: Vec<&NewOrder> = jobs.iter().map(|j| &j.new).collect();
        match self.try_batch(&orders).await {
            Ok(outcomes) => {
                if outcomes.iter().any(|o| matches!(o, Ok(p) if !p.replayed)) {
                    bump(&self.signal);
                }
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) if jobs.len() == 1 && !matches!(e, Error::AlreadyExists(_)) => {
                let job = jobs.into_iter().next().expect("one job");
                let _ = job.reply.send(Err(e));
            }
            Err(e) => {
                tracing::debug!(error = %e, orders = jobs.len(), "batch failed; placing its orders one by one");
                for job in jobs {
                    let outcome = self.place_one(&job.new).await;
                    let _ = job.reply.send(outcome);
                }
            }
        }
    }

    /// One transaction for the whole batch. `Err` means nothing was written; `Ok` holds each
    /// order's own outcome, in order.
    async fn try_batch(&self, orders: &[&NewOrder]) -> Result<Vec<Result<Placed>>> {
        with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                let mut stock = Batch::<D>::read_stock(&mut tx, orders).await?;
                let mut keys = Batch::<D>::read_keys(&mut tx, orders).await?;
                let (outcomes, placed) = decide(orders, &mut stock, &mut keys);
                if placed.is_empty() {
                    // Nothing to write: end the transaction without a commit's fsync.
                    tx.rollback().await.map_err(db)?;
                    return Ok(outcomes);
                }
                Batch::<D>::write_batch(&mut tx, &placed, &stock).await?;
                if let Some(notify) = D::NOTIFY {
                    sqlx::query(notify).execute(&mut *tx).await.map_err(db)?;
                }
                tx.commit().await.map_err(db)?;
                Ok(outcomes)
            }
            .await
        })
    }

    /// Places one order in a transaction of its own: the path taken when a batch failed.
    async fn place_one(&self, new: &NewOrder) -> Result<Placed> {
        let mut outcome = self.try_batch(&[new]).await;
        if matches!(outcome, Err(Error::AlreadyExists(_))) && new.idempotency_key.is_some() {
            // Another process placed an order with this key meanwhile: it is the answer.
            outcome = self.try_batch(&[new]).await;
        }
        let placed = outcome?.pop().expect("one outcome per order")?;
        if !placed.replayed {
            bump(&self.signal);
        }
        Ok(placed)
    }
}

/// Decides each order in arrival order against the stock and keys read in the transaction,
/// taking the stock of the ones placed. Returns every order's outcome and the orders to write
/// (with their product's name).
fn decide<'a>(
    orders: &[&'a NewOrder],
    stock: &mut BTreeMap<String, (String, i64)>,
    keys: &mut Keys,
) -> (Vec<Result<Placed>>, Vec<(&'a NewOrder, String)>) {
    let mut outcomes = Vec::with_capacity(orders.len());
    let mut placed = Vec::new();
    for &new in orders {
        let key = new
            .idempotency_key
            .as_ref()
            .map(|k| (new.user_id, k.as_str().to_owned()));
        if let Some(earlier) = key.as_ref().and_then(|k| keys.get(k)) {
            outcomes.push(if new.matches(earlier) {
                Ok(Placed {
                    order: earlier.clone(),
                    replayed: true,
                })
            } else {
                Err(Error::IdempotencyKeyReused)
            });
            continue;
        }
        let quantity = i64::from(new.quantity);
        let outcome = match stock.get_mut(new.product_id.as_str()) {
            None => Err(Error::NotFound(format!("product {}", new.product_id))),
            Some((_, left)) if *left < quantity => Err(Error::OutOfStock {
                product_id: new.product_id.to_string(),
            }),
            Some((name, left)) => {
                *left -= quantity;
                placed.push((new, name.clone()));
                let order = new.order();
                if let Some(key) = key {
                    keys.insert(key, order.clone());
                }
                Ok(Placed {
                    order,
                    replayed: false,
                })
            }
        };
        outcomes.push(outcome);
    }
    (outcomes, placed)
}

/// The batch's statements, written once for both databases.
struct Batch<D>(std::marker::PhantomData<D>);

impl<D: SqlDialect> Batch<D>
where
    for<'c> &'c mut <D::Db as sqlx::Database>::Connection: sqlx::Executor<'c, Database = D::Db>,
    <D::Db as sqlx::Database>::Arguments: sqlx::IntoArguments<D::Db>,
    for<'q> &'q str: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    for<'q> String: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    for<'q> i64: sqlx::Encode<'q, D::Db> + sqlx::Type<D::Db>,
    (String, String, i64): for<'r> sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
    OrderRow: for<'r> sqlx::FromRow<'r, <D::Db as sqlx::Database>::Row>,
{
    /// The batch's products: id -> (name, stock), read (and on PostgreSQL locked) in the
    /// transaction.
    async fn read_stock(
        tx: &mut sqlx::Transaction<'static, D::Db>,
        orders: &[&NewOrder],
    ) -> Result<BTreeMap<String, (String, i64)>> {
        let ids: std::collections::BTreeSet<&str> =
            orders.iter().map(|o| o.product_id.as_str()).collect();
        let mut q =
            QueryBuilder::<D::Db>::new("SELECT id, name, quantity FROM products WHERE id IN (");
        let mut list = q.separated(", ");
        for id in ids {
            list.push_bind(id);
        }
        q.push(")");
        q.push(D::LOCK_PRODUCTS);
        let rows: Vec<(String, String, i64)> =
            q.build_query_as().fetch_all(&mut **tx).await.map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|(id, name, quantity)| (id, (name, quantity)))
            .collect())
    }

    /// The earlier orders holding the batch's idempotency keys, by (user, key). No query when
    /// no order of the batch has a key.
    async fn read_keys(
        tx: &mut sqlx::Transaction<'static, D::Db>,
        orders: &[&NewOrder],
    ) -> Result<Keys> {
        let keyed: Vec<&str> = orders
            .iter()
            .filter_map(|o| o.idempotency_key.as_ref().map(|k| k.as_str()))
            .collect();
        if keyed.is_empty() {
            return Ok(Keys::new());
        }
        let mut q = QueryBuilder::<D::Db>::new("SELECT * FROM orders WHERE idempotency_key IN (");
        let mut list = q.separated(", ");
        for key in keyed {
            list.push_bind(key);
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

    /// Writes a decided batch: the new stock of its products, its orders and their confirmations,
    /// one statement each.
    async fn write_batch(
        tx: &mut sqlx::Transaction<'static, D::Db>,
        placed: &[(&NewOrder, String)],
        stock: &BTreeMap<String, (String, i64)>,
    ) -> Result<()> {
        // The stock of every product that sold, as it stands after the batch (the rows are ours
        // until commit: the write lock on SQLite, row locks on PostgreSQL).
        let mut touched: BTreeMap<&str, i64> = BTreeMap::new();
        for (new, _) in placed {
            touched
                .entry(new.product_id.as_str())
                .and_modify(|t| *t = (*t).max(ts(new.now)))
                .or_insert(ts(new.now));
        }
        let mut q = QueryBuilder::<D::Db>::new("WITH v (id, quantity, updated_at) AS (");
        q.push_values(&touched, |mut row, (id, at)| {
            let left = stock.get(*id).map(|(_, left)| *left).unwrap_or_default();
            row.push_bind(*id).push_bind(left).push_bind(*at);
        });
        q.push(
            ") UPDATE products SET \
             quantity = (SELECT v.quantity FROM v WHERE v.id = products.id), \
             updated_at = (SELECT v.updated_at FROM v WHERE v.id = products.id) \
             WHERE id IN (SELECT id FROM v)",
        );
        q.build().execute(&mut **tx).await.map_err(db)?;

        let mut q = QueryBuilder::<D::Db>::new(
            "INSERT INTO orders (id, user_id, buyer_email, product_id, quantity, status, idempotency_key, created_at, updated_at) ",
        );
        q.push_values(placed, |mut row, (new, _)| {
            row.push_bind(new.id.to_string())
                .push_bind(new.user_id.to_string())
                .push_bind(new.buyer_email.as_str())
                .push_bind(new.product_id.as_str())
                .push_bind(i64::from(new.quantity))
                .push("'pending'")
                .push_bind(new.idempotency_key.as_ref().map(|k| k.as_str()))
                .push_bind(ts(new.now))
                .push_bind(ts(new.now));
        });
        q.build()
            .execute(&mut **tx)
            .await
            .map_err(|e| map(e, KEY_TAKEN))?;

        let mut q = QueryBuilder::<D::Db>::new(
            "INSERT INTO notifications (id, order_id, recipient, product_id, product_name, quantity, status, attempts, next_attempt_at, created_at) ",
        );
        q.push_values(placed, |mut row, (new, name)| {
            row.push_bind(new.notification_id.to_string())
                .push_bind(new.id.to_string())
                .push_bind(new.buyer_email.as_str())
                .push_bind(new.product_id.as_str())
                .push_bind(name.as_str())
                .push_bind(i64::from(new.quantity))
                .push("'pending'")
                .push("0")
                .push_bind(ts(new.now))
                .push_bind(ts(new.now));
        });
        q.build().execute(&mut **tx).await.map_err(db)?;
        Ok(())
    }
}
