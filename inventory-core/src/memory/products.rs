//! The products port: stock changes through `State::shift`, each with its ledger entry.

use super::*;

#[async_trait]
impl ProductStore for MemoryStore {
    async fn create_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<Product> {
        self.with(|s| {
            if s.products.contains_key(&p.id) {
                return Err(Error::AlreadyExists(format!(
                    "product {} already exists",
                    p.id
                )));
            }
            let product = Product {
                id: p.id.clone(),
                name: p.name.clone(),
                quantity: p.quantity,
                reserved: 0,
                created_at: now,
                updated_at: now,
            };
            s.open(&product, StockReason::Opening, now);
            s.products.insert(p.id.clone(), product.clone());
            Ok(product)
        })
    }

    async fn ensure_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<bool> {
        match self.create_product(p, now).await {
            Ok(_) => Ok(true),
            Err(Error::AlreadyExists(_)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>> {
        self.with(|s| Ok(s.products.get(id).cloned()))
    }

    async fn list_products(&self, p: Page) -> Result<Vec<Product>> {
        self.with(|s| Ok(page(s.products.values().cloned(), p, false)))
    }

    async fn restock(
        &self,
        id: &ProductId,
        add: u64,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Product> {
        self.with(|s| {
            let product = s
                .products
                .get(id)
                .ok_or_else(|| Error::NotFound(format!("product {id}")))?;
            product
                .quantity
                .checked_add(add)
                .filter(|q| *q <= STOCK_MAX)
                .ok_or_else(|| {
                    Error::invalid("quantity", format!("stock would exceed {STOCK_MAX}"))
                })?;
            let demand = BTreeMap::from([(id.clone(), add)]);
            s.shift(
                &demand,
                StockMove::Give,
                StockReason::Restock,
                actor,
                None,
                now,
            );
            Ok(s.products[id].clone())
        })
    }
}
