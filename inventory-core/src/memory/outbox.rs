//! The outbox port.

use super::*;

#[async_trait]
impl NotificationStore for MemoryStore {
    async fn claim_due(
        &self,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Notification>> {
        let lease_until = now + chrono::Duration::from_std(lease).map_err(Error::other)?;
        self.with(|s| {
            let mut due: Vec<&mut Notification> = s
                .notifications
                .values_mut()
                .filter(|n| n.is_due(now))
                .collect();
            due.sort_by_key(|n| (n.next_attempt_at, n.id));
            Ok(due
                .into_iter()
                .take(limit as usize)
                .map(|n| {
                    n.lease_to(owner, lease_until);
                    n.clone()
                })
                .collect())
        })
    }

    async fn extend_lease(&self, id: Uuid, owner: &str, until: DateTime<Utc>) -> Result<()> {
        self.with(|s| notification(s, id)?.extend_lease(owner, until))
    }

    async fn mark_sent(&self, id: Uuid, owner: &str, now: DateTime<Utc>) -> Result<()> {
        self.with(|s| {
            let n = notification(s, id)?;
            n.mark_sent(owner, now)?;
            if let Some(order) = n.order_id().and_then(|o| s.orders.get_mut(&o)) {
                order.confirm(now);
                let event = Event::order_confirmed(order.id, now);
                s.emit(event);
            }
            Ok(())
        })
    }

    async fn mark_failed(
        &self,
        id: Uuid,
        owner: &str,
        error: &str,
        next_attempt_at: Option<DateTime<Utc>>,
    ) -> Result<()> {
        self.with(|s| notification(s, id)?.mark_failed(owner, error, next_attempt_at))
    }

    async fn enqueue(&self, n: &Standalone) -> Result<()> {
        self.with(|s| {
            if s.notifications.contains_key(&n.id) {
                return Err(Error::AlreadyExists(format!(
                    "notification {} already exists",
                    n.id
                )));
            }
            s.notifications.insert(n.id, (**n).clone());
            Ok(())
        })?;
        self.signal.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }

    async fn notification_for_order(&self, order_id: Uuid) -> Result<Option<Notification>> {
        self.with(|s| {
            Ok(s.notification_by_order
                .get(&order_id)
                .and_then(|id| s.notifications.get(id))
                .cloned())
        })
    }

    async fn list_notifications(
        &self,
        status: NotificationStatus,
        p: Page,
    ) -> Result<Vec<Notification>> {
        self.with(|s| {
            Ok(page(
                s.notifications
                    .values()
                    .filter(|n| n.status == status)
                    .cloned(),
                p,
                false,
            ))
        })
    }

    async fn notification_counts(&self) -> Result<NotificationCounts> {
        self.with(|s| {
            let mut c = NotificationCounts::default();
            for n in s.notifications.values() {
                match n.status {
                    NotificationStatus::Pending => c.pending += 1,
                    NotificationStatus::Sent => c.sent += 1,
                    NotificationStatus::Failed => c.failed += 1,
                    NotificationStatus::Cancelled => c.cancelled += 1,
                }
            }
            Ok(c)
        })
    }

    async fn retry_failed(&self, id: Option<Uuid>, now: DateTime<Utc>) -> Result<u64> {
        let count = self.with(|s| {
            let mut count = 0;
            for n in s.notifications.values_mut() {
                if id.is_none_or(|id| id == n.id) && n.retry(now) {
                    count += 1;
                }
            }
            Ok(count)
        })?;
        if count > 0 {
            self.signal.send_modify(|n| *n = n.wrapping_add(1));
        }
        Ok(count)
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }

    fn accept_handoff(&self, handoff: Handoff) -> bool {
        self.handoff.accept(handoff)
    }
}
