//! The stock commands: compare-and-set, the ledger, reconcile.

use inventory_kit::Settings;
use inventory_kit::core::transfer;
use inventory_kit::core::{Page, Product, ProductId, SYSTEM_ACTOR, StockSet, Store, stock_note};
use serde_json::json;

use crate::output::print_rows;

type Failure = Box<dyn std::error::Error>;

/// `products set-stock`'s arguments.
pub(crate) struct SetStock {
    pub(crate) product_id: String,
    pub(crate) quantity: u64,
    pub(crate) expected: u64,
    pub(crate) reason: Option<String>,
    pub(crate) reference: Option<String>,
}

/// Sets a product's available quantity if it is still the expected one.
pub(crate) async fn set_stock(store: &dyn Store, a: SetStock) -> Result<Product, Failure> {
    let set = StockSet::new(
        ProductId::new(a.product_id)?,
        a.quantity,
        a.expected,
        stock_note(a.reason, a.reference),
        SYSTEM_ACTOR,
    )?;
    Ok(store.set_stock(&set).await?)
}

/// Prints a product's newest `limit` ledger entries.
pub(crate) async fn ledger(
    store: &dyn Store,
    json: bool,
    product_id: String,
    limit: u32,
) -> Result<(), Failure> {
    let rows = store
        .list_ledger(&ProductId::new(product_id)?, Page::first(limit)?)
        .await?
        .into_iter()
        .map(|e| {
            vec![
                json!(e.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
                json!(e.reason.as_str()),
                json!(e.delta),
                json!(e.quantity),
                json!(e.reserved),
                json!(e.actor),
                json!(e.reference.unwrap_or_default()),
            ]
        })
        .collect();
    let header = [
        "at",
        "reason",
        "delta",
        "quantity",
        "reserved",
        "actor",
        "reference",
    ];
    print_rows(json, &header, rows);
    Ok(())
}

/// Compares every product (or one) with its ledger, and on Firestore sharded products'
/// snapshots with their shards; prints each difference (repairing it with `repair`) and fails
/// when there is any.
pub(crate) async fn reconcile(
    settings: &Settings,
    store: &dyn Store,
    json: bool,
    product: Option<String>,
    repair: bool,
) -> Result<(), Failure> {
    let ids = match product {
        Some(id) => vec![ProductId::new(id)?],
        None => transfer::collect_all(|page| store.list_products(page))
            .await?
            .into_iter()
            .map(|p| p.id)
            .collect(),
    };
    let mut rows = Vec::new();
    let mut unrepaired = 0;
    for id in &ids {
        let Some(d) = store.ledger_balance(id).await?.difference() else {
            continue;
        };
        let outcome = if repair {
            match store.repair_stock(&d, inventory_kit::core::now()).await {
                Ok(_) => "repaired".to_owned(),
                Err(e) => {
                    unrepaired += 1;
                    format!("not repaired: {e}")
                }
            }
        } else {
            "found".to_owned()
        };
        rows.push(vec![
            json!(d.product_id.to_string()),
            json!(d.quantity),
            json!(d.ledger_quantity),
            json!(d.reserved),
            json!(d.ledger_reserved),
            json!(outcome),
        ]);
    }
    rows.extend(snapshot_rows(settings, &ids, repair).await?);
    let found = rows.len();
    let header = [
        "product_id",
        "quantity",
        "ledger_quantity",
        "reserved",
        "ledger_reserved",
        "outcome",
    ];
    print_rows(json, &header, rows);
    if found > 0 {
        return Err(format!(
            "{found} difference(s) from the ledger or the shards ({} repaired)",
            found - unrepaired
        )
        .into());
    }
    Ok(())
}

/// Firestore: the sharded products among `ids` whose document snapshot is not their shards'
/// total, as reconcile rows (`quantity` the snapshot, `ledger_quantity` the shards' total);
/// with `repair`, each snapshot synced. Nothing on other backends.
#[cfg(feature = "firestore")]
pub(crate) async fn snapshot_rows(
    settings: &Settings,
    ids: &[ProductId],
    repair: bool,
) -> Result<Vec<Vec<serde_json::Value>>, Failure> {
    let Some(store) = settings.open_firestore().await? else {
        return Ok(Vec::new());
    };
    let mut rows = Vec::new();
    for id in ids {
        let Some((snapshot, total)) = store.snapshot_drift(id).await? else {
            continue;
        };
        let outcome = if repair {
            store
                .sync_stock_snapshot(id, inventory_kit::core::now())
                .await?;
            "snapshot synced"
        } else {
            "snapshot differs"
        };
        rows.push(vec![
            json!(id.to_string()),
            json!(snapshot),
            json!(total),
            json!(null),
            json!(null),
            json!(outcome),
        ]);
    }
    store.close().await;
    Ok(rows)
}

#[cfg(not(feature = "firestore"))]
pub(crate) async fn snapshot_rows(
    _: &Settings,
    _: &[ProductId],
    _: bool,
) -> Result<Vec<Vec<serde_json::Value>>, Failure> {
    Ok(Vec::new())
}
