//! The products seeded at start (`SEED_PRODUCTS`).

use inventory_core::{NewProduct, ProductId, Store};

use super::*;

/// A product to seed, in the original's field names.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedProduct {
    /// Id.
    pub product_id: String,
    /// Name.
    pub product_name: String,
    /// Initial stock.
    pub quantity: u64,
}

impl SeedProduct {
    /// Parses a JSON array of seed products, checking every id and name.
    pub fn parse_list(json: &str) -> inventory_core::Result<Vec<SeedProduct>> {
        let products: Vec<SeedProduct> = serde_json::from_str(json)
            .map_err(|e| inventory_core::Error::invalid("products", e.to_string()))?;
        for p in &products {
            p.to_new()?;
        }
        Ok(products)
    }

    fn to_new(&self) -> inventory_core::Result<NewProduct> {
        NewProduct::new(
            ProductId::new(self.product_id.clone())?,
            self.product_name.clone(),
            self.quantity,
        )
    }

    /// Creates the products that do not exist yet (never resets stock); returns how many
    /// were created.
    pub async fn ensure_all(
        products: &[SeedProduct],
        store: &dyn Store,
    ) -> inventory_core::Result<usize> {
        let mut created = 0;
        for p in products {
            if store
                .ensure_product(&p.to_new()?, inventory_core::now())
                .await?
            {
                created += 1;
            }
        }
        Ok(created)
    }
}

pub(super) fn seed(vars: &Vars<'_>, dev: bool) -> Result<Vec<SeedProduct>> {
    let raw = match vars.get("SEED_PRODUCTS") {
        Some(v) if v.trim_start().starts_with('[') => v,
        Some(path) => std::fs::read_to_string(path.trim()).map_err(|e| {
            SettingsError::invalid("SEED_PRODUCTS", format!("{}: {e}", path.trim()))
        })?,
        None if dev => DEFAULT_SEED.to_owned(),
        None => return Ok(Vec::new()),
    };
    SeedProduct::parse_list(&raw).map_err(|e| SettingsError::invalid("SEED_PRODUCTS", e))
}
