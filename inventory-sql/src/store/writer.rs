//! The group-commit writer: one task that places orders and records confirmations as sent,
//! many of them per transaction.
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
//! The dispatcher's "sent" marks ride in the same transactions: each would otherwise be a
//! commit (an `fsync` on SQLite) of its own, one per order.
//!
//! Should the batch's transaction fail (a full disk, a key taken by another process meanwhile,
//! a lost connection), nothing of it was written and each of its orders is placed again on its
//! own, so one order's failure is never another's.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use sqlx::QueryBuilder;
use tokio::sync::{mpsc, oneshot};

use super::*;

/// The most orders one transaction takes. Bounds the statement size (about 2,300 bound
/// parameters at most) and the time a batch holds the write lock.
pub(super) const MAX_BATCH: usize = 256;

/// A write waiting for the writer.
pub(super) enum Job {
    /// A `place_order` call.
    Place {
        new: NewOrder,
        reply: oneshot::Sender<Result<Placed>>,
    },
    /// A `mark_sent` call: true when the lease was still held and the notification is now sent.
    MarkSent {
        mark: Mark,
        reply: oneshot::Sender<Result<bool>>,
    },
    /// A `claim_due` call.
    Claim {
        claim: Claim,
        reply: oneshot::Sender<Result<Vec<Notification>>>,
    },
}

impl Job {
    /// Answers the caller with an error.
    fn fail(self, e: Error) {
        match self {
            Job::Place { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Job::MarkSent { reply, .. } => {
                let _ = reply.send(Err(e));
            }
            Job::Claim { reply, .. } => {
                let _ = reply.send(Err(e));
            }
        }
    }

    fn abandoned(&self) -> bool {
        match self {
            Job::Place { reply, .. } => reply.is_closed(),
            Job::MarkSent { reply, .. } => reply.is_closed(),
            Job::Claim { reply, .. } => reply.is_closed(),
        }
    }
}

/// A delivered notification to record as sent, under its lease.
pub(super) struct Mark {
    id: Uuid,
    owner: String,
    now: DateTime<Utc>,
}

/// Due notifications to lease to a dispatcher.
pub(super) struct Claim {
    owner: String,
    now: DateTime<Utc>,
    until: DateTime<Utc>,
    limit: u32,
}

/// The sending side kept by the store; dropping it ends the writer.
pub(super) struct WriteQueue {
    jobs: mpsc::Sender<Job>,
    _writers: Vec<AbortOnDrop>,
}

/// Writer tasks of a PostgreSQL store (each holds a pool connection while it writes).
#[cfg(feature = "postgres")]
const PG_WRITERS: usize = 4;

impl WriteQueue {
    /// Starts the writer task for this backend.
    pub(super) fn start(backend: Backend, signal: watch::Sender<u64>) -> Self {
        let (jobs, rx) = mpsc::channel(4 * MAX_BATCH);
        // SQLite has one write connection: one writer. PostgreSQL takes several batches at
        // once (each on its own connection); they stay first come, first served, since a
        // writer hands the queue on only once its batch holds its products' row locks.
        let writers = match &backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite { .. } => 1,
            #[cfg(feature = "postgres")]
            Backend::Postgres(_) => PG_WRITERS,
        };
        let writer = Arc::new(Writer { backend, signal });
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        WriteQueue {
            jobs,
            _writers: (0..writers)
                .map(|_| AbortOnDrop(tokio::spawn(writer.clone().run(rx.clone()))))
                .collect(),
        }
    }

    async fn submit<T>(&self, job: impl FnOnce(oneshot::Sender<Result<T>>) -> Job) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        let closed = || Error::Unavailable("the store's writer has stopped".into());
        self.jobs.send(job(reply)).await.map_err(|_| closed())?;
        answer.await.unwrap_or_else(|_| Err(closed()))
    }

    /// Places one order through the writer. A caller that gives up after handing its order
    /// over does not take it back: the order is placed (or not) as a whole either way, and a
    /// retry with the same idempotency key finds it.
    pub(super) async fn place(&self, new: &NewOrder) -> Result<Placed> {
        let new = new.clone();
        self.submit(|reply| Job::Place { new, reply }).await
    }

    /// Records a notification as sent (and its order as confirmed) through the writer, so a
    /// busy dispatcher's bookkeeping shares commits with the orders. False when the lease is
    /// no longer `owner`'s.
    pub(super) async fn mark_sent(
        &self,
        id: Uuid,
        owner: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mark = Mark {
            id,
            owner: owner.to_owned(),
            now,
        };
        self.submit(|reply| Job::MarkSent { mark, reply }).await
    }

    /// Leases up to `limit` due notifications to `owner` until `until`, through the writer.
    pub(super) async fn claim(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        until: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let claim = Claim {
            owner: owner.to_owned(),
            now,
            until,
            limit,
        };
        self.submit(|reply| Job::Claim { claim, reply }).await
    }
}

/// The writer task's handle on the database.
struct Writer {
    backend: Backend,
    signal: watch::Sender<u64>,
}

/// Earlier orders by (user, idempotency key).
type Keys = HashMap<(Uuid, String), Order>;

/// The writes of one batch, by kind, in arrival order.
#[derive(Default)]
struct Writes<'a> {
    orders: Vec<&'a NewOrder>,
    marks: Vec<&'a Mark>,
    claims: Vec<&'a Claim>,
}

impl<'a> Writes<'a> {
    /// The writes of these jobs.
    fn of(jobs: &'a [Job]) -> Self {
        let mut writes = Writes::default();
        for job in jobs {
            match job {
                Job::Place { new, .. } => writes.orders.push(new),
                Job::MarkSent { mark, .. } => writes.marks.push(mark),
                Job::Claim { claim, .. } => writes.claims.push(claim),
            }
        }
        writes
    }
}

/// What one transaction did: each write's outcome, by kind, in order.
#[derive(Default)]
struct Outcomes {
    placed: Vec<Result<Placed>>,
    marked: Vec<bool>,
    claimed: Vec<Vec<Notification>>,
}

impl Writer {
    async fn run(self: Arc<Self>, rx: Arc<tokio::sync::Mutex<mpsc::Receiver<Job>>>) {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        loop {
            let mut queue = rx.clone().lock_owned().await;
            if queue.recv_many(&mut jobs, MAX_BATCH).await == 0 {
                return;
            }
            // A caller that went away before its turn never reached the database: skip it.
            jobs.retain(|job| !job.abandoned());
            self.write_batch(std::mem::take(&mut jobs), queue).await;
        }
    }

    /// Writes one batch; `queue` (the right to take the next batch) is handed on once this
    /// batch holds its products.
    async fn write_batch(
        &self,
        jobs: Vec<Job>,
        queue: tokio::sync::OwnedMutexGuard<mpsc::Receiver<Job>>,
    ) {
        let mut queue = Some(queue);
        if jobs.is_empty() {
            return;
        }
        match self.try_batch(&Writes::of(&jobs), &mut queue).await {
            Ok(outcomes) => self.answer(jobs, outcomes),
            Err(e) if jobs.len() == 1 && !matches!(e, Error::AlreadyExists(_)) => {
                // Alone already: its own failure.
                if let Some(job) = jobs.into_iter().next() {
                    job.fail(e);
                }
            }
            Err(e) => {
                // Nothing of the batch was written: each write again on its own, so one
                // write's failure (a full disk fails them all alike) is never another's.
                tracing::debug!(error = %e, writes = jobs.len(), "batch failed; writing one by one");
                drop(queue);
                for job in jobs {
                    let one = Writes::of(std::slice::from_ref(&job));
                    let mut outcome = self.try_batch(&one, &mut None).await;
                    let keyed =
                        matches!(&job, Job::Place { new, .. } if new.idempotency_key.is_some());
                    if keyed && matches!(outcome, Err(Error::AlreadyExists(_))) {
                        // Another process placed an order with this key meanwhile: it is the
                        // answer, found by the same write again.
                        outcome = self.try_batch(&one, &mut None).await;
                    }
                    match outcome {
                        Ok(outcomes) => self.answer(vec![job], outcomes),
                        Err(e) => job.fail(e),
                    }
                }
            }
        }
    }

    /// Sends each job its outcome (they come in the jobs' order, by kind) and raises the
    /// outbox signal if an order was placed.
    fn answer(&self, jobs: Vec<Job>, outcomes: Outcomes) {
        if outcomes
            .placed
            .iter()
            .any(|o| matches!(o, Ok(p) if !p.replayed))
        {
            bump(&self.signal);
        }
        let mut placed = outcomes.placed.into_iter();
        let mut marked = outcomes.marked.into_iter();
        let mut claimed = outcomes.claimed.into_iter();
        for job in jobs {
            match job {
                Job::Place { reply, .. } => {
                    let _ = reply.send(placed.next().expect("an outcome per order"));
                }
                Job::MarkSent { reply, .. } => {
                    let _ = reply.send(Ok(marked.next().expect("an outcome per mark")));
                }
                Job::Claim { reply, .. } => {
                    let _ = reply.send(Ok(claimed.next().expect("an outcome per claim")));
                }
            }
        }
    }

    /// One transaction for the whole batch. `Err` means nothing was written; `Ok` holds each
    /// write's own outcome.
    async fn try_batch(
        &self,
        writes: &Writes<'_>,
        queue: &mut Option<tokio::sync::OwnedMutexGuard<mpsc::Receiver<Job>>>,
    ) -> Result<Outcomes> {
        with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                let mut out = Outcomes::default();
                let mut placed = Vec::new();
                let mut stock = BTreeMap::new();
                let (mut before, mut reserved) = (BTreeMap::new(), BTreeMap::new());
                let mut thresholds = BTreeMap::new();
                // Marks first: they touch no product, so they run before this batch waits for
                // the products' row locks (while the batch before still holds them).
                out.marked = Batch::<D>::mark_sent(&mut tx, &writes.marks).await?;
                if writes.orders.is_empty() {
                    // No products to hold: the next batch may start at once.
                    queue.take();
                } else {
                    (stock, reserved, thresholds) =
                        Batch::<D>::read_stock(&mut tx, &writes.orders).await?;
                    // The products are ours now: the next batch may start.
                    queue.take();
                    before = stock.clone();
                    let mut keys = Batch::<D>::read_keys(&mut tx, &writes.orders).await?;
                    (out.placed, placed) = decide(&writes.orders, &mut stock, &mut keys);
                }
                if !placed.is_empty() {
                    let entries = super::ledger::order_entries(&placed, &before, &reserved);
                    let lows = if thresholds.is_empty() {
                        Vec::new()
                    } else {
                        super::events::batch_low_stock_events(&placed, &before, &stock, &thresholds)
                    };
                    Batch::<D>::write_orders(&mut tx, &placed, &stock, &entries, &lows).await?;
                }
                // Last, so a claim finds the confirmations of this batch's orders.
                for claim in &writes.claims {
                    out.claimed.push(Batch::<D>::claim(&mut tx, claim).await?);
                }
                let wrote = !placed.is_empty()
                    || out.marked.contains(&true)
                    || out.claimed.iter().any(|c| !c.is_empty());
                if wrote {
                    tx.commit().await.map_err(db)?;
                } else {
                    // Nothing written: end the transaction without a commit's fsync.
                    tx.rollback().await.map_err(db)?;
                }
                Ok(out)
            }
            .await
        })
    }
}

/// Decides each order in arrival order against the stock and keys read in the transaction,
/// taking the stock of the ones placed. Returns every order's outcome and the orders to write.
fn decide<'a>(
    orders: &[&'a NewOrder],
    stock: &mut BTreeMap<String, (String, i64)>,
    keys: &mut Keys,
) -> (Vec<Result<Placed>>, Vec<&'a NewOrder>) {
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
        let decided = new.lines.check_stock(|id| {
            stock
                .get(id.as_str())
                .map(|(_, left)| u64::try_from(*left).unwrap_or(0))
        });
        let outcome = decided.map(|demand| {
            for (id, take) in demand {
                if let Some((_, left)) = stock.get_mut(id.as_str()) {
                    // At most the stock, which the database holds as an i64.
                    *left -= i64::try_from(take).unwrap_or(i64::MAX);
                }
            }
            placed.push(new);
            let order = new.order();
            if let Some(key) = key {
                keys.insert(key, order.clone());
            }
            Placed {
                order,
                replayed: false,
            }
        });
        outcomes.push(outcome);
    }
    (outcomes, placed)
}

/// The batch's statements, written once for both databases.
pub(super) struct Batch<D>(std::marker::PhantomData<D>);

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
    async fn read_stock(
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
    async fn read_keys(
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
    async fn mark_sent(
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
    async fn claim(
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
    async fn write_orders(
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
    pub(super) async fn insert_orders(
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
