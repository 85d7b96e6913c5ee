//! Commits that report their time, and the outbox's writes that need no read.
//!
//! Recording a send's outcome used to be a transaction: `BeginTransaction`, a read of the
//! notification (is the lease still ours?), `Commit`. The store now remembers each
//! notification it leased together with its version (the update time its lease was written
//! with, which is the commit time of that write) and records the outcome with one `Commit`
//! whose write carries the precondition "unchanged since that version". Anything that could
//! take the lease away (a cancel, another dispatcher's claim after the lease ran out, an
//! operator's edit) changes the document and so fails the precondition, and the store falls
//! back to the transaction, which says what happened.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use firestore::errors::{BackoffError, FirestoreError};
use firestore::gcloud_sdk::google::firestore::v1::CommitRequest;
use firestore::gcloud_sdk::tonic::Code;
use firestore::{
    FirestoreConsistencySelector, FirestoreDb, FirestoreInstant, FirestoreTransaction,
    FirestoreTransactionData, FirestoreTransactionMode, FirestoreTransactionOptions,
};
use futures::future::BoxFuture;
use inventory_core::Result;
use uuid::Uuid;

use crate::docs::NotificationDoc;
use crate::store::{TxError, map, untx};

/// The notifications this store leased, as it wrote them, with the version it wrote.
#[derive(Default)]
pub(crate) struct Leased(Mutex<HashMap<Uuid, (NotificationDoc, FirestoreInstant)>>);

/// More than this many remembered leases (dispatchers that died mid-send) are dropped: an
/// outcome recorded without its entry costs a read, nothing else.
const LEASED_MAX: usize = 50_000;

impl Leased {
    /// Remembers `doc` as written at `version`, if it is leased (and the version is known);
    /// forgets it otherwise.
    pub(crate) fn remember(
        &self,
        id: Uuid,
        doc: NotificationDoc,
        version: Option<FirestoreInstant>,
    ) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match version {
            Some(version) if doc.status == "pending" && doc.lease_owner.is_some() => {
                if map.len() >= LEASED_MAX {
                    map.clear();
                }
                map.insert(id, (doc, version));
            }
            _ => {
                map.remove(&id);
            }
        }
    }

    /// Takes the entry of `id` out, if it is remembered.
    pub(crate) fn take(&self, id: Uuid) -> Option<(NotificationDoc, FirestoreInstant)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(&id)
    }
}

/// Runs `f` in a read-write transaction and commits it; after contention (`ABORTED`, or a
/// transient error inside `f`) the whole transaction runs again, at most `max_retries` times,
/// with exponential backoff, as the crate's own runner does. Unlike that runner it returns the
/// commit time: the version of every document the transaction wrote.
pub(crate) async fn run<C, T, F>(
    db: &FirestoreDb,
    max_retries: usize,
    ctx: C,
    f: F,
) -> Result<(T, Option<FirestoreInstant>)>
where
    C: Clone + Send + Sync,
    T: Send,
    F: for<'b> Fn(
            FirestoreDb,
            &'b mut FirestoreTransaction,
            C,
        ) -> BoxFuture<'b, std::result::Result<T, BackoffError<TxError>>>
        + Send
        + Sync,
{
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(1.5)
        .with_jitter()
        .with_max_times(max_retries)
        .build();
    let mut retry_of = None;
    loop {
        let mut options = FirestoreTransactionOptions::new();
        if let Some(id) = retry_of.take() {
            options = options.with_mode(FirestoreTransactionMode::ReadWriteRetry(id));
        }
        let mut tx = db
            .begin_transaction_with_options(options)
            .await
            .map_err(map)?;
        let id = tx.transaction_id().clone();
        let reads = db
            .clone_with_consistency_selector(FirestoreConsistencySelector::Transaction(id.clone()));
        let failed = match f(reads, &mut tx, ctx.clone()).await {
            Ok(value) => match tx.commit().await {
                Ok(done) => return Ok((value, done.commit_time)),
                Err(FirestoreError::DatabaseError(e)) if e.retry_possible => {
                    map(FirestoreError::DatabaseError(e))
                }
                Err(e) => return Err(map(e)),
            },
            Err(e) => {
                // Reads hold locks: release them now rather than when the transaction expires.
                let _ = tx.rollback().await;
                match e {
                    BackoffError::Permanent(_) => return Err(untx(e)),
                    BackoffError::Transient { .. } => untx(e),
                }
            }
        };
        let Some(delay) = delays.next() else {
            return Err(failed);
        };
        tokio::time::sleep(delay).await;
        retry_of = Some(id);
    }
}

/// Commits `writes` atomically, outside a transaction (one `Commit` call, no read): for writes
/// whose preconditions carry the whole check. `Ok(None)` when a precondition did not hold (the
/// document changed or is gone), and nothing was written.
pub(crate) async fn commit_if(
    db: &FirestoreDb,
    writes: FirestoreTransactionData,
) -> Result<Option<FirestoreInstant>> {
    let request = CommitRequest {
        database: db.get_database_path().clone(),
        writes: writes.writes().clone(),
        transaction: Vec::new(),
        request_options: None,
    };
    match db.client().get().commit(request).await {
        Ok(done) => Ok(done
            .into_inner()
            .commit_time
            .and_then(|t| FirestoreInstant::new(t.seconds, t.nanos).ok())),
        Err(status) if matches!(status.code(), Code::FailedPrecondition | Code::NotFound) => {
            Ok(None)
        }
        Err(status) => Err(map(FirestoreError::from(status))),
    }
}

/// An empty set of writes for [`commit_if`].
pub(crate) fn writes(db: &FirestoreDb) -> FirestoreTransactionData {
    FirestoreTransactionData::new(
        Vec::new(),
        db.get_documents_path().clone(),
        tracing::Span::none(),
        Vec::new(),
    )
}
