//! How to test code that uses the ports with the mockall mocks (feature `mock`).

use std::sync::Arc;

use inventory_core::*;
use mockall::predicate::eq;

#[tokio::test]
async fn login_with_a_mocked_user_store() {
    let mut users = MockUserStore::new();
    users
        .expect_find_user_by_email()
        .with(eq(Email::parse("ghost@example.com").unwrap()))
        .times(1)
        .returning(|_| Ok(None));
    let auth = Auth::new(
        Arc::new(users),
        AuthConfig::new("mock-secret-of-at-least-32-bytes!!")
            .unwrap()
            .with_hash_params(HashParams::INSECURE_FAST),
    )
    .unwrap();
    let err = auth
        .login("ghost@example.com", "whatever-password")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
}

#[tokio::test]
async fn a_store_outage_surfaces_as_unavailable() {
    let mut orders = MockOrderStore::new();
    orders
        .expect_place_order()
        .times(1)
        .returning(|_| Err(Error::unavailable("connection refused")));
    let service = Orders::new(Arc::new(orders), Arc::new(MockNotificationStore::new()));
    let who = Principal {
        user_id: uuid::Uuid::now_v7(),
        email: Email::parse("ann@example.com").unwrap(),
        role: Role::Customer,
        email_verified: true,
    };
    let req = PlaceOrderRequest::one("product-1", None);
    let err = service.place(&who, req).await.unwrap_err();
    assert_eq!(err.kind().http_status(), 503);
    assert!(err.is_retryable());
}

#[tokio::test]
async fn the_dispatcher_with_a_mocked_mailer() {
    let store = Arc::new(MemoryStore::new());
    let p = NewProduct::new(ProductId::new("p").unwrap(), "Thing", 1).unwrap();
    store.create_product(&p, chrono::Utc::now()).await.unwrap();
    let user = uuid::Uuid::now_v7();
    let buyer = Email::parse("ann@example.com").unwrap();
    store
        .place_order(&NewOrder::new(
            user,
            buyer,
            Lines::one(p.id.clone(), Quantity::ONE),
        ))
        .await
        .unwrap();

    let mut mailer = MockMailer::new();
    mailer
        .expect_send()
        .withf(|email| email.to.as_str() == "ann@example.com" && email.subject.contains("Thing"))
        .times(1)
        .returning(|_| Ok(()));
    let report = Dispatcher::new(store, Arc::new(mailer), DispatcherConfig::default())
        .run_once()
        .await
        .unwrap();
    assert_eq!(report.sent, 1);
}

/// A shutdown that arrives while the dispatcher waits for a claim that finds nothing ends
/// the dispatcher cleanly. (Its wait then had no branch left to wait on, and the task
/// panicked: seen when a server was stopped under load.)
#[tokio::test]
async fn shutdown_during_an_empty_claim_ends_the_dispatcher() {
    let shutdown = CancellationToken::new();
    let mut store = MockNotificationStore::new();
    store.expect_subscribe().returning(|| watch::channel(0).1);
    store.expect_accept_handoff().returning(|_| false);
    let during = shutdown.clone();
    store
        .expect_claim_due()
        .times(1)
        .returning(move |_, _, _, _| {
            during.cancel();
            Ok(Vec::new())
        });
    let dispatcher = Dispatcher::new(
        Arc::new(store),
        Arc::new(RecordingMailer::new()),
        DispatcherConfig::default(),
    );
    let run = tokio::spawn(dispatcher.run(shutdown));
    tokio::time::timeout(std::time::Duration::from_secs(10), run)
        .await
        .expect("the dispatcher stops")
        .expect("the dispatcher task must not panic");
}
