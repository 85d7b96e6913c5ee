//! The event dispatcher: fans events out to their destinations and delivers them, each
//! destination on its own worker, so a slow or failing one delays only itself (email has its
//! own [`Dispatcher`](crate::Dispatcher) and is never touched by this one).

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use futures::future::join_all;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::*;
use crate::error::Result;
use crate::ports::EventStore;
use crate::trace::TraceParent;

/// Why a send did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Worth trying again, not before `after` when the destination said so
    /// (`Retry-After`).
    #[error("{error}")]
    Retry {
        /// What went wrong.
        error: String,
        /// The destination's `Retry-After`.
        after: Option<Duration>,
    },
    /// The endpoint is gone (`410 Gone`): the delivery fails and the endpoint is disabled.
    #[error("gone: {0}")]
    Gone(String),
    /// Refused for good (an address the sender may not reach, a malformed request): the
    /// delivery fails, to be replayed once the cause is fixed.
    #[error("refused: {0}")]
    Refused(String),
}

/// Sends one event to one webhook endpoint.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait WebhookSender: Send + Sync {
    /// POSTs the event's body, signed with each of the endpoint's secrets; `trace` is the
    /// `traceparent` the request carries. `Ok` means a 2xx answer.
    async fn send(
        &self,
        endpoint: &WebhookEndpoint,
        event: &Event,
        trace: &TraceParent,
    ) -> std::result::Result<(), SendError>;
}

/// Publishes events to a message bus (Google Pub/Sub), in the order given.
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Publisher: Send + Sync {
    /// Publishes every event (with its `traceparent` in `traces`, one per event), all or
    /// nothing, keeping their order per [`Event::key`].
    async fn publish(
        &self,
        events: &[Event],
        traces: &[TraceParent],
    ) -> std::result::Result<(), SendError>;
}

/// A webhook worker claims this many rounds of `per_endpoint` sends at once; the lease must
/// outlast them all ([`EventConfig::lease`]).
pub const WEBHOOK_ROUNDS: u32 = 4;

/// Settings of an [`EventDispatcher`].
#[derive(Debug, Clone)]
pub struct EventConfig {
    /// Lease owner name; unique per dispatcher.
    pub owner: String,
    /// Deliveries of one webhook endpoint in flight at once (each endpoint has its own).
    pub per_endpoint: u32,
    /// Events published in one Pub/Sub request at most.
    pub publish_batch: u32,
    /// Endpoints served at once at most; the others wait for a free worker.
    pub destinations: usize,
    /// How long a claimed delivery is held: longer than [`WEBHOOK_ROUNDS`] of the slowest
    /// sends (webhooks time out after 15 s).
    pub lease: Duration,
    /// When failed deliveries are tried again.
    pub schedule: RetrySchedule,
    /// Sweep interval when no wake-up signal arrives.
    pub sweep_interval: Duration,
}

impl Default for EventConfig {
    fn default() -> Self {
        EventConfig {
            owner: format!("events-{}", Uuid::now_v7()),
            per_endpoint: 8,
            publish_batch: 100,
            destinations: 32,
            lease: Duration::from_secs(15 * u64::from(WEBHOOK_ROUNDS) + 15),
            schedule: RetrySchedule::default(),
            sweep_interval: Duration::from_secs(1),
        }
    }
}

/// Fans out and delivers events.
#[derive(Clone)]
pub struct EventDispatcher {
    store: Arc<dyn EventStore>,
    webhooks: Option<Arc<dyn WebhookSender>>,
    publisher: Option<Arc<dyn Publisher>>,
    config: EventConfig,
    busy: Arc<Mutex<HashSet<Destination>>>,
}

impl std::fmt::Debug for EventDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventDispatcher")
            .field("config", &self.config)
            .field("webhooks", &self.webhooks.is_some())
            .field("pubsub", &self.publisher.is_some())
            .finish_non_exhaustive()
    }
}

/// What one round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct EventReport {
    /// Events fanned out.
    pub fanned_out: u64,
    /// Deliveries accepted.
    pub delivered: u64,
    /// Deliveries to be tried again.
    pub retried: u64,
    /// Deliveries failed for good.
    pub failed: u64,
}

impl EventReport {
    fn add(&mut self, other: EventReport) {
        self.fanned_out += other.fanned_out;
        self.delivered += other.delivered;
        self.retried += other.retried;
        self.failed += other.failed;
    }
}

fn label(d: &Destination) -> &'static str {
    match d {
        Destination::Webhook(_) => "webhook",
        Destination::PubSub => "pubsub",
    }
}

/// The trace a delivery's request carries: `span` (the delivery's) as a child of the event's
/// trace, or a new trace for an event that came with none.
pub fn delivery_trace(event: &Event, span: &tracing::Span) -> TraceParent {
    match event
        .traceparent
        .as_deref()
        .and_then(|t| TraceParent::parse(t).ok())
    {
        Some(parent) => crate::trace::adopt(span, &parent),
        None => crate::trace::start(span),
    }
}

impl EventDispatcher {
    /// A dispatcher for `store`; without a sender, webhook deliveries wait (none are made
    /// unless endpoints exist), and without a publisher no Pub/Sub deliveries are made.
    pub fn new(
        store: Arc<dyn EventStore>,
        webhooks: Option<Arc<dyn WebhookSender>>,
        publisher: Option<Arc<dyn Publisher>>,
        config: EventConfig,
    ) -> Self {
        EventDispatcher {
            store,
            webhooks,
            publisher,
            config,
            busy: Arc::default(),
        }
    }

    fn always(&self) -> Vec<Destination> {
        self.publisher.iter().map(|_| Destination::PubSub).collect()
    }

    /// Fans out every waiting event, then delivers what is due to each destination until
    /// nothing is; destinations are served concurrently. Returns when every worker is done.
    pub async fn run_once(&self) -> Result<EventReport> {
        let (mut report, workers) = self.start_round().await?;
        for r in join_all(workers).await {
            report.add(r.map_err(crate::Error::other)??);
        }
        Ok(report)
    }

    /// Fans out, then starts a worker (a task of its own) for each due destination that has
    /// none running: a slow endpoint keeps its own worker busy and nobody else's, and the
    /// next round starts workers for the others without waiting for it.
    async fn start_round(
        &self,
    ) -> Result<(
        EventReport,
        Vec<tokio::task::JoinHandle<Result<EventReport>>>,
    )> {
        let mut report = EventReport::default();
        loop {
            let n = self
                .store
                .fan_out(&self.always(), crate::domain::now(), 500)
                .await?;
            report.fanned_out += n;
            if n < 500 {
                break;
            }
        }
        let due = self.store.due_destinations(crate::domain::now()).await?;
        let mut workers = Vec::new();
        for destination in due {
            if !self.claim_worker(&destination) {
                continue;
            }
            let this = self.clone();
            workers.push(tokio::spawn(async move {
                let r = this.serve(&destination).await;
                this.release_worker(&destination);
                r
            }));
        }
        Ok((report, workers))
    }

    /// Marks a destination as served, unless it is, or every worker is busy.
    fn claim_worker(&self, d: &Destination) -> bool {
        self.busy
            .lock()
            .map(|mut b| b.len() < self.config.destinations && b.insert(d.clone()))
            .unwrap_or(false)
    }

    fn release_worker(&self, d: &Destination) {
        if let Ok(mut b) = self.busy.lock() {
            b.remove(d);
        }
    }

    /// Delivers one destination's due deliveries until none is left.
    async fn serve(&self, destination: &Destination) -> Result<EventReport> {
        let mut report = EventReport::default();
        let limit = match destination {
            // A few rounds of sends per claim (and per commit of their outcomes).
            Destination::Webhook(_) => self.config.per_endpoint.max(1) * WEBHOOK_ROUNDS,
            Destination::PubSub => self.config.publish_batch.max(1),
        };
        loop {
            let now = crate::domain::now();
            let claimed = self
                .store
                .claim_deliveries(
                    destination,
                    &self.config.owner,
                    now,
                    self.config.lease,
                    limit,
                )
                .await?;
            if claimed.is_empty() {
                return Ok(report);
            }
            let outcomes = match destination {
                Destination::Webhook(id) => self.send_webhooks(*id, &claimed).await?,
                Destination::PubSub => self.publish(&claimed).await,
            };
            let mut attempts = Vec::with_capacity(claimed.len());
            for (d, outcome) in claimed.iter().zip(outcomes) {
                let attempt = self.attempt(d, outcome);
                let kind = match attempt {
                    Attempt::Delivered => {
                        report.delivered += 1;
                        "delivered"
                    }
                    Attempt::Retry { at: Some(_), .. } => {
                        report.retried += 1;
                        "retrying"
                    }
                    _ => {
                        report.failed += 1;
                        "failed"
                    }
                };
                metrics::counter!("inventory_event_deliveries_total",
                    "destination" => label(destination), "outcome" => kind)
                .increment(1);
                if let Attempt::Delivered = attempt {
                    let age = (crate::domain::now() - d.event.occurred_at)
                        .to_std()
                        .unwrap_or_default();
                    metrics::histogram!("inventory_event_delivery_seconds",
                        "destination" => label(destination))
                    .record(age.as_secs_f64());
                }
                attempts.push((d.id, attempt));
            }
            // One write for the batch's outcomes.
            let finished = self
                .store
                .finish_deliveries(&self.config.owner, &attempts, crate::domain::now())
                .await?;
            for r in finished {
                match r {
                    Ok(()) | Err(crate::Error::LeaseLost(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
    }

    fn attempt(&self, d: &Delivery, outcome: std::result::Result<(), SendError>) -> Attempt {
        match outcome {
            Ok(()) => Attempt::Delivered,
            Err(SendError::Retry { error, after }) => Attempt::Retry {
                at: self.config.schedule.next(
                    d.attempts,
                    crate::domain::now(),
                    after,
                    rand::random::<f64>(),
                ),
                error,
            },
            Err(e @ (SendError::Gone(_) | SendError::Refused(_))) => Attempt::Refused {
                error: e.to_string(),
            },
        }
    }

    async fn send_webhooks(
        &self,
        id: Uuid,
        claimed: &[Delivery],
    ) -> Result<Vec<std::result::Result<(), SendError>>> {
        let endpoint = self
            .store
            .list_webhooks()
            .await?
            .into_iter()
            .find(|w| w.id == id);
        let (Some(endpoint), Some(sender)) = (endpoint, &self.webhooks) else {
            let why = SendError::Refused("endpoint deleted, or no webhook sender".into());
            return Ok(claimed.iter().map(|_| Err(why.clone())).collect());
        };
        if let Some(why) = &endpoint.disabled {
            let why = SendError::Refused(format!("endpoint disabled: {why}"));
            return Ok(claimed.iter().map(|_| Err(why.clone())).collect());
        }
        // Rounds of `per_endpoint` sends at once.
        let mut outcomes = Vec::with_capacity(claimed.len());
        for round in claimed.chunks(self.config.per_endpoint.max(1) as usize) {
            let sends = round.iter().map(|d| {
                let span = tracing::info_span!("webhook delivery", event = %d.event.id,
                    kind = %d.event.kind, trace_id = tracing::field::Empty);
                let trace = delivery_trace(&d.event, &span);
                span.record("trace_id", trace.trace_id_hex());
                let endpoint = &endpoint;
                tracing::Instrument::instrument(
                    async move { sender.send(endpoint, &d.event, &trace).await },
                    span,
                )
            });
            outcomes.extend(join_all(sends).await);
        }
        if outcomes
            .iter()
            .any(|o| matches!(o, Err(SendError::Gone(_))))
        {
            let mut disabled = endpoint.clone();
            disabled.disabled = Some(format!("410 Gone at {}", crate::domain::now()));
            self.store.update_webhook(&disabled).await?;
            tracing::warn!(endpoint = %endpoint.id, "webhook endpoint answered 410 Gone: disabled");
        }
        Ok(outcomes)
    }

    async fn publish(&self, claimed: &[Delivery]) -> Vec<std::result::Result<(), SendError>> {
        let Some(publisher) = &self.publisher else {
            let why = SendError::Refused("no Pub/Sub topic configured".into());
            return claimed.iter().map(|_| Err(why.clone())).collect();
        };
        let events: Vec<Event> = claimed.iter().map(|d| d.event.clone()).collect();
        let spans: Vec<tracing::Span> = events
            .iter()
            .map(|e| tracing::info_span!("pubsub delivery", event = %e.id, kind = %e.kind))
            .collect();
        let traces: Vec<TraceParent> = events
            .iter()
            .zip(&spans)
            .map(|(e, span)| delivery_trace(e, span))
            .collect();
        let outcome = publisher.publish(&events, &traces).await;
        claimed.iter().map(|_| outcome.clone()).collect()
    }

    /// Runs until `shutdown`: a round whenever `wake` changes (new events) or every sweep
    /// interval, and a gauge update of each destination's counts every ten rounds.
    pub fn spawn(
        self,
        mut wake: watch::Receiver<u64>,
        shutdown: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            let mut rounds: u64 = 0;
            loop {
                // Workers run on by themselves: a round never waits for a slow endpoint.
                match self.start_round().await {
                    Ok((_, workers)) => {
                        for w in workers {
                            tokio::spawn(async move {
                                if let Ok(Err(e)) = w.await {
                                    tracing::warn!(error = %e, "event delivery failed");
                                }
                            });
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "event round failed"),
                }
                if rounds.is_multiple_of(10) {
                    self.update_gauges().await;
                }
                rounds = rounds.wrapping_add(1);
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = wake.changed() => {}
                    _ = tokio::time::sleep(self.config.sweep_interval) => {}
                }
            }
        })
    }

    /// Sets the per-destination gauges (pending, retrying, failed, age of the oldest
    /// undelivered) from the store.
    pub async fn update_gauges(&self) {
        let Ok(counts) = self.store.delivery_counts().await else {
            return;
        };
        let mut by_kind: BTreeMap<&'static str, DeliveryCounts> = BTreeMap::new();
        for (d, c) in &counts {
            let k = by_kind.entry(label(d)).or_default();
            k.pending += c.pending;
            k.retrying += c.retrying;
            k.failed += c.failed;
            k.delivered += c.delivered;
            k.oldest_pending = match (k.oldest_pending, c.oldest_pending) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let now: DateTime<Utc> = crate::domain::now();
        for kind in ["webhook", "pubsub"] {
            let c = by_kind.remove(kind).unwrap_or_default();
            let gauge = |name: &'static str, v: f64| {
                metrics::gauge!(name, "destination" => kind).set(v);
            };
            gauge("inventory_event_deliveries_pending", c.pending as f64);
            gauge("inventory_event_deliveries_retrying", c.retrying as f64);
            gauge("inventory_event_deliveries_failed", c.failed as f64);
            let age = c
                .oldest_pending
                .map_or(0.0, |t| (now - t).num_milliseconds().max(0) as f64 / 1000.0);
            gauge("inventory_event_oldest_undelivered_seconds", age);
        }
    }
}
