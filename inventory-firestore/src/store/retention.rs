//! The retention port on Firestore: a query finds the oldest removable documents (ids only),
//! then one transaction removes those still there, so two processes pruning at once remove
//! (and count) each once. A call removes at most `limit` documents, and at most
//! [`MAX_WRITES`] per transaction (Firestore's limit is 500 writes; an expired key is two).
//!
//! The queries need composite indexes on real Firestore (the emulator needs none):
//! `Notifications` (`status`, `created_at`) and `EventDeliveries` (`status`, `created_at`);
//! see docs/operations.md.

use std::time::SystemTime;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::FutureExt;
use inventory_core::*;
use serde::{Deserialize, Serialize};

use super::*;

/// The most documents one retention transaction removes.
const MAX_WRITES: u32 = 200;

/// The field of an order that holds its idempotency key, for a masked write that removes it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
}

impl FirestoreStore {
    /// The ids of up to `limit` documents of `col` whose `status` is one of `statuses` (any,
    /// when empty) and whose `time` field is before `before`, oldest first.
    async fn removable(
        &self,
        col: &str,
        statuses: &[&str],
        time: &str,
        before: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<OrderIdDoc>> {
        let before: SystemTime = sys(before);
        let statuses: Vec<String> = statuses.iter().map(|s| (*s).to_owned()).collect();
        self.db
            .fluent()
            .select()
            .fields(["order_id"])
            .from(col)
            .filter(move |q| {
                q.for_all([
                    (!statuses.is_empty())
                        .then(|| q.field("status").is_in(statuses.clone()))
                        .flatten(),
                    q.field(time).less_than(before),
                ])
            })
            .order(|o| o.fields([o.field(time).ascending()]))
            .limit(limit.min(MAX_WRITES))
            .obj()
            .query()
            .await
            .map_err(map)
    }

    /// Deletes the documents `ids` of `col` that still exist, in one transaction; with
    /// `clear_key`, each one's `order_id` order loses its idempotency key in the same step.
    /// Returns how many were deleted.
    async fn remove(&self, col: &str, found: Vec<OrderIdDoc>, clear_key: bool) -> Result<u64> {
        let ids: Vec<(String, Option<String>)> = found
            .into_iter()
            .filter_map(|d| Some((d.fs_id?, d.order_id)))
            .collect();
        if ids.is_empty() {
            return Ok(0);
        }
        let first: Vec<String> = ids.iter().map(|(id, _)| self.path(col, id)).collect();
        let ctx = (self.cols.clone(), col.to_owned(), ids);
        let (removed, _) = self
            .tx_reading(&first, ctx, move |db, tx, docs, (cols, col, ids)| {
                async move {
                    let mut removed = 0;
                    for ((id, order), doc) in ids.into_iter().zip(docs) {
                        if doc.is_none() {
                            // Removed by another process meanwhile.
                            continue;
                        }
                        db.fluent()
                            .delete()
                            .from(col.as_str())
                            .document_id(&id)
                            .add_to_transaction(tx)
                            .map_err(fs)?;
                        if let (true, Some(order)) = (clear_key, order) {
                            let order_there: Option<KeyField> =
                                read(&db, cols.orders.as_str(), &order).await?;
                            if order_there.is_some() {
                                write(
                                    &db,
                                    tx,
                                    cols.orders.as_str(),
                                    &order,
                                    &KeyField {
                                        idempotency_key: None,
                                    },
                                    Precondition::Exists,
                                    Some(&["idempotency_key"]),
                                )?;
                            }
                        }
                        removed += 1;
                    }
                    Ok(removed)
                }
                .boxed()
            })
            .await?;
        Ok(removed)
    }
}

#[async_trait]
impl RetentionStore for FirestoreStore {
    async fn expire_idempotency_keys(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        // Keys written before this release have no `created_at` and are not found here: see
        // docs/operations.md.
        let col = self.cols.idempotency_keys.clone();
        let found = self
            .removable(&col, &[], "created_at", before, limit)
            .await?;
        self.remove(&col, found, true).await
    }

    async fn prune_notifications(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        let col = self.cols.notifications.clone();
        let found = self
            .removable(&col, &["sent", "cancelled"], "created_at", before, limit)
            .await?;
        self.remove(&col, found, false).await
    }

    async fn remove_failed_notifications(&self, id: Option<Uuid>, limit: u32) -> Result<u64> {
        let col = self.cols.notifications.clone();
        let statuses = ["failed"];
        let found = match id {
            Some(id) => match self.get::<NotificationDoc>(&col, &id.to_string()).await? {
                Some(doc) if doc.status == NotificationStatus::Failed => vec![OrderIdDoc {
                    order_id: None,
                    fs_id: Some(id.to_string()),
                    fs_created: None,
                }],
                _ => Vec::new(),
            },
            None => {
                self.removable(&col, &statuses, "created_at", Utc::now(), limit)
                    .await?
            }
        };
        self.remove(&col, found, false).await
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        let col = self.cols.deliveries.clone();
        let found = self
            .removable(
                &col,
                &[DeliveryStatus::Delivered.as_str()],
                "created_at",
                before,
                limit,
            )
            .await?;
        self.remove(&col, found, false).await
    }
}
