//! Products and their stock.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

use super::*;

/// A product id chosen by the caller, such as `product-1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ProductId(String);

impl ProductId {
    /// Validates `raw`: 1 to 128 bytes, no control characters, no surrounding spaces.
    pub fn new(raw: impl Into<String>) -> Result<Self> {
        let raw = raw.into();
        if raw.is_empty() {
            return Err(Error::invalid("product_id", "must not be empty"));
        }
        if raw.len() > PRODUCT_ID_MAX_BYTES {
            return Err(Error::invalid(
                "product_id",
                format!("longer than {PRODUCT_ID_MAX_BYTES} bytes"),
            ));
        }
        if raw.chars().any(char::is_control) || raw.trim() != raw {
            return Err(Error::invalid(
                "product_id",
                "must not contain control characters or surrounding spaces",
            ));
        }
        Ok(ProductId(raw))
    }

    /// The id as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProductId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ProductId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        ProductId::new(s)
    }
}

impl From<ProductId> for String {
    fn from(p: ProductId) -> String {
        p.0
    }
}

/// Whether a product can be ordered, derived from its quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProductStatus {
    /// Quantity above zero.
    InStock,
    /// Quantity zero.
    OutOfStock,
}

text_enum!(ProductStatus, "status" { InStock => "in_stock", OutOfStock => "out_of_stock" });

/// A product with its stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    /// Caller-chosen id.
    pub id: ProductId,
    /// Display name.
    pub name: String,
    /// Units available to order; never negative.
    pub quantity: u64,
    /// Units held by active holds ([`Reservation`]): neither available nor sold.
    pub reserved: u64,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl Product {
    /// The product a store holds after creating `new` at `now` (for tests, fakes and
    /// imports; a store's `create_product` returns the same).
    ///
    /// ```
    /// use inventory_core::*;
    /// let tea = Product::new(NewProduct::new(ProductId::new("tea")?, "Tea", 3)?, now());
    /// assert_eq!(tea.status(), ProductStatus::InStock);
    /// # Ok::<(), Error>(())
    /// ```
    pub fn new(new: NewProduct, now: DateTime<Utc>) -> Product {
        Product {
            id: new.id,
            name: new.name,
            quantity: new.quantity,
            reserved: 0,
            created_at: now,
            updated_at: now,
        }
    }

    /// `in_stock` while quantity is above zero.
    pub fn status(&self) -> ProductStatus {
        if self.quantity > 0 {
            ProductStatus::InStock
        } else {
            ProductStatus::OutOfStock
        }
    }
}

/// A product to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    /// Caller-chosen id.
    pub id: ProductId,
    /// Display name, 1 to 512 bytes.
    pub name: String,
    /// Initial stock.
    pub quantity: u64,
}

impl NewProduct {
    /// Validates the name and builds the product.
    pub fn new(id: ProductId, name: impl Into<String>, quantity: u64) -> Result<Self> {
        let name = name.into();
        if name.trim().is_empty() || name.len() > PRODUCT_NAME_MAX_BYTES {
            return Err(Error::invalid(
                "product_name",
                format!("must be 1 to {PRODUCT_NAME_MAX_BYTES} bytes"),
            ));
        }
        // It reaches email subjects and bodies: no control characters (NUL, CR, LF, ESC...).
        if name.chars().any(char::is_control) {
            return Err(Error::invalid(
                "product_name",
                "must not contain control characters",
            ));
        }
        if quantity > STOCK_MAX {
            return Err(Error::invalid(
                "quantity",
                format!("must be at most {STOCK_MAX}"),
            ));
        }
        Ok(NewProduct { id, name, quantity })
    }
}
