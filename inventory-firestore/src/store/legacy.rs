//! The original service's data: users stored under the address as typed (an index of
//! lower-cased emails) and orders without `order_id` (found by a scan of ids).

use std::collections::HashMap;
use std::time::Duration;

use super::*;
use chrono::{DateTime, Utc};
use firestore::FirestoreWritePrecondition;
use firestore::errors::FirestoreError;

/// How many of the original's orders are read for one buyer's list.
pub(super) const LEGACY_ORDERS_PER_USER: u32 = 1000;

/// How long a miss may trust the index of user ids before listing them again.
pub(super) const LEGACY_INDEX_TTL: Duration = Duration::from_secs(5);

/// The original's orders (no `order_id`), newest first: they cannot be selected by a query
/// (Firestore cannot filter on a missing field, and the emulator refuses descending id scans),
/// so they are found by a scan of order ids, at most once per [`LEGACY_INDEX_TTL`].
#[derive(Default)]
pub(super) struct LegacyOrders {
    built: Option<std::time::Instant>,
    newest_first: Vec<(DateTime<Utc>, String)>,
}

/// Lower-cased email -> document id, for users the original stored under the address as typed.
#[derive(Default)]
pub(super) struct UserIndex {
    built: Option<std::time::Instant>,
    by_lower: HashMap<String, String>,
}

impl FirestoreStore {
    /// The user document stored under another form of the address (see [`UserIndex`]).
    pub(super) async fn find_user_in_index(&self, email: &Email) -> Result<Option<UserDoc>> {
        let key = email.as_str().to_owned();
        let mut index = self.user_index.lock().await;
        let fresh = index
            .built
            .is_some_and(|at| at.elapsed() < LEGACY_INDEX_TTL);
        if !index.by_lower.contains_key(&key) && !fresh {
            let ids: Vec<Meta> = self
                .db
                .fluent()
                .select()
                .fields([DOC_NAME])
                .from(self.cols.users.as_str())
                .obj()
                .query()
                .await
                .map_err(map)?;
            index.by_lower = ids
                .into_iter()
                .filter_map(|m| m.id)
                // Keyed by the normalised address, as every lookup is.
                .filter_map(|id| Some((Email::parse(&doc_id_decode(&id)).ok()?.to_string(), id)))
                .collect();
            index.built = Some(std::time::Instant::now());
        }
        let Some(id) = index.by_lower.get(&key).cloned() else {
            return Ok(None);
        };
        drop(index);
        self.get::<UserDoc>(&self.cols.users, &id).await
    }

    /// Gives a user written by the original its derived id as a field, so it can be found by
    /// id. Only `user_id` is written; the document keeps everything else.
    pub(super) async fn adopt(&self, doc: &UserDoc, user: &User) -> Result<()> {
        if doc.user_id.is_some() {
            return Ok(());
        }
        let mut adopted = doc.clone();
        adopted.user_id = Some(user.id.to_string());
        let result = self
            .db
            .fluent()
            .update()
            .fields(["user_id"])
            .in_col(self.cols.users.as_str())
            .precondition(FirestoreWritePrecondition::Exists(true))
            .document_id(doc.doc_id())
            .object(&adopted)
            .execute::<serde::de::IgnoredAny>()
            .await;
        match result {
            // Deleted meanwhile: nothing to adopt.
            Ok(_) | Err(FirestoreError::DataNotFoundError(_)) => Ok(()),
            Err(e) => Err(map(e)),
        }
    }

    /// The ids and times of the original's orders, newest first (see [`LegacyOrders`]).
    pub(super) async fn legacy_order_ids(&self) -> Result<Vec<(DateTime<Utc>, String)>> {
        let mut index = self.legacy_orders.lock().await;
        if index
            .built
            .is_none_or(|at| at.elapsed() >= LEGACY_INDEX_TTL)
        {
            let docs: Vec<OrderIdDoc> = self
                .db
                .fluent()
                .select()
                .fields(["order_id"])
                .from(self.cols.orders.as_str())
                .obj()
                .query()
                .await
                .map_err(map)?;
            let mut legacy: Vec<(DateTime<Utc>, String)> = docs
                .into_iter()
                .filter(|d| d.order_id.is_none())
                .filter_map(|d| Some((d.fs_created.map(utc)?, d.fs_id?)))
                .collect();
            legacy.sort_by(|a, b| b.cmp(a));
            index.newest_first = legacy;
            index.built = Some(std::time::Instant::now());
        }
        Ok(index.newest_first.clone())
    }
}
