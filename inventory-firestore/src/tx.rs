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
use firestore::gcloud_sdk::google::firestore::v1::{
    BatchGetDocumentsRequest, BeginTransactionRequest, CommitRequest, Document, RollbackRequest,
    TransactionOptions, Write, batch_get_documents_request, batch_get_documents_response,
    transaction_options,
};
use firestore::gcloud_sdk::tonic::{Code, Status};
use firestore::{
    FirestoreConsistencySelector, FirestoreDb, FirestoreInstant, FirestoreTransactionData,
};
use firestore::{FirestoreTransactionOps, FirestoreWritePrecondition};
use futures::future::BoxFuture;
use inventory_core::{Error, Result};
use uuid::Uuid;

use crate::docs::NotificationDoc;

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
            Some(version)
                if doc.status == inventory_core::NotificationStatus::Pending
                    && doc.lease_owner.is_some() =>
            {
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

/// The writes of a transaction (or of a plain commit), queued with `add_to_transaction`.
pub(crate) type Tx = FirestoreTransactionData;

/// Runs `f` in a read-write transaction and commits it; after contention (`ABORTED`, or a
/// transient error inside `f`) the whole transaction runs again, at most `max_retries` times,
/// with exponential backoff, as the crate's own runner does. Returns the commit time too: the
/// version of every document the transaction wrote.
///
/// The documents named in `first` (full paths) are read by the call that begins the
/// transaction, and handed to `f` in that order (`None`: missing): one round trip fewer than
/// `BeginTransaction` followed by a read. With no `first`, the transaction begins on its own.
/// `f` reads anything else through the database handle it gets, which reads in the
/// transaction.
pub(crate) async fn run<C, T, F>(
    db: &FirestoreDb,
    max_retries: usize,
    first: &[String],
    ctx: C,
    f: F,
) -> Result<(T, Option<FirestoreInstant>)>
where
    C: Clone + Send + Sync,
    T: Send,
    F: for<'b> Fn(
            FirestoreDb,
            &'b mut Tx,
            Vec<Option<Document>>,
            C,
        ) -> BoxFuture<'b, std::result::Result<T, BackoffError<TxError>>>
        + Send
        + Sync,
{
    // The crate's own first delay (half a second): measured with two processes ordering one
    // product, 100 ms gave 21-38 orders/s and 500 ms 109-113, since a retry that comes back
    // at once finds the other process's next order holding the document again.
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(500))
        .with_max_delay(Duration::from_secs(5))
        .with_factor(1.5)
        .with_jitter()
        .with_max_times(max_retries)
        .build();
    let mut retry_of = Vec::new();
    loop {
        let failed = match begin(db, first, std::mem::take(&mut retry_of)).await {
            Err(e) if retryable(&e) => map(e),
            Err(e) => return Err(map(e)),
            Ok((id, docs)) => {
                let mut tx = writes(db, id.clone());
                let reads = db.clone_with_consistency_selector(
                    FirestoreConsistencySelector::Transaction(id.clone()),
                );
                retry_of = id.clone();
                match f(reads, &mut tx, docs, ctx.clone()).await {
                    Ok(value) => match commit_rpc(db, id, tx.writes().clone()).await {
                        Ok(time) => return Ok((value, time)),
                        Err(status) => {
                            let e = FirestoreError::from(status);
                            if !is_contention(&e) {
                                return Err(map(e));
                            }
                            map(e)
                        }
                    },
                    Err(e) => {
                        // Reads hold locks: release them now, not when the transaction expires.
                        let rollback = RollbackRequest {
                            database: db.get_database_path().clone(),
                            transaction: id,
                            request_options: None,
                        };
                        let _ = db.client().get().rollback(rollback).await;
                        match e {
                            BackoffError::Permanent(_) => return Err(untx(e)),
                            BackoffError::Transient { .. } => untx(e),
                        }
                    }
                }
            }
        };
        let Some(delay) = delays.next() else {
            return Err(failed);
        };
        tokio::time::sleep(delay).await;
    }
}

/// A commit that failed for contention (or an answer lost on its way), which the crate's
/// runner retries too.
fn is_contention(e: &FirestoreError) -> bool {
    matches!(e, FirestoreError::DatabaseError(e) if e.retry_possible)
}

/// Begins a read-write transaction (retrying `retry_of`, if not empty), reading `first` with
/// the same call when there is anything to read. Returns its id and the documents read.
async fn begin(
    db: &FirestoreDb,
    first: &[String],
    retry_of: Vec<u8>,
) -> std::result::Result<(Vec<u8>, Vec<Option<Document>>), FirestoreError> {
    let options = TransactionOptions {
        mode: Some(transaction_options::Mode::ReadWrite(
            transaction_options::ReadWrite {
                retry_transaction: retry_of,
                ..Default::default()
            },
        )),
    };
    if first.is_empty() {
        let begun = db
            .client()
            .get()
            .begin_transaction(BeginTransactionRequest {
                database: db.get_database_path().clone(),
                options: Some(options),
                request_options: None,
            })
            .await?;
        return Ok((begun.into_inner().transaction, Vec::new()));
    }
    let request = BatchGetDocumentsRequest {
        database: db.get_database_path().clone(),
        documents: first.to_vec(),
        consistency_selector: Some(
            batch_get_documents_request::ConsistencySelector::NewTransaction(options),
        ),
        ..Default::default()
    };
    let mut answers = db
        .client()
        .get()
        .batch_get_documents(request)
        .await?
        .into_inner();
    let mut id = Vec::new();
    let mut found = HashMap::new();
    while let Some(answer) = answers.message().await? {
        if !answer.transaction.is_empty() {
            id = answer.transaction;
        }
        if let Some(batch_get_documents_response::Result::Found(doc)) = answer.result {
            found.insert(doc.name.clone(), doc);
        }
    }
    if id.is_empty() {
        return Err(FirestoreError::from(Status::internal(
            "the read that began a transaction returned no transaction",
        )));
    }
    Ok((id, first.iter().map(|path| found.remove(path)).collect()))
}

/// One `Commit` call: of a transaction (`transaction` not empty) or on its own. Returns the
/// commit time.
async fn commit_rpc(
    db: &FirestoreDb,
    transaction: Vec<u8>,
    writes: Vec<Write>,
) -> std::result::Result<Option<FirestoreInstant>, Status> {
    let request = CommitRequest {
        database: db.get_database_path().clone(),
        writes,
        transaction,
        request_options: None,
    };
    let done = db.client().get().commit(request).await?.into_inner();
    Ok(done
        .commit_time
        .and_then(|t| FirestoreInstant::new(t.seconds, t.nanos).ok()))
}

/// Commits `writes` atomically, outside a transaction (one `Commit` call, no read): for writes
/// whose preconditions carry the whole check. `Ok(None)` when a precondition did not hold (the
/// document changed or is gone), and nothing was written.
pub(crate) async fn commit_if(db: &FirestoreDb, writes: Tx) -> Result<Option<FirestoreInstant>> {
    match commit_rpc(db, Vec::new(), writes.writes().clone()).await {
        Ok(time) => Ok(time),
        Err(status) if matches!(status.code(), Code::FailedPrecondition | Code::NotFound) => {
            Ok(None)
        }
        Err(status) => Err(map(FirestoreError::from(status))),
    }
}

/// An empty set of writes: of the transaction `transaction`, or (empty id) for [`commit_if`].
pub(crate) fn writes(db: &FirestoreDb, transaction: Vec<u8>) -> Tx {
    Tx::new(
        transaction,
        db.get_documents_path().clone(),
        tracing::Span::none(),
        Vec::new(),
    )
}

/// What leaves a transaction: a business refusal (never retried) or a Firestore error.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TxError {
    #[error("{0}")]
    Abort(Error),
    #[error("{0}")]
    Store(FirestoreError),
}

pub(crate) type TxResult<T> = std::result::Result<T, BackoffError<TxError>>;

pub(crate) fn retryable(e: &FirestoreError) -> bool {
    match e {
        FirestoreError::DatabaseError(db) => db.retry_possible,
        FirestoreError::NetworkError(_) => true,
        _ => false,
    }
}

/// A Firestore error inside a transaction: contention and network trouble are retried.
pub(crate) fn fs(e: FirestoreError) -> BackoffError<TxError> {
    if retryable(&e) {
        BackoffError::transient(TxError::Store(e))
    } else {
        BackoffError::permanent(TxError::Store(e))
    }
}

/// A transaction step's error outside a transaction.
pub(crate) fn untx(e: BackoffError<TxError>) -> Error {
    let inner = match e {
        BackoffError::Permanent(e) => e,
        BackoffError::Transient { err, .. } => err,
    };
    match inner {
        TxError::Abort(e) => e,
        TxError::Store(e) => map(e),
    }
}

/// A domain rule's verdict inside a transaction: a refusal ends it (never retried).
pub(crate) fn checked<T>(result: Result<T>) -> TxResult<T> {
    result.map_err(|e| BackoffError::permanent(TxError::Abort(e)))
}

pub(crate) fn abort<T>(e: Error) -> TxResult<T> {
    checked(Err(e))
}

/// A document read by the call that began a transaction (see [`run`]), as `T`.
pub(crate) fn parse<T: for<'de> serde::Deserialize<'de>>(doc: &Document) -> TxResult<T> {
    FirestoreDb::deserialize_doc_to(doc).map_err(fs)
}

/// Reads a document inside a transaction.
pub(crate) async fn read<T>(
    db: &FirestoreDb,
    col: &str,
    id: impl AsRef<str> + Send,
) -> TxResult<Option<T>>
where
    T: for<'de> serde::Deserialize<'de> + Send,
{
    db.fluent()
        .select()
        .by_id_in(col)
        .obj()
        .one(id)
        .await
        .map_err(fs)
}

/// What a transactional write requires of the document it writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Precondition {
    /// Nothing: create or replace.
    Any,
    /// The document exists (an update; a concurrent delete fails the commit).
    Exists,
    /// The document does not exist (a create; a concurrent create fails the commit).
    Missing,
}

/// Queues a write in a transaction under a [`Precondition`]; `fields` limits the
/// write to those fields (a field mask), leaving every other field of the document as it is.
/// Only documents that are wholly ours (or new) are written without a mask.
pub(crate) fn write<T>(
    db: &FirestoreDb,
    tx: &mut impl FirestoreTransactionOps,
    col: &str,
    id: impl AsRef<str> + Send,
    doc: &T,
    precondition: Precondition,
    fields: Option<&[&str]>,
) -> TxResult<()>
where
    T: serde::Serialize + for<'de> serde::Deserialize<'de> + Sync + Send,
{
    let update = db.fluent().update();
    let update = match fields {
        Some(fields) => update.fields(fields.iter().copied()),
        None => update,
    };
    let update = update.in_col(col);
    let update = match precondition {
        Precondition::Any => update,
        Precondition::Exists => update.precondition(FirestoreWritePrecondition::Exists(true)),
        Precondition::Missing => update.precondition(FirestoreWritePrecondition::Exists(false)),
    };
    update
        .document_id(id)
        .object(doc)
        .add_to_transaction(tx)
        .map_err(fs)?;
    Ok(())
}

/// Maps a Firestore error onto the core kinds.
pub(crate) fn map(e: FirestoreError) -> Error {
    match e {
        FirestoreError::ErrorInTransaction(inner) => match inner.source.downcast::<TxError>() {
            Ok(tx) => match *tx {
                TxError::Abort(e) => e,
                TxError::Store(e) => map(e),
            },
            Err(other) => Error::other(other),
        },
        // Its text names the emulator's or the project's internals (partition, path): logged,
        // not answered.
        FirestoreError::DataConflictError(e) => {
            tracing::debug!(error = %e, "a write found its document existing");
            Error::Conflict("the record exists already".into())
        }
        FirestoreError::DataNotFoundError(e) => Error::NotFound(e.to_string()),
        e if retryable(&e) => Error::unavailable(e),
        e => Error::other(e),
    }
}
