//! The ledger port on Firestore: compare-and-set of stock. The ledger's entries are not kept
//! here yet: listing them is [`Error::Unsupported`] (HTTP 501), and stock changes write none.

use async_trait::async_trait;
use futures::FutureExt;
use inventory_core::*;

use super::products::shards_of;
use super::*;

fn no_ledger<T>() -> Result<T> {
    Err(Error::Unsupported(
        "the stock ledger is not kept on the Firestore backend yet; use SQLite or PostgreSQL \
         for it"
            .into(),
    ))
}

#[async_trait]
impl LedgerStore for FirestoreStore {
    async fn list_ledger(&self, _: &ProductId, _: Page) -> Result<Vec<LedgerEntry>> {
        no_ledger()
    }

    async fn ledger_balance(&self, _: &ProductId) -> Result<Balance> {
        no_ledger()
    }

    async fn repair_stock(
        &self,
        _: &Difference,
        _: chrono::DateTime<chrono::Utc>,
    ) -> Result<Product> {
        no_ledger()
    }

    async fn set_stock(&self, set: &StockSet) -> Result<Product> {
        let target =
            i64::try_from(set.quantity).map_err(|_| Error::invalid("quantity", "too large"))?;
        // This process's orders of the product wait here rather than contend in Firestore.
        let lock = self.product_lock(set.product_id.as_str());
        let _guard = lock.lock().await;
        self.tx(
            (self.cols.clone(), set.clone()),
            move |db, tx, (cols, set)| {
                async move {
                    let key = doc_id(set.product_id.as_str());
                    let Some(mut doc): Option<ProductDoc> =
                        read(&db, cols.products.as_str(), key.as_str()).await?
                    else {
                        return abort(Error::NotFound(format!("product {}", set.product_id)));
                    };
                    match doc.shard_count() {
                        // Sharded: the total of the shards is compared, and the new
                        // quantity spread over them (their held units stay).
                        Some(n) => {
                            let shards = shards_of(&db, &cols, &key, n)?;
                            let held = shards.read_all().await?;
                            let current: i64 = held.iter().map(|s| s.quantity).sum();
                            checked(set.decide(current.max(0).unsigned_abs(), 0))?;
                            for (k, (shard, quantity)) in
                                held.into_iter().zip(spread(target, n)).enumerate()
                            {
                                shards.write(tx, k as u32, ShardDoc { quantity, ..shard })?;
                            }
                        }
                        None => {
                            checked(set.decide(doc.quantity.max(0).unsigned_abs(), 0))?;
                        }
                    }
                    // For a sharded product, the snapshot of the total.
                    doc.set_quantity(target, set.now);
                    write_stock(&db, tx, &cols, &key, &doc)?;
                    Ok(())
                }
                .boxed()
            },
        )
        .await?;
        self.get_product(&set.product_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("product {}", set.product_id)))
    }
}
