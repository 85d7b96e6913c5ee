//! The products port: stock in the product document, or spread over shard documents for
//! hot products, with a per-product lock that keeps one process from contending with itself.

use std::sync::Arc;

use super::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use firestore::FirestoreDb;
use futures::FutureExt;

pub(super) use super::stock::{Taken, end_hold, take_stock};

/// The stock shards of the product stored under `product_doc`.
pub(super) fn shards_of<'a>(
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

/// Queues a product's new stock (its quantity, status and time: [`PRODUCT_STOCK_FIELDS`]) in
/// `tx`; the document must exist.
pub(super) fn write_stock(
    db: &FirestoreDb,
    tx: &mut impl firestore::FirestoreTransactionOps,
    cols: &Collections,
    key: &str,
    doc: &ProductDoc,
) -> TxResult<()> {
    write(
        db,
        tx,
        cols.products.as_str(),
        key,
        doc,
        Precondition::Exists,
        Some(&PRODUCT_STOCK_FIELDS),
    )
}

/// Units an order or a hold took from one product, and where from: its document
/// (`shard: None`) or one of its shards. A hold keeps these, so that its end returns its
/// units where they came from.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(crate) struct TakenDoc {
    pub(crate) product_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shard: Option<u32>,
    pub(crate) units: i64,
}

/// Why, by whom and for what a transaction changes stock: each product it changes gets a
/// ledger entry of this.
#[derive(Clone, Debug)]
pub(super) struct Change {
    pub(super) reason: StockReason,
    pub(super) actor: String,
    pub(super) reference: Option<String>,
    pub(super) at: DateTime<Utc>,
}

impl Change {
    pub(super) fn new(
        reason: StockReason,
        actor: impl ToString,
        reference: Option<impl ToString>,
        at: DateTime<Utc>,
    ) -> Change {
        Change {
            reason,
            actor: actor.to_string(),
            reference: reference.map(|r| r.to_string()),
            at,
        }
    }

    /// The entry of `delta`/`reserved_delta` units of `product`, whose quantities after it are
    /// `after` when the transaction knows them.
    pub(super) fn entry(
        &self,
        product: &ProductId,
        (delta, reserved_delta): (i64, i64),
        after: Option<(i64, i64)>,
    ) -> LedgerEntry {
        let (q, r) = after.unwrap_or_default();
        let entry = LedgerEntry::new(
            product.clone(),
            delta,
            reserved_delta,
            (q.max(0).unsigned_abs(), r.max(0).unsigned_abs()),
            self.reason,
            self.actor.clone(),
            self.reference.clone(),
            self.at,
        );
        if after.is_some() {
            entry
        } else {
            entry.without_totals()
        }
    }
}

/// Queues a ledger entry (a new document) in `tx`.
pub(super) fn queue_entry(
    db: &FirestoreDb,
    tx: &mut Tx,
    cols: &Collections,
    entry: &LedgerEntry,
) -> TxResult<()> {
    write(
        db,
        tx,
        cols.ledger.as_str(),
        entry.id.to_string(),
        &LedgerDoc::from(entry),
        Precondition::Missing,
        None,
    )
}

/// Opens the ledger of a product whose document has none yet (written by the original, or by
/// a release before the ledger): queues an `opening` entry of its stock as this transaction
/// read it, before the change, and marks the document, which the caller writes in the same
/// transaction (the stock field masks carry the mark).
pub(super) fn open_ledger(
    db: &FirestoreDb,
    tx: &mut Tx,
    cols: &Collections,
    doc: &mut ProductDoc,
    id: &ProductId,
    (available, reserved): (i64, i64),
    now: DateTime<Utc>,
) -> TxResult<()> {
    if doc.ledger {
        return Ok(());
    }
    doc.ledger = true;
    let change = Change::new(StockReason::Opening, SYSTEM_ACTOR, None::<String>, now);
    let after = Some((available, reserved));
    queue_entry(
        db,
        tx,
        cols,
        &change.entry(id, (available, reserved), after),
    )
}

/// A product's stock read in a transaction: its document, and its shards when sharded
/// (their total in `available` and `held`).
pub(super) struct Stock<'a> {
    pub(super) doc: ProductDoc,
    pub(super) shards: Option<Shards<'a>>,
    pub(super) available: i64,
    pub(super) held: i64,
}

/// Reads product `id`'s stock in the transaction of `db` (every shard of a sharded product).
pub(super) async fn read_stock<'a>(
    db: &'a FirestoreDb,
    cols: &Collections,
    id: &ProductId,
) -> TxResult<Stock<'a>> {
    let key = doc_id(id.as_str());
    let Some(doc): Option<ProductDoc> = read(db, cols.products.as_str(), key.as_str()).await?
    else {
        return abort(Error::NotFound(format!("product {id}")));
    };
    match doc.shard_count() {
        Some(n) => {
            let shards = shards_of(db, cols, &key, n)?;
            let held = shards.read_all().await?;
            let available = held.iter().map(|s| s.quantity).sum();
            let reserved = doc.reserved + held.iter().map(|s| s.reserved).sum::<i64>();
            Ok(Stock {
                doc,
                shards: Some(shards),
                available,
                held: reserved,
            })
        }
        None => Ok(Stock {
            available: doc.quantity,
            held: doc.reserved,
            doc,
            shards: None,
        }),
    }
}

impl Stock<'_> {
    /// Queues the product's new quantities: a sharded product's spread over its shards.
    pub(super) fn write(
        mut self,
        db: &FirestoreDb,
        tx: &mut Tx,
        cols: &Collections,
        id: &ProductId,
        (available, reserved): (i64, i64),
        now: DateTime<Utc>,
    ) -> TxResult<()> {
        match self.shards {
            Some(shards) => {
                spread_stock(&shards, tx, (available, reserved))?;
                self.doc.reserved = 0;
            }
            None => self.doc.reserved = reserved,
        }
        // For a sharded product, the snapshot of the total.
        self.doc.set_quantity(available, now);
        write_stock(db, tx, cols, &doc_id(id.as_str()), &self.doc)
    }
}

/// Queues `(available, reserved)` spread over `shards` as evenly as whole units allow.
pub(super) fn spread_stock(
    shards: &Shards<'_>,
    tx: &mut Tx,
    (available, reserved): (i64, i64),
) -> TxResult<()> {
    let n = shards.count;
    let parts = spread(available, n).into_iter().zip(spread(reserved, n));
    for (k, (quantity, reserved)) in parts.enumerate() {
        shards.write(tx, k as u32, ShardDoc { quantity, reserved })?;
    }
    Ok(())
}

impl FirestoreStore {
    pub(super) fn product_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
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
    pub(super) async fn stock_guard(
        &self,
        product: &str,
    ) -> (tokio::sync::OwnedMutexGuard<()>, u32) {
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

    /// [`FirestoreStore::stock_guard`] for each product of an order, taken in product id
    /// order (so two baskets never wait on each other in a cycle): the guards, and the shard
    /// to take from first per product.
    pub(super) async fn stock_guards<'a>(
        &self,
        products: impl IntoIterator<Item = &'a ProductId>,
    ) -> (
        Vec<tokio::sync::OwnedMutexGuard<()>>,
        std::collections::BTreeMap<String, u32>,
    ) {
        let products: std::collections::BTreeSet<&ProductId> = products.into_iter().collect();
        let mut guards = Vec::with_capacity(products.len());
        let mut starts = std::collections::BTreeMap::new();
        for product in products {
            let (guard, start) = self.stock_guard(product.as_str()).await;
            guards.push(guard);
            starts.insert(product.to_string(), start);
        }
        (guards, starts)
    }

    /// Remembers how `product` is stored (for [`FirestoreStore::stock_guard`]).
    pub(super) fn note_shards(&self, product: &str, shards: Option<u32>) {
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

    /// A product as the API shows it: a sharded product's quantities are the sums of its
    /// shards'.
    pub(super) async fn with_true_stock(&self, doc: ProductDoc) -> Result<Product> {
        let shards = doc.shard_count();
        let doc_key = doc.fs_id.clone().unwrap_or_default();
        let mut product = doc.into_product()?;
        if let Some(n) = shards {
            let held = shards_of(&self.db, &self.cols, &doc_key, n)
                .map_err(untx)?
                .read_all()
                .await
                .map_err(untx)?;
            let total: i64 = held.iter().map(|s| s.quantity).sum();
            let reserved: i64 = held.iter().map(|s| s.reserved).sum();
            product.quantity = u64::try_from(total).map_err(Error::other)?;
            product.reserved += u64::try_from(reserved).map_err(Error::other)?;
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

    /// For a sharded product whose document's `quantity` (the snapshot the original's clients
    /// read) is not its shards' total: `(snapshot, total)`. `None` for any other product.
    pub async fn snapshot_drift(&self, id: &ProductId) -> Result<Option<(u64, u64)>> {
        let Some(doc) = self
            .get::<ProductDoc>(&self.cols.products, &doc_id(id.as_str()))
            .await?
        else {
            return Err(Error::NotFound(format!("product {id}")));
        };
        if doc.shard_count().is_none() {
            return Ok(None);
        }
        let snapshot = doc.quantity.max(0).unsigned_abs();
        let total = self.with_true_stock(doc).await?.quantity;
        Ok((snapshot != total).then_some((snapshot, total)))
    }

    /// Writes a sharded product's true total into its document's `quantity` and `status`
    /// (what the original's clients read): run it now and then to keep that snapshot close.
    /// Orders never write the product document of a sharded product.
    pub async fn sync_stock_snapshot(&self, id: &ProductId, now: DateTime<Utc>) -> Result<Product> {
        self.reshard(id, None, now).await
    }

    /// Moves `id`'s stock into `to` shards (0: into the document), or with `None` keeps the
    /// shards as they are and only writes the total into the document.
    pub(super) async fn reshard(
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
                        let mut stock = read_stock(&db, &cols, &id).await?;
                        let before = stock.doc.shard_count().unwrap_or(0);
                        let shards = to.unwrap_or(before);
                        // Available and held units alike move to the new layout.
                        let (total, reserved) = (stock.available, stock.held);
                        open_ledger(&db, tx, &cols, &mut stock.doc, &id, (total, reserved), now)?;
                        if let Some(old) = &stock.shards {
                            for k in shards..before {
                                old.delete(tx, k)?;
                            }
                        }
                        let mut doc = stock.doc;
                        if shards == 0 {
                            doc.reserved = reserved;
                        } else if to.is_some() {
                            spread_stock(
                                &shards_of(&db, &cols, &key, shards)?,
                                tx,
                                (total, reserved),
                            )?;
                            doc.reserved = 0;
                        }
                        doc.set_quantity(total, now);
                        doc.shards = Some(shards);
                        write(
                            &db,
                            tx,
                            cols.products.as_str(),
                            key.as_str(),
                            &doc,
                            Precondition::Exists,
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
}

#[async_trait]
impl ProductStore for FirestoreStore {
    async fn create_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<Product> {
        // The product and its opening ledger entry, in one transaction.
        let doc = ProductDoc::new(p, now);
        let key = doc_id(p.id.as_str());
        let first = [self.path(&self.cols.products, &key)];
        let ctx = (self.cols.clone(), doc, p.clone());
        let (doc, _) = self
            .tx_reading(&first, ctx, move |db, tx, docs, (cols, doc, p)| {
                async move {
                    if docs.first().is_some_and(Option::is_some) {
                        return abort(Error::AlreadyExists(format!(
                            "product {} already exists",
                            p.id
                        )));
                    }
                    let key = doc_id(p.id.as_str());
                    write(
                        &db,
                        tx,
                        cols.products.as_str(),
                        key,
                        &doc,
                        Precondition::Missing,
                        None,
                    )?;
                    let product = checked(doc.clone().into_product())?;
                    let entry = LedgerEntry::opening(&product, StockReason::Opening, now);
                    queue_entry(&db, tx, &cols, &entry)?;
                    Ok(doc)
                }
                .boxed()
            })
            .await?;
        doc.into_product()
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

    async fn restock(
        &self,
        id: &ProductId,
        add: u64,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Product> {
        let add = i64::try_from(add).map_err(|_| Error::invalid("quantity", "too large"))?;
        let lock = self.product_lock(id.as_str());
        let _guard = lock.lock().await;
        let doc = self
            .tx(
                (
                    self.cols.clone(),
                    id.clone(),
                    Change::new(StockReason::Restock, actor, None::<String>, now),
                ),
                move |db, tx, (cols, id, change)| {
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
                                doc.quantity = held.iter().map(|s| s.quantity).sum();
                                Some((shards, held))
                            }
                            None => None,
                        };
                        let held_before: i64 = shards
                            .as_ref()
                            .map_or(0, |(_, held)| held.iter().map(|s| s.reserved).sum());
                        let before = (doc.quantity, doc.reserved + held_before);
                        open_ledger(&db, tx, &cols, &mut doc, &id, before, now)?;
                        let Some(q) = doc.quantity.checked_add(add) else {
                            return abort(Error::invalid("quantity", "stock would overflow"));
                        };
                        if q > STOCK_MAX as i64 {
                            return abort(Error::invalid(
                                "quantity",
                                format!("stock would exceed {STOCK_MAX}"),
                            ));
                        }
                        let held_units: i64 = shards
                            .as_ref()
                            .map_or(0, |(_, held)| held.iter().map(|s| s.reserved).sum());
                        let after = (q, doc.reserved + held_units);
                        queue_entry(&db, tx, &cols, &change.entry(&id, (add, 0), Some(after)))?;
                        if let Some((shards, held)) = shards {
                            let more = spread(add, shards.count);
                            for (k, (held, more)) in held.into_iter().zip(more).enumerate() {
                                let quantity = held.quantity + more;
                                shards.write(tx, k as u32, ShardDoc { quantity, ..held })?;
                            }
                        }
                        // For a sharded product, the snapshot of the total.
                        doc.set_quantity(q, now);
                        write_stock(&db, tx, &cols, &doc_id(id.as_str()), &doc)?;
                        Ok(doc)
                    }
                    .boxed()
                },
            )
            .await?;
        doc.into_product()
    }
}
