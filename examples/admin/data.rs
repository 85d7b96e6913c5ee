//! Sharding and moving data between stores.

use inventory_kit::Settings;
use inventory_kit::core::transfer;

use crate::*;

/// The sharding commands: Firestore only (a SQL row lock is held only for the statement, so
/// SQL products need no shards).
#[cfg(feature = "firestore")]
pub(crate) async fn shard_command(
    settings: &Settings,
    command: ProductsCommand,
) -> Result<inventory_kit::core::Product, Box<dyn std::error::Error>> {
    let Some(store) = settings.open_firestore().await? else {
        return Err("stock sharding is a Firestore feature: SQL databases need none".into());
    };
    let now = inventory_kit::core::now();
    let product = match command {
        ProductsCommand::Shard { product_id, shards } => {
            store
                .shard_product(
                    &inventory_kit::core::ProductId::new(product_id)?,
                    shards,
                    now,
                )
                .await?
        }
        ProductsCommand::Unshard { product_id } => {
            store
                .unshard_product(&inventory_kit::core::ProductId::new(product_id)?, now)
                .await?
        }
        ProductsCommand::SyncStock { product_id } => {
            store
                .sync_stock_snapshot(&inventory_kit::core::ProductId::new(product_id)?, now)
                .await?
        }
        _ => unreachable!("only sharding commands come here"),
    };
    store.close().await;
    Ok(product)
}

#[cfg(not(feature = "firestore"))]
pub(crate) async fn shard_command(
    _: &Settings,
    _: ProductsCommand,
) -> Result<inventory_kit::core::Product, Box<dyn std::error::Error>> {
    Err("stock sharding is a Firestore feature (build with --features firestore)".into())
}

/// Prints what a transfer wrote and skipped; an incomplete transfer is an error unless the
/// operator accepted a partial one.
pub(crate) fn finish_transfer(
    verb: &str,
    report: &transfer::Report,
    partial: bool,
    file: &str,
    json: bool,
) -> Result<(), Box<dyn std::error::Error>> {
    let c = &report.written;
    if json {
        println!(
            "{}",
            serde_json::json!({
                verb: c,
                "file": file,
                "skipped": report.skipped.iter().map(|s| serde_json::json!({"what": s.what, "reason": s.reason})).collect::<Vec<_>>(),
            })
        );
    } else {
        println!(
            "{verb} {} users, {} products, {} orders, {} holds, {} notifications ({file})",
            c.users, c.products, c.orders, c.reservations, c.notifications
        );
    }
    for s in &report.skipped {
        eprintln!("skipped {}: {}", s.what, s.reason);
    }
    if report.is_complete() || partial {
        return Ok(());
    }
    Err(format!(
        "{} record group(s) skipped (listed above); pass --partial to accept an incomplete transfer",
        report.skipped.len()
    )
    .into())
}
