//! The notifications port: the outbox of confirmations and verifications, claimed under
//! leases, marked sent or failed by conditional writes.

use std::sync::Arc;
use std::time::Duration;

use super::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use firestore::{FirestoreDb, FirestoreTransactionOps, FirestoreWritePrecondition};
use futures::{FutureExt, StreamExt};
use inventory_core::handoff::Handoff;
use tokio::sync::watch;
use uuid::Uuid;

/// A change of a leased notification: one of the domain's transitions
/// (`Notification::mark_sent`, ...), which checks the lease itself.
pub(super) type Transition = Arc<dyn Fn(&mut Notification) -> Result<()> + Send + Sync>;

/// The stored notification after `t`, or the domain's refusal (`LeaseLost`, ...).
fn apply(doc: &NotificationDoc, t: &Transition) -> Result<NotificationDoc> {
    let mut n = doc.clone().into_notification()?;
    t(&mut n)?;
    Ok(NotificationDoc::after(&n))
}

/// The outcome of claiming one notification.
pub(super) enum Claim {
    /// Leased to us: the document as written, and the notification it is.
    Taken(Box<(NotificationDoc, Notification)>),
    Skipped,
    /// The document cannot be read as a notification; it was marked failed.
    Broken(String, String),
}

/// The fields written to park an unreadable notification.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct BrokenDoc {
    pub(super) status: NotificationStatus,
    pub(super) last_error: String,
}

/// Confirms the order of a confirmation that was just sent, by field mask. The order is not
/// read: its confirmation was pending and leased to the sender, and a cancel cancels the
/// pending confirmation in its own transaction, so the order is not cancelled (it is pending,
/// or confirmed already). Other messages have no order.
pub(super) fn confirm(
    db: &FirestoreDb,
    cols: &Collections,
    writes: &mut impl FirestoreTransactionOps,
    n: &NotificationDoc,
    status: Option<&OrderStatusDoc>,
) -> TxResult<()> {
    if let (Some(status), Some(order_id)) = (status, &n.order_id) {
        write(
            db,
            writes,
            cols.orders.as_str(),
            order_id.as_str(),
            status,
            Precondition::Exists,
            Some(&ORDER_STATUS_FIELDS),
        )?;
        let order = checked(Uuid::parse_str(order_id).map_err(Error::other))?;
        let event = Event::order_confirmed(order, utc(status.updated_at));
        super::events::queue_event(db, writes, cols, &event)?;
    }
    Ok(())
}

impl FirestoreStore {
    pub(super) async fn notification_doc(
        &self,
        field: &str,
        value: String,
    ) -> Result<Option<NotificationDoc>> {
        let docs: Vec<NotificationDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.notifications.as_str())
            .filter(|q| q.for_all([q.field(field).eq(value.clone())]))
            .limit(1)
            .obj()
            .query()
            .await
            .map_err(map)?;
        Ok(docs.into_iter().next())
    }

    /// Applies a transition of the domain to a leased notification (which refuses with
    /// [`Error::LeaseLost`] when its owner lost the lease).
    ///
    /// A notification leased by this store is changed with one commit and no read: its write
    /// requires the document to be unchanged since the lease was written (see `crate::tx`).
    /// Otherwise, or when that precondition fails, in a transaction that reads it
    /// first.
    pub(super) async fn with_lease(
        &self,
        id: Uuid,
        change: Transition,
        confirm_order_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let order_status = confirm_order_at.map(|now| OrderStatusDoc {
            status: OrderStatus::Confirmed,
            updated_at: sys(now),
        });
        if let Some((leased, version)) = self.leased.take(id)
            && let Ok(n) = apply(&leased, &change)
        {
            let mut writes = tx::writes(&self.db, Vec::new());
            self.db
                .fluent()
                .update()
                .in_col(self.cols.notifications.as_str())
                .precondition(FirestoreWritePrecondition::UpdateTime(version))
                .document_id(id.to_string())
                .object(&n)
                .add_to_transaction(&mut writes)
                .map_err(map)?;
            confirm(&self.db, &self.cols, &mut writes, &n, order_status.as_ref()).map_err(untx)?;
            if let Some(version) = tx::commit_if(&self.db, writes).await? {
                self.leased.remember(id, n, Some(version));
                return Ok(());
            }
            // Changed since (cancelled, reclaimed after the lease ran out, edited): the
            // transaction below reads what it is now.
        }
        let first = [self.path(&self.cols.notifications, &id.to_string())];
        let ctx = (self.cols.clone(), change, order_status);
        let (n, version) = self
            .tx_reading(
                &first,
                ctx,
                move |db, tx, docs, (cols, change, order_status)| {
                    async move {
                        let doc = docs.into_iter().next().flatten();
                        let Some(n) = doc.map(|d| parse::<NotificationDoc>(&d)).transpose()? else {
                            return abort(Error::NotFound(format!("notification {id}")));
                        };
                        let n = checked(apply(&n, &change))?;
                        write(
                            &db,
                            tx,
                            cols.notifications.as_str(),
                            id.to_string(),
                            &n,
                            Precondition::Any,
                            None,
                        )?;
                        confirm(&db, &cols, tx, &n, order_status.as_ref())?;
                        Ok(n)
                    }
                    .boxed()
                },
            )
            .await?;
        self.leased.remember(id, n, version);
        Ok(())
    }

    /// Puts one failed notification back to pending; false if it is not failed (any more).
    pub(super) async fn reset_failed(&self, id: String, now: DateTime<Utc>) -> Result<bool> {
        self.tx((self.cols.clone(), id), move |db, tx, (cols, id)| {
            async move {
                let raw = db
                    .fluent()
                    .select()
                    .by_id_in(cols.notifications.as_str())
                    .one(id.as_str())
                    .await
                    .map_err(fs)?;
                // An unreadable document stays failed (its last_error says why).
                let doc =
                    raw.and_then(|d| FirestoreDb::deserialize_doc_to::<NotificationDoc>(&d).ok());
                let Some(mut n) = doc.and_then(|d| d.into_notification().ok()) else {
                    return Ok(false);
                };
                if !n.retry(now) {
                    return Ok(false);
                }
                let n = NotificationDoc::after(&n);
                write(
                    &db,
                    tx,
                    cols.notifications.as_str(),
                    id.as_str(),
                    &n,
                    Precondition::Any,
                    None,
                )?;
                Ok(true)
            }
            .boxed()
        })
        .await
    }
}

#[async_trait]
impl NotificationStore for FirestoreStore {
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let until = now + chrono::Duration::from_std(lease).map_err(Error::other)?;
        // Ids only: one malformed document must not fail the query for the others.
        let candidates: Vec<Meta> = self
            .db
            .fluent()
            .select()
            .fields([DOC_NAME])
            .from(self.cols.notifications.as_str())
            .filter(|q| {
                q.for_all([
                    q.field("status").eq(NotificationStatus::Pending.as_str()),
                    q.field("next_attempt_at").less_than_or_equal(sys(now)),
                ])
            })
            .order(|o| o.fields([o.field("next_attempt_at").asc()]))
            .limit(limit)
            .obj()
            .query()
            .await
            .map_err(map)?;
        let claims = futures::stream::iter(candidates.into_iter().filter_map(|m| m.id))
            .map(|id| async move {
                let first = [self.path(&self.cols.notifications, &id)];
                let ctx = (self.cols.clone(), owner.to_owned(), id);
                self.tx_reading(&first, ctx, move |db, tx, docs, (cols, owner, id)| {
                    async move {
                        let Some(raw) = docs.into_iter().next().flatten() else {
                            return Ok(Claim::Skipped);
                        };
                        let parsed = FirestoreDb::deserialize_doc_to::<NotificationDoc>(&raw)
                            .map_err(|e| e.to_string())
                            .and_then(|n| n.into_notification().map_err(|e| e.to_string()));
                        let mut claim = match parsed {
                            Ok(n) => n,
                            Err(reason) => {
                                // Never claimable: park it as failed, with the reason, so it
                                // neither blocks nor costs the others.
                                let broken = BrokenDoc {
                                    status: NotificationStatus::Failed,
                                    last_error: format!("stored notification is invalid: {reason}"),
                                };
                                write(
                                    &db,
                                    tx,
                                    cols.notifications.as_str(),
                                    id.as_str(),
                                    &broken,
                                    Precondition::Exists,
                                    Some(&["status", "last_error"]),
                                )?;
                                return Ok(Claim::Broken(id, broken.last_error));
                            }
                        };
                        // Someone else claimed or finished it meanwhile.
                        if !claim.is_due(now) {
                            return Ok(Claim::Skipped);
                        }
                        claim.lease_to(&owner, until);
                        let n = NotificationDoc::after(&claim);
                        write(
                            &db,
                            tx,
                            cols.notifications.as_str(),
                            id.as_str(),
                            &n,
                            Precondition::Any,
                            None,
                        )?;
                        Ok(Claim::Taken(Box::new((n, claim))))
                    }
                    .boxed()
                })
                .await
            })
            .buffer_unordered(8)
            .collect::<Vec<_>>()
            .await;
        let mut claimed = Vec::new();
        let mut failures = Vec::new();
        for c in claims {
            match c {
                Ok((Claim::Taken(taken), version)) => {
                    let (doc, n) = *taken;
                    self.leased.remember(n.id, doc, version);
                    claimed.push(n);
                }
                Ok((Claim::Skipped, _)) => {}
                Ok((Claim::Broken(id, reason), _)) => {
                    metrics::counter!("inventory_notifications_invalid_total").increment(1);
                    tracing::error!(notification = %id, %reason, "invalid notification document marked failed");
                }
                // Lost a race for this one: another dispatcher has it.
                Err(Error::Conflict(_)) => {}
                Err(e) => failures.push(e),
            }
        }
        if !failures.is_empty() {
            metrics::counter!("inventory_notifications_claim_errors_total")
                .increment(failures.len() as u64);
            // Only when nothing could be claimed is it the store's failure; otherwise keep
            // what succeeded (the others stay due and are tried in the next cycle).
            if claimed.is_empty() {
                return Err(failures.remove(0));
            }
            for e in &failures {
                tracing::warn!(error = %e, "could not claim a notification; it stays due");
            }
        }
        claimed.sort_by_key(|n| (n.next_attempt_at, n.id));
        Ok(claimed)
    }

    async fn extend_lease(&self, id: Uuid, owner: &str, until: DateTime<Utc>) -> Result<()> {
        let holder = owner.to_owned();
        self.with_lease(id, Arc::new(move |n| n.extend_lease(&holder, until)), None)
            .await
    }

    async fn mark_sent(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<()> {
        let holder = owner.to_owned();
        self.with_lease(id, Arc::new(move |n| n.mark_sent(&holder, now)), Some(now))
            .await
    }

    async fn mark_failed(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let error: String = error.chars().take(2000).collect();
        let holder = owner.to_owned();
        self.with_lease(
            id,
            Arc::new(move |n| n.mark_failed(&holder, &error, next_attempt_at)),
            None,
        )
        .await
    }

    async fn enqueue(&self, n: &Standalone) -> Result<()> {
        self.import_notification(n).await?;
        self.bump();
        Ok(())
    }

    async fn notification_for_order(&self, order_id: Uuid) -> Result<Option<Notification>> {
        self.notification_doc("order_id", order_id.to_string())
            .await?
            .map(NotificationDoc::into_notification)
            .transpose()
    }

    async fn list_notifications(
        &self,
        status: NotificationStatus,
        page: Page,
    ) -> Result<Vec<Notification>> {
        let docs: Vec<NotificationDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.notifications.as_str())
            .filter(|q| q.for_all([q.field("status").eq(status.as_str())]))
            .order(|o| o.fields([o.field("notification_id").asc()]))
            .start_after(page.after.clone().map(after_value))
            .offset(page.offset)
            .limit(page.limit)
            .obj()
            .query()
            .await
            .map_err(map)?;
        docs.into_iter()
            .map(NotificationDoc::into_notification)
            .collect()
    }

    async fn notification_counts(&self) -> Result<NotificationCounts> {
        let mut counts = NotificationCounts::default();
        for status in [
            NotificationStatus::Pending,
            NotificationStatus::Sent,
            NotificationStatus::Failed,
            NotificationStatus::Cancelled,
        ] {
            let result: Vec<CountDoc> = self
                .db
                .fluent()
                .select()
                .from(self.cols.notifications.as_str())
                .filter(|q| q.for_all([q.field("status").eq(status.as_str())]))
                .aggregate(|a| a.fields([a.field("count").count()]))
                .obj()
                .query()
                .await
                .map_err(map)?;
            let n = result.first().map(|c| c.count as u64).unwrap_or(0);
            match status {
                NotificationStatus::Pending => counts.pending = n,
                NotificationStatus::Sent => counts.sent = n,
                NotificationStatus::Failed => counts.failed = n,
                NotificationStatus::Cancelled => counts.cancelled = n,
            }
        }
        Ok(counts)
    }

    async fn retry_failed(&self, id: Option<Uuid>, now: DateTime<Utc>) -> Result<u64> {
        let mut count = 0;
        match id {
            Some(id) => count += u64::from(self.reset_failed(id.to_string(), now).await?),
            None => {
                // Page through the failed ones by id (a cursor, not an offset), a page at a
                // time in memory.
                let mut after: Option<String> = None;
                loop {
                    let query = self
                        .db
                        .fluent()
                        .select()
                        .fields(["notification_id"])
                        .from(self.cols.notifications.as_str())
                        .filter(|q| {
                            q.for_all([q.field("status").eq(NotificationStatus::Failed.as_str())])
                        })
                        .order(|o| o.fields([o.field("notification_id").asc()]))
                        .limit(self.page_size);
                    let query = match &after {
                        Some(last) => {
                            query.start_at(firestore::FirestoreQueryCursor::AfterValue(vec![
                                last.clone().into(),
                            ]))
                        }
                        None => query,
                    };
                    let page: Vec<Meta> = query.obj().query().await.map_err(map)?;
                    let n = page.len();
                    for id in page.into_iter().filter_map(|m| m.id) {
                        after = Some(id.clone());
                        count += u64::from(self.reset_failed(id, now).await?);
                    }
                    if n < self.page_size as usize {
                        break;
                    }
                }
            }
        }
        if count > 0 {
            self.bump();
        }
        Ok(count)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }

    fn accept_handoff(&self, handoff: Handoff) -> bool {
        self.handoff.accept(handoff)
    }
}
