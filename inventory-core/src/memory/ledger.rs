//! The stock ledger port: listing, compare-and-set, balances, repairs, retention.

use super::*;

#[async_trait]
impl LedgerStore for MemoryStore {
    async fn list_ledger(&self, id: &ProductId, p: Page) -> Result<Vec<LedgerEntry>> {
        self.with(|s| {
            if !s.products.contains_key(id) {
                return Err(Error::NotFound(format!("product {id}")));
            }
            let entries = s.ledger.get(id).map(Vec::as_slice).unwrap_or_default();
            Ok(page(entries.iter().rev().cloned(), p, true))
        })
    }

    async fn set_stock(&self, set: &StockSet) -> Result<Product> {
        self.with(|s| {
            let p = s
                .products
                .get_mut(&set.product_id)
                .ok_or_else(|| Error::NotFound(format!("product {}", set.product_id)))?;
            let entry = set.decide(p.quantity, p.reserved)?;
            let before = p.quantity;
            p.quantity = set.quantity;
            p.updated_at = set.now;
            let product = p.clone();
            let threshold = s.low_stock.get(&set.product_id).copied();
            let trace = crate::trace::current();
            let low = Event::stock_low(
                &set.product_id,
                threshold,
                (before, set.quantity),
                set.now,
                trace.as_ref(),
            );
            if let Some(low) = low {
                s.emit(low);
            }
            s.ledger
                .entry(set.product_id.clone())
                .or_default()
                .push(entry);
            Ok(product)
        })
    }

    async fn ledger_balance(&self, id: &ProductId) -> Result<Balance> {
        self.with(|s| {
            let p = s
                .products
                .get(id)
                .ok_or_else(|| Error::NotFound(format!("product {id}")))?;
            let entries = s.ledger.get(id).map(Vec::as_slice).unwrap_or_default();
            Ok(Balance::of(p.clone(), entries))
        })
    }

    async fn prune_ledger(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        self.with(|s| {
            let mut left = limit as usize;
            let mut pruned = 0;
            for entries in s.ledger.values_mut() {
                if left == 0 {
                    break;
                }
                // Oldest first (kept in id order); the checkpoint, if any, is the first.
                let earlier = entries
                    .first()
                    .filter(|e| e.reason == StockReason::Checkpoint)
                    .cloned();
                let skip = usize::from(earlier.is_some());
                let old: Vec<LedgerEntry> = entries[skip..]
                    .iter()
                    .take_while(|e| e.at < before)
                    .take(left)
                    .cloned()
                    .collect();
                let Some(point) = checkpoint(&old, earlier.as_ref()) else {
                    continue;
                };
                entries.drain(..skip + old.len());
                entries.insert(0, point);
                left -= old.len();
                pruned += old.len() as u64;
            }
            Ok(pruned)
        })
    }

    async fn repair_stock(&self, d: &Difference, now: DateTime<Utc>) -> Result<Product> {
        let entry = d.repair(now)?;
        self.with(|s| {
            let p = s
                .products
                .get_mut(&d.product_id)
                .ok_or_else(|| Error::NotFound(format!("product {}", d.product_id)))?;
            if (p.quantity, p.reserved) != (d.quantity, d.reserved) {
                return Err(Error::StockChanged {
                    product_id: d.product_id.to_string(),
                    expected: d.quantity,
                    current: p.quantity,
                });
            }
            p.quantity = entry.quantity.unwrap_or(p.quantity);
            p.reserved = entry.reserved.unwrap_or(p.reserved);
            p.updated_at = now;
            let product = p.clone();
            s.ledger
                .entry(d.product_id.clone())
                .or_default()
                .push(entry);
            Ok(product)
        })
    }
}
