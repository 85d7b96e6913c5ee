//! The outbox: claims, leases, sent and failed marks, retries, cancellation, hand-over.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use uuid::Uuid;

use crate::dispatcher::{Dispatcher, DispatcherConfig};
use crate::error::Error;
use crate::mail::RecordingMailer;

use super::*;

/// Address verification: `mark_email_verified` sets the flag only (tokens survive); a
/// verification email is enqueued, claimed, sent and exported like a confirmation, touches
/// no order, and an order confirmation cannot be enqueued on its own.
pub async fn verification_emails_share_the_outbox(store: TestStore) {
    let u = user(&store, "vera@example.com").await;
    assert!(!u.email_verified);
    let verified = store.mark_email_verified(&u.email).await.unwrap();
    assert!(
        verified.email_verified && verified.token_version == u.token_version,
        "mark_email_verified must set the flag and nothing else, got {verified:?}"
    );
    assert!(store.get_user(u.id).await.unwrap().unwrap().email_verified);
    let missing = store
        .mark_email_verified(&Email::parse("nobody@example.com").unwrap())
        .await;
    assert!(
        matches!(missing, Err(Error::NotFound(_))),
        "mark_email_verified of an unknown address must be NotFound, got {missing:?}"
    );

    let mut signal = store.subscribe();
    signal.borrow_and_update();
    let n = Notification::email_verification(&u, "signed.code.here".into(), t0());
    store.enqueue(&n).await.expect("enqueue");
    assert!(
        signal.has_changed().unwrap_or(false),
        "enqueue must raise the outbox signal"
    );
    let again = store.enqueue(&n).await;
    assert!(
        matches!(again, Err(Error::AlreadyExists(_))),
        "enqueueing an existing id must be AlreadyExists, got {again:?}"
    );
    let p = product(&store, "product-1", 5).await;
    let order = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let confirmation = store
        .notification_for_order(order.id)
        .await
        .unwrap()
        .unwrap();
    // An order confirmation cannot be enqueued on its own: the type refuses it.
    let refused = Standalone::new(confirmation);
    assert!(
        matches!(refused, Err(Error::InvalidInput { .. })),
        "an order confirmation made standalone must be InvalidInput, got {refused:?}"
    );

    let lease = Duration::from_secs(30);
    let claimed = store.claim_due("w", t0(), lease, 10).await.unwrap();
    let mine = claimed
        .iter()
        .find(|c| c.id == n.id)
        .expect("the verification email is claimed like a confirmation");
    assert_eq!(
        mine.message, n.message,
        "the message comes back as it was stored"
    );
    assert_eq!(mine.order_id(), None);
    store.mark_sent(n.id, "w", t0()).await.unwrap();
    assert_eq!(
        store.get_order(order.id).await.unwrap().unwrap().status,
        OrderStatus::Pending,
        "sending a verification email confirmed an order"
    );

    let mut out = Vec::new();
    let report = crate::transfer::export(store.as_ref(), &mut out)
        .await
        .unwrap();
    assert!(report.is_complete(), "{:?}", report.skipped);
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("\"kind\":\"email_verification\"")
            && text.contains("\"email_verified\":true"),
        "the export keeps verification emails and flags: {text}"
    );
}

/// A claim holds a notification until its lease runs out; then another owner can claim it,
/// and the first owner can no longer record a result.
pub async fn lease_claim_expiry_and_reclaim(store: TestStore) {
    let u = user(&store, "lease@example.com").await;
    let p = product(&store, "leased", 10).await;
    let placed = store.place_order(&order(&u, &p, 1)).await.unwrap();
    let now = Utc::now() + chrono::Duration::seconds(1);
    let lease = Duration::from_secs(30);
    let first = store.claim_due("a", now, lease, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].order_id(), Some(placed.order.id));
    assert_eq!(first[0].lease_owner.as_deref(), Some("a"));
    assert_eq!(first[0].attempts, 1);
    let during = store
        .claim_due("b", now + chrono::Duration::seconds(10), lease, 10)
        .await
        .unwrap();
    assert!(during.is_empty(), "leased work is not claimed twice");
    let after = now + chrono::Duration::seconds(31);
    let second = store.claim_due("b", after, lease, 10).await.unwrap();
    assert_eq!(second.len(), 1, "expired lease is claimable");
    assert_eq!(second[0].lease_owner.as_deref(), Some("b"));
    assert_eq!(second[0].attempts, 2);
    let stale = store.mark_sent(first[0].id, "a", after).await;
    assert!(
        matches!(stale, Err(Error::LeaseLost(_))),
        "mark_sent by the owner of an expired, re-claimed lease must be LeaseLost, got {stale:?}"
    );
    store.mark_sent(second[0].id, "b", after).await.unwrap();
    assert!(
        store
            .claim_due("c", after + chrono::Duration::days(1), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Marking sent confirms the order; marking failed with a time reschedules, without one gives up.
pub async fn mark_sent_and_mark_failed(store: TestStore) {
    let u = user(&store, "mark@example.com").await;
    let p = product(&store, "markable", 10).await;
    let o1 = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let o2 = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let now = Utc::now() + chrono::Duration::seconds(1);
    let lease = Duration::from_secs(60);
    let claimed = store.claim_due("w", now, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 2);
    let n1 = claimed
        .iter()
        .find(|n| n.order_id() == Some(o1.id))
        .unwrap();
    let n2 = claimed
        .iter()
        .find(|n| n.order_id() == Some(o2.id))
        .unwrap();

    store.mark_sent(n1.id, "w", now).await.unwrap();
    assert_eq!(
        store.get_order(o1.id).await.unwrap().unwrap().status,
        OrderStatus::Confirmed
    );
    let sent = store.notification_for_order(o1.id).await.unwrap().unwrap();
    assert_eq!(sent.status, NotificationStatus::Sent);
    assert!(sent.sent_at.is_some());
    let again = store.mark_sent(n1.id, "w", now).await;
    assert!(
        matches!(again, Err(Error::LeaseLost(_))),
        "marking a sent notification sent again must be LeaseLost, got {again:?}"
    );

    let retry_at = now + chrono::Duration::seconds(100);
    store
        .mark_failed(n2.id, "w", "421 try later", Some(retry_at))
        .await
        .unwrap();
    let pending = store.notification_for_order(o2.id).await.unwrap().unwrap();
    assert_eq!(pending.status, NotificationStatus::Pending);
    assert_eq!(pending.last_error.as_deref(), Some("421 try later"));
    assert_eq!(pending.lease_owner, None);
    assert!(
        store
            .claim_due("w", now + chrono::Duration::seconds(99), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    let again = store.claim_due("w", retry_at, lease, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].attempts, 2);
    store
        .mark_failed(n2.id, "w", "550 no such user", None)
        .await
        .unwrap();
    let failed = store.notification_for_order(o2.id).await.unwrap().unwrap();
    assert_eq!(failed.status, NotificationStatus::Failed);
    assert_eq!(failed.last_error.as_deref(), Some("550 no such user"));
    assert_eq!(
        store.get_order(o2.id).await.unwrap().unwrap().status,
        OrderStatus::Pending
    );
    assert!(
        store
            .claim_due("w", retry_at + chrono::Duration::days(1), lease, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.notification_counts().await.unwrap(),
        NotificationCounts {
            pending: 0,
            sent: 1,
            failed: 1,
            cancelled: 0,
        }
    );
    let listed = store
        .list_notifications(NotificationStatus::Failed, Page::default())
        .await
        .unwrap();
    assert_eq!(listed.iter().map(|n| n.id).collect::<Vec<_>>(), [n2.id]);
}

/// Failed notifications go back to pending, one or all.
pub async fn retry_failed_puts_back_to_pending(store: TestStore) {
    let u = user(&store, "retry@example.com").await;
    let p = product(&store, "retryable", 10).await;
    for _ in 0..3 {
        store.place_order(&order(&u, &p, 1)).await.unwrap();
    }
    let now = Utc::now() + chrono::Duration::seconds(1);
    let claimed = store
        .claim_due("w", now, Duration::from_secs(60), 10)
        .await
        .unwrap();
    for n in &claimed {
        store.mark_failed(n.id, "w", "boom", None).await.unwrap();
    }
    assert_eq!(store.notification_counts().await.unwrap().failed, 3);
    assert_eq!(
        store.retry_failed(Some(claimed[0].id), now).await.unwrap(),
        1
    );
    assert_eq!(
        store.retry_failed(Some(Uuid::now_v7()), now).await.unwrap(),
        0
    );
    assert_eq!(store.retry_failed(None, now).await.unwrap(), 2);
    let c = store.notification_counts().await.unwrap();
    assert_eq!((c.pending, c.failed), (3, 0));
    let again = store
        .claim_due("w", now, Duration::from_secs(60), 10)
        .await
        .unwrap();
    assert_eq!(again.len(), 3);
    assert!(again.iter().all(|n| n.attempts == 1), "attempts reset");
}

/// Two dispatchers draining 500 notifications at once deliver each exactly once.
pub async fn two_dispatchers_deliver_each_exactly_once(store: TestStore) {
    let u = user(&store, "bulk@example.com").await;
    let p = product(&store, "bulk", 500).await;
    let mut expected = HashSet::new();
    for chunk in 0..10 {
        let tasks = (0..50).map(|_| {
            let store = store.clone();
            let new = order(&u, &p, 1);
            tokio::spawn(async move { store.place_order(&new).await })
        });
        for r in futures::future::join_all(tasks).await {
            expected.insert(r.unwrap().unwrap().order.id);
        }
        assert_eq!(expected.len(), (chunk + 1) * 50);
    }
    let mailers = [
        Arc::new(RecordingMailer::new()),
        Arc::new(RecordingMailer::new()),
    ];
    let runs = mailers.iter().enumerate().map(|(i, mailer)| {
        let d = Dispatcher::new(
            store.clone(),
            mailer.clone(),
            DispatcherConfig {
                owner: format!("dispatcher-{i}"),
                batch_size: 25,
                ..DispatcherConfig::default()
            },
        );
        tokio::spawn(async move {
            loop {
                let report = d.run_once().await.expect("cycle");
                assert_eq!(report.sent, report.claimed);
                if report.claimed == 0 {
                    break;
                }
            }
        })
    });
    for r in futures::future::join_all(runs).await {
        r.unwrap();
    }
    let mut seen = HashSet::new();
    for mailer in &mailers {
        for email in mailer.deliveries() {
            assert!(
                seen.insert(email.message_id.clone()),
                "delivered twice: {}",
                email.message_id
            );
        }
    }
    assert_eq!(seen.len(), 500);
    assert_eq!(store.notification_counts().await.unwrap().sent, 500);
    let confirmed = store
        .list_orders(Page::new(0, 1000).unwrap())
        .await
        .unwrap();
    assert!(confirmed.iter().all(|o| o.status == OrderStatus::Confirmed));
    assert_eq!(
        confirmed.iter().map(|o| o.id).collect::<HashSet<_>>(),
        expected
    );
}

/// Cancelling an order cancels its pending confirmation in the same step: it is never claimed,
/// never retried, and a send already in flight cannot mark it sent or confirm the order.
pub async fn cancel_cancels_the_pending_confirmation(store: TestStore) {
    let u = user(&store, "c@example.com").await;
    let p = product(&store, "product-1", 5).await;
    let owner = "dispatcher-a";
    let lease = std::time::Duration::from_secs(60);

    // Not yet claimed.
    let queued = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    store
        .cancel_order(queued.id, SYSTEM_ACTOR, t0())
        .await
        .unwrap();
    let n = store
        .notification_for_order(queued.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        n.status,
        NotificationStatus::Cancelled,
        "cancel_order left the pending confirmation {:?}",
        n.status
    );
    assert!(
        store
            .claim_due(owner, t0(), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "a cancelled order's confirmation was claimed for sending"
    );

    // Claimed, mid-send, when the order is cancelled.
    let in_flight = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let claimed = store.claim_due(owner, t0(), lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    store
        .cancel_order(in_flight.id, SYSTEM_ACTOR, t0())
        .await
        .unwrap();
    let result = store.mark_sent(claimed[0].id, owner, t0()).await;
    assert!(
        matches!(result, Err(crate::Error::LeaseLost(_))),
        "mark_sent after the order was cancelled must be LeaseLost, got {result:?}"
    );
    let o = store.get_order(in_flight.id).await.unwrap().unwrap();
    assert_eq!(
        o.status,
        OrderStatus::Cancelled,
        "a cancelled order was confirmed"
    );
    let n = store
        .notification_for_order(in_flight.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.status, NotificationStatus::Cancelled);

    // Never put back by a retry of failed ones.
    assert_eq!(store.retry_failed(None, t0()).await.unwrap(), 0);
    let counts = store.notification_counts().await.unwrap();
    assert_eq!(
        (counts.pending, counts.sent, counts.failed, counts.cancelled),
        (0, 0, 0, 2),
        "notification_counts must count cancelled confirmations"
    );
    assert_eq!(stock(&store, &p).await, 5, "both units returned");
}

/// A notification sent after a failed attempt keeps no `last_error`.
pub async fn sent_clears_the_last_error(store: TestStore) {
    let u = user(&store, "l@example.com").await;
    let p = product(&store, "product-1", 5).await;
    let placed = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let owner = "dispatcher-a";
    let lease = std::time::Duration::from_secs(60);
    let first = store.claim_due(owner, t0(), lease, 10).await.unwrap();
    assert_eq!(first.len(), 1);
    store
        .mark_failed(first[0].id, owner, "451 try again later", Some(t0()))
        .await
        .unwrap();
    let second = store
        .claim_due(owner, t0() + chrono::Duration::seconds(1), lease, 10)
        .await
        .unwrap();
    assert_eq!(second.len(), 1);
    store.mark_sent(second[0].id, owner, t0()).await.unwrap();
    let n = store
        .notification_for_order(placed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.status, NotificationStatus::Sent);
    assert_eq!(
        n.last_error, None,
        "a sent notification still shows the error of an earlier attempt"
    );
}

/// `extend_lease` keeps a claim from expiring for its owner only, and fails once the lease
/// is lost (here: the order was cancelled).
pub async fn extend_lease_keeps_a_claim(store: TestStore) {
    let u = user(&store, "hb@example.com").await;
    let p = product(&store, "product-1", 5).await;
    let placed = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let start = t0();
    let short = std::time::Duration::from_secs(1);
    let claimed = store.claim_due("a", start, short, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let id = claimed[0].id;
    store
        .extend_lease(id, "a", start + chrono::Duration::seconds(60))
        .await
        .expect("the owner extends its lease");
    let later = start + chrono::Duration::seconds(5);
    assert!(
        store
            .claim_due("b", later, short, 10)
            .await
            .unwrap()
            .is_empty(),
        "a claim whose lease was extended was taken by another dispatcher"
    );
    let wrong = store
        .extend_lease(id, "b", later + chrono::Duration::seconds(60))
        .await;
    assert!(
        matches!(wrong, Err(crate::Error::LeaseLost(_))),
        "extend_lease by a non-owner must be LeaseLost, got {wrong:?}"
    );
    store
        .cancel_order(placed.id, SYSTEM_ACTOR, later)
        .await
        .unwrap();
    let lost = store
        .extend_lease(id, "a", later + chrono::Duration::seconds(60))
        .await;
    assert!(
        matches!(lost, Err(crate::Error::LeaseLost(_))),
        "extend_lease of a cancelled notification must be LeaseLost, got {lost:?}"
    );
    let missing = store.extend_lease(Uuid::now_v7(), "a", later).await;
    assert!(
        matches!(missing, Err(crate::Error::NotFound(_))),
        "extend_lease of an unknown notification must be NotFound, got {missing:?}"
    );
}

/// `claim_due` returns at most `limit` notifications, the oldest due first, and never one
/// that is not due yet.
pub async fn claim_due_respects_its_limit_and_order(store: TestStore) {
    let u = user(&store, "limit@example.com").await;
    let p = product(&store, "product-1", 100).await;
    let mut ids = Vec::new();
    for _ in 0..5 {
        let placed = store.place_order(&order(&u, &p, 1)).await.unwrap();
        ids.push(placed.order.id);
    }
    let lease = Duration::from_secs(60);
    let before = store
        .claim_due("early", Utc::now() - chrono::Duration::hours(1), lease, 10)
        .await
        .unwrap();
    assert!(
        before.is_empty(),
        "claim_due returned {} notifications not due yet",
        before.len()
    );
    let now = Utc::now() + chrono::Duration::seconds(1);
    let first = store.claim_due("a", now, lease, 2).await.unwrap();
    assert_eq!(
        first.len(),
        2,
        "claim_due with limit 2 returned {} notifications",
        first.len()
    );
    let rest = store.claim_due("b", now, lease, 10).await.unwrap();
    assert_eq!(rest.len(), 3, "the other three were not claimable");
    let claimed: Vec<Uuid> = first
        .iter()
        .chain(&rest)
        .filter_map(|n| n.order_id())
        .collect();
    assert_eq!(
        &claimed[..2],
        &ids[..2],
        "claim_due must hand out the oldest due notifications first"
    );
}

/// A store that takes a dispatcher's [`Handoff`](crate::handoff::Handoff) writes each new
/// confirmation leased to it in the order's own step and hands it over: no claim takes it
/// meanwhile, its send is recorded (and confirms the order), and a cancel still stops it. With
/// no free send slot, or once the dispatcher is gone, confirmations are written due, for claims.
///
/// Not part of [`store_conformance!`](crate::store_conformance): call it for a store whose
/// [`NotificationStore::accept_handoff`] takes the offer.
pub async fn handoff_leases_confirmations_to_the_local_dispatcher(store: TestStore) {
    use crate::handoff::Handoff;
    let u = user(&store, "handed@example.com").await;
    let p = product(&store, "handed", 10).await;
    let lease = Duration::from_secs(60);
    let slots = Arc::new(tokio::sync::Semaphore::new(1));
    let (handoff, mut handed) = Handoff::new("local", lease, slots.clone());
    assert!(
        store.accept_handoff(handoff),
        "the store refused the handoff"
    );

    // Handed over leased, exactly as placed; nobody else can claim it.
    let new = order(&u, &p, 1);
    let placed = store.place_order(&new).await.unwrap().order;
    let first = handed.try_recv().expect("the confirmation was handed over");
    let n = first.notification.clone();
    assert_eq!((n.id, n.order_id()), (new.notification_id, Some(placed.id)));
    assert_eq!(n.lease_owner.as_deref(), Some("local"));
    assert_eq!(n.lease_until, Some(new.now + chrono::Duration::seconds(60)));
    assert_eq!((n.attempts, n.status), (1, NotificationStatus::Pending));
    let stored = store
        .notification_for_order(placed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (stored.lease_owner.as_deref(), stored.attempts),
        (Some("local"), 1)
    );
    assert!(
        store
            .claim_due("other", t0(), lease, 10)
            .await
            .unwrap()
            .is_empty(),
        "a confirmation leased at placement was claimed by another dispatcher"
    );
    // Busy: the only slot is held by the first send; the next order is left to claims.
    let busy = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    assert!(
        handed.try_recv().is_err(),
        "handed over without a free slot"
    );
    let claimed = store.claim_due("other", t0(), lease, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|n| n.order_id()).collect::<Vec<_>>(),
        [Some(busy.id)]
    );
    store.mark_sent(claimed[0].id, "other", t0()).await.unwrap();

    store.mark_sent(n.id, "local", t0()).await.unwrap();
    drop(first);
    let sent = store
        .notification_for_order(placed.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sent.status, NotificationStatus::Sent);
    assert_eq!(sent.lease_owner, None);
    let o = store.get_order(placed.id).await.unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Confirmed);

    // Cancelled after the handover: the send cannot be recorded, the order stays cancelled.
    let cancelled = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let second = handed
        .try_recv()
        .expect("handed over once the slot was free");
    store
        .cancel_order(cancelled.id, SYSTEM_ACTOR, t0())
        .await
        .unwrap();
    let result = store.mark_sent(second.notification.id, "local", t0()).await;
    assert!(
        matches!(result, Err(Error::LeaseLost(_))),
        "mark_sent after a cancel must be LeaseLost, got {result:?}"
    );
    let o = store.get_order(cancelled.id).await.unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Cancelled);
    drop(second);

    // A failed send of a handed confirmation is retried like any other.
    let retried = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let third = handed.try_recv().expect("handed over");
    let again = t0();
    store
        .mark_failed(third.notification.id, "local", "451 try later", Some(again))
        .await
        .unwrap();
    drop(third);
    let claimed = store.claim_due("other", again, lease, 10).await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(
        (claimed[0].order_id(), claimed[0].attempts),
        (Some(retried.id), 2)
    );
    store
        .mark_sent(claimed[0].id, "other", again)
        .await
        .unwrap();

    // The dispatcher is gone: the next confirmation is due at once, for any claimer.
    drop(handed);
    let orphan = store.place_order(&order(&u, &p, 1)).await.unwrap().order;
    let claimed = store.claim_due("other", t0(), lease, 10).await.unwrap();
    assert_eq!(
        claimed.iter().map(|n| n.order_id()).collect::<Vec<_>>(),
        [Some(orphan.id)]
    );
    assert_eq!(slots.available_permits(), 1, "every slot was given back");
}
