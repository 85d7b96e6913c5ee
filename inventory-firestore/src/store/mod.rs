use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use firestore::gcloud_sdk::google::firestore::v1::Document;
use firestore::{FirestoreDb, FirestoreInstant, FirestoreListener, FirestoreMemListenStateStorage};
use futures::future::BoxFuture;
use inventory_core::handoff::HandoffSlot;
use inventory_core::*;
use tokio::sync::watch;
use uuid::Uuid;

use crate::beacon::{BEACON_ID, Beacon, BeaconDoc};
use crate::docs::*;
use crate::shards::{MAX_SHARDS, ShardDoc, Shards, Take, spread};
use crate::tx::{self, Leased, Tx};
mod events;
mod ledger;
mod legacy;
mod listen;
mod orders;
mod outbox;
mod products;
mod reservations;
mod retention;
mod stock;
mod transfer;
mod users;

use self::legacy::*;
use self::orders::*;
use self::products::*;
use crate::tx::*;

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
/// and ours (`Notifications`, `IdempotencyKeys`, `Reservations`, `StockLedger`, `OutboxBeacon`,
/// `Events`, `EventDeliveries`, `WebhookEndpoints`).
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
    /// Holds (reservations), by id.
    pub reservations: String,
    /// The stock ledger: one document per change of a product's stock, by entry id.
    pub ledger: String,
    /// The one document whose changes wake the dispatchers of other processes.
    pub beacon: String,
    /// Events not fanned out yet, by event id.
    pub events: String,
    /// Deliveries of events, one per event and destination.
    pub deliveries: String,
    /// Webhook endpoints, by id.
    pub webhooks: String,
}

impl Default for Collections {
    fn default() -> Self {
        Collections {
            users: "Users".into(),
            products: "Products".into(),
            orders: "Orders".into(),
            notifications: "Notifications".into(),
            idempotency_keys: "IdempotencyKeys".into(),
            reservations: "Reservations".into(),
            ledger: "StockLedger".into(),
            beacon: "OutboxBeacon".into(),
            events: "Events".into(),
            deliveries: "EventDeliveries".into(),
            webhooks: "WebhookEndpoints".into(),
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

/// The field path of a document's name (its id), for ordering by id.
const DOC_NAME: &str = "__name__";

/// The document id of an order: ours are their UUID; the original's automatic ids are packed
/// into a version-8 UUID and unpacked here.
fn order_doc_id(id: Uuid) -> String {
    legacy_order_doc_id(id).unwrap_or_else(|| id.to_string())
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
        tx::run(&self.db, self.max_retries, first, ctx, f).await
    }

    /// The full path of a document, as the first reads of [`tx::run`] name them.
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
