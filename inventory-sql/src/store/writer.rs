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

mod batch;
pub(super) use batch::Batch;
