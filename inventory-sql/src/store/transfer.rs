//! Moving whole data sets in and out (export, import, counts).

use async_trait::async_trait;
use inventory_core::*;

use crate::error::{db, map};
use crate::rows::*;

use super::ledger::insert_entries;
use super::*;

#[async_trait]
impl Transfer for SqlStore {
    async fn list_users(&self, page: Page) -> Result<Vec<User>> {
        let (limit, offset, after) = page_args(page, Way::Up);
        let rows: Vec<UserRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                user_columns!(),
                " FROM users WHERE email > $3 ORDER BY email LIMIT $1 OFFSET $2"
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

    async fn import_product(&self, p: &Product) -> Result<()> {
        with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                sqlx::query("INSERT INTO products (id, name, quantity, reserved, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6)")
                    .bind(p.id.as_str())
                    .bind(&p.name)
                    .bind(i64::try_from(p.quantity).map_err(|_| Error::invalid("quantity", "too large"))?)
                    .bind(i64::try_from(p.reserved).map_err(|_| Error::invalid("reserved", "too large"))?)
                    .bind(ts(p.created_at))
                    .bind(ts(p.updated_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| map(e, &format!("product {} already exists", p.id)))?;
                tx.commit().await.map_err(db)?;
                Ok::<_, Error>(())
            }
            .await
        })
    }

    async fn import_order(&self, o: &Order) -> Result<()> {
        with_pool!(self, write, |pool, D| {
            sqlx::query(
                "INSERT INTO orders (id, user_id, buyer_email, product_id, quantity, status, idempotency_key, created_at, updated_at, lines) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(o.id.to_string())
            .bind(o.user_id.to_string())
            .bind(o.buyer_email.as_str())
            .bind(o.lines.first().product_id.as_str())
            .bind(i64::from(o.lines.first().quantity))
            .bind(o.status.as_str())
            .bind(o.idempotency_key.as_deref())
            .bind(ts(o.created_at))
            .bind(ts(o.updated_at))
            .bind(to_json(o.lines.stored_list()))
            .execute(pool)
            .await
            .map_err(|e| map(e, &format!("order {} already exists", o.id)))?;
        });
        Ok(())
    }

    async fn import_notification(&self, n: &Notification) -> Result<()> {
        self.insert_notification(n).await
    }

    async fn import_ledger_entry(&self, e: &LedgerEntry) -> Result<()> {
        with_pool!(self, write, |pool, D| {
            async {
                insert_entries!(pool, D, std::slice::from_ref(e));
                Ok::<_, Error>(())
            }
            .await
        })
    }

    async fn list_reservations(&self, page: Page) -> Result<Vec<Reservation>> {
        let (limit, offset, after) = page_args(page, Way::Up);
        let rows: Vec<ReservationRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                reservation_columns!(),
                " FROM reservations WHERE id > $3 ORDER BY id LIMIT $1 OFFSET $2"
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

    async fn import_reservation(&self, r: &Reservation) -> Result<()> {
        with_pool!(self, write, |pool, D| {
            super::reservations::insert_hold!(pool, r);
        });
        Ok(())
    }

    async fn count_records(&self) -> Result<inventory_core::transfer::Counts> {
        #[allow(clippy::type_complexity)]
        let (users, products, orders, notifications, reservations, ledger_entries): (
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
        ) = with_pool!(self, read, |pool, D| {
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM users), (SELECT COUNT(*) FROM products), \
                     (SELECT COUNT(*) FROM orders), (SELECT COUNT(*) FROM notifications), \
                     (SELECT COUNT(*) FROM reservations), (SELECT COUNT(*) FROM stock_ledger)",
            )
            .fetch_one(pool)
            .await
            .map_err(db)?
        });
        Ok(inventory_core::transfer::Counts {
            users: users as u64,
            products: products as u64,
            orders: orders as u64,
            notifications: notifications as u64,
            reservations: reservations as u64,
            ledger_entries: ledger_entries as u64,
        })
    }
}
