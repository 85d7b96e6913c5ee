//! The products port: stock in the product document, or spread over shard documents for
//! hot products, with a per-product lock that keeps one process from contending with itself.

use std::sync::Arc;

use super::*;
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use firestore::FirestoreDb;
use firestore::errors::FirestoreError;
use futures::FutureExt;

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

    /// A product as the API shows it: a sharded product's quantity is the sum of its shards.
    pub(super) async fn with_true_stock(&self, doc: ProductDoc) -> Result<Product> {
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
