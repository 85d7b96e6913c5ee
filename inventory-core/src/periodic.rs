//! The background rounds of the dispatcher's process (expiring holds, pruning the ledger):
//! one loop for all of them.

use std::future::Future;
use std::time::Duration;

use crate::error::Result;

/// Runs `round` every `every` until `shutdown`. A round answers how many things it did (logged
/// as `done`, with `count`, when not 0); a failed round is logged as `failed` and tried again
/// at the next tick.
pub(crate) fn spawn_every<F, Fut>(
    every: Duration,
    shutdown: tokio_util::sync::CancellationToken,
    (done, failed): (&'static str, &'static str),
    round: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = Result<u64>> + Send,
{
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match round().await {
                Ok(0) => {}
                Ok(count) => tracing::info!(count, "{done}"),
                Err(e) => tracing::warn!(error = %e, "{failed}"),
            }
        }
    })
}
