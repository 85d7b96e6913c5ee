//! Events on Firestore: not written yet (see the closing note of issue 27).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use inventory_core::*;

use super::FirestoreStore;

fn unsupported() -> Error {
    Error::Unsupported("events (webhooks, Pub/Sub) are not available on Firestore yet".into())
}

#[async_trait]
impl EventStore for FirestoreStore {
    async fn create_webhook(&self, _: &WebhookEndpoint) -> Result<()> {
        Err(unsupported())
    }
    async fn list_webhooks(&self) -> Result<Vec<WebhookEndpoint>> {
        Ok(Vec::new())
    }
    async fn update_webhook(&self, _: &WebhookEndpoint) -> Result<()> {
        Err(unsupported())
    }
    async fn delete_webhook(&self, id: Uuid, _: DateTime<Utc>) -> Result<()> {
        Err(Error::NotFound(format!("webhook {id}")))
    }
    async fn fan_out(&self, _: &[Destination], _: DateTime<Utc>, _: u32) -> Result<u64> {
        Ok(0)
    }
    async fn due_destinations(&self, _: DateTime<Utc>) -> Result<Vec<Destination>> {
        Ok(Vec::new())
    }
    async fn claim_deliveries(
        &self,
        _: &Destination,
        _: &str,
        _: DateTime<Utc>,
        _: std::time::Duration,
        _: u32,
    ) -> Result<Vec<Delivery>> {
        Ok(Vec::new())
    }
    async fn finish_delivery(
        &self,
        id: Uuid,
        _: &str,
        _: &Attempt,
        _: DateTime<Utc>,
    ) -> Result<()> {
        Err(Error::LeaseLost(id))
    }
    async fn list_deliveries(&self, _: DeliveryStatus, _: Page) -> Result<Vec<Delivery>> {
        Ok(Vec::new())
    }
    async fn replay_deliveries(&self, _: &Replay, _: DateTime<Utc>) -> Result<u64> {
        Ok(0)
    }
    async fn delivery_counts(&self) -> Result<Vec<(Destination, DeliveryCounts)>> {
        Ok(Vec::new())
    }
}
