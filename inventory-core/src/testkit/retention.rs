//! Conformance cases of retention ([`RetentionStore`]): keys expire, done outbox rows go,
//! failed and pending ones stay, each call removes at most its limit.

use std::time::Duration;

use super::events::{claim_all, fan_out_all};
use super::*;
use crate::error::Error;

const LEASE: Duration = Duration::from_secs(30);

/// `new`, written as if placed at `at`.
fn placed_at(mut new: NewOrder, at: DateTime<Utc>) -> NewOrder {
    new.now = at;
    new
}

/// Calls `step` with `limit` until it removes nothing, checking that no call removes more than
/// `limit`; returns the total.
async fn drain<F, Fut>(limit: u32, step: F) -> u64
where
    F: Fn(u32) -> Fut,
    Fut: std::future::Future<Output = crate::Result<u64>>,
{
    let mut total = 0;
    loop {
        let n = step(limit).await.expect("prune");
        assert!(n <= u64::from(limit), "{n} removed with a limit of {limit}");
        if n == 0 {
            return total;
        }
        total += n;
    }
}

/// An idempotency key older than the window is forgotten: repeating it places a new order
/// (even with another body), while a younger key still replays. The orders themselves stay.
pub async fn idempotency_keys_expire_into_new_orders(store: TestStore) {
    let u = user(&store, "keys@example.com").await;
    let p = product(&store, "keyed", 20).await;
    let now = Utc::now();
    let old = now - chrono::Duration::days(3);
    let mut olds = Vec::new();
    for key in ["a", "b", "c"] {
        let mut new = placed_at(order(&u, &p, 1), old);
        new = new.with_idempotency_key(IdempotencyKey::new(key).unwrap());
        olds.push(store.place_order(&new).await.unwrap().order);
    }
    let mut young = placed_at(order(&u, &p, 1), now);
    young = young.with_idempotency_key(IdempotencyKey::new("young").unwrap());
    let young_order = store.place_order(&young).await.unwrap().order;

    let cutoff = now - chrono::Duration::days(1);
    let expired = drain(2, |limit| store.expire_idempotency_keys(cutoff, limit)).await;
    assert_eq!(expired, 3, "the three old keys, two at most per call");
    assert_eq!(
        store.expire_idempotency_keys(cutoff, 10).await.unwrap(),
        0,
        "each key expires once"
    );
    for o in &olds {
        let kept = store
            .get_order(o.id)
            .await
            .unwrap()
            .expect("the order stays");
        assert_eq!(kept.lines, o.lines);
    }

    // The same key and body again: a new order, stock taken again.
    let mut again = order(&u, &p, 1);
    again = again.with_idempotency_key(IdempotencyKey::new("a").unwrap());
    let placed = store.place_order(&again).await.unwrap();
    assert!(!placed.replayed, "an expired key places a new order");
    assert_ne!(placed.order.id, olds[0].id);
    // An expired key with another body: a new order too, not a conflict.
    let mut other = order(&u, &p, 2);
    other = other.with_idempotency_key(IdempotencyKey::new("b").unwrap());
    assert!(!store.place_order(&other).await.unwrap().replayed);
    // The key just used is live again: another body conflicts, the same body replays.
    let mut reused = order(&u, &p, 3);
    reused = reused.with_idempotency_key(IdempotencyKey::new("a").unwrap());
    assert!(matches!(
        store.place_order(&reused).await,
        Err(Error::IdempotencyKeyReused)
    ));
    let replay = store.place_order(&again).await.unwrap();
    assert!(replay.replayed);
    assert_eq!(replay.order.id, placed.order.id);
    // The young key was kept.
    let young_again = store.place_order(&young).await.unwrap();
    assert!(young_again.replayed);
    assert_eq!(young_again.order.id, young_order.id);
    // 20 - 3 old - 1 young - 1 - 2 = 13.
    assert_eq!(stock(&store, &p).await, 13);
}

/// Sent and cancelled notifications older than the window are deleted; failed and pending
/// ones stay whatever their age, and so do younger sent ones.
pub async fn done_notifications_are_pruned_and_failed_ones_kept(store: TestStore) {
    let u = user(&store, "outbox-retention@example.com").await;
    let p = product(&store, "retained", 20).await;
    let now = Utc::now();
    let old = now - chrono::Duration::days(40);
    let mut olds = Vec::new();
    for _ in 0..5 {
        let o = store.place_order(&placed_at(order(&u, &p, 1), old)).await;
        olds.push(o.unwrap().order);
    }
    let young = store
        .place_order(&placed_at(order(&u, &p, 1), now))
        .await
        .unwrap()
        .order;
    let claimed = store
        .claim_due("w", now + chrono::Duration::seconds(1), LEASE, 100)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 6);
    let id_of = |o: &Order| {
        claimed
            .iter()
            .find(|n| n.order_id() == Some(o.id))
            .expect("claimed")
            .id
    };
    // Old: two sent, one cancelled with its order, one failed, one left pending.
    for o in &olds[..2] {
        store.mark_sent(id_of(o), "w", now).await.unwrap();
    }
    store.cancel_order(olds[2].id, "admin", now).await.unwrap();
    store
        .mark_failed(id_of(&olds[3]), "w", "550 no such user", None)
        .await
        .unwrap();
    store
        .mark_failed(id_of(&olds[4]), "w", "421 later", Some(now))
        .await
        .unwrap();
    store.mark_sent(id_of(&young), "w", now).await.unwrap();

    let cutoff = now - chrono::Duration::days(30);
    let pruned = drain(2, |limit| store.prune_notifications(cutoff, limit)).await;
    assert_eq!(pruned, 3, "two sent and one cancelled, old");
    for o in &olds[..3] {
        assert!(
            store.notification_for_order(o.id).await.unwrap().is_none(),
            "done and old: pruned"
        );
        assert!(
            store.get_order(o.id).await.unwrap().is_some(),
            "the order stays"
        );
    }
    let status = |o: Order| {
        let store = store.clone();
        async move {
            store
                .notification_for_order(o.id)
                .await
                .unwrap()
                .expect("kept")
                .status
        }
    };
    assert_eq!(status(olds[3].clone()).await, NotificationStatus::Failed);
    assert_eq!(status(olds[4].clone()).await, NotificationStatus::Pending);
    assert_eq!(status(young).await, NotificationStatus::Sent);
    let counts = store.notification_counts().await.unwrap();
    assert_eq!((counts.pending, counts.failed), (1, 1));

    // The operator removes failed ones; a pending one is not removed by its id.
    let pending = id_of(&olds[4]);
    assert_eq!(
        store
            .remove_failed_notifications(Some(pending), 10)
            .await
            .unwrap(),
        0
    );
    let failed = id_of(&olds[3]);
    assert_eq!(
        store
            .remove_failed_notifications(Some(failed), 10)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        store.remove_failed_notifications(None, 10).await.unwrap(),
        0
    );
    let counts = store.notification_counts().await.unwrap();
    assert_eq!((counts.pending, counts.failed), (1, 0));
}

/// Delivered event deliveries older than the window are deleted; failed and pending ones
/// stay, and so do younger delivered ones.
pub async fn delivered_deliveries_are_pruned_and_failed_ones_kept(store: TestStore) {
    let u = user(&store, "delivery-retention@example.com").await;
    let p = product(&store, "delivered", 20).await;
    for _ in 0..5 {
        store.place_order(&order(&u, &p, 1)).await.unwrap();
    }
    // Fanned out 40 days ago, as far as the deliveries know.
    let old = Utc::now() - chrono::Duration::days(40);
    assert_eq!(
        store
            .fan_out(&[Destination::PubSub], old, 100)
            .await
            .unwrap(),
        5
    );
    store.place_order(&order(&u, &p, 1)).await.unwrap();
    assert_eq!(fan_out_all(&store, &[Destination::PubSub]).await, 1);
    let mine = claim_all(&store, &Destination::PubSub, "w").await;
    assert_eq!(mine.len(), 6);
    let (olds, young): (Vec<&Delivery>, Vec<&Delivery>) = mine
        .iter()
        .partition(|d| d.created_at < Utc::now() - chrono::Duration::days(1));
    assert_eq!((olds.len(), young.len()), (5, 1));
    let failed = Attempt::Refused {
        error: "400 bad".into(),
    };
    let later = Attempt::Retry {
        error: "503".into(),
        at: Some(Utc::now()),
    };
    let mut outcomes: Vec<(Uuid, Attempt)> = olds[..3]
        .iter()
        .map(|d| (d.id, Attempt::Delivered))
        .collect();
    outcomes.push((olds[3].id, failed));
    outcomes.push((olds[4].id, later));
    outcomes.push((young[0].id, Attempt::Delivered));
    for r in store
        .finish_deliveries("w", &outcomes, Utc::now())
        .await
        .unwrap()
    {
        r.unwrap();
    }
    let cutoff = Utc::now() - chrono::Duration::days(30);
    let pruned = drain(2, |limit| store.prune_deliveries(cutoff, limit)).await;
    assert_eq!(pruned, 3, "the three old delivered ones");
    let page = Page::first(100).unwrap();
    let delivered = store
        .list_deliveries(DeliveryStatus::Delivered, page.clone())
        .await
        .unwrap();
    assert_eq!(
        delivered.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![young[0].id]
    );
    let failed = store
        .list_deliveries(DeliveryStatus::Failed, page.clone())
        .await
        .unwrap();
    assert_eq!(
        failed.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![olds[3].id]
    );
    let pending = store
        .list_deliveries(DeliveryStatus::Pending, page)
        .await
        .unwrap();
    assert_eq!(
        pending.iter().map(|d| d.id).collect::<Vec<_>>(),
        vec![olds[4].id]
    );
}
