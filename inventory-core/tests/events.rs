//! The event dispatcher's fairness: a slow webhook endpoint holds its own worker and nobody
//! else's.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use inventory_core::events::{SendError, WebhookSender};
use inventory_core::testkit::{TestStore, order, product, user, webhook};
use inventory_core::*;

struct StuckFor {
    stuck: Uuid,
    delivered: AtomicUsize,
    waiting: AtomicUsize,
}

#[async_trait]
impl WebhookSender for StuckFor {
    async fn send(
        &self,
        endpoint: &WebhookEndpoint,
        _: &Event,
        _: &TraceParent,
    ) -> Result<(), SendError> {
        if endpoint.id == self.stuck {
            self.waiting.fetch_add(1, Ordering::SeqCst);
            std::future::pending::<()>().await;
        }
        self.delivered.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_endpoint_does_not_hold_back_the_others() {
    let store: TestStore = Arc::new(MemoryStore::new());
    let slow = webhook(&store, &[EventType::OrderPlaced]).await;
    let _fast = webhook(&store, &[EventType::OrderPlaced]).await;
    let sender = Arc::new(StuckFor {
        stuck: slow.id,
        delivered: AtomicUsize::new(0),
        waiting: AtomicUsize::new(0),
    });
    let shutdown = CancellationToken::new();
    let config = EventConfig {
        sweep_interval: Duration::from_millis(10),
        ..EventConfig::default()
    };
    let dispatcher = EventDispatcher::new(store.clone(), Some(sender.clone()), None, config);
    let task = dispatcher.spawn(store.subscribe(), shutdown.clone());
    let u = user(&store, "fair@example.com").await;
    let a = product(&store, "fair", 100).await;
    for round in 1..=5 {
        store.place_order(&order(&u, &a, 1)).await.unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while sender.delivered.load(Ordering::SeqCst) < round {
            assert!(
                tokio::time::Instant::now() < deadline,
                "round {round}: the fast endpoint waited for the stuck one"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    // The stuck endpoint took its first batch and is still on it.
    assert!(sender.waiting.load(Ordering::SeqCst) >= 1);
    shutdown.cancel();
    task.await.unwrap();
}
