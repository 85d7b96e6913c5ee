//! Sharded stock: a hot product's units spread over several documents.
//!
//! Firestore sustains about one write per second per document, and every order writes its
//! product's stock: one product sells about one unit per second however many servers run. A
//! sharded product keeps its units in `N` documents of the subcollection
//! `{products}/{product}/stock/{0..N}` (each `{quantity}`); an order takes its units from one
//! shard (chosen at random, then the next ones while short), in the same transaction as the
//! order and its confirmation, so N shards sustain about N writes per second and never oversell.
//! The product document gets `shards: N` and keeps `quantity` and `status` as a snapshot of the
//! total, written when the product is sharded, restocked or synced, not by orders.
//!
//! Products the original wrote have no `shards` field and stay unsharded.

use firestore::FirestoreDb;
use firestore::FirestoreTransactionOps;
use serde::{Deserialize, Serialize};

use crate::tx::{TxResult, fs};

/// The subcollection of a product's shards.
pub(crate) const SHARDS: &str = "stock";

/// The most shards a product may have (each order reads at least one; restock and the total
/// read them all).
pub const MAX_SHARDS: u32 = 256;

/// One shard document: its available units and the units held from it
/// ([`crate::store`]'s holds), absent when none.
#[derive(Serialize, Deserialize, Clone, Copy, Default, Debug, PartialEq, Eq)]
pub(crate) struct ShardDoc {
    pub(crate) quantity: i64,
    #[serde(default, skip_serializing_if = "crate::docs::is_zero")]
    pub(crate) reserved: i64,
}

/// What taking units from a product does with them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Take {
    /// Sold: they leave the stock.
    Sell,
    /// Held: they move from available to reserved.
    Hold,
}

/// The shards of one product, inside a transaction or out of one.
pub(crate) struct Shards<'a> {
    pub(crate) db: &'a FirestoreDb,
    /// The product document's path: the shards' parent.
    pub(crate) parent: String,
    pub(crate) count: u32,
}

impl Shards<'_> {
    /// Shard `k` (a missing shard holds nothing).
    pub(crate) async fn read(&self, k: u32) -> TxResult<ShardDoc> {
        let doc: Option<ShardDoc> = self
            .db
            .fluent()
            .select()
            .by_id_in(SHARDS)
            .parent(&self.parent)
            .obj()
            .one(k.to_string())
            .await
            .map_err(fs)?;
        Ok(doc.unwrap_or_default())
    }

    /// Every shard, in shard order (read concurrently: up to 256 reads would otherwise be as
    /// many round trips one after another).
    pub(crate) async fn read_all(&self) -> TxResult<Vec<ShardDoc>> {
        futures::future::try_join_all((0..self.count).map(|k| self.read(k))).await
    }

    /// Queues shard `k` := `doc`.
    pub(crate) fn write(
        &self,
        tx: &mut impl FirestoreTransactionOps,
        k: u32,
        doc: ShardDoc,
    ) -> TxResult<()> {
        self.db
            .fluent()
            .update()
            .in_col(SHARDS)
            .document_id(k.to_string())
            .parent(&self.parent)
            .object(&doc)
            .add_to_transaction(tx)
            .map_err(fs)?;
        Ok(())
    }

    /// Queues the deletion of shard `k`.
    pub(crate) fn delete(&self, tx: &mut impl FirestoreTransactionOps, k: u32) -> TxResult<()> {
        self.db
            .fluent()
            .delete()
            .from(SHARDS)
            .parent(&self.parent)
            .document_id(k.to_string())
            .add_to_transaction(tx)
            .map_err(fs)?;
        Ok(())
    }

    /// Takes `take` units (sold or held, as `how` says), starting at shard `start` and moving
    /// on to the next ones while short (reading each in the transaction, so none can go below
    /// zero). Queues the writes and returns what each shard gave; `Err` with what every shard
    /// together holds (nothing queued) when that is fewer.
    pub(crate) async fn take(
        &self,
        tx: &mut impl FirestoreTransactionOps,
        start: u32,
        take: i64,
        how: Take,
    ) -> TxResult<std::result::Result<Vec<(u32, i64)>, i64>> {
        let mut needed = take;
        let mut taken = Vec::new();
        for i in 0..self.count {
            let k = (start + i) % self.count;
            let mut shard = self.read(k).await?;
            let from_here = shard.quantity.min(needed);
            if from_here > 0 {
                shard.quantity -= from_here;
                if how == Take::Hold {
                    shard.reserved += from_here;
                }
                taken.push((k, from_here, shard));
                needed -= from_here;
            }
            if needed == 0 {
                break;
            }
        }
        if needed > 0 {
            // Every shard was read: what they hold is what was taken from them so far.
            return Ok(Err(take - needed));
        }
        let mut gave = Vec::with_capacity(taken.len());
        for (k, units, shard) in taken {
            self.write(tx, k, shard)?;
            gave.push((k, units));
        }
        Ok(Ok(gave))
    }

    /// Ends holds of units taken from these shards, each part `(shard, units)`: the units leave
    /// the shards' reserved stock, from the part's shard on (where the hold took them, unless
    /// the product was re-sharded since), and with `back` they return to available stock in
    /// that shard. Each shard is read and written once. Returns how many reserved units were
    /// not found (none, unless the data was changed by hand).
    pub(crate) async fn unreserve(
        &self,
        tx: &mut impl FirestoreTransactionOps,
        parts: &[(u32, i64)],
        back: bool,
    ) -> TxResult<i64> {
        let mut seen: std::collections::BTreeMap<u32, (ShardDoc, bool)> = Default::default();
        let mut missing = 0;
        for &(start, units) in parts {
            let start = start % self.count;
            let mut needed = units;
            for i in 0..self.count {
                let k = (start + i) % self.count;
                let (shard, changed) = match seen.entry(k) {
                    std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::btree_map::Entry::Vacant(e) => {
                        e.insert((self.read(k).await?, false))
                    }
                };
                if back && i == 0 {
                    shard.quantity += units;
                    *changed = true;
                }
                let from_here = shard.reserved.clamp(0, needed);
                if from_here > 0 {
                    shard.reserved -= from_here;
                    needed -= from_here;
                    *changed = true;
                }
                if needed == 0 {
                    break;
                }
            }
            missing += needed;
        }
        for (k, (shard, changed)) in seen {
            if changed {
                self.write(tx, k, shard)?;
            }
        }
        Ok(missing)
    }
}

/// `total` units spread over `n` shards as evenly as whole units allow.
pub(crate) fn spread(total: i64, n: u32) -> Vec<i64> {
    let n64 = i64::from(n.max(1));
    (0..n64)
        .map(|k| total / n64 + i64::from(k < total % n64))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::spread;

    #[test]
    fn spread_keeps_every_unit_and_evens_out() {
        for (total, n) in [(0, 4), (3, 4), (50, 4), (51, 16), (1_000_000, 64), (7, 1)] {
            let parts = spread(total, n);
            assert_eq!(parts.len(), n as usize);
            assert_eq!(parts.iter().sum::<i64>(), total, "{total} over {n}");
            let (lo, hi) = (parts.iter().min().unwrap(), parts.iter().max().unwrap());
            assert!(hi - lo <= 1, "{parts:?}");
        }
    }
}
