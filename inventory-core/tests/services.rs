//! Tests of the services: auth, ordering rules, and the dispatcher's retry behaviour.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use inventory_core::*;
use jsonwebtoken::{EncodingKey, Header};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "test-secret-that-is-at-least-32-bytes-long";

fn store() -> Arc<MemoryStore> {
    Arc::new(MemoryStore::new())
}

fn auth(store: Arc<MemoryStore>) -> Auth {
    let admin = Email::parse("root@example.com").unwrap();
    Auth::new(
        store,
        AuthConfig::new(SECRET)
            .unwrap()
            .with_hash_params(HashParams::INSECURE_FAST)
            .with_admins([admin]),
    )
    .unwrap()
}

async fn seed(store: &MemoryStore, id: &str, quantity: u64) {
    let p = NewProduct::new(ProductId::new(id).unwrap(), "Demo Product", quantity).unwrap();
    store.create_product(&p, Utc::now()).await.unwrap();
}

fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    r.expect_err("must fail").kind()
}

#[tokio::test]
async fn register_login_and_conflict_keeps_the_password() {
    let auth = auth(store());
    let (user, token) = auth
        .register(" Ann@Example.com ", "first-password")
        .await
        .unwrap();
    assert_eq!(user.email.as_str(), "ann@example.com");
    assert!(user.password_hash.starts_with("$argon2id$"));
    assert_eq!(auth.verify(&token.access_token).unwrap().user_id, user.id);

    let again = auth.register("ann@example.com", "second-password").await;
    assert_eq!(kind(again), ErrorKind::AlreadyExists);
    auth.login("ANN@example.com", "first-password")
        .await
        .expect("old password still works");
    assert_eq!(
        kind(auth.login("ann@example.com", "second-password").await),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        kind(auth.login("nobody@example.com", "first-password").await),
        ErrorKind::Unauthorized
    );
    assert_eq!(
        kind(auth.login("not-an-email", "first-password").await),
        ErrorKind::Unauthorized
    );
}

#[tokio::test]
async fn registration_validates_input() {
    let auth = auth(store());
    assert_eq!(
        kind(auth.register("bad", "long-enough").await),
        ErrorKind::InvalidInput
    );
    assert_eq!(
        kind(auth.register("a@example.com", "short").await),
        ErrorKind::InvalidInput
    );
    let huge = "x".repeat(1025);
    assert_eq!(
        kind(auth.register("a@example.com", &huge).await),
        ErrorKind::InvalidInput
    );
    auth.register("a@example.com", &"x".repeat(1024))
        .await
        .expect("1024 bytes is the limit");
}

/// Verifies a user's address the way a user does: with the code of its verification email.
async fn verified(auth: &Auth, user: &User) {
    let code = auth.verification_code(user).unwrap();
    assert!(auth.verify_email(&code).await.unwrap().email_verified);
}

#[tokio::test]
async fn admin_emails_get_the_admin_role_once_verified() {
    let store = store();
    let auth = auth(store.clone());
    // Whoever registers an admin address first gets nothing until they read its mail.
    let (root, token) = auth
        .register("root@example.com", "admin-password")
        .await
        .unwrap();
    assert!(!auth.verify(&token.access_token).unwrap().is_admin());
    assert!(
        !auth
            .authenticate(&token.access_token)
            .await
            .unwrap()
            .is_admin()
    );
    verified(&auth, &root).await;
    let (_, token) = auth
        .login("root@example.com", "admin-password")
        .await
        .unwrap();
    assert!(auth.verify(&token.access_token).unwrap().is_admin());
    let (_, token) = auth
        .register("user@example.com", "user-password")
        .await
        .unwrap();
    assert!(!auth.verify(&token.access_token).unwrap().is_admin());
}

#[tokio::test]
async fn a_hash_made_by_the_original_python_service_verifies() {
    let hasher = PasswordHasher::new(HashParams::default(), 2).unwrap();
    let passlib = "$argon2id$v=19$m=65536,t=3,p=4$eC8FwBijNMZ4zxnDmBOiVA$JChjeP4Qhxy4cNqxzL2eEYolEkJWZGf6OBf9QTSGJQo";
    assert!(hasher.verify("MySecurePass123", passlib).await.unwrap());
    assert!(!hasher.verify("MySecurePass124", passlib).await.unwrap());
    // A stored hash that does not parse is broken data, not a wrong password (issue 29: a
    // 401 sent operators looking for a password problem): an error, answered 500 and logged.
    let broken = hasher.verify("MySecurePass123", "not a hash").await;
    assert_eq!(broken.unwrap_err().kind(), ErrorKind::Other);
}

#[test]
fn default_hash_params_are_owasp() {
    assert_eq!(
        HashParams::default(),
        HashParams {
            memory_kib: 19456,
            iterations: 2,
            parallelism: 1
        }
    );
}

fn sign<T: serde::Serialize>(header: Header, claims: &T, secret: &str) -> String {
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.as_bytes()).unwrap(),
    )
    .unwrap()
}

#[tokio::test]
async fn bad_tokens_are_rejected() {
    let store = store();
    let auth = auth(store.clone());
    let (user, token) = auth
        .register("tok@example.com", "token-password")
        .await
        .unwrap();
    let now = Utc::now().timestamp();
    let claims = |exp: i64| Claims {
        sub: user.id.to_string(),
        email: user.email.to_string(),
        role: Role::Admin,
        iat: now,
        exp,
        ver: 0,
    };
    let hs256 = Header::new(jsonwebtoken::Algorithm::HS256);
    // Sanity: a well-formed token we sign ourselves is accepted, so the rejections below are
    // about the one thing each changes.
    assert!(
        auth.verify(&sign(hs256.clone(), &claims(now + 60), SECRET))
            .is_ok()
    );

    let expired = sign(hs256.clone(), &claims(now - 3600), SECRET);
    let other_key = sign(
        hs256.clone(),
        &claims(now + 60),
        "another-secret-of-at-least-32-bytes!!",
    );
    let hs384 = sign(
        Header::new(jsonwebtoken::Algorithm::HS384),
        &claims(now + 60),
        SECRET,
    );
    #[derive(serde::Serialize)]
    struct NoExp {
        sub: String,
        email: String,
        role: Role,
        iat: i64,
    }
    let no_exp = sign(
        hs256,
        &NoExp {
            sub: user.id.to_string(),
            email: user.email.to_string(),
            role: Role::Admin,
            iat: now,
        },
        SECRET,
    );
    let parts: Vec<&str> = token.access_token.split('.').collect();
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged_payload = b64.encode(serde_json::to_vec(&claims(now + 60)).unwrap());
    let tampered = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
    let none_header = b64.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{none_header}.{forged_payload}.");

    for (name, bad) in [
        ("expired", expired),
        ("other key", other_key),
        ("HS384", hs384),
        ("no exp", no_exp),
        ("tampered payload", tampered),
        ("alg none", alg_none),
        ("garbage", "not.a.token".to_owned()),
    ] {
        let err = auth.verify(&bad).expect_err(name);
        assert_eq!(err.kind(), ErrorKind::Unauthorized, "{name}");
    }
}

/// A registered user with a verified address, as the API sees them.
async fn principal(auth: &Auth, email: &str) -> Principal {
    let (user, token) = auth.register(email, "some-password").await.unwrap();
    verified(auth, &user).await;
    auth.authenticate(&token.access_token).await.unwrap()
}

#[tokio::test]
async fn orders_enforce_buyer_and_visibility_rules() {
    let store = store();
    seed(&store, "product-1", 5).await;
    let auth = auth(store.clone());
    let orders = Orders::new(store.clone(), store.clone());
    let ann = principal(&auth, "ann@example.com").await;
    let bob = principal(&auth, "bob@example.com").await;
    let root = principal(&auth, "root@example.com").await;
    let req = |buyer: Option<&str>| PlaceOrderRequest {
        buyer_email: buyer.map(str::to_owned),
        ..PlaceOrderRequest::one("product-1", None)
    };

    let err = orders.place(&ann, req(Some("bob@example.com"))).await;
    assert_eq!(kind(err), ErrorKind::Forbidden);
    let placed = orders
        .place(&ann, req(Some("ANN@example.com")))
        .await
        .unwrap();
    assert_eq!(placed.order.buyer_email.as_str(), "ann@example.com");
    assert_eq!(placed.order.lines.first().quantity, Quantity::ONE);
    orders
        .place(&root, req(Some("bob@example.com")))
        .await
        .expect("admin may order for others");

    assert_eq!(
        kind(orders.get(&bob, placed.order.id).await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(orders.cancel(&bob, placed.order.id).await),
        ErrorKind::NotFound
    );
    let view = orders.get(&ann, placed.order.id).await.unwrap();
    assert_eq!(
        view.notification.unwrap().status,
        NotificationStatus::Pending
    );
    orders
        .get(&root, placed.order.id)
        .await
        .expect("admin sees every order");
    assert_eq!(
        kind(orders.list(&ann, ListScope::All, Page::default()).await),
        ErrorKind::Forbidden
    );
    assert_eq!(
        orders
            .list(&root, ListScope::All, Page::default())
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        orders
            .list(&ann, ListScope::Mine, Page::default())
            .await
            .unwrap()
            .len(),
        1
    );

    for (quantity, expected) in [
        (0, ErrorKind::InvalidInput),
        (1_000_001, ErrorKind::InvalidInput),
        (4, ErrorKind::OutOfStock),
    ] {
        let r = orders
            .place(&ann, PlaceOrderRequest::one("product-1", Some(quantity)))
            .await;
        assert_eq!(kind(r), expected, "quantity {quantity}");
    }
    let missing = PlaceOrderRequest::one("../etc/passwd", None);
    assert_eq!(kind(orders.place(&ann, missing).await), ErrorKind::NotFound);
    let cancelled = orders.cancel(&ann, placed.order.id).await.unwrap();
    assert_eq!(cancelled.status, OrderStatus::Cancelled);
    assert_eq!(
        store
            .get_product(&ProductId::new("product-1").unwrap())
            .await
            .unwrap()
            .unwrap()
            .quantity,
        4
    );
}

fn fast_retries(max_attempts: u32) -> DispatcherConfig {
    DispatcherConfig {
        max_attempts,
        retry_base: Duration::ZERO,
        retry_max: Duration::ZERO,
        ..DispatcherConfig::default()
    }
}

async fn one_order(store: &Arc<MemoryStore>) -> Order {
    seed(store, "p", 10).await;
    let auth = auth(store.clone());
    let who = principal(&auth, "buyer@example.com").await;
    let orders = Orders::new(store.clone(), store.clone());
    let req = PlaceOrderRequest::one("p", Some(2));
    orders.place(&who, req).await.unwrap().order
}

#[tokio::test]
async fn transient_failures_are_retried_until_delivered() {
    let store = store();
    let order = one_order(&store).await;
    let mailer = Arc::new(RecordingMailer::failing_first(2));
    let dispatcher = Dispatcher::new(store.clone(), mailer.clone(), fast_retries(5));
    let reports = [
        dispatcher.run_once().await.unwrap(),
        dispatcher.run_once().await.unwrap(),
        dispatcher.run_once().await.unwrap(),
    ];
    assert_eq!(
        reports.map(|r| (r.retried, r.sent)),
        [(1, 0), (1, 0), (0, 1)]
    );
    assert_eq!(mailer.attempts(), 3);
    let sent = mailer.deliveries();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].to.as_str(), "buyer@example.com");
    assert!(sent[0].text.contains("Quantity: 2") && sent[0].text.contains(&order.id.to_string()));
    let n = store
        .notification_for_order(order.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((n.status, n.attempts), (NotificationStatus::Sent, 3));
    assert_eq!(
        store.get_order(order.id).await.unwrap().unwrap().status,
        OrderStatus::Confirmed
    );
    assert_eq!(
        dispatcher.run_once().await.unwrap().claimed,
        0,
        "nothing left"
    );
}

#[tokio::test]
async fn gives_up_after_the_last_attempt_and_keeps_the_error() {
    let store = store();
    let order = one_order(&store).await;
    let mailer = Arc::new(RecordingMailer::failing_first(100));
    let dispatcher = Dispatcher::new(store.clone(), mailer.clone(), fast_retries(3));
    let mut outcomes = Vec::new();
    for _ in 0..4 {
        outcomes.push(dispatcher.run_once().await.unwrap().failed);
    }
    assert_eq!(outcomes, [0, 0, 1, 0]);
    assert_eq!(mailer.attempts(), 3);
    let n = store
        .notification_for_order(order.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.status, NotificationStatus::Failed);
    assert!(n.last_error.unwrap().contains("planned failure"));
    assert_eq!(
        store.get_order(order.id).await.unwrap().unwrap().status,
        OrderStatus::Pending
    );
}

#[tokio::test]
async fn permanent_rejection_is_not_retried() {
    let store = store();
    let order = one_order(&store).await;
    let mailer = Arc::new(RecordingMailer::failing_with(vec![MailError::Permanent(
        "550 5.1.1 no such user".into(),
    )]));
    let dispatcher = Dispatcher::new(store.clone(), mailer.clone(), fast_retries(5));
    assert_eq!(dispatcher.run_once().await.unwrap().failed, 1);
    assert_eq!(dispatcher.run_once().await.unwrap().claimed, 0);
    assert_eq!(mailer.attempts(), 1);
    let n = store
        .notification_for_order(order.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.status, NotificationStatus::Failed);
    assert!(n.last_error.unwrap().contains("550 5.1.1"));
}

#[test]
fn retry_delays_grow_and_stay_bounded() {
    let config = DispatcherConfig {
        retry_base: Duration::from_secs(1),
        retry_max: Duration::from_secs(60),
        ..DispatcherConfig::default()
    };
    for attempt in 1..20 {
        let d = config.retry_delay(attempt);
        let floor = Duration::from_secs(1 << (attempt - 1).min(5)).min(config.retry_max);
        assert!(d >= floor, "attempt {attempt}: {d:?} < {floor:?}");
        assert!(
            d <= config.retry_max,
            "attempt {attempt}: {d:?} exceeds the maximum"
        );
    }
}

/// A dispatcher running on `store` whose sweep would take an hour, after it has delivered one
/// order (returned): it has started, offered its handoff, and is idle, so what it delivers next
/// came through the signal or the handoff.
async fn idle_dispatcher(
    store: &Arc<MemoryStore>,
) -> (
    Arc<RecordingMailer>,
    CancellationToken,
    tokio::task::JoinHandle<()>,
    Order,
) {
    let mailer = Arc::new(RecordingMailer::new());
    let config = DispatcherConfig {
        sweep_interval: Duration::from_secs(3600),
        ..DispatcherConfig::default()
    };
    let shutdown = CancellationToken::new();
    let handle = Dispatcher::new(store.clone(), mailer.clone(), config).spawn(shutdown.clone());
    let first = one_order(store).await;
    tokio::time::timeout(Duration::from_secs(10), mailer.wait_for(1))
        .await
        .expect("first order delivered");
    (mailer, shutdown, handle, first)
}

#[tokio::test]
async fn the_running_dispatcher_is_woken_by_the_store_signal() {
    let store = store();
    // A verification email is not handed over like a confirmation: it is enqueued.
    let (mailer, shutdown, handle, first) = idle_dispatcher(&store).await;
    let buyer = store.get_user(first.user_id).await.unwrap().unwrap();
    let verification = Notification::email_verification(&buyer, "a-code".into(), Utc::now());
    store.enqueue(&verification).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), mailer.wait_for(2))
        .await
        .expect("woken by the signal");
    shutdown.cancel();
    handle.await.unwrap();
    assert_eq!(
        mailer.deliveries()[1].message_id,
        format!("{}@inventory-kit", verification.id)
    );
}

/// An order placed while the dispatcher runs is handed to it, leased at placement: it is sent
/// without a claim and without waking anyone through the outbox signal.
#[tokio::test]
async fn the_running_dispatcher_takes_confirmations_handed_over_at_placement() {
    let store = store();
    let (mailer, shutdown, handle, first) = idle_dispatcher(&store).await;
    let mut signal = store.subscribe();
    signal.borrow_and_update();
    let buyer = Email::parse("buyer@example.com").unwrap();
    let second = NewOrder::new(first.user_id, buyer, first.lines.clone());
    store.place_order(&second).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), mailer.wait_for(2))
        .await
        .expect("the handed confirmation is sent");
    assert!(
        !signal.has_changed().unwrap(),
        "the order went through the outbox signal, not the handoff"
    );
    shutdown.cancel();
    handle.await.unwrap();
    let n = store
        .notification_for_order(second.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((n.status, n.attempts), (NotificationStatus::Sent, 1));
    let o = store.get_order(second.id).await.unwrap().unwrap();
    assert_eq!(o.status, OrderStatus::Confirmed);
    // Stopped: the next order is left due for whichever dispatcher claims next.
    let third = NewOrder::new(
        first.user_id,
        Email::parse("buyer@example.com").unwrap(),
        first.lines.clone(),
    );
    store.place_order(&third).await.unwrap();
    let due = store
        .claim_due("next", Utc::now(), Duration::from_secs(10), 10)
        .await
        .unwrap();
    assert_eq!(
        due.iter().map(|n| n.id).collect::<Vec<_>>(),
        [third.notification_id]
    );
}

/// A mailer that blocks inside `send` until released.
struct GateMailer {
    entered: tokio::sync::Notify,
    release: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl Mailer for GateMailer {
    async fn send(&self, _: &OutgoingEmail) -> std::result::Result<(), MailError> {
        self.entered.notify_one();
        let _permit = self.release.acquire().await.unwrap();
        Ok(())
    }
}

#[tokio::test]
async fn graceful_stop_finishes_the_send_in_flight() {
    let store = store();
    let order = one_order(&store).await;
    let mailer = Arc::new(GateMailer {
        entered: Default::default(),
        release: tokio::sync::Semaphore::new(0),
    });
    let shutdown = CancellationToken::new();
    let handle = Dispatcher::new(store.clone(), mailer.clone(), DispatcherConfig::default())
        .spawn(shutdown.clone());
    mailer.entered.notified().await;
    shutdown.cancel();
    assert!(!handle.is_finished());
    mailer.release.add_permits(1);
    handle.await.unwrap();
    let n = store
        .notification_for_order(order.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        n.status,
        NotificationStatus::Sent,
        "the in-flight send was recorded before stopping"
    );
}

#[tokio::test]
async fn file_mailer_writes_one_eml_per_notification() {
    let dir = tempfile::tempdir().unwrap();
    let store = store();
    let order = one_order(&store).await;
    let mailer = Arc::new(FileMailer::new(dir.path(), mail::default_from()).unwrap());
    Dispatcher::new(store.clone(), mailer.clone(), DispatcherConfig::default())
        .run_once()
        .await
        .unwrap();
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1);
    let eml = std::fs::read_to_string(&files[0]).unwrap();
    assert!(eml.contains("To: buyer@example.com"), "{eml}");
    assert!(eml.contains("Subject: Order confirmed: Demo Product"));
    assert!(eml.contains("Message-ID: <"));
    assert!(eml.contains("multipart/alternative"));
    assert!(eml.contains(&order.id.to_string()));
}

#[test]
fn html_part_is_escaped() {
    let n = notification_named("<script>alert(1)</script> & Co");
    let email = render_confirmation(&n);
    assert!(!email.html.contains("<script>") && !email.html.contains("</script>"));
    assert!(
        email.html.contains("&lt;script&gt;alert(1)&lt;") && email.html.contains("&amp; Co"),
        "{}",
        email.html
    );
    assert!(
        email.text.contains("<script>alert(1)</script> & Co"),
        "text part is verbatim"
    );
}

#[test]
fn control_characters_never_reach_a_message() {
    let id = ProductId::new("p").unwrap();
    for bad in [
        "Tea\0Cups",
        "Tea\r\nBcc: x@evil.example",
        "Tea\u{1b}[31m",
        "Tea\u{7f}",
    ] {
        let err = NewProduct::new(id.clone(), bad, 1).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}");
    }
    // A name stored before the rule (or by another writer) is cleaned when rendered, and the
    // MIME encoding is chosen from the content.
    let n = notification_named("Tea\0Cups\r\nX");
    let email = render_confirmation(&n);
    for part in [&email.subject, &email.text, &email.html] {
        assert!(!part.contains('\0') && !part.contains("Cups\r"), "{part:?}");
    }
    let from = inventory_core::mail::default_from();
    let raw = String::from_utf8(to_mime(&email, &from).unwrap().formatted()).unwrap();
    assert!(!raw.contains('\0'), "a NUL byte in the message");
    assert!(
        !raw.contains("Content-Transfer-Encoding: 7bit"),
        "non-ASCII content must not be declared 7bit:\n{raw}"
    );
}

/// A mailer that holds messages to one recipient until released; others go through.
struct StuckFor {
    recipient: Email,
    release: tokio::sync::Semaphore,
    inner: RecordingMailer,
}

#[async_trait::async_trait]
impl Mailer for StuckFor {
    async fn send(&self, email: &OutgoingEmail) -> std::result::Result<(), MailError> {
        if email.to == self.recipient {
            let _permit = self.release.acquire().await.expect("open");
        }
        self.inner.send(email).await
    }
}

async fn orders_for(store: &Arc<MemoryStore>, buyers: &[&str]) -> Vec<Order> {
    seed(store, "p", 1000).await;
    let mut out = Vec::new();
    for b in buyers {
        let email = Email::parse(b).unwrap();
        let new = NewOrder::new(
            uuid::Uuid::now_v7(),
            email,
            Lines::one(ProductId::new("p").unwrap(), Quantity::ONE),
        );
        out.push(store.place_order(&new).await.unwrap().order);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_stuck_message_never_holds_back_the_others() {
    let store = store();
    let mailer = Arc::new(StuckFor {
        recipient: Email::parse("stuck@example.com").unwrap(),
        release: tokio::sync::Semaphore::new(0),
        inner: RecordingMailer::new(),
    });
    let mut buyers = vec!["stuck@example.com"];
    let others: Vec<String> = (0..20).map(|i| format!("b{i}@example.com")).collect();
    buyers.extend(others.iter().map(String::as_str));
    orders_for(&store, &buyers[..1]).await;
    let config = DispatcherConfig {
        concurrency: 2,
        batch_size: 64,
        sweep_interval: Duration::from_secs(3600),
        ..DispatcherConfig::default()
    };
    let shutdown = CancellationToken::new();
    let handle = Dispatcher::new(store.clone(), mailer.clone(), config).spawn(shutdown.clone());
    // The stuck message takes one of the two slots; the others pass through the other.
    for b in &buyers[1..] {
        let new = NewOrder::new(
            uuid::Uuid::now_v7(),
            Email::parse(b).unwrap(),
            Lines::one(ProductId::new("p").unwrap(), Quantity::ONE),
        );
        store.place_order(&new).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(10), mailer.inner.wait_for(20))
        .await
        .expect("the other 20 are delivered while one send is stuck");
    assert!(
        mailer
            .inner
            .deliveries()
            .iter()
            .all(|e| e.to.as_str() != "stuck@example.com")
    );
    mailer.release.add_permits(1);
    tokio::time::timeout(Duration::from_secs(10), mailer.inner.wait_for(21))
        .await
        .expect("the stuck one is delivered once released");
    shutdown.cancel();
    handle.await.unwrap();
    assert_eq!(mailer.inner.deliveries().len(), 21, "none twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_send_keeps_its_short_lease_by_heartbeat() {
    let store = store();
    let mailer = Arc::new(StuckFor {
        recipient: Email::parse("slow@example.com").unwrap(),
        release: tokio::sync::Semaphore::new(0),
        inner: RecordingMailer::new(),
    });
    let order = orders_for(&store, &["slow@example.com"]).await.remove(0);
    let lease = Duration::from_millis(300);
    let config = DispatcherConfig {
        lease,
        sweep_interval: Duration::from_millis(50),
        ..DispatcherConfig::default()
    };
    let shutdown = CancellationToken::new();
    let handle = Dispatcher::new(store.clone(), mailer.clone(), config).spawn(shutdown.clone());
    // Wait until the send is in progress (claimed by the running dispatcher).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let n = store
            .notification_for_order(order.id)
            .await
            .unwrap()
            .unwrap();
        if n.lease_owner.is_some() {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never claimed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // For five lease lengths another dispatcher finds nothing to claim: the lease is renewed.
    let until = tokio::time::Instant::now() + lease * 5;
    while tokio::time::Instant::now() < until {
        let stolen = store
            .claim_due("intruder", Utc::now(), lease, 10)
            .await
            .unwrap();
        assert!(stolen.is_empty(), "the lease of a send in progress expired");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    mailer.release.add_permits(1);
    tokio::time::timeout(Duration::from_secs(10), mailer.inner.wait_for(1))
        .await
        .unwrap();
    shutdown.cancel();
    handle.await.unwrap();
    let n = store
        .notification_for_order(order.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(n.status, NotificationStatus::Sent);
    assert_eq!(n.attempts, 1);
}

#[tokio::test]
async fn tokens_end_with_their_user_and_on_revocation() {
    let store = store();
    let auth = auth(store.clone());
    let (user, token) = auth
        .register("rev@example.com", "revocable-password")
        .await
        .unwrap();
    assert!(auth.authenticate(&token.access_token).await.is_ok());

    // Revoked: the earlier token ends, a new login works.
    store.revoke_tokens(&user.email).await.unwrap();
    let err = auth.authenticate(&token.access_token).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    let (_, fresh) = auth
        .login("rev@example.com", "revocable-password")
        .await
        .unwrap();
    assert!(auth.authenticate(&fresh.access_token).await.is_ok());

    // A role change ends earlier tokens too.
    store.set_role(&user.email, Role::Admin).await.unwrap();
    assert_eq!(
        auth.authenticate(&fresh.access_token)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthorized
    );

    // A well-signed token of a user who does not exist.
    let ghost = User {
        id: uuid::Uuid::now_v7(),
        email: Email::parse("ghost@example.com").unwrap(),
        password_hash: String::new(),
        role: Role::Customer,
        created_at: Utc::now(),
        token_version: 0,
        email_verified: false,
    };
    let token = auth.issue(&ghost).unwrap();
    assert!(
        auth.verify(&token.access_token).is_ok(),
        "the signature is fine"
    );
    assert_eq!(
        auth.authenticate(&token.access_token)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Unauthorized
    );
}

#[tokio::test]
async fn admin_rights_follow_admin_emails_and_are_not_stored() {
    let store = store();
    // root@example.com is in ADMIN_EMAILS for `auth`.
    let (user, token) = auth(store.clone())
        .register("root@example.com", "root-password-1")
        .await
        .unwrap();
    verified(&auth(store.clone()), &user).await;
    assert_eq!(user.role, Role::Customer, "the admin role is not stored");
    assert!(
        auth(store.clone())
            .authenticate(&token.access_token)
            .await
            .unwrap()
            .is_admin()
    );
    // The same store, with root@ no longer in ADMIN_EMAILS: no longer admin, even with the
    // token issued while it was.
    let without = Auth::new(
        store.clone(),
        AuthConfig::new(SECRET)
            .unwrap()
            .with_hash_params(HashParams::INSECURE_FAST),
    )
    .unwrap();
    let principal = without.authenticate(&token.access_token).await.unwrap();
    assert!(
        !principal.is_admin(),
        "removal from ADMIN_EMAILS revokes at once"
    );
}

#[tokio::test]
async fn verification_codes_go_through_the_outbox_and_prove_the_address() {
    let store = store();
    let auth = auth(store.clone());
    let (user, access) = auth
        .register("vera@example.com", "vera-password")
        .await
        .unwrap();
    assert!(!user.email_verified);
    auth.request_verification(store.as_ref(), &user)
        .await
        .unwrap();
    // Sent by the dispatcher, like a confirmation; no order is touched.
    let mailer = Arc::new(RecordingMailer::new());
    let report = Dispatcher::new(store.clone(), mailer.clone(), DispatcherConfig::default())
        .run_once()
        .await
        .unwrap();
    assert_eq!(report.sent, 1);
    let email = &mailer.deliveries()[0];
    assert_eq!(email.to.as_str(), "vera@example.com");
    assert_eq!(email.subject, "Confirm your email address");
    let code = email
        .text
        .lines()
        .map(str::trim)
        .find(|l| l.matches('.').count() == 2 && l.len() > 40)
        .expect("the code is in the text")
        .to_owned();
    assert!(
        !format!(
            "{:?}",
            store
                .list_notifications(NotificationStatus::Sent, Page::new(0, 10).unwrap())
                .await
                .unwrap()
        )
        .contains(&code),
        "Debug hides the code"
    );

    // Neither kind of token passes for the other.
    assert_eq!(
        kind(auth.verify_email(&access.access_token).await),
        ErrorKind::InvalidInput
    );
    assert_eq!(kind(auth.verify(&code)), ErrorKind::Unauthorized);
    // A forged or expired code is refused.
    let mut forged = code.clone();
    forged.pop();
    assert_eq!(
        kind(auth.verify_email(&forged).await),
        ErrorKind::InvalidInput
    );
    let expired = jsonwebtoken::encode(
        &Header::default(),
        &serde_json::json!({"sub": user.id.to_string(), "email": "vera@example.com",
            "purpose": "verify_email", "iat": 1, "exp": 2}),
        &EncodingKey::from_secret(SECRET.as_bytes()).unwrap(),
    )
    .unwrap();
    assert_eq!(
        kind(auth.verify_email(&expired).await),
        ErrorKind::InvalidInput
    );

    let verified = auth.verify_email(&code).await.unwrap();
    assert!(verified.email_verified);
    assert_eq!(
        verified.token_version, user.token_version,
        "sessions survive"
    );
    assert!(
        auth.authenticate(&access.access_token)
            .await
            .unwrap()
            .email_verified
    );
    // Order confirmations are never enqueued on their own.
    let order = NewOrder::new(
        user.id,
        user.email.clone(),
        Lines::one(ProductId::new("p").unwrap(), Quantity::ONE),
    );
    assert_eq!(
        Standalone::new(order.notification(|_| "P".into()))
            .unwrap_err()
            .kind(),
        ErrorKind::InvalidInput
    );
}

#[tokio::test]
async fn require_verified_email_gates_ordering() {
    let store = store();
    seed(&store, "product-1", 5).await;
    let auth = auth(store.clone());
    let orders = Orders::new(store.clone(), store.clone()).require_verified_email(true);
    let (user, token) = auth
        .register("gate@example.com", "gate-password")
        .await
        .unwrap();
    let who = auth.authenticate(&token.access_token).await.unwrap();
    let req = PlaceOrderRequest::one("product-1", None);
    assert_eq!(
        kind(orders.place(&who, req.clone()).await),
        ErrorKind::Forbidden
    );
    verified(&auth, &user).await;
    let who = auth.authenticate(&token.access_token).await.unwrap();
    orders
        .place(&who, req)
        .await
        .expect("verified buyers order");
}

#[tokio::test]
async fn debug_output_never_shows_a_secret() {
    let store = store();
    let auth = auth(store.clone());
    let (user, token) = auth
        .register("secret@example.com", "a-secret-password")
        .await
        .unwrap();
    let config = AuthConfig::new(SECRET).unwrap();
    let record = inventory_core::transfer::Record::User {
        id: user.id,
        email: user.email.clone(),
        password_hash: user.password_hash.clone(),
        role: user.role,
        created_at: user.created_at,
        token_version: 0,
        email_verified: false,
    };
    let password = Password::new("a-secret-password").unwrap();
    let printed = [
        format!("{token:?}"),
        format!("{user:?}"),
        format!("{record:?}"),
        format!("{config:?}"),
        format!("{password:?}"),
        format!("{auth:?}"),
    ];
    let hash_tail = &user.password_hash[user.password_hash.len() - 20..];
    for text in &printed {
        for secret in [
            token.access_token.as_str(),
            hash_tail,
            SECRET,
            "a-secret-password",
        ] {
            assert!(!text.contains(secret), "{text} shows a secret");
        }
    }
}

/// A pending notification for product `p` with this product name.
fn notification_named(product_name: &str) -> Notification {
    Notification {
        id: uuid::Uuid::now_v7(),
        recipient: Email::parse("x@example.com").unwrap(),
        message: Message::OrderConfirmation {
            order_id: uuid::Uuid::now_v7(),
            lines: vec![ConfirmedLine {
                product_id: ProductId::new("p").unwrap(),
                product_name: product_name.into(),
                quantity: Quantity::ONE,
            }],
        },
        status: NotificationStatus::Pending,
        attempts: 1,
        next_attempt_at: Utc::now(),
        lease_owner: None,
        lease_until: None,
        last_error: None,
        created_at: Utc::now(),
        sent_at: None,
    }
}

#[tokio::test]
async fn retries_follow_the_backoff_in_time_without_sleeping() {
    let store = store();
    let order = one_order(&store).await;
    let mailer = Arc::new(RecordingMailer::failing_first(3));
    let config = DispatcherConfig {
        retry_base: Duration::from_secs(2),
        retry_max: Duration::from_secs(5),
        max_attempts: 10,
        ..DispatcherConfig::default()
    };
    let dispatcher = Dispatcher::new(store.clone(), mailer.clone(), config.clone());
    let mut now = Utc::now() + chrono::Duration::seconds(1);
    let mut delays = Vec::new();
    for _ in 0..3 {
        let report = dispatcher.run_once_at(now).await.unwrap();
        assert_eq!(report.retried, 1);
        let next = report.next_retry_at.expect("a retry time");
        let delay = (next - now).to_std().unwrap();
        delays.push(delay);
        // Not due a moment before its time...
        let early = dispatcher
            .run_once_at(next - chrono::Duration::milliseconds(1))
            .await
            .unwrap();
        assert_eq!(early.claimed, 0, "retried before its time");
        now = next;
    }
    // ... and delivered at it.
    assert_eq!(dispatcher.run_once_at(now).await.unwrap().sent, 1);
    assert!(delays[0] >= config.retry_base, "{delays:?}");
    assert!(delays.iter().all(|d| *d <= config.retry_max), "{delays:?}");
    assert!(
        delays[1] >= Duration::from_secs(4).min(config.retry_max),
        "doubles: {delays:?}"
    );
    let n = store
        .notification_for_order(order.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((n.status, n.attempts), (NotificationStatus::Sent, 4));
    assert_eq!(n.sent_at, Some(now), "the injected time is recorded");
}
