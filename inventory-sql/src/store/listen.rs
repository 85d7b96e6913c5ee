//! The cross-process outbox signal: PostgreSQL LISTEN/NOTIFY (SQLite has one process).

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::watch;

use super::*;

/// Keeps a LISTEN connection open and raises the signal on every notification and after every
/// (re)connect.
pub(super) async fn listen(pool: PgPool, signal: watch::Sender<u64>) {
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        }
        .await;
        let mut listener = match connected {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "outbox listener cannot connect; retrying in 1 s");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        bump(&signal);
        loop {
            match listener.try_recv().await {
                Ok(Some(_)) => bump(&signal),
                // Connection lost: the next call reconnects; anything sent meanwhile is lost,
                // so wake the dispatcher to re-check the table.
                Ok(None) => bump(&signal),
                Err(e) => {
                    tracing::warn!(error = %e, "outbox listener lost its connection; reconnecting");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}
