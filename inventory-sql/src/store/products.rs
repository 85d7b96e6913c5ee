//! The products port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inventory_core::*;

use crate::error::db;
use crate::rows::*;

use super::ledger::insert_entries;
use super::*;

impl SqlStore {
    /// Inserts a product with its opening ledger entry; `None` when the id exists.
    async fn insert_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<Option<Product>> {
        with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                let row: Option<ProductRow> = sqlx::query_as(concat!(
                    "INSERT INTO products (id, name, quantity, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) \
                     ON CONFLICT (id) DO NOTHING RETURNING ",
                    product_columns!()
                ))
                .bind(p.id.as_str())
                .bind(&p.name)
                .bind(i64::try_from(p.quantity).map_err(|_| Error::invalid("quantity", "too large"))?)
                .bind(ts(now))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
                let Some(row) = row else {
                    return Ok(None);
                };
                let product = Product::try_from(row)?;
                let entry = LedgerEntry::opening(&product, StockReason::Opening, now);
                insert_entries!(&mut *tx, D, std::slice::from_ref(&entry));
                tx.commit().await.map_err(db)?;
                Ok::<_, Error>(Some(product))
            }
            .await
        })
    }
}

#[async_trait]
impl ProductStore for SqlStore {
    async fn create_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<Product> {
        self.insert_product(p, now)
            .await?
            .ok_or_else(|| Error::AlreadyExists(format!("product {} already exists", p.id)))
    }

    async fn ensure_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<bool> {
        Ok(self.insert_product(p, now).await?.is_some())
    }

    async fn get_product(&self, id: &ProductId) -> Result<Option<Product>> {
        let row: Option<ProductRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE id = $1"
            ))
            .bind(id.as_str())
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(Product::try_from).transpose()
    }

    async fn list_products(&self, page: Page) -> Result<Vec<Product>> {
        let (limit, offset, after) = page_args(page, Way::Up);
        let rows: Vec<ProductRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                product_columns!(),
                " FROM products WHERE id > $3 ORDER BY id LIMIT $1 OFFSET $2"
            ))
            .bind(limit)
            .bind(offset)
            .bind(&after)
            .fetch_all(pool)
            .await
            .map_err(db)?
        });
        all(rows)
    }

    async fn restock(
        &self,
        id: &ProductId,
        add: u64,
        actor: &str,
        now: DateTime<Utc>,
    ) -> Result<Product> {
        let too_much = || Error::invalid("quantity", format!("stock would exceed {STOCK_MAX}"));
        let add = i64::try_from(add)
            .ok()
            .filter(|a| *a as u64 <= STOCK_MAX)
            .ok_or_else(too_much)?;
        let restocked: Option<Product> = with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                let row: Option<ProductRow> = sqlx::query_as(
                    concat!("UPDATE products SET quantity = quantity + $1, updated_at = $2 WHERE id = $3 AND quantity + $1 <= $4 RETURNING ", product_columns!()),
                )
                .bind(add)
                .bind(ts(now))
                .bind(id.as_str())
                .bind(STOCK_MAX as i64)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
                let product = row.map(Product::try_from).transpose()?;
                if let Some(p) = &product {
                    let entry = LedgerEntry::new(
                        id.clone(),
                        add,
                        0,
                        (p.quantity, p.reserved),
                        StockReason::Restock,
                        actor,
                        None,
                        now,
                    );
                    insert_entries!(&mut *tx, D, std::slice::from_ref(&entry));
                    tx.commit().await.map_err(db)?;
                }
                Ok::<_, Error>(product)
            }
            .await?
        });
        match restocked {
            Some(product) => Ok(product),
            None if self.get_product(id).await?.is_some() => Err(too_much()),
            None => Err(Error::NotFound(format!("product {id}"))),
        }
    }
}
