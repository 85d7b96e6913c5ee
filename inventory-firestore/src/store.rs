use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use firestore::errors::{BackoffError, FirestoreError};
use firestore::gcloud_sdk::google::firestore::v1::Document;
use firestore::{
    FirestoreDb, FirestoreInstant, FirestoreListenEvent, FirestoreListener,
    FirestoreListenerTarget, FirestoreMemListenStateStorage, FirestoreTransactionOps,
    FirestoreWritePrecondition,
};
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use inventory_core::handoff::{Handoff, HandoffSlot};
use inventory_core::*;
use tokio::sync::watch;
use uuid::Uuid;

use crate::beacon::{BEACON_ID, Beacon, BeaconDoc};
use crate::commit::{self, Leased, Tx};
use crate::docs::*;
use crate::shards::{MAX_SHARDS, Shards, spread};

/// Keyset pagination on the fluent query builder: continue after a cursor when there is one.
trait StartAfter: Sized {
    fn start_after(self, cursor: Option<firestore::FirestoreQueryCursor>) -> Self;
}

impl StartAfter for firestore::select_builder::FirestoreSelectDocBuilder<'_, FirestoreDb> {
    fn start_after(self, cursor: Option<firestore::FirestoreQueryCursor>) -> Self {
        match cursor {
            Some(cursor) => self.start_at(cursor),
            None => self,
        }
    }
}

/// Where our orders (by `order_id`, newest first) continue after a cursor of the merged list:
/// after its id when it is one of ours; when it is one of the original's, after every id of a
/// later millisecond (our ids are UUID v7, time first), the exact cut made by the caller.
fn ours_after((at, id): (DateTime<Utc>, Uuid)) -> firestore::FirestoreQueryCursor {
    if legacy_order_doc_id(id).is_none() {
        return after_value(id.to_string());
    }
    let ms = u64::try_from(at.timestamp_millis().saturating_add(1)).unwrap_or_default();
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&ms.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    after_value(Uuid::from_bytes(bytes).to_string())
}

/// A cursor after this value of the (single) field a query is ordered by.
fn after_value(value: impl Into<firestore::FirestoreValue>) -> firestore::FirestoreQueryCursor {
    firestore::FirestoreQueryCursor::AfterValue(vec![value.into()])
}

/// Collection names. The defaults are the original service's (`Users`, `Products`, `Orders`)
/// and ours (`Notifications`, `IdempotencyKeys`, `OutboxBeacon`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collections {
    /// Users, by normalised email.
    pub users: String,
    /// Products, by product id.
    pub products: String,
    /// Orders, by order id.
    pub orders: String,
    /// The outbox.
    pub notifications: String,
    /// Idempotency keys, by `user_id:key`.
    pub idempotency_keys: String,
    /// The one document whose changes wake the dispatchers of other processes.
    pub beacon: String,
}

impl Default for Collections {
    fn default() -> Self {
        Collections {
            users: "Users".into(),
            products: "Products".into(),
            orders: "Orders".into(),
            notifications: "Notifications".into(),
            idempotency_keys: "IdempotencyKeys".into(),
            beacon: "OutboxBeacon".into(),
        }
    }
}

/// How to connect.
#[derive(Debug, Clone)]
pub struct FirestoreConfig {
    /// The Google Cloud project (`GCP_PROJECT_ID`).
    pub project_id: String,
    /// Collection names.
    pub collections: Collections,
    /// Retries of a transaction that lost a race with another process (default 30).
    pub max_retries: usize,
    /// Listen to the outbox for wake-ups (default true).
    pub listen: bool,
    /// Failed notifications read per page when retrying all of them (default 500).
    pub page_size: u32,
}

impl FirestoreConfig {
    /// Defaults for a project.
    pub fn new(project_id: impl Into<String>) -> Self {
        FirestoreConfig {
            project_id: project_id.into(),
            collections: Collections::default(),
            max_retries: 30,
            listen: true,
            page_size: 500,
        }
    }
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

/// The outcome of claiming one notification.
enum Claim {
    Taken(Box<NotificationDoc>),
    Skipped,
    /// The document cannot be read as a notification; it was marked failed.
    Broken(String, String),
}

/// The fields written to park an unreadable notification.
#[derive(serde::Serialize, serde::Deserialize)]
struct BrokenDoc {
    status: String,
    last_error: String,
}

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

/// The fields of an order that confirming it writes ([`ORDER_STATUS_FIELDS`]).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct OrderStatusDoc {
    status: String,
    updated_at: std::time::SystemTime,
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

/// The stock shards of the product stored under `product_doc`.
fn shards_of<'a>(
    db: &'a FirestoreDb,
    cols: &Collections,
    product_doc: &str,
    count: u32,
) -> TxResult<Shards<'a>> {
    let parent = db
        .parent_path(cols.products.as_str(), product_doc)
        .map_err(fs)?
        .to_string();
    Ok(Shards { db, parent, count })
}

fn abort<T>(e: Error) -> TxResult<T> {
    Err(BackoffError::permanent(TxError::Abort(e)))
}

/// A document read by the call that began a transaction (see [`commit::run`]), as `T`.
fn parse<T: for<'de> serde::Deserialize<'de>>(doc: &Document) -> TxResult<T> {
    FirestoreDb::deserialize_doc_to(doc).map_err(fs)
}

/// Reads a document inside a transaction.
async fn read<T>(db: &FirestoreDb, col: &str, id: impl AsRef<str> + Send) -> TxResult<Option<T>>
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

/// Queues a write in a transaction. `must_exist` adds a precondition; `fields` limits the
/// write to those fields (a field mask), leaving every other field of the document as it is.
/// Only documents that are wholly ours (or new) are written without a mask.
fn write<T>(
    db: &FirestoreDb,
    tx: &mut impl FirestoreTransactionOps,
    col: &str,
    id: impl AsRef<str> + Send,
    doc: &T,
    must_exist: Option<bool>,
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
    let update = match must_exist {
        Some(exists) => update.precondition(FirestoreWritePrecondition::Exists(exists)),
        None => update,
    };
    update
        .document_id(id)
        .object(doc)
        .add_to_transaction(tx)
        .map_err(fs)?;
    Ok(())
}

/// Whether a listen event is the beacon raised by another process (this one wakes its own
/// dispatcher directly). An unreadable beacon wakes it too: a spurious claim costs a query.
fn raised_elsewhere(event: &FirestoreListenEvent, me: &str) -> bool {
    let FirestoreListenEvent::DocumentChange(change) = event else {
        return false;
    };
    change.document.as_ref().is_some_and(|doc| {
        FirestoreDb::deserialize_doc_to::<BeaconDoc>(doc).map_or(true, |b| b.by != me)
    })
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

/// The Firestore store.
pub struct FirestoreStore {
    db: FirestoreDb,
    cols: Arc<Collections>,
    max_retries: usize,
    page_size: u32,
    signal: watch::Sender<u64>,
    product_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Shard counts of the products seen sharded, to lock a shard rather than the product.
    sharded: Mutex<HashMap<String, u32>>,
    user_index: tokio::sync::Mutex<UserIndex>,
    legacy_orders: tokio::sync::Mutex<LegacyOrders>,
    listener:
        tokio::sync::Mutex<Option<FirestoreListener<FirestoreDb, FirestoreMemListenStateStorage>>>,
    /// The local dispatcher new confirmations are handed to, if one runs.
    handoff: HandoffSlot,
    /// The notifications leased here, with their versions, to record outcomes without a read.
    leased: Leased,
    /// Wakes other processes' dispatchers.
    beacon: Beacon,
}

impl std::fmt::Debug for FirestoreStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FirestoreStore")
            .field("collections", &self.cols)
            .finish_non_exhaustive()
    }
}

const LISTEN_TARGET: u32 = 17;

/// The field path of a document's name (its id), for ordering by id.
const DOC_NAME: &str = "__name__";

/// How many of the original's orders are read for one buyer's list.
const LEGACY_ORDERS_PER_USER: u32 = 1000;

/// How long a miss may trust the index of user ids before listing them again.
const LEGACY_INDEX_TTL: Duration = Duration::from_secs(5);

/// The document id of an order: ours are their UUID; the original's automatic ids are packed
/// into a version-8 UUID and unpacked here.
fn order_doc_id(id: Uuid) -> String {
    legacy_order_doc_id(id).unwrap_or_else(|| id.to_string())
}

/// The original's orders (no `order_id`), newest first: they cannot be selected by a query
/// (Firestore cannot filter on a missing field, and the emulator refuses descending id scans),
/// so they are found by a scan of order ids, at most once per [`LEGACY_INDEX_TTL`].
#[derive(Default)]
struct LegacyOrders {
    built: Option<std::time::Instant>,
    newest_first: Vec<(DateTime<Utc>, String)>,
}

/// Lower-cased email -> document id, for users the original stored under the address as typed.
#[derive(Default)]
struct UserIndex {
    built: Option<std::time::Instant>,
    by_lower: HashMap<String, String>,
}

impl FirestoreStore {
    /// Connects (to the emulator when `FIRESTORE_EMULATOR_HOST` is set).
    pub async fn connect(config: FirestoreConfig) -> Result<Self> {
        if config.project_id.trim().is_empty() {
            return Err(Error::invalid("GCP_PROJECT_ID", "must not be empty"));
        }
        let db = FirestoreDb::new(config.project_id.clone())
            .await
            .map_err(map)?;
        let beacon = Beacon::new(db.clone(), config.collections.beacon.clone());
        let store = FirestoreStore {
            db,
            cols: Arc::new(config.collections),
            max_retries: config.max_retries,
            page_size: config.page_size.max(1),
            signal: watch::channel(0).0,
            product_locks: Mutex::new(HashMap::new()),
            sharded: Mutex::new(HashMap::new()),
            user_index: tokio::sync::Mutex::new(UserIndex::default()),
            legacy_orders: tokio::sync::Mutex::new(LegacyOrders::default()),
            listener: tokio::sync::Mutex::new(None),
            handoff: HandoffSlot::default(),
            leased: Leased::default(),
            beacon,
        };
        if config.listen {
            store.start_listener().await?;
        }
        Ok(store)
    }

    /// Connects to `firestore://PROJECT_ID` (or `firestore://` with `GCP_PROJECT_ID` set).
    pub async fn connect_url(url: &str) -> Result<Self> {
        let project = url
            .strip_prefix("firestore://")
            .ok_or_else(|| Error::invalid("DATABASE_URL", "expected firestore://PROJECT_ID"))?
            .trim_end_matches('/');
        let project = if project.is_empty() {
            std::env::var("GCP_PROJECT_ID")
                .map_err(|_| Error::invalid("GCP_PROJECT_ID", "firestore:// needs a project id"))?
        } else {
            project.to_owned()
        };
        Self::connect(FirestoreConfig::new(project)).await
    }

    /// The underlying client, for tools.
    pub fn db(&self) -> &FirestoreDb {
        &self.db
    }

    /// Stops the listen stream.
    pub async fn close(&self) {
        if let Some(mut l) = self.listener.lock().await.take() {
            let _ = l.shutdown().await;
        }
    }

    async fn start_listener(&self) -> Result<()> {
        let mut listener = self
            .db
            .create_listener(FirestoreMemListenStateStorage::new())
            .await
            .map_err(map)?;
        // The beacon only: a target on the outbox itself cost the emulator a query for every
        // notification written, handed ones included (see the `beacon` module).
        self.db
            .fluent()
            .select()
            .by_id_in(self.cols.beacon.as_str())
            .batch_listen([BEACON_ID])
            .add_target(FirestoreListenerTarget::new(LISTEN_TARGET), &mut listener)
            .map_err(map)?;
        let signal = self.signal.clone();
        let me = self.beacon.process().to_owned();
        listener
            .start(move |event| {
                if raised_elsewhere(&event, &me) {
                    signal.send_modify(|n| *n = n.wrapping_add(1));
                }
                async { Ok(()) }
            })
            .await
            .map_err(map)?;
        *self.listener.lock().await = Some(listener);
        Ok(())
    }

    /// New work is due for a claim: wakes the dispatchers here and, through the beacon, in
    /// other processes.
    fn bump(&self) {
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
        self.beacon.raise();
    }

    fn product_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.product_locks.lock().expect("product lock map");
        if locks.len() > 10_000 {
            locks.retain(|_, l| Arc::strong_count(l) > 1);
        }
        locks.entry(id.to_owned()).or_default().clone()
    }

    /// The in-process lock for an order of `product`, and the shard to take from first.
    /// Orders for one document wait for each other here rather than in Firestore (where
    /// contending transactions time out after seconds and retry). A sharded product is locked
    /// per shard: a free shard is taken, starting at a random one.
    async fn stock_guard(&self, product: &str) -> (tokio::sync::OwnedMutexGuard<()>, u32) {
        let shards = self
            .sharded
            .lock()
            .expect("shard map")
            .get(product)
            .copied()
            .unwrap_or(0);
        if shards == 0 {
            return (self.product_lock(product).lock_owned().await, 0);
        }
        let start = rand::random_range(0..shards);
        for i in 0..shards {
            let k = (start + i) % shards;
            if let Ok(guard) = self
                .product_lock(&format!("{product}#{k}"))
                .try_lock_owned()
            {
                return (guard, k);
            }
        }
        let lock = self.product_lock(&format!("{product}#{start}"));
        (lock.lock_owned().await, start)
    }

    /// Remembers how `product` is stored (for [`FirestoreStore::stock_guard`]).
    fn note_shards(&self, product: &str, shards: Option<u32>) {
        let mut map = self.sharded.lock().expect("shard map");
        match shards {
            Some(n) if n > 0 => {
                if map.len() > 10_000 {
                    map.clear();
                }
                map.insert(product.to_owned(), n);
            }
            _ => {
                map.remove(product);
            }
        }
    }

    /// A product as the API shows it: a sharded product's quantity is the sum of its shards.
    async fn with_true_stock(&self, doc: ProductDoc) -> Result<Product> {
        let shards = doc.shard_count();
        let doc_key = doc.fs_id.clone().unwrap_or_default();
        let mut product = doc.into_product()?;
        if let Some(n) = shards {
            let total: i64 = shards_of(&self.db, &self.cols, &doc_key, n)
                .map_err(untx)?
                .read_all()
                .await
                .map_err(untx)?
                .iter()
                .sum();
            product.quantity = u64::try_from(total).map_err(Error::other)?;
        }
        self.note_shards(product.id.as_str(), shards);
        Ok(product)
    }

    /// Splits `id`'s stock over `shards` documents (or re-splits a sharded one), in one
    /// transaction: safe while orders flow (they read the product document, so they retry
    /// around it). The product document's `quantity` and `status` keep the total as a snapshot
    /// for the original's clients. `shards` is 1 to [`MAX_SHARDS`].
    pub async fn shard_product(
        &self,
        id: &ProductId,
        shards: u32,
        now: DateTime<Utc>,
    ) -> Result<Product> {
        if shards == 0 || shards > MAX_SHARDS {
            return Err(Error::invalid(
                "shards",
                format!("must be 1 to {MAX_SHARDS}"),
            ));
        }
        self.reshard(id, Some(shards), now).await
    }

    /// Puts a sharded product's stock back into its document (`quantity`) and deletes the
    /// shards. A product that is not sharded is returned unchanged.
    pub async fn unshard_product(&self, id: &ProductId, now: DateTime<Utc>) -> Result<Product> {
        self.reshard(id, Some(0), now).await
    }

    /// Writes a sharded product's true total into its document's `quantity` and `status`
    /// (what the original's clients read): run it now and then to keep that snapshot close.
    /// Orders never write the product document of a sharded product.
    pub async fn sync_stock_snapshot(&self, id: &ProductId, now: DateTime<Utc>) -> Result<Product> {
        self.reshard(id, None, now).await
    }

    /// Moves `id`'s stock into `to` shards (0: into the document), or with `None` keeps the
    /// shards as they are and only writes the total into the document.
    async fn reshard(
        &self,
        id: &ProductId,
        to: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Product> {
        let doc = self
            .tx(
                (self.cols.clone(), id.clone()),
                move |db, tx, (cols, id)| {
                    async move {
                        let key = doc_id(id.as_str());
                        let Some(mut doc): Option<ProductDoc> =
                            read(&db, cols.products.as_str(), key.as_str()).await?
                        else {
                            return abort(Error::NotFound(format!("product {id}")));
                        };
                        let before = doc.shard_count().unwrap_or(0);
                        let shards = to.unwrap_or(before);
                        let total = if before > 0 {
                            let old = shards_of(&db, &cols, &key, before)?;
                            let total: i64 = old.read_all().await?.iter().sum();
                            for k in shards..before {
                                old.delete(tx, k)?;
                            }
                            total
                        } else {
                            doc.quantity
                        };
                        if to.is_some() && shards > 0 {
                            let new = shards_of(&db, &cols, &key, shards)?;
                            for (k, units) in spread(total, shards).into_iter().enumerate() {
                                new.write(tx, k as u32, units)?;
                            }
                        }
                        doc.set_quantity(total, now);
                        doc.shards = Some(shards);
                        write(
                            &db,
                            tx,
                            cols.products.as_str(),
                            key.as_str(),
                            &doc,
                            Some(true),
                            Some(&PRODUCT_SHARD_FIELDS),
                        )?;
                        Ok(doc)
                    }
                    .boxed()
                },
            )
            .await?;
        self.note_shards(id.as_str(), doc.shard_count());
        doc.into_product()
    }

    /// Runs `f` in a transaction with retries. The transaction may run several times, so `f`
    /// gets its inputs as an owned, cloned context.
    async fn tx<C, T, F>(&self, ctx: C, f: F) -> Result<T>
    where
        C: Clone + Send + Sync + 'static,
        T: Send,
        F: for<'b> Fn(FirestoreDb, &'b mut Tx, C) -> BoxFuture<'b, TxResult<T>> + Send + Sync,
    {
        let run = self.tx_reading(&[], ctx, move |db, tx, _, c| f(db, tx, c));
        Ok(run.await?.0)
    }

    /// [`FirestoreStore::tx`] that reads the documents at the paths `first` (see
    /// [`FirestoreStore::path`]) with the call that begins it and hands them to `f`, and
    /// returns the commit time as well: the version of what it wrote.
    async fn tx_reading<C, T, F>(
        &self,
        first: &[String],
        ctx: C,
        f: F,
    ) -> Result<(T, Option<FirestoreInstant>)>
    where
        C: Clone + Send + Sync + 'static,
        T: Send,
        F: for<'b> Fn(
                FirestoreDb,
                &'b mut Tx,
                Vec<Option<Document>>,
                C,
            ) -> BoxFuture<'b, TxResult<T>>
            + Send
            + Sync,
    {
        commit::run(&self.db, self.max_retries, first, ctx, f).await
    }

    /// The full path of a document, as the first reads of [`commit::run`] name them.
    fn path(&self, col: &str, id: &str) -> String {
        format!("{}/{col}/{id}", self.db.get_documents_path())
    }

    async fn get<T>(&self, col: &str, id: &str) -> Result<Option<T>>
    where
        T: for<'de> serde::Deserialize<'de> + Send,
    {
        self.db
            .fluent()
            .select()
            .by_id_in(col)
            .obj::<T>()
            .one(id)
            .await
            .map_err(map)
    }

    async fn notification_doc(
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

    /// Changes a leased notification; [`Error::LeaseLost`] if `owner` lost the lease.
    ///
    /// A notification leased by this store is changed with one commit and no read: its write
    /// requires the document to be unchanged since the lease was written (see the `commit`
    /// module). Otherwise, or when that precondition fails, in a transaction that reads it
    /// first.
    async fn with_lease(
        &self,
        id: Uuid,
        owner: &str,
        change: Arc<dyn Fn(&mut NotificationDoc) + Send + Sync>,
        confirm_order_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let order_status = confirm_order_at.map(|now| OrderStatusDoc {
            status: "confirmed".into(),
            updated_at: sys(now),
        });
        if let Some((mut n, version)) = self.leased.take(id)
            && n.status == "pending"
            && n.lease_owner.as_deref() == Some(owner)
        {
            change(&mut n);
            let mut writes = commit::writes(&self.db, Vec::new());
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
            if let Some(version) = commit::commit_if(&self.db, writes).await? {
                self.leased.remember(id, n, Some(version));
                return Ok(());
            }
            // Changed since (cancelled, reclaimed after the lease ran out, edited): the
            // transaction below reads what it is now.
        }
        let first = [self.path(&self.cols.notifications, &id.to_string())];
        let ctx = (self.cols.clone(), owner.to_owned(), change, order_status);
        let (n, version) = self
            .tx_reading(
                &first,
                ctx,
                move |db, tx, docs, (cols, owner, change, order_status)| {
                    async move {
                        let doc = docs.into_iter().next().flatten();
                        let Some(mut n) = doc.map(|d| parse::<NotificationDoc>(&d)).transpose()?
                        else {
                            return abort(Error::NotFound(format!("notification {id}")));
                        };
                        if n.status != "pending" || n.lease_owner.as_deref() != Some(owner.as_str())
                        {
                            return abort(Error::LeaseLost(id));
                        }
                        change(&mut n);
                        write(
                            &db,
                            tx,
                            cols.notifications.as_str(),
                            id.to_string(),
                            &n,
                            None,
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
}

/// Confirms the order of a confirmation that was just sent, by field mask. The order is not
/// read: its confirmation was pending and leased to the sender, and a cancel cancels the
/// pending confirmation in its own transaction, so the order is not cancelled (it is pending,
/// or confirmed already). Other messages have no order.
fn confirm(
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
            Some(true),
            Some(&ORDER_STATUS_FIELDS),
        )?;
    }
    Ok(())
}

impl FirestoreStore {
    /// An order cursor as the place of its order in the merged list: (time, id).
    async fn order_cursor(&self, page: &Page) -> Result<Option<(DateTime<Utc>, Uuid)>> {
        let Some(id) = page.after_order()? else {
            return Ok(None);
        };
        match self.get_order(id).await? {
            Some(order) => Ok(Some((order.created_at, order.id))),
            None => Err(Error::invalid(
                "after",
                format!("no order {id} to continue after"),
            )),
        }
    }

    /// A cursor after document `id` of `collection`, for a list ordered by document name.
    fn after_doc(&self, collection: &str, id: &str) -> firestore::FirestoreQueryCursor {
        after_value(firestore::FirestoreReference(format!(
            "{}/{collection}/{id}",
            self.db.get_documents_path()
        )))
    }

    /// The user document of an address, whatever case the original stored it in: first the
    /// normalised id (ours, and the original's lower-case ones), then the index of ids by
    /// lower-cased address, listed again on a miss when older than [`LEGACY_INDEX_TTL`].
    async fn find_user_doc(&self, email: &Email) -> Result<Option<UserDoc>> {
        if let Some(doc) = self
            .get::<UserDoc>(&self.cols.users, &doc_id(email.as_str()))
            .await?
        {
            return Ok(Some(doc));
        }
        self.find_user_in_index(email).await
    }

    /// The user document stored under another form of the address (see [`UserIndex`]).
    async fn find_user_in_index(&self, email: &Email) -> Result<Option<UserDoc>> {
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
    async fn adopt(&self, doc: &UserDoc, user: &User) -> Result<()> {
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
    async fn legacy_order_ids(&self) -> Result<Vec<(DateTime<Utc>, String)>> {
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

    async fn user_doc_by_id(&self, id: Uuid) -> Result<Option<UserDoc>> {
        let docs: Vec<UserDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.users.as_str())
            .filter(|q| q.for_all([q.field("user_id").eq(id.to_string())]))
            .limit(1)
            .obj()
            .query()
            .await
            .map_err(map)?;
        Ok(docs.into_iter().next())
    }
}

#[async_trait]
impl UserStore for FirestoreStore {
    async fn create_user(&self, user: &User) -> Result<()> {
        // One account per address, also against the original's ids in another form (the
        // insert below refuses the normalised id itself).
        if self.find_user_in_index(&user.email).await?.is_some() {
            return Err(Error::AlreadyExists("email already registered".into()));
        }
        let result = self
            .db
            .fluent()
            .insert()
            .into(self.cols.users.as_str())
            .document_id(doc_id(user.email.as_str()))
            .object(&UserDoc::from_user(user))
            .execute::<UserDoc>()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(FirestoreError::DataConflictError(_)) => {
                Err(Error::AlreadyExists("email already registered".into()))
            }
            Err(e) => Err(map(e)),
        }
    }

    async fn find_user_by_email(&self, email: &Email) -> Result<Option<User>> {
        let Some(doc) = self.find_user_doc(email).await? else {
            return Ok(None);
        };
        let user = doc.clone().into_user()?;
        self.adopt(&doc, &user).await?;
        Ok(Some(user))
    }

    async fn get_user(&self, id: Uuid) -> Result<Option<User>> {
        self.user_doc_by_id(id)
            .await?
            .map(UserDoc::into_user)
            .transpose()
    }

    async fn set_role(&self, email: &Email, role: Role) -> Result<User> {
        let role = role.as_str().to_owned();
        self.change_user(
            email,
            Arc::new(move |doc: &mut UserDoc| doc.role = Some(role.clone())),
            &["user_id", "role", "token_version"],
            true,
        )
        .await
    }

    async fn revoke_tokens(&self, email: &Email) -> Result<User> {
        self.change_user(
            email,
            Arc::new(|_: &mut UserDoc| {}),
            &["user_id", "token_version"],
            true,
        )
        .await
    }

    async fn mark_email_verified(&self, email: &Email) -> Result<User> {
        self.change_user(
            email,
            Arc::new(|doc: &mut UserDoc| doc.email_verified = Some(true)),
            &["user_id", "email_verified"],
            false,
        )
        .await
    }
}

impl FirestoreStore {
    /// Changes a user in a transaction, and raises its `token_version` when `revoke`, writing
    /// only `fields` (the derived id of the original's users is written too, so it stays
    /// stable).
    async fn change_user(
        &self,
        email: &Email,
        change: Arc<dyn Fn(&mut UserDoc) + Send + Sync>,
        fields: &'static [&'static str],
        revoke: bool,
    ) -> Result<User> {
        let Some(found) = self.find_user_doc(email).await? else {
            return Err(Error::NotFound(format!("user {email}")));
        };
        let user_doc = found.doc_id().to_owned();
        let user = self
            .tx(
                (self.cols.clone(), email.clone(), user_doc, change, revoke),
                move |db, tx, (cols, email, user_doc, change, revoke)| {
                    async move {
                        let Some(mut doc): Option<UserDoc> =
                            read(&db, cols.users.as_str(), user_doc.as_str()).await?
                        else {
                            return abort(Error::NotFound(format!("user {email}")));
                        };
                        let user = doc
                            .clone()
                            .into_user()
                            .map_err(|e| BackoffError::permanent(TxError::Abort(e)))?;
                        doc.user_id = Some(user.id.to_string());
                        if revoke {
                            doc.token_version = Some(i64::from(user.token_version) + 1);
                        }
                        change(&mut doc);
                        write(
                            &db,
                            tx,
                            cols.users.as_str(),
                            user_doc.as_str(),
                            &doc,
                            Some(true),
                            Some(fields),
                        )?;
                        Ok(doc)
                    }
                    .boxed()
                },
            )
            .await?;
        user.into_user()
    }
}

#[async_trait]
impl ProductStore for FirestoreStore {
    async fn create_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<Product> {
        let doc = ProductDoc::new(p, now);
        let result = self
            .db
            .fluent()
            .insert()
            .into(self.cols.products.as_str())
            .document_id(doc_id(p.id.as_str()))
            .object(&doc)
            .execute::<ProductDoc>()
            .await;
        match result {
            Ok(doc) => doc.into_product(),
            Err(FirestoreError::DataConflictError(_)) => Err(Error::AlreadyExists(format!(
                "product {} already exists",
                p.id
            ))),
            Err(e) => Err(map(e)),
        }
    }

    async fn ensure_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<bool> {
        match self.create_product(p, now).await {
            Ok(_) => Ok(true),
            Err(Error::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>> {
        match self
            .get::<ProductDoc>(&self.cols.products, &doc_id(id.as_str()))
            .await?
        {
            Some(doc) => Ok(Some(self.with_true_stock(doc).await?)),
            None => Ok(None),
        }
    }

    async fn list_products(&self, page: Page) -> Result<Vec<Product>> {
        let after = page
            .after
            .as_deref()
            .map(|id| self.after_doc(&self.cols.products, &doc_id(id)));
        let docs: Vec<ProductDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.products.as_str())
            .order(|o| o.fields([o.field(DOC_NAME).asc()]))
            .start_after(after)
            .offset(page.offset)
            .limit(page.limit)
            .obj()
            .query()
            .await
            .map_err(map)?;
        // Sharded products read their shards: all of the page's at once, not one after another.
        futures::future::try_join_all(docs.into_iter().map(|doc| self.with_true_stock(doc))).await
    }

    async fn restock(&self, id: &ProductId, add: u64, now: DateTime<Utc>) -> Result<Product> {
        let add = i64::try_from(add).map_err(|_| Error::invalid("quantity", "too large"))?;
        let lock = self.product_lock(id.as_str());
        let _guard = lock.lock().await;
        let doc = self
            .tx(
                (self.cols.clone(), id.clone()),
                move |db, tx, (cols, id)| {
                    async move {
                        let Some(mut doc): Option<ProductDoc> =
                            read(&db, cols.products.as_str(), doc_id(id.as_str())).await?
                        else {
                            return abort(Error::NotFound(format!("product {id}")));
                        };
                        let key = doc_id(id.as_str());
                        // A sharded product: the units spread over its shards.
                        let shards = match doc.shard_count() {
                            Some(n) => {
                                let shards = shards_of(&db, &cols, &key, n)?;
                                let held = shards.read_all().await?;
                                doc.quantity = held.iter().sum();
                                Some((shards, held))
                            }
                            None => None,
                        };
                        let Some(q) = doc.quantity.checked_add(add) else {
                            return abort(Error::invalid("quantity", "stock would overflow"));
                        };
                        if q > STOCK_MAX as i64 {
                            return abort(Error::invalid(
                                "quantity",
                                format!("stock would exceed {STOCK_MAX}"),
                            ));
                        }
                        if let Some((shards, held)) = shards {
                            let more = spread(add, shards.count);
                            for (k, (held, more)) in held.iter().zip(more).enumerate() {
                                shards.write(tx, k as u32, held + more)?;
                            }
                        }
                        // For a sharded product, the snapshot of the total.
                        doc.set_quantity(q, now);
                        write(
                            &db,
                            tx,
                            cols.products.as_str(),
                            doc_id(id.as_str()),
                            &doc,
                            Some(true),
                            Some(&PRODUCT_STOCK_FIELDS),
                        )?;
                        Ok(doc)
                    }
                    .boxed()
                },
            )
            .await?;
        doc.into_product()
    }
}

impl FirestoreStore {
    /// After an order's create was refused because the document exists: a commit whose answer
    /// was lost (a dropped connection, `UNAVAILABLE`) may have been applied, and its retry then
    /// finds its own order. That order, placed once, is the answer; anything else is the
    /// conflict it is.
    async fn placed_before(&self, new: &NewOrder, reason: String) -> Result<Placed> {
        match self.get_order(new.id).await? {
            Some(order) if order.user_id == new.user_id && new.matches(&order) => {
                // Its confirmation is in the outbox: due, or leased here until the lease runs
                // out (the handover was lost with the answer).
                self.bump();
                Ok(Placed {
                    order,
                    replayed: false,
                })
            }
            _ => Err(Error::Conflict(reason)),
        }
    }
}

fn idempotency_doc_id(user: Uuid, key: &str) -> String {
    doc_id(&format!("{user}:{key}"))
}

#[async_trait]
impl OrderStore for FirestoreStore {
    async fn place_order(&self, new: &NewOrder) -> Result<Placed> {
        let (_guard, start) = self.stock_guard(new.product_id.as_str()).await;
        let order = new.order();
        // A free slot of the local dispatcher: the confirmation is written leased to it.
        let reservation = self.handoff.reserve();
        let lease = reservation.as_ref().map(|r| r.terms(new.now));
        let key_id = order
            .idempotency_key
            .as_deref()
            .map(|k| idempotency_doc_id(order.user_id, k));
        // Read by the call that begins the transaction: the product, and the key's record
        // when a key was given.
        let mut first = vec![self.path(&self.cols.products, &doc_id(new.product_id.as_str()))];
        first.extend(
            key_id
                .as_deref()
                .map(|k| self.path(&self.cols.idempotency_keys, k)),
        );
        let ctx = (self.cols.clone(), order, new.clone(), lease, key_id);
        let placed = self
            .tx_reading(
                &first,
                ctx,
                move |db, tx, docs, (cols, order, new, lease, key_id)| {
                    async move {
                        let mut docs = docs.into_iter();
                        let product = docs.next().flatten().map(|d| parse::<ProductDoc>(&d));
                        let seen = docs.next().flatten().map(|d| parse::<IdempotencyDoc>(&d));
                        // The key's record is read only when a key was given.
                        if let Some(seen) = seen.transpose()? {
                            let existing: Option<OrderDoc> =
                                read(&db, cols.orders.as_str(), seen.order_id.as_str()).await?;
                            let Some(existing) = existing else {
                                return abort(Error::other(
                                    "idempotency key points to a missing order",
                                ));
                            };
                            let existing = existing
                                .into_order()
                                .map_err(|e| BackoffError::permanent(TxError::Abort(e)))?;
                            if !new.matches(&existing) {
                                return abort(Error::IdempotencyKeyReused);
                            }
                            let replayed = Placed {
                                order: existing,
                                replayed: true,
                            };
                            return Ok((replayed, None, None));
                        }
                        let Some(mut product) = product.transpose()? else {
                            return abort(Error::NotFound(format!("product {}", new.product_id)));
                        };
                        let take = i64::from(new.quantity);
                        let out_of_stock = || {
                            abort(Error::OutOfStock {
                                product_id: new.product_id.to_string(),
                            })
                        };
                        let key = doc_id(new.product_id.as_str());
                        let shards = product.shard_count();
                        match shards {
                            // Sharded: the units come from the shards; the product document is
                            // only read.
                            Some(n) => {
                                let shards = shards_of(&db, &cols, &key, n)?;
                                if !shards.take(tx, start % n, take).await? {
                                    return out_of_stock();
                                }
                            }
                            None => {
                                if product.quantity < take {
                                    return out_of_stock();
                                }
                                product.set_quantity(product.quantity - take, new.now);
                                write(
                                    &db,
                                    tx,
                                    cols.products.as_str(),
                                    key.as_str(),
                                    &product,
                                    Some(true),
                                    Some(&PRODUCT_STOCK_FIELDS),
                                )?;
                            }
                        }
                        let mut notification = new.notification(product.product_name.clone());
                        if let Some((owner, until)) = &lease {
                            notification.lease_to(owner, *until);
                        }
                        let mut notification = NotificationDoc::from(&notification);
                        if let Some((_, until)) = &lease {
                            // While leased it is not due; when the lease runs out it is due again.
                            notification.next_attempt_at = sys(*until);
                        }
                        write(
                            &db,
                            tx,
                            cols.orders.as_str(),
                            order.id.to_string(),
                            &OrderDoc::from_order(&order),
                            Some(false),
                            None,
                        )?;
                        write(
                            &db,
                            tx,
                            cols.notifications.as_str(),
                            new.notification_id.to_string(),
                            &notification,
                            Some(false),
                            None,
                        )?;
                        if let Some(key_id) = key_id {
                            write(
                                &db,
                                tx,
                                cols.idempotency_keys.as_str(),
                                key_id,
                                &IdempotencyDoc {
                                    order_id: order.id.to_string(),
                                },
                                Some(false),
                                None,
                            )?;
                        }
                        let placed = Placed {
                            order,
                            replayed: false,
                        };
                        let handed = lease.is_some().then_some(notification);
                        Ok((placed, Some(shards.unwrap_or(0)), handed))
                    }
                    .boxed()
                },
            )
            .await;
        let ((placed, shards, handed), version) = match placed {
            Ok(done) => done,
            Err(Error::Conflict(reason)) => return self.placed_before(new, reason).await,
            Err(e) => return Err(e),
        };
        if let Some(shards) = shards {
            self.note_shards(new.product_id.as_str(), Some(shards));
        }
        match (reservation, handed) {
            (Some(reservation), Some(doc)) => {
                self.leased
                    .remember(new.notification_id, doc.clone(), version);
                match doc.into_notification() {
                    Ok(n) => reservation.hand_over(n),
                    // Not expected (it was just built from the domain type); the lease runs
                    // out and it is claimed then.
                    Err(e) => tracing::warn!(error = %e, "a confirmation could not be handed over"),
                }
            }
            _ if !placed.replayed => self.bump(),
            _ => {}
        }
        Ok(placed)
    }

    async fn get_order(&self, id: Uuid) -> Result<Option<Order>> {
        self.get::<OrderDoc>(&self.cols.orders, &order_doc_id(id))
            .await?
            .map(OrderDoc::into_order)
            .transpose()
    }

    async fn list_orders_for_user(&self, user_id: Uuid, page: Page) -> Result<Vec<Order>> {
        // Our orders carry `user_id`; the original's carry only `buyer_email`. The page of the
        // merged list needs at most `offset + limit` of each.
        let wanted = page.offset.saturating_add(page.limit);
        let cursor = self.order_cursor(&page).await?;
        let ours: Vec<OrderDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.orders.as_str())
            .filter(|q| q.for_all([q.field("user_id").eq(user_id.to_string())]))
            .order(|o| o.fields([o.field("order_id").desc()]))
            .start_after(cursor.map(ours_after))
            .limit(wanted)
            .obj()
            .query()
            .await
            .map_err(map)?;
        let mut orders = ours
            .into_iter()
            .map(OrderDoc::into_order)
            .collect::<Result<Vec<_>>>()?;
        if let Some(user) = self.user_doc_by_id(user_id).await? {
            let mut emails = vec![user.doc_id().to_owned()];
            if let Some(e) = &user.email {
                emails.push(e.clone());
            }
            if let Ok(e) = Email::parse(user.doc_id()) {
                emails.push(e.to_string());
            }
            emails.sort();
            emails.dedup();
            let legacy: Vec<OrderDoc> = self
                .db
                .fluent()
                .select()
                .from(self.cols.orders.as_str())
                .filter(|q| q.for_all([q.field("buyer_email").is_in(emails.clone())]))
                .limit(LEGACY_ORDERS_PER_USER)
                .obj()
                .query()
                .await
                .map_err(map)?;
            for doc in legacy.into_iter().filter(OrderDoc::is_legacy) {
                orders.push(doc.into_order()?);
            }
        }
        // Newest first by (time, id); with a cursor, only what comes after it.
        orders.retain(|o| cursor.is_none_or(|c| (o.created_at, o.id) < c));
        orders.sort_by_key(|o| std::cmp::Reverse((o.created_at, o.id)));
        Ok(orders
            .into_iter()
            .skip(page.offset as usize)
            .take(page.limit as usize)
            .collect())
    }

    async fn list_orders(&self, page: Page) -> Result<Vec<Order>> {
        // Ours by their time-ordered id; the original's (which a field order would drop) from
        // their index; merged newest first. The page needs at most `offset + limit` of each.
        let legacy = self.legacy_order_ids().await?;
        if legacy.is_empty() {
            // No orders of the original: a plain page of ours, after the cursor's id.
            let after = page.after_order()?.map(|id| after_value(id.to_string()));
            let docs: Vec<OrderDoc> = self
                .db
                .fluent()
                .select()
                .from(self.cols.orders.as_str())
                .order(|o| o.fields([o.field("order_id").desc()]))
                .start_after(after)
                .offset(page.offset)
                .limit(page.limit)
                .obj()
                .query()
                .await
                .map_err(map)?;
            return docs.into_iter().map(OrderDoc::into_order).collect();
        }
        let wanted = page.offset.saturating_add(page.limit);
        let cursor = self.order_cursor(&page).await?;
        let ours: Vec<OrderDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.orders.as_str())
            .order(|o| o.fields([o.field("order_id").desc()]))
            .start_after(cursor.map(ours_after))
            .limit(wanted)
            .obj()
            .query()
            .await
            .map_err(map)?;
        /// One entry of the merged list: an order of ours, read; one of the original's, by id.
        enum Entry {
            Ours(Box<Order>),
            Legacy(String),
        }
        let mut merged = ours
            .into_iter()
            .map(|d| {
                let o = d.into_order()?;
                Ok((o.created_at, Entry::Ours(Box::new(o))))
            })
            .collect::<Result<Vec<_>>>()?;
        if let Some((at, id)) = cursor {
            // Only what comes after the cursor, newest first.
            merged.retain(|(_, e)| match e {
                Entry::Ours(o) => (o.created_at, o.id) < (at, id),
                Entry::Legacy(_) => true,
            });
        }
        merged.extend(
            legacy
                .into_iter()
                .filter(|(at, _)| cursor.is_none_or(|(c, _)| *at < c))
                .take(wanted as usize)
                .map(|(at, id)| (at, Entry::Legacy(id))),
        );
        merged.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let mut page_orders = Vec::new();
        for (_, entry) in merged
            .into_iter()
            .skip(page.offset as usize)
            .take(page.limit as usize)
        {
            match entry {
                Entry::Ours(order) => page_orders.push(*order),
                // Deleted since the index was built: left out.
                Entry::Legacy(id) => {
                    if let Some(doc) = self.get::<OrderDoc>(&self.cols.orders, &id).await? {
                        page_orders.push(doc.into_order()?);
                    }
                }
            }
        }
        Ok(page_orders)
    }

    async fn cancel_order(&self, id: Uuid, now: DateTime<Utc>) -> Result<Order> {
        let doc_key = order_doc_id(id);
        let Some(current) = self.get_order(id).await? else {
            return Err(Error::NotFound(format!("order {id}")));
        };
        let (_guard, start) = self.stock_guard(current.product_id.as_str()).await;
        let doc = self
            .tx(
                (self.cols.clone(), doc_key),
                move |db, tx, (cols, doc_key)| {
                    async move {
                        let Some(mut order): Option<OrderDoc> =
                            read(&db, cols.orders.as_str(), doc_key.as_str()).await?
                        else {
                            return abort(Error::NotFound(format!("order {id}")));
                        };
                        if order.status() == "cancelled" {
                            return abort(Error::AlreadyCancelled(id));
                        }
                        let product: Option<ProductDoc> =
                            read(&db, cols.products.as_str(), doc_id(&order.product_id)).await?;
                        // Its confirmation, read in the same transaction so that a concurrent
                        // `mark_sent` conflicts with this cancel. The original's orders have none.
                        let confirmation: Vec<NotificationDoc> = match &order.order_id {
                            Some(order_id) => db
                                .fluent()
                                .select()
                                .from(cols.notifications.as_str())
                                .filter(|q| q.for_all([q.field("order_id").eq(order_id.clone())]))
                                .limit(1)
                                .obj()
                                .query()
                                .await
                                .map_err(fs)?,
                            None => Vec::new(),
                        };
                        order.status = Some("cancelled".into());
                        order.updated_at = Some(sys(now));
                        write(
                            &db,
                            tx,
                            cols.orders.as_str(),
                            doc_key.as_str(),
                            &order,
                            Some(true),
                            Some(&ORDER_STATUS_FIELDS),
                        )?;
                        let returned = order.quantity.unwrap_or(1);
                        if let Some(n) = product.as_ref().and_then(ProductDoc::shard_count) {
                            // Sharded: the units go back to one shard.
                            let shards = shards_of(&db, &cols, &doc_id(&order.product_id), n)?;
                            let k = start % n;
                            let held = shards.read(k).await?;
                            shards.write(tx, k, held + returned)?;
                        } else if let Some(mut product) = product {
                            product.set_quantity(product.quantity + returned, now);
                            write(
                                &db,
                                tx,
                                cols.products.as_str(),
                                doc_id(&order.product_id),
                                &product,
                                Some(true),
                                Some(&PRODUCT_STOCK_FIELDS),
                            )?;
                        }
                        for mut n in confirmation.into_iter().filter(|n| n.status == "pending") {
                            n.status = "cancelled".into();
                            n.lease_owner = None;
                            n.lease_until = None;
                            write(
                                &db,
                                tx,
                                cols.notifications.as_str(),
                                n.notification_id.clone(),
                                &n,
                                Some(true),
                                None,
                            )?;
                        }
                        Ok(order)
                    }
                    .boxed()
                },
            )
            .await?;
        doc.into_order()
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
                    q.field("status").eq("pending"),
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
                            .and_then(|n| {
                                n.clone()
                                    .into_notification()
                                    .map(|_| n)
                                    .map_err(|e| e.to_string())
                            });
                        let mut n = match parsed {
                            Ok(n) => n,
                            Err(reason) => {
                                // Never claimable: park it as failed, with the reason, so it
                                // neither blocks nor costs the others.
                                let broken = BrokenDoc {
                                    status: "failed".into(),
                                    last_error: format!("stored notification is invalid: {reason}"),
                                };
                                write(
                                    &db,
                                    tx,
                                    cols.notifications.as_str(),
                                    id.as_str(),
                                    &broken,
                                    Some(true),
                                    Some(&["status", "last_error"]),
                                )?;
                                return Ok(Claim::Broken(id, broken.last_error));
                            }
                        };
                        // Someone else claimed or finished it meanwhile.
                        if n.status != "pending" || utc(n.next_attempt_at) > now {
                            return Ok(Claim::Skipped);
                        }
                        n.lease_owner = Some(owner);
                        n.lease_until = Some(sys(until));
                        // While leased it is not due; when the lease runs out it is due again.
                        n.next_attempt_at = sys(until);
                        n.attempts += 1;
                        write(
                            &db,
                            tx,
                            cols.notifications.as_str(),
                            id.as_str(),
                            &n,
                            None,
                            None,
                        )?;
                        Ok(Claim::Taken(Box::new(n)))
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
                Ok((Claim::Taken(doc), version)) => match doc.clone().into_notification() {
                    Ok(n) => {
                        self.leased.remember(n.id, *doc, version);
                        claimed.push(n);
                    }
                    Err(e) => failures.push(e),
                },
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
        self.with_lease(
            id,
            owner,
            Arc::new(move |n| {
                n.lease_until = Some(sys(until));
                // While leased it is not due; when the lease runs out it is due again.
                n.next_attempt_at = sys(until);
            }),
            None,
        )
        .await
    }

    async fn mark_sent(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<()> {
        self.with_lease(
            id,
            owner,
            Arc::new(move |n| {
                n.status = "sent".into();
                n.sent_at = Some(sys(now));
                n.last_error = None;
                n.lease_owner = None;
                n.lease_until = None;
            }),
            Some(now),
        )
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
        self.with_lease(
            id,
            owner,
            Arc::new(move |n| {
                n.last_error = Some(error.clone());
                n.lease_owner = None;
                n.lease_until = None;
                match next_attempt_at {
                    Some(at) => n.next_attempt_at = sys(at),
                    None => n.status = "failed".into(),
                }
            }),
            None,
        )
        .await
    }

    async fn enqueue(&self, n: &Notification) -> Result<()> {
        inventory_core::check_enqueued(n)?;
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
                        .filter(|q| q.for_all([q.field("status").eq("failed")]))
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

impl FirestoreStore {
    /// Puts one failed notification back to pending; false if it is not failed (any more).
    async fn reset_failed(&self, id: String, now: DateTime<Utc>) -> Result<bool> {
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
                let Some(mut n) = doc.filter(|n| n.status == "failed") else {
                    return Ok(false);
                };
                n.status = "pending".into();
                n.attempts = 0;
                n.next_attempt_at = sys(now);
                write(
                    &db,
                    tx,
                    cols.notifications.as_str(),
                    id.as_str(),
                    &n,
                    None,
                    None,
                )?;
                Ok(true)
            }
            .boxed()
        })
        .await
    }

    async fn insert<T>(&self, col: &str, id: &str, doc: &T, what: String) -> Result<()>
    where
        T: serde::Serialize + for<'de> serde::Deserialize<'de> + Send + Sync,
    {
        let result = self
            .db
            .fluent()
            .insert()
            .into(col)
            .document_id(id)
            .object(doc)
            .execute::<T>()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(FirestoreError::DataConflictError(_)) => {
                Err(Error::AlreadyExists(format!("{what} already exists")))
            }
            Err(e) => Err(map(e)),
        }
    }
}

#[async_trait]
impl Transfer for FirestoreStore {
    async fn list_users(&self, page: Page) -> Result<Vec<User>> {
        // The cursor is an address; the list runs by document id, which for a user written by
        // the original may be the address in another form: continue after that document.
        let after = match page.after.as_deref() {
            None => None,
            Some(email) => {
                let email = Email::parse(email)
                    .map_err(|_| Error::invalid("after", "must be an email address"))?;
                let id = match self.find_user_doc(&email).await? {
                    Some(doc) => doc.doc_id().to_owned(),
                    None => doc_id(email.as_str()),
                };
                Some(self.after_doc(&self.cols.users, &id))
            }
        };
        let docs: Vec<UserDoc> = self
            .db
            .fluent()
            .select()
            .from(self.cols.users.as_str())
            .order(|o| o.fields([o.field(DOC_NAME).asc()]))
            .start_after(after)
            .offset(page.offset)
            .limit(page.limit)
            .obj()
            .query()
            .await
            .map_err(map)?;
        docs.into_iter().map(UserDoc::into_user).collect()
    }

    async fn import_product(&self, p: &Product) -> Result<()> {
        let mut doc = ProductDoc::new(
            &NewProduct {
                id: p.id.clone(),
                name: p.name.clone(),
                quantity: p.quantity,
            },
            p.updated_at,
        );
        doc.created_at = Some(sys(p.created_at));
        self.insert(
            &self.cols.products,
            &doc_id(p.id.as_str()),
            &doc,
            format!("product {}", p.id),
        )
        .await
    }

    async fn import_order(&self, o: &Order) -> Result<()> {
        self.insert(
            &self.cols.orders,
            &o.id.to_string(),
            &OrderDoc::from_order(o),
            format!("order {}", o.id),
        )
        .await?;
        if let Some(key) = &o.idempotency_key {
            let doc = IdempotencyDoc {
                order_id: o.id.to_string(),
            };
            let id = idempotency_doc_id(o.user_id, key);
            self.insert(
                &self.cols.idempotency_keys,
                &id,
                &doc,
                format!("idempotency key {key}"),
            )
            .await?;
        }
        Ok(())
    }

    async fn count_records(&self) -> Result<inventory_core::transfer::Counts> {
        Ok(inventory_core::transfer::Counts {
            users: self.count(&self.cols.users).await?,
            products: self.count(&self.cols.products).await?,
            orders: self.count(&self.cols.orders).await?,
            notifications: self.count(&self.cols.notifications).await?,
        })
    }

    async fn import_notification(&self, n: &Notification) -> Result<()> {
        let doc = NotificationDoc::from(n);
        self.insert(
            &self.cols.notifications,
            &n.id.to_string(),
            &doc,
            format!("notification {}", n.id),
        )
        .await
    }
}

impl FirestoreStore {
    async fn count(&self, col: &str) -> Result<u64> {
        let result: Vec<CountDoc> = self
            .db
            .fluent()
            .select()
            .from(col)
            .aggregate(|a| a.fields([a.field("count").count()]))
            .obj()
            .query()
            .await
            .map_err(map)?;
        Ok(result.first().map(|c| c.count as u64).unwrap_or(0))
    }
}

#[async_trait]
impl Health for FirestoreStore {
    async fn ping(&self) -> Result<()> {
        // A read of an id that never exists: cheap, and a real round trip. (Ids of the form
        // `__x__` are reserved by Firestore and refused.)
        self.get::<ProductDoc>(&self.cols.products, "inventory-kit-readiness-probe")
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use firestore::gcloud_sdk::google::firestore::v1::{DocumentChange, TargetChange};

    use super::*;

    fn change_of<T: serde::Serialize>(doc: &T) -> FirestoreListenEvent {
        FirestoreListenEvent::DocumentChange(DocumentChange {
            document: Some(FirestoreDb::serialize_to_doc("projects/p/b/outbox", doc).unwrap()),
            ..Default::default()
        })
    }

    #[test]
    fn only_a_beacon_raised_by_another_process_wakes_the_dispatcher() {
        let raised_by = |by: &str| {
            change_of(&BeaconDoc {
                by: by.into(),
                raised_at: std::time::SystemTime::now(),
            })
        };
        assert!(raised_elsewhere(&raised_by("other"), "me"));
        assert!(!raised_elsewhere(&raised_by("me"), "me"));
        // Unreadable: wake, a claim costs one query.
        assert!(raised_elsewhere(
            &change_of(&BrokenDoc {
                status: "x".into(),
                last_error: String::new(),
            }),
            "me"
        ));
        // The stream's own bookkeeping.
        assert!(!raised_elsewhere(
            &FirestoreListenEvent::TargetChange(TargetChange::default()),
            "me"
        ));
    }
}
