//! The products port.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inventory_core::*;

use crate::error::{db, map};
use crate::rows::*;

use super::*;

#[async_trait]
impl ProductStore for SqlStore {
    async fn create_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<Product> {
        let row: ProductRow = with_pool!(self, write, |pool, D| {
            sqlx::query_as(
                concat!("INSERT INTO products (id, name, quantity, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) RETURNING ", product_columns!()),
            )
            .bind(p.id.as_str())
            .bind(&p.name)
            .bind(p.quantity as i64)
            .bind(ts(now))
            .fetch_one(pool)
            .await
            .map_err(|e| map(e, &format!("product {} already exists", p.id)))?
        });
        row.try_into()
    }

    async fn ensure_product(&self, p: &NewProduct, now: DateTime<Utc>) -> Result<bool> {
        let done = with_pool!(self, write, |pool, D| {
            sqlx::query(
                "INSERT INTO products (id, name, quantity, created_at, updated_at) VALUES ($1, $2, $3, $4, $4) ON CONFLICT (id) DO NOTHING",
            )
            .bind(p.id.as_str())
            .bind(&p.name)
            .bind(p.quantity as i64)
            .bind(ts(now))
            .execute(pool)
            .await
            .map_err(db)?
            .rows_affected()
        });
        Ok(done == 1)
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

    async fn restock(&self, id: &ProductId, add: u64, now: DateTime<Utc>) -> Result<Product> {
        let too_much = || Error::invalid("quantity", format!("stock would exceed {STOCK_MAX}"));
        let add = i64::try_from(add)
            .ok()
            .filter(|a| *a as u64 <= STOCK_MAX)
            .ok_or_else(too_much)?;
        let row: Option<ProductRow> = with_pool!(self, write, |pool, D| {
            sqlx::query_as(
                concat!("UPDATE products SET quantity = quantity + $1, updated_at = $2 WHERE id = $3 AND quantity + $1 <= $4 RETURNING ", product_columns!()),
            )
            .bind(add)
            .bind(ts(now))
            .bind(id.as_str())
            .bind(STOCK_MAX as i64)
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        match row {
            Some(row) => row.try_into(),
            None if self.get_product(id).await?.is_some() => Err(too_much()),
            None => Err(Error::NotFound(format!("product {id}"))),
        }
    }
}
