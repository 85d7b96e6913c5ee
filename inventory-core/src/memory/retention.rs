//! The retention port: expiring idempotency keys, pruning the outbox's done rows.

use super::*;

impl State {
    /// Deletes up to `limit` notifications that `which` selects; returns how many.
    fn remove_notifications(&mut self, limit: u32, which: impl Fn(&Notification) -> bool) -> u64 {
        let gone: Vec<Notification> = self
            .notifications
            .values()
            .filter(|n| which(n))
            .take(limit as usize)
            .cloned()
            .collect();
        for n in &gone {
            self.notifications.remove(&n.id);
            if let Some(order) = n.order_id() {
                self.notification_by_order.remove(&order);
            }
        }
        gone.len() as u64
    }
}

#[async_trait]
impl RetentionStore for MemoryStore {
    async fn expire_idempotency_keys(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        self.with(|s| {
            let expired: Vec<(Uuid, String)> = s
                .order_by_key
                .iter()
                .filter(|(_, id)| s.orders.get(id).is_none_or(|o| o.created_at < before))
                .map(|(key, _)| key.clone())
                .take(limit as usize)
                .collect();
            for key in &expired {
                if let Some(order) = s
                    .order_by_key
                    .remove(key)
                    .and_then(|id| s.orders.get_mut(&id))
                {
                    order.idempotency_key = None;
                }
            }
            Ok(expired.len() as u64)
        })
    }

    async fn prune_notifications(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        self.with(|s| Ok(s.remove_notifications(limit, |n| n.prunable(before))))
    }

    async fn remove_failed_notifications(&self, id: Option<Uuid>, limit: u32) -> Result<u64> {
        self.with(|s| {
            Ok(s.remove_notifications(limit, |n| {
                n.status == NotificationStatus::Failed && id.is_none_or(|id| n.id == id)
            }))
        })
    }

    async fn prune_deliveries(&self, before: DateTime<Utc>, limit: u32) -> Result<u64> {
        self.with(|s| {
            let done: Vec<Uuid> = s
                .deliveries
                .values()
                .filter(|d| d.prunable(before))
                .take(limit as usize)
                .map(|d| d.id)
                .collect();
            for id in &done {
                s.deliveries.remove(id);
            }
            Ok(done.len() as u64)
        })
    }
}
