//! The orders listener: delivers order confirmations from the outbox.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::domain::Notification;
use crate::error::{Error, Result};
use crate::mail::render_confirmation;
use crate::ports::{Mailer, NotificationStore};

/// Settings of a [`Dispatcher`].
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Lease owner name; unique per dispatcher (default: `dispatcher-<uuid>`).
    pub owner: String,
    /// Notifications claimed per cycle.
    pub batch_size: u32,
    /// Sends in flight at once.
    pub concurrency: usize,
    /// How long a claim is held; a crashed dispatcher's work is retried after it.
    /// Must exceed the mailer's worst-case send time.
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
            lease: Duration::from_secs(120),
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
        }
    }

    /// Its settings.
    pub fn config(&self) -> &DispatcherConfig {
        &self.config
    }

    /// Runs one cycle: claims a batch of due notifications and handles each. In-flight sends
    /// always finish; the cycle is the unit of graceful shutdown.
    pub async fn run_once(&self) -> Result<CycleReport> {
        let now = Utc::now();
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
            .map(|n| self.deliver(n))
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let mut first_error = None;
        for outcome in outcomes {
            match outcome {
                Ok(Outcome::Sent) => report.sent += 1,
                Ok(Outcome::Retry(at)) => {
                    report.retried += 1;
                    report.next_retry_at = Some(report.next_retry_at.map_or(at, |t| t.min(at)));
                }
                Ok(Outcome::Failed) => report.failed += 1,
                Ok(Outcome::LeaseLost) => {}
                Err(e) => first_error = first_error.or(Some(e)),
            }
        }
        metrics::counter!("inventory_notifications_sent_total").increment(report.sent as u64);
        metrics::counter!("inventory_notifications_retried_total").increment(report.retried as u64);
        metrics::counter!("inventory_notifications_failed_total").increment(report.failed as u64);
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

    async fn deliver(&self, n: Notification) -> Result<Outcome> {
        let email = render_confirmation(&n);
        let owner = &self.config.owner;
        let (recorded, outcome) = match self.mailer.send(&email).await {
            Ok(()) => {
                tracing::info!(notification = %n.id, order = %n.order_id, "confirmation email sent");
                (
                    self.store.mark_sent(n.id, owner, Utc::now()).await,
                    Outcome::Sent,
                )
            }
            Err(err) => {
                let next = (!err.is_permanent() && n.attempts < self.config.max_attempts)
                    .then(|| Utc::now() + self.config.retry_delay(n.attempts));
                tracing::warn!(
                    notification = %n.id, order = %n.order_id, attempt = n.attempts,
                    error = %err, retry_at = ?next, "confirmation email not sent"
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
            Err(Error::Conflict(msg)) => {
                tracing::warn!(notification = %n.id, %msg, "lease lost before the result was recorded");
                Ok(Outcome::LeaseLost)
            }
            Err(e) => Err(e),
        }
    }

    /// Runs until `shutdown` is cancelled: a cycle whenever the store signals new work, when a
    /// scheduled retry falls due, and at least every `sweep_interval`. Returns after the
    /// current cycle's sends have finished.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut signal = self.store.subscribe();
        let mut error_streak = 0u32;
        let mut next_retry: Option<DateTime<Utc>> = None;
        tracing::info!(owner = %self.config.owner, "dispatcher started");
        while !shutdown.is_cancelled() {
            signal.borrow_and_update();
            let mut wait = self.config.sweep_interval;
            match self.run_once().await {
                Ok(report) => {
                    error_streak = 0;
                    if let Some(at) = report.next_retry_at {
                        next_retry = Some(next_retry.map_or(at, |t| t.min(at)));
                    }
                    if report.claimed as u32 >= self.config.batch_size {
                        continue; // more may be due right now
                    }
                }
                Err(e) => {
                    error_streak += 1;
                    wait = self
                        .config
                        .retry_delay(error_streak)
                        .min(self.config.sweep_interval);
                    tracing::warn!(error = %e, "dispatcher cycle failed; will retry");
                }
            }
            if let Some(at) = next_retry {
                let until = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                if until <= wait {
                    wait = until;
                    next_retry = None;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = signal.changed() => {
                    if changed.is_err() {
                        // The store dropped its signal: fall back to sweeping.
                        tokio::time::sleep(wait).await;
                    }
                }
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!(owner = %self.config.owner, "dispatcher stopped");
    }

    /// Spawns [`run`](Self::run) on the runtime.
    pub fn spawn(self, shutdown: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }
}
