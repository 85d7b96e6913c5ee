//! The stock ledger on Firestore: one document per change (`StockLedger/{entry id}`, never a
//! counter, so a hot product's orders gain no shared document), written in the transaction of
//! the change (see `Change` in `products.rs`); compare-and-set, balances and repairs.
//!
//! Listing a product's entries newest first needs the composite index
//! (`product_id` ascending, `__name__` descending) on real Firestore (the emulator needs none):
//! see docs/operations.md.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use inventory_core::*;

use super::products::{open_ledger, queue_entry, read_stock};
use super::*;

impl FirestoreStore {
    /// Every entry of a product, in the transaction of `db`.
    async fn all_entries(
        db: &FirestoreDb,
        cols: &Collections,
        id: &ProductId,
    ) -> TxResult<Vec<LedgerDoc>> {
        db.fluent()
            .select()
            .from(cols.ledger.as_str())
            .filter(|q| q.for_all([q.field("product_id").eq(id.to_string())]))
            .obj()
            .query()
            .await
            .map_err(fs)
    }
}

#[async_trait]
impl LedgerStore for FirestoreStore {
    async fn list_ledger(&self, id: &ProductId, page: Page) -> Result<Vec<LedgerEntry>> {
        let after = page
            .after
            .as_deref()
            .map(|after| self.after_doc(&self.cols.ledger, after));
        let docs: Vec<LedgerDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.ledger.as_str())
            .filter(|q| q.for_all([q.field("product_id").eq(id.to_string())]))
            .order(|o| o.fields([o.field(DOC_NAME).descending()]))
            .start_after(after)
            .offset(page.offset)
            .limit(page.limit)
            .obj()
            .query()
            .await
            .map_err(map)?;
        if docs.is_empty() && self.get_product(id).await?.is_none() {
            return Err(Error::NotFound(format!("product {id}")));
        }
        docs.into_iter().map(LedgerDoc::into_entry).collect()
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
                    let mut stock = read_stock(&db, &cols, &set.product_id).await?;
                    let before = (stock.available, stock.held);
                    open_ledger(
                        &db,
                        tx,
                        &cols,
                        &mut stock.doc,
                        &set.product_id,
                        before,
                        set.now,
                    )?;
                    let held = stock.held;
                    let entry = checked(set.decide(
                        stock.available.max(0).unsigned_abs(),
                        held.max(0).unsigned_abs(),
                    ))?;
                    let threshold = stock
                        .doc
                        .low_stock_threshold
                        .and_then(|t| u64::try_from(t).ok());
                    stock.write(&db, tx, &cols, &set.product_id, (target, held), set.now)?;
                    queue_entry(&db, tx, &cols, &entry)?;
                    let moved = (before.0.max(0).unsigned_abs(), set.quantity);
                    let trace = inventory_core::trace::current();
                    if let Some(low) =
                        Event::stock_low(&set.product_id, threshold, moved, set.now, trace.as_ref())
                    {
                        super::events::queue_event(&db, tx, &cols, &low)?;
                    }
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

    async fn ledger_balance(&self, id: &ProductId) -> Result<Balance> {
        // The product (every shard) and its entries, read in one transaction: one snapshot.
        let (product, entries) = self
            .tx(
                (self.cols.clone(), id.clone()),
                move |db, tx, (cols, id)| {
                    async move {
                        let mut stock = read_stock(&db, &cols, &id).await?;
                        let mut entries = Self::all_entries(&db, &cols, &id).await?;
                        if !stock.doc.ledger {
                            // The original's product, never changed by us: its ledger opens
                            // with what it holds now.
                            let now = Utc::now();
                            let before = (stock.available, stock.held);
                            open_ledger(&db, tx, &cols, &mut stock.doc, &id, before, now)?;
                            write(
                                &db,
                                tx,
                                cols.products.as_str(),
                                doc_id(id.as_str()),
                                &stock.doc,
                                Precondition::Exists,
                                Some(&["ledger"]),
                            )?;
                            let opening = LedgerEntry::new(
                                id.clone(),
                                before.0,
                                before.1,
                                (0, 0),
                                StockReason::Opening,
                                SYSTEM_ACTOR,
                                None,
                                now,
                            );
                            entries.push(LedgerDoc::from(&opening));
                        }
                        // The product as read in this transaction, with its shards' totals.
                        let mut product = checked(stock.doc.clone().into_product())?;
                        product.quantity = stock.available.max(0).unsigned_abs();
                        product.reserved = stock.held.max(0).unsigned_abs();
                        Ok((product, entries))
                    }
                    .boxed()
                },
            )
            .await?;
        Ok(Balance {
            product,
            ledger_quantity: entries.iter().map(|e| e.delta).sum(),
            ledger_reserved: entries.iter().map(|e| e.reserved_delta).sum(),
        })
    }

    async fn prune_ledger(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        let old: Vec<LedgerDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.ledger.as_str())
            .filter(|q| q.for_all([q.field("at").less_than(sys(before))]))
            .order(|o| o.fields([o.field("at").ascending()]))
            .limit(limit)
            .obj()
            .query()
            .await
            .map_err(map)?;
        let mut per_product: std::collections::BTreeMap<ProductId, Vec<LedgerEntry>> =
            Default::default();
        for doc in old {
            let e = doc.into_entry()?;
            per_product.entry(e.product_id.clone()).or_default().push(e);
        }
        let mut pruned = 0;
        // One transaction per product: each is small, and a product's ledger is its own.
        for (product, old) in per_product {
            let n = old.len() as u64;
            let done = self
                .tx(
                    (self.cols.clone(), product, old),
                    move |db, tx, (cols, product, old)| {
                        async move {
                            // A product's checkpoint is its oldest entry (its id is older than any
                            // entry kept).
                            let first: Vec<LedgerDoc> = db
                                .fluent()
                                .select()
                                .from(cols.ledger.as_str())
                                .filter(|q| {
                                    q.for_all([q.field("product_id").eq(product.to_string())])
                                })
                                .order(|o| o.fields([o.field(DOC_NAME).ascending()]))
                                .limit(1)
                                .obj()
                                .query()
                                .await
                                .map_err(fs)?;
                            let earlier = checked(
                                first
                                    .into_iter()
                                    .map(LedgerDoc::into_entry)
                                    .next()
                                    .transpose(),
                            )?
                            .filter(|e| e.reason == StockReason::Checkpoint);
                            // Each entry pruned once: they must all still be there.
                            for e in &old {
                                let there: Option<LedgerDoc> =
                                    read(&db, cols.ledger.as_str(), e.id.to_string()).await?;
                                if there.is_none() {
                                    return Ok(false);
                                }
                            }
                            let Some(point) = checkpoint(&old, earlier.as_ref()) else {
                                return Ok(false);
                            };
                            for e in old.iter().chain(earlier.as_ref()) {
                                if e.id != point.id {
                                    db.fluent()
                                        .delete()
                                        .from(cols.ledger.as_str())
                                        .document_id(e.id.to_string())
                                        .add_to_transaction(tx)
                                        .map_err(fs)?;
                                }
                            }
                            write(
                                &db,
                                tx,
                                cols.ledger.as_str(),
                                point.id.to_string(),
                                &LedgerDoc::from(&point),
                                Precondition::Exists,
                                None,
                            )?;
                            Ok(true)
                        }
                        .boxed()
                    },
                )
                .await?;
            if done {
                pruned += n;
            }
        }
        Ok(pruned)
    }

    async fn repair_stock(&self, d: &Difference, now: DateTime<Utc>) -> Result<Product> {
        let entry = d.repair(now)?;
        let lock = self.product_lock(d.product_id.as_str());
        let _guard = lock.lock().await;
        self.tx(
            (self.cols.clone(), d.clone(), entry),
            move |db, tx, (cols, d, entry)| {
                async move {
                    let mut stock = read_stock(&db, &cols, &d.product_id).await?;
                    let found = (stock.available, stock.held);
                    let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
                    if found != (big(d.quantity), big(d.reserved)) {
                        return abort(Error::StockChanged {
                            product_id: d.product_id.to_string(),
                            expected: d.quantity,
                            current: found.0.max(0).unsigned_abs(),
                        });
                    }
                    // A product without a ledger has no difference to repair: its ledger
                    // opens with what it holds.
                    if !stock.doc.ledger {
                        open_ledger(&db, tx, &cols, &mut stock.doc, &d.product_id, found, now)?;
                        stock.write(&db, tx, &cols, &d.product_id, found, now)?;
                        return Ok(());
                    }
                    let to = (d.ledger_quantity, d.ledger_reserved);
                    stock.write(&db, tx, &cols, &d.product_id, to, now)?;
                    queue_entry(&db, tx, &cols, &entry)?;
                    Ok(())
                }
                .boxed()
            },
        )
        .await?;
        self.get_product(&d.product_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("product {}", d.product_id)))
    }
}
