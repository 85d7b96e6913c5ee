//! The orders port: placing goes through the group-commit [`writer`](super::writer); reading
//! and cancelling are statements of their own.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inventory_core::*;
use uuid::Uuid;

use crate::error::db;
use crate::rows::*;

use super::ledger::move_units;
use super::*;

#[async_trait]
impl OrderStore for SqlStore {
    async fn place_order(&self, new: &NewOrder) -> Result<Placed> {
        self.writer.place(new).await
    }

    async fn get_order(&self, id: Uuid) -> Result<Option<Order>> {
        let row: Option<OrderRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE id = $1"
            ))
            .bind(id.to_string())
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(Order::try_from).transpose()
    }

    async fn list_orders_for_user(&self, user_id: Uuid, page: Page) -> Result<Vec<Order>> {
        let (limit, offset, after) = page_args(page, Way::Down);
        let rows: Vec<OrderRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE user_id = $1 AND id < $4 ORDER BY id DESC LIMIT $2 OFFSET $3"
            ))
            .bind(user_id.to_string())
            .bind(limit)
            .bind(offset)
            .bind(&after)
            .fetch_all(pool)
            .await
            .map_err(db)?
        });
        all(rows)
    }

    async fn list_orders(&self, page: Page) -> Result<Vec<Order>> {
        let (limit, offset, after) = page_args(page, Way::Down);
        let rows: Vec<OrderRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                order_columns!(),
                " FROM orders WHERE id < $3 ORDER BY id DESC LIMIT $1 OFFSET $2"
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

    async fn cancel_order(&self, id: Uuid, actor: &str, now: DateTime<Utc>) -> Result<Order> {
        with_pool!(self, write, |pool, D| {
            async {
            let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
            let row: Option<OrderRow> = sqlx::query_as(
                concat!("UPDATE orders SET status = 'cancelled', updated_at = $1 WHERE id = $2 AND status <> 'cancelled' RETURNING ", order_columns!()),
            )
            .bind(ts(now))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
            let Some(row) = row else {
                let exists: Option<(String,)> = sqlx::query_as("SELECT status FROM orders WHERE id = $1")
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                return Err(match exists {
                    Some(_) => Error::AlreadyCancelled(id),
                    None => Error::NotFound(format!("order {id}")),
                });
            };
            // Every line's units back, product by product in id order (the order in which
            // placing locks them on PostgreSQL).
            let order = Order::try_from(row)?;
            let reference = Some(order.id.to_string());
            move_units!(tx, D, &order.lines.demand(), StockMove::Give, StockReason::Cancel, actor, reference, now);
            // Its confirmation is never sent; a send in flight loses its lease.
            sqlx::query("UPDATE notifications SET status = 'cancelled', lease_owner = NULL, lease_until = NULL \
                         WHERE order_id = $1 AND status = 'pending'")
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            let trace = inventory_core::trace::current();
            let event = Event::order(EventType::OrderCancelled, &order, now, trace.as_ref());
            super::events::insert_events!(&mut *tx, D, std::slice::from_ref(&event));
            tx.commit().await.map_err(db)?;
            Ok::<_, Error>(order)
        }
        .await
        })
    }
}
