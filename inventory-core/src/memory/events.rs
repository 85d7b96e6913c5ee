//! The events port: events wait in `State::events` until fanned out into deliveries.

use super::*;

fn delivery(s: &mut State, id: Uuid) -> Result<&mut Delivery> {
    s.deliveries
        .get_mut(&id)
        .ok_or_else(|| Error::NotFound(format!("delivery {id}")))
}

fn webhook_missing(id: Uuid) -> Error {
    Error::NotFound(format!("webhook {id}"))
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn create_webhook(&self, endpoint: &WebhookEndpoint) -> Result<()> {
        self.with(|s| {
            if s.webhooks.contains_key(&endpoint.id) {
                return Err(Error::AlreadyExists(format!("webhook {}", endpoint.id)));
            }
            s.webhooks.insert(endpoint.id, endpoint.clone());
            Ok(())
        })
    }

    async fn list_webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        self.with(|s| Ok(s.webhooks.values().cloned().collect()))
    }

    async fn update_webhook(&self, endpoint: &WebhookEndpoint) -> Result<()> {
        self.with(|s| {
            let stored = s
                .webhooks
                .get_mut(&endpoint.id)
                .ok_or_else(|| webhook_missing(endpoint.id))?;
            stored.secrets = endpoint.secrets.clone();
            stored.disabled = endpoint.disabled.clone();
            Ok(())
        })
    }

    async fn delete_webhook(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        self.with(|s| {
            s.webhooks.remove(&id).ok_or_else(|| webhook_missing(id))?;
            let gone = Destination::Webhook(id);
            for d in s.deliveries.values_mut() {
                if d.destination == gone && d.status == DeliveryStatus::Pending {
                    d.status = DeliveryStatus::Failed;
                    d.last_error = Some(ENDPOINT_DELETED.to_owned());
                    d.lease_owner = None;
                    d.lease_until = None;
                    d.next_attempt_at = now;
                }
            }
            Ok(())
        })
    }

    async fn fan_out(&self, always: &[Destination], now: DateTime<Utc>, limit: u32) -> Result<u64> {
        self.with(|s| {
            let ids: Vec<Uuid> = s.events.keys().take(limit as usize).copied().collect();
            for id in &ids {
                let Some(event) = s.events.remove(id) else {
                    continue;
                };
                let targets: Vec<Destination> = s
                    .webhooks
                    .values()
                    .filter(|w| w.wants(event.kind))
                    .map(|w| Destination::Webhook(w.id))
                    .chain(always.iter().cloned())
                    .collect();
                for destination in targets {
                    let d = Delivery::new(event.clone(), destination, now);
                    s.deliveries.insert(d.id, d);
                }
            }
            Ok(ids.len() as u64)
        })
    }

    async fn due_destinations(&self, now: DateTime<Utc>) -> Result<Vec<Destination>> {
        self.with(|s| {
            let mut due: Vec<Destination> = s
                .deliveries
                .values()
                .filter(|d| d.is_due(now))
                .map(|d| d.destination.clone())
                .collect();
            due.sort();
            due.dedup();
            Ok(due)
        })
    }

    async fn claim_deliveries(
        &self,
        destination: &Destination,
        owner: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: u32,
    ) -> Result<Vec<Delivery>> {
        let until = now + chrono::Duration::from_std(lease).map_err(Error::other)?;
        self.with(|s| {
            let mut due: Vec<&mut Delivery> = s
                .deliveries
                .values_mut()
                .filter(|d| &d.destination == destination && d.is_due(now))
                .collect();
            due.sort_by_key(|d| (d.event.id, d.id));
            Ok(due
                .into_iter()
                .take(limit as usize)
                .map(|d| {
                    d.lease_to(owner, until);
                    d.clone()
                })
                .collect())
        })
    }

    async fn finish_delivery(
        &self,
        id: Uuid,
        owner: &str,
        attempt: &Attempt,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.with(|s| delivery(s, id)?.finish(owner, attempt, now))
    }

    async fn list_deliveries(&self, status: DeliveryStatus, p: Page) -> Result<Vec<Delivery>> {
        self.with(|s| {
            let of_status = s.deliveries.values().filter(|d| d.status == status);
            Ok(page(of_status.cloned(), p, false))
        })
    }

    async fn replay_deliveries(&self, which: &Replay, now: DateTime<Utc>) -> Result<u64> {
        self.with(|s| {
            let live = |d: &Destination| match d {
                Destination::Webhook(id) => {
                    s.webhooks.get(id).is_some_and(|w| w.disabled.is_none())
                }
                Destination::PubSub => true,
            };
            let chosen: Vec<Uuid> = s
                .deliveries
                .values()
                .filter(|d| d.selected_by(which) && live(&d.destination))
                .map(|d| d.id)
                .collect();
            let mut n = 0;
            for id in chosen {
                n += u64::from(delivery(s, id)?.replay(now));
            }
            Ok(n)
        })
    }

    async fn set_low_stock_threshold(
        &self,
        product: &ProductId,
        threshold: Option<u64>,
    ) -> Result<()> {
        self.with(|s| {
            if !s.products.contains_key(product) {
                return Err(Error::NotFound(format!("product {product}")));
            }
            match threshold {
                Some(t) => s.low_stock.insert(product.clone(), t),
                None => s.low_stock.remove(product),
            };
            Ok(())
        })
    }

    async fn low_stock_threshold(&self, product: &ProductId) -> Result<Option<u64>> {
        self.with(|s| {
            if !s.products.contains_key(product) {
                return Err(Error::NotFound(format!("product {product}")));
            }
            Ok(s.low_stock.get(product).copied())
        })
    }

    async fn delivery_counts(&self) -> Result<Vec<(Destination, DeliveryCounts)>> {
        self.with(|s| {
            let mut counts: BTreeMap<Destination, DeliveryCounts> = BTreeMap::new();
            for d in s.deliveries.values() {
                counts.entry(d.destination.clone()).or_default().add(d);
            }
            Ok(counts.into_iter().collect())
        })
    }
}
