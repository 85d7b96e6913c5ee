//! Events: written by the ports that change orders and holds in their own transactions
//! ([`insert_events`]), fanned out into deliveries, claimed and finished by the event
//! dispatcher; webhook endpoints.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inventory_core::*;

use crate::error::{db, map};
use crate::rows::*;

use super::*;

/// Inserts events (`&[Event]`) in one statement; nothing when there are none.
macro_rules! insert_events {
    ($executor:expr, $d:ty, $events:expr) => {{
        let events: &[inventory_core::Event] = $events;
        if !events.is_empty() {
            let mut q = sqlx::QueryBuilder::<<$d as SqlDialect>::Db>::new("");
            super::events::push_events!(q, events);
            q.build()
                .execute($executor)
                .await
                .map_err(|e| crate::error::map(e, "an event with this id already exists"))?;
        }
    }};
}
pub(super) use insert_events;

/// Pushes the `INSERT` of events (`&[Event]`, not empty) onto a query builder.
macro_rules! push_events {
    ($q:expr, $events:expr) => {{
        let events: &[inventory_core::Event] = $events;
        $q.push(concat!(
            "INSERT INTO events (",
            crate::rows::event_columns!(),
            ") "
        ));
        $q.push_values(events, |mut row, e| {
            row.push_bind(e.id.to_string())
                .push_bind(e.kind.as_str())
                .push_bind(e.key.as_str())
                .push_bind(crate::rows::ts(e.occurred_at))
                .push_bind(e.data.to_string())
                .push_bind(e.traceparent.as_deref());
        });
    }};
}
pub(super) use push_events;

/// The `stock.low` events of taking `demand` from `stock` (available before, as locked),
/// with the products' `thresholds`.
pub(super) fn take_low_stock_events(
    demand: &BTreeMap<ProductId, u64>,
    stock: &BTreeMap<String, (String, i64)>,
    thresholds: &BTreeMap<String, u64>,
    at: DateTime<Utc>,
    trace: Option<&inventory_core::TraceParent>,
) -> Vec<Event> {
    demand
        .iter()
        .filter_map(|(id, units)| {
            let before = stock.get(id.as_str())?.1.max(0).unsigned_abs();
            let threshold = thresholds.get(id.as_str()).copied();
            let after = before.saturating_sub(*units);
            Event::stock_low(id, threshold, (before, after), at, trace)
        })
        .collect()
}

/// The `stock.low` events of a batch: each product with a threshold whose available stock
/// went from above it (`before`) to at or below it (`after`), in the trace of the last order
/// that took from it.
pub(super) fn batch_low_stock_events(
    placed: &[&NewOrder],
    before: &BTreeMap<String, (String, i64)>,
    after: &BTreeMap<String, (String, i64)>,
    thresholds: &BTreeMap<String, u64>,
) -> Vec<Event> {
    thresholds
        .iter()
        .filter_map(|(id, threshold)| {
            let last = placed
                .iter()
                .rev()
                .find(|o| o.lines.iter().any(|l| l.product_id.as_str() == id))?;
            let was = before.get(id)?.1.max(0).unsigned_abs();
            let now = after.get(id)?.1.max(0).unsigned_abs();
            let product = ProductId::new(id.as_str()).ok()?;
            Event::stock_low(
                &product,
                Some(*threshold),
                (was, now),
                last.now,
                last.trace.as_ref(),
            )
        })
        .collect()
}

/// The claim of a destination's due deliveries: $1 owner, $2 lease until, $3 now, $4 limit,
/// $5 destination. PostgreSQL skips rows another dispatcher is claiming.
macro_rules! claim_deliveries_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE event_deliveries SET lease_owner = $1, lease_until = $2, attempts = attempts + 1 ",
            "WHERE id IN (SELECT id FROM event_deliveries WHERE destination = $5 AND status = 'pending' ",
            "AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3) ",
            "ORDER BY event_id LIMIT $4",
            $lock,
            ") RETURNING ",
            crate::rows::delivery_columns!()
        )
    };
}
pub(super) use claim_deliveries_sql;

fn webhook_missing(id: Uuid) -> Error {
    Error::NotFound(format!("webhook {id}"))
}

fn secrets_text(w: &WebhookEndpoint) -> String {
    w.secrets
        .iter()
        .map(WebhookSecret::expose)
        .collect::<Vec<_>>()
        .join(" ")
}

#[async_trait]
impl EventStore for SqlStore {
    async fn create_webhook(&self, w: &WebhookEndpoint) -> Result<()> {
        let events = w
            .events
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(",");
        with_pool!(self, write, |pool, D| {
            sqlx::query(concat!(
                "INSERT INTO webhook_endpoints (",
                webhook_columns!(),
                ") VALUES ($1, $2, $3, $4, $5, $6)"
            ))
            .bind(w.id.to_string())
            .bind(&w.url)
            .bind(&events)
            .bind(secrets_text(w))
            .bind(w.disabled.as_deref())
            .bind(ts(w.created_at))
            .execute(pool)
            .await
            .map(|_| ())
            .map_err(|e| map(e, "a webhook with this id already exists"))?
        });
        Ok(())
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        let rows: Vec<WebhookRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                webhook_columns!(),
                " FROM webhook_endpoints ORDER BY id"
            ))
            .fetch_all(pool)
            .await
            .map_err(db)?
        });
        all(rows)
    }

    async fn update_webhook(&self, w: &WebhookEndpoint) -> Result<()> {
        let done = with_pool!(self, write, |pool, D| {
            sqlx::query("UPDATE webhook_endpoints SET secrets = $1, disabled = $2 WHERE id = $3")
                .bind(secrets_text(w))
                .bind(w.disabled.as_deref())
                .bind(w.id.to_string())
                .execute(pool)
                .await
                .map_err(db)?
                .rows_affected()
        });
        if done == 0 {
            return Err(webhook_missing(w.id));
        }
        Ok(())
    }

    async fn delete_webhook(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                let gone = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
                    .bind(id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected();
                if gone == 0 {
                    return Err(webhook_missing(id));
                }
                sqlx::query(
                    "UPDATE event_deliveries SET status = 'failed', last_error = $1, \
                     lease_owner = NULL, lease_until = NULL, next_attempt_at = $2 \
                     WHERE destination = $3 AND status = 'pending'",
                )
                .bind(ENDPOINT_DELETED)
                .bind(ts(now))
                .bind(Destination::Webhook(id).to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
                tx.commit().await.map_err(db)?;
                Ok::<_, Error>(())
            }
            .await
        })
    }

    async fn fan_out(&self, always: &[Destination], now: DateTime<Utc>, limit: u32) -> Result<u64> {
        with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                // Taken off the queue in the transaction that writes their deliveries: each
                // event is fanned out once, or not at all.
                let rows: Vec<EventRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT $1{}) RETURNING {}",
                    D::SKIP_LOCKED,
                    event_columns!()
                )))
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
                if rows.is_empty() {
                    tx.rollback().await.map_err(db)?;
                    return Ok(0);
                }
                let n = rows.len() as u64;
                let mut events: Vec<Event> = all(rows)?;
                events.sort_by_key(|e| e.id);
                let hooks: Vec<WebhookRow> = sqlx::query_as(concat!(
                    "SELECT ",
                    webhook_columns!(),
                    " FROM webhook_endpoints WHERE disabled IS NULL"
                ))
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
                let hooks: Vec<WebhookEndpoint> = all(hooks)?;
                let deliveries: Vec<Delivery> = events
                    .into_iter()
                    .flat_map(|e| {
                        let kind = e.kind;
                        hooks
                            .iter()
                            .filter(move |w| w.wants(kind))
                            .map(|w| Destination::Webhook(w.id))
                            .chain(always.iter().cloned())
                            .map(move |d| Delivery::new(e.clone(), d, now))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                // Bounded statements: 16 binds per row, SQLite allows 32,766 per statement.
                for chunk in deliveries.chunks(1000) {
                    let mut q = sqlx::QueryBuilder::<<D as SqlDialect>::Db>::new(concat!(
                        "INSERT INTO event_deliveries (",
                        delivery_columns!(),
                        ") "
                    ));
                    q.push_values(chunk, |mut row, d| {
                        let e = &d.event;
                        row.push_bind(d.id.to_string())
                            .push_bind(e.id.to_string())
                            .push_bind(e.kind.as_str())
                            .push_bind(e.key.as_str())
                            .push_bind(ts(e.occurred_at))
                            .push_bind(e.data.to_string())
                            .push_bind(e.traceparent.as_deref())
                            .push_bind(d.destination.to_string())
                            .push_bind(d.status.as_str())
                            .push_bind(i64::from(d.attempts))
                            .push_bind(ts(d.next_attempt_at))
                            .push_bind(None::<String>)
                            .push_bind(None::<i64>)
                            .push_bind(ts(d.created_at))
                            .push_bind(None::<String>)
                            .push_bind(None::<i64>);
                    });
                    q.push(" ON CONFLICT (event_id, destination) DO NOTHING");
                    q.build().execute(&mut *tx).await.map_err(db)?;
                }
                tx.commit().await.map_err(db)?;
                Ok::<_, Error>(n)
            }
            .await
        })
    }

    async fn due_destinations(&self, now: DateTime<Utc>) -> Result<Vec<Destination>> {
        let rows: Vec<(String,)> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(
                "SELECT DISTINCT destination FROM event_deliveries WHERE status = 'pending' \
                 AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until < $1)",
            )
            .bind(ts(now))
            .fetch_all(pool)
            .await
            .map_err(db)?
        });
        let mut due: Vec<Destination> = rows
            .into_iter()
            .map(|(d,)| d.parse())
            .collect::<Result<_>>()?;
        due.sort();
        Ok(due)
    }

    async fn claim_deliveries(
        &self,
        destination: &Destination,
        owner: &str,
        now: DateTime<Utc>,
        lease: std::time::Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let until = now + chrono::Duration::from_std(lease).map_err(Error::other)?;
        let rows: Vec<DeliveryRow> = with_pool!(self, write, |pool, D| {
            sqlx::query_as(D::CLAIM_DELIVERIES)
                .bind(owner)
                .bind(ts(until))
                .bind(ts(now))
                .bind(i64::from(limit))
                .bind(destination.to_string())
                .fetch_all(pool)
                .await
                .map_err(db)?
        });
        let mut claimed: Vec<Delivery> = all(rows)?;
        claimed.sort_by_key(|d| (d.event.id, d.id));
        Ok(claimed)
    }

    async fn finish_delivery(
        &self,
        id: Uuid,
        owner: &str,
        attempt: &Attempt,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.finish_deliveries(owner, &[(id, attempt.clone())], now)
            .await?
            .pop()
            .unwrap_or_else(|| Err(Error::NotFound(format!("delivery {id}"))))
    }

    async fn finish_deliveries(
        &self,
        owner: &str,
        attempts: &[(Uuid, Attempt)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Result<()>>> {
        // One transaction, one commit (on SQLite one fsync) for the whole batch.
        with_pool!(self, write, |pool, D| {
            async {
                let mut tx = pool.begin_with(D::BEGIN).await.map_err(db)?;
                let mut out = Vec::with_capacity(attempts.len());
                for (id, attempt) in attempts {
                    let row: Option<DeliveryRow> = sqlx::query_as(concat!(
                        "SELECT ",
                        delivery_columns!(),
                        " FROM event_deliveries WHERE id = $1"
                    ))
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db)?;
                    let Some(row) = row else {
                        out.push(Err(Error::NotFound(format!("delivery {id}"))));
                        continue;
                    };
                    let mut d: Delivery = row.try_into()?;
                    if let Err(e) = d.finish(owner, attempt, now) {
                        out.push(Err(e));
                        continue;
                    }
                    let done = sqlx::query(
                        "UPDATE event_deliveries SET status = $1, next_attempt_at = $2, last_error = $3, \
                         delivered_at = $4, lease_owner = NULL, lease_until = NULL \
                         WHERE id = $5 AND lease_owner = $6 AND status = 'pending'",
                    )
                    .bind(d.status.as_str())
                    .bind(ts(d.next_attempt_at))
                    .bind(d.last_error.as_deref())
                    .bind(d.delivered_at.map(ts))
                    .bind(id.to_string())
                    .bind(owner)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?
                    .rows_affected();
                    out.push(if done == 0 { Err(Error::LeaseLost(*id)) } else { Ok(()) });
                }
                tx.commit().await.map_err(db)?;
                Ok::<_, Error>(out)
            }
            .await
        })
    }

    async fn list_deliveries(&self, status: DeliveryStatus, page: Page) -> Result<Vec<Delivery>> {
        let (limit, offset, after) = page_args(page, Way::Up);
        let rows: Vec<DeliveryRow> = with_pool!(self, read, |pool, D| {
            sqlx::query_as(concat!(
                "SELECT ",
                delivery_columns!(),
                " FROM event_deliveries WHERE status = $1 AND id > $2 ORDER BY id LIMIT $3 OFFSET $4"
            ))
            .bind(status.as_str())
            .bind(&after)
            .bind(limit)
            .bind(offset)
            .fetch_all(pool)
            .await
            .map_err(db)?
        });
        all(rows)
    }

    async fn replay_deliveries(&self, which: &Replay, now: DateTime<Utc>) -> Result<u64> {
        let (filter, value) = match which {
            Replay::One(id) => ("id = $2", id.to_string()),
            Replay::Destination(d) => ("destination = $2", d.to_string()),
            Replay::Since(t) => ("created_at >= CAST($2 AS BIGINT)", ts(*t).to_string()),
        };
        let sql = format!(
            "UPDATE event_deliveries SET status = 'pending', attempts = 0, next_attempt_at = $1, \
             lease_owner = NULL, lease_until = NULL WHERE status = 'failed' AND {filter} \
             AND (destination = 'pubsub' OR destination IN \
             (SELECT 'webhook:' || id FROM webhook_endpoints WHERE disabled IS NULL))"
        );
        let n = with_pool!(self, write, |pool, D| {
            sqlx::query(sqlx::AssertSqlSafe(sql.as_str()))
                .bind(ts(now))
                .bind(&value)
                .execute(pool)
                .await
                .map_err(db)?
                .rows_affected()
        });
        Ok(n)
    }

    async fn set_low_stock_threshold(
        &self,
        product: &ProductId,
        threshold: Option<u64>,
    ) -> Result<()> {
        let threshold = threshold
            .map(i64::try_from)
            .transpose()
            .map_err(|_| Error::invalid("threshold", "too large"))?;
        let done = with_pool!(self, write, |pool, D| {
            sqlx::query("UPDATE products SET low_stock_threshold = $1 WHERE id = $2")
                .bind(threshold)
                .bind(product.as_str())
                .execute(pool)
                .await
                .map_err(db)?
                .rows_affected()
        });
        if done == 0 {
            return Err(Error::NotFound(format!("product {product}")));
        }
        Ok(())
    }

    async fn low_stock_threshold(&self, product: &ProductId) -> Result<Option<u64>> {
        let row: Option<(Option<i64>,)> = with_pool!(self, read, |pool, D| {
            sqlx::query_as("SELECT low_stock_threshold FROM products WHERE id = $1")
                .bind(product.as_str())
                .fetch_optional(pool)
                .await
                .map_err(db)?
        });
        let (threshold,) = row.ok_or_else(|| Error::NotFound(format!("product {product}")))?;
        Ok(threshold.and_then(|t| u64::try_from(t).ok()))
    }

    async fn delivery_counts(&self) -> Result<Vec<(Destination, DeliveryCounts)>> {
        let rows: Vec<(String, String, i64, i64, Option<i64>)> = with_pool!(
            self,
            read,
            |pool, D| {
                sqlx::query_as(
                "SELECT destination, status, CAST(CASE WHEN attempts > 0 THEN 1 ELSE 0 END AS BIGINT) AS tried, \
                 CAST(COUNT(*) AS BIGINT), MIN(created_at) FROM event_deliveries \
                 GROUP BY destination, status, tried ORDER BY destination",
            )
            .fetch_all(pool)
            .await
            .map_err(db)?
            }
        );
        let mut out: Vec<(Destination, DeliveryCounts)> = Vec::new();
        for (destination, status, tried, n, oldest) in rows {
            let destination: Destination = destination.parse()?;
            if out.last().is_none_or(|(d, _)| *d != destination) {
                out.push((destination, DeliveryCounts::default()));
            }
            let Some((_, c)) = out.last_mut() else {
                continue;
            };
            let n = n.max(0).unsigned_abs();
            match (status.parse::<DeliveryStatus>()?, tried) {
                (DeliveryStatus::Pending, 0) => c.pending += n,
                (DeliveryStatus::Pending, _) => c.retrying += n,
                (DeliveryStatus::Delivered, _) => c.delivered += n,
                (DeliveryStatus::Failed, _) => c.failed += n,
            }
            if status == "pending" {
                let oldest = oldest.map(from_ts).transpose()?;
                c.oldest_pending = match (c.oldest_pending, oldest) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        Ok(out)
    }
}
