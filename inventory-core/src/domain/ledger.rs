//! The stock ledger: one append-only entry per change of a product's stock, written in the
//! same atomic step as the change, so that every unit a product shows is explained.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};

use super::*;

/// Why a product's stock changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StockReason {
    /// The stock a product had when the ledger began (its creation, or the upgrade that
    /// introduced the ledger).
    Opening,
    /// An order took units.
    Order,
    /// A cancelled order gave its units back.
    Cancel,
    /// Units were added.
    Restock,
    /// The available quantity was set (compare-and-set, or a reconcile's repair).
    Set,
    /// The product was imported with this stock.
    Import,
    /// A hold moved units from available to reserved.
    Hold,
    /// A released hold moved its units back.
    Release,
    /// An expired hold's units went back.
    Expire,
    /// A hold was checked out: its reserved units became the order's (or, expired, were
    /// taken again from available stock).
    Checkout,
    /// Older entries pruned by retention, summed: the oldest entry of a product whose earlier
    /// entries are gone.
    Checkpoint,
}

text_enum!(StockReason, "reason" {
    Opening => "opening", Order => "order", Cancel => "cancel", Restock => "restock",
    Set => "set", Import => "import", Hold => "hold", Release => "release", Expire => "expire",
    Checkout => "checkout", Checkpoint => "checkpoint",
});

/// How a change moves a product's units between available and reserved stock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StockMove {
    /// Units leave available stock (an order, an expired hold's checkout).
    Take,
    /// Units move from available to reserved (a hold).
    Hold,
    /// Units move from reserved back to available (a release, an expiry).
    Unhold,
    /// Reserved units leave (a hold's checkout: they are the order's now).
    Commit,
    /// Units come into available stock (a cancel, a restock).
    Give,
}

impl StockMove {
    /// What moving `units` changes (available, reserved) by.
    pub fn deltas(self, units: i64) -> (i64, i64) {
        match self {
            StockMove::Take => (-units, 0),
            StockMove::Hold => (-units, units),
            StockMove::Unhold => (units, -units),
            StockMove::Commit => (0, -units),
            StockMove::Give => (units, 0),
        }
    }
}

/// Why a compare-and-set of `product`'s stock expecting `expected` wrote nothing, given what
/// the product holds now (`None`: there is no such product).
pub fn stock_refusal(product: &ProductId, expected: u64, current: Option<u64>) -> Error {
    match current {
        Some(current) => Error::StockChanged {
            product_id: product.to_string(),
            expected,
            current,
        },
        None => Error::NotFound(format!("product {product}")),
    }
}

/// Who made a change: a user's id, or `system` (sweeps, imports, migrations).
pub const SYSTEM_ACTOR: &str = "system";

/// Longest reference an operator may give a change, in bytes.
pub const REFERENCE_MAX_BYTES: usize = 512;

/// One change of one product's stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    /// UUID v7: entries of a product are listed by it, newest first.
    pub id: Uuid,
    /// The product.
    pub product_id: ProductId,
    /// Change of the available quantity.
    pub delta: i64,
    /// Change of the reserved quantity.
    pub reserved_delta: i64,
    /// Available quantity after the change; `None` where the store cannot know it without
    /// reading more than the change needs (a sharded product on Firestore: its orders read
    /// only the shards they take from).
    pub quantity: Option<u64>,
    /// Reserved quantity after the change (`None` as for `quantity`).
    pub reserved: Option<u64>,
    /// Why.
    pub reason: StockReason,
    /// Who: a user id, or [`SYSTEM_ACTOR`].
    pub actor: String,
    /// What it belongs to: an order or hold id, or an operator's text (a purchase order URI).
    pub reference: Option<String>,
    /// When.
    pub at: DateTime<Utc>,
}

impl LedgerEntry {
    /// An entry of a change made now-ish (`at`), with a fresh id. `quantity` and `reserved`
    /// are the product's after the change.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        product_id: ProductId,
        delta: i64,
        reserved_delta: i64,
        (quantity, reserved): (u64, u64),
        reason: StockReason,
        actor: impl Into<String>,
        reference: Option<String>,
        at: DateTime<Utc>,
    ) -> LedgerEntry {
        LedgerEntry {
            id: Uuid::now_v7(),
            product_id,
            delta,
            reserved_delta,
            quantity: Some(quantity),
            reserved: Some(reserved),
            reason,
            actor: actor.into(),
            reference,
            // The precision every backend stores.
            at: chrono::SubsecRound::trunc_subsecs(at, 6),
        }
    }
}

impl LedgerEntry {
    /// The entry without the quantities after the change (see [`LedgerEntry::quantity`]).
    pub fn without_totals(mut self) -> LedgerEntry {
        self.quantity = None;
        self.reserved = None;
        self
    }

    /// The entry of a product's first stock (`opening` when created, `import` when
    /// imported): everything it holds, by the system.
    pub fn opening(p: &Product, reason: StockReason, at: DateTime<Utc>) -> LedgerEntry {
        LedgerEntry::new(
            p.id.clone(),
            i64::try_from(p.quantity).unwrap_or(i64::MAX),
            i64::try_from(p.reserved).unwrap_or(i64::MAX),
            (p.quantity, p.reserved),
            reason,
            SYSTEM_ACTOR,
            None,
            at,
        )
    }
}

/// The checkpoint that replaces a product's `pruned` entries (and its earlier checkpoint,
/// when it has one): the id, time and quantities after of the newest of them, the sums of all
/// their deltas, so the product's entries add up as before. `None` when nothing is pruned.
pub fn checkpoint(pruned: &[LedgerEntry], earlier: Option<&LedgerEntry>) -> Option<LedgerEntry> {
    let newest = pruned.iter().max_by_key(|e| e.id)?;
    let all = || pruned.iter().chain(earlier);
    let count = pruned.len() + earlier.map_or(0, |e| checkpointed(e).max(1));
    Some(LedgerEntry {
        id: newest.id,
        product_id: newest.product_id.clone(),
        delta: all().map(|e| e.delta).sum(),
        reserved_delta: all().map(|e| e.reserved_delta).sum(),
        quantity: newest.quantity,
        reserved: newest.reserved,
        reason: StockReason::Checkpoint,
        actor: SYSTEM_ACTOR.to_owned(),
        reference: Some(format!("{count} entries pruned")),
        at: newest.at,
    })
}

/// How many entries a checkpoint stands for (1 for any other entry).
fn checkpointed(e: &LedgerEntry) -> usize {
    if e.reason != StockReason::Checkpoint {
        return 1;
    }
    e.reference
        .as_deref()
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

impl Listed for LedgerEntry {
    fn cursor(&self) -> String {
        self.id.to_string()
    }
}

/// The reference a change keeps from an operator's `reason` and `reference` (either alone, or
/// `reason: reference`).
pub fn stock_note(reason: Option<String>, reference: Option<String>) -> Option<String> {
    match (reason, reference) {
        (Some(why), Some(r)) => Some(format!("{why}: {r}")),
        (why, r) => r.or(why),
    }
}

/// A compare-and-set of a product's available quantity: the input of
/// [`LedgerStore::set_stock`](crate::LedgerStore::set_stock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StockSet {
    /// The product.
    pub product_id: ProductId,
    /// The new available quantity (at most [`STOCK_MAX`]).
    pub quantity: u64,
    /// The available quantity the caller last saw: the set is refused
    /// ([`Error::StockChanged`]) when the product no longer has it.
    pub expected: u64,
    /// Why (free text kept as the entry's reference when no reference is given).
    pub reference: Option<String>,
    /// Who.
    pub actor: String,
    /// When.
    pub now: DateTime<Utc>,
}

impl StockSet {
    /// Validates a set: the quantity within [`STOCK_MAX`], the reference at most
    /// [`REFERENCE_MAX_BYTES`] and free of control characters.
    pub fn new(
        product_id: ProductId,
        quantity: u64,
        expected: u64,
        reference: Option<String>,
        actor: impl Into<String>,
    ) -> Result<StockSet> {
        if quantity > STOCK_MAX {
            return Err(Error::invalid(
                "quantity",
                format!("must be at most {STOCK_MAX}"),
            ));
        }
        if reference
            .as_ref()
            .is_some_and(|r| r.len() > REFERENCE_MAX_BYTES || r.chars().any(char::is_control))
        {
            return Err(Error::invalid(
                "reference",
                format!("must be at most {REFERENCE_MAX_BYTES} bytes, without control characters"),
            ));
        }
        Ok(StockSet {
            product_id,
            quantity,
            expected,
            reference,
            actor: actor.into(),
            now: now(),
        })
    }

    /// Decides the set against the product's current available quantity: the entry to write
    /// (delta from `current`), or [`Error::StockChanged`] when `current` is not `expected`.
    pub fn decide(&self, current: u64, reserved: u64) -> Result<LedgerEntry> {
        if current != self.expected {
            return Err(Error::StockChanged {
                product_id: self.product_id.to_string(),
                expected: self.expected,
                current,
            });
        }
        let delta = i128::from(self.quantity) - i128::from(current);
        Ok(LedgerEntry::new(
            self.product_id.clone(),
            i64::try_from(delta).unwrap_or(i64::MAX),
            0,
            (self.quantity, reserved),
            StockReason::Set,
            self.actor.clone(),
            self.reference.clone(),
            self.now,
        ))
    }
}

/// A product's quantities beside what its ledger entries add up to, read together in one
/// atomic step ([`LedgerStore::ledger_balance`](crate::LedgerStore::ledger_balance)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// The product as it stands.
    pub product: Product,
    /// Its entries' available deltas, summed.
    pub ledger_quantity: i64,
    /// Its entries' reserved deltas, summed.
    pub ledger_reserved: i64,
}

impl Balance {
    /// The balance of `product` against `entries` (all of its entries).
    pub fn of(product: Product, entries: &[LedgerEntry]) -> Balance {
        Balance {
            product,
            ledger_quantity: entries.iter().map(|e| e.delta).sum(),
            ledger_reserved: entries.iter().map(|e| e.reserved_delta).sum(),
        }
    }

    /// Where the product's quantities and its entries disagree; `None` when they agree.
    pub fn difference(&self) -> Option<Difference> {
        let agrees = i128::from(self.ledger_quantity) == i128::from(self.product.quantity)
            && i128::from(self.ledger_reserved) == i128::from(self.product.reserved);
        (!agrees).then(|| Difference {
            product_id: self.product.id.clone(),
            quantity: self.product.quantity,
            ledger_quantity: self.ledger_quantity,
            reserved: self.product.reserved,
            ledger_reserved: self.ledger_reserved,
        })
    }
}

/// What a product's entries add up to, against what it shows ([`Balance::difference`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The product.
    pub product_id: ProductId,
    /// Available quantity it shows.
    pub quantity: u64,
    /// Available quantity its entries add up to.
    pub ledger_quantity: i64,
    /// Reserved quantity it shows.
    pub reserved: u64,
    /// Reserved quantity its entries add up to.
    pub ledger_reserved: i64,
}

impl Difference {
    /// The repair of this difference at `now`: the product's quantities set back to what the
    /// ledger says (the change nobody recorded undone), with a `set` entry of no delta whose
    /// reference names what was found. [`Error::InvalidInput`] when the ledger adds up to a
    /// negative quantity (only a person can say what the stock is then: set it by hand).
    pub fn repair(&self, now: DateTime<Utc>) -> Result<LedgerEntry> {
        let (Ok(quantity), Ok(reserved)) = (
            u64::try_from(self.ledger_quantity),
            u64::try_from(self.ledger_reserved),
        ) else {
            return Err(Error::invalid(
                "ledger",
                format!(
                    "the entries of {} add up to {} available and {} reserved: set its stock by hand",
                    self.product_id, self.ledger_quantity, self.ledger_reserved
                ),
            ));
        };
        Ok(LedgerEntry::new(
            self.product_id.clone(),
            0,
            0,
            (quantity, reserved),
            StockReason::Set,
            SYSTEM_ACTOR,
            Some(format!(
                "reconcile: found {} available and {} reserved, not in the ledger",
                self.quantity, self.reserved
            )),
            now,
        ))
    }
}

/// Compares a product's quantities with the sum of its entries (all of them, in any order):
/// `None` when they agree.
pub fn reconcile(product: &Product, entries: &[LedgerEntry]) -> Option<Difference> {
    Balance::of(product.clone(), entries).difference()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product(quantity: u64, reserved: u64) -> Product {
        Product {
            id: ProductId::new("p").unwrap(),
            name: "P".into(),
            quantity,
            reserved,
            created_at: now(),
            updated_at: now(),
        }
    }

    #[test]
    fn a_set_is_refused_when_the_stock_moved() {
        let set = StockSet::new(ProductId::new("p").unwrap(), 10, 4, None, "u").unwrap();
        let err = set.decide(3, 0).unwrap_err();
        assert!(
            matches!(
                err,
                Error::StockChanged {
                    current: 3,
                    expected: 4,
                    ..
                }
            ),
            "{err:?}"
        );
        let entry = set.decide(4, 2).unwrap();
        assert_eq!(
            (entry.delta, entry.quantity, entry.reserved),
            (6, Some(10), Some(2))
        );
        assert_eq!(entry.reason, StockReason::Set);
        let down = StockSet::new(ProductId::new("p").unwrap(), 1, 4, None, "u").unwrap();
        assert_eq!(down.decide(4, 0).unwrap().delta, -3);
    }

    #[test]
    fn a_checkpoint_keeps_the_sums_and_the_newest_entry_s_place() {
        let at = now();
        let id = || ProductId::new("p").unwrap();
        let old = vec![
            LedgerEntry::new(
                id(),
                5,
                0,
                (5, 0),
                StockReason::Opening,
                SYSTEM_ACTOR,
                None,
                at,
            ),
            LedgerEntry::new(id(), -2, 0, (3, 0), StockReason::Order, "u", None, at),
        ];
        let first = checkpoint(&old, None).unwrap();
        assert_eq!(
            (first.id, first.delta, first.quantity),
            (old[1].id, 3, Some(3))
        );
        assert_eq!(first.reference.as_deref(), Some("2 entries pruned"));
        let more = vec![LedgerEntry::new(
            id(),
            -1,
            1,
            (2, 1),
            StockReason::Hold,
            "u",
            None,
            at,
        )];
        let second = checkpoint(&more, Some(&first)).unwrap();
        assert_eq!(
            (second.id, second.delta, second.reserved_delta),
            (more[0].id, 2, 1)
        );
        assert_eq!(second.reference.as_deref(), Some("3 entries pruned"));
        assert_eq!(checkpoint(&[], Some(&first)), None);
    }

    #[test]
    fn a_note_keeps_the_reason_and_the_reference() {
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(stock_note(s("count"), s("sheet-12")), s("count: sheet-12"));
        assert_eq!(stock_note(None, s("PO-7")), s("PO-7"));
        assert_eq!(stock_note(s("count"), None), s("count"));
        assert_eq!(stock_note(None, None), None);
    }

    #[test]
    fn bad_sets_are_refused_naming_the_field() {
        let p = || ProductId::new("p").unwrap();
        let e = StockSet::new(p(), STOCK_MAX + 1, 0, None, "u").unwrap_err();
        assert!(e.to_string().contains("quantity"), "{e}");
        let e = StockSet::new(p(), 1, 0, Some("a\nb".into()), "u").unwrap_err();
        assert!(e.to_string().contains("reference"), "{e}");
        let e = StockSet::new(p(), 1, 0, Some("x".repeat(513)), "u").unwrap_err();
        assert!(e.to_string().contains("reference"), "{e}");
    }

    #[test]
    fn reconcile_finds_what_the_entries_do_not_explain() {
        let at = now();
        let id = || ProductId::new("p").unwrap();
        let entries = vec![
            LedgerEntry::new(
                id(),
                5,
                0,
                (5, 0),
                StockReason::Opening,
                SYSTEM_ACTOR,
                None,
                at,
            ),
            LedgerEntry::new(id(), -2, 0, (3, 0), StockReason::Order, "u", None, at),
            LedgerEntry::new(id(), -1, 1, (2, 1), StockReason::Hold, "u", None, at),
        ];
        assert_eq!(reconcile(&product(2, 1), &entries), None);
        let d = reconcile(&product(7, 1), &entries).expect("a difference");
        assert_eq!((d.quantity, d.ledger_quantity), (7, 2));
    }
}
