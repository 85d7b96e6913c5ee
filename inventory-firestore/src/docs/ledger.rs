//! The stock ledger.

use super::*;

/// A stock ledger entry (`StockLedger/{entry id}`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LedgerDoc {
    pub(crate) product_id: String,
    pub(crate) delta: i64,
    pub(crate) reserved_delta: i64,
    /// Absent where the transaction did not know it (a sharded product's order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) quantity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reserved: Option<i64>,
    pub(crate) reason: StockReason,
    pub(crate) actor: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) reference: Option<String>,
    /// The entry's time; absent on a checkpoint (which keeps it in `checkpoint_at`), so that
    /// retention's query by `at` never finds checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) at: Option<SystemTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) checkpoint_at: Option<SystemTime>,
    /// The document id: the entry's id (read only).
    #[serde(rename = "_firestore_id", default, skip_serializing)]
    pub(crate) fs_id: Option<String>,
}

impl From<&LedgerEntry> for LedgerDoc {
    fn from(e: &LedgerEntry) -> Self {
        let big = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        LedgerDoc {
            product_id: e.product_id.to_string(),
            delta: e.delta,
            reserved_delta: e.reserved_delta,
            quantity: e.quantity.map(big),
            reserved: e.reserved.map(big),
            reason: e.reason,
            actor: e.actor.clone(),
            reference: e.reference.clone(),
            at: (e.reason != StockReason::Checkpoint).then(|| sys(e.at)),
            checkpoint_at: (e.reason == StockReason::Checkpoint).then(|| sys(e.at)),
            fs_id: None,
        }
    }
}

impl LedgerDoc {
    pub(crate) fn into_entry(self) -> Result<LedgerEntry> {
        let unsigned = |what: &str, n: Option<i64>| {
            n.map(|n| u64::try_from(n).map_err(|e| bad(what, e)))
                .transpose()
        };
        Ok(LedgerEntry {
            id: uuid(self.fs_id.as_deref().unwrap_or_default())?,
            product_id: ProductId::new(self.product_id).map_err(|e| bad("product id", e))?,
            delta: self.delta,
            reserved_delta: self.reserved_delta,
            quantity: unsigned("quantity", self.quantity)?,
            reserved: unsigned("reserved", self.reserved)?,
            reason: self.reason,
            actor: self.actor,
            reference: self.reference,
            at: utc(self
                .at
                .or(self.checkpoint_at)
                .unwrap_or(SystemTime::UNIX_EPOCH)),
        })
    }
}
