//! Taking units for orders and holds, and ending holds: the stock moves of the ordering path,
//! from product documents or their shards, each with its ledger entries (and `stock.low`).

use firestore::FirestoreDb;

use super::products::*;
use super::*;

/// What [`take_stock`] took: the products' names (for the confirmation), each product's shard
/// count (0: unsharded) and where every unit came from.
pub(super) struct Taken {
    pub(super) names: std::collections::BTreeMap<ProductId, String>,
    pub(super) shards: Vec<(String, u32)>,
    pub(super) from: Vec<TakenDoc>,
}

/// Takes every product's demand in `tx` (sold or held, as `how` says): `products` are the
/// product documents read in this transaction, in `demand`'s order; `starts` the shard each
/// sharded product is taken from first. A missing product ends the transaction
/// ([`Error::NotFound`]); short products are all named in `Ok(Err(..))`, with nothing queued
/// for any product worth keeping (the caller aborts).
#[allow(clippy::too_many_arguments)]
pub(super) async fn take_stock(
    db: &FirestoreDb,
    tx: &mut Tx,
    cols: &Collections,
    demand: &std::collections::BTreeMap<ProductId, u64>,
    products: Vec<Option<ProductDoc>>,
    starts: &std::collections::BTreeMap<String, u32>,
    how: Take,
    change: &Change,
) -> TxResult<std::result::Result<Taken, Vec<Shortage>>> {
    let now = change.at;
    let mut entries = Vec::new();
    let mut lows = Vec::new();
    let mut short = Vec::new();
    let mut taken = Taken {
        names: Default::default(),
        shards: Vec::new(),
        from: Vec::new(),
    };
    for ((id, &units), product) in demand.iter().zip(products) {
        let Some(mut product) = product else {
            return abort(Error::NotFound(format!("product {id}")));
        };
        let Ok(units) = i64::try_from(units) else {
            return abort(Error::invalid("quantity", "too large"));
        };
        let key = doc_id(id.as_str());
        let shards = product.shard_count();
        let available = match shards {
            // Sharded: the units come from the shards; the product document is only read.
            Some(n) => {
                let shards = shards_of(db, cols, &key, n)?;
                let start = starts.get(id.as_str()).copied().unwrap_or(0) % n;
                match shards.take(tx, start, units, how).await? {
                    Ok(gave) => {
                        let held = if how == Take::Hold { units } else { 0 };
                        entries.push(change.entry(id, (-units, held), None));
                        taken
                            .from
                            .extend(gave.into_iter().map(|(k, units)| TakenDoc {
                                product_id: id.to_string(),
                                shard: Some(k),
                                units,
                            }));
                        None
                    }
                    Err(available) => Some(available),
                }
            }
            None if product.quantity < units => Some(product.quantity),
            None => {
                let before = (product.quantity, product.reserved);
                open_ledger(db, tx, cols, &mut product, id, before, now)?;
                if how == Take::Hold {
                    product.reserved += units;
                }
                product.set_quantity(product.quantity - units, now);
                write_stock(db, tx, cols, &key, &product)?;
                // (Sharded products' totals are not read by an order: no stock.low for them.)
                let threshold = product
                    .low_stock_threshold
                    .and_then(|t| u64::try_from(t).ok());
                let moved = (
                    before.0.max(0).unsigned_abs(),
                    product.quantity.max(0).unsigned_abs(),
                );
                let trace = inventory_core::trace::current();
                lows.extend(Event::stock_low(id, threshold, moved, now, trace.as_ref()));
                let held = if how == Take::Hold { units } else { 0 };
                let after = (product.quantity, product.reserved);
                entries.push(change.entry(id, (-units, held), Some(after)));
                taken.from.push(TakenDoc {
                    product_id: id.to_string(),
                    shard: None,
                    units,
                });
                None
            }
        };
        if let Some(available) = available {
            short.push(Shortage {
                product_id: id.to_string(),
                requested: units.unsigned_abs(),
                available: available.max(0).unsigned_abs(),
            });
        }
        taken.shards.push((id.to_string(), shards.unwrap_or(0)));
        taken.names.insert(id.clone(), product.product_name.clone());
    }
    if short.is_empty() {
        for entry in &entries {
            queue_entry(db, tx, cols, entry)?;
        }
        for low in &lows {
            super::events::queue_event(db, tx, cols, low)?;
        }
        Ok(Ok(taken))
    } else {
        Ok(Err(short))
    }
}

/// Ends a hold's claim on the units it took (`from`) in `tx`: they leave reserved stock, and
/// with `back` return to available stock (a release or an expiry; a checkout's units are the
/// order's). Each product is read and written once, in product id order, wherever its units
/// are now (a product sharded or unsharded since the hold keeps its held units in its new
/// layout). Returns the products' names (for a checkout's confirmation).
pub(super) async fn end_hold(
    db: &FirestoreDb,
    tx: &mut Tx,
    cols: &Collections,
    from: &[TakenDoc],
    back: bool,
    change: &Change,
) -> TxResult<std::collections::BTreeMap<ProductId, String>> {
    let now = change.at;
    let mut names = std::collections::BTreeMap::new();
    let mut per_product: std::collections::BTreeMap<&str, Vec<(u32, i64)>> = Default::default();
    for t in from {
        per_product
            .entry(t.product_id.as_str())
            .or_default()
            .push((t.shard.unwrap_or(0), t.units));
    }
    for (id, parts) in per_product {
        let key = doc_id(id);
        let Some(mut product): Option<ProductDoc> = read(db, cols.products.as_str(), &key).await?
        else {
            // Products are never deleted; a hand-deleted one has nowhere to take units back.
            tracing::warn!(
                product = id,
                "a hold's product is gone; its units are dropped"
            );
            continue;
        };
        let Ok(pid) = ProductId::new(id) else {
            continue;
        };
        names.insert(pid.clone(), product.product_name.clone());
        let units: i64 = parts.iter().map(|(_, u)| u).sum();
        let delta = (if back { units } else { 0 }, -units);
        let missing = match product.shard_count() {
            Some(n) => {
                let missing = shards_of(db, cols, &key, n)?
                    .unreserve(tx, &parts, back)
                    .await?;
                queue_entry(db, tx, cols, &change.entry(&pid, delta, None))?;
                missing
            }
            None => {
                let before = (product.quantity, product.reserved);
                open_ledger(db, tx, cols, &mut product, &pid, before, now)?;
                let missing = (units - product.reserved).max(0);
                product.reserved -= units - missing;
                let quantity = product.quantity + if back { units } else { 0 };
                product.set_quantity(quantity, now);
                write_stock(db, tx, cols, &key, &product)?;
                let after = (product.quantity, product.reserved);
                queue_entry(db, tx, cols, &change.entry(&pid, delta, Some(after)))?;
                missing
            }
        };
        if missing > 0 {
            tracing::warn!(
                product = id,
                missing,
                "fewer units were reserved than a hold held"
            );
        }
    }
    Ok(names)
}
