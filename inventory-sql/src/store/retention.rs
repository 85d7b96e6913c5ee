//! The retention port: each call is one statement (one atomic step) over a partial index that
//! holds only the rows it may remove (migration 0012), oldest first, at most `limit` rows.

use super::*;

/// Runs one retention statement with `before` and `limit` bound; returns the rows it changed.
macro_rules! sweep {
    ($self:ident, $sql:expr, $before:expr, $limit:expr) => {
        with_pool!($self, write, |pool, D| {
            Ok(sqlx::query($sql)
                .bind(ts($before))
                .bind(i64::from($limit))
                .execute(pool)
                .await
                .map_err(db)?
                .rows_affected())
        })
    };
}

#[async_trait]
impl RetentionStore for SqlStore {
    async fn expire_idempotency_keys(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        // The outer `IS NOT NULL` makes a row another process expired meanwhile count once.
        sweep!(
            self,
            "UPDATE orders SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL AND id IN \
             (SELECT id FROM orders WHERE idempotency_key IS NOT NULL AND created_at < $1 \
              ORDER BY created_at LIMIT $2)",
            before,
            limit
        )
    }

    async fn prune_notifications(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        sweep!(
            self,
            "DELETE FROM notifications WHERE id IN \
             (SELECT id FROM notifications WHERE status IN ('sent', 'cancelled') \
              AND created_at < $1 ORDER BY created_at LIMIT $2)",
            before,
            limit
        )
    }

    async fn remove_failed_notifications(&self, id: Option<Uuid>, limit: u32) -> Result<u64> {
        with_pool!(self, write, |pool, D| {
            let removed = match id {
                Some(id) => {
                    sqlx::query("DELETE FROM notifications WHERE id = $1 AND status = 'failed'")
                        .bind(id.to_string())
                        .execute(pool)
                        .await
                }
                None => {
                    sqlx::query(
                        "DELETE FROM notifications WHERE id IN \
                         (SELECT id FROM notifications WHERE status = 'failed' ORDER BY id LIMIT $1)",
                    )
                    .bind(i64::from(limit))
                    .execute(pool)
                    .await
                }
            };
            Ok(removed.map_err(db)?.rows_affected())
        })
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        sweep!(
            self,
            "DELETE FROM event_deliveries WHERE id IN \
             (SELECT id FROM event_deliveries WHERE status = 'delivered' \
              AND created_at < $1 ORDER BY created_at LIMIT $2)",
            before,
            limit
        )
    }
}
