//! Events for other systems: webhooks (`WEBHOOK_*`) and Pub/Sub (`PUBSUB_*`).

use std::time::Duration;

use inventory_core::RetrySchedule;

use super::{Result, SettingsError, Vars};

/// Where events go besides email, and how hard the dispatcher tries.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct EventSettings {
    /// `WEBHOOK_ALLOW_PRIVATE` (default false): let webhooks reach private, loopback and
    /// link-local addresses (receivers on a private network, tests). Off, such endpoints are
    /// refused at creation and at every send (names are checked on what they resolve to).
    pub allow_private: bool,
    /// `WEBHOOK_RETRY_SCHEDULE` (default `5s,5m,30m,2h,5h,10h,10h`, the Standard Webhooks
    /// schedule): delays before each retry, with up to 10 % jitter; after the last a delivery
    /// is failed and listed.
    pub schedule: RetrySchedule,
    /// `WEBHOOK_TIMEOUT_SECS` (default 15): the longest one delivery may take.
    pub timeout: Duration,
    /// `WEBHOOK_CONCURRENCY` (default 8): deliveries in flight per endpoint; each endpoint
    /// has its own, and email its own dispatcher.
    pub per_endpoint: u32,
    /// `PUBSUB_TOPIC` (`projects/P/topics/T`, which must exist): every event is published
    /// there too. Unset: no Pub/Sub.
    pub pubsub_topic: Option<String>,
    /// `PUBSUB_EMULATOR_HOST` (`host:port`): the Pub/Sub emulator instead of Google Cloud.
    pub pubsub_emulator_host: Option<String>,
}

pub(super) fn events(vars: &Vars<'_>) -> Result<EventSettings> {
    let schedule = match vars.get("WEBHOOK_RETRY_SCHEDULE") {
        Some(raw) => RetrySchedule::parse(&raw)
            .map_err(|e| SettingsError::invalid("WEBHOOK_RETRY_SCHEDULE", e))?,
        None => RetrySchedule::default(),
    };
    let timeout = vars.secs("WEBHOOK_TIMEOUT_SECS", 15)?;
    if timeout.is_zero() {
        return Err(SettingsError::invalid(
            "WEBHOOK_TIMEOUT_SECS",
            "must be at least 1",
        ));
    }
    let per_endpoint = vars.parse("WEBHOOK_CONCURRENCY", 8u32)?;
    if per_endpoint == 0 {
        return Err(SettingsError::invalid(
            "WEBHOOK_CONCURRENCY",
            "must be at least 1",
        ));
    }
    let pubsub_topic = vars.get("PUBSUB_TOPIC").map(|t| t.trim().to_owned());
    if let Some(topic) = &pubsub_topic {
        inventory_events::Topic::parse(topic)
            .map_err(|e| SettingsError::invalid("PUBSUB_TOPIC", e))?;
    }
    Ok(EventSettings {
        allow_private: vars.flag("WEBHOOK_ALLOW_PRIVATE", false)?,
        schedule,
        timeout,
        per_endpoint,
        pubsub_topic,
        pubsub_emulator_host: vars
            .get("PUBSUB_EMULATOR_HOST")
            .map(|h| h.trim().to_owned()),
    })
}

impl EventSettings {
    /// The address policy of webhooks.
    pub fn policy(&self) -> inventory_events::AddressPolicy {
        if self.allow_private {
            inventory_events::AddressPolicy::AllowPrivate
        } else {
            inventory_events::AddressPolicy::PublicOnly
        }
    }

    /// The webhook sender these settings describe.
    pub fn webhook_sender(&self) -> Result<inventory_events::HttpWebhookSender> {
        inventory_events::HttpWebhookSender::new(inventory_events::WebhookConfig {
            policy: self.policy(),
            timeout: self.timeout,
        })
        .map_err(|e| SettingsError::invalid("WEBHOOK_TIMEOUT_SECS", e))
    }

    /// The Pub/Sub publisher, when `PUBSUB_TOPIC` is set, once its topic is found to exist.
    pub async fn publisher(&self) -> Result<Option<inventory_events::PubSubPublisher>> {
        let Some(topic) = &self.pubsub_topic else {
            return Ok(None);
        };
        let topic = inventory_events::Topic::parse(topic)
            .map_err(|e| SettingsError::invalid("PUBSUB_TOPIC", e))?;
        let publisher =
            inventory_events::PubSubPublisher::new(topic, self.pubsub_emulator_host.as_deref())
                .map_err(|e| SettingsError::invalid("PUBSUB_TOPIC", e))?;
        publisher
            .check_topic()
            .await
            .map_err(|e| SettingsError::invalid("PUBSUB_TOPIC", e))?;
        Ok(Some(publisher))
    }
}
