//! Conformance cases of events and their deliveries ([`EventStore`]). Run by
//! [`event_conformance!`](crate::event_conformance) on the stores that write events.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::error::Error;
use crate::events::{EventConfig, EventDispatcher, Publisher, SendError, WebhookSender};
use crate::trace::TraceParent;

const LEASE: Duration = Duration::from_secs(30);

/// An endpoint for `types`, stored.
pub async fn webhook(store: &TestStore, types: &[EventType]) -> WebhookEndpoint {
    let w = WebhookEndpoint::new("https://hooks.example.com/in", types.to_vec(), now()).unwrap();
    store.create_webhook(&w).await.expect("create webhook");
    w
}

/// Every due delivery of `destination`, claimed by `owner` (the store's order).
pub async fn claim_all(store: &TestStore, destination: &Destination, owner: &str) -> Vec<Delivery> {
    store
        .claim_deliveries(destination, owner, now(), LEASE, 1000)
        .await
        .expect("claim")
}

/// Fans out every waiting event, to `always` besides the endpoints.
pub async fn fan_out_all(store: &TestStore, always: &[Destination]) -> u64 {
    let mut total = 0;
    loop {
        let n = store.fan_out(always, now(), 100).await.expect("fan out");
        total += n;
        if n == 0 {
            return total;
        }
    }
}

fn kinds(deliveries: &[Delivery]) -> BTreeMap<EventType, usize> {
    let mut m = BTreeMap::new();
    for d in deliveries {
        *m.entry(d.event.kind).or_default() += 1;
    }
    m
}

/// Every change that other systems hear of writes exactly one event, in its own atomic step:
/// orders placed (directly, as a basket, by checking out a hold), cancelled and confirmed,
/// holds made, released, expired and checked out. Refused changes and idempotent replays
/// write none. Each event reaches each subscribed destination once, with a body that follows
/// the contract.
pub async fn every_change_writes_its_event_once(store: TestStore) {
    let all = webhook(&store, &EventType::ALL).await;
    let hook = Destination::Webhook(all.id);
    let u = user(&store, "events@example.com").await;
    let a = product(&store, "ev-a", 100).await;
    let b = product(&store, "ev-b", 100).await;

    let key = IdempotencyKey::new("ev-key").unwrap();
    let first = order(&u, &a, 1).with_idempotency_key(key.clone());
    let placed = store.place_order(&first).await.unwrap();
    let mut replay = order(&u, &a, 1).with_idempotency_key(key);
    replay.id = Uuid::now_v7();
    assert!(store.place_order(&replay).await.unwrap().replayed);
    let short = store.place_order(&order(&u, &a, 1000)).await.unwrap_err();
    assert!(matches!(short, Error::OutOfStock { .. }), "got {short:?}");
    let basket_order = store
        .place_order(&basket(&u, &[(&a, 2), (&b, 3)]))
        .await
        .unwrap();
    store
        .cancel_order(basket_order.order.id, SYSTEM_ACTOR, now())
        .await
        .unwrap();
    let released = store
        .reserve(&hold(&u, &[(&a, 1)], Duration::from_secs(600)))
        .await
        .unwrap();
    store.release_reservation(released.id, now()).await.unwrap();
    let checked = store
        .reserve(&hold(&u, &[(&b, 1)], Duration::from_secs(600)))
        .await
        .unwrap();
    let from_hold = store
        .checkout_reservation(checked.id, &checked.order(now()))
        .await
        .unwrap();
    let expiring = store
        .reserve(&hold(&u, &[(&a, 1)], Duration::from_millis(1)))
        .await
        .unwrap();
    let expired = store
        .expire_reservations(now() + chrono::Duration::seconds(5), 10)
        .await
        .unwrap();
    assert_eq!(expired, 1);
    // The first order's confirmation goes out: `order.confirmed`.
    let claimed = store.claim_due("mailer", now(), LEASE, 100).await.unwrap();
    let confirmation = claimed
        .iter()
        .find(|n| n.order_id() == Some(placed.order.id))
        .expect("the first order's confirmation");
    store
        .mark_sent(confirmation.id, "mailer", now())
        .await
        .unwrap();

    assert_eq!(fan_out_all(&store, &[Destination::PubSub]).await, 11);
    assert_eq!(
        fan_out_all(&store, &[Destination::PubSub]).await,
        0,
        "each event once"
    );
    let to_hook = claim_all(&store, &hook, "events").await;
    let to_pubsub = claim_all(&store, &Destination::PubSub, "events").await;
    let expected: BTreeMap<EventType, usize> = [
        (EventType::OrderPlaced, 3),
        (EventType::OrderConfirmed, 1),
        (EventType::OrderCancelled, 1),
        (EventType::ReservationCreated, 3),
        (EventType::ReservationReleased, 1),
        (EventType::ReservationCheckedOut, 1),
        (EventType::ReservationExpired, 1),
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds(&to_hook), expected);
    assert_eq!(kinds(&to_pubsub), expected);
    let ids: HashSet<Uuid> = to_hook.iter().map(|d| d.event.id).collect();
    assert_eq!(ids.len(), 11, "every event has its own id");
    let pubsub_ids: HashSet<Uuid> = to_pubsub.iter().map(|d| d.event.id).collect();
    assert_eq!(ids, pubsub_ids, "the same events, the same ids, everywhere");
    for d in &to_hook {
        assert_eq!(d.attempts, 1);
        let body: serde_json::Value = serde_json::from_str(&d.event.body()).unwrap();
        assert_eq!(body["version"], EVENT_VERSION);
        assert_eq!(body["type"], d.event.kind.as_str());
        assert_eq!(body["id"], d.event.id.to_string());
        assert!(body["occurred_at"].is_string());
        let about = match d.event.kind {
            EventType::OrderPlaced | EventType::OrderConfirmed | EventType::OrderCancelled => {
                &body["data"]["order_id"]
            }
            _ => &body["data"]["reservation_id"],
        };
        assert_eq!(about, &serde_json::json!(d.event.key), "{body}");
    }
    let keyed = |kind: EventType, key: Uuid| {
        to_hook
            .iter()
            .any(|d| d.event.kind == kind && d.event.key == key.to_string())
    };
    assert!(keyed(EventType::OrderPlaced, placed.order.id));
    assert!(keyed(EventType::OrderConfirmed, placed.order.id));
    assert!(keyed(EventType::OrderCancelled, basket_order.order.id));
    assert!(keyed(EventType::OrderPlaced, from_hold.order.id));
    assert!(keyed(EventType::ReservationCheckedOut, checked.id));
    assert!(keyed(EventType::ReservationReleased, released.id));
    assert!(keyed(EventType::ReservationExpired, expiring.id));
    let cancelled = to_hook
        .iter()
        .find(|d| d.event.kind == EventType::OrderCancelled)
        .unwrap();
    assert_eq!(cancelled.event.data["status"], "cancelled");
    assert_eq!(
        cancelled.event.data["lines"].as_array().map(Vec::len),
        Some(2)
    );
}

/// An event carries the trace of the request that caused it, read from the task's scope.
pub async fn events_carry_the_requests_trace(store: TestStore) {
    let all = webhook(&store, &[EventType::OrderPlaced]).await;
    let u = user(&store, "traced@example.com").await;
    let a = product(&store, "trace-a", 5).await;
    let trace = TraceParent::root();
    let placed = crate::trace::in_scope(trace, async {
        store.place_order(&order(&u, &a, 1)).await.unwrap()
    })
    .await;
    fan_out_all(&store, &[]).await;
    let d = claim_all(&store, &Destination::Webhook(all.id), "t").await;
    assert_eq!(d.len(), 1);
    assert_eq!(d[0].event.key, placed.order.id.to_string());
    assert_eq!(d[0].event.traceparent, Some(trace.to_string()));
    let child = crate::events::delivery_trace(&d[0].event, &tracing::Span::none());
    assert_eq!(
        child.trace_id, trace.trace_id,
        "the delivery continues the trace"
    );
}

/// Endpoints get the types they asked for; a disabled one gets nothing; deleting one fails
/// its pending deliveries, which cannot be replayed.
pub async fn endpoints_filter_and_deleting_one_fails_its_deliveries(store: TestStore) {
    let placed_only = webhook(&store, &[EventType::OrderPlaced]).await;
    let cancelled_only = webhook(&store, &[EventType::OrderCancelled]).await;
    let mut gone = webhook(&store, &EventType::ALL).await;
    gone.disabled = Some("410 Gone".into());
    store.update_webhook(&gone).await.unwrap();
    let listed = store.list_webhooks().await.unwrap();
    assert_eq!(listed.len(), 3);
    let stored = listed.iter().find(|w| w.id == gone.id).unwrap();
    assert_eq!(stored.disabled.as_deref(), Some("410 Gone"));
    assert_eq!(stored.secrets, gone.secrets, "secrets kept as written");
    assert_eq!(stored.url, gone.url);

    let u = user(&store, "filters@example.com").await;
    let a = product(&store, "filter-a", 10).await;
    let placed = store.place_order(&order(&u, &a, 1)).await.unwrap();
    store
        .cancel_order(placed.order.id, SYSTEM_ACTOR, now())
        .await
        .unwrap();
    assert_eq!(fan_out_all(&store, &[]).await, 2);
    assert_eq!(store.due_destinations(now()).await.unwrap(), {
        let mut v = vec![
            Destination::Webhook(placed_only.id),
            Destination::Webhook(cancelled_only.id),
        ];
        v.sort();
        v
    });
    let p = store
        .list_deliveries(DeliveryStatus::Pending, Page::first(100).unwrap())
        .await
        .unwrap();
    assert_eq!(p.len(), 2);
    let of = |id: Uuid| p.iter().find(|d| d.destination == Destination::Webhook(id));
    assert_eq!(
        of(placed_only.id).unwrap().event.kind,
        EventType::OrderPlaced
    );
    assert_eq!(
        of(cancelled_only.id).unwrap().event.kind,
        EventType::OrderCancelled
    );
    assert!(of(gone.id).is_none());

    store
        .delete_webhook(cancelled_only.id, now())
        .await
        .unwrap();
    let missing = store.delete_webhook(cancelled_only.id, now()).await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    let failed = store
        .list_deliveries(DeliveryStatus::Failed, Page::first(100).unwrap())
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].last_error.as_deref(), Some(ENDPOINT_DELETED));
    let replayed = store
        .replay_deliveries(&Replay::One(failed[0].id), now())
        .await
        .unwrap();
    assert_eq!(replayed, 0, "no endpoint to replay to");
    assert_eq!(store.list_webhooks().await.unwrap().len(), 2);
}

/// A delivery is leased to one dispatcher at a time; a retry waits for its time; a refusal
/// fails it; failed ones are listed, counted and replayed (one, a destination, since a time).
pub async fn deliveries_lease_retry_fail_and_replay(store: TestStore) {
    let w = webhook(&store, &[EventType::OrderPlaced]).await;
    let hook = Destination::Webhook(w.id);
    let u = user(&store, "leases@example.com").await;
    let a = product(&store, "lease-a", 10).await;
    for _ in 0..3 {
        store.place_order(&order(&u, &a, 1)).await.unwrap();
    }
    fan_out_all(&store, &[Destination::PubSub]).await;
    let mine = claim_all(&store, &hook, "one").await;
    assert_eq!(mine.len(), 3);
    assert!(claim_all(&store, &hook, "two").await.is_empty(), "leased");
    let lost = store
        .finish_delivery(mine[0].id, "two", &Attempt::Delivered, now())
        .await;
    assert!(matches!(lost, Err(Error::LeaseLost(_))), "{lost:?}");

    let later = now() + chrono::Duration::seconds(60);
    let retry = Attempt::Retry {
        error: "503".into(),
        at: Some(later),
    };
    let refused = Attempt::Refused {
        error: "gone".into(),
    };
    store
        .finish_delivery(mine[0].id, "one", &Attempt::Delivered, now())
        .await
        .unwrap();
    // Several outcomes at once, each answered (the last: finished already, in this batch).
    let answers = store
        .finish_deliveries(
            "one",
            &[
                (mine[1].id, retry.clone()),
                (mine[2].id, refused.clone()),
                (mine[2].id, refused.clone()),
            ],
            now(),
        )
        .await
        .unwrap();
    assert_eq!(answers.len(), 3);
    assert!(answers[..2].iter().all(Result::is_ok), "{answers:?}");
    assert!(
        matches!(answers[2], Err(Error::LeaseLost(_))),
        "{answers:?}"
    );
    let twice = store
        .finish_delivery(mine[0].id, "one", &Attempt::Delivered, now())
        .await;
    assert!(
        matches!(twice, Err(Error::LeaseLost(_))),
        "finished once: {twice:?}"
    );

    assert!(
        claim_all(&store, &hook, "two").await.is_empty(),
        "the retry is not due"
    );
    let due_later = store
        .claim_deliveries(&hook, "two", later, LEASE, 10)
        .await
        .unwrap();
    assert_eq!(due_later.len(), 1);
    assert_eq!(due_later[0].id, mine[1].id);
    assert_eq!(due_later[0].attempts, 2);
    assert_eq!(due_later[0].last_error.as_deref(), Some("503"));

    let counts: BTreeMap<Destination, DeliveryCounts> =
        store.delivery_counts().await.unwrap().into_iter().collect();
    let c = &counts[&hook];
    assert_eq!((c.delivered, c.retrying, c.failed, c.pending), (1, 1, 1, 0));
    assert!(c.oldest_pending.is_some());
    let p = &counts[&Destination::PubSub];
    assert_eq!((p.pending, p.delivered), (3, 0));

    let failed = store
        .list_deliveries(DeliveryStatus::Failed, Page::first(10).unwrap())
        .await
        .unwrap();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].id, mine[2].id);
    assert_eq!(failed[0].last_error.as_deref(), Some("gone"));
    let delivered = store
        .list_deliveries(DeliveryStatus::Delivered, Page::first(10).unwrap())
        .await
        .unwrap();
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].delivered_at.is_some());

    assert_eq!(
        store
            .replay_deliveries(&Replay::One(mine[2].id), now())
            .await
            .unwrap(),
        1
    );
    let again = claim_all(&store, &hook, "three").await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, mine[2].id);
    assert_eq!(again[0].attempts, 1, "attempts start again");
    store
        .finish_delivery(again[0].id, "three", &refused, now())
        .await
        .unwrap();
    let by_destination = Replay::Destination(hook.clone());
    assert_eq!(
        store
            .replay_deliveries(&by_destination, now())
            .await
            .unwrap(),
        1
    );
    let again = claim_all(&store, &hook, "four").await;
    store
        .finish_delivery(again[0].id, "four", &refused, now())
        .await
        .unwrap();
    let since = Replay::Since(now() + chrono::Duration::hours(1));
    assert_eq!(store.replay_deliveries(&since, now()).await.unwrap(), 0);
    let since = Replay::Since(now() - chrono::Duration::hours(1));
    assert_eq!(store.replay_deliveries(&since, now()).await.unwrap(), 1);
    let page = store
        .list_deliveries(DeliveryStatus::Pending, Page::first(2).unwrap())
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    let rest = store
        .list_deliveries(
            DeliveryStatus::Pending,
            Page::first(10).unwrap().after(page[1].cursor()),
        )
        .await
        .unwrap();
    assert!(rest.iter().all(|d| d.id > page[1].id));
    assert_eq!(page.len() + rest.len(), 5, "3 to Pub/Sub, 2 to the webhook");
}

/// Several dispatchers fanning out and claiming at once while orders flow: every event
/// reaches every destination exactly once.
pub async fn concurrent_dispatchers_deliver_each_event_once(store: TestStore) {
    let w = webhook(&store, &[EventType::OrderPlaced]).await;
    let destinations = [Destination::Webhook(w.id), Destination::PubSub];
    let a = product(&store, "burst-a", 1000).await;
    let mut buyers = Vec::new();
    for i in 0..4 {
        buyers.push(user(&store, &format!("burst{i}@example.com")).await);
    }
    let orders = futures::future::join_all(buyers.iter().map(|u| {
        let store = store.clone();
        let a = a.clone();
        let u = u.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for _ in 0..25 {
                ids.push(store.place_order(&order(&u, &a, 1)).await.unwrap().order.id);
            }
            ids
        })
    }));
    let seen: Arc<Mutex<Vec<(Destination, Uuid)>>> = Arc::default();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..3)
        .map(|i| {
            let store = store.clone();
            let seen = seen.clone();
            let done = done.clone();
            let destinations = destinations.clone();
            tokio::spawn(async move {
                let owner = format!("worker-{i}");
                loop {
                    let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                    let fanned = store
                        .fan_out(&[Destination::PubSub], now(), 7)
                        .await
                        .unwrap();
                    let mut claimed = 0;
                    for d in &destinations {
                        for delivery in store
                            .claim_deliveries(d, &owner, now(), LEASE, 5)
                            .await
                            .unwrap()
                        {
                            claimed += 1;
                            seen.lock().unwrap().push((d.clone(), delivery.event.id));
                            store
                                .finish_delivery(delivery.id, &owner, &Attempt::Delivered, now())
                                .await
                                .unwrap();
                        }
                    }
                    if finished && fanned == 0 && claimed == 0 {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let placed: Vec<Uuid> = orders.await.into_iter().flat_map(|r| r.unwrap()).collect();
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    for w in workers {
        w.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(placed.len(), 100);
    assert_eq!(seen.len(), 200, "100 events to each of 2 destinations");
    let unique: HashSet<(Destination, Uuid)> = seen.into_iter().collect();
    assert_eq!(unique.len(), 200, "none twice");
}

#[derive(Default)]
struct Recorded {
    webhooks: Mutex<Vec<(Uuid, Uuid)>>,
    published: Mutex<Vec<Uuid>>,
}

struct FailingFor(Uuid, Arc<Recorded>);

#[async_trait]
impl WebhookSender for FailingFor {
    async fn send(
        &self,
        endpoint: &WebhookEndpoint,
        event: &Event,
        _: &TraceParent,
    ) -> std::result::Result<(), SendError> {
        if endpoint.id == self.0 {
            return Err(SendError::Retry {
                error: "500".into(),
                after: Some(Duration::from_secs(3600)),
            });
        }
        self.1
            .webhooks
            .lock()
            .unwrap()
            .push((endpoint.id, event.id));
        Ok(())
    }
}

#[async_trait]
impl Publisher for FailingFor {
    async fn publish(
        &self,
        events: &[Event],
        traces: &[TraceParent],
    ) -> std::result::Result<(), SendError> {
        assert_eq!(events.len(), traces.len());
        self.1
            .published
            .lock()
            .unwrap()
            .extend(events.iter().map(|e| e.id));
        Ok(())
    }
}

/// Through the [`EventDispatcher`]: a failing endpoint is retried on its own schedule
/// (`Retry-After` honoured), while another endpoint and Pub/Sub receive everything.
pub async fn a_failing_endpoint_holds_back_no_other_destination(store: TestStore) {
    let bad = webhook(&store, &EventType::ALL).await;
    let good = webhook(&store, &EventType::ALL).await;
    let recorded = Arc::new(Recorded::default());
    let sender = Arc::new(FailingFor(bad.id, recorded.clone()));
    let dispatcher = EventDispatcher::new(
        store.clone(),
        Some(sender.clone()),
        Some(sender),
        EventConfig::default(),
    );
    let u = user(&store, "fair@example.com").await;
    let a = product(&store, "fair-a", 100).await;
    for _ in 0..10 {
        store.place_order(&order(&u, &a, 1)).await.unwrap();
    }
    let report = dispatcher.run_once().await.unwrap();
    assert_eq!(report.fanned_out, 10);
    assert_eq!(
        report.delivered, 20,
        "the good endpoint and Pub/Sub: {report:?}"
    );
    assert_eq!(report.retried, 10, "the bad endpoint: {report:?}");
    assert_eq!(recorded.webhooks.lock().unwrap().len(), 10);
    assert!(
        recorded
            .webhooks
            .lock()
            .unwrap()
            .iter()
            .all(|(e, _)| *e == good.id)
    );
    assert_eq!(recorded.published.lock().unwrap().len(), 10);
    let counts: BTreeMap<Destination, DeliveryCounts> =
        store.delivery_counts().await.unwrap().into_iter().collect();
    let c = &counts[&Destination::Webhook(bad.id)];
    assert_eq!(c.retrying, 10);
    // Not before its Retry-After (an hour).
    let report = dispatcher.run_once().await.unwrap();
    assert_eq!(report, crate::events::EventReport::default());
    let pending = store
        .list_deliveries(DeliveryStatus::Pending, Page::first(100).unwrap())
        .await
        .unwrap();
    assert_eq!(pending.len(), 10);
    for d in pending {
        assert!(
            d.next_attempt_at >= now() + chrono::Duration::minutes(59),
            "{d:?}"
        );
    }
}

/// `stock.low` is written when a change takes a product's available stock from above its
/// threshold to at or below it (an order, a basket, a hold, a set), once per crossing: not
/// while it stays below, not when it goes up.
pub async fn stock_low_fires_when_crossing_downward(store: TestStore) {
    let w = webhook(&store, &[EventType::StockLow]).await;
    let hook = Destination::Webhook(w.id);
    let u = user(&store, "low@example.com").await;
    let a = product(&store, "low-a", 10).await;
    let b = product(&store, "low-b", 10).await;
    let unknown = ProductId::new("low-none").unwrap();
    let missing = store.set_low_stock_threshold(&unknown, Some(1)).await;
    assert!(matches!(missing, Err(Error::NotFound(_))), "{missing:?}");
    assert_eq!(store.low_stock_threshold(&a).await.unwrap(), None);
    store.set_low_stock_threshold(&a, Some(3)).await.unwrap();
    store.set_low_stock_threshold(&b, Some(8)).await.unwrap();
    assert_eq!(store.low_stock_threshold(&a).await.unwrap(), Some(3));

    let lows = |store: TestStore| {
        let hook = hook.clone();
        async move {
            fan_out_all(&store, &[]).await;
            claim_all(&store, &hook, "low")
                .await
                .into_iter()
                .map(|d| {
                    (
                        d.event.key.clone(),
                        d.event.data["previous"].as_u64().unwrap(),
                        d.event.data["available"].as_u64().unwrap(),
                        d.event.data["threshold"].as_u64().unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    store.place_order(&order(&u, &a, 2)).await.unwrap(); // 10 -> 8
    store.place_order(&order(&u, &a, 3)).await.unwrap(); // 8 -> 5
    assert!(lows(store.clone()).await.is_empty(), "still above 3");
    // One basket takes both products across their thresholds: a 5 -> 3, b 10 -> 7.
    store
        .place_order(&basket(&u, &[(&a, 2), (&b, 3)]))
        .await
        .unwrap();
    let mut got = lows(store.clone()).await;
    got.sort();
    assert_eq!(
        got,
        [
            ("low-a".to_owned(), 5, 3, 3),
            ("low-b".to_owned(), 10, 7, 8)
        ]
    );
    store.place_order(&order(&u, &a, 1)).await.unwrap(); // 3 -> 2: already below
    store.restock(&a, 10, SYSTEM_ACTOR, now()).await.unwrap(); // 2 -> 12: up
    assert!(lows(store.clone()).await.is_empty(), "no new crossing");
    // A hold takes available stock too: 12 -> 1.
    store
        .reserve(&hold(&u, &[(&a, 11)], Duration::from_secs(600)))
        .await
        .unwrap();
    assert_eq!(lows(store.clone()).await, [("low-a".to_owned(), 12, 1, 3)]);
    // A set across it, after the threshold is removed from b: only a's.
    store.set_low_stock_threshold(&b, None).await.unwrap();
    let up = StockSet::new(a.clone(), 20, 1, None, SYSTEM_ACTOR).unwrap();
    store.set_stock(&up).await.unwrap();
    let down = StockSet::new(a.clone(), 0, 20, None, SYSTEM_ACTOR).unwrap();
    store.set_stock(&down).await.unwrap();
    store.place_order(&order(&u, &b, 7)).await.unwrap();
    assert_eq!(lows(store.clone()).await, [("low-a".to_owned(), 20, 0, 3)]);
}
