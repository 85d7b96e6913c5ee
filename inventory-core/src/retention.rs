//! Retention of the stock ledger: entries older than a window are pruned into one checkpoint
//! per product ([`LedgerStore::prune_ledger`]), in bounded batches, by whichever process
//! runs the dispatcher (any number may at once).

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use crate::error::Result;
use crate::ports::LedgerStore;

/// Entries pruned per transaction: small enough that no batch holds SQLite's write lock for
/// long.
pub const PRUNE_BATCH: u32 = 500;

/// How often a process prunes.
pub const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Keeps a store's ledger entries for `keep`, pruning older ones into checkpoints.
#[derive(Clone)]
pub struct LedgerRetention {
    store: Arc<dyn LedgerStore>,
    keep: chrono::Duration,
}

impl LedgerRetention {
    /// Entries of `store` are kept for `keep` (at least a day: reconcile and the operators
    /// need the recent history).
    pub fn new(store: Arc<dyn LedgerStore>, keep: Duration) -> LedgerRetention {
        let keep = chrono::Duration::from_std(keep.max(Duration::from_secs(86_400)))
            .unwrap_or(chrono::Duration::MAX);
        LedgerRetention { store, keep }
    }

    /// Prunes every entry older than the window, `batch` at a time (each one transaction),
    /// until none is left; returns how many.
    pub async fn prune_due(&self, batch: u32) -> Result<u64> {
        let before = Utc::now()
            .checked_sub_signed(self.keep)
            .unwrap_or(chrono::DateTime::<Utc>::MIN_UTC);
        let mut total = 0;
        loop {
            let n = self.store.prune_ledger(before, batch).await?;
            total += n;
            if n < u64::from(batch) {
                if total > 0 {
                    metrics::counter!("inventory_ledger_entries_pruned_total").increment(total);
                }
                return Ok(total);
            }
        }
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
            (
                "ledger entries pruned into checkpoints",
                "pruning the stock ledger failed",
            ),
            move || {
                let this = self.clone();
                async move { this.prune_due(PRUNE_BATCH).await }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::{order, product, user};
    use crate::*;

    #[tokio::test]
    async fn only_entries_older_than_the_window_go() {
        let store = Arc::new(MemoryStore::new());
        let t: crate::testkit::TestStore = store.clone();
        let u = user(&t, "r@example.com").await;
        let p = product(&t, "r", 5).await;
        t.place_order(&order(&u, &p, 1)).await.unwrap();
        let retention = LedgerRetention::new(store.clone(), Duration::from_secs(86_400));
        assert_eq!(
            retention.prune_due(10).await.unwrap(),
            0,
            "all within a day"
        );
        let everything = LedgerRetention {
            store: store.clone(),
            keep: chrono::Duration::seconds(-60),
        };
        assert_eq!(everything.prune_due(1).await.unwrap(), 2);
        let left = t.list_ledger(&p, Page::first(10).unwrap()).await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].reason, StockReason::Checkpoint);
    }
}
