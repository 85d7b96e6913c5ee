//! The notifications port: the outbox, claimed under leases.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inventory_core::*;
use tokio::sync::watch;
use uuid::Uuid;

use crate::error::{db, map};
use crate::rows::*;

use super::*;

impl SqlStore {
    /// Writes a notification as it is (import, and [`NotificationStore::enqueue`]).
    pub(super) async fn insert_notification(&self, n: &Notification) -> Result<()> {
        let m = MessageParts::from(&n.message);
        with_pool!(self, write, |pool, D| {
            sqlx::query(
                "INSERT INTO notifications (id, kind, order_id, recipient, product_id, product_name, quantity, \
                 user_id, code, status, attempts, next_attempt_at, lease_owner, lease_until, last_error, created_at, sent_at, lines) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)",
            )
            .bind(n.id.to_string())
            .bind(n.message.kind())
            .bind(m.order_id.map(|id| id.to_string()))
            .bind(n.recipient.as_str())
            .bind(m.product_id.as_deref())
            .bind(m.product_name.as_deref())
            .bind(m.quantity)
            .bind(m.user_id.map(|id| id.to_string()))
            .bind(m.code.as_deref())
            .bind(n.status.as_str())
            .bind(i64::from(n.attempts))
            .bind(ts(n.next_attempt_at))
            .bind(n.lease_owner.as_deref())
            .bind(n.lease_until.map(ts))
            .bind(n.last_error.as_deref())
            .bind(ts(n.created_at))
            .bind(n.sent_at.map(ts))
            .bind(to_json(m.lines.as_deref()))
            .execute(pool)
            .await
            .map_err(|e| map(e, &format!("notification {} already exists", n.id)))?;
        });
        Ok(())
    }

    pub(super) async fn lease_error(&self, id: Uuid) -> Error {
        match self.notification_exists(id).await {
            Ok(true) => Error::LeaseLost(id),
            Ok(false) => Error::NotFound(format!("notification {id}")),
            Err(e) => e,
        }
    }

    pub(super) async fn notification_exists(&self, id: Uuid) -> Result<bool> {
        let row: Option<(String,)> = with_pool!(self, write, |pool, D| {
            sqlx::query_as("SELECT id FROM notifications WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(pool)
                .await
                .map_err(db)?
        });
        Ok(row.is_some())
    }
}

#[async_trait]
impl NotificationStore for SqlStore {
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let until = now + chrono::Duration::from_std(lease).map_err(Error::other)?;
        self.writer.claim(owner, now, until, limit).await
    }

    async fn extend_lease(&self, id: Uuid, owner: &str, until: DateTime<Utc>) -> Result<()> {
        let updated = with_pool!(self, write, |pool, D| {
            sqlx::query(
                "UPDATE notifications SET lease_until = $1 \
                 WHERE id = $2 AND lease_owner = $3 AND status = 'pending'",
            )
            .bind(ts(until))
            .bind(id.to_string())
            .bind(owner)
            .execute(pool)
            .await
            .map_err(db)?
            .rows_affected()
        });
        match updated {
            0 => Err(self.lease_error(id).await),
            _ => Ok(()),
        }
    }

    async fn mark_sent(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<()> {
        if self.writer.mark_sent(id, owner, now).await? {
            Ok(())
        } else {
            Err(self.lease_error(id).await)
        }
    }

    async fn mark_failed(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let error: String = error.chars().take(2000).collect();
        let updated = with_pool!(self, write, |pool, D| {
            sqlx::query(
                "UPDATE notifications SET last_error = $1, lease_owner = NULL, lease_until = NULL, \
                 next_attempt_at = COALESCE($2, next_attempt_at), \
                 status = CASE WHEN $2 IS NULL THEN 'failed' ELSE 'pending' END \
                 WHERE id = $3 AND lease_owner = $4 AND status = 'pending'",
            )
            .bind(error)
            .bind(next_attempt_at.map(ts))
            .bind(id.to_string())
            .bind(owner)
            .execute(pool)
            .await
            .map_err(db)?
            .rows_affected()
        });
        if updated == 1 {
            Ok(())
        } else {
            Err(self.lease_error(id).await)
        }
    }

    async fn enqueue(&self, n: &Standalone) -> Result<()> {
        self.insert_notification(n).await?;
        // Wake listeners in other processes too (PostgreSQL), and this process's dispatcher.
        with_pool!(self, write, |pool, D| {
            if let Some(notify) = D::NOTIFY {
                sqlx::query(notify).execute(pool).await.map_err(db)?;
            }
        });
        bump(&self.signal);
        Ok(())
    }

    async fn notification_for_order(&self, order_id: Uuid) -> Result<Option<Notification>> {
        let row: Option<NotificationRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                notification_columns!(),
                " FROM notifications WHERE order_id = $1"
            ))
            .bind(order_id.to_string())
            .fetch_optional(pool)
            .await
            .map_err(db)?
        });
        row.map(Notification::try_from).transpose()
    }

    async fn list_notifications(
        &self,
        status: NotificationStatus,
        page: Page,
    ) -> Result<Vec<Notification>> {
        let (limit, offset, after) = page_args(page, Way::Up);
        let rows: Vec<NotificationRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                notification_columns!(),
                " FROM notifications WHERE status = $1 AND id > $4 ORDER BY id LIMIT $2 OFFSET $3"
            ))
            .bind(status.as_str())
            .bind(limit)
            .bind(offset)
            .bind(&after)
            .fetch_all(pool)
            .await
            .map_err(db)?
        });
        all(rows)
    }

    async fn notification_counts(&self) -> Result<NotificationCounts> {
        let rows: Vec<(String, i64)> = with_pool!(self, read, |pool, D| {
            sqlx::query_as("SELECT status, COUNT(*) FROM notifications GROUP BY status")
                .fetch_all(pool)
                .await
                .map_err(db)?
        });
        let mut counts = NotificationCounts::default();
        for (status, n) in rows {
            let n = n as u64;
            match status.parse::<NotificationStatus>()? {
                NotificationStatus::Pending => counts.pending = n,
                NotificationStatus::Sent => counts.sent = n,
                NotificationStatus::Failed => counts.failed = n,
                NotificationStatus::Cancelled => counts.cancelled = n,
            }
        }
        Ok(counts)
    }

    async fn retry_failed(&self, id: Option<Uuid>, now: DateTime<Utc>) -> Result<u64> {
        let updated = with_pool!(self, write, |pool, D| async {
            let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
            let n = sqlx::query(
                "UPDATE notifications SET status = 'pending', attempts = 0, next_attempt_at = $1 \
                 WHERE status = 'failed' AND ($2 IS NULL OR id = $2)",
            )
            .bind(ts(now))
            .bind(id.map(|id| id.to_string()))
            .execute(&mut *tx)
            .await
            .map_err(db)?
            .rows_affected();
            if let (Some(notify), true) = (D::NOTIFY, n > 0) {
                sqlx::query(notify).execute(&mut *tx).await.map_err(db)?;
            }
            tx.commit().await.map_err(db)?;
            Ok::<_, Error>(n)
        }
        .await)?;
        if updated > 0 {
            bump(&self.signal);
        }
        Ok(updated)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }
}
