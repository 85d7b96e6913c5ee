//! Domain types. Every constructor validates, so a value of these types is always valid.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};

/// Shortest accepted password, in bytes.
pub const PASSWORD_MIN_BYTES: usize = 8;
/// Longest accepted password, in bytes: hashing cost must not be the client's to choose.
pub const PASSWORD_MAX_BYTES: usize = 1024;
/// Largest stock a product may hold (10^12 units): far beyond any shop, and far from every
/// backend's integer limits, so stock arithmetic can never overflow.
pub const STOCK_MAX: u64 = 1_000_000_000_000;
/// Largest quantity one order may ask for.
pub const QUANTITY_MAX: u64 = 1_000_000;
/// Longest product id, in bytes.
pub const PRODUCT_ID_MAX_BYTES: usize = 128;
/// Longest product name, in bytes.
pub const PRODUCT_NAME_MAX_BYTES: usize = 512;
/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_MAX_BYTES: usize = 255;

/// The current time at the precision every backend stores: microseconds.
pub fn now() -> DateTime<Utc> {
    use chrono::SubsecRound;
    Utc::now().trunc_subsecs(6)
}

/// Implements `as_str`, `Display` and `FromStr` for a field-less enum stored as text.
macro_rules! text_enum {
    ($ty:ident, $what:literal { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The stored text form.
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
        impl FromStr for $ty {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self> {
                match s {
                    $($text => Ok($ty::$variant),)+
                    other => Err(Error::invalid($what, format!("unknown value {other:?}"))),
                }
            }
        }
    };
}

mod event;
mod ledger;
mod notification;
mod order;
mod product;
mod reservation;
mod user;

pub use event::*;
pub use ledger::*;
pub use notification::*;
pub use order::*;
pub use product::*;
pub use reservation::*;
pub use user::*;

/// A window of a list: at most `limit` items, starting after the cursor `after` when given
/// (keyset pagination), then skipping `offset` more.
///
/// Prefer the cursor: it costs the same on every page (a database skips `offset` rows one by
/// one, and Firestore bills every skipped document) and does not shift when items are added
/// or removed between pages. The cursor of an item is its [`Listed::cursor`]; pass the last
/// item's to get the next page:
///
/// ```
/// # use inventory_core::Page;
/// let first = Page::first(2)?;
/// // List with `first`; if the last product it returned is "p-2" (its `cursor()`):
/// let next = Page::first(2)?.after("p-2");
/// assert_eq!(next.after.as_deref(), Some("p-2"));
/// # Ok::<(), inventory_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Items to skip (after the cursor, when there is one).
    pub offset: u32,
    /// Items to return (1 to 1000).
    pub limit: u32,
    /// Only items after this cursor in the list's order: the [`Listed::cursor`] of the last
    /// item of the previous page.
    pub after: Option<String>,
}

impl Page {
    /// Largest page size.
    pub const MAX_LIMIT: u32 = 1000;

    /// Validates the window.
    pub fn new(offset: u32, limit: u32) -> Result<Self> {
        if limit == 0 || limit > Self::MAX_LIMIT {
            return Err(Error::invalid(
                "limit",
                format!("must be 1 to {}", Self::MAX_LIMIT),
            ));
        }
        Ok(Page {
            offset,
            limit,
            after: None,
        })
    }

    /// The first `limit` items.
    pub fn first(limit: u32) -> Result<Self> {
        Self::new(0, limit)
    }

    /// The items after `cursor` (keyset pagination).
    pub fn after(mut self, cursor: impl Into<String>) -> Self {
        self.after = Some(cursor.into());
        self
    }

    /// The cursor read as an order id (orders are listed by id); `InvalidInput` when it is
    /// not one.
    pub fn after_order(&self) -> Result<Option<Uuid>> {
        self.after
            .as_deref()
            .map(|a| Uuid::parse_str(a).map_err(|_| Error::invalid("after", "must be an order id")))
            .transpose()
    }
}

/// An item of a paged list, and where a page that ends with it continues.
pub trait Listed {
    /// The item's key in its list: a product's id, an order's id, a user's email, a
    /// notification's id. Lists are ordered by it (orders newest first).
    fn cursor(&self) -> String;
}

impl Listed for Product {
    fn cursor(&self) -> String {
        self.id.to_string()
    }
}

impl Listed for Reservation {
    fn cursor(&self) -> String {
        self.id.to_string()
    }
}

impl Listed for Order {
    fn cursor(&self) -> String {
        self.id.to_string()
    }
}

impl Listed for User {
    fn cursor(&self) -> String {
        self.email.to_string()
    }
}

impl Listed for Notification {
    fn cursor(&self) -> String {
        self.id.to_string()
    }
}

impl Default for Page {
    fn default() -> Self {
        Page {
            offset: 0,
            limit: 100,
            after: None,
        }
    }
}
