//! Retention: what is finished does not stay forever. Idempotency keys expire, sent and
//! cancelled notifications and delivered event deliveries are pruned ([`RetentionStore`]),
//! and, when asked, old stock ledger entries are folded into one checkpoint per product
//! ([`LedgerStore::prune_ledger`]). Each kind goes in bounded batches (one atomic step each),
//! by whichever process runs the dispatcher (any number may at once: a record is removed
//! once).
//!
//! [`RetentionStore`]: crate::ports::RetentionStore
//! [`LedgerStore::prune_ledger`]: crate::ports::LedgerStore::prune_ledger

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::ports::Store;

/// Records removed per atomic step: small enough that no batch holds SQLite's write lock (or a
/// PostgreSQL row lock) for long.
pub const PRUNE_BATCH: u32 = 500;

/// How often a process prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

const DAY: Duration = Duration::from_secs(86_400);

/// How long each kind of finished record is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetentionPolicy {
    /// Idempotency keys (default 24 hours, as payment APIs keep theirs): a request that repeats
    /// a key older than this places a new order.
    pub idempotency_keys: Duration,
    /// Sent and cancelled notifications and delivered event deliveries (default 30 days).
    /// Failed ones are kept until retried or removed.
    pub outbox: Duration,
    /// Stock ledger entries, folded into checkpoints (default `None`: kept forever; at least
    /// a day when set, as reconcile and the operators need the recent history).
    pub ledger: Option<Duration>,
}

impl Default for RetentionPolicy {
    fn default() -> Self {
        RetentionPolicy {
            idempotency_keys: DAY,
            outbox: DAY * 30,
            ledger: None,
        }
    }
}

impl RetentionPolicy {
    /// The default policy with these windows.
    pub fn new(idempotency_keys: Duration, outbox: Duration, ledger: Option<Duration>) -> Self {
        RetentionPolicy {
            idempotency_keys,
            outbox,
            ledger: ledger.map(|keep| keep.max(DAY)),
        }
    }
}

/// What one round of [`Retention::prune_due`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Idempotency keys forgotten.
    pub idempotency_keys: u64,
    /// Notifications deleted.
    pub notifications: u64,
    /// Event deliveries deleted.
    pub deliveries: u64,
    /// Ledger entries folded into checkpoints.
    pub ledger_entries: u64,
}

impl Pruned {
    /// Everything removed.
    pub fn total(&self) -> u64 {
        self.idempotency_keys + self.notifications + self.deliveries + self.ledger_entries
    }
}

/// Applies a [`RetentionPolicy`] to a store.
#[derive(Clone)]
pub struct Retention {
    store: Arc<dyn Store>,
    policy: RetentionPolicy,
}

impl Retention {
    /// Keeps `store`'s records as `policy` says.
    pub fn new(store: Arc<dyn Store>, policy: RetentionPolicy) -> Retention {
        Retention { store, policy }
    }

    /// Removes everything older than its window as of `now`, `batch` records per atomic step,
    /// until none is left.
    pub async fn prune_due(&self, now: DateTime<Utc>, batch: u32) -> Result<Pruned> {
        let s = &self.store;
        let p = &self.policy;
        let pruned = Pruned {
            idempotency_keys: drain(
                "idempotency_keys",
                before(now, p.idempotency_keys),
                batch,
                |t, n| s.expire_idempotency_keys(t, n),
            )
            .await?,
            notifications: drain("notifications", before(now, p.outbox), batch, |t, n| {
                s.prune_notifications(t, n)
            })
            .await?,
            deliveries: drain("deliveries", before(now, p.outbox), batch, |t, n| {
                s.prune_deliveries(t, n)
            })
            .await?,
            ledger_entries: match p.ledger {
                Some(keep) => {
                    drain("ledger_entries", before(now, keep), batch, |t, n| {
                        s.prune_ledger(t, n)
                    })
                    .await?
                }
                None => 0,
            },
        };
        Ok(pruned)
    }

    /// Prunes every `every` until `shutdown`; a failed round is logged and tried again.
    pub fn spawn(
        self,
        every: Duration,
        shutdown: tokio_util::sync::CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        crate::periodic::spawn_every(
            every,
            shutdown,
            ("finished records pruned", "pruning finished records failed"),
            move || {
                let this = self.clone();
                async move { Ok(this.prune_due(Utc::now(), PRUNE_BATCH).await?.total()) }
            },
        )
    }
}

/// The time `keep` before `now` (the earliest time when `keep` reaches past it).
fn before(now: DateTime<Utc>, keep: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(keep)
        .ok()
        .and_then(|keep| now.checked_sub_signed(keep))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// Calls `step` until it removes less than `batch`; counts the total in
/// `inventory_records_pruned_total{kind}`.
async fn drain<F, Fut>(
    kind: &'static str,
    before: DateTime<Utc>,
    batch: u32,
    step: F,
) -> Result<u64>
where
    F: Fn(DateTime<Utc>, u32) -> Fut,
    Fut: Future<Output = Result<u64>>,
{
    let batch = batch.max(1);
    let mut total = 0;
    loop {
        let n = step(before, batch).await?;
        total += n;
        if n < u64::from(batch) {
            if total > 0 {
                metrics::counter!("inventory_records_pruned_total", "kind" => kind)
                    .increment(total);
            }
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{order, product, user};
    use crate::*;

    #[tokio::test]
    async fn each_kind_goes_after_its_own_window() {
        let store = Arc::new(MemoryStore::new());
        let t: crate::testkit::TestStore = store.clone();
        let u = user(&t, "r@example.com").await;
        let p = product(&t, "r", 5).await;
        let mut new = order(&u, &p, 1);
        new = new.with_idempotency_key(IdempotencyKey::new("k").unwrap());
        let placed_at = new.now;
        t.place_order(&new).await.unwrap();
        let policy = RetentionPolicy::new(DAY, DAY * 30, Some(Duration::from_secs(1)));
        assert_eq!(policy.ledger, Some(DAY), "the ledger keeps at least a day");
        let retention = Retention::new(store.clone(), policy);
        let within = retention.prune_due(placed_at, 10).await.unwrap();
        assert_eq!(within, Pruned::default(), "all within their windows");
        let later = placed_at + chrono::Duration::days(2);
        let pruned = retention.prune_due(later, 1).await.unwrap();
        // The key and the ledger entries (the product's creation and the order) went; the
        // confirmation is pending, and kept.
        assert_eq!(
            pruned,
            Pruned {
                idempotency_keys: 1,
                ledger_entries: 2,
                ..Pruned::default()
            }
        );
        let left = t.list_ledger(&p, Page::first(10).unwrap()).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].reason, StockReason::Checkpoint);
    }
}
