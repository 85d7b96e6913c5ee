//! The orders listener: delivers order confirmations from the outbox.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::Notification;
use crate::error::{Error, Result};
use crate::handoff::{Handed, Handoff};
use crate::ports::{Mailer, NotificationStore};
use crate::templates::Templates;

/// Settings of a [`Dispatcher`].
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Lease owner name; unique per dispatcher (default: `dispatcher-<uuid>`).
    pub owner: String,
    /// Notifications claimed at once at most.
    pub batch_size: u32,
    /// Sends in flight at once. [`Dispatcher::run`] claims more as soon as a send finishes,
    /// so one slow message holds one slot, never the others.
    pub concurrency: usize,
    /// How long a claim is held before it is renewed; a crashed dispatcher's work is retried
    /// after it. While a send is in progress the lease is renewed every third of it (a
    /// heartbeat), so it may be much shorter than the slowest send.
    pub lease: Duration,
    /// Attempts before a notification is marked `failed`.
    pub max_attempts: u32,
    /// Delay before the first retry; doubled at each attempt, with jitter.
    pub retry_base: Duration,
    /// Longest delay between attempts.
    pub retry_max: Duration,
    /// Safety-net sweep interval when no wake-up signal arrives.
    pub sweep_interval: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig {
            owner: format!("dispatcher-{}", Uuid::now_v7()),
            batch_size: 64,
            concurrency: 16,
            lease: Duration::from_secs(10),
            max_attempts: 8,
            retry_base: Duration::from_secs(2),
            retry_max: Duration::from_secs(15 * 60),
            sweep_interval: Duration::from_secs(5),
        }
    }
}

impl DispatcherConfig {
    /// The delay before the attempt after `attempts` failed ones.
    pub fn retry_delay(&self, attempts: u32) -> Duration {
        ExponentialBuilder::default()
            .with_min_delay(self.retry_base)
            .with_max_delay(self.retry_max)
            .with_factor(2.0)
            .with_jitter()
            .without_max_times()
            .build()
            .nth(attempts.saturating_sub(1) as usize)
            .unwrap_or(self.retry_max)
            // backon adds the jitter after its cap: clamp, so the maximum is one.
            .min(self.retry_max)
    }
}

/// What one cycle did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CycleReport {
    /// Notifications claimed.
    pub claimed: usize,
    /// Accepted by the mailer and marked sent.
    pub sent: usize,
    /// Failed and scheduled again.
    pub retried: usize,
    /// Given up on.
    pub failed: usize,
    /// The earliest retry this cycle scheduled.
    pub next_retry_at: Option<DateTime<Utc>>,
}

/// Counts a delivery's outcome in the metrics.
fn count(outcome: &Outcome) {
    match outcome {
        Outcome::Sent => metrics::counter!("inventory_notifications_sent_total").increment(1),
        Outcome::Retry(_) => {
            metrics::counter!("inventory_notifications_retried_total").increment(1)
        }
        Outcome::Failed => metrics::counter!("inventory_notifications_failed_total").increment(1),
        Outcome::LeaseLost => {}
    }
}

enum Outcome {
    Sent,
    Retry(DateTime<Utc>),
    Failed,
    LeaseLost,
}

/// Claims due notifications, renders and sends them, and records the result.
#[derive(Clone)]
pub struct Dispatcher {
    store: Arc<dyn NotificationStore>,
    mailer: Arc<dyn Mailer>,
    config: DispatcherConfig,
    templates: Templates,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher over a store and a mailer.
    pub fn new(
        store: Arc<dyn NotificationStore>,
        mailer: Arc<dyn Mailer>,
        config: DispatcherConfig,
    ) -> Self {
        Dispatcher {
            store,
            mailer,
            config,
            templates: Templates::default(),
        }
    }

    /// Renders confirmations with these templates instead of the kit's default wording.
    pub fn with_templates(mut self, templates: Templates) -> Self {
        self.templates = templates;
        self
    }

    /// Its settings.
    pub fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    /// Runs one cycle: claims a batch of due notifications and handles each. In-flight sends
    /// always finish; the cycle is the unit of graceful shutdown.
    pub async fn run_once(&self) -> Result<CycleReport> {
        self.cycle(None).await
    }

    /// [`Dispatcher::run_once`] as if the clock read `now`: claims, sent times and retry times
    /// all use it, so tests move time forward instead of sleeping.
    pub async fn run_once_at(&self, now: DateTime<Utc>) -> Result<CycleReport> {
        self.cycle(Some(now)).await
    }

    async fn cycle(&self, at: Option<DateTime<Utc>>) -> Result<CycleReport> {
        let now = at.unwrap_or_else(Utc::now);
        let batch = self
            .store
            .claim_due(
                &self.config.owner,
                now,
                self.config.lease,
                self.config.batch_size,
            )
            .await?;
        let mut report = CycleReport {
            claimed: batch.len(),
            ..CycleReport::default()
        };
        let outcomes: Vec<Result<Outcome>> = futures::stream::iter(batch)
            .map(|n| self.deliver(n, at))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let mut first_error = None;
        for outcome in outcomes {
            match outcome {
                Ok(outcome) => {
                    count(&outcome);
                    match outcome {
                        Outcome::Sent => report.sent += 1,
                        Outcome::Retry(at) => {
                            report.retried += 1;
                            report.next_retry_at =
                                Some(report.next_retry_at.map_or(at, |t| t.min(at)));
                        }
                        Outcome::Failed => report.failed += 1,
                        Outcome::LeaseLost => {}
                    }
                }
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        match first_error {
            // Nothing could be recorded: report the store's error.
            Some(e) if report.sent + report.retried + report.failed == 0 => Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "some notifications could not be recorded; their lease will expire and they will be retried");
                Ok(report)
            }
            None => Ok(report),
        }
    }

    /// Sends one notification and records the outcome, at time `at` (the real clock if
    /// `None`).
    async fn deliver(&self, n: Notification, at: Option<DateTime<Utc>>) -> Result<Outcome> {
        let now = || at.unwrap_or_else(Utc::now);
        let owner = &self.config.owner;
        // A message that cannot be rendered fails like a permanent refusal (templates are
        // checked when loaded, so this is a notification the templates cannot express).
        let sent = match self.templates.render(&n) {
            Ok(email) => self.mailer.send(&email).await,
            Err(e) => Err(e),
        };
        let (recorded, outcome) = match sent {
            Ok(()) => {
                tracing::info!(notification = %n.id, kind = n.message.kind(), order = ?n.order_id(), "email sent");
                (
                    self.store.mark_sent(n.id, owner, now()).await,
                    Outcome::Sent,
                )
            }
            Err(err) => {
                let next = (!err.is_permanent() && n.attempts < self.config.max_attempts)
                    .then(|| now() + self.config.retry_delay(n.attempts));
                tracing::warn!(
                    notification = %n.id, kind = n.message.kind(), order = ?n.order_id(),
                    attempt = n.attempts, error = %err, retry_at = ?next, "email not sent"
                );
                let recorded = self
                    .store
                    .mark_failed(n.id, owner, &err.to_string(), next)
                    .await;
                (recorded, next.map_or(Outcome::Failed, Outcome::Retry))
            }
        };
        match recorded {
            Ok(()) => Ok(outcome),
            Err(Error::LeaseLost(_)) => {
                tracing::warn!(notification = %n.id, "lease lost before the result was recorded");
                Ok(Outcome::LeaseLost)
            }
            Err(e) => Err(e),
        }
    }

    /// [`Dispatcher::deliver`] with the lease renewed every third of it while the send is in
    /// progress. A lost lease (the order was cancelled, or another dispatcher took over after
    /// a pause) stops the renewal; the send's result is then not recorded.
    async fn deliver_with_heartbeat(&self, n: Notification) -> Result<Outcome> {
        let id = n.id;
        let every = (self.config.lease / 3).max(Duration::from_millis(10));
        let send = self.deliver(n, None);
        tokio::pin!(send);
        let mut beat = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        let mut renewing = true;
        loop {
            tokio::select! {
                outcome = &mut send => return outcome,
                _ = beat.tick(), if renewing => {
                    let until = Utc::now()
                        + chrono::Duration::from_std(self.config.lease).unwrap_or_default();
                    match self.store.extend_lease(id, &self.config.owner, until).await {
                        Ok(()) => {}
                        Err(e) => {
                            tracing::warn!(notification = %id, error = %e, "lease not renewed during a slow send");
                            renewing = !matches!(e, Error::LeaseLost(_) | Error::NotFound(_));
                        }
                    }
                }
            }
        }
    }

    /// Runs until `shutdown`: claims due notifications whenever a send slot is free and work
    /// may be due (woken by the store's signal, by its own retry times and by the sweep),
    /// sends each independently with a lease heartbeat, and on shutdown finishes the sends in
    /// flight. Store errors back off and are retried.
    ///
    /// It offers the store a [`Handoff`] first: a store that takes it leases each new order
    /// confirmation to this dispatcher as the order is placed, while a send slot is free, and
    /// hands it over in memory, so no claim is needed for it (see [`crate::handoff`]).
    ///
    /// Mail health: the gauge `inventory_mail_consecutive_failures` counts failed sends since
    /// the last success, and a WARN `mail is not flowing` is logged at 3 and every 10 after.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut signal = self.store.subscribe();
        let mut error_streak = 0u32;
        let mut failing = 0u64;
        let mut next_retry: Option<DateTime<Utc>> = None;
        let mut in_flight: tokio::task::JoinSet<Result<Outcome>> = tokio::task::JoinSet::new();
        // One permit per send slot: a send holds one from its claim (or its order's placement,
        // for a confirmation handed over) until it is recorded.
        let slots = self.config.concurrency.max(1);
        let permits = Arc::new(Semaphore::new(slots));
        let (handoff, mut handed) =
            Handoff::new(&self.config.owner, self.config.lease, permits.clone());
        // Whether confirmations may still arrive from the store's handoff.
        let mut handing = self.store.accept_handoff(handoff);
        // While sends are in flight, claim only once half the slots are free: claiming for
        // each slot as it frees costs a store round trip (a commit) per notification, and
        // under a backlog that round trip, not the mail, became the limit (300 emails/s).
        let refill = (slots / 2).max(1);
        let may_claim = |free: usize| free >= refill || free == slots;
        // Claim at start; afterwards when woken.
        let mut look = true;
        tracing::info!(owner = %self.config.owner, handoff = handing, "dispatcher started");
        loop {
            if shutdown.is_cancelled() {
                // Take no more confirmations; those handed over already are still sent.
                handed.close();
                if in_flight.is_empty() && !handing {
                    break;
                }
            }
            let mut wait = self.config.sweep_interval;
            let free = permits.available_permits();
            if look && free > 0 && may_claim(free) && !shutdown.is_cancelled() {
                let limit = free.min(self.config.batch_size.max(1) as usize);
                // A placement may take a slot between the count and here: count again.
                let Ok(mut claim_slots) = permits.clone().try_acquire_many_owned(limit as u32)
                else {
                    continue;
                };
                signal.borrow_and_update();
                look = false;
                match self
                    .store
                    .claim_due(
                        &self.config.owner,
                        Utc::now(),
                        self.config.lease,
                        limit as u32,
                    )
                    .await
                {
                    Ok(batch) => {
                        error_streak = 0;
                        // Claims that found nothing are what another dispatcher (a replica's,
                        // woken by the same signal) or a handoff took first: the cost of
                        // running several.
                        let found = if batch.is_empty() { "nothing" } else { "work" };
                        metrics::counter!("inventory_dispatcher_claims_total", "found" => found)
                            .increment(1);
                        // A full claim: more may be due right now.
                        look = batch.len() >= limit;
                        for n in batch {
                            // The store returns at most `limit`, one slot each.
                            if let Some(slot) = claim_slots.split(1) {
                                self.start(&mut in_flight, n, slot);
                            }
                        }
                    }
                    Err(e) => {
                        error_streak += 1;
                        wait = self
                            .config
                            .retry_delay(error_streak)
                            .min(self.config.sweep_interval);
                        tracing::warn!(error = %e, "dispatcher could not claim work; will retry");
                    }
                }
            }
            if let Some(at) = next_retry {
                let until = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if until <= wait {
                    wait = until;
                    next_retry = None;
                }
            }
            if look && may_claim(permits.available_permits()) && !shutdown.is_cancelled() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled(), if !shutdown.is_cancelled() => {}
                done = in_flight.join_next(), if !in_flight.is_empty() => {
                    let outcome = done.map(|r| r.unwrap_or_else(|e| Err(Error::other(e))));
                    if let Some(outcome) = outcome
                        && let Some(at) = self.record(outcome, &mut failing)
                    {
                        next_retry = Some(next_retry.map_or(at, |t| t.min(at)));
                    }
                    // A freed slot claims again only if more may be due: the last claim was
                    // full, or a signal or sweep arrived meanwhile (both set `look`).
                }
                one = handed.recv(), if handing => match one {
                    Some(Handed { notification, slot }) => {
                        self.start(&mut in_flight, notification, slot);
                    }
                    None => handing = false,
                },
                changed = signal.changed(), if !shutdown.is_cancelled() => {
                    if changed.is_err() {
                        // The store dropped its signal: fall back to sweeping.
                        tokio::time::sleep(wait).await;
                    }
                    look = true;
                }
                _ = tokio::time::sleep(wait), if !shutdown.is_cancelled() => look = true,
                // Shut down with nothing in flight (the shutdown came during a claim that
                // found nothing): the loop's top ends the dispatcher.
                else => {}
            }
        }
        tracing::info!(owner = %self.config.owner, "dispatcher stopped");
    }

    /// Starts sending `n`, holding its send slot until the outcome is recorded.
    fn start(
        &self,
        in_flight: &mut tokio::task::JoinSet<Result<Outcome>>,
        n: Notification,
        slot: OwnedSemaphorePermit,
    ) {
        let me = self.clone();
        in_flight.spawn(async move {
            let outcome = me.deliver_with_heartbeat(n).await;
            drop(slot);
            outcome
        });
    }

    /// Counts one delivery's outcome; returns its retry time, if any.
    fn record(&self, outcome: Result<Outcome>, failing: &mut u64) -> Option<DateTime<Utc>> {
        if let Ok(outcome) = &outcome {
            count(outcome);
        }
        let (retry_at, failed) = match outcome {
            Ok(Outcome::Sent) => {
                if *failing >= 3 {
                    tracing::info!(after_failures = *failing, "mail is flowing again");
                }
                *failing = 0;
                (None, false)
            }
            Ok(Outcome::Retry(at)) => (Some(at), true),
            Ok(Outcome::Failed) => (None, true),
            Ok(Outcome::LeaseLost) => (None, false),
            Err(e) => {
                tracing::warn!(error = %e, "a send's result could not be recorded; its lease will expire and it will be retried");
                (None, false)
            }
        };
        if failed {
            *failing += 1;
            if *failing == 3 || (*failing > 3 && failing.is_multiple_of(10)) {
                tracing::warn!(
                    consecutive_failures = *failing,
                    "mail is not flowing: every recent send failed; see the notifications' last_error"
                );
            }
        }
        metrics::gauge!("inventory_mail_consecutive_failures").set(*failing as f64);
        retry_at
    }

    /// Spawns [`run`](Self::run) on the runtime.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }
}
