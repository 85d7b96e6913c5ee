//! Products.

use super::*;

/// A product. The original writes `Products/{id}` = `{product_name, quantity, status}`;
/// operators add fields of their own, which every write here leaves alone.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ProductDoc {
    #[serde(default)]
    pub(crate) product_id: Option<String>,
    pub(crate) product_name: String,
    pub(crate) quantity: i64,
    pub(crate) status: String,
    /// Units held for checkouts (see `store/reservations.rs`), absent when none; a sharded
    /// product keeps them in its shards instead.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) reserved: i64,
    /// Whether the product's stock ledger has its opening entry (products the original wrote
    /// get it from the first transaction of ours that writes their document).
    #[serde(default)]
    pub(crate) ledger: bool,
    #[serde(default)]
    pub(crate) created_at: Option<SystemTime>,
    #[serde(default)]
    pub(crate) updated_at: Option<SystemTime>,
    /// The number of stock shards (see [`crate::shards`]); absent or 0: the stock is
    /// `quantity`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) shards: Option<u32>,
    /// The low-stock threshold (`stock.low` events), absent when none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) low_stock_threshold: Option<i64>,
    /// The document id (read only; see [`Meta`]).
    #[serde(rename = "_firestore_id", default, skip_serializing)]
    pub(crate) fs_id: Option<String>,
    /// The document's create time (read only).
    #[serde(
        rename = "_firestore_created",
        default,
        skip_serializing,
        deserialize_with = "meta_time"
    )]
    pub(crate) fs_created: Option<SystemTime>,
    /// The document's update time (read only).
    #[serde(
        rename = "_firestore_updated",
        default,
        skip_serializing,
        deserialize_with = "meta_time"
    )]
    pub(crate) fs_updated: Option<SystemTime>,
}

/// The product fields a stock change writes (a field mask: nothing else is touched; a
/// `reserved` of 0 is written as no field, as the original's products have none).
pub(crate) const PRODUCT_STOCK_FIELDS: [&str; 5] =
    ["quantity", "reserved", "status", "updated_at", "ledger"];

/// The product fields sharding or unsharding writes.
pub(crate) const PRODUCT_SHARD_FIELDS: [&str; 6] = [
    "quantity",
    "reserved",
    "status",
    "updated_at",
    "shards",
    "ledger",
];

impl ProductDoc {
    pub(crate) fn new(p: &NewProduct, now: DateTime<Utc>) -> Self {
        let mut doc = ProductDoc {
            product_id: Some(p.id.to_string()),
            product_name: p.name.clone(),
            quantity: p.quantity as i64,
            status: String::new(),
            reserved: 0,
            // Its opening entry is written with it.
            ledger: true,
            created_at: Some(sys(now)),
            updated_at: Some(sys(now)),
            shards: None,
            low_stock_threshold: None,
            fs_id: None,
            fs_created: None,
            fs_updated: None,
        };
        doc.set_quantity(doc.quantity, now);
        doc
    }

    /// Sets the quantity and the status derived from it, as the original service did.
    /// Its stock shards, if it has any.
    pub(crate) fn shard_count(&self) -> Option<u32> {
        self.shards.filter(|n| *n > 0)
    }

    pub(crate) fn set_quantity(&mut self, quantity: i64, now: DateTime<Utc>) {
        self.quantity = quantity;
        self.status = if quantity > 0 {
            ProductStatus::InStock
        } else {
            ProductStatus::OutOfStock
        }
        .as_str()
        .to_owned();
        self.updated_at = Some(sys(now));
    }

    pub(crate) fn into_product(self) -> Result<Product> {
        let created = self
            .created_at
            .or(self.fs_created)
            .map(utc)
            .unwrap_or(DateTime::UNIX_EPOCH);
        let id = match self.product_id {
            Some(id) => id,
            None => doc_id_decode(self.fs_id.as_deref().unwrap_or_default()),
        };
        Ok(Product {
            id: ProductId::new(id).map_err(|e| bad("product id", e))?,
            name: self.product_name,
            quantity: u64::try_from(self.quantity).map_err(|e| bad("quantity", e))?,
            reserved: u64::try_from(self.reserved).map_err(|e| bad("reserved", e))?,
            created_at: created,
            updated_at: self
                .updated_at
                .or(self.fs_updated)
                .map(utc)
                .unwrap_or(created),
        })
    }
}
